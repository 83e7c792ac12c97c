"""Compression time, peak memory, achieved sparsity and perplexity of each built-in method on the default model.

    python bench/compression.py [--model smollm2-135m] [--dtype bfloat16] [--samples 128] [--seqlen 256]

Each method runs in its own process (so peak RSS is its own) on the same calibration windows, and prints one
JSON line; the parent prints a table. Perplexity on the bundled text stands in for quality, so methods can be
compared like for like. bench/compression_vs_llmcompressor.py compares Wanda, SparseGPT and GPTQ with llm-compressor.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

METHODS = [
    ("magnitude", {"sparsity": 0.5}),
    ("wanda", {"sparsity": 0.5}),
    ("sparsegpt", {"sparsity": 0.5}),
    ("gptq", {"bits": 4}),
    ("rtn", {"bits": 4}),
]


def run_one(model: str, dtype: str, method: str, options: dict, samples: int, seqlen: int) -> dict:
    from compressors import get_compressor, measure_sparsity
    from compressors.spec import build_spec
    from kick_checks.model.calibration import calibration_tokens
    from kick_checks.model.loading import load_model, resolve_model
    from kick_checks.tasks import TaskOptions, get_task

    loaded = load_model(resolve_model(model), dtype=dtype, device="cpu")
    spec = build_spec(method=method, calib_samples=samples, calib_seqlen=seqlen, **options)
    compressor = get_compressor(method)
    calibration = None
    if getattr(compressor, "needs_calibration", True):
        calibration = calibration_tokens(loaded.tokenizer, samples, seqlen, 0)
    started = time.perf_counter()
    compressor(loaded.model, spec, calibration)
    seconds = time.perf_counter() - started
    perplexity = get_task("perplexity").run(loaded.model, loaded.tokenizer, TaskOptions()).score
    return {
        "method": spec.label(),
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "sparsity": round(measure_sparsity(loaded.model).sparsity, 4),
        "perplexity": round(perplexity, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        method, options = json.loads(args.one)
        print(json.dumps(run_one(args.model, args.dtype, method, options, args.samples, args.seqlen)))
        return
    rows = []
    for method, options in METHODS:
        command = [sys.executable, __file__, "--model", args.model, "--dtype", args.dtype, "--samples",
                   str(args.samples), "--seqlen", str(args.seqlen), "--one", json.dumps([method, options])]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.model} ({args.dtype}), calibration {args.samples} x {args.seqlen} tokens")
    print(f"{'method':28s} {'seconds':>8s} {'peak MB':>8s} {'sparsity':>9s} {'ppl':>8s}")
    for row in rows:
        print(f"{row['method']:28s} {row['seconds']:8.1f} {row['peak_rss_mb']:8d} {row['sparsity']:9.4f} "
              f"{row['perplexity']:8.3f}")


if __name__ == "__main__":
    main()
