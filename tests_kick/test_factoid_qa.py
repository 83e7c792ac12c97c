"""Knowledge: closed-book factoid questions, exact match on answer aliases."""

import pytest

pytestmark = pytest.mark.kick


def test_factoid_qa(kick_check):
    kick_check("factoid_qa")
