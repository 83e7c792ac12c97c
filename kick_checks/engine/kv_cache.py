"""How a key-value cache is handed to a model and read back, across transformers releases.

transformers 5.24 renamed the forward argument and the output field ``past_key_values`` to ``cache`` (the old
name still works there, with a deprecation warning, and may go away); earlier releases know only the old name.
Everything in kick-checks that passes a cache by hand goes through these two functions. The module also holds
the cache the generation engine builds: :func:`reserved_cache`, whose layers write each step in place.
"""

from __future__ import annotations

import inspect
from functools import lru_cache, partial


@lru_cache(maxsize=64)
def _keyword_for(forward_type: type, forward_name: str) -> str:
    forward = getattr(forward_type, forward_name)
    try:
        parameters = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def cache_keyword(model) -> str:
    """The name under which ``model``'s forward takes a key-value cache: ``cache`` or ``past_key_values``."""
    return _keyword_for(type(model), "forward")


def returned_cache(output):
    """The key-value cache a forward returned, under whichever name this transformers release gives it."""
    fields = output.keys() if hasattr(output, "keys") else ()
    if "cache" in fields:
        return output["cache"]
    return getattr(output, "past_key_values", None)


class _Store:
    """A tensor of shape ``[batch, heads, capacity, dim]`` of which the first ``length`` positions are in use."""

    __slots__ = ("data", "length")

    def __init__(self, tensor, reserve: int):
        batch, heads, length, dim = tensor.shape
        self.data = tensor.new_empty((batch, heads, length + reserve, dim))
        self.data[:, :, :length] = tensor
        self.length = length

    @classmethod
    def joined(cls, parts: list, reserve: int) -> _Store:
        """The row blocks ``parts`` (``[rows, heads, length, dim]`` each) stacked in one buffer with ``reserve``
        free positions, each right-aligned to the longest; the columns on the left of a shorter one are zeros
        (finite, so that a masked column cannot turn a score into NaN). One copy of each part."""
        width = max(part.shape[2] for part in parts)
        first = parts[0]
        store = cls.__new__(cls)
        store.data = first.new_empty((sum(part.shape[0] for part in parts), first.shape[1], width + reserve,
                                      first.shape[3]))
        start = 0
        for part in parts:
            rows, pad = part.shape[0], width - part.shape[2]
            if pad:
                store.data[start : start + rows, :, :pad].zero_()
            store.data[start : start + rows, :, pad:width] = part
            start += rows
        store.length = width
        return store

    def keep_rows(self, kept: list[int]) -> None:
        """Keep rows ``kept`` (increasing) in place: each moves forward over a dropped one, nothing is reallocated."""
        for line, row in enumerate(kept):
            if line != row:
                self.data[line, :, : self.length] = self.data[row, :, : self.length]
        self.data = self.data[: len(kept)]

    def view(self):
        return self.data[:, :, : self.length]

    def append(self, tensor, reserve: int) -> None:
        added = tensor.shape[-2]
        if self.length + added > self.data.shape[-2]:
            grown = self.data.new_empty((*self.data.shape[:2], self.length + added + reserve, self.data.shape[-1]))
            grown[:, :, : self.length] = self.view()
            self.data = grown
        self.data[:, :, self.length : self.length + added] = tensor
        self.length += added


@lru_cache(maxsize=1)
def reserved_layer_type() -> type:
    """A transformers ``DynamicLayer`` that writes new keys and values into room kept free behind the cached ones.

    transformers' own layer concatenates on every step, which copies the whole cache: on a CPU, at 900 cached
    tokens and 16 rows, that copying costs as much as the attention that reads it. This layer keeps ``reserve``
    free positions (the most tokens a caller will still add) and writes each step's keys and values in place; the
    attention reads a view of the filled part, the same numbers in the same layout. Setting ``keys`` or ``values``
    (to select rows or drop columns) stores a copy with the room kept free again. The class is made on first use,
    so that importing this module does not import transformers.
    """
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        def __init__(self, reserve: int):
            self.reserve = max(int(reserve), 1)
            self._stores = {"keys": None, "values": None}
            super().__init__()

        def _get(self, name):
            store = self._stores[name]
            return None if store is None else store.view()

        def _set(self, name, tensor) -> None:
            if tensor is None or tensor.dim() != 4:  # None, or the empty placeholder of a fresh layer
                self._stores[name] = None
            else:
                self._stores[name] = _Store(tensor, self.reserve)

        keys = property(lambda self: self._get("keys"), lambda self, tensor: self._set("keys", tensor))
        values = property(lambda self: self._get("values"), lambda self, tensor: self._set("values", tensor))

        def lazy_initialization(self, key_states, value_states) -> None:
            self.device = key_states.device
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            for name, tensor in (("keys", key_states), ("values", value_states)):
                if self._stores[name] is None:
                    self._stores[name] = _Store(tensor, self.reserve)
                else:
                    self._stores[name].append(tensor, self.reserve)
            return self.keys, self.values

        def get_seq_length(self, *args, **kwargs) -> int:  # older releases pass a cache position
            store = self._stores["keys"]
            return 0 if store is None else store.length

        def keep_rows(self, kept: list[int]) -> None:
            """Keep only rows ``kept`` (increasing positions), moving them in place."""
            for store in self._stores.values():
                if store is not None:
                    store.keep_rows(kept)

    return ReservedLayer


def reserved_cache(key_values, reserve: int):
    """A ``DynamicCache`` of :func:`reserved_layer_type` layers holding ``key_values`` (pairs per layer, or none)."""
    from transformers import DynamicCache

    layer_type = reserved_layer_type()
    cache = DynamicCache()
    layers = []
    for keys, values in key_values:
        layer = layer_type(reserve)
        layer.update(keys, values)
        layers.append(layer)
    if layers:
        cache.layers = layers
    else:
        cache.layer_class_to_replicate = partial(layer_type, reserve)
    return cache


def joined_cache(parts: list[list], reserve: int):
    """One reserved cache of the rows of several: ``parts[b][layer]`` is the ``(keys, values)`` of batch ``b``;
    batches stack in order, each right-aligned to the longest (see :meth:`_Store.joined`)."""
    from transformers import DynamicCache

    layer_type = reserved_layer_type()
    layers = []
    for per_batch in zip(*parts):
        layer = layer_type(reserve)
        keys = _Store.joined([keys for keys, _ in per_batch], reserve)
        values = _Store.joined([values for _, values in per_batch], reserve)
        layer._stores = {"keys": keys, "values": values}
        layer.lazy_initialization(keys.data, values.data)
        layers.append(layer)
    cache = DynamicCache()
    cache.layers = layers
    return cache
