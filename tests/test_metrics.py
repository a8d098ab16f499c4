"""Evaluation metric functions against hand-computed numbers (the worked arithmetic is in each docstring)."""

from __future__ import annotations

import math

import pytest

from tasks.common.metrics import distinct_n, kl_k1, kl_k3, mean_ci, win_rate


def test_mean_ci_t_interval():
    mean, lo, hi = mean_ci([1, 2, 3, 4, 5])
    assert mean == 3
    assert lo == pytest.approx(1.03676, abs=1e-5)
    assert hi == pytest.approx(4.96324, abs=1e-5)


def test_mean_ci_degenerate():
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    mean, lo, hi = mean_ci([0.5])
    assert mean == 0.5 and math.isnan(lo) and math.isnan(hi)


def test_distinct_n():
    texts = ["the cat the cat", "the dog"]
    assert distinct_n(texts, 1) == 0.5
    assert distinct_n(texts, 2) == 0.75
    assert distinct_n(["one"], 2) == 0.0


def test_kl_estimators():
    logprobs = [[math.log(0.5), math.log(0.25)]]
    ref = [[math.log(0.25), math.log(0.5)]]
    assert kl_k1(logprobs, ref) == [pytest.approx(0.0, abs=1e-12)]
    assert kl_k3(logprobs, ref) == [pytest.approx(0.5, abs=1e-12)]
    # identical distributions: both estimators are exactly zero
    assert kl_k1(ref, ref) == [0.0] and kl_k3(ref, ref) == [0.0]


def test_kl_k3_matches_exact_kl_in_expectation():
    """Sampling y ~ p for a two-outcome p, q: E[k1] = E[k3] = KL(p‖q) = Σ p log p/q (enumerated, not sampled)."""
    p, q = [0.8, 0.2], [0.5, 0.5]
    exact = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    k1 = kl_k1([[math.log(pi)] for pi in p], [[math.log(qi)] for qi in q])
    k3 = kl_k3([[math.log(pi)] for pi in p], [[math.log(qi)] for qi in q])
    assert sum(pi * k for pi, k in zip(p, k1)) == pytest.approx(exact)
    assert sum(pi * k for pi, k in zip(p, k3)) == pytest.approx(exact)


def test_win_rate():
    assert win_rate([1, 0, 0.5], [0, 0, 1]) == 0.5
