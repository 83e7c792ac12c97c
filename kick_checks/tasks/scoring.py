"""Answer scoring, pure functions on strings.

Unlike the LLM-KICK reference code, a prediction is only the text the model generated (never the prompt,
so an answer that already stands in the prompt earns nothing), and an empty prediction never matches.
"""

from __future__ import annotations

import re
import string
import unicodedata

_PUNCTUATION = set(string.punctuation) | {"‘", "’", "´", "`", "“", "”", "–", "—"}
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """TriviaQA normalization: lower case, underscores and punctuation to spaces, no articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower().replace("_", " ")
    text = "".join(" " if char in _PUNCTUATION else char for char in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def first_answer_line(generated: str) -> str:
    """The answer part of a generated continuation: its first non-empty line, stripped."""
    for line in generated.splitlines():
        if line.strip():
            return line.strip()
    return ""


def exact_match(prediction: str, answers: list[str]) -> bool:
    """True when the normalized prediction equals any normalized alias; empty never matches."""
    predicted = normalize_answer(prediction)
    if not predicted:
        return False
    return any(predicted == normalize_answer(alias) for alias in answers if normalize_answer(alias))


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of a generated text against a reference (stemmed); an empty prediction scores 0."""
    from rouge_score import rouge_scorer

    if not prediction.strip():
        return 0.0
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference, prediction)["rougeL"].fmeasure
