"""An example pruner from outside kick-checks: remove the smallest weights of every output row.

It implements the compressor protocol (``compressor(model, spec, calibration)``, changing weights in place) and
uses kick-checks' layer-by-layer walk, so it runs on any model the suite loads. Install this folder
(``pip install -e examples/kick-example-pruner``) and select it by its entry-point name,
``--kick-method row-magnitude``, or without installing by import path,
``--kick-method kick_example_pruner:RowMagnitude``.
"""

from __future__ import annotations

import torch
from torch import nn

from compressors.layerwise import walk_blocks
from compressors.masks import per_row_mask, target_count
from compressors.spec import CompressionSpec


class RowMagnitude:
    needs_calibration = False

    def __call__(self, model: nn.Module, spec: CompressionSpec, calibration: torch.Tensor | None) -> None:
        if spec.pattern.is_structured:
            raise ValueError("row-magnitude prunes unstructured only")

        def prune(_name: str, layer: nn.Linear, _statistic) -> None:
            weight = layer.weight.data
            mask = per_row_mask(weight.abs().float(), target_count(weight.numel(), spec.sparsity))
            weight.masked_fill_(mask, 0.0)

        walk_blocks(model, None, statistic=None, compress=prune)
