"""One sweep point run on whatever machine executes it, and the tally of a sweep's points.

Both runners (local, one point after another; Ray, points spread over a cluster) run a point the same way:
``pytest -m kick`` with the point's compression options in a child process, so that every point starts from a
fresh model and gives its memory back. The child writes its JSON report into a scratch folder of the machine it
runs on, and the report's text is handed back to the caller, which alone writes into the output folder (under
Ray it travels back through the object store, so worker nodes need no shared disk). The child dies with its
parent (:mod:`kick_checks.sweep.child`): a killed worker leaves no orphan evaluating a model nobody waits for.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kick_checks.sweep.plan import SweepPoint

#: Lines of a failed point's output kept for its failure message.
TAIL_LINES = 3


@dataclass
class PointRun:
    """What running one point gave: its report's text (None when it produced none) and where it ran."""

    name: str
    report: str | None
    returncode: int
    tail: str
    seconds: float
    host: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def point_command(point: SweepPoint, report: Path, pytest_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "kick_checks.sweep.child", str(os.getpid()), "-m", "kick", "-q", "-p",
            "no:cacheprovider", *point.options(), "--kick-json", str(report), *pytest_args]


def run_point(point: SweepPoint, pytest_args: list[str], folder: str | None, threads: int | None = None) -> PointRun:
    """Run ``point`` here, in ``folder`` (where pytest finds the project's ``[tool.kick]``; a scratch folder when
    None), with ``threads`` OpenMP threads when given (one point per CPU share on a Ray node)."""
    started = time.perf_counter()
    environment = dict(os.environ)
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="kick-sweep-") as scratch:
        report = Path(scratch) / f"{point.name}.json"
        done = subprocess.run(point_command(point, report, pytest_args), capture_output=True, text=True,
                              cwd=folder or scratch, env=environment)
        text = report.read_text(encoding="utf-8") if report.is_file() else None
    tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-TAIL_LINES:])
    return PointRun(point.name, text, done.returncode, tail, time.perf_counter() - started, socket.gethostname())


@dataclass
class SweepTally:
    """Counts of a sweep's points as they move from waiting to running to done or failed, and the line shown
    after each change. ``show`` prints a line (a tqdm bar's ``write`` keeps the bar below it)."""

    total: int
    skipped: int = 0
    show: object = print
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    running: dict[str, str] = field(default_factory=dict)  # name -> where it runs
    started: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> int:
        return len(self.done) + len(self.failed)

    def counts(self) -> str:
        waiting = self.total - self.skipped - self.finished - len(self.running)
        return (f"{len(self.done) + self.skipped} done ({self.skipped} before this run), {len(self.running)} "
                f"running, {len(self.failed)} failed, {waiting} waiting")

    def start(self, name: str, where: str = "") -> None:
        self.running[name] = where
        if where:
            self.show(f"started {name} on {where}")

    def finish(self, name: str, seconds: float, error: str | None = None) -> None:
        self.running.pop(name, None)
        if error is None:
            self.done.append(name)
        else:
            self.failed[name] = error
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.finished * (self.total - self.skipped - self.finished)
        verdict = "done" if error is None else f"FAILED ({error})"
        self.show(f"[{self.finished + self.skipped}/{self.total}] {name}: {verdict} in {seconds:.0f}s; "
                  f"{self.counts()} (elapsed {elapsed / 60:.1f} min, about {left / 60:.1f} min left)")

    def failure_lines(self) -> list[str]:
        return [f"sweep point {name} failed: {error}" for name, error in self.failed.items()]


def failure_of(run: PointRun) -> str | None:
    """None when the point produced its report (a kick run that fails its gate still did); else why not."""
    if run.report is not None:
        return None
    return f"no report (exit {run.returncode}): {run.tail}"
