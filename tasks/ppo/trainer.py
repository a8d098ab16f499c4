"""The PPO loop for language models (written here: TRL removed its PPOTrainer in 2026).

One `step()` = one rollout batch and its updates:
  1. rollout: sample responses to `rollout_batch_size` prompts from the policy (eval mode: dropout off), cut after
     the first EOS; score them with `score_fn` (the reward model, normalised so SFT samples average 0), a fixed
     penalty for responses without EOS; token log-probs under the policy and the reference (the same model with
     its adapter disabled), and per-token values from the value model;
  2. rewards: −β·KL per token (k1 or k3) + the score on the last token; GAE (γ, λ); advantages whitened over
     valid tokens;
  3. updates: `ppo_epochs` passes over the batch in shuffled minibatches with gradient accumulation; clipped
     policy loss + vf_coef · clipped value loss; gradients clipped to max_grad_norm;
  4. the KL controller sees the batch's mean sequence KL.
The model stays in eval mode while it trains (docs/methods.md: dropout off — otherwise the rollout log-probs and the
ones the loss recomputes would differ by the dropout noise alone).

Several processes (`accelerate launch`, tasks/common/distributed.py) split the work, not the math: every rank
draws the same global prompt batch (same seeded order) and generates, scores and runs the log-prob/value forwards
for its contiguous shard; the shards are all-gathered, so every rank holds the whole rollout batch and computes
rewards, GAE, whitening and the batch KL on it exactly as one process would (global statistics, no extra
reduction to get wrong). In the updates each global minibatch (the same seeded permutation on every rank) is
split evenly; a rank's loss is a token mean over its rows scaled by its share of the minibatch's valid tokens, and
the gradients are summed over ranks before clipping — the token mean over the whole minibatch. Gradients are
reduced by hand, one flat all-reduce per optimiser step, rather than through DDP: the loop calls pieces of the
PEFT models that DDP's forward hook never sees (the adapter-disabled reference, the value model's backbone and
head), and the weights are small LoRA tensors. Sampling: each rank reseeds its sampler every step from
(seed, step, rank) — different streams per rank (docs/methods.md), and a checkpoint needs no per-rank RNG state.
One process keeps the single global RNG stream that the checkpoint saves, exactly as before.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import torch

from tasks.common.distributed import all_gather_cat, all_gather_objects, all_reduce_sum_, broadcast_, rank, world_size
from tasks.common.kl import kl_per_token
from tasks.common.logprobs import Batch, model_inputs, pack, reference, token_logprobs
from tasks.common.params import PPOParams
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

ScoreFn = Callable[[list[list[dict[str, str]]], list[str]], list[float]]


def token_values(value_model, batch: Batch) -> torch.Tensor:
    """V(s_t) for every response position ([B, Lr]): the value head on the backbone's hidden state at the position
    that predicts token t (the same positions the policy's log-probs come from)."""
    model = value_model.get_base_model() if hasattr(value_model, "get_base_model") else value_model
    hidden = model.base_model(**model_inputs(batch)).last_hidden_state
    lq, lr = batch.query.shape[1], batch.response.shape[1]
    return model.score(hidden[:, lq - 1 : lq + lr - 1]).squeeze(-1).float() * batch.mask


def uneven_split(rollout_batch_size: int, mini_batch_size: int, world: int) -> dict[str, int]:
    """The batch sizes that `world` processes cannot share evenly (the last minibatch may be a partial one)."""
    sizes = {"rollout_batch_size": rollout_batch_size, "mini_batch_size": mini_batch_size,
             "rollout_batch_size % mini_batch_size": rollout_batch_size % mini_batch_size}
    return {k: v for k, v in sizes.items() if v % world}


class PPOTrainer:
    def __init__(self, policy, value_model, tokenizer, prompts: list[list[dict[str, str]]], score_fn: ScoreFn,
                 settings: PPOParams, seed: int = 0):
        self.policy, self.value_model, self.tok = policy, value_model, tokenizer
        self.prompts, self.score_fn, self.s, self.seed = prompts, score_fn, settings, seed
        # generate()'s sampling kwargs; `dtype` is how other stages load a model for sampling, while PPO samples
        # from the policy it trains, as loaded
        self.generation = settings.generation.model_dump(exclude={"dtype"})
        self.kl_ctl = KLController(settings.kl_coef, settings.target_kl, settings.kl_horizon)
        params = [p for m in (policy, value_model) for p in m.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, eps=1e-5)
        self.trainable = params
        self.step_count = 0
        self.position = 0  # next prompt in the seeded order; with step_count and RNG, what resume restores
        self.order = list(range(len(prompts)))
        random.Random(seed).shuffle(self.order)
        self.world, self.rank = world_size(), rank()
        uneven = uneven_split(settings.rollout_batch_size, settings.mini_batch_size, self.world)
        if uneven:
            raise ValueError(f"{uneven} not divisible by the number of processes ({self.world}): every rank takes an "
                             f"equal share of each rollout batch and minibatch")
        if self.world > 1:
            with torch.no_grad():
                for p in self.trainable:  # one starting point on every rank, whatever each one's init did
                    broadcast_(p)

    def _shard(self, n: int) -> slice:
        """This rank's contiguous rows of a global batch of n (n divisible by the world size)."""
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def _sampling_seed(self) -> int:
        import numpy as np

        return int(np.random.SeedSequence([self.seed, self.step_count, self.rank]).generate_state(1)[0])

    def _next_prompts(self) -> list[list[dict[str, str]]]:
        out = []
        for _ in range(self.s.rollout_batch_size):
            if self.position == len(self.order):
                self.position = 0
                random.Random(self.seed + self.step_count + 1).shuffle(self.order)
            out.append(self.prompts[self.order[self.position]])
            self.position += 1
        return out

    @torch.no_grad()
    def rollout(self) -> tuple[Batch, dict[str, torch.Tensor], dict[str, float]]:
        from tasks.common.modeling import generate, merged

        s, tok = self.s, self.tok
        prompts = self._next_prompts()  # the global batch: the same on every rank
        mine = self._shard(len(prompts))
        self.policy.eval()
        self.value_model.eval()
        if self.world > 1:
            torch.manual_seed(self._sampling_seed())
        t0 = time.perf_counter()
        with merged(self.policy):  # sampling from the same weights, without the live LoRA's extra matmuls
            samples = generate(self.policy, tok, prompts[mine], num_return_sequences=1,
                               batch_size=s.rollout_batch_size // self.world, desc="ppo rollout", **self.generation)
        response_ids = [x[0]["ids"] for x in samples]
        scores_list = self.score_fn(prompts[mine], [x[0]["text"] for x in samples])
        if self.world > 1:  # every rank gets the whole batch, in rank order = the global prompt order
            response_ids = [ids for part in all_gather_objects(response_ids) for ids in part]
            scores_list = [x for part in all_gather_objects(scores_list) for x in part]
        query_ids = [tok(tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True),
                         add_special_tokens=False)["input_ids"] for p in prompts]
        batch = pack(query_ids, response_ids, tok.pad_token_id, tok.eos_token_id, device=self.policy.device)
        scores = torch.tensor(scores_list, dtype=torch.float32, device=batch.mask.device)
        if s.missing_eos_penalty is not None:
            scores = torch.where(batch.has_eos, scores, torch.full_like(scores, s.missing_eos_penalty))
        temperature = s.generation.temperature
        # Forwards on this rank's rows of the globally padded batch, then gathered: the same tensors one process has.
        local = batch if self.world == 1 else _rows(batch, mine)
        logp = all_gather_cat(token_logprobs(self.policy, local, temperature))
        with reference(self.policy):
            ref_logp = all_gather_cat(token_logprobs(self.policy, local, temperature))
        values = all_gather_cat(token_values(self.value_model, local))
        kl = kl_per_token(logp, ref_logp, s.kl_estimator) * batch.mask
        rewards, non_score = token_rewards(scores, kl, batch.mask, self.kl_ctl.beta)
        if s.whiten_rewards:
            rewards = whiten(rewards, batch.mask, shift_mean=False)
        advantages, returns = gae(rewards, values, batch.mask, s.gamma, s.lam)
        advantages = whiten(advantages, batch.mask)
        rollout_s = time.perf_counter() - t0
        data = {"logp": logp, "values": values, "advantages": advantages, "returns": returns}
        stats = {
            "objective/scores": float(scores.mean()),
            "objective/kl": float(kl.sum(1).mean()),
            "objective/non_score_reward": float(non_score.sum(1).mean()),
            "objective/rlhf_reward": float((scores + non_score.sum(1)).mean()),
            "objective/beta": self.kl_ctl.beta,
            "val/response_length": float(batch.mask.sum(1).mean()),
            "val/eos_fraction": float(batch.has_eos.float().mean()),
            "val/explained_variance": explained_variance(values, returns, batch.mask),
            "time/rollout_s": rollout_s,
        }
        return batch, data, stats

    def update(self, batch: Batch, data: dict[str, torch.Tensor]) -> dict[str, float]:
        s = self.s
        temperature = s.generation.temperature
        n = batch.response.shape[0]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step_count)
        sums: dict[str, float] = {}
        count = 0
        t0 = time.perf_counter()
        for _ in range(s.ppo_epochs):
            perm = torch.randperm(n, generator=gen).tolist()
            for start in range(0, n, s.mini_batch_size):
                minibatch = perm[start : start + s.mini_batch_size]
                idx = minibatch[self._shard(len(minibatch))]
                mb = _rows(batch, idx)
                # This rank's share of the minibatch's valid tokens: its token-mean loss times the share, summed
                # over ranks, is the token mean over the whole minibatch (1 with one process).
                share = 1.0 if self.world == 1 else float(mb.mask.sum() / batch.mask[minibatch].sum().clamp(min=1))
                logp, entropy = token_logprobs(self.policy, mb, temperature, with_entropy=True)
                pl, pstats = policy_loss(logp, data["logp"][idx], data["advantages"][idx], mb.mask, s.cliprange)
                v = token_values(self.value_model, mb)
                vl, vstats = value_loss(v, data["values"][idx], data["returns"][idx], mb.mask, s.cliprange_value)
                loss = (pl + s.vf_coef * vl) / s.gradient_accumulation_steps
                if self.world > 1:
                    loss = loss * share
                loss.backward()
                count += 1
                if count % s.gradient_accumulation_steps == 0 or start + s.mini_batch_size >= n:
                    if self.world > 1:
                        self._sum_gradients()
                    torch.nn.utils.clip_grad_norm_(self.trainable, s.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                for k, val in {"loss/policy": pl, "loss/value": vl, "policy/entropy": masked_mean(entropy, mb.mask),
                               "policy/approx_kl": pstats["approx_kl"], "policy/clipfrac": pstats["clipfrac"],
                               "val/clipfrac": vstats["vf_clipfrac"]}.items():
                    sums[k] = sums.get(k, 0.0) + float(val.detach()) * share
        if self.world > 1:  # token-weighted shares summed over ranks: the whole minibatch's token means
            total = all_reduce_sum_(torch.tensor(list(sums.values()), dtype=torch.float64, device=batch.mask.device))
            sums = dict(zip(sums, total.tolist(), strict=True))
        out = {k: v / count for k, v in sums.items()}
        out["time/update_s"] = time.perf_counter() - t0
        return out

    def _sum_gradients(self) -> None:
        """Sum the trainable gradients over ranks in one flat all-reduce (a missing gradient counts as zero)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.trainable]
        flat = all_reduce_sum_(torch.cat([g.reshape(-1) for g in grads]))
        offset = 0
        for p in self.trainable:
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    # Resume: everything the next step depends on — trainable weights of both models, optimiser moments, the KL
    # controller, the data position and order, the step count and the RNG that sampling draws from — so a run
    # killed after step k and resumed ends exactly where an uninterrupted run ends (tests/test_ppo_toy.py).

    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "seed": self.seed,
            "step": self.step_count,
            "position": self.position,
            "order": list(self.order),
            "kl": self.kl_ctl.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "policy": {n: p.detach().clone() for n, p in self.policy.named_parameters() if p.requires_grad},
            "value": {n: p.detach().clone() for n, p in self.value_model.named_parameters() if p.requires_grad},
            "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"checkpoint was written with seed {state['seed']}, this run has seed {self.seed}")
        for model, key in ((self.policy, "policy"), (self.value_model, "value")):
            params = dict(model.named_parameters())
            missing = set(state[key]) - set(params)
            if missing:
                raise ValueError(f"checkpoint has {key} weights this model lacks: {sorted(missing)[:3]}")
            with torch.no_grad():
                for name, value in state[key].items():
                    params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.load_state_dict(state["kl"])
        self.step_count, self.position, self.order = state["step"], state["position"], list(state["order"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def save(self, path) -> None:
        """Write the state atomically (a kill during the write leaves the previous checkpoint)."""
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def load(self, path) -> None:
        self.load_state_dict(torch.load(path, weights_only=False))

    def step(self) -> dict[str, float]:
        batch, data, stats = self.rollout()
        stats.update(self.update(batch, data))
        self.kl_ctl.update(stats["objective/kl"], batch.response.shape[0])
        self.step_count += 1
        stats["step"] = self.step_count
        return stats


def _rows(batch: Batch, idx) -> Batch:
    """The rows `idx` (a slice or a list of indices) of a batch, keeping its padding."""
    return Batch(batch.query[idx], batch.query_mask[idx], batch.response[idx], batch.mask[idx], batch.eos_id)
