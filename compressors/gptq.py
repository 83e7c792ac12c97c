"""GPTQ (Frantar et al., 2023): quantize columns one at a time, pushing each column's rounding error onto the
columns not yet quantized through the Cholesky factor of the inverse Hessian ``H = 2 X Xᵀ``.

Columns go left to right in blocks of 128 (lazy batch updates). A group's grid is fitted when the sweep reaches
its first column, on the group's columns as they stood when the block holding that column began, without the
errors pushed inside that block so far: the published rule (a group that straddles a block boundary takes its
later columns as they stood then too). With a group size that is a multiple of 128, or -1, every group starts on a
block boundary, where that is the same as the weights as updated so far. ``act_order`` visits columns by
decreasing Hessian diagonal (groups then follow that order). Damping is 1% of the mean diagonal. With
``keep_zeros`` the zeros already in the weight (from pruning) stay zero and only the survivors are quantized.

Also here: ``rtn``, round-to-nearest on the same grid, the naive baseline GPTQ should beat.
"""

from __future__ import annotations

import torch
from torch import nn

from compressors.base import LayerwisePruner, register
from compressors.quantization import Grid, QuantizedLayer, round_to_nearest_layer
from compressors.sparsegpt import BLOCK_SIZE, DAMPING, inverse_hessian_factor
from compressors.spec import CompressionSpec
from compressors.statistics import Hessian


def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    bits: int,
    *,
    group_size: int = 128,
    symmetric: bool = True,
    act_order: bool = False,
    keep_zeros: bool = False,
    block_size: int = BLOCK_SIZE,
    damping: float = DAMPING,
) -> QuantizedLayer:
    """Quantize ``weight`` ``[rows, cols]``; the result's ``dequantize()`` is the fake-quantized weight, and its
    levels, scales, zero points and column groups are what an export packs."""
    weight = weight.clone().float()
    rows, cols = weight.shape
    hessian = hessian.clone().float().to(weight.device)
    zeros_mask = weight == 0 if keep_zeros else None
    dead = torch.diagonal(hessian) == 0
    hessian[dead, dead] = 1.0
    weight[:, dead] = 0.0
    order = torch.argsort(torch.diagonal(hessian), descending=True) if act_order else torch.arange(cols)
    weight, hessian = weight[:, order], hessian[order][:, order]
    if zeros_mask is not None:
        zeros_mask = zeros_mask[:, order]
    inverse_factor = inverse_hessian_factor(hessian, damping)
    # The sweep works on the transpose, so that each column it visits, writes and updates is contiguous memory.
    columns_first = weight.T.contiguous()
    quantized = torch.zeros_like(columns_first)
    scales, zero_points = torch.zeros_like(columns_first), torch.zeros_like(columns_first)
    pruned = zeros_mask.T.contiguous() if zeros_mask is not None else None
    group = cols if group_size == -1 else group_size
    max_level = 2**bits - 1

    for start in range(0, cols, block_size):
        end = min(start + block_size, cols)
        block = columns_first[start:end].clone()
        errors = torch.zeros_like(block)
        factor = inverse_factor[start:end, start:end]
        diagonal = torch.diagonal(factor).tolist()
        for offset in range(end - start):
            column = start + offset
            if column % group == 0:
                # ``columns_first`` holds the weights as they stood when this block began (the block's own
                # updates go to ``block``, the later columns' after it), so a group reaching into the next block
                # takes those columns as they stood then too.
                width = min(group, cols - column)
                upcoming = columns_first[column : column + width]
                grid = Grid.fit(upcoming.T, bits, symmetric)
                scale, zero = grid.scale[:, 0], grid.zero[:, 0]
                scales[column : column + width] = scale
                zero_points[column : column + width] = zero
            # In place, into the rows of ``quantized`` and ``errors`` (the same arithmetic as
            # ``scale * (clamp(round(current / scale) + zero) - zero)`` without a tensor per step).
            current, rounded, error = block[offset], quantized[column], errors[offset]
            torch.div(current, scale, out=rounded).round_().add_(zero).clamp_(0, max_level).sub_(zero).mul_(scale)
            if pruned is not None:
                rounded.masked_fill_(pruned[column], 0.0)
            torch.sub(current, rounded, out=error).div_(diagonal[offset])
            block[offset:].addr_(factor[offset, offset:], error, alpha=-1.0)
        columns_first[end:] -= inverse_factor[start:end, end:].T @ errors
    quantized, scales, zero_points = quantized.T, scales.T, zero_points.T
    inverse_order = torch.argsort(order)
    g_idx = torch.empty(cols, dtype=torch.long, device=weight.device)
    g_idx[order.to(weight.device)] = torch.arange(cols, device=weight.device) // group
    return QuantizedLayer.from_columns(quantized[:, inverse_order], scales[:, inverse_order],
                                       zero_points[:, inverse_order], g_idx)


def reconstruction_error(original: torch.Tensor, compressed: torch.Tensor, hessian: torch.Tensor) -> float:
    """Relative output error on the calibration inputs: ``tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)``."""
    delta = (original - compressed).float()
    hessian = hessian.float()
    denominator = torch.einsum("ij,jk,ik->", original.float(), hessian, original.float()).item()
    return torch.einsum("ij,jk,ik->", delta, hessian, delta).item() / max(denominator, 1e-30)


class _Quantizer(LayerwisePruner):
    """Shared by GPTQ and RTN: records each layer's quantization error for the report and, when
    ``keep_integer_form`` is set (by an export), each layer's :class:`QuantizedLayer` in ``quantized_layers``."""

    def __init__(self) -> None:
        self.layer_errors: dict[str, float] = {}
        self.keep_integer_form = False
        self.quantized_layers: dict[str, QuantizedLayer] = {}
        self._last: QuantizedLayer | None = None

    def prune_weight(self, weight: torch.Tensor, statistic, spec: CompressionSpec) -> torch.Tensor:
        self._last = self.quantize(weight, statistic, spec)
        return self._last.dequantize()

    def quantize(self, weight: torch.Tensor, statistic, spec: CompressionSpec) -> QuantizedLayer:
        raise NotImplementedError

    def after_layer(self, name: str, original: torch.Tensor, compressed: torch.Tensor, statistic) -> None:
        if self.keep_integer_form and self._last is not None:
            self.quantized_layers[name] = QuantizedLayer(
                self._last.levels.cpu(), self._last.scale.cpu(), self._last.zero.cpu(), self._last.g_idx.cpu())
        self._last = None
        if isinstance(statistic, Hessian):
            self.layer_errors[name] = reconstruction_error(original, compressed, statistic.matrix())
        else:
            delta = (original - compressed).pow(2).sum() / original.pow(2).sum().clamp(min=1e-30)
            self.layer_errors[name] = delta.item()


@register("gptq")
class GPTQ(_Quantizer):
    """Second-order weight quantization with calibration data; 2-8 bits, groups, sym/asym, act-order."""

    def statistic(self, name: str, layer: nn.Linear) -> Hessian:
        return Hessian(layer.in_features, device=layer.weight.device)

    def quantize(self, weight: torch.Tensor, statistic: Hessian, spec: CompressionSpec) -> QuantizedLayer:
        return gptq_quantize(
            weight, statistic.matrix(), spec.bits, group_size=spec.group_size, symmetric=spec.symmetric,
            act_order=spec.act_order, keep_zeros=spec.sparsity > 0,
        )


@register("rtn")
class RoundToNearest(_Quantizer):
    """Each weight to the nearest level of its group's grid; no calibration, so its error is reported relative
    in weight space."""

    needs_calibration = False

    def quantize(self, weight: torch.Tensor, statistic, spec: CompressionSpec) -> QuantizedLayer:
        layer = round_to_nearest_layer(weight, spec.bits, spec.group_size, spec.symmetric)
        if spec.sparsity > 0:  # pruned weights stay zero: their level is the zero point
            pruned = weight == 0
            levels = torch.where(pruned, layer.column_zero(), layer.levels.float()).to(torch.uint8)
            layer = QuantizedLayer(levels, layer.scale, layer.zero, layer.g_idx)
        return layer
