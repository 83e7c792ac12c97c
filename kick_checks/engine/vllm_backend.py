"""``--kick-backend vllm`` / ``vllm-gptq``: the compressed model served by vLLM's offline engine, on a GPU.

The suite compresses the model as always (in memory, with transformers), then writes it to a scratch folder and
hands that folder to ``vllm.LLM``:

- ``vllm``: the compressed weights as they are, dense tensors with their zeros (``save_pretrained``), in the
  run's dtype: any method, the same numbers the transformers backend evaluates;
- ``vllm-gptq``: for ``--kick-bits`` runs, the GPTQ checkpoint of :mod:`kick_checks.export` (packed integers
  and scales; vLLM runs its low-bit kernels, as a deployment would). The integer form is kept during compression,
  so this backend compresses every time (the compressed-weights cache keeps no integer form).

The tasks' prompts, stop rules and scoring are unchanged; only the computation moves. Prompts go in as the very
token ids the transformers backend would run (``{"prompt_token_ids": ...}``), answers are decoded from the
generated token ids with the task's stop strings applied the same way, and a likelihood is the sum of vLLM's
``prompt_logprobs`` over the continuation's tokens (perplexity: their mean over a window). vLLM schedules its own
batches, so the batch size in the fingerprint is the task's and does not change what runs.

vLLM is imported only when the engine starts; without it the option fails at once with one line naming the
extra. The request building here is tested on the CPU against vLLM's documented API; the engine itself needs
CUDA (see the README for what has run on a GPU).
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from kick_checks.engine.backend import TRANSFORMERS, Backend
from kick_checks.engine.generation import cut_at_stop, end_token_ids
from kick_checks.engine.likelihood import Continuation, Likelihood, encode_requests
from kick_checks.errors import KickError

BACKENDS = ("transformers", "vllm", "vllm-gptq")
INSTALL_HINT = "pip install 'kick-checks[vllm]'"
#: Share of the GPU memory free when the engine starts that vLLM may take (weights, activations, KV cache).
MEMORY_SHARE = 0.9
#: What scoring asks of the engine: one throw-away generated token, the log-probability of every prompt token.
SCORING = {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1, "detokenize": False}


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def check_backend(name: str, quantizes: bool, bits: int | None = None) -> None:
    """Refuse, before any model work, a backend this run cannot use."""
    if name not in BACKENDS:
        raise KickError(f"--kick-backend {name!r} is unknown: use {', '.join(BACKENDS)}")
    if name == "transformers":
        return
    if not vllm_installed():
        raise KickError(f"--kick-backend {name} needs vLLM, which is not installed: {INSTALL_HINT} (on a machine "
                        "with an NVIDIA GPU; vLLM runs on CUDA)")
    if name == "vllm-gptq" and not quantizes:
        raise KickError("--kick-backend vllm-gptq serves the GPTQ checkpoint of a quantized model: give --kick-bits "
                        "(e.g. --kick-method gptq --kick-bits 4), or use --kick-backend vllm for pruned weights")
    from kick_checks.export.gptq_checkpoint import PACKABLE_BITS

    if name == "vllm-gptq" and bits not in PACKABLE_BITS:
        raise KickError(f"--kick-backend vllm-gptq: a GPTQ checkpoint holds {', '.join(map(str, PACKABLE_BITS))}-bit "
                        f"weights, not {bits}: quantize with one of those, or use --kick-backend vllm")


# -- requests, built as vLLM's documented API takes them -------------------------------------------------------
def token_prompts(tokenizer, prompts: list[str], add_special_tokens: bool) -> list[dict]:
    """The prompts as vLLM ``TokensPrompt`` dicts: the token ids the transformers backend runs."""
    return [{"prompt_token_ids": tokenizer(prompt, add_special_tokens=add_special_tokens).input_ids}
            for prompt in prompts]


def greedy_sampling(max_new_tokens: int, stop: tuple[str, ...], end_ids: set[int]) -> dict:
    """``SamplingParams`` keywords for the tasks' greedy decoding: temperature 0, the task's token budget and stop
    strings, and the end tokens the transformers backend stops at."""
    return {"temperature": 0.0, "max_tokens": max_new_tokens, "stop": list(stop) or None,
            "stop_token_ids": sorted(end_ids) or None, "include_stop_str_in_output": False,
            "skip_special_tokens": True}


def generated_text(tokenizer, token_ids, stop: tuple[str, ...], end_ids: set[int]) -> str:
    """A generated answer as the transformers backend gives it: its tokens without a final end token, decoded
    without special tokens, cut at the first stop string."""
    tokens = list(token_ids)
    if tokens and tokens[-1] in end_ids:
        tokens = tokens[:-1]
    return cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), stop)


def likelihood_prompts(tokenizer, prefix: str, requests: list[Continuation]) -> list[tuple[list[int], int]]:
    """Per request, the prompt ids (prefix, context, continuation, tokenized as the transformers backend does)
    and where the continuation starts in them."""
    start_ids, rows = encode_requests(tokenizer, prefix, requests)
    return [([*start_ids, *context, *continuation], len(start_ids) + len(context)) for context, continuation in rows]


def prompt_logprob_sum(prompt_logprobs, ids: list[int], start: int) -> float:
    """Sum of the log-probabilities of ``ids[start:]`` in a vLLM ``prompt_logprobs`` list (entry ``i`` maps token
    ids to ``Logprob`` objects for prompt position ``i``; entry 0 is None)."""
    if start < 1 or prompt_logprobs is None or len(prompt_logprobs) < len(ids):
        raise KickError("vLLM returned no log-probabilities for the prompt tokens: this vLLM release does not "
                        "support prompt_logprobs as kick-checks uses it; please report it")
    return float(sum(prompt_logprobs[position][ids[position]].logprob for position in range(start, len(ids))))


def engine_arguments(folder: Path, dtype: str, *, quantized: bool, gpus: int, memory_share: float) -> dict:
    """``vllm.LLM`` keywords: the written folder as model and tokenizer, the run's dtype, prefix caching (the
    tasks' prompts share few-shot prefixes), and the GPU memory share that is free."""
    arguments = {"model": str(folder), "tokenizer": str(folder), "dtype": dtype, "seed": 0,
                 "gpu_memory_utilization": round(memory_share, 3), "enable_prefix_caching": True,
                 "tensor_parallel_size": gpus}
    if quantized:
        arguments["quantization"] = "gptq"
    return arguments


class VllmBackend(Backend):
    """Generation, likelihoods and perplexity through ``vllm.LLM``, started on first use.

    ``write_model(folder)`` writes the model to serve; ``release()`` frees the GPU memory the in-memory model
    holds before vLLM sizes its cache. ``vllm_module`` replaces ``import vllm`` (tests)."""

    def __init__(self, write_model: Callable[[Path], None], *, dtype: str, quantized: bool = False, gpus: int = 1,
                 release: Callable[[], None] = lambda: None, vllm_module=None, scratch: Path | None = None) -> None:
        self.write_model, self.release = write_model, release
        self.dtype, self.quantized, self.gpus = dtype, quantized, gpus
        self._module, self._llm, self._scratch, self._folder = vllm_module, None, scratch, None
        self.name = "vllm-gptq" if quantized else "vllm"

    @property
    def vllm(self):
        if self._module is None:
            try:
                import vllm
            except ImportError:
                raise KickError(f"--kick-backend {self.name} needs vLLM, which is not installed: {INSTALL_HINT}") \
                    from None
            self._module = vllm
        return self._module

    def _engine_name(self) -> str:
        return f"vllm-{getattr(self.vllm, '__version__', 'unknown')}{'-gptq' if self.quantized else ''}"

    def generation_engine(self, model) -> str:
        return self._engine_name()

    def fingerprint(self) -> dict:
        return {"backend": self._engine_name()}

    @property
    def llm(self):
        if self._llm is None:
            parent = self._scratch or Path(tempfile.gettempdir())
            parent.mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="kick-vllm-", dir=parent))
            self.write_model(self._folder)
            self.release()
            share = MEMORY_SHARE
            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info()
                share = MEMORY_SHARE * free / total
            self._llm = self.vllm.LLM(**engine_arguments(self._folder, self.dtype, quantized=self.quantized,
                                                         gpus=self.gpus, memory_share=share))
        return self._llm

    def close(self) -> None:
        """Drop the engine and the written model folder."""
        self._llm = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _run(self, prompts: list[dict], sampling: dict):
        return self.llm.generate(prompts, self.vllm.SamplingParams(**sampling), use_tqdm=False)

    def generate(self, model, tokenizer, prompts: list[str], *, max_new_tokens: int, stop: tuple[str, ...] = (),
                 batch_size: int = 16, add_special_tokens: bool = True, draft_tokens: int = 0,
                 groups: list[int] | None = None) -> list[str]:
        # draft_tokens and groups speed up the transformers engine; vLLM schedules its own decoding and caches
        # shared prefixes itself
        if not prompts:
            return []
        ends = end_token_ids(model, tokenizer)
        outputs = self._run(token_prompts(tokenizer, prompts, add_special_tokens),
                            greedy_sampling(max_new_tokens, stop, ends))
        return [generated_text(tokenizer, output.outputs[0].token_ids, stop, ends) for output in outputs]

    def likelihoods(self, model, tokenizer, prefix: str, requests: list[Continuation], *,
                    batch_size: int = 16) -> list[Likelihood]:
        rows = likelihood_prompts(tokenizer, prefix, requests)
        outputs = self._run([{"prompt_token_ids": ids} for ids, _ in rows], SCORING)
        return [Likelihood(prompt_logprob_sum(output.prompt_logprobs, ids, start), len(ids) - start,
                           len(request.continuation))
                for output, (ids, start), request in zip(outputs, rows, requests)]

    def window_losses(self, model, windows: list[torch.Tensor]) -> list[float]:
        rows = [window.tolist() for window in windows]
        outputs = self._run([{"prompt_token_ids": ids} for ids in rows], SCORING)
        return [-prompt_logprob_sum(output.prompt_logprobs, ids, 1) / (len(ids) - 1)
                for output, ids in zip(outputs, rows)]


def session_backend(session) -> Backend:
    """The backend ``--kick-backend`` asks for, wired to a :class:`~kick_checks.session.KickSession`: the model it
    serves is the session's compressed model, written on first use."""
    name = session.settings.backend
    if name == "transformers":
        return TRANSFORMERS
    if not str(session.device).startswith("cuda") and session.device != "map":
        raise KickError(f"--kick-backend {name} runs on a GPU and this run's device is {session.device}: use "
                        "--kick-device auto/cuda on a CUDA machine, or --kick-backend transformers")
    quantized = name == "vllm-gptq"
    if quantized:
        session.steps[-1][1].keep_integer_form = True  # the GPTQ checkpoint is written from the integer form

    def write(folder: Path) -> None:
        loaded = session.loaded
        if quantized:
            from kick_checks.export.gptq_export import check_layers_exportable, write_checkpoint

            check_layers_exportable(loaded.model, session.settings.spec)
            write_checkpoint(loaded, session.steps[-1][1].quantized_layers, session.settings.spec, folder)
        else:
            loaded.model.save_pretrained(folder)
            loaded.tokenizer.save_pretrained(folder)

    def release() -> None:
        if session.device != "map":
            session.loaded.model.to("cpu")
            torch.cuda.empty_cache()

    gpus = torch.cuda.device_count() if session.device == "map" else 1
    scratch = (session.settings.cache_dir or None)
    return VllmBackend(write, dtype=session.dtype, quantized=quantized, gpus=gpus, release=release,
                       scratch=Path(scratch) / "vllm" if scratch else None)
