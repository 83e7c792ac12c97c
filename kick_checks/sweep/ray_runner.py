"""``kick sweep --ray [ADDRESS]``: every sweep point a Ray task, spread over a cluster.

Each point asks Ray for what it needs (one GPU when the cluster has GPUs, else ``--ray-cpus`` CPUs, its
OpenMP threads set to match) and runs on a node exactly as the local runner runs it (:func:`run_point`). The
report comes back through Ray's object store and is written into the output folder by this process alone, so
nodes need no shared disk unless the project's ``[tool.kick]`` must apply there (then they must see the output
folder at the same path, and a node that does not fails its point with a message saying so). A point whose
worker dies is retried ``--ray-retries`` times, then reported as failed while the others go on; the points
already done in the folder are not submitted, so a rerun resumes.

A small actor (the board) hears from each task when it starts and where (host and process id), so the progress
lines say what is running, not just what is queued. Ray is an optional dependency (``pip install
'kick-checks[ray]'``), imported only here.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from kick_checks.atomic import write_text_atomically
from kick_checks.errors import KickError
from kick_checks.sweep.plan import SweepPoint, report_path
from kick_checks.sweep.runner import PointRun, SweepTally, failure_of, run_point

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

INSTALL_HINT = "pip install 'kick-checks[ray]'"
LOCAL = "local"
POLL_S = 1.0


def import_ray():
    try:
        import ray
    except ImportError:
        raise KickError(f"kick sweep --ray needs Ray: {INSTALL_HINT} (on this machine and on every node)") from None
    return ray


def project_config(out: Path) -> Path | None:
    """The pyproject.toml with a ``[tool.kick]`` table that a run started in ``out`` reads, if any."""
    for folder in (Path(out).resolve(), *Path(out).resolve().parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                document = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                return None
            return candidate if "kick" in document.get("tool", {}) else None
    return None


def ray_point(point_fields: dict, pytest_args: list[str], out: str, config: str | None, threads: int | None,
              board) -> dict:
    """The Ray task of one point: tell the board where it runs, then run the point on this node."""
    point = SweepPoint(**point_fields)
    host = socket.gethostname()
    board.started.remote(point.name, f"{host} (pid {os.getpid()})")
    folder = out if Path(out).is_dir() else None
    if folder is None and config is not None:
        return PointRun(point.name, None, -1, f"{out} is not visible on {host}, so the [tool.kick] of {config} "
                        "would not apply there: share the output folder with every node at the same path, or give "
                        "the settings after --", 0.0, host).to_dict()
    return run_point(point, pytest_args, folder, threads).to_dict()


class _Board:
    """Where each started point runs: ``name -> "host (pid N)"``; a retried point overwrites its entry."""

    def __init__(self) -> None:
        self.where: dict[str, str] = {}

    def started(self, name: str, where: str) -> None:
        self.where[name] = where

    def snapshot(self) -> dict[str, str]:
        return dict(self.where)


def _connect(ray, address: str | None) -> None:
    target = None if address in (None, "", LOCAL) else address
    try:
        ray.init(address=target, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise KickError(f"cannot reach the Ray cluster at {target} ({first}): start it with ray start --head, "
                        "or give its address (ray://HOST:10001, HOST:6379 or auto)") from None


def run_on_ray(points: list[SweepPoint], out: Path, pytest_args: list[str], address: str | None, *,
               cpus: float = 1, gpus: float | None = None, retries: int = 1, skipped: int = 0,
               show=print) -> SweepTally:
    """Run ``points`` (those not done yet) as Ray tasks on the cluster at ``address`` (None or ``local``: a
    Ray started here, or the one ``$RAY_ADDRESS`` names); ``gpus`` None means one per point when the cluster
    has GPUs."""
    ray = import_ray()
    out = Path(out).resolve()
    config = project_config(out)
    _connect(ray, address)
    try:
        resources = ray.cluster_resources()
        if gpus is None:
            gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        show(f"ray: {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs; each point takes "
             f"{cpus:g} CPU and {gpus:g} GPU; {len(points)} points to run, {skipped} done before")
        board = ray.remote(num_cpus=0)(_Board).remote()
        task = ray.remote(ray_point)
        threads = None if gpus else max(int(cpus), 1)
        pending = {
            task.options(num_cpus=cpus, num_gpus=gpus, max_retries=retries).remote(
                point.to_dict(), list(pytest_args), str(out), str(config) if config else None, threads, board): point
            for point in points
        }
        tally = SweepTally(total=len(points) + skipped, skipped=skipped, show=show)
        where: dict[str, str] = {}
        began: dict[str, float] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for name, place in ray.get(board.snapshot.remote()).items():
                if where.get(name) != place and name not in tally.done and name not in tally.failed:
                    where[name] = place
                    began[name] = time.perf_counter()
                    tally.start(name, place)
            for ref in ready:
                point = pending.pop(ref)
                seconds = time.perf_counter() - began.get(point.name, tally.started)
                try:
                    run = PointRun(**ray.get(ref))
                except ray.exceptions.RayError as error:
                    lines = str(error).strip().splitlines()
                    error_text = f"{type(error).__name__}: {lines[0] if lines else ''}"
                    tally.finish(point.name, seconds, f"the Ray task was lost ({error_text})")
                    continue
                failure = failure_of(run)
                if failure is None:
                    write_text_atomically(report_path(out, point), run.report)
                tally.finish(point.name, run.seconds or seconds, failure)
        return tally
    finally:
        ray.shutdown()
