"""A disk cache of compressed weights, so a model is compressed once: across reruns and across xdist workers.

An entry holds the compressed linear weights of the decoder blocks (safetensors) and a marker with the report
of what compression achieved. Its key covers everything that decides the result: the model fingerprint (file
hash, dtype), the spec (method, sparsity, pattern, bits, calibration settings), the calibration text and the
source of the compressor code. A file lock makes one process compress while the others wait and then load.

An entry is written to a staging folder and renamed into place, and its weights are checked against the hash
in its marker before use, so a run killed mid-write or a damaged file is detected and rebuilt, never used. A
staging folder is named after its writer's process id (``.ENTRY.<pid>-<random>.tmp``): the one a killed run
leaves behind, the size of the model's weights, is removed by the next run that uses the cache, which says so.
A damaged entry is a :class:`~kick_checks.errors.KickWarning`, which pytest shows in its warnings summary.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock

from compressors import CompressionReport
from compressors.layerwise import compressible_layers
from compressors.report import LayerSparsity
from kick_checks.atomic import TEMPORARY_SUFFIX, remove_stale_temporaries, temporary_prefix, with_umask_modes
from kick_checks.errors import KickWarning

log = logging.getLogger("kick_checks")
MARKER = "kick-compressed.json"
WEIGHTS = "weights.safetensors"
FORMAT_VERSION = 1


def compressor_sources(compressors: list[object]) -> list[Path]:
    """The source files whose text decides what ``compressors`` compute: the file defining each one and its base
    classes, and every module of our ``compressors`` package (the calibration walk, statistics, masks and
    quantization grids are used by our methods and by plug-ins built on them, without being their base classes).
    """
    import compressors as package

    files: list[Path] = sorted(Path(package.__file__).parent.glob("*.py"))
    for compressor in compressors:
        target = compressor if inspect.isfunction(compressor) or inspect.isclass(compressor) else type(compressor)
        bases = inspect.getmro(target) if inspect.isclass(target) else (target,)
        for item in bases:
            if getattr(item, "__module__", "builtins") == "builtins":
                continue
            try:
                source = inspect.getsourcefile(item)
            except TypeError:
                source = None
            if source and Path(source) not in files:
                files.append(Path(source))
    return files


def code_hash(compressors: list[object]) -> str:
    """Hash of the source files that decide what the compressors compute (:func:`compressor_sources`), so
    editing one invalidates their entries; a compressor without a source file counts by its qualified name."""
    digest = hashlib.sha256()
    for source in compressor_sources(compressors):
        try:
            digest.update(source.read_bytes())
        except OSError:
            digest.update(str(source).encode())
    for compressor in compressors:
        target = compressor if inspect.isfunction(compressor) or inspect.isclass(compressor) else type(compressor)
        digest.update(f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}".encode())
    return digest.hexdigest()


def entry_key(model_fingerprint: dict, spec: dict, calibration_sha256: str | None, compressor_code: str) -> str:
    document = {
        "format": FORMAT_VERSION,
        "model": {key: value for key, value in model_fingerprint.items() if key != "compression"},
        "spec": spec,
        "calibration": calibration_sha256,
        "code": compressor_code,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:24]


def worker_name() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


class CompressedCache:
    def __init__(self, cache_dir: Path, alias: str, key: str) -> None:
        self.root = Path(cache_dir) / "compressed"
        self.folder = self.root / f"{alias}-{key}"
        self.key = key
        self.notes: list[str] = []  # for the run's summary: staging folders of killed runs that were removed

    def compressed_once(
        self, model: torch.nn.Module, compress: Callable[[], CompressionReport]
    ) -> tuple[CompressionReport, str]:
        """Load the entry into ``model`` if a valid one exists; otherwise compress and store it (under a lock).
        Returns the report and ``"loaded"`` or ``"compressed"``."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.notes = [f"removed {path}, left by an interrupted write of the compressed-weights cache"
                      for path in remove_stale_temporaries(self.root)]
        with FileLock(str(self.folder) + ".lock"):
            report = self._load(model)
            if report is not None:
                return report, "loaded"
            report = compress()
            self._store(model, report)
            return report, "compressed"

    def _load(self, model: torch.nn.Module) -> CompressionReport | None:
        marker = self.folder / MARKER
        if not marker.is_file():
            if self.folder.exists():
                shutil.rmtree(self.folder, ignore_errors=True)
            return None
        try:
            document = json.loads(marker.read_text())
            weights = self.folder / WEIGHTS
            if document.get("key") != self.key or _file_sha256(weights) != document["weights_sha256"]:
                raise ValueError("hash mismatch")
            from safetensors.torch import load_file

            tensors = load_file(str(weights))
            layers = dict(compressible_layers(model))
            if set(tensors) != set(layers):
                raise ValueError("layer names differ")
            with torch.no_grad():
                for name, layer in layers.items():
                    layer.weight.copy_(tensors[name].to(layer.weight.device, layer.weight.dtype))
            report = _report_from(document["report"])
        except (ValueError, KeyError, TypeError, OSError) as error:
            warnings.warn(KickWarning(f"compression cache entry {self.folder} is damaged ({error}): rebuilding it"),
                          stacklevel=2)
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        log.info("worker %s loaded the compressed weights from %s (compressed by %s)", worker_name(), self.folder,
                 document.get("created_by"))
        return report

    def _store(self, model: torch.nn.Module, report: CompressionReport) -> None:
        from safetensors.torch import save_file

        staging: Path | None = None
        try:
            staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(self.folder.name), suffix=TEMPORARY_SUFFIX,
                                            dir=self.root))
            tensors = {name: layer.weight.detach().cpu().contiguous() for name, layer in compressible_layers(model)}
            save_file(tensors, str(staging / WEIGHTS))
            marker = {
                "key": self.key,
                "weights_sha256": _file_sha256(staging / WEIGHTS),
                "report": report.to_dict(),
                "created_by": worker_name(),
            }
            (staging / MARKER).write_text(json.dumps(marker, indent=1))
            if self.folder.exists():
                shutil.rmtree(self.folder)
            os.replace(with_umask_modes(staging), self.folder)
        except OSError as error:  # a full disk must not fail the run: the model in memory is fine
            log.warning("could not store the compressed weights in %s (%s); continuing without the cache",
                        self.folder, error)
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            log.info("worker %s compressed the model and stored it in %s", worker_name(), self.folder)


def clear(cache_dir: Path) -> int:
    """Remove every compressed entry; returns how many there were."""
    root = Path(cache_dir) / "compressed"
    if not root.is_dir():
        return 0
    entries = [path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")]
    shutil.rmtree(root)
    return len(entries)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _report_from(document: dict) -> CompressionReport:
    layers = [LayerSparsity(layer["name"], layer["numel"], layer["zeros"]) for layer in document["layers"]]
    errors = {layer["name"]: layer["quantization_error"] for layer in document["layers"]
              if "quantization_error" in layer}
    return CompressionReport(layers=layers, seconds=document["seconds"], quantization_errors=errors)
