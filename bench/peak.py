"""This machine's measured matmul peak, fp32 and bf16: the denominator of every "% of peak" in the report.

torch.matmul on square matrices, with the threads torch uses by default (or OMP_NUM_THREADS, as the workloads see
it), so the peak and the workloads run under the same threading. For each size: one warm-up product, then `reps`
timed ones; the size's rate is the median; the peak is the best size. Sizes run from cache-resident (1024: 4 MiB
per fp32 operand) to RAM-resident (4096: 64 MiB), because the best blocking differs by dtype and size. bench.run
measures it before the first run and again after the last (not with --quick) and reports the better of the two
(`best_of`): other processes can only lower a measurement.

    .venv/bin/python -m bench.peak            # prints the JSON
"""

from __future__ import annotations

import json
import statistics
import time

SIZES = (1024, 2048, 4096)
QUICK_SIZES = (512, 1024)


def matmul_gflops(n: int, dtype, reps: int) -> float:
    import torch

    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.matmul(a, b)  # warm-up: thread pool, packing buffers
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def measure(quick: bool = False, reps: int = 5) -> dict:
    """{"fp32_gflops", "bf16_gflops", "threads", "by_size": {dtype: {n: GFLOP/s}}}."""
    import torch

    sizes = QUICK_SIZES if quick else SIZES
    reps = 2 if quick else reps
    by_size: dict[str, dict[str, float]] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        by_size[name] = {str(n): round(matmul_gflops(n, dtype, reps), 1) for n in sizes}
    return {
        "fp32_gflops": max(by_size["fp32"].values()),
        "bf16_gflops": max(by_size["bf16"].values()),
        "threads": torch.get_num_threads(),
        "reps": reps,
        "by_size": by_size,
    }


def best_of(*peaks: dict) -> dict:
    """Interference from other processes only ever lowers a measured peak: the best measurement is the peak."""
    best = dict(max(peaks, key=lambda p: p["bf16_gflops"]))
    best["fp32_gflops"] = max(p["fp32_gflops"] for p in peaks)
    best["bf16_gflops"] = max(p["bf16_gflops"] for p in peaks)
    best["measurements"] = [{k: p[k] for k in ("fp32_gflops", "bf16_gflops", "by_size")} for p in peaks]
    return best


if __name__ == "__main__":
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here (default: stdout)")
    args = ap.parse_args()
    text = json.dumps(measure(quick=args.quick), indent=2)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
