"""The child process of one sweep point: ``python -m kick_checks.sweep.child PARENT_PID PYTEST_ARGS...``.

It is ``pytest`` that dies with the process that started it. On Linux it asks the kernel for ``SIGKILL`` when its
parent exits (``PR_SET_PDEATHSIG``), so killing a Ray worker (or the local sweep) also stops the evaluation it had
started; elsewhere it only checks, once, that its parent is still there.
"""

from __future__ import annotations

import os
import sys


def die_with_parent(parent: int) -> None:
    """Ask Linux to kill this process when its parent dies; exit now if the parent is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        sys.exit(f"the sweep process {parent} that started this point is gone")


if __name__ == "__main__":
    import pytest

    die_with_parent(int(sys.argv[1]))
    sys.exit(int(pytest.main(sys.argv[2:])))
