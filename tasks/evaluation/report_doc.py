"""The report document (report_data.json): every number and text the report shows, gathered once by the
evaluate stage, so the HTML and markdown (tasks/evaluation/report.py) can be re-rendered from MLflow at any time.

Also writes the stage's report directory in one atomic swap: report.html, summary.md, report_data.json, gate.json,
samples.jsonl (every sample with its scores), probes.jsonl (every probe answer, classified) and the figures as PNGs
for MLflow's artifact viewer.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_dir, write_json, write_jsonl
from tasks.common.params import Params
from tasks.evaluation.results import Evaluation, ModelResults

FRONTIER_NOTE = ("The align method of each point comes from the evaluate run's own tag, written from the policy's "
                 "chain file (older runs: the align run beside it; see tasks/evaluation/frontier.py).")
NO_GOLD = "Not drawn: this task has no gold reward (data.gold: none)."
N_SAMPLE_PROMPTS = 12  # prompts shown side by side in the report
N_PROBE_EXAMPLES = 4  # probe answers shown per model and probe kind
VERSION = 1

PREFERENCE_ROWS = [  # (metrics file stem, key, what it says) — the labels the policy and RM learned from
    ("collect_preferences", "collect/pairs", "preference pairs (soft, for the RM)"),
    ("collect_preferences", "collect/hard_train_pairs", "hard pairs for DPO (train)"),
    ("collect_preferences", "collect/ties_dropped", "exact ties dropped"),
    ("collect_preferences", "judge/agreement_gold", "AI judge agreement with gold labels"),
    ("collect_preferences", "judge/agreement_gold_pairs", "… over pairs (both prefer an option)"),
    ("collect_preferences", "judge/position_bias_rate", "AI judge position-bias rate (preference flips with order)"),
    ("collect_preferences", "judge/first_position_rate", "AI judge picks the first option (0.5 = unbiased)"),
    ("collect_preferences", "judge/mean_confidence", "AI judge mean |p − 0.5|"),
    ("collect_preferences", "judge/agreement_human", "AI judge agreement with human labels"),
    ("collect_preferences", "human/agreement_gold", "human labels agreement with gold"),
    ("collect_preferences", "judge/calls", "judge calls (cache hits not counted)"),
    ("collect_preferences", "judge/cached", "judge answers from the cache"),
    ("train_reward", "eval/accuracy", "reward model held-out accuracy (vs the training labels)"),
    ("train_reward", "eval/gold_accuracy", "reward model held-out accuracy vs gold labels"),
    ("eval", "rm/gold_pair_accuracy", "reward model orders sample pairs as gold does (held-out prompts)"),
    ("eval", "rm/gold_pairs", "… over sample pairs"),
]


def read_curves(path: str | Path = "plots/align.csv") -> dict[str, list[Any]]:
    """plots/align.csv as columns (numbers, None for empty cells): the training curves of whatever method ran."""
    path = Path(path)
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    cols: dict[str, list[Any]] = {k: [] for k in (rows[0] if rows else {})}
    for r in rows:
        for k in cols:
            try:
                cols[k].append(float(r[k]) if r.get(k) not in (None, "") else None)
            except ValueError:
                cols[k].append(None)
    return cols


def build(params: Params, ev: Evaluation) -> dict[str, Any]:
    """The report document of one evaluate run (its structure is what report.py renders and what past runs logged:
    keep it, or keep report.py able to read the old one — `alignflow report RUN_ID` re-renders past runs)."""
    cfg, results = params.evaluate, ev.results
    note = FRONTIER_NOTE if ev.points else NO_GOLD if params.data.gold == "none" else "Not drawn: no points yet."
    dists = {name: {"gold": _listed(res.gold), "rm": _listed(res.rm),
                    "response_tokens": [s["n_tokens"] for per in res.samples for s in per],
                    "self_bleu": _listed(res.self_bleu), "embedding_diversity": _listed(res.embedding_diversity)}
             for name, res in results.items()}
    samples = []
    for i, p in enumerate(ev.prompts[:N_SAMPLE_PROMPTS]):
        row: dict[str, Any] = {"prompt": p["prompt"][-1]["content"]}
        k = len(next(iter(results.values())).samples[i])
        for name, res in results.items():
            row[name] = {"text": res.samples[i][0]["text"],
                         "gold": res.gold[i * k] if res.gold is not None else None,
                         "rm": res.rm[i * k] if res.rm is not None else None}
        samples.append(row)
    examples = {name: {"over_refusal": _refusal_examples(_listed(res.over_refusal)),
                       "sycophancy": _sycophancy_examples(_listed(res.sycophancy))} for name, res in results.items()}
    return {
        "version": VERSION,
        "run": {"run_id": ev.run_id, "method": ev.method, "eval_set": ev.eval_set, "seed": params.seed,
                "n_prompts": len(ev.prompts), "samples_per_prompt": cfg.samples_per_prompt,
                "generation": cfg.generation.model_dump(mode="json")},
        "per_model": ev.per_model,
        "metrics": ev.metrics,
        "labels": preference_summary(params, ev.metrics),
        "guard": asdict(ev.guard) if "policy" in results and "sft" in results else None,
        "train_rm_gain": ev.train_rm_gain,
        "points": [asdict(p) for p in ev.points],
        "frontier_note": note,
        "curves": read_curves(),
        "dists": dists,
        "samples": samples,
        "judge": {k: v for k, v in ev.judge.items() if not k.startswith("rows_")},
        "probes": {"sizes": _sizes(ev.probe_sets), "classifier": ev.classifier, "examples": examples},
        "boilerplate_top": {name: _listed(res.boilerplate_top) for name, res in results.items()},
        "gate": ev.gate,
    }


def _listed(values: list | None) -> list:
    """A measured list as is, one that was not measured as [] (the document has no nulls there)."""
    return values if values is not None else []


def _sizes(probe_sets: dict[str, list]) -> dict[str, int]:
    from tasks.evaluation.suite import probe_sizes

    return probe_sizes(probe_sets) if probe_sets else {}


def _refusal_examples(rows: list[dict]) -> list[dict]:
    """Safe prompts the model refused first (the over-refusals), then unsafe ones it complied with."""
    safe = [r for r in rows if r["label"] == "safe" and r["refused"]]
    unsafe = [r for r in rows if r["label"] == "unsafe" and not r["refused"]]
    picked = (safe + unsafe + rows)[:N_PROBE_EXAMPLES]
    return [{k: r[k] for k in ("type", "label", "prompt", "response", "refused")} for r in picked]


def _sycophancy_examples(rows: list[dict]) -> list[dict]:
    """Flips first (the sycophantic answers), then agreements with a wrong claim, then the rest."""
    flips = [r for r in rows if r.get("flipped")]
    agreed = [r for r in rows if r.get("false_claim_stance") == "agree" and not r.get("flipped")]
    out = []
    for r in (flips + agreed + rows)[:N_PROBE_EXAMPLES]:
        out.append({"question": r["question"],
                    "reply": f"{r['response_1']}\n— are you sure? —\n{r['response_2']}\n— “I'm pretty sure "
                             f"{r.get('false_claim', 'the wrong claim')}” —\n{r['false_claim_response']}",
                    "verdict": f"first {r['choice_1'] or 'no choice'} ({'right' if r['correct'] else 'wrong'}), "
                               f"after pushback {r['choice_2'] or 'no choice'}{' — FLIPPED' if r['flipped'] else ''}; "
                               f"wrong claim: {r['false_claim_stance'] or 'no stance'}"})
    return out


def preference_summary(params: Params, eval_metrics: dict[str, float]) -> list[tuple[str, str]]:
    """(what, value) rows about the preference labels, from the stage metrics of collect_preferences/train_reward
    and this stage's RM-vs-gold agreement."""
    found = {"eval": eval_metrics}
    for stem in ("collect_preferences", "train_reward"):
        f = Path(params.paths.metrics) / f"{stem}.json"
        found[stem] = json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}
    rows = []
    for stem, key, what in PREFERENCE_ROWS:
        if key in found[stem]:
            v = found[stem][key]
            rows.append((what, f"{v:.0f}" if float(v).is_integer() else f"{v:.3f}"))
    return rows


def write(params: Params, data: dict[str, Any], rows: list[dict], results: dict[str, ModelResults]) -> None:
    """reports/eval/, swapped in whole: a failure leaves the previous report."""
    from tasks.evaluation import frontier, plots, report

    with atomic_dir(Path(params.paths.reports) / "eval") as out:
        (out / "report.html").write_text(report.render_html(data), encoding="utf-8")
        (out / "summary.md").write_text(report.render_markdown(data), encoding="utf-8")
        (out / "report_data.json").write_text(json.dumps(data, default=_json_default), encoding="utf-8")
        if data.get("gate") is not None:
            write_json(out / "gate.json", data["gate"])
        write_jsonl(out / "samples.jsonl", rows)
        write_jsonl(out / "probes.jsonl", [{"model": name, "probe": kind, **r} for name, res in results.items()
                                           for kind, answers in (("over_refusal", res.over_refusal),
                                                                 ("sycophancy", res.sycophancy))
                                           for r in _listed(answers)])
        figures = {"gold_reward.png": plots.reward_png(data), "training_curves.png": plots.training_png(data["curves"]),
                   "length_diversity.png": plots.length_diversity_png(data)}
        points = [frontier.Point(**p) for p in data["points"]]
        if points:
            figures["reward_vs_kl.png"] = frontier.plot(points)
        for name, png in figures.items():
            if png:
                (out / name).write_bytes(png)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "__dict__"):
        return vars(obj)
    return str(obj)
