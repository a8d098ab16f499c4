"""Export the labels to the pipeline's human preference file, and measure agreement.

One row per (pair, labeller) label that is not a skip, in the internal conversational preference form:
{"id", "prompt", "chosen", "rejected", "label", "labeller", "source": "human"}. A clear choice is label 1.0 with the
chosen side first; a tie keeps the original a/b order with label 0.5 (collect_preferences drops exact ties from the
reward data, but they stay in the file: they are a labeller's answer, and they count in κ). Rows are sorted by
(pair, labeller) so an export without new labels leaves the DVC-tracked file byte-for-byte unchanged.

The chat page's thumbs up/down go to a second file in the project's unpaired (KTO) form, one row per voted reply:
{"id", "prompt": the conversation the model saw, "completion": [the reply], "label": up, "labeller",
"model_version", "source": "feedback"}. Replies nobody voted on are not data. Repeated identical rows (one labeller
giving the same vote to the same greedy reply of the same prompt twice) are kept once, since the validate stage
would flag the copy as a duplicate.

    alignflow label export      # writes params.label.export and data/human/feedback.jsonl, prints the metrics
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from alignflow.labeling.store import LabelStore
from tasks.common.io import write_jsonl
from tasks.preferences.agreement import by_item, fleiss_from_labels, human_ai_agreement, mean_cohen

FEEDBACK_EXPORT = "data/human/feedback.jsonl"


def export_rows(store: LabelStore) -> list[dict[str, Any]]:
    pairs = store.pairs()
    rows = []
    for lab in store.labels():
        if lab.choice == "skip":
            continue
        p = pairs[lab.pair_id]
        chosen, rejected = (p.b, p.a) if lab.choice == "b" else (p.a, p.b)
        rows.append({
            "id": f"{lab.pair_id}-{lab.labeller}", "prompt": p.prompt,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "label": 0.5 if lab.choice == "tie" else 1.0, "labeller": lab.labeller, "source": "human",
        })
    return rows


def label_metrics(store: LabelStore, min_shared: int = 5) -> dict[str, float]:
    """human/labels, pairs, labellers, fleiss_kappa, cohen_kappa (mean over labeller pairs sharing ≥ min_shared
    pairs), ai_agreement (+ the counts behind them). A κ or agreement that is undefined (too few shared labels) is
    left out rather than written as NaN, which JSON and `dvc metrics` do not take."""
    labels = store.labels()
    items = by_item([(lab.pair_id, lab.labeller, lab.choice) for lab in labels])
    cohen, n_cohen = mean_cohen(items, min_shared)
    ai, n_ai = human_ai_agreement(items, {pid: p.ai_p for pid, p in store.pairs().items()})
    metrics = {
        "human/labels": sum(len(v) for v in items.values()),
        "human/skips": sum(lab.choice == "skip" for lab in labels),
        "human/pairs": len(items),
        "human/labellers": len({r for v in items.values() for r in v}),
        "human/overlap_pairs": sum(len(v) >= 2 for v in items.values()),
        "human/fleiss_kappa": fleiss_from_labels(items),
        "human/cohen_kappa": cohen,
        "human/cohen_kappa_rater_pairs": n_cohen,
        "human/ai_agreement": ai,
        "human/ai_agreement_pairs": n_ai,
    }
    return {k: float(v) for k, v in metrics.items() if not math.isnan(v)}


def export(store: LabelStore, path: str | Path) -> dict[str, float]:
    """Write the preference file atomically; returns the metrics."""
    rows = export_rows(store)
    write_jsonl(path, rows)
    return label_metrics(store)


def feedback_rows(store: LabelStore) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for fb in store.feedback_rows(voted_only=True):
        key = (fb.labeller, json.dumps(fb.conversation, sort_keys=True), fb.response, fb.up)
        if key in seen:
            continue
        seen.add(key)
        rows.append({
            "id": f"feedback-{fb.id:06d}", "prompt": fb.conversation,
            "completion": [{"role": "assistant", "content": fb.response}], "label": bool(fb.up),
            "labeller": fb.labeller, "model_version": fb.model_version, "source": "feedback",
        })
    return rows


def export_feedback(store: LabelStore, path: str | Path = FEEDBACK_EXPORT) -> dict[str, float]:
    """Write the KTO feedback file atomically; returns feedback/responses (replies made), up, down and up_rate
    (left out while there is no vote)."""
    rows = feedback_rows(store)
    write_jsonl(path, rows)
    up = sum(r["label"] for r in rows)
    metrics = {"feedback/responses": len(store.feedback_rows()), "feedback/up": up, "feedback/down": len(rows) - up}
    if rows:
        metrics["feedback/up_rate"] = up / len(rows)
    return {k: float(v) for k, v in metrics.items()}
