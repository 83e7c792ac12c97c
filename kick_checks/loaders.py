"""Readers for the real LLM-KICK benchmarks in their published formats, returning rows in our bundled schemas.

The bundled sets are small and written for a 135M model; a user who wants the real FreebaseQA, TriviaQA, MMLU,
CNN/DailyMail, MT-bench or WikiText-2 should not have to convert them first. Each loader reads one benchmark's
published layout (and, where it exists, the Hugging Face layout) and returns the same rows as our JSONL files:

- factoid (FreebaseQA): ``{"id", "question", "answers"}``
- retrieval (TriviaQA rc): ``{"id", "passage", "question", "answers"}``
- multiple choice (MMLU): ``{"id", "subject", "question", "choices": [4], "answer": "A".."D"}``
- summarization (CNN/DailyMail): ``{"id", "article", "summary"}``
- conversations (MT-bench, Vicuna-bench): ``{"question_id", "category", "turns", "reference" (optional)}``
- perplexity (WikiText-2): one string

``load_task_data`` picks the loader for a ``--kick-data NAME=PATH`` value. Every problem with the input is a
``KickError`` whose one line says what was expected and how to fix it, so a bad path fails before any model loads.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import logging
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from kick_checks.errors import KickError

log = logging.getLogger(__name__)

FREEBASEQA_FORMAT = (
    'the FreebaseQA v1.0 JSON ({"Questions": [{"Question-ID", "RawQuestion", "Parses": [{"Answers": '
    '[{"AnswersName": [...]}]}]}]}) or the v1.1 .txt with "question | answer" lines'
)
MMLU_FORMAT = (
    "the MMLU CSV release (dev/, val/, test/ holding <subject>_<split>.csv rows question,A,B,C,D,answer letter) "
    "or a Hugging Face MMLU dataset (columns question, subject, choices [4], answer 0-3)"
)
TRIVIAQA_FORMAT = (
    "a Hugging Face trivia_qa rc dataset (columns question, question_id, answer {value, aliases}, "
    'entity_pages {wiki_context}, search_results {search_context}) or the official TriviaQA JSON ({"Data": [...]})'
)
CNN_DAILYMAIL_FORMAT = (
    "CNN/DailyMail .story files (article, then @highlight blocks) or a Hugging Face cnn_dailymail dataset "
    "(columns id, article, highlights)"
)
MT_BENCH_FORMAT = 'MT-bench question.jsonl rows {"question_id", "category", "turns": [...]}'
MT_BENCH_REFERENCE_FORMAT = 'FastChat reference answers {"question_id", "choices": [{"index": 0, "turns": [...]}]}'
VICUNA_BENCH_FORMAT = 'Vicuna-bench question.jsonl rows {"question_id", "text", "category"}'
WIKITEXT_FORMAT = "a WikiText-2 raw file (wiki.test.raw) or a Hugging Face wikitext dataset (column text)"

# Our own JSON-lines schemas, the ones the bundled files in kick_checks/data use.
KICK_SCHEMAS = {
    "factoid_qa": ("id", "question", "answers"),
    "retrieval_qa": ("id", "passage", "question", "answers"),
    "multiple_choice": ("id", "subject", "question", "choices", "answer"),
    "summarization": ("id", "article", "summary"),
}
# Our conversations schema is MT-bench's own, so load_mt_bench reads our JSONL too.
DATA_NAMES = (*KICK_SCHEMAS, "conversations", "perplexity")

LETTERS = ("A", "B", "C", "D")
TABLE_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
KNOWN_SPLITS = ("train", "validation", "val", "dev", "test")
# MMLU's "val" is Hugging Face's "validation"; "dev" stays apart because MMLU uses it for the few-shot examples.
SPLIT_ALIASES = {"val": ("val", "validation"), "validation": ("validation", "val")}
# Where FastChat keeps MT-bench's GPT-4 reference answers, next to question.jsonl (the second is a flat copy).
MT_BENCH_REFERENCE_FILES = ("reference_answer/gpt-4.jsonl", "reference_answer_gpt-4.jsonl")


# ---------------------------------------------------------------------------------------------------------------
# Datasets named on the Hugging Face hub

HUB_PREFIX = "hf:"


def hub_dataset_folder(reference: str, cache_dir: Path | None = None) -> Path:
    """``hf:org/name`` or ``hf:org/name:config`` as a local ``save_to_disk`` folder: downloaded with
    ``datasets.load_dataset`` on first use (all splits) and cached under ``<cache>/datasets/``, so later runs
    read it offline and the real-format loaders below read it like any saved Hugging Face dataset."""
    name, _, config = reference[len(HUB_PREFIX):].partition(":")
    if not name.strip():
        raise KickError(f"{reference!r} names no dataset: write hf:org/name or hf:org/name:config")
    if cache_dir is None:
        from kick_checks.models import default_cache_dir

        cache_dir = default_cache_dir()
    folder = Path(cache_dir) / "datasets" / (name.replace("/", "--") + (f"--{config}" if config else ""))
    if _is_saved_dataset(folder):
        return folder
    import datasets

    try:
        loaded = datasets.load_dataset(name, config or None)
    except Exception as error:  # noqa: BLE001 - offline, unknown name, gated: all end here
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise KickError(
            f"cannot fetch the dataset {name!r}{f' ({config})' if config else ''} from the Hugging Face hub "
            f"({type(error).__name__}: {first[:160]}): check the name and the network, or download it once and "
            "give its folder"
        ) from None
    staging = folder.with_name(f".{folder.name}.partial")
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    loaded.save_to_disk(str(staging))
    staging.replace(folder)
    return folder


def resolve_data_source(path: str | Path, expected: str) -> Path:
    """A local path, or the cached folder of an ``hf:`` dataset name."""
    if str(path).startswith(HUB_PREFIX):
        return hub_dataset_folder(str(path))
    return _existing(path, expected)


# ---------------------------------------------------------------------------------------------------------------
# Shared reading helpers


def _existing(path: str | Path, expected: str) -> Path:
    """The path as a ``Path``, or a KickError that names the expected input when nothing is there."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise KickError(f"{path}: no such file or folder; give {expected}")
    return resolved


def _field(row: object, key: str, where: str, expected: str):
    """``row[key]``, or a KickError saying which key is missing, so a wrong file fails on its first bad row."""
    if not isinstance(row, dict) or key not in row:
        raise KickError(f"{where} lacks {key!r}: expected {expected}")
    return row[key]


def _nonempty(rows: list, source: Path, expected: str) -> list:
    if not rows:
        raise KickError(f"{source} holds no items: expected {expected}")
    return rows


def _unique(values: Iterable[str]) -> list[str]:
    """Stripped, non-empty strings without repeats, first occurrence first (the first answer is the canonical one)."""
    seen: dict[str, None] = {}
    for value in values:
        text = str(value).strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def _read_text(file: Path, expected: str) -> str:
    """A UTF-8 file's text with universal newlines, so CRLF copies (common on Windows mirrors) read like LF ones."""
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise KickError(f"{file} is not UTF-8 text: expected {expected}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_json_lines(text: str, source: object, expected: str) -> list[dict]:
    """One JSON object per non-blank line; any other line is a one-line error naming ``source`` and the line."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise KickError(
                f"{source} line {number} is not JSON: expected one JSON object a line, {expected}"
            ) from None
        if not isinstance(row, dict):
            raise KickError(f"{source} line {number} is not a JSON object: expected {expected}")
        rows.append(row)
    return rows


def _read_json_lines(file: Path, expected: str) -> list[dict]:
    return parse_json_lines(_read_text(file, expected), file, expected)


def _first_json_row(file: Path) -> dict | None:
    """The first line of a JSON-lines file as an object, or None when the file is not JSON lines.

    Tells a JSON-lines export (one object a line) from a single pretty-printed JSON document without reading
    a large file twice.
    """
    try:
        with file.open(encoding="utf-8") as handle:
            line = next((line for line in handle if line.strip()), "")
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) else None


def _read_json_document(file: Path, expected: str) -> object:
    try:
        return json.loads(_read_text(file, expected))
    except json.JSONDecodeError:
        raise KickError(f"{file} is not JSON: expected {expected}") from None


def _split_names(split: str) -> tuple[str, ...]:
    return SPLIT_ALIASES.get(split, (split,))


def _names_split(file: Path, root: Path, names: tuple[str, ...]) -> bool:
    """Whether a data file belongs to one of the split names, by Hugging Face's and MMLU's naming habits:
    ``test-00000-of-00001.parquet``, ``test.jsonl``, ``abstract_algebra_test.csv`` or a ``test/`` folder."""
    stem = file.stem
    if any(stem == name or stem.startswith(f"{name}-") or stem.endswith((f"_{name}", f"-{name}")) for name in names):
        return True
    return any(part in names for part in file.relative_to(root).parts[:-1])


def _table_files(path: Path, split: str, suffixes: tuple[str, ...], expected: str) -> list[Path]:
    """The data files of one split: a given file as is, else the folder's files named for the split.

    A folder whose files name no split at all is taken whole, so a folder holding one exported split works.
    """
    if path.is_file():
        return [path]
    files = sorted(file for file in path.rglob("*") if file.is_file() and file.suffix in suffixes)
    if not files:
        raise KickError(f"{path} holds no {', '.join(suffixes)} files: expected {expected}")
    chosen = [file for file in files if _names_split(file, path, _split_names(split))]
    if chosen:
        return chosen
    if not any(_names_split(file, path, KNOWN_SPLITS) for file in files):
        return files
    raise KickError(f"{path} has no files for the {split!r} split: add them, or point at the split's own file")


def _is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` (state.json) or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def _read_saved_dataset(folder: Path, split: str) -> list[dict]:
    import datasets  # imported here: it takes a second or two and only this layout needs it

    try:
        loaded = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise KickError(f"{folder} could not be read by datasets.load_from_disk ({reason}): save it again") from None
    if isinstance(loaded, datasets.DatasetDict):
        for name in _split_names(split):
            if name in loaded:
                return loaded[name].to_list()
        raise KickError(
            f"{folder} has the splits {', '.join(loaded)} but no {split!r}: save that split, or point at one split"
        )
    return loaded.to_list()


def _read_table_file(file: Path, expected: str) -> list[dict]:
    if file.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet

        try:
            return pyarrow.parquet.read_table(file).to_pylist()
        except pyarrow.ArrowException:
            raise KickError(f"{file} is not a readable parquet file: expected {expected}") from None
    if file.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(_read_text(file, expected))))
    return _read_json_lines(file, expected)


def _read_table(path: Path, split: str, expected: str) -> list[dict]:
    """Rows of a Hugging Face dataset: a ``save_to_disk`` folder, or parquet / JSON-lines / CSV files of a split."""
    if _is_saved_dataset(path):
        return _read_saved_dataset(path, split)
    rows: list[dict] = []
    for file in _table_files(path, split, TABLE_SUFFIXES, expected):
        rows.extend(_read_table_file(file, expected))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# FreebaseQA (factoid QA)


def load_freebaseqa(path: str | Path) -> list[dict]:
    """FreebaseQA as ``{"id", "question", "answers"}`` rows: the v1.0 JSON, or the v1.1 pre-release ``.txt``.

    The question is the raw question (as asked, with its capitals and punctuation); the answers are every
    parse's answer names, because FreebaseQA accepts any of them.
    """
    file = _existing(path, FREEBASEQA_FORMAT)
    if file.suffix == ".txt":
        return _load_freebaseqa_txt(file)
    document = _read_json_document(file, FREEBASEQA_FORMAT)
    questions = _field(document, "Questions", str(file), FREEBASEQA_FORMAT)
    if not isinstance(questions, list):
        raise KickError(f"{file}: 'Questions' is not a list: expected {FREEBASEQA_FORMAT}")
    rows = []
    for number, question in enumerate(questions):
        where = f"{file} question {number}"
        names = (
            name
            for parse in _field(question, "Parses", where, FREEBASEQA_FORMAT)
            for answer in _field(parse, "Answers", where, FREEBASEQA_FORMAT)
            for name in _field(answer, "AnswersName", where, FREEBASEQA_FORMAT)
        )
        rows.append(
            {
                "id": str(_field(question, "Question-ID", where, FREEBASEQA_FORMAT)),
                "question": str(_field(question, "RawQuestion", where, FREEBASEQA_FORMAT)).strip(),
                "answers": _unique(names),
            }
        )
    dropped = sum(not row["answers"] for row in rows)
    if dropped:
        log.warning("%s: dropped %d questions that have no answer names", file, dropped)
    return _nonempty([row for row in rows if row["answers"]], file, FREEBASEQA_FORMAT)


def _load_freebaseqa_txt(file: Path) -> list[dict]:
    """The v1.1 pre-release lists one ``question | answer`` pair a line; a question with several accepted
    answers takes several lines. It has no ids, so rows are numbered ``<file stem>-<n>`` in order of appearance."""
    answers_by_question: dict[str, list[str]] = {}
    for number, line in enumerate(_read_text(file, FREEBASEQA_FORMAT).split("\n"), start=1):
        if not line.strip():
            continue
        question, bar, answer = line.rpartition("|")
        if not bar or not question.strip() or not answer.strip():
            raise KickError(f"{file} line {number} is not 'question | answer': expected {FREEBASEQA_FORMAT}")
        answers_by_question.setdefault(question.strip(), []).append(answer)
    rows = [
        {"id": f"{file.stem}-{index}", "question": question, "answers": _unique(answers)}
        for index, (question, answers) in enumerate(answers_by_question.items())
    ]
    return _nonempty(rows, file, FREEBASEQA_FORMAT)


# ---------------------------------------------------------------------------------------------------------------
# MMLU (multiple choice)


def load_mmlu(path: str | Path, split: str = "test") -> list[dict]:
    """MMLU as ``{"id", "subject", "question", "choices", "answer"}`` rows for one split.

    ``split`` is ``test`` for evaluation and ``dev`` for the five few-shot examples per subject (``val`` also
    works). Reads the CSV release (the folder with ``dev/ val/ test/``, one split's folder, or one CSV file) or
    the Hugging Face layout. Ids are ``<subject>-<split>-<n>``, numbered within the subject in file order, so
    both layouts give the same ids for the same questions.
    """
    source = _existing(path, MMLU_FORMAT)
    rows = _load_mmlu_csv(source, split) if _is_mmlu_csv(source) else _load_mmlu_table(source, split)
    return _nonempty(rows, source, MMLU_FORMAT)


def _is_mmlu_csv(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".csv"
    return not _is_saved_dataset(path) and next(path.rglob("*.csv"), None) is not None


def _mmlu_subject(file: Path) -> str:
    """``abstract_algebra_test.csv`` -> ``abstract_algebra``: the release names each file for its subject."""
    subject, _, split = file.stem.rpartition("_")
    return subject if subject and split in KNOWN_SPLITS else file.stem


def _mmlu_row(subject: str, split: str, index: int, question: str, choices: list, answer: str) -> dict:
    return {
        "id": f"{subject}-{split}-{index}",
        "subject": subject,
        "question": question.strip(),
        "choices": [str(choice).strip() for choice in choices],
        "answer": answer,
    }


def _load_mmlu_csv(path: Path, split: str) -> list[dict]:
    folder = path / split if (path / split).is_dir() else path
    rows = []
    for file in _table_files(folder, split, (".csv",), MMLU_FORMAT):
        subject = _mmlu_subject(file)
        # The release has no header and fields that hold newlines and commas: only a CSV reader gets rows right.
        for index, record in enumerate(csv.reader(io.StringIO(_read_text(file, MMLU_FORMAT)))):
            where = f"{file} row {index + 1}"
            if len(record) != 6:
                raise KickError(f"{where} has {len(record)} columns, not 6: expected {MMLU_FORMAT}")
            answer = record[5].strip()
            if answer not in LETTERS:
                raise KickError(f"{where} has the answer {record[5]!r}, not A-D: expected {MMLU_FORMAT}")
            rows.append(_mmlu_row(subject, split, index, record[0], record[1:5], answer))
    return rows


def _load_mmlu_table(path: Path, split: str) -> list[dict]:
    rows = []
    counts: dict[str, int] = {}
    for number, record in enumerate(_read_table(path, split, MMLU_FORMAT)):
        where = f"{path} row {number}"
        subject = str(_field(record, "subject", where, MMLU_FORMAT))
        choices = _field(record, "choices", where, MMLU_FORMAT)
        answer = _field(record, "answer", where, MMLU_FORMAT)
        if not isinstance(choices, list) or len(choices) != 4:
            raise KickError(f"{where} does not have 4 choices: expected {MMLU_FORMAT}")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < 4:
            raise KickError(f"{where} has the answer {answer!r}, not 0-3: expected {MMLU_FORMAT}")
        index = counts[subject] = counts.get(subject, -1) + 1
        question = str(_field(record, "question", where, MMLU_FORMAT))
        rows.append(_mmlu_row(subject, split, index, question, choices, LETTERS[answer]))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# TriviaQA rc (retrieval QA)


def load_triviaqa(
    path: str | Path,
    split: str = "validation",
    max_passage_words: int = 300,
    evidence_dir: str | Path | None = None,
) -> list[dict]:
    """TriviaQA rc as ``{"id", "passage", "question", "answers"}`` rows.

    Answers are the answer's value and its aliases. The passage is the first evidence document (Wikipedia pages
    first, then web results) in which an answer stands as a whole word, case-insensitively, cut to
    ``max_passage_words`` words around that first occurrence with whitespace collapsed: whole TriviaQA documents
    run to thousands of words, far past a small model's context. Questions whose evidence holds no answer
    cannot be answered from the passage, so they are dropped and the count is logged.

    Reads the Hugging Face ``trivia_qa`` layout (config ``rc`` or ``rc.wikipedia``; the default split is
    ``validation`` because the test split has no answers) or the official JSON, whose evidence lives in separate
    files under ``evidence_dir`` (the folder holding ``wikipedia/`` and ``web/``).
    """
    if max_passage_words < 1:
        raise KickError(f"max_passage_words is {max_passage_words}: give a positive number of words")
    source = _existing(path, TRIVIAQA_FORMAT)
    first = _first_json_row(source) if source.is_file() and source.suffix == ".json" else {}
    if first is None or "Data" in first:
        items = _triviaqa_official_items(source, evidence_dir)
    else:
        items = _triviaqa_table_items(source, split)
    rows, dropped = [], 0
    for question_id, question, answers, documents in items:
        row = _triviaqa_row(question_id, question, answers, documents, max_passage_words)
        if row is None:
            dropped += 1
        else:
            rows.append(row)
    if dropped:
        total = dropped + len(rows)
        log.warning("%s: dropped %d of %d questions whose evidence holds no answer", source, dropped, total)
    if not rows and dropped:
        hint = (
            "pass evidence_dir, the folder holding wikipedia/ and web/"
            if evidence_dir is None and source.suffix == ".json"
            else "use the rc or rc.wikipedia config, which carry evidence text"
        )
        raise KickError(f"{source}: none of its {dropped} questions has evidence text holding an answer: {hint}")
    return _nonempty(rows, source, TRIVIAQA_FORMAT)


TriviaItem = tuple[str, str, list[str], Iterable[str]]


def _triviaqa_table_items(path: Path, split: str) -> Iterator[TriviaItem]:
    for number, record in enumerate(_read_table(path, split, TRIVIAQA_FORMAT)):
        where = f"{path} row {number}"
        answer = _field(record, "answer", where, TRIVIAQA_FORMAT)
        answers = _triviaqa_answers(answer, "value", "aliases", where)
        if "entity_pages" not in record and "search_results" not in record:
            raise KickError(f"{where} has neither entity_pages nor search_results: expected {TRIVIAQA_FORMAT}")
        pages, results = record.get("entity_pages") or {}, record.get("search_results") or {}
        documents = [*(pages.get("wiki_context") or []), *(results.get("search_context") or [])]
        question_id = str(_field(record, "question_id", where, TRIVIAQA_FORMAT))
        yield question_id, str(_field(record, "question", where, TRIVIAQA_FORMAT)), answers, documents


def _triviaqa_answers(answer: object, value_key: str, aliases_key: str, where: str) -> list[str]:
    """The answer's value first (the canonical answer), then its aliases."""
    value = _field(answer, value_key, where, TRIVIAQA_FORMAT)
    return _unique([value, *(answer.get(aliases_key) or [])])


def _triviaqa_official_items(file: Path, evidence_dir: str | Path | None) -> Iterator[TriviaItem]:
    document = _read_json_document(file, TRIVIAQA_FORMAT)
    data = _field(document, "Data", str(file), TRIVIAQA_FORMAT)
    evidence = None if evidence_dir is None else _existing(evidence_dir, "the TriviaQA evidence folder")
    if evidence is None:
        log.warning("%s: the official TriviaQA JSON keeps its evidence in separate files; no evidence_dir given", file)
    for number, item in enumerate(data):
        where = f"{file} item {number}"
        answer = _field(item, "Answer", where, TRIVIAQA_FORMAT)
        answers = _triviaqa_answers(answer, "Value", "Aliases", where)
        pages = [("wikipedia", page) for page in item.get("EntityPages") or []]
        results = [("web", result) for result in item.get("SearchResults") or []]
        documents = () if evidence is None else _evidence_texts(evidence, [*pages, *results], where)
        question_id = str(_field(item, "QuestionId", where, TRIVIAQA_FORMAT))
        yield question_id, str(_field(item, "Question", where, TRIVIAQA_FORMAT)), answers, documents


def _evidence_texts(evidence: Path, entries: list[tuple[str, dict]], where: str) -> Iterator[str]:
    """Evidence documents read lazily, so a question stops reading files at its first document with an answer."""
    for kind, entry in entries:
        file = evidence / kind / str(_field(entry, "Filename", where, TRIVIAQA_FORMAT))
        if file.is_file():
            yield _read_text(file, "UTF-8 evidence text")


def _triviaqa_row(
    question_id: str, question: str, answers: list[str], documents: Iterable[str], max_words: int
) -> dict | None:
    if not answers:
        return None
    longest_first = sorted(answers, key=len, reverse=True)
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(answer)}(?!\w)" for answer in longest_first), re.IGNORECASE)
    for document in documents:
        match = pattern.search(document)
        if match:
            passage = _window(document, match.start(), match.end(), max_words)
            return {"id": question_id, "passage": passage, "question": question.strip(), "answers": answers}
    return None


def _window(text: str, start: int, end: int, max_words: int) -> str:
    """At most ``max_words`` words of ``text`` around the characters ``start:end``, centred on them where the
    text allows, always including them when they are shorter than the window."""
    words = list(re.finditer(r"\S+", text))
    starts = [word.start() for word in words]
    first = bisect.bisect_right(starts, start) - 1
    last = bisect.bisect_right(starts, end - 1) - 1
    before = max(0, (max_words - (last - first + 1)) // 2)
    begin = max(0, min(first - before, len(words) - max_words))
    return " ".join(word.group() for word in words[begin : begin + max_words])


# ---------------------------------------------------------------------------------------------------------------
# CNN/DailyMail (summarization)


def load_cnn_dailymail(path: str | Path, split: str = "test") -> list[dict]:
    """CNN/DailyMail as ``{"id", "article", "summary"}`` rows.

    From ``.story`` files (a folder of them, or one; id = file stem) or the Hugging Face layout (``id``,
    ``article``, ``highlights``). The article is kept as written, only trimmed, including the "(CNN) --" lead.
    The summary is the highlights as sentences: each highlight ends with a full stop (added when it has no
    closing punctuation) and they are joined by spaces, so both layouts give one plain paragraph.
    """
    source = _existing(path, CNN_DAILYMAIL_FORMAT)
    if source.is_file() and source.suffix == ".story":
        rows = [_read_story(source)]
    elif source.is_dir() and not _is_saved_dataset(source) and next(source.glob("*.story"), None) is not None:
        rows = [_read_story(file) for file in sorted(source.glob("*.story"))]
    else:
        rows = []
        for number, record in enumerate(_read_table(source, split, CNN_DAILYMAIL_FORMAT)):
            where = f"{source} row {number}"
            highlights = str(_field(record, "highlights", where, CNN_DAILYMAIL_FORMAT)).splitlines()
            rows.append(
                {
                    "id": str(_field(record, "id", where, CNN_DAILYMAIL_FORMAT)),
                    "article": str(_field(record, "article", where, CNN_DAILYMAIL_FORMAT)).strip(),
                    "summary": _as_sentences(highlights),
                }
            )
    return _nonempty(rows, source, CNN_DAILYMAIL_FORMAT)


def _read_story(file: Path) -> dict:
    text = _read_text(file, CNN_DAILYMAIL_FORMAT)
    article, *highlight_blocks = re.split(r"^@highlight[ \t]*$", text, flags=re.MULTILINE)
    summary = _as_sentences(highlight_blocks)
    if not article.strip() or not summary:
        raise KickError(f"{file} lacks an article or @highlight lines: expected {CNN_DAILYMAIL_FORMAT}")
    return {"id": file.stem, "article": article.strip(), "summary": summary}


def _as_sentences(highlights: Iterable[str]) -> str:
    sentences = [" ".join(highlight.split()) for highlight in highlights]
    closed = (sentence if sentence.endswith((".", "!", "?")) else f"{sentence}." for sentence in sentences if sentence)
    return " ".join(closed)


# ---------------------------------------------------------------------------------------------------------------
# MT-bench and Vicuna-bench (conversations)


def load_mt_bench(path: str | Path, reference_path: str | Path | None = None) -> list[dict]:
    """MT-bench ``question.jsonl`` as ``{"question_id", "category", "turns", "reference"?}`` rows.

    ``reference_path`` is FastChat's ``reference_answer/gpt-4.jsonl``; its answers replace a question's inline
    ``reference``, because they are the references MT-bench's judge prompts are written for.
    """
    file = _existing(path, MT_BENCH_FORMAT)
    rows = []
    for number, record in enumerate(_read_json_lines(file, MT_BENCH_FORMAT)):
        where = f"{file} row {number}"
        row = {
            "question_id": _field(record, "question_id", where, MT_BENCH_FORMAT),
            "category": str(_field(record, "category", where, MT_BENCH_FORMAT)),
            "turns": _turns(_field(record, "turns", where, MT_BENCH_FORMAT), where, MT_BENCH_FORMAT),
        }
        if "reference" in record:
            row["reference"] = _turns(record["reference"], where, MT_BENCH_FORMAT)
        rows.append(row)
    _nonempty(rows, file, MT_BENCH_FORMAT)
    if reference_path is not None:
        _merge_references(rows, _existing(reference_path, MT_BENCH_REFERENCE_FORMAT))
    return rows


def _turns(value: object, where: str, expected: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(turn, str) for turn in value):
        raise KickError(f"{where}: turns must be a non-empty list of strings: expected {expected}")
    return list(value)


def _merge_references(rows: list[dict], file: Path) -> None:
    by_id = {row["question_id"]: row for row in rows}
    for number, record in enumerate(_read_json_lines(file, MT_BENCH_REFERENCE_FORMAT)):
        where = f"{file} row {number}"
        question_id = _field(record, "question_id", where, MT_BENCH_REFERENCE_FORMAT)
        choices = _field(record, "choices", where, MT_BENCH_REFERENCE_FORMAT)
        if not isinstance(choices, list) or not choices:
            raise KickError(f"{where} has no choices: expected {MT_BENCH_REFERENCE_FORMAT}")
        if question_id not in by_id:
            raise KickError(f"{where} answers question {question_id}, which the questions lack: pair matching files")
        turns = _field(choices[0], "turns", where, MT_BENCH_REFERENCE_FORMAT)
        by_id[question_id]["reference"] = _turns(turns, where, MT_BENCH_REFERENCE_FORMAT)


def load_vicuna_bench(path: str | Path) -> list[dict]:
    """Vicuna-bench ``question.jsonl`` as one-turn conversations ``{"question_id", "category", "turns": [text]}``."""
    file = _existing(path, VICUNA_BENCH_FORMAT)
    rows = []
    for number, record in enumerate(_read_json_lines(file, VICUNA_BENCH_FORMAT)):
        where = f"{file} row {number}"
        text = _field(record, "text", where, VICUNA_BENCH_FORMAT)
        rows.append(
            {
                "question_id": _field(record, "question_id", where, VICUNA_BENCH_FORMAT),
                "category": str(_field(record, "category", where, VICUNA_BENCH_FORMAT)),
                "turns": _turns([text], where, VICUNA_BENCH_FORMAT),
            }
        )
    return _nonempty(rows, file, VICUNA_BENCH_FORMAT)


# ---------------------------------------------------------------------------------------------------------------
# WikiText-2 (perplexity)


def load_wikitext2(path: str | Path, split: str = "test") -> str:
    """WikiText-2 as one string, from a raw file (``wiki.test.raw``, or its folder) or the Hugging Face layout.

    A raw file is read with universal newlines, so CRLF copies give the same text as LF ones. Hugging Face's
    ``wikitext`` rows are the raw file's lines (blank lines as ""); we take each row as one line: its trailing
    newline removed, rows joined with "\\n". That keeps the article and paragraph breaks where they were.
    """
    source = _existing(path, WIKITEXT_FORMAT)
    # The raw release names its validation split "valid": wiki.train.raw, wiki.valid.raw, wiki.test.raw.
    raw_file = source / f"wiki.{'valid' if split in ('val', 'validation') else split}.raw"
    if raw_file.is_file():
        source = raw_file
    if source.is_file() and source.suffix not in TABLE_SUFFIXES:
        text = _read_text(source, WIKITEXT_FORMAT)
    else:
        rows = _read_table(source, split, WIKITEXT_FORMAT)
        lines = [str(_field(row, "text", f"{source} row {number}", WIKITEXT_FORMAT)) for number, row in enumerate(rows)]
        text = "\n".join(line.removesuffix("\n") for line in lines)
    if not text.strip():
        raise KickError(f"{source} holds no text: expected {WIKITEXT_FORMAT}")
    return text


# ---------------------------------------------------------------------------------------------------------------
# Choosing a loader, and sampling


def load_task_data(data_name: str, path: str) -> list[dict] | str:
    """The rows (or text, for ``perplexity``) that ``--kick-data data_name=path`` refers to.

    A ``.jsonl`` file in our own schema is read as it is; anything else goes to the real benchmark's loader for
    that data name, which recognises its layouts by file names, extensions and content. For TriviaQA's official
    JSON, an ``evidence`` folder next to the file or its folder (the download's layout) is used; for MT-bench, a
    reference-answer file next to ``question.jsonl`` is merged in.
    """
    if data_name not in DATA_NAMES:
        raise KickError(f"--kick-data {data_name}={path}: unknown data name; use one of {', '.join(DATA_NAMES)}")
    source = resolve_data_source(path, f"data for {data_name}")
    if data_name in KICK_SCHEMAS and _in_kick_schema(source, data_name):
        return _load_kick_jsonl(source, data_name)
    if data_name == "factoid_qa":
        return load_freebaseqa(source)
    if data_name == "retrieval_qa":
        return load_triviaqa(source, evidence_dir=_evidence_dir_near(source))
    if data_name == "multiple_choice":
        return load_mmlu(source)
    if data_name == "summarization":
        return load_cnn_dailymail(source)
    if data_name == "conversations":
        return _load_conversations(source)
    return load_wikitext2(source)


def _in_kick_schema(source: Path, data_name: str) -> bool:
    """Our JSONL schemas are recognised by their keys: the real formats' JSON-lines exports use other ones
    (MMLU's rows lack "id", TriviaQA's lack "passage", CNN/DailyMail's say "highlights")."""
    if not (source.is_file() and source.suffix == ".jsonl"):
        return False
    first = _first_json_row(source)
    return first is not None and all(key in first for key in KICK_SCHEMAS[data_name])


def _load_kick_jsonl(file: Path, data_name: str) -> list[dict]:
    keys = KICK_SCHEMAS[data_name]
    expected = f"our {data_name} JSON lines with the keys {', '.join(keys)}"
    rows = _read_json_lines(file, expected)
    for number, row in enumerate(rows):
        for key in keys:
            _field(row, key, f"{file} row {number}", expected)
        if data_name == "multiple_choice" and (len(row["choices"]) != 4 or row["answer"] not in LETTERS):
            raise KickError(f"{file} row {number} needs 4 choices and an answer letter A-D: expected {expected}")
    return _nonempty(rows, file, expected)


def _evidence_dir_near(source: Path) -> Path | None:
    """TriviaQA's download puts ``qa/wikipedia-dev.json`` beside ``evidence/``."""
    for folder in (source.parent, source.parent.parent):
        if (folder / "evidence").is_dir():
            return folder / "evidence"
    return None


def _load_conversations(source: Path) -> list[dict]:
    question_file = source / "question.jsonl" if source.is_dir() else source
    if not question_file.is_file():
        raise KickError(f"{source} has no question.jsonl: expected {MT_BENCH_FORMAT} or {VICUNA_BENCH_FORMAT}")
    first = _first_json_row(question_file) or {}
    if "text" in first and "turns" not in first:
        return load_vicuna_bench(question_file)
    references = [question_file.parent / name for name in MT_BENCH_REFERENCE_FILES]
    return load_mt_bench(question_file, next((file for file in references if file.is_file()), None))


def sample_rows(rows: list, limit: int | None, seed: int = 0, source: str = "the task data") -> list:
    """``limit`` rows chosen at random with ``seed``, in their original order (all rows when ``limit`` is None).

    A random sample rather than the first rows, because benchmark files are sorted (MMLU by subject, MT-bench by
    category) and a prefix would measure one corner; the fixed seed keeps the dense baseline and the compressed
    run on the same items, and the original order keeps prompts and reports stable.
    """
    if limit is None:
        return list(rows)
    if limit < 1:
        raise KickError(f"--kick-limit {limit} is not a positive count: give at least 1, or drop it")
    if limit > len(rows):
        raise KickError(f"--kick-limit {limit} is larger than the {len(rows)} items in {source}: lower it or drop it")
    chosen = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[index] for index in chosen]
