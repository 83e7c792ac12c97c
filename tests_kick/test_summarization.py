"""In-context summarization: judged against the reference, or ROUGE-L without a judge."""

import pytest

pytestmark = pytest.mark.kick


def test_summarization(kick_check):
    kick_check("summarization")
