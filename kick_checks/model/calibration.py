"""Calibration tokens: seeded random windows of the bundled (or a user's) calibration text."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from kick_checks.errors import KickError

BUNDLED_CALIBRATION = "calibration.txt"


def calibration_text(path: str | Path | None = None) -> str:
    """The bundled calibration text (written for this project), or a user's plain-text file."""
    if path is None:
        return resources.files("kick_checks.data").joinpath(BUNDLED_CALIBRATION).read_text(encoding="utf-8")
    file = Path(path).expanduser()
    if not file.is_file():
        raise KickError(f"--kick-calib-data {path}: no such file; give a UTF-8 plain-text file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KickError(f"--kick-calib-data {path}: not UTF-8 text; give a UTF-8 plain-text file") from None


def calibration_tokens(tokenizer, samples: int, seqlen: int, seed: int, text: str | None = None) -> torch.Tensor:
    """``[samples, seqlen]`` token ids: windows of the text starting at seeded random offsets.

    Windows may overlap when the text is short compared to ``samples * seqlen``; the text must hold at
    least one full window.
    """
    text = calibration_text() if text is None else text
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    if len(ids) < seqlen:
        raise KickError(
            f"the calibration text has {len(ids)} tokens, fewer than --kick-calib-seqlen {seqlen}: "
            "lower --kick-calib-seqlen or give a longer --kick-calib-data file"
        )
    tokens = torch.tensor(ids, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - seqlen + 1, (samples,), generator=generator)
    return torch.stack([tokens[start : start + seqlen] for start in starts.tolist()])
