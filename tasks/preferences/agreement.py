"""Agreement between labellers (Cohen's κ for two, Fleiss' κ for many) and between the humans and the AI judge.

κ = (P_o − P_e) / (1 − P_e): observed agreement corrected for the agreement expected by chance from the raters'
label frequencies. Categories are a / b / tie; skips are not labels.

Cohen (1960): two raters on the same items, P_e = Σ_c p₁(c)·p₂(c).
Fleiss (1971): per item i with n_i ratings, P_i = (Σ_c n_ic² − n_i) / (n_i (n_i − 1)); P_o = mean P_i;
p_c = Σ_i n_ic / Σ_i n_i, P_e = Σ_c p_c². With overlap k every item has n_i = k (Fleiss' setting); an item that
got fewer ratings (skips, a labeller who stopped) still counts with its own n_i ≥ 2 — for equal n_i this is exactly
Fleiss' formula.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import combinations

CATEGORIES = ("a", "b", "tie")


def cohen_kappa(x: Sequence[str], y: Sequence[str]) -> float:
    """Cohen's κ of two raters' labels of the same items (NaN when undefined: chance agreement is 1)."""
    if len(x) != len(y) or not x:
        raise ValueError("cohen_kappa needs two equally long, non-empty label lists")
    n = len(x)
    p_o = sum(a == b for a, b in zip(x, y, strict=True)) / n
    cx, cy = Counter(x), Counter(y)
    p_e = sum(cx[c] * cy[c] for c in cx) / (n * n)
    return math.nan if p_e == 1 else (p_o - p_e) / (1 - p_e)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' κ from an items × categories matrix of rating counts (items with < 2 ratings are left out)."""
    rows = [r for r in counts if sum(r) >= 2]
    if not rows:
        return math.nan
    p_items = [(sum(c * c for c in r) - sum(r)) / (sum(r) * (sum(r) - 1)) for r in rows]
    total = sum(sum(r) for r in rows)
    p_cat = [sum(r[j] for r in rows) / total for j in range(len(rows[0]))]
    p_o, p_e = sum(p_items) / len(rows), sum(p * p for p in p_cat)
    return math.nan if p_e == 1 else (p_o - p_e) / (1 - p_e)


def by_item(labels: Sequence[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """(item, rater, choice) → {item: {rater: choice}}, skips dropped."""
    out: dict[str, dict[str, str]] = {}
    for item, rater, choice in labels:
        if choice in CATEGORIES:
            out.setdefault(item, {})[rater] = choice
    return out


def fleiss_from_labels(items: dict[str, dict[str, str]]) -> float:
    return fleiss_kappa([[Counter(r.values())[c] for c in CATEGORIES] for r in items.values()])


def mean_cohen(items: dict[str, dict[str, str]], min_shared: int = 5) -> tuple[float, int]:
    """Mean Cohen's κ over the rater pairs that share ≥ min_shared items (undefined κs left out), and how many."""
    raters = sorted({r for per_item in items.values() for r in per_item})
    kappas = []
    for r1, r2 in combinations(raters, 2):
        shared = [(v[r1], v[r2]) for v in items.values() if r1 in v and r2 in v]
        if len(shared) >= min_shared:
            k = cohen_kappa([s[0] for s in shared], [s[1] for s in shared])
            if not math.isnan(k):
                kappas.append(k)
    return (sum(kappas) / len(kappas) if kappas else math.nan), len(kappas)


def majority(choices: Sequence[str]) -> str | None:
    """The most frequent of a / b / tie; None when two are equally frequent (no majority) or there is none."""
    top = Counter(c for c in choices if c in CATEGORIES).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def human_ai_agreement(items: dict[str, dict[str, str]], ai_p: dict[str, float | None]) -> tuple[float, int]:
    """Share of pairs whose majority human label (a or b) is the AI judge's preferred side; pairs with a human
    tie, no majority, or an AI p of exactly ½ (or none) are left out. Returns (share, pairs compared)."""
    hits = []
    for item, per_rater in items.items():
        human, p = majority(list(per_rater.values())), ai_p.get(item)
        if human in ("a", "b") and p is not None and p != 0.5:
            hits.append(human == ("a" if p > 0.5 else "b"))
    return (sum(hits) / len(hits) if hits else math.nan), len(hits)
