"""SFT: LoRA on the base model, prompt/completion rows, completion-only loss.

alignflow: `tasks.sft.run_sft` on the bench project (the whole stage: MLflow run, resume fingerprint, chain file).
baseline:  `trl.SFTTrainer` as the TRL docs write it, with params.yaml's sft.trainer and sft.lora.
Measured: the trainer window (bench/instrument.py) — data preparation inside the trainer plus `train()`.
"""

from __future__ import annotations

from pathlib import Path

from bench import instrument
from bench.context import Context
from bench.workloads._train import lora_config, product_execution, train_phase


def alignflow(ctx: Context) -> dict:
    from tasks.sft import run_sft

    with instrument.trainer_window() as window:
        run_sft(ctx.params)
    return {"train": train_phase(ctx, window, ctx.params.sft.lora.r, lm_head=True, rows_per_sample=1)}


def baseline(ctx: Context) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from tasks.common.io import read_jsonl

    cfg = ctx.params.sft
    rows = [{"prompt": r["prompt"], "completion": r["completion"]}
            for r in read_jsonl(Path(ctx.params.paths.cai) / "sft.jsonl")]
    set_seed(ctx.params.seed)
    tok = AutoTokenizer.from_pretrained(ctx.base)
    model = AutoModelForCausalLM.from_pretrained(ctx.base, dtype=torch.float32)
    dataset = Dataset.from_list(rows)
    with instrument.trainer_window() as window:
        trainer = SFTTrainer(model=model, args=SFTConfig(**ctx.trl_kwargs(cfg.trainer)), train_dataset=dataset,
                             processing_class=tok, peft_config=lora_config(cfg.lora, "CAUSAL_LM"))
        product_execution(ctx, trainer)
        trainer.train()
    return {"train": train_phase(ctx, window, cfg.lora.r, lm_head=True, rows_per_sample=1)}
