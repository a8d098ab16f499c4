"""PPO's tensor pieces (tasks/ppo/core.py, and the per-token KL of tasks/common/kl.py) against hand-computed
examples: the KL controller's update rule, GAE, masks (no gradient from padding or post-EOS tokens), whitening,
the clipped losses."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.common.kl import kl_per_token
from tasks.common.logprobs import entropy_from_logits, response_mask
from tasks.ppo.core import (
    KLController,
    explained_variance,
    gae,
    masked_mean,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)

EOS, PAD = 2, 0


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-5, rtol=1e-5)


def test_adaptive_kl_controller_follows_ziegler():
    ctl = KLController(beta=0.1, target=6.0, horizon=10000)
    # KL 9 is 50 % over target: error clipped to +0.2; β ← 0.1·(1 + 0.2·256/10000)
    assert ctl.update(kl=9.0, n_samples=256) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))
    # KL 5.4 is 10 % under: error −0.1
    b = ctl.beta
    assert ctl.update(kl=5.4, n_samples=256) == pytest.approx(b * (1 - 0.1 * 256 / 10000))
    fixed = KLController(beta=0.05)
    assert fixed.update(kl=100.0, n_samples=256) == 0.05
    restored = KLController(beta=1.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored == ctl


def test_response_mask_stops_after_the_first_eos():
    ids = torch.tensor([[5, 6, EOS, 7, PAD], [5, EOS, PAD, PAD, PAD], [5, 6, 7, 8, 9]])
    assert response_mask(ids, EOS, PAD).tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_kl_estimators():
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    close(kl_per_token(logp, ref, "k1"), [[0.5, -1.0]])
    k3 = [math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0]
    close(kl_per_token(logp, ref, "k3"), [k3])
    with pytest.raises(ValueError, match="k2"):
        kl_per_token(logp, ref, "k2")


def test_token_rewards_put_the_score_on_the_last_valid_token():
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    rewards, non_score = token_rewards(torch.tensor([1.0, -1.0]), kl, mask, beta=0.5)
    close(non_score, [[-0.05, -0.1, -0.15, 0.0], [-0.25] * 4])
    close(rewards, [[-0.05, -0.1, 0.85, 0.0], [-0.25, -0.25, -0.25, -1.25]])


def test_gae_hand_computed():
    # γ = 1, λ = 0.95: δ2 = 1 − 0.7 = 0.3; δ1 = 0.7 − 0.6 = 0.1; δ0 = 0.6 − 0.5 = 0.1
    # A2 = 0.3, A1 = 0.1 + 0.95·0.3 = 0.385, A0 = 0.1 + 0.95·0.385 = 0.46575; returns = A + V
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 9.9]])  # the padded value must not leak in
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    close(adv, [[0.46575, 0.385, 0.3, 0.0]])
    close(ret, [[0.96575, 0.985, 1.0, 0.0]])
    # γ < 1 discounts the next value
    adv, _ = gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2), gamma=0.5, lam=0.5)
    # t1: δ = 1 − 1 = 0 → A1 = 0; t0: δ = 0 + 0.5·1 − 1 = −0.5 → A0 = −0.5 + 0.25·0 = −0.5
    close(adv, [[-0.5, 0.0]])


def test_whiten_uses_valid_tokens_only():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, mask)
    assert w[0, 3] == 0.0 and float(masked_mean(w, mask)) == pytest.approx(0.0, abs=1e-6)
    assert w[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)  # unbiased std of 1, 2, 3 is 1


def test_losses_take_no_gradient_from_padding_or_post_eos_tokens():
    torch.manual_seed(0)
    logp = torch.randn(2, 5, requires_grad=True)
    values = torch.randn(2, 5, requires_grad=True)
    ids = torch.tensor([[5, 6, EOS, 7, PAD], [5, 6, 7, 8, 9]])
    mask = response_mask(ids, EOS, PAD)
    old = logp.detach() + 0.3 * torch.randn(2, 5)
    adv, ret, old_v = torch.randn(2, 5), torch.randn(2, 5), values.detach() + 0.5 * torch.randn(2, 5)
    pl, stats = policy_loss(logp, old, adv, mask, clip=0.2)
    vl, vstats = value_loss(values, old_v, ret, mask, clip=0.2)
    (pl + vl).backward()
    assert logp.grad[0, 3:].abs().sum() == 0 and values.grad[0, 3:].abs().sum() == 0
    assert logp.grad[0, :3].abs().sum() > 0 and logp.grad[1].abs().sum() > 0
    assert 0 <= float(stats["clipfrac"]) <= 1 and float(stats["approx_kl"]) > 0 and 0 <= float(vstats["vf_clipfrac"]) <= 1


def test_policy_loss_clips_hand_computed():
    # one token, advantage +1: ratio e^0.5 ≈ 1.65 is clipped to 1.2 → loss −1.2, clipped
    loss, stats = policy_loss(torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1), 0.2)
    assert float(loss) == pytest.approx(-1.2) and float(stats["clipfrac"]) == 1.0
    assert float(stats["approx_kl"]) == pytest.approx(0.125)
    # advantage −1 with the same ratio: the unclipped (worse) term wins → loss e^0.5, not clipped
    loss, stats = policy_loss(torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.tensor([[-1.0]]), torch.ones(1, 1), 0.2)
    assert float(loss) == pytest.approx(math.exp(0.5)) and float(stats["clipfrac"]) == 0.0
    # value: v 2.0, old 1.0, return 0 → clipped v 1.2; max(4, 1.44)/2 = 2
    vl, _ = value_loss(torch.tensor([[2.0]]), torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.ones(1, 1), 0.2)
    assert float(vl) == pytest.approx(2.0)


def test_entropy_and_explained_variance():
    uniform = torch.zeros(1, 1, 4)
    assert float(entropy_from_logits(uniform)[0, 0]) == pytest.approx(math.log(4))
    mask = torch.ones(1, 4)
    ret = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert explained_variance(ret, ret, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full((1, 4), 2.5), ret, mask) == pytest.approx(0.0)
