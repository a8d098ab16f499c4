"""From sampled completions to labelled preference rows: which samples are compared, and how a judgment becomes a
row of the reward-model (soft) and DPO (hard) data sets.

Gold source: best vs worst of the K samples by gold score, kept only above a minimum margin (clear labels).
With `reward_pairs: all` the reward model also gets every other pair of the K samples above the margin (up to
K·(K−1)/2 per prompt, at no extra sampling cost) while the DPO data stay best vs worst; pairs of one prompt
always fall on the same side of the held-out split.
AI / mix sources: every pair of the K samples is judged under one principle drawn for the prompt (a pointwise judge
rates each sample once, so this costs K ratings, not K·(K−1)/2 comparisons); the samples are ranked by summed win
probability (Borda) and the judge's best vs worst is the prompt's DPO pair. The judge decides the direction.
Mix shares the prompts, not the pairs, between the gold and the AI judge.

A judged pair becomes one row oriented so that `chosen` is the preferred side, `label` = p(chosen better) ≥ ½.
Exact ties (p = ½) carry no direction and are dropped. Rows with |p − ½| > δ (`hard_threshold`) also go to the
hard set used by the DPO family (Bai et al. 2022 threshold the soft labels the same way).
"""

from __future__ import annotations

import hashlib
from typing import Any

from tasks.common.gold import gold_preference


def best_vs_worst(prompt: dict[str, Any], texts: list[str], scores: list[float], min_margin: float) -> dict | None:
    """One preference row (internal form) from K scored samples, or None when the gold margin is too small."""
    scored = [(s, t) for s, t in zip(scores, texts, strict=True) if t.strip()]
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda st: st[0])
    worst = min(scored, key=lambda st: st[0])
    margin = best[0] - worst[0]
    if margin <= 0 or margin < min_margin or best[1] == worst[1]:
        return None
    return {
        "id": prompt["id"],
        "prompt": prompt["prompt"],
        "chosen": [{"role": "assistant", "content": best[1]}],
        "rejected": [{"role": "assistant", "content": worst[1]}],
        "score_chosen": best[0],
        "score_rejected": worst[0],
        "label": 1.0,
        "sample_scores": scores,
    }


def margin_pairs(prompt: dict[str, Any], texts: list[str], scores: list[float], min_margin: float) -> list[dict]:
    """Every pair (i < j) of distinct non-empty samples whose gold scores differ by ≥ min_margin (> 0), oriented
    best first; the best-vs-worst pair keeps the prompt's id (so the DPO rows are those of best_vs_worst),
    the others get `<id>-<i><j>`. Each row carries `prompt_id` (the split group) and `best_worst`."""
    top = best_vs_worst(prompt, texts, scores, min_margin)
    if top is None:
        return []
    rows, seen = [], set()
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = texts[i], texts[j]
            margin = abs(scores[i] - scores[j])
            if not a.strip() or not b.strip() or a == b or margin <= 0 or margin < min_margin:
                continue
            (sc, c), (sr, r) = sorted([(scores[i], a), (scores[j], b)], key=lambda st: -st[0])
            is_top = (c, r) == (top["chosen"][0]["content"], top["rejected"][0]["content"])
            if is_top and "top" in seen:
                continue  # duplicated samples: one best-vs-worst row only
            seen.add("top" if is_top else (i, j))
            rows.append({**top, "id": prompt["id"] if is_top else f"{prompt['id']}-{i}{j}",
                         "chosen": [{"role": "assistant", "content": c}],
                         "rejected": [{"role": "assistant", "content": r}],
                         "score_chosen": sc, "score_rejected": sr, "prompt_id": prompt["id"], "best_worst": is_top})
    return rows


def all_pairs(prompt: dict[str, Any], texts: list[str]) -> list[dict[str, Any]]:
    """Every pair (i < j) of a prompt's distinct non-empty samples: what the AI source judges (ids <prompt>-<i><j>)."""
    pairs = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = texts[i], texts[j]
            if a.strip() and b.strip() and a != b:
                pairs.append({"id": f"{prompt['id']}-{i}{j}", "prompt_id": prompt["id"], "prompt": prompt["prompt"],
                              "a": a, "b": b})
    return pairs


def borda_best_worst(pairs: list[dict[str, Any]], p_a: list[float]) -> str | None:
    """The id of the pair (best, worst) when the samples are ranked by their summed win probability over the
    judged pairs (Borda count); None when that pair was not judged (e.g. identical texts) or nothing was."""
    wins: dict[str, float] = {}
    for pair, p in zip(pairs, p_a, strict=True):
        wins[pair["a"]] = wins.get(pair["a"], 0.0) + p
        wins[pair["b"]] = wins.get(pair["b"], 0.0) + 1.0 - p
    if len(wins) < 2:
        return None
    ranked = sorted(wins, key=lambda t: -wins[t])
    best, worst = ranked[0], ranked[-1]
    for pair in pairs:
        if {pair["a"], pair["b"]} == {best, worst}:
            return pair["id"]
    return None


def assign_shares(ids: list[str], shares: dict[str, float], seed: int) -> dict[str, str]:
    """id → labeller name, each labeller getting its share of the ids (by a seeded hash rank, order-free)."""
    total = sum(shares.values())
    if total <= 0:
        raise ValueError("collect_preferences.mix: the shares must add up to more than 0")
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:mix:{i}".encode()).hexdigest())
    out, start, acc = {}, 0, 0.0
    names = sorted(shares)
    for n, name in enumerate(names):
        acc += shares[name] / total
        end = len(ranked) if n == len(names) - 1 else round(acc * len(ranked))
        for i in ranked[start:end]:
            out[i] = name
        start = end
    return out


def to_row(pair: dict[str, Any], p_a: float, source: str, labeller: str, gold: tuple[float, float] | None) -> dict | None:
    """The oriented preference row of a judged pair (None for an exact tie)."""
    if p_a == 0.5:
        return None
    a_wins = p_a > 0.5
    chosen, rejected = (pair["a"], pair["b"]) if a_wins else (pair["b"], pair["a"])
    row = {
        "id": pair["id"],
        "prompt": pair["prompt"],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "label": p_a if a_wins else 1.0 - p_a,
        "source": source,
        "labeller": labeller,
    }
    if gold is not None:
        g_chosen, g_rejected = gold if a_wins else (gold[1], gold[0])
        row["score_chosen"], row["score_rejected"] = g_chosen, g_rejected
        row["gold_label"] = gold_preference(g_chosen, g_rejected)
    row.update(pair.get("extra", {}))
    return row


def split_pairs(pairs: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic held-out split: order the groups (a row's `prompt_id`, else its id) by a seeded hash, so a
    pair's side never depends on row order and pairs of one prompt never straddle the split (no leakage)."""
    def group(p: dict) -> str:
        return str(p.get("prompt_id", p["id"]))

    groups = sorted({group(p) for p in pairs})
    n_eval = round(len(groups) * eval_fraction)
    if eval_fraction > 0 and len(groups) >= 2:
        n_eval = min(max(n_eval, 1), len(groups) - 1)
    ranked = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    held_out = set(ranked[:n_eval])
    return [p for p in pairs if group(p) not in held_out], [p for p in pairs if group(p) in held_out]
