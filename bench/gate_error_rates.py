"""How often the gate fails an unchanged model: the dense default model under rounding perturbations, judged
against the shipped baselines, per task and gate, without and with the noise floor.

    python bench/gate_error_rates.py --runs DIR [--only NAME,...] [--extra NAME=BASELINES_DIR ...]
                                     [--before BASELINES_DIR]

Each configuration below evaluates the dense model once (``pytest -m kick --sparsity 0 --kick-update-baselines
--kick-noise-floor none`` into ``DIR/NAME``; a configuration whose folder is complete is not run again, so the
command resumes). ``--extra`` adds runs recorded elsewhere (e.g. baselines recorded on another machine). The
perturbations of the shipped baselines' own noise floor are runs too (``floor:batch-half``, ...): a baseline
stores what every unstable item gave under each, and every stable item gave its recorded score.
The results are then judged offline, as ``pytest -m kick --sparsity 0`` would judge them, three ways:

- *plain*: item by item against the baseline's recorded items, with no noise floor (``--before`` judges against
  another baseline folder instead, e.g. the baselines shipped before the noise floor existed);
- *noise floor*: against the shipped baselines with their noise floor, as the gate does now;
- *leave-one-out*: the same, after removing from the noise floor the perturbation the configuration itself is
  (batch-half for a batch-size run, threads-1, float32), so no run is judged by a floor it helped build.

It prints one table per gate (threshold, significant at alpha 0.05; tolerance 5%): a cell per task and run,
``P``/``F`` and the counted lost-gained items, and the false-FAIL rate in each column. Runs are slow (the AVX2
bfloat16 one took about 20 minutes on a 2-core machine); run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kick_checks.errors import KickError  # noqa: E402
from kick_checks.gate.baselines import Baseline, read_baseline  # noqa: E402
from kick_checks.gate.comparison import compare_items  # noqa: E402
from kick_checks.gate.tolerance import Tolerance  # noqa: E402
from kick_checks.session import shipped_baselines_dir  # noqa: E402
from kick_checks.tasks import all_tasks  # noqa: E402
from kick_checks.tasks.protocol import ItemOutcome, TaskResult  # noqa: E402

ALIAS = "smollm2-135m"
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


@dataclass(frozen=True)
class Config:
    name: str
    environment: dict = field(default_factory=dict)
    options: tuple[str, ...] = ()
    covers: frozenset[str] = frozenset()  # noise-floor perturbations this run is (left out for leave-one-out)


CONFIGS = (
    Config("bf16-avx2", AVX2, ("--kick-dtype", "bfloat16")),
    Config("bf16-batch8", {}, ("--kick-dtype", "bfloat16", "--kick-batch-size", "8")),
    Config("fp32-avx2", AVX2, ("--kick-dtype", "float32"), frozenset({"float32"})),
)


def complete(folder: Path) -> bool:
    return all((folder / ALIAS / f"{key}.json").is_file() for key in all_tasks())


def run_config(config: Config, folder: Path) -> None:
    command = [sys.executable, "-m", "pytest", "-m", "kick", "--sparsity", "0", "--kick-update-baselines",
               "--kick-noise-floor", "none", "--kick-no-measure", "-p", "no:cacheprovider", "-q",
               "--kick-baselines-dir", str(folder), *config.options]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **config.environment}, capture_output=True,
                          text=True)
    print(f"ran {config.name} in {time.perf_counter() - started:.0f} s (exit {done.returncode})", flush=True)
    if not complete(folder):
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
        raise SystemExit(f"{config.name} did not record every task")


def perturbed_items(baseline: Baseline, name: str) -> list[ItemOutcome]:
    """What the dense model gave under the noise-floor perturbation ``name``, item by item."""
    items = []
    for item in baseline.items:
        noise = baseline.noise.items.get(item.id)
        score, prediction = noise.under[name] if noise is not None else (item.score, item.prediction)
        items.append(ItemOutcome(item.id, score, prediction, item.category))
    return items


def verdict(reference: Baseline, run: TaskResult, gate: str, noise) -> tuple[bool, int, int]:
    comparison = compare_items(reference.items, run, Tolerance(0.05), "dense", gate=gate, noise=noise)
    return comparison.passed, len(comparison.lost), comparison.gained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of the runs (one subfolder each)")
    parser.add_argument("--only", default="", help="comma-separated configuration names to run (default: all)")
    parser.add_argument("--extra", action="append", default=[], help="NAME=BASELINES_DIR: a run recorded elsewhere")
    parser.add_argument("--before", type=Path, help="baselines folder for the plain column (default: the shipped)")
    parser.add_argument("--baselines", type=Path, default=shipped_baselines_dir(), help="the baselines judged against")
    args = parser.parse_args()
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    tasks = list(all_tasks())
    reference = {key: read_baseline(args.baselines / ALIAS / f"{key}.json") for key in tasks}
    before = {key: read_baseline((args.before or args.baselines) / ALIAS / f"{key}.json") for key in tasks}
    runs: dict[str, tuple[dict[str, TaskResult], frozenset[str]]] = {}

    def from_folder(folder: Path) -> dict[str, TaskResult]:
        found = {}
        for key in tasks:
            try:
                run = read_baseline(folder / ALIAS / f"{key}.json")
            except KickError as error:
                print(f"{folder}: {error}")
                continue
            found[key] = TaskResult(key, run.metric, run.items)
        return found

    for name in dict.fromkeys(p.name for key in tasks if reference[key].noise
                              for p in reference[key].noise.perturbations):
        runs[f"floor:{name}"] = ({key: TaskResult(key, reference[key].metric, perturbed_items(reference[key], name))
                                  for key in tasks if reference[key].noise and name in
                                  {p.name for p in reference[key].noise.perturbations}}, frozenset({name}))
    for config in CONFIGS:
        if wanted and config.name not in wanted:
            continue
        folder = args.runs / config.name
        if not complete(folder):
            run_config(config, folder)
        runs[config.name] = (from_folder(folder), config.covers)
    for entry in args.extra:
        name, _, path = entry.partition("=")
        runs[name] = (from_folder(Path(path)), frozenset())
    for gate in ("threshold", "significant"):
        print(f"\n### gate {gate} (tolerance 5%): cells are verdict, counted items lost-gained\n")
        print("| run | task | plain | noise floor | leave-one-out |")
        print("|---|---|---|---|---|")
        fails = {"plain": 0, "noise floor": 0, "leave-one-out": 0}
        cells = 0
        for name, (results, covers) in runs.items():
            for key, run in results.items():
                recorded = {item.id: item.score for item in reference[key].items}
                floor = reference[key].noise
                columns = {
                    "plain": verdict(before[key], run, gate, None),
                    "noise floor": verdict(reference[key], run, gate, floor),
                    "leave-one-out": verdict(reference[key], run, gate,
                                             floor.without(set(covers), recorded) if floor else None),
                }
                cells += 1
                text = []
                for column, (passed, lost, gained) in columns.items():
                    fails[column] += not passed
                    text.append(f"{'P' if passed else '**F**'} {lost}-{gained}")
                print(f"| {name} | {key} | {' | '.join(text)} |")
        rates = " | ".join(f"{fails[column]}/{cells} ({fails[column] / max(cells, 1):.1%})" for column in fails)
        print(f"| **false-FAIL rate** | all | {rates} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
