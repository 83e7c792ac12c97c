"""The README shows outputs of the current code: every dense score it quotes is the shipped baseline's.

Compressed scores need a model run; ``bench/readme_outputs.py`` reruns the README's commands and lists every
quoted line that no longer matches. This test keeps the cheap part honest on every run: a dense number in a
summary line (``factoid_qa: exact_match dense 0.531 -> ...``), in a failure message (``dense 0.331 ->
compressed``) or in the task table is the score stored in ``baselines/smollm2-135m``.
"""

import json
import re
from pathlib import Path

from kick_checks.session import shipped_baselines_dir
from kick_checks.tasks import all_tasks

README = Path(__file__).resolve().parents[1] / "README.md"
SUMMARY = re.compile(r"^(?P<task>[a-z_.]+): (?P<metric>\w+) dense (?P<dense>[0-9.]+) -> ", re.MULTILINE)
FAILURE = re.compile(r"^(?P<task>[a-z_.]+) lost more than the tolerance under .*:\n  \w+: dense (?P<dense>[0-9.]+) ->",
                     re.MULTILINE)
#: A block of another model's output (a test model's), marked so in the README: its scores are not the baselines'.
OTHER_MODEL = re.compile(r"<!-- not the default model[^>]*-->\n+```.*?```", re.DOTALL)
TABLE_ROW = re.compile(r"^\| `(?P<task>[a-z_.]+)` \|.*\| (?P<dense>[0-9.]+)(?: \(ROUGE-L\))? \|$", re.MULTILINE)


def shipped_scores() -> dict[str, float]:
    folder = shipped_baselines_dir() / "smollm2-135m"
    return {path.stem: json.loads(path.read_text())["score"] for path in folder.glob("*.json")}


def quoted_dense_scores(text: str) -> list[tuple[str, str]]:
    text = OTHER_MODEL.sub("", text)
    return [(match["task"], match["dense"]) for pattern in (SUMMARY, FAILURE, TABLE_ROW)
            for match in pattern.finditer(text)]


def test_every_dense_score_the_readme_quotes_is_the_shipped_baselines():
    scores = shipped_scores()
    quoted = quoted_dense_scores(README.read_text(encoding="utf-8"))
    assert {task for task, _ in quoted} >= set(all_tasks())  # every task's dense score is shown somewhere
    wrong = [f"{task}: README {value}, baseline {scores[task]:.{len(value.split('.')[1])}f}"
             for task, value in quoted if task in scores and f"{scores[task]:.{len(value.split('.')[1])}f}" != value]
    assert not wrong, "README quotes stale dense scores (re-run bench/readme_outputs.py): " + "; ".join(wrong)


def test_the_check_reads_all_three_forms():
    text = ("factoid_qa: exact_match dense 0.531 -> 0.105 (drop ...) FAIL\n"
            "perplexity lost more than the tolerance under wanda 50% unstructured:\n"
            "  perplexity: dense 18.683 -> compressed 50.847\n"
            "| `summarization` | in-context | ROUGE-L | 32 articles | 0.292 (ROUGE-L) |\n"
            "<!-- not the default model: a toy -->\n```\nfactoid_qa: exact_match dense 1.000 -> 0.500 FAIL\n```\n")
    assert quoted_dense_scores(text) == [("factoid_qa", "0.531"), ("perplexity", "18.683"), ("summarization", "0.292")]
