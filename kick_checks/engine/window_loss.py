"""Perplexity windows: the mean negative log-likelihood of each window's tokens, one forward pass per window.

``model(input_ids, labels=...)`` computes the logits of every position, copies them to float32, shifts them into
another copy and takes a log-softmax of that: several full-vocabulary arrays of the window (400 MB each for 2,048
tokens of a 49,152-token vocabulary). Here the decoder body runs once, and the output layer and the loss go up to
``SLICE`` positions at a time: each slice's logits in the model's dtype, then only their log-sum-exp and the target
logit in float32, summed in float64. Measured on the default model in float32 (2 cores, three 2,048-token
windows): slices of 2,048 20.0 s, of 1,024 21.5 s, of 256 22.8 s, the ``labels=`` path 22.2 and 21.9 s; so one
slice per window up to 2,048 tokens, and longer windows are cut so that memory stays bounded. Over all nine
windows (``bench/evaluation_vs_lm_eval.py --tasks perplexity --dtype float32``) the two paths took 67.8 s and
67.2 s against a forward ceiling of 61.9 s: in float32 the loss is not where the time goes. The copies this
avoids are larger in bf16 (the labels path upcasts every logit); that was not measured (no bf16 instructions on
the machine it was written on).

The sums are also more exact: on the default model's first window in float32, float64 arithmetic on the same
logits gives a loss of 3.11948764, the slices 3.11948764 and the ``labels=`` path (a float32 mean) 3.11947060,
so perplexities move by about 2e-5 relative against baselines recorded before (far inside any tolerance).

Models whose logits are not simply the output layer of the last hidden state (a final soft-cap, a logit scale)
take the plain ``labels=`` path, as does any model without ``get_decoder`` / ``get_output_embeddings``.
"""

from __future__ import annotations

import math

import torch

from compressors.progress import progress
from kick_checks.errors import NonFiniteOutput

#: Positions whose logits are held at once: 2,048 x 49,152 float32 values = 400 MB, what the labels= path holds
#: several times over.
SLICE = 2048


def _split_model(model):
    """``(decoder body, output layer)`` when the logits are exactly the output layer of the body's last hidden
    state, else None."""
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text_config, "final_logit_softcapping", None) or getattr(text_config, "logit_scale", None) not in (
            None, 1, 1.0):
        return None
    try:
        body, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if body is None or head is None or body is model:
        return None
    return body, head


def window_losses(model, windows: list[torch.Tensor], slice_positions: int = SLICE) -> list[float]:
    """Mean negative log-likelihood of each window's tokens, each predicted from the ones before it."""
    device = next(model.parameters()).device
    split = _split_model(model)
    losses = []
    with torch.no_grad():
        for window in progress(windows, description="scoring windows", unit="window"):
            ids = window[None, :].to(device)
            if split is None:
                losses.append(model(input_ids=ids, labels=ids).loss.float().item())
                continue
            body, head = split
            hidden = body(input_ids=ids).last_hidden_state[0]
            targets = ids[0, 1:]
            total = torch.zeros((), dtype=torch.float64, device=device)
            for start in range(0, len(targets), slice_positions):
                logits = head(hidden[start : start + slice_positions][: len(targets) - start]).float()
                picked = logits.gather(1, targets[start : start + len(logits), None])[:, 0]
                total += (torch.logsumexp(logits, dim=-1) - picked).double().sum()
            losses.append(float(total / len(targets)))
    broken = next((index for index, loss in enumerate(losses) if not math.isfinite(loss)), None)
    if broken is not None:
        raise NonFiniteOutput(f"the loss of window {broken + 1} of {len(windows)} is {losses[broken]}")
    return losses
