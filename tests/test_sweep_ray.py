"""kick sweep --ray for real: a local Ray runs two points of the toy model at once; one worker is killed, the
other point finishes, and a rerun into the same folder runs only the killed point.

Needs the ray extra (pip install 'kick-checks[ray]'), which the README's test command installs; with only the core
installed this module is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="kick sweep --ray needs Ray: pip install 'kick-checks[ray]'")

STARTED = re.compile(r"^started (\S+) on .* \(pid (\d+)\)$")


def _sweep_command(out: Path, common: list[str]) -> list[str]:
    return [sys.executable, "-m", "kick_checks.cli", "sweep", "--out", str(out), "--methods", "magnitude",
            "--sparsities", "0.1,0.9", "--patterns", "", "--ray", "--ray-cpus", "1", "--ray-retries", "0",
            "--", *common]


def _children_of_point(name: str) -> list[int]:
    """Processes still evaluating the point ``name`` (its pytest child writes ``<name>.json``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "kick_checks.sweep.child" in command and f"{name}.json" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds and kills the Ray worker through /proc")
def test_ray_sweep_reports_a_killed_worker_goes_on_and_resumes(toy_sweep_options, tmp_path):
    common = toy_sweep_options
    out = tmp_path / "sweep"
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "KICK_PROGRESS": "0"}

    sweep = subprocess.Popen(_sweep_command(out, common), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=environment, cwd=tmp_path)
    lines, killed = [], None
    for line in sweep.stdout:
        lines.append(line.rstrip())
        started = STARTED.match(line.strip())
        if started and killed is None:
            killed = started.group(1)
            os.kill(int(started.group(2)), signal.SIGKILL)  # the Ray worker running this point
    assert sweep.wait(timeout=60) == 1, "\n".join(lines)
    printed = "\n".join(lines)
    assert killed is not None, printed
    survivor = ({"magnitude-s10", "magnitude-s90"} - {killed}).pop()
    assert re.search(rf"{killed}: FAILED \(the Ray task was lost \(\w+", printed), printed
    assert re.search(rf"{survivor}: done in \d+s", printed), printed
    assert "1 of 2 points failed: rerun the same command" in printed
    assert not (out / f"{killed}.json").exists()
    report = out / f"{survivor}.json"
    kept = (report.read_bytes(), report.stat().st_mtime_ns)
    time.sleep(1)
    assert _children_of_point(killed) == []  # the killed worker's pytest child died with it

    again = subprocess.run(_sweep_command(out, common), capture_output=True, text=True, env=environment,
                           cwd=tmp_path, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"1 of 2 points are already done in {out}: skipping {survivor}" in again.stdout
    assert re.search(rf"\[2/2\] {killed}: done in \d+s; 2 done \(1 before this run\), 0 running, 0 failed",
                     again.stdout), again.stdout
    assert (report.read_bytes(), report.stat().st_mtime_ns) == kept  # the finished point was not run again
    rows = json.loads((out / "sweep.json").read_text())
    assert [(row["sparsity"], row["verdict"]) for row in rows] == [(0.1, "pass"), (0.9, "fail")]
