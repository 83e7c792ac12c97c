"""Evaluation speed and scores: kick-checks' engines against lm-evaluation-harness on the same model and items.

    python bench/evaluation_vs_lm_eval.py [--model smollm2-135m] [--dtype float32] [--batch-size 16]
                                          [--ours-batch-size N] [--tasks multiple_choice,...] [--threads N]

lm-eval runs at ``--batch-size`` (default 16); our side at each task's own default, as ``pytest -m kick`` runs
it (32 rows for QA, 16 contexts for option scoring, 48 rows for the chat tasks), or at ``--ours-batch-size``.

Both sides get the identical requests, built by our tasks from the bundled sets, one task after the other (ours,
then lm-eval's, then the next task), so that both see the same machine:
- multiple choice (240 items, 960 options, 5-shot prefixes): log-likelihood of each option. Ours runs each
  subject's few-shot prefix once and each question once, and each option only its own tokens from those
  key-value caches; lm-eval's HFLM.loglikelihood recomputes the whole context for every option. The option
  with the best log-likelihood per character wins on both sides.
- factoid QA (239 prompts, 16 tokens), closed-book and open-book retrieval QA (160 prompts, the second with
  passages, 24 tokens): greedy generation stopping at a newline, scored by our exact match;
- summarization (32 chat-template prompts with whole articles, 128 tokens, no stop string but the end token)
  and instruction following (the 2-turn conversations, 192 tokens a reply, each side's own first reply in its
  history), scored by our ROUGE-L against the references.
  Ours: continuous batching over the shared prefix; lm-eval: HFLM.generate_until (transformers' generate).
- perplexity (the bundled text in windows of 2048 tokens): ours against the forward ceiling, the same windows
  through the model's forward pass alone (logits of every position, no loss), and through its decoder body
  alone (no output layer); lm-eval is not involved.
The model is loaded once and handed to lm-eval's HFLM, so loading costs nothing on either side. Printed: seconds,
items/s, the ratio, the score of each side and on how many items the two disagree, and the totals. lm-eval is an
optional bench dependency (pip install lm-eval==0.4.13); without it the generation rows are skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

TASKS = ("multiple_choice", "factoid_qa", "retrieval_qa.closed_book", "retrieval_qa.open_book", "summarization",
         "instruction_following", "perplexity")


def _ours_multiple_choice(task, loaded, groups, batch_size) -> tuple[float, list[int]]:
    from kick_checks.engine.likelihood import continuation_likelihoods

    started = time.perf_counter()
    chosen = []
    for group in groups:
        likelihoods = continuation_likelihoods(loaded.model, loaded.tokenizer, group.prefix, group.requests,
                                               batch_size=batch_size)
        position = 0
        for item in group.items:
            logprobs = [option.logprob for option in likelihoods[position : position + len(item.choices)]]
            position += len(item.choices)
            chosen.append(task.top_options(item, logprobs)[0])
    return time.perf_counter() - started, chosen


def _lm_eval_multiple_choice(task, lm, groups) -> tuple[float, list[int]]:
    from lm_eval.api.instance import Instance

    instances = [
        Instance("loglikelihood", doc={}, arguments=(group.prefix + request.context, request.continuation), idx=index)
        for group in groups for index, request in enumerate(group.requests)
    ]
    started = time.perf_counter()
    results = lm.loglikelihood(instances)
    seconds = time.perf_counter() - started
    chosen, position = [], 0
    for group in groups:
        for item in group.items:
            logprobs = [logprob for logprob, _ in results[position : position + len(item.choices)]]
            position += len(item.choices)
            chosen.append(task.top_options(item, logprobs)[0])
    return seconds, chosen


def multiple_choice_row(loaded, lm, batch_size):
    from kick_checks.tasks import TaskOptions, get_task

    task = get_task("multiple_choice")
    items, dev_shots, _ = task.load(TaskOptions())
    groups = task.subject_groups(loaded.model, loaded.tokenizer, items, dev_shots)
    answers = [item.answer for group in groups for item in group.items]
    ours_seconds, ours = _ours_multiple_choice(task, loaded, groups, batch_size or task.batch_size)
    theirs_seconds, theirs = _lm_eval_multiple_choice(task, lm, groups)
    return ("multiple_choice (5-shot, 4 options)", len(answers), ours_seconds, theirs_seconds,
            sum(a == b for a, b in zip(ours, answers)) / len(answers),
            sum(a == b for a, b in zip(theirs, answers)) / len(answers), sum(a != b for a, b in zip(ours, theirs)))


def _ours_generate(loaded, prompts, max_new_tokens, stop, batch_size, add_special_tokens=True):
    """Our greedy texts for ``prompts`` and the seconds they took."""
    from kick_checks.engine.generation import greedy_generate

    started = time.perf_counter()
    texts = greedy_generate(loaded.model, loaded.tokenizer, prompts, max_new_tokens=max_new_tokens, stop=stop,
                            batch_size=batch_size, add_special_tokens=add_special_tokens)
    return texts, time.perf_counter() - started


def _peer_generate(lm, prompts, max_new_tokens, stop):
    """lm-eval's greedy texts for ``prompts`` (HFLM.generate_until) and the seconds they took."""
    from lm_eval.api.instance import Instance

    instances = [Instance("generate_until", doc={}, idx=0, arguments=(
        prompt, {"until": list(stop), "max_gen_toks": max_new_tokens, "do_sample": False})) for prompt in prompts]
    started = time.perf_counter()
    texts = lm.generate_until(instances)
    return texts, time.perf_counter() - started


def qa_row(key, loaded, lm, batch_size):
    from kick_checks.tasks import TaskOptions, get_task
    from kick_checks.tasks.data import load_rows
    from kick_checks.tasks.qa import build_prompt, qa_items
    from kick_checks.tasks.scoring import exact_match, first_answer_line

    task = get_task(key)
    items = qa_items(load_rows(task, TaskOptions()).rows)
    engine, decoding = task.engine, task.engine.decoding
    prompts = [build_prompt(item, engine.shots, engine.with_passage) for item in items]
    ours, ours_s = _ours_generate(loaded, prompts, decoding.max_new_tokens, decoding.stop,
                                  batch_size or decoding.batch_size)
    theirs, theirs_s = _peer_generate(lm, prompts, decoding.max_new_tokens, decoding.stop)

    def score(texts):
        return [float(exact_match(first_answer_line(text), list(item.answers))) for text, item in zip(texts, items)]

    differ = sum(first_answer_line(a) != first_answer_line(b) for a, b in zip(ours, theirs))
    return (f"{key} (greedy, {decoding.max_new_tokens} tokens)", len(prompts), ours_s, theirs_s,
            sum(score(ours)) / len(prompts), sum(score(theirs)) / len(prompts), differ)


def summarization_row(loaded, lm, batch_size):
    from kick_checks.tasks import TaskOptions, get_task
    from kick_checks.tasks.chat import chat_prompt
    from kick_checks.tasks.data import load_rows
    from kick_checks.tasks.scoring import rouge_l
    from kick_checks.tasks.summarization import INSTRUCTION

    task = get_task("summarization")
    rows = load_rows(task, TaskOptions()).rows
    prompts = [chat_prompt(loaded.tokenizer, [{"role": "user", "content": INSTRUCTION + row["article"].strip()}])
               for row in rows]
    tokens = task.decoding.max_new_tokens
    ours, ours_s = _ours_generate(loaded, prompts, tokens, (), batch_size or task.decoding.batch_size,
                                  add_special_tokens=False)
    theirs, theirs_s = _peer_generate(lm, prompts, tokens, ())

    def score(texts):
        return sum(rouge_l(text.strip(), row["summary"]) for text, row in zip(texts, rows)) / len(rows)

    return (f"summarization (chat, {tokens} tokens)", len(prompts), ours_s, theirs_s, score(ours), score(theirs),
            sum(a.strip() != b.strip() for a, b in zip(ours, theirs)))


def instruction_row(loaded, lm, batch_size):
    """Every turn of every conversation, turn by turn, each side continuing its own history."""
    from kick_checks.tasks import TaskOptions, get_task
    from kick_checks.tasks.chat import chat_prompt
    from kick_checks.tasks.data import load_rows
    from kick_checks.tasks.scoring import rouge_l

    task = get_task("instruction_following")
    rows = load_rows(task, TaskOptions()).rows
    tokens = task.decoding.max_new_tokens
    histories = {"ours": [[] for _ in rows], "lm-eval": [[] for _ in rows]}
    seconds = {"ours": 0.0, "lm-eval": 0.0}
    scores: dict[str, list[float]] = {"ours": [], "lm-eval": []}
    differ = turns = 0
    for turn in range(max(len(row["turns"]) for row in rows)):
        active = [index for index, row in enumerate(rows) if turn < len(row["turns"])]
        replies = {}
        for side, side_histories in histories.items():
            for index in active:
                side_histories[index].append({"role": "user", "content": rows[index]["turns"][turn]})
            prompts = [chat_prompt(loaded.tokenizer, side_histories[index]) for index in active]
            texts, spent = (_ours_generate(loaded, prompts, tokens, (), batch_size or task.decoding.batch_size,
                                           add_special_tokens=False)
                            if side == "ours" else _peer_generate(lm, prompts, tokens, ()))
            seconds[side] += spent
            replies[side] = [text.strip() for text in texts]
            for index, reply in zip(active, replies[side]):
                side_histories[index].append({"role": "assistant", "content": reply})
                references = rows[index].get("reference") or []
                if turn < len(references):
                    scores[side].append(rouge_l(reply, references[turn]))
        differ += sum(a != b for a, b in zip(replies["ours"], replies["lm-eval"]))
        turns += len(active)
    return (f"instruction_following (chat, every turn, {tokens} tokens)", turns, seconds["ours"], seconds["lm-eval"],
            sum(scores["ours"]) / max(len(scores["ours"]), 1),
            sum(scores["lm-eval"]) / max(len(scores["lm-eval"]), 1), differ)


def perplexity_rows(loaded) -> list[str]:
    """Our perplexity windows against the same windows through the bare forward pass (the ceiling)."""
    import torch

    from kick_checks.engine.backend import TRANSFORMERS
    from kick_checks.tasks import TaskOptions, get_task
    from kick_checks.tasks.data import load_text
    from kick_checks.tasks.perplexity import window_seqlen

    model, tokenizer = loaded.model, loaded.tokenizer
    text, _ = load_text(get_task("perplexity"), TaskOptions())
    seqlen = window_seqlen(model, None)
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    windows = [ids[index * seqlen : (index + 1) * seqlen] for index in range(len(ids) // seqlen)]
    tokens = seqlen * len(windows)

    def timed(run) -> float:
        started = time.perf_counter()
        with torch.no_grad():
            for window in windows:
                run(window[None, :])
        return time.perf_counter() - started

    ours_s = time.perf_counter()
    losses = TRANSFORMERS.window_losses(model, windows)
    ours_s = time.perf_counter() - ours_s
    logits_s = timed(lambda window: model(input_ids=window).logits)
    labels_s = timed(lambda window: model(input_ids=window, labels=window).loss)
    body_s = timed(lambda window: model.model(input_ids=window).last_hidden_state)
    perplexity = float(torch.tensor(losses).mean().exp())
    return [
        f"perplexity: {len(windows)} windows of {seqlen} tokens, perplexity {perplexity:.4f}",
        "| pass | seconds | tokens/s | share of the ceiling |",
        "|---|---|---|---|",
        f"| ours (loss of every window) | {ours_s:.1f} | {tokens / ours_s:.0f} | {logits_s / ours_s:.0%} |",
        f"| forward ceiling: logits of every position, no loss | {logits_s:.1f} | {tokens / logits_s:.0f} | 100% |",
        f"| transformers' loss (labels=, the path before) | {labels_s:.1f} | {tokens / labels_s:.0f} | "
        f"{logits_s / labels_s:.0%} |",
        f"| decoder body alone (no output layer) | {body_s:.1f} | {tokens / body_s:.0f} | "
        f"{logits_s / body_s:.0%} (for reference) |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch-size", type=int, default=16, help="lm-eval's batch size")
    parser.add_argument("--ours-batch-size", type=int, default=None,
                        help="our batch size for every task (default: each task's own)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    tasks = [key.strip() for key in args.tasks.split(",") if key.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown tasks {', '.join(unknown)}: choose from {', '.join(TASKS)}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from kick_checks.engine.generation import generation_engine
    from kick_checks.model.loading import load_model, resolve_model

    loaded = load_model(resolve_model(args.model), dtype=args.dtype, device="cpu")
    lm = None
    if importlib.util.find_spec("lm_eval") is None:
        print("lm-evaluation-harness is not installed: pip install lm-eval==0.4.13 (skipping its side)")
        tasks = [key for key in tasks if key == "perplexity"]
    else:
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=args.batch_size, device="cpu",
                  dtype=args.dtype)
        print(f"lm-eval {lm_eval.__version__}")
    ours = args.ours_batch_size or "each task's own"
    print(f"model {args.model} ({args.dtype}), lm-eval batch size {args.batch_size}, ours {ours}, "
          f"{torch.get_num_threads()} torch threads, engine {generation_engine(loaded.model)}")
    rows, lines = [], []
    for key in tasks:
        if key == "multiple_choice":
            rows.append(multiple_choice_row(loaded, lm, args.ours_batch_size))
        elif key.startswith(("factoid_qa", "retrieval_qa")):
            rows.append(qa_row(key, loaded, lm, args.ours_batch_size))
        elif key == "summarization":
            rows.append(summarization_row(loaded, lm, args.ours_batch_size))
        elif key == "instruction_following":
            rows.append(instruction_row(loaded, lm, args.ours_batch_size))
        else:
            lines = perplexity_rows(loaded)
        print(f"done: {key}", flush=True)

    if rows:
        print()
        print("| task | items | kick-checks s | lm-eval s | kick-checks items/s | lm-eval items/s | speed-up "
              "| kick-checks score | lm-eval score | answers that differ |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, count, ours_s, theirs_s, ours_score, theirs_score, differ in rows:
            print(f"| {name} | {count} | {ours_s:.1f} | {theirs_s:.1f} | {count / ours_s:.2f} | "
                  f"{count / theirs_s:.2f} | {theirs_s / ours_s:.2f}x | {ours_score:.3f} | {theirs_score:.3f} "
                  f"| {differ} |")
        count = sum(row[1] for row in rows)
        ours_s, theirs_s = sum(row[2] for row in rows), sum(row[3] for row in rows)
        print(f"| all of the above | {count} | {ours_s:.1f} | {theirs_s:.1f} | {count / ours_s:.2f} "
              f"| {count / theirs_s:.2f} | {theirs_s / ours_s:.2f}x | | | |")
    if lines:
        print()
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
