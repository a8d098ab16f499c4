"""Pipeline-level figures of a default run, read from MLflow, and the cost of a run with nothing to do.

From the pipeline's MLflow parent run (`alignflow run` opens it; each stage process opens a child run):
- total wall time = the parent run's end − start; peak RSS = the largest `sys/peak_rss_mb` of the stage runs (the
  largest single stage process; the Prefect/DVC driver processes stay far below it);
- per stage: the stage process as Prefect saw it (`time/<stage>_s`: `dvc repro --single-item`, start-up and
  imports included), the stage body (the child run's duration) and its model compute, as the stage reports it:
  COMPUTE below (the trainers' train_runtime, the sampling seconds). evaluate reports no split, so its whole body
  counts as compute (it is sampling, scoring, probes and the judge, plus three model loads and the report), which
  makes the overhead below a lower bound. Conversely align's train/runtime_s (the Trainer's train_runtime) leaves
  out the DPO reference log-probs, which TRL precomputes in the trainer's constructor: that model compute lands in
  "inside the bodies" (bench/run.py's dpo workload times it with the training);
- overhead = wall − Σ compute, split into: outside the stage processes (Prefect, the parent run, `dvc status`
  checks), stage start-up (process, imports, DVC; = stage process − body) and inside the bodies (model loading,
  data, MLflow logging, saving; = body − compute).
With --noop: `dvc repro` and `alignflow run` timed when every stage is up to date (refused otherwise: they would
run stages). `alignflow run` opens a parent run of its own in the MLflow store, with every stage skipped.

    .venv/bin/python -m bench.pipeline [--run-id ID] [--noop] [--reps 3] [--out bench/results/pipeline-DATE.json]

Run it in the project root after the default run (`bash scripts/run_default.sh`), with nothing else running there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STAGE_TAG = "alignflow.stage"
# Where a stage reports its model compute (seconds); the first metric present counts.
COMPUTE = {
    "critique_revise": ["cai/gen_seconds"],
    "sft": ["train/runtime"],
    "collect_preferences": ["collect/gen_seconds"],
    "train_reward": ["train/runtime"],
    "align": ["train/runtime_s", "train/runtime"],
}
BODY_IS_COMPUTE = {"evaluate"}


def find_run(client, experiment: str, run_id: str | None):
    """The given parent run, or the latest finished one in which every stage ran (a default run from scratch)."""
    if run_id:
        return client.get_run(run_id)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no MLflow experiment {experiment!r} in this store: run the pipeline first")
    runs = client.search_runs([exp.experiment_id], f"tags.`{STAGE_TAG}` = 'pipeline' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=200)
    for run in runs:
        stages = {k: v for k, v in run.data.tags.items() if k.startswith("stage.")}
        if stages and all(v == "ran" for v in stages.values()):
            return run
    raise SystemExit("no finished pipeline run in which every stage ran; pass --run-id (candidates: "
                     + ", ".join(r.info.run_id for r in runs[:5]) + ")")


def stage_figures(client, parent) -> dict[str, Any]:
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                  order_by=["attributes.start_time ASC"], max_results=100)
    wall = (parent.info.end_time - parent.info.start_time) / 1000
    stages: dict[str, dict[str, Any]] = {}
    for child in children:
        name = child.data.tags.get(STAGE_TAG, child.info.run_name)
        body = (child.info.end_time - child.info.start_time) / 1000 if child.info.end_time else None
        metrics = child.data.metrics
        compute_key = next((k for k in COMPUTE.get(name, []) if k in metrics), None)
        compute = body if name in BODY_IS_COMPUTE else metrics.get(compute_key, 0.0) if compute_key else 0.0
        stages[name] = {"process_s": parent.data.metrics.get(f"time/{name}_s"), "body_s": body, "compute_s": compute,
                        "compute_from": "stage body" if name in BODY_IS_COMPUTE else compute_key,
                        "peak_rss_mb": metrics.get("sys/peak_rss_mb")}
    process = sum(s["process_s"] or 0.0 for s in stages.values())
    body = sum(s["body_s"] or 0.0 for s in stages.values())
    compute = sum(s["compute_s"] for s in stages.values())
    rss = [s["peak_rss_mb"] for s in stages.values() if s["peak_rss_mb"] is not None]
    return {
        "run_id": parent.info.run_id,
        "wall_s": wall,
        "peak_rss_mb": max(rss) if rss else None,
        "compute_s": compute,
        "overhead_s": wall - compute,
        "overhead": {"outside_stages_s": wall - process, "stage_startup_s": process - body,
                     "inside_bodies_s": body - compute},
        "stages": stages,
    }


def _timed(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, proc.returncode


def noop_timings(reps: int) -> dict[str, Any]:
    """`dvc repro` and `alignflow run` with nothing to do; refuses when DVC reports a stale stage."""
    bin_dir = Path(sys.executable).parent
    dvc, alignflow = str(bin_dir / "dvc"), str(bin_dir / "alignflow")
    status = subprocess.run([dvc, "status", "--json"], capture_output=True, text=True)
    if status.returncode != 0 or json.loads(status.stdout or "{}"):
        raise SystemExit(f"dvc status reports changes ({status.stdout.strip()[:500]}): a 'no-op' run would run "
                         "stages. Run the pipeline first.")
    out = {}
    for name, cmd in (("dvc_repro", [dvc, "repro"]), ("alignflow_run", [alignflow, "run"])):
        runs = [_timed(cmd) for _ in range(reps)]
        out[name] = {"median_s": statistics.median(s for s, _ in runs), "runs_s": [s for s, _ in runs],
                     "returncodes": [rc for _, rc in runs]}
    return out


def markdown(doc: dict[str, Any]) -> str:
    f = doc["default_run"]
    lines = [
        f"Default run {f['run_id']}: wall {f['wall_s']:.0f} s, peak RSS {f['peak_rss_mb']:.0f} MB (largest stage), "
        f"model compute {f['compute_s']:.0f} s, overhead {f['overhead_s']:.0f} s "
        f"(outside stages {f['overhead']['outside_stages_s']:.0f} s, stage start-up {f['overhead']['stage_startup_s']:.0f} s, "
        f"inside stage bodies {f['overhead']['inside_bodies_s']:.0f} s).",
        "",
        "| stage | process s | body s | compute s (from) | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for name, s in f["stages"].items():
        lines.append(f"| {name} | {s['process_s'] or 0:.1f} | {s['body_s'] or 0:.1f} | {s['compute_s']:.1f} "
                     f"({s['compute_from'] or '—'}) | {s['peak_rss_mb'] or 0:.0f} |")
    for name, t in doc.get("noop", {}).items():
        lines.append(f"\nNo-op `{name.replace('_', ' ')}`: median {t['median_s']:.1f} s over {len(t['runs_s'])} runs "
                     f"(exit codes {t['returncodes']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from mlflow import MlflowClient

    from tasks.common.params import load_params
    from tasks.common.tracking import tracking_uri

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-id", default=None, help="the pipeline parent run (default: the latest full run)")
    ap.add_argument("--noop", action="store_true", help="also time no-op `dvc repro` and `alignflow run`")
    ap.add_argument("--reps", type=int, default=3, help="no-op repetitions")
    ap.add_argument("--out", type=Path, default=Path("bench/results") / f"pipeline-{dt.date.today().isoformat()}.json")
    args = ap.parse_args(argv)
    params = load_params()
    client = MlflowClient(tracking_uri())
    # the project's own sqlite store is recorded relative to the project, so a result file names no machine path
    uri = tracking_uri().replace(f"sqlite:///{Path.cwd().resolve()}/", "sqlite:///")
    doc: dict[str, Any] = {"date": dt.datetime.now().isoformat(timespec="seconds"), "tracking_uri": uri,
                           "default_run": stage_figures(client, find_run(client, params.pipeline.experiment, args.run_id))}
    if args.noop:
        doc["noop"] = noop_timings(args.reps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(markdown(doc))
    print(f"bench.pipeline: results in {args.out}")


if __name__ == "__main__":
    main()
