"""Train the reward model: Bradley–Terry on chosen/rejected pairs, initialised from the SFT model.

Reads  models/base/, models/sft/ (sft), data/preferences/{train,eval}.jsonl (collect_preferences: conversational
       prompt/chosen/rejected, optional soft label p = P(chosen is better))
Writes models/reward/ (reward LoRA + score head + tokenizer + chain file with reward_offset),
       checkpoints/train_reward/ (resumable), metrics/train_reward.json, plots/train_reward.csv

Model: a sequence classifier (num_labels=1) on the SFT model (the SFT LoRA merged into the base), then a new LoRA
with the score head trained and saved whole (`modules_to_save=["score"]`); the seed is set right before the head
is created, so two runs give the same model. The head reads the mean of the response's final hidden states
(`pooling: mean`) or the last token (`last`), recorded in the chain file for every later scorer. Loss: K-wise
(tasks/common/kwise_reward.py): each prompt's responses are one example, scored once, with the soft-label
Bradley–Terry term −(p·log σ(Δ) + (1−p)·log σ(−Δ)) of every labelled pair among them. Held out: pairwise accuracy,
accuracy against gold where the task has one, ECE of σ(Δ), reward mean/std. The eval responses are the SFT model's
samples, so their mean raw reward is the offset that `tasks.common.reward.score` subtracts: SFT samples score 0 on
average.

    dvc repro train_reward
    alignflow run
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_dir, read_jsonl, sha256_file, write_json
from tasks.common.kwise_reward import GroupCollator, KWiseRewardTrainer
from tasks.common.params import Params
from tasks.common.reward import expected_calibration_error, soft_bradley_terry_loss
from tasks.common.stage import StageError, stage_main

log = logging.getLogger("alignflow.train_reward")

PLOTS = Path("plots")
SCORE_BATCH = 16


def run_train_reward(params: Params) -> dict[str, float]:
    """Train the reward adapter and its head; files in, files out, metrics returned."""
    from peft import LoraConfig
    from trl import RewardConfig

    from tasks.common.distributed import on_main, save_trained_adapter
    from tasks.common.modeling import (
        load_tokenizer,
        mixed_precision_weights,
        trainer_config,
        write_chain,
    )
    from tasks.common.resume import model_digest, resume_checkpoint, train, write_curves
    from tasks.common.reward import load_sequence_classifier
    from tasks.common.seeding import seed_everything
    from tasks.common.tracking import log_artifacts, log_dataset, log_metrics, stage_run

    seed_everything(params.seed)
    cfg, paths = params.train_reward, params.paths
    train_file, eval_file = Path(paths.preferences) / "train.jsonl", Path(paths.preferences) / "eval.jsonl"
    for f in (train_file, eval_file):
        if not f.is_file():
            raise StageError(f"{f}: not found (run collect_preferences first; it needs eval_fraction > 0)")
    if not Path(paths.sft_model, "adapter_config.json").is_file():
        raise StageError(f"{paths.sft_model}: no SFT adapter there (run the sft stage first)")

    with stage_run("train_reward", params, cfg.model_dump()):
        # Data
        train_rows, eval_rows = load_pairs(train_file), load_pairs(eval_file)
        log_dataset(train_file, train_rows, context="training", name="preferences_train")
        log_dataset(eval_file, eval_rows, context="eval", name="preferences_eval")
        resume = on_main(  # one process decides (and clears stale checkpoints); every rank resumes from it
            resume_checkpoint,
            paths.reward_checkpoints,
            {
                "train_reward": cfg.model_dump(),
                "seed": params.seed,
                "train": sha256_file(train_file),
                "eval": sha256_file(eval_file),
                "base_model": model_digest(paths.base_model),
                "sft_model": model_digest(paths.sft_model),
            },
            stage="train_reward",
        )

        # Model
        tok = load_tokenizer(paths.sft_model, padding_side="right")
        seed_everything(params.seed)  # the score head is created next: same seed, same head
        model = load_sequence_classifier(paths.base_model, [paths.sft_model], tok.pad_token_id)
        model.config.reward_pooling = cfg.pooling  # raw_rewards reads it; load_reward_model from the chain file
        defaults = {"eval_strategy": "steps", "eval_steps": cfg.trainer.get("save_steps")}
        args = trainer_config(RewardConfig, "train_reward", {**defaults, **cfg.trainer},
                              output_dir=paths.reward_checkpoints, seed=params.seed, report_to=["mlflow"])
        trainer = KWiseRewardTrainer(  # one group per prompt: each response scored once for all of its pairs
            model=model,
            args=args,
            pooling=cfg.pooling,
            data_collator=GroupCollator(tok.pad_token_id, pad_to_multiple_of=args.pad_to_multiple_of),
            train_dataset=_dataset(train_rows),
            eval_dataset=_dataset(eval_rows),
            processing_class=tok,
            peft_config=LoraConfig(task_type="SEQ_CLS", modules_to_save=["score"], **cfg.lora.model_dump()),
        )
        mixed_precision_weights(trainer)
        kept = sum(len(g) for g in trainer.train_dataset["pair_label"])
        log.info("pairs within max_length: train %d/%d in %d prompt groups", kept, len(train_rows),
                 len(trainer.train_dataset))

        # Train
        result = train(trainer, resume)

        # Save, then measure the saved model as later stages load it: fp32, adapters merged. The trainer's copy holds
        # the frozen weights in bf16 (mixed_precision_weights), whose scores flip near-tie orderings.
        with atomic_dir(paths.reward_model) as staging:
            save_trained_adapter(trainer, staging)
            tok.save_pretrained(staging)
            metrics = on_main(held_out_metrics, params, tok, staging, eval_rows, read_jsonl(eval_file))
            losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            metrics.update({
                "train/loss": losses[-1] if losses else float("nan"),
                "train/runtime": result.metrics.get("train_runtime", float("nan")),
                "train/steps": float(trainer.state.global_step),
            })
            write_chain(
                staging,
                base=paths.base_model,
                adapters=[paths.sft_model, paths.reward_model],
                reward_offset=metrics["eval/reward_mean"],
                reward_pooling=cfg.pooling,
                reward_std=metrics["eval/reward_std"],
            )
        write_json(Path(paths.metrics) / "train_reward.json", metrics)
        write_curves(
            PLOTS / "train_reward.csv",
            trainer.state.log_history,
            {
                "train_loss": "loss",
                "train_accuracy": "accuracy",
                "eval_loss": "eval_loss",
                "eval_accuracy": "eval_accuracy",
            },
        )
        log_metrics(metrics)
        log_artifacts(paths.reward_model, artifact_path="reward_model")
    return metrics


def held_out_metrics(params: Params, tok, adapter_dir: Path, eval_rows: list[dict[str, Any]],
                     file_rows: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy (against the labels and against gold), calibration and the reward scale on the held-out pairs, from
    the base + SFT + the new reward adapter merged in fp32 with the same scoring code later stages use."""
    from tasks.common.reward import load_sequence_classifier, raw_rewards

    cfg, paths = params.train_reward, params.paths
    model = load_sequence_classifier(paths.base_model, [paths.sft_model, adapter_dir], tok.pad_token_id).eval()
    model.config.reward_pooling = cfg.pooling
    prompts = [r["prompt"] for r in eval_rows]
    chosen = raw_rewards(model, tok, prompts, [r["chosen"] for r in eval_rows], SCORE_BATCH)
    rejected = raw_rewards(model, tok, prompts, [r["rejected"] for r in eval_rows], SCORE_BATCH)
    metrics = pair_metrics(chosen, rejected, [r.get("label", 1.0) for r in eval_rows])
    metrics.update(gold_accuracy(chosen, rejected, [r.get("gold_label") for r in file_rows]))
    clear = [i for i, r in enumerate(file_rows) if _gold_gap(r) >= params.collect_preferences.min_margin]
    metrics.update({k.replace("gold_", "gold_clear_"): v for k, v in gold_accuracy(
        [chosen[i] for i in clear], [rejected[i] for i in clear], [file_rows[i].get("gold_label") for i in clear]
    ).items()})
    return metrics


def load_pairs(path: Path) -> list[dict[str, Any]]:
    """Preference rows reduced to what the trainer reads; soft labels kept when any row has one (missing -> 1)."""
    rows = read_jsonl(path)
    soft = any(r.get("label") is not None for r in rows)
    pairs = []
    for line, row in enumerate(rows, 1):
        missing = [k for k in ("prompt", "chosen", "rejected") if not row.get(k)]
        if missing:
            raise StageError(f"{path}:{line}: missing or empty {', '.join(missing)}")
        pair = {k: row[k] for k in ("prompt", "chosen", "rejected")}
        if soft:
            pair["label"] = 1.0 if row.get("label") is None else float(row["label"])
            if not 0.0 <= pair["label"] <= 1.0:
                raise StageError(f"{path}:{line}: label {pair['label']} is outside [0, 1]")
        pairs.append(pair)
    if not pairs:
        raise StageError(f"{path}: no preference pairs")
    return pairs


def pair_metrics(chosen: list[float], rejected: list[float], labels: list[float]) -> dict[str, float]:
    """Held-out accuracy, calibration, loss and the reward scale, from raw rewards of each pair."""
    import torch

    deltas = [c - r for c, r in zip(chosen, rejected, strict=True)]
    rewards = chosen + rejected
    loss = soft_bradley_terry_loss(torch.tensor(deltas), torch.tensor(labels, dtype=torch.float32))
    return {
        "eval/accuracy": sum(d > 0 for d in deltas) / len(deltas),
        "eval/ece": expected_calibration_error(deltas, n_bins=10),
        "eval/loss": float(loss),
        "eval/margin": statistics.fmean(deltas),
        "eval/reward_mean": statistics.fmean(rewards),
        "eval/reward_std": statistics.pstdev(rewards),
    }


def gold_accuracy(chosen: list[float], rejected: list[float], gold: list[float | None]) -> dict[str, float]:
    """Held-out accuracy against the gold judge's labels (collect_preferences stores `gold_label` = p(chosen better)
    by gold), whatever labelled the training pairs: an RM trained on AI labels is judged by ground truth. Gold ties
    and rows without a gold label are left out."""
    scored = [(c - r > 0, g > 0.5) for c, r, g in zip(chosen, rejected, gold, strict=True) if g is not None and g != 0.5]
    if not scored:
        return {}
    return {"eval/gold_accuracy": sum(a == b for a, b in scored) / len(scored), "eval/gold_pairs": float(len(scored))}


def _gold_gap(row: dict[str, Any]) -> float:
    """|gold score difference| of a pair (0 when the row has no gold scores): `eval/gold_clear_accuracy` counts the
    pairs at least collect_preferences.min_margin apart, the gold source's own bar for calling a pair a preference;
    near-ties are a coin toss for any reward model."""
    if row.get("score_chosen") is None or row.get("score_rejected") is None:
        return 0.0
    return abs(float(row["score_chosen"]) - float(row["score_rejected"]))


def _dataset(rows: list[dict[str, Any]]):
    from datasets import Dataset

    return Dataset.from_list(rows)


if __name__ == "__main__":
    stage_main("train_reward", run_train_reward)
