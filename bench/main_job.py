"""Wall time of the main job, ``pytest -m kick --sparsity 0.5`` on the default model: cold, warm, and with -n 2.

    python bench/main_job.py [-- extra pytest options]

- cold: an empty cache folder (``--kick-cache-dir``): the GGUF file is converted to safetensors and the model is
  compressed before the tasks run;
- warm: the same folder again: the converted model and the compressed weights are loaded from the cache;
- warm, -n 2: the same under pytest-xdist with two workers (each loads the model; one compression entry serves
  both).
Each run is a subprocess from this checkout's root; the figures include interpreter start and collection.
Verdicts are printed beside the times (at 50% sparsity the kick tests are expected to fail: that is the point).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(label: str, options: list[str]) -> tuple[str, float, str]:
    command = [sys.executable, "-m", "pytest", "-m", "kick", "--sparsity", "0.5", "-q", "-p", "no:cacheprovider",
               *options]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    summary = re.findall(r"(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s", done.stdout)
    outcome = summary[-1] if summary else f"exit {done.returncode}"
    print(f"{label}: {seconds:.1f}s ({outcome})", flush=True)
    return label, seconds, outcome


def main() -> int:
    extra = sys.argv[1:]
    if extra[:1] == ["--"]:
        extra = extra[1:]
    with tempfile.TemporaryDirectory(prefix="kick-bench-") as cache:
        common = ["--kick-cache-dir", cache, *extra]
        rows = [run("cold (convert + compress)", common), run("warm (both cached)", common),
                run("warm, -n 2", ["-n", "2", *common])]
    print()
    print("| run | wall time | outcome |")
    print("|---|---|---|")
    for label, seconds, outcome in rows:
        print(f"| {label} | {seconds:.0f} s | {outcome} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
