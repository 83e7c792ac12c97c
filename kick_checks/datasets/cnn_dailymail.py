"""CNN/DailyMail (LLM-KICK's in-context summarization): ``.story`` files and the Hugging Face layout.

Rows: ``{"id", "article", "summary"}``, the summary being the highlights as sentences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from kick_checks.datasets.common import (
    DatasetReader,
    existing_path,
    field_of,
    is_saved_dataset,
    nonempty,
    read_table,
    read_text,
)
from kick_checks.errors import KickError

CNN_DAILYMAIL_FORMAT = (
    "CNN/DailyMail .story files (article, then @highlight blocks) or a Hugging Face cnn_dailymail dataset "
    "(columns id, article, highlights)"
)


def load_cnn_dailymail(path: str | Path, split: str = "test") -> list[dict]:
    """CNN/DailyMail as ``{"id", "article", "summary"}`` rows.

    From ``.story`` files (a folder of them, or one; id = file stem) or the Hugging Face layout (``id``,
    ``article``, ``highlights``). The article is kept as written, only trimmed, including the "(CNN) --" lead.
    The summary is the highlights as sentences: each highlight ends with a full stop (added when it has no
    closing punctuation) and they are joined by spaces, so both layouts give one plain paragraph.
    """
    source = existing_path(path, CNN_DAILYMAIL_FORMAT)
    if source.is_file() and source.suffix == ".story":
        rows = [_read_story(source)]
    elif source.is_dir() and not is_saved_dataset(source) and next(source.glob("*.story"), None) is not None:
        rows = [_read_story(file) for file in sorted(source.glob("*.story"))]
    else:
        rows = []
        for number, record in enumerate(read_table(source, split, CNN_DAILYMAIL_FORMAT)):
            where = f"{source} row {number}"
            highlights = str(field_of(record, "highlights", where, CNN_DAILYMAIL_FORMAT)).splitlines()
            rows.append(
                {
                    "id": str(field_of(record, "id", where, CNN_DAILYMAIL_FORMAT)),
                    "article": str(field_of(record, "article", where, CNN_DAILYMAIL_FORMAT)).strip(),
                    "summary": _as_sentences(highlights),
                }
            )
    return nonempty(rows, source, CNN_DAILYMAIL_FORMAT)


def _read_story(file: Path) -> dict:
    text = read_text(file, CNN_DAILYMAIL_FORMAT)
    article, *highlight_blocks = re.split(r"^@highlight[ \t]*$", text, flags=re.MULTILINE)
    summary = _as_sentences(highlight_blocks)
    if not article.strip() or not summary:
        raise KickError(f"{file} lacks an article or @highlight lines: expected {CNN_DAILYMAIL_FORMAT}")
    return {"id": file.stem, "article": article.strip(), "summary": summary}


def _as_sentences(highlights: Iterable[str]) -> str:
    sentences = [" ".join(highlight.split()) for highlight in highlights]
    closed = (sentence if sentence.endswith((".", "!", "?")) else f"{sentence}." for sentence in sentences if sentence)
    return " ".join(closed)


READER = DatasetReader("CNN/DailyMail", CNN_DAILYMAIL_FORMAT, load_cnn_dailymail)
