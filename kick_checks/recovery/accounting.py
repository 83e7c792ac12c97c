"""Per-item accounting of knowledge recovery: which lost items came back (displaced), which did not (forgotten).

On the items the dense baseline, the compressed model and the recovered model all answered (0/1 scores):

- *lost*: right dense, wrong compressed;
- *recovered*: lost, and right again under the recovery strategy, so the knowledge was displaced, not erased;
- *forgotten*: lost, and still wrong under recovery;
- *broken*: right compressed, wrong under recovery (what the strategy costs);
- *gained*: wrong dense and compressed, right under recovery (the strategy teaches or cues something new, which
  is not recovery: a prompt that helps the dense model too shows up here and in the dense-under-prompt score).

The recovered fraction (recovered / lost) carries a Wilson score interval, which stays inside [0, 1] and is
honest at the small counts a few hundred items give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from kick_checks.tasks import ItemOutcome, TaskResult

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _right(outcome: ItemOutcome) -> bool:
    return outcome.score >= 0.5


@dataclass(frozen=True)
class Accounting:
    n: int
    lost: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    gained: list[str] = field(default_factory=list)

    @property
    def forgotten(self) -> list[str]:
        back = set(self.recovered)
        return [item for item in self.lost if item not in back]

    @property
    def recovered_fraction(self) -> float | None:
        return len(self.recovered) / len(self.lost) if self.lost else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(len(self.recovered), len(self.lost))

    def describe(self) -> str:
        """``12 of 30 lost items recovered (40%, 95% CI 25%-57%), 18 forgotten, 2 broken, 1 gained``."""
        if not self.lost:
            share = "no items lost"
        else:
            low, high = self.interval
            share = (f"{len(self.recovered)} of {len(self.lost)} lost items recovered ({self.recovered_fraction:.0%}, "
                     f"95% CI {low:.0%}-{high:.0%}), {len(self.forgotten)} forgotten")
        return f"{share}, {len(self.broken)} broken, {len(self.gained)} gained"

    def to_dict(self) -> dict:
        low, high = self.interval
        return {"n": self.n, "lost": len(self.lost), "recovered": len(self.recovered),
                "forgotten": len(self.forgotten), "broken": len(self.broken), "gained": len(self.gained),
                "recovered_fraction": self.recovered_fraction, "recovered_interval": [low, high],
                "items": {"lost": self.lost, "recovered": self.recovered, "broken": self.broken,
                          "gained": self.gained}}


def account(dense: list[ItemOutcome], compressed: list[ItemOutcome], recovered: list[ItemOutcome]) -> Accounting:
    """Sort the items all three have (in the compressed result's order) into lost, recovered, broken, gained."""
    dense_by_id = {item.id: item for item in dense}
    recovered_by_id = {item.id: item for item in recovered}
    shared = [item for item in compressed if item.id in dense_by_id and item.id in recovered_by_id]
    lost, back, broken, gained = [], [], [], []
    for item in shared:
        was, now = _right(dense_by_id[item.id]), _right(recovered_by_id[item.id])
        if was and not _right(item):
            lost.append(item.id)
            if now:
                back.append(item.id)
        elif _right(item) and not now:
            broken.append(item.id)
        elif not was and not _right(item) and now:
            gained.append(item.id)
    return Accounting(len(shared), lost, back, broken, gained)


def counting_recovered_as_kept(result: TaskResult, dense: list[ItemOutcome], accounting: Accounting) -> TaskResult:
    """``result`` with each recovered item scored as the dense model scored it: what the ``recoverable`` gate
    compares, since those items were lost but are not gone."""
    dense_by_id = {item.id: item for item in dense}
    back = set(accounting.recovered)
    items = [replace(item, score=dense_by_id[item.id].score) if item.id in back else item for item in result.items]
    return replace(result, items=items)
