"""``--kick-batch-size``: how many prompts go through the model at once.

Without the option every task uses its own default (32 for QA, 16 for option scoring, 48 for chat tasks): the batch
sizes the shipped baselines were recorded with. Padding changes the shapes a batch computes with, which in low
precision can flip a greedy answer, so the batch size of generation tasks is part of the baseline fingerprint.

``auto`` sizes batches from the device's memory: on a GPU the largest power of two (up to 256) whose key-value
cache and activations for the task's longest sequence fit in 60% of the GPU's memory beside the weights; total
memory is used, not free memory, so the choice is the same on every run of the same machine and the recorded
fingerprint stays valid. On the CPU ``auto`` keeps the task default, which is sized for a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kick_checks.errors import KickError

AUTO = "auto"
MAX_AUTO_BATCH = 256
MEMORY_SHARE = 0.6


@dataclass(frozen=True)
class BatchScale:
    """Each task's own batch size times ``factor`` (at least 1): how the noise floor evaluates the dense model at
    another batch size without naming any task's default."""

    factor: float

    def of(self, default: int) -> int:
        return max(1, round(default * self.factor))


def scaled_batch_size(requested: int | str | BatchScale | None, factor: float) -> int | BatchScale:
    """``requested`` (a run's ``--kick-batch-size``) times ``factor``; each task's default times it when unset or
    ``auto``."""
    if isinstance(requested, int):
        return max(1, round(requested * factor))
    return BatchScale(factor)


def parse_batch_size(value) -> int | str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1 or isinstance(value, bool):
        raise KickError(f"--kick-batch-size {value!r} is invalid: give a whole number >= 1 or auto")
    return size


def bytes_per_token(config, element_size: int, all_logits: bool) -> int:
    """Memory one token of one sequence needs during a forward pass: its key-value cache in every layer,
    a few hidden-size activations, and (for likelihood scoring) its row of float32 logits."""
    layers = getattr(config, "num_hidden_layers", 1)
    hidden = getattr(config, "hidden_size", 1)
    heads = getattr(config, "num_attention_heads", 1)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    intermediate = getattr(config, "intermediate_size", 4 * hidden)
    kv_cache = 2 * layers * kv_heads * head_dim * element_size
    activations = (4 * hidden + 2 * intermediate) * element_size
    logits = getattr(config, "vocab_size", 0) * 4 if all_logits else 0
    return kv_cache + activations + logits


def auto_batch_size(model: torch.nn.Module, default: int, tokens: int, *, all_logits: bool,
                    device_memory: int | None = None) -> int:
    """The batch size ``auto`` picks for sequences of up to ``tokens`` tokens (see the module text)."""
    parameter = next(model.parameters())
    if device_memory is None:
        if parameter.device.type != "cuda":
            return default
        device_memory = torch.cuda.get_device_properties(parameter.device).total_memory
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    budget = MEMORY_SHARE * device_memory - weights
    per_sequence = max(tokens, 1) * bytes_per_token(model.config, parameter.element_size(), all_logits)
    fits = int(budget // per_sequence) if budget > 0 else 1
    size = 1
    while size * 2 <= min(fits, MAX_AUTO_BATCH):
        size *= 2
    return size


def choose_batch_size(requested: int | str | BatchScale | None, default: int, model: torch.nn.Module, tokens: int,
                      *, all_logits: bool = False) -> int:
    if requested is None:
        return default
    if isinstance(requested, BatchScale):
        return requested.of(default)
    if requested == AUTO:
        return auto_batch_size(model, default, tokens, all_logits=all_logits)
    return int(requested)
