"""Synthetic kick JSON reports in today's format, for the experiment store, comparison and dashboard tests and for
``bench/experiments.py``: a seeded draw of per-item outcomes around a chosen accuracy, plus efficiency and
divergence sections shaped as a run writes them."""

from __future__ import annotations

import json
import random
from pathlib import Path

MODEL = {"alias": "toy", "source": "local", "name": "toy-model", "sha256": "ab" * 32, "dtype": "bfloat16"}
CATEGORIES = ("geography", "history", "science")
FINGERPRINT = {"task_data": "cd" * 32, "data_source": "toy.jsonl", "prompt_version": "toy-1",
               "decoding": {"greedy": True}}


def item(index: int, score: float, prediction: str) -> dict:
    return {"id": f"q{index:03d}", "score": score, "prediction": prediction,
            "category": CATEGORIES[index % len(CATEGORIES)], "question": f"Question number {index}?",
            "gold": f"answer {index}"}


def outcomes(accuracy: float, n: int, seed: int, wrong: tuple[int, ...] = (), right: tuple[int, ...] = ()) -> list:
    """``n`` items right with probability ``accuracy``; ``wrong`` and ``right`` force some items."""
    draw = random.Random(seed)
    rows = []
    for index in range(n):
        correct = index in right or (index not in wrong and draw.random() < accuracy)
        rows.append(item(index, 1.0 if correct else 0.0, f"answer {index}" if correct else f"wrong {index}"))
    return rows


def task_entry(task: str, items: list[dict], dense: list[dict], fingerprint: dict | None = None) -> dict:
    dense_by_id = {row["id"]: row for row in dense}
    shared = [row for row in items if row["id"] in dense_by_id]
    score = sum(row["score"] for row in items) / len(items)
    dense_score = sum(dense_by_id[row["id"]]["score"] for row in shared) / len(shared)
    return {
        "task": task, "verdict": "fail" if score < dense_score * 0.95 else "pass", "metric": "exact_match",
        "higher_is_better": True, "dense": dense_score, "compressed": score,
        "relative_loss": (dense_score - score) / dense_score if dense_score else 0.0, "n": len(shared),
        "lost": [row["id"] for row in shared if row["score"] < dense_by_id[row["id"]]["score"]],
        "gained": sum(1 for row in shared if row["score"] > dense_by_id[row["id"]]["score"]),
        "baseline": "", "categories": {}, "tags": ["knowledge"],
        "result": {"task": task, "metric": "exact_match", "higher_is_better": True, "statistic": "mean",
                   "score": score, "n": len(items), "fingerprint": fingerprint or FINGERPRINT, "items": items},
    }


def report(spec: dict, items: dict[str, list[dict]], dense: dict[str, list[dict]], *, model: dict | None = None,
           size: int | None = 1_000_000, blocks: list[float] | None = None, parent: dict | None = None) -> dict:
    spec = {"method": "wanda", "sparsity": 0.0, "pattern": "unstructured", "calib_samples": 128, "calib_seqlen": 256,
            "calib_seed": 0, "bits": None, "group_size": 128, "symmetric": True, "act_order": False,
            "sequential": "layer", **spec}
    document = {
        "kick_checks_version": "0.1.0", "created": "2026-12-03T00:00:00+00:00",
        "environment": {"device": "cpu"}, "model": model or MODEL, "spec": spec, "judge_model": None,
        "compression": {"sparsity": spec["sparsity"], "numel": 1000, "zeros": int(1000 * spec["sparsity"]),
                        "seconds": 1.0, "layers": [{"name": "layers.0.mlp.up_proj", "numel": 1000,
                                                    "zeros": int(1000 * spec["sparsity"]),
                                                    "sparsity": spec["sparsity"]}]},
        "tasks": [task_entry(task, rows, dense[task]) for task, rows in items.items()],
        "parent": parent or {"label": "dense", "spec": None},
        "efficiency": None if size is None else {
            "storage": {"bytes": size, "dense_bytes": 2_000_000, "ratio": size / 2_000_000, "stored_as": "bitmap",
                        "format": "kept values at 16 bits + 1 bit per weight"},
            "throughput": {"prefill_tokens_per_s": 900.0, "decode_tokens_per_s": 40.0, "device": "cpu"},
        },
        "divergence": None if blocks is None else {
            "blocks": [{"block": i, "relative_difference": value, "cosine": 1 - value, "added": value - (
                blocks[i - 1] if i else 0.0)} for i, value in enumerate(blocks)],
            "flagged_block": max(range(len(blocks)), key=lambda i: blocks[i] - (blocks[i - 1] if i else 0.0)),
            "kl": {"mean": blocks[-1], "max": blocks[-1], "same_next_token": 0.5}, "layers": [],
            "flagged_layer": None,
        },
    }
    from compressors.spec import CompressionSpec, parse_pattern

    document["spec_label"] = CompressionSpec(**{**spec, "pattern": parse_pattern(spec["pattern"])}).label()
    return document


def write(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def sweep_folder(folder: Path, runs: int, items_per_task: int = 100, seed: int = 0) -> list[Path]:
    """``runs`` reports of one toy model (methods x sparsities x seeds) and the dense baseline they share."""
    dense = {task: outcomes(0.7, items_per_task, seed) for task in ("factoid_qa", "retrieval_qa.closed_book")}
    methods = ("magnitude", "wanda", "sparsegpt")
    paths = []
    for index in range(runs):
        method, sparsity = methods[index % 3], round(0.1 + 0.1 * ((index // 3) % 7), 1)
        accuracy = max(0.05, 0.7 - sparsity * (1.4 - 0.2 * (index % 3)))
        items = {task: outcomes(accuracy, items_per_task, seed + index + 1) for task in dense}
        paths.append(write(folder / f"{method}-s{int(sparsity * 100):02d}-{index:04d}.json",
                           report({"method": method, "sparsity": sparsity, "calib_seed": index}, items, dense,
                                  size=int(2_000_000 * (1 - sparsity / 2)),
                                  blocks=[sparsity * (1 + block) / 10 for block in range(6)])))
    return paths
