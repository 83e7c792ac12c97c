"""What a sweep runs: its points (methods x sparsities x N:M patterns x bits), and which of them a folder already holds.

A point is done when the output folder holds its JSON report (``<point name>.json``) and that report's spec is the
point's. A rerun into the same folder therefore runs only what is missing: the points that failed, were killed,
or are new. The options given after ``--`` apply to every point, so they are recorded in the folder
(``sweep-options.json``) and a rerun with other options is refused rather than mixing two sweeps in one table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from kick_checks.atomic import write_text_atomically
from kick_checks.errors import KickError
from kick_checks.experiments.record import method_identity

OPTIONS_FILE = "sweep-options.json"


@dataclass(frozen=True)
class SweepPoint:
    method: str
    sparsity: float = 0.0
    pattern: str | None = None
    bits: int | None = None

    @property
    def name(self) -> str:
        parts = [self.method]
        if self.pattern:
            parts.append(self.pattern.replace(":", "of"))
        elif self.sparsity:
            parts.append(f"s{round(self.sparsity * 100):02d}")
        if self.bits:
            parts.append(f"{self.bits}bit")
        return "-".join(parts)

    def options(self) -> list[str]:
        options = ["--kick-method", self.method]
        if self.pattern:
            options += ["--kick-pattern", self.pattern]
        elif self.sparsity:
            options += ["--sparsity", str(self.sparsity)]
        if self.bits:
            options += ["--kick-bits", str(self.bits)]
        return options

    def to_dict(self) -> dict:
        return asdict(self)

    def matches(self, spec: dict) -> bool:
        """Whether a report's ``spec`` is this point's compression (its method under either spelling: reports
        record the canonical name, the sweep may be given a plug-in's import path)."""
        same_method = method_identity(str(spec.get("method"))) == method_identity(self.method)
        if not same_method or (spec.get("bits") or None) != (self.bits or None):
            return False
        if self.pattern:
            return spec.get("pattern") == self.pattern
        return spec.get("pattern", "unstructured") == "unstructured" and abs(
            float(spec.get("sparsity", 0.0)) - self.sparsity) < 1e-9


def plan(methods: list[str], sparsities: list[float], patterns: list[str], bits: list[int]) -> list[SweepPoint]:
    """Pruning methods at every sparsity and pattern; quantization methods (gptq, rtn) at every bit width."""
    points = []
    for method in methods:
        if method in ("gptq", "rtn"):
            points += [SweepPoint(method, bits=width) for width in bits]
            continue
        points += [SweepPoint(method, sparsity=value) for value in sparsities]
        if method != "global-magnitude":
            points += [SweepPoint(method, pattern=pattern) for pattern in patterns]
    if not points:
        raise KickError("the sweep is empty: give --methods and --sparsities (or --bits for gptq/rtn)")
    return points


def report_path(out: Path, point: SweepPoint) -> Path:
    return Path(out) / f"{point.name}.json"


def is_done(out: Path, point: SweepPoint) -> bool:
    """Whether ``out`` holds a complete report of ``point`` (reports are written whole, never in part)."""
    path = report_path(out, point)
    if not path.is_file():
        return False
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(document, dict) and "tasks" in document and point.matches(document.get("spec") or {})


def pending_points(out: Path, points: list[SweepPoint]) -> tuple[list[SweepPoint], list[SweepPoint]]:
    """``(to run, already done)``, each in plan order."""
    done = [point for point in points if is_done(out, point)]
    return [point for point in points if point not in done], done


def record_options(out: Path, pytest_args: list[str]) -> None:
    """Write the options every point runs with, or check them against the ones recorded by an earlier run."""
    path = Path(out) / OPTIONS_FILE
    if path.is_file():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")).get("pytest_args")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded is not None and list(recorded) != list(pytest_args):
            raise KickError(
                f"{out} holds sweep points run with other options after -- ({' '.join(recorded) or 'none'}; now "
                f"{' '.join(pytest_args) or 'none'}): rerun with the same options to resume, or use a new --out")
    write_text_atomically(path, json.dumps({"pytest_args": list(pytest_args)}, indent=1) + "\n")
