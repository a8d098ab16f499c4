"""The team path for real, on loopback: PostgreSQL, an S3 server (moto), an MLflow tracking server on both and a
Prefect server on PostgreSQL, started by deploy/services.py (what a user without Docker runs); the tiny pipeline
registered with `alignflow deploy` from a clone whose `origin` is a bare git repository, and run by a process
worker that clones the deployed commit into its own directory — nothing shared with the clone that deployed it
but the servers and the git remote.

Then: the flow run's state in the Prefect server; parent/child runs, metrics and the registered model in the
MLflow server; MLflow's artifacts and DVC's objects in the bucket; a second clone that checks out the run's
results branch and `dvc pull`s sees every stage up to date, and `alignflow report` re-renders the run there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.services import ServiceSet
from tests.test_pipeline_e2e import make_repo

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
POOL, DEPLOYMENT = "team-test", "tiny"


def _env(services: ServiceSet, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "ALIGNFLOW_PARENT"))}
    env.update(services.client_env(), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               GIT_AUTHOR_NAME="alignflow tests", GIT_AUTHOR_EMAIL="tests@alignflow.invalid",
               GIT_COMMITTER_NAME="alignflow tests", GIT_COMMITTER_EMAIL="tests@alignflow.invalid", **extra)
    return env


def _sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    from deploy.services import ServiceError, _pg_bin

    try:
        _pg_bin("initdb")
    except ServiceError as exc:  # .ci/run installs PostgreSQL and sets ALIGNFLOW_REQUIRE_POSTGRES: never skipped there
        if os.environ.get("ALIGNFLOW_REQUIRE_POSTGRES"):
            raise
        pytest.skip(str(exc))
    s = ServiceSet(tmp_path_factory.mktemp("team") / "state").start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def deployed(services, tmp_path_factory, tiny_model_dir):
    """A bare `origin`, a developer's clone with the tiny project and the team's DVC remote, pushed and deployed."""
    root = tmp_path_factory.mktemp("team-repos")
    env = _env(services)
    origin = root / "origin.git"
    _sh(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root, env)
    dev = make_repo(root / "dev", tiny_model_dir)
    for cmd in (["dvc", "remote", "add", "-d", "team", "s3://alignflow/dvc"], ["git", "add", ".dvc/config"],
                ["git", "commit", "-qm", "the team's DVC remote"], ["git", "branch", "-M", "main"],
                ["git", "remote", "add", "origin", origin.as_uri()], ["git", "push", "-q", "-u", "origin", "main"]):
        _sh([str(BIN / cmd[0]) if cmd[0] == "dvc" else cmd[0], *cmd[1:]], dev, env)
    out = _sh([str(BIN / "python"), "-m", "alignflow", "deploy", "--pool", POOL, "--name", DEPLOYMENT,
               "--no-schedule", "--work-dir", str(root / "worker")], dev, env)
    (root / "worker").mkdir(exist_ok=True)
    return root, origin, dev, out


@pytest.fixture(scope="module")
def worker(services, deployed):
    root = deployed[0]
    log = open(root / "worker.log", "ab")
    proc = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
                            cwd=root / "worker", env=_env(services), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield proc, root / "worker.log"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _run_and_wait(services: ServiceSet, timeout: float = 1500):
    """Start a run of the deployment through the server's API and wait for a final state."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: services.prefect_api}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"alignflow-pipeline/{DEPLOYMENT}")
        run = client.create_flow_run_from_deployment(deployment.id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final():
                return deployment, run
            time.sleep(3)
    raise AssertionError(f"flow run {run.name} not final after {timeout} s (state {run.state})")


@pytest.fixture(scope="module")
def team_run(services, deployed, worker):
    deployment, run = _run_and_wait(services)
    log = worker[1].read_text(errors="replace")
    assert run.state.is_completed(), f"run {run.name} ended {run.state.type}: {run.state.message}\n{log[-6000:]}"
    return deployment, run


def test_deploy_registers_the_commit_on_the_pool(deployed):
    _, _, dev, out = deployed
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=dev, capture_output=True, text=True).stdout.strip()
    assert f"alignflow-pipeline/{DEPLOYMENT}" in out and head in out and POOL in out


def test_deploy_refuses_an_unpushed_commit(services, deployed):
    _, _, dev, _ = deployed
    env = _env(services)
    _sh(["git", "commit", "-q", "--allow-empty", "-m", "local only"], dev, env)
    try:
        r = subprocess.run([str(BIN / "python"), "-m", "alignflow", "deploy", "--pool", POOL, "--name", "x",
                            "--no-schedule"], cwd=dev, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and "push it first" in r.stderr, r.stderr
    finally:
        _sh(["git", "reset", "-q", "--hard", "HEAD~1"], dev, env)


def test_the_worker_ran_the_deployment_to_completion(team_run):
    deployment, run = team_run
    assert run.deployment_id == deployment.id
    assert run.parameters == {"publish": True}


def test_mlflow_server_has_the_runs_metrics_and_model(services, team_run):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=services.mlflow_uri)
    exp = client.get_experiment_by_name("alignflow")
    parents = client.search_runs([exp.experiment_id], "tags.`alignflow.stage` = 'pipeline'")
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    stages = {c.data.tags.get("alignflow.stage") for c in children}
    assert {"sft", "train_reward", "align", "evaluate"} <= stages
    evaluate = next(c for c in children if c.data.tags.get("alignflow.stage") == "evaluate")
    assert "policy/gold_reward" in evaluate.data.metrics
    versions = client.search_model_versions("name = 'alignflow-policy'")
    assert versions and versions[0].run_id == parent.info.run_id
    # artifacts went through the server into the bucket: the client never had S3 credentials for them
    assert any(a.path.startswith("eval") for a in client.list_artifacts(evaluate.info.run_id))


def test_bucket_holds_mlflow_artifacts_and_dvc_objects(services, team_run):
    import boto3

    s3 = boto3.client("s3", endpoint_url=services.s3_endpoint, aws_access_key_id=services.s3_key,
                      aws_secret_access_key=services.s3_secret, region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="alignflow")
            for o in page.get("Contents", [])]
    assert any(k.startswith("mlflow/") for k in keys)
    assert sum(k.startswith("dvc/files/md5/") for k in keys) > 10


def test_a_second_clone_pulls_and_is_up_to_date(services, deployed, team_run, tmp_path):
    _, run = team_run
    _, origin, _, _ = deployed
    env = _env(services)
    clone = tmp_path / "clone"
    _sh(["git", "clone", "-q", "-b", f"alignflow/runs/{run.name}", origin.as_uri(), str(clone)], tmp_path, env)
    assert (clone / "dvc.lock").exists() and (clone / "metrics" / "eval.json").exists()
    _sh([str(BIN / "dvc"), "pull"], clone, env)
    status = _sh([str(BIN / "dvc"), "status"], clone, env)
    assert "Data and pipelines are up to date" in status, status
    assert (clone / "models" / "policy" / "alignflow_model.json").exists()
    # the run's report re-rendered from the tracking server, on a machine that never ran it
    from mlflow import MlflowClient

    parent = MlflowClient(tracking_uri=services.mlflow_uri).search_runs(
        [MlflowClient(tracking_uri=services.mlflow_uri).get_experiment_by_name("alignflow").experiment_id],
        "tags.`alignflow.stage` = 'pipeline'")[0]
    out = _sh([str(BIN / "python"), "-m", "alignflow", "report", parent.info.run_id], clone, env)
    assert "report" in out.lower()
