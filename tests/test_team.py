"""The team path for real, on loopback: PostgreSQL, an S3 server (moto), an MLflow tracking server on both and a
Prefect server on PostgreSQL, started by deploy/services.py (what a user without Docker runs); the tiny pipeline
registered with `alignflow deploy` from a clone whose `origin` is a bare git repository, and run by a process
worker that clones the deployed commit into its own directory — nothing shared with the clone that deployed it
but the servers and the git remote.

Then: the flow run's state in the Prefect server; parent/child runs, metrics and the registered model in the
MLflow server; MLflow's artifacts and DVC's objects in the bucket; a second clone that checks out the run's
results branch and `dvc pull`s sees every stage up to date, and `alignflow report` re-renders the run there.

Fault: the same pipeline deployed again (its own DVC remote prefix, its own pool and worker directory), the worker
and every process it started SIGKILLed while SFT trains (a lost host), a new worker started in the same directory, and the
pipeline run again: SFT resumes from the killed run's checkpoint, the run ends with the uninterrupted run's
metrics, and nothing of the killed stage reached the remote before it completed.
"""

from __future__ import annotations

import json
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
FAULT_POOL, FAULT_DEPLOYMENT = "team-fault", "tiny-fault"
# SFT long enough to be killed mid-training, with a checkpoint every 4 steps (the other stages as in the tiny overlay)
SFT = {"trainer": {"max_steps": 40, "save_steps": 4}}


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
        s.destroy()


@pytest.fixture(scope="module")
def deployed(services, tmp_path_factory, tiny_model_dir):
    """A bare `origin`, a developer's clone with the tiny project and the team's DVC remote, pushed and deployed."""
    root = tmp_path_factory.mktemp("team-repos")
    env = _env(services)
    origin = root / "origin.git"
    _sh(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root, env)
    dev = make_repo(root / "dev", tiny_model_dir, sft=SFT)
    for cmd in (["dvc", "remote", "add", "-d", "team", "s3://alignflow/dvc"], ["git", "add", ".dvc/config"],
                ["git", "commit", "-qm", "the team's DVC remote"], ["git", "branch", "-M", "main"],
                ["git", "remote", "add", "origin", origin.as_uri()], ["git", "push", "-q", "-u", "origin", "main"]):
        _sh([str(BIN / cmd[0]) if cmd[0] == "dvc" else cmd[0], *cmd[1:]], dev, env)
    out = _sh([str(BIN / "python"), "-m", "alignflow", "deploy", "--pool", POOL, "--name", DEPLOYMENT,
               "--no-schedule", "--work-dir", str(root / "worker")], dev, env)
    (root / "worker").mkdir(exist_ok=True)
    return root, origin, dev, out


def _start_worker(services: ServiceSet, pool: str, workdir: Path, log: Path) -> subprocess.Popen:
    """`prefect worker start` in its own process group: a SIGKILL of the group takes the flow run and its stages."""
    workdir.mkdir(exist_ok=True)
    return subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
                            cwd=workdir, env=_env(services), stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
        proc.wait(30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def worker(services, deployed):
    root = deployed[0]
    proc = _start_worker(services, POOL, root / "worker", root / "worker.log")
    try:
        yield proc, root / "worker.log"
    finally:
        _stop(proc)


def _client(services: ServiceSet):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: services.prefect_api}):
        return get_client(sync_client=True)


def _start_run(services: ServiceSet, deployment_name: str):
    with _client(services) as client:
        deployment = client.read_deployment_by_name(f"alignflow-pipeline/{deployment_name}")
        return deployment, client.create_flow_run_from_deployment(deployment.id)


def _wait_final(services: ServiceSet, run, timeout: float = 1500):
    with _client(services) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(3)
    raise AssertionError(f"flow run {run.name} not final after {timeout} s (state {run.state})")


def _run_and_wait(services: ServiceSet, deployment_name: str = DEPLOYMENT, timeout: float = 1500):
    """Start a run of the deployment through the server's API and wait for a final state."""
    deployment, run = _start_run(services, deployment_name)
    return deployment, _wait_final(services, run, timeout)


def _bucket_keys(services: ServiceSet, prefix: str = "") -> set[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=services.s3_endpoint, aws_access_key_id=services.s3_key,
                      aws_secret_access_key=services.s3_secret, region_name="us-east-1")
    return {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="alignflow", Prefix=prefix)
            for o in page.get("Contents", [])}


def _processes_in(directory: Path) -> list[int]:
    """PIDs whose working directory is inside `directory` (the flow run and stage processes of a worker)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _branch_file(origin: Path, branch: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", str(origin), "show", f"{branch}:{path}"], capture_output=True,
                          text=True, check=True).stdout


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
    keys = _bucket_keys(services)
    assert any(k.startswith("mlflow/") for k in keys)
    assert sum(k.startswith("dvc/files/md5/") for k in keys) > 10


def test_no_secret_reaches_params_mlflow_git_or_logs(services, deployed, team_run):
    """Credentials live in the environment only: not in params, MLflow (params, tags), the git history the worker
    pushed, or the worker's log."""
    from mlflow import MlflowClient

    root, origin, _, _ = deployed
    secrets = [services.s3_secret, services.pg_password]
    client = MlflowClient(tracking_uri=services.mlflow_uri)
    exp_id = client.get_experiment_by_name("alignflow").experiment_id
    for run in client.search_runs([exp_id]):
        recorded = json.dumps([run.data.params, run.data.tags])
        assert not any(secret in recorded for secret in secrets), run.info.run_id
    history = subprocess.run(["git", "--git-dir", str(origin), "log", "--all", "-p"], capture_output=True,
                             text=True, check=True).stdout
    log = (root / "worker.log").read_text(errors="replace")
    for secret in secrets:
        assert secret not in history and secret not in log


@pytest.fixture(scope="module")
def results_clone(services, deployed, team_run, tmp_path_factory) -> Path:
    """A second clone, as a teammate on another machine makes it: the run's results branch, then `dvc pull`."""
    _, run = team_run
    env = _env(services)
    clone = tmp_path_factory.mktemp("results") / "clone"
    _sh(["git", "clone", "-q", "-b", f"alignflow/runs/{run.name}", deployed[1].as_uri(), str(clone)], clone.parent, env)
    _sh([str(BIN / "dvc"), "pull"], clone, env)
    return clone


def test_a_second_clone_pulls_and_is_up_to_date(services, results_clone):
    env = _env(services)
    assert (results_clone / "dvc.lock").exists() and (results_clone / "metrics" / "eval.json").exists()
    status = _sh([str(BIN / "dvc"), "status"], results_clone, env)
    assert "Data and pipelines are up to date" in status, status
    assert (results_clone / "models" / "policy" / "alignflow_model.json").exists()
    # the run's report re-rendered from the tracking server, on a machine that never ran it
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=services.mlflow_uri)
    parent = client.search_runs([client.get_experiment_by_name("alignflow").experiment_id],
                                "tags.`alignflow.stage` = 'pipeline'")[0]
    out = _sh([str(BIN / "python"), "-m", "alignflow", "report", parent.info.run_id], results_clone, env)
    assert "report" in out.lower()


def test_a_queued_sweep_nests_its_experiments_under_one_parent(services, results_clone):
    """`alignflow sweep` in the teammate's clone: two queued DVC experiments (align.beta), each an MLflow run under
    the sweep's run on the tracking server, each with its own stage runs; `alignflow compare --sweep` reads them."""
    from mlflow import MlflowClient

    env = _env(services)
    out = _sh([str(BIN / "python"), "-m", "alignflow", "sweep", "-S", "align.beta=0.05,0.3", "--name", "tsweep"],
              results_clone, env, timeout=1500)
    assert "tsweep-0: Success" in out and "tsweep-1: Success" in out, out
    client = MlflowClient(tracking_uri=services.mlflow_uri)
    exp_id = client.get_experiment_by_name("alignflow").experiment_id
    sweeps = client.search_runs([exp_id], "tags.`alignflow.sweep` = 'tsweep' and tags.`alignflow.stage` = 'sweep'")
    assert len(sweeps) == 1
    experiments = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{sweeps[0].info.run_id}'")
    assert sorted(r.data.tags["alignflow.dvc_exp"] for r in experiments) == ["tsweep-0", "tsweep-1"]
    betas = set()
    for run in experiments:
        assert run.info.status == "FINISHED"
        stages = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        by_stage = {s.data.tags["alignflow.stage"]: s for s in stages}
        assert {"align", "evaluate"} <= set(by_stage)  # the baseline's other stages came from the DVC cache
        betas.add(by_stage["align"].data.params["align.beta"])
    assert betas == {"0.05", "0.3"}
    table = _sh([str(BIN / "python"), "-m", "alignflow", "compare", "--sweep", "tsweep"], results_clone, env)
    assert "align.beta" in table and "0.05" in table and "0.3" in table, table


@pytest.fixture(scope="module")
def fault_run(services, deployed, team_run):
    """Deploy the same pipeline with its own remote prefix; kill the worker during SFT; restart it; run again."""
    root, origin, dev, _ = deployed
    env = _env(services)
    for cmd in (["git", "checkout", "-q", "-b", "fault"],
                [str(BIN / "dvc"), "remote", "add", "-d", "-f", "team", "s3://alignflow/dvc-fault"],
                ["git", "commit", "-qam", "fault scenario: its own DVC remote prefix, nothing to pull"],
                ["git", "push", "-q", "-u", "origin", "fault"],
                [str(BIN / "python"), "-m", "alignflow", "deploy", "--pool", FAULT_POOL, "--name", FAULT_DEPLOYMENT,
                 "--no-schedule", "--work-dir", str(root / "worker-fault")],
                ["git", "checkout", "-q", "main"]):
        _sh(cmd, dev, env)
    workdir = root / "worker-fault"
    first = _start_worker(services, FAULT_POOL, workdir, root / "worker-fault-1.log")
    _, killed = _start_run(services, FAULT_DEPLOYMENT)
    deadline = time.monotonic() + 900
    while not list(workdir.glob("*/checkpoints/sft/checkpoint-*/trainer_state.json")):
        assert time.monotonic() < deadline and first.poll() is None, (root / "worker-fault-1.log").read_text()[-4000:]
        time.sleep(0.2)
    # A lost host: the worker and everything it started die at once. Killing the worker's process alone is not
    # that: Prefect's process worker starts each flow run in a process group of its own, which runs on (measured:
    # the flow run and its stage processes kept running after the worker's group was SIGKILLed).
    groups = {first.pid} | {os.getpgid(pid) for pid in _processes_in(workdir)}
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    first.wait()
    time.sleep(1)
    survivors = _processes_in(workdir)
    for pid in survivors:  # leave the machine clean for what follows even if the assertion below fails
        os.kill(pid, signal.SIGKILL)
    keys_after_kill = _bucket_keys(services, "dvc-fault/")
    second = _start_worker(services, FAULT_POOL, workdir, root / "worker-fault-2.log")
    try:
        _, rerun = _run_and_wait(services, FAULT_DEPLOYMENT)
    finally:
        _stop(second)
    return {"killed": killed, "rerun": rerun, "survivors": survivors, "keys_after_kill": keys_after_kill,
            "log": (root / "worker-fault-2.log").read_text(errors="replace"), "origin": origin}


def test_a_killed_worker_leaves_nothing_running_and_nothing_half_pushed(services, fault_run):
    assert fault_run["survivors"] == [], "processes of the killed worker kept running"
    run = fault_run["rerun"]
    assert run.state.is_completed(), f"{run.state.type}: {run.state.message}\n{fault_run['log'][-6000:]}"
    lock = __import__("yaml").safe_load(_branch_file(fault_run["origin"], f"alignflow/runs/{run.name}", "dvc.lock"))
    md5 = next(o["md5"] for o in lock["stages"]["sft"]["outs"] if o["path"] == "models/sft")  # NAME.dir
    sft_object = f"dvc-fault/files/md5/{md5[:2]}/{md5[2:]}"
    assert sft_object not in fault_run["keys_after_kill"]  # SFT's output reached the remote only once complete
    assert sft_object in _bucket_keys(services, "dvc-fault/")


def test_the_rerun_resumes_sft_and_matches_the_uninterrupted_run(fault_run, team_run):
    assert "sft: resuming from checkpoints/sft/checkpoint-" in fault_run["log"]
    origin = fault_run["origin"]
    ran, resumed = f"alignflow/runs/{team_run[1].name}", f"alignflow/runs/{fault_run['rerun'].name}"
    for path, keys in (("metrics/sft.json", ("train/loss", "eval/loss", "train/steps")),
                       ("metrics/eval.json", ("policy/gold_reward", "sft/gold_reward", "policy/kl_sft"))):
        a, b = json.loads(_branch_file(origin, ran, path)), json.loads(_branch_file(origin, resumed, path))
        flat_a, flat_b = _flat(a), _flat(b)
        for key in keys:
            assert flat_a[key] == flat_b[key], (path, key, flat_a[key], flat_b[key])


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out
