"""align.method ppo: the align stage's body when the policy is trained with PPO against the reward model.

Reads  models/sft (chain), models/reward (chain with reward_offset), data/validated/prompts_train.jsonl
Writes models/policy/ (LoRA adapter + tokenizer + chain base → sft → policy, method ppo), metrics/align.json,
       plots/align.csv (one row per PPO step), checkpoints/align/checkpoint-N/ (resumable)

Models: the policy is the SFT model (its adapter merged in memory) with a fresh LoRA (align.lora), so the
reference is the same weights with the adapter disabled. The value model is the reward model (its adapters merged,
its trained head) with a LoRA of its own and a trainable copy of the head: initialised from the RM, as in
lm-human-preferences. Scores are the RM's normalised scores (SFT samples average 0); a response without EOS gets
`align.ppo.missing_eos_penalty`.

Resume: a checkpoint is written every `save_steps` steps (the trainer's full state, ppo_state.pt, then
trainer_state.json last as the completeness marker); a re-run with the same params, seed, data and models
continues from the last complete one and ends where an uninterrupted run ends.

Several processes (`accelerate launch --config_file configs/accelerate/ddp.yaml -m tasks.align`): data-parallel,
each rank holding the whole policy, value model and RM and taking an equal share of every rollout batch and
minibatch (tasks/ppo/trainer.py says how the results equal one process's); rank 0 logs and writes. FSDP and
DeepSpeed configs are refused: nothing here shards the models.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tasks.common.io import atomic_dir, atomic_write_text, write_json
from tasks.common.params import Params
from tasks.common.stage import StageError
from tasks.ppo.online import check_inputs, online_inputs, score_divisor, summary, write_ppo_curves

log = logging.getLogger("alignflow.align.ppo")
def run_ppo(params: Params) -> dict[str, float]:
    from peft import LoraConfig, get_peft_model

    from tasks.common.distributed import is_main_process, sharded_engine, world_size
    from tasks.common.modeling import load_causal_lm, load_tokenizer, write_chain
    from tasks.common.resume import model_digest
    from tasks.common.reward import load_reward_model, score
    from tasks.common.seeding import seed_everything
    from tasks.common.tracking import log_dict, log_metrics, stage_run
    from tasks.ppo.trainer import PPOTrainer

    cfg, paths = params.align, params.paths
    ppo = cfg.ppo
    _check_layout(ppo, world_size(), sharded_engine())  # forms the process group first when launched
    seed_everything(params.seed)
    check_inputs(params)
    with stage_run("align", params, cfg.model_dump()):
        prompts, sft_chain, resume = online_inputs(params, ppo.max_prompts)

        tok = load_tokenizer(paths.sft_model)
        seed_everything(params.seed)  # the LoRA initialisations come next: same seed, same start
        policy = get_peft_model(load_causal_lm(paths.sft_model), LoraConfig(task_type="CAUSAL_LM", **cfg.lora.model_dump()))
        # One copy of the RM weights: the value model is the RM with a LoRA and a trainable copy of the head, and
        # the RM itself is that model with the adapter disabled (the original head comes back), as the reference
        # is the policy with its adapter disabled.
        rm, rm_tok = load_reward_model(paths.reward_model)
        value = get_peft_model(rm, LoraConfig(task_type="SEQ_CLS", modules_to_save=["score"], **cfg.lora.model_dump()))

        scale = score_divisor(paths.reward_model, ppo.score_scale)

        def score_fn(chat_prompts: list, texts: list[str]) -> list[float]:
            with value.disable_adapter():
                return [s / scale for s in score(value, rm_tok, chat_prompts, texts, ppo.score_batch_size)]

        trainer = PPOTrainer(policy, value, tok, [p["prompt"] for p in prompts], score_fn, ppo, params.seed)
        history: list[dict[str, float]] = []
        if resume:
            trainer.load(Path(resume) / "ppo_state.pt")
            history = json.loads(Path(resume, "trainer_state.json").read_text())["log_history"]
            log.info("align (ppo): resumed at step %d from %s", trainer.step_count, resume)

        start = time.perf_counter()
        while trainer.step_count < ppo.steps:
            stats = trainer.step()
            stats["loss/total"] = stats["loss/policy"] + ppo.vf_coef * stats["loss/value"]
            history.append(stats)
            log_metrics({k.replace("/", "_"): v for k, v in stats.items() if k != "step"}, step=trainer.step_count)
            if is_main_process():
                log.info("ppo step %d/%d: rm %.3f kl %.3f beta %.4f", trainer.step_count, ppo.steps,
                         stats["objective/scores"], stats["objective/kl"], stats["objective/beta"])
            if (trainer.step_count % ppo.save_steps == 0 or trainer.step_count == ppo.steps) and is_main_process():
                _checkpoint(trainer, history, Path(paths.align_checkpoints))  # every rank holds the same state
        runtime = time.perf_counter() - start

        with atomic_dir(paths.policy_model) as out:
            trainer.policy.save_pretrained(out)
            tok.save_pretrained(out)
            write_chain(out, sft_chain["base"], [*sft_chain["adapters"], paths.policy_model], method="ppo",
                        sft_digest=model_digest(paths.sft_model))
        metrics = summary(history)
        metrics.update({"train/steps": float(trainer.step_count), "train/runtime_s": runtime,
                        "train/prompts": float(len(prompts))})
        write_json(Path(paths.metrics) / "align.json", metrics)
        write_ppo_curves(Path("plots/align.csv"), history)
        log_dict({"history": history}, "ppo_history.json")
    return metrics


def _check_layout(ppo, world: int, engine: str | None) -> None:
    """Refuse a launch this loop cannot honour, naming the setting to change."""
    if world == 1:
        return
    if engine:
        raise StageError(f"align (ppo): launched with {engine}, but the PPO loop is data-parallel only (every process "
                         f"holds the whole models); use configs/accelerate/ddp.yaml (or ddp_multinode.yaml)")
    from tasks.ppo.trainer import uneven_split

    uneven = uneven_split(ppo.rollout_batch_size, ppo.mini_batch_size, world)
    if uneven:
        raise StageError(f"align.ppo: {uneven} must be divisible by the number of processes ({world}); each process "
                         f"takes an equal share of every rollout batch and minibatch")


def _checkpoint(trainer, history: list[dict[str, float]], ckpt_dir: Path) -> None:
    """checkpoint-N/ppo_state.pt, then trainer_state.json (what resume_checkpoint treats as 'complete')."""
    import shutil

    out = ckpt_dir / f"checkpoint-{trainer.step_count}"
    trainer.save(out / "ppo_state.pt")
    atomic_write_text(out / "trainer_state.json", json.dumps({"global_step": trainer.step_count,
                                                              "log_history": history}))
    for old in ckpt_dir.glob("checkpoint-*"):
        if old != out:
            shutil.rmtree(old, ignore_errors=True)
