"""Evaluation speed and scores: kick-checks' engines against lm-evaluation-harness on the same model and items.

    python bench/evaluation_vs_lm_eval.py [--model smollm2-135m] [--dtype bfloat16] [--batch-size 16]

Both sides get the identical requests, built by our tasks from the bundled sets:
- multiple choice (240 items, 960 options, 5-shot prefixes): log-likelihood of each option. Ours reuses the
  key-value cache of each subject's shared few-shot prefix; lm-eval's HFLM.loglikelihood recomputes every
  context. The option with the best log-likelihood per character wins on both sides.
- factoid QA (239 prompts): greedy generation up to 16 tokens, stopping at a newline (our batched generation
  with stop strings; lm-eval's HFLM.generate_until), scored by our exact match.
The model is loaded once and handed to lm-eval's HFLM, so loading costs nothing on either side. Printed: items/s,
the ratio, the score of each side and on how many items the two disagree. lm-eval is an optional bench
dependency (pip install lm-eval); without it the benchmark says so and exits.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time


def _ours_multiple_choice(task, loaded, groups, batch_size) -> tuple[float, list[int]]:
    from kick_checks.likelihood import continuation_likelihoods

    started = time.perf_counter()
    chosen = []
    for group in groups:
        likelihoods = continuation_likelihoods(loaded.model, loaded.tokenizer, group.prefix, group.requests,
                                               batch_size=batch_size)
        position = 0
        for item in group.items:
            logprobs = [option.logprob for option in likelihoods[position : position + len(item.choices)]]
            position += len(item.choices)
            chosen.append(task.chosen_option(item, logprobs))
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
            chosen.append(task.chosen_option(item, logprobs))
    return seconds, chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if importlib.util.find_spec("lm_eval") is None:
        print("lm-evaluation-harness is not installed: pip install lm-eval (skipping this benchmark)")
        return 0
    import lm_eval
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from kick_checks.generation import greedy_generate
    from kick_checks.models import load_model, resolve_model
    from kick_checks.scoring import exact_match, first_answer_line
    from kick_checks.tasks import TaskOptions, get_task
    from kick_checks.tasks.base import load_rows
    from kick_checks.tasks.factoid_qa import SHOTS, qa_items
    from kick_checks.tasks.qa import build_prompt

    loaded = load_model(resolve_model(args.model), dtype=args.dtype, device="cpu")
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=args.batch_size, device="cpu",
              dtype=args.dtype)
    print(f"model {args.model} ({args.dtype}), batch size {args.batch_size}, lm-eval {lm_eval.__version__}")
    rows = []

    task = get_task("multiple_choice")
    items, dev_shots, _ = task.load(TaskOptions())
    groups = task.subject_groups(loaded.model, loaded.tokenizer, items, dev_shots)
    answers = [item.answer for group in groups for item in group.items]
    ours_seconds, ours = _ours_multiple_choice(task, loaded, groups, args.batch_size)
    theirs_seconds, theirs = _lm_eval_multiple_choice(task, lm, groups)
    rows.append(("multiple_choice (5-shot, 4 options)", len(answers), ours_seconds, theirs_seconds,
                 sum(a == b for a, b in zip(ours, answers)) / len(answers),
                 sum(a == b for a, b in zip(theirs, answers)) / len(answers),
                 sum(a != b for a, b in zip(ours, theirs))))

    factoid = get_task("factoid_qa")
    data = load_rows(factoid.data_name, TaskOptions(), factoid.bundled_file, ("id", "question", "answers"))
    qa = qa_items(data.rows)
    prompts = [build_prompt(item, SHOTS, False) for item in qa]
    decoding = factoid.engine.decoding
    started = time.perf_counter()
    ours_text = greedy_generate(loaded.model, loaded.tokenizer, prompts, max_new_tokens=decoding.max_new_tokens,
                                stop=decoding.stop, batch_size=args.batch_size)
    ours_seconds = time.perf_counter() - started
    instances = [Instance("generate_until", doc={}, idx=0, arguments=(
        prompt, {"until": list(decoding.stop), "max_gen_toks": decoding.max_new_tokens, "do_sample": False}))
        for prompt in prompts]
    started = time.perf_counter()
    theirs_text = lm.generate_until(instances)
    theirs_seconds = time.perf_counter() - started

    def scores(texts):
        return [float(exact_match(first_answer_line(text), list(item.answers))) for text, item in zip(texts, qa)]

    ours_scores, theirs_scores = scores(ours_text), scores(theirs_text)
    rows.append(("factoid_qa (greedy, 16 tokens)", len(qa), ours_seconds, theirs_seconds,
                 sum(ours_scores) / len(qa), sum(theirs_scores) / len(qa),
                 sum(first_answer_line(a) != first_answer_line(b) for a, b in zip(ours_text, theirs_text))))

    print()
    print("| task | items | kick-checks items/s | lm-eval items/s | speed-up | kick-checks score | lm-eval score "
          "| answers that differ |")
    print("|---|---|---|---|---|---|---|---|")
    for name, count, ours_s, theirs_s, ours_score, theirs_score, differ in rows:
        print(f"| {name} | {count} | {count / ours_s:.1f} | {count / theirs_s:.1f} | {theirs_s / ours_s:.2f}x "
              f"| {ours_score:.3f} | {theirs_score:.3f} | {differ} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
