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
DEFAULT_BITS = 4
DEFAULT_GROUP_SIZE = 128
#: What each layer's calibration statistics see (compressors.layerwise.walk_blocks): "layer" = the model as
#: compressed so far, earlier layers of the same block included; "block" = the dense block on the compressed
#: earlier blocks' outputs, as the published Wanda and SparseGPT code do.
SEQUENTIAL_CHOICES = ("layer", "block")
DEFAULT_SEQUENTIAL = "layer"
#: Methods that only quantize; every other method prunes (and quantizes the survivors when --kick-bits is set).
QUANTIZATION_METHODS = ("gptq", "rtn")


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
    """What the compressor is asked to do. ``sparsity == 0`` and no quantization means the dense model.

    ``bits`` set means weights are quantized (fake-quant: stored dequantized, so every task runs unchanged):
    alone with a quantization method (``gptq``, ``rtn``), or after pruning with a pruning method, in which case
    the survivors are quantized and the zeros kept. ``group_size`` -1 means one scale per output row.
    """

    method: str = DEFAULT_METHOD
    sparsity: float = 0.0
    pattern: Pattern = field(default=UNSTRUCTURED)
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    calib_seqlen: int = DEFAULT_CALIB_SEQLEN
    calib_seed: int = DEFAULT_CALIB_SEED
    bits: int | None = None
    group_size: int = DEFAULT_GROUP_SIZE
    symmetric: bool = True
    act_order: bool = False
    sequential: str = DEFAULT_SEQUENTIAL

    @property
    def is_dense(self) -> bool:
        return self.sparsity == 0.0 and self.bits is None

    @property
    def quantizes(self) -> bool:
        return self.bits is not None

    def quantization_label(self) -> str:
        group = "per-row" if self.group_size == -1 else f"g{self.group_size}"
        scheme = "sym" if self.symmetric else "asym"
        return f"{self.bits}-bit {group} {scheme}" + (" act-order" if self.act_order else "")

    def label(self) -> str:
        """Short human label such as ``wanda 50% unstructured``, ``gptq 4-bit g128 sym`` or ``dense``."""
        if self.is_dense:
            return "dense"
        parts = [self.method]
        if self.sparsity > 0:
            parts.append(f"{self.sparsity:.0%} {self.pattern}")
        if self.quantizes:
            parts.append(("+ " if self.sparsity > 0 else "") + self.quantization_label())
        if self.sequential != DEFAULT_SEQUENTIAL:
            parts.append(f"{self.sequential}-sequential")
        return " ".join(parts)

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


def positive_int(value, option: str) -> int:
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
    bits: str | int | None = None,
    group_size: str | int | None = None,
    symmetric: bool | None = None,
    act_order: bool | None = None,
    sequential: str | None = None,
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
    method = (method or DEFAULT_METHOD).strip()
    parsed_bits = _bits(bits)
    if method in QUANTIZATION_METHODS:
        if parsed_sparsity:
            raise SpecError(
                f"--kick-method {method} quantizes and does not prune: drop --sparsity/--kick-pattern, or prune with "
                "wanda/sparsegpt/magnitude and add --kick-bits to quantize the survivors"
            )
        parsed_bits = parsed_bits or DEFAULT_BITS
    elif parsed_bits is not None and not parsed_sparsity:
        raise SpecError(
            f"--kick-bits {parsed_bits} with --kick-method {method} and no --sparsity: use --kick-method gptq or rtn "
            "to quantize alone, or add --sparsity to prune and then quantize"
        )
    return CompressionSpec(
        method=method,
        sparsity=parsed_sparsity or 0.0,
        pattern=parsed_pattern,
        calib_samples=positive_int(calib_samples, "--kick-calib-samples")
        if calib_samples is not None
        else DEFAULT_CALIB_SAMPLES,
        calib_seqlen=positive_int(calib_seqlen, "--kick-calib-seqlen")
        if calib_seqlen is not None
        else DEFAULT_CALIB_SEQLEN,
        calib_seed=int(calib_seed) if calib_seed is not None else DEFAULT_CALIB_SEED,
        bits=parsed_bits,
        group_size=_group_size(group_size),
        symmetric=True if symmetric is None else bool(symmetric),
        act_order=bool(act_order),
        sequential=_sequential(sequential),
    )


def _sequential(value) -> str:
    if value is None:
        return DEFAULT_SEQUENTIAL
    text = str(value).strip().lower()
    if text not in SEQUENTIAL_CHOICES:
        raise SpecError(f"--kick-sequential {value!r} is not a choice: give 'layer' (each layer sees the model "
                        "compressed so far, the default) or 'block' (each block observed dense, as published)")
    return text


def _bits(value) -> int | None:
    if value is None:
        return None
    try:
        bits = int(value)
    except (TypeError, ValueError):
        raise SpecError(f"--kick-bits {value!r} is not a whole number: give 2 to 8") from None
    if not 2 <= bits <= 8:
        raise SpecError(f"--kick-bits {value} is outside 2-8: give the bits per weight, e.g. 4")
    return bits


def _group_size(value) -> int:
    if value is None:
        return DEFAULT_GROUP_SIZE
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise SpecError(f"--kick-group-size {value!r} is not a whole number: give -1 (per row) or e.g. 128") from None
    if size != -1 and size < 1:
        raise SpecError(f"--kick-group-size {value} is invalid: give -1 (one group per row) or a positive size")
    return size
