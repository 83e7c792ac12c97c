"""Knowledge recovery on the default model: how much of what compression lost does each strategy bring back?

    python bench/recovery_finding.py --out /tmp/recovery dense            # the dense side, once
    python bench/recovery_finding.py --out /tmp/recovery spec wanda:0.3   # one compressed model (repeat per spec)
    python bench/recovery_finding.py --out /tmp/recovery table            # every spec's table, and the totals

The dense model is evaluated once (plainly and under each prompting strategy) and shared by every compressed
model, since it does not change; each spec then runs ``kick recover``'s comparison (:mod:`kick_checks.recovery.
comparison`) and writes its JSON. A spec is ``METHOD:SPARSITY`` for a pruner or ``gptq:BITS`` for quantization.
Prints the machine's load average with every figure: the speed ratios (prompt and idp recovery time over the
plain evaluation of the same compressed model) are only comparable within one run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kick_checks.recovery.comparison import DenseSide, evaluate_dense, run_comparison, write_report  # noqa: E402
from kick_checks.settings import build_settings  # noqa: E402


def settings_for(args: argparse.Namespace, spec: str | None):
    options: dict = {"model": args.model, "dtype": args.dtype, "device": "cpu", "limit": args.limit,
                     "idp_rule": args.idp_rule, "calib_samples": args.calib_samples}
    if spec:
        method, _, value = spec.partition(":")
        if method in ("gptq", "rtn"):
            options.update(method=method, bits=int(value))
        else:
            options.update(method=method, sparsity=float(value))
    return build_settings(options, {}, ROOT)


def load() -> str:
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--limit", type=int, default=None, help="items per task (default: all)")
    parser.add_argument("--idp-rule", default="similarity", choices=["similarity", "fit", "confidence"])
    parser.add_argument("--calib-samples", type=int, default=None, help="calibration windows (default the suite's)")
    parser.add_argument("--strategies", default="prompt,idp,lora")
    parser.add_argument("stage", choices=["dense", "spec", "table"])
    parser.add_argument("spec", nargs="?", help="METHOD:SPARSITY or gptq:BITS (stage spec)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    strategies = [name for name in args.strategies.split(",") if name]
    dense_file = args.out / "dense.json"
    if args.stage == "dense":
        print(f"dense, {load()}", flush=True)
        dense = evaluate_dense(settings_for(args, "wanda:0.5"), ROOT, strategies=strategies)
        partial = dense_file.with_suffix(".partial")
        partial.write_text(json.dumps(dense.to_dict()) + "\n")
        partial.replace(dense_file)
        for key, result in dense.plain.items():
            print(f"{key}: dense {result.score:.3f} on {result.n} items in {result.seconds:.0f}s; under "
                  + ", ".join(f"{name} {score:.3f}" for name, score in dense.with_strategy.get(key, {}).items()))
        print(f"dense side in {dense.seconds:.0f}s, {load()}")
        return 0
    if args.stage == "spec":
        def dense() -> DenseSide:  # the dense stage may run beside this one: wait for its file
            while not dense_file.is_file():
                time.sleep(10)
            return DenseSide.from_dict(json.loads(dense_file.read_text()))

        started = time.perf_counter()
        print(f"{args.spec}, {load()}", flush=True)
        report = run_comparison(settings_for(args, args.spec), ROOT, None, strategies, dense=dense)
        suffix = "" if args.strategies == "prompt,idp,lora" else f"-{args.strategies.replace(',', '-')}-{args.idp_rule}"
        write_report(report, args.out / f"{args.spec.replace(':', '-')}{suffix}.json")
        print(report.table())
        plain = report.seconds.get("compressed", 0.0)
        for name in ("prompt", "idp"):
            if name in report.seconds and plain:
                print(f"{name}: {report.seconds[name]:.0f}s against the plain evaluation's {plain:.0f}s "
                      f"= {report.seconds[name] / plain:.2f}x")
        print(f"spec done in {time.perf_counter() - started:.0f}s, {load()}")
        return 0
    print("| compression | strategy | lost | recovered (95% CI) | forgotten | broken | gained | mean score: dense -> "
          "compressed | under strategy: dense -> compressed | extra params | seconds (x plain evaluation) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(args.out.glob("*.json")):
        if path.name == "dense.json":
            continue
        document = json.loads(path.read_text())
        for strategy, entry in document["totals"].items():
            rows = [row for row in document["rows"] if row["strategy"] == strategy]
            low, high = entry["recovered_interval"]
            fraction = entry["recovered_fraction"]
            share = "-" if fraction is None else f"{entry['recovered']} ({fraction:.0%}, {low:.0%}-{high:.0%})"

            def mean(key: str, rows: list[dict] = rows) -> float:
                values = [row[key] if row[key] is not None else row["dense"] for row in rows]
                return sum(values) / len(values)

            rule = rows[0]["cost"].get("rule")
            label = f"{strategy} ({rule})" if rule else strategy
            seconds = document["seconds"].get(strategy)
            plain = document["seconds"].get("compressed")
            ratio = f"{seconds:.0f} s ({seconds / plain:.1f}x)" if seconds and plain else "-"
            print(f"| {document['spec_label']} | {label} | {entry['lost']} | {share} | "
                  f"{entry['lost'] - entry['recovered']} | {entry['broken']} | {entry['gained']} | "
                  f"{mean('dense'):.3f} -> {mean('compressed'):.3f} | {mean('dense_with_strategy'):.3f} -> "
                  f"{mean('compressed_with_strategy'):.3f} | {rows[0]['cost']['extra_parameters']:,} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
