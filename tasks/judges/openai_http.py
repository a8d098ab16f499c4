"""An AI judge behind any OpenAI-compatible chat endpoint: vLLM, llama.cpp, Ollama, TGI or a hosted API.

Plain HTTP (httpx, already installed with Prefect) rather than a vendor SDK, because the chat-completions wire
format is the one thing all these servers share. The soft label is read the way the local judge reads it
(docs/methods.md, RL-CAI labelling): the log-probs of the answer letter, normalised over A and B. A server that
returns no log-probs answers in text, parsed to 1 or 0 (0.5 when it names neither, counted in `unparsed`). With
chain of thought the judge writes its reasoning, which is kept, and the base class clamps the label.

Remote servers fail transiently, so 429, 5xx, dropped connections and timeouts are retried with exponential
backoff (a numeric Retry-After wins); any other 4xx is a wrong request, model name or key, and fails at once.
The API key comes only from the environment variable `api_key_env` and goes only into the Authorization
header: it is not part of the identity (which keys the cache), and server text quoted in errors and log lines
is redacted, since some servers echo the request back.

    collect_preferences.judge: {kind: openai, model: Qwen/Qwen2.5-7B-Instruct, base_url: http://localhost:8000/v1}
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx

from tasks.common.constitution import Constitution
from tasks.common.params import JudgeParams
from tasks.judges.base import Judge, Query, Verdict
from tasks.judges.cache import JudgmentCache
from tasks.judges.prompting import judge_messages, letter_probabilities, parse_choice

log = logging.getLogger(__name__)

DIRECT_MAX_TOKENS = 5  # "(A)" can be three tokens, and some chat templates emit a space or newline first
ANSWER_SLACK = 16  # room for "The better response is (A)." after the reasoning budget
TOP_LOGPROBS = 5  # A and B are nearly always in the top 5 after "("; OpenAI allows at most 20
RETRY_AFTER_CAP_S = 60.0  # a server asking for minutes is down; the retry budget decides, not its header


class JudgeError(RuntimeError):
    """The endpoint could not answer; the message names the endpoint, the status and the attempts, never the key."""


class OpenAIJudge(Judge):
    """p(first better) from a chat-completions endpoint, with up to `max_concurrency` requests in flight."""

    def __init__(self, cfg: JudgeParams, constitution: Constitution | None = None, cache: JudgmentCache | None = None):
        missing = [name for name in ("model", "base_url") if not getattr(cfg, name)]
        if missing:
            raise ValueError(f"judge kind 'openai' needs collect_preferences.judge.{' and '.join(missing)} (e.g. base_url: http://localhost:8000/v1)")
        url = urlsplit(cfg.base_url)
        if url.username or url.password:
            raise ValueError(f"judge base_url must not carry credentials: put the key in the environment variable {cfg.api_key_env}")
        super().__init__(constitution, cache, cfg.chain_of_thought, tuple(cfg.cot_clamp))
        self.model = cfg.model
        self.base_url = cfg.base_url.rstrip("/")  # "…/v1" and "…/v1/" are the same judge, and share a cache
        self.identity = f"openai:{self.model}@{self.base_url}"
        self.endpoint = f"{self.base_url}/chat/completions"
        self.few_shot = cfg.few_shot
        self.cot_max_new_tokens = cfg.cot_max_new_tokens
        self.max_concurrency = cfg.max_concurrency
        self.max_retries = cfg.max_retries
        self.backoff_s = cfg.backoff_s
        self.chunk_size = max(Judge.chunk_size, 4 * cfg.max_concurrency)  # a chunk keeps every worker busy
        self.retries = 0  # requests sent again after a transient failure
        self.unparsed = 0  # answers that named neither option (scored 0.5)
        self._lock = threading.Lock()
        # Local servers need no key; send the header only when one is set.
        self._key = (os.environ.get(cfg.api_key_env) or "").strip() or None
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._client = httpx.Client(
            headers=headers, timeout=cfg.timeout_s, limits=httpx.Limits(max_connections=cfg.max_concurrency)
        )

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.identity!r})"

    def close(self) -> None:
        self._client.close()

    def settings(self) -> dict[str, Any]:
        """The few-shot examples only when they are sent; the reasoning budget because it can change the answer."""
        out = super().settings()
        if not self.few_shot:
            out["few_shot"] = []
        if self.chain_of_thought:
            out["max_tokens"] = self.cot_max_new_tokens + ANSWER_SLACK
        return out

    def score(self, queries: list[Query]) -> list[Verdict]:
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = [pool.submit(self._ask, q) for q in queries]
            try:
                return [f.result() for f in futures]  # in query order, whatever order they finished in
            except BaseException:
                for f in futures:  # one hard failure stops the batch instead of sending every queued question
                    f.cancel()
                raise

    def _ask(self, q: Query) -> Verdict:
        cot = self.chain_of_thought
        principle = q.principle
        shots = self.constitution if self.few_shot else None
        body: dict[str, Any] = {
            "model": self.model,
            "messages": judge_messages(q.prompt, q.first, q.second, principle, shots, cot),
            "temperature": 0,
            "max_tokens": self.cot_max_new_tokens + ANSWER_SLACK if cot else DIRECT_MAX_TOKENS,
            "logprobs": True,
            "top_logprobs": TOP_LOGPROBS,
        }
        reply = self._post(body)
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise JudgeError(self._redact(f"{self.endpoint}: reply has no choices[0].message.content: {str(reply)[:300]}")) from None
        usage = reply.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
        content = (choice.get("logprobs") or {}).get("content") or []
        return Verdict(self._probability(text, content), tokens, text if cot else None)

    def _probability(self, text: str, content: list[dict[str, Any]]) -> float:
        """Log-probs of the answer letter when the server sent them, else the letter the text settles on.

        A direct answer's letter is the first A/B token (a "(" may come before it); a reasoned answer's is the
        last, since the reasoning itself mentions both options, and only if it agrees with the parsed text.
        """
        letter = parse_choice(text)
        at = [t for t in content if _letter(t.get("token")) in ("A", "B")]
        if at:
            token = at[-1] if self.chain_of_thought else at[0]
            if not self.chain_of_thought or _letter(token.get("token")) == letter:
                p = letter_probabilities(token.get("top_logprobs") or [])
                if p is not None:
                    return p
        if letter is None:
            with self._lock:
                self.unparsed += 1
            return 0.5
        return 1.0 if letter == "A" else 0.0

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """The reply's JSON; transient failures retried with backoff_s · 2^attempt (+ up to 10% jitter)."""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * 2**attempt * (1 + 0.1 * random.random())
            try:
                r = self._client.post(self.endpoint, json=body)
            except httpx.TransportError as exc:  # refused, reset, timed out
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code == 200:
                    try:
                        return r.json()
                    except ValueError:
                        raise JudgeError(self._redact(f"{self.endpoint} sent a reply that is not JSON: {r.text[:300]!r}")) from None
                problem = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code != 429 and r.status_code < 500:
                    raise JudgeError(self._redact(f"{self.endpoint} rejected the request ({problem}) on attempt {attempt + 1}; not retried"))
                wait = _retry_after(r, wait)
            if attempt < self.max_retries:
                with self._lock:
                    self.retries += 1
                log.warning(self._redact(f"judge {self.endpoint}: {problem}; retry {attempt + 1}/{self.max_retries} in {wait:.2f}s"))
                time.sleep(wait)
        raise JudgeError(self._redact(f"{self.endpoint} failed after {self.max_retries + 1} attempts; last: {problem}"))

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _letter(token: Any) -> str:
    return str(token or "").strip().strip("()").strip()


def _retry_after(r: httpx.Response, default: float) -> float:
    """A numeric Retry-After (seconds), capped; an HTTP-date or none falls back to our own backoff."""
    try:
        return min(max(float(r.headers["Retry-After"]), 0.0), RETRY_AFTER_CAP_S)
    except (KeyError, ValueError):
        return default
