"""Run settings: command-line options over ``[tool.kick]`` of pyproject.toml over defaults.

Both the pytest plugin and the ``kick`` CLI build a :class:`RunSettings` here from the options declared in
:mod:`kick_checks.options`, so they agree on every rule. A setting keyed by task (``--kick-tolerance TASK=...``,
``[tool.kick] tolerances``, ``--kick-data NAME=...``) must name a registered task: a misspelt key is an error that
lists the known ones, never a setting silently ignored.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from compressors import canonical_method
from compressors.spec import CompressionSpec, SpecError, build_spec, positive_int
from kick_checks.engine.batching import parse_batch_size
from kick_checks.errors import KickError
from kick_checks.gate.noise_floor import DEFAULT_KINDS, parse_kinds
from kick_checks.gate.store import SAMPLE_UPDATES
from kick_checks.gate.tolerance import DEFAULT_TOLERANCE, Tolerance
from kick_checks.model.loading import DEFAULT_MODEL
from kick_checks.options import OptionValues, config_keys, modernize_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_KIND_NAMES = {str: "string", int: "whole number", dict: "table"}
#: The spec fields an option of the same name sets (``asym`` is the inverse of ``symmetric``).
_SPEC_OPTIONS = ("method", "sparsity", "pattern", "calib_samples", "calib_seqlen", "calib_seed", "bits",
                 "group_size", "act_order", "sequential")


def read_tool_config(pyproject: Path | None) -> dict:
    """The ``[tool.kick]`` table of a pyproject.toml (empty if absent), with keys and types checked and renamed
    keys read under their new names."""
    if pyproject is None or not pyproject.is_file():
        return {}
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise KickError(f"{pyproject} is not valid TOML ({error}): fix the file") from None
    table = modernize_config(document.get("tool", {}).get("kick", {}), str(pyproject))
    keys = config_keys()
    for key, value in table.items():
        if key not in keys:
            raise KickError(f"[tool.kick] key {key!r} in {pyproject} is unknown: use one of {', '.join(sorted(keys))}")
        expected = keys[key]
        if expected is bool:
            if not isinstance(value, bool):
                raise KickError(f"[tool.kick] {key} = {value!r} in {pyproject} must be true or false")
        elif not isinstance(value, expected) or isinstance(value, bool):
            kind = _KIND_NAMES.get(expected, "number")
            raise KickError(f"[tool.kick] {key} = {value!r} in {pyproject} must be a {kind}")
    return table


def _task_key(key: str, where: str) -> str:
    from kick_checks.tasks import check_task_key

    return check_task_key(key.strip(), where)


def _dotted_keys(table: dict, prefix: str = "") -> list[tuple[str, object]]:
    """``(key, value)`` pairs of a TOML table with its sub-tables joined back into dotted keys.

    TOML reads an unquoted ``retrieval_qa.closed_book = 0.2`` as the table ``{"retrieval_qa": {"closed_book": 0.2}}``;
    joined back, the key is the task the user wrote, and a misspelt one is reported as an unknown task rather than
    as a tolerance of an unknown kind.
    """
    pairs: list[tuple[str, object]] = []
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        pairs.extend(_dotted_keys(value, f"{dotted}.") if isinstance(value, dict) else [(dotted, value)])
    return pairs


def _toml_task_key(task: str, value: object, split: bool) -> str:
    """A ``[tool.kick] tolerances`` key checked as a task; one that TOML ``split`` into tables and that names no
    task also says how TOML reads an unquoted dot, since that is the likely slip."""
    try:
        return _task_key(task, "[tool.kick] tolerances")
    except KickError as error:
        if not split:
            raise
        raise KickError(f"{error} (TOML splits an unquoted dotted key into tables: quote the task as one key, e.g. "
                        f'"retrieval_qa.closed_book" = {value})') from None


def parse_tolerances(option_values: list[str], config: dict) -> tuple[Tolerance, dict[str, Tolerance]]:
    """The default tolerance and per-task ones, from config then ``--kick-tolerance [TASK=]VALUE`` options."""
    default = Tolerance.parse(config.get("tolerance", DEFAULT_TOLERANCE), "[tool.kick] tolerance")
    per_task = {}
    tolerances = config.get("tolerances", {})
    for task, value in _dotted_keys(tolerances):
        key = _toml_task_key(task, value, split=task not in tolerances)
        per_task[key] = Tolerance.parse(value, f"[tool.kick] tolerances.{task}")
    for entry in option_values or []:
        if "=" in entry:
            task, _, value = entry.partition("=")
            key = _task_key(task, f"--kick-tolerance {entry}")
            per_task[key] = Tolerance.parse(value, f"--kick-tolerance {key}=")
        else:
            default = Tolerance.parse(entry, "--kick-tolerance")
    return default, per_task


def parse_data_paths(option_values: list[str], config: dict) -> dict[str, Path]:
    """``--kick-data NAME=PATH`` entries over ``[tool.kick.data]``; every NAME must be a task's data name."""
    from kick_checks.tasks import data_names

    known = data_names()
    paths = {}
    entries = [(str(name), str(path), f"[tool.kick.data] {name}") for name, path in config.get("data", {}).items()]
    for entry in option_values or []:
        name, separator, path = entry.partition("=")
        if not separator or not name.strip() or not path.strip():
            raise KickError(f"--kick-data {entry!r} must be NAME=PATH, e.g. factoid_qa=my_questions.jsonl")
        entries.append((name.strip(), path.strip(), f"--kick-data {entry}"))
    for name, path, where in entries:
        if name not in known:
            raise KickError(f"{where}: {name!r} is not a data name: use one of {', '.join(known)}")
        paths[name] = Path(path)
    return paths


def parse_recovery_pools(option_values: list[str], config: dict) -> dict[str, Path]:
    """``--kick-recovery-pool NAME=PATH`` entries over ``[tool.kick.recovery_pool]``; every NAME must be the data
    name of a task that knowledge recovery supports."""
    from kick_checks.recovery.pools import check_pool_names

    entries = {str(name): Path(str(path)) for name, path in config.get("recovery_pool", {}).items()}
    for entry in option_values or []:
        name, separator, path = entry.partition("=")
        if not separator or not name.strip() or not path.strip():
            raise KickError(f"--kick-recovery-pool {entry!r} must be NAME=PATH, e.g. factoid_qa=my_pool.jsonl")
        entries[name.strip()] = Path(path.strip())
    check_pool_names(entries)
    return entries


@dataclass(frozen=True)
class JudgeSettings:
    """Which judge, and how patiently: per-request timeout and attempts, requests in flight, and the time the
    judging of one task may take in all."""

    model: str | None = None
    base_url: str | None = None
    timeout_s: float = 60.0
    attempts: int = 5
    concurrency: int = 4
    budget_s: float = 1800.0


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
    update_sample: str = "refuse"
    noise_floor: tuple[str, ...] = DEFAULT_KINDS  # --kick-noise-floor: perturbations evaluated when recording
    reference: Path | None = None  # --kick-reference: a reference run to gate against
    record_reference: Path | None = None  # --kick-record-reference: where to write this run as a reference
    baselines_dir: Path | None = None
    cache_dir: Path | None = None
    data_paths: dict[str, Path] = field(default_factory=dict)
    calib_data: Path | None = None
    limit: int | None = None
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    ppl_seqlen: int | None = None
    gate: str = "threshold"
    alpha: float = 0.05
    compress_cache: bool = True
    measure: bool = True  # efficiency and divergence on the fixed probe (--kick-no-measure turns it off)
    batch_size: int | str | None = None  # --kick-batch-size: a number, "auto", or None for each task's default
    backend: str = "transformers"  # --kick-backend: what computes generations and likelihoods
    json_report: Path | None = None
    markdown_report: Path | None = None
    recovery: str | None = None  # --kick-recovery: prompt, idp or lora on the knowledge tasks
    recovery_pools: dict[str, Path] = field(default_factory=dict)
    idp_rule: str = "similarity"

    @property
    def judge_model(self) -> str | None:
        return self.judge.model

    def tolerance_for(self, task_key: str) -> Tolerance:
        """A task's tolerance: its own key, then its task name (``retrieval_qa`` covers both variants)."""
        if task_key in self.tolerances:
            return self.tolerances[task_key]
        return self.tolerances.get(task_key.split(".")[0], self.tolerance)


def _number(value, option: str, kind=float, minimum: float = 0.0):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise KickError(f"{option} {value!r} is not a number: give e.g. {kind(60)}") from None
    if not number > minimum:
        raise KickError(f"{option} {value} must be more than {minimum:g}")
    return number


def build_settings(options: dict, config: dict, root: Path) -> RunSettings:
    """Combine raw option values (``None`` when not given) with ``[tool.kick]`` config (already read)."""
    values = OptionValues(options, modernize_config(config, "the given config"))
    pick = values.pick
    spec_options = {name: pick(name) for name in _SPEC_OPTIONS}
    if spec_options["method"] is not None:
        # one method, one name: a plug-in given by its import path is recorded under its entry-point name
        spec_options["method"] = canonical_method(str(spec_options["method"]).strip())
    try:
        spec = build_spec(**spec_options, symmetric=None if pick("asym") is None else not pick("asym"))
    except SpecError as error:
        raise KickError(str(error)) from None
    update, update_missing = bool(options.get("update_baselines")), bool(options.get("update_missing"))
    if (update or update_missing) and not spec.is_dense:
        flag = "--kick-update-baselines" if update else "--kick-update-missing"
        raise KickError(f"{flag} records the dense model: drop --sparsity/--kick-pattern/--kick-bits from this run")
    if (update or update_missing) and (options.get("reference") or options.get("record_reference")):
        raise KickError("--kick-reference and --kick-record-reference gate or record a compressed run: drop them from "
                        "a baseline update")
    default_tolerance, per_task = parse_tolerances(options.get("tolerance") or [], values.config)

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

    gate = str(pick("gate") or "threshold").strip()
    if gate not in ("threshold", "significant", "recoverable"):
        raise KickError(f"--kick-gate {gate!r} is unknown: use threshold, significant or recoverable")
    recovery = pick("recovery") or None
    if recovery is not None and recovery not in ("prompt", "idp", "lora"):
        raise KickError(f"--kick-recovery {recovery!r} is unknown: use prompt, idp or lora")
    if gate == "recoverable" and recovery is None:
        raise KickError("--kick-gate recoverable counts the items recovery brings back as kept, so it needs "
                        "--kick-recovery prompt, idp or lora")
    if recovery is not None and pick("reference"):
        raise KickError("--kick-recovery measures what compression lost against dense; run it without "
                        "--kick-reference (gate against the reference in a run of its own)")
    if recovery is not None and spec.is_dense:
        raise KickError(f"--kick-recovery {recovery} measures what compression lost and never records baselines: "
                        "run it on a compressed model (--sparsity, --kick-bits), without --kick-update-baselines")
    idp_rule = str(pick("idp_rule") or "similarity").strip()
    if idp_rule not in ("similarity", "fit", "confidence"):
        raise KickError(f"--kick-idp-rule {idp_rule!r} is unknown: use similarity, fit or confidence")
    alpha = pick("alpha")
    try:
        alpha = 0.05 if alpha is None else float(alpha)
    except (TypeError, ValueError):
        raise KickError(f"--kick-alpha {alpha!r} is not a number: give a significance level such as 0.05") from None
    if not 0 < alpha < 1:
        raise KickError(f"--kick-alpha {alpha} is outside (0, 1): give a significance level such as 0.05")
    update_sample = str(pick("update_sample") or "refuse").strip()
    if update_sample not in SAMPLE_UPDATES:
        raise KickError(f"--kick-update-sample {update_sample!r} is unknown: use {', '.join(SAMPLE_UPDATES)}")
    backend = str(pick("backend") or "transformers").strip()
    from kick_checks.engine.vllm_backend import check_backend

    check_backend(backend, spec.quantizes, spec.bits)
    judge_defaults = JudgeSettings()
    judge = JudgeSettings(
        model=pick("judge_model") or None,
        base_url=pick("judge_base_url") or None,
        timeout_s=judge_defaults.timeout_s if pick("judge_timeout") is None
        else _number(pick("judge_timeout"), "--kick-judge-timeout"),
        attempts=positive("judge_retries", "--kick-judge-retries") or judge_defaults.attempts,
        concurrency=positive("judge_concurrency", "--kick-judge-concurrency") or judge_defaults.concurrency,
        budget_s=judge_defaults.budget_s if pick("judge_budget") is None
        else _number(pick("judge_budget"), "--kick-judge-budget"),
    )
    return RunSettings(
        model=pick("model") or DEFAULT_MODEL,
        dtype=pick("dtype") or "auto",
        device=pick("device") or "auto",
        spec=spec,
        tolerance=default_tolerance,
        tolerances=per_task,
        update_baselines=update,
        update_missing=update_missing,
        update_sample=update_sample,
        noise_floor=parse_kinds(pick("noise_floor")),
        reference=path_of("reference"),
        record_reference=Path(options["record_reference"]) if options.get("record_reference") else None,
        baselines_dir=path_of("baselines_dir"),
        cache_dir=path_of("cache_dir"),
        data_paths=parse_data_paths(options.get("data") or [], values.config),
        calib_data=path_of("calib_data"),
        limit=positive("limit", "--kick-limit"),
        judge=judge,
        ppl_seqlen=positive("ppl_seqlen", "--kick-ppl-seqlen"),
        gate=gate,
        alpha=alpha,
        # vllm-gptq writes its checkpoint from the quantizer's integer form, which the cache does not keep
        compress_cache=not options.get("no_compress_cache") and backend != "vllm-gptq",
        measure=not options.get("no_measure"),
        batch_size=parse_batch_size(pick("batch_size")),
        backend=backend,
        json_report=Path(options["json"]) if options.get("json") else None,
        markdown_report=Path(options["markdown"]) if options.get("markdown") else None,
        recovery=recovery,
        recovery_pools={name: path if path.is_absolute() else root / path for name, path in
                        parse_recovery_pools(options.get("recovery_pool") or [], values.config).items()},
        idp_rule=idp_rule,
    )


__all__ = ["JudgeSettings", "RunSettings", "Tolerance", "build_settings", "parse_data_paths", "parse_tolerances",
           "read_tool_config"]
