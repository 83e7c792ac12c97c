"""Batched greedy generation: continuous batching over a shared prefix gives each prompt the answer it gets alone."""

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from kick_checks.engine.continuous_batching import ENGINE, continuous_greedy, shared_prefix_length
from kick_checks.engine.generation import STATIC_ENGINE, _static_batches, generation_engine, greedy_generate
from kick_checks.tasks.factoid_qa import SHOTS
from kick_checks.tasks.qa import QAItem, build_prompt


@pytest.mark.parametrize("lists,expected", [
    ([[1, 2, 3], [1, 2, 4]], 2),
    ([[1, 2], [1, 2, 3]], 1),  # every list keeps at least one token of its own
    ([[5, 6, 7]], 2),
    ([[1, 2], [3, 4]], 0),
    ([[1], [1]], 0),
    ([], 0),
])
def test_shared_prefix_length(lists, expected):
    assert shared_prefix_length(lists) == expected


def _alone(model, tokenizer, prompts, **options):
    """Each prompt through transformers' generate on its own: no padding, no batching, no shared prefix."""
    return [_static_batches(model, tokenizer, [prompt], batch_size=1, add_special_tokens=True, **options)[0]
            for prompt in prompts]


QUESTIONS = ["What colour is the fox?", "What colour is the owl on the hill?", "Which?",
             "What colour is the bee in the garden behind the old house?", "Is it?"]


def test_continuous_batching_matches_each_prompt_generated_alone(tiny_loaded):
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    assert generation_engine(model) == ENGINE
    # few-shot prompts (a long shared prefix) and free text (none), of different lengths, more than one batch
    prompts = [build_prompt(QAItem(str(i), question, ("x",)), SHOTS, False) for i, question in enumerate(QUESTIONS)]
    prompts += ["red blue", "the quick brown fox jumps over", "cat"]
    for batch_size in (1, 2, 3, 16):
        batched = greedy_generate(model, tokenizer, prompts, max_new_tokens=7, batch_size=batch_size)
        assert batched == _alone(model, tokenizer, prompts, max_new_tokens=7, stop=())
    assert all(len(tokenizer(text, add_special_tokens=False).input_ids) >= 6 for text in batched)


def test_rows_without_padding_decode_as_they_do_alone(tiny_loaded):
    """Prompts of one length leave no row padded: the decoding steps still get the ready mask (the fast path on a
    CPU) and give each prompt the answer transformers' generate gives it alone."""
    from kick_checks.engine.continuous_batching import _explicit_decode_mask

    model = tiny_loaded.model
    assert _explicit_decode_mask(model, torch.device("cpu")) == (model.config._attn_implementation == "sdpa")
    generator = torch.Generator().manual_seed(3)
    token_lists = [torch.randint(5, model.config.vocab_size, (9,), generator=generator).tolist() for _ in range(3)]
    batched = continuous_greedy(model, token_lists, batch_size=3, max_new_tokens=6, pad_token_id=0,
                                end_token_ids=set())
    with torch.no_grad():
        alone = [model.generate(torch.tensor([tokens]), max_new_tokens=6, min_new_tokens=6, do_sample=False,
                                pad_token_id=0)[0, len(tokens):].tolist() for tokens in token_lists]
    assert batched == alone


def test_stop_strings_end_rows_early_and_cut_the_answer(toy_qa):
    from kick_checks.model.loading import load_model, resolve_model

    loaded = load_model(resolve_model(str(toy_qa[0])), dtype="float32", device="cpu")
    prompts = [build_prompt(QAItem(str(i), question, ("x",)), SHOTS, False) for i, question in enumerate(QUESTIONS)]
    answers = greedy_generate(loaded.model, loaded.tokenizer, prompts, max_new_tokens=12, stop=("\n",),
                              batch_size=2)
    assert answers == _alone(loaded.model, loaded.tokenizer, prompts, max_new_tokens=12, stop=("\n",))
    assert answers[0] == " green" and all("\n" not in answer for answer in answers)


def test_a_row_ends_at_an_end_token_while_the_others_go_on(tiny_loaded):
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    token_lists = [tokenizer(text).input_ids for text in ("red blue", "the quick brown fox", "cat dog")]
    options = dict(batch_size=3, max_new_tokens=5, pad_token_id=tokenizer.pad_token_id)
    free = continuous_greedy(model, token_lists, end_token_ids=set(), **options)
    assert [len(tokens) for tokens in free] == [5, 5, 5]
    ending = free[1][2]  # the third token the second row produces
    ended = continuous_greedy(model, token_lists, end_token_ids={ending}, **options)
    assert ended[1] == free[1][: free[1].index(ending)]
    for row in (0, 2):
        cut = free[row].index(ending) if ending in free[row] else 5
        assert ended[row] == free[row][:cut]


def test_a_single_new_token_and_no_prompts(tiny_loaded):
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    prompts = ["red blue", "cat"]
    assert greedy_generate(model, tokenizer, prompts, max_new_tokens=1) == _alone(
        model, tokenizer, prompts, max_new_tokens=1, stop=())
    assert greedy_generate(model, tokenizer, [], max_new_tokens=4) == []


def test_sliding_window_models_use_transformers_generate(tiny_loaded):
    """A sliding-window cache cannot be reshaped by the continuous engine: such models take the static path."""
    tokenizer = tiny_loaded.tokenizer
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=64,
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model = MistralForCausalLM(config).eval()
    assert generation_engine(model) == STATIC_ENGINE
    prompts = ["red blue", "the quick brown fox jumps"]
    assert greedy_generate(model, tokenizer, prompts, max_new_tokens=4, batch_size=2) == _alone(
        model, tokenizer, prompts, max_new_tokens=4, stop=())


@pytest.mark.parametrize("lengths,expected", [
    ([10, 10, 10], [[0, 1, 2]]),
    ([10, 40, 11], [[0, 2], [1]]),  # the long row would pad the short ones: a chunk of its own
    ([100, 104, 108, 112], [[0, 1, 2, 3]]),  # within 12.5% padding
    ([5], [[0]]),
    ([], []),
])
def test_prefill_chunks_group_rows_of_similar_length(lengths, expected):
    from kick_checks.engine.continuous_batching import prefill_chunks

    assert prefill_chunks(lengths) == expected


def test_prefill_chunks_hold_at_most_the_token_budget():
    from kick_checks.engine.continuous_batching import PREFILL_TOKENS, prefill_chunks

    chunks = prefill_chunks([400] * 40)
    assert sorted(position for chunk in chunks for position in chunk) == list(range(40))
    assert all(len(chunk) * 400 <= PREFILL_TOKENS for chunk in chunks) and len(chunks) == 4


def _prefill_widths(model, monkeypatch) -> list[tuple[int, int]]:
    """Records the ``[rows, width]`` of every forward pass that feeds more than one token a row."""
    shapes: list[tuple[int, int]] = []
    forward = model.forward

    def recording(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            shapes.append(tuple(ids.shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", recording)
    return shapes


def test_prompts_of_several_prefixes_decode_together_as_each_does_alone(tiny_loaded, monkeypatch):
    """Group labels (one per prompt template) give each template's prefix one forward pass and the same answers
    as generating each prompt alone; rows of very different lengths are prefilled in separate chunks."""
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    instructions = ["Answer each question with a short answer.", "Name the colour only.",
                    "You are a careful assistant who answers questions about animals in one word."]
    prompts, labels = [], []
    for label, instruction in enumerate(instructions):
        for number, question in enumerate(QUESTIONS):
            prompts.append(build_prompt(QAItem(str(number), question, ("x",)), SHOTS, False, instruction))
            labels.append(label)
    token_lists = [tokenizer(prompt).input_ids for prompt in prompts]
    options = dict(batch_size=16, max_new_tokens=5, pad_token_id=tokenizer.pad_token_id, end_token_ids=set())
    shapes = _prefill_widths(model, monkeypatch)
    grouped = continuous_greedy(model, token_lists, groups=labels, **options)
    prefixes = [shared_prefix_length([tokens for tokens, own in zip(token_lists, labels) if own == label])
                for label in range(3)]
    assert sorted(width for rows, width in shapes if width in prefixes) == sorted(prefixes)  # each prefix once
    suffixes = [len(tokens) - prefixes[label] for tokens, label in zip(token_lists, labels)]
    assert all(width <= max(suffixes) for _, width in shapes if width not in prefixes)  # the rest: own tokens
    assert sum(rows for rows, width in shapes if width not in prefixes) == len(prompts)
    alone = _alone(model, tokenizer, prompts, max_new_tokens=5, stop=())
    assert [tokenizer.decode(tokens, skip_special_tokens=True) for tokens in grouped] == alone
    assert continuous_greedy(model, token_lists, **options) == grouped  # one group: the same answers


def test_group_labels_must_match_the_prompts(tiny_loaded):
    with pytest.raises(ValueError, match="2 group labels for 1 prompts"):
        continuous_greedy(tiny_loaded.model, [[1, 2, 3]], batch_size=2, max_new_tokens=2, pad_token_id=0,
                          end_token_ids=set(), groups=[0, 1])
