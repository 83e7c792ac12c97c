"""Choosing which weights to remove, given a score per weight (lower score = removed first).

All functions return a boolean mask that is ``True`` where a weight is **pruned**. Counts are exact:
ties are broken by position, never by a ``<=`` threshold that could remove more than asked.
"""

from __future__ import annotations

import torch

from compressors.spec import Pattern


def target_count(numel: int, sparsity: float) -> int:
    """Number of weights to remove from ``numel`` at ``sparsity``, rounded to the nearest weight."""
    return int(round(numel * sparsity))


def smallest_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of exactly ``k`` entries with the lowest scores, over the whole tensor."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        index = torch.topk(scores.reshape(-1).float(), k, largest=False, sorted=False).indices
        mask[index] = True
    return mask.view_as(scores)


def per_row_mask(scores: torch.Tensor, k_total: int) -> torch.Tensor:
    """Remove ``k_total`` weights of a 2-D score matrix, comparing scores only within each output row.

    Every row loses ``k_total // rows`` weights; the remainder goes, one each, to the rows whose next
    candidate has the lowest score. The total is therefore exact while each row stays balanced (Wanda's
    per-output comparison). Within a row, equal scores go in column order, as a stable sort would take them;
    a selection (``kthvalue``) finds the cut in linear time instead of sorting the row.
    """
    rows, cols = scores.shape
    base, extra = divmod(k_total, rows)
    scores = scores.float()
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if base:
        cut = scores.kthvalue(base, dim=1, keepdim=True).values
        below = scores < cut
        at_cut = scores == cut
        still_needed = base - below.sum(dim=1, keepdim=True)
        mask = below | (at_cut & (at_cut.cumsum(dim=1) <= still_needed))
    if extra:
        next_scores = scores.masked_fill(mask, float("inf")).min(dim=1).values
        lowest_left = ~mask & (scores == next_scores[:, None])
        next_candidate = lowest_left.int().argmax(dim=1)  # the first column holding the row's lowest score left
        chosen_rows = torch.topk(next_scores, extra, largest=False, sorted=False).indices
        mask[chosen_rows, next_candidate[chosen_rows]] = True
    return mask


def n_m_mask(scores: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """Remove the ``pattern.n`` lowest-scored weights in every group of ``pattern.m`` consecutive inputs."""
    rows, cols = scores.shape
    if cols % pattern.m:
        raise ValueError(
            f"N:M pattern {pattern} needs the input width to be a multiple of {pattern.m}, got {cols}: "
            "choose an M that divides it"
        )
    groups = scores.float().reshape(rows, cols // pattern.m, pattern.m)
    index = torch.topk(groups, pattern.n, dim=2, largest=False, sorted=False).indices
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(2, index, True)
    return mask.reshape(rows, cols)


def pattern_mask(scores: torch.Tensor, sparsity: float, pattern: Pattern, *, per_row: bool) -> torch.Tensor:
    """The mask for a whole matrix: N:M groups, or an exact unstructured count (per row or per matrix)."""
    if pattern.is_structured:
        return n_m_mask(scores, pattern)
    k_total = target_count(scores.numel(), sparsity)
    return per_row_mask(scores, k_total) if per_row else smallest_k_mask(scores, k_total)
