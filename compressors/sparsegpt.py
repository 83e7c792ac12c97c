"""SparseGPT (Frantar & Alistarh, 2023): prune with optimal-brain-surgeon updates of the remaining weights.

For each linear layer the Hessian ``H = 2 X Xᵀ`` of the reconstruction error is accumulated over calibration
inputs. Columns are processed left to right in blocks of 128: inside a block the mask is chosen adaptively by
``w² / [H⁻¹]²_jj``, each pruned weight's error is pushed onto the not-yet-processed columns through the
Cholesky factor of ``H⁻¹``, and after the block the accumulated error updates every later column at once.
N:M masks are chosen inside the same sweep, one group of M columns at a time. Inputs that never fire (a zero
Hessian diagonal) have their weights removed, as in the published code.

Unstructured, each block removes its share of exactly ``round(s · numel)`` weights (the lowest saliencies of the
block, ties by position). The published code thresholds each block at the score of sorted index ``int(s · n)``
with ``<=``, which removes one weight more per block (more on ties): ours reaches the exact target sparsity with
a slightly lower error.
"""

from __future__ import annotations

import torch
from torch import nn

from compressors.base import LayerwisePruner, register
from compressors.masks import smallest_k_mask, target_count
from compressors.spec import CompressionSpec, Pattern
from compressors.statistics import Hessian

BLOCK_SIZE = 128
DAMPING = 0.01


def inverse_hessian_factor(hessian: torch.Tensor, damping: float = DAMPING) -> torch.Tensor:
    """Upper Cholesky factor of ``(H + λI)⁻¹`` with ``λ = damping · mean(diag H)``.

    Inputs that never fire (zero diagonal) get a unit diagonal so the matrix stays invertible. If the damped
    matrix is still not positive definite, damping grows tenfold up to three times before giving up.
    """
    hessian = hessian.clone().float()
    diagonal = torch.diagonal(hessian)
    diagonal[diagonal == 0] = 1.0
    mean_diagonal = diagonal.mean()
    for attempt in range(4):
        damped = hessian.clone()
        torch.diagonal(damped).add_(damping * (10**attempt) * mean_diagonal)
        factor, info = torch.linalg.cholesky_ex(damped)
        if info == 0:
            inverse = torch.cholesky_inverse(factor)
            return torch.linalg.cholesky(inverse, upper=True)
    raise RuntimeError(
        "the layer Hessian is not positive definite even with 1000x damping: use more calibration samples"
    )


def _block_counts(cols: int, block: int, sparsity: float, rows: int) -> list[int]:
    """How many weights each column block removes, so the matrix total is exactly ``round(s · numel)``."""
    counts, start = [], 0
    while start < cols:
        end = min(start + block, cols)
        counts.append(target_count(rows * end, sparsity) - target_count(rows * start, sparsity))
        start = end
    return counts


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    pattern: Pattern,
    *,
    block_size: int = BLOCK_SIZE,
    damping: float = DAMPING,
) -> torch.Tensor:
    """Return a pruned copy of ``weight`` ``[rows, cols]`` given the input Hessian ``[cols, cols]``."""
    weight = weight.clone().float()
    rows, cols = weight.shape
    if pattern.is_structured:
        if cols % pattern.m:
            raise ValueError(
                f"N:M pattern {pattern} needs the input width to be a multiple of {pattern.m}, got {cols}"
            )
        block_size = max(pattern.m, block_size - block_size % pattern.m)
    hessian = hessian.to(weight.device)
    # Inputs that never fire (zero Hessian diagonal) say nothing about their weights: they go, as in the published
    # code. Their saliency is then 0, so they are the first weights of their block (or N:M group) to be counted.
    weight[:, torch.diagonal(hessian) == 0] = 0.0
    inverse_factor = inverse_hessian_factor(hessian, damping)
    block_counts = _block_counts(cols, block_size, sparsity, rows)

    # The sweep works on the transpose, so that each column it visits, writes and updates is contiguous memory.
    columns_first = weight.T.contiguous()
    for block_index, start in enumerate(range(0, cols, block_size)):
        end = min(start + block_size, cols)
        width = end - start
        block = columns_first[start:end].clone()
        pruned_block = torch.zeros_like(block)
        errors = torch.zeros_like(block)
        factor = inverse_factor[start:end, start:end]
        factor_diagonal = torch.diagonal(factor)
        diagonal = factor_diagonal.tolist()

        if pattern.is_structured:
            mask = torch.zeros_like(block, dtype=torch.bool)
        else:
            saliency = block.pow(2) / factor_diagonal.pow(2)[:, None]
            mask = smallest_k_mask(saliency.T, block_counts[block_index]).T

        for column in range(width):
            if pattern.is_structured and column % pattern.m == 0:
                group = slice(column, column + pattern.m)
                saliency = block[group].T.pow(2) / factor_diagonal[group].pow(2)[None, :]
                chosen = torch.topk(saliency, pattern.n, dim=1, largest=False).indices
                mask.T.scatter_(1, column + chosen, True)
            # In place, into the rows of ``pruned_block`` and ``errors``: no tensor per step.
            current, kept, error = block[column], pruned_block[column], errors[column]
            kept.copy_(current).masked_fill_(mask[column], 0.0)
            torch.sub(current, kept, out=error).div_(diagonal[column])
            block[column:].addr_(factor[column, column:], error, alpha=-1.0)

        columns_first[start:end] = pruned_block
        columns_first[end:] -= inverse_factor[start:end, end:].T @ errors
    weight = columns_first.T.contiguous()
    return weight


@register("sparsegpt")
class SparseGPTPruner(LayerwisePruner):
    """One-shot pruning with second-order weight updates; unstructured or N:M."""

    def statistic(self, name: str, layer: nn.Linear) -> Hessian:
        return Hessian(layer.in_features, device=layer.weight.device)

    def prune_weight(self, weight: torch.Tensor, statistic: Hessian, spec: CompressionSpec) -> torch.Tensor:
        return sparsegpt_prune(weight, statistic.matrix(), spec.sparsity, spec.pattern)
