"""DPO (sigmoid loss, β = align.beta): a LoRA on the SFT model, reference = the same model with the adapter off.

alignflow: `tasks.align.run_align` with align.method dpo (the stage precomputes the reference log-probs in the
           trainer's constructor, inside the window).
baseline:  `trl.DPOTrainer` as the TRL docs write it (`ref_model=None` + `peft_config`), params.yaml's align.trainer,
           align.lora and align.beta; TRL's default computes the reference log-probs in every step instead (with
           `--baseline-exec product` it precomputes them too, in bf16 weights as the stage does). Either way one
           reference forward per pair per epoch.
Measured: the trainer window. Samples are pairs.
"""

from __future__ import annotations

from pathlib import Path

from bench import instrument
from bench.context import Context
from bench.workloads._train import lora_config, product_execution, train_phase


def alignflow(ctx: Context) -> dict:
    from tasks.align import run_align

    params = ctx.params.model_copy(deep=True)
    params.align.method = "dpo"
    with instrument.trainer_window() as window:
        run_align(params)
    return {"train": train_phase(ctx, window, params.align.lora.r, lm_head=True, rows_per_sample=2, reference=True)}


def baseline(ctx: Context) -> dict:
    import torch
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    from tasks.common.io import read_jsonl

    cfg, paths = ctx.params.align, ctx.params.paths
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")}
            for r in read_jsonl(Path(paths.preferences) / "hard_train.jsonl")]
    set_seed(ctx.params.seed)
    tok = AutoTokenizer.from_pretrained(paths.sft_model)
    model = AutoModelForCausalLM.from_pretrained(ctx.base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, paths.sft_model).merge_and_unload()  # the SFT model
    dataset = Dataset.from_list(rows)
    stage = {"beta": cfg.beta, "loss_type": ["sigmoid"]}
    if ctx.baseline_exec == "product":  # as the align stage: reference precomputed, with the weights already bf16
        stage["precompute_ref_log_probs"] = True
        if ctx.trl_kwargs(cfg.trainer)["bf16"]:
            model.to(torch.bfloat16)
    with instrument.trainer_window() as window:
        trainer = DPOTrainer(model=model, ref_model=None, args=DPOConfig(**ctx.trl_kwargs(cfg.trainer, **stage)),
                             train_dataset=dataset, processing_class=tok, peft_config=lora_config(cfg.lora, "CAUSAL_LM"))
        product_execution(ctx, trainer)
        trainer.train()
    return {"train": train_phase(ctx, window, cfg.lora.r, lm_head=True, rows_per_sample=2, reference=True)}
