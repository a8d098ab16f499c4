"""Judge candidates on the default task: agreement with gold, position bias and cost per judge model and technique.

The labelling is collect_preferences' own (source: ai): every pair of the K SFT samples per prompt in
data/preferences/samples.jsonl judged under a principle drawn per prompt, the judge's best vs worst (Borda) kept
as the DPO pair; agreement with gold (which sample VADER scores higher; gold ties left out) on those pairs
(judge/agreement_gold) and on every judged pair (judge/agreement_gold_all). Techniques (tasks/judges/):
  pairwise     A/B letter probabilities, both orders averaged (LocalJudge)
  calibrated   the same, minus the content-free prior's log-odds per question (LocalJudge calibrate=True)
  pointwise    each reply rated Yes/No under the principle, p = σ(r_a − r_b) (PointwiseJudge)

    python -m bench.judge_candidates --model models/judge --techniques pointwise,calibrated --max-prompts 192
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def from_samples(path: Path, max_prompts: int | None) -> tuple[list[dict], list[list[dict]]]:
    """samples.jsonl back into the stage's (prompts, completions) form."""
    from tasks.common.io import read_jsonl

    by_prompt: dict[str, tuple[dict, list[dict]]] = {}
    for row in read_jsonl(path):
        prompt, texts = by_prompt.setdefault(row["prompt_id"], ({"id": row["prompt_id"], "prompt": row["prompt"]}, []))
        texts.append({"text": row["completion"][0]["content"]})
    chosen = list(by_prompt.values())[:max_prompts]
    return [p for p, _ in chosen], [c for _, c in chosen]


def build(technique: str, model: str, constitution, batch_size: int, dtype: str):
    if technique == "pointwise":
        from tasks.judges.pointwise import PointwiseJudge

        return PointwiseJudge(model, constitution, None, batch_size=batch_size, dtype=dtype)
    from tasks.judges.local import LocalJudge

    return LocalJudge(model, constitution, None, few_shot=False, batch_size=batch_size, dtype=dtype,
                      calibrate=technique == "calibrated")


def measure(judge, prompts: list[dict], completions: list[list[dict]], constitution, params) -> dict:
    """The stage's own AI labelling (every pair judged, Borda best vs worst), timed."""
    from tasks.collect_preferences import _judge_sampled

    t0 = time.perf_counter()
    labelled, metrics = _judge_sampled(params, prompts, completions, judge, constitution)
    seconds = time.perf_counter() - t0
    return {"prompts": len(prompts), "seconds": seconds, "seconds_per_prompt": seconds / len(prompts),
            "tokens_per_s": judge.stats.tokens / seconds if seconds else 0.0,
            **{k: v for k, v in metrics.items() if k.startswith("judge/")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="judge model dir (repeat for several)")
    ap.add_argument("--samples", default="data/preferences/samples.jsonl")
    ap.add_argument("--constitution", default="data/constitution.yaml")
    ap.add_argument("--techniques", default="pairwise,calibrated,pointwise")
    ap.add_argument("--max-prompts", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--out", default=None, help="JSON results file (default: print only)")
    args = ap.parse_args()

    import torch

    from tasks.common.constitution import load_constitution
    from tasks.common.params import load_params

    params = load_params()
    params.collect_preferences.source = "ai"
    constitution = load_constitution(args.constitution)
    prompts, completions = from_samples(Path(args.samples), args.max_prompts)
    results = []
    for model in args.model:
        for technique in args.techniques.split(","):
            judge = build(technique, model, constitution, args.batch_size, args.dtype)
            row = {"model": model, "technique": technique, "dtype": args.dtype, "threads": torch.get_num_threads(),
                   **measure(judge, prompts, completions, constitution, params)}
            print(json.dumps(row), flush=True)
            results.append(row)
            del judge
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
