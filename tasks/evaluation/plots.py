"""The report's figures, drawn from the numbers in the report document (PNG bytes; matplotlib, Agg backend).

Each function returns None when it has nothing to draw, so the report can say "no data" instead of showing an
empty axis.
"""

from __future__ import annotations

import io
import math
from typing import Any

COLOURS = {"base": "#999999", "sft": "#4c72b0", "policy": "#dd8452"}


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _bins(groups: list[list[float]], n: int = 20) -> list[float] | int:
    values = [v for g in groups for v in g]
    if not values or max(values) == min(values):
        return n
    low, high = min(values), max(values)
    return [low + (high - low) * i / n for i in range(n + 1)]


def reward_png(data: dict[str, Any]) -> bytes | None:
    """Gold-reward distribution per model and the means with their 95 % intervals (RM score without a gold)."""
    dists, per_model = data.get("dists", {}), data["per_model"]
    key, metric, label = "gold", "gold_reward", "gold reward"
    if not any(_finite(d.get("gold", [])) for d in dists.values()):
        key, metric, label = "rm", "rm_score", "reward-model score"
    names = [n for n in dists if n in per_model and _finite(dists[n].get(key, []))]
    if not names:
        return None
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    bins = _bins([_finite(dists[n][key]) for n in names])
    for n in names:
        left.hist(_finite(dists[n][key]), bins=bins, histtype="step", linewidth=1.8, label=n, color=COLOURS.get(n))
    left.set(xlabel=label, ylabel="samples", title="distribution")
    left.legend()
    means = [per_model[n].get(metric, math.nan) for n in names]
    errs = [[max(0.0, m - per_model[n].get(f"{metric}_ci_low", m)) for n, m in zip(names, means, strict=True)],
            [max(0.0, per_model[n].get(f"{metric}_ci_high", m) - m) for n, m in zip(names, means, strict=True)]]
    errs = [[0.0 if math.isnan(e) else e for e in side] for side in errs]
    right.bar(names, means, yerr=errs, capsize=6, color=[COLOURS.get(n, "#666") for n in names])
    right.axhline(0, color="black", linewidth=0.6)
    right.set(ylabel=f"mean {label}", title="mean, 95 % interval over prompts")
    return _png(fig)


def training_png(curves: dict[str, list[Any]]) -> bytes | None:
    """Reward-like and KL-like columns of plots/align.csv against the step (whatever the align method logged)."""
    steps = curves.get("step") or []
    if not steps:
        return None
    reward_cols = [c for c in curves if c != "step" and any(w in c for w in ("reward", "score", "margin"))
                   and "kl" not in c and len(_finite(curves[c])) > 0]
    kl_cols = [c for c in curves if c != "step" and "kl" in c and len(_finite(curves[c])) > 0]
    if not reward_cols and not kl_cols:
        return None
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, cols, title in ((left, reward_cols, "reward over training"), (right, kl_cols, "KL over training")):
        for c in cols[:6]:
            pts = [(s, float(v)) for s, v in zip(steps, curves[c], strict=False)
                   if v is not None and math.isfinite(float(v))]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=c)
        ax.set(xlabel="step", title=title)
        if cols:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged by this align method", ha="center", va="center", transform=ax.transAxes)
    return _png(fig)


def length_diversity_png(data: dict[str, Any]) -> bytes | None:
    """Histograms per model: response tokens (per sample), self-BLEU and embedding diversity (per prompt)."""
    dists = data.get("dists", {})
    panels = [("response_tokens", "response tokens (per sample)"), ("self_bleu", "self-BLEU (per prompt, lower = "
              "more diverse)"), ("embedding_diversity", "embedding diversity (per prompt)")]
    panels = [p for p in panels if any(_finite(d.get(p[0], [])) for d in dists.values())]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        groups = {n: _finite(d.get(key, [])) for n, d in dists.items()}
        bins = _bins(list(groups.values()))
        for n, values in groups.items():
            if values:
                ax.hist(values, bins=bins, histtype="step", linewidth=1.8, label=n, color=COLOURS.get(n))
        ax.set(title=title, ylabel="count")
        ax.legend(fontsize=8)
    return _png(fig)
