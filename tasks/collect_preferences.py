"""Collect preference pairs: sample K continuations per prompt from the SFT model and label them with the gold judge.

source: gold (the default task's synthetic human, DESIGN.md §6) — for each of the first `max_prompts` training
prompts, sample `samples_per_prompt` continuations from the SFT model (seeded), score each with VADER
(tasks/common/gold.py) and pair the best against the worst. A pair is kept only when the gold margin is at least
`min_margin` (and above zero: ties say nothing), so the reward model and DPO see labels that are clearly right;
dropped prompts are counted. Empty continuations are never paired (an empty assistant turn is not a valid row).
source: file — the user's pairs, in any supported format, loaded and normalised by the validate stage's loader.

Either way the written pairs pass the preference validation suite before this stage reports success; on failure
the previous data/preferences/ stays in place (atomic_dir).

Reads  models/sft (chain), data/validated/prompts_train.jsonl      (or collect_preferences.file)
Writes data/preferences/{train,eval,samples}.jsonl, metrics/collect_preferences.json

    dvc repro collect_preferences
    alignflow run
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from tasks.common.gold import LABELLER, gold_scores
from tasks.common.io import atomic_dir, read_jsonl, write_json, write_jsonl
from tasks.common.params import Params
from tasks.common.stage import StageError, stage_main

log = logging.getLogger("alignflow.collect_preferences")


def run_collect_preferences(params: Params) -> dict[str, float]:
    """Files in, files out, metrics returned."""
    from tasks.common.modeling import seed_everything
    from tasks.common.tracking import log_dataset, log_metrics, stage_run

    cfg = params.collect_preferences
    seed_everything(params.seed)
    with stage_run("collect_preferences", params, cfg.model_dump()):
        if cfg.source == "gold":
            pairs, samples, metrics = _collect_gold(params)
        else:
            pairs, samples, metrics = _load_file(params)
        if not pairs:
            raise StageError(
                f"collect_preferences: no preference pairs ({metrics.get('collect/dropped_low_margin', 0):.0f} "
                f"prompts dropped below collect_preferences.min_margin={cfg.min_margin}); lower min_margin or raise "
                "samples_per_prompt"
            )
        train, held_out = split_pairs(pairs, cfg.eval_fraction, params.seed)

        out_dir = Path(params.paths.preferences)
        with atomic_dir(out_dir) as staging:
            write_jsonl(staging / "train.jsonl", train)
            if held_out:
                write_jsonl(staging / "eval.jsonl", held_out)
            if samples:
                write_jsonl(staging / "samples.jsonl", samples)
            # The produced pairs go through the same suite as user data, before they replace the old output.
            _validate_pairs([staging / "train.jsonl"] + ([staging / "eval.jsonl"] if held_out else []), params)

        metrics.update(
            {"collect/pairs": len(pairs), "collect/train_pairs": len(train), "collect/eval_pairs": len(held_out)}
        )
        write_json(Path(params.paths.metrics) / "collect_preferences.json", metrics)
        log_metrics(metrics)
        log_dataset(out_dir / "train.jsonl", train, context="output", name="preferences_train")
        _log_sample_pairs(pairs[:20])
    return metrics


def _collect_gold(params: Params) -> tuple[list[dict], list[dict], dict[str, float]]:
    from tasks.common.modeling import generate, load_causal_lm, load_tokenizer
    from tasks.common.tracking import log_dataset

    cfg, paths = params.collect_preferences, params.paths
    prompts_file = Path(paths.validated) / "prompts_train.jsonl"
    for needed in (prompts_file, Path(paths.sft_model)):
        if not needed.exists():
            raise StageError(f"collect_preferences: {needed} not found (run the stage that writes it first)")
    prompts = read_jsonl(prompts_file)[: cfg.max_prompts]
    log_dataset(prompts_file, prompts, context="prompts")

    # Generate
    model = load_causal_lm(paths.sft_model, dtype=cfg.generation.dtype)
    tok = load_tokenizer(paths.sft_model)
    start = time.perf_counter()
    completions = generate(
        model,
        tok,
        [p["prompt"] for p in prompts],
        **cfg.generation.model_dump(exclude={"dtype"}),
        num_return_sequences=cfg.samples_per_prompt,
        batch_size=cfg.batch_size,
        seed=params.seed,
        desc="collect_preferences",
    )
    gen_s = time.perf_counter() - start
    n_tokens = sum(s["n_tokens"] for per_prompt in completions for s in per_prompt)

    # Label with the gold judge and pair best vs worst
    pairs, samples = [], []
    dropped_low_margin = 0
    for prompt, per_prompt in zip(prompts, completions, strict=True):
        scores = gold_scores([s["text"] for s in per_prompt])
        for k, (s, score) in enumerate(zip(per_prompt, scores, strict=True)):
            samples.append(
                {
                    "id": f"{prompt['id']}-{k}",
                    "prompt_id": prompt["id"],
                    "prompt": prompt["prompt"],
                    "completion": [{"role": "assistant", "content": s["text"]}],
                    "score": score,
                    "n_tokens": s["n_tokens"],
                    "eos": s["eos"],
                }
            )
        pair = best_vs_worst(prompt, [s["text"] for s in per_prompt], scores, cfg.min_margin)
        if pair is None:
            dropped_low_margin += 1
        else:
            pairs.append(pair)

    metrics = {
        "collect/prompts": len(prompts),
        "collect/dropped_low_margin": dropped_low_margin,
        "collect/empty_samples": sum(1 for s in samples if not s["completion"][0]["content"]),
        "collect/mean_sample_gold": _mean([s["score"] for s in samples]),
        "collect/mean_chosen_gold": _mean([p["score_chosen"] for p in pairs]),
        "collect/mean_rejected_gold": _mean([p["score_rejected"] for p in pairs]),
        "collect/gen_seconds": gen_s,
        "collect/gen_tokens_per_s": n_tokens / gen_s if gen_s > 0 else 0.0,
    }
    return pairs, samples, metrics


def best_vs_worst(prompt: dict[str, Any], texts: list[str], scores: list[float], min_margin: float) -> dict | None:
    """One preference row (internal form) from K scored samples, or None when the gold margin is too small."""
    scored = [(s, t) for s, t in zip(scores, texts, strict=True) if t.strip()]
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda st: st[0])
    worst = min(scored, key=lambda st: st[0])
    margin = best[0] - worst[0]
    if margin <= 0 or margin < min_margin or best[1] == worst[1]:
        return None
    return {
        "id": prompt["id"],
        "prompt": prompt["prompt"],
        "chosen": [{"role": "assistant", "content": best[1]}],
        "rejected": [{"role": "assistant", "content": worst[1]}],
        "score_chosen": best[0],
        "score_rejected": worst[0],
        "label": 1.0,
        "source": "gold",
        "labeller": LABELLER,
        "sample_scores": scores,
    }


def _load_file(params: Params) -> tuple[list[dict], list[dict], dict[str, float]]:
    from tasks.validate import load_and_validate

    cfg = params.collect_preferences
    if not cfg.file:
        raise StageError("collect_preferences.source is 'file' but collect_preferences.file is not set")
    if not Path(cfg.file).exists():
        raise StageError(f"collect_preferences.file: {cfg.file} not found")
    pairs = load_and_validate("preference", [cfg.file], params)
    # The gold judge still says how much the user's labels agree with the task's ground truth (cheap: no model).
    chosen = gold_scores([p["chosen"][-1]["content"] for p in pairs])
    rejected = gold_scores([p["rejected"][-1]["content"] for p in pairs])
    metrics = {
        "collect/dropped_low_margin": 0,
        "collect/mean_chosen_gold": _mean(chosen),
        "collect/mean_rejected_gold": _mean(rejected),
        "collect/gold_agreement": _mean([float(c > r) for c, r in zip(chosen, rejected, strict=True)]),
    }
    return pairs, [], metrics


def split_pairs(pairs: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic held-out split: order by a seeded hash of the id, so a pair's side never depends on row order."""
    n_eval = round(len(pairs) * eval_fraction)
    if eval_fraction > 0 and len(pairs) >= 2:
        n_eval = min(max(n_eval, 1), len(pairs) - 1)
    ranked = sorted(pairs, key=lambda p: hashlib.sha256(f"{seed}:{p['id']}".encode()).hexdigest())
    held_out_ids = {p["id"] for p in ranked[:n_eval]}
    train = [p for p in pairs if p["id"] not in held_out_ids]
    return train, [p for p in pairs if p["id"] in held_out_ids]


def _validate_pairs(files: list[Path], params: Params) -> None:
    from tasks.validate import DataValidationError, load_and_validate

    try:
        load_and_validate("preference", files, params)
    except DataValidationError as exc:
        raise StageError(f"collect_preferences: the produced pairs failed the preference suite: {exc}") from exc


def _log_sample_pairs(pairs: list[dict]) -> None:
    import mlflow

    mlflow.log_table(
        {
            "prompt": [p["prompt"][-1]["content"] for p in pairs],
            "chosen": [p["chosen"][-1]["content"] for p in pairs],
            "rejected": [p["rejected"][-1]["content"] for p in pairs],
            "score_chosen": [p.get("score_chosen") for p in pairs],
            "score_rejected": [p.get("score_rejected") for p in pairs],
        },
        artifact_file="sample_pairs.json",
    )


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


if __name__ == "__main__":
    stage_main("collect_preferences", run_collect_preferences)
