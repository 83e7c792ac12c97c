"""Shared fixtures: tiny models built from a config (no downloads), cached for the whole test session."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from tiny_models import (  # tests/ is on the path: pyproject's pythonpath
    build_tiny_chat_model,
    build_tiny_model,
    train_toy_qa_model,
    train_toy_recovery_model,
)

#: A little text to calibrate tiny models on.
CALIBRATION_TEXT = " ".join(f"the {word} sat on a mat near {other}." for word in ("cat", "dog", "fox")
                            for other in ("it", "us"))


@pytest.fixture(scope="session", autouse=True)
def private_kick_cache(tmp_path_factory):
    """Keep the tests' converted models and compressed weights out of the user's ~/.cache/kick-checks."""
    previous = os.environ.get("KICK_CACHE_DIR")
    os.environ["KICK_CACHE_DIR"] = str(tmp_path_factory.mktemp("kick-cache-dir"))
    yield
    if previous is None:
        os.environ.pop("KICK_CACHE_DIR", None)
    else:
        os.environ["KICK_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised two-block Llama with its tokenizer, saved as a model directory."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with a chat template, as a model directory."""
    return build_tiny_chat_model(tiny_model_dir, tmp_path_factory.mktemp("tiny-chat-llama"))


@pytest.fixture(scope="session")
def toy_qa(tmp_path_factory) -> tuple[Path, Path]:
    """(model directory, data file): a tiny Llama trained to answer a toy factoid set perfectly."""
    return train_toy_qa_model(tmp_path_factory.mktemp("toy-qa"))


@pytest.fixture(scope="session")
def toy_recovery(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(model directory, evaluated data, held-out pool): a tiny Llama that knows eight toy facts under the factoid
    prompt and under the fixed recovery prompt built from the other four (see train_toy_recovery_model)."""
    return train_toy_recovery_model(tmp_path_factory.mktemp("toy-recovery"))


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir):
    from kick_checks.model.loading import load_model, resolve_model

    return load_model(resolve_model(str(tiny_model_dir)), dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A model cache shared by the tests that load the embedded default model, so it is converted once."""
    return tmp_path_factory.mktemp("kick-cache")


@pytest.fixture
def model(tiny_loaded):
    """A fresh copy of the tiny model, for a test that compresses it."""
    return copy.deepcopy(tiny_loaded.model)


@pytest.fixture
def calibration(tiny_loaded):
    """Six calibration windows of sixteen tokens for the tiny model."""
    from kick_checks.model.calibration import calibration_tokens

    return calibration_tokens(tiny_loaded.tokenizer, samples=6, seqlen=16, seed=0, text=CALIBRATION_TEXT * 4)


@pytest.fixture
def toy_args(toy_qa, tmp_path) -> list[str]:
    """``pytest -m kick`` arguments that run factoid QA on the toy model, with baselines and cache in tmp_path."""
    model_dir, data = toy_qa
    return [
        "-m", "kick", "-k", "factoid", "-p", "no:cacheprovider", "--kick-model", str(model_dir),
        "--kick-dtype", "float32", "--kick-device", "cpu", "--kick-data", f"factoid_qa={data}",
        "--kick-baselines-dir", str(tmp_path / "baselines"), "--kick-cache-dir", str(tmp_path / "cache"),
        "--kick-calib-samples", "8", "--kick-calib-seqlen", "32",
    ]


@pytest.fixture
def toy_sweep_options(pytester, toy_qa, tmp_path) -> list[str]:
    """The options a ``kick sweep`` passes on (after ``--``) to run factoid QA on the toy model, its dense baseline
    already recorded in tmp_path."""
    model_dir, data = toy_qa
    options = ["-k", "factoid", "--kick-model", str(model_dir), "--kick-dtype", "float32", "--kick-device", "cpu",
               "--kick-data", f"factoid_qa={data}", "--kick-baselines-dir", str(tmp_path / "baselines"),
               "--kick-cache-dir", str(tmp_path / "cache")]
    pytester.runpytest("-m", "kick", "-p", "no:cacheprovider", *options, "--kick-update-baselines").assert_outcomes(
        passed=1)
    return options
