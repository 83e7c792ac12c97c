"""A judged run end to end: a real OpenAI-compatible server on 127.0.0.1 grades instruction following, the first
run records the judged baseline through ``--kick-update-missing``, and later runs are gated on it."""

import json

import pytest
from judge_server import FakeJudgeServer

CONVERSATIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Write one line about rain.", "Now make it rhyme."],
     "reference": ["Rain taps softly on the roof.", "Rain taps the roof, a gentle proof."]},
    {"question_id": 2, "category": "math", "turns": ["What is 2 + 3?", "And times 4?"],
     "reference": ["2 + 3 = 5.", "5 x 4 = 20."]},
]


@pytest.fixture
def judge_server(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = FakeJudgeServer()
    server.start()
    yield server
    server.stop()


def test_a_judged_baseline_is_recorded_then_gated(pytester, judge_server, tiny_chat_model_dir, tmp_path):
    data = tmp_path / "question.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in CONVERSATIONS))
    baselines = tmp_path / "baselines"
    base = ["-m", "kick", "-k", "instruction_following", "-p", "no:cacheprovider", "--kick-model",
            str(tiny_chat_model_dir), "--kick-dtype", "float32", "--kick-device", "cpu",
            "--kick-data", f"conversations={data}", "--kick-baselines-dir", str(baselines),
            "--kick-cache-dir", str(tmp_path / "cache")]
    judged = [*base, "--kick-judge-model", "judge-test", "--kick-judge-base-url", judge_server.url]
    first = pytester.runpytest(*judged, "--kick-update-missing")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*instruction_following: recorded dense 8.000 on 4 items, * (new)*"])
    stored = json.loads((baselines / tiny_chat_model_dir.name / "instruction_following.json").read_text())
    assert stored["metric"] == "judge_score" and stored["fingerprint"]["scorer"] == "judge:judge-test"
    assert len(judge_server.requests) == 4  # one judgment per turn
    gated = pytester.runpytest(*judged, "--sparsity", "0.2", "--kick-method", "magnitude",
                               "--kick-calib-samples", "4", "--kick-calib-seqlen", "16")
    gated.assert_outcomes(passed=1)
    gated.stdout.fnmatch_lines(["*instruction_following: judge_score dense 8.000 -> 8.000*PASS*"])
    unjudged = pytester.runpytest(*base)
    assert unjudged.ret == pytest.ExitCode.USAGE_ERROR  # a ROUGE run is never compared with a judged baseline
    unjudged.stderr.fnmatch_lines(["*recorded under other settings (scorer: 'judge:judge-test' -> "
                                   "'rougeL-f1/reference')*"])
