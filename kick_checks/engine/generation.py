"""Batched greedy generation that returns only what the model generated.

Two engines give the same kind of answer: :mod:`kick_checks.engine.continuous_batching` (shared prefix, continuous
batching) for every model whose key-value cache is a plain per-layer cache, and transformers' ``generate`` in
static length-sorted batches for the rest (sliding-window, recurrent and hybrid layers). Which one ran is part of
the generation fingerprint (:func:`generation_engine`), since the two batch rows differently and low-precision
arithmetic can then flip a greedy answer.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from compressors.progress import progress, progress_bar, ticking
from kick_checks.engine.continuous_batching import ENGINE as CONTINUOUS_ENGINE
from kick_checks.engine.continuous_batching import continuous_greedy, plain_cache_for
from kick_checks.errors import KickError, NonFiniteOutput

STATIC_ENGINE = "transformers-generate"


def generation_engine(model) -> str:
    """The engine :func:`greedy_generate` uses for ``model``."""
    return CONTINUOUS_ENGINE if plain_cache_for(model) else STATIC_ENGINE


def end_token_ids(model, tokenizer) -> set[int]:
    """The tokens that end a sequence: the generation config's, else the tokenizer's end-of-sequence token."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    if configured is None:
        return set()
    return {int(token) for token in (configured if isinstance(configured, (list, tuple)) else [configured])}


def greedy_generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    stop: tuple[str, ...] = (),
    batch_size: int = 16,
    add_special_tokens: bool = True,
    draft_tokens: int = 0,
    groups: list[int] | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts``, in input order, each cut at the first stop string.

    ``draft_tokens`` > 0 lets the continuous engine feed prompt-lookup drafts of up to that many tokens with each
    step (:mod:`kick_checks.engine.prompt_lookup`); ``groups`` labels each prompt with the prompt template it
    starts with, so that each template's shared prefix runs once. transformers' ``generate`` (the static
    engine) ignores both.

    The schedule depends only on the prompts and the model's answers, so the same model and prompts always give
    the same answers.
    """
    if not prompts:
        return []
    if generation_engine(model) == STATIC_ENGINE:
        with ticking(model):  # one batch's generate can run for minutes
            return _static_batches(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=stop,
                                   batch_size=batch_size, add_special_tokens=add_special_tokens)
    token_lists = [tokenizer(prompt, add_special_tokens=add_special_tokens).input_ids for prompt in prompts]

    def reached_stop(tokens: list[int]) -> bool:
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        return any(marker in text for marker in stop)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with progress_bar(len(prompts), description="generating answers", unit="answer") as bar, ticking(model):
        try:
            generated = continuous_greedy(
                model, token_lists, batch_size=batch_size, max_new_tokens=max_new_tokens, pad_token_id=pad,
                end_token_ids=end_token_ids(model, tokenizer), is_finished=reached_stop if stop else None,
                on_done=bar.update, draft_tokens=draft_tokens, groups=groups,
            )
        except NonFiniteOutput as error:
            raise NonFiniteOutput(f"{error} (the prompt ending {prompts[error.index][-80:]!r})",
                                  error.index) from None
    if generated is None:
        raise KickError(f"{type(model).__name__} replaced the key-value cache kick-checks gave it, so batched "
                        "generation cannot run on it: please report this model to kick-checks")
    return [cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), stop) for tokens in generated]


def _static_batches(model, tokenizer, prompts, *, max_new_tokens, stop, batch_size, add_special_tokens):
    """transformers' ``generate`` on batches of similar length (left padding); the grouping depends only on the
    prompts, so the same prompts always form the same batches."""
    order = sorted(range(len(prompts)), key=lambda index: (len(prompts[index]), index))
    outputs: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    starts = range(0, len(order), batch_size)
    for start in progress(starts, description="generating answers", unit="batch"):
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
                logits_processor=LogitsProcessorList([_FiniteLogits([prompts[index] for index in indices])]),
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


class _FiniteLogits(LogitsProcessor):
    """Stops transformers' ``generate`` at the first non-finite logits, naming the prompt of the row."""

    def __init__(self, prompts: list[str]) -> None:
        self.prompts = prompts

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        finite = torch.isfinite(scores).all(dim=-1)
        if not bool(finite.all()):
            row = int((~finite).nonzero()[0])
            raise NonFiniteOutput(f"the logits of a prompt are not finite (the prompt ending "
                                  f"{self.prompts[row][-80:]!r})")
        return scores


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Text up to (not including) the earliest stop string."""
    cut = len(text)
    for marker in stop:
        position = text.find(marker)
        if position != -1:
            cut = min(cut, position)
    return text[:cut]
