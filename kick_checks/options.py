"""Every setting of kick-checks, declared once: its flag, help, ``[tool.kick]`` key and which commands take it.

The pytest options (``pytest_addoption``), the keys ``[tool.kick]`` accepts and their types, and the options of
``kick export`` and ``kick recover`` are all generated from :data:`OPTIONS`, so a setting cannot be spelt one way
on the command line and another in the config. Values are parsed and checked where they are used
(:mod:`kick_checks.settings` and :mod:`compressors.spec`), each with a one-line error that names the fix.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from compressors.spec import (
    DEFAULT_BITS,
    DEFAULT_CALIB_SAMPLES,
    DEFAULT_CALIB_SEED,
    DEFAULT_CALIB_SEQLEN,
    DEFAULT_GROUP_SIZE,
    DEFAULT_METHOD,
)
from kick_checks.errors import KickError, KickWarning

PYTEST, EXPORT, RECOVER = "pytest", "export", "recover"
#: The commands that compress a model the way the suite does, and so take every model and compression option.
COMPRESSING = frozenset({PYTEST, EXPORT, RECOVER})


class KickDeprecation(KickWarning):
    """A setting that still works under an old name; the message names the new one."""


@dataclass(frozen=True)
class Option:
    """One setting. ``name`` is its key everywhere (``RunSettings`` field, ``[tool.kick]`` key, pytest ``dest``
    ``kick_<name>``). ``toml`` is the type the config must hold, or None when the setting is command-line only."""

    name: str
    flag: str
    help: str
    toml: type | tuple[type, ...] | None = str
    action: str | None = None  # "store_true" or "append"
    choices: tuple[str, ...] | None = None
    commands: frozenset[str] = frozenset({PYTEST})

    @property
    def dest(self) -> str:
        return f"kick_{self.name}"


def _compressing(name: str, flag: str, help: str, toml: type | tuple[type, ...] | None = str, **kwargs) -> Option:
    return Option(name, flag, help, toml, commands=COMPRESSING, **kwargs)


NUMBER = (int, float)
OPTIONS: tuple[Option, ...] = (
    # the model under test
    _compressing("model", "--kick-model", "embedded alias, local directory, .gguf file or Hugging Face id "
                 "(default smollm2-135m)"),
    _compressing("dtype", "--kick-dtype", "weights dtype (default auto: bfloat16, float16 on a GPU without bf16)",
                 choices=("auto", "float32", "bfloat16", "float16")),
    _compressing("device", "--kick-device", "auto (cuda if available, else cpu; one GPU per xdist worker when "
                 "several are visible), cpu, cuda, cuda:N, or map (accelerate's device map over all GPUs)"),
    # the compression
    _compressing("sparsity", "--sparsity", "fraction of weights to remove, 0 <= s < 1 (default 0: the dense model)",
                 NUMBER),
    _compressing("method", "--kick-method", f"magnitude, wanda (default {DEFAULT_METHOD}), sparsegpt, random, "
                 "global-magnitude, gptq, rtn, a plug-in's name, or package.module:function"),
    _compressing("pattern", "--kick-pattern", "unstructured (default) or N:M such as 2:4 = N zeros in every M "
                 "consecutive input weights"),
    _compressing("bits", "--kick-bits", f"quantize to 2-8 bits: alone with --kick-method gptq/rtn (default "
                 f"{DEFAULT_BITS} there), or after pruning", int),
    _compressing("group_size", "--kick-group-size", f"input columns sharing one scale, -1 = one per row (default "
                 f"{DEFAULT_GROUP_SIZE}; a shorter last group is fine)", int),
    _compressing("asym", "--kick-asym", "asymmetric quantization grid (min..max with a zero point) instead of "
                 "symmetric", bool, action="store_true"),
    _compressing("act_order", "--kick-act-order", "GPTQ: quantize columns in order of decreasing Hessian diagonal",
                 bool, action="store_true"),
    _compressing("sequential", "--kick-sequential", "what calibration sees: layer (default: the model compressed so "
                 "far, earlier layers of the block included; one pass per block) or block (the dense block, as the "
                 "Wanda and SparseGPT papers' code; two passes)"),
    _compressing("calib_samples", "--kick-calib-samples", f"calibration windows (default {DEFAULT_CALIB_SAMPLES})",
                 int),
    _compressing("calib_seqlen", "--kick-calib-seqlen", f"tokens per calibration window (default "
                 f"{DEFAULT_CALIB_SEQLEN})", int),
    _compressing("calib_seed", "--kick-calib-seed", f"seed for sampling calibration windows (default "
                 f"{DEFAULT_CALIB_SEED})", int),
    _compressing("calib_data", "--kick-calib-data", "plain-text calibration file instead of the bundled text"),
    _compressing("cache_dir", "--kick-cache-dir", "cache for converted models, compressed weights and judgments "
                 "(default $KICK_CACHE_DIR or ~/.cache/kick-checks; clear with kick cache clear)"),
    # the gate
    Option("tolerance", "--kick-tolerance", "allowed loss: VALUE (relative drop), abs:VALUE or recovery:VALUE, for "
           "all tasks or as TASK=VALUE (repeatable; default 0.05); [tool.kick] tolerances = {TASK = VALUE} too",
           (int, float, str), action="append"),
    Option("gate", "--kick-gate", "threshold (default): fail on a loss beyond the tolerance; significant: and only "
           "when the paired test (McNemar / bootstrap) finds it significant at --kick-alpha; recoverable: count the "
           "items --kick-recovery brings back as kept (knowledge tasks)",
           choices=("threshold", "significant", "recoverable")),
    Option("alpha", "--kick-alpha", "significance level (default 0.05)", NUMBER),
    # baselines and reports
    Option("update_baselines", "--kick-update-baselines", "evaluate the dense model and (re)write the baselines",
           None, action="store_true"),
    Option("update_missing", "--kick-update-missing", "record the dense baselines that are absent; compare the others",
           None, action="store_true"),
    Option("update_sample", "--kick-update-sample", "when an update with --kick-limit holds fewer items than the "
           "stored baseline: refuse (default), merge (refresh those items in it) or replace (write the smaller one)"),
    Option("noise_floor", "--kick-noise-floor", "when recording baselines, also evaluate the dense model under "
           "perturbations that change only rounding, to learn which items are unstable: a list of batch (half the "
           "batch size), threads (another thread count), float32 (a float32 copy, for a bfloat16 or float16 "
           "baseline), or none (default batch,threads,float32; each costs about one more dense evaluation)"),
    Option("reference", "--kick-reference", "gate against a reference run instead of dense alone: a folder written "
           "by --kick-record-reference or a --kick-json report (a previous release, another method); the dense "
           "comparison is shown beside it"),
    Option("record_reference", "--kick-record-reference", "write each task's compressed result to this folder, "
           "for later runs' --kick-reference", None),
    Option("baselines_dir", "--kick-baselines-dir", "folder of baselines (default <rootdir>/baselines, else the "
           "baselines shipped)"),
    Option("json", "--kick-json", "write a JSON report (environment, fingerprints, compression, per-task and "
           "per-item results)", None, commands=frozenset({PYTEST, RECOVER})),
    Option("markdown", "--kick-markdown", "write a Markdown summary table, e.g. to $GITHUB_STEP_SUMMARY", None),
    Option("no_compress_cache", "--kick-no-compress-cache", "always compress; do not read or write the "
           "compressed-weights cache", None, action="store_true"),
    Option("no_measure", "--kick-no-measure", "skip measuring storage, throughput and the divergence from dense on "
           "the fixed probe (about 600 tokens through the model per run; the JSON's efficiency and divergence)",
           None, action="store_true"),
    # the tasks
    Option("data", "--kick-data", "NAME=PATH: a task's data from our JSONL or the real benchmark's files "
           "(repeatable; [tool.kick.data] too)", dict, action="append", commands=frozenset({PYTEST, RECOVER})),
    Option("limit", "--kick-limit", "evaluate a seeded random sample of N items per task (compared on the items "
           "both runs have)", int, commands=frozenset({PYTEST, RECOVER})),
    Option("ppl_seqlen", "--kick-ppl-seqlen", "perplexity window in tokens (default: the model's context, at most "
           "2048)", int),
    Option("batch_size", "--kick-batch-size", "prompts per forward pass: a number, or auto (sized from GPU memory; "
           "the task defaults on CPU). Default: each task's own, as the baselines were recorded", (int, str),
           commands=frozenset({PYTEST, RECOVER})),
    # knowledge recovery
    Option("recovery", "--kick-recovery", "on each knowledge task, also try to bring lost items back: prompt (a fixed "
           "recovery prompt), idp (a curated prompt per input, chosen without labels) or lora (a LoRA adapter "
           "trained on the calibration text, sparsity mask kept); reports recovered and "
           "forgotten items", choices=("prompt", "idp", "lora")),
    Option("recovery_pool", "--kick-recovery-pool", "NAME=PATH: held-out demonstrations for a task's recovery "
           "prompts, JSON lines in its schema (repeatable; default the bundled pools; [tool.kick.recovery_pool] too)",
           dict, action="append", commands=frozenset({PYTEST, RECOVER})),
    Option("idp_rule", "--kick-idp-rule", "how idp picks an input's prompt: similarity (default: the prompt whose "
           "demonstrations' questions are nearest in embedding space; no forward pass), fit (the prompt after which "
           "the question is most likely; recovers a little more, at about 4x the time) or confidence (the prompt "
           "under which the model is surest of its answer)",
           choices=("similarity", "fit", "confidence"), commands=frozenset({PYTEST, RECOVER})),
    Option("backend", "--kick-backend", "what computes generations and likelihoods: transformers (default), vllm "
           "(the compressed weights served by vLLM on a GPU) or vllm-gptq (the GPTQ checkpoint of a --kick-bits run, "
           "vLLM's low-bit kernels); in the baseline fingerprint; needs the [vllm] extra",
           choices=("transformers", "vllm", "vllm-gptq")),
    # the judge
    Option("judge_model", "--kick-judge-model", "LLM judge model for summarization and instruction following (key "
           "from OPENAI_API_KEY)"),
    Option("judge_base_url", "--kick-judge-base-url", "OpenAI-compatible endpoint of the judge (default: the openai "
           "client's)"),
    Option("judge_timeout", "--kick-judge-timeout", "seconds one judge request may take (default 60)", NUMBER),
    Option("judge_retries", "--kick-judge-retries", "attempts per judgment on timeouts, 429 and 5xx (default 5)",
           int),
    Option("judge_concurrency", "--kick-judge-concurrency", "judge requests in flight at once (default 4)", int),
    Option("judge_budget", "--kick-judge-budget", "seconds the judging of one task may take in all before the task "
           "fails (default 1800)", NUMBER),
)
BY_NAME = {option.name: option for option in OPTIONS}
#: ``[tool.kick]`` keys that hold no option of their own.
CONFIG_ONLY: dict[str, type | tuple[type, ...]] = {"tolerances": dict}
#: Old ``[tool.kick]`` keys, still read: key -> (new key, how an old value becomes a new one).
RENAMED_KEYS: dict[str, tuple[str, Callable[[object], object]]] = {
    "symmetric": ("asym", lambda symmetric: not symmetric),
}


def config_keys() -> dict[str, type | tuple[type, ...]]:
    """Every ``[tool.kick]`` key and the type it must hold."""
    return {**{option.name: option.toml for option in OPTIONS if option.toml is not None}, **CONFIG_ONLY}


def _argument(option: Option, dest: str) -> dict:
    """The keyword arguments that declare ``option`` to argparse (pytest's parser takes the same)."""
    kwargs: dict = {"dest": dest, "help": option.help}
    if option.action == "store_true":
        kwargs.update(action="store_true", default=False)
    else:
        kwargs.update(default=None, action=option.action or "store")
    if option.choices:
        kwargs["choices"] = list(option.choices)
    return kwargs


def add_pytest_options(group) -> None:
    """Declare the pytest options, as ``--kick-*`` flags with ``dest`` ``kick_<name>``."""
    for option in OPTIONS:
        if PYTEST in option.commands:
            group.addoption(option.flag, **_argument(option, option.dest))


def getoption_values(getoption: Callable[[str], object]) -> dict[str, object]:
    """Each option's raw value by name (``None`` or ``False`` when not given)."""
    return {option.name: getoption(option.dest) for option in OPTIONS if PYTEST in option.commands}


def add_command_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the options ``command`` takes on an argparse parser, under the pytest flags' names."""
    for option in OPTIONS:
        if command in option.commands:
            parser.add_argument(option.flag, **_argument(option, option.name))


def command_values(args: argparse.Namespace, command: str) -> dict[str, object]:
    return {option.name: getattr(args, option.name) for option in OPTIONS if command in option.commands}


def modernize_config(table: dict, where: str) -> dict:
    """``table`` with renamed keys under their new names; each old key gives a deprecation line."""
    table = dict(table)
    for old, (new, convert) in RENAMED_KEYS.items():
        if old not in table:
            continue
        if new in table:
            raise KickError(f"[tool.kick] in {where} sets both {old} (its old name) and {new}: keep only {new}")
        value = table.pop(old)
        table[new] = convert(value)
        warnings.warn(KickDeprecation(f"[tool.kick] {old} = {value!r} in {where} is deprecated: write "
                                      f"{new} = {str(table[new]).lower()} instead"), stacklevel=2)
    return table


@dataclass(frozen=True)
class OptionValues:
    """Raw values from the command line over ``[tool.kick]``: ``pick`` gives the first one set."""

    given: dict[str, object]
    config: dict[str, object] = field(default_factory=dict)

    def pick(self, name: str):
        value = self.given.get(name)
        if value is not None and value is not False:
            return value
        return self.config.get(name)
