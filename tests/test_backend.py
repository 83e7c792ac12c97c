"""--kick-backend: the transformers default keeps today's fingerprints; the vLLM backend builds its requests as
vLLM's documented API takes them and scores what comes back exactly as the transformers backend does.

vLLM needs CUDA, so on a CPU its engine is replaced by a stand-in that follows vLLM's documented interface
(``LLM(**engine args)``, ``LLM.generate(prompts, SamplingParams, use_tqdm=...)``, ``RequestOutput.outputs[0]
.token_ids``, ``RequestOutput.prompt_logprobs`` as a list of ``{token id: Logprob}`` with None first) and
computes with the tiny transformers model: every step of the backend but the engine itself is then checked
against the transformers backend. The engine test at the end runs only where vLLM and a GPU are present.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from kick_checks.engine import vllm_backend
from kick_checks.engine.backend import TRANSFORMERS
from kick_checks.engine.continuous_batching import ENGINE
from kick_checks.engine.likelihood import Continuation, continuation_likelihoods, prefix_ids
from kick_checks.engine.vllm_backend import (
    SCORING,
    VllmBackend,
    check_backend,
    engine_arguments,
    greedy_sampling,
    likelihood_prompts,
    prompt_logprob_sum,
)
from kick_checks.errors import KickError
from kick_checks.settings import build_settings
from kick_checks.tasks import TaskOptions, get_task

#: SamplingParams and LLM keywords as vLLM documents them (docs.vllm.ai, "Sampling Parameters" and "LLM Class").
SAMPLING_FIELDS = {"n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p",
                   "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens",
                   "logprobs", "prompt_logprobs", "detokenize", "skip_special_tokens",
                   "spaces_between_special_tokens", "include_stop_str_in_output"}
ENGINE_FIELDS = {"model", "tokenizer", "dtype", "seed", "gpu_memory_utilization", "enable_prefix_caching",
                 "tensor_parallel_size", "quantization", "max_model_len", "enforce_eager"}


class _Logprob:
    def __init__(self, logprob: float) -> None:
        self.logprob = logprob


class _SamplingParams:
    def __init__(self, **fields) -> None:
        unknown = set(fields) - SAMPLING_FIELDS
        assert not unknown, f"not a documented SamplingParams field: {unknown}"
        self.__dict__.update({"stop": None, "stop_token_ids": None, "prompt_logprobs": None}, **fields)


class _LLM:
    """vLLM's offline engine, as documented, computing with transformers on the folder it is given."""

    made: list[_LLM] = []

    def __init__(self, **arguments) -> None:
        unknown = set(arguments) - ENGINE_FIELDS
        assert not unknown, f"not a documented LLM argument: {unknown}"
        self.arguments = arguments
        self.model = AutoModelForCausalLM.from_pretrained(arguments["model"], dtype=torch.float32).eval()
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(arguments["tokenizer"])
        _LLM.made.append(self)

    def generate(self, prompts, sampling_params, use_tqdm=True):
        return [self._one(prompt["prompt_token_ids"], sampling_params) for prompt in prompts]

    def _one(self, ids: list[int], params):
        with torch.no_grad():
            logits = self.model(torch.tensor([ids])).logits[0].float()
        prompt_logprobs = None
        if params.prompt_logprobs is not None:
            table = torch.log_softmax(logits, dim=-1)
            prompt_logprobs = [None] + [{ids[i]: _Logprob(float(table[i - 1, ids[i]]))} for i in range(1, len(ids))]
        generated: list[int] = []
        ends = set(params.stop_token_ids or ())
        with torch.no_grad():
            for _ in range(params.max_tokens):
                token = int(self.model(torch.tensor([ids + generated])).logits[0, -1].argmax())
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                if token in ends or any(stop in text for stop in params.stop or ()):
                    break
        return SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=prompt_logprobs,
                               outputs=[SimpleNamespace(token_ids=generated, text=text)])


FAKE_VLLM = SimpleNamespace(LLM=_LLM, SamplingParams=_SamplingParams, __version__="0.0-standin")


def _backend(loaded) -> VllmBackend:
    def write(folder: Path) -> None:
        loaded.model.save_pretrained(folder)
        loaded.tokenizer.save_pretrained(folder)

    return VllmBackend(write, dtype="float32", vllm_module=FAKE_VLLM)


def _short_text(folder: Path) -> Path:
    """A few perplexity windows of text (the bundled text is a thousand windows of the tiny tokenizer)."""
    path = folder / "short.txt"
    path.write_text(" = Colours = \n" + " ".join(f"The {animal} is {colour}." for animal, colour in
                                                zip(["fox", "owl", "bee", "cat"] * 6, ["red", "blue"] * 12)) + "\n")
    return path


def test_the_default_backend_adds_nothing_to_the_fingerprints(tiny_loaded, tmp_path):
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    assert TaskOptions().evaluation_backend() is TRANSFORMERS
    assert TRANSFORMERS.fingerprint() == {} and TRANSFORMERS.generation_engine(model) == ENGINE
    result = get_task("perplexity").run(model, tokenizer, TaskOptions(data_path=_short_text(tmp_path), ppl_seqlen=32))
    assert result.fingerprint["decoding"] == {"seqlen": 32, "windows": result.n} and result.n >= 2
    assert build_settings({}, {}, Path(".")).backend == "transformers"


def test_without_vllm_the_option_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(vllm_backend, "vllm_installed", lambda: False)
    with pytest.raises(KickError, match=r"^--kick-backend vllm needs vLLM, which is not installed: pip install "
                                        r"'kick-checks\[vllm\]'"):
        build_settings({"backend": "vllm"}, {}, Path("."))
    with pytest.raises(KickError, match="is unknown: use transformers, vllm, vllm-gptq"):
        check_backend("tensorrt", quantizes=False)


def test_vllm_gptq_needs_a_packable_quantized_run(monkeypatch):
    monkeypatch.setattr(vllm_backend, "vllm_installed", lambda: True)
    with pytest.raises(KickError, match="give --kick-bits"):
        build_settings({"backend": "vllm-gptq", "sparsity": 0.5}, {}, Path("."))
    with pytest.raises(KickError, match="not 5"):
        build_settings({"backend": "vllm-gptq", "method": "gptq", "bits": 5}, {}, Path("."))
    settings = build_settings({"backend": "vllm-gptq", "method": "gptq", "bits": 4}, {}, Path("."))
    assert settings.backend == "vllm-gptq" and not settings.compress_cache  # the cache keeps no integer form


def test_the_vllm_backend_refuses_a_cpu_run(monkeypatch, tiny_model_dir):
    from kick_checks.session import KickSession

    monkeypatch.setattr(vllm_backend, "vllm_installed", lambda: True)
    settings = build_settings({"backend": "vllm", "model": str(tiny_model_dir), "device": "cpu"}, {}, Path("."))
    with pytest.raises(KickError, match="runs on a GPU and this run's device is cpu"):
        KickSession(settings, Path("."))


def test_requests_are_the_transformers_backends_tokens(tiny_loaded):
    tokenizer = tiny_loaded.tokenizer
    prefix = "Question: What colour is the fox?\nAnswer:"
    requests = [Continuation("", " red"), Continuation("\nQuestion: and the owl?\nAnswer:", " blue green")]
    rows = likelihood_prompts(tokenizer, prefix, requests)
    start = prefix_ids(tokenizer, prefix)
    for (ids, begin), request in zip(rows, requests):
        context = tokenizer(request.context, add_special_tokens=False).input_ids
        continuation = tokenizer(request.continuation, add_special_tokens=False).input_ids
        assert ids == start + context + continuation and ids[begin:] == continuation
    sampling = greedy_sampling(16, ("\n",), {2})
    assert set(sampling) <= SAMPLING_FIELDS and set(SCORING) <= SAMPLING_FIELDS
    assert sampling["temperature"] == 0.0 and sampling["stop"] == ["\n"] and sampling["stop_token_ids"] == [2]
    assert greedy_sampling(8, (), set())["stop"] is None
    arguments = engine_arguments(Path("/m"), "bfloat16", quantized=True, gpus=2, memory_share=0.5)
    assert set(arguments) <= ENGINE_FIELDS and arguments["quantization"] == "gptq"
    assert arguments["tensor_parallel_size"] == 2 and arguments["model"] == arguments["tokenizer"] == "/m"
    with pytest.raises(KickError, match="no log-probabilities"):
        prompt_logprob_sum(None, [1, 2], 1)


def test_tasks_through_the_vllm_backend_score_as_through_transformers(tiny_loaded, tmp_path):
    from tiny_models import toy_items

    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in toy_items()))
    backend = _backend(tiny_loaded)
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    factoid = get_task("factoid_qa")
    ours = factoid.run(model, tokenizer, TaskOptions(data_path=data))
    theirs = factoid.run(model, tokenizer, TaskOptions(data_path=data, backend=backend))
    assert [item.prediction for item in theirs.items] == [item.prediction for item in ours.items]
    assert len({item.prediction for item in ours.items}) > 1  # answers that differ, cut at the newline
    assert theirs.fingerprint["decoding"]["engine"] == "vllm-0.0-standin"
    assert ours.fingerprint["decoding"]["engine"] == ENGINE
    (engine,) = _LLM.made[-1:]
    assert engine.arguments["dtype"] == "float32" and engine.arguments["enable_prefix_caching"] is True

    perplexity = get_task("perplexity")
    text = _short_text(tmp_path)
    dense = perplexity.run(model, tokenizer, TaskOptions(data_path=text, ppl_seqlen=32))
    served = perplexity.run(model, tokenizer, TaskOptions(data_path=text, ppl_seqlen=32, backend=backend))
    assert served.fingerprint["decoding"] == {**dense.fingerprint["decoding"], "backend": "vllm-0.0-standin"}
    assert [item.score for item in served.items] == pytest.approx([item.score for item in dense.items], rel=1e-5)

    prefix = "The following are questions (with answers) about colours.\n\n"
    requests = [Continuation(f"Question: What colour is the {animal}?\nAnswer:", f" {colour}")
                for animal in ("fox", "owl") for colour in ("red", "purple", "gold")]
    expected = continuation_likelihoods(model, tokenizer, prefix, requests, batch_size=4)
    scored = backend.likelihoods(model, tokenizer, prefix, requests)
    assert [(s.tokens, s.characters) for s in scored] == [(e.tokens, e.characters) for e in expected]
    assert [s.logprob for s in scored] == pytest.approx([e.logprob for e in expected], abs=1e-4)

    prompts = ["red blue", "the quick brown fox jumps over"]  # chat tasks' path: no special tokens added
    assert backend.generate(model, tokenizer, prompts, max_new_tokens=6, add_special_tokens=False) == \
        TRANSFORMERS.generate(model, tokenizer, prompts, max_new_tokens=6, add_special_tokens=False)
    backend.close()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="the vLLM engine needs vLLM (pip install 'kick-checks[vllm]') and a CUDA GPU")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the vLLM engine needs a CUDA GPU")
def test_the_vllm_engine_answers_as_transformers_on_a_gpu(toy_qa):  # pragma: no cover - GPU machines only
    from kick_checks.model.loading import load_model, resolve_model

    model_dir, data = toy_qa
    loaded = load_model(resolve_model(str(model_dir)), dtype="float32", device="cuda")

    def write(folder: Path) -> None:
        loaded.model.save_pretrained(folder)
        loaded.tokenizer.save_pretrained(folder)

    backend = VllmBackend(write, dtype="float32")
    factoid = get_task("factoid_qa")
    ours = factoid.run(loaded.model, loaded.tokenizer, TaskOptions(data_path=data))
    theirs = factoid.run(loaded.model, loaded.tokenizer, TaskOptions(data_path=data, backend=backend))
    assert [item.prediction for item in theirs.items] == [item.prediction for item in ours.items]
    backend.close()
