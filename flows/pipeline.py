"""Prefect flows: one per stage and the pipeline flow that drives them in DVC's order.

Orchestration glue written here by hand (no library composes Prefect, DVC and MLflow this way):
- DVC owns what is stale, and which stages exist. Each stage task runs `dvc repro --single-item <stage>` (through
  flows/dvc_repro.py, which keeps the stage's exit status), so a scheduled run and a hand `dvc repro` leave the same
  dvc.lock, and an up-to-date stage is skipped. Prefect's own result caching stays off: it cannot see file
  contents. The stage list is dvc.yaml's (stage_order): a stage added there is a flow here, nothing to register.
- Prefect owns execution: retries (not for user errors such as bad data: exit status 2), a `gpu` tag under a
  concurrency limit (whose slots a killed run cannot hold forever: flows/gpu_slots.py),
  schedules (`alignflow serve`), and a markdown artifact per run that links the MLflow run.
- MLflow owns results: the flow opens the parent run; each stage process opens its child run
  (tasks/common/tracking.py) under ALIGNFLOW_PARENT_RUN_ID.

    alignflow run                # the whole pipeline (what `dvc repro` would run, plus tracking)
    alignflow run --stage sft    # one stage flow
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.gpu_slots import ensure_gpu_limit, report_if_waiting, repossessor
from tasks.common.params import load_params
from tasks.common.tracking import PARENT_ENV, tracking_uri

# Every stage takes the `gpu` concurrency slot except these, which load no model. The rule is "GPU unless listed",
# not a list of GPU stages, so that the list to keep in sync with dvc.yaml is the short one and its failure mode is
# harmless: a new CPU-only stage that is not added here only waits for a slot it does not need, whereas a new model
# stage missing from a GPU list would run beside another one and run out of GPU memory.
CPU_STAGES = frozenset({"validate"})
USER_ERROR_EXIT = 2  # stage_main's exit status for bad data / bad params: retrying cannot help


def uses_gpu(stage: str) -> bool:
    return stage not in CPU_STAGES


class StageFailed(RuntimeError):
    def __init__(self, stage: str, returncode: int, tail: str):
        self.stage, self.returncode = stage, returncode
        super().__init__(f"stage '{stage}' failed (exit {returncode}); last output:\n{tail}")


def stage_order(root: str | Path = ".") -> list[str]:
    """The stages of dvc.yaml in DVC's execution (topological) order."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = [s for s in repo.index.stages if s.path_in_repo.endswith("dvc.yaml")]
        position = {s: i for i, s in enumerate(stages)}
        # dvc's graph edges point from a stage to its dependencies; reverse for execution order, and break ties
        # by the order of dvc.yaml so the run order is stable from run to run.
        graph = repo.index.graph.reverse().subgraph(stages)
        return [s.name for s in nx.lexicographical_topological_sort(graph, key=position.__getitem__)]


def stage_is_stale(stage: str, root: str | Path = ".") -> bool:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return bool(repo.status(targets=[stage], with_deps=False))


def stale_stages(root: str | Path = ".") -> list[str]:
    """Every stage `dvc status` reports as changed, from one status call (the per-stage check costs a DVC index
    load each)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return sorted(name.rsplit(":", 1)[-1] for name in repo.status())


def _no_retry_on_user_error(task, task_run, state) -> bool:
    try:
        state.result()
    except StageFailed as exc:
        return exc.returncode != USER_ERROR_EXIT
    except Exception:
        return True
    return False


@task(name="dvc-repro-stage", retry_condition_fn=_no_retry_on_user_error, retry_delay_seconds=5)
def repro_stage(stage: str, parent_run_id: str | None) -> dict[str, Any]:
    """Run one stage through DVC in its own process (frees model memory between stages)."""
    logger = get_run_logger()
    if not stage_is_stale(stage):
        logger.info("stage %s is up to date: skipped", stage)
        return {"stage": stage, "status": "skipped", "seconds": 0.0}
    # dvc.yaml's `python -m tasks.<stage>` must find this environment's python, even when `alignflow` was
    # started by its full path without activating the venv.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env["MLFLOW_TRACKING_URI"] = tracking_uri()  # the store that holds the parent run
    if parent_run_id:
        env[PARENT_ENV] = parent_run_id
    logger.info("running stage %s: dvc repro --single-item %s", stage, stage)
    start = time.perf_counter()
    tail: deque[str] = deque(maxlen=40)
    # not the `dvc` command: it exits 255 whatever the stage exited with, and the status is what tells a user error
    cmd = [sys.executable, "-m", "flows.dvc_repro", stage]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            tail.append(line.rstrip())
        proc.wait()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise StageFailed(stage, proc.returncode, "\n".join(tail))
    logger.info("stage %s finished in %.1f s", stage, seconds)
    return {"stage": stage, "status": "ran", "seconds": seconds}


@functools.cache
def stage_flow(stage: str):
    """The Prefect flow of one stage, built on first use for any name dvc.yaml has (pipeline_flow checks the name
    against stage_order first), so a stage added to dvc.yaml needs no change here."""

    @flow(name=stage, log_prints=True)
    def run_one(parent_run_id: str | None = None) -> dict[str, Any]:
        params = load_params()
        tags = ["gpu"] if uses_gpu(stage) else []
        retries = params.pipeline.stage_retries
        if tags:
            report_if_waiting(get_run_logger())
        return repro_stage.with_options(tags=tags, retries=retries)(stage, parent_run_id)

    run_one.__doc__ = f"Prefect flow for the `{stage}` stage (runs it through `dvc repro --single-item`)."
    return run_one


@flow(name="alignflow-pipeline", log_prints=True)
def pipeline_flow(stages: list[str] | None = None, publish: bool = False) -> dict[str, Any]:
    """Run the pipeline (or the named stages) in DVC order under one MLflow parent run.

    With a default DVC remote configured, outputs are pulled first and each stage's outputs pushed once it ran;
    `publish` (what `alignflow deploy` sets) ends the run by pushing its dvc.lock and metrics to the git branch
    alignflow/runs/<flow run name> (flows/team.py): how a worker on another host hands its results back."""
    from flows import team, tracking_glue

    params = load_params()
    logger = get_run_logger()
    ensure_gpu_limit(params.pipeline.gpu_concurrency, logger)
    order = stage_order()
    unknown = set(stages or []) - set(order)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; dvc.yaml has {order}")
    selected = [s for s in order if not stages or s in stages]
    remote = team.default_remote()
    team.pull(remote, logger)
    with repossessor(logger), tracking_glue.parent_run(params) as parent:
        outcomes = []
        for stage in selected:
            outcomes.append(stage_flow(stage)(parent_run_id=parent.info.run_id))
            if outcomes[-1]["status"] == "ran":
                team.push(remote, stage, logger)
        summary = tracking_glue.finish_parent(params, parent.info.run_id, outcomes)
        if publish:
            import mlflow
            from prefect.runtime import flow_run

            branch = team.publish(flow_run.name or parent.info.run_id, logger,
                                  f"alignflow run {flow_run.name}: MLflow run {parent.info.run_id}")
            mlflow.set_tag("alignflow.results_branch", branch)
            summary["results_branch"] = branch
    create_markdown_artifact(markdown=summary["markdown"], key="alignflow-run", description="alignflow pipeline run")
    eval_summary = Path(params.paths.reports) / "eval" / "summary.md"
    if eval_summary.exists():
        create_markdown_artifact(markdown=eval_summary.read_text(encoding="utf-8"), key="alignflow-eval",
                                 description="evaluation: base | SFT | policy, and the promotion gate")
    return summary


def scheduled_deployment(cron: str):
    """The cron deployment `alignflow serve` runs: the whole pipeline, hyper-parameters from params.yaml only."""
    return pipeline_flow.to_deployment(
        name="alignflow-scheduled", cron=cron, description="alignflow pipeline on a schedule (pipeline.cron)"
    )
