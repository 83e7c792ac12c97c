"""An LLM judge: grades free-form answers and summaries 1-10 through any OpenAI-compatible chat endpoint.

LLM-KICK's instruction-following and summarization tasks have no exact answer to match, so a strong model grades
the compressed model's output. Three things matter more here than in an ordinary API call:

- **Never a silent score.** A request that keeps failing yields ``status="failed"`` and a reply without a rating
  yields ``status="unparsable"``; the caller counts and reports both instead of treating them as a score. Errors
  that every later call would repeat (a refused key, an unknown model) raise :class:`KickError` at once.
- **Cheap reruns.** Judgments are cached on disk, keyed by the judge model, the endpoint and the exact prompt, so
  rerunning a gate with unchanged outputs sends no request and costs nothing.
- **The key stays secret.** It is read from the environment when a request is made and goes nowhere else: not in
  the config, the cache key, cache files, judgments, log records or error messages.

The openai client runs with ``max_retries=0`` so that retries, backoff and ``Retry-After`` are ours to control and
to test.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import openai

from kick_checks.errors import KickError
from kick_checks.judge.prompts import RATING_REMINDER, answer_messages, parse_rating, summary_messages, turns_messages

log = logging.getLogger(__name__)

#: Sent as the key when the environment variable is unset or empty: local servers (vLLM, llama.cpp) accept any
#: key, and the openai client refuses to send none.
NO_KEY_PLACEHOLDER = "EMPTY"
#: Upper bound of one exponential backoff delay, so a long run of errors does not stall a job for minutes.
BACKOFF_CAP_S = 30.0
#: Upper bound on a server's ``Retry-After``, so a misconfigured proxy cannot park the job for an hour.
RETRY_AFTER_CAP_S = 60.0
#: Greedy decoding, so the same prompt gets the same rating and a cached judgment equals a fresh one.
JUDGE_TEMPERATURE = 0.0
CACHE_SCHEMA = 1
#: Characters of the judge's reply kept in ``Judgment.detail``.
DETAIL_CHARS = 160


@dataclass(frozen=True)
class JudgeConfig:
    """Which judge to ask and how patiently. Holds the *name* of the key's environment variable, never the key."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60
    max_attempts: int = 5
    backoff_s: float = 1.0
    cache_dir: Path | None = None
    concurrency: int = 4
    budget_s: float = 1800.0

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise KickError("judge model is empty: set JudgeConfig.model to the judge's model name")
        if not self.timeout_s > 0:
            raise KickError(f"judge timeout_s must be positive, got {self.timeout_s}")
        if self.max_attempts < 1:
            raise KickError(f"judge max_attempts must be at least 1, got {self.max_attempts}")
        if not self.backoff_s >= 0:
            raise KickError(f"judge backoff_s must be zero or positive, got {self.backoff_s}")
        if self.concurrency < 1:
            raise KickError(f"judge concurrency must be at least 1, got {self.concurrency}")
        if not self.budget_s > 0:
            raise KickError(f"judge budget_s must be positive, got {self.budget_s}")


#: ok: rated; unparsable: the judge answered without a usable rating; failed: no answer after every attempt.
JudgmentStatus = Literal["ok", "unparsable", "failed"]


@dataclass(frozen=True)
class Judgment:
    """One grade. ``score`` is set only when ``status == "ok"``; callers count the others, never average them."""

    score: float | None
    status: JudgmentStatus
    detail: str
    cached: bool = False


class _TransientError(Exception):
    """A request failure that may pass: timeout, lost connection, 408/429/5xx, a broken response body."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _GaveUp(Exception):
    """Every attempt failed transiently; the judgment is ``failed`` and is not cached."""



class Judge:
    """Grades through one judge model, with retries, an on-disk cache and a count of outcomes.

    ``counts`` holds ok / unparsable / failed (every judgment returned is exactly one of these) and cached (how
    many of them came from the cache). ``sleep`` is injectable so tests can record backoff delays without waiting.
    """

    def __init__(self, config: JudgeConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.counts: dict[str, int] = {"ok": 0, "unparsable": 0, "failed": 0, "cached": 0}
        self._sleep = sleep
        self._counting = threading.Lock()

    def judge_all(self, prompts: list[list[dict[str, str]]], *, what: str = "the judging") -> list[Judgment]:
        """Grade many prepared prompts, ``concurrency`` requests in flight at once, in order. The whole phase may
        take ``budget_s`` seconds: past that the pending prompts are dropped and a ``KickError`` says how far it
        got (the judgments made so far are cached, so a rerun resumes)."""
        if not prompts:
            return []
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="kick-judge")
        futures = [pool.submit(self.judge, messages) for messages in prompts]
        done, pending = wait(futures, timeout=self.config.budget_s)
        if pending:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise KickError(
                f"{what} took longer than its budget of {self.config.budget_s:g} s ({len(done)} of {len(futures)} "
                f"judgments made, now cached): check the judge endpoint, raise --kick-judge-concurrency or "
                "--kick-judge-budget, and rerun"
            )
        pool.shutdown(wait=True)
        return [future.result() for future in futures]

    def grade_answer(self, question: str, answer: str, reference: str | None = None) -> Judgment:
        """Grade one answer 1-10, against ``reference`` when given (math, reasoning, coding questions)."""
        return self.judge(answer_messages(question, answer, reference))

    def grade_turns(self, turns: list[str], answers: list[str], references: list[str] | None = None) -> Judgment:
        """Grade the last answer of a multi-turn conversation; ``references`` has one entry per turn when given."""
        return self.judge(turns_messages(turns, answers, references))

    def grade_summary(self, article: str, summary: str, reference: str | None = None) -> Judgment:
        """Grade a summary of ``article`` for fidelity, coverage and concision, guided by a reference summary."""
        return self.judge(summary_messages(article, summary, reference))

    def judge(self, messages: list[dict[str, str]]) -> Judgment:
        """Grade with prepared chat messages: from the cache when possible, otherwise by asking the judge."""
        cache_path = self._cache_path(messages)
        judgment = self._read_cache(cache_path) if cache_path else None
        if judgment is None:
            judgment, reply = self._ask_for_rating(messages)
            if cache_path and judgment.status == "ok":  # a reply without a rating is asked again next run
                self._write_cache(cache_path, judgment, reply)
        with self._counting:
            self.counts[judgment.status] += 1
            self.counts["cached"] += judgment.cached
        return judgment

    def _ask_for_rating(self, messages: list[dict[str, str]]) -> tuple[Judgment, str]:
        """Ask the judge; when its reply has no rating, ask once more for the rating alone."""
        api_key = os.environ.get(self.config.api_key_env) or None
        with openai.OpenAI(
            api_key=api_key or NO_KEY_PLACEHOLDER,
            base_url=self.config.base_url,
            timeout=self.config.timeout_s,
            max_retries=0,
        ) as client:
            try:
                reply = self._reply_with_retries(client, messages, api_key)
                score = parse_rating(reply)
                if score is not None:
                    return Judgment(score, "ok", _excerpt(reply)), reply
                reminder = [
                    *messages,
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": RATING_REMINDER},
                ]
                second_reply = self._reply_with_retries(client, reminder, api_key)
            except _GaveUp as gave_up:
                log.warning("judge %s: %s", self.config.model, gave_up)
                return Judgment(None, "failed", str(gave_up)), ""
        transcript = f"{reply}\n\n[asked again for the rating]\n\n{second_reply}"
        score = parse_rating(second_reply)
        if score is not None:
            return Judgment(score, "ok", f"rating given when asked again; {_excerpt(reply)}"), transcript
        return Judgment(None, "unparsable", f"no rating in the judge's reply: {_excerpt(second_reply)}"), transcript

    def _reply_with_retries(self, client: openai.OpenAI, messages: list[dict[str, str]], api_key: str | None) -> str:
        """The judge's reply text; transient failures are retried with backoff up to ``max_attempts``."""
        attempts = self.config.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._reply(client, messages, api_key)
            except _TransientError as error:
                last_reason = error.reason
                if attempt < attempts:
                    delay = self._delay(attempt, error.retry_after)
                    log.warning(
                        "judge request %d/%d failed (%s); retrying in %.2f s", attempt, attempts, last_reason, delay
                    )
                    self._sleep(delay)
        raise _GaveUp(f"no judgment after {attempts} attempts, last: {last_reason}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """The server's ``Retry-After`` when it gave one, else exponential backoff with jitter; both capped."""
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_CAP_S)
        return min(BACKOFF_CAP_S, self.config.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def _reply(self, client: openai.OpenAI, messages: list[dict[str, str]], api_key: str | None) -> str:
        """One request. Raises _TransientError for what may pass and KickError for what will not."""
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=self.config.model, messages=messages, temperature=JUDGE_TEMPERATURE
            )
        except openai.APITimeoutError:
            raise _TransientError(f"timed out after {self.config.timeout_s:g} s") from None
        except openai.APIConnectionError:
            raise _TransientError(f"could not connect to {client.base_url}") from None
        except openai.APIStatusError as error:
            status = error.status_code
            if status in (408, 429) or status >= 500:
                raise _TransientError(
                    f"HTTP {status}", _retry_after(error.response.headers.get("retry-after"))
                ) from None
            raise self._refusal(error, str(client.base_url).rstrip("/"), api_key) from None
        return _reply_content(raw.http_response.content)

    def _refusal(self, error: openai.APIStatusError, url: str, api_key: str | None) -> KickError:
        """A one-line KickError for a 4xx that every later request would get too, naming the fix."""
        env, model = self.config.api_key_env, self.config.model
        if error.status_code == 401:
            if api_key is None:
                return KickError(f"judge endpoint refused a request without a key (401): set {env} to a key for {url}")
            return KickError(f"judge endpoint refused the key (401): set {env} to a valid key for {url}")
        if error.status_code == 403:
            return KickError(
                f"judge endpoint denied access (403) to model {model!r}: give {env} a key allowed to use "
                f"it at {url}, or choose another judge model"
            )
        if error.status_code == 404:
            return KickError(
                f"judge endpoint {url} has no model {model!r} or no chat completions (404): check the "
                "judge model name and the base URL (it usually ends in /v1)"
            )
        message = _server_message(error.body, api_key)
        said = f": {message}" if message else ""
        return KickError(
            f"judge endpoint {url} rejected the request (HTTP {error.status_code}{said}): check the "
            f"judge model {model!r} and the request it accepts"
        )

    def _cache_path(self, messages: list[dict[str, str]]) -> Path | None:
        """Where this prompt's judgment lives; the key covers the judge and the prompt, never the API key."""
        if self.config.cache_dir is None:
            return None
        identity = {"model": self.config.model, "base_url": self.config.base_url, "messages": messages}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
        return Path(self.config.cache_dir) / "judgments" / digest[:2] / f"{digest}.json"

    def _read_cache(self, path: Path) -> Judgment | None:
        """The cached judgment, or None when there is none or the file is unusable (it is then rewritten)."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("ignoring unreadable judge cache file %s", path)
            return None
        if not _valid_cache_document(document):
            log.warning("ignoring malformed judge cache file %s", path)
            return None
        if document["status"] != "ok":  # written by an older version: a reply without a rating is asked again
            return None
        return Judgment(document["score"], document["status"], document["detail"], cached=True)

    def _write_cache(self, path: Path, judgment: Judgment, reply: str) -> None:
        """Write atomically (temporary file in the same folder, then rename): readers never see half a file."""
        document = {
            "schema": CACHE_SCHEMA,
            "status": judgment.status,
            "score": judgment.score,
            "detail": judgment.detail,
            "reply": reply,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".tmp", delete=False
            )
            try:
                with handle:
                    json.dump(document, handle, ensure_ascii=False, indent=1)
                os.replace(handle.name, path)
            except BaseException:
                Path(handle.name).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise KickError(
                f"cannot write the judge cache under {self.config.cache_dir} ({error.strerror or error}): "
                "make it writable or set cache_dir to another folder"
            ) from None


def _reply_content(body: bytes) -> str:
    """The assistant's text from a chat-completions body; a broken or empty body is transient, like a 5xx."""
    try:
        document = json.loads(body)
    except ValueError:
        raise _TransientError("malformed JSON in the response") from None
    try:
        content = document["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _TransientError("response without a message") from None
    if not isinstance(content, str) or not content.strip():
        raise _TransientError("response without content")
    return content


def _retry_after(header: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay in seconds or an HTTP date); None when absent or unreadable."""
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _server_message(body: object, api_key: str | None) -> str:
    """The server's error message on one short line, with the key removed in case the server echoed it."""
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str):
        return ""
    if api_key:
        message = message.replace(api_key, "***")
    return " ".join(message.split())[:DETAIL_CHARS]


def _excerpt(reply: str) -> str:
    """The start of a reply on one line, for ``Judgment.detail``."""
    flat = " ".join(reply.split())
    return flat if len(flat) <= DETAIL_CHARS else flat[: DETAIL_CHARS - 3] + "..."


def _valid_cache_document(document: object) -> bool:
    if not isinstance(document, dict) or document.get("schema") != CACHE_SCHEMA:
        return False
    status, score = document.get("status"), document.get("score")
    if not isinstance(document.get("detail"), str):
        return False
    if status == "unparsable":
        return score is None
    return status == "ok" and isinstance(score, (int, float)) and not isinstance(score, bool) and 1 <= score <= 10
