"""Evaluation speed and scores: kick-checks' engines against lm-evaluation-harness on the same model and items.

    python bench/evaluation_vs_lm_eval.py [--model smollm2-135m] [--dtype bfloat16] [--batch-size 16]

Both sides get the identical requests, built by our tasks from the bundled sets:
- multiple choice (240 items, 960 options, 5-shot prefixes): log-likelihood of each option. Ours runs each
  subject's few-shot prefix once and each question once, and each option only its own tokens from those
  key-value caches; lm-eval's HFLM.loglikelihood recomputes the whole context for every option. The option
  with the best log-likelihood per character wins on both sides.
- factoid QA (239 prompts, 16 tokens) and open-book retrieval QA (160 prompts with passages, 24 tokens): greedy
  generation stopping at a newline, scored by our exact match;
- summarization (32 chat-template prompts with whole articles, 128 tokens, no stop string but the end token),
  scored by our ROUGE-L against the reference.
  Ours: continuous batching over the shared prefix; lm-eval: HFLM.generate_until (transformers' generate).
The model is loaded once and handed to lm-eval's HFLM, so loading costs nothing on either side. Printed: seconds,
items/s, the ratio, the score of each side and on how many items the two disagree, and the totals. lm-eval is an
optional bench dependency (pip install lm-eval); without it the benchmark says so and exits.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time


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


def _generation_row(name, loaded, lm, prompts, max_new_tokens, stop, batch_size, score, add_special_tokens=True):
    from lm_eval.api.instance import Instance

    from kick_checks.engine.generation import greedy_generate

    started = time.perf_counter()
    ours = greedy_generate(loaded.model, loaded.tokenizer, prompts, max_new_tokens=max_new_tokens, stop=stop,
                           batch_size=batch_size, add_special_tokens=add_special_tokens)
    ours_seconds = time.perf_counter() - started
    instances = [Instance("generate_until", doc={}, idx=0, arguments=(
        prompt, {"until": list(stop), "max_gen_toks": max_new_tokens, "do_sample": False})) for prompt in prompts]
    started = time.perf_counter()
    theirs = lm.generate_until(instances)
    theirs_seconds = time.perf_counter() - started
    ours_scores, theirs_scores = score(ours), score(theirs)
    differ = sum(a.strip() != b.strip() for a, b in zip(ours, theirs))
    return (name, len(prompts), ours_seconds, theirs_seconds, sum(ours_scores) / len(prompts),
            sum(theirs_scores) / len(prompts), differ)


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
    from lm_eval.models.huggingface import HFLM

    from kick_checks.model.loading import load_model, resolve_model
    from kick_checks.tasks import TaskOptions, get_task
    from kick_checks.tasks.chat import chat_prompt
    from kick_checks.tasks.data import load_rows
    from kick_checks.tasks.factoid_qa import SHOTS
    from kick_checks.tasks.qa import build_prompt, qa_items
    from kick_checks.tasks.retrieval_qa import SHOTS as RETRIEVAL_SHOTS
    from kick_checks.tasks.scoring import exact_match, first_answer_line
    from kick_checks.tasks.summarization import INSTRUCTION as SUMMARY_INSTRUCTION
    from kick_checks.tasks.summarization import rouge_l

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

    def exact(items):
        def score(texts):
            return [float(exact_match(first_answer_line(text), list(item.answers))) for text, item in zip(texts, items)]
        return score

    for key, with_passage, shots in (("factoid_qa", False, SHOTS), ("retrieval_qa.open_book", True, RETRIEVAL_SHOTS)):
        task = get_task(key)
        data = load_rows(task, TaskOptions())
        qa = qa_items(data.rows)
        decoding = task.engine.decoding
        rows.append(_generation_row(
            f"{key} (greedy, {decoding.max_new_tokens} tokens)", loaded, lm,
            [build_prompt(item, shots, with_passage) for item in qa], decoding.max_new_tokens, decoding.stop,
            args.batch_size, exact(qa)))

    summarization = get_task("summarization")
    data = load_rows(summarization, TaskOptions())
    prompts = [chat_prompt(loaded.tokenizer, [{"role": "user", "content": SUMMARY_INSTRUCTION + row["article"].strip()}
                                              ]) for row in data.rows]
    references = [row["summary"] for row in data.rows]
    rows.append(_generation_row(
        f"summarization (chat, {summarization.decoding.max_new_tokens} tokens)", loaded, lm, prompts,
        summarization.decoding.max_new_tokens, (), args.batch_size,
        lambda texts: [rouge_l(text.strip(), reference) for text, reference in zip(texts, references)],
        add_special_tokens=False))

    print()
    print("| task | items | kick-checks s | lm-eval s | kick-checks items/s | lm-eval items/s | speed-up "
          "| kick-checks score | lm-eval score | answers that differ |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, count, ours_s, theirs_s, ours_score, theirs_score, differ in rows:
        print(f"| {name} | {count} | {ours_s:.1f} | {theirs_s:.1f} | {count / ours_s:.1f} | {count / theirs_s:.1f} "
              f"| {theirs_s / ours_s:.2f}x | {ours_score:.3f} | {theirs_score:.3f} | {differ} |")
    count = sum(row[1] for row in rows)
    ours_s, theirs_s = sum(row[2] for row in rows), sum(row[3] for row in rows)
    print(f"| all of the above | {count} | {ours_s:.1f} | {theirs_s:.1f} | {count / ours_s:.1f} "
          f"| {count / theirs_s:.1f} | {theirs_s / ours_s:.2f}x | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
