"""MLflow glue: one child run per stage under the pipeline's parent run.

The Prefect pipeline flow opens the parent run and passes its id to each stage process through
ALIGNFLOW_PARENT_RUN_ID (stages run in their own process, via `dvc repro`), so a stage run by hand or by
`dvc repro` is a top-level run and the same stage under `alignflow run` is a child. TRL's MLflowCallback
logs into whichever run is active, i.e. the stage's run.

Embedded default: `sqlite:///mlflow.db` with artifacts in ./mlartifacts; MLFLOW_TRACKING_URI points elsewhere.

A sweep (`alignflow sweep`, flows/sweep.py) runs each combination as a queued DVC experiment, whose stages the queue
worker runs in a temporary copy of the repository with DVC_EXP_NAME set, and the sweep's parent run id in
ALIGNFLOW_SWEEP_RUN_ID: there each stage run is the child of its experiment's run (found by name, created by the
experiment's first stage), which is the child of the sweep's run — one nested run per experiment.

Under a multi-process launch only the main process (rank 0) opens the run and logs; on the other ranks
`stage_run` yields None and the logging helpers here do nothing (a bare `mlflow.log_*` there would start a stray
run of its own), and TRL's MLflowCallback already logs from rank 0 only.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.common.distributed import is_main_process

PARENT_ENV = "ALIGNFLOW_PARENT_RUN_ID"
SWEEP_ENV = "ALIGNFLOW_SWEEP_RUN_ID"
SWEEP_TAG, EXPERIMENT_TAG = "alignflow.sweep", "alignflow.dvc_exp"
DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"


def configure(experiment: str) -> str:
    """Point MLflow at the tracking store and experiment; returns the experiment id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        location = Path(ARTIFACT_DIR).resolve().as_uri() if tracking_uri().startswith("sqlite:") else None
        try:
            return mlflow.create_experiment(experiment, artifact_location=location)
        except Exception:  # created meanwhile by a concurrent stage
            exp = mlflow.get_experiment_by_name(experiment)
            if exp is None:
                raise
    return exp.experiment_id


# The user's setting, read once: mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI into os.environ itself, so
# reading the variable later would return whatever store this process configured first.
_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI as the user set it, else the project's sqlite store as an absolute path (a relative
    sqlite URI would be resolved against whatever directory the process happened to open it from first)."""
    return _USER_TRACKING_URI or f"sqlite:///{Path(DEFAULT_DB).resolve()}"


def git_sha() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


@contextlib.contextmanager
def stage_run(stage: str, params: Any, section: dict[str, Any] | None = None) -> Iterator[Any]:
    """Open the stage's MLflow run (child of the pipeline run when there is one) and log its params section.
    Yields None on the non-main ranks of a multi-process launch."""
    if not is_main_process():
        yield None
        return
    import mlflow

    experiment_id = configure(params.pipeline.experiment)
    parent = os.environ.get(PARENT_ENV) or None
    sweep, exp_name = os.environ.get(SWEEP_ENV), os.environ.get("DVC_EXP_NAME")
    if sweep and exp_name:
        parent = sweep_experiment_run(experiment_id, sweep, exp_name)
    tags = {"alignflow.stage": stage, "git_sha": git_sha(), "seed": str(params.seed)}
    if exp_name:
        tags[EXPERIMENT_TAG] = exp_name
    status = "FAILED"
    try:
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=stage, parent_run_id=parent, tags=tags
        ) as run:
            if section:
                flat = {k: str(v)[:6000] for k, v in flatten(section, stage).items()}
                mlflow.log_params(flat)
            mlflow.log_param("seed", params.seed)
            yield run
            mlflow.log_metric("sys/peak_rss_mb", peak_rss_mb())
        status = "FINISHED"
    finally:
        if sweep and exp_name:  # the experiment's run ends with each stage (the next one reopens it)
            mlflow.MlflowClient().set_terminated(parent, status)


def sweep_experiment_run(experiment_id: str, sweep_run_id: str, exp_name: str) -> str:
    """The run of DVC experiment `exp_name` under the sweep's run: found by tag, else created. One experiment's
    stages run one after another in one queue worker, so two stages never create it at once."""
    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = mlflow.MlflowClient()
    found = client.search_runs(
        [experiment_id], f"tags.`{EXPERIMENT_TAG}` = '{exp_name}' and tags.`{MLFLOW_PARENT_RUN_ID}` = '{sweep_run_id}'")
    if found:
        return found[0].info.run_id
    sweep_name = client.get_run(sweep_run_id).data.tags.get(SWEEP_TAG, "")
    return client.create_run(experiment_id, run_name=exp_name, tags={
        MLFLOW_PARENT_RUN_ID: sweep_run_id, EXPERIMENT_TAG: exp_name, SWEEP_TAG: sweep_name,
        "alignflow.stage": "experiment"}).info.run_id


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (each stage is its own process under dvc repro)."""
    import resource
    import sys

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes, Linux KiB


def log_dataset(path: str | Path, rows: list[dict[str, Any]], context: str, name: str | None = None) -> None:
    """Record a dataset input (with MLflow's content digest) on the active run."""
    if not is_main_process():
        return
    import mlflow
    import pandas as pd

    df = pd.DataFrame([{k: _cell(v) for k, v in r.items()} for r in rows])
    ds = mlflow.data.from_pandas(df, source=str(path), name=name or Path(path).stem)
    mlflow.log_input(ds, context=context)


def _cell(v: Any) -> Any:
    import json

    return v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v, ensure_ascii=False)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log only finite numbers (MLflow rejects NaN in some stores and they break comparisons)."""
    if not is_main_process():
        return
    import math

    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_artifacts(local_dir: str | Path, artifact_path: str | None = None) -> None:
    """`mlflow.log_artifacts` from the main process only."""
    if is_main_process():
        import mlflow

        mlflow.log_artifacts(str(local_dir), artifact_path=artifact_path)


def log_dict(obj: dict[str, Any], artifact_file: str) -> None:
    """`mlflow.log_dict` from the main process only."""
    if is_main_process():
        import mlflow

        mlflow.log_dict(obj, artifact_file)
