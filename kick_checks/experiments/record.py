"""What a run's JSON report says about it as an experiment: its parent, and the keys that make runs comparable.

A run's parent is what it was derived from: the dense model, or, for prune-then-quantize, the pruned model (the
same spec without the bits), which another run may have measured on its own. Two runs are "the same experiment"
when their model identity and their spec key agree; the spec key leaves out quantization settings that do not
apply (a group size means nothing without bits, calibration settings nothing to a method that reads no
calibration data) and fills the fields old reports lack with today's defaults.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from compressors import canonical_method, get_compressor
from compressors.spec import DEFAULT_SEQUENTIAL, CompressionSpec

#: Report keys this package adds; under pytest-xdist the first worker's measurement is kept.
EXPERIMENT_KEYS = ("parent", "efficiency", "divergence")
MODEL_KEY_FIELDS = ("alias", "source", "name", "sha256", "revision", "dtype")
_QUANTIZATION_FIELDS = ("bits", "group_size", "symmetric", "act_order")
_CALIBRATION_FIELDS = ("calib_samples", "calib_seqlen", "calib_seed", "sequential")


def parent_of(spec: CompressionSpec, step_names: list[str]) -> dict | None:
    """The parent a run with ``spec`` derives from: none for the dense model, the pruned model when a pruning
    step's survivors are then quantized, else the dense model."""
    if spec.is_dense:
        return None
    if len(step_names) > 1:
        pruned = replace(spec, bits=None)
        return {"label": pruned.label(), "spec": pruned.to_dict(),
                "how": f"{step_names[0]} pruned, then {' and '.join(step_names[1:])} quantized in the same run"}
    return {"label": "dense", "spec": None}


@lru_cache(maxsize=64)
def _calibrates(method: str) -> bool:
    """Whether ``method`` reads calibration data (an unknown plug-in is taken to, so its settings count)."""
    try:
        return bool(getattr(get_compressor(method), "needs_calibration", True))
    except Exception:
        return True


@lru_cache(maxsize=64)
def method_identity(method: str) -> str:
    """The canonical name of a method as a report recorded it: reports written before names were canonical may
    hold a plug-in's import path where newer ones hold its entry-point name, and both are one method."""
    return canonical_method(method)


def spec_key(spec: dict | None) -> tuple:
    """A hashable key of a spec as reports store it (``None`` or an all-default dense spec: the dense model)."""
    if not spec or (not spec.get("sparsity") and spec.get("bits") is None):
        return ("dense",)
    fields = dict(spec)
    fields["method"] = method_identity(str(fields.get("method")))
    fields.setdefault("sequential", DEFAULT_SEQUENTIAL)
    if fields.get("bits") is None:
        for name in _QUANTIZATION_FIELDS:
            fields.pop(name, None)
        if not _calibrates(str(fields.get("method"))):  # magnitude 50% is magnitude 50% whatever the windows
            for name in _CALIBRATION_FIELDS:
                fields.pop(name, None)
    if not fields.get("sparsity"):
        fields.pop("pattern", None)
    return tuple(sorted((name, str(value)) for name, value in fields.items()))


def model_key(model: dict) -> tuple:
    """The model identity that must agree for two runs' scores to be comparable (dtype included)."""
    return tuple((name, str(model.get(name))) for name in MODEL_KEY_FIELDS if model.get(name) is not None)


def experiment_fields(session) -> dict:
    """The report entries of :data:`EXPERIMENT_KEYS` for a session."""
    measurement = getattr(session, "measurement", None)
    return {
        "parent": parent_of(session.settings.spec, [name for name, _ in session.steps]),
        "efficiency": measurement.efficiency if measurement else None,
        "divergence": measurement.divergence if measurement else None,
    }
