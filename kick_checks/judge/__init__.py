"""The LLM judge: grading prompts and rating parser (:mod:`.prompts`), and the client that asks any
OpenAI-compatible endpoint with retries, a cache and bounded concurrency (:mod:`.client`)."""

from kick_checks.judge.client import Judge, JudgeConfig, Judgment
from kick_checks.judge.prompts import answer_messages, parse_rating, summary_messages, turns_messages

__all__ = ["Judge", "JudgeConfig", "Judgment", "answer_messages", "parse_rating", "summary_messages",
           "turns_messages"]
