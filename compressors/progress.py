"""Progress for long work (compression, generation, sweeps): a bar on a terminal, plain lines everywhere else.

- On a terminal (standard error is a TTY), or with ``KICK_PROGRESS=1``, a tqdm bar is drawn.
- Elsewhere (CI logs, files) a loop that runs long prints a plain line every :data:`LINE_INTERVAL_S` seconds,
  ``compressing: block 12/30 (40%), 41 s elapsed``, and one when it ends, so a log shows where the time goes
  while short loops print nothing. :func:`note` prints one line when a stage starts.
- ``KICK_PROGRESS=0`` turns both off.

Plain lines go to standard error unless a host sets another sink with :func:`set_line_sink`: the kick-checks
pytest plugin does, so that the lines reach the terminal past pytest's output capture.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
#: Seconds between two plain progress lines of one loop.
LINE_INTERVAL_S = 20.0
_sink: Callable[[str], None] | None = None


def set_line_sink(sink: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """Send plain progress lines to ``sink`` (None: standard error); returns the previous sink."""
    global _sink
    previous, _sink = _sink, sink
    return previous


def _forced() -> bool | None:
    forced = os.environ.get("KICK_PROGRESS")
    if forced is None:
        return None
    return forced.strip() not in ("", "0", "false", "no")


def bars_enabled() -> bool:
    forced = _forced()
    if forced is not None:
        return forced
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def lines_enabled() -> bool:
    return _forced() is not False and not bars_enabled()


def emit(line: str) -> None:
    """One plain progress line, to the sink."""
    if _sink is not None:
        _sink(line)
    else:
        print(line, file=sys.stderr, flush=True)


def note(line: str) -> None:
    """Say that a stage starts (``converting the model``), where no bar is drawn."""
    if lines_enabled():
        emit(f"kick-checks: {line}")


class _Lines:
    """Counts work done and prints a plain line when the interval has passed, and at the end if it printed."""

    def __init__(self, description: str, total: int | None, unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self.started = self.last = time.perf_counter()
        self.printed = False

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self.last >= LINE_INTERVAL_S:
            self.last = now
            self._line(now)

    def finish(self) -> None:
        if self.printed:
            self._line(time.perf_counter(), finished=True)

    def _line(self, now: float, finished: bool = False) -> None:
        self.printed = True
        if self.total:
            count = f"{self.unit} {self.done}/{self.total} ({self.done / self.total:.0%})"
        else:
            count = f"{self.done} {self.unit}s"
        seconds = now - self.started
        timing = f"done in {seconds:.0f} s" if finished else f"{seconds:.0f} s elapsed"
        emit(f"kick-checks: {self.description}: {count}, {timing}")

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def _lines_over(iterable: Iterable[Item], lines: _Lines) -> Iterator[Item]:
    with lines:
        for item in iterable:
            yield item
            lines.update()


def progress(iterable: Iterable[Item], *, description: str, total: int | None = None,
             unit: str = "it") -> Iterable[Item] | Iterator[Item]:
    """``iterable`` with a bar on a terminal, with plain lines elsewhere, or as it is when progress is off."""
    if bars_enabled():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=description, total=total, unit=unit, leave=False, dynamic_ncols=True,
                    file=sys.stderr)
    if lines_enabled():
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        return _lines_over(iterable, _Lines(description, total, unit))
    return iterable


class _NoBar:
    def update(self, count: int = 1) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int, *, description: str, unit: str = "it"):
    """Progress advanced by hand (``bar.update(n)``) for work that is not one loop. Use it as a context manager."""
    if bars_enabled():
        from tqdm.auto import tqdm

        return tqdm(desc=description, total=total, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)
    if lines_enabled():
        return _Lines(description, total, unit)
    return _NoBar()
