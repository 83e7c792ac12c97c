"""What the judge is asked and how its reply is read: the grading prompts and the rating parser.

Pure functions of strings, tested on hand-made replies: the grading prompts for one answer, the last reply of a
conversation, and a summary (each against a reference when there is one), and :func:`parse_rating`, which finds
the 1-10 rating in a reply or says there is none.
"""

from __future__ import annotations

import re

_NUMBER = r"(\d+(?:\.\d+)?)"
#: ``[[7]]``, ``[[ 7.5 ]]``, ``[[7/10]]``: the form every judge prompt asks for.
_BRACKETED = re.compile(r"\[\[\s*" + _NUMBER + r"\s*(?:/\s*10\s*)?\]\]")
#: Fallbacks for judges that ignore the format: ``Rating: 7``, ``score of 8 out of 10``, ``Rating (1-10): 6``,
#: ``7/10``. The look-behind keeps ``12/10`` from reading as ``2/10``.
_FALLBACKS = (
    re.compile(r"\b(?:rating|score|grade|verdict)\b(?:\s*\([^)\n]{0,20}\))?[^\d\n]{0,12}?(?<![\d.\-])" + _NUMBER, re.I),
    re.compile(r"(?<![\d.\-])" + _NUMBER + r"\s*(?:/|out of)\s*10\b", re.I),
)

_RATING_INSTRUCTION = (
    "Explain your judgment in a few sentences. Then finish with your rating on a line of its own: a whole number "
    "from 1 (useless) to 10 (excellent) inside double square brackets, for example [[4]]."
)
_ANSWER_SYSTEM = (
    "You are an impartial grader of answers written by an AI assistant. Judge whether the answer is correct, "
    "whether it does what the user asked, and whether it is clear and as detailed as the question needs. Length "
    "is not a merit: do not reward padding or repetition."
)
_TURNS_SYSTEM = (
    "You are an impartial grader of an AI assistant in a conversation with a user. Grade only the assistant's "
    'last reply, the one marked graded="yes". The earlier turns are context: the last reply should build on them '
    "correctly and stay consistent with them. Judge whether it is correct, whether it does what the user asked in "
    "the last turn, and whether it is clear and as detailed as needed. Length is not a merit."
)
_ANSWER_REFERENCE_NOTE = (
    " A reference answer is included: take it as correct, check the assistant's answer against it, and mark down "
    "any result that contradicts it."
)
_SUMMARY_SYSTEM = (
    "You are an impartial grader of summaries. Judge the summary of the article on three things: fidelity (it "
    "states nothing the article does not support), coverage (it keeps the article's main points) and concision "
    "(it is short and does not repeat itself). An unfaithful summary is a poor one however well it reads."
)
_SUMMARY_REFERENCE_NOTE = (
    " A reference summary of the same article is included as a guide to what its main points are; the summary "
    "need not match its wording or length."
)
#: Marks the turn under grading in a multi-turn prompt.
_GRADED = ' graded="yes"'
RATING_REMINDER = (
    "Your reply did not end with a rating in the required form. Reply with the rating only: a whole number from 1 "
    "to 10 inside double square brackets, for example [[4]]."
)


def parse_rating(text: str) -> float | None:
    """The judge's rating in 1-10, or None when the reply holds none.

    The last ``[[N]]`` decides when there is one (judges sometimes quote the format or revise themselves before
    the end); an out-of-range last ``[[N]]`` means a broken reply, not a reason to guess from other numbers.
    Without it, the last ``Rating: N`` / ``N/10``-style phrase is used.
    """
    bracketed = _BRACKETED.findall(text)
    if bracketed:
        return _in_range(bracketed[-1])
    matches = [match for pattern in _FALLBACKS for match in pattern.finditer(text)]
    if not matches:
        return None
    return _in_range(max(matches, key=lambda match: match.start()).group(1))


def _in_range(number: str) -> float | None:
    value = float(number)
    return value if 1 <= value <= 10 else None


def _system_prompt(base: str, reference_note: str, has_reference: bool) -> str:
    return f"{base}{reference_note if has_reference else ''} {_RATING_INSTRUCTION}"


def _tagged(tag: str, text: str) -> str:
    return f"<{tag}>\n{text}\n</{tag}>"


def _graded_messages(
    system: str,
    reference_note: str,
    context: tuple[str, str],
    reference: tuple[str, str | None],
    graded: tuple[str, str],
) -> list[dict[str, str]]:
    """System prompt, then the context, the reference (when there is one) and the text to grade, each tagged."""
    reference_tag, reference_text = reference
    parts = [_tagged(*context)]
    if reference_text is not None:
        parts.append(_tagged(reference_tag, reference_text))
    parts.append(_tagged(*graded))
    return [
        {"role": "system", "content": _system_prompt(system, reference_note, reference_text is not None)},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def answer_messages(question: str, answer: str, reference: str | None = None) -> list[dict[str, str]]:
    """Chat messages asking for a 1-10 grade of one answer, against a reference answer when there is one."""
    return _graded_messages(_ANSWER_SYSTEM, _ANSWER_REFERENCE_NOTE, ("question", question),
                            ("reference_answer", reference), ("answer", answer))


def turns_messages(turns: list[str], answers: list[str], references: list[str] | None = None) -> list[dict[str, str]]:
    """Chat messages asking for a grade of the last reply in a conversation, earlier turns shown as context."""
    if not turns or len(turns) != len(answers):
        raise ValueError(
            f"need one answer per turn and at least one turn, got {len(turns)} turns, {len(answers)} answers"
        )
    if references is not None and len(references) != len(turns):
        raise ValueError(f"need one reference per turn, got {len(references)} for {len(turns)} turns")
    parts = [
        f'<turn number="{number}"{_GRADED if number == len(turns) else ""}>\n'
        f"<user>\n{turn}\n</user>\n<assistant>\n{answer}\n</assistant>\n</turn>"
        for number, (turn, answer) in enumerate(zip(turns, answers), start=1)
    ]
    if references is not None:
        parts += [
            f'<reference_answer turn="{number}">\n{reference}\n</reference_answer>'
            for number, reference in enumerate(references, start=1)
        ]
    system = _system_prompt(_TURNS_SYSTEM, _ANSWER_REFERENCE_NOTE, references is not None)
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def summary_messages(article: str, summary: str, reference: str | None = None) -> list[dict[str, str]]:
    """Chat messages asking for a grade of a summary's fidelity, coverage and concision."""
    return _graded_messages(_SUMMARY_SYSTEM, _SUMMARY_REFERENCE_NOTE, ("article", article),
                            ("reference_summary", reference), ("summary", summary))
