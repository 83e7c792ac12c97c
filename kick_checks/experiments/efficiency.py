"""Efficiency, measured on the run's own weights and device: bytes as stored, and tokens per second.

**Storage.** Every compressible layer is looked at: its shape, its exact count of non-zeros, whether its zeros
really follow the spec's N:M pattern, whether its values really lie on a ``2^bits`` grid per group. Only the
formats the weights actually fit are priced, each with its index or scale overhead stated
(:data:`FORMATS`), and the smallest of them is what the run "stores as". Values are priced at 16 bits (a bf16 or
fp16 checkpoint) whatever dtype the run computed in; the layers outside the decoder blocks (embeddings, norms,
head) are counted at 16 bits too, once even when tied.

**Throughput.** Prefill and greedy decoding of the fixed probe (:mod:`.probe`) on the run's device, in the
run's dtype, timed with the device synchronised. kick-checks keeps compressed weights in ordinary dense tensors
(zeros stay in, quantized values are stored dequantized), so this is the real speed of *this* run's kernels,
which is the dense speed: the storage figures say what a sparse or packed format would need, not what it would
run at (that needs sparse or low-bit kernels, e.g. 2:4 sparse tensor cores or Marlin, which kick-checks does not
use).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from compressors.layerwise import compressible_layers
from compressors.spec import CompressionSpec
from kick_checks.engine.kv_cache import cache_keyword, returned_cache
from kick_checks.experiments.probe import NEW_TOKENS

VALUE_BITS = 16
#: Rows of each quantized layer whose groups are checked for lying on the grid (a full check would sort every
#: weight; a wrong quantizer shows on any row).
GRID_CHECK_ROWS = 8
KERNELS_NOTE = (
    "throughput is the real speed of this run's dense kernels: zeros and fake-quantized weights cost as much as "
    "any weight, so it is about the dense speed; the storage figures are what a sparse or packed format would "
    "need, not a speed-up"
)
FORMATS = {
    "dense": "every weight at 16 bits",
    "bitmap": "kept values at 16 bits + 1 bit per weight marking whether it is kept",
    "csr": "kept values at 16 bits + a column index per kept value (16-bit, 32-bit past 65536 columns) + a 32-bit "
           "row pointer per row",
    "n:m": "N:M semi-structured: kept values at 16 bits + a ceil(log2 M)-bit position per kept value "
           "(2:4: 2 bits per kept value, 4 bits per group of four)",
    "gptq": "GPTQ packed: BITS-bit levels in int32 words, an fp16 scale and a BITS-bit packed zero point per "
            "group and output row, an int32 group index per input column",
    "n:m+gptq": "N:M positions as above + the kept values as BITS-bit levels with GPTQ's scales and zero points "
                "(as 2:4 sparse int4 kernels store them)",
}


@dataclass(frozen=True)
class LayerFacts:
    """What one weight matrix ``[rows, cols]`` holds, as measured."""

    name: str
    rows: int
    cols: int
    nonzeros: int
    follows_pattern: bool  # every group of M consecutive inputs has at least N zeros (False when unstructured)
    on_grid: bool  # its groups hold at most 2^bits distinct values (False when not quantized)

    @property
    def numel(self) -> int:
        return self.rows * self.cols


def _index_bits(count: int) -> int:
    return max(1, math.ceil(math.log2(count)))


def _words(values: int, bits: int) -> int:
    """Bytes of ``values`` levels of ``bits`` bits packed into int32 words."""
    return math.ceil(values * bits / 32) * 4


def _gptq_side_bytes(layer: LayerFacts, bits: int, group_size: int) -> int:
    """Scales, packed zero points and group indices of one GPTQ layer (as kick export writes them)."""
    groups = 1 if group_size == -1 else math.ceil(layer.cols / group_size)
    return groups * layer.rows * 2 + groups * _words(layer.rows, bits) + layer.cols * 4


def layer_bytes(layer: LayerFacts, spec: CompressionSpec) -> dict[str, int]:
    """The bytes each format that fits ``layer`` needs (see :data:`FORMATS`)."""
    value_bytes = VALUE_BITS // 8
    formats = {
        "dense": layer.numel * value_bytes,
        "bitmap": math.ceil(layer.numel / 8) + layer.nonzeros * value_bytes,
        "csr": layer.nonzeros * (value_bytes + (2 if layer.cols <= 65536 else 4)) + (layer.rows + 1) * 4,
    }
    pattern = spec.pattern
    kept = layer.numel * (pattern.m - pattern.n) // pattern.m if pattern.is_structured else 0
    if pattern.is_structured and layer.follows_pattern and layer.cols % pattern.m == 0:
        formats["n:m"] = kept * value_bytes + math.ceil(kept * _index_bits(pattern.m) / 8)
    if spec.bits is not None and layer.on_grid:
        side = _gptq_side_bytes(layer, spec.bits, spec.group_size)
        formats["gptq"] = layer.rows * _words(layer.cols, spec.bits) + side
        if "n:m" in formats:
            formats["n:m+gptq"] = (math.ceil(kept * spec.bits / 8) + math.ceil(kept * _index_bits(pattern.m) / 8)
                                   + side)
    return formats


def _follows_pattern(weight: torch.Tensor, spec: CompressionSpec) -> bool:
    pattern = spec.pattern
    if not pattern.is_structured or weight.shape[1] % pattern.m:
        return False
    zeros = (weight == 0).reshape(weight.shape[0], -1, pattern.m).sum(dim=-1)
    return bool((zeros >= pattern.n).all())


def _on_grid(weight: torch.Tensor, spec: CompressionSpec) -> bool:
    """Whether the first rows' groups each hold at most ``2^bits`` distinct values (zeros of pruning included:
    GPTQ after pruning keeps them as a grid value)."""
    if spec.bits is None:
        return False
    rows = weight[:GRID_CHECK_ROWS].float()
    size = rows.shape[1] if spec.group_size == -1 else spec.group_size
    for start in range(0, rows.shape[1], size):
        group = rows[:, start:start + size].sort(dim=1).values
        distinct = 1 + (group[:, 1:] != group[:, :-1]).sum(dim=1)
        if int(distinct.max()) > 2**spec.bits:
            return False
    return True


def layer_facts(model: nn.Module, spec: CompressionSpec) -> list[LayerFacts]:
    facts = []
    with torch.no_grad():
        for name, layer in compressible_layers(model):
            weight = layer.weight
            facts.append(LayerFacts(name, weight.shape[0], weight.shape[1], int(torch.count_nonzero(weight)),
                                    _follows_pattern(weight, spec), _on_grid(weight, spec)))
    return facts


def _other_parameter_count(model: nn.Module) -> int:
    """Parameters outside the compressible layers (embeddings, norms, head), tied ones counted once."""
    inside = {id(layer.weight) for _, layer in compressible_layers(model)}
    inside |= {id(layer.bias) for _, layer in compressible_layers(model) if layer.bias is not None}
    return sum(parameter.numel() for parameter in model.parameters() if id(parameter) not in inside)


def choose_format(totals: dict[str, int]) -> str:
    """The smallest format; within 0.1% of it, the most structured one (a 2:4 layer with a few more zeros than
    2:4 needs is a few bytes smaller as a bitmap, but 2:4 is what kernels read)."""
    smallest = min(totals.values())
    close = [name for name in totals if totals[name] <= smallest * 1.001]
    return max(close, key=list(FORMATS).index)


def storage(facts: list[LayerFacts], spec: CompressionSpec, other_parameters: int) -> dict:
    """Totals per format over the layers that fit it everywhere; ``stored_as`` is the smallest."""
    totals: dict[str, int] = {}
    for name in FORMATS:
        per_layer = [layer_bytes(layer, spec).get(name) for layer in facts]
        if facts and all(size is not None for size in per_layer):
            totals[name] = sum(per_layer)
    stored_as = choose_format(totals)
    other = other_parameters * VALUE_BITS // 8
    return {
        "value_bits": VALUE_BITS,
        "layers": len(facts),
        "formats": totals,
        "stored_as": stored_as,
        "format": FORMATS[stored_as].replace("BITS", str(spec.bits)),
        "bytes": totals[stored_as],
        "dense_bytes": totals["dense"],
        "ratio": totals[stored_as] / totals["dense"],
        "other_bytes": other,
        "total_bytes": totals[stored_as] + other,
        "pattern_held": all(layer.follows_pattern for layer in facts) if spec.pattern.is_structured else None,
        "on_grid": all(layer.on_grid for layer in facts) if spec.bits is not None else None,
    }


def measure_storage(model: nn.Module, spec: CompressionSpec) -> dict:
    return storage(layer_facts(model, spec), spec, _other_parameter_count(model))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(model: nn.Module, ids: torch.Tensor, new_tokens: int = NEW_TOKENS, *,
                       around_prefill: Callable[[], AbstractContextManager] = nullcontext,
                       on_prefill: Callable[[torch.Tensor], None] | None = None) -> dict:
    """Tokens per second of one prefill of ``ids`` (``[prompts, tokens]``) and of ``new_tokens`` greedy steps
    after it, after a tiny warm-up forward (first-call allocations and kernel selection are not the model's
    speed). The divergence probe rides on the same prefill: ``around_prefill`` wraps it (its hooks keep each
    block's output on the device, a copy well under 1% of the forward), ``on_prefill`` gets its logits."""
    device = model.get_input_embeddings().weight.device
    ids = ids.to(device)
    with torch.no_grad():
        model(ids[:1, :8], use_cache=False)
        with around_prefill():
            _synchronize(device)
            started = time.perf_counter()
            output = model(ids, use_cache=True)
            _synchronize(device)
            prefill_seconds = time.perf_counter() - started
        if on_prefill is not None:
            on_prefill(output.logits)
        keyword = cache_keyword(model)

        def step(output):
            token = output.logits[:, -1].argmax(dim=-1, keepdim=True)
            return model(token, use_cache=True, **{keyword: returned_cache(output)})

        output = step(output)  # warm-up step with a cache
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(new_tokens):
            output = step(output)
        _synchronize(device)
        decode_seconds = time.perf_counter() - started
    prompts, tokens = ids.shape
    return {
        "prefill_tokens_per_s": prompts * tokens / prefill_seconds,
        "decode_tokens_per_s": prompts * new_tokens / decode_seconds,
        "prompts": prompts,
        "prompt_tokens": tokens,
        "new_tokens": new_tokens,
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
    }
