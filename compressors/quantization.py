"""Uniform integer quantization grids, per output row and group of input columns (the grid GPTQ and RTN share).

A group of ``group_size`` consecutive input columns shares one scale and zero point per output row; the last
group is shorter when the group size does not divide the width (as in the published GPTQ code), and
``group_size == -1`` means one group spanning the row. Symmetric grids centre the zero point; asymmetric grids
span the group's min..max. Weights are stored dequantized ("fake quant"), so the model runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Grid:
    """``scale``, ``zero``: ``[rows, 1]``; a weight maps to ``scale * (clamp(round(w / scale) + zero) - zero)``."""

    scale: torch.Tensor
    zero: torch.Tensor
    max_level: int

    @classmethod
    def fit(cls, weights: torch.Tensor, bits: int, symmetric: bool) -> Grid:
        """The grid for ``weights`` ``[rows, columns]`` (min/max per row, always including 0)."""
        max_level = 2**bits - 1
        low = weights.min(dim=1, keepdim=True).values.clamp(max=0)
        high = weights.max(dim=1, keepdim=True).values.clamp(min=0)
        if symmetric:
            high = torch.maximum(low.abs(), high)
            low = -high
        flat = (high - low) == 0
        low, high = torch.where(flat, -torch.ones_like(low), low), torch.where(flat, torch.ones_like(high), high)
        scale = (high - low) / max_level
        zero = torch.full_like(scale, (max_level + 1) / 2) if symmetric else torch.round(-low / scale)
        return cls(scale, zero, max_level)

    def levels(self, weights: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.round(weights / self.scale) + self.zero, 0, self.max_level)

    def quantize(self, weights: torch.Tensor) -> torch.Tensor:
        return self.scale * (self.levels(weights) - self.zero)


@dataclass(frozen=True)
class QuantizedLayer:
    """The integer form of a quantized weight ``[rows, columns]``: ``scale[:, g] * (levels - zero[:, g])`` with
    ``g = g_idx[column]``. ``scale`` and ``zero`` are ``[rows, groups]``; ``g_idx`` maps each input column to its
    group (act-order permutes it). This is what an export packs; the model itself runs on :meth:`dequantize`."""

    levels: torch.Tensor  # uint8 [rows, columns]
    scale: torch.Tensor  # float32 [rows, groups]
    zero: torch.Tensor  # float32 [rows, groups], integer-valued
    g_idx: torch.Tensor  # int64 [columns]

    @classmethod
    def from_columns(cls, quantized: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                     g_idx: torch.Tensor) -> QuantizedLayer:
        """From a fake-quantized weight and the scale and zero point of every column (all ``[rows, columns]``)."""
        groups = int(g_idx.max()) + 1
        first_column = (g_idx[None, :] == torch.arange(groups, device=g_idx.device)[:, None]).int().argmax(dim=1)
        levels = torch.round(quantized / scales + zeros)
        return cls(levels.to(torch.uint8), scales[:, first_column].contiguous(), zeros[:, first_column].contiguous(),
                   g_idx)

    def column_scale(self) -> torch.Tensor:
        return self.scale[:, self.g_idx]

    def column_zero(self) -> torch.Tensor:
        return self.zero[:, self.g_idx]

    def dequantize(self) -> torch.Tensor:
        return self.column_scale() * (self.levels.float() - self.column_zero())


def group_starts(columns: int, group_size: int) -> range:
    """First column of every group (one group when ``group_size`` is -1 or covers the width)."""
    step = columns if group_size == -1 or group_size >= columns else group_size
    return range(0, columns, step)


def round_to_nearest_layer(weight: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> QuantizedLayer:
    """Quantize every group to its own min/max grid, each weight to its nearest level (the naive baseline)."""
    rows, columns = weight.shape
    step = columns if group_size == -1 or group_size >= columns else group_size
    starts = group_starts(columns, group_size)
    levels = torch.empty(rows, columns, dtype=torch.uint8, device=weight.device)
    scale = torch.empty(rows, len(starts), device=weight.device)
    zero = torch.empty_like(scale)
    for index, start in enumerate(starts):
        grid = Grid.fit(weight[:, start : start + step], bits, symmetric)
        levels[:, start : start + step] = grid.levels(weight[:, start : start + step]).to(torch.uint8)
        scale[:, index], zero[:, index] = grid.scale[:, 0], grid.zero[:, 0]
    g_idx = torch.arange(columns, device=weight.device) // step
    return QuantizedLayer(levels, scale, zero, g_idx)


def round_to_nearest(weight: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> torch.Tensor:
    """The dequantized result of :func:`round_to_nearest_layer`."""
    return round_to_nearest_layer(weight, bits, group_size, symmetric).dequantize()
