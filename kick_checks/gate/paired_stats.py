"""Is the compressed model's loss real or noise? Paired significance tests on per-item scores.

The dense baseline and the compressed model answer the same items, so the comparison is paired: item ``i`` of
``dense`` and item ``i`` of ``compressed`` are the same question. Pairing removes the variation between items (some
are hard for both models) and leaves only the changes, which makes a small loss detectable on a few hundred items.

- 0/1 scores (exact match, accuracy): McNemar's exact test on the items that changed, with Newcombe's interval
  for the change in accuracy (:func:`mcnemar_exact`).
- graded scores (judge ratings, ROUGE, per-window NLL): a paired bootstrap over items (:func:`paired_bootstrap`).
- :func:`paired_test` picks between them and returns one uniform result.

Every test is one-sided: the gate only fails on a loss, so the p-value answers "how likely is a loss this large if
compression changed nothing?". The functions are pure; numpy speeds the bootstrap up when it is installed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from statistics import fmean
from typing import Literal

from kick_checks.gate.intervals import binomial_half_upper_tail, newcombe_paired_interval

try:
    import numpy as _np
except ImportError:  # numpy arrives with transformers; without it the bootstrap runs in pure Python, slower
    _np = None

#: Named aggregates the bootstrap can vectorise: the mean, and exp of the mean (perplexity from per-window NLL).
Statistic = Literal["mean", "exp_mean"]
_STATISTICS: dict[str, Callable[[float], float]] = {"mean": lambda mean: mean, "exp_mean": math.exp}

#: Resampled indices held in memory at once by the numpy bootstrap (2**21 int64 = 16 MiB).
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on 0/1 scores. ``losses`` are items right in dense and wrong compressed, ``gains`` the
    reverse; the concordant items carry no information about the change and only enter through ``n``."""

    losses: int
    gains: int
    n: int
    p_value: float
    interval: tuple[float, float]  # of the change in accuracy, compressed - dense
    confidence: float

    @property
    def difference(self) -> float:
        """The change in accuracy, compressed - dense."""
        return (self.gains - self.losses) / self.n

    def describe(self) -> str:
        low, high = self.interval
        return (
            f"McNemar exact: {self.losses} lost, {self.gains} gained, one-sided p={self.p_value:.2g}; "
            f"{_percent(self.confidence)} CI of the change [{low:.3f}, {high:.3f}]"
        )


@dataclass(frozen=True)
class BootstrapResult:
    """A paired bootstrap of the change in an aggregate (compressed - dense) over resampled items."""

    statistic: str  # "mean", "exp_mean", or the custom aggregate's name
    dense_value: float
    compressed_value: float
    n: int
    p_value: float  # one-sided, for "compressed is worse"
    interval: tuple[float, float]  # percentile interval of compressed - dense
    confidence: float
    resamples: int
    lower_is_better: bool

    @property
    def difference(self) -> float:
        """The observed change in the aggregate, compressed - dense."""
        return self.compressed_value - self.dense_value

    def describe(self) -> str:
        low, high = self.interval
        return (
            f"paired bootstrap ({self.resamples} resamples of {self.n} items): {self.statistic} "
            f"{self.dense_value:.3f} -> {self.compressed_value:.3f} (change {self.difference:+.3f}), "
            f"one-sided p={self.p_value:.2g}; {_percent(self.confidence)} CI of the change [{low:.3f}, {high:.3f}]"
        )


@dataclass(frozen=True)
class PairedTest:
    """The verdict of :func:`paired_test`, the same shape whichever test ran; ``detail`` holds that test's result."""

    method: Literal["mcnemar-exact", "paired-bootstrap"]
    p_value: float
    interval: tuple[float, float]  # of compressed - dense, in the metric's units (for perplexity: of the aggregate)
    difference: float
    alpha: float
    significant_loss: bool
    detail: McNemarResult | BootstrapResult

    def describe(self) -> str:
        return self.detail.describe()


def is_binary(scores: Sequence[float]) -> bool:
    """Whether every score is 0 or 1 (True/False count), i.e. an accuracy-type metric fit for McNemar's test.
    Vacuously true for no scores."""
    return all(score in (0, 1) for score in scores)


def mcnemar_exact(dense: Sequence[float], compressed: Sequence[float], *, confidence: float = 0.95) -> McNemarResult:
    """McNemar's exact test of "compressed lost accuracy", on 0/1 scores paired by item.

    Under the null hypothesis (compression changed nothing) each of the ``b + c`` discordant items is equally likely
    to be a loss or a gain, so the losses ``b`` follow Binomial(b + c, 1/2); the one-sided p-value is
    ``P(X >= b)``, and 1.0 when no item changed. It is exact, so it stays valid on a handful of changed items where
    the chi-square version is not.

    The interval is Newcombe's (1998) square-and-add interval for a difference of paired proportions, in the form
    Fagerland, Lydersen & Laake give (Statistical Analysis of Contingency Tables, 2017, ch. 8): Wilson score
    intervals for the two accuracies, combined through the correlation between the paired answers (a positive one
    reduced by n/2). Unlike the Wald interval it stays inside [-1, 1] and keeps its coverage when accuracy is near
    0 or 1 or few items changed.
    """
    dense_scores, compressed_scores = _paired(dense, compressed)
    _check_confidence(confidence)
    if not (is_binary(dense_scores) and is_binary(compressed_scores)):
        raise ValueError("McNemar's test needs 0/1 scores on both sides; use paired_bootstrap for graded scores")
    losses = sum(1 for d, c in zip(dense_scores, compressed_scores) if d > c)
    gains = sum(1 for d, c in zip(dense_scores, compressed_scores) if c > d)
    both_right = sum(1 for d, c in zip(dense_scores, compressed_scores) if d == c == 1)
    n = len(dense_scores)
    return McNemarResult(
        losses=losses,
        gains=gains,
        n=n,
        p_value=binomial_half_upper_tail(losses, losses + gains),
        interval=newcombe_paired_interval(both_right, losses, gains, n - both_right - losses - gains, confidence),
        confidence=confidence,
    )


def paired_bootstrap(
    dense: Sequence[float],
    compressed: Sequence[float],
    *,
    statistic: Statistic = "mean",
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    lower_is_better: bool = False,
    aggregate: Callable[[list[float]], float] | None = None,
) -> BootstrapResult:
    """Paired bootstrap of the change in an aggregate score (compressed - dense).

    Each resample draws the item indices with replacement and takes the same items from both sides, so the
    pairing survives. The interval is the percentile interval of the resampled changes; the one-sided p-value
    for "compressed is worse" is the share of resamples where it is not worse (change >= 0, or <= 0 when
    ``lower_is_better``), with the +1 correction so it is never 0: ``(count + 1) / (resamples + 1)``.

    ``statistic`` names an aggregate computed vectorised: ``"mean"``, or ``"exp_mean"`` (perplexity from
    per-window NLL). ``aggregate`` takes any callable on a list of scores instead; it runs once per resample and
    side, so it is slower on many items. The output is a function of the inputs and ``seed``: with numpy the
    indices come from ``numpy.random.default_rng(seed)``, without it from ``random.Random(seed)`` (the two
    streams differ, so do the results, within bootstrap noise).
    """
    dense_scores, compressed_scores = _paired(dense, compressed)
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if statistic not in _STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {sorted(_STATISTICS)}")
    if aggregate is not None and statistic != "mean":
        raise ValueError("give either statistic or aggregate, not both")

    of_mean: Callable[[float], float] | None
    if aggregate is None:
        of_mean = _STATISTICS[statistic]
        reduce: Callable[[list[float]], float] = partial(_statistic_of_mean, of_mean)
        name = statistic
    else:
        of_mean = None
        reduce = aggregate
        name = getattr(aggregate, "__name__", "aggregate")

    if _np is None:
        changes = _resampled_changes_python(dense_scores, compressed_scores, reduce, resamples, seed)
    else:
        changes = _resampled_changes_numpy(dense_scores, compressed_scores, of_mean, reduce, resamples, seed)

    not_worse = sum(1 for change in changes if (change <= 0 if lower_is_better else change >= 0))
    changes.sort()
    tail = (1.0 - confidence) / 2
    return BootstrapResult(
        statistic=name,
        dense_value=float(reduce(dense_scores)),
        compressed_value=float(reduce(compressed_scores)),
        n=len(dense_scores),
        p_value=(not_worse + 1) / (resamples + 1),
        interval=(_percentile(changes, tail), _percentile(changes, 1.0 - tail)),
        confidence=confidence,
        resamples=resamples,
        lower_is_better=lower_is_better,
    )


def paired_test(
    dense: Sequence[float],
    compressed: Sequence[float],
    *,
    lower_is_better: bool = False,
    aggregate: Callable[[list[float]], float] | None = None,
    alpha: float = 0.05,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedTest:
    """Test whether the compressed model is significantly worse, with the test the scores call for.

    0/1 scores on both sides go to McNemar's exact test (exact on any number of items), unless a custom
    ``aggregate`` or ``lower_is_better`` says the metric is not plain accuracy; everything else goes to the paired
    bootstrap. ``significant_loss`` is ``p_value < alpha``; the interval is two-sided at ``confidence`` and
    describes the size of the change, while the decision rests on the one-sided p-value.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    dense_scores, compressed_scores = _paired(dense, compressed)
    detail: McNemarResult | BootstrapResult
    if aggregate is None and not lower_is_better and is_binary(dense_scores) and is_binary(compressed_scores):
        detail = mcnemar_exact(dense_scores, compressed_scores, confidence=confidence)
        method: Literal["mcnemar-exact", "paired-bootstrap"] = "mcnemar-exact"
    else:
        detail = paired_bootstrap(
            dense_scores,
            compressed_scores,
            seed=seed,
            confidence=confidence,
            lower_is_better=lower_is_better,
            aggregate=aggregate,
        )
        method = "paired-bootstrap"
    return PairedTest(
        method=method,
        p_value=detail.p_value,
        interval=detail.interval,
        difference=detail.difference,
        alpha=alpha,
        significant_loss=detail.p_value < alpha,
        detail=detail,
    )


def _paired(dense: Sequence[float], compressed: Sequence[float]) -> tuple[list[float], list[float]]:
    """Both sides as lists of floats, after checking they pair up: a silent zip would compare the wrong items."""
    if len(dense) != len(compressed):
        raise ValueError(
            f"paired scores need one score per item on both sides, got {len(dense)} dense and "
            f"{len(compressed)} compressed"
        )
    if len(dense) == 0:
        raise ValueError("no items to compare: the score lists are empty")
    dense_scores = [float(score) for score in dense]
    compressed_scores = [float(score) for score in compressed]
    if not all(math.isfinite(score) for score in dense_scores + compressed_scores):
        raise ValueError("scores must be finite numbers; a NaN or infinite score would poison every statistic")
    return dense_scores, compressed_scores


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _percent(confidence: float) -> str:
    return f"{confidence * 100:g}%"


def _resampled_changes_numpy(
    dense: list[float],
    compressed: list[float],
    of_mean: Callable[[float], float] | None,
    reduce: Callable[[list[float]], float],
    resamples: int,
    seed: int,
) -> list[float]:
    """The changes over resamples, vectorised. A named statistic is ``of_mean`` applied to the resampled means;
    a custom aggregate (``of_mean`` None) runs ``reduce`` on each resampled list."""
    rng = _np.random.default_rng(seed)
    dense_array, compressed_array = _np.asarray(dense), _np.asarray(compressed)
    n = len(dense)
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // n)
    changes: list[float] = []
    for start in range(0, resamples, rows_per_chunk):
        indices = rng.integers(0, n, size=(min(rows_per_chunk, resamples - start), n))
        dense_rows, compressed_rows = dense_array[indices], compressed_array[indices]
        if of_mean is None:
            pairs = ((reduce(d.tolist()), reduce(c.tolist())) for d, c in zip(dense_rows, compressed_rows))
        else:
            pairs = (
                (of_mean(d), of_mean(c))
                for d, c in zip(dense_rows.mean(axis=1).tolist(), compressed_rows.mean(axis=1).tolist())
            )
        changes.extend(c - d for d, c in pairs)
    return changes


def _resampled_changes_python(
    dense: list[float],
    compressed: list[float],
    reduce: Callable[[list[float]], float],
    resamples: int,
    seed: int,
) -> list[float]:
    """The changes over resamples, one resample at a time (the fallback without numpy)."""
    rng = random.Random(seed)
    items = range(len(dense))
    changes = []
    for _ in range(resamples):
        indices = rng.choices(items, k=len(dense))
        changes.append(reduce([compressed[i] for i in indices]) - reduce([dense[i] for i in indices]))
    return changes


def _statistic_of_mean(of_mean: Callable[[float], float], scores: list[float]) -> float:
    return of_mean(fmean(scores))


def _percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile of sorted values, interpolating linearly between order statistics (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (position - below) * (sorted_values[above] - sorted_values[below])
