"""Magnitude pruning: remove the weights of smallest absolute value in each weight matrix."""

from __future__ import annotations

import torch

from compressors.base import LayerwisePruner, register
from compressors.masks import pattern_mask
from compressors.spec import CompressionSpec


@register("magnitude")
class MagnitudePruner(LayerwisePruner):
    """Per weight matrix, |W| decides; an exact number of weights goes (ties broken by position)."""

    needs_calibration = False

    def prune_weight(self, weight: torch.Tensor, statistic, spec: CompressionSpec) -> torch.Tensor:
        mask = pattern_mask(weight.abs(), spec.sparsity, spec.pattern, per_row=False)
        return weight.masked_fill(mask, 0.0)
