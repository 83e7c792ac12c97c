"""Readers for the real LLM-KICK benchmarks in their published formats, one module per benchmark.

The bundled sets are small and written for a 135M model; a user who wants the real FreebaseQA, TriviaQA, MMLU,
CNN/DailyMail, MT-bench or WikiText-2 should not have to convert them first. Each module reads one benchmark's
published layout (and, where it exists, the Hugging Face layout), returns the same rows as our JSONL files, and
defines the :class:`~kick_checks.datasets.common.DatasetReader` that tasks name in their ``readers``.
"""

from kick_checks.datasets.cnn_dailymail import load_cnn_dailymail
from kick_checks.datasets.common import DatasetReader, kick_jsonl_reader, resolve_data_source, sample_rows
from kick_checks.datasets.freebaseqa import load_freebaseqa
from kick_checks.datasets.mmlu import load_mmlu
from kick_checks.datasets.mt_bench import load_conversations, load_mt_bench, load_vicuna_bench
from kick_checks.datasets.triviaqa import load_triviaqa
from kick_checks.datasets.wikitext import load_wikitext2

__all__ = [
    "DatasetReader",
    "kick_jsonl_reader",
    "load_cnn_dailymail",
    "load_conversations",
    "load_freebaseqa",
    "load_mmlu",
    "load_mt_bench",
    "load_triviaqa",
    "load_vicuna_bench",
    "load_wikitext2",
    "resolve_data_source",
    "sample_rows",
]
