"""SimPO (Meng, Xia & Chen 2024, https://arxiv.org/abs/2405.14734) as a small DPOTrainer subclass.

Why not TRL: DPOTrainer 1.16 has no reference-free loss, and `trl.experimental.cpo.CPOTrainer(loss_type="simpo",
cpo_alpha=0)` is an experimental API with its own tokenisation path that materialises the full logits. Subclassing
DPOTrainer keeps its chat-template tokenisation, collator, fused log-prob head and metric names, and replaces only
the loss; the reference model is never run (no reference forward, no reference log-probs).

Margin convention (SimPO eq. 6; the same as CPOTrainer's): loss = −log σ(β·avglogp(y_w) − β·avglogp(y_l) − γ),
avglogp = completion log-prob summed over tokens / number of completion tokens; γ is in reward units (not γ/β).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer


def simpo_loss(chosen_avg_logps: torch.Tensor, rejected_avg_logps: torch.Tensor, beta: float,
               gamma: float) -> torch.Tensor:
    """Per-pair SimPO loss −log σ(β·(avglogp_w − avglogp_l) − γ).

    Worked example: avglogp_w = −1.0, avglogp_l = −1.5, β = 2, γ = 0.5 → β·Δ − γ = 2·0.5 − 0.5 = 0.5,
    −log σ(0.5) = log(1 + e^−0.5) = 0.474077.
    """
    return -F.logsigmoid(beta * (chosen_avg_logps - rejected_avg_logps) - gamma)


class SimPOTrainer(DPOTrainer):
    """DPOTrainer with SimPO's reference-free, length-normalised loss; `args.beta` is SimPO's β."""

    def __init__(self, *args: Any, gamma: float, **kwargs: Any):
        if kwargs.get("args") is not None and kwargs["args"].precompute_ref_log_probs:
            raise ValueError("SimPO uses no reference model: set precompute_ref_log_probs to false")
        self.gamma = gamma
        super().__init__(*args, **kwargs)

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=labels,
            fused_lm_head=True,
            use_cache=False,
        )
        # The fused head returns the log-prob of each next token, zero where the label is -100 (prompt, padding).
        shift_mask = completion_mask[:, 1:]
        per_token_logps = outputs.log_probs[:, -shift_mask.size(1) :]
        avg_logps = per_token_logps.sum(dim=1) / shift_mask.sum(dim=1).clamp(min=1)
        chosen, rejected = avg_logps.chunk(2, dim=0)  # the collator stacks [chosen; rejected]
        loss = simpo_loss(chosen, rejected, self.beta, self.gamma).mean()

        # Same metric names as DPO (rewards = β·avglogp here), so runs of every method compare in MLflow.
        gather = self.accelerator.gather_for_metrics
        chosen_rewards, rejected_rewards = self.beta * chosen.detach(), self.beta * rejected.detach()
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["logps/chosen"].append(gather(chosen.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected.detach()).mean().item())
        return (loss, outputs) if return_outputs else loss
