"""Where a compressed model departs from its dense parent: per decoder block, per linear layer, at the output.

Before compression :func:`capture_reference` runs the dense model once on the fixed probe (the same pass that
times its throughput) and keeps what is needed to compare later: every decoder block's output hidden states and
the next-token log-probabilities (both in float32 on the CPU: 18 MB and 50 MB on the default model), and a CPU
copy of the compressible layers' weights when it fits :data:`DENSE_COPY_LIMIT_BYTES` (212 MB on the default
model; for a large model the weight change is skipped, with the reason, rather than doubling its memory). After
compression :func:`measure_divergence` runs the same probe and reports:

- per block, the relative difference of its output, ``||h_c - h_d|| / ||h_d||`` per token and averaged over
  the probe's tokens (per token, so the few tokens with huge activations, such as the first, do not drown the
  rest), and the mean cosine similarity;
- ``flagged_block``: the block that *added* the most divergence (largest increase of the relative difference
  over the block before it), which is where a compression that fails breaks;
- the KL divergence ``KL(dense || compressed)`` of the next-token distributions, mean and max over positions, and
  how often both pick the same next token;
- per linear layer, the relative weight change ``||W_c - W_d||_F / ||W_d||_F`` and the layer that changed most.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compressors.layerwise import compressible_layers, decoder_blocks
from kick_checks.experiments.efficiency import measure_throughput

DENSE_COPY_LIMIT_BYTES = 2 * 1024**3


@dataclass
class DenseReference:
    """The dense model's outputs on the probe, and its weights when they fit the limit."""

    block_outputs: list[torch.Tensor]  # per block, [prompts, tokens, hidden], float32, CPU
    log_probs: torch.Tensor  # [prompts * tokens, vocab], float32, CPU
    weights: dict[str, torch.Tensor] | None
    weights_note: str = ""


class _BlockRecorder:
    """While entered, every decoder block's output of the forward is kept (on its device, copied later)."""

    def __init__(self, model: nn.Module) -> None:
        self.blocks = decoder_blocks(model)
        self.outputs: list[torch.Tensor | None] = [None] * len(self.blocks)
        self._handles: list = []

    def _keep(self, index: int):
        def hook(_module, _inputs, output):
            self.outputs[index] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        return hook

    def __enter__(self) -> _BlockRecorder:
        self._handles = [block.register_forward_hook(self._keep(i)) for i, block in enumerate(self.blocks)]
        return self

    def __exit__(self, *_exception) -> None:
        for handle in self._handles:
            handle.remove()


def _probe(model: nn.Module, ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, dict]:
    """One pass over the probe for both measurements: the timed prefill's block outputs and next-token
    log-probabilities (float32, CPU), and the throughput figures."""
    recorder, logits = _BlockRecorder(model), []
    throughput = measure_throughput(model, ids, around_prefill=lambda: recorder, on_prefill=logits.append)
    log_probs = torch.log_softmax(logits[0].float(), dim=-1).reshape(-1, logits[0].shape[-1]).cpu()
    return [output.float().cpu() for output in recorder.outputs if output is not None], log_probs, throughput


def capture_reference(model: nn.Module, ids: torch.Tensor,
                      limit_bytes: int = DENSE_COPY_LIMIT_BYTES) -> tuple[DenseReference, dict]:
    """Run the dense model on the probe; copy its compressible weights to the CPU if they fit ``limit_bytes``.
    Returns the reference and the dense throughput measured on the same pass."""
    block_outputs, log_probs, throughput = _probe(model, ids)
    layers = list(compressible_layers(model))
    size = sum(layer.weight.numel() * layer.weight.element_size() for _, layer in layers)
    if size > limit_bytes:
        note = (f"weight change not measured: a dense copy of the compressed layers would take {size / 1e9:.1f} GB, "
                f"over the {limit_bytes / 1e9:.1f} GB kick-checks keeps beside the model")
        return DenseReference(block_outputs, log_probs, None, note), throughput
    weights = {name: layer.weight.detach().to("cpu", copy=True) for name, layer in layers}
    return DenseReference(block_outputs, log_probs, weights), throughput


def _block_figures(dense: torch.Tensor, compressed: torch.Tensor) -> tuple[float, float]:
    """Mean over tokens of the relative difference, and of the cosine similarity."""
    dense, compressed = dense.reshape(-1, dense.shape[-1]), compressed.reshape(-1, compressed.shape[-1])
    relative = (compressed - dense).norm(dim=-1) / dense.norm(dim=-1).clamp_min(1e-12)
    cosine = torch.nn.functional.cosine_similarity(compressed, dense, dim=-1, eps=1e-12)
    return float(relative.mean()), float(cosine.mean())


def measure_divergence(model: nn.Module, ids: torch.Tensor, reference: DenseReference) -> tuple[dict, dict]:
    """Compare the model as it is now with the dense ``reference`` on the same probe (see the module text).
    Returns the divergence document and the throughput measured on the same pass."""
    block_outputs, log_probs, throughput = _probe(model, ids)
    if len(block_outputs) != len(reference.block_outputs):
        raise ValueError(f"the model has {len(block_outputs)} blocks, the dense reference "
                         f"{len(reference.block_outputs)}")
    blocks = []
    previous = 0.0
    for index, (dense, compressed) in enumerate(zip(reference.block_outputs, block_outputs)):
        relative, cosine = _block_figures(dense, compressed)
        blocks.append({"block": index, "relative_difference": relative, "cosine": cosine,
                       "added": relative - previous})
        previous = relative
    dense_probs = reference.log_probs.exp()
    kl = (dense_probs * (reference.log_probs - log_probs)).sum(dim=-1).clamp_min(0.0)
    same_top = (reference.log_probs.argmax(dim=-1) == log_probs.argmax(dim=-1)).float().mean()
    document = {
        "probe": {"prompts": int(ids.shape[0]), "tokens": int(ids.shape[1])},
        "blocks": blocks,
        "flagged_block": max(blocks, key=lambda block: block["added"])["block"] if blocks else None,
        "kl": {"mean": float(kl.mean()), "max": float(kl.max()), "same_next_token": float(same_top)},
        "layers": [],
        "flagged_layer": None,
    }
    if reference.weights is None:
        document["layers_note"] = reference.weights_note
        return document, throughput
    with torch.no_grad():
        for name, layer in compressible_layers(model):
            dense_weight = reference.weights[name].float()
            change = (layer.weight.detach().float().cpu() - dense_weight).norm() / dense_weight.norm().clamp_min(1e-12)
            document["layers"].append({"name": name, "relative_change": float(change)})
    if document["layers"]:
        document["flagged_layer"] = max(document["layers"], key=lambda layer: layer["relative_change"])["name"]
    return document, throughput
