"""Run settings: command-line options over ``[tool.kick]`` of pyproject.toml over defaults.

Both the pytest plugin and the ``kick`` CLI build a :class:`RunSettings` here, so they agree on every rule.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from kick_checks.batching import parse_batch_size
from kick_checks.comparison import DEFAULT_TOLERANCE
from kick_checks.errors import KickError
from kick_checks.models import DEFAULT_MODEL
from kick_checks.spec import CompressionSpec, SpecError, build_spec, positive_int

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: Keys accepted in ``[tool.kick]`` and what they must hold.
CONFIG_KEYS: dict[str, type | tuple[type, ...]] = {
    "model": str,
    "dtype": str,
    "device": str,
    "method": str,
    "sparsity": (int, float),
    "pattern": str,
    "calib_samples": int,
    "calib_seqlen": int,
    "calib_seed": int,
    "calib_data": str,
    "tolerance": (int, float, str),
    "tolerances": dict,
    "baselines_dir": str,
    "cache_dir": str,
    "data": dict,
    "limit": int,
    "judge_model": str,
    "judge_base_url": str,
    "ppl_seqlen": int,
    "bits": int,
    "group_size": int,
    "symmetric": bool,
    "act_order": bool,
    "sequential": str,
    "gate": str,
    "alpha": (int, float),
    "batch_size": (int, str),
}
_KIND_NAMES = {str: "string", int: "whole number", dict: "table"}


def read_tool_config(pyproject: Path | None) -> dict:
    """The ``[tool.kick]`` table of a pyproject.toml (empty if absent), with keys and types checked."""
    if pyproject is None or not pyproject.is_file():
        return {}
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise KickError(f"{pyproject} is not valid TOML ({error}): fix the file") from None
    table = document.get("tool", {}).get("kick", {})
    for key, value in table.items():
        if key not in CONFIG_KEYS:
            raise KickError(
                f"[tool.kick] key {key!r} in {pyproject} is unknown: use one of {', '.join(sorted(CONFIG_KEYS))}"
            )
        expected = CONFIG_KEYS[key]
        if expected is bool:
            if not isinstance(value, bool):
                raise KickError(f"[tool.kick] {key} = {value!r} in {pyproject} must be true or false")
        elif not isinstance(value, expected) or isinstance(value, bool):
            kind = _KIND_NAMES.get(expected, "number")
            raise KickError(f"[tool.kick] {key} = {value!r} in {pyproject} must be a {kind}")
    return table


TOLERANCE_KINDS = ("relative", "absolute", "recovery")


@dataclass(frozen=True)
class Tolerance:
    """How much a task may lose: a relative drop (default), an absolute drop in the metric's units
    (``abs:0.02``), or a minimum recovery ratio compressed / dense (``recovery:0.9``)."""

    value: float
    kind: str = "relative"


def _tolerance_value(text, where: str) -> Tolerance:
    raw = str(text).strip()
    kind, _, number = raw.partition(":") if ":" in raw else ("relative", "", raw)
    kind = {"rel": "relative", "abs": "absolute"}.get(kind.strip(), kind.strip())
    if kind not in TOLERANCE_KINDS:
        raise KickError(f"{where} {text!r} has an unknown kind: use VALUE, abs:VALUE or recovery:VALUE")
    try:
        value = float(number)
    except (TypeError, ValueError):
        raise KickError(f"{where} {text!r} is not a number: give a fraction such as 0.05 for 5%") from None
    if kind == "relative" and not 0.0 <= value <= 1.0:
        raise KickError(f"{where} {text!r} is outside [0, 1]: give the allowed relative drop, e.g. 0.05")
    if kind == "absolute" and value < 0:
        raise KickError(f"{where} {text!r} is negative: give the allowed drop in the metric's units, e.g. abs:0.02")
    if kind == "recovery" and not 0.0 < value <= 1.0:
        raise KickError(f"{where} {text!r} is outside (0, 1]: give the share of the dense score to keep, e.g. 0.9")
    return Tolerance(value, kind)


def parse_tolerances(option_values: list[str], config: dict) -> tuple[Tolerance, dict[str, Tolerance]]:
    """The default tolerance and per-task ones, from config then ``--kick-tolerance [TASK=]VALUE`` options."""
    default = _tolerance_value(config.get("tolerance", DEFAULT_TOLERANCE), "[tool.kick] tolerance")
    per_task = {
        str(task): _tolerance_value(value, f"[tool.kick] tolerances.{task}")
        for task, value in config.get("tolerances", {}).items()
    }
    for entry in option_values or []:
        if "=" in entry:
            task, _, value = entry.partition("=")
            per_task[task.strip()] = _tolerance_value(value, f"--kick-tolerance {task.strip()}=")
        else:
            default = _tolerance_value(entry, "--kick-tolerance")
    return default, per_task


def parse_data_paths(option_values: list[str], config: dict) -> dict[str, Path]:
    """``--kick-data NAME=PATH`` entries over ``[tool.kick.data]``."""
    paths = {str(name): Path(str(path)) for name, path in config.get("data", {}).items()}
    for entry in option_values or []:
        name, separator, path = entry.partition("=")
        if not separator or not name.strip() or not path.strip():
            raise KickError(f"--kick-data {entry!r} must be NAME=PATH, e.g. factoid_qa=my_questions.jsonl")
        paths[name.strip()] = Path(path.strip())
    return paths


@dataclass
class RunSettings:
    model: str = DEFAULT_MODEL
    dtype: str = "auto"
    device: str = "auto"
    spec: CompressionSpec = field(default_factory=CompressionSpec)
    tolerance: Tolerance = Tolerance(DEFAULT_TOLERANCE)
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    update_baselines: bool = False
    update_missing: bool = False
    baselines_dir: Path | None = None
    cache_dir: Path | None = None
    data_paths: dict[str, Path] = field(default_factory=dict)
    calib_data: Path | None = None
    limit: int | None = None
    judge_model: str | None = None
    judge_base_url: str | None = None
    ppl_seqlen: int | None = None
    gate: str = "threshold"
    alpha: float = 0.05
    compress_cache: bool = True
    batch_size: int | str | None = None  # --kick-batch-size: a number, "auto", or None for each task's default

    def tolerance_for(self, task_key: str) -> Tolerance:
        """A task's tolerance: its own key, then its data name (``retrieval_qa`` covers both variants)."""
        if task_key in self.tolerances:
            return self.tolerances[task_key]
        return self.tolerances.get(task_key.split(".")[0], self.tolerance)


def build_settings(options: dict, config: dict, root: Path) -> RunSettings:
    """Combine raw option values (``None`` when not given) with ``[tool.kick]`` config."""

    def pick(name: str):
        value = options.get(name)
        return value if value is not None else config.get(name)

    try:
        spec = build_spec(
            method=pick("method"),
            sparsity=pick("sparsity"),
            pattern=pick("pattern"),
            calib_samples=pick("calib_samples"),
            calib_seqlen=pick("calib_seqlen"),
            calib_seed=pick("calib_seed"),
            bits=pick("bits"),
            group_size=pick("group_size"),
            symmetric=False if options.get("asym") else config.get("symmetric"),
            act_order=options.get("act_order") or config.get("act_order"),
            sequential=pick("sequential"),
        )
    except SpecError as error:
        raise KickError(str(error)) from None
    update = bool(options.get("update_baselines"))
    update_missing = bool(options.get("update_missing"))
    if (update or update_missing) and not spec.is_dense:
        flag = "--kick-update-baselines" if update else "--kick-update-missing"
        raise KickError(f"{flag} records the dense model: drop --sparsity/--kick-pattern/--kick-bits from this run")
    default_tolerance, per_task = parse_tolerances(options.get("tolerance") or [], config)

    def path_of(name: str) -> Path | None:
        value = pick(name)
        if value is None:
            return None
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else root / path

    def positive(name: str, option: str) -> int | None:
        value = pick(name)
        try:
            return None if value is None else positive_int(value, option)
        except SpecError as error:
            raise KickError(str(error)) from None

    gate = (pick("gate") or "threshold").strip()
    if gate not in ("threshold", "significant"):
        raise KickError(f"--kick-gate {gate!r} is unknown: use threshold or significant")
    alpha = pick("alpha")
    try:
        alpha = 0.05 if alpha is None else float(alpha)
    except (TypeError, ValueError):
        raise KickError(f"--kick-alpha {alpha!r} is not a number: give a significance level such as 0.05") from None
    if not 0 < alpha < 1:
        raise KickError(f"--kick-alpha {alpha} is outside (0, 1): give a significance level such as 0.05")

    return RunSettings(
        model=pick("model") or DEFAULT_MODEL,
        dtype=pick("dtype") or "auto",
        device=pick("device") or "auto",
        spec=spec,
        tolerance=default_tolerance,
        tolerances=per_task,
        update_baselines=update,
        update_missing=update_missing,
        baselines_dir=path_of("baselines_dir"),
        cache_dir=path_of("cache_dir"),
        data_paths=parse_data_paths(options.get("data") or [], config),
        calib_data=path_of("calib_data"),
        limit=positive("limit", "--kick-limit"),
        judge_model=pick("judge_model") or None,
        judge_base_url=pick("judge_base_url") or None,
        ppl_seqlen=positive("ppl_seqlen", "--kick-ppl-seqlen"),
        gate=gate,
        alpha=alpha,
        compress_cache=not options.get("no_compress_cache"),
        batch_size=parse_batch_size(pick("batch_size")),
    )
