"""The dense model's per-item noise floor: which items change under rounding alone, and by how much.

A greedy answer near a tie flips when the arithmetic rounds differently: another CPU's kernels, another batch
size, another thread count, another dtype. Such a flip on the dense model is not a loss, yet a gate that compares
item by item would count it as one. So when a baseline is recorded, the dense model is also evaluated under
*perturbations* that change rounding but not the model (:class:`Perturbation`): half the batch size, another
thread count, float32 instead of bfloat16. Each item keeps the range of scores it got (:class:`ItemNoise`): an
item whose score never moved is *stable*; one that moved is *unstable*, and the baseline stores what it gave
under each perturbation.

The gate (:mod:`kick_checks.gate.comparison`) then counts a compressed item's change only beyond that range
(:func:`counted_score`): for 0/1 scores a loss on a stable item counts in full and an unstable item is neutral;
for graded scores (ROUGE, a window's loss) only the part of the change outside the dense range counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from kick_checks.errors import KickError
from kick_checks.tasks.protocol import TaskResult

#: What ``--kick-noise-floor`` may list.
KINDS = ("batch", "threads", "float32")
DEFAULT_KINDS = KINDS
NONE = "none"


@dataclass(frozen=True)
class Perturbation:
    """One way to evaluate the same dense model with other rounding. ``name`` keys it in a baseline."""

    name: str
    batch_factor: float | None = None  # each task's batch size times this
    threads: int | None = None  # torch threads while it runs
    dtype: str | None = None  # evaluate a copy of the dense model in this dtype

    def describe(self) -> str:
        if self.batch_factor is not None:
            return f"at {self.batch_factor:g}x the batch size"
        if self.threads is not None:
            return f"on {self.threads} thread{'s' if self.threads > 1 else ''}"
        return f"in {self.dtype}"

    def to_dict(self) -> dict:
        return {key: value for key, value in (("batch_factor", self.batch_factor), ("threads", self.threads),
                                              ("dtype", self.dtype)) if value is not None}

    @classmethod
    def from_dict(cls, name: str, fields: dict) -> Perturbation:
        return cls(name, fields.get("batch_factor"), fields.get("threads"), fields.get("dtype"))

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Run the block with this perturbation's thread count (the other fields are the caller's to apply)."""
        if self.threads is None:
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def perturbations(kinds: tuple[str, ...], dtype: str, threads: int | None = None) -> tuple[Perturbation, ...]:
    """The perturbations ``kinds`` names for a baseline recorded in ``dtype`` with ``threads`` threads (default:
    this process's). ``float32`` is left out for a float32 baseline, where it would change nothing."""
    threads = torch.get_num_threads() if threads is None else threads
    chosen = []
    for kind in kinds:
        if kind == "batch":
            chosen.append(Perturbation("batch-half", batch_factor=0.5))
        elif kind == "threads":
            other = 1 if threads > 1 else 2
            chosen.append(Perturbation(f"threads-{other}", threads=other))
        elif kind == "float32" and dtype != "float32":
            chosen.append(Perturbation("float32", dtype="float32"))
    return tuple(chosen)


def parse_kinds(value: object, where: str = "--kick-noise-floor") -> tuple[str, ...]:
    """``batch,threads,float32`` (the default), any subset, or ``none``."""
    if value is None:
        return DEFAULT_KINDS
    text = str(value).strip().lower()
    if text == NONE:
        return ()
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise KickError(f"{where} {value!r} is not a list of {', '.join(KINDS)}, or none: e.g. "
                        f"{where} batch,float32")
    return kinds


@dataclass(frozen=True)
class ItemNoise:
    """What one unstable item gave under each perturbation: ``under[name] = (score, prediction)``."""

    under: dict[str, tuple[float, str]]

    def band(self, recorded: float) -> tuple[float, float]:
        scores = [recorded, *(score for score, _ in self.under.values())]
        return min(scores), max(scores)


@dataclass
class NoiseFloor:
    """The perturbations a baseline was evaluated under, their scores, and its unstable items by id."""

    perturbations: tuple[Perturbation, ...]
    scores: dict[str, float] = field(default_factory=dict)  # each perturbation's aggregate score
    items: dict[str, ItemNoise] = field(default_factory=dict)  # unstable items only
    seconds: float = 0.0

    @property
    def unstable(self) -> int:
        return len(self.items)

    def band(self, item_id: str, recorded: float) -> tuple[float, float]:
        """The scores ``item_id`` got on the dense model (``recorded`` and every perturbation's)."""
        noise = self.items.get(item_id)
        return (recorded, recorded) if noise is None else noise.band(recorded)

    def band_around(self, item_id: str, recorded: float, centre: float) -> tuple[float, float]:
        """The range a comparison against another run's score ``centre`` (a reference run) counts as no change:
        nothing for a stable item; for an unstable one the dense range joined with the same spread around
        ``centre`` (for 0/1 scores that is every score: the item is neutral, as against dense)."""
        noise = self.items.get(item_id)
        if noise is None:
            return centre, centre
        low, high = noise.band(recorded)
        return min(low, centre - (recorded - low)), max(high, centre + (high - recorded))

    def without(self, names: set[str], recorded: dict[str, float]) -> NoiseFloor:
        """This noise floor as if the perturbations ``names`` had not been run (``recorded``: each item's recorded
        score), so a run under one of them can be judged on the others alone (leave-one-out measurement)."""
        items = {}
        for item_id, noise in self.items.items():
            under = {name: entry for name, entry in noise.under.items() if name not in names}
            if any(_moved(score, recorded[item_id])
                   for score, _ in under.values()):
                items[item_id] = ItemNoise(under)
        return NoiseFloor(tuple(p for p in self.perturbations if p.name not in names),
                          {name: score for name, score in self.scores.items() if name not in names}, items,
                          self.seconds)

    def dtypes(self) -> set[str]:
        return {perturbation.dtype for perturbation in self.perturbations if perturbation.dtype}

    def summary(self) -> str:
        names = ", ".join(perturbation.describe() for perturbation in self.perturbations)
        return f"{self.unstable} unstable under {names}"

    def to_dict(self) -> dict:
        return {"perturbations": {p.name: p.to_dict() for p in self.perturbations}, "scores": self.scores,
                "unstable": self.unstable, "seconds": round(self.seconds, 1)}

    def item_entry(self, item_id: str) -> dict:
        """What a baseline's item row stores of its noise (nothing for a stable item)."""
        noise = self.items.get(item_id)
        if noise is None:
            return {}
        return {"noise": {name: {"score": score, "prediction": prediction}
                          for name, (score, prediction) in noise.under.items()}}

    @classmethod
    def from_document(cls, document: dict, rows: list[dict]) -> NoiseFloor:
        """Read back what :meth:`to_dict` and :meth:`item_entry` wrote."""
        perturbations = tuple(Perturbation.from_dict(name, fields)
                              for name, fields in document["perturbations"].items())
        items = {
            str(row["id"]): ItemNoise({name: (float(entry["score"]), str(entry.get("prediction", "")))
                                       for name, entry in row["noise"].items()})
            for row in rows if row.get("noise")
        }
        return cls(perturbations, {str(k): float(v) for k, v in document.get("scores", {}).items()}, items,
                   float(document.get("seconds", 0.0)))


def _moved(score: float, recorded: float) -> bool:
    """Whether a perturbed score differs from the recorded one (beyond float noise of the scorer itself)."""
    return not math.isclose(score, recorded, rel_tol=0.0, abs_tol=1e-12)


def build_noise_floor(recorded: TaskResult, perturbed: dict[Perturbation, TaskResult],
                      seconds: float = 0.0) -> NoiseFloor:
    """Compare the recorded dense result with the same model under each perturbation, item by item. An item
    missing from a perturbed result is an error: every perturbation evaluates the same items."""
    by_perturbation = {perturbation: result.by_id() for perturbation, result in perturbed.items()}
    for perturbation, by_id in by_perturbation.items():
        missing = [item.id for item in recorded.items if item.id not in by_id]
        if missing:
            raise KickError(f"{recorded.task}: the noise-floor run {perturbation.describe()} has no result for "
                            f"item {missing[0]} ({len(missing)} missing): the task must score the same items "
                            "under every perturbation")
    unstable = {
        item.id: {p.name: (by_id[item.id].score, by_id[item.id].prediction) for p, by_id in by_perturbation.items()}
        for item in recorded.items
        if any(_moved(by_id[item.id].score, item.score)
               for by_id in by_perturbation.values())
    }
    return NoiseFloor(tuple(perturbed), {p.name: result.score for p, result in perturbed.items()},
                      {item_id: ItemNoise(entries) for item_id, entries in unstable.items()}, seconds)


def counted_score(recorded: float, compressed: float, band: tuple[float, float]) -> float:
    """The compressed score the gate counts: the recorded dense score moved only by the part of the change that
    lies outside the dense model's own range ``band`` (so a score inside the range counts as no change)."""
    low, high = band
    return recorded + (compressed - min(max(compressed, low), high))
