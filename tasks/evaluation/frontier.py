"""Reward-vs-KL frontier across runs: every evaluated policy as one point (KL(policy‖SFT), gold reward), labelled
by the align method that trained it, with the SFT model at (0, its gold reward) — docs/methods.md, "The default task"'s success plot.

Points come from MLflow: the runs of the pipeline experiment tagged `alignflow.stage = evaluate` that carry both
`policy/kl_sft` and `policy/gold_reward`, plus the current run's point (from its metrics, not from MLflow) and SFT.
Pipeline parent runs copy the eval metrics too (flows/tracking_glue.py) and are left out by the stage tag: they
would count each policy twice, and once more for every pipeline run in which evaluate was cached.
The x axis is the mean per-sequence k1 KL (Gao et al. 2022 plot against √KL; `dvc plots` and this figure use KL).

The join — which align method made each point — takes the first of:
 1. the evaluate run's tag `alignflow.align_method` (TAG), which evaluate writes from the policy's chain file
    (models/policy/alignflow_model.json, written by align). It travels with the model, so it is right for pipeline
    runs, `dvc repro`, `dvc exp run` (stages run as top-level runs) and runs in which align was cached;
 2. runs from before that tag, under a pipeline parent: the `align.method` param of the align run with the same
    parent, else the parent's own `align.method` param (the pipeline logs it; align was cached in that run);
 3. top-level runs from before that tag: the latest align run of the experiment that started before the evaluate
    run started (`dvc repro` runs the stages in order; a guess for interleaved runs, which only 1 makes exact);
 4. "unknown".

    Used by tasks/evaluate.py; writes plots/reward_vs_kl.csv (`dvc plots show`) and reports/eval/reward_vs_kl.png.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_write_text

TAG = "alignflow.align_method"
KL, GOLD, RM = "policy/kl_sft", "policy/gold_reward", "policy/rm_score"
COLUMNS = ["run_id", "method", "kl", "gold_reward", "rm_score", "current"]
DPO_FAMILY = ("dpo", "ipo", "robust", "hinge", "kto", "simpo")


@dataclass(frozen=True)
class Point:
    run_id: str
    method: str
    kl: float
    gold_reward: float
    rm_score: float  # NaN when the run had no reward model
    current: bool


def collect_points(client, experiment_id: str, current_run_id: str, metrics: dict[str, float],
                   method: str | None) -> list[Point]:
    """SFT, every past evaluated policy in the experiment (oldest first), then this run's policy."""
    points = []
    if "sft/gold_reward" in metrics:
        points.append(Point(current_run_id, "sft", 0.0, metrics["sft/gold_reward"],
                            metrics.get("sft/rm_score", math.nan), True))
    points += past_points(client, experiment_id, exclude=current_run_id)
    if KL in metrics and GOLD in metrics:
        points.append(Point(current_run_id, method or "unknown", metrics[KL], metrics[GOLD],
                            metrics.get(RM, math.nan), True))
    return points


def past_points(client, experiment_id: str, exclude: str | None = None) -> list[Point]:
    evaluations = [r for r in _search(client, experiment_id, "evaluate")
                   if r.info.run_id != exclude and KL in r.data.metrics and GOLD in r.data.metrics]
    if not evaluations:
        return []
    aligns = sorted(_search(client, experiment_id, "align"), key=lambda r: r.info.start_time)
    out = []
    for run in sorted(evaluations, key=lambda r: r.info.start_time):
        m = run.data.metrics
        out.append(Point(run.info.run_id, method_of(client, run, aligns), m[KL], m[GOLD], m.get(RM, math.nan), False))
    return out


def method_of(client, run, aligns: list[Any]) -> str:
    """The join of the module docstring; `aligns` = the experiment's align runs, oldest first."""
    if run.data.tags.get(TAG):
        return run.data.tags[TAG]
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent:
        siblings = [a for a in aligns if a.data.tags.get("mlflow.parentRunId") == parent]
        if siblings and "align.method" in siblings[-1].data.params:
            return siblings[-1].data.params["align.method"]
        try:
            return client.get_run(parent).data.params.get("align.method", "unknown")
        except Exception:  # the parent was deleted: nothing more to learn from it
            return "unknown"
    before = [a for a in aligns if a.info.start_time <= run.info.start_time and "align.method" in a.data.params]
    return before[-1].data.params["align.method"] if before else "unknown"


def _search(client, experiment_id: str, stage: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`alignflow.stage` = '{stage}'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def write_csv(path: str | Path, points: list[Point]) -> None:
    """One row per point (header only when there are none: the file is a declared `dvc plots` output)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for p in points:
        writer.writerow([p.run_id, p.method, repr(p.kl), repr(p.gold_reward),
                         "" if math.isnan(p.rm_score) else repr(p.rm_score), int(p.current)])
    atomic_write_text(path, buf.getvalue())


def plot(points: list[Point]) -> bytes:
    """PNG scatter: one colour per method, circles for the DPO family, triangles for online RL, a star for SFT;
    this run's points ringed in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    methods = list(dict.fromkeys(p.method for p in points))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    for m in methods:
        marker = "*" if m == "sft" else "o" if m in DPO_FAMILY else "^"
        for i, current in enumerate(sorted({p.current for p in points if p.method == m})):
            ps = [p for p in points if p.method == m and p.current == current]
            ax.scatter([p.kl for p in ps], [p.gold_reward for p in ps], s=140 if current else 50, marker=marker,
                       color="black" if m == "sft" else colours[m], edgecolors="black" if current else "face",
                       linewidths=1.5, alpha=0.85, label=None if i else m)
    if points:
        ax.legend(title="align.method", fontsize=8)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set(xlabel="KL(policy‖SFT), nats per sequence (k1)", ylabel="gold reward (mean over held-out prompts)",
           title="Gold reward vs KL across runs (ringed: this run)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def report_section(points: list[Point], png: bytes | None, note: str = "") -> str:
    """HTML: the figure and a table of the points."""
    import base64
    import html

    if png is None:
        return f"<h2>Gold reward vs KL across runs</h2><p>{html.escape(note)}</p>"

    def num(v: float) -> str:
        return "—" if math.isnan(v) else f"{v:.3f}"

    rows = "".join(f"<tr><td>{html.escape(p.method)}</td><td>{html.escape(p.run_id[:8])}{' (this run)' * p.current}"
                   f"</td><td>{num(p.kl)}</td><td>{num(p.gold_reward)}</td><td>{num(p.rm_score)}</td></tr>"
                   for p in points)
    return f"""<h2>Gold reward vs KL across runs</h2>
<p>Every evaluated policy of this MLflow experiment (runs tagged alignflow.stage = evaluate) and the SFT model at
KL 0. {html.escape(note)}</p>
<img alt="gold reward vs KL across runs" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<table><tr><th>align.method</th><th>evaluate run</th><th>KL(policy‖SFT)</th><th>gold reward</th><th>RM score</th></tr>
{rows}</table>"""
