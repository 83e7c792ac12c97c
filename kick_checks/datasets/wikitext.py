"""WikiText-2 (the perplexity text): the raw release and the Hugging Face layout, read as one string."""

from __future__ import annotations

from pathlib import Path

from kick_checks.datasets.common import TABLE_SUFFIXES, DatasetReader, existing_path, field_of, read_table, read_text
from kick_checks.errors import KickError

WIKITEXT_FORMAT = "a WikiText-2 raw file (wiki.test.raw) or a Hugging Face wikitext dataset (column text)"


def load_wikitext2(path: str | Path, split: str = "test") -> str:
    """WikiText-2 as one string, from a raw file (``wiki.test.raw``, or its folder) or the Hugging Face layout.

    A raw file is read with universal newlines, so CRLF copies give the same text as LF ones. Hugging Face's
    ``wikitext`` rows are the raw file's lines (blank lines as ""); we take each row as one line: its trailing
    newline removed, rows joined with "\\n". That keeps the article and paragraph breaks where they were.
    """
    source = existing_path(path, WIKITEXT_FORMAT)
    # The raw release names its validation split "valid": wiki.train.raw, wiki.valid.raw, wiki.test.raw.
    raw_file = source / f"wiki.{'valid' if split in ('val', 'validation') else split}.raw"
    if raw_file.is_file():
        source = raw_file
    if source.is_file() and source.suffix not in TABLE_SUFFIXES:
        text = read_text(source, WIKITEXT_FORMAT)
    else:
        rows = read_table(source, split, WIKITEXT_FORMAT)
        lines = [str(field_of(row, "text", f"{source} row {index}", WIKITEXT_FORMAT)) for index, row in enumerate(rows)]
        text = "\n".join(line.removesuffix("\n") for line in lines)
    if not text.strip():
        raise KickError(f"{source} holds no text: expected {WIKITEXT_FORMAT}")
    return text


READER = DatasetReader("WikiText-2", WIKITEXT_FORMAT, load_wikitext2)
