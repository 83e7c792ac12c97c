"""Progress bars for long work (compression, generation, sweeps), shown only where someone is watching.

A bar is drawn on standard error when it is a terminal (so not under pytest's output capture, in CI logs or in
files), or when ``KICK_PROGRESS=1`` forces it; ``KICK_PROGRESS=0`` turns bars off. Otherwise the iterable is
returned unchanged, so a loop costs nothing extra and logs stay clean.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def bars_enabled() -> bool:
    forced = os.environ.get("KICK_PROGRESS")
    if forced is not None:
        return forced.strip() not in ("", "0", "false", "no")
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(iterable: Iterable[Item], *, description: str, total: int | None = None,
             unit: str = "it") -> Iterable[Item] | Iterator[Item]:
    """``iterable`` wrapped in a tqdm bar when bars are enabled, else itself."""
    if not bars_enabled():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=description, total=total, unit=unit, leave=False, dynamic_ncols=True,
                file=sys.stderr)


class _NoBar:
    def update(self, count: int = 1) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int, *, description: str, unit: str = "it"):
    """A bar advanced by hand (``bar.update(n)``) for work that is not one loop; a no-op when bars are off.
    Use it as a context manager."""
    if not bars_enabled():
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(desc=description, total=total, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)
