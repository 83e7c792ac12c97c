"""Prompt-lookup drafts: guesses of a sequence's next tokens, taken from where its last few tokens occurred before.

A summary copies phrases of its article, so the tokens that followed the last two or three generated tokens
where they stand in the article are a good guess of what comes next. The generation engine feeds such a guess
(a *draft*) together with the row's next token in one forward pass and keeps the longest part of the draft that
agrees with the model's own greedy choices, plus the model's next choice after it
(:func:`kick_checks.engine.continuous_batching.continuous_greedy`). Every kept token is one the model chose
greedily, so the answer is the one plain decoding gives; only the number of forward passes changes (on the
bundled summaries about half as many).

The lookup keeps, for every n-gram of the sequence (n from ``shortest`` to ``longest``), the position after its
latest occurrence, so a draft costs a dictionary lookup per n, not a scan of the prompt.
"""

from __future__ import annotations

LONGEST = 3
SHORTEST = 1


class PromptLookup:
    """The tokens of one sequence (prompt and generated so far) and where each of its n-grams last ended."""

    __slots__ = ("tokens", "_ends", "longest", "shortest")

    def __init__(self, tokens: list[int], longest: int = LONGEST, shortest: int = SHORTEST) -> None:
        if not 1 <= shortest <= longest:
            raise ValueError(f"n-gram lengths must satisfy 1 <= shortest <= longest, not {shortest}, {longest}")
        self.tokens: list[int] = []
        self.longest, self.shortest = longest, shortest
        self._ends: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        """Append ``tokens``; each n-gram ending before the new last token becomes findable."""
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens) - 2  # the n-grams ending here now have a continuation
            if end < 0:
                continue
            for n in range(self.shortest, min(self.longest, end + 1) + 1):
                self._ends[tuple(self.tokens[end - n + 1 : end + 1])] = end

    def draft(self, count: int) -> list[int]:
        """Up to ``count`` tokens that followed the latest earlier occurrence of the longest matching n-gram at
        the end of the sequence; empty when no suffix of ``shortest`` or more tokens occurred before."""
        if count <= 0:
            return []
        for n in range(min(self.longest, len(self.tokens)), self.shortest - 1, -1):
            end = self._ends.get(tuple(self.tokens[-n:]))
            if end is not None:
                return self.tokens[end + 1 : end + 1 + count]
        return []


def accepted(draft: list[int], choices: list[int]) -> int:
    """How many leading draft tokens the model confirms: ``choices[j]`` is its greedy choice after the row's
    next token and the first ``j`` draft tokens, so draft token ``j`` stands while it equals ``choices[j]``."""
    count = 0
    while count < len(draft) and draft[count] == choices[count]:
        count += 1
    return count
