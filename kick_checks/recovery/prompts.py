"""The curated recovery prompts: the fixed one of the ``prompt`` strategy and the pool ``idp`` chooses from.

Every prompt is an instruction and worked demonstrations drawn from the task's held-out pool
(:mod:`kick_checks.recovery.pools`), laid out exactly as the task lays out its own shots, so that only what the
model is reminded of changes, never the format it answers in.

- The fixed prompt (``general``) states the kind of answer wanted and shows ``k`` demonstrations spread over the
  pool's categories (short-answer QA) or drawn from the item's subject (multiple choice).
- The dynamic pool adds, for short-answer QA, one topical prompt per pool category (its own instruction and the
  category's demonstrations: a question about rivers may be answered better after questions about places); for
  multiple choice, a prompt of demonstrations from every subject and a zero-shot instruction. It also holds the
  task's own prompt, so that a per-input choice can keep it where nothing else fits better.
"""

from __future__ import annotations

from kick_checks.recovery.forms import Prompt, demo_of
from kick_checks.recovery.pools import Pool

#: Demonstrations per prompt (the task's own prompts use 3 short-answer shots and 5 multiple-choice ones).
DEFAULT_SHOTS = {"short_answer": 5, "choice": 4}
PROMPT_VERSION = "recovery-prompts-1"

GENERAL_QA = "Answer each question from memory with its short answer: a name, a place, a number or a few words."
#: Instructions of the topical short-answer prompts, for the categories of our pool; another pool's categories
#: get :data:`TOPIC_QA_DEFAULT`.
TOPIC_QA = {
    "geography": "Answer each question about places (countries, capitals, rivers and seas) with a short answer.",
    "science": "Answer each science question (the planets, the elements, the human body, how things work) with a "
               "short answer.",
    "nature": "Answer each question about animals and plants with a short answer.",
    "history": "Answer each question about history and famous people with a short answer: a name, a year or a few "
               "words.",
    "culture": "Answer each question about books, art, music, sport and everyday life with a short answer.",
}
TOPIC_QA_DEFAULT = "Answer each question about {category} with a short answer."


def _spread(rows: list[dict], key: str, count: int) -> list[dict]:
    """``count`` rows taking the categories in turn (the first of each, then the second...), in file order."""
    by_category: dict[str, list[dict]] = {}
    for row in rows:
        by_category.setdefault(str(row.get(key) or ""), []).append(row)
    chosen: list[dict] = []
    depth = 0
    while len(chosen) < min(count, len(rows)):
        for members in by_category.values():
            if depth < len(members) and len(chosen) < count:
                chosen.append(members[depth])
        depth += 1
    return chosen


def short_answer_prompts(pool: Pool, shots: int | None = None) -> list[Prompt]:
    """The fixed prompt first, then one topical prompt per pool category."""
    shots = shots or DEFAULT_SHOTS["short_answer"]
    general = Prompt("general", GENERAL_QA + "\n\n",
                     tuple(demo_of(row, "short_answer") for row in _spread(pool.rows, "category", shots)))
    topical = []
    for category in pool.categories():
        members = [row for row in pool.rows if row.get("category") == category][:shots]
        instruction = TOPIC_QA.get(category, TOPIC_QA_DEFAULT.format(category=category.replace("_", " ")))
        topical.append(Prompt(f"topic:{category}", instruction + "\n\n",
                              tuple(demo_of(row, "short_answer") for row in members)))
    return [general, *topical]


def choice_prompts(pool: Pool, subject: str, shots: int | None = None) -> list[Prompt]:
    """For one subject: the fixed prompt (demonstrations of that subject, else of every subject), then one of
    every subject's demonstrations and a zero-shot instruction."""
    shots = shots or DEFAULT_SHOTS["choice"]
    topic = subject.replace("_", " ")
    own = [row for row in pool.rows if row.get("subject") == subject][:shots]
    mixed = _spread(pool.rows, "subject", shots)
    general = Prompt("general", f"The following are questions about {topic}, each followed by its correct "
                     "answer.\n\n", tuple(demo_of(row, "choice") for row in (own or mixed)))
    across = Prompt("mixed", "The following are general knowledge questions, each followed by its correct "
                    "answer.\n\n", tuple(demo_of(row, "choice") for row in mixed))
    zero = Prompt("zero-shot", f"Read each question about {topic} carefully and give the correct answer.\n\n")
    return [general, across, zero]
