"""What every online method shares — our PPO (stage.py) and TRL's RLOO and GRPO (trl_online.py): the inputs they
check and read (training prompts, the SFT model, the reward model, a checkpoint to resume), the reward model's score
scale, and the per-step history they summarise and plot. Its own module so that neither method's body imports the
other's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.common.io import atomic_write_text, read_jsonl, sha256_file
from tasks.common.params import Params
from tasks.common.stage import StageError

CURVES = {  # plots/align.csv column <- PPO step stat
    "train_loss": "loss/total", "rm_score": "objective/scores", "non_score_reward": "objective/non_score_reward",
    "kl": "objective/kl", "beta": "objective/beta", "entropy": "policy/entropy", "approx_kl": "policy/approx_kl",
    "clipfrac": "policy/clipfrac", "value_loss": "loss/value", "value_clipfrac": "val/clipfrac",
    "explained_variance": "val/explained_variance", "response_length": "val/response_length",
    "eos_fraction": "val/eos_fraction", "rollout_s": "time/rollout_s", "update_s": "time/update_s",
}


def check_inputs(params: Params) -> None:
    """Every online method (ppo, rloo, grpo) samples the training prompts from the SFT model against the RM."""
    paths = params.paths
    for needed in (Path(paths.validated) / "prompts_train.jsonl", Path(paths.sft_model), Path(paths.reward_model)):
        if not needed.exists():
            raise StageError(f"align ({params.align.method}): {needed} not found "
                             "(run validate / sft / train_reward first)")


def online_inputs(params: Params, max_prompts: int | None) -> tuple[list[dict], dict, str | None]:
    """(prompts, SFT chain, checkpoint to resume from) for an online method, inside its MLflow run: the prompts are
    logged as the training data set, and a checkpoint is resumed only if nothing the run depends on changed."""
    from tasks.common.distributed import on_main
    from tasks.common.modeling import read_chain
    from tasks.common.resume import model_digest, resume_checkpoint
    from tasks.common.tracking import log_dataset

    cfg, paths = params.align, params.paths
    prompts_file = Path(paths.validated) / "prompts_train.jsonl"
    prompts = read_jsonl(prompts_file)[:max_prompts]
    log_dataset(prompts_file, prompts, context="training", name="prompts_train")
    sft_chain = read_chain(paths.sft_model)
    resume = on_main(  # one process decides (and clears stale checkpoints); every rank resumes from it
        resume_checkpoint,
        paths.align_checkpoints,
        {"align": cfg.model_dump(), "seed": params.seed, "prompts": sha256_file(prompts_file),
         "sft_model": model_digest(paths.sft_model), "reward_model": model_digest(paths.reward_model),
         "base_model": model_digest(sft_chain["base"])},
        stage="align",
    )
    return prompts, sft_chain, resume


def score_divisor(reward_dir: str, mode: str) -> float:
    """The divisor of the RM's normalised scores: its std on the SFT model's samples (stored by train_reward).

    Without it a weak RM (std 0.24 on the default task) is drowned by the fixed missing-EOS penalty of −1:
    the first PPO trial learned to stop early and nothing else (BENCHMARKS.md)."""
    from tasks.common.modeling import read_chain

    if mode == "none":
        return 1.0
    std = float(read_chain(reward_dir).get("reward_std") or 0.0)
    if not std > 1e-6:
        raise StageError(f"align.ppo.score_scale=std but {reward_dir}/alignflow_model.json has no usable reward_std "
                         f"({std}); retrain the reward model or set score_scale: none")
    return std


def summary(history: list[dict[str, float]]) -> dict[str, float]:
    """Final-step values and means over the last quarter of the steps (one rollout batch is noisy)."""
    if not history:
        return {}
    tail = history[-max(1, len(history) // 4):]
    out: dict[str, float] = {}
    for key in history[-1]:
        if key == "step":
            continue
        out[f"train/{key}"] = float(history[-1][key])
        out[f"train/{key}_last_quarter"] = sum(float(h[key]) for h in tail) / len(tail)
    return out


def write_ppo_curves(path: Path, history: list[dict[str, Any]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", *CURVES], lineterminator="\n")
    writer.writeheader()
    for h in history:
        writer.writerow({"step": int(h["step"]), **{col: h.get(key) for col, key in CURVES.items()}})
    atomic_write_text(path, buf.getvalue())
