"""The judge interface: `pairwise(prompt, a, b, principle) -> Judgment` with p(a better) and its metadata.

Every comparison is asked in both orders — (a, b) and (b, a) — and the two answers are averaged, because model
judges prefer a position (RLAIF, Lee et al. 2023): p(a) = (p_AB + 1 − p_BA) / 2, where p_AB is p(first better)
with a first and p_BA is p(first better) with b first. Their disagreement |p_AB − (1 − p_BA)| and whether the
preferred option flips with the order are kept per pair as quality signals. Chain-of-thought answers are
over-confident, so they are clamped to [0.4, 0.6] (Bai et al. 2022) before averaging.

A concrete judge implements only `score(queries)`: a batch of ordered questions → p(first better) each. The base
class does the orders, the cache (a judgment asked once is never asked again), the statistics (calls, cache hits,
tokens, seconds) and the progress bar.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.common.constitution import Constitution, Principle
from tasks.judges.cache import JudgmentCache, cache_key
from tasks.judges.prompting import PROMPT_VERSION

Messages = list[dict[str, str]]


@dataclass
class Query:
    """One ordered question: is `first` a better reply than `second` to `prompt`, under `principle`?"""

    prompt: Messages
    first: str
    second: str
    principle: Principle | None = None


@dataclass
class Verdict:
    p_first: float  # p(first option is better), in [0, 1]
    tokens: int = 0  # tokens the judge read and wrote for this question
    reasoning: str | None = None


@dataclass
class Judgment:
    p_a: float  # p(a better), both orders averaged — the soft label
    p_ab: float  # p(first better) with a first
    p_ba: float  # p(first better) with b first
    disagreement: float  # |p_AB − (1 − p_BA)|: 0 = order does not matter
    position_flip: bool  # the preferred option changes with the order
    principle: str | None
    judge: str
    tokens: int = 0
    cached: int = 0  # how many of the two orders came from the cache
    reasoning: list[str | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JudgeStats:
    calls: int = 0  # questions actually sent to the judge (one per order)
    cached: int = 0  # questions answered from the cache
    tokens: int = 0
    seconds: float = 0.0


def combine(p_ab: float, p_ba: float) -> tuple[float, float, bool]:
    """Soft label, disagreement, position flip from the two orders."""
    p_a_second = 1.0 - p_ba
    flip = _side(p_ab) != _side(p_a_second)
    return (p_ab + p_a_second) / 2.0, abs(p_ab - p_a_second), flip


def _side(p: float) -> int:
    return (p > 0.5) - (p < 0.5)


class Judge(ABC):
    """Subclasses set `identity` (stable, goes into cache keys; never a secret) and implement `score`."""

    identity: str = "judge"
    uses_principles: bool = True
    chunk_size: int = 32  # questions per `score` call; answers are cached after each chunk

    def __init__(
        self,
        constitution: Constitution | None = None,
        cache: JudgmentCache | None = None,
        chain_of_thought: bool = False,
        cot_clamp: tuple[float, float] = (0.4, 0.6),
    ):
        self.constitution = constitution
        self.cache = cache
        self.chain_of_thought = chain_of_thought
        self.cot_clamp = cot_clamp
        self.stats = JudgeStats()

    @abstractmethod
    def score(self, queries: list[Query]) -> list[Verdict]:
        """p(first better) for each ordered question (any batching, any order of work)."""

    def settings(self) -> dict[str, Any]:
        """What, besides identity and question, changes the answer (goes into the cache key)."""
        shots = [s.model_dump() for s in self.constitution.few_shot] if self.constitution and self.uses_principles else []
        return {"cot": self.chain_of_thought, "clamp": list(self.cot_clamp), "few_shot": shots}

    def key(self, q: Query) -> str:
        principle = q.principle.model_dump() if (q.principle is not None and self.uses_principles) else None
        return cache_key(PROMPT_VERSION, self.identity, self.settings(), principle, q.prompt, q.first, q.second)

    def pairwise(self, prompt: Messages, a: str, b: str, principle: Principle | None = None) -> Judgment:
        return self.pairwise_many([(prompt, a, b, principle)])[0]

    def pairwise_many(
        self, items: list[tuple[Messages, str, str, Principle | None]], desc: str = "judge"
    ) -> list[Judgment]:
        """Both orders of every (prompt, a, b, principle), from the cache where possible."""
        queries = [q for prompt, a, b, pr in items for q in (Query(prompt, a, b, pr), Query(prompt, b, a, pr))]
        keys = [self.key(q) for q in queries]
        known = self.cache.get_many(keys) if self.cache is not None else {}
        todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
        self.stats.cached += len(queries) - len(todo)
        bar = _progress(len(todo), desc)
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start : start + self.chunk_size]
            t0 = time.perf_counter()
            verdicts = self.score([queries[i] for i in chunk])
            self.stats.seconds += time.perf_counter() - t0
            fresh = {}
            for i, v in zip(chunk, verdicts, strict=True):
                p = v.p_first
                if self.chain_of_thought:
                    p = min(max(p, self.cot_clamp[0]), self.cot_clamp[1])
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"judge {self.identity} returned p={p} outside [0, 1]")
                fresh[keys[i]] = {"p_first": p, "tokens": v.tokens, "reasoning": v.reasoning}
                self.stats.tokens += v.tokens
            self.stats.calls += len(chunk)
            known.update(fresh)
            if self.cache is not None:
                self.cache.put_many(self.identity, fresh)
            if bar:
                bar.update(len(chunk))
        if bar:
            bar.close()
        fresh_keys = {keys[i] for i in todo}
        out = []
        for n, (prompt, a, b, pr) in enumerate(items):
            k_ab, k_ba = keys[2 * n], keys[2 * n + 1]
            ab, ba = known[k_ab], known[k_ba]
            p_a, dis, flip = combine(ab["p_first"], ba["p_first"])
            out.append(
                Judgment(
                    p_a=p_a,
                    p_ab=ab["p_first"],
                    p_ba=ba["p_first"],
                    disagreement=dis,
                    position_flip=flip,
                    principle=pr.name if (pr is not None and self.uses_principles) else None,
                    judge=self.identity,
                    tokens=ab["tokens"] + ba["tokens"],
                    cached=int(k_ab not in fresh_keys) + int(k_ba not in fresh_keys),
                    reasoning=[ab.get("reasoning"), ba.get("reasoning")],
                )
            )
        return out


def _progress(total: int, desc: str):
    if total == 0 or os.environ.get("ALIGNFLOW_QUIET") == "1":
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q")
