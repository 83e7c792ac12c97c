"""One decoder block compressed layer-sequentially, in a single pass of work over the calibration inputs.

The block's linear layers fall into groups that read one input tensor, in the order they are called (in a Llama
block: query/key/value, the output projection, gate/up, down). Group by group, the block runs over the
calibration inputs only as far as that group's input, with every earlier group already compressed; the group's
statistics are collected and the group is compressed. Every layer therefore sees the inputs the compressed model
will give it: GPTQ's "true sequential" order, the default of AutoGPTQ and GPTQModel. (The published Wanda and
SparseGPT code observe the whole block before compressing any of it: ``sequential="block"`` in
:func:`compressors.layerwise.walk_blocks`.)

Nothing is computed twice. A child of the block whose output is its last linear layer's output (attention ends
in its output projection, the MLP in its down projection) is, once all its layers are compressed, replaced by
that last layer applied to the input recorded when its group was observed; the result is kept for the later
groups and for the final pass that gives the next block its inputs. So each linear layer multiplies the
calibration tokens once, attention runs once, and the block's outputs come from the same operations, on the same
values, as a plain forward of the compressed block.

The plan (the groups, and which child ends in which layer) is read from one forward of the dense block on the
first batch. A block it does not fit (a layer called twice or not at all, a child called twice) gets no plan,
and the caller observes it the two-pass way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class _StopBlock(Exception):
    """Raised at the observed group's input: nothing after it is needed in this stage."""


@dataclass(frozen=True)
class BlockPlan:
    """How one block is compressed layer-sequentially."""

    groups: tuple[tuple[str, ...], ...]
    """Names of the linear layers that read one input tensor, the groups in the order they are first called."""
    tails: dict[str, tuple[str, int | None]]
    """Child name -> (its last linear layer, the length of the tuple it returns, or ``None`` for a tensor)."""
    members: dict[str, tuple[str, ...]]
    """Child name -> the linear layers inside it."""


def _input_key(tensor: torch.Tensor) -> tuple:
    return tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype


def plan_block(block: nn.Module, layers: dict[str, nn.Linear], first: Any) -> BlockPlan | None:
    """Run the dense block once on ``first`` (a calibration input) and read its plan; ``None`` if it has none."""
    calls: list[str] = []
    keys: list[tuple] = []
    outputs: dict[str, torch.Tensor] = {}
    held: list[torch.Tensor] = []  # keeps every input alive, so that no two inputs share an address
    child_calls: Counter = Counter()
    child_outputs: dict[str, Any] = {}

    def before(name: str):
        def hook(_module, args):
            tensor = args[0]
            held.append(tensor)
            calls.append(name)
            keys.append(_input_key(tensor))

        return hook

    def after(name: str):
        def hook(_module, _args, output):
            outputs[name] = output

        return hook

    def child_done(name: str):
        def hook(_module, _args, output):
            child_calls[name] += 1
            child_outputs[name] = output

        return hook

    handles = []
    for name, layer in layers.items():
        handles += [layer.register_forward_pre_hook(before(name)), layer.register_forward_hook(after(name))]
    children = dict(block.named_children())
    handles += [child.register_forward_hook(child_done(name)) for name, child in children.items()]
    try:
        block(first.hidden_states, **first.kwargs)
    finally:
        for handle in handles:
            handle.remove()
    if len(calls) != len(layers) or set(calls) != set(layers) or any(count > 1 for count in child_calls.values()):
        return None

    group_of_key: dict[tuple, int] = {}
    groups: list[list[str]] = []
    for name, key in zip(calls, keys):
        if key not in group_of_key:
            group_of_key[key] = len(groups)
            groups.append([])
        groups[group_of_key[key]].append(name)

    tails: dict[str, tuple[str, int | None]] = {}
    members: dict[str, tuple[str, ...]] = {}
    for child in children:
        inside = tuple(name for name in calls if name == child or name.startswith(child + "."))
        if not inside or child_calls[child] != 1:
            continue
        last, returned = outputs[inside[-1]], child_outputs[child]
        if returned is last:
            tails[child], members[child] = (inside[-1], None), inside
        elif (isinstance(returned, tuple) and returned and returned[0] is last
              and all(item is None for item in returned[1:])):
            tails[child], members[child] = (inside[-1], len(returned)), inside
    return BlockPlan(tuple(tuple(group) for group in groups), tails, members)


def compress_block_in_stages(
    block: nn.Module,
    layers: dict[str, nn.Linear],
    plan: BlockPlan,
    statistic: Callable[[str, nn.Linear], Any],
    compress: Callable[[str, nn.Linear, Any], None],
    inputs: list,
    *,
    propagate: bool,
) -> list[torch.Tensor] | None:
    """Compress every linear layer of ``block`` group by group; return the compressed block's outputs on
    ``inputs`` (the next block's inputs), or ``None`` when ``propagate`` is false (the last block).

    ``statistic(name, layer)`` builds a layer's statistic; layers of one group whose statistics depend on the
    inputs alone (``inputs_only``) and are of one kind share one. ``compress(name, layer, statistic)`` compresses
    a layer in place once its group has been observed.
    """
    group_of = {name: index for index, group in enumerate(plan.groups) for name in group}
    tail_groups = {group_of[last] for last, _ in plan.tails.values()}
    recorded: dict[int, list[torch.Tensor | None]] = {group: [None] * len(inputs) for group in tail_groups}
    kept: dict[str, list[Any]] = {child: [None] * len(inputs) for child in plan.tails}
    children = dict(block.named_children())
    state = {"batch": 0}

    def replacement(child: str):
        last, width = plan.tails[child]
        layer, group = layers[last], group_of[last]
        readers = [other for other, (name, _) in plan.tails.items() if group_of[name] == group]

        def forward(*_args, **_kwargs):
            batch = state["batch"]
            output = kept[child][batch]
            if output is None:
                output = layer(recorded[group][batch])
                kept[child][batch] = output
                if all(kept[reader][batch] is not None for reader in readers):
                    recorded[group][batch] = None  # every child that reads this input has its output now
            return output if width is None else (output, *([None] * (width - 1)))

        return forward

    def run(stage: int) -> list[torch.Tensor]:
        """Run the block over every input with the children whose layers are all compressed replaced."""
        replaced = {child: children[child].__dict__.get("forward") for child in plan.tails
                    if all(group_of[name] < stage for name in plan.members[child])}
        for child in replaced:
            children[child].forward = replacement(child)
        outputs = []
        try:
            for batch, item in enumerate(inputs):
                state["batch"] = batch
                try:
                    output = block(item.hidden_states, **item.kwargs)
                    outputs.append(output[0] if isinstance(output, tuple) else output)
                except _StopBlock:
                    pass
        finally:
            for child, previous in replaced.items():  # put back what was there (e.g. accelerate's hooks)
                if previous is None:
                    del children[child].__dict__["forward"]
                else:
                    children[child].forward = previous
        return outputs

    for stage, group in enumerate(plan.groups):
        statistics = {name: statistic(name, layers[name]) for name in group}
        leader = statistics[group[0]]
        readers = []
        for name in group:
            shares = (name != group[0] and getattr(leader, "inputs_only", False)
                      and getattr(statistics[name], "inputs_only", False) and type(statistics[name]) is type(leader))
            if shares:
                statistics[name] = leader
            else:
                readers.append(statistics[name])

        def observe(_module, args, stage=stage, readers=readers):
            tensor = args[0].detach()
            for reader in readers:
                reader.add_batch(tensor)
            if stage in recorded:
                recorded[stage][state["batch"]] = tensor
            raise _StopBlock

        handle = layers[group[0]].register_forward_pre_hook(observe)
        try:
            run(stage)
        finally:
            handle.remove()
        for name in group:
            compress(name, layers[name], statistics[name])
        del statistics, readers
    return run(len(plan.groups)) if propagate else None
