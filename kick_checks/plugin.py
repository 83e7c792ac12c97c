"""The pytest plugin: ``--kick-*`` options, the ``kick`` marker, session fixtures and the summary.

Loaded through the ``pytest11`` entry point wherever kick-checks is installed. ``pytest -m kick`` also
collects the installed LLM-KICK suite (``tests_kick``) when no test paths are given, so a project that
installs kick-checks gets the suite without copying it. The work itself lives in :mod:`kick_checks.session`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from kick_checks.comparison import Comparison
from kick_checks.errors import KickError
from kick_checks.models import DEFAULT_MODEL
from kick_checks.reports import merged_document, run_document, write_reports
from kick_checks.session import KickSession, Recorded
from kick_checks.settings import RunSettings, build_settings, read_tool_config
from kick_checks.tasks import TaskSkipped

_SETTINGS = pytest.StashKey[RunSettings]()
_SESSION = pytest.StashKey[KickSession]()
_ROOT = pytest.StashKey[Path]()
_WORKER_SUMMARIES = pytest.StashKey[list]()
_OPTIONS = {
    "model": "kick_model",
    "dtype": "kick_dtype",
    "device": "kick_device",
    "sparsity": "kick_sparsity",
    "method": "kick_method",
    "pattern": "kick_pattern",
    "calib_samples": "kick_calib_samples",
    "calib_seqlen": "kick_calib_seqlen",
    "calib_seed": "kick_calib_seed",
    "calib_data": "kick_calib_data",
    "tolerance": "kick_tolerance",
    "update_baselines": "kick_update_baselines",
    "update_missing": "kick_update_missing",
    "baselines_dir": "kick_baselines_dir",
    "cache_dir": "kick_cache_dir",
    "data": "kick_data",
    "limit": "kick_limit",
    "judge_model": "kick_judge_model",
    "judge_base_url": "kick_judge_base_url",
    "ppl_seqlen": "kick_ppl_seqlen",
    "batch_size": "kick_batch_size",
    "bits": "kick_bits",
    "group_size": "kick_group_size",
    "asym": "kick_asym",
    "act_order": "kick_act_order",
    "sequential": "kick_sequential",
    "gate": "kick_gate",
    "alpha": "kick_alpha",
    "no_compress_cache": "kick_no_compress_cache",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kick", "kick-checks: LLM compression gate (LLM-KICK tasks)")
    group.addoption("--kick-model", dest="kick_model", default=None,
                    help=f"embedded alias, local directory, .gguf file or Hugging Face id (default {DEFAULT_MODEL})")
    group.addoption("--kick-dtype", dest="kick_dtype", default=None,
                    choices=["auto", "float32", "bfloat16", "float16"], help="weights dtype (default auto: bfloat16)")
    group.addoption("--kick-device", dest="kick_device", default=None,
                    help="auto (cuda if available, else cpu; one GPU per xdist worker when several are "
                         "visible), cpu, cuda, cuda:N, or map (accelerate's device map over all GPUs)")
    group.addoption("--sparsity", dest="kick_sparsity", default=None,
                    help="fraction of weights to remove, 0 <= s < 1 (default 0: the dense model)")
    group.addoption("--kick-method", dest="kick_method", default=None,
                    help="magnitude, wanda (default), sparsegpt, random, global-magnitude, gptq, rtn, "
                    "or package.module:function")
    group.addoption("--kick-pattern", dest="kick_pattern", default=None,
                    help="unstructured (default) or N:M such as 2:4 = N zeros in every M consecutive input weights")
    group.addoption("--kick-bits", dest="kick_bits", default=None,
                    help="quantize to 2-8 bits: alone with --kick-method gptq/rtn (default 4 there), or after pruning")
    group.addoption("--kick-group-size", dest="kick_group_size", default=None,
                    help="input columns sharing one scale, -1 = one per row (default 128; a shorter last group is ok)")
    group.addoption("--kick-asym", dest="kick_asym", action="store_true", default=False,
                    help="asymmetric quantization grid (min..max with a zero point) instead of symmetric")
    group.addoption("--kick-act-order", dest="kick_act_order", action="store_true", default=False,
                    help="GPTQ: quantize columns in order of decreasing Hessian diagonal")
    group.addoption("--kick-sequential", dest="kick_sequential", default=None,
                    help="what calibration sees: layer (default: the model compressed so far, earlier layers of the "
                    "block included; one pass per block) or block (the dense block, as the Wanda and SparseGPT "
                    "papers' code; two passes)")
    group.addoption("--kick-calib-samples", dest="kick_calib_samples", default=None,
                    help="calibration windows (default 128)")
    group.addoption("--kick-calib-seqlen", dest="kick_calib_seqlen", default=None,
                    help="tokens per calibration window (default 256)")
    group.addoption("--kick-calib-seed", dest="kick_calib_seed", default=None,
                    help="seed for sampling calibration windows (default 0)")
    group.addoption("--kick-calib-data", dest="kick_calib_data", default=None,
                    help="plain-text calibration file instead of the bundled text")
    group.addoption("--kick-tolerance", dest="kick_tolerance", action="append", default=None,
                    help="allowed loss: VALUE (relative drop), abs:VALUE or recovery:VALUE, for all tasks or as "
                    "TASK=VALUE (repeatable; default 0.05)")
    group.addoption("--kick-gate", dest="kick_gate", default=None, choices=["threshold", "significant"],
                    help="threshold (default): fail on a loss beyond the tolerance; significant: and only when the "
                    "paired test (McNemar / bootstrap) finds it significant at --kick-alpha")
    group.addoption("--kick-alpha", dest="kick_alpha", default=None, help="significance level (default 0.05)")
    group.addoption("--kick-update-baselines", dest="kick_update_baselines", action="store_true", default=False,
                    help="evaluate the dense model and (re)write the baselines")
    group.addoption("--kick-json", dest="kick_json", default=None,
                    help="write a JSON report (environment, fingerprints, compression, per-task and per-item results)")
    group.addoption("--kick-markdown", dest="kick_markdown", default=None,
                    help="write a Markdown summary table, e.g. to $GITHUB_STEP_SUMMARY")
    group.addoption("--kick-update-missing", dest="kick_update_missing", action="store_true", default=False,
                    help="record the dense baselines that are absent; compare the others")
    group.addoption("--kick-baselines-dir", dest="kick_baselines_dir", default=None,
                    help="folder of baselines (default <rootdir>/baselines, else the baselines shipped)")
    group.addoption("--kick-cache-dir", dest="kick_cache_dir", default=None,
                    help="cache for converted models, compressed weights and judgments "
                    "(default $KICK_CACHE_DIR or ~/.cache/kick-checks; clear with kick cache clear)")
    group.addoption("--kick-no-compress-cache", dest="kick_no_compress_cache", action="store_true", default=False,
                    help="always compress; do not read or write the compressed-weights cache")
    group.addoption("--kick-data", dest="kick_data", action="append", default=None,
                    help="NAME=PATH: task data NAME (factoid_qa, retrieval_qa, multiple_choice, summarization, "
                    "conversations, perplexity) from our JSONL or the real benchmark's files (repeatable)")
    group.addoption("--kick-limit", dest="kick_limit", default=None,
                    help="evaluate a seeded random sample of N items per task (compared on the items both runs have)")
    group.addoption("--kick-judge-model", dest="kick_judge_model", default=None,
                    help="LLM judge model for summarization and instruction following (key from OPENAI_API_KEY)")
    group.addoption("--kick-judge-base-url", dest="kick_judge_base_url", default=None,
                    help="OpenAI-compatible endpoint of the judge (default: the openai client's)")
    group.addoption("--kick-ppl-seqlen", dest="kick_ppl_seqlen", default=None,
                    help="perplexity window in tokens (default: the model's context, at most 2048)")
    group.addoption("--kick-batch-size", dest="kick_batch_size", default=None,
                    help="prompts per forward pass: a number, or auto (sized from GPU memory; the task "
                         "defaults on CPU). Default: each task's own, as the baselines were recorded")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kick: an LLM-KICK check of the compressed model against a dense baseline")
    config.addinivalue_line("markers", "judge: a kick check scored only by an LLM judge (skipped without one)")
    options = {name: config.getoption(dest) for name, dest in _OPTIONS.items()}
    try:
        pyproject = find_pyproject(config)
        config.stash[_ROOT] = pyproject.parent if pyproject is not None else config.rootpath
        tool_config = read_tool_config(pyproject)
        config.stash[_SETTINGS] = build_settings(options, tool_config, config.stash[_ROOT])
    except KickError as error:
        raise pytest.UsageError(str(error)) from None
    _add_installed_suite(config)
    _quiet_idle_threads(config)


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
    """Check the model and spec before any kick test runs, so bad input is one line, not N errors."""
    if not any(item.get_closest_marker("kick") for item in session.items):
        return
    try:
        session.config.stash[_SESSION] = KickSession(session.config.stash[_SETTINGS], session.config.stash[_ROOT])
    except KickError as error:
        raise pytest.UsageError(str(error)) from None


@pytest.fixture(scope="session")
def kick_session(request: pytest.FixtureRequest) -> KickSession:
    """The session's kick run: the model under test, compressed once, and its task results."""
    config = request.config
    if _SESSION not in config.stash:
        try:
            config.stash[_SESSION] = KickSession(config.stash[_SETTINGS], config.stash[_ROOT])
        except KickError as error:
            pytest.fail(str(error), pytrace=False)
    return config.stash[_SESSION]


@pytest.fixture
def kick_check(kick_session: KickSession, request: pytest.FixtureRequest):
    """Check one task: ``kick_check("factoid_qa")`` fails the test when the compressed model lost too much.

    In ``--kick-update-baselines`` mode it records the dense result instead. The scores are attached to the
    test as properties, so they appear in JUnit XML (``--junitxml``).
    """

    def check(task_key: str) -> Comparison | Recorded:
        try:
            outcome = kick_session.check(task_key)
        except TaskSkipped as reason:
            pytest.skip(str(reason))
        except KickError as error:
            pytest.fail(str(error), pytrace=False)
        if isinstance(outcome, Comparison):
            request.node.user_properties.extend([
                ("kick_metric", outcome.metric), ("kick_dense", f"{outcome.dense:.6g}"),
                ("kick_compressed", f"{outcome.compressed:.6g}"),
                ("kick_relative_loss", f"{outcome.relative_drop:.6g}"),
                ("kick_tolerance", outcome.tolerance_text), ("kick_n", str(outcome.n)),
            ])
        if isinstance(outcome, Comparison) and not outcome.passed:
            pytest.fail(outcome.failure_message(), pytrace=False)
        return outcome

    return check


def session_summary(session: KickSession) -> dict:
    """What the end-of-run summary shows, as plain data, so xdist workers can send it to the controller."""
    compression = None
    if session.compression is not None:
        source = "loaded from the compression cache: " if session.compression_source == "loaded" else ""
        compression = source + session.compression_summary()
    outcomes = []
    for outcome in session.outcomes:
        if isinstance(outcome, Recorded):
            outcomes.append({"task": outcome.task, "line": outcome.line(), "passed": None})
        else:
            outcomes.append({"task": outcome.task, "line": outcome.summary_line(), "passed": outcome.passed})
    return {
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "header": f"model: {session.ref.alias} ({session.dtype}, {session.device}); "
                  f"compression: {session.settings.spec.label()}",
        "compression": compression,
        "outcomes": outcomes,
        "document": run_document(session),
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand this worker's kick summary to the controller."""
    config = session.config
    kick = config.stash.get(_SESSION, None)
    if hasattr(config, "workeroutput") and kick is not None and kick.outcomes:
        config.workeroutput["kick_summary"] = json.dumps(session_summary(kick))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """On the xdist controller, collect each worker's kick summary."""
    summary = getattr(node, "workeroutput", {}).get("kick_summary")
    if summary:
        node.config.stash.setdefault(_WORKER_SUMMARIES, []).append(json.loads(summary))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    summaries = list(config.stash.get(_WORKER_SUMMARIES, []))
    session = config.stash.get(_SESSION, None)
    if session is not None and session.outcomes:
        summaries.append(session_summary(session))
    if not summaries:
        return
    summaries.sort(key=lambda summary: summary["worker"])
    terminalreporter.section("kick-checks")
    terminalreporter.write_line(summaries[0]["header"])
    for summary in summaries:
        if summary["compression"]:
            prefix = f"[{summary['worker']}] " if len(summaries) > 1 else ""
            terminalreporter.write_line(prefix + summary["compression"])
    outcomes = sorted((outcome for summary in summaries for outcome in summary["outcomes"]),
                      key=lambda outcome: outcome["task"])
    for outcome in outcomes:
        passed = outcome["passed"]
        terminalreporter.write_line(outcome["line"], red=passed is False, green=passed is True)
    json_path, markdown_path = config.getoption("kick_json"), config.getoption("kick_markdown")
    if json_path or markdown_path:
        document = merged_document([summary["document"] for summary in summaries])
        for path in write_reports(document, Path(json_path) if json_path else None,
                                  Path(markdown_path) if markdown_path else None):
            terminalreporter.write_line(f"report: {path}")


logging.getLogger("kick_checks").setLevel(logging.INFO)
