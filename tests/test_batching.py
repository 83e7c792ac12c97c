"""--kick-batch-size: parsing, what auto picks for a given memory, and the batch size in the fingerprint."""

import json

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from kick_checks.engine.batching import AUTO, auto_batch_size, bytes_per_token, choose_batch_size, parse_batch_size
from kick_checks.errors import KickError


def test_parse_batch_size():
    assert parse_batch_size(None) is None and parse_batch_size("auto") == AUTO and parse_batch_size(" AUTO ") == AUTO
    assert parse_batch_size("8") == 8 and parse_batch_size(32) == 32
    for bad in ("0", "-4", "many", True, "2.5"):
        with pytest.raises(KickError, match="--kick-batch-size .* is invalid: give a whole number >= 1 or auto"):
            parse_batch_size(bad)


@pytest.fixture(scope="module")
def smollm_shaped():
    """A model with the default model's shapes (30 layers, width 576, 3 KV heads, vocab 49152), on the meta
    device: no memory, only the numbers auto needs."""
    import torch

    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152)
    with torch.device("meta"):
        return LlamaForCausalLM(config).to(torch.bfloat16)


def test_auto_sizes_batches_from_memory(smollm_shaped):
    gib = 2**30
    # KV cache: 2 * 30 layers * 3 heads * 64 dims * 2 bytes = 23,040 bytes per token, plus activations
    assert bytes_per_token(smollm_shaped.config, 2, all_logits=False) == 23_040 + (4 * 576 + 2 * 1536) * 2
    sizes = [auto_batch_size(smollm_shaped, 16, 1024, all_logits=False, device_memory=memory * gib)
             for memory in (1, 4, 16, 80)]
    assert sizes == sorted(sizes) and all(size & (size - 1) == 0 for size in sizes)  # powers of two, growing
    assert sizes[-1] == 256 and sizes[0] < 256  # capped; a 1 GiB device gets fewer
    # scoring keeps every position's logits (49152 floats per token): much smaller batches fit
    assert auto_batch_size(smollm_shaped, 16, 1024, all_logits=True, device_memory=4 * gib) < sizes[1]
    assert auto_batch_size(smollm_shaped, 16, 1024, all_logits=False, device_memory=gib // 4) == 1  # never 0


def test_auto_keeps_the_task_default_on_the_cpu(tiny_loaded):
    assert choose_batch_size(AUTO, 16, tiny_loaded.model, 500) == 16
    assert choose_batch_size(None, 8, tiny_loaded.model, 500) == 8
    assert choose_batch_size(3, 8, tiny_loaded.model, 500) == 3


def test_the_batch_size_is_recorded_but_another_one_still_gates(pytester, toy_qa, tmp_path):
    """Another batch size changes only rounding, which the noise floor covers: it is reported in the result's
    decoding, never a reason to refuse the baseline."""
    model_dir, data = toy_qa
    args = ["-m", "kick", "-k", "factoid", "-p", "no:cacheprovider", "--kick-model", str(model_dir),
            "--kick-dtype", "float32", "--kick-device", "cpu", "--kick-data", f"factoid_qa={data}",
            "--kick-baselines-dir", str(tmp_path / "baselines"), "--kick-json", str(tmp_path / "kick.json")]
    pytester.runpytest(*args, "--kick-update-baselines").assert_outcomes(passed=1)
    pytester.runpytest(*args, "--kick-batch-size", "auto").assert_outcomes(passed=1)  # CPU: the default, 32
    (task,) = json.loads((tmp_path / "kick.json").read_text())["tasks"]
    assert task["result"]["fingerprint"]["decoding"]["batch_size"] == 32
    pytester.runpytest(*args, "--kick-batch-size", "4").assert_outcomes(passed=1)
    (task,) = json.loads((tmp_path / "kick.json").read_text())["tasks"]
    assert task["result"]["fingerprint"]["decoding"]["batch_size"] == 4
    bad = pytester.runpytest(*args, "--kick-batch-size", "0")
    bad.stderr.fnmatch_lines(["*--kick-batch-size '0' is invalid: give a whole number >= 1 or auto*"])
