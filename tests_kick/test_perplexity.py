"""Perplexity beside the tasks: lower is better, and the gate fails on a relative rise beyond the tolerance."""

import pytest

pytestmark = pytest.mark.kick


def test_perplexity(kick_check):
    kick_check("perplexity")
