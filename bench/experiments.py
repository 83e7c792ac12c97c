"""How long the experiment store takes to load N runs, and ``kick dashboard`` to build its file from them.

    python bench/experiments.py [N ...]        (default: 30 100 300)

Each N is a fresh folder of N synthetic reports in today's format (two tasks of 100 items each, efficiency and a
six-block divergence section; tests/experiment_reports.py writes them), about the size of a real ``--kick-json``
report with two tasks. Printed per N: the folder's size, the seconds to load the store (best of three), to build
the dashboard's data, to write the HTML file, and the file's size; and the same for the committed sweep.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from experiment_reports import sweep_folder  # noqa: E402

from kick_checks.experiments.dashboard import dashboard_data, write_dashboard  # noqa: E402
from kick_checks.experiments.store import load_store  # noqa: E402


def timed(work) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def measure(label: str, folder: Path, baselines: list[Path]) -> None:
    files = [path for path in folder.glob("*.json")]
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    load_seconds = min(timed(lambda: load_store([folder], baselines))[0] for _ in range(3))
    store = load_store([folder], baselines)
    data_seconds, _ = timed(lambda: dashboard_data(store))
    out = Path(tempfile.mkdtemp()) / "dashboard.html"
    write_seconds, _ = timed(lambda: write_dashboard(store, out))
    print(f"{label:>14} | {len(store.runs()):5d} | {megabytes:7.1f} | {load_seconds:7.2f} | {data_seconds:7.2f} | "
          f"{write_seconds:7.2f} | {out.stat().st_size / 1e6:6.1f}", flush=True)


def main() -> int:
    counts = [int(value) for value in sys.argv[1:]] or [30, 100, 300]
    print("         store |  runs | JSON MB | load s | data s | html s | HTML MB")
    measure("docs/sweep", ROOT / "docs" / "sweep", [ROOT / "baselines"])
    for count in counts:
        with tempfile.TemporaryDirectory() as folder:
            sweep_folder(Path(folder), count)
            measure(f"synthetic {count}", Path(folder), [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
