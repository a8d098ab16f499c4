"""Supervised fine-tuning: a LoRA adapter on the base model, trained on the validated demonstrations.

Reads  models/base/ (prepare_model), data/cai/sft.jsonl (critique_revise: the validated demonstrations, with
       SL-CAI revisions mixed in when critique_revise.rounds > 0; conversational prompt/completion)
Writes models/sft/ (LoRA adapter + tokenizer + chain file), checkpoints/sft/ (resumable), metrics/sft.json,
       plots/sft.csv

The loss covers completion tokens only: TRL's SFTTrainer (1.16) sets `completion_only_loss` for
prompt/completion data and labels prompt tokens -100, so the model learns to answer, not to repeat prompts.
A deterministic `eval_fraction` of the demonstrations is held out for eval loss. A killed run started again
resumes from its last checkpoint when params, seed, data and base model are unchanged (tasks/common/resume.py).

    dvc repro sft
    alignflow run
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_dir, read_jsonl, sha256_file, write_json
from tasks.common.params import Params
from tasks.common.stage import StageError, stage_main

log = logging.getLogger("alignflow.sft")

PLOTS = Path("plots")


def run_sft(params: Params) -> dict[str, float]:
    """Train the SFT adapter; files in, files out, metrics returned."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from tasks.common.distributed import on_main, save_trained_adapter
    from tasks.common.modeling import (
        load_tokenizer,
        mixed_precision_weights,
        trainer_config,
        write_chain,
    )
    from tasks.common.resume import model_digest, resume_checkpoint, train, write_curves
    from tasks.common.seeding import seed_everything
    from tasks.common.tracking import log_artifacts, log_dataset, log_metrics, stage_run

    seed_everything(params.seed)
    cfg, paths = params.sft, params.paths
    data_file = Path(paths.cai) / "sft.jsonl"  # critique_revise: the demonstrations, plus SL-CAI revisions when on
    if not data_file.is_file():
        raise StageError(f"{data_file}: not found (run the validate and critique_revise stages first)")
    if not Path(paths.base_model, "config.json").is_file():
        raise StageError(f"{paths.base_model}: no model there (run the prepare_model stage first)")

    with stage_run("sft", params, cfg.model_dump()):
        # Data
        rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in read_jsonl(data_file)]
        train_rows, eval_rows = split_rows(rows, cfg.eval_fraction, params.seed)
        if not train_rows:
            raise StageError(f"{data_file}: no training rows (file empty, or eval_fraction too large)")
        log_dataset(data_file, train_rows, context="training", name="sft_train")
        if eval_rows:
            log_dataset(data_file, eval_rows, context="eval", name="sft_eval")

        # Resume or start fresh
        resume = on_main(  # one process decides (and clears stale checkpoints); every rank resumes from it
            resume_checkpoint,
            paths.sft_checkpoints,
            {
                "sft": cfg.model_dump(),
                "seed": params.seed,
                "data": sha256_file(data_file),
                "base_model": model_digest(paths.base_model),
            },
            stage="sft",
        )

        # Model
        tok = load_tokenizer(paths.base_model)
        model = AutoModelForCausalLM.from_pretrained(paths.base_model, dtype=torch.float32)
        defaults = {"eval_strategy": "steps" if eval_rows else "no", "eval_steps": cfg.trainer.get("save_steps")}
        args = trainer_config(SFTConfig, "sft", {**defaults, **cfg.trainer}, output_dir=paths.sft_checkpoints,
                              seed=params.seed, report_to=["mlflow"])
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=_dataset(train_rows),
            eval_dataset=_dataset(eval_rows) if eval_rows else None,
            processing_class=tok,
            peft_config=LoraConfig(task_type="CAUSAL_LM", **cfg.lora.model_dump()),
        )
        mixed_precision_weights(trainer)

        # Train
        result = train(trainer, resume)
        step = trainer.state.global_step
        # The Trainer evaluates at its last step already (eval_strategy "steps"); evaluate only if it did not.
        final = [h for h in trainer.state.log_history if "eval_loss" in h and h.get("step") == step]
        eval_metrics = final[-1] if final else trainer.evaluate() if eval_rows else {}

        # Save
        with atomic_dir(paths.sft_model) as staging:
            save_trained_adapter(trainer, staging)
            tok.save_pretrained(staging)
            write_chain(staging, base=paths.base_model, adapters=[paths.sft_model])
        start = int(Path(resume).name.rsplit("-", 1)[-1]) if resume else 0  # checkpoint-<step>
        metrics = summarize(trainer.state.log_history, result.metrics, eval_metrics, step, start)
        write_json(Path(paths.metrics) / "sft.json", metrics)
        write_curves(PLOTS / "sft.csv", trainer.state.log_history, {"train_loss": "loss", "eval_loss": "eval_loss"})
        log_metrics(metrics)
        log_artifacts(paths.sft_model, artifact_path="sft_model")
    return metrics


def split_rows(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic held-out split (by seed); at least one eval row whenever eval_fraction > 0 and rows allow."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = round(len(rows) * eval_fraction)
    if eval_fraction > 0 and len(rows) > 1:
        n_eval = max(1, n_eval)
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def summarize(
    log_history: list[dict[str, Any]], train_metrics: dict[str, float], eval_metrics: dict[str, float], steps: int,
    start_step: int = 0,
) -> dict[str, float]:
    """The numbers dvc metrics compares: final logged train loss, eval loss, runtime and throughput."""
    losses = [h["loss"] for h in log_history if "loss" in h]
    metrics = {
        "train/loss": losses[-1] if losses else float("nan"),
        "train/runtime": train_metrics.get("train_runtime", float("nan")),
        "train/steps": float(steps),
    }
    # num_tokens counts from step 0, the runtime only this process's steps: after a resume, count from there on.
    logged = [(h.get("step", 0), h["num_tokens"]) for h in log_history if "num_tokens" in h and "loss" in h]
    before = max((n for step, n in logged if step <= start_step), default=0)
    trained = logged[-1][1] - before if logged else 0
    if trained > 0 and metrics["train/runtime"] > 0:
        metrics["train/tokens_per_s"] = trained / metrics["train/runtime"]
    if "eval_loss" in eval_metrics:
        metrics["eval/loss"] = eval_metrics["eval_loss"]
    return metrics


def _dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows)


if __name__ == "__main__":
    stage_main("sft", run_sft)
