"""The divergence probe finds the block and the layer a compression broke; a session stores it in its report."""

import copy
import json

import pytest
import torch

from kick_checks.experiments.divergence import capture_reference, measure_divergence
from kick_checks.experiments.probe import probe_ids


@pytest.fixture
def four_blocks(tmp_path):
    from tiny_models import build_tiny_model

    from kick_checks.model.loading import load_model, resolve_model

    folder = build_tiny_model(tmp_path / "four", layers=4)
    return load_model(resolve_model(str(folder)), dtype="float32", device="cpu")


def test_an_unchanged_model_does_not_diverge(tiny_loaded):
    ids = probe_ids(tiny_loaded.tokenizer, prompts=2, tokens=16)
    reference, _ = capture_reference(tiny_loaded.model, ids)
    document, _ = measure_divergence(tiny_loaded.model, ids, reference)
    assert all(block["relative_difference"] == 0 for block in document["blocks"])
    assert document["kl"]["mean"] == pytest.approx(0, abs=1e-6) and document["kl"]["same_next_token"] == 1
    assert all(layer["relative_change"] == 0 for layer in document["layers"])


@pytest.mark.parametrize("broken_block", [1, 2])
def test_a_deliberately_broken_layer_is_the_one_flagged(four_blocks, broken_block):
    model = copy.deepcopy(four_blocks.model)
    ids = probe_ids(four_blocks.tokenizer, prompts=2, tokens=16)
    reference, _ = capture_reference(model, ids)
    with torch.no_grad():
        for block in model.model.layers:  # every layer changes a little, as under a mild compression
            for layer in (block.self_attn.q_proj, block.mlp.up_proj):
                layer.weight.mul_(0.98)
        broken = model.model.layers[broken_block].mlp.down_proj.weight
        broken.add_(torch.randn_like(broken, generator=torch.Generator().manual_seed(0)) * broken.abs().mean() * 30)
    document, _ = measure_divergence(model, ids, reference)
    assert document["flagged_block"] == broken_block
    assert document["flagged_layer"] == f"layers.{broken_block}.mlp.down_proj"
    differences = [block["relative_difference"] for block in document["blocks"]]
    assert max(differences[:broken_block]) < 0.1 < differences[broken_block]
    assert document["kl"]["mean"] > 0


def test_weight_change_is_skipped_with_the_reason_over_the_memory_limit(tiny_loaded):
    ids = probe_ids(tiny_loaded.tokenizer, prompts=1, tokens=8)
    reference, _ = capture_reference(tiny_loaded.model, ids, limit_bytes=1000)
    document, _ = measure_divergence(tiny_loaded.model, ids, reference)
    assert document["layers"] == [] and "weight change not measured" in document["layers_note"]
    assert len(document["blocks"]) == 2


@pytest.fixture
def kick_args(toy_qa, tmp_path):
    model_dir, data = toy_qa
    return ["-m", "kick", "-k", "factoid", "-p", "no:cacheprovider", "--kick-model", str(model_dir),
            "--kick-dtype", "float32", "--kick-device", "cpu", "--kick-data", f"factoid_qa={data}",
            "--kick-baselines-dir", str(tmp_path / "baselines"), "--kick-calib-samples", "4",
            "--kick-calib-seqlen", "32"]


def test_a_run_reports_efficiency_divergence_and_parent_and_can_skip_them(pytester, kick_args, tmp_path):
    pytester.runpytest(*kick_args, "--kick-update-baselines").assert_outcomes(passed=1)
    report = tmp_path / "pruned-quantized.json"
    result = pytester.runpytest(*kick_args, "--sparsity", "0.5", "--kick-method", "magnitude", "--kick-bits", "4",
                                "--kick-group-size", "32", "--kick-tolerance", "1.0", "--kick-json", str(report))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*measured: stored as *MB*prefill * tok/s*divergence from dense: KL*"])
    document = json.loads(report.read_text())
    storage = document["efficiency"]["storage"]
    assert storage["stored_as"] == "gptq" and storage["on_grid"] and 0 < storage["ratio"] < 0.5
    throughput = document["efficiency"]["throughput"]
    assert throughput["decode_tokens_per_s"] > 0 and "dense_decode_tokens_per_s" in throughput
    assert "dense kernels" in document["efficiency"]["kernels"]
    divergence = document["divergence"]
    assert len(divergence["blocks"]) == 2 and divergence["kl"]["mean"] > 0 and len(divergence["layers"]) == 14
    assert document["parent"]["label"] == "magnitude 50% unstructured" and "then gptq" in document["parent"]["how"]
    skipped = tmp_path / "skipped.json"
    pytester.runpytest(*kick_args, "--sparsity", "0.5", "--kick-method", "magnitude", "--kick-tolerance", "1.0",
                       "--kick-no-measure", "--kick-json", str(skipped)).assert_outcomes(passed=1)
    document = json.loads(skipped.read_text())
    assert document["efficiency"] is None and document["divergence"] is None
    assert document["parent"] == {"label": "dense", "spec": None}


def test_a_failed_measurement_is_recorded_and_never_stops_the_run(tiny_loaded, monkeypatch):
    import kick_checks.experiments.measure as measure
    from compressors.spec import build_spec

    def refuse(*_args, **_kwargs):
        raise RuntimeError("this model's forward cannot take the probe")

    monkeypatch.setattr(measure, "capture_reference", refuse)
    run = measure.RunMeasurement(build_spec(method="magnitude", sparsity=0.5))
    run.before(tiny_loaded.model, tiny_loaded.tokenizer)
    run.after(tiny_loaded.model, tiny_loaded.tokenizer)
    assert run.errors == {"dense reference": "RuntimeError: this model's forward cannot take the probe"}
    assert run.efficiency["storage"]["stored_as"] == "dense" and run.efficiency["throughput"]["prefill_tokens_per_s"]
    assert run.divergence is None and "not measured: dense reference (RuntimeError" in run.summary()
