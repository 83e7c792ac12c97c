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


def group_starts(columns: int, group_size: int) -> range:
    """First column of every group (one group when ``group_size`` is -1 or covers the width)."""
    step = columns if group_size == -1 or group_size >= columns else group_size
    return range(0, columns, step)


def round_to_nearest(weight: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> torch.Tensor:
    """Quantize every group to its own min/max grid, each weight to its nearest level (the naive baseline)."""
    quantized = torch.empty_like(weight)
    columns = weight.shape[1]
    step = columns if group_size == -1 else group_size
    for start in group_starts(columns, group_size):
        group = weight[:, start : start + step]
        quantized[:, start : start + step] = Grid.fit(group, bits, symmetric).quantize(group)
    return quantized
