"""Per-token log-probs of responses under a model and under its frozen reference, from padded token batches.

One home for the scoring that PPO's rollouts and losses and evaluate's KL share: the log-probs PPO's loss uses are
computed exactly as the ones its rollout stored, and evaluate's KL(policy‖SFT) reads the policy's samples the same
way (same padding, positions and temperature). It lives in tasks/common rather than tasks/ppo so that a change to
PPO's own code does not make the evaluate stage stale.

Log-probs use logits / temperature (docs/methods.md: the sampling distribution is the one being optimised). Prompts are
left-padded as in generation, responses right-padded; position ids come from the attention mask, so padding never
shifts a token's position. With LoRA, the reference is the same model with its adapter disabled: no second copy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


def response_mask(ids: torch.Tensor, eos_id: int, pad_id: int) -> torch.Tensor:
    """1 on tokens up to and including the first EOS (everything non-pad when there is none), 0 after it."""
    is_eos = ids == eos_id
    after_eos = (torch.cumsum(is_eos.int(), dim=1) - is_eos.int()) > 0  # strictly after the first EOS
    return ((~after_eos) & (ids != pad_id) | (is_eos & ~after_eos)).float()


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of softmax(logits), in nats."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


@dataclass
class Batch:
    """Token tensors of one rollout batch: prompts left-padded, responses right-padded (pad after the first EOS)."""

    query: torch.Tensor  # [B, Lq]
    query_mask: torch.Tensor  # [B, Lq]
    response: torch.Tensor  # [B, Lr]
    mask: torch.Tensor  # [B, Lr] float: response tokens up to and including the first EOS
    eos_id: int

    @property
    def has_eos(self) -> torch.Tensor:
        """[B] bool: the response ended with EOS (else it gets the fixed no-EOS penalty score)."""
        return ((self.response == self.eos_id) & self.mask.bool()).any(dim=1)


def pack(query_ids: list[list[int]], response_ids: list[list[int]], pad_id: int, eos_id: int,
         device: str | torch.device = "cpu") -> Batch:
    """Lists of token ids → padded tensors; response tokens after the first EOS become padding."""
    lq, lr = max(map(len, query_ids)), max(1, max(map(len, response_ids)))
    query = torch.full((len(query_ids), lq), pad_id, dtype=torch.long)
    query_mask = torch.zeros_like(query)
    response = torch.full((len(response_ids), lr), pad_id, dtype=torch.long)
    for i, (q, r) in enumerate(zip(query_ids, response_ids, strict=True)):
        query[i, lq - len(q):] = torch.tensor(q, dtype=torch.long)
        query_mask[i, lq - len(q):] = 1
        if r:
            response[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    mask = response_mask(response, eos_id, pad_id)
    response = torch.where(mask.bool(), response, torch.full_like(response, pad_id))
    return Batch(query.to(device), query_mask.to(device), response.to(device), mask.to(device), eos_id)


def model_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    """Prompt + response as one left/right-padded sequence, with position ids from the attention mask — shared by
    the policy's log-probs and the value model, so both read the same positions."""
    ids = torch.cat([batch.query, batch.response], dim=1)
    attention = torch.cat([batch.query_mask, batch.mask.long()], dim=1)
    return {"input_ids": ids, "attention_mask": attention, "position_ids": (attention.cumsum(-1) - 1).clamp(min=0)}


def token_logprobs(model, batch: Batch, temperature: float, with_entropy: bool = False, prefix=None):
    """log π(y_t | x, y_<t) for every response position ([B, Lr], 0 where masked), logits / temperature; with
    `with_entropy` also the per-position entropy. Gradients flow when called outside no_grad.

    `prefix`: (length, KV cache expanded to the batch) of tokens every query starts with, left out of
    `batch.query` (tasks/common/prefix_cache.py); positions and the attention mask continue from it."""
    lr = batch.response.shape[1]
    inputs = model_inputs(batch)
    if prefix is not None:
        length, cache = prefix
        ones = torch.ones(batch.query.shape[0], length, dtype=inputs["attention_mask"].dtype, device=batch.query.device)
        inputs.update(attention_mask=torch.cat([ones, inputs["attention_mask"]], dim=1),
                      position_ids=inputs["position_ids"] + length, cache=cache, use_cache=True)
    # Only the logits that predict response tokens: positions Lq−1 … Lq+Lr−2.
    logits = model(**inputs, logits_to_keep=lr + 1).logits[:, :-1].float() / temperature
    logp = torch.log_softmax(logits, dim=-1).gather(-1, batch.response[..., None]).squeeze(-1) * batch.mask
    if with_entropy:
        return logp, entropy_from_logits(logits) * batch.mask
    return logp


@contextlib.contextmanager
def reference(model):
    """The frozen reference: a PeftModel with its adapter disabled (the SFT model the policy adapter sits on)."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        yield model
