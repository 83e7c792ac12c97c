"""Rerun the commands whose output the README shows, and say (or rewrite) every shown line that changed.

The README marks each block of shown output with the command that produced it::

    <!-- output of: pytest -m kick --sparsity 0.5 -->
    <!-- failure of retrieval_qa.closed_book in: pytest -m kick --sparsity 0.5 -->

This script runs each marked command once (on the default model, in this checkout), matches every shown line with
the fresh line for the same thing (a task's summary line, the model and compression header, a failure message),
prints what differs, and with ``--write`` puts the fresh lines into README.md. Timings and absolute paths are
shown as ``...``-free fresh values; the dense numbers are also checked on every test run by tests/test_readme.py.

    .venv/bin/python bench/readme_outputs.py           # report; exit status 1 when a shown line is stale
    .venv/bin/python bench/readme_outputs.py --write   # rewrite the stale lines
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- (?:output of|failure of (?P<task>[a-z_.]+) in): (?P<command>[^>]+?) -->\n+```\n"
                    r"(?P<block>.*?)```", re.DOTALL)


def run(command: str) -> str:
    arguments = shlex.split(command)
    assert arguments[0] == "pytest", f"a shown command must be a pytest run, got {command!r}"
    print(f"running: {command}", flush=True)
    done = subprocess.run([sys.executable, "-m", "pytest", *arguments[1:], "-p", "no:cacheprovider"],
                          capture_output=True, text=True, cwd=ROOT)
    return done.stdout


def line_key(line: str) -> str:
    """What a shown line is about: its task key, ``model``, ``achieved sparsity`` or the section rule."""
    if line.startswith("="):
        return "rule"
    if line.startswith("achieved sparsity"):
        return "achieved"
    return line.split(":", 1)[0]


def summary_lines(output: str) -> dict[str, str]:
    section = output.split(" kick-checks ", 1)[-1].split("\n", 1)[-1]
    return {line_key(line): line for line in section.splitlines() if ":" in line}


def failure_message(output: str, task: str, shown: list[str]) -> list[str]:
    """The fresh failure message of ``task``, cut like the shown one (its ``lost`` lines, then ``...``)."""
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"{task} lost more than"))
    message = []
    for line in lines[start:]:
        message.append(re.sub(r"baseline \S*/baselines/", "baseline .../baselines/", line))
        if "re-record with" in line:
            break
    lost_shown = sum(line.strip().startswith("lost ") for line in shown)
    lost_lines = [line for line in message if line.strip().startswith("lost ")]
    before = [line for line in message[: message.index(lost_lines[0])]] if lost_lines else message
    after = message[message.index(lost_lines[-1]) + 1:] if lost_lines else []
    more = ["  ..."] if len(lost_lines) > lost_shown else []
    return before + lost_lines[:lost_shown] + more + after


def refreshed(block: str, task: str | None, output: str) -> str:
    shown = block.rstrip("\n").splitlines()
    if task is not None:
        return "\n".join(failure_message(output, task, shown)) + "\n"
    fresh = summary_lines(output)
    return "\n".join(fresh.get(line_key(line), line) if line_key(line) != "rule" else line for line in shown) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the stale lines in README.md")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    outputs: dict[str, str] = {}
    stale = 0
    updated = text
    for match in MARKER.finditer(text):
        command = match["command"].strip()
        if command not in outputs:
            outputs[command] = run(command)
        fresh = refreshed(match["block"], match["task"], outputs[command])
        if fresh != match["block"]:
            stale += 1
            print(f"\nstale block ({command}):")
            for old, new in zip(match["block"].splitlines(), fresh.splitlines()):
                if old != new:
                    print(f"  - {old}\n  + {new}")
            updated = updated.replace(match["block"], fresh, 1)
    if args.write and updated != text:
        README.write_text(updated, encoding="utf-8")
        print(f"\nrewrote {stale} blocks in {README}")
    print(f"\n{stale} of {len(MARKER.findall(text))} shown blocks are stale")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
