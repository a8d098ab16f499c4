"""The labelling queue: which pairs exist (collect_preferences' judgments), and which one a labeller sees next.

Active learning (queue: active): the pairs the AI judge was least sure of come first, |p_a − ½| ascending, ties by
id — a human label moves the reward model most where the judge's label is closest to a coin flip. queue: all keeps
the import order.

A pair goes to `overlap` labellers (k, for inter-annotator agreement); skips do not count towards k. A labeller is
never shown the same pair twice: an assignment (pair, labeller) is made once, and a page reload shows the open one
again. An open assignment holds one of the k places for `lease_s`, so two labellers working at once do not both get
the last place of a pair; a labeller who walks away gives the place back when the lease ends.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alignflow.labeling.store import Assignment, LabelStore, now, pair_from_row
from tasks.common.io import read_jsonl

ORDER = {  # params.label.queue -> SQL order of the pairs
    "active": "ROUND(ABS(COALESCE(p.ai_p, 0.5) - 0.5), 9), p.source_id, p.seq",  # rounded: 0.45 and 0.55 tie
    "all": "p.seq",
}
LEASE_S = 1800
_SUFFIX = re.compile(r"^(.*)-(p\d+|\d{2})$")  # disjoint_pairs' <prompt>-p<k>, margin_pairs' <prompt>-<i><j>

# The pairs that still want a label from :me — not assigned to :me, fewer than :k non-skip labels plus open leases.
_OPEN = """
    NOT EXISTS (SELECT 1 FROM assignments a WHERE a.pair_id = p.id AND a.labeller = :me)
    AND (SELECT COUNT(*) FROM labels l WHERE l.pair_id = p.id AND l.choice != 'skip')
      + (SELECT COUNT(*) FROM assignments a
         WHERE a.pair_id = p.id AND a.created > :cutoff
           AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = a.pair_id AND l.labeller = a.labeller)) < :k
"""


def load_pairs(preferences_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Pairs {source_id, prompt, a, b, ai_p, judge, source} from judgments.jsonl, with the prompt from train/eval
    (same id) or samples.jsonl (by prompt id); plus counts of what was left out and why."""
    root = Path(preferences_dir)
    judgments_file = root / "judgments.jsonl"
    if not judgments_file.exists():
        raise FileNotFoundError(f"{judgments_file} not found (run collect_preferences first)")
    prompts: dict[str, Any] = {}
    for name in ("samples.jsonl", "train.jsonl", "eval.jsonl"):
        if (root / name).exists():
            for r in read_jsonl(root / name):
                prompts.setdefault(r.get("prompt_id", r["id"]), r["prompt"])
                prompts[r["id"]] = r["prompt"]
    pairs, skipped = [], {"human": 0, "no_prompt": 0, "empty_or_same": 0}
    for j in read_jsonl(judgments_file):
        if j.get("source") == "human":
            skipped["human"] += 1
            continue
        match = _SUFFIX.match(j["id"])
        prompt = prompts.get(j["id"]) or (prompts.get(match.group(1)) if match else None)
        if prompt is None:
            skipped["no_prompt"] += 1
            continue
        a, b = j.get("a") or "", j.get("b") or ""
        if not a.strip() or not b.strip() or a == b:
            skipped["empty_or_same"] += 1
            continue
        pairs.append({"source_id": j["id"], "prompt": prompt, "a": a, "b": b, "ai_p": j.get("p_a"),
                      "judge": j.get("judge"), "source": j.get("source")})
    return pairs, skipped


def order_pairs(pairs: list[dict[str, Any]], queue: str) -> list[dict[str, Any]]:
    """The queue order in Python (the same as ORDER in SQL), for choosing which max_pairs to import."""
    if queue == "all":
        return list(pairs)
    return sorted(pairs, key=lambda p: (round(abs((0.5 if p["ai_p"] is None else p["ai_p"]) - 0.5), 9),
                                        p["source_id"]))


def import_queue(store: LabelStore, preferences_dir: str | Path, queue: str = "active",
                 max_pairs: int | None = None) -> dict[str, int]:
    """Add collect_preferences' pairs to the store (idempotent: pairs already there are kept as they are)."""
    pairs, skipped = load_pairs(preferences_dir)
    chosen = order_pairs(pairs, queue)[:max_pairs]
    added = store.add_pairs(chosen)
    return {"found": len(pairs), "imported": len(chosen), "new": added, **{f"skipped_{k}": v for k, v in skipped.items()}}


def next_pair(store: LabelStore, labeller: str, overlap: int, order: str = "active",
              lease_s: int = LEASE_S) -> Assignment | None:
    """The labeller's open assignment, else a new one on the first pair that still wants a label from them (shown
    in a random order, recorded); None when nothing is left for them."""
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT p.*, a.swapped, a.nonce FROM assignments a JOIN pairs p ON p.id = a.pair_id "
            "WHERE a.labeller = ? AND NOT EXISTS "
            "(SELECT 1 FROM labels l WHERE l.pair_id = a.pair_id AND l.labeller = a.labeller) "
            "ORDER BY a.created LIMIT 1", (labeller,)).fetchone()
        if row is not None:
            return Assignment(pair_from_row(row), labeller, bool(row["swapped"]), row["nonce"])
        row = conn.execute(f"SELECT p.* FROM pairs p WHERE {_OPEN} ORDER BY {ORDER[order]} LIMIT 1",
                           _args(labeller, overlap, lease_s)).fetchone()
        if row is None:
            return None
        swapped, nonce = bool(secrets.randbelow(2)), secrets.token_urlsafe(18)
        conn.execute("INSERT INTO assignments VALUES (?, ?, ?, ?, ?)", (row["id"], labeller, swapped, nonce, now()))
    return Assignment(pair_from_row(row), labeller, swapped, nonce)


def progress(store: LabelStore, labeller: str, overlap: int, lease_s: int = LEASE_S) -> dict[str, int]:
    """{labelled: this labeller's non-skip labels, left: pairs still open to them, open assignment included}."""
    with store.connect() as conn:
        left = conn.execute(f"SELECT COUNT(*) FROM pairs p WHERE {_OPEN}", _args(labeller, overlap, lease_s)).fetchone()[0]
        pending = conn.execute(
            "SELECT COUNT(*) FROM assignments a WHERE a.labeller = ? AND NOT EXISTS "
            "(SELECT 1 FROM labels l WHERE l.pair_id = a.pair_id AND l.labeller = a.labeller)", (labeller,)).fetchone()[0]
    return {"labelled": store.counts(labeller)["labelled"], "left": left + pending}


def _args(labeller: str, overlap: int, lease_s: int) -> dict[str, Any]:
    cutoff = (datetime.now(UTC) - timedelta(seconds=lease_s)).isoformat(timespec="milliseconds")
    return {"me": labeller, "k": overlap, "cutoff": cutoff}
