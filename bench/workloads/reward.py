"""Reward model: a num_labels=1 classifier on the SFT model, LoRA + trained score head, Bradley–Terry on pairs.

alignflow: `tasks.train_reward.run_train_reward` (the stage: soft-label trainer and collator, held-out scoring after
           training — outside the window).
baseline:  `trl.RewardTrainer` as the TRL docs write it (LoRA with `modules_to_save=["score"]`), params.yaml's
           train_reward.trainer and .lora. The classifier is built by the project's loader (SFT adapter merged),
           outside the window, so both sides start from the same weights.
Measured: the trainer window. Samples are pairs (two sequences each).
"""

from __future__ import annotations

from pathlib import Path

from bench import instrument
from bench.context import Context
from bench.workloads._train import lora_config, product_execution, train_phase


def alignflow(ctx: Context) -> dict:
    from tasks.train_reward import run_train_reward

    with instrument.trainer_window() as window:
        run_train_reward(ctx.params)
    return {"train": train_phase(ctx, window, ctx.params.train_reward.lora.r, lm_head=False, rows_per_sample=2)}


def baseline(ctx: Context) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer, set_seed
    from trl import RewardConfig, RewardTrainer

    from tasks.common.io import read_jsonl
    from tasks.common.reward import load_sequence_classifier

    cfg, paths = ctx.params.train_reward, ctx.params.paths
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")}
            for r in read_jsonl(Path(paths.preferences) / "train.jsonl")]
    tok = AutoTokenizer.from_pretrained(paths.sft_model)
    set_seed(ctx.params.seed)
    model = load_sequence_classifier(paths.base_model, [paths.sft_model], tok.pad_token_id)
    dataset = Dataset.from_list(rows)
    with instrument.trainer_window() as window:
        trainer = RewardTrainer(model=model, args=RewardConfig(**ctx.trl_kwargs(cfg.trainer)), train_dataset=dataset,
                                processing_class=tok,
                                peft_config=lora_config(cfg.lora, "SEQ_CLS", modules_to_save=["score"]))
        product_execution(ctx, trainer)
        trainer.train()
    return {"train": train_phase(ctx, window, cfg.lora.r, lm_head=False, rows_per_sample=2)}
