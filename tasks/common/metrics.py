"""Evaluation metric functions: plain numbers in, plain numbers out (no torch), each tested by hand arithmetic.

Used by tasks/evaluate.py. Conventions:
- intervals are Student-t 95 % intervals over *independent units*; evaluate passes one value per prompt (the mean
  of that prompt's samples), because samples of the same prompt are correlated and treating them as independent
  would make the interval too narrow;
- KL estimates are per sequence (summed over response tokens) from log-probs of tokens sampled from the first
  policy, the estimators of Schulman, "Approximating KL divergence" (2020): k1 = log p − log q (unbiased, can be
  negative per sample), k3 = (q/p − 1) − log(q/p) (unbiased, never negative, lower variance); the per-token
  formulas are tasks/common/kl.py's, the same PPO's KL penalty uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tasks.common.kl import kl_per_token


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval mean ± t_{(1+c)/2, n−1} · s/√n; low/high are NaN when n < 2.

    Worked example: [1, 2, 3, 4, 5] → mean 3, s = √2.5 = 1.58114, s/√5 = 0.70711, t_{0.975, 4} = 2.77645,
    half-width 1.96324 → (3, 1.03676, 4.96324).
    """
    from scipy import stats

    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * math.sqrt(var / n)
    return mean, mean - half, mean + half


def proportion_ci(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """(rate, low, high): Wilson score interval for a proportion of n independent items (NaNs when n = 0).

    Wilson rather than the normal approximation because rates here are often near 0 or 1 (refusals, flips) on
    ~100 items, where p ± z·√(p(1−p)/n) leaves [0, 1] or collapses to a point.
    Worked example: 8 of 10 → p = .8, z = 1.95996, centre (.8 + z²/20)/(1 + z²/10) = .71674, half-width
    z·√(.8·.2/10 + z²/400)/(1 + z²/10) = .22658 → (.8, .49016, .94332).
    """
    from scipy import stats

    if n == 0:
        return math.nan, math.nan, math.nan
    p = successes / n
    z = float(stats.norm.ppf((1 + confidence) / 2))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Corpus distinct-n (Li et al. 2016): distinct word n-grams / all word n-grams over all texts (0 if none).

    Words are lower-cased whitespace tokens. Worked example: ["the cat the cat", "the dog"]; n=1: 6 words, 3
    distinct → 0.5; n=2: (the cat), (cat the), (the cat), (the dog) → 4 bigrams, 3 distinct → 0.75.
    """
    total = 0
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        words = text.lower().split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def kl_k1(logprobs: Sequence[Sequence[float]], ref_logprobs: Sequence[Sequence[float]]) -> list[float]:
    """Per-sequence k1 KL estimate Σ_t (log π(y_t) − log π_ref(y_t)), for y sampled from π.

    Worked example: log π = [ln .5, ln .25], log π_ref = [ln .25, ln .5] → ln 2 − ln 2 = 0.0.
    """
    return _kl(logprobs, ref_logprobs, "k1")


def kl_k3(logprobs: Sequence[Sequence[float]], ref_logprobs: Sequence[Sequence[float]]) -> list[float]:
    """Per-sequence k3 KL estimate Σ_t (e^r − 1 − r) with r = log π_ref(y_t) − log π(y_t), y sampled from π.

    Worked example (same tokens as kl_k1): r = ln .5 → .5 − 1 + .69315 = .19315; r = ln 2 → 2 − 1 − .69315 =
    .30685; sum 0.5 (k1 said 0: k3 is never negative per token, so it does not cancel like k1).
    """
    return _kl(logprobs, ref_logprobs, "k3")


def _kl(logprobs: Sequence[Sequence[float]], ref_logprobs: Sequence[Sequence[float]], estimator: str) -> list[float]:
    """The per-token estimates (tasks/common/kl.py, the formulas PPO's penalty uses) summed over each sequence."""
    return [
        math.fsum(kl_per_token(lp, rlp, estimator) for lp, rlp in zip(seq, ref, strict=True))
        for seq, ref in zip(logprobs, ref_logprobs, strict=True)
    ]


def win_rate(a: Sequence[float], b: Sequence[float]) -> float:
    """Paired win rate of a over b (ties count one half). Worked example: a=[1, 0, .5], b=[0, 0, 1] → 1.5/3 = 0.5."""
    if not a:
        return math.nan
    wins = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True))
    return wins / len(a)
