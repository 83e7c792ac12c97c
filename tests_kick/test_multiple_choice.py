"""Multiple-choice reasoning QA (MMLU-style), scored by option likelihood, k-shot."""

import pytest

pytestmark = pytest.mark.kick


def test_multiple_choice(kick_check):
    kick_check("multiple_choice")
