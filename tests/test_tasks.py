"""The tasks beyond short-answer QA, on the tiny random Llama: likelihood scoring, multiple choice, perplexity,
summarization and instruction following (with a scripted judge object; the HTTP judge has its own tests)."""

import json
import math

import pytest
import torch
from tiny_models import CHAT_TEMPLATE

from kick_checks.engine.likelihood import Continuation, continuation_likelihoods, prefix_ids
from kick_checks.errors import KickError, KickWarning
from kick_checks.gate.comparison import compare
from kick_checks.gate.tolerance import Tolerance
from kick_checks.judge import Judgment
from kick_checks.tasks import TaskOptions, TaskSkipped, get_task
from kick_checks.tasks.multiple_choice import MultipleChoice, build_prefix
from kick_checks.tasks.protocol import ACCURACY, JUDGE_SCORE, PERPLEXITY, ROUGE_L, ItemOutcome, TaskResult
from kick_checks.tasks.summarization import rouge_l


@pytest.fixture
def chat_loaded(tiny_loaded):
    tiny_loaded.tokenizer.chat_template = CHAT_TEMPLATE
    yield tiny_loaded
    tiny_loaded.tokenizer.chat_template = None


def full_logprob(model, tokenizer, prefix: str, context: str, continuation: str) -> float:
    """The reference computation: one forward pass over the whole sequence, no cache."""
    start = prefix_ids(tokenizer, prefix)
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    continuation_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([start + context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    first = len(start) + len(context_ids)
    return sum(logprobs[first + j - 1, token].item() for j, token in enumerate(continuation_ids))


@pytest.mark.parametrize("prefix", ["The cat is red.\nThe dog is blue.\n", ""])
@pytest.mark.parametrize("batch_size", [1, 2, 3, 16])
def test_cached_prefix_and_context_likelihoods_equal_a_full_pass(tiny_loaded, prefix, batch_size):
    """Shared prefix, shared contexts (of different lengths, some repeated out of order), continuations of one
    to several tokens: every likelihood is that of one uncached pass over the whole text."""
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    fox, owl = "Question: What colour is the fox?\nAnswer:", "Q:"
    requests = [Continuation(fox, f" {colour}") for colour in ("red", "green", "dark purple with spots")]
    requests += [Continuation(owl, " owl"), Continuation(fox, " blue"), Continuation("Which bird is it?", " a hen")]
    if prefix:
        requests.append(Continuation("", " cat"))  # the prefix alone as context
    cached = continuation_likelihoods(model, tokenizer, prefix, requests, batch_size=batch_size)
    assert len(cached) == len(requests)
    for request, result in zip(requests, cached):
        expected = full_logprob(model, tokenizer, prefix, request.context, request.continuation)
        assert result.logprob == pytest.approx(expected, abs=1e-4)
        assert result.characters == len(request.continuation)
        assert result.tokens == len(tokenizer(request.continuation, add_special_tokens=False)["input_ids"])


def test_multiple_choice_on_the_tiny_model(tiny_loaded, tmp_path):
    rows = [
        {"id": f"q{i}", "subject": "colours", "question": f"What colour is thing {i}?",
         "choices": ["red", "blue", "green", "yellow"], "answer": "ABCD"[i % 4]}
        for i in range(6)
    ]
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.warns(KickWarning, match="1 of 1 subjects run with fewer than 5 shots"):
        result = get_task("multiple_choice").run(tiny_loaded.model, tiny_loaded.tokenizer,
                                                 TaskOptions(data_path=data))
    assert result.metric == ACCURACY and result.n == 6
    assert all(item.prediction[0] in "ABCD" and item.prediction[1:3] == ": " for item in result.items)
    assert {item.category for item in result.items} == {"colours"}
    # the file has no dev split: the shots actually used (none) are in the fingerprint, with a warning
    assert result.fingerprint["decoding"] == {"scoring": "loglik/char", "shots": 5, "shots_used": {"colours": 0}}


def test_shots_are_dropped_to_fit_the_context(tiny_loaded):
    task = MultipleChoice(shots=5)
    items, shots, _ = task.load(TaskOptions())
    subject = items[0].subject
    subject_items = [item for item in items if item.subject == subject]
    tokens = len(tiny_loaded.tokenizer(build_prefix(subject, shots[subject][:3]))["input_ids"])
    fitted = task._fitting_shots(tiny_loaded.tokenizer, subject, shots[subject], subject_items, tokens + 60)
    assert 0 < len(fitted) < 5 and fitted == shots[subject][: len(fitted)]
    assert task._fitting_shots(tiny_loaded.tokenizer, subject, shots[subject], subject_items, 10) == []


def test_multiple_choice_reads_the_real_mmlu_release_with_its_dev_shots(tiny_loaded, shared_data):
    options = TaskOptions(data_path=shared_data("mmlu"), limit=12, limit_seed=1)
    task = MultipleChoice(shots=2)
    items, shots, _ = task.load(options)
    assert len(items) == 12 and all(len(item.choices) == 4 for item in items)
    assert all(len(shots[item.subject]) == 5 for item in items)
    result = task.run(tiny_loaded.model, tiny_loaded.tokenizer, options)
    assert result.n == 12


def test_perplexity_is_exp_of_the_mean_window_loss(tiny_loaded, tmp_path):
    text = tmp_path / "wiki.test.raw"
    text.write_text(" = Colours = \n \n" + " The red cat sat with the blue dog . \n" * 40)
    task = get_task("perplexity")
    result = task.run(tiny_loaded.model, tiny_loaded.tokenizer, TaskOptions(data_path=text, ppl_seqlen=32))
    assert result.metric == PERPLEXITY and not result.higher_is_better
    losses = [item.score for item in result.items]
    assert result.score == pytest.approx(math.exp(sum(losses) / len(losses)))
    ids = tiny_loaded.tokenizer(text.read_text(), add_special_tokens=False)["input_ids"]
    assert result.n == len(ids) // 32
    short = tmp_path / "short.raw"
    short.write_text(" The red cat . \n")
    with pytest.raises(KickError, match="fewer than one window"):
        task.run(tiny_loaded.model, tiny_loaded.tokenizer, TaskOptions(data_path=short, ppl_seqlen=32))
    with pytest.raises(KickError, match="exceeds the model's context of 512"):
        task.run(tiny_loaded.model, tiny_loaded.tokenizer, TaskOptions(data_path=text, ppl_seqlen=4096))


def test_a_perplexity_rise_is_a_loss(tmp_path):
    from kick_checks.gate.baselines import baseline_path, read_baseline, write_baseline

    def ppl(losses):
        return TaskResult("perplexity", PERPLEXITY, [ItemOutcome(f"w{i}", loss, "") for i, loss in enumerate(losses)])

    path = baseline_path(tmp_path, "m", "perplexity")
    write_baseline(path, ppl([2.0, 2.0]), {"alias": "m"})
    worse = compare(read_baseline(path), ppl([2.1, 2.2]), Tolerance(0.05), "wanda 30%")
    assert worse.dense == pytest.approx(math.exp(2.0)) and worse.compressed == pytest.approx(math.exp(2.15))
    assert not worse.passed and len(worse.lost) == 2 and "rise" in worse.line()
    better = compare(read_baseline(path), ppl([1.9, 2.0]), Tolerance(0.0), "wanda 10%")
    assert better.passed and better.gained == 1


def test_rouge_l_on_hand_made_cases():
    assert rouge_l("the council approved the new bridge", "the council approved the new bridge") == 1.0
    assert rouge_l("", "the council approved the bridge") == 0.0
    assert 0.0 < rouge_l("council approves bridges", "the council approved the new bridge") < 1.0


class ScriptedJudge:
    """Stands in for kick_checks.judge.Judge: records what it was asked, answers from a script."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = []
        self.config = type("Config", (), {"model": "scripted-judge"})()

    def judge_all(self, prompts, *, what=""):
        answers = []
        for messages in prompts:
            self.asked.append(messages[-1]["content"])
            answers.append(self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])
        return answers


def test_summarization_without_judge_uses_rouge_and_with_judge_counts_failures(chat_loaded):
    task = get_task("summarization")
    plain = task.run(chat_loaded.model, chat_loaded.tokenizer, TaskOptions(limit=3))
    assert plain.metric == ROUGE_L and plain.n == 3 and plain.fingerprint["scorer"] == "rougeL-f1"
    judge = ScriptedJudge([Judgment(7.0, "ok", ""), Judgment(None, "unparsable", "no rating"),
                           Judgment(None, "failed", "500")])
    judged = task.run(chat_loaded.model, chat_loaded.tokenizer, TaskOptions(limit=3, judge=judge))
    assert judged.metric == JUDGE_SCORE and judged.fingerprint["scorer"] == "judge:scripted-judge"
    assert [item.score for item in judged.items] == [7.0]
    assert judged.problems == {"judge_unparsable": 1, "judge_failed": 1}
    assert len(judge.asked) == 3 and all("<reference_summary>" in prompt for prompt in judge.asked)


def test_instruction_following_scores_against_references_or_by_judge_and_keeps_the_history(chat_loaded, tmp_path):
    task = get_task("instruction_following")
    offline = task.run(chat_loaded.model, chat_loaded.tokenizer, TaskOptions(limit=2))
    assert offline.metric == ROUGE_L and offline.fingerprint["scorer"] == "rougeL-f1/reference"
    assert offline.n == 4 and all(0.0 <= item.score <= 1.0 and item.gold for item in offline.items)
    judge = ScriptedJudge([Judgment(6.0, "ok", "")])
    result = task.run(chat_loaded.model, chat_loaded.tokenizer, TaskOptions(limit=2, judge=judge))
    assert result.metric == JUDGE_SCORE and result.n == 4
    assert {item.id.split(".")[1] for item in result.items} == {"t1", "t2"}
    second_turns = [prompt for prompt in judge.asked if '<turn number="2"' in prompt]
    assert len(second_turns) == 2  # the second turn is graded with the first as context, both references shown
    assert all(prompt.count("<reference_answer") == 2 and '<turn number="1">' in prompt for prompt in second_turns)
    no_references = tmp_path / "question.jsonl"
    no_references.write_text(json.dumps({"question_id": 1, "category": "x", "turns": ["Say hi."]}) + "\n")
    with pytest.raises(TaskSkipped, match="no reference answers to score against without a judge.*--kick-judge-model"):
        task.run(chat_loaded.model, chat_loaded.tokenizer, TaskOptions(data_path=no_references))
