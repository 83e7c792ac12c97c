"""Chat-template generation and judged scoring, shared by summarization and instruction following."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kick_checks.engine.batching import choose_batch_size
from kick_checks.errors import KickError
from kick_checks.tasks.protocol import TaskOptions


@dataclass(frozen=True)
class ChatDecoding:
    max_new_tokens: int = 160
    # rows decoded together: a decoding step of 48 rows costs about 1.9x one of 16 on a CPU (float32, 500 cached
    # tokens; weights are read once a step), so more rows a step take fewer seconds in all
    batch_size: int = 48
    engine: str = ""
    draft_tokens: int = 0  # prompt-lookup draft tokens fed with each decoding step (0: none)

    def to_dict(self) -> dict:
        fields = {"greedy": True, "chat_template": True, "max_new_tokens": self.max_new_tokens,
                  "batch_size": self.batch_size, "engine": self.engine}
        if self.draft_tokens:  # a different batching of the arithmetic, like the batch size
            fields["prompt_lookup"] = self.draft_tokens
        return fields

    def sized(self, requested: int | str | None, model, tokenizer, conversations: list[list[dict[str, str]]],
              replies: int = 1, backend=None) -> ChatDecoding:
        """This decoding for ``model``: the generation engine ``backend`` gives it (None: transformers), and the
        batch size a run asked for (``--kick-batch-size``); ``auto`` sizes it for the longest conversation plus
        ``replies`` generated replies."""
        engine = (backend or TaskOptions().evaluation_backend()).generation_engine(model)
        if requested is None:
            return replace(self, engine=engine)
        longest = max((chat_prompt(tokenizer, messages) for messages in conversations), key=len, default="")
        tokens = len(tokenizer(longest, add_special_tokens=False).input_ids) + replies * self.max_new_tokens
        return replace(self, engine=engine, batch_size=choose_batch_size(requested, self.batch_size, model, tokens))


def chat_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise KickError("this task prompts with the model's chat template, and the tokenizer has none: "
                        "use an instruction-tuned model or deselect the task (-k 'not summarization')")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def chat_replies(model, tokenizer, conversations: list[list[dict[str, str]]], decoding: ChatDecoding,
                 backend=None) -> list[str]:
    """Greedy replies to each conversation (its last message is the user's), computed by ``backend``."""
    prompts = [chat_prompt(tokenizer, messages) for messages in conversations]
    backend = backend or TaskOptions().evaluation_backend()
    replies = backend.generate(model, tokenizer, prompts, max_new_tokens=decoding.max_new_tokens,
                               batch_size=decoding.batch_size, add_special_tokens=False,
                               draft_tokens=decoding.draft_tokens)
    return [reply.strip() for reply in replies]


@dataclass
class JudgeTally:
    """Judgments that produced no score: counted and reported, never averaged in."""

    unparsable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def record(self, item_id: str, judgment) -> float | None:
        if judgment.status == "ok":
            return judgment.score
        (self.failed if judgment.status == "failed" else self.unparsable).append(item_id)
        return None

    def problems(self) -> dict[str, int]:
        return {key: len(ids) for key, ids in (("judge_unparsable", self.unparsable), ("judge_failed", self.failed))
                if ids}
