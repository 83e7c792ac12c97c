"""The LLM-KICK checks: one test per registered task, each variant its own (``test_task[retrieval_qa.open_book]``).

Generated from the task registry, so a task added to kick-checks, or declared by an installed package under the
``kick_checks.tasks`` entry points, is checked here with nothing else to edit. Select with ``-k``, e.g.
``pytest -m kick -k "factoid_qa or retrieval_qa"``; tasks scored only by a judge carry the ``judge`` mark.
"""

import pytest

from kick_checks.plugin import TASK_PARAMETER
from kick_checks.tasks import all_tasks

pytestmark = pytest.mark.kick


def pytest_generate_tests(metafunc):
    """Read the registry when the suite is collected, not when the module is imported, so a task installed
    after this module was first imported (a plug-in, or a test that installs one) is still checked."""
    if TASK_PARAMETER in metafunc.fixturenames:
        metafunc.parametrize(TASK_PARAMETER, [
            pytest.param(task.key, id=task.key, marks=[getattr(pytest.mark, mark) for mark in task.marks])
            for task in all_tasks().values()
        ])


def test_task(kick_check, kick_task_key):
    kick_check(kick_task_key)
