"""``kick sweep``: the LLM-KICK picture for one model, methods x sparsities (x N:M patterns, x bits) x tasks.

Each configuration (a point) is one ``pytest -m kick`` run in a child process, so each starts from a fresh model
and frees its memory, and writes its JSON report into the output folder; all of them compare against the same
stored dense baselines, so the dense model is evaluated once, when the baselines were recorded. The parts:

- :mod:`~kick_checks.sweep.plan`: the points, and which of them the folder already holds (a rerun resumes);
- :mod:`~kick_checks.sweep.runner`: how one point runs on any machine, and the tally of done/running/failed;
- :mod:`~kick_checks.sweep.local`: the points one after another here; :mod:`~kick_checks.sweep.ray_runner`:
  the points as Ray tasks over a cluster (``kick sweep --ray``);
- :mod:`~kick_checks.sweep.report`: ``kick report FOLDER``, the tables and plots from the JSON files, without
  running any model.
"""

from __future__ import annotations

from pathlib import Path

from kick_checks.sweep.plan import SweepPoint, pending_points, plan, record_options
from kick_checks.sweep.report import load_reports, markdown_table, plot, report, sweep_rows, task_tags
from kick_checks.sweep.runner import SweepTally


def run_sweep(points: list[SweepPoint], out: Path, pytest_args: list[str], *, ray_address: str | None = None,
              use_ray: bool = False, ray_cpus: float = 1, ray_gpus: float | None = None,
              ray_retries: int = 1) -> SweepTally:
    """Run the points of ``points`` that ``out`` does not hold yet, locally or on Ray; a point that fails is
    reported in the returned tally and the others go on."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record_options(out, pytest_args)
    todo, done = pending_points(out, points)
    if done:
        print(f"{len(done)} of {len(points)} points are already done in {out}: skipping "
              f"{', '.join(point.name for point in done)}")
    if not todo:
        return SweepTally(total=len(points), skipped=len(done))
    if use_ray:
        from kick_checks.sweep.ray_runner import run_on_ray

        return run_on_ray(todo, out, pytest_args, ray_address, cpus=ray_cpus, gpus=ray_gpus, retries=ray_retries,
                          skipped=len(done))
    from kick_checks.sweep.local import run_local

    return run_local(todo, out, pytest_args, skipped=len(done))


__all__ = ["SweepPoint", "SweepTally", "load_reports", "markdown_table", "pending_points", "plan", "plot",
           "report", "run_sweep", "sweep_rows", "task_tags"]
