"""Atomic file writes: a temporary file in the same folder, flushed to disk, then renamed over the target.

A reader sees the old file or the new one, never half of one, even when the writer is killed or the disk fills.
A writer killed between the two steps (``kill -9``) leaves its hidden temporary file behind; the name carries the
writer's process id (``.NAME.<pid>-<random>.tmp``), so :func:`remove_stale_temporaries` can tell the leftovers of
dead writers from a file another live process is writing right now. Staging folders (the compressed-weights
cache, a converted model, a sweep point's scratch folder) are named the same way and cleaned the same way.

The file gets the mode the user's umask gives a new file (0644 under umask 022), as ``open`` would: a temporary
file is created private (0600), which would make reports and baselines unreadable to the rest of a team.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

#: A temporary file whose writer cannot be checked (another host, say) is stale after this long.
STALE_AFTER_S = 3600
TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"^\.(.+)\.(\d+)-[^.]+\.tmp$")


def temporary_prefix(name: str) -> str:
    """How the temporary file or folder standing in for ``name`` begins: hidden, with this process's id."""
    return f".{name}.{os.getpid()}-"


def current_umask() -> int:
    """The process's umask: from ``/proc/self/status`` on Linux, else by setting it and putting it back (POSIX
    offers no other way, and another thread creating a file in between would get the stand-in 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def with_umask_modes(folder: Path) -> Path:
    """Give a staging folder and the files in it the modes the umask gives new ones: ``mkdtemp`` makes the folder
    private (0700) and some writers (safetensors) make their files so, while the cache entry it becomes is not."""
    mask = current_umask()
    folder.chmod(0o777 & ~mask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
    return folder


def write_text_atomically(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=temporary_prefix(path.name), suffix=TEMPORARY_SUFFIX,
        delete=False,
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
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


def remove_stale_temporaries(folder: Path, name: str | None = None,
                             stale_after_s: float | None = STALE_AFTER_S) -> list[Path]:
    """Delete the temporary files and staging folders of interrupted writes in ``folder`` (only those standing in
    for ``name`` when given): those whose writer process is gone, or that are older than ``stale_after_s`` (None:
    only the writer decides, for a folder no other host writes to). Returns what was removed (nothing when the
    folder does not exist)."""
    removed: list[Path] = []
    if not Path(folder).is_dir():
        return removed
    for candidate in Path(folder).iterdir():
        match = _TEMPORARY.match(candidate.name)
        if match is None or (name is not None and match.group(1) != name):
            continue
        pid = int(match.group(2))
        try:
            old = stale_after_s is not None and time.time() - candidate.stat().st_mtime > stale_after_s
        except OSError:  # removed meanwhile by another process cleaning up
            continue
        if (pid != os.getpid() and not _alive(pid)) or old:
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed
