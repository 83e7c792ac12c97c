"""The dense noise floor and the vacuous verdicts it sits beside: hand-made results, no model."""

import json
import math

import pytest

from kick_checks.errors import KickError
from kick_checks.gate.baselines import fingerprint_changes, read_baseline, write_baseline
from kick_checks.gate.comparison import compare, compare_items
from kick_checks.gate.noise_floor import (
    NoiseFloor,
    Perturbation,
    build_noise_floor,
    counted_score,
    parse_kinds,
    perturbations,
)
from kick_checks.gate.tolerance import Tolerance
from kick_checks.model.environment import cpu_isa, environment_differences, native_bfloat16
from kick_checks.tasks.protocol import EXACT_MATCH, PERPLEXITY, ROUGE_L, ItemOutcome, TaskResult

HALF = Perturbation("batch-half", batch_factor=0.5)
FLOAT32 = Perturbation("float32", dtype="float32")


def result(scores: list[float], metric=EXACT_MATCH, task: str = "factoid_qa", prefix: str = "i") -> TaskResult:
    return TaskResult(task, metric, [ItemOutcome(f"{prefix}{index}", score, f"answer {index} {score}")
                                     for index, score in enumerate(scores)])


def test_items_that_move_under_a_perturbation_are_unstable_with_what_they_gave():
    recorded = result([1, 1, 0, 0, 1])
    floor = build_noise_floor(recorded, {HALF: result([1, 0, 0, 0, 1]), FLOAT32: result([1, 1, 1, 0, 1])})
    assert set(floor.items) == {"i1", "i2"} and floor.unstable == 2
    assert floor.items["i1"].under == {"batch-half": (0.0, "answer 1 0"), "float32": (1.0, "answer 1 1")}
    assert floor.band("i1", 1.0) == (0.0, 1.0) and floor.band("i0", 1.0) == (1.0, 1.0)
    assert floor.scores == {"batch-half": 0.4, "float32": 0.8}
    assert floor.dtypes() == {"float32"}


def test_a_perturbed_run_missing_items_is_an_error():
    with pytest.raises(KickError, match="has no result for item i2"):
        build_noise_floor(result([1, 1, 0]), {HALF: result([1, 1])})


@pytest.mark.parametrize(("recorded", "compressed", "band", "counted"), [
    (1.0, 0.0, (1.0, 1.0), 0.0),  # stable item lost: counts in full
    (1.0, 0.0, (0.0, 1.0), 1.0),  # unstable 0/1 item: neutral either way
    (0.0, 1.0, (0.0, 1.0), 0.0),
    (0.30, 0.25, (0.28, 0.33), 0.27),  # graded: only the part beyond the dense range counts
    (0.30, 0.31, (0.28, 0.33), 0.30),
    (0.30, 0.40, (0.28, 0.33), 0.37),
])
def test_counted_score_moves_only_beyond_the_dense_range(recorded, compressed, band, counted):
    assert counted_score(recorded, compressed, band) == pytest.approx(counted)


def test_a_dense_rerun_that_flips_only_unstable_items_passes_with_nothing_lost():
    recorded = result([1] * 10 + [0] * 10)
    floor = build_noise_floor(recorded, {HALF: result([0, 0, 0] + [1] * 7 + [1, 1] + [0] * 8)})
    other_machine = result([0, 1, 0] + [1] * 7 + [0, 1] + [0] * 8)  # flips i0, i2 (lost) and i11 (gained)
    plain = compare_items(recorded.items, other_machine, Tolerance(0.05), "dense")
    assert not plain.passed and len(plain.lost) == 2  # without the noise floor: a false FAIL
    gated = compare_items(recorded.items, other_machine, Tolerance(0.05), "dense", noise=floor)
    assert gated.passed and gated.lost == [] and gated.gained == 0 and gated.relative_drop == 0
    assert (gated.unstable, gated.unstable_changed) == (5, 3)
    assert "n=20, 5 unstable" in gated.line() and "beyond the noise floor" in gated.line()


def test_a_loss_on_a_stable_item_still_fails_and_the_message_names_the_unstable_ones():
    recorded = result([1] * 10)
    floor = build_noise_floor(recorded, {HALF: result([0] + [1] * 9)})
    compressed = result([0, 0, 0] + [1] * 7)
    comparison = compare_items(recorded.items, compressed, Tolerance(0.05), "wanda 50%", noise=floor)
    assert not comparison.passed and [item.id for item in comparison.lost] == ["i1", "i2"]
    message = comparison.failure_message()
    assert "noise floor: 1 of 10 items change under rounding on the dense model" in message
    assert "1 of them differ here" in message


def test_a_graded_item_lost_beyond_its_range_says_it_moves_under_rounding_too():
    recorded = result([0.5, 0.5], metric=ROUGE_L, task="summarization")
    floor = build_noise_floor(recorded, {HALF: result([0.45, 0.5], metric=ROUGE_L, task="summarization")})
    compressed = result([0.1, 0.5], metric=ROUGE_L, task="summarization")
    comparison = compare_items(recorded.items, compressed, Tolerance(0.05), "x", noise=floor)
    assert comparison.counted == pytest.approx((0.15 + 0.5) / 2)
    assert "changes under rounding on the dense model too" in comparison.failure_message()


def test_perplexity_windows_count_their_loss_beyond_the_dense_range():
    recorded = result([3.0, 3.0], metric=PERPLEXITY, task="perplexity")
    floor = build_noise_floor(recorded, {HALF: result([3.01, 2.99], metric=PERPLEXITY, task="perplexity")})
    dense_elsewhere = result([3.005, 2.995], metric=PERPLEXITY, task="perplexity")
    assert compare_items(recorded.items, dense_elsewhere, Tolerance(0.0), "x", noise=floor).relative_drop == 0
    worse = result([3.5, 3.0], metric=PERPLEXITY, task="perplexity")
    comparison = compare_items(recorded.items, worse, Tolerance(0.05), "x", noise=floor)
    assert comparison.relative_drop == pytest.approx(math.exp(3.245) / math.exp(3.0) - 1)


def test_a_comparison_on_no_shared_item_is_an_error_naming_the_baseline():
    with pytest.raises(KickError, match=r"none of this run's 3 items is among the 2 items of the baseline b.json"):
        compare_items(result([1, 1], prefix="old").items, result([1, 0, 1]), Tolerance(0.05), "x",
                      baseline_path="b.json")


@pytest.mark.parametrize("text", ["nan", "abs:nan", "recovery:nan", "inf", "abs:inf", "-inf", "abs:-inf"])
def test_every_tolerance_kind_rejects_nan_and_infinity(text):
    with pytest.raises(KickError, match="not a finite number"):
        Tolerance.parse(text, "--kick-tolerance")


def test_baselines_keep_the_environment_and_the_noise_floor(tmp_path):
    recorded = result([1, 0, 1])
    floor = build_noise_floor(recorded, {HALF: result([1, 1, 1]), FLOAT32: result([1, 0, 1])})
    path = write_baseline(tmp_path / "m" / "factoid_qa.json", recorded, {"alias": "m", "dtype": "bfloat16"},
                          {"isa": "amx", "dtype": "bfloat16"}, floor)
    stored = json.loads(path.read_text())
    assert stored["noise_floor"]["unstable"] == 1 and stored["environment"] == {"isa": "amx", "dtype": "bfloat16"}
    assert stored["items"][1]["noise"] == {"batch-half": {"score": 1.0, "prediction": "answer 1 1"},
                                           "float32": {"score": 0.0, "prediction": "answer 1 0"}}
    assert "noise" not in stored["items"][0]
    baseline = read_baseline(path)
    assert baseline.noise.band("i1", 0.0) == (0.0, 1.0) and baseline.dtypes == {"bfloat16", "float32"}
    assert compare(baseline, result([1, 1, 1]), Tolerance(0.0), "x").gained == 0


def test_a_schema_1_baseline_is_read_with_every_item_stable(tmp_path):
    path = tmp_path / "factoid_qa.json"
    path.write_text(json.dumps({"schema": 1, "task": "factoid_qa", "metric": "exact_match", "score": 1.0,
                                "fingerprint": {}, "items": [{"id": "i0", "score": 1.0, "prediction": "a"}]}))
    baseline = read_baseline(path)
    assert baseline.noise is None
    comparison = compare(baseline, result([0.0]), Tolerance(0.05), "x")
    assert comparison.lost and "no noise floor" in comparison.line()


def test_an_empty_result_is_never_recorded(tmp_path):
    path = tmp_path / "factoid_qa.json"
    path.write_text("stored")
    with pytest.raises(KickError, match="scored no item"):
        write_baseline(path, result([]), {"alias": "m"})
    assert path.read_text() == "stored"


def test_batch_size_never_makes_a_baseline_unusable_and_a_covered_dtype_is_accepted():
    stored = {"model": {"alias": "m", "dtype": "bfloat16"}, "decoding": {"batch_size": 32, "engine": "e"}}
    other_batch = {"model": {"alias": "m", "dtype": "bfloat16"}, "decoding": {"batch_size": 16, "engine": "e"}}
    assert fingerprint_changes(stored, other_batch) == []
    other_engine = {"model": {"alias": "m", "dtype": "bfloat16"}, "decoding": {"batch_size": 32, "engine": "f"}}
    assert fingerprint_changes(stored, other_engine)
    float32 = {"model": {"alias": "m", "dtype": "float32"}, "decoding": {"batch_size": 32, "engine": "e"}}
    assert fingerprint_changes(stored, float32) == ["model dtype: 'bfloat16' -> 'float32'"]
    assert fingerprint_changes(stored, float32, dtypes={"bfloat16", "float32"}) == []


def test_noise_floor_kinds_and_perturbations():
    assert parse_kinds(None) == ("batch", "threads", "float32") and parse_kinds("none") == ()
    assert parse_kinds("float32, batch") == ("float32", "batch")
    with pytest.raises(KickError, match="is not a list of batch, threads, float32, or none"):
        parse_kinds("isa")
    names = [p.name for p in perturbations(("batch", "threads", "float32"), "bfloat16", threads=2)]
    assert names == ["batch-half", "threads-1", "float32"]
    assert [p.name for p in perturbations(("threads", "float32"), "float32", threads=1)] == ["threads-2"]


def test_the_threads_perturbation_restores_the_thread_count():
    import torch

    before = torch.get_num_threads()
    with Perturbation("threads-1", threads=1).applied():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(("flags", "environ", "isa"), [
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, {}, "amx"),
    ({"avx2", "avx512f", "avx512_bf16"}, {}, "avx512_bf16"),
    ({"avx2", "avx512f"}, {}, "avx512"),
    ({"avx2"}, {}, "avx2"),
    ({"avx2", "avx512f", "avx512_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "avx2"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "avx512_bf16"),
    ({"avx2", "avx512f", "avx512_bf16"}, {"ATEN_CPU_CAPABILITY": "avx2"}, "avx2"),
])
def test_the_cpu_kernel_class_is_the_hardware_capped_by_the_isa_variables(flags, environ, isa):
    assert cpu_isa(frozenset(flags), environ) == isa
    assert native_bfloat16(isa) == (isa in ("avx512_bf16", "amx"))


def test_environment_differences_name_what_may_move_numbers():
    recorded = {"isa": "amx", "dtype": "bfloat16", "threads": 2, "platform": "a"}
    assert environment_differences(recorded, {**recorded, "platform": "b"}) == []
    assert environment_differences(recorded, {**recorded, "isa": "avx2", "threads": 1}) == [
        "isa amx -> avx2", "threads 2 -> 1"]


def test_noise_floor_round_trips_through_its_document():
    recorded = result([1, 0])
    floor = build_noise_floor(recorded, {HALF: result([0, 0])}, seconds=3.0)
    rows = [{"id": item.id, **floor.item_entry(item.id)} for item in recorded.items]
    again = NoiseFloor.from_document(floor.to_dict(), rows)
    assert again.items == floor.items and again.perturbations == (HALF,) and again.seconds == 3.0
