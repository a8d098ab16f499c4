"""align.method rloo | grpo: TRL's RLOOTrainer / GRPOTrainer against our reward model, the in-tree baseline for PPO.

Reads  models/sft (chain), models/reward (chain with reward_offset, reward_std), data/validated/prompts_train.jsonl
Writes models/policy/ (LoRA adapter + tokenizer + chain base → sft → policy, method rloo|grpo), metrics/align.json,
       plots/align.csv (one row per step, PPO's columns), checkpoints/align/checkpoint-N/ (TRL's, resumable)

    dvc repro align             # with align.method: rloo (or grpo)
    alignflow run

Why TRL here: a bug in our hand-written PPO (tasks/ppo/) and a property of PPO look the same from outside. Two
maintained critic-free methods, fed the same prompts, policy LoRA, reward function and sampling settings
(align.ppo.generation, score_scale, missing_eos_penalty), tell them apart: if RLOO/GRPO raise the RM score at a
KL where our PPO does not, look at our PPO first.

What differs from our PPO:
- No value model. The baseline of a completion is the other k−1 samples of its prompt (RLOO, Ahmadian et al. 2024)
  or the group mean with the reward divided by the group std (GRPO, Shao et al. 2024); one sequence-level advantage
  for every token instead of per-token GAE. Hence k = align.online.num_generations samples per prompt.
- Where the KL goes. RLOO, like our PPO, subtracts β·KL from the reward, but per sequence (Σ_t k1) rather than per
  token; GRPO leaves the reward alone and adds β·k3 per token to the loss (k3 = exp(−k1) − 1 + k1, always ≥ 0).
  β is fixed (no adaptive controller).
- One optimiser step per generation batch (TRL num_iterations 1), so π/π_old is 1 and the clip never binds: no
  PPO epochs (num_iterations > 1 in align.online.trainer would add them).
- GRPO runs with TRL's defaults unless align.online.trainer says otherwise: loss_type dapo (token losses averaged
  over all tokens of the batch), scale_rewards group.

The missing-EOS penalty: TRL hands a reward function the generated token ids (`completion_ids`, cut after the first
EOS), so the penalty is applied there exactly as our PPO applies it. TRL's own `mask_truncated_completions` (DAPO)
is a different remedy — truncated samples drop out of the loss and are neither rewarded nor punished — and stays
available, off by default, through align.online.trainer.

The reference is the SFT model: the policy is the SFT model with its adapter merged in memory, TRL adds the fresh
LoRA from `peft_config` and computes reference log-probs with that adapter disabled — one copy of the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_dir, write_json
from tasks.common.params import Params


def run_trl_online(params: Params) -> dict[str, float]:
    """Files in, files out, metrics returned."""
    from datasets import Dataset
    from peft import LoraConfig

    from tasks.common.distributed import save_trained_adapter
    from tasks.common.modeling import (
        load_causal_lm,
        load_tokenizer,
        trainer_config,
        write_chain,
    )
    from tasks.common.resume import model_digest, train
    from tasks.common.reward import load_reward_model
    from tasks.common.seeding import seed_everything
    from tasks.common.tracking import log_dict, log_metrics, stage_run
    from tasks.ppo.online import check_inputs, online_inputs, score_divisor, summary, write_ppo_curves

    cfg, paths = params.align, params.paths
    online, ppo = cfg.online, cfg.ppo
    seed_everything(params.seed)
    check_inputs(params)
    with stage_run("align", params, cfg.model_dump()):
        # Data: TRL applies the chat template to the conversational "prompt" column itself.
        prompts, sft_chain, resume = online_inputs(params, online.max_prompts)

        # Models
        tok = load_tokenizer(paths.sft_model)
        policy = load_causal_lm(paths.sft_model)
        rm, rm_tok = load_reward_model(paths.reward_model)
        gen_eos = policy.generation_config.eos_token_id
        eos_ids = {tok.eos_token_id, *([gen_eos] if isinstance(gen_eos, int) else gen_eos or [])}  # as TRL cuts
        reward_fn = rm_reward(rm, rm_tok, scale=score_divisor(paths.reward_model, ppo.score_scale),
                              eos_token_ids=eos_ids, missing_eos_penalty=ppo.missing_eos_penalty,
                              batch_size=ppo.score_batch_size)

        # Train
        config_cls, trainer_cls = _trl(cfg.method)
        gen = ppo.generation
        args = trainer_config(
            config_cls, "align.online", online.trainer,
            output_dir=paths.align_checkpoints, seed=params.seed, report_to=["mlflow"], beta=online.beta,
            learning_rate=online.learning_rate, max_steps=online.steps, num_generations=online.num_generations,
            per_device_train_batch_size=online.prompts_per_step * online.num_generations,
            max_completion_length=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p, top_k=gen.top_k,
        )
        trainer = trainer_cls(
            model=policy,
            reward_funcs=reward_fn,
            args=args,
            train_dataset=Dataset.from_list([{"prompt": p["prompt"]} for p in prompts]),
            processing_class=tok,
            peft_config=LoraConfig(task_type="CAUSAL_LM", **cfg.lora.model_dump()),
        )
        result = train(trainer, resume)

        # Save
        with atomic_dir(paths.policy_model) as out:
            save_trained_adapter(trainer, out)  # every rank: sharded weights are gathered; the main process writes
            tok.save_pretrained(out)
            write_chain(out, sft_chain["base"], [*sft_chain["adapters"], paths.policy_model], method=cfg.method,
                        sft_digest=model_digest(paths.sft_model))
        history = [ppo_stats(e, online.beta) for e in trainer.state.log_history if "reward" in e]
        common = set.intersection(*(set(h) for h in history)) if history else set()
        metrics = summary([{k: h[k] for k in common} for h in history])
        metrics.update({"train/steps": float(trainer.state.global_step), "train/prompts": float(len(prompts)),
                        "train/mean_loss": float(result.training_loss),
                        "train/runtime_s": float(result.metrics.get("train_runtime", 0.0))})
        write_json(Path(paths.metrics) / "align.json", metrics)
        write_ppo_curves(Path("plots/align.csv"), history)
        for h in history:  # PPO's metric names beside TRL's own, so the MLflow runs of ppo/rloo/grpo compare
            log_metrics({k.replace("/", "_"): v for k, v in h.items() if k != "step"}, step=int(h["step"]))
        log_dict({"history": history}, "online_history.json")
    return metrics


def rm_reward(rm, rm_tok, *, scale: float, eos_token_ids: Collection[int], missing_eos_penalty: float | None,
              batch_size: int) -> Callable[..., list[float]]:
    """TRL reward function: the RM's normalised score / `scale` (PPO's score_fn), or `missing_eos_penalty` (unscaled,
    as in PPO) for a completion whose token ids do not end with an EOS — TRL cuts completions after the first one."""
    from tasks.common.reward import score

    eos = set(eos_token_ids)

    def rm_score(prompts: list, completions: list, completion_ids: list[list[int]], **_: Any) -> list[float]:
        scores = score(rm, rm_tok, prompts, completions, batch_size)
        return [missing_eos_penalty if missing_eos_penalty is not None and not (ids and ids[-1] in eos) else s / scale
                for s, ids in zip(scores, completion_ids, strict=True)]

    return rm_score  # TRL logs it as rewards/rm_score/{mean,std}


def ppo_stats(entry: dict[str, Any], beta: float) -> dict[str, float]:
    """A TRL log entry under PPO's step-stat names (tasks/ppo/stage.py CURVES); what TRL does not log stays out.

    TRL logs KL as a per-token mean (k1 for RLOO, k3 for GRPO); PPO's objective/kl is per sequence, so the per-token
    mean is multiplied by the mean completion length — exact with logging_steps 1, one generation batch per step and
    mask_truncated_completions off (RLOO's sums run over exactly those tokens). The raw value is kept as
    objective/kl_per_token."""
    def get(key: str) -> float | None:
        v = entry.get(key)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    length, kl = get("completions/mean_length"), get("kl")
    clipped = get("completions/clipped_ratio")
    stats = {
        "step": float(entry["step"]),
        "loss/total": get("loss"),
        "objective/scores": get("rewards/rm_score/mean"),
        "objective/kl": kl * length if kl is not None and length is not None else None,
        "objective/kl_per_token": kl,
        "objective/beta": beta,
        "objective/reward_std": get("reward_std"),
        "policy/entropy": get("entropy"),
        "policy/clipfrac": get("clip_ratio/region_mean"),
        "val/response_length": length,
        "val/eos_fraction": 1.0 - clipped if clipped is not None else None,
    }
    if stats["objective/kl"] is not None:
        stats["objective/non_score_reward"] = -beta * stats["objective/kl"]
    return {k: v for k, v in stats.items() if v is not None}


def _trl(method: str) -> tuple[type, type]:
    """align.method → (TRL config class, trainer class)."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    return {"rloo": (RLOOConfig, RLOOTrainer), "grpo": (GRPOConfig, GRPOTrainer)}[method]
