"""The local runner of ``kick sweep``: the points one after another on this machine.

Each point is a ``pytest -m kick`` child run from the output folder (so pytest finds the ``[tool.kick]`` of the
project around it, as a run started there would); its report is written into the folder whole, only once the
point has finished. While a point runs, its progress lines are shown under its name (and a line of ours when it
has been silent for an interval), so the first line does not wait minutes for the first point to end. A point
that produces no report is reported and the sweep goes on; points already done in the folder are skipped, so
rerunning the same command after a crash or a Ctrl-C resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from compressors.progress import bars_enabled, lines_enabled, progress
from kick_checks.atomic import write_text_atomically
from kick_checks.sweep.plan import SweepPoint, report_path
from kick_checks.sweep.runner import SweepTally, failure_of, run_point


def run_local(points: list[SweepPoint], out: Path, pytest_args: list[str], *, skipped: int = 0) -> SweepTally:
    """Run ``points`` (those not done yet) here, in order; ``skipped`` counts the points done before."""
    bar = progress(points, description="sweep", unit="point")
    show = bar.write if hasattr(bar, "write") else print  # tqdm keeps its bar below the printed lines
    tally = SweepTally(total=len(points) + skipped, skipped=skipped, show=show)
    relay = show if bars_enabled() or lines_enabled() else None  # KICK_PROGRESS=0: the tally lines only
    for point in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(point.name)
        tally.start(point.name)
        run = run_point(point, pytest_args, str(Path(out).resolve()), on_progress=relay)
        error = failure_of(run)
        if error is None:
            write_text_atomically(report_path(out, point), run.report)
        tally.finish(point.name, run.seconds, error)
    return tally
