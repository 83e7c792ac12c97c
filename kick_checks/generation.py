"""Batched greedy generation that returns only what the model generated."""

from __future__ import annotations

import torch

from kick_checks.progress import progress


def greedy_generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    stop: tuple[str, ...] = (),
    batch_size: int = 16,
    add_special_tokens: bool = True,
) -> list[str]:
    """Greedy continuations of ``prompts``, in input order, each cut at the first stop string.

    Prompts are grouped by length (left padding) so batches waste little; the grouping depends only on the
    prompts, so the same prompts always form the same batches and give the same answers.
    """
    order = sorted(range(len(prompts)), key=lambda index: (len(prompts[index]), index))
    outputs: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    starts = range(0, len(order), batch_size)
    for start in progress(starts, description=f"generating {len(prompts)} answers", unit="batch"):
        indices = order[start : start + batch_size]
        encoded = tokenizer(
            [prompts[index] for index in indices],
            return_tensors="pt",
            padding=True,
            add_special_tokens=add_special_tokens,
        ).to(device)
        with torch.no_grad():
            generated = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=list(stop) or None,
                tokenizer=tokenizer if stop else None,
            )
        new_tokens = generated[:, encoded["input_ids"].shape[1] :]
        for index, tokens in zip(indices, new_tokens):
            outputs[index] = cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), stop)
    return outputs


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Text up to (not including) the earliest stop string."""
    cut = len(text)
    for marker in stop:
        position = text.find(marker)
        if position != -1:
            cut = min(cut, position)
    return text[:cut]
