"""The numerical environment a model runs in: what changes floating-point rounding without changing the model.

The same weights give different greedy answers on different machines when the arithmetic is low precision:
bfloat16 matrix products accumulate in another order on a CPU with AMX tiles than on one with AVX-512 BF16
instructions or one emulating bfloat16 with AVX2, and another batch size or thread count changes the shapes the
kernels block over. :func:`numerical_environment` records these, so a baseline and a report say where their
numbers came from, and :func:`environment_differences` names what differs between two of them.

None of these fields is a reason to refuse a baseline: the gate absorbs their effect through the dense model's
per-item noise floor (:mod:`kick_checks.gate.noise_floor`). They are reported, once, when they differ.

The CPU's kernel class is the best of ``amx`` (AMX bfloat16 tiles), ``avx512_bf16``, ``avx512``, ``avx2`` that the
processor has *and* that PyTorch and oneDNN are allowed to use: ``ATEN_CPU_CAPABILITY=avx2`` and
``ONEDNN_MAX_CPU_ISA=AVX2`` cap it, which is how one machine imitates another.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

import torch

#: Kernel classes from the least to the most capable.
ISA_LEVELS = ("default", "avx2", "avx512", "avx512_bf16", "amx")
#: ``ONEDNN_MAX_CPU_ISA`` values and the class each caps the kernels at (oneDNN's names, upper case).
_ONEDNN_CAPS = {
    "SSE41": "default", "AVX": "default", "AVX2": "avx2", "AVX2_VNNI": "avx2", "AVX2_VNNI_2": "avx2",
    "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512", "AVX512_CORE_BF16": "avx512_bf16",
    "AVX10_1_512": "avx512_bf16", "AVX512_CORE_FP16": "avx512_bf16", "AVX512_CORE_AMX": "amx",
    "AVX512_CORE_AMX_FP16": "amx", "AVX10_1_512_AMX": "amx", "AVX10_1_512_AMX_FP16": "amx", "ALL": "amx",
}
#: Fields that differ between two runs' environments without being worth a line (they move no number).
_QUIET_FIELDS = ("platform", "python", "cpu_model")


@cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


@cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _hardware_isa(flags: frozenset[str]) -> str:
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "default"


def cpu_isa(flags: frozenset[str] | None = None, environ: dict[str, str] | None = None) -> str:
    """The kernel class this process's CPU arithmetic uses: the hardware's, capped by ``ATEN_CPU_CAPABILITY`` and
    ``ONEDNN_MAX_CPU_ISA``. ``flags`` and ``environ`` default to this machine's (given in tests)."""
    flags = _cpu_flags() if flags is None else flags
    environ = os.environ if environ is None else environ
    if not flags:  # not Linux: say what PyTorch itself reports
        return str(torch.backends.cpu.get_cpu_capability()).lower()
    level = ISA_LEVELS.index(_hardware_isa(flags))
    aten = environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten in ("default", "avx2"):
        level = min(level, ISA_LEVELS.index(aten))
    onednn = environ.get("ONEDNN_MAX_CPU_ISA", environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    if onednn in _ONEDNN_CAPS:
        level = min(level, ISA_LEVELS.index(_ONEDNN_CAPS[onednn]))
    return ISA_LEVELS[level]


def native_bfloat16(isa: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX). Without it PyTorch emulates bfloat16
    with float32 arithmetic and conversions, several times slower than float32 itself."""
    return (cpu_isa() if isa is None else isa) in ("avx512_bf16", "amx")


def numerical_environment(device: str, dtype: str, model: torch.nn.Module | None = None) -> dict:
    """What the numbers of a run depend on besides the model and the task: device, kernel class, library
    versions, dtype, attention implementation and thread count."""
    import transformers

    environment: dict = {"device": device.split(":")[0], "dtype": dtype}
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        environment.update(device_name=torch.cuda.get_device_name(index), compute_capability=f"{major}.{minor}",
                           cuda=torch.version.cuda)
    else:
        environment.update(device_name=_cpu_model(), isa=cpu_isa())
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None) if model is not None else None
    environment.update(
        attention=attention or "unknown",
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
    )
    return environment


def environment_differences(recorded: dict, current: dict) -> list[str]:
    """``field: recorded -> current`` for each field that differs and may move numbers (empty when none)."""
    changes = []
    for key in recorded.keys() | current.keys():
        if key in _QUIET_FIELDS or recorded.get(key) == current.get(key):
            continue
        changes.append(f"{key} {recorded.get(key, '?')} -> {current.get(key, '?')}")
    return sorted(changes)


def environment_label(environment: dict) -> str:
    """A short description, e.g. ``cpu avx512_bf16, bfloat16, 2 threads, torch 2.13.0``."""
    kernels = environment.get("isa") or environment.get("compute_capability", "")
    place = " ".join(part for part in (environment.get("device", "?"), str(kernels)) if part)
    return (f"{place}, {environment.get('dtype', '?')}, {environment.get('threads', '?')} threads, "
            f"torch {environment.get('torch', '?')}")
