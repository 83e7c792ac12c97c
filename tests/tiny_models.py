"""Tiny Llama models built from a config, for fast tests that need no downloaded weights.

``build_tiny_model`` gives a randomly initialised model with its own small BPE tokenizer.
``train_toy_qa_model`` teaches such a model a toy factoid set in the factoid-QA prompt format, so that a
kick run has knowledge to lose: it keeps its answers at low sparsity and loses them at high sparsity.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from kick_checks.tasks.factoid_qa import SHOTS
from kick_checks.tasks.qa import QAItem, build_prompt

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "brown", "grey", "pink", "gold"]
ANIMALS = ["cat", "dog", "fox", "owl", "bee", "cow", "ant", "elk", "yak", "hen", "emu", "eel"]


def toy_items() -> list[dict]:
    """Twelve made-up facts ('the colour of the fox is purple') as factoid-QA rows."""
    return [
        {"id": f"toy-{index:02d}", "question": f"What colour is the {animal}?", "answers": [COLOURS[index]]}
        for index, animal in enumerate(ANIMALS)
    ]


def _corpus() -> list[str]:
    lines = [build_prompt(QAItem("x", row["question"], tuple(row["answers"])), SHOTS, False) for row in toy_items()]
    lines += [f" {word}\n" for word in COLOURS + ANIMALS]
    lines += ["Passage: the quick brown fox jumps over the lazy dog. Question: Answer: short answer."] * 3
    return lines


def build_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


#: A minimal chat template, so that the tiny model can run the chat tasks (summarization, instruction following).
CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_tiny_chat_model(tiny_model: Path, folder: Path) -> Path:
    """A copy of a tiny model whose tokenizer has :data:`CHAT_TEMPLATE`."""
    import shutil

    shutil.copytree(tiny_model, folder, dirs_exist_ok=True)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_model(
    folder: Path, *, hidden: int = 64, layers: int = 2, intermediate: int = 128, seed: int = 0
) -> Path:
    """Save a random tiny Llama and its tokenizer to ``folder`` (a valid ``--kick-model`` directory)."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_toy_qa_model(folder: Path, steps: int = 300, seed: int = 0) -> tuple[Path, Path]:
    """Build a tiny model that answers the toy factoid set; return (model folder, data file)."""
    rows = toy_items()
    texts = [
        build_prompt(QAItem("x", row["question"], tuple(row["answers"])), SHOTS, False) + f" {row['answers'][0]}\n"
        for row in rows
    ]
    _train_on(folder, texts, steps, seed)
    data = folder / "toy_factoid_qa.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder, data


#: The toy facts a recovery test evaluates; the others are its held-out pool of demonstrations.
TOY_EVALUATED = 8


def train_toy_recovery_model(folder: Path, steps: int = 300, seed: int = 0) -> tuple[Path, Path, Path]:
    """A tiny model that knows the first eight toy facts under two prompts: the factoid task's own and the fixed
    recovery prompt (:func:`kick_checks.recovery.prompts.short_answer_prompts`, built from the other four facts,
    which it also learns under the task's prompt). The recovery prompt's examples are repeated, so that route is
    learned more firmly: pruning breaks the task prompt's route to some facts first, while the facts are still
    reachable after the recovery prompt, which is knowledge displaced, not forgotten (a model that learns both
    routes equally loses a fact under both at once). Returns (model folder, evaluated data, held-out pool)."""
    from kick_checks.recovery.pools import Pool
    from kick_checks.recovery.prompts import short_answer_prompts

    rows = toy_items()
    evaluated, held_out = rows[:TOY_EVALUATED], [{**row, "category": "colours"} for row in rows[TOY_EVALUATED:]]
    recovery_prefix = short_answer_prompts(Pool("factoid_qa", held_out, "toy pool", ""))[0].text
    texts = [
        build_prompt(QAItem("x", row["question"], tuple(row["answers"])), SHOTS, False) + f" {row['answers'][0]}\n"
        for row in rows
    ] + [recovery_prefix + f"Question: {row['question']}\nAnswer: {row['answers'][0]}\n" for row in evaluated] * 3
    _train_on(folder, texts, steps, seed)
    data, pool = folder / "toy_evaluated.jsonl", folder / "toy_pool.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in evaluated))
    pool.write_text("".join(json.dumps(row) + "\n" for row in held_out))
    return folder, data, pool


def _train_on(folder: Path, texts: list[str], steps: int, seed: int) -> None:
    """A tiny model fitted to ``texts`` (every token), saved to ``folder`` with its tokenizer."""
    build_tiny_model(folder, hidden=96, layers=2, intermediate=192, seed=seed)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    torch.manual_seed(seed)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(folder)
