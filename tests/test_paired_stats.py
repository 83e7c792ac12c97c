"""Paired significance tests: McNemar's exact tail against exact fractions (and scipy when present), Newcombe's
interval against a published example, and the paired bootstrap's direction, determinism and edge cases."""

from __future__ import annotations

import math
import random
import statistics
from fractions import Fraction
from statistics import fmean

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kick_checks.gate import paired_stats
from kick_checks.gate.paired_stats import is_binary, mcnemar_exact, paired_bootstrap, paired_test


def paired_binary(losses: int, gains: int, both_right: int = 0, both_wrong: int = 0) -> tuple[list[int], list[int]]:
    """0/1 score lists with the given 2x2 table: dense first, compressed second."""
    dense = [1] * losses + [0] * gains + [1] * both_right + [0] * both_wrong
    compressed = [0] * losses + [1] * gains + [1] * both_right + [0] * both_wrong
    return dense, compressed


def exact_upper_tail(k: int, n: int) -> Fraction:
    """P(X >= k) for X ~ Binomial(n, 1/2), summed exactly."""
    return Fraction(sum(math.comb(n, j) for j in range(k, n + 1)), 2**n)


def graded_scores(n: int, shift: float, seed: int = 7) -> tuple[list[float], list[float]]:
    """Judge-like 1-10 ratings and the same items rated ``shift`` higher (negative: a loss) with noise."""
    rng = random.Random(seed)
    dense = [float(rng.randint(1, 10)) for _ in range(n)]
    compressed = [min(10.0, max(1.0, score + shift + rng.gauss(0.0, 1.0))) for score in dense]
    return dense, compressed


def exp_mean(scores: list[float]) -> float:
    return math.exp(fmean(scores))


# --- McNemar --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("losses", "gains", "p_value"),
    [
        (5, 0, 1 / 32),
        (1, 0, 1 / 2),
        (0, 3, 1.0),
        (0, 0, 1.0),
        (3, 3, 42 / 64),  # (C(6,3) + C(6,4) + C(6,5) + C(6,6)) / 2**6
        (12, 3, 576 / 32768),  # (C(15,12) + C(15,13) + C(15,14) + C(15,15)) / 2**15
    ],
)
def test_mcnemar_hand_computed(losses, gains, p_value):
    result = mcnemar_exact(*paired_binary(losses, gains, both_right=10, both_wrong=4))
    assert (result.losses, result.gains, result.n) == (losses, gains, losses + gains + 14)
    assert result.p_value == pytest.approx(p_value, rel=1e-12)


def test_mcnemar_balanced_changes_are_no_evidence_of_loss():
    for changed in (1, 2, 10, 101):
        assert mcnemar_exact(*paired_binary(changed, changed)).p_value > 0.5


def test_mcnemar_no_discordant_items():
    result = mcnemar_exact(*paired_binary(0, 0, both_right=30, both_wrong=20))
    assert result.p_value == 1.0
    assert result.difference == 0.0
    low, high = result.interval
    assert low < 0.0 < high


@settings(max_examples=300, deadline=None)
@given(losses=st.integers(0, 250), gains=st.integers(0, 250), concordant=st.integers(1, 20))
def test_mcnemar_tail_matches_exact_fractions(losses, gains, concordant):
    result = mcnemar_exact(*paired_binary(losses, gains, both_right=concordant))
    assert result.p_value == pytest.approx(float(exact_upper_tail(losses, losses + gains)), rel=1e-9, abs=0.0)


def test_mcnemar_large_counts_stay_accurate():
    result = mcnemar_exact(*paired_binary(600, 400))
    exact = float(exact_upper_tail(600, 1000))
    assert 0.0 < result.p_value < 1e-9
    assert result.p_value == pytest.approx(exact, rel=1e-9)


def test_mcnemar_extreme_counts_do_not_overflow():
    near_even = mcnemar_exact(*paired_binary(50_500, 49_500))
    normal = 1 - statistics.NormalDist().cdf((50_500 - 0.5 - 50_000) / math.sqrt(100_000 / 4))
    assert near_even.p_value == pytest.approx(normal, rel=0.02)
    assert mcnemar_exact(*paired_binary(1000, 0)).p_value == pytest.approx(2.0**-1000, rel=1e-9)
    assert mcnemar_exact(*paired_binary(100_000, 0)).p_value == 0.0  # 2**-100000 underflows, without an error
    assert mcnemar_exact(*paired_binary(0, 100_000)).p_value == 1.0


@pytest.mark.parametrize(("losses", "gains"), [(5, 0), (12, 3), (600, 400), (50_500, 49_500), (40, 60), (1, 1)])
def test_mcnemar_matches_scipy(losses, gains):
    stats = pytest.importorskip("scipy.stats")
    expected = stats.binomtest(losses, losses + gains, 0.5, alternative="greater").pvalue
    assert mcnemar_exact(*paired_binary(losses, gains)).p_value == pytest.approx(expected, rel=1e-8)


def test_mcnemar_interval_matches_newcombe_published_example():
    # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables", ch. 8 (Cavo et al., 2012):
    # table [[59, 6], [16, 80]], Newcombe square-and-add estimate -0.0621, 95% CI -0.1186 to -0.0046.
    result = mcnemar_exact(*paired_binary(losses=16, gains=6, both_right=59, both_wrong=80))
    assert result.difference == pytest.approx(-0.0621, abs=5e-5)
    assert result.interval == pytest.approx((-0.1186, -0.0046), abs=5e-5)


@settings(max_examples=200, deadline=None)
@given(
    losses=st.integers(0, 40),
    gains=st.integers(0, 40),
    both_right=st.integers(0, 40),
    both_wrong=st.integers(0, 40),
    confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_mcnemar_interval_brackets_the_change(losses, gains, both_right, both_wrong, confidence):
    assume(losses + gains + both_right + both_wrong > 0)
    result = mcnemar_exact(*paired_binary(losses, gains, both_right, both_wrong), confidence=confidence)
    low, high = result.interval
    assert -1.0 <= low <= result.difference <= high <= 1.0
    wider = mcnemar_exact(*paired_binary(losses, gains, both_right, both_wrong), confidence=0.999).interval
    assert wider[0] <= low + 1e-12 and high <= wider[1] + 1e-12


def test_mcnemar_rejects_graded_scores():
    with pytest.raises(ValueError, match="0/1 scores"):
        mcnemar_exact([1, 0, 0.5], [1, 1, 0])


# --- paired bootstrap -----------------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_for_a_seed():
    dense, compressed = graded_scores(200, -0.3)
    first = paired_bootstrap(dense, compressed, seed=3)
    assert paired_bootstrap(dense, compressed, seed=3) == first
    assert paired_bootstrap(dense, compressed, seed=4) != first


def test_bootstrap_detects_a_clear_loss():
    dense, compressed = graded_scores(200, -1.0)
    result = paired_bootstrap(dense, compressed)
    assert result.difference == pytest.approx(fmean(compressed) - fmean(dense))
    assert result.p_value == pytest.approx(1 / 2001)
    low, high = result.interval
    assert low <= result.difference <= high < 0.0


def test_bootstrap_sees_no_loss_in_a_gain():
    dense, compressed = graded_scores(200, +1.0)
    result = paired_bootstrap(dense, compressed)
    assert result.p_value > 0.99
    assert 0.0 < result.interval[0] <= result.difference <= result.interval[1]


def test_bootstrap_of_identical_scores():
    dense, _ = graded_scores(100, 0.0)
    result = paired_bootstrap(dense, list(dense))
    assert result.interval == (0.0, 0.0)
    assert result.p_value == 1.0


def test_bootstrap_interval_narrows_with_confidence():
    dense, compressed = graded_scores(150, -0.2)
    wide = paired_bootstrap(dense, compressed, confidence=0.99).interval
    narrow = paired_bootstrap(dense, compressed, confidence=0.8).interval
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_lower_is_better_flips_the_direction():
    rng = random.Random(11)
    dense_nll = [rng.uniform(2.0, 3.0) for _ in range(120)]
    compressed_nll = [nll + 0.2 + rng.gauss(0.0, 0.05) for nll in dense_nll]  # a rise in NLL is a loss
    as_loss = paired_bootstrap(dense_nll, compressed_nll, lower_is_better=True)
    as_gain = paired_bootstrap(dense_nll, compressed_nll, lower_is_better=False)
    assert as_loss.p_value == pytest.approx(1 / 2001)
    assert as_gain.p_value == 1.0
    assert as_loss.interval == as_gain.interval


def test_exp_mean_aggregate_for_perplexity():
    rng = random.Random(5)
    dense_nll = [rng.uniform(2.0, 3.0) for _ in range(80)]
    compressed_nll = [nll + 0.1 + rng.gauss(0.0, 0.05) for nll in dense_nll]
    custom = paired_bootstrap(dense_nll, compressed_nll, aggregate=exp_mean, lower_is_better=True)
    named = paired_bootstrap(dense_nll, compressed_nll, statistic="exp_mean", lower_is_better=True)
    assert custom.statistic == "exp_mean" and custom.dense_value == pytest.approx(exp_mean(dense_nll))
    assert custom.difference == pytest.approx(exp_mean(compressed_nll) - exp_mean(dense_nll))
    # The same seed draws the same items, so the callable and the vectorised statistic agree.
    assert custom.interval == pytest.approx(named.interval, rel=1e-9)
    assert custom.p_value == named.p_value == pytest.approx(1 / 2001)
    assert custom.interval[0] > 0.0  # perplexity rose on every resample


def test_bootstrap_without_numpy(monkeypatch):
    dense, compressed = graded_scores(200, -1.0)
    with_numpy = paired_bootstrap(dense, compressed, resamples=500)
    monkeypatch.setattr(paired_stats, "_np", None)
    pure = paired_bootstrap(dense, compressed, resamples=500)
    assert paired_bootstrap(dense, compressed, resamples=500) == pure
    assert pure.difference == pytest.approx(with_numpy.difference)
    assert pure.p_value == pytest.approx(1 / 501)
    assert pure.interval == pytest.approx(with_numpy.interval, abs=0.1)  # different random streams, same answer


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resamples": 0}, "resamples"),
        ({"confidence": 1.0}, "confidence"),
        ({"statistic": "median"}, "unknown statistic"),
        ({"statistic": "exp_mean", "aggregate": exp_mean}, "not both"),
    ],
)
def test_bootstrap_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0], **kwargs)


# --- paired_test and input checks -----------------------------------------------------------------------------


def test_is_binary():
    assert is_binary([0, 1, 1.0, 0.0, True, False])
    assert not is_binary([0, 1, 0.5])
    assert not is_binary([2])
    assert not is_binary([float("nan")])


def test_paired_test_uses_mcnemar_for_binary_scores():
    result = paired_test(*paired_binary(12, 3, both_right=100, both_wrong=50))
    assert result.method == "mcnemar-exact"
    assert result.p_value == pytest.approx(576 / 32768)
    assert result.significant_loss
    assert result.difference == pytest.approx(-9 / 165)
    assert result.interval == result.detail.interval
    low, high = result.interval
    assert result.describe() == (
        f"McNemar exact: 12 lost, 3 gained, one-sided p=0.018; 95% CI of the change [{low:.3f}, {high:.3f}]"
    )


def test_paired_test_alpha_decides_significance():
    scores = paired_binary(12, 3, both_right=100)
    assert not paired_test(*scores, alpha=0.01).significant_loss
    assert paired_test(*scores, alpha=0.05).significant_loss


@pytest.mark.parametrize(
    "kwargs", [{"aggregate": fmean}, {"lower_is_better": True}], ids=["custom-aggregate", "lower-is-better"]
)
def test_paired_test_uses_bootstrap_when_binary_is_not_plain_accuracy(kwargs):
    assert paired_test(*paired_binary(5, 1, both_right=20), **kwargs).method == "paired-bootstrap"


def test_paired_test_uses_bootstrap_for_graded_scores():
    dense, compressed = graded_scores(200, -1.0)
    result = paired_test(dense, compressed, seed=1)
    assert result.method == "paired-bootstrap"
    assert result.significant_loss
    assert result.interval[1] < 0.0
    assert result == paired_test(dense, compressed, seed=1)
    low, high = result.interval
    assert result.describe() == (
        f"paired bootstrap (2000 resamples of 200 items): mean {fmean(dense):.3f} -> {fmean(compressed):.3f} "
        f"(change {result.difference:+.3f}), one-sided p=0.0005; 95% CI of the change [{low:.3f}, {high:.3f}]"
    )


def test_paired_test_finds_no_loss_without_change():
    dense, _ = graded_scores(50, 0.0)
    result = paired_test(dense, list(dense))
    assert not result.significant_loss
    assert result.interval == (0.0, 0.0)


@pytest.mark.parametrize("function", [mcnemar_exact, paired_bootstrap, paired_test])
@pytest.mark.parametrize(
    ("dense", "compressed", "message"),
    [
        ([1, 0, 1], [1, 0], "3 dense and 2 compressed"),
        ([], [], "empty"),
        ([1.0, float("nan")], [1.0, 1.0], "finite"),
    ],
)
def test_bad_input_is_rejected(function, dense, compressed, message):
    with pytest.raises(ValueError, match=message):
        function(dense, compressed)


def test_bad_alpha_is_rejected():
    with pytest.raises(ValueError, match="alpha"):
        paired_test([1, 0], [1, 0], alpha=0.0)
