"""`kick export`: the GPTQ checkpoint layout on hand-made cases, what an export refuses, and an export of the
tiny model (loaded back with GPTQModel where it is installed)."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compressors.gptq import gptq_quantize
from compressors.quantization import QuantizedLayer
from compressors.spec import build_spec
from kick_checks.errors import KickError
from kick_checks.export.gptq_checkpoint import dequantize, pack_layer, pack_levels, unpack_levels
from kick_checks.export.gptq_export import (
    check_layers_exportable,
    check_spec_exportable,
    export_gptq,
    gptqmodel_available,
)
from kick_checks.settings import RunSettings


def test_four_bit_levels_fill_a_word_lowest_first():
    levels = torch.tensor([[1], [2], [3], [4], [5], [6], [7], [15]] * 4)  # 32 levels of one output column
    packed = pack_levels(levels, 4)
    assert packed.shape == (4, 1) and packed.dtype == torch.int32
    assert packed[0, 0].item() == 0xF7654321 - 2**32  # level i in bits 4i..4i+3, stored as signed int32


def test_three_bit_levels_straddle_words_as_one_bit_stream():
    levels = torch.zeros(32, 1, dtype=torch.long)
    levels[10] = 0b101  # bits 30..32 of the stream: two in word 0, one in word 1
    levels[21] = 0b110  # bits 63..65: one in word 1, two in word 2
    words = [value & 0xFFFFFFFF for value in pack_levels(levels, 3)[:, 0].tolist()]
    assert words == [0b01 << 30, (0b1 << 0) | (0b0 << 31), 0b11]


@settings(deadline=None, max_examples=30)
@given(st.sampled_from([2, 3, 4, 8]), st.integers(1, 3), st.integers(1, 4), st.integers(0, 10_000))
def test_pack_and_unpack_are_inverse(bits, chunks, columns, seed):
    generator = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 2**bits, (32 * chunks, columns), generator=generator)
    packed = pack_levels(levels, bits)
    assert packed.shape == (bits * chunks, columns)
    assert torch.equal(unpack_levels(packed, bits), levels)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_a_packed_layer_dequantizes_to_the_tested_weights(bits, symmetric):
    generator = torch.Generator().manual_seed(bits)
    weight = torch.randn(64, 96, generator=generator) * 0.05
    inputs = torch.randn(96, 200, generator=generator)
    layer = gptq_quantize(weight, inputs @ inputs.T, bits, group_size=32, symmetric=symmetric, act_order=True)
    packed = pack_layer(layer, bits, symmetric)
    fmt = "gptq" if symmetric else "gptq_v2"
    assert packed.qweight.shape == (96 * bits // 32, 64) and packed.qzeros.shape == (3, 64 * bits // 32)
    assert packed.scales.dtype == torch.float16 and sorted(set(packed.g_idx.tolist())) == [0, 1, 2]
    served = dequantize(packed, bits, fmt)
    tested = layer.dequantize()
    # the only difference is the float16 rounding of the scales
    assert torch.allclose(served, tested, rtol=2e-3, atol=1e-7)
    if symmetric:  # v1 stores zero - 1
        zeros = unpack_levels(packed.qzeros.t().contiguous(), bits)
        assert set(zeros.flatten().tolist()) == {2 ** (bits - 1) - 1}


def test_v1_cannot_hold_a_zero_point_of_zero():
    layer = QuantizedLayer(torch.zeros(32, 32, dtype=torch.uint8), torch.ones(32, 1), torch.zeros(32, 1),
                           torch.zeros(32, dtype=torch.long))
    with pytest.raises(ValueError, match="zero point of 0"):
        pack_layer(layer, 4, symmetric=True)
    pack_layer(layer, 4, symmetric=False)  # v2 stores it as it is


def test_what_an_export_refuses_is_one_line(tiny_loaded):
    for options, message in [
        ({"method": "wanda", "sparsity": "0.5"}, "give --kick-bits"),
        ({"method": "gptq", "bits": "5"}, "--kick-bits 5 cannot be exported: GPTQ checkpoints hold 2, 3, 4, 8"),
    ]:
        with pytest.raises(KickError, match=message):
            check_spec_exportable(build_spec(**options))
    # the tiny model is 64 wide: 48 does not divide it; the suite would quantize a shorter last group
    with pytest.raises(KickError, match=r"--kick-group-size 48 does not divide the width 64 of layers\.0\..*"
                                        r"export with --kick-group-size 32"):
        check_layers_exportable(tiny_loaded.model, build_spec(method="gptq", bits="4", group_size="48"))
    check_layers_exportable(tiny_loaded.model, build_spec(method="gptq", bits="4", group_size="32"))


def export_settings(model_dir, tmp_path, **spec) -> RunSettings:
    return RunSettings(model=str(model_dir), dtype="float32", device="cpu", cache_dir=tmp_path / "cache",
                       spec=build_spec(calib_samples=8, calib_seqlen=32, **spec))


def test_an_export_never_overwrites_and_leaves_nothing_when_it_fails(tiny_model_dir, tmp_path, monkeypatch):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(KickError, match="already exists: choose another --out"):
        export_gptq(export_settings(tiny_model_dir, tmp_path, method="gptq", bits=4, group_size=32), tmp_path,
                    existing)
    assert (existing / "keep.txt").read_text() == "mine"

    def fails(folder, loaded):
        raise KickError("the export does not reproduce the tested model")

    monkeypatch.setattr("kick_checks.export.gptq_export._verify", fails)
    with pytest.raises(KickError, match="does not reproduce"):
        export_gptq(export_settings(tiny_model_dir, tmp_path, method="gptq", bits=4, group_size=32), tmp_path,
                    tmp_path / "new")
    assert [path.name for path in tmp_path.iterdir() if "new" in path.name] == []  # no staging folder left


def test_an_export_writes_a_gptq_checkpoint_of_the_tested_model(tiny_model_dir, tmp_path):
    out = tmp_path / "exported"
    result = export_gptq(export_settings(tiny_model_dir, tmp_path, method="wanda", sparsity=0.5, bits=4,
                                         group_size=32), tmp_path, out, verify=False)
    assert result.layers == 14 and result.checkpoint_format == "gptq"
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == {**json.loads((out / "quantize_config.json").read_text())}
    assert config["quantization_config"]["bits"] == 4 and config["quantization_config"]["group_size"] == 32
    provenance = json.loads((out / "kick-export.json").read_text())
    assert provenance["label"] == "wanda 50% unstructured + 4-bit g32 sym"
    assert provenance["compression"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    from safetensors.torch import load_file

    tensors = load_file(str(out / "model.safetensors"))
    packed = {name.rsplit(".", 1)[0] for name in tensors if name.endswith(".qweight")}
    assert len(packed) == 14 and not any(f"{name}.weight" in tensors for name in packed)
    # the served weights keep the pruned zeros: level == zero point wherever the pruner removed a weight
    from kick_checks.export.gptq_checkpoint import PackedLayer

    name = "model.layers.0.mlp.down_proj"
    layer = PackedLayer(*(tensors[f"{name}.{part}"] for part in ("qweight", "qzeros", "scales", "g_idx")))
    weight = dequantize(layer, 4, "gptq")
    assert (weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


@pytest.mark.skipif(not gptqmodel_available(), reason="GPTQModel is not installed (pip install 'kick-checks[export]')")
@pytest.mark.parametrize("bits,asym", [(4, False), (3, False), (4, True)])
def test_gptqmodel_serves_the_export_as_the_suite_tested_it(tiny_model_dir, tmp_path, bits, asym):
    spec = {"method": "gptq", "bits": bits, "group_size": 32, "act_order": asym}
    settings = export_settings(tiny_model_dir, tmp_path, **spec)
    settings.dtype = "bfloat16"  # GPTQModel's CPU kernel runs in bfloat16: compare like with like
    if asym:
        settings.spec = build_spec(symmetric=False, calib_samples=8, calib_seqlen=32, **spec)
    result = export_gptq(settings, tmp_path, tmp_path / "served")
    assert result.verification.startswith("loaded with GPTQModel")
    agreement = float(result.verification.split("agreement ")[1].split("%")[0]) / 100
    difference = float(result.verification.rsplit(" ", 1)[1])
    assert agreement >= 0.95 and difference < 0.02


@pytest.mark.skipif(not gptqmodel_available(), reason="GPTQModel is not installed (pip install 'kick-checks[export]')")
def test_the_gptqmodel_check_catches_a_zero_point_written_in_the_wrong_convention(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    import kick_checks.export.gptq_export as export

    def v2_zeros_labelled_v1(layer, bits, symmetric):
        return pack_layer(layer, bits, symmetric=False)  # zero points off by one for a v1 reader

    monkeypatch.setattr(export, "pack_layer", v2_zeros_labelled_v1)
    settings = export_settings(tiny_model_dir, tmp_path, method="gptq", bits=4, group_size=32)
    settings.dtype = "bfloat16"
    with pytest.raises(KickError, match="does not reproduce the tested model"):
        export_gptq(settings, tmp_path, tmp_path / "served")
    assert not (tmp_path / "served").exists()
