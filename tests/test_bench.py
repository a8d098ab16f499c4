"""bench/: the FLOP counts' arithmetic, the report's medians and ratios, and the whole harness in --quick mode on the
tiny model (setup, one process per side and repetition, the JSON and the table) for the SFT workload; the others
share the harness and are run by `python -m bench.run --quick` (about 1.5 min). No timing is asserted: only that
every figure exists and is consistent (positive rates, ratio = alignflow / baseline, both sides did the same work)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import flops, report

REPO = Path(__file__).resolve().parents[1]


def test_forward_and_training_flops_worked_numbers():
    s = flops.Shape(n_layers=2, d_model=4, d_attn=4, vocab=10, n_body=100, n_lora=8)
    # 2·100·3 + 2·2·4·3·4 + 2·10·4·1 = 600 + 192 + 80
    assert flops.forward(s, 3, head=1) == 872
    # 4·100·3 + 6·8·3 + 3·192 + 4·10·4·3 = 1200 + 144 + 576 + 480
    assert flops.train(s, 3, head=3) == 2400


def test_generation_costs_one_forward_over_the_tokens_fed():
    """Prefill of p tokens, then n − 1 decode steps: the p + n − 1 tokens fed once each, with the head at n of them
    — and the causal attention of a KV-cached decode equals that of the full forward."""
    s = flops.Shape(n_layers=3, d_model=8, d_attn=8, vocab=50, n_body=1000, n_lora=0)
    for p, n in ((5, 1), (5, 7), (1, 3)):
        assert flops.generation(s, p, n) == pytest.approx(flops.forward(s, p + n - 1, head=n))
    assert flops.generation(s, 5, 0) == flops.forward(s, 5, head=1)


def test_model_shape_counts_the_block_linears(tiny_model_dir):
    s = flops.model_shape(tiny_model_dir, lora_r=4)
    d, kv, ff = 32, 16, 64  # tiny model: width 32, 4 heads of 8, 2 KV heads, MLP 64
    per_layer = [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]
    assert s.n_layers == 2 and s.d_model == d and s.d_attn == d
    assert s.n_body == 2 * sum(i * o for i, o in per_layer)
    assert s.n_lora == 2 * sum(4 * (i + o) for i, o in per_layer)


def test_summarise_takes_medians_and_the_ratio():
    def run(seconds, rss):
        return {"phases": {"train": {"seconds": seconds, "tokens": 100, "samples": 10, "flops": 1e9}},
                "peak_rss_mb": rss}

    results = {"sft": {"alignflow": [run(1.0, 500), run(2.0, 600), run(4.0, 550)],
                       "baseline": [run(2.0, 400), run(2.0, 450), run(8.0, 420)]}}
    [row] = report.summarise(results, {"fp32_gflops": 10.0, "bf16_gflops": 20.0})
    a, b = row["alignflow"], row["baseline"]
    assert a["tokens_per_s"] == 50 and b["tokens_per_s"] == 50  # medians of 100, 50, 25 and 50, 50, 12.5
    assert row["ratio"] == 1.0
    assert a["peak_rss_mb"] == 600
    assert a["fraction_fp32_peak"] == pytest.approx(0.05) and a["fraction_bf16_peak"] == pytest.approx(0.025)


def test_peak_is_the_better_of_two_measurements():
    from bench.peak import best_of

    first = {"fp32_gflops": 90.0, "bf16_gflops": 200.0, "threads": 2, "by_size": {}}
    second = {"fp32_gflops": 95.0, "bf16_gflops": 150.0, "threads": 2, "by_size": {}}
    best = best_of(first, second)
    assert (best["fp32_gflops"], best["bf16_gflops"]) == (95.0, 200.0) and len(best["measurements"]) == 2


def test_quick_benchmark_end_to_end(tmp_path):
    out = tmp_path / "quick.json"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ALIGNFLOW_PARENT_RUN_ID")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--workloads", "sft", "--reps", "1",
         "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads(out.read_text())

    assert doc["peak"]["fp32_gflops"] > 0 and doc["peak"]["bf16_gflops"] > 0
    assert doc["errors"] == [] and doc["machine"]["versions"]["trl"]
    assert doc["setup"]["chain"] == "none (not needed)"  # SFT starts from the base model
    [row] = doc["rows"]
    assert (row["workload"], row["phase"]) == ("sft", "train")
    a, b = row["alignflow"], row["baseline"]
    for side in (a, b):
        assert side["reps"] == 1
        assert side["tokens_per_s"] > 0 and side["samples_per_s"] > 0 and side["gflops_per_s"] > 0
        assert 0 < side["fraction_fp32_peak"] and 0 < side["fraction_bf16_peak"]
        assert side["peak_rss_mb"] > 100  # a process that imported torch
    assert row["ratio"] == pytest.approx(a["tokens_per_s"] / b["tokens_per_s"])
    # The same work on both sides: the quick slice is 2 SFT steps of 8 rows, truncated the same way.
    assert a["samples"] == b["samples"] == 2 * 8
    assert a["tokens"] == b["tokens"]
    assert "| sft |" in proc.stdout
