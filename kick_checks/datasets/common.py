"""What every benchmark reader shares: the reader value, path and file helpers, Hugging Face layouts, the hub.

A :class:`DatasetReader` is one published format that a task accepts through ``--kick-data NAME=PATH``; the
benchmark modules beside this one (``freebaseqa``, ``mmlu``, ``triviaqa``, ``cnn_dailymail``, ``mt_bench``,
``wikitext``) each define one and return rows in our bundled schemas. Every problem with the input is a
``KickError`` whose one line says what was expected and how to fix it, so a bad path fails before any model loads.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kick_checks.errors import KickError

TABLE_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
KNOWN_SPLITS = ("train", "validation", "val", "dev", "test")
# MMLU's "val" is Hugging Face's "validation"; "dev" stays apart because MMLU uses it for the few-shot examples.
SPLIT_ALIASES = {"val": ("val", "validation"), "validation": ("validation", "val")}


@dataclass(frozen=True)
class DatasetReader:
    """One published format a task reads: its name, what it looks like (for messages and ``--kick-data`` help),
    whether a path is in it, and how to read it into our rows (or, for text tasks, one string)."""

    name: str
    formats: str
    read: Callable[[Path], list[dict] | str]
    accepts: Callable[[Path], bool] = lambda path: True


def kick_jsonl_reader(
    data_name: str, fields: tuple[str, ...], check: Callable[[dict, str], None] | None = None
) -> DatasetReader:
    """Our own JSON-lines schema for ``data_name``: a ``.jsonl`` file whose first row has all of ``fields``.
    ``check`` may refuse a row (it gets the row and where it stands) with a ``KickError``."""
    expected = f"our {data_name} JSON lines with the keys {', '.join(fields)}"

    def accepts(path: Path) -> bool:
        first = first_json_row(path) if path.is_file() and path.suffix == ".jsonl" else None
        return first is not None and all(key in first for key in fields)

    def read(path: Path) -> list[dict]:
        rows = read_json_lines(path, expected)
        for number, row in enumerate(rows):
            where = f"{path} row {number}"
            for key in fields:
                field_of(row, key, where, expected)
            if check is not None:
                check(row, where)
        return nonempty(rows, path, expected)

    return DatasetReader("kick-checks JSONL", expected, read, accepts)


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
        from kick_checks.model.loading import default_cache_dir

        cache_dir = default_cache_dir()
    folder = Path(cache_dir) / "datasets" / (name.replace("/", "--") + (f"--{config}" if config else ""))
    if is_saved_dataset(folder):
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
    return existing_path(path, expected)


# ---------------------------------------------------------------------------------------------------------------
# Shared reading helpers


def existing_path(path: str | Path, expected: str) -> Path:
    """The path as a ``Path``, or a KickError that names the expected input when nothing is there."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise KickError(f"{path}: no such file or folder; give {expected}")
    return resolved


def is_blank_file(path: Path) -> bool:
    """Whether ``path`` is a file holding nothing but white space, read in chunks so a large file stops early.

    An empty file is in every format and none: without this check the last reader a task tries (often a format
    that accepts any file) reports it as malformed in that format, which sends the user looking for a syntax
    error in a file that is simply empty.
    """
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


def field_of(row: object, key: str, where: str, expected: str):
    """``row[key]``, or a KickError saying which key is missing, so a wrong file fails on its first bad row."""
    if not isinstance(row, dict) or key not in row:
        raise KickError(f"{where} lacks {key!r}: expected {expected}")
    return row[key]


def nonempty(rows: list, source: Path, expected: str) -> list:
    if not rows:
        raise KickError(f"{source} holds no items: expected {expected}")
    return rows


def unique_strings(values: Iterable[str]) -> list[str]:
    """Stripped, non-empty strings without repeats, first occurrence first (the first answer is the canonical one)."""
    seen: dict[str, None] = {}
    for value in values:
        text = str(value).strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def read_text(file: Path, expected: str) -> str:
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


def read_json_lines(file: Path, expected: str) -> list[dict]:
    return parse_json_lines(read_text(file, expected), file, expected)


def first_json_row(file: Path) -> dict | None:
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


def read_json_document(file: Path, expected: str) -> object:
    try:
        return json.loads(read_text(file, expected))
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


def table_files(path: Path, split: str, suffixes: tuple[str, ...], expected: str) -> list[Path]:
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


def is_saved_dataset(path: Path) -> bool:
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
        return list(csv.DictReader(io.StringIO(read_text(file, expected))))
    return read_json_lines(file, expected)


def read_table(path: Path, split: str, expected: str) -> list[dict]:
    """Rows of a Hugging Face dataset: a ``save_to_disk`` folder, or parquet / JSON-lines / CSV files of a split."""
    if is_saved_dataset(path):
        return _read_saved_dataset(path, split)
    rows: list[dict] = []
    for file in table_files(path, split, TABLE_SUFFIXES, expected):
        rows.extend(_read_table_file(file, expected))
    return rows


def sample_rows(rows: list, limit: int | None, seed: int = 0, source: str = "the task data") -> list:
    """``limit`` rows chosen at random with ``seed``, in their original order (all rows when ``limit`` is None or
    at least their number: ``--kick-limit`` is at most N items per task, and one ``[tool.kick] limit`` serves
    tasks of 32 and of 240 items).

    A random sample rather than the first rows, because benchmark files are sorted (MMLU by subject, MT-bench by
    category) and a prefix would measure one corner; the fixed seed keeps the dense baseline and the compressed
    run on the same items, and the original order keeps prompts and reports stable.
    """
    if limit is not None and limit < 1:
        raise KickError(f"--kick-limit {limit} is not a positive count of items of {source}: give at least 1, or "
                        "drop it")
    if limit is None or limit >= len(rows):
        return list(rows)
    chosen = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[index] for index in chosen]
