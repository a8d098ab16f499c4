"""Judge win rates (both orders, ties, order disagreement) and the length-controlled rate, by hand arithmetic.

Judges are real: the VADER gold judge, the tiny model as a local judge, and two small rule judges written here
(a judge that reads only the position, and one that prefers the longer reply) through the real Judge base class.
"""

from __future__ import annotations

import math

import pytest

from tasks.common.metrics import mean_ci
from tasks.evaluation.winrates import judge_win_rates, length_controlled_win_rate
from tasks.judges.base import Judge, Query, Verdict


def _prompts(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"review {i}"}] for i in range(n)]


class SecondPosition(Judge):
    """Always prefers whichever reply is shown second, like the 135M judge (CONTEXT.md, issue 3)."""

    identity = "rule:second"

    def score(self, queries: list[Query]) -> list[Verdict]:
        return [Verdict(p_first=0.2) for _ in queries]


class Longer(Judge):
    """Prefers the longer reply, in either order: p(first) = σ(0.5 · (words(first) − words(second)))."""

    identity = "rule:longer"

    def score(self, queries: list[Query]) -> list[Verdict]:
        return [Verdict(p_first=1 / (1 + math.exp(-0.5 * (len(q.first.split()) - len(q.second.split())))))
                for q in queries]


class Fixed(Judge):
    """p(first) from a table keyed by the first reply (hands the test exact soft labels)."""

    identity = "rule:fixed"

    def __init__(self, table: dict[str, float]):
        super().__init__()
        self.table = table

    def score(self, queries: list[Query]) -> list[Verdict]:
        return [Verdict(p_first=self.table[q.first]) for q in queries]


def test_gold_judge_counts_wins_ties_losses():
    from tasks.judges.rule import GoldJudge

    good, bad = "a wonderful , moving film", "a dull , awful mess"
    a = [good, "the film", "a film", bad]
    b = [bad, "the movie", "the movie", good]
    metrics, rows = judge_win_rates(GoldJudge(), _prompts(4), a, b, tie_margin=0.05, ids=["p0", "p1", "p2", "p3"])
    assert [r["outcome"] for r in rows] == ["win", "tie", "tie", "loss"]  # VADER: neutral vs neutral is a tie
    assert (metrics["judge_wins"], metrics["judge_ties"], metrics["judge_losses"]) == (1, 2, 1)
    assert metrics["judge_win_rate"] == (1 + 0.5 * 2) / 4
    _, low, high = mean_ci([1.0, 0.5, 0.5, 0.0])
    assert (metrics["judge_win_rate_ci_low"], metrics["judge_win_rate_ci_high"]) == pytest.approx((low, high))
    assert metrics["judge_order_disagreement"] == 0.0  # a rule judge has no position preference
    assert metrics["judge_mean_p"] == pytest.approx((1 + 0.5 + 0.5 + 0) / 4)
    assert 0.0 < metrics["judge_win_rate_lc"] < 1.0
    assert rows[0] == {"prompt_id": "p0", "index": 0, "p_ab": 1.0, "p_ba": 0.0, "p": 1.0, "outcome": "win",
                       "position_flip": False, "len_a": 5, "len_b": 5}


def test_position_bias_becomes_ties_and_is_reported():
    """A judge that reads only positions says 'A' in one order and 'B' in the other: both orders average to ½."""
    metrics, rows = judge_win_rates(SecondPosition(), _prompts(3), ["x", "y", "z"], ["u", "v", "w"], tie_margin=0.0)
    assert [r["p"] for r in rows] == [0.5, 0.5, 0.5]
    assert metrics["judge_ties"] == 3 and metrics["judge_win_rate"] == 0.5
    assert metrics["judge_order_disagreement"] == 1.0


def test_tie_margin_and_interval_over_prompts():
    judge = Fixed({"a1": 0.53, "b1": 0.47, "a2": 0.9, "b2": 0.1, "a3": 0.2, "b3": 0.8})
    # p(a) = (p_ab + 1 − p_ba)/2: pair 1 → 0.53, pair 2 → 0.9, pair 3 → 0.2
    m, _ = judge_win_rates(judge, _prompts(3), ["a1", "a2", "a3"], ["b1", "b2", "b3"], tie_margin=0.05)
    assert (m["judge_wins"], m["judge_ties"], m["judge_losses"]) == (1, 1, 1)
    m0, _ = judge_win_rates(judge, _prompts(3), ["a1", "a2", "a3"], ["b1", "b2", "b3"], tie_margin=0.0)
    assert (m0["judge_wins"], m0["judge_ties"], m0["judge_losses"]) == (2, 0, 1)
    assert m0["judge_mean_p"] == pytest.approx((0.53 + 0.9 + 0.2) / 3)
    # two pairs of one prompt are one unit of the interval: prompt p → mean(1, 0.5), prompt q → 0
    m2, rows = judge_win_rates(judge, _prompts(3), ["a2", "a1", "a3"], ["b2", "b1", "b3"], 0.05, ids=["p", "p", "q"])
    _, low, high = mean_ci([0.75, 0.0])
    assert (m2["judge_win_rate_ci_low"], m2["judge_win_rate_ci_high"]) == pytest.approx((low, high))
    assert m2["judge_win_rate"] == pytest.approx(1.5 / 3) and [r["prompt_id"] for r in rows] == ["p", "p", "q"]
    with pytest.raises(ValueError, match="3 prompts, 2 A replies"):
        judge_win_rates(judge, _prompts(3), ["a1", "a2"], ["b1", "b2", "b3"], 0.05)
    with pytest.raises(ValueError, match="2 ids"):
        judge_win_rates(judge, _prompts(3), ["a1", "a2", "a3"], ["b1", "b2", "b3"], 0.05, ids=["p", "q"])


def test_length_controlled_rate_removes_a_pure_verbosity_win():
    """The judge prefers longer replies and A is longer on 8 of 10 prompts: raw win rate 0.8, LC ≈ ½."""
    a = ["w " * 6] * 8 + ["w " * 3] * 2
    b = ["w " * 3] * 8 + ["w " * 6] * 2
    m, _ = judge_win_rates(Longer(), _prompts(10), a, b, tie_margin=0.05)
    assert m["judge_win_rate"] == 0.8 and m["judge_mean_p"] > 0.6
    assert m["judge_win_rate_lc"] == pytest.approx(0.5, abs=1e-3)


def test_length_controlled_hand_example():
    # d = (+1, −1) → s = 1, x = ±tanh(1); two points, two parameters: exact fit θ ± φ·tanh(1) = logit(.9), logit(.3)
    theta = (math.log(0.9 / 0.1) + math.log(0.3 / 0.7)) / 2
    assert theta == pytest.approx(0.67496, abs=1e-5)
    expected = 1 / (1 + math.exp(-theta))
    assert expected == pytest.approx(0.66262, abs=1e-5)
    assert length_controlled_win_rate([0.9, 0.3], [2, 1], [1, 2]) == pytest.approx(expected, abs=1e-4)


def test_length_controlled_without_a_length_effect_is_the_mean_preference():
    p = [0.3, 0.6, 0.8, 0.95]
    assert length_controlled_win_rate(p, [5, 7, 2, 9], [5, 7, 2, 9]) == pytest.approx(sum(p) / 4, abs=1e-6)
    # lengths differ but are uncorrelated with p: φ = 0 at the optimum, σ(θ) = mean p
    assert length_controlled_win_rate([0.9, 0.9, 0.6, 0.6], [3, 1, 3, 1], [1, 3, 1, 3]) == pytest.approx(0.75, abs=1e-6)


def test_length_controlled_length_only_preference():
    """Preference is a function of the length difference only, symmetric about 0 (p(d) = 1 − p(−d)); A is
    usually longer, so the raw rates are far from ½ — the prediction at equal length is ½."""
    # hard labels: at d = +5 A wins 36 of 40, at d = −5 A wins 1 of 10
    p = [1.0] * 36 + [0.0] * 4 + [1.0] + [0.0] * 9
    len_a, len_b = [10] * 40 + [5] * 10, [5] * 40 + [10] * 10
    assert sum(p) / len(p) == 0.74
    assert length_controlled_win_rate(p, len_a, len_b) == pytest.approx(0.5, abs=1e-4)
    # soft labels generated by the GLM itself with θ = 0, φ = 2 on skewed differences
    import numpy as np

    d = np.array([9, 7, 6, 4, 3, 3, 2, 1, -1, -3])
    soft = 1 / (1 + np.exp(-2 * np.tanh(d / d.std())))
    assert soft.mean() > 0.7
    assert length_controlled_win_rate(soft.tolist(), d.tolist(), [0] * 10) == pytest.approx(0.5, abs=1e-4)


def test_length_controlled_degenerate():
    assert math.isnan(length_controlled_win_rate([], [], []))
    assert math.isnan(length_controlled_win_rate([0.9, 0.8], [5, 6], [3, 4]))  # A always 2 longer: confounded


def test_local_judge_end_to_end(tiny_model_dir):
    from tasks.judges.local import LocalJudge

    judge = LocalJudge(tiny_model_dir, None, None, few_shot=False, dtype="float32", batch_size=4)
    a = ["great fun", "i loved it", "a kind and honest answer"]
    b = ["a boring mess", "i hated it", "harmful"]
    metrics, rows = judge_win_rates(judge, _prompts(3), a, b, tie_margin=0.05)
    assert metrics["judge_wins"] + metrics["judge_ties"] + metrics["judge_losses"] == 3
    assert 0.0 <= metrics["judge_win_rate"] <= 1.0 and 0.0 <= metrics["judge_order_disagreement"] <= 1.0
    assert 0.0 < metrics["judge_win_rate_lc"] < 1.0
    for r in rows:
        assert 0 < r["p_ab"] < 1 and 0 < r["p_ba"] < 1
        assert r["p"] == pytest.approx((r["p_ab"] + 1 - r["p_ba"]) / 2)
        assert r["outcome"] == ("win" if r["p"] > 0.55 else "loss" if r["p"] < 0.45 else "tie")
    assert judge.stats.calls == 6  # both orders of every pair
