"""Judges that are not models: the task's gold rule (the "synthetic human") and human labels from a file.

They sit behind the same interface as the model judges so that every preference source produces the same
judgment records (both orders, soft label, identity), and agreement between any two sources is one comparison.
Neither reads the principle, and neither needs a cache (answers are instant and deterministic).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tasks.judges.base import Judge, Query, Verdict


class GoldJudge(Judge):
    """p(first better) = 1, 0 or ½ by the gold score (VADER for the default task): hard labels, ties at ½."""

    uses_principles = False
    chunk_size = 4096

    def __init__(self, gold: str = "vader"):
        super().__init__()
        if gold != "vader":
            raise ValueError(f"no gold judge {gold!r} (known: vader)")
        self.identity = f"gold:{gold}"

    def score(self, queries: list[Query]) -> list[Verdict]:
        from tasks.common.gold import gold_scores

        firsts = gold_scores([q.first for q in queries])
        seconds = gold_scores([q.second for q in queries])
        return [Verdict(p_first=0.5 if f == s else float(f > s)) for f, s in zip(firsts, seconds, strict=True)]


class HumanLabels(Judge):
    """Answers from a labelled preference file: p(chosen better) = the row's soft label (1 when absent)."""

    uses_principles = False
    chunk_size = 4096

    def __init__(self, rows: list[dict[str, Any]], name: str = "file"):
        super().__init__()
        self.identity = f"human:{name}"
        self._labels: dict[str, float] = {}
        for r in rows:
            p = 1.0 if r.get("label") is None else float(r["label"])
            self._labels[_pair_key(r["prompt"], r["chosen"][-1]["content"], r["rejected"][-1]["content"])] = p

    def score(self, queries: list[Query]) -> list[Verdict]:
        out = []
        for q in queries:
            p = self._labels.get(_pair_key(q.prompt, q.first, q.second))
            if p is None:
                flipped = self._labels.get(_pair_key(q.prompt, q.second, q.first))
                if flipped is None:
                    raise KeyError(f"{self.identity}: no human label for this pair (first option {q.first[:60]!r})")
                p = 1.0 - flipped
            out.append(Verdict(p_first=p))
        return out


def _pair_key(prompt: Any, chosen: str, rejected: str) -> str:
    return hashlib.sha256(json.dumps([prompt, chosen, rejected], ensure_ascii=False).encode()).hexdigest()
