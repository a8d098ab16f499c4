"""The tensor-level pieces of PPO for language models, each a pure function of its inputs.

Conventions: tensors are [batch, response_len], responses right-padded; `mask` is 1 on response tokens up to and
including the first EOS and 0 after it and on padding. Nothing here reads a model: the trainer feeds log-probs,
values and scores in, so every formula can be tested on numbers.

- KL control (Ziegler et al. 2019): fixed β, or adaptive e = clip(KL/target − 1, −0.2, 0.2), β ← β·(1 + e·n/horizon)
  with n the number of samples in the rollout batch.
- Per-token reward: −β·kl_t on every response token (k1 = log π − log π_ref, or k3 = exp(−k1) − 1 + k1, from
  tasks/common/kl.py: evaluate's KL uses the same estimators), plus the reward-model score on the last token
  (responses without EOS get a fixed penalty score instead).
- GAE (γ, λ) backwards over the response; padding has reward 0 and value 0, so it contributes nothing.
- Advantages whitened over valid tokens only; clipped policy loss; clipped value loss (max of the two squared
  errors, ½ scale); approx-KL ½·E[(log r)²]; clip fractions; entropy from logits; explained variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KLController:
    """β for the KL penalty. `target` None = fixed β. State is two floats: saved in checkpoints for resume."""

    beta: float
    target: float | None = None
    horizon: float = 10000.0

    def update(self, kl: float, n_samples: int) -> float:
        if self.target is not None:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.beta *= 1.0 + error * n_samples / self.horizon
        return self.beta

    def state_dict(self) -> dict[str, float | None]:
        return {"beta": self.beta, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.beta, self.target, self.horizon = state["beta"], state["target"], state["horizon"]


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, non-score part): −β·kl on every valid token, the score added on the last valid token."""
    non_score = -beta * kl * mask
    rewards = non_score.clone()
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, non_score


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalised advantage estimation; masked positions have reward and value 0."""
    rewards, values = rewards * mask, values * mask
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    running = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
        next_value = values[:, t]
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the valid entries."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    return ((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Zero mean (optional), unit variance over valid entries; masked entries stay 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate, averaged over valid tokens; stats: approx-KL (½E[(log r)²]) and clip fraction."""
    log_ratio = (logp - old_logp) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "approx_kl": 0.5 * masked_mean(log_ratio**2, mask),
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
        }
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ½·max((v − R)², (clip(v, v_old ± c) − R)²) over valid tokens."""
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    losses = torch.max((values - returns) ** 2, (v_clipped - returns) ** 2)
    loss = 0.5 * masked_mean(losses, mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean(((values - returns) ** 2 < (v_clipped - returns) ** 2).float(), mask)}
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 − Var[R − V] / Var[R] over valid tokens (1 = perfect value function, ≤ 0 = no better than a constant)."""
    var_r = masked_var(returns, mask)
    if float(var_r) == 0.0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask) / var_r)
