"""Throughput of alignflow's stages against TRL / transformers used directly, on the same model, data slice and
hyper-parameters; achieved FLOP/s against this machine's measured matmul peak.

Workloads (bench/workloads/, one file each, alignflow side and baseline side): sft, reward, dpo, ppo (rollouts and
updates), generate (collect_preferences' sampling), evaluate (samples, KL and RM scores of base/SFT/policy).
Each run is its own process on its own copy of the bench project (bench/project.py); the two sides alternate
A B, B A, A B, ... over the repetitions so that drift in the machine's speed falls on both. Reported: medians, the
alignflow/baseline tokens/s ratio, peak RSS per run, FLOP/s as a fraction of the fp32 and bf16 peaks (bench/peak.py;
FLOPs counted as bench/flops.py states).

    .venv/bin/python -m bench.run                                   # everything, models/base, 3 repetitions
    .venv/bin/python -m bench.run --workloads sft,dpo --reps 5 --out bench/results/sft-dpo.json
    .venv/bin/python -m bench.run --quick                           # the tiny test model, a few rows: seconds

`--baseline-exec product` gives the baselines the product's execution choices (activation checkpointing off,
dataloader workers 0, frozen weights stored in bf16 under bf16 autocast, DPO reference log-probs precomputed)
instead of TRL's defaults, to separate those choices from the rest of the difference. Results go to --out (default bench/results/<date>[-quick].json); the table to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import report
from bench.peak import best_of

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = ("sft", "reward", "dpo", "ppo", "generate", "evaluate")
SIDES = ("alignflow", "baseline")


def child_env() -> dict[str, str]:
    """The stages' own defaults for a run outside the pipeline: offline, quiet, a fresh MLflow store per run."""
    env = dict(os.environ)
    for var in ("MLFLOW_TRACKING_URI", "ALIGNFLOW_PARENT_RUN_ID"):
        env.pop(var, None)
    env.update({"HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_DISABLE_TELEMETRY": "1", "ALIGNFLOW_QUIET": env.get("ALIGNFLOW_QUIET", "1"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))})
    return env


def python_module(module: str, args: list[str], log: Path) -> None:
    """Run `python -m module args` from the repository root, output to `log`; a failure raises with its tail."""
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=child_env(), stdout=out,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"python -m {module} exited {proc.returncode} (log {log}):\n{tail}")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    versions = {}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "mlflow"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_kb / 2**20, 1), "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "versions": versions}


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                               timeout=30).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of {','.join(WORKLOADS)}")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny test model and a handful of rows (tests)")
    ap.add_argument("--model", type=Path, default=None, help="base model dir (default models/base; --quick: tiny)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: a new temporary dir)")
    ap.add_argument("--baseline-exec", choices=["trl", "product"], default="trl")
    args = ap.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workloads {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    today = dt.date.today().isoformat()
    out = args.out or REPO / "bench" / "results" / f"{today}{'-quick' if args.quick else ''}.json"
    work = (args.work or Path(tempfile.mkdtemp(prefix="alignflow-bench-"))).resolve()  # children run in REPO
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)

    setup_args = ["--out", str(work), "--workloads", ",".join(workloads)]
    setup_args += (["--quick"] if args.quick else []) + (["--model", str(args.model.resolve())] if args.model else [])
    print(f"bench: setting up in {work} (matmul peak, data slice, models)", flush=True)
    python_module("bench.project", setup_args, logs / "setup.log")
    setup = json.loads((work / "setup.json").read_text())

    results: dict[str, dict[str, list[dict]]] = {w: {s: [] for s in SIDES} for w in workloads}
    errors = []
    for workload in workloads:
        for rep in range(args.reps):
            for side in SIDES if rep % 2 == 0 else SIDES[::-1]:
                name = f"{workload}-{side}-{rep}"
                print(f"bench: {name}", flush=True)
                result_file = work / f"{name}.json"
                try:
                    python_module("bench.worker", ["--setup", str(work / "setup.json"), "--workload", workload,
                                                   "--side", side, "--baseline-exec", args.baseline_exec,
                                                   "--out", str(result_file)], logs / f"{name}.log")
                    results[workload][side].append({**json.loads(result_file.read_text()), "rep": rep})
                except RuntimeError as exc:
                    errors.append({"workload": workload, "side": side, "rep": rep, "error": str(exc)})
                    print(f"bench: {name} FAILED (log {logs / (name + '.log')})", flush=True)

    peak = setup["peak"]
    if not args.quick:  # quick runs only exercise the harness: one peak measurement is enough
        print("bench: matmul peak again", flush=True)
        python_module("bench.peak", ["--out", str(work / "peak-after.json")], logs / "peak-after.log")
        peak = best_of(peak, json.loads((work / "peak-after.json").read_text()))
    doc = {
        "command": "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "git": git_sha(),
        "machine": machine(),
        "reps": args.reps,
        "baseline_exec": args.baseline_exec,
        "peak": peak,
        "setup": {k: setup[k] for k in ("model", "quick", "sizes", "chain", "data", "overrides")},
        "flop_counting": "bench/flops.py: model FLOPs of real tokens (2·N_body per token + causal attention + "
                         "LM head at scored positions only); LoRA training = forward + input gradients ≈ 2× forward; "
                         "DPO adds one reference forward per sequence",
        "rows": report.summarise(results, peak),
        "runs": results,
        "errors": errors,
        "work_dir": work.name,  # only the name: a result file cites no machine path
    }
    report.write(out, doc)
    print(report.markdown(doc))
    print(f"bench: results in {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
