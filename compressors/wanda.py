"""Wanda (Sun et al., 2023): prune by |W_ij| * ||X_j||, comparing weights within each output row."""

from __future__ import annotations

import torch
from torch import nn

from compressors.base import LayerwisePruner, register
from compressors.masks import pattern_mask
from compressors.spec import CompressionSpec
from compressors.statistics import InputNorms


@register("wanda")
class WandaPruner(LayerwisePruner):
    """Weights and activations: the score of a weight is its magnitude times its input feature's norm."""

    def statistic(self, name: str, layer: nn.Linear) -> InputNorms:
        return InputNorms(layer.in_features, device=layer.weight.device)

    def prune_weight(self, weight: torch.Tensor, statistic: InputNorms, spec: CompressionSpec) -> torch.Tensor:
        scores = weight.abs() * statistic.norms().to(weight.device)[None, :]
        mask = pattern_mask(scores, spec.sparsity, spec.pattern, per_row=True)
        return weight.masked_fill(mask, 0.0)
