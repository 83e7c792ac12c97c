"""The ``lora`` strategy: re-training, the papers' other remedy, as a brief LoRA fit that keeps the sparsity mask.

If compression erased knowledge, the model must relearn it with new parameters; LoRA (low-rank adapters on every
linear layer of the decoder blocks, trained through peft) is the usual way, and the papers' point of comparison.
Ours trains on the calibration text the compressor saw (its windows, one pass by default) with the language-model
loss, on a copy of the compressed model, so the session's model stays as it was.

A plain LoRA delta ``B @ A`` is dense: merged into a pruned weight it would fill every pruned position, and the
model would no longer be sparse. Our LoRA layer multiplies the delta by the layer's mask (its non-zero weights,
taken when the adapter is attached), in training and in the merge, so the merged model has exactly the zeros the
compressor left. Quantized weights are never merged into (the sum would leave the quantization grid): the adapter
then runs beside them, and its parameters are extra at inference too.

peft is a dependency of kick-checks, imported only when a LoRA recovery runs.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import torch
from torch import nn

from compressors.layerwise import compressible_layers
from compressors.progress import note
from kick_checks.errors import KickError
from kick_checks.recovery.protocol import RecoveredRun, RecoveryContext
from kick_checks.tasks import Task, TaskOptions

log = logging.getLogger("kick_checks")
PEFT_HINT = "LoRA recovery needs peft, which did not import: pip install 'peft>=0.14'"


@dataclass(frozen=True)
class LoraSettings:
    """Rank and scale of the adapters; one pass over (at most ``windows`` of) the calibration windows, ``batch``
    at a time. Brief on purpose: 24 windows of 256 tokens are 12 steps, minutes on two CPU cores for a 135M
    model, where the compressor's 128 windows would take four times as long."""

    rank: int = 8
    alpha: int = 16
    learning_rate: float = 1e-3
    batch: int = 2
    epochs: int = 1
    windows: int = 24


def _peft():
    try:
        import peft
        from peft.tuners.lora import layer as lora_layer
    except ImportError:
        raise KickError(PEFT_HINT) from None
    return peft, lora_layer


def masked_lora_class():
    """peft's LoRA linear layer whose delta keeps the base weight's zeros (built on first use: peft is optional)."""
    _, lora_layer = _peft()

    class MaskedLoraLinear(lora_layer.Linear):
        def __init__(self, base_layer, adapter_name, **kwargs) -> None:
            super().__init__(base_layer, adapter_name, **kwargs)
            weight = self.get_base_layer().weight
            self.register_buffer("kept", (weight != 0).to(weight.dtype), persistent=False)

        def get_delta_weight(self, adapter) -> torch.Tensor:
            return super().get_delta_weight(adapter) * self.kept.to(self.lora_B[adapter].weight.dtype)

        def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            if self.disable_adapters or self.merged or not self.active_adapters:
                return super().forward(x, *args, **kwargs)
            result = self.base_layer(x, *args, **kwargs)
            for adapter in self.active_adapters:
                if adapter not in self.lora_A:
                    continue
                inputs = self.lora_dropout[adapter](x).to(self.lora_A[adapter].weight.dtype)
                result = result + nn.functional.linear(inputs, self.get_delta_weight(adapter)).to(result.dtype)
            return result

    return MaskedLoraLinear


@dataclass
class Adapted:
    """A trained copy of a compressed model and what the training cost."""

    model: nn.Module
    parameters: int
    seconds: float
    steps: int
    loss_first: float
    loss_last: float
    merged: bool
    mask_kept: bool


def _target_names(model: nn.Module) -> list[str]:
    layers = {id(layer) for _, layer in compressible_layers(model)}
    return [name for name, module in model.named_modules() if id(module) in layers]


def _zero_masks(model: nn.Module) -> list[torch.Tensor]:
    return [layer.weight == 0 for _, layer in compressible_layers(model)]


def train_masked_lora(model: nn.Module, windows: torch.Tensor, settings: LoraSettings, *, merge: bool,
                      seed: int = 0) -> Adapted:
    """Fit LoRA adapters on a copy of ``model`` to the language-model loss on ``windows`` ([samples, seqlen] token
    ids); merge them when ``merge`` (the zeros kept), else keep them beside the weights."""
    peft, _ = _peft()
    started = time.perf_counter()
    copied = copy.deepcopy(model)
    zeros_before = _zero_masks(copied)
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0,
                             target_modules=_target_names(copied), bias="none")
    config._register_custom_module({nn.Linear: masked_lora_class()})
    torch.manual_seed(seed)
    wrapped = peft.get_peft_model(copied, config)
    trainable = [parameter for parameter in wrapped.parameters() if parameter.requires_grad]
    parameters = sum(parameter.numel() for parameter in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    device = next(wrapped.parameters()).device
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))[: settings.windows]
    batches = [order[start : start + settings.batch] for _ in range(settings.epochs)
               for start in range(0, len(order), settings.batch)]
    wrapped.train()
    losses = []
    for number, rows in enumerate(batches, start=1):
        batch = windows[rows].to(device)
        loss = wrapped(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if number == 1 or number % 8 == 0 or number == len(batches):
            note(f"LoRA step {number}/{len(batches)}: loss {losses[-1]:.3f}")
    wrapped.eval()
    # Unmerged, the adapters stay in the model's own modules; the peft wrapper is dropped either way, so the
    # evaluation sees the model class it knows.
    adapted = wrapped.merge_and_unload() if merge else wrapped.get_base_model()
    for parameter in adapted.parameters():
        parameter.requires_grad_(False)
    # The base weights are untouched when unmerged; merged, every zero must still be zero.
    mask_kept = not merge or all(bool(now[before].all()) for before, now in zip(zeros_before, _zero_masks(adapted)))
    seconds = time.perf_counter() - started
    log.info("LoRA: %d parameters, %d steps in %.1fs, loss %.3f -> %.3f, %s", parameters, len(batches), seconds,
             losses[0] if losses else float("nan"), losses[-1] if losses else float("nan"),
             "merged (mask kept)" if merge and mask_kept else "merged" if merge else "kept beside the weights")
    return Adapted(adapted, parameters, seconds, len(batches), losses[0] if losses else 0.0,
                   losses[-1] if losses else 0.0, merge, mask_kept)


class LoraRecovery:
    name = "lora"

    def __init__(self, settings: LoraSettings | None = None) -> None:
        self.settings = settings or LoraSettings()
        self._adapted: dict[int, Adapted] = {}  # by id of the compressed model: trained once per session

    def adapt(self, model: nn.Module, tokenizer, context: RecoveryContext) -> Adapted:
        if id(model) not in self._adapted:
            _peft()
            if context.calibration is None:
                raise KickError("LoRA recovery needs calibration text to train on: this run gives it none")
            windows = context.calibration(tokenizer)
            note(f"training LoRA adapters on {min(len(windows), self.settings.windows)} calibration windows")
            self._adapted[id(model)] = train_masked_lora(model, windows, self.settings, merge=context.merge,
                                                         seed=context.seed)
        return self._adapted[id(model)]

    def run(self, task: Task, model, tokenizer, options: TaskOptions, context: RecoveryContext) -> RecoveredRun:
        trained_before = id(model) in self._adapted
        adapted = self.adapt(model, tokenizer, context)
        result = task.run(adapted.model, tokenizer, options)
        result.fingerprint = {**result.fingerprint, "recovery": {"strategy": self.name, "rank": self.settings.rank,
                                                                 "steps": adapted.steps}}
        training = 0.0 if trained_before else adapted.seconds
        return RecoveredRun(self.name, result, extra_parameters=adapted.parameters,
                            seconds=result.seconds + training,
                            details={"training_seconds": round(adapted.seconds, 1), "steps": adapted.steps,
                                     "rank": self.settings.rank, "loss": [round(adapted.loss_first, 3),
                                                                          round(adapted.loss_last, 3)],
                                     "merged": adapted.merged, "mask_kept": adapted.mask_kept})
