"""What a run pays on a team's servers that it does not pay on the embedded default: the services' start-up, a DVC
push/pull of a stage's outputs to the S3 remote, and MLflow logging over HTTP instead of into a local SQLite file.

Everything runs on loopback (deploy/services.py: PostgreSQL, moto's S3 server, an MLflow server, a Prefect server),
so the figures are the protocol and software costs, not a network's; a real S3 bucket adds the link's bandwidth.
The default run's outputs total ~3 GB (dvc.lock: prepare_judge 2.4 GB, prepare_model 0.5 GB, the rest < 0.1 GB),
which the push rate here turns into the default run's extra wall time.

    .venv/bin/python -m bench.team_overhead [--mb 512] [--metrics 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from deploy.services import ServiceSet

BIN = Path(sys.executable).parent


def _sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def dvc_transfer(services: ServiceSet, work: Path, mb: int) -> dict[str, float]:
    env = dict(os.environ, **services.client_env(), GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@invalid")
    repo = work / "repo"
    repo.mkdir()
    dvc = str(BIN / "dvc")
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "remote", "add", "-d", "team", "s3://alignflow/bench"]):
        _sh(cmd, repo, env)
    with open(repo / "weights.bin", "wb") as f:  # incompressible, like model weights
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    _sh([dvc, "add", "-q", "weights.bin"], repo, env)
    push = _sh([dvc, "push", "-q", "weights.bin.dvc"], repo, env)
    noop = _sh([dvc, "push", "-q", "weights.bin.dvc"], repo, env)  # what a stage that pushed before pays
    (repo / "weights.bin").unlink()
    cache = repo / ".dvc" / "cache"
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    pull = _sh([dvc, "pull", "-q", "weights.bin.dvc"], repo, env)
    return {"mb": mb, "push_s": push, "push_mb_per_s": mb / push, "push_noop_s": noop, "pull_s": pull,
            "pull_mb_per_s": mb / pull}


def mlflow_logging(uri: str, n_metrics: int, work: Path) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(f"bench-{time.time_ns()}")
    artifact = work / "artifact.bin"
    artifact.write_bytes(os.urandom(1 << 20))
    t0 = time.perf_counter()
    run = client.create_run(exp)
    for i in range(n_metrics):
        client.log_metric(run.info.run_id, "loss", 1.0 / (i + 1), step=i)
    metrics_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.log_artifact(run.info.run_id, str(artifact))
    artifact_s = time.perf_counter() - t0
    client.set_terminated(run.info.run_id)
    return {"metrics": n_metrics, "per_metric_ms": 1000 * metrics_s / n_metrics, "artifact_1mb_s": artifact_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=512, help="size of the pushed output (default: the base model's ~0.5 GB)")
    ap.add_argument("--metrics", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="alignflow-team-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        services = ServiceSet(work / "state").start()
        start_s = time.perf_counter() - t0
        try:
            result = {
                "date": date.today().isoformat(),
                "services_start_s": round(start_s, 2), "services_start_each_s": services.startup_s,
                "dvc": dvc_transfer(services, work, args.mb),
                "mlflow_server": mlflow_logging(services.mlflow_uri, args.metrics, work),
                "mlflow_sqlite": mlflow_logging(f"sqlite:///{work / 'mlflow.db'}", args.metrics, work),
            }
        finally:
            services.destroy()
    dvc = result["dvc"]
    default_gb = 3.0
    result["default_run_extra_s"] = round(default_gb * 1024 / dvc["push_mb_per_s"], 1)
    out = Path(__file__).parent / "results" / f"team_{result['date']}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    server, sqlite = result["mlflow_server"], result["mlflow_sqlite"]
    print(f"| services start (PostgreSQL, S3, MLflow, Prefect) | {start_s:.1f} s | "
          + ", ".join(f"{k} {v:.1f} s" for k, v in services.startup_s.items()) + " |")
    print(f"| dvc push {dvc['mb']} MiB to S3 (moto, loopback) | {dvc['push_s']:.1f} s | {dvc['push_mb_per_s']:.0f} MiB/s; "
          f"again with nothing new {dvc['push_noop_s']:.1f} s |")
    print(f"| dvc pull {dvc['mb']} MiB | {dvc['pull_s']:.1f} s | {dvc['pull_mb_per_s']:.0f} MiB/s |")
    print(f"| MLflow log_metric, server vs sqlite | {server['per_metric_ms']:.1f} vs {sqlite['per_metric_ms']:.1f} ms | "
          f"1 MiB artifact {server['artifact_1mb_s']:.2f} vs {sqlite['artifact_1mb_s']:.2f} s |")
    print(f"| the default run's ~3 GB of outputs pushed | ~{result['default_run_extra_s']:.0f} s | "
          f"{100 * result['default_run_extra_s'] / 1866:.1f} % of the 1866 s default run |")
    print(f"written: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out.name}")


if __name__ == "__main__":
    main()
