"""How much a task may lose: a value object that parses itself, says whether a change exceeds it, and prints.

Three kinds: a relative drop (``0.05``, the default kind), an absolute drop in the metric's units (``abs:0.02``),
or a minimum recovery ratio compressed / dense (``recovery:0.9``). For a lower-is-better metric (perplexity) the
drop is the relative rise and recovery is dense / compressed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from kick_checks.errors import KickError

DEFAULT_TOLERANCE = 0.05
KINDS = ("relative", "absolute", "recovery")
_ALIASES = {"rel": "relative", "abs": "absolute"}
#: Floating-point slack, so a loss exactly at the tolerance passes.
_EPSILON = 1e-12


class Change(Protocol):
    """What a tolerance is checked against: a comparison's loss, measured three ways."""

    @property
    def relative_drop(self) -> float: ...

    @property
    def absolute_drop(self) -> float: ...

    @property
    def recovery(self) -> float: ...


@dataclass(frozen=True)
class Tolerance:
    value: float = DEFAULT_TOLERANCE
    kind: str = "relative"

    @classmethod
    def parse(cls, text: object, where: str) -> Tolerance:
        """``VALUE``, ``abs:VALUE`` or ``recovery:VALUE``; ``where`` names the option or key in the error."""
        raw = str(text).strip()
        kind, _, number = raw.partition(":") if ":" in raw else ("relative", "", raw)
        kind = _ALIASES.get(kind.strip(), kind.strip())
        if kind not in KINDS:
            raise KickError(f"{where} {text!r} has an unknown kind: use VALUE, abs:VALUE or recovery:VALUE")
        try:
            value = float(number)
        except (TypeError, ValueError):
            raise KickError(f"{where} {text!r} is not a number: give a fraction such as 0.05 for 5%") from None
        if not math.isfinite(value):
            raise KickError(f"{where} {text!r} is not a finite number, so no loss could exceed it: give a fraction "
                            "such as 0.05 for 5%")
        if kind == "relative" and not 0.0 <= value <= 1.0:
            raise KickError(f"{where} {text!r} is outside [0, 1]: give the allowed relative drop, e.g. 0.05")
        if kind == "absolute" and value < 0:
            raise KickError(f"{where} {text!r} is negative: give the allowed drop in the metric's units, e.g. abs:0.02")
        if kind == "recovery" and not 0.0 < value <= 1.0:
            raise KickError(f"{where} {text!r} is outside (0, 1]: give the share of the dense score to keep, e.g. 0.9")
        return cls(value, kind)

    def exceeded(self, change: Change) -> bool:
        """Whether ``change`` lost more than this tolerance allows."""
        if self.kind == "absolute":
            return change.absolute_drop > self.value + _EPSILON
        if self.kind == "recovery":
            return change.recovery < self.value - _EPSILON
        return change.relative_drop > self.value + _EPSILON

    @property
    def text(self) -> str:
        if self.kind == "absolute":
            return f"absolute {self.value:.3g}"
        if self.kind == "recovery":
            return f"recovery >= {self.value:.1%}"
        return f"{self.value:.1%}"

    @property
    def stale_margin(self) -> float:
        """How much better than dense a result may be before its baseline looks stale (a relative gain)."""
        return max(0.05, 2 * self.value if self.kind == "relative" else 0.0)

    def to_dict(self) -> dict:
        return {"value": self.value, "kind": self.kind, "text": self.text}
