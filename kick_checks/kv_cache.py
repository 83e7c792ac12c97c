"""How a key-value cache is handed to a model and read back, across transformers releases.

transformers 5.24 renamed the forward argument and the output field ``past_key_values`` to ``cache`` (the old
name still works there, with a deprecation warning, and may go away); earlier releases know only the old name.
Everything in kick-checks that passes a cache by hand goes through these two functions.
"""

from __future__ import annotations

import inspect
from functools import lru_cache


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
