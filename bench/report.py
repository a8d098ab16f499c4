"""Medians over the repetitions, the alignflow/baseline ratio, the JSON file and the markdown table.

Per workload phase and side: the median over repetitions of tokens/s, samples/s, seconds and achieved FLOP/s (as
fractions of the measured fp32 and bf16 matmul peaks), and the largest peak RSS of any repetition. The ratio is
median alignflow tokens/s ÷ median baseline tokens/s (> 1: alignflow is faster).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def side_stats(runs: list[dict[str, Any]], phase: str, peak: dict[str, float]) -> dict[str, Any]:
    done = [r for r in runs if "phases" in r and phase in r["phases"]]
    if not done:
        return {}
    per = [r["phases"][phase] for r in done]
    tps = [p["tokens"] / p["seconds"] for p in per]
    sps = [p["samples"] / p["seconds"] for p in per]
    fps = [p["flops"] / p["seconds"] for p in per]
    flops_s = statistics.median(fps)
    return {
        "tokens_per_s": statistics.median(tps),
        "samples_per_s": statistics.median(sps),
        "seconds": statistics.median(p["seconds"] for p in per),
        "tokens": statistics.median(p["tokens"] for p in per),
        "samples": statistics.median(p["samples"] for p in per),
        "gflops_per_s": flops_s / 1e9,
        "fraction_fp32_peak": flops_s / 1e9 / peak["fp32_gflops"],
        "fraction_bf16_peak": flops_s / 1e9 / peak["bf16_gflops"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in done),
        "reps": len(per),
        "per_rep": {"tokens_per_s": tps, "seconds": [p["seconds"] for p in per],
                    "peak_rss_mb": [r["peak_rss_mb"] for r in done]},
    }


def summarise(results: dict[str, dict[str, list[dict]]], peak: dict[str, float]) -> list[dict[str, Any]]:
    """One row per (workload, phase): both sides' stats and the throughput ratio."""
    rows = []
    for workload, sides in results.items():
        phases: list[str] = []
        for runs in sides.values():
            for r in runs:
                phases += [p for p in r.get("phases", {}) if p not in phases]
        for phase in phases:
            a, b = side_stats(sides["alignflow"], phase, peak), side_stats(sides["baseline"], phase, peak)
            ratio = a["tokens_per_s"] / b["tokens_per_s"] if a and b and b["tokens_per_s"] > 0 else None
            rows.append({"workload": workload, "phase": phase, "alignflow": a, "baseline": b, "ratio": ratio})
    return rows


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def markdown(doc: dict[str, Any]) -> str:
    peak = doc["peak"]
    lines = [
        f"Peak (torch.matmul, {peak['threads']} threads): fp32 {peak['fp32_gflops']:.0f} GFLOP/s, "
        f"bf16 {peak['bf16_gflops']:.0f} GFLOP/s. Medians of {doc['reps']} interleaved repetitions.",
        "",
        "| workload | alignflow tokens/s | baseline tokens/s | ratio | samples/s (a / b) | peak RSS MB (a / b) "
        "| alignflow % of fp32 / bf16 peak | baseline % of fp32 / bf16 peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in doc["rows"]:
        a, b = row["alignflow"], row["baseline"]
        name = row["workload"] if row["phase"] in ("train", row["workload"]) else f"{row['workload']} {row['phase']}"

        def pct(s: dict) -> str:
            return f"{100 * s['fraction_fp32_peak']:.1f} / {100 * s['fraction_bf16_peak']:.1f}" if s else "—"

        lines.append(
            f"| {name} | {_fmt(a.get('tokens_per_s'))} | {_fmt(b.get('tokens_per_s'))} | {_fmt(row['ratio'], '.2f')}× "
            f"| {_fmt(a.get('samples_per_s'), '.2f')} / {_fmt(b.get('samples_per_s'), '.2f')} "
            f"| {_fmt(a.get('peak_rss_mb'), '.0f')} / {_fmt(b.get('peak_rss_mb'), '.0f')} | {pct(a)} | {pct(b)} |"
        )
    if doc.get("errors"):
        lines += ["", "Failed runs:"] + [f"- {e['workload']} {e['side']} rep {e['rep']}: {e['error'][-300:]}"
                                         for e in doc["errors"]]
    return "\n".join(lines)


def write(path: str | Path, doc: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
