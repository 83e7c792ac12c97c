"""``kick export``: write the quantized model as a GPTQ checkpoint that GPTQModel serves with low-bit kernels.

The export compresses the model exactly as the kick suite does (same spec, calibration text, seed and dtype),
with the quantizer keeping each layer's integer form, packs every quantized layer (``gptq_checkpoint``), and
writes a model folder: ``model.safetensors``, ``config.json`` with its ``quantization_config``,
``quantize_config.json``, the tokenizer, and ``kick-export.json`` (what was exported, from what, and how it was
checked). The folder is built beside its destination and renamed into place only when complete and checked, so
a failed export leaves nothing half-written and never replaces an existing folder.

When GPTQModel is installed, the export is loaded back with it and its logits are compared with those of the
model the suite evaluates; a mismatch fails the export.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from compressors.layerwise import compressible_layers
from compressors.spec import CompressionSpec
from kick_checks.errors import KickError
from kick_checks.export.gptq_checkpoint import PACKABLE_BITS, checkpoint_format, pack_layer
from kick_checks.model.loading import LoadedModel, load_model
from kick_checks.session import KickSession
from kick_checks.settings import RunSettings

INSTALL_HINT = "pip install 'kick-checks[export]'"
PROBE = "The capital of France is Paris. The largest planet in the solar system is"
#: GPTQModel's logits may differ from the suite's by the float16 rounding of the scales and kernel arithmetic;
#: at least this share of the probe's next-token predictions must agree.
MIN_AGREEMENT = 0.9


@dataclass
class ExportResult:
    folder: Path
    layers: int
    bytes: int
    checkpoint_format: str
    verification: str


def check_spec_exportable(spec: CompressionSpec) -> None:
    """Refuse, before loading anything, a spec a GPTQ checkpoint cannot hold."""
    if not spec.quantizes:
        raise KickError("kick export writes a quantized (GPTQ) checkpoint: give --kick-bits, e.g. "
                        "--kick-method gptq --kick-bits 4 --kick-group-size 64")
    if spec.bits not in PACKABLE_BITS:
        raise KickError(f"--kick-bits {spec.bits} cannot be exported: GPTQ checkpoints hold "
                        f"{', '.join(map(str, PACKABLE_BITS))}-bit weights; quantize with one of those")


def check_layers_exportable(model: torch.nn.Module, spec: CompressionSpec) -> None:
    """Refuse, before any compression work, layers a GPTQ checkpoint cannot hold in this spec."""
    for name, layer in compressible_layers(model):
        width = layer.in_features
        if spec.group_size != -1 and width % spec.group_size:
            divisors = [size for size in (256, 128, 64, 32, 16) if width % size == 0]
            fitting = [size for size in divisors if size <= spec.group_size] or divisors
            hint = f"--kick-group-size {fitting[0]}" if fitting else "--kick-group-size -1"
            raise KickError(
                f"--kick-group-size {spec.group_size} does not divide the width {width} of {name}: a GPTQ "
                f"checkpoint needs equal groups; export with {hint} (or -1 for one group per row). The suite "
                f"itself accepts {spec.group_size} and quantizes a shorter last group."
            )
        for size, what in ((layer.in_features, "inputs"), (layer.out_features, "outputs")):
            if size % 32:
                raise KickError(f"{name} has {size} {what}, not a multiple of 32: GPTQ kernels cannot pack it, "
                                "so this model cannot be exported")


def export_gptq(settings: RunSettings, root: Path, out: Path, *, verify: bool = True) -> ExportResult:
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KickError(f"{out} already exists: choose another --out or remove it (an export never overwrites)")
    check_spec_exportable(settings.spec)
    session = KickSession(replace(settings, compress_cache=False), root)  # the cache keeps no integer form
    loaded = load_model(session.ref, dtype=session.dtype, device=session.device, cache_dir=settings.cache_dir)
    check_layers_exportable(loaded.model, settings.spec)
    quantizer = session.steps[-1][1]  # GPTQ/RTN, or GPTQ after a pruner
    quantizer.keep_integer_form = True
    session.compress(loaded)
    if set(quantizer.quantized_layers) != {name for name, _ in compressible_layers(loaded.model)}:
        raise KickError("the quantizer did not record every layer's integer form: this is a kick-checks bug")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        layers = write_checkpoint(loaded, quantizer.quantized_layers, settings.spec, staging)
        verification = _verify(staging, loaded) if verify else "not checked (--no-verify)"
        provenance = {
            "spec": settings.spec.to_dict(),
            "label": settings.spec.label(),
            "model": {key: value for key, value in loaded.fingerprint.items() if key != "compression"},
            "compression": session.compression.to_dict(),
            "verification": verification,
        }
        (staging / "kick-export.json").write_text(json.dumps(provenance, indent=1, sort_keys=True))
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(path.stat().st_size for path in out.iterdir())
    return ExportResult(out, layers, size, checkpoint_format(settings.spec.symmetric), verification)


def write_checkpoint(loaded: LoadedModel, quantized: dict, spec: CompressionSpec, folder: Path) -> int:
    """The GPTQ checkpoint of ``loaded`` (quantized layers packed from their integer form) into ``folder``; returns
    the number of layers packed. Also serves ``--kick-backend vllm-gptq``."""
    from safetensors.torch import save_file

    model = loaded.model
    paths = {id(module): path for path, module in model.named_modules()}
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        output = model.get_output_embeddings()
        if output is not None:
            state.pop(f"{paths[id(output)]}.weight", None)  # tied to the input embeddings: stored once
    fmt = checkpoint_format(spec.symmetric)
    count = 0
    for name, layer in compressible_layers(model):
        path = paths[id(layer)]
        del state[f"{path}.weight"]
        state.update(pack_layer(quantized[name], spec.bits, spec.symmetric).tensors(path))
        if layer.bias is not None:
            state[f"{path}.bias"] = layer.bias.detach().cpu().to(torch.float16)
        count += 1
    save_file({name: tensor.contiguous().clone() for name, tensor in state.items()},
              str(folder / "model.safetensors"), metadata={"format": "pt"})

    quantization = {
        "quant_method": "gptq",
        "bits": spec.bits,
        "group_size": spec.group_size,
        "desc_act": spec.act_order,
        "sym": spec.symmetric,
        "checkpoint_format": fmt,
        "pack_dtype": "int32",
        "lm_head": False,
        "true_sequential": spec.sequential == "layer",
        "damp_percent": 0.01,
        "meta": {"quantizer": [f"kick-checks:{spec.method}"]},
    }
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["quantization_config"] = quantization
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    (folder / "quantize_config.json").write_text(json.dumps(quantization, indent=2))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return count


def gptqmodel_available() -> bool:
    return importlib.util.find_spec("gptqmodel") is not None


def _verify(folder: Path, loaded: LoadedModel) -> str:
    """Load the export with GPTQModel and compare its next-token predictions on a probe with the suite's."""
    if not gptqmodel_available():
        return f"not checked: GPTQModel is not installed ({INSTALL_HINT})"
    import gptqmodel
    from gptqmodel import BACKEND, GPTQModel

    ids = loaded.tokenizer(PROBE, return_tensors="pt").input_ids
    with torch.no_grad():
        ours = loaded.model(ids.to(loaded.model.device)).logits.float().cpu()
        try:
            dtype = loaded.model.dtype if loaded.model.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
            served = GPTQModel.load(str(folder), device="cpu", backend=BACKEND.TORCH, dtype=dtype)
        except Exception as error:  # noqa: BLE001 - any failure to read the export is a failed export
            raise KickError(f"GPTQModel {gptqmodel.__version__} could not load the export "
                            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                            "nothing was written") from None
        theirs = served.model(ids).logits.float().cpu()
    agreement = float((ours.argmax(-1) == theirs.argmax(-1)).float().mean())
    relative = float((ours - theirs).norm() / ours.norm().clamp(min=1e-12))
    summary = (f"loaded with GPTQModel {gptqmodel.__version__} (torch kernel, CPU, {str(dtype).split('.')[-1]}): "
               f"next-token agreement "
               f"{agreement:.0%} on {ids.shape[1]} probe tokens, relative logit difference {relative:.2e}")
    if agreement < MIN_AGREEMENT:
        raise KickError(f"the export does not reproduce the tested model ({summary}); nothing was written")
    return summary
