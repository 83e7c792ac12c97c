"""Atomic file writes: a temporary file in the same folder, flushed to disk, then renamed over the target.

A reader sees the old file or the new one, never half of one, even when the writer is killed or the disk fills.
A writer killed between the two steps (``kill -9``) leaves its hidden temporary file behind; the name carries the
writer's process id (``.NAME.<pid>-<random>.tmp``), so :func:`remove_stale_temporaries` can tell the leftovers of
dead writers from a file another live process is writing right now.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

#: A temporary file whose writer cannot be checked (another host, say) is stale after this long.
STALE_AFTER_S = 3600
_TEMPORARY = re.compile(r"^\..+\.(\d+)-[^.]+\.tmp$")


def write_text_atomically(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of interrupted writes in ``folder``: those whose writer process is gone, or
    that are over an hour old. Returns what was removed (nothing when the folder does not exist)."""
    removed = []
    if not Path(folder).is_dir():
        return removed
    for candidate in Path(folder).iterdir():
        match = _TEMPORARY.match(candidate.name)
        if match is None or not candidate.is_file():
            continue
        pid = int(match.group(1))
        old = time.time() - candidate.stat().st_mtime > STALE_AFTER_S
        if (pid != os.getpid() and not _alive(pid)) or old:
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed
