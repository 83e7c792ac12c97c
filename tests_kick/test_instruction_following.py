"""Instruction following over two-turn conversations, graded by an LLM judge (skipped without one)."""

import pytest

pytestmark = [pytest.mark.kick, pytest.mark.judge]


def test_instruction_following(kick_check):
    kick_check("instruction_following")
