"""kick-checks, on one card: what the repository holds, in the order data flows, and what its tests share.

    spec (options, [tool.kick])  ->  model  ->  compressor  ->  evaluation  ->  comparison  ->  report
    kick_checks/options.py          model/     compressors/    tasks/ engine/   gate/           report/
    kick_checks/settings.py                                   datasets/ judge/

- ``compressors/``: pruning and quantization methods, one module each behind one protocol; the spec they read.
  Stands alone: it imports nothing of ``kick_checks``.
- ``kick_checks/``: the gate. ``session.py`` conducts one run through the stages above; ``plugin.py`` is the thin
  pytest glue and ``cli.py`` the ``kick`` command.
- ``tests_kick/``: the LLM-KICK suite users run (``pytest -m kick``), one generated test per registered task.
- ``baselines/``: the dense results the suite compares against (shipped with the package).
- ``tests/``: our own tests (tiny models, fast); ``bench/``: benchmarks that print figures; ``docs/``: findings,
  performance, reliability; ``examples/``: a third-party pruner and a third-party task to copy from.

What every test tree here shares lives in this file: the real benchmark files kept beside the checkout
(``../shared/data``, never copied into the project), offered as the ``shared_data`` fixture that skips with the
reason when they are absent. ``tests/conftest.py`` holds the tiny models the unit tests use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: Real benchmark files in their published formats, beside the checkout (not part of the product).
SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """A function giving the path of a real benchmark file under ``../shared/data``, or skipping the test with
    the reason when that folder (or the file) is absent."""

    def path_of(relative: str) -> Path:
        path = SHARED_DATA / relative
        if not path.exists():
            pytest.skip(f"../shared/data is not present: {path} holds the real benchmark file for this check")
        return path

    return path_of
