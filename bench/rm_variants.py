"""Reward-model variants on the workspace's preference data: the train_reward stage with params overridden, then the
held-out accuracy against gold overall and by gold gap.

Run after a default run (data/preferences from collect_preferences with reward_pairs: all, models/base and
models/sft present). Each variant trains into a scratch directory (models/reward, metrics/ and plots/ are left alone) and
prints one JSON line: the stage's metrics, wall time, and gold accuracy on the held-out pairs whose gold scores
differ by more than 0, 0.1, 0.3, 0.5. `--labels gold` trains on gold labels instead of the file's (the RLHF
reference: pairs at least collect_preferences.min_margin apart, labelled by the gold score).

    python -m bench.rm_variants --set train_reward.pooling=last --set train_reward.pooling=mean
    python -m bench.rm_variants --labels gold --set train_reward.pooling=mean
    python -m bench.rm_variants --set train_reward.trainer.learning_rate=5e-4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml


def _override(params, dotted: str):
    key, value = dotted.split("=", 1)
    parts = key.split(".")
    obj = params
    for p in parts[:-1]:
        obj = obj[p] if isinstance(obj, dict) else getattr(obj, p)
    parsed = yaml.safe_load(value)
    if isinstance(obj, dict):
        obj[parts[-1]] = parsed
    else:
        setattr(obj, parts[-1], parsed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], help="one variant per --set (dotted=value)")
    ap.add_argument("--labels", choices=["file", "gold"], default="file")
    args = ap.parse_args()

    from tasks.common.io import read_jsonl, write_jsonl
    from tasks.common.params import load_params
    from tasks.common.reward import load_reward_model, raw_rewards
    from tasks.train_reward import run_train_reward

    eval_rows = read_jsonl("data/preferences/eval.jsonl")
    for variant in args.set or ["train_reward.pooling=mean"]:
        params = load_params()
        _override(params, variant)
        with tempfile.TemporaryDirectory(prefix="rm-variant-") as tmp:
            prefs = Path(tmp, "preferences")
            prefs.mkdir()
            train = read_jsonl("data/preferences/train.jsonl")
            if args.labels == "gold":
                margin = params.collect_preferences.min_margin
                train = [{**r, "label": float(r["score_chosen"] > r["score_rejected"])} for r in train
                         if abs(r["score_chosen"] - r["score_rejected"]) >= margin]
            write_jsonl(prefs / "train.jsonl", train)
            write_jsonl(prefs / "eval.jsonl", eval_rows)
            params.paths.preferences = str(prefs)
            params.paths.reward_model = str(Path(tmp, "reward"))
            params.paths.reward_checkpoints = str(Path(tmp, "checkpoints"))
            params.paths.metrics = str(Path(tmp, "metrics"))
            curves = Path("plots/train_reward.csv")  # the stage writes its curves there: keep the workspace's
            kept = curves.read_bytes() if curves.exists() else None
            start = time.perf_counter()
            try:
                metrics = run_train_reward(params)
            finally:
                if kept is not None:
                    curves.write_bytes(kept)
            wall = time.perf_counter() - start
            model, tok = load_reward_model(params.paths.reward_model)
            prompts = [r["prompt"] for r in eval_rows]
            chosen = raw_rewards(model, tok, prompts, [r["chosen"] for r in eval_rows])
            rejected = raw_rewards(model, tok, prompts, [r["rejected"] for r in eval_rows])
        by_gap = {}
        for gap in (0.0, 0.1, 0.3, 0.5):
            hits = [(c > r) == (row["score_chosen"] > row["score_rejected"])
                    for c, r, row in zip(chosen, rejected, eval_rows)
                    if abs(row["score_chosen"] - row["score_rejected"]) > gap]
            by_gap[f"gap>{gap}"] = [round(sum(hits) / len(hits), 3), len(hits)] if hits else None
        print(json.dumps({"variant": variant, "labels": args.labels, "train_pairs": len(train), "wall_s": round(wall, 1),
                          "gold_accuracy_by_gap": by_gap, **metrics}), flush=True)


if __name__ == "__main__":
    main()
