"""The kick-checks section of pytest's terminal summary, from the summaries of one process or several workers."""

from kick_checks.report.terminal import write_summary


class Reporter:
    """What ``write_summary`` uses of pytest's terminal reporter, keeping the lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        self.lines.append(f"== {title} ==")

    def write_line(self, line: str, **markup) -> None:
        self.lines.append(line)


def summary(worker: str, notes: list[str], tasks: list[str]) -> dict:
    return {"worker": worker, "header": "model: tiny (float32, cpu); compression: wanda 50% unstructured",
            "compression": None, "notes": notes,
            "outcomes": [{"task": task, "line": f"{task}: exact_match dense 1.000 -> 0.500 FAIL", "verdict": "fail"}
                         for task in tasks]}


def test_under_xdist_each_workers_own_note_names_the_worker_and_a_shared_one_is_shown_once():
    """Two ``measured:`` lines without a worker left the reader guessing which model copy each was."""
    removed = "removed .../.factoid_qa.json.123-x.tmp, left by an interrupted baseline write"
    reporter = Reporter()
    write_summary(reporter, [summary("gw1", [removed, "measured: 2.10 GB, 31 tokens/s"], ["retrieval_qa"]),
                             summary("gw0", [removed, "measured: 2.10 GB, 29 tokens/s"], ["factoid_qa"])],
                  None, None)
    assert reporter.lines[2:5] == [removed, "[gw0] measured: 2.10 GB, 29 tokens/s",
                                   "[gw1] measured: 2.10 GB, 31 tokens/s"]


def test_a_task_two_workers_checked_is_one_line():
    reporter = Reporter()
    write_summary(reporter, [summary("gw0", [], ["factoid_qa"]), summary("gw1", [], ["factoid_qa", "perplexity"])],
                  None, None)
    assert [line.split(":")[0] for line in reporter.lines[2:]] == ["factoid_qa", "perplexity"]


def test_one_process_shows_its_notes_as_they_are():
    reporter = Reporter()
    write_summary(reporter, [summary("main", ["measured: 2.10 GB"], ["factoid_qa"])], None, None)
    assert reporter.lines[2] == "measured: 2.10 GB"
