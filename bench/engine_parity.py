"""Do two versions of kick-checks give the same answers? Every task's per-item predictions and scores, recorded
from one code version and compared with another's, item by item.

    python bench/engine_parity.py record before.json [--dtype float32] [--limit N] [--tasks factoid_qa,...]
    python bench/engine_parity.py compare before.json after.json

``record`` loads the default model (or ``--model``) in ``--dtype`` on the CPU and runs the tasks through
whichever ``kick_checks`` is first on ``sys.path``, so the same script records the code of another checkout:
``PYTHONPATH=/path/to/old/checkout python bench/engine_parity.py record old.json``. Tasks that need an LLM judge
are left out. ``compare`` prints, per task, how many items have the same prediction and the same score (exactly:
``==`` on the floats), lists those that differ and the fingerprints' ``decoding`` fields that changed, and exits
1 when any item differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def record(out: Path, model: str, dtype: str, limit: int | None, keys: list[str] | None) -> int:
    import torch

    import kick_checks
    from kick_checks.model.loading import load_model, resolve_model
    from kick_checks.tasks import TaskOptions, TaskSkipped, all_tasks

    loaded = load_model(resolve_model(model), dtype=dtype, device="cpu")
    document = {"kick_checks": str(Path(kick_checks.__file__).parent), "model": model, "dtype": dtype,
                "limit": limit, "threads": torch.get_num_threads(), "tasks": {}}
    for key, task in all_tasks().items():
        if keys and key not in keys:
            continue
        started = time.perf_counter()
        try:
            result = task.run(loaded.model, loaded.tokenizer, TaskOptions(limit=limit))
        except TaskSkipped as reason:
            print(f"{key}: skipped ({reason})")
            continue
        seconds = time.perf_counter() - started
        document["tasks"][key] = {"score": result.score, "seconds": seconds, "fingerprint": result.fingerprint,
                                  "items": [[item.id, item.prediction, item.score] for item in result.items]}
        print(f"{key}: {result.metric.name} {result.score:.4f} on {result.n} items in {seconds:.1f}s", flush=True)
    Path(out).write_text(json.dumps(document, indent=1))
    return 0


def compare(before_path: Path, after_path: Path) -> int:
    before, after = json.loads(Path(before_path).read_text()), json.loads(Path(after_path).read_text())
    print(f"before: {before['kick_checks']} ({before['dtype']}); after: {after['kick_checks']} ({after['dtype']})")
    differing = 0
    for key in sorted(set(before["tasks"]) | set(after["tasks"])):
        if key not in before["tasks"] or key not in after["tasks"]:
            print(f"{key}: only in {'after' if key in after['tasks'] else 'before'}")
            differing += 1
            continue
        old, new = before["tasks"][key], after["tasks"][key]
        old_items = {item_id: (prediction, score) for item_id, prediction, score in old["items"]}
        new_items = {item_id: (prediction, score) for item_id, prediction, score in new["items"]}
        changed = [item_id for item_id in old_items if new_items.get(item_id) != old_items[item_id]]
        changed += [item_id for item_id in new_items if item_id not in old_items]
        old_decoding, new_decoding = old["fingerprint"].get("decoding", {}), new["fingerprint"].get("decoding", {})
        fields = sorted(name for name in set(old_decoding) | set(new_decoding)
                        if old_decoding.get(name) != new_decoding.get(name))
        speed = old["seconds"] / new["seconds"] if new["seconds"] else float("nan")
        moved = "; ".join(f"{name} {old_decoding.get(name)!r} -> {new_decoding.get(name)!r}" for name in fields)
        print(f"{key}: {len(old_items) - len(changed)}/{len(old_items)} items identical; score {old['score']:.6f} -> "
              f"{new['score']:.6f}; {old['seconds']:.1f}s -> {new['seconds']:.1f}s ({speed:.2f}x)"
              + (f"; decoding changed: {moved}" if moved else ""))
        for item_id in changed:
            print(f"  {item_id}: {old_items.get(item_id)!r}\n  {' ' * len(item_id)}  -> {new_items.get(item_id)!r}")
        differing += len(changed)
    print(f"{differing} items differ")
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record")
    recording.add_argument("out")
    recording.add_argument("--model", default="smollm2-135m")
    recording.add_argument("--dtype", default="float32")
    recording.add_argument("--limit", type=int, default=None)
    recording.add_argument("--tasks", default="", help="comma-separated task keys (default: all)")
    comparing = commands.add_parser("compare")
    comparing.add_argument("before")
    comparing.add_argument("after")
    args = parser.parse_args()
    if args.command == "record":
        keys = [key.strip() for key in args.tasks.split(",") if key.strip()] or None
        return record(Path(args.out), args.model, args.dtype, args.limit, keys)
    return compare(Path(args.before), Path(args.after))


if __name__ == "__main__":
    sys.exit(main())
