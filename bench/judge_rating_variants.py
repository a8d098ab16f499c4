"""Rating prompts and judge sizes for the pointwise judge, on the SFT samples of data/preferences/samples.jsonl.

Each sample is rated once (r = log p(Yes) − log p(No)) under one prompt variant; the ratings are compared with
VADER (gold) over pairs of one prompt's samples: the disjoint pairs, all pairs, pairs whose gold gap is ≥ 0.5,
and each prompt's best vs worst by the rating (what collect_preferences keeps as the DPO pair).
  default    the shipped rating_messages (question, conversation, reply, question), principle "positivity"
  compact    the opening and the reply in one line, then the question
  sentiment  the reply alone: "Is the sentiment of this text positive?"

    python -m bench.judge_rating_variants --model models/judge --variant default --samples 768
"""

from __future__ import annotations

import argparse
import itertools
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--variant", choices=["default", "compact", "sentiment"], default="default")
    ap.add_argument("--samples", type=int, default=768)
    ap.add_argument("--dump", default=None, help="write the ratings as JSON {rat: [...]} (for bench.rm_probe)")
    args = ap.parse_args()

    from scipy.stats import spearmanr

    import tasks.judges.pointwise as pw
    from tasks.common.constitution import load_constitution
    from tasks.common.io import read_jsonl

    def compact(prompt, reply, principle):
        opening = prompt[-1]["content"].split("\n\n", 1)[-1]
        return [{"role": "system", "content": pw.RATE_SYSTEM},
                {"role": "user", "content": f"A movie review begins: \"{opening}\"\n\nContinuation: \"{reply}\"\n\n"
                                            f"{pw.rating_question(principle)} Answer Yes or No."}]

    def sentiment(prompt, reply, principle):
        return [{"role": "user", "content": f"Text: \"{reply}\"\n\nIs the sentiment of this text positive? "
                                            "Answer Yes or No."}]

    pw.rating_messages = {"default": pw.rating_messages, "compact": compact, "sentiment": sentiment}[args.variant]
    constitution = load_constitution("data/constitution.yaml")
    rows = read_jsonl("data/preferences/samples.jsonl")[: args.samples]
    judge = pw.PointwiseJudge(args.model, constitution, None, batch_size=16, dtype="bfloat16")
    principle = constitution.get("positivity")
    todo = {f"k{i}": (r["prompt"], r["completion"][0]["content"], principle) for i, r in enumerate(rows)}
    t0 = time.perf_counter()
    tokens = judge._rate(todo)
    seconds = time.perf_counter() - t0
    rating = [judge.ratings[f"k{i}"] for i in range(len(rows))]
    gold = [r["score"] for r in rows]
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as f:
            json.dump({"rat": rating}, f)

    def agree(pairs):
        ok = [(rating[a] > rating[b]) == (gold[a] > gold[b]) for a, b in pairs if gold[a] != gold[b]]
        return round(sum(ok) / len(ok), 3), len(ok)

    by_prompt: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_prompt.setdefault(r["prompt_id"], []).append(i)
    disjoint = [(v[k], v[k + 1]) for v in by_prompt.values() for k in range(0, len(v) - 1, 2)]
    every = [p for v in by_prompt.values() for p in itertools.combinations(v, 2)]
    best_worst = [(max(v, key=rating.__getitem__), min(v, key=rating.__getitem__)) for v in by_prompt.values()]
    print(json.dumps({
        "model": args.model, "variant": args.variant, "samples": len(rows), "seconds": round(seconds, 1),
        "tokens_per_s": round(sum(tokens.values()) / seconds), "spearman": round(float(spearmanr(rating, gold)[0]), 3),
        "disjoint": agree(disjoint), "all_pairs": agree(every),
        "gap_ge_0.5": agree([(a, b) for a, b in every if abs(gold[a] - gold[b]) >= 0.5]),
        "best_worst": agree([p for p in best_worst if p[0] != p[1]]),
    }))


if __name__ == "__main__":
    main()
