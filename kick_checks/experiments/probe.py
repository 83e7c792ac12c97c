"""The fixed probe every run is measured on: a few short windows of held-out text, the same tokens every time.

Throughput and divergence both need inputs that do not change between runs (or the figures of two runs would not
be comparable) and that are cheap (they are computed in every run). Four windows of 64 tokens of the bundled
perplexity text are both; the text is not the calibration text, so divergence is not measured on what the
compressor was fitted to.
"""

from __future__ import annotations

from importlib import resources

import torch

PROMPTS = 4
TOKENS = 64
#: Greedy tokens decoded per prompt for the decoding throughput.
NEW_TOKENS = 8
PROBE_FILE = "perplexity.txt"


def probe_ids(tokenizer, prompts: int = PROMPTS, tokens: int = TOKENS) -> torch.Tensor:
    """``[prompts, tokens]`` token ids: windows spread evenly over the text, each starting with the BOS token
    when the tokenizer has one (as a real prompt does)."""
    text = resources.files("kick_checks.data").joinpath(PROBE_FILE).read_text("utf-8")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    body = tokens - (1 if bos is not None else 0)
    if len(ids) < body:
        raise ValueError(f"the probe text has {len(ids)} tokens, fewer than one window of {body}")
    span = len(ids) - body
    rows = []
    for index in range(prompts):
        start = span * index // max(prompts - 1, 1)
        window = ids[start:start + body]
        rows.append(([bos] if bos is not None else []) + window)
    return torch.tensor(rows, dtype=torch.long)
