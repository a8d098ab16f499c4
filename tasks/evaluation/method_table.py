"""The comparison of methods as one table and one figure, from the metrics files of one experiment per method.

Each row is a finished experiment's metrics (metrics/eval.json, align.json, train_reward.json,
collect_preferences.json, as `dvc exp show --json` returns them). Columns: gold reward with its 95 % interval,
the paired gold gain over SFT with its interval, KL(policy‖SFT) (k3, nats per sequence), diversity (distinct-2),
sycophancy (agrees with a wrong claim), over-refusal, training wall time (align, plus train_reward for the methods
that optimise a reward model) and the labels the method consumed: gold/human-equivalent labelled pairs, or AI-judge
comparisons. The SFT reference is the same in every row (same prompts, seed and samples), so it is one extra row.

    rows = [method_row(name, label, metrics_by_file, uses_rm) for ...]
    write_outputs(rows, "reports/compare_methods")   # .md, .csv, .png
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_write_text


@dataclass
class MethodRow:
    method: str
    label: str
    status: str  # "ok" or why the experiment has no numbers
    gold: float | None = None
    gold_low: float | None = None
    gold_high: float | None = None
    gain: float | None = None
    gain_low: float | None = None
    gain_high: float | None = None
    kl: float | None = None
    distinct_2: float | None = None
    sycophancy: float | None = None
    over_refusal: float | None = None
    train_s: float | None = None
    human_labels: float | None = None
    judge_labels: float | None = None

    def beats_sft(self) -> bool | None:
        """The paired gain's 95 % interval lies above 0."""
        return None if self.gain_low is None else self.gain_low > 0


def method_row(method: str, label: str, files: dict[str, dict[str, Any]], uses_rm: bool) -> MethodRow:
    """A row from one experiment's metrics files (keys: file stems, e.g. "eval", "align")."""
    ev, al = files.get("eval", {}), files.get("align", {})
    rm, co = files.get("train_reward", {}), files.get("collect_preferences", {})
    if "policy/gold_reward" not in ev:
        return MethodRow(method, label, status="no policy/gold_reward in metrics/eval.json")
    train = _num(al.get("train/runtime_s"))
    if uses_rm and train is not None:
        train += _num(rm.get("train/runtime")) or 0.0
    human = _num(co.get("collect/gold_labelled_pairs"))
    if co.get("collect/ai_prompts") in (0, 0.0, None) and not human:  # the gold source labels every pair it keeps
        human = _num(co.get("collect/pairs"))
    return MethodRow(
        method, label, "ok",
        gold=_num(ev.get("policy/gold_reward")), gold_low=_num(ev.get("policy/gold_reward_ci_low")),
        gold_high=_num(ev.get("policy/gold_reward_ci_high")),
        gain=_num(ev.get("policy/gold_gain_vs_sft")), gain_low=_num(ev.get("policy/gold_gain_vs_sft_ci_low")),
        gain_high=_num(ev.get("policy/gold_gain_vs_sft_ci_high")),
        kl=_num(ev.get("policy/kl_sft_k3")), distinct_2=_num(ev.get("policy/distinct_2")),
        sycophancy=_num(ev.get("policy/sycophancy_agree_wrong")), over_refusal=_num(ev.get("policy/over_refusal")),
        train_s=train, human_labels=human or 0.0, judge_labels=_num(co.get("judge/pairs")) or 0.0,
    )


def sft_row(files: dict[str, dict[str, Any]]) -> MethodRow:
    """The shared reference: SFT's numbers from any row's metrics/eval.json."""
    ev = files.get("eval", {})
    return MethodRow(
        "sft", "SFT (reference)", "ok" if "sft/gold_reward" in ev else "no sft/gold_reward",
        gold=_num(ev.get("sft/gold_reward")), gold_low=_num(ev.get("sft/gold_reward_ci_low")),
        gold_high=_num(ev.get("sft/gold_reward_ci_high")), kl=0.0, distinct_2=_num(ev.get("sft/distinct_2")),
        sycophancy=_num(ev.get("sft/sycophancy_agree_wrong")), over_refusal=_num(ev.get("sft/over_refusal")),
    )


HEADER = ["method", "gold reward [95 % CI]", "gain vs SFT [95 % CI]", "KL to SFT", "distinct-2", "sycophancy",
          "over-refusal", "train s", "human labels", "judge labels"]


def to_markdown(rows: list[MethodRow]) -> str:
    def ci(v, lo, hi, sign=False):
        if v is None:
            return "—"
        fmt = "{:+.3f}" if sign else "{:.3f}"
        return f"{fmt.format(v)} [{fmt.format(lo)}, {fmt.format(hi)}]" if lo is not None else fmt.format(v)

    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        if r.status != "ok":
            lines.append(f"| {r.label} | failed: {r.status} |" + " |" * (len(HEADER) - 2))
            continue
        gain = ci(r.gain, r.gain_low, r.gain_high, sign=True)
        if r.beats_sft():
            gain = f"**{gain}**"
        cells = [r.label, ci(r.gold, r.gold_low, r.gold_high), gain, _f(r.kl, 2), _f(r.distinct_2, 3),
                 _f(r.sycophancy, 3), _f(r.over_refusal, 3), _f(r.train_s, 0), _f(r.human_labels, 0),
                 _f(r.judge_labels, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[MethodRow]) -> str:
    buf = io.StringIO()
    fields = list(asdict(rows[0]))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    return buf.getvalue()


def figure_png(rows: list[MethodRow]) -> bytes | None:
    """Gold reward with its 95 % interval per method (SFT's band behind), and gold reward against KL to SFT."""
    from tasks.evaluation.plots import _plt, _png

    done = [r for r in rows if r.status == "ok" and r.gold is not None]
    if not done:
        return None
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sft = next((r for r in done if r.method == "sft"), None)
    methods = [r for r in done if r.method != "sft"]
    if sft is not None and sft.gold_low is not None:
        left.axhspan(sft.gold_low, sft.gold_high, color="#4c72b0", alpha=0.15, label="SFT 95 % CI")
        left.axhline(sft.gold, color="#4c72b0", lw=1)
    xs = range(len(methods))
    errs = [[r.gold - (r.gold_low if r.gold_low is not None else r.gold) for r in methods],
            [(r.gold_high if r.gold_high is not None else r.gold) - r.gold for r in methods]]
    colours = ["#dd8452" if r.beats_sft() else "#999999" for r in methods]
    left.bar(xs, [r.gold for r in methods], yerr=errs, color=colours, capsize=4)
    left.set_xticks(list(xs), [r.method for r in methods], rotation=30, ha="right")
    left.set_ylabel("gold reward (held-out prompts)")
    left.set_title("gold reward, 95 % CI (orange: gain over SFT > 0)")
    left.legend(loc="lower right", fontsize=8)
    for r in methods:
        if r.kl is not None:
            right.scatter(r.kl, r.gold, color="#dd8452" if r.beats_sft() else "#999999")
            right.annotate(r.method, (r.kl, r.gold), fontsize=8, xytext=(3, 3), textcoords="offset points")
    if sft is not None:
        right.scatter(0, sft.gold, color="#4c72b0")
        right.annotate("sft", (0, sft.gold), fontsize=8, xytext=(3, 3), textcoords="offset points")
    right.set_xlabel("KL(policy ‖ SFT), nats per sequence (k3)")
    right.set_ylabel("gold reward")
    right.set_title("reward against drift")
    return _png(fig)


def write_outputs(rows: list[MethodRow], stem: str | Path) -> list[Path]:
    """<stem>.md, .csv and (when anything finished) .png, each written atomically."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    atomic_write_text(written[0], to_markdown(rows))
    atomic_write_text(written[1], to_csv(rows))
    png = figure_png(rows)
    if png:
        written.append(stem.with_suffix(".png"))
        tmp = written[-1].with_name(f".{written[-1].name}.tmp")
        tmp.write_bytes(png)
        tmp.replace(written[-1])
    return written


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _f(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"
