"""The compressor protocol, the registry of named methods, and the base class of our pruners.

A compressor is anything callable as ``compressor(model, spec, calibration)`` that changes the model's
weights in place. It never loads models, reads options or writes files. ``calibration`` is a
``[samples, seqlen]`` tensor of token ids (or ``None`` for methods that need none).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from compressors.layerwise import InputStatistic, walk_blocks
from compressors.spec import CompressionSpec, SpecError


@runtime_checkable
class Compressor(Protocol):
    """Compress ``model`` in place according to ``spec``, using ``calibration`` token ids if needed."""

    needs_calibration: bool

    def __call__(self, model: nn.Module, spec: CompressionSpec, calibration: torch.Tensor | None) -> None: ...


_REGISTRY: dict[str, Callable[[], Compressor]] = {}


def register(name: str) -> Callable:
    """Class decorator: make a compressor available as ``--kick-method NAME``."""

    def add(factory):
        _REGISTRY[name] = factory
        return factory

    return add


ENTRY_POINT_GROUP = "kick_checks.compressors"


def available_methods() -> list[str]:
    _load_builtins()
    return sorted({*_REGISTRY, *(entry.name for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))})


def _entry_point(name: str):
    """A compressor that an installed package declares under ``[project.entry-points."kick_checks.compressors"]``."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            try:
                return entry.load()
            except Exception as error:
                raise SpecError(f"--kick-method {name!r}: its entry point {entry.value} fails to load ({error}): "
                                "reinstall the package that provides it") from None
    return None


def _instantiate(target, what: str) -> Compressor:
    compressor = target() if isinstance(target, type) else target
    if not callable(compressor):
        raise SpecError(f"--kick-method {what} is not callable: point it at a function or class")
    return compressor


def get_compressor(method: str) -> Compressor:
    """The compressor for a registered name, or for an import path ``package.module:attribute``."""
    _load_builtins()
    if method in _REGISTRY:
        return _REGISTRY[method]()
    plugin = _entry_point(method)
    if plugin is not None:
        return _instantiate(plugin, f"entry point {method!r}")
    if ":" in method:
        return _import_compressor(method)
    raise SpecError(
        f"--kick-method {method!r} is unknown: use one of {', '.join(available_methods())} "
        "or an import path package.module:function"
    )


def _import_target(path: str):
    module_name, _, attribute = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise SpecError(f"--kick-method {path!r} cannot be imported ({error}): check the module path") from None


def _import_compressor(path: str) -> Compressor:
    return _instantiate(_import_target(path), repr(path))


def canonical_method(method: str) -> str:
    """The one name of the compressor that ``method`` denotes, however it was spelt.

    A plug-in can be named by its entry point (``row-magnitude``) or by its import path
    (``kick_example_pruner:RowMagnitude``, or a re-export of it); reports, caches and ``kick compare`` key runs by
    the method, so two spellings of one function must not count as two methods. The registered or entry-point
    name wins (the name users see in ``available_methods``); a callable no name points at is its defining
    ``module:qualname``. A method that cannot be resolved is returned as given: ``get_compressor`` reports it.
    """
    _load_builtins()
    if method in _REGISTRY:
        return method
    try:
        target = _entry_point(method) or (_import_target(method) if ":" in method else None)
    except SpecError:
        return method
    if target is None:
        return method
    registered = [name for name, factory in _REGISTRY.items() if factory is target]
    if registered:
        return registered[0]
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda entry: entry.name):
        try:
            if entry.load() is target:
                return entry.name
        except Exception:  # noqa: BLE001 - a broken plug-in is reported when it is used, not here
            continue
    qualname = getattr(target, "__qualname__", None)
    defined_at = f"{getattr(target, '__module__', '')}:{qualname}"
    if qualname is None or "<" in qualname:
        return method
    try:
        return defined_at if _import_target(defined_at) is target else method
    except SpecError:
        return method


_BUILTIN_MODULES = (
    "compressors.magnitude",
    "compressors.wanda",
    "compressors.sparsegpt",
    "compressors.gptq",
    "compressors.random_pruning",
    "compressors.global_magnitude",
)


def _load_builtins() -> None:
    """Import the built-in methods so they register themselves (imports are cached, so this is cheap)."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


class LayerwisePruner:
    """Base of our pruners: the shared calibration walk plus one per-layer rule.

    Subclasses set ``needs_calibration``, build a statistic per layer (``statistic``) and return the pruned
    weight for one layer (``prune_weight``). The weight math runs in float32 on the layer's device and the
    result is cast back to the layer's dtype.
    """

    needs_calibration: bool = True

    def statistic(self, name: str, layer: nn.Linear) -> InputStatistic:
        raise NotImplementedError

    def prune_weight(self, weight: torch.Tensor, statistic, spec: CompressionSpec) -> torch.Tensor:
        raise NotImplementedError

    def after_layer(self, name: str, original: torch.Tensor, compressed: torch.Tensor, statistic) -> None:
        """Called with each layer's weights before and after; quantizers record their error here."""

    def __call__(self, model: nn.Module, spec: CompressionSpec, calibration: torch.Tensor | None) -> None:
        def compress(name: str, layer: nn.Linear, statistic) -> None:
            original = layer.weight.data.float()
            pruned = self.prune_weight(original, statistic, spec)
            self.after_layer(name, original, pruned, statistic)
            layer.weight.data.copy_(pruned.to(layer.weight.dtype))

        walk_blocks(
            model,
            calibration if self.needs_calibration else None,
            statistic=self.statistic if self.needs_calibration else None,
            compress=compress,
            sequential=spec.sequential,
        )
