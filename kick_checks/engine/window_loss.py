"""Perplexity windows: the mean negative log-likelihood of each window's tokens, one forward pass per window.

``model(input_ids, labels=...)`` computes the logits of every position over the whole vocabulary at once, copies
them to float32, shifts them into another copy and takes a log-softmax of that: for a 2,048-token window of a
49,152-token vocabulary, several 400 MB arrays per window, which cost more than the forward pass itself on a CPU.
Here the decoder body runs once, and the output layer and the loss go a slice of positions at a time: each slice's
logits in the model's dtype, the log-sum-exp and the target logit in float32, summed in float64, so no
full-vocabulary array of the whole window is ever held. The sums are also more exact: on the default model's first
window in float32, float64 arithmetic on the same logits gives a loss of 3.11948764, the slices 3.11948764 and the
``labels=`` path (a float32 mean) 3.11947060, so perplexities move by about 2e-5 relative against baselines
recorded before (far inside any tolerance).

Models whose logits are not simply the output layer of the last hidden state (a final soft-cap, a logit scale)
take the plain ``labels=`` path, as does any model without ``get_decoder`` / ``get_output_embeddings``.
"""

from __future__ import annotations

import torch

#: Positions whose logits are held at once: 256 x 49,152 float32 values = 50 MB.
SLICE = 256


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
        for window in windows:
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
    return losses
