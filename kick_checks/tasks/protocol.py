"""What a task is: the base class every LLM-KICK task implements, and the values it produces.

A task is data plus a scorer. It declares, as class attributes, everything the rest of kick-checks needs to know
about it, so that no other module tests a task's name:

- ``name``: the registry name (``factoid_qa``); with ``variants`` (``("closed_book", "open_book")``) each variant is
  its own test and baseline, keyed ``name.variant``;
- ``data_name``: what ``--kick-data NAME=PATH`` calls its data (defaults to ``name``; variants share it);
- ``required_fields`` of a data row, ``bundled_file`` (the set we ship), and ``readers``: the published formats
  (:class:`~kick_checks.datasets.common.DatasetReader`) a user's file may come in, tried in order;
- ``metric``: a :class:`Metric` saying how per-item scores aggregate and which direction is a loss;
- ``tags`` (``"knowledge"`` marks the closed-book knowledge tasks that recovery and sweep plots look at) and
  ``marks`` (pytest marks its generated test carries, e.g. ``"judge"`` for a judge-only task);
- ``recovery_pool``: the bundled held-out file whose items knowledge recovery (:mod:`kick_checks.recovery`) may
  show as demonstrations, never one of the evaluated items; empty for a task recovery does not support.

``run(model, tokenizer, options)`` evaluates the model and returns a :class:`TaskResult`: one
:class:`ItemOutcome` per item plus the fingerprint of what produced it (data hash, prompt version, decoding,
scorer), which the dense baseline must match. Scoring functions are pure and tested on hand-made strings.

A new task is one module with a ``Task`` subclass and one line in :data:`kick_checks.tasks.BUILTIN_TASKS`, or,
from another package, an entry point in the group ``kick_checks.tasks`` (see the README, "Adding a task").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from kick_checks.datasets.common import DatasetReader
from kick_checks.errors import KickError


@dataclass(frozen=True)
class Metric:
    """How a task's per-item scores become its score, and which way is a loss.

    ``statistic`` is ``mean`` (accuracy, exact match, ROUGE, ratings) or ``exp_mean`` (perplexity: exp of the
    mean per-window negative log-likelihood). A change is judged by the paired test the scores call for (McNemar
    on 0/1 scores of a higher-is-better mean, a paired bootstrap of this statistic otherwise) and against the
    tolerance in the direction ``higher_is_better`` says.
    """

    name: str
    higher_is_better: bool = True
    statistic: Literal["mean", "exp_mean"] = "mean"

    def aggregate(self, scores: list[float]) -> float:
        if not scores:
            return 0.0
        mean = sum(scores) / len(scores)
        return math.exp(mean) if self.statistic == "exp_mean" else mean

    def to_dict(self) -> dict:
        return {"name": self.name, "higher_is_better": self.higher_is_better, "statistic": self.statistic}


EXACT_MATCH = Metric("exact_match")
ACCURACY = Metric("accuracy")
ROUGE_L = Metric("rougeL")
JUDGE_SCORE = Metric("judge_score")
PERPLEXITY = Metric("perplexity", higher_is_better=False, statistic="exp_mean")
KNOWN_METRICS = {metric.name: metric for metric in (EXACT_MATCH, ACCURACY, ROUGE_L, JUDGE_SCORE, PERPLEXITY)}


def metric_from(description: str | dict) -> Metric:
    """A metric as a report or baseline file stores it: its name alone (ours), or the full description."""
    if isinstance(description, dict):
        return Metric(str(description["name"]), bool(description.get("higher_is_better", True)),
                      description.get("statistic", "mean"))
    return KNOWN_METRICS.get(str(description), Metric(str(description)))


class TaskSkipped(Exception):
    """The task cannot run in this configuration (e.g. it needs a judge); the message says what would enable it."""


@dataclass(frozen=True)
class TaskOptions:
    """What a run tells every task: where its data is, how much of it, and the scorers it may use."""

    data_path: Path | None = None
    limit: int | None = None
    limit_seed: int = 0
    judge: object | None = None  # a kick_checks.judge.Judge when --kick-judge-model is set
    ppl_seqlen: int | None = None
    batch_size: int | str | None = None  # --kick-batch-size: a number, "auto", or None for the task default
    backend: object | None = None  # --kick-backend: a kick_checks.engine.backend.Backend; None for transformers

    def evaluation_backend(self):
        """What computes this run's generations and likelihoods (:mod:`kick_checks.engine.backend`)."""
        if self.backend is not None:
            return self.backend
        from kick_checks.engine.backend import TRANSFORMERS

        return TRANSFORMERS


@dataclass(frozen=True)
class ItemOutcome:
    """One item's score (1.0/0.0 for exact match) and what the model produced; ``question`` and ``gold`` (the
    expected answer) are kept in reports so that a comparison can show what an item asked."""

    id: str
    score: float
    prediction: str
    category: str = ""
    question: str = ""
    gold: str = ""


@dataclass
class TaskResult:
    """The outcome of one task on one model: the aggregate, every item, and what produced it."""

    task: str
    metric: Metric
    items: list[ItemOutcome]
    fingerprint: dict = field(default_factory=dict)
    seconds: float = 0.0
    problems: dict[str, int] = field(default_factory=dict)  # e.g. judgments that gave no score

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def score(self) -> float:
        return self.metric.aggregate([item.score for item in self.items])

    @property
    def higher_is_better(self) -> bool:
        return self.metric.higher_is_better

    def by_id(self) -> dict[str, ItemOutcome]:
        return {item.id: item for item in self.items}

    def non_finite(self) -> ItemOutcome | None:
        """The first item whose score is NaN or infinite (a broken model or scorer), if any."""
        return next((item for item in self.items if not math.isfinite(item.score)), None)

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "metric": self.metric.name,
            "higher_is_better": self.metric.higher_is_better,
            "statistic": self.metric.statistic,
            "score": self.score,
            "n": self.n,
            "seconds": round(self.seconds, 2),
            "problems": self.problems,
            "fingerprint": self.fingerprint,
            "items": [asdict(item) for item in self.items],
        }


class Task:
    """Base class of every task; see the module docstring for what a subclass declares.

    Subclasses set the class attributes and implement :meth:`run`. A task with ``variants`` is instantiated once
    per variant (``RetrievalQA("open_book")``); the instance's :attr:`key` names its test, baseline and result.
    """

    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]] = ()
    data_name: ClassVar[str] = ""
    required_fields: ClassVar[tuple[str, ...]] = ()
    bundled_file: ClassVar[str] = ""
    bundled_package: ClassVar[str] = "kick_checks.data"
    readers: ClassVar[tuple[DatasetReader, ...]] = ()
    metric: ClassVar[Metric]
    tags: ClassVar[tuple[str, ...]] = ()
    marks: ClassVar[tuple[str, ...]] = ()
    recovery_pool: ClassVar[str] = ""

    def __init__(self, variant: str | None = None) -> None:
        if self.variants and variant not in self.variants:
            raise KickError(f"task {self.name} has the variants {', '.join(self.variants)}, not {variant!r}")
        if not self.variants and variant is not None:
            raise KickError(f"task {self.name} has no variants, so {self.name}.{variant} is unknown")
        self.variant = variant

    @property
    def key(self) -> str:
        return f"{self.name}.{self.variant}" if self.variant else self.name

    @classmethod
    def data_key(cls) -> str:
        """The ``--kick-data`` name of this task's data."""
        return cls.data_name or cls.name

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        raise NotImplementedError

    def expected_fingerprint(self, options: TaskOptions) -> dict:
        """The fingerprint fields this run will produce that are known before any model runs (data hash, prompt
        version, scorer), so a mismatched baseline fails at session start. A task that cannot tell returns {}:
        its baseline is then checked once the task has run."""
        return {}

    def __repr__(self) -> str:
        return f"<task {self.key}>"
