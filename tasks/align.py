"""Align the SFT model on preference pairs with a method of the DPO family (TRL), as a LoRA adapter.

`align.method` picks the loss through METHODS below (one plain mapping):
  dpo    −log σ(β·Δ), Δ = [log π/π_ref](y_w) − [log π/π_ref](y_l)    (Rafailov et al. 2023)   DPOTrainer "sigmoid"
  ipo    (Δ/|y| − 1/(2τ))², τ = align.beta, Δ averaged per token      (Azar et al. 2023)       DPOTrainer "ipo"
  robust cDPO/rDPO with label noise ε = align.label_smoothing          (Chowdhury et al. 2024)  DPOTrainer "robust"
  hinge  max(0, 1 − β·Δ)                                               (SLiC, Zhao et al. 2023) DPOTrainer "hinge"
  kto    unpaired: each pair gives its chosen as desirable and its rejected as undesirable (Ethayarajh et al. 2024)
  simpo  reference-free −log σ(β·Δavglogp − γ), β = simpo_beta, γ = simpo_gamma (tasks/dpo/simpo.py)
  ppo    online RL against the reward model with a KL penalty to the SFT model (tasks/ppo/, align.ppo.*)

The model is the SFT model with its adapter merged in memory; TRL adds a fresh LoRA (align.lora), and with
`ref_model=None` the reference is that same model with the adapter disabled, i.e. the SFT model — one copy of the
weights. With align.init: champion the start (and so the reference) is the MLflow champion instead, and its adapters
are copied into the policy (tasks/common/policy_init.py). The pairs are only ever used in the orientation their
label says (label < 0.5 flips a pair). kto also takes align.feedback: unpaired rows such as the chat page's thumbs.

Reads  models/sft (chain), data/preferences/hard_{train,eval}.jsonl, [align.feedback], [the MLflow champion]
Writes models/policy/ (adapter + tokenizer + chain base → sft → [init/k …] → policy), metrics/align.json,
       plots/align.csv

    dvc repro align
    alignflow run
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_dir, read_jsonl, sha256_file, write_json
from tasks.common.params import AlignParams, Params
from tasks.common.policy_init import copy_init_adapters, resolve_policy_init
from tasks.common.stage import StageError, stage_main

log = logging.getLogger("alignflow.align")

# plots/align.csv column <- TRL log key
CURVES = {"train_loss": "loss", "rewards_margins": "rewards/margins", "rewards_accuracies": "rewards/accuracies",
          "rewards_chosen": "rewards/chosen", "rewards_rejected": "rewards/rejected", "kl": "kl",
          "learning_rate": "learning_rate"}


def run_align(params: Params) -> dict[str, float]:
    """Files in, files out, metrics returned."""
    import torch

    from tasks.common.distributed import on_main, save_trained_adapter
    from tasks.common.modeling import (
        load_causal_lm,
        load_tokenizer,
        mixed_precision_weights,
        read_chain,
        trainer_defaults,
        write_chain,
    )
    from tasks.common.resume import model_digest, resume_checkpoint, train, write_curves
    from tasks.common.seeding import seed_everything
    from tasks.common.tracking import log_dataset, log_metrics, stage_run

    cfg, paths = params.align, params.paths
    if cfg.feedback and cfg.method != "kto":
        raise StageError(f"align.feedback is set but align.method is {cfg.method!r}: unpaired feedback rows train "
                         "only with kto (set align.method: kto, or align.feedback: null)")
    if cfg.method == "ppo":  # online RL against the reward model: its own loop (tasks/ppo/)
        from tasks.ppo.stage import run_ppo

        return run_ppo(params)
    if cfg.method in ("rloo", "grpo"):  # the same RM and sampling through TRL's trainers: the baseline for ppo
        from tasks.ppo.trl_online import run_trl_online

        return run_trl_online(params)
    seed_everything(params.seed)
    with stage_run("align", params, cfg.model_dump()):
        # Data
        # The hard pairs (|p − ½| > collect_preferences.hard_threshold): DPO-family losses take a direction per pair.
        train_file, eval_file = Path(paths.preferences, "hard_train.jsonl"), Path(paths.preferences, "hard_eval.jsonl")
        for needed in (train_file, Path(paths.sft_model)):
            if not needed.exists():
                raise StageError(f"align: {needed} not found (run collect_preferences / sft first)")
        train_pairs = oriented_pairs(read_jsonl(train_file))
        eval_pairs = oriented_pairs(read_jsonl(eval_file)) if eval_file.exists() else []
        feedback = feedback_rows(params)
        if not train_pairs and not feedback:
            raise StageError(f"align: {train_file} has no usable pairs (all labels 0.5?)")
        log_dataset(train_file, train_pairs, context="training", name="preferences_train")
        if feedback:
            log_dataset(cfg.feedback, feedback, context="training", name="feedback_train")
        init = resolve_policy_init(params)

        # Resume a killed run only if nothing it depends on changed (else start fresh)
        sft_chain = read_chain(paths.sft_model)
        resume = on_main(  # one process decides (and clears stale checkpoints); every rank resumes from it
            resume_checkpoint,
            paths.align_checkpoints,
            {
                "align": cfg.model_dump(),
                "seed": params.seed,
                "data": [sha256_file(f) for f in (train_file, eval_file) if f.exists()],
                "feedback": sha256_file(cfg.feedback) if cfg.feedback else None,
                "init": init.info,
                "sft_model": model_digest(paths.sft_model),
                "base_model": model_digest(sft_chain["base"]),
            },
            stage="align",
        )

        # Model: the SFT (or champion) adapters merged in; TRL wraps it with the new LoRA (peft_config).
        model = load_causal_lm(init.model_dir)  # merged in fp32; stored in bf16 before TRL precomputes the reference
        if trainer_defaults(cfg.trainer)["bf16"]:
            model.to(torch.bfloat16)
        tok = load_tokenizer(paths.sft_model)
        build, config_kwargs = METHODS[cfg.method]
        trainer = build(params, model, tok, train_pairs, eval_pairs, config_kwargs(cfg), feedback)
        mixed_precision_weights(trainer)  # frozen weights bf16 under bf16 autocast

        # Train
        result = train(trainer, resume)
        eval_metrics = trainer.evaluate() if eval_pairs else {}

        # Save: the adapter, the tokenizer and the chain that rebuilds base → sft → policy.
        with atomic_dir(paths.policy_model) as out:
            save_trained_adapter(trainer, out)  # every rank: sharded weights are gathered; the main process writes
            tok.save_pretrained(out)
            inits = copy_init_adapters(init, out, paths.policy_model)
            write_chain(out, sft_chain["base"], [*sft_chain["adapters"], *inits, paths.policy_model],
                        method=cfg.method, **init.info)

        metrics = summary_metrics(trainer.state.log_history, eval_metrics)
        metrics["train/steps"] = float(trainer.state.global_step)
        metrics["train/mean_loss"] = float(result.training_loss)
        metrics["train/runtime_s"] = float(result.metrics.get("train_runtime", 0.0))
        metrics["train/pairs"] = len(train_pairs)
        if feedback:
            metrics["train/feedback_rows"] = len(feedback)
        if init.info["init"] == "champion":
            metrics["init/champion_version"] = float(init.info["init_version"])
            metrics["init/adapters"] = len(init.adapters)
        write_json(Path(paths.metrics) / "align.json", metrics)
        write_curves("plots/align.csv", trainer.state.log_history, CURVES)
        log_metrics(metrics)
    return metrics


def oriented_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """prompt/chosen/rejected only, chosen = the preferred side: label < 0.5 swaps, label 0.5 (no preference) drops."""
    out = []
    for r in rows:
        label = r.get("label", 1.0)
        if label is None or label > 0.5:
            out.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
        elif label < 0.5:
            out.append({"prompt": r["prompt"], "chosen": r["rejected"], "rejected": r["chosen"]})
    return out


def feedback_rows(params: Params) -> list[dict[str, Any]]:
    """align.feedback through the kto data suite (a bad row stops with file, row and rule): prompt/completion/label."""
    if not params.align.feedback:
        return []
    from tasks.common.validation import load_and_validate

    if not Path(params.align.feedback).is_file():
        raise StageError(f"align.feedback: {params.align.feedback} not found (`alignflow label export` writes it)")
    rows = load_and_validate("kto", [params.align.feedback], params)
    return [{"prompt": r["prompt"], "completion": r["completion"], "label": bool(r["label"])} for r in rows]


def unpaired(pairs: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """KTO rows: chosen → desirable (True), rejected → undesirable (False), shuffled with the seed.

    Shuffled because KTOTrainer reads rows in order and builds its KL estimate from mismatched (prompt, completion)
    pairs by rotating completions within a batch: the two rows of one pair side by side would be "mismatched" with
    their own prompt.
    """
    rows = [{"prompt": p["prompt"], "completion": p[side], "label": side == "chosen"}
            for p in pairs for side in ("chosen", "rejected")]
    random.Random(seed).shuffle(rows)
    return rows


def _config(config_cls: type, params: Params, **overrides: Any):
    """DPOConfig / KTOConfig from align.trainer (TRL kwargs verbatim) plus what the stage sets itself."""
    from tasks.common.modeling import trainer_config

    cfg = params.align  # keys the stage sets itself are refused at load (params.ALIGN_SET)
    # Reference log-probs once before training instead of a reference forward every step: identical losses (the
    # reference is frozen), one reference pass instead of one per epoch; measured on a tiny model, 2 epochs, CPU:
    # 30–49 s vs 49–57 s per run. SimPO has no reference to precompute.
    align_defaults = {} if cfg.method == "simpo" else {"precompute_ref_log_probs": True}
    stage_kwargs = {"output_dir": params.paths.align_checkpoints, "seed": params.seed, "report_to": ["mlflow"],
                    "beta": cfg.beta, **overrides}
    return trainer_config(config_cls, "align", {**align_defaults, **cfg.trainer}, **stage_kwargs)


def _lora(params: Params):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **params.align.lora.model_dump())


def _dataset(params: Params, rows: list[dict[str, Any]], split: str):
    """Dataset.from_list; file-backed in the checkpoint dir under a multi-process launch (distributed.shared_dataset:
    TRL caches precomputed reference log-probs next to the dataset, which an in-memory one does not have)."""
    from tasks.common.distributed import shared_dataset

    return shared_dataset(rows, Path(params.paths.align_checkpoints, "datasets", split))


def _dpo(params, model, tok, train_pairs, eval_pairs, extra, feedback=()):
    from trl import DPOConfig, DPOTrainer

    args = _config(DPOConfig, params, **extra)
    return DPOTrainer(
        model=model,
        ref_model=None,  # PEFT: the reference is the model with the adapter disabled (the SFT model)
        args=args,
        train_dataset=_dataset(params, train_pairs, "train"),
        eval_dataset=_dataset(params, eval_pairs, "eval") if eval_pairs else None,
        processing_class=tok,
        peft_config=_lora(params),
    )


def _simpo(params, model, tok, train_pairs, eval_pairs, extra, feedback=()):
    from trl import DPOConfig

    from tasks.dpo.simpo import SimPOTrainer

    args = _config(DPOConfig, params, **extra)
    return SimPOTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(params, train_pairs, "train"),
        eval_dataset=_dataset(params, eval_pairs, "eval") if eval_pairs else None,
        processing_class=tok,
        peft_config=_lora(params),
        gamma=params.align.simpo_gamma,
    )


def _kto(params, model, tok, train_pairs, eval_pairs, extra, feedback=()):
    from trl import KTOConfig, KTOTrainer

    rows = unpaired(train_pairs, params.seed)
    if feedback:  # thumbs are already unpaired; shuffled in with the pairs' rows for the same reason as there
        rows = rows + list(feedback)
        random.Random(params.seed).shuffle(rows)
    n_desirable = sum(r["label"] for r in rows)
    # KTO paper eq. 8: keep λ_D·n_D / (λ_U·n_U) in [1, 4/3]. Rows derived from pairs have n_D = n_U, so λ_U = 1 and
    # λ_D = n_U/n_D (= 1) put the ratio at exactly 1; thumbs make the counts differ, and the formula still gives 1.
    if not 0 < n_desirable < len(rows):
        raise StageError(f"align: kto needs desirable and undesirable rows; it has {n_desirable} desirable of "
                         f"{len(rows)} (align.feedback {params.align.feedback})")
    undesirable_weight = 1.0
    desirable_weight = (len(rows) - n_desirable) / max(n_desirable, 1)
    args = _config(KTOConfig, params, **extra, desirable_weight=desirable_weight,
                   undesirable_weight=undesirable_weight)
    return KTOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=_dataset(params, rows, "train"),
        eval_dataset=_dataset(params, unpaired(eval_pairs, params.seed), "eval") if eval_pairs else None,
        processing_class=tok,
        peft_config=_lora(params),
    )


# align.method → (trainer builder, its TRL config kwargs from align.*). TRL's loss names are given verbatim.
METHODS: dict[str, tuple[Callable[..., Any], Callable[[AlignParams], dict[str, Any]]]] = {
    "dpo": (_dpo, lambda a: {"loss_type": ["sigmoid"]}),
    "ipo": (_dpo, lambda a: {"loss_type": ["ipo"]}),  # beta is IPO's τ
    "robust": (_dpo, lambda a: {"loss_type": ["robust"], "label_smoothing": a.label_smoothing}),
    "hinge": (_dpo, lambda a: {"loss_type": ["hinge"]}),
    "kto": (_kto, lambda a: {}),  # λ_D/λ_U depend on the data: set in _kto
    "simpo": (_simpo, lambda a: {"beta": a.simpo_beta}),  # γ = a.simpo_gamma goes to the trainer
}


def summary_metrics(log_history: list[dict[str, Any]], eval_metrics: dict[str, float]) -> dict[str, float]:
    """Last logged training values (train/loss, train/rewards/margins, ...) and the held-out eval values."""
    last: dict[str, float] = {}
    for entry in log_history:
        if "loss" in entry:
            last.update(entry)
    keys = ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "kl"]
    out = {f"train/{k}": float(last[k]) for k in keys if k in last}
    for key, value in eval_metrics.items():
        name = key.removeprefix("eval_")
        if name in keys:
            out[f"eval/{name}"] = float(value)
    return out


if __name__ == "__main__":
    stage_main("align", run_align)
