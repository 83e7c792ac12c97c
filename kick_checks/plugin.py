"""The pytest plugin: ``--kick-*`` options, the ``kick`` marker, session fixtures and hooks.

Loaded through the ``pytest11`` entry point wherever kick-checks is installed. ``pytest -m kick`` also
collects the installed LLM-KICK suite (``tests_kick``) when no test paths are given, so a project that
installs kick-checks gets the suite without copying it. The options are declared in :mod:`kick_checks.options`,
the work happens in :mod:`kick_checks.session`, and the summary is written by :mod:`kick_checks.report.terminal`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from compressors.progress import set_line_sink
from kick_checks.errors import KickError
from kick_checks.options import add_pytest_options, getoption_values
from kick_checks.report.terminal import WORKER_OUTPUT_KEY, read_worker_output, worker_output, write_summary
from kick_checks.session import KickSession
from kick_checks.settings import RunSettings, build_settings, read_tool_config
from kick_checks.tasks import TaskSkipped

_SETTINGS = pytest.StashKey[RunSettings]()
_SESSION = pytest.StashKey[KickSession]()
_ROOT = pytest.StashKey[Path]()
_WORKER_SUMMARIES = pytest.StashKey[list]()
_PREVIOUS_SINK = pytest.StashKey[object]()
#: The parameter of a test that names the task it checks (the generated suite's), read at collection so the
#: baselines of the selected tests are checked before any model work.
TASK_PARAMETER = "kick_task_key"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser.getgroup("kick", "kick-checks: LLM compression gate (LLM-KICK tasks)"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kick: an LLM-KICK check of the compressed model against a dense baseline")
    config.addinivalue_line("markers", "judge: a kick check scored only by an LLM judge (skipped without one)")
    try:
        pyproject = find_pyproject(config)
        config.stash[_ROOT] = pyproject.parent if pyproject is not None else config.rootpath
        tool_config = read_tool_config(pyproject)
        config.stash[_SETTINGS] = build_settings(getoption_values(config.getoption), tool_config, config.stash[_ROOT])
    except KickError as error:
        raise pytest.UsageError(str(error)) from None
    _add_installed_suite(config)
    _quiet_idle_threads(config)
    config.stash[_PREVIOUS_SINK] = set_line_sink(_terminal_line_sink(config))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PREVIOUS_SINK in config.stash:
        set_line_sink(config.stash[_PREVIOUS_SINK])


def _terminal_line_sink(config: pytest.Config):
    """Plain progress lines through pytest's terminal writer, past output capture, so CI logs show them. Each is
    flushed: off a terminal the writer's output is block-buffered, and a line would reach the log only when the
    buffer fills or the test ends, minutes late."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
                reporter.flush()
        else:
            reporter.write_line(line)
            reporter.flush()

    return write


def _quiet_idle_threads(config: pytest.Config) -> None:
    """Under pytest-xdist, let idle OpenMP threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``, unless
    the user set it). Each worker keeps torch's full thread count, so results are those of ``-n 0``; without
    this, two workers spinning on two cores ran the main job in 481 s instead of 81 s. Set on the controller
    before the workers start, so they inherit it."""
    workers = config.getoption("numprocesses", None) if not hasattr(config, "workerinput") else None
    if workers not in (None, 0, "0"):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def find_pyproject(config: pytest.Config) -> Path | None:
    """The pyproject.toml holding ``[tool.kick]``: pytest's own if it is one, else the nearest one above
    the invocation directory, else the rootdir's."""
    if config.inipath is not None and config.inipath.name == "pyproject.toml":
        return config.inipath
    start = Path(config.invocation_params.dir).resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder / "pyproject.toml"
    candidate = config.rootpath / "pyproject.toml"
    return candidate if candidate.is_file() else None


def _add_installed_suite(config: pytest.Config) -> None:
    """Collect the installed ``tests_kick`` when ``-m`` selects kick tests and no paths were given."""
    if "kick" not in (config.option.markexpr or "") or config.args_source == pytest.Config.ArgsSource.ARGS:
        return
    import tests_kick

    suite = Path(tests_kick.__file__).parent.resolve()
    for argument in config.args:
        path = Path(argument.split("::")[0]).resolve()
        if path == suite or path in suite.parents:
            return
    config.args.append(str(suite))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before any kick test runs, check the model, the spec and every baseline the selected tests compare
    against, so bad input is one line in a second, not N failures after the evaluation."""
    kick_items = [item for item in session.items if item.get_closest_marker("kick")]
    if not kick_items:
        return
    task_keys = [item.callspec.params[TASK_PARAMETER] for item in kick_items
                 if TASK_PARAMETER in getattr(getattr(item, "callspec", None), "params", {})]
    try:
        kick = KickSession(session.config.stash[_SETTINGS], session.config.stash[_ROOT])
        kick.prepare(task_keys)
    except KickError as error:
        raise pytest.UsageError(str(error)) from None
    session.config.stash[_SESSION] = kick


@pytest.fixture(scope="session")
def kick_session(request: pytest.FixtureRequest) -> KickSession:
    """The session's kick run: the model under test, compressed once, and its task results."""
    config = request.config
    if _SESSION not in config.stash:
        try:
            config.stash[_SESSION] = KickSession(config.stash[_SETTINGS], config.stash[_ROOT])
        except KickError as error:
            # ``from None``: the error is the message; chained, pytest would print it twice around "During handling"
            raise pytest.fail.Exception(str(error), pytrace=False) from None
    return config.stash[_SESSION]


@pytest.fixture
def kick_check(kick_session: KickSession, request: pytest.FixtureRequest):
    """Check one task: ``kick_check("factoid_qa")`` fails the test when the compressed model lost too much.

    In ``--kick-update-baselines`` mode it records the dense result instead. The scores are attached to the
    test as properties, so they appear in JUnit XML (``--junitxml``). Returns the outcome (a comparison or the
    recorded baseline).
    """

    def check(task_key: str):
        try:
            outcome = kick_session.check(task_key)
        except TaskSkipped as reason:
            pytest.skip(str(reason))
        except KickError as error:
            raise pytest.fail.Exception(str(error), pytrace=False) from None
        request.node.user_properties.extend(outcome.junit_properties())
        if not outcome.passed:
            pytest.fail(outcome.failure_message(), pytrace=False)
        return outcome

    return check


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand this worker's kick summary to the controller."""
    config = session.config
    kick = config.stash.get(_SESSION, None)
    if hasattr(config, "workeroutput") and kick is not None and kick.outcomes:
        config.workeroutput[WORKER_OUTPUT_KEY] = worker_output(kick)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """On the xdist controller, collect each worker's kick summary."""
    summary = read_worker_output(getattr(node, "workeroutput", {}))
    if summary:
        node.config.stash.setdefault(_WORKER_SUMMARIES, []).append(summary)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    from kick_checks.report.terminal import session_summary

    summaries = list(config.stash.get(_WORKER_SUMMARIES, []))
    session = config.stash.get(_SESSION, None)
    if session is not None and session.outcomes:
        summaries.append(session_summary(session))
    settings = config.stash.get(_SETTINGS, None)
    write_summary(terminalreporter, summaries, settings.json_report if settings else None,
                  settings.markdown_report if settings else None)


logging.getLogger("kick_checks").setLevel(logging.INFO)
