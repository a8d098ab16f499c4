"""The judge that is not a model: the task's gold rule (the "synthetic human").

It sits behind the same interface as the model judges so that every preference source produces the same
judgment records (both orders, soft label, identity), and agreement between any two sources is one comparison.
It reads no principle and needs no cache (answers are instant and deterministic). Human labels from a file are
not a judge: each row is one person's vote, used as is (tasks/collect_preferences.py `_load_human`).
"""

from __future__ import annotations

from tasks.judges.base import Judge, Query, Verdict


class GoldJudge(Judge):
    """p(first better) = 1, 0 or ½ by the gold score (VADER for the default task): hard labels, ties at ½
    (tasks/common/gold.py `gold_preference`)."""

    uses_principles = False
    chunk_size = 4096

    def __init__(self, gold: str = "vader"):
        super().__init__()
        if gold != "vader":
            raise ValueError(f"no gold judge {gold!r} (known: vader)")
        self.identity = f"gold:{gold}"

    def score(self, queries: list[Query]) -> list[Verdict]:
        from tasks.common.gold import gold_preference, gold_scores

        firsts = gold_scores([q.first for q in queries])
        seconds = gold_scores([q.second for q in queries])
        return [Verdict(p_first=gold_preference(f, s)) for f, s in zip(firsts, seconds, strict=True)]
