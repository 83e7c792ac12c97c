"""Progress for long work (compression, generation, sweeps): a bar on a terminal, plain lines everywhere else.

- On a terminal (standard error is a TTY), or with ``KICK_PROGRESS=1``, a tqdm bar is drawn.
- Elsewhere (CI logs, files) long work prints a plain line every :data:`LINE_INTERVAL_S` seconds,
  ``compressing: block 12/30 (40%), 41 s elapsed``, and one when its outermost loop ends, so a log shows where
  the time goes while short loops print nothing. :func:`note` prints one line when a stage starts.
- ``KICK_PROGRESS=0`` turns both off.

The interval is kept on a clock, not per item: one item of a loop can take minutes (a batch of 32 summaries
finishes all at once), so the engines call :func:`tick` after every forward pass (:func:`ticking`), which
prints the line that is due, or redraws the bars so that their elapsed time moves. Work is labelled with
:func:`stage` (``summarization``, ``turn 2``), and a line names every stage and loop it is in:
``summarization: generating answers: answer 12/32 (38%), 41 s elapsed``.

Plain lines go to standard error unless a host sets another sink with :func:`set_line_sink`: the kick-checks
pytest plugin does, so that the lines reach the terminal past pytest's output capture.
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

Item = TypeVar("Item")
#: Seconds between two plain progress lines.
LINE_INTERVAL_S = 20.0
#: Seconds between two redraws of the bars by :func:`tick`.
BAR_REFRESH_S = 1.0
_sink: Callable[[str], None] | None = None
_stages: list[_Stage] = []  # the labels of the work running now, outermost first
_loops: list[_Lines] = []  # the loops printing plain lines now, outermost first
_bars: weakref.WeakSet = weakref.WeakSet()  # the tqdm bars drawn now


class _Clock:
    """When the running work began, when the last plain line was printed and the bars redrawn; lines so far."""

    began = last_line = last_refresh = 0.0
    lines = 0


_clock = _Clock()


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


def _now() -> float:
    return time.perf_counter()


def _begin(now: float) -> None:
    """Work starts: when nothing was running, the interval of plain lines starts from now."""
    if not _stages and not _loops:
        _clock.began = _clock.last_line = now


def _remove(frames: list, frame: object) -> None:
    """Take ``frame`` out of ``frames`` by identity (a generator closed late may not be the innermost)."""
    for position in range(len(frames) - 1, -1, -1):
        if frames[position] is frame:
            del frames[position]
            return


class _Stage:
    def __init__(self, label: str) -> None:
        self.label = label


@contextmanager
def stage(label: str) -> Iterator[None]:
    """Label the work inside (``summarization``, then ``turn 2``): its lines and bars start with the labels, so a
    log tells the second turn's generation from the first's, and a line is due every interval even between
    loops."""
    _begin(_now())
    frame = _Stage(label)
    _stages.append(frame)
    try:
        yield
    finally:
        _remove(_stages, frame)


def _labelled(description: str) -> str:
    """``summarization, turn 2: DESCRIPTION``: the stages running now, then what the line or bar counts."""
    return ": ".join(part for part in (", ".join(frame.label for frame in _stages), description) if part)


def _line(body: str, timing: str) -> None:
    _clock.last_line, _clock.lines = _now(), _clock.lines + 1
    emit(f"kick-checks: {_labelled(body)}, {timing}")


def tick() -> None:
    """Look at the clock: print the plain line that is due (every stage and loop running, with their counts), or
    redraw the bars at most every :data:`BAR_REFRESH_S`. Cheap enough to call after every forward pass."""
    now = _now()
    if bars_enabled():
        if now - _clock.last_refresh >= BAR_REFRESH_S:
            _clock.last_refresh = now
            for bar in list(_bars):
                if bar.disable:  # closed
                    _bars.discard(bar)
                else:
                    bar.refresh()
        return
    if (_stages or _loops) and now - _clock.last_line >= LINE_INTERVAL_S and lines_enabled():
        _line(", ".join(loop.position() for loop in _loops), f"{now - _clock.began:.0f} s elapsed")


@contextmanager
def ticking(module) -> Iterator[None]:
    """:func:`tick` after every forward pass of ``module`` (a torch module), while inside: a loop whose items take
    minutes each (a batch of long answers, a call to transformers' ``generate``) still reports on time."""
    handle = module.register_forward_hook(lambda *_: tick())
    try:
        yield
    finally:
        handle.remove()


class _Lines:
    """A loop's count, in the plain lines while it runs; its ``done in`` line when it is the outermost loop and a
    line was printed while it ran."""

    def __init__(self, description: str, total: int | None, unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self.started = 0.0
        self.lines_before = 0

    def position(self) -> str:
        if self.total:
            return f"{self.description}: {self.unit} {self.done}/{self.total} ({self.done / self.total:.0%})"
        return f"{self.description}: {self.done} {self.unit}s"

    def update(self, count: int = 1) -> None:
        self.done += count
        tick()

    def __enter__(self) -> _Lines:
        self.started = _now()
        _begin(self.started)
        self.lines_before = _clock.lines
        _loops.append(self)
        return self

    def __exit__(self, *exc) -> None:
        outermost = bool(_loops) and _loops[0] is self
        _remove(_loops, self)
        if outermost and _clock.lines > self.lines_before:
            _line(self.position(), f"done in {_now() - self.started:.0f} s")


def _lines_over(iterable: Iterable[Item], lines: _Lines) -> Iterator[Item]:
    with lines:
        for item in iterable:
            yield item
            lines.update()


def _bar(**options):
    from tqdm.auto import tqdm

    bar = tqdm(**options, leave=False, dynamic_ncols=True, file=sys.stderr)
    if not any(not drawn.disable for drawn in _bars):  # the first bar: redraws count from now
        _clock.last_refresh = _now()
    _bars.add(bar)
    return bar


def progress(iterable: Iterable[Item], *, description: str, total: int | None = None,
             unit: str = "it") -> Iterable[Item] | Iterator[Item]:
    """``iterable`` with a bar on a terminal, with plain lines elsewhere, or as it is when progress is off."""
    if bars_enabled():
        return _bar(iterable=iterable, desc=_labelled(description), total=total, unit=unit)
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
        return _bar(desc=_labelled(description), total=total, unit=unit)
    if lines_enabled():
        return _Lines(description, total, unit)
    return _NoBar()
