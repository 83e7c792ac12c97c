"""In-context retrieval: the same questions closed book and open book (evidence passage in the prompt)."""

import pytest

pytestmark = pytest.mark.kick


@pytest.mark.parametrize("variant", ["closed_book", "open_book"])
def test_retrieval_qa(kick_check, variant):
    kick_check(f"retrieval_qa.{variant}")
