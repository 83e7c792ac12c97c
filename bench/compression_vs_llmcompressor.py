"""Compression time, peak memory and quality: our Wanda, SparseGPT and GPTQ against llm-compressor's modifiers,
on the same model, the same calibration windows and the same machine.

    python bench/compression_vs_llmcompressor.py [--peer-python PATH] [--dtype float32] [--samples 128]
        [--seqlen 256] [--methods wanda,sparsegpt,gptq,gptq-act-order] [--modes layer,block]

llm-compressor (`llmcompressor` on PyPI) is an optional bench dependency. It pins its own transformers, so it
may live in another virtual environment: ``--peer-python`` names that interpreter (default: this one); when it
cannot import llmcompressor the peer's rows are skipped with a message.

Every run is its own process (peak RSS is that run's own): it loads the model, compresses it on the calibration
token ids written by the parent (our bundled calibration text, seeded windows), times only the compression call,
and saves the compressed linear weights. The parent then measures both outputs the same way:
- achieved sparsity over the decoder blocks' linear layers;
- the layer reconstruction error: for every linear layer, ``tr(dW H dWᵀ) / tr(W H Wᵀ)`` with ``H = X Xᵀ`` from
  the dense model's inputs to that layer on the calibration windows (mean and median over the layers);
- perplexity on the bundled WikiText-layout text.
Each method runs in two like-for-like pairs, one per calibration order (``--modes``):
- ``layer``: every layer calibrated on the inputs of the model compressed so far, earlier layers of its own
  block included. Ours: the default, ``--kick-sequential layer``. llm-compressor: ``sequential_targets=["Linear"]``,
  which makes each linear layer its own subgraph of the sequential pipeline; the same algorithm.
- ``block``: every layer of a block calibrated on the dense block (the published Wanda and SparseGPT code).
  Ours: ``--kick-sequential block``. llm-compressor: its default, one decoder layer per subgraph.
The settings match: 50% unstructured sparsity for Wanda and SparseGPT (block 128, dampening 1%), GPTQ 4-bit
symmetric with group size 64 (576, the model width, is not divisible by 128), block 128, dampening 1%, no
act-order; then GPTQ with act-order (ours: dynamic, groups follow the permuted columns; llm-compressor's default
"static": columns permuted, groups fixed in the original order). The LM head and embeddings stay dense.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
METHODS = {
    "wanda": {"sparsity": 0.5},
    "sparsegpt": {"sparsity": 0.5},
    "gptq": {"bits": 4, "group_size": 64},
    "gptq-act-order": {"bits": 4, "group_size": 64, "act_order": True},
}


def _linear_weights(model) -> dict:
    import torch

    return {name: module.weight.detach().to(torch.float32, copy=True).cpu().contiguous()  # a copy, not a view
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}"}


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Unlike getrusage's ru_maxrss, which Linux carries over
    from the parent through fork and exec, it starts afresh in each worker."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or "unknown CPU"


def worker_ours(args) -> dict:
    import torch
    from safetensors.torch import save_file

    from compressors import get_compressor
    from compressors.spec import build_spec
    from kick_checks.model.loading import load_model, resolve_model

    torch.manual_seed(0)
    loaded = load_model(resolve_model(args.model), dtype=args.dtype, device="cpu")
    calibration = torch.load(args.ids)
    spec = build_spec(method=args.method.split("-")[0], calib_samples=calibration.shape[0],
                      calib_seqlen=calibration.shape[1], sequential=args.mode,
                      **METHODS[args.method])
    started = time.perf_counter()
    get_compressor(args.method.split("-")[0])(loaded.model, spec, calibration)
    seconds = time.perf_counter() - started
    save_file(_linear_weights(loaded.model), args.output)
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def worker_peer(args) -> dict:
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    ids = torch.load(args.ids)
    dataset = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    if args.method == "wanda":
        from llmcompressor.modifiers.pruning import WandaPruningModifier

        recipe = WandaPruningModifier(sparsity=0.5, mask_structure="0:0", targets=["Linear"], ignore=["lm_head"])
    elif args.method == "sparsegpt":
        from llmcompressor.modifiers.obcq import SparseGPTModifier

        recipe = SparseGPTModifier(sparsity=0.5, mask_structure="0:0", block_size=128, dampening_frac=0.01,
                                   targets=["Linear"], ignore=["lm_head"])
    else:
        from llmcompressor.modifiers.quantization import GPTQModifier

        recipe = GPTQModifier(
            config_groups={"group_0": {"targets": ["Linear"], "weights": {
                "num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 64}}},
            ignore=["lm_head"], block_size=128, dampening_frac=0.01,
            # llm-compressor's default is "static" act-order; plain gptq compares without it, like ours
            actorder="static" if args.method == "gptq-act-order" else None,
        )
    started = time.perf_counter()
    # "layer": each Linear is its own subgraph (calibrated, compressed, then propagated before the next one)
    targets = {"sequential_targets": ["Linear"]} if args.mode == "layer" else {}
    oneshot(model=model, tokenizer=tokenizer, dataset=dataset, recipe=recipe,
            num_calibration_samples=ids.shape[0], max_seq_length=ids.shape[1], shuffle_calibration_samples=False,
            **targets)
    seconds = time.perf_counter() - started
    weights = _linear_weights(model)
    if args.method.startswith("gptq"):  # store what the model computes with: the weights on their quantization grid
        from compressed_tensors.quantization.lifecycle.forward import fake_quantize

        for name, module in model.named_modules():
            if name in weights and hasattr(module, "weight_scale"):
                scheme = module.quantization_scheme.weights
                zero = getattr(module, "weight_zero_point", None)
                weights[name] = fake_quantize(module.weight.detach(), module.weight_scale, zero, scheme).float()
    save_file(weights, args.output)
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def _dense_hessians(loaded, calibration) -> dict:
    """The Hessian (``compressors.statistics.Hessian``, as our GPTQ and SparseGPT use) of every decoder-block
    linear layer's inputs in the dense model."""
    import torch

    from compressors.statistics import Hessian

    statistics, handles = {}, []
    for name, module in loaded.model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}":
            statistics[name] = Hessian(module.in_features)
            handles.append(module.register_forward_hook(
                lambda module, inputs, output, hessian=statistics[name]: hessian.add_batch(inputs[0])))
    with torch.no_grad():
        for start in range(0, calibration.shape[0], 8):
            loaded.model(calibration[start : start + 8])
    for handle in handles:
        handle.remove()
    return {name: hessian.matrix() for name, hessian in statistics.items()}


def _quality(loaded, dense: dict, hessians: dict, weights_file: str) -> dict:
    import statistics

    import torch
    from safetensors.torch import load_file

    from compressors.gptq import reconstruction_error
    from kick_checks.tasks import TaskOptions, get_task

    compressed = load_file(weights_file)
    errors, zeros, total = [], 0, 0
    for name, weight in compressed.items():
        errors.append(reconstruction_error(dense[name], weight, hessians[name]))
        zeros += int((weight == 0).sum())
        total += weight.numel()
    modules = dict(loaded.model.named_modules())
    with torch.no_grad():
        for name, weight in compressed.items():
            modules[name].weight.copy_(weight.to(modules[name].weight.dtype))
    perplexity = get_task("perplexity").run(loaded.model, loaded.tokenizer, TaskOptions()).score
    with torch.no_grad():
        for name, weight in dense.items():
            modules[name].weight.copy_(weight.to(modules[name].weight.dtype))
    return {"sparsity": zeros / total, "mean_error": statistics.fmean(errors),
            "median_error": statistics.median(errors), "perplexity": perplexity}


def _run(python: str, role: str, args, method: str, ids: Path, output: Path, model_dir: str) -> dict | str:
    command = [python, str(HERE), "--worker", role, "--method", method, "--ids", str(ids), "--output", str(output),
               "--model", args.model, "--model-dir", model_dir, "--dtype", args.dtype, "--mode", args.mode]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed: {tail[:200]}"
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--modes", default="layer,block", help="calibration orders to compare (layer, block)")
    parser.add_argument("--peer-python", default=sys.executable, help="an interpreter that can import llmcompressor")
    parser.add_argument("--worker", choices=["ours", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="layer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker_ours(args) if args.worker == "ours" else worker_peer(args)))
        return 0

    import torch

    from kick_checks.model.calibration import calibration_tokens
    from kick_checks.model.loading import load_model, resolve_model

    peer = subprocess.run([args.peer_python, "-c", "import llmcompressor; print(llmcompressor.__version__)"],
                          capture_output=True, text=True)
    peer_version = peer.stdout.strip().splitlines()[-1] if peer.returncode == 0 and peer.stdout.strip() else None
    if peer_version is None:
        print(f"llm-compressor cannot be imported by {args.peer_python}: pip install llmcompressor (in this or "
              "another environment, then --peer-python); its rows are skipped")
    loaded = load_model(resolve_model(args.model), dtype=args.dtype, device="cpu")
    model_dir = str(loaded.model.config._name_or_path)
    calibration = calibration_tokens(loaded.tokenizer, args.samples, args.seqlen, 0)
    dense = _linear_weights(loaded.model)
    hessians = _dense_hessians(loaded, calibration)
    print(f"model {args.model} ({args.dtype}) from {model_dir}; {args.samples} x {args.seqlen} calibration tokens; "
          f"llm-compressor {peer_version or 'absent'}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{_cpu_name()}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        ids = Path(folder) / "ids.pt"
        torch.save(calibration, ids)
        modes = [name.strip() for name in args.modes.split(",") if name.strip()]
        for method in [name.strip() for name in args.methods.split(",") if name.strip()]:
            for mode in modes:
                args.mode = mode
                peer_setting = 'sequential_targets=["Linear"]' if mode == "layer" else "default"
                for tool, role, python in (("kick-checks", "ours", sys.executable),
                                           (f"llm-compressor {peer_version} ({peer_setting})", "peer",
                                            args.peer_python)):
                    if role == "peer" and peer_version is None:
                        continue
                    label = f"{method} {mode}-sequential"
                    output = Path(folder) / f"{method}-{mode}-{role}.safetensors"
                    result = _run(python, role, args, method, ids, output, model_dir)
                    if isinstance(result, str):
                        rows.append((label, tool, result))
                        print(f"{label} / {tool}: {result}", flush=True)
                        continue
                    result.update(_quality(loaded, dense, hessians, str(output)))
                    rows.append((label, tool, result))
                    print(f"{label} / {tool}: {json.dumps({k: round(v, 4) for k, v in result.items()})}",
                          flush=True)

    print()
    print("| method | tool | seconds | peak RSS MB | sparsity | layer error mean | layer error median | perplexity |")
    print("|---|---|---|---|---|---|---|---|")
    for method, tool, result in rows:
        if isinstance(result, str):
            print(f"| {method} | {tool} | {result} |  |  |  |  |  |")
            continue
        print(f"| {method} | {tool} | {result['seconds']:.1f} | {result['peak_rss_mb']:.0f} | "
              f"{result['sparsity']:.4f} | {result['mean_error']:.4f} | {result['median_error']:.4f} | "
              f"{result['perplexity']:.2f} |")
    by_method: dict[str, list] = {}
    for method, _tool, result in rows:
        if not isinstance(result, str):
            by_method.setdefault(method, []).append(result)
    print()
    for method, results in by_method.items():
        if len(results) == 2:
            ours, theirs = results
            print(f"{method}: time ratio kick-checks / llm-compressor = {ours['seconds'] / theirs['seconds']:.2f}; "
                  f"mean layer error ratio = {ours['mean_error'] / max(theirs['mean_error'], 1e-12):.2f}")
    for method in dict.fromkeys(label.split()[0] for label in by_method):  # each tool at its own default
        ours, theirs = by_method.get(f"{method} layer-sequential"), by_method.get(f"{method} block-sequential")
        if ours and theirs and len(ours) == 2 and len(theirs) == 2:
            print(f"{method}, defaults (ours layer-sequential, llm-compressor per decoder layer): time ratio "
                  f"{ours[0]['seconds'] / theirs[1]['seconds']:.2f}, mean layer error ratio "
                  f"{ours[0]['mean_error'] / max(theirs[1]['mean_error'], 1e-12):.2f}, perplexity "
                  f"{ours[0]['perplexity']:.2f} vs {theirs[1]['perplexity']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
