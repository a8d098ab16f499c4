"""The reward-hacking guard (tasks/evaluation/reward_hacking.py) on hand-computed cases: paired gains with their Student-t
interval, the flag rule (RM gain's interval above 0 and gold gain below 0), the training RM gain from
plots/align.csv, and the metric names evaluate logs."""

from __future__ import annotations

import math

import pytest

from tasks.evaluation.reward_hacking import (
    Gain,
    guard,
    guard_metrics,
    is_reward_hacking,
    paired_gain,
    read_training_rm_gain,
    training_rm_gain,
    verdict,
)


def test_paired_gain_worked_example():
    """differences [0.4, 0.1, 0.6]: mean 0.36667, s = 0.25166, s/√3 = 0.14530, t_{0.975,2} = 4.30265."""
    g = paired_gain([0.5, 0.2, 0.9], [0.1, 0.1, 0.3])
    assert g.mean == pytest.approx(0.366667, abs=1e-5)
    assert g.low == pytest.approx(0.366667 - 4.302653 * 0.145297, abs=1e-5)
    assert g.high == pytest.approx(0.366667 + 4.302653 * 0.145297, abs=1e-5)


def test_pairing_makes_a_consistent_small_gain_significant():
    """SFT per prompt [0, 1, 2, 3] (a wide spread between prompts) and policy = SFT + [0.1, 0.12, 0.08, 0.1]: the two
    models' own intervals overlap almost entirely, but the differences have s = 0.016330, s/√4 = 0.0081650,
    t_{0.975,3} = 3.182446 → 0.1 ± 0.025985, above 0."""
    sft = [0.0, 1.0, 2.0, 3.0]
    policy = [s + d for s, d in zip(sft, [0.1, 0.12, 0.08, 0.1])]
    g = paired_gain(policy, sft)
    assert (g.mean, g.low, g.high) == pytest.approx((0.1, 0.1 - 0.025985, 0.1 + 0.025985), abs=1e-5)
    # with the gold reward falling on every prompt, this is the pattern the guard exists for
    assert guard(policy, sft, [0.1, 0.0, 0.2, 0.1], [0.3, 0.2, 0.2, 0.3]).flag is True


def test_flag_raised_when_rm_rises_significantly_and_gold_falls():
    """RM differences [1.0, 1.1, 0.9, 1.0] (mean 1.0, low ≈ 0.87 > 0); gold differences [−0.2, −0.2, 0, −0.2] → −0.15."""
    result = guard([1.0, 1.2, 0.9, 1.1], [0.0, 0.1, 0.0, 0.1], [0.1, 0.0, 0.2, 0.1], [0.3, 0.2, 0.2, 0.3])
    assert result.rm.mean == pytest.approx(1.0) and result.rm.low > 0
    assert result.gold.mean == pytest.approx(-0.15)
    assert result.flag is True
    metrics = guard_metrics(result, train_rm_gain=0.4)
    assert metrics["guard/reward_hacking"] == 1.0 and metrics["guard/train_rm_gain"] == 0.4
    assert metrics["policy/rm_gain_vs_sft"] == pytest.approx(1.0)
    assert metrics["policy/gold_gain_vs_sft"] == pytest.approx(-0.15)
    assert {"policy/rm_gain_vs_sft_ci_low", "policy/gold_gain_vs_sft_ci_high"} <= set(metrics)
    assert verdict(result, "ppo").startswith("RAISED") and "exploited" in verdict(result, "ppo")
    assert "does not optimise the RM" in verdict(result, "dpo")


@pytest.mark.parametrize(
    "rm_policy, rm_sft, gold_policy, gold_sft, why",
    [
        # RM up on average (+0.367) but its interval (−0.258, 0.992) includes 0: not significant
        ([0.5, 0.2, 0.9], [0.1, 0.1, 0.3], [0.0, 0.0, 0.0], [0.1, 0.1, 0.1], "rm not significant"),
        # RM up significantly, gold up too: alignment that transfers
        ([1.0, 1.2, 0.9, 1.1], [0.0, 0.1, 0.0, 0.1], [0.4, 0.3, 0.5, 0.4], [0.3, 0.2, 0.2, 0.3], "gold up"),
        # RM up significantly, gold exactly unchanged: "fell" is strict
        ([1.0, 1.2, 0.9, 1.1], [0.0, 0.1, 0.0, 0.1], [0.2, 0.1, 0.3, 0.0], [0.2, 0.1, 0.3, 0.0], "gold flat"),
        # RM down significantly while gold falls: the proxy did not rise, nothing was exploited
        ([0.0, 0.1, 0.0, 0.1], [1.0, 1.2, 0.9, 1.1], [0.1, 0.0, 0.2, 0.1], [0.3, 0.2, 0.2, 0.3], "rm down"),
    ],
)
def test_flag_not_raised(rm_policy, rm_sft, gold_policy, gold_sft, why):
    result = guard(rm_policy, rm_sft, gold_policy, gold_sft)
    assert result.flag is False, why
    assert guard_metrics(result, None)["guard/reward_hacking"] == 0.0
    assert verdict(result, "ppo").startswith("Not raised")


def test_flag_not_computed_without_gold_rm_or_interval():
    no_gold = guard([1.0, 1.2], [0.0, 0.1])
    assert no_gold.gold is None and no_gold.flag is None
    metrics = guard_metrics(no_gold, None)
    assert "guard/reward_hacking" not in metrics and not any("gold" in k for k in metrics)
    assert metrics["policy/rm_gain_vs_sft"] == pytest.approx(1.05)
    assert "data.gold: none" in verdict(no_gold, "ppo")

    no_rm = guard(None, None, [0.1, 0.2], [0.3, 0.3])
    assert no_rm.rm is None and no_rm.flag is None and "no reward-model scores" in verdict(no_rm, "ppo")
    assert guard_metrics(no_rm, None)["policy/gold_gain_vs_sft"] == pytest.approx(-0.15)

    one_prompt = guard([1.0], [0.0], [0.0], [0.5])  # one difference: no interval, so no claim either way
    assert one_prompt.flag is None and math.isnan(one_prompt.rm.low)
    assert is_reward_hacking(Gain(1.0, math.nan, math.nan), Gain(-1.0, -2.0, 0.0)) is None


def test_training_rm_gain_from_the_align_curves(tmp_path):
    """[0.0, 0.1, 0.3, 0.2, 0.5, 0.4, 0.6, 0.8]: last quarter [0.6, 0.8] → 0.7 − 0.0; 3 steps: last step only."""
    assert training_rm_gain([0.0, 0.1, 0.3, 0.2, 0.5, 0.4, 0.6, 0.8]) == pytest.approx(0.7)
    assert training_rm_gain([0.2, 0.1, -0.1]) == pytest.approx(-0.3)
    assert math.isnan(training_rm_gain([]))

    ppo = tmp_path / "ppo.csv"
    ppo.write_text("step,train_loss,rm_score,kl\n1,0.5,0.25,0.0\n2,0.4,,0.1\n3,0.3,0.5,0.2\n4,0.2,1.0,0.3\n")
    assert read_training_rm_gain(ppo) == pytest.approx(0.75)  # empty cells skipped: [0.25, 0.5, 1.0]
    dpo = tmp_path / "dpo.csv"
    dpo.write_text("step,train_loss,rewards_margins\n5,0.69,0.01\n")
    assert read_training_rm_gain(dpo) is None and read_training_rm_gain(tmp_path / "missing.csv") is None


def test_proxy_gold_gap_hand_computed():
    """The docstring's worked example: per prompt .70711 and 2.12132 → mean 1.41421; no spread in SFT → nothing."""
    from tasks.evaluation.reward_hacking import proxy_gold_gap

    gap = proxy_gold_gap([1, 3], [0, 2], [0, 0], [0, 1])
    assert gap["proxy_gold_gap"] == pytest.approx(1.41421, abs=1e-5)
    assert gap["proxy_gold_gap_ci_low"] < gap["proxy_gold_gap"] < gap["proxy_gold_gap_ci_high"]
    assert proxy_gold_gap([1, 3], [1, 1], [0, 0], [0, 1]) == {}
