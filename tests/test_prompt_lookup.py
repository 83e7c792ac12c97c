"""Prompt-lookup drafts: found where the sequence's last tokens occurred before, and decoding with them gives the
greedy answers plain decoding gives."""

import pytest
import torch

import kick_checks.engine.continuous_batching as engine
from kick_checks.engine.continuous_batching import continuous_greedy
from kick_checks.engine.generation import greedy_generate
from kick_checks.engine.prompt_lookup import PromptLookup, accepted


def test_a_draft_follows_the_latest_occurrence_of_the_longest_matching_suffix():
    lookup = PromptLookup([7, 1, 2, 3, 9, 1, 2, 4, 5, 8, 2])
    # suffix [8, 2] never occurred, [2] did: latest at index 6, followed by 4, 5, 8
    assert lookup.draft(3) == [4, 5, 8]
    lookup.extend([3])  # suffix [2, 3]: at index 2-3, followed by 9, 1
    assert lookup.draft(2) == [9, 1]
    lookup.extend([9, 1, 2])  # [9, 1, 2] occurred at 4-6: followed by 4
    assert lookup.draft(1) == [4]
    assert lookup.draft(0) == []


def test_no_draft_without_an_earlier_occurrence():
    assert PromptLookup([1, 2, 3, 4]).draft(3) == []
    assert PromptLookup([]).draft(3) == []
    assert PromptLookup([5]).draft(3) == []
    # the last token's own n-gram has no continuation yet, so it is not its own match
    assert PromptLookup([5, 5]).draft(2) == [5]


def test_a_draft_may_run_up_to_the_end_of_the_sequence():
    assert PromptLookup([1, 2, 1]).draft(5) == [2, 1]


def test_ngram_lengths_are_checked():
    with pytest.raises(ValueError, match="shortest <= longest"):
        PromptLookup([1], longest=1, shortest=2)


@pytest.mark.parametrize("draft,choices,count", [
    ([4, 5, 6], [4, 5, 6, 7], 3),
    ([4, 5, 6], [4, 9, 6, 7], 1),
    ([4, 5, 6], [9, 5, 6, 7], 0),
    ([], [3], 0),
])
def test_accepted_counts_the_confirmed_prefix_of_a_draft(draft, choices, count):
    assert accepted(draft, choices) == count


def _repetitive(model, rows: int, seed: int) -> list[list[int]]:
    """Prompts that repeat a phrase, so drafts exist from the first step."""
    generator = torch.Generator().manual_seed(seed)
    lists = []
    for row in range(rows):
        phrase = torch.randint(5, model.config.vocab_size, (4 + row,), generator=generator).tolist()
        lists.append(phrase * 3 + phrase[:2])
    return lists


@pytest.fixture
def accepted_counts(monkeypatch):
    """Every count of confirmed draft tokens the engine sees."""
    counts: list[int] = []

    def counting(draft, choices):
        counts.append(accepted(draft, choices))
        return counts[-1]

    monkeypatch.setattr(engine, "accepted", counting)
    return counts


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_decoding_with_drafts_gives_the_plain_greedy_answers(tiny_loaded, accepted_counts, batch_size):
    model = tiny_loaded.model
    token_lists = _repetitive(model, 5, seed=batch_size)
    options = dict(batch_size=batch_size, max_new_tokens=12, pad_token_id=0, end_token_ids=set())
    plain = continuous_greedy(model, token_lists, **options)
    assert not accepted_counts
    drafted = continuous_greedy(model, token_lists, draft_tokens=3, **options)
    assert drafted == plain
    assert all(len(tokens) == 12 for tokens in drafted)
    assert max(accepted_counts) > 0  # drafts were fed and some were kept


def test_rows_end_at_an_end_token_and_stop_strings_inside_an_accepted_draft(tiny_loaded, accepted_counts):
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    token_lists = _repetitive(model, 4, seed=11)
    plain = continuous_greedy(model, token_lists, batch_size=4, max_new_tokens=10, pad_token_id=0,
                              end_token_ids=set())
    end = plain[1][4]  # row 1 ends at its fifth token, wherever that falls in a step; rows containing it earlier too
    options = dict(batch_size=4, max_new_tokens=10, pad_token_id=0, end_token_ids={end})
    assert continuous_greedy(model, token_lists, draft_tokens=4, **options) == \
        continuous_greedy(model, token_lists, **options)
    prompts = ["red blue red blue red blue red", "one two three one two three one", "a b a b a b a"]
    for stop in ((), ("blue",), (" two",)):
        assert greedy_generate(model, tokenizer, prompts, max_new_tokens=9, stop=stop, batch_size=2,
                               draft_tokens=3) == \
            greedy_generate(model, tokenizer, prompts, max_new_tokens=9, stop=stop, batch_size=2)


def test_compacting_the_cache_keeps_the_answers(tiny_loaded, accepted_counts, monkeypatch):
    """Rejected draft columns are dropped from the cache (here after every step): same answers."""
    model = tiny_loaded.model
    token_lists = _repetitive(model, 6, seed=5)
    options = dict(batch_size=3, max_new_tokens=14, pad_token_id=0, end_token_ids=set())
    plain = continuous_greedy(model, token_lists, **options)
    compactions: list[int] = []
    compact = engine.DecodeBatch.compact

    def counted(self):
        compactions.append(self.mask.shape[1])
        compact(self)

    monkeypatch.setattr(engine, "HOLE_SHARE", 0.0)
    monkeypatch.setattr(engine.DecodeBatch, "compact", counted)
    assert continuous_greedy(model, token_lists, draft_tokens=3, **options) == plain
    assert compactions
