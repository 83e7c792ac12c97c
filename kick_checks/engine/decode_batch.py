"""The rows a decoding step runs together: their key-value cache, attention mask, next positions and last tokens.

:mod:`kick_checks.engine.continuous_batching` decides which rows run; this module keeps their state consistent
while rows join (prefilled chunks merged into one cache, each right-aligned, masked columns on the left), leave
(the rows after a finished one move into its place, in the same buffer) and while draft tokens are rejected
(the cache is compacted once enough of its columns are holes). Positions are explicit, so a token keeps its
position wherever its column is.
"""

from __future__ import annotations

import torch

from kick_checks.engine.kv_cache import joined_cache

HOLE_SHARE = 0.25
"""The cache is narrowed once this share of its columns is attended by no row (rejected draft tokens, the padding
of rows that left): narrowing copies the whole cache, a masked column costs only its read."""


def plain_layers(cache) -> list | None:
    """The cache's layers when each holds full keys and values we may reshape; else ``None``."""
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    for layer in layers:
        if type(layer).__name__ not in ("DynamicLayer", "ReservedLayer") or getattr(layer, "keys", None) is None:
            return None
    return list(layers)


def _left_pad(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    if columns == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class DecodeBatch:
    """The rows being decoded: their key-value cache, attention mask, next positions and last tokens."""

    def __init__(self, rows: list[int], cache, mask: torch.Tensor, positions: torch.Tensor, last: torch.Tensor):
        self.rows, self.cache, self.mask, self.positions, self.last = rows, cache, mask, positions, last

    def __len__(self) -> int:
        return len(self.rows)

    @staticmethod
    def merged(batches: list[DecodeBatch], reserve: int) -> DecodeBatch:
        """``batches`` as one, in order, each narrower cache padded with masked columns on the left; the cache
        keeps room for ``reserve`` more tokens (see :func:`kick_checks.engine.kv_cache.reserved_layer_type`)."""
        if len(batches) == 1:
            return batches[0]
        width = max(batch.mask.shape[1] for batch in batches)
        parts = [[(layer.keys, layer.values) for layer in plain_layers(batch.cache)] for batch in batches]
        mask = torch.cat([_left_pad(batch.mask, width - batch.mask.shape[1], 1) for batch in batches])
        return DecodeBatch([row for batch in batches for row in batch.rows], joined_cache(parts, reserve), mask,
                      torch.cat([batch.positions for batch in batches]), torch.cat([batch.last for batch in batches]))

    def compact(self) -> None:
        """Move every row's attended columns to the right end of a narrower cache, dropping the columns of
        rejected draft tokens (positions are explicit, so a token keeps its position wherever its column is)."""
        counts = self.mask.sum(dim=1)
        width = int(counts.max())
        if width == self.mask.shape[1]:
            return
        order = torch.sort(self.mask.to(torch.int8), dim=1, stable=True).indices[:, -width:]
        self.mask = self.mask.gather(1, order)
        for layer in plain_layers(self.cache):
            index = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
            layer.keys, layer.values = layer.keys.gather(2, index), layer.values.gather(2, index)

    def keep(self, kept: list[int]) -> None:
        """Keep only the rows at positions ``kept`` (increasing), moved in place in the cache; cache columns no
        kept row attends to are dropped once they are :data:`HOLE_SHARE` of the cache (dropping copies it)."""
        index = torch.tensor(kept, device=self.mask.device)
        self.rows = [self.rows[position] for position in kept]
        self.mask, self.positions, self.last = self.mask[index], self.positions[index], self.last[index]
        for layer in plain_layers(self.cache):
            if hasattr(layer, "keep_rows"):
                layer.keep_rows(kept)
            else:
                layer.keys, layer.values = layer.keys[index], layer.values[index]
        used = self.mask.any(dim=0)
        if int(used.sum()) < (1 - HOLE_SHARE) * used.numel():
            self.mask = self.mask[:, used]
            for layer in plain_layers(self.cache):
                layer.keys, layer.values = layer.keys[:, :, used], layer.values[:, :, used]
