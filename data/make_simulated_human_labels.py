#!/usr/bin/env python3
"""Write data/human/simulated.jsonl: a stand-in for human preference labels on the default task, for running the
`source: human` variant end to end before real labels exist (`alignflow label`, issue 6, writes the real ones to
data/human/preferences.jsonl).

The labels are SIMULATED, not human: three "labellers" (labeller ids sim-1, sim-2, sim-3, one per pair in turn)
each follow the gold judge (VADER) but flip a pair with probability 0.15 — roughly the disagreement rate between
crowd raters reported for sentiment tasks. Pairs are disjoint pairs of the SFT model's samples written by
collect_preferences (data/preferences/samples.jsonl); pairs the gold judge scores as ties are skipped. Deterministic
(fixed seed). Run from the repository root after a default run:

    python data/make_simulated_human_labels.py
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.common.gold import gold_scores  # noqa: E402

FLIP = 0.15


def main(samples_file: str = "data/preferences/samples.jsonl", out: str = "data/human/simulated.jsonl") -> None:
    rng = random.Random(20261127)
    by_prompt: dict[str, list[dict]] = {}
    for line in Path(samples_file).read_text(encoding="utf-8").splitlines():
        s = json.loads(line)
        by_prompt.setdefault(s["prompt_id"], []).append(s)
    rows = []
    for pid, samples in by_prompt.items():
        texts = [s["completion"][0]["content"] for s in samples if s["completion"][0]["content"].strip()]
        for k in range(0, len(texts) - 1, 2):
            a, b = texts[k], texts[k + 1]
            ga, gb = gold_scores([a, b])
            if a == b or ga == gb:
                continue
            a_wins = (ga > gb) != (rng.random() < FLIP)
            chosen, rejected = (a, b) if a_wins else (b, a)
            rows.append({"id": f"sim-{pid}-{k // 2}", "prompt": samples[0]["prompt"],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}],
                         "label": 1.0, "labeller": f"sim-{len(rows) % 3 + 1}"})
    Path(out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{out}: {len(rows)} simulated pairs")


if __name__ == "__main__":
    main(*sys.argv[1:])
