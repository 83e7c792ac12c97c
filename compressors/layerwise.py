"""The layer-by-layer calibration walk shared by every calibrated compressor (ours and plug-ins).

Only one decoder block's inputs live in memory at a time: the calibration tokens are embedded once, then each
block in turn is moved to the execution device, its linear layers' inputs are observed, the layers are
compressed, and the block is run again so the next block sees the outputs of the already-compressed blocks
before it (as SparseGPT and Wanda do). A model far larger than its activations therefore compresses in
bounded memory, whether it sits on the CPU or on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from compressors.progress import progress
from compressors.staged_block import compress_block_in_stages, plan_block

#: What a layer's statistics see: the compressed model up to the layer, or the dense block (see walk_blocks).
SEQUENTIAL_MODES = ("layer", "block")


class InputStatistic(Protocol):
    """Accumulates what a compressor needs to know about one linear layer's inputs."""

    def add_batch(self, inputs: torch.Tensor) -> None: ...


#: Builds a fresh statistic for one linear layer (``None`` when the method needs no calibration).
StatisticFactory = Callable[[str, nn.Linear], InputStatistic]
#: Compresses one linear layer in place, given its name and (for calibrated methods) its statistic.
LayerAction = Callable[[str, nn.Linear, Any], None]


class _StopForward(Exception):
    """Raised inside the first block's pre-hook: the embeddings are all we need from the full model."""


@dataclass
class _BlockInput:
    hidden_states: torch.Tensor
    kwargs: dict[str, Any]


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder blocks (Llama, Mistral, Qwen, Gemma, GPT-2-style and most others)."""
    for getter in (
        lambda: model.get_decoder().layers,
        lambda: model.model.layers,
        lambda: model.transformer.h,
        lambda: model.model.decoder.layers,
    ):
        try:
            blocks = getter()
        except AttributeError:
            continue
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            return blocks
    expected = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == expected]
    if candidates:
        return candidates[0]
    raise TypeError(
        f"cannot find the decoder blocks of {type(model).__name__}: the model needs a ModuleList of "
        "transformer blocks (e.g. model.model.layers)"
    )


def linear_layers(block: nn.Module) -> dict[str, nn.Linear]:
    """The linear layers inside one block, by their name relative to the block."""
    return {name: module for name, module in block.named_modules() if isinstance(module, nn.Linear)}


def compressible_layers(model: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    """Every linear layer inside the decoder blocks, with its full name (embeddings and head excluded)."""
    for index, block in enumerate(decoder_blocks(model)):
        for name, layer in linear_layers(block).items():
            yield f"layers.{index}.{name}", layer


def _execution_device(model: nn.Module) -> torch.device:
    embeddings = model.get_input_embeddings()
    return next(embeddings.parameters()).device


def _first_block_inputs(
    model: nn.Module, blocks: nn.ModuleList, calibration: torch.Tensor, batch_size: int
) -> list[_BlockInput]:
    captured: list[_BlockInput] = []

    def capture(_module, args, kwargs):
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        for cache_key in ("cache", "past_key_values", "past_key_value", "layer_past", "use_cache"):
            kwargs.pop(cache_key, None)
        captured.append(_BlockInput(hidden.detach(), kwargs))
        raise _StopForward

    device = _execution_device(model)
    first_block_device = next(blocks[0].parameters()).device
    handle = blocks[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        for start in range(0, calibration.shape[0], batch_size):
            batch = calibration[start : start + batch_size].to(device)
            try:
                model(input_ids=batch, use_cache=False)
            except _StopForward:
                pass
    finally:
        handle.remove()
    if first_block_device != device:
        for item in captured:
            item.hidden_states = item.hidden_states.to(first_block_device)
    return captured


def _run_block(block: nn.Module, inputs: list[_BlockInput]) -> list[torch.Tensor]:
    outputs = []
    for item in inputs:
        out = block(item.hidden_states, **item.kwargs)
        outputs.append(out[0] if isinstance(out, tuple) else out)
    return outputs


@torch.no_grad()
def walk_blocks(
    model: nn.Module,
    calibration: torch.Tensor | None,
    *,
    statistic: StatisticFactory | None,
    compress: LayerAction,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    sequential: str = "layer",
) -> None:
    """Compress every linear layer of every decoder block, block by block.

    ``calibration`` holds token ids ``[samples, seqlen]``. With ``statistic=None`` no data flows and each layer
    is compressed from its weights alone. ``device`` is where each block runs while it is compressed (default:
    the device of the input embeddings); blocks go back to where they were afterwards.

    ``sequential`` says what a layer's statistics see. ``"layer"``: the inputs of the model compressed so far,
    including the earlier layers of its own block (:mod:`compressors.staged_block`, one pass of work per block).
    ``"block"``: the dense block run on the compressed earlier blocks' outputs, all of a block observed before
    any of it is compressed, as the published Wanda and SparseGPT code do (two passes per block). A block whose
    structure the staged pass does not fit is walked the ``"block"`` way.
    """
    if sequential not in SEQUENTIAL_MODES:
        raise ValueError(f"sequential={sequential!r}: use one of {', '.join(SEQUENTIAL_MODES)}")
    blocks = decoder_blocks(model)
    if statistic is None or calibration is None:
        for index, block in enumerate(progress(blocks, description="compressing", unit="block")):
            for name, layer in linear_layers(block).items():
                compress(f"layers.{index}.{name}", layer, None)
        return

    was_training = model.training
    model.eval()
    inputs = _first_block_inputs(model, blocks, calibration, batch_size)
    work_device = torch.device(device) if device is not None else inputs[0].hidden_states.device
    for item in inputs:
        item.hidden_states = item.hidden_states.to(work_device)
        item.kwargs = _to_device(item.kwargs, work_device)

    for index, block in enumerate(progress(blocks, description="compressing", unit="block")):
        home = next(block.parameters()).device
        block.to(work_device)
        layers = linear_layers(block)
        propagate = index + 1 < len(blocks)  # the last block's outputs feed no block
        plan = plan_block(block, layers, inputs[0]) if sequential == "layer" else None
        if plan is not None:
            outputs = compress_block_in_stages(
                block, layers, plan,
                statistic=lambda name, layer, index=index: statistic(f"layers.{index}.{name}", layer),
                compress=lambda name, layer, found, index=index: compress(f"layers.{index}.{name}", layer, found),
                inputs=inputs, propagate=propagate)
        else:
            statistics = {name: statistic(f"layers.{index}.{name}", layer) for name, layer in layers.items()}
            _observe_block(block, layers, statistics, inputs)
            for name, layer in layers.items():
                compress(f"layers.{index}.{name}", layer, statistics[name])
            del statistics
            outputs = _run_block(block, inputs) if propagate else None
        if outputs is not None:
            for item, output in zip(inputs, outputs):
                item.hidden_states = output
        block.to(home)
    model.train(was_training)


class _StopBlock(Exception):
    """Raised before the block's last linear layer runs: its output is not needed to observe its input."""


def _observe_block(block: nn.Module, layers: dict[str, nn.Linear], statistics: dict[str, InputStatistic],
                   inputs: list[_BlockInput]) -> None:
    """Run the uncompressed block over the calibration inputs, feeding each linear layer's inputs to its statistic.

    Two savings that leave every statistic unchanged:
    - layers called on the very same input tensor (query, key and value; gate and up) whose statistics depend on
      the inputs alone (``inputs_only``) and are of one kind share the first one's statistic: it is computed
      once and ``statistics`` maps all of them to it;
    - after the first batch, the block stops as soon as the last linear layer to be called has its input (when
      each layer is called exactly once): the rest of the block is not needed.
    The sharing and the call order are read on the first batch; a later batch that differs is an error.
    """
    leader_of: dict[str, str] = {}
    calls: list[str] = []
    seen: dict[tuple, tuple[str, torch.Tensor]] = {}
    state = {"batch": 0, "last": None}

    def observer(name: str):
        def observe(_module, args):
            tensor = args[0].detach()
            key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
            first = seen.get(key)
            same_input = first is not None
            if state["batch"] == 0:
                calls.append(name)
                shareable = getattr(statistics[name], "inputs_only", False)
                if same_input and shareable and type(statistics[first[0]]) is type(statistics[name]):
                    leader_of[name] = first[0]
            elif (name in leader_of) != (same_input and leader_of.get(name) == first[0]):
                raise RuntimeError(f"{name} shared its input with {leader_of.get(name)} on the first calibration "
                                   "batch but not on a later one: cannot share its statistic")
            if name not in leader_of:
                statistics[name].add_batch(tensor)
                seen.setdefault(key, (name, tensor))  # holding the tensor keeps its memory from being reused
            if state["last"] == name:
                raise _StopBlock

        return observe

    handles = [layer.register_forward_pre_hook(observer(name)) for name, layer in layers.items()]
    try:
        for item in inputs:
            seen.clear()
            try:
                block(item.hidden_states, **item.kwargs)
            except _StopBlock:
                pass
            if state["batch"] == 0 and len(calls) == len(set(calls)) == len(layers):
                state["last"] = calls[-1]
            state["batch"] += 1
    finally:
        for handle in handles:
            handle.remove()
    seen.clear()
    for follower, leader in leader_of.items():
        statistics[follower] = statistics[leader]


def _to_device(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(item, device) for item in value)
    return value
