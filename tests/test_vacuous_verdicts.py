"""No verdict on nothing: non-finite model outputs, unrated judgments and ties are errors or losses, never passes;
and the noise floor recorded with a baseline end to end on the toy model."""

import dataclasses
import json

import pytest
import torch

from kick_checks.errors import KickError
from kick_checks.tasks.protocol import JUDGE_SCORE, ItemOutcome, TaskOptions, TaskResult


def _nan_output_layer(tiny_loaded, model):
    model.get_output_embeddings().weight.data.fill_(float("nan"))
    return dataclasses.replace(tiny_loaded, model=model)


@pytest.mark.parametrize(("task_key", "expected"), [
    ("factoid_qa", r"factoid_qa: the logits of prompt 1 of \d+ are not finite \(the prompt ending '.*Answer:'\)"),
    ("multiple_choice", r"multiple_choice: the log-likelihood of request 1 of \d+ is nan \(option"),
    ("perplexity", r"perplexity: the loss of window 1 of \d+ is nan"),
])
def test_nan_outputs_are_an_error_naming_the_task_and_the_first_item(task_key, expected, tiny_loaded, model, toy_qa):
    from kick_checks.session import KickSession
    from kick_checks.tasks import get_task

    broken = _nan_output_layer(tiny_loaded, model)
    options = TaskOptions(data_path=toy_qa[1] if task_key == "factoid_qa" else None, limit=4,
                          ppl_seqlen=64 if task_key == "perplexity" else None)
    with pytest.raises(KickError, match=expected) as error:
        KickSession._run(get_task(task_key), task_key, broken, options)
    assert "the model is broken" in str(error.value)


def test_a_tie_between_options_scores_as_wrong():
    from kick_checks.tasks.multiple_choice import ChoiceItem, MultipleChoice

    item = ChoiceItem("q", "s", "?", ("aa", "bbbb", "cc", "dd"), answer=1)
    assert MultipleChoice.top_options(item, [-2.0, -4.0, -2.0, -3.0]) == [0, 1, 2]
    assert MultipleChoice.top_options(item, [-2.0, -3.0, -2.5, -3.0]) == [1]


class _StubTask:
    """A task whose run returns a prepared result (a judge's problems included)."""

    name = key = "summarization"

    def __init__(self, result: TaskResult) -> None:
        self.result = result

    @staticmethod
    def data_key() -> str:
        return "summarization"

    def run(self, model, tokenizer, options):
        return self.result


@pytest.mark.parametrize(("problems", "expected"), [
    ({"judge_failed": 2}, "the judge gave no answer for 2 items after retries"),
    ({"judge_unparsable": 3}, r"the judge answered 3 items without a \[\[rating\]\]"),
])
def test_missing_judgments_fail_the_check_and_record_nothing(problems, expected, tiny_model_dir, tmp_path,
                                                             monkeypatch):
    from kick_checks import session as session_module
    from kick_checks.session import KickSession
    from kick_checks.settings import build_settings

    stub = _StubTask(TaskResult("summarization", JUDGE_SCORE, [ItemOutcome("a", 7.0, "x")], {}, problems=problems))
    monkeypatch.setattr(session_module, "get_task", lambda key: stub)
    for update in (False, True):
        settings = build_settings({"model": str(tiny_model_dir), "dtype": "float32", "device": "cpu",
                                   "update_baselines": update}, {}, tmp_path)
        with pytest.raises(KickError, match=expected):
            KickSession(settings, tmp_path).check("summarization")
    assert not (tmp_path / "baselines").exists()


def test_a_result_with_no_item_or_a_nan_score_is_refused(tiny_loaded):
    from kick_checks.session import KickSession

    with pytest.raises(KickError, match="no item was scored"):
        KickSession._run(_StubTask(TaskResult("summarization", JUDGE_SCORE, [], {})), "summarization", tiny_loaded,
                         TaskOptions())
    nan = TaskResult("summarization", JUDGE_SCORE, [ItemOutcome("a", 1.0, "x"), ItemOutcome("b", float("nan"), "y")])
    with pytest.raises(KickError, match="item b scored nan"):
        KickSession._run(_StubTask(nan), "summarization", tiny_loaded, TaskOptions())


def test_a_baseline_is_recorded_with_its_noise_floor_and_gates_other_batch_sizes_and_dtypes(pytester, toy_args,
                                                                                           tmp_path):
    bf16 = [*toy_args[: toy_args.index("--kick-dtype") + 1], "bfloat16",
            *toy_args[toy_args.index("--kick-dtype") + 2 :]]
    recorded = pytester.runpytest(*bf16, "--kick-update-baselines")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["*factoid_qa: recorded dense * on 12 items, * unstable under at 0.5x the batch "
                                   "size, on * thread*, in float32 (new)*"])
    folder = next((tmp_path / "baselines").iterdir())
    stored = json.loads((folder / "factoid_qa.json").read_text())
    threads = f"threads-{1 if torch.get_num_threads() > 1 else 2}"
    assert set(stored["noise_floor"]["perturbations"]) == {"batch-half", threads, "float32"}
    assert stored["environment"]["dtype"] == "bfloat16" and stored["environment"]["isa"]
    # another batch size is never a reason to refuse the baseline, and float32 is covered by its noise floor
    for extra in (["--kick-batch-size", "5"], ["--kick-dtype", "float32"]):
        gated = pytester.runpytest(*bf16, *extra)
        gated.assert_outcomes(passed=1)
        gated.stdout.fnmatch_lines(["*factoid_qa: exact_match dense * n=12, * unstable*PASS*"])
    # float16 is not: the fingerprint names the dtype
    other = pytester.runpytest(*bf16, "--kick-dtype", "float16")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    other.stderr.fnmatch_lines(["*model dtype: 'bfloat16' -> 'float16'*"])


def test_without_a_noise_floor_the_baseline_says_so(pytester, toy_args, tmp_path):
    pytester.runpytest(*toy_args, "--kick-update-baselines", "--kick-noise-floor", "none").stdout.fnmatch_lines(
        ["*factoid_qa: recorded dense * on 12 items, no noise floor (new)*"])
    stored = json.loads(next((tmp_path / "baselines").glob("*/factoid_qa.json")).read_text())
    assert "noise_floor" not in stored and all("noise" not in item for item in stored["items"])
    pytester.runpytest(*toy_args).stdout.fnmatch_lines(["*n=12, no noise floor*PASS*"])
