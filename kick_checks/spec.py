"""The compression spec: what to do to the model, parsed once and carried everywhere.

A spec is frozen and hashable so it can key caches, name reports and travel with every result.
Parsing is strict: every bad value becomes a :class:`SpecError` whose message names the fix.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

#: Methods that are built in. Plug-ins add names through the compressor registry.
DEFAULT_METHOD = "wanda"
DEFAULT_CALIB_SAMPLES = 128
DEFAULT_CALIB_SEQLEN = 256
DEFAULT_CALIB_SEED = 0


class SpecError(ValueError):
    """A compression option that cannot be used; the message is one line that names the fix."""


@dataclass(frozen=True)
class Pattern:
    """Where zeros may fall.

    ``unstructured`` lets any weight go. ``N:M`` (kick-checks convention, as in the Wanda and SparseGPT
    code) means **N zeros in every group of M consecutive input weights** of each output row, so ``2:4`` and
    ``4:8`` are 50 % sparse and ``1:4`` is 25 % sparse.
    """

    n: int = 0
    m: int = 0

    @property
    def is_structured(self) -> bool:
        return self.m > 0

    @property
    def sparsity(self) -> float:
        return self.n / self.m if self.m else 0.0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.m else "unstructured"


UNSTRUCTURED = Pattern()
_N_M = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_pattern(text: str) -> Pattern:
    """Parse ``unstructured`` or ``N:M`` (N zeros out of every M consecutive input weights)."""
    if text is None or text.strip().lower() in ("", "unstructured", "none"):
        return UNSTRUCTURED
    match = _N_M.match(text)
    if not match:
        raise SpecError(
            f"--kick-pattern {text!r} is not a pattern: use 'unstructured' or N:M such as 2:4 or 4:8 "
            "(N zeros in every M consecutive input weights)"
        )
    n, m = int(match.group(1)), int(match.group(2))
    if m < 2 or not 0 < n < m:
        raise SpecError(
            f"--kick-pattern {text!r} is not a valid N:M pattern: need 0 < N < M and M >= 2, e.g. 2:4 "
            "(N zeros in every M consecutive input weights)"
        )
    return Pattern(n, m)


@dataclass(frozen=True)
class CompressionSpec:
    """What the compressor is asked to do. ``sparsity == 0`` and no quantization means the dense model."""

    method: str = DEFAULT_METHOD
    sparsity: float = 0.0
    pattern: Pattern = field(default=UNSTRUCTURED)
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    calib_seqlen: int = DEFAULT_CALIB_SEQLEN
    calib_seed: int = DEFAULT_CALIB_SEED

    @property
    def is_dense(self) -> bool:
        return self.sparsity == 0.0

    def label(self) -> str:
        """Short human label such as ``wanda 50% unstructured`` or ``dense``."""
        if self.is_dense:
            return "dense"
        return f"{self.method} {self.sparsity:.0%} {self.pattern}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["pattern"] = str(self.pattern)
        return data


def parse_sparsity(value: str | float | None) -> float | None:
    if value is None:
        return None
    try:
        sparsity = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"--sparsity {value!r} is not a number: give a fraction in [0, 1), e.g. 0.5") from None
    if not 0.0 <= sparsity < 1.0:
        raise SpecError(
            f"--sparsity {value} is outside [0, 1): give the fraction of weights to remove, e.g. 0.5 for 50%"
        )
    return sparsity


def _positive_int(value, option: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SpecError(f"{option} {value!r} is not an integer: give a whole number such as 128") from None
    if number <= 0:
        raise SpecError(f"{option} {value} must be positive")
    return number


def build_spec(
    *,
    method: str | None = None,
    sparsity: str | float | None = None,
    pattern: str | None = None,
    calib_samples: str | int | None = None,
    calib_seqlen: str | int | None = None,
    calib_seed: str | int | None = None,
) -> CompressionSpec:
    """Build a spec from raw option values (strings from the command line or config are fine).

    An N:M pattern fixes the sparsity at N/M; giving a different ``--sparsity`` with it is an error.
    """
    parsed_pattern = parse_pattern(pattern) if pattern is not None else UNSTRUCTURED
    parsed_sparsity = parse_sparsity(sparsity)
    if parsed_pattern.is_structured:
        if parsed_sparsity is not None and abs(parsed_sparsity - parsed_pattern.sparsity) > 1e-9:
            raise SpecError(
                f"--kick-pattern {parsed_pattern} removes {parsed_pattern.sparsity:g} of the weights but "
                f"--sparsity is {parsed_sparsity:g}: drop --sparsity or make it {parsed_pattern.sparsity:g}"
            )
        parsed_sparsity = parsed_pattern.sparsity
    return CompressionSpec(
        method=(method or DEFAULT_METHOD).strip(),
        sparsity=parsed_sparsity or 0.0,
        pattern=parsed_pattern,
        calib_samples=_positive_int(calib_samples, "--kick-calib-samples")
        if calib_samples is not None
        else DEFAULT_CALIB_SAMPLES,
        calib_seqlen=_positive_int(calib_seqlen, "--kick-calib-seqlen")
        if calib_seqlen is not None
        else DEFAULT_CALIB_SEQLEN,
        calib_seed=int(calib_seed) if calib_seed is not None else DEFAULT_CALIB_SEED,
    )
