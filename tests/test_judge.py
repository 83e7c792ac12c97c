"""The LLM judge against a real chat-completions server on loopback, plus rating parsing on hand-made replies.

The server is a scriptable http.server in a thread: each test queues the responses it needs (slow, 429, 500,
broken JSON, 401, ...) and reads back what reached the server, so retries, caching and the handling of the API
key are checked over real HTTP without any model or network.
"""

from __future__ import annotations

import json
import logging
import socket
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from judge_server import GOOD_REPLY, FakeJudgeServer, Response

from kick_checks.errors import KickError
from kick_checks.judge import (
    Judge,
    JudgeConfig,
    Judgment,
    answer_messages,
    parse_rating,
    turns_messages,
)
from kick_checks.judge.client import RETRY_AFTER_CAP_S

KEY_ENV = "KICK_TEST_JUDGE_KEY"
SECRET = "sk-kicktest-SECRET-7f3a9c2e51"


@pytest.fixture(autouse=True)
def _judge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret key in its variable, and no proxy between the client and the loopback server."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    fake = FakeJudgeServer()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff delays the judge asked for, recorded instead of slept."""
    return []


@pytest.fixture
def make_judge(server: FakeJudgeServer, tmp_path: Path, sleeps: list[float]):
    def make(**overrides) -> Judge:
        settings = {
            "model": "judge-test",
            "base_url": server.url,
            "api_key_env": KEY_ENV,
            "timeout_s": 5,
            "max_attempts": 3,
            "backoff_s": 0.01,
            "cache_dir": tmp_path / "cache",
        }
        return Judge(JudgeConfig(**(settings | overrides)), sleep=sleeps.append)

    return make


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").rglob("*.json"))


# --- parsing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("[[7]]", 7),
        ("Solid answer.\nRating: [[8]]", 8),
        ("[[ 7 ]]", 7),
        ("[[7.5]]", 7.5),
        ("[[6/10]]", 6),
        ("[[1]]", 1),
        ("Final verdict: [[10]]", 10),
        ("The format is [[rating]], e.g. [[3]]. After review I give [[9]]", 9),
        ("3 errors in 2 steps, 45% wrong. Rating: [[6]]", 6),
        ("[[5]] in the end, though the Rating: 9 above was a typo", 5),
        ("[[11]]", None),
        ("[[0]]", None),
        ("First [[7]], then on reflection [[11]]", None),
        ("[[rating]]", None),
        ("Rating: 7", 7),
        ("**Rating:** 6", 6),
        ("My final rating is 4.", 4),
        ("Score: 8 out of 10", 8),
        ("a score of 5.5", 5.5),
        ("Rating (1-10): 7", 7),
        ("Rating: 7/10", 7),
        ("7/10", 7),
        ("10/10, flawless", 10),
        ("I'd give it 3 out of 10", 3),
        ("It gets 12/10", None),
        ("Rating: 0", None),
        ("Rating: -3", None),
        ("about 1/100 of the text is wrong", None),
        ("Rating: 4. Having re-read it, 6/10", 6),
        ("The answer lists 3 causes and 2 dates.", None),
        ("", None),
    ],
)
def test_parse_rating(reply: str, expected: float | None) -> None:
    assert parse_rating(reply) == expected


_NO_BRACKETS = st.text(alphabet=st.characters(blacklist_characters="[]"), max_size=200)


@given(before=_NO_BRACKETS, rating=st.integers(min_value=1, max_value=10), after=_NO_BRACKETS)
def test_bracketed_rating_in_any_text_parses(before: str, rating: int, after: str) -> None:
    assert parse_rating(f"{before}[[{rating}]]{after}") == rating


@given(st.text(max_size=300))
def test_parse_rating_is_none_or_in_range(reply: str) -> None:
    rating = parse_rating(reply)
    assert rating is None or 1 <= rating <= 10


# --- prompts -----------------------------------------------------------------------------------------------------


def test_answer_prompt_shows_reference_only_when_given() -> None:
    with_reference = answer_messages("What is 2+2?", "5", reference="4")
    without = answer_messages("What is 2+2?", "5")
    assert "<reference_answer>\n4\n</reference_answer>" in with_reference[1]["content"]
    assert "reference" not in without[1]["content"] and "reference" not in without[0]["content"]
    for messages in (with_reference, without):
        assert [message["role"] for message in messages] == ["system", "user"]
        assert "[[4]]" in messages[0]["content"]  # the rating format the parser prefers
        assert "<question>\nWhat is 2+2?\n</question>" in messages[1]["content"]


def test_turns_prompt_marks_the_last_turn_and_keeps_context() -> None:
    messages = turns_messages(["Name a prime.", "Now double it."], ["7", "14"], references=["2", "4"])
    user = messages[1]["content"]
    assert '<turn number="1">\n<user>\nName a prime.\n</user>\n<assistant>\n7\n</assistant>' in user
    assert '<turn number="2" graded="yes">\n<user>\nNow double it.' in user
    assert '<reference_answer turn="2">\n4\n</reference_answer>' in user
    assert "last reply" in messages[0]["content"]


@pytest.mark.parametrize(
    ("turns", "answers", "references"),
    [([], [], None), (["a", "b"], ["only one"], None), (["a", "b"], ["x", "y"], ["one reference"])],
)
def test_turns_prompt_rejects_mismatched_lists(turns, answers, references) -> None:
    with pytest.raises(ValueError):
        turns_messages(turns, answers, references)


@pytest.mark.parametrize("field_value", [{"max_attempts": 0}, {"timeout_s": 0}, {"backoff_s": -1}, {"model": " "}])
def test_config_rejects_unusable_values(field_value: dict) -> None:
    with pytest.raises(KickError):
        JudgeConfig(**({"model": "judge-test"} | field_value))


# --- requests over HTTP ------------------------------------------------------------------------------------------


def test_normal_reply_is_ok_and_request_is_well_formed(server, make_judge) -> None:
    judge = make_judge()
    judgment = judge.grade_answer("What is 2+2?", "4", reference="4")
    assert judgment == Judgment(8, "ok", "The answer is correct and to the point. [[8]]", cached=False)
    [request] = server.requests
    assert request["body"]["model"] == "judge-test"
    assert request["body"]["temperature"] == 0
    assert request["body"]["messages"] == answer_messages("What is 2+2?", "4", reference="4")
    assert judge.counts == {"ok": 1, "unparsable": 0, "failed": 0, "cached": 0}


def test_grade_turns_and_summary_send_their_prompts(server, make_judge) -> None:
    judge = make_judge()
    assert judge.grade_turns(["Name a prime.", "Now double it."], ["7", "14"], None).score == 8
    assert judge.grade_summary("The long article text.", "A summary.", "The reference summary.").score == 8
    turns_prompt, summary_prompt = (request["body"]["messages"][1]["content"] for request in server.requests)
    assert 'graded="yes"' in turns_prompt and "Now double it." in turns_prompt
    assert "<article>\nThe long article text.\n</article>" in summary_prompt
    assert "<reference_summary>\nThe reference summary.\n</reference_summary>" in summary_prompt
    assert "<summary>\nA summary.\n</summary>" in summary_prompt


def test_slow_reply_times_out_and_is_retried(server, make_judge) -> None:
    server.queue(Response(delay_s=1.0), Response())
    judgment = make_judge(timeout_s=0.2).grade_answer("q", "a")
    assert (judgment.status, judgment.score) == ("ok", 8)
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("retry_after", "expected_delay"),
    [("7", 7.0), ("0.5", 0.5), ("3600", RETRY_AFTER_CAP_S), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
    ids=["seconds", "fraction", "capped", "past-date"],
)
def test_429_honours_retry_after(server, make_judge, sleeps, retry_after: str, expected_delay: float) -> None:
    server.queue(
        Response(status=429, body=b'{"error": {"message": "slow down"}}', headers={"Retry-After": retry_after})
    )
    judgment = make_judge().grade_answer("q", "a")
    assert judgment.status == "ok"
    assert sleeps == [expected_delay]
    assert len(server.requests) == 2


def test_unreadable_retry_after_falls_back_to_backoff(server, make_judge, sleeps) -> None:
    server.queue(Response(status=503, body=b"{}", headers={"Retry-After": "soon"}))
    assert make_judge().grade_answer("q", "a").status == "ok"
    assert len(sleeps) == 1 and 0.005 <= sleeps[0] <= 0.01


@pytest.mark.parametrize(
    "broken",
    [
        Response(status=500, body=b'{"error": {"message": "internal"}}'),
        Response(status=408, body=b"{}"),
        Response(body=b'{"id": "chatcmpl-test", "choices": [{"message": '),
        Response(body=b"<html>bad gateway</html>"),
        Response(content=None),
        Response(content="   "),
        Response(body=b'{"choices": []}'),
    ],
    ids=["500", "408", "truncated-json", "not-json", "null-content", "blank-content", "no-choices"],
)
def test_transient_failure_then_ok(server, make_judge, sleeps, broken: Response) -> None:
    server.queue(broken)
    judgment = make_judge().grade_answer("q", "a")
    assert (judgment.status, judgment.score) == ("ok", 8)
    assert len(server.requests) == 2
    assert len(sleeps) == 1


def test_always_500_fails_after_max_attempts_and_is_not_cached(server, make_judge, sleeps, tmp_path) -> None:
    server.queue(*[Response(status=500, body=b"{}")] * 4)
    judge = make_judge(max_attempts=4)
    judgment = judge.grade_answer("q", "a")
    assert judgment == Judgment(None, "failed", "no judgment after 4 attempts, last: HTTP 500", cached=False)
    assert len(server.requests) == 4
    # exponential backoff from 0.01 s, each delay jittered into [half, full]
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0.005 * 2 ** (attempt - 1) <= delay <= 0.01 * 2 ** (attempt - 1)
    assert cache_files(tmp_path) == []
    assert judge.grade_answer("q", "a").status == "ok"  # the next call asks again
    assert len(server.requests) == 5
    assert judge.counts == {"ok": 1, "unparsable": 0, "failed": 1, "cached": 0}


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        (Response(body=b"{not json"), "malformed JSON in the response"),
        (Response(content=None), "response without content"),
    ],
)
def test_always_broken_response_fails(server, make_judge, broken: Response, reason: str) -> None:
    server.queue(*[broken] * 3)
    judgment = make_judge().grade_answer("q", "a")
    assert judgment == Judgment(None, "failed", f"no judgment after 3 attempts, last: {reason}", cached=False)
    assert len(server.requests) == 3


def test_failure_while_asking_again_is_failed_not_unparsable(server, make_judge, tmp_path) -> None:
    server.queue(Response(content="No rating here."), *[Response(status=502, body=b"{}")] * 3)
    assert make_judge().grade_answer("q", "a").status == "failed"
    assert len(server.requests) == 4
    assert cache_files(tmp_path) == []


def test_unreachable_endpoint_fails(make_judge, sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    judgment = make_judge(base_url=f"http://127.0.0.1:{closed_port}/v1", max_attempts=2).grade_answer("q", "a")
    assert judgment.status == "failed"
    assert "could not connect" in judgment.detail
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, f"judge endpoint refused the key (401): set {KEY_ENV} to a valid key for http://127.0.0.1:"),
        (403, "denied access (403) to model 'judge-test'"),
        (404, "has no model 'judge-test'"),
        (400, "rejected the request (HTTP 400: temperature is not supported)"),
    ],
)
def test_client_errors_raise_at_once(server, make_judge, sleeps, status: int, expected: str) -> None:
    body = json.dumps({"error": {"message": "temperature is not supported"}}).encode()
    server.queue(Response(status=status, body=body))
    with pytest.raises(KickError) as raised:
        make_judge().grade_answer("q", "a")
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)
    assert len(server.requests) == 1 and sleeps == []


def test_401_without_a_key_says_the_variable_is_needed(server, make_judge, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    server.queue(Response(status=401, body=b"{}"))
    with pytest.raises(KickError, match=f"without a key \\(401\\): set {KEY_ENV}"):
        make_judge().grade_answer("q", "a")
    assert server.requests[0]["authorization"] == "Bearer EMPTY"


def test_unset_key_sends_a_placeholder(server, make_judge, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    assert make_judge().grade_answer("q", "a").status == "ok"
    assert server.requests[0]["authorization"] == "Bearer EMPTY"


def test_reply_without_rating_is_asked_once_more_then_unparsable(server, make_judge, tmp_path) -> None:
    server.queue(Response(content="A fine answer overall."), Response(content="I cannot rate this."))
    judge = make_judge()
    judgment = judge.grade_answer("q", "a")
    assert (judgment.status, judgment.score) == ("unparsable", None)
    assert "I cannot rate this." in judgment.detail
    assert len(server.requests) == 2
    follow_up = server.requests[1]["body"]["messages"]
    assert follow_up[-2] == {"role": "assistant", "content": "A fine answer overall."}
    assert "[[4]]" in follow_up[-1]["content"]
    # a reply without a rating is never cached as a judgment: the next run asks again (and here gets one)
    assert not cache_files(tmp_path)
    server.queue(Response(content="Better now. [[7]]"))
    assert (judge.grade_answer("q", "a").status, len(server.requests)) == ("ok", 3)
    assert judge.counts == {"ok": 1, "unparsable": 1, "failed": 0, "cached": 0}


def test_an_unparsable_judgment_cached_by_an_older_version_is_asked_again(server, make_judge, tmp_path) -> None:
    server.queue(Response(content="[[5]]"))
    judge = make_judge()
    judge.grade_answer("q", "a")
    [path] = cache_files(tmp_path)
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "status": "unparsable", "score": None}))
    server.queue(Response(content="[[8]]"))
    again = judge.grade_answer("q", "a")
    assert (again.status, again.score, again.cached, len(server.requests)) == ("ok", 8, False, 2)


def test_rating_given_when_asked_again_is_ok(server, make_judge) -> None:
    server.queue(Response(content="A fine answer overall."), Response(content="[[6]]"))
    judgment = make_judge().grade_answer("q", "a")
    assert (judgment.status, judgment.score) == ("ok", 6)
    assert judgment.detail.startswith("rating given when asked again")


# --- cache -------------------------------------------------------------------------------------------------------


def test_second_identical_call_is_served_from_cache(server, make_judge, tmp_path) -> None:
    first = make_judge().grade_answer("q", "a", reference="r")
    [path] = cache_files(tmp_path)
    assert path.parent.parent.name == "judgments" and path.parent.name == path.stem[:2] and len(path.stem) == 64
    assert not [leftover for leftover in path.parent.iterdir() if leftover.suffix == ".tmp"]
    stored = json.loads(path.read_text())
    assert (stored["status"], stored["score"], stored["reply"]) == ("ok", 8, GOOD_REPLY)

    judge = make_judge()  # a new judge, as in a rerun
    second = judge.grade_answer("q", "a", reference="r")
    assert second == Judgment(first.score, first.status, first.detail, cached=True)
    assert len(server.requests) == 1
    assert judge.counts == {"ok": 1, "unparsable": 0, "failed": 0, "cached": 1}


def test_cache_key_covers_prompt_model_and_endpoint_but_not_the_key(server, make_judge, monkeypatch) -> None:
    make_judge().grade_answer("q", "a")
    make_judge().grade_answer("q", "another answer")
    make_judge(model="other-judge").grade_answer("q", "a")
    make_judge(base_url=server.url + "/").grade_answer("q", "a")
    assert len(server.requests) == 4
    monkeypatch.setenv(KEY_ENV, "sk-a-different-key")
    assert make_judge().grade_answer("q", "a").cached
    assert len(server.requests) == 4


def test_corrupt_cache_file_is_ignored_and_rewritten(server, make_judge, tmp_path, caplog) -> None:
    make_judge().grade_answer("q", "a")
    [path] = cache_files(tmp_path)
    for corrupt in ('{"schema": 1, "status": "ok", "sco', '{"schema": 1, "status": "ok", "score": 42, "detail": ""}'):
        path.write_text(corrupt)
        judgment = make_judge().grade_answer("q", "a")
        assert (judgment.status, judgment.cached) == ("ok", False)
        assert json.loads(path.read_text())["score"] == 8
    assert len(server.requests) == 3
    assert "ignoring" in caplog.text


def test_without_cache_dir_every_call_asks(server, make_judge, tmp_path) -> None:
    judge = make_judge(cache_dir=None)
    judge.grade_answer("q", "a")
    judge.grade_answer("q", "a")
    assert len(server.requests) == 2
    assert not (tmp_path / "cache").exists()


# --- the key -----------------------------------------------------------------------------------------------------


def test_key_reaches_the_server_and_nowhere_else(server, make_judge, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    judge = make_judge()
    server.queue(Response(status=500, body=b"{}"), Response(content="No rating."), Response(content="Still none."))
    judgments = [judge.grade_answer("q", "a"), judge.grade_answer("q2", "a")]
    server.queue(*[Response(status=500, body=b"{}")] * 3)
    judgments.append(judge.grade_answer("q3", "a"))
    assert [judgment.status for judgment in judgments] == ["unparsable", "ok", "failed"]

    errors = []
    for status in (401, 400):  # the 400 body echoes the key, as some proxies do
        server.queue(Response(status=status, body=json.dumps({"error": {"message": f"bad key {SECRET}"}}).encode()))
        with pytest.raises(KickError) as raised:
            judge.grade_answer("q4", "a")
        errors.append("".join(traceback.format_exception(raised.value)))

    assert {request["authorization"] for request in server.requests} == {f"Bearer {SECRET}"}
    assert "***" in errors[1]
    places = {
        "cache": "".join(path.read_text() for path in cache_files(tmp_path)),
        "judgments": repr(judgments),
        "logs": caplog.text,
        "errors": "".join(errors),
        "judge": repr(vars(judge)),
    }
    for place, text in places.items():
        assert SECRET not in text, place


def test_many_judgments_go_out_concurrently_in_order(server: FakeJudgeServer, make_judge) -> None:
    server.default_delay_s = 0.2
    server.queue(*[Response(content=f"Fine.\n\n[[{rating}]]", delay_s=0.2) for rating in range(1, 9)])
    judge = make_judge(concurrency=4, cache_dir=None)
    prompts = [answer_messages(f"question {number}", "an answer") for number in range(8)]
    judgments = judge.judge_all(prompts)
    assert len(judgments) == 8 and all(judgment.status == "ok" for judgment in judgments)
    assert server.most_in_flight == 4  # never more than asked, and not one at a time
    asked = [request["body"]["messages"][-1]["content"] for request in server.requests]
    by_question = {text.split("question ")[1].split("\n")[0]: text for text in asked}
    assert sorted(by_question) == [str(number) for number in range(8)]  # every prompt asked exactly once


def test_a_judging_phase_past_its_budget_stops_with_one_line(server: FakeJudgeServer, make_judge) -> None:
    server.default_delay_s = 1.5
    judge = make_judge(concurrency=1, budget_s=0.5, cache_dir=None)
    prompts = [answer_messages(f"question {number}", "an answer") for number in range(3)]
    with pytest.raises(KickError) as raised:
        judge.judge_all(prompts, what="judging summarization")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("judging summarization took longer than its budget of 0.5 s (0 of 3 judgments made")
    assert "--kick-judge-budget" in message


def test_judge_options_reach_the_client() -> None:
    from kick_checks.session import KickSession
    from kick_checks.settings import build_settings

    settings = build_settings({"judge_model": "m", "judge_timeout": "7.5", "judge_retries": "2",
                               "judge_concurrency": "3", "judge_budget": "90"}, {}, Path("/project"))
    config = KickSession(settings, Path("/project")).judge.config
    assert (config.timeout_s, config.max_attempts, config.concurrency, config.budget_s) == (7.5, 2, 3, 90.0)
    toml = build_settings({"judge_model": "m"}, {"judge_timeout": 3, "judge_concurrency": 8}, Path("/p")).judge
    assert (toml.timeout_s, toml.concurrency) == (3, 8)
    with pytest.raises(KickError, match="--kick-judge-concurrency 0 must be positive"):
        build_settings({"judge_concurrency": "0"}, {}, Path("/p"))
