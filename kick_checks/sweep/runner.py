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
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from compressors import progress
from kick_checks.atomic import TEMPORARY_SUFFIX, remove_stale_temporaries, temporary_prefix
from kick_checks.sweep.plan import SweepPoint

#: Lines of a failed point's output kept for its failure message.
TAIL_LINES = 3
#: How the child's progress lines begin (:mod:`compressors.progress`).
PROGRESS_PREFIX = "kick-checks: "
#: What the scratch folders of sweep points are called (``.kick-sweep.<pid>-<random>.tmp``).
SCRATCH_NAME = "kick-sweep"


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


def run_point(point: SweepPoint, pytest_args: list[str], folder: str | None, threads: int | None = None,
              on_progress: Callable[[str], None] | None = None) -> PointRun:
    """Run ``point`` here, in ``folder`` (where pytest finds the project's ``[tool.kick]``; a scratch folder when
    None), with ``threads`` OpenMP threads when given (one point per CPU share on a Ray node). ``on_progress``
    hears the child's progress lines as they come, and a line of its own after every
    :data:`~compressors.progress.LINE_INTERVAL_S` the child was silent, so a point of minutes never goes quiet."""
    started = time.perf_counter()
    environment = dict(os.environ)
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    environment["PYTHONUNBUFFERED"] = "1"  # each line reaches the pipe when printed, not at the end
    if environment.get("KICK_PROGRESS", "").strip() not in ("", "0", "false", "no"):
        del environment["KICK_PROGRESS"]  # bars forced on would go into the pipe; plain lines come instead
    with scratch_folder() as scratch:
        report = scratch / f"{point.name}.json"
        child = subprocess.Popen(point_command(point, report, pytest_args), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, errors="replace", cwd=folder or scratch,
                                 env=environment)
        try:
            tail = _follow(child, point.name, on_progress)
        except BaseException:  # Ctrl-C: the point stops with the sweep, as under subprocess.run
            child.kill()
            child.wait()
            raise
        text = report.read_text(encoding="utf-8") if report.is_file() else None
    return PointRun(point.name, text, child.returncode, " | ".join(tail), time.perf_counter() - started,
                    socket.gethostname())


def _follow(child: subprocess.Popen, name: str, on_progress: Callable[[str], None] | None) -> list[str]:
    """Read the child's output until it exits: its progress lines go to ``on_progress`` (named by the point), and
    a silence of an interval gets a line saying the point still runs. Returns its last :data:`TAIL_LINES`."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        try:
            for line in child.stdout:
                lines.put(line.rstrip("\n"))
        finally:  # the end of the output, however it came
            lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    started = last = time.perf_counter()
    while True:
        try:
            line = lines.get(timeout=max(last + progress.LINE_INTERVAL_S - time.perf_counter(), 0.0))
        except queue.Empty:
            last = time.perf_counter()
            if on_progress is not None:
                on_progress(f"{name}: running, {last - started:.0f} s elapsed")
            continue
        if line is None:
            break
        if line.strip():
            tail.append(line.strip())
        if on_progress is not None and line.startswith(PROGRESS_PREFIX):
            last = time.perf_counter()
            on_progress(f"{name}: {line[len(PROGRESS_PREFIX):]}")
    child.wait()
    return list(tail)


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A folder for the child's report in the system's temporary folder, removed after the point; one that a killed
    sweep left behind (its process id is in the name, and that process is gone) is removed first."""
    temporary = Path(tempfile.gettempdir())
    for path in remove_stale_temporaries(temporary, SCRATCH_NAME, stale_after_s=None):
        print(f"kick sweep: removed {path}, left by a kick sweep that was killed", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix=temporary_prefix(SCRATCH_NAME), suffix=TEMPORARY_SUFFIX) as scratch:
        yield Path(scratch)


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
