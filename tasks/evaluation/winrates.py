"""Judge win rates of model A against model B on the same prompts: both orders, ties, and a length-controlled rate.

- Both orders. A model judge prefers a position (the 135M judge here always picks the second option), so every
  pair is asked as (A, B) and as (B, A) and the two answers are averaged (tasks/judges/base.py):
  p = (p_AB + 1 − p_BA) / 2. A purely positional judge then gives p = ½ — a tie, not a win for whichever model
  happened to be shown first. `judge_order_disagreement` is the share of pairs whose preferred model flips with
  the order: near 1 the judge is reading positions, not replies, and its win rate says nothing.
- Ties. p within `tie_margin` of ½ is a tie, counted as half a win: win rate = (wins + ½ ties) / n, with a
  Student-t 95 % interval over prompts of the per-pair score 1 / ½ / 0 (`tasks.common.metrics.mean_ci`).
- Length control. Judges prefer longer replies (verbosity bias: Dubois et al. 2024, "Length-Controlled
  AlpacaEval", https://arxiv.org/abs/2404.04475; Singhal et al. 2023), and preference tuning lengthens replies, so
  a raw win rate can rise with length alone. As in AlpacaEval 2.0 LC, a logistic GLM predicts the soft preference
  from an intercept and the length difference, and the length-controlled rate is its prediction at equal length.
  LC estimates the mean soft preference p at zero length difference: compare it with `judge_mean_p`.

Metric names carry no model prefix: the caller adds "policy/" and a suffix such as "_vs_sft".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tasks.common.metrics import mean_ci
from tasks.judges.base import Judge

L2 = 1e-6  # penalty on φ (per pair): keeps φ finite when length separates the labels perfectly; θ is not penalised,
# so with no length effect (φ = 0) σ(θ) is exactly the mean p


def judge_win_rates(
    judge: Judge,
    prompts: Sequence[list[dict[str, str]]],
    a_texts: Sequence[str],
    b_texts: Sequence[str],
    tie_margin: float,
    ids: Sequence[Any] | None = None,
    desc: str = "judge win rate",
    principles: Sequence[Any] | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Judge A's reply against B's for each prompt (chat messages); metrics and one row per pair.

    `ids` (default: the pair index) name the prompts in the rows and are the units of the interval: with one pair
    per prompt it is over pairs; when a prompt repeats (e.g. one pair per sample) its pairs' mean score is one
    unit, because pairs of one prompt are not independent. Lengths are words. `principles` (one per pair, default
    none: the judge's generic question) are the constitution's principles to judge by. No prompts → ({}, []).
    """
    ids = list(range(len(prompts))) if ids is None else list(ids)
    if not len(prompts) == len(a_texts) == len(b_texts) == len(ids):
        raise ValueError(f"{len(prompts)} prompts, {len(a_texts)} A replies, {len(b_texts)} B replies, {len(ids)} ids: "
                         "need one each")
    if not prompts:
        return {}, []
    principles = list(principles) if principles is not None else [None] * len(prompts)
    judgments = judge.pairwise_many(
        [(p, a, b, pr) for p, a, b, pr in zip(prompts, a_texts, b_texts, principles, strict=True)], desc=desc
    )
    rows, by_prompt = [], {}
    for i, (pid, a, b, j) in enumerate(zip(ids, a_texts, b_texts, judgments, strict=True)):
        outcome = "win" if j.p_a > 0.5 + tie_margin else "loss" if j.p_a < 0.5 - tie_margin else "tie"
        score = {"win": 1.0, "tie": 0.5, "loss": 0.0}[outcome]
        by_prompt.setdefault(pid, []).append(score)
        rows.append({"prompt_id": pid, "index": i, "p_ab": j.p_ab, "p_ba": j.p_ba, "p": j.p_a,
                     "outcome": outcome, "position_flip": j.position_flip,
                     "len_a": len(a.split()), "len_b": len(b.split())})
    n = len(rows)
    count = {o: sum(r["outcome"] == o for r in rows) for o in ("win", "tie", "loss")}
    _, low, high = mean_ci([math.fsum(s) / len(s) for s in by_prompt.values()])
    p = [r["p"] for r in rows]
    metrics = {
        "judge_win_rate": (count["win"] + 0.5 * count["tie"]) / n,
        "judge_win_rate_ci_low": low,
        "judge_win_rate_ci_high": high,
        "judge_wins": float(count["win"]),
        "judge_ties": float(count["tie"]),
        "judge_losses": float(count["loss"]),
        "judge_order_disagreement": sum(r["position_flip"] for r in rows) / n,
        "judge_mean_p": math.fsum(p) / n,
        "judge_win_rate_lc": length_controlled_win_rate(p, [r["len_a"] for r in rows], [r["len_b"] for r in rows]),
    }
    return metrics, rows


def length_controlled_win_rate(p: Sequence[float], len_a: Sequence[float], len_b: Sequence[float]) -> float:
    """σ(θ) of the logistic GLM  q_i = σ(θ + φ·tanh(d_i / s)),  d_i = len_a − len_b,  s = std(d) (population).

    Fitted by maximising the soft-label log-likelihood Σ p_i log q_i + (1 − p_i) log(1 − q_i) − ½·L2·n·φ² (the
    judge's p is the target, not a thresholded win). tanh bounds the length term, so one very long reply cannot
    dominate the fit (AlpacaEval 2.0 LC's choice); the instruction-difficulty term of AlpacaEval is left out —
    each comparison here has its own prompt. When all d are 0 the length term is 0 and the fit gives σ(θ) =
    mean p. When all d are equal but not 0, length and intercept cannot be told apart: NaN.

    Worked example: d = (+1, −1) → s = 1, tanh(±1) = ±0.76159; p = (0.9, 0.3) is fitted exactly by
    θ ± 0.76159·φ = logit(0.9), logit(0.3) = 2.19722, −0.84730 → θ = 0.67496, LC = σ(θ) = 0.66262 (raw mean 0.6).
    """
    import numpy as np
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    y = np.asarray(p, dtype=float)
    if y.size == 0:
        return math.nan
    d = np.asarray(len_a, dtype=float) - np.asarray(len_b, dtype=float)
    s = float(d.std())
    if s == 0.0 and d[0] != 0.0:
        return math.nan
    x = np.tanh(d / s) if s > 0 else np.zeros_like(d)
    n = y.size

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = w[0] + w[1] * x
        nll = -float(np.sum(y * log_expit(z) + (1 - y) * log_expit(-z))) / n
        r = (expit(z) - y) / n  # d nll / d z
        return nll + 0.5 * L2 * w[1] ** 2, np.array([r.sum(), (r * x).sum() + L2 * w[1]])

    res = minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
    return float(expit(res.x[0]))
