"""Random pruning, the floor every real method must beat: an exact count of weights chosen by a seeded draw.

Weights already zero are taken first, so the achieved sparsity is exact; the draw for each layer is seeded from
the calibration seed and the layer's name, so the same spec always removes the same weights.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

from compressors.base import register
from compressors.layerwise import walk_blocks
from compressors.masks import pattern_mask
from compressors.spec import CompressionSpec


@register("random")
class RandomPruner:
    needs_calibration = False

    def __call__(self, model: nn.Module, spec: CompressionSpec, calibration: torch.Tensor | None) -> None:
        def compress(name: str, layer: nn.Linear, _statistic) -> None:
            weight = layer.weight.data
            generator = torch.Generator().manual_seed(spec.calib_seed * 1_000_003 + zlib.crc32(name.encode()))
            scores = torch.rand(weight.shape, generator=generator).to(weight.device)
            scores[weight == 0] = -1.0
            weight.masked_fill_(pattern_mask(scores, spec.sparsity, spec.pattern, per_row=False), 0.0)

        walk_blocks(model, None, statistic=None, compress=compress)
