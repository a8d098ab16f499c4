"""The KL estimators, defined once: PPO's per-token penalty (tasks/ppo/core.py, tensors) and evaluate's per-sequence
KL(policy‖reference) (tasks/common/metrics.py, python floats) both call `kl_per_token`.

A module of its own, so that neither stage depends on the other's code: evaluate does not re-run when PPO changes,
nor align when an evaluation metric does.

Schulman, "Approximating KL divergence" (2020), for tokens y sampled from π, with k1 = log π(y) − log π_ref(y):
k1 (unbiased, can be negative per token) and k3 = e^(−k1) − 1 + k1 (unbiased, never negative, lower variance).
k3 is computed as expm1(−k1) + k1: exp(−k1) − 1 cancels catastrophically when π and π_ref are close, which is
most tokens (in float32, at |k1| ≈ 1e-4 the rounding error, 6e-8, is ten times k3 itself).
"""

from __future__ import annotations

import math
from typing import TypeVar

T = TypeVar("T")  # a float, or a tensor (elementwise)


def kl_per_token(logp: T, ref_logp: T, estimator: str = "k1") -> T:
    """The k1 or k3 estimate for each token, from its log-prob under the sampling policy and under the reference.

    Worked example: log π = ln .5, log π_ref = ln .25 → k1 = ln 2 = .69315, k3 = .5 − 1 + .69315 = .19315.
    """
    k1 = logp - ref_logp
    if estimator == "k1":
        return k1
    if estimator == "k3":
        return (k1.neg().expm1() if hasattr(k1, "expm1") else math.expm1(-k1)) + k1
    raise ValueError(f"unknown KL estimator {estimator!r} (k1 or k3)")
