"""How much of the gold signal the SFT model's features hold: a linear Bradley–Terry probe on frozen features.

Features of models/base + models/sft (merged) for every sample of data/preferences/samples.jsonl, read at the last
token (what a sequence-classification reward model's head reads) and averaged over tokens; a logistic regression on
feature differences of every pair of one prompt's samples, trained on 80 % of the prompts (split by a seeded hash,
as collect_preferences splits) with gold (VADER) or judge-rating labels, scored against gold on the held-out 20 %.
Judge ratings come from `bench.judge_rating_variants --dump` (optional).

    python -m bench.rm_probe [--ratings ratings.json]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", default=None, help="JSON {rat: [...]} aligned with samples.jsonl")
    args = ap.parse_args()

    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from tasks.common.io import read_jsonl
    from tasks.common.modeling import load_tokenizer
    from tasks.common.reward import load_sequence_classifier

    rows = read_jsonl("data/preferences/samples.jsonl")
    tok = load_tokenizer("models/sft", padding_side="right")
    model = load_sequence_classifier("models/base", ["models/sft"], tok.pad_token_id).eval()
    texts = [tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in rows]
    feats = []
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            enc = tok(texts[i : i + 32], return_tensors="pt", padding=True, add_special_tokens=False)
            h = model.model(**enc).last_hidden_state
            mask = enc["attention_mask"]
            last = h[torch.arange(h.shape[0]), mask.sum(1) - 1]
            mean = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            feats.append(torch.cat([last, mean], -1))
    features = torch.cat(feats).numpy()
    width = features.shape[1] // 2
    gold = np.array([r["score"] for r in rows])
    labels = {"gold": gold}
    if args.ratings:
        labels["judge"] = np.array(json.load(open(args.ratings))["rat"])
    by_prompt: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_prompt.setdefault(r["prompt_id"], []).append(i)
    ranked = sorted(by_prompt, key=lambda g: hashlib.sha256(f"42:{g}".encode()).hexdigest())
    held, train = ranked[: len(ranked) // 5], ranked[len(ranked) // 5 :]

    def pairs(groups):
        return [p for g in groups for p in itertools.combinations(by_prompt[g], 2)]

    for read, cols in (("last", slice(0, width)), ("mean", slice(width, None))):
        x = features[:, cols]
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        for name, y in labels.items():
            tr = [(a, b) for a, b in pairs(train) if y[a] != y[b]]
            d = np.array([x[a] - x[b] for a, b in tr])
            t = np.array([y[a] > y[b] for a, b in tr])
            for c in (0.001, 0.01, 0.1):
                w = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(
                    np.concatenate([d, -d]), np.concatenate([t, ~t])).coef_[0]
                s = x @ w
                ev = [(a, b) for a, b in pairs(held) if gold[a] != gold[b]]
                big = [(a, b) for a, b in ev if abs(gold[a] - gold[b]) >= 0.3]
                bw = [(max(by_prompt[g], key=gold.__getitem__), min(by_prompt[g], key=gold.__getitem__)) for g in held]
                acc = {k: round(float(np.mean([(s[a] > s[b]) == (gold[a] > gold[b]) for a, b in ps])), 3)
                       for k, ps in (("all_pairs", ev), ("gap_ge_0.3", big), ("gold_best_worst", bw))}
                print(json.dumps({"features": read, "labels": name, "C": c, **acc, "pairs": len(ev)}))


if __name__ == "__main__":
    main()
