"""The real-format dataset readers: small hand-made files in each published format, the bad inputs they must name, and
the real benchmark files in ../shared/data (skipped when that folder is absent)."""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest

from kick_checks.datasets import (
    load_cnn_dailymail,
    load_freebaseqa,
    load_mmlu,
    load_mt_bench,
    load_triviaqa,
    load_vicuna_bench,
    load_wikitext2,
    sample_rows,
)
from kick_checks.errors import KickError
from kick_checks.tasks import load_task_data

BUNDLED = Path(__file__).parents[1] / "kick_checks" / "data"


def kick_error(match: str, call, *args, **kwargs) -> str:
    """The KickError message of a call, checked to be one line."""
    with pytest.raises(KickError, match=match) as raised:
        call(*args, **kwargs)
    message = str(raised.value)
    assert "\n" not in message
    return message


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_json(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


def write_csv(path: Path, records: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(records)
    return path


# ---------------------------------------------------------------------------------------------------------------
# FreebaseQA


def freebase_parse(names: list[str]) -> dict:
    return {
        "Parse-Id": "p",
        "PotentialTopicEntityMention": "tosca",
        "TopicEntityName": "tosca",
        "TopicEntityMid": "m.0tosca",
        "InferentialChain": "opera.opera.composer",
        "Answers": [{"AnswersMid": "m.0answer", "AnswersName": names}],
    }


def test_freebaseqa_json(tmp_path):
    document = {
        "Dataset": "FreebaseQA-dev",
        "Version": "1.0",
        "Questions": [
            {
                "Question-ID": "FreebaseQA-dev-0",
                "RawQuestion": "Which composer wrote the opera Tosca?",
                "ProcessedQuestion": "which composer wrote the opera tosca",
                "Parses": [freebase_parse(["giacomo puccini"]), freebase_parse(["giacomo puccini", "puccini"])],
            },
            {
                "Question-ID": "FreebaseQA-dev-1",
                "RawQuestion": " Porto is the second city of which country? ",
                "ProcessedQuestion": "porto is the second city of which country",
                "Parses": [freebase_parse(["portugal"])],
            },
        ],
    }
    rows = load_freebaseqa(write_json(tmp_path / "FreebaseQA-dev.json", document))
    assert rows == [
        {
            "id": "FreebaseQA-dev-0",
            "question": "Which composer wrote the opera Tosca?",
            "answers": ["giacomo puccini", "puccini"],
        },
        {"id": "FreebaseQA-dev-1", "question": "Porto is the second city of which country?", "answers": ["portugal"]},
    ]


def test_freebaseqa_txt_groups_lines_of_one_question(tmp_path):
    text = (
        "Which composer wrote the opera Tosca? | giacomo puccini \n"
        "Porto is the second city of which country? | portugal \n"
        " Which composer wrote the opera Tosca? | puccini \n"
        "\n"
    )
    file = tmp_path / "FreebaseQA-dev.txt"
    file.write_text(text, encoding="utf-8")
    assert load_freebaseqa(file) == [
        {
            "id": "FreebaseQA-dev-0",
            "question": "Which composer wrote the opera Tosca?",
            "answers": ["giacomo puccini", "puccini"],
        },
        {"id": "FreebaseQA-dev-1", "question": "Porto is the second city of which country?", "answers": ["portugal"]},
    ]


def test_freebaseqa_tab_groups_the_answers_of_one_question(tmp_path):
    fields = ["Tosca", "tosca", "m.01", "opera.opera.composer", "null", "m.02"]
    lines = [
        "\t".join([*fields, "Giacomo Puccini", "Which composer wrote Tosca?"]),
        "\t".join([*fields, "puccini", "Which composer wrote Tosca?"]),
        "\t".join(["Porto", "porto", "m.03", "location.location.containedby", "null", "m.04", "portugal",
                   "Porto is the second city of which country?"]),
    ]
    file = tmp_path / "FreebaseQA-dev.tab"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_freebaseqa(file) == [
        {"id": "FreebaseQA-dev-0", "question": "Which composer wrote Tosca?",
         "answers": ["Giacomo Puccini", "puccini"]},
        {"id": "FreebaseQA-dev-1", "question": "Porto is the second city of which country?", "answers": ["portugal"]},
    ]
    assert load_task_data("factoid_qa", str(file)) == load_freebaseqa(file)
    short = tmp_path / "short.tab"
    short.write_text("Tosca\tpuccini\tWho wrote Tosca?\n", encoding="utf-8")
    kick_error("line 1 has 3 tab-separated fields, not 8", load_freebaseqa, short)


def test_freebaseqa_questions_lose_their_spreadsheet_quoting(tmp_path):
    """The pre-release files keep CSV quoting (wrapped, inner quotes doubled); the model must see the plain text."""
    txt = tmp_path / "FreebaseQA-dev.txt"
    txt.write_text(
        '"Which actor starred in ""Hud"" in 1963?" | paul newman \n'
        '"""Tosca"" is an opera by whom?" | puccini \n'
        '"Tosca" is an opera by whom? | puccini \n'
        '"Tosca" and "Turandot" are operas by whom? | puccini \n'
        '"Who wrote ""A Dance to the Music of Time"?" | anthony powell \n',
        encoding="utf-8",
    )
    assert [row["question"] for row in load_freebaseqa(txt)] == [
        'Which actor starred in "Hud" in 1963?',
        '"Tosca" is an opera by whom?',
        '"Tosca" and "Turandot" are operas by whom?',
        'Who wrote "A Dance to the Music of Time"?',
    ]
    tab = tmp_path / "FreebaseQA-dev.tab"
    fields = ["Hud", "hud", "m.01", "film.film.starring", "film.performance.actor", "m.02", "paul newman"]
    tab.write_text("\t".join([*fields, '"Which actor starred in ""Hud"" in 1963?"']) + "\n", encoding="utf-8")
    assert load_freebaseqa(tab)[0]["question"] == 'Which actor starred in "Hud" in 1963?'


def test_freebaseqa_bad_inputs(tmp_path):
    as_csv = tmp_path / "FreebaseQA-dev.json"
    as_csv.write_text("question,answer\nWhich composer wrote Tosca?,puccini\n", encoding="utf-8")
    assert "v1.0 JSON" in kick_error("is not JSON", load_freebaseqa, as_csv)
    kick_error("lacks 'Questions'", load_freebaseqa, write_json(tmp_path / "other.json", {"Data": []}))
    no_parses = {"Questions": [{"Question-ID": "q", "RawQuestion": "Who?"}]}
    kick_error("question 0 lacks 'Parses'", load_freebaseqa, write_json(tmp_path / "parses.json", no_parses))
    kick_error("holds no items", load_freebaseqa, write_json(tmp_path / "empty.json", {"Questions": []}))
    no_bar = tmp_path / "bad.txt"
    no_bar.write_text("Which composer wrote Tosca? puccini\n", encoding="utf-8")
    kick_error("line 1 is not 'question | answer'", load_freebaseqa, no_bar)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Qui a écrit Candide ? | voltaire\n".encode("latin-1"))
    kick_error("is not UTF-8 text", load_freebaseqa, latin1)
    kick_error("no such file or folder", load_freebaseqa, tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------------------------
# MMLU


@pytest.fixture
def mmlu_csv(tmp_path) -> Path:
    """The CSV release layout: no header, and a question that holds a newline and a comma."""
    root = tmp_path / "mmlu"
    write_csv(
        root / "dev" / "astronomy_dev.csv", [["What orbits a planet?", "a moon", "a star", "a comet", "a sun", "A"]]
    )
    write_csv(
        root / "test" / "astronomy_test.csv",
        [
            ["Which planet has\nthe most moons, roughly?", "Mars", "Saturn", "Venus", "Mercury", "B"],
            ["What is a light-year?", "a time", "a speed", "a distance", "a mass", "C"],
        ],
    )
    write_csv(
        root / "test" / "virology_test.csv", [["What does a virus need to copy itself?", "w", "x", "y", "a host", "D"]]
    )
    return root


def test_mmlu_csv_release(mmlu_csv):
    assert load_mmlu(mmlu_csv) == [
        {
            "id": "astronomy-test-0",
            "subject": "astronomy",
            "question": "Which planet has\nthe most moons, roughly?",
            "choices": ["Mars", "Saturn", "Venus", "Mercury"],
            "answer": "B",
        },
        {
            "id": "astronomy-test-1",
            "subject": "astronomy",
            "question": "What is a light-year?",
            "choices": ["a time", "a speed", "a distance", "a mass"],
            "answer": "C",
        },
        {
            "id": "virology-test-0",
            "subject": "virology",
            "question": "What does a virus need to copy itself?",
            "choices": ["w", "x", "y", "a host"],
            "answer": "D",
        },
    ]
    dev = load_mmlu(mmlu_csv, split="dev")
    assert [(row["id"], row["answer"]) for row in dev] == [("astronomy-dev-0", "A")]
    assert load_mmlu(mmlu_csv / "test") == load_mmlu(mmlu_csv)
    assert [row["id"] for row in load_mmlu(mmlu_csv / "test" / "virology_test.csv")] == ["virology-test-0"]


def test_mmlu_csv_bad_inputs(mmlu_csv, tmp_path):
    kick_error("no files for the 'val' split", load_mmlu, mmlu_csv, split="val")
    bad_letter = write_csv(tmp_path / "bad" / "anatomy_test.csv", [["Which bone?", "a", "b", "c", "d", "E"]])
    assert "A-D" in kick_error("row 1 has the answer 'E'", load_mmlu, bad_letter)
    short = write_csv(tmp_path / "short" / "anatomy_test.csv", [["Which bone?", "a", "b", "c", "D"]])
    kick_error("row 1 has 5 columns, not 6", load_mmlu, short)
    empty = tmp_path / "empty" / "anatomy_test.csv"
    empty.parent.mkdir()
    empty.write_text("", encoding="utf-8")
    kick_error("holds no items", load_mmlu, empty)


HF_MMLU_TEST = [
    {
        "question": "What orbits a planet?",
        "subject": "astronomy",
        "choices": ["a moon", "a star", "a comet", "a sun"],
        "answer": 0,
    },
    {
        "question": "Which is a virus?",
        "subject": "virology",
        "choices": ["yeast", "influenza", "algae", "moss"],
        "answer": 1,
    },
    {
        "question": "What is a light-year?",
        "subject": "astronomy",
        "choices": ["time", "speed", "distance", "mass"],
        "answer": 2,
    },
]
HF_MMLU_DEV = [
    {"question": "Which is hot?", "subject": "astronomy", "choices": ["ice", "snow", "frost", "the Sun"], "answer": 3}
]


def expected_hf_mmlu_test() -> list[dict]:
    return [
        {
            "id": "astronomy-test-0",
            "subject": "astronomy",
            "question": "What orbits a planet?",
            "choices": ["a moon", "a star", "a comet", "a sun"],
            "answer": "A",
        },
        {
            "id": "virology-test-0",
            "subject": "virology",
            "question": "Which is a virus?",
            "choices": ["yeast", "influenza", "algae", "moss"],
            "answer": "B",
        },
        {
            "id": "astronomy-test-1",
            "subject": "astronomy",
            "question": "What is a light-year?",
            "choices": ["time", "speed", "distance", "mass"],
            "answer": "C",
        },
    ]


def test_mmlu_hugging_face_parquet_and_jsonl(tmp_path):
    folder = tmp_path / "all"
    write_parquet(folder / "test-00000-of-00001.parquet", HF_MMLU_TEST)
    write_parquet(folder / "dev-00000-of-00001.parquet", HF_MMLU_DEV)
    assert load_mmlu(folder) == expected_hf_mmlu_test()
    assert [(row["id"], row["answer"]) for row in load_mmlu(folder, split="dev")] == [("astronomy-dev-0", "D")]
    assert load_mmlu(write_jsonl(tmp_path / "test.jsonl", HF_MMLU_TEST)) == expected_hf_mmlu_test()


def test_mmlu_hugging_face_saved_to_disk(tmp_path):
    import datasets

    splits = {"test": datasets.Dataset.from_list(HF_MMLU_TEST), "dev": datasets.Dataset.from_list(HF_MMLU_DEV)}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "mmlu"))
    assert load_mmlu(tmp_path / "mmlu") == expected_hf_mmlu_test()
    assert load_mmlu(tmp_path / "mmlu", split="dev")[0]["choices"] == ["ice", "snow", "frost", "the Sun"]
    kick_error("has the splits test, dev but no 'val'", load_mmlu, tmp_path / "mmlu", split="val")


def test_a_hub_dataset_name_is_fetched_once_cached_and_read_by_the_real_loader(tmp_path, monkeypatch):
    import datasets


    calls = []

    def hub(name, config=None):  # stands in for the hub, which this machine cannot reach
        calls.append((name, config))
        splits = {"test": datasets.Dataset.from_list(HF_MMLU_TEST), "dev": datasets.Dataset.from_list(HF_MMLU_DEV)}
        return datasets.DatasetDict(splits)

    monkeypatch.setenv("KICK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "load_dataset", hub)
    assert load_task_data("multiple_choice", "hf:cais/mmlu:all") == expected_hf_mmlu_test()
    assert load_task_data("multiple_choice", "hf:cais/mmlu:all") == expected_hf_mmlu_test()
    assert calls == [("cais/mmlu", "all")]  # the second run reads the cached copy
    assert (tmp_path / "cache" / "datasets" / "cais--mmlu--all" / "dataset_dict.json").is_file()

    def offline(name, config=None):
        raise ConnectionError("Couldn't reach 'org/none' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    kick_error(r"cannot fetch the dataset 'org/none' from the Hugging Face hub \(ConnectionError: Couldn't reach",
               load_task_data, "factoid_qa", "hf:org/none")
    assert not (tmp_path / "cache" / "datasets" / "org--none").exists()
    kick_error("names no dataset: write hf:org/name", load_task_data, "factoid_qa", "hf:")


def test_mmlu_hugging_face_bad_inputs(tmp_path):
    out_of_range = [{**HF_MMLU_TEST[0], "answer": 4}]
    kick_error("row 0 has the answer 4, not 0-3", load_mmlu, write_jsonl(tmp_path / "a" / "test.jsonl", out_of_range))
    three = [{**HF_MMLU_TEST[0], "choices": ["a", "b", "c"]}]
    kick_error("row 0 does not have 4 choices", load_mmlu, write_jsonl(tmp_path / "b" / "test.jsonl", three))
    no_choices = [{"question": "Who?", "subject": "x", "answer": 0}]
    message = kick_error("row 0 lacks 'choices'", load_mmlu, write_jsonl(tmp_path / "c" / "test.jsonl", no_choices))
    assert "MMLU CSV release" in message


# ---------------------------------------------------------------------------------------------------------------
# TriviaQA rc

TRIVIA_HF = [
    {
        "question": "Which river flows through Vienna?",
        "question_id": "tq_1",
        "answer": {"value": "Danube", "aliases": ["Danube River", "Danube"], "normalized_aliases": ["danube"]},
        "entity_pages": {
            "title": ["Rhine", "Vienna"],
            "wiki_context": [
                "The Rhine flows north to the sea.",
                "one two three four five six seven Vienna sits on the Danube river banks today and more words",
            ],
        },
        "search_results": {"search_context": ["The Danube is long."]},
    },
    {
        "question": "Which planet is closest to the Sun?",
        "question_id": "tq_2",
        "answer": {"value": "Mercury", "aliases": ["Planet Mercury"]},
        "entity_pages": {"wiki_context": []},
        "search_results": {
            "search_context": ["Mercurial moods aside,\n\nthe closest planet is  MERCURY, a small world."]
        },
    },
    {
        "question": "Who painted the Mona Lisa?",
        "question_id": "tq_3",
        "answer": {"value": "Leonardo da Vinci", "aliases": ["Leonardo"]},
        "entity_pages": {"wiki_context": ["The painting hangs in the Louvre in Paris."]},
        "search_results": {"search_context": []},
    },
]


def test_triviaqa_hugging_face_rows_passages_and_drops(tmp_path, caplog):
    file = write_jsonl(tmp_path / "validation.jsonl", TRIVIA_HF)
    with caplog.at_level(logging.WARNING, logger="kick_checks.datasets"):
        rows = load_triviaqa(file, max_passage_words=5)
    assert rows == [
        {
            "id": "tq_1",
            "passage": "the Danube river banks today",
            "question": "Which river flows through Vienna?",
            "answers": ["Danube", "Danube River"],
        },
        {
            "id": "tq_2",
            "passage": "planet is MERCURY, a small",
            "question": "Which planet is closest to the Sun?",
            "answers": ["Mercury", "Planet Mercury"],
        },
    ]
    assert "dropped 1 of 3 questions" in caplog.text
    whole = load_triviaqa(file)
    assert whole[1]["passage"] == "Mercurial moods aside, the closest planet is MERCURY, a small world."


def test_triviaqa_hugging_face_saved_to_disk(tmp_path):
    import datasets

    datasets.DatasetDict({"validation": datasets.Dataset.from_list(TRIVIA_HF)}).save_to_disk(str(tmp_path / "rc"))
    assert [row["id"] for row in load_triviaqa(tmp_path / "rc")] == ["tq_1", "tq_2"]
    write_parquet(tmp_path / "parquet" / "validation-00000-of-00001.parquet", TRIVIA_HF)
    assert load_triviaqa(tmp_path / "parquet") == load_triviaqa(tmp_path / "rc")


@pytest.fixture
def triviaqa_official(tmp_path) -> Path:
    """The download's layout: qa/<domain>-<split>.json beside evidence/wikipedia and evidence/web."""
    evidence = tmp_path / "triviaqa-rc" / "evidence"
    (evidence / "wikipedia").mkdir(parents=True)
    (evidence / "web" / "7").mkdir(parents=True)
    (evidence / "wikipedia" / "Vienna.txt").write_text("Vienna is the capital of Austria.", encoding="utf-8")
    (evidence / "web" / "7" / "7_1.txt").write_text("Boats on the Danube pass Vienna.", encoding="utf-8")
    answer = {"Aliases": ["Danube River"], "NormalizedAliases": ["danube river"], "Type": "WikipediaEntity"}
    document = {
        "Data": [
            {
                "Answer": {**answer, "Value": "Danube"},
                "EntityPages": [{"DocSource": "TagMe", "Filename": "Vienna.txt", "Title": "Vienna"}],
                "Question": "Which river flows through Vienna?",
                "QuestionId": "tc_1",
                "SearchResults": [{"Filename": "7/7_1.txt", "Rank": 0, "Title": "Boats"}],
            },
            {
                "Answer": {"Aliases": [], "Value": "Rhine"},
                "EntityPages": [{"Filename": "Missing.txt"}],
                "Question": "Which river flows through Basel?",
                "QuestionId": "tc_2",
                "SearchResults": [],
            },
        ],
        "Domain": "Web",
        "Version": 1.0,
    }
    return write_json(tmp_path / "triviaqa-rc" / "qa" / "web-dev.json", document)


def test_triviaqa_official_json_with_evidence(triviaqa_official):
    expected = [
        {
            "id": "tc_1",
            "passage": "Boats on the Danube pass Vienna.",
            "question": "Which river flows through Vienna?",
            "answers": ["Danube", "Danube River"],
        }
    ]
    evidence = triviaqa_official.parents[1] / "evidence"
    assert load_triviaqa(triviaqa_official, evidence_dir=evidence) == expected
    one_line = triviaqa_official.with_name("web-test.json")
    one_line.write_text(json.dumps(json.loads(triviaqa_official.read_text(encoding="utf-8"))), encoding="utf-8")
    assert load_triviaqa(one_line, evidence_dir=evidence) == expected
    assert load_task_data("retrieval_qa", str(triviaqa_official)) == expected


def test_triviaqa_bad_inputs(triviaqa_official, tmp_path):
    kick_error("none of its 2 questions .* pass evidence_dir", load_triviaqa, triviaqa_official)
    kick_error("no such file or folder", load_triviaqa, triviaqa_official, evidence_dir=tmp_path / "nowhere")
    kick_error("max_passage_words is 0", load_triviaqa, triviaqa_official, max_passage_words=0)
    no_answer = [{key: value for key, value in TRIVIA_HF[0].items() if key != "answer"}]
    kick_error("row 0 lacks 'answer'", load_triviaqa, write_jsonl(tmp_path / "a.jsonl", no_answer))
    no_context = [{"question": "Q?", "question_id": "q", "answer": {"value": "A", "aliases": []}}]
    kick_error("neither entity_pages nor search_results", load_triviaqa, write_jsonl(tmp_path / "b.jsonl", no_context))
    no_evidence = [{**TRIVIA_HF[0], "entity_pages": {"wiki_context": []}, "search_results": {"search_context": []}}]
    kick_error("use the rc or rc.wikipedia config", load_triviaqa, write_jsonl(tmp_path / "c.jsonl", no_evidence))
    as_csv = tmp_path / "web-dev.json"
    as_csv.write_text("Question,Answer\nWho?,Me\n", encoding="utf-8")
    kick_error("is not JSON", load_triviaqa, as_csv)


# ---------------------------------------------------------------------------------------------------------------
# CNN/DailyMail


def test_cnn_dailymail_story_files(tmp_path):
    (tmp_path / "b2.story").write_text(
        "(CNN) -- A lighthouse keeper retired after forty years.\n\nHe plans to paint.\n\n"
        "@highlight\n\nKeeper retires after forty years\n\n@highlight\n\nHe will paint boats!\n",
        encoding="utf-8",
    )
    (tmp_path / "a1.story").write_text(
        "\n  A town opened a library.  \n\n@highlight\n\nNew library opens.\n", encoding="utf-8"
    )
    assert load_cnn_dailymail(tmp_path) == [
        {"id": "a1", "article": "A town opened a library.", "summary": "New library opens."},
        {
            "id": "b2",
            "article": "(CNN) -- A lighthouse keeper retired after forty years.\n\nHe plans to paint.",
            "summary": "Keeper retires after forty years. He will paint boats!",
        },
    ]
    assert load_cnn_dailymail(tmp_path / "a1.story")[0]["id"] == "a1"


def test_cnn_dailymail_hugging_face_layout(tmp_path):
    rows = [
        {"article": " A town opened a library. ", "highlights": "New library opens .\nIt has 900 books", "id": "x1"},
        {"article": "Rain fell all week.", "highlights": "Wet week", "id": "x2"},
    ]
    expected = [
        {"id": "x1", "article": "A town opened a library.", "summary": "New library opens . It has 900 books."},
        {"id": "x2", "article": "Rain fell all week.", "summary": "Wet week."},
    ]
    assert load_cnn_dailymail(write_jsonl(tmp_path / "jsonl" / "test.jsonl", rows)) == expected
    csv_file = tmp_path / "csv" / "test.csv"
    csv_file.parent.mkdir()
    with csv_file.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["article", "highlights", "id"])
        writer.writeheader()
        writer.writerows(rows)
    assert load_cnn_dailymail(tmp_path / "csv") == expected


def test_cnn_dailymail_bad_inputs(tmp_path):
    (tmp_path / "stories").mkdir()
    (tmp_path / "stories" / "c3.story").write_text("An article without highlights.\n", encoding="utf-8")
    kick_error("c3.story lacks an article or @highlight lines", load_cnn_dailymail, tmp_path / "stories")
    no_highlights = write_jsonl(tmp_path / "test.jsonl", [{"article": "Text.", "id": "x"}])
    kick_error("row 0 lacks 'highlights'", load_cnn_dailymail, no_highlights)
    (tmp_path / "nothing").mkdir()
    kick_error("holds no .parquet, .jsonl, .json, .csv files", load_cnn_dailymail, tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------------------------
# MT-bench and Vicuna-bench

MT_QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a haiku about tea.", "Now one about coffee."]},
    {
        "question_id": 111,
        "category": "math",
        "turns": ["What is 12 times 12?", "And 13 times 13?"],
        "reference": ["144", "169"],
    },
]
MT_REFERENCES = [
    {
        "question_id": 111,
        "answer_id": "r1",
        "model_id": "gpt-4",
        "choices": [{"index": 0, "turns": ["12 times 12 is 144.", "13 times 13 is 169."]}],
        "tstamp": 1.0,
    }
]


def test_mt_bench_with_reference_file(tmp_path):
    questions = write_jsonl(tmp_path / "question.jsonl", MT_QUESTIONS)
    assert load_mt_bench(questions) == MT_QUESTIONS
    references = write_jsonl(tmp_path / "reference_answer" / "gpt-4.jsonl", MT_REFERENCES)
    merged = [MT_QUESTIONS[0], {**MT_QUESTIONS[1], "reference": ["12 times 12 is 144.", "13 times 13 is 169."]}]
    assert load_mt_bench(questions, reference_path=references) == merged
    assert load_task_data("conversations", str(tmp_path)) == merged


def test_vicuna_bench(tmp_path):
    rows = [
        {"question_id": 1, "text": "How do I keep a plant alive?", "category": "generic"},
        {"question_id": 2, "text": "Explain tides to a child.", "category": "knowledge"},
    ]
    expected = [
        {"question_id": 1, "category": "generic", "turns": ["How do I keep a plant alive?"]},
        {"question_id": 2, "category": "knowledge", "turns": ["Explain tides to a child."]},
    ]
    file = write_jsonl(tmp_path / "question.jsonl", rows)
    assert load_vicuna_bench(file) == expected
    assert load_task_data("conversations", str(file)) == expected


def test_conversation_bad_inputs(tmp_path):
    questions = write_jsonl(tmp_path / "question.jsonl", MT_QUESTIONS)
    stray = write_jsonl(tmp_path / "stray.jsonl", [{**MT_REFERENCES[0], "question_id": 999}])
    kick_error("answers question 999, which the questions lack", load_mt_bench, questions, reference_path=stray)
    no_choices = write_jsonl(tmp_path / "plain.jsonl", [{"question_id": 111, "turns": ["144"]}])
    kick_error("row 0 lacks 'choices'", load_mt_bench, questions, reference_path=no_choices)
    no_turns = write_jsonl(tmp_path / "a" / "question.jsonl", [{"question_id": 1, "category": "writing"}])
    kick_error("row 0 lacks 'turns'", load_mt_bench, no_turns)
    empty_turns = write_jsonl(tmp_path / "b" / "question.jsonl", [{"question_id": 1, "category": "x", "turns": []}])
    kick_error("turns must be a non-empty list of strings", load_mt_bench, empty_turns)
    no_text = write_jsonl(tmp_path / "c" / "question.jsonl", [{"question_id": 1, "category": "generic"}])
    kick_error("row 0 lacks 'text'", load_vicuna_bench, no_text)
    (tmp_path / "d").mkdir()
    kick_error("has no question.jsonl", load_task_data, "conversations", str(tmp_path / "d"))


# ---------------------------------------------------------------------------------------------------------------
# WikiText-2


def test_wikitext2_raw_with_crlf(tmp_path):
    file = tmp_path / "wiki.test.raw"
    file.write_bytes(b" = Tea = \r\n \r\n Tea is a drink @-@ brewed from leaves . \r\n")
    assert load_wikitext2(file) == " = Tea = \n \n Tea is a drink @-@ brewed from leaves . \n"
    (tmp_path / "wiki.valid.raw").write_text(" = Coffee = \n", encoding="utf-8")
    assert load_wikitext2(tmp_path) == load_wikitext2(file)
    assert load_wikitext2(tmp_path, split="validation") == " = Coffee = \n"


def test_wikitext2_hugging_face_rows_are_lines(tmp_path):
    rows = [{"text": ""}, {"text": " = Tea = \n"}, {"text": ""}, {"text": " Tea is a drink . \n"}]
    file = write_parquet(tmp_path / "wikitext-2-raw-v1" / "test-00000-of-00001.parquet", rows)
    write_parquet(tmp_path / "wikitext-2-raw-v1" / "train-00000-of-00001.parquet", [{"text": " = Coffee = \n"}])
    expected = "\n = Tea = \n\n Tea is a drink . "
    assert load_wikitext2(file.parent) == expected
    assert load_task_data("perplexity", str(file)) == expected


def test_wikitext2_bad_inputs(tmp_path):
    blank = tmp_path / "wiki.test.raw"
    blank.write_text(" \n \n", encoding="utf-8")
    kick_error("holds no text", load_wikitext2, blank)
    binary = tmp_path / "wiki.valid.raw"
    binary.write_bytes(b"\xff\xfe\x00 = T = ")
    kick_error("is not UTF-8 text", load_wikitext2, binary)
    kick_error("row 0 lacks 'text'", load_wikitext2, write_jsonl(tmp_path / "test.jsonl", [{"content": "x"}]))


# ---------------------------------------------------------------------------------------------------------------
# Choosing a loader


def test_dispatcher_reads_our_own_schema(tmp_path):
    factoid = [{"id": "f1", "question": "What is the capital of Peru?", "answers": ["Lima"]}]
    assert load_task_data("factoid_qa", str(write_jsonl(tmp_path / "f.jsonl", factoid))) == factoid
    choice = [{"id": "m1", "subject": "s", "question": "Q?", "choices": ["a", "b", "c", "d"], "answer": "C"}]
    assert load_task_data("multiple_choice", str(write_jsonl(tmp_path / "m.jsonl", choice))) == choice
    summary = [{"id": "s1", "article": "A long text.", "summary": "Short."}]
    assert load_task_data("summarization", str(write_jsonl(tmp_path / "s.jsonl", summary))) == summary
    passage = [
        {"id": "r1", "passage": "Lima is the capital of Peru.", "question": "Capital of Peru?", "answers": ["Lima"]}
    ]
    assert load_task_data("retrieval_qa", str(write_jsonl(tmp_path / "r.jsonl", passage))) == passage
    assert load_task_data("conversations", str(BUNDLED / "conversations.jsonl"))[0]["question_id"] == 1
    assert load_task_data("perplexity", str(BUNDLED / "perplexity.txt")).startswith(" \n = History of the bicycle")


def test_dispatcher_reads_the_real_formats(tmp_path, mmlu_csv):
    (tmp_path / "fb.txt").write_text("Who wrote Hamlet? | william shakespeare \n", encoding="utf-8")
    assert load_task_data("factoid_qa", str(tmp_path / "fb.txt"))[0]["answers"] == ["william shakespeare"]
    assert [row["id"] for row in load_task_data("multiple_choice", str(mmlu_csv))][0] == "astronomy-test-0"
    write_jsonl(tmp_path / "mmlu_hf" / "test.jsonl", HF_MMLU_TEST)
    assert load_task_data("multiple_choice", str(tmp_path / "mmlu_hf" / "test.jsonl")) == expected_hf_mmlu_test()
    trivia = write_jsonl(tmp_path / "trivia" / "validation.jsonl", TRIVIA_HF)
    assert [row["id"] for row in load_task_data("retrieval_qa", str(trivia))] == ["tq_1", "tq_2"]
    (tmp_path / "stories").mkdir()
    (tmp_path / "stories" / "s.story").write_text("Article.\n@highlight\nPoint\n", encoding="utf-8")
    assert load_task_data("summarization", str(tmp_path / "stories"))[0]["summary"] == "Point."


def test_dispatcher_bad_inputs(tmp_path):
    kick_error("unknown data name; use one of factoid_qa, ", load_task_data, "trivia", str(tmp_path))
    kick_error("no such file or folder; give data for factoid_qa", load_task_data, "factoid_qa", str(tmp_path / "x"))
    bad_row = write_jsonl(
        tmp_path / "m.jsonl", [{"id": "m", "subject": "s", "question": "Q?", "choices": ["a"], "answer": "A"}]
    )
    kick_error("row 0 needs 4 choices and an answer letter A-D", load_task_data, "multiple_choice", str(bad_row))
    second_bad = [{"id": "f1", "question": "Q?", "answers": ["a"]}, {"id": "f2", "question": "Q?"}]
    own = write_jsonl(tmp_path / "f.jsonl", second_bad)
    kick_error("row 1 lacks 'answers': expected our factoid_qa JSON lines", load_task_data, "factoid_qa", str(own))


def test_an_empty_data_file_says_it_is_empty_and_names_our_schema(tmp_path):
    """An empty file is not a malformed FreebaseQA document, and a file that is not JSON may have been meant as our
    JSON lines: both messages name our schema beside the published formats."""
    for name, content in (("empty.jsonl", ""), ("blank.json", " \n\n")):
        file = tmp_path / name
        file.write_text(content, encoding="utf-8")
        expected = (f"--kick-data factoid_qa={file} is empty: give our factoid_qa JSON lines with the keys id, "
                    "question, answers; or the FreebaseQA v1.0 JSON")
        message = kick_error(re.escape(expected), load_task_data, "factoid_qa", str(file))
        assert "not JSON" not in message
    garbage = tmp_path / "questions.jsonl"
    garbage.write_text("Which composer wrote Tosca? puccini\n", encoding="utf-8")
    message = kick_error("is not JSON: expected the FreebaseQA v1.0 JSON", load_task_data, "factoid_qa", str(garbage))
    assert message.endswith("; factoid_qa also reads our factoid_qa JSON lines with the keys id, question, answers")


# ---------------------------------------------------------------------------------------------------------------
# sample_rows


def test_sample_rows_is_seeded_ordered_and_sized():
    rows = [{"id": index} for index in range(100)]
    sample = sample_rows(rows, 10, seed=3)
    assert sample == sample_rows(rows, 10, seed=3)
    assert len(sample) == 10 and len({row["id"] for row in sample}) == 10
    ids = [row["id"] for row in sample]
    assert ids == sorted(ids) and ids != list(range(10))
    assert sample != sample_rows(rows, 10, seed=4)
    assert sample_rows(rows, None) == rows and sample_rows(rows, 100) == rows


def test_a_limit_is_at_most_that_many_items_and_must_be_positive():
    rows = list(range(240))
    assert sample_rows(rows, 500, source="multiple_choice") == rows  # fewer items than the limit: all of them
    kick_error("--kick-limit 0 is not a positive count", sample_rows, rows, 0)


# ---------------------------------------------------------------------------------------------------------------
# The real benchmark files in ../shared/data (counts from its README)

MMLU_TEST_COUNTS = {
    "abstract_algebra": 100,
    "college_biology": 144,
    "computer_security": 100,
    "high_school_geography": 198,
    "high_school_us_history": 204,
    "international_law": 121,
    "marketing": 234,
    "nutrition": 306,
    "philosophy": 311,
    "world_religions": 171,
}


def test_real_mmlu(shared_data):
    root = shared_data("mmlu")
    dev = load_mmlu(root, split="dev")
    assert len(dev) == 285 and set(Counter(row["subject"] for row in dev).values()) == {5}
    assert len({row["subject"] for row in dev}) == 57
    test = load_mmlu(root)
    assert Counter(row["subject"] for row in test) == MMLU_TEST_COUNTS
    assert len({row["id"] for row in test}) == 1889
    assert all(len(row["choices"]) == 4 and row["answer"] in "ABCD" for row in test)
    assert len(load_mmlu(root, split="val")) == 1531
    assert load_task_data("multiple_choice", str(root)) == test


def test_real_cnn_dailymail(shared_data):
    rows = load_cnn_dailymail(shared_data("cnn_dailymail/small"))
    assert len(rows) == 30 and len({row["id"] for row in rows}) == 30
    assert all(row["summary"].strip() and len(row["article"]) > len(row["summary"]) for row in rows)


def test_real_mt_bench(shared_data):
    folder = shared_data("mt_bench")
    reference_file = folder / "reference_answer_gpt-4.jsonl"
    rows = load_mt_bench(folder / "question.jsonl", reference_path=reference_file)
    assert len(rows) == 80 and all(len(row["turns"]) == 2 for row in rows)
    references = {
        record["question_id"]: record["choices"][0]["turns"]
        for record in map(json.loads, reference_file.read_text(encoding="utf-8").splitlines())
    }
    assert len(references) == 30
    merged = [row for row in rows if row["question_id"] in references]
    assert len(merged) == 30 and all(row["reference"] == references[row["question_id"]] for row in merged)
    assert load_task_data("conversations", str(folder)) == rows


def test_real_vicuna_bench(shared_data):
    rows = load_vicuna_bench(shared_data("vicuna_bench/question.jsonl"))
    assert len(rows) == 80 and all(len(row["turns"]) == 1 for row in rows)


def test_real_freebaseqa_txt(shared_data):
    rows = load_freebaseqa(shared_data("freebaseqa/FreebaseQA-dev.txt"))
    assert len(rows) == 3994 and len({row["question"] for row in rows}) == 3994
    assert all(row["answers"] for row in rows)
    oxford = next(row for row in rows if row["question"].startswith("Playwright Alan Bennett"))
    assert oxford["answers"] == ["oxford university", "university of oxford"]
    assert not [row["question"] for row in rows if '""' in row["question"]]
    assert any(row["question"].startswith('Alan Longmuir, Derek Longmuir, Eric Faulkner, Stuart "Woody" Wood')
               for row in rows)


def test_real_freebaseqa_tab(shared_data):
    rows = load_freebaseqa(shared_data("freebaseqa/FreebaseQA-dev.tab"))
    assert len(rows) == 3995  # the 3,996 distinct question strings, two of which differ only in spaces
    assert all(row["question"] and row["answers"] for row in rows)
    by_question = {row["question"]: row["answers"] for row in rows}
    tosca = [answers for question, answers in by_question.items() if "10 Things I Hate About You" in question]
    assert tosca and any("taming of the shrew" in answer.lower() for answer in tosca[0])
    assert not [question for question in by_question if '""' in question]


def test_real_wikitext2(shared_data):
    text = load_wikitext2(shared_data("wikitext2/wiki.test.raw"))
    assert text.startswith(" = Robert Boulter = \n") and "\r" not in text
    assert len(text.splitlines()) == 2891
