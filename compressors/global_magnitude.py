"""Global magnitude pruning: one |W| threshold across every compressible layer, so layers lose different shares.

The threshold is the k-th smallest magnitude over all layers (k = the exact target count); weights tied at the
threshold are taken in layer order until the count is exact. Unstructured only: N:M is a per-group rule.
"""

from __future__ import annotations

import torch
from torch import nn

from compressors.base import register
from compressors.layerwise import compressible_layers
from compressors.masks import target_count
from compressors.spec import CompressionSpec, SpecError


@register("global-magnitude")
class GlobalMagnitudePruner:
    needs_calibration = False

    def __call__(self, model: nn.Module, spec: CompressionSpec, calibration: torch.Tensor | None) -> None:
        if spec.pattern.is_structured:
            raise SpecError("global-magnitude prunes unstructured only: drop --kick-pattern or use magnitude")
        layers = [layer for _, layer in compressible_layers(model)]
        magnitudes = torch.cat([layer.weight.data.abs().float().flatten().cpu() for layer in layers])
        remove = target_count(magnitudes.numel(), spec.sparsity)
        if remove == 0:
            return
        threshold = torch.kthvalue(magnitudes, remove).values.item()
        del magnitudes
        ties_left = remove - sum(int((layer.weight.data.abs().float() < threshold).sum()) for layer in layers)
        with torch.no_grad():
            for layer in layers:
                weight = layer.weight.data
                absolute = weight.abs().float()
                mask = absolute < threshold
                tied = (absolute == threshold).flatten().nonzero().flatten()[: max(ties_left, 0)]
                ties_left -= tied.numel()
                mask.view(-1)[tied] = True
                weight.masked_fill_(mask, 0.0)
