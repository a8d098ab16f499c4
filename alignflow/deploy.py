"""`alignflow deploy`: register the pipeline as a Prefect deployment on a work pool, so that
`prefect worker start --pool POOL` on any host with this repository's environment runs its scheduled and manual runs.

What a deployment holds, and why:
- the code as a git revision (`GitRepository(url, commit_sha)`: Prefect's git_clone pull step), not a path on this
  disk: a worker on another host clones the repository at exactly the commit that was deployed. The commit must be
  on the remote, so deploy refuses one that no remote-tracking branch contains (push it first);
- the schedule: `pipeline.cron` from params.yaml (or --cron; --no-schedule for manual runs only);
- the `gpu` concurrency limit (`pipeline.gpu_concurrency`), which every model stage of every run takes a slot of;
- the work pool (created as a `process` pool if it does not exist; a Kubernetes or Docker pool made with
  `prefect work-pool create --type kubernetes` is used as it is);
- `publish: true`: the run ends by pushing its dvc.lock and metrics to a git branch (flows/team.py).
Hyper-parameters stay in params.yaml at that commit, never in the deployment, so the lineage stays true. Nothing
secret goes in either: the worker's environment supplies the servers' addresses and credentials.

    alignflow deploy --pool gpu-hosts                     # HEAD of this clone, its `origin`, pipeline.cron
    prefect worker start --pool gpu-hosts                 # on each GPU host (README "Running as a team")
    prefect deployment run alignflow-pipeline/alignflow   # a manual run
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

ENTRYPOINT = "flows/pipeline.py:pipeline_flow"


class DeployError(ValueError):
    """A deployment that cannot work as asked (no remote, an unpushed commit, no Prefect server)."""


@dataclass
class DeployRequest:
    pool: str
    name: str = "alignflow"
    repo: str | None = None       # default: the clone's `origin` URL
    rev: str | None = None        # default: HEAD
    cron: str | None = None       # default: pipeline.cron; "" = no schedule
    work_dir: str | None = None   # the worker's directory for its clones; a fixed one keeps checkpoints across restarts


def _git(*args: str) -> str:
    r = subprocess.run(["git", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise DeployError(f"git {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip()


def resolve_source(repo: str | None, rev: str | None) -> tuple[str, str]:
    """(repository URL, full commit sha) — the commit must already be on a remote the worker can clone from."""
    if repo is None:
        try:
            repo = _git("remote", "get-url", "origin")
        except DeployError:
            raise DeployError("this clone has no `origin` remote: pass --repo URL (the repository workers clone)") from None
    sha = _git("rev-parse", "--verify", f"{rev or 'HEAD'}^{{commit}}")
    if not _git("branch", "-r", "--contains", sha):
        raise DeployError(f"commit {sha[:10]} is on no remote branch: push it first (git push), then deploy — "
                          "a worker can only clone what the remote has")
    return repo, sha


def deploy(request: DeployRequest) -> dict[str, str]:
    """Create the pool if needed, set the gpu limit, register the deployment; returns its name, id and source."""
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.runner.storage import GitRepository
    from prefect.settings import get_current_settings

    from flows.gpu_slots import ensure_gpu_limit
    from tasks.common.params import load_params

    if not get_current_settings().api.url:
        raise DeployError("PREFECT_API_URL is not set: a deployment lives on a Prefect server that workers reach "
                          "(prefect server start, or Prefect Cloud), not on the temporary one `alignflow run` starts")
    params = load_params()
    repo, sha = resolve_source(request.repo, request.rev)
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=request.pool, type="process"))
        except ObjectAlreadyExists:
            pass
    ensure_gpu_limit(params.pipeline.gpu_concurrency)
    cron = params.pipeline.cron if request.cron is None else request.cron
    flow = Flow.from_source(source=GitRepository(url=repo, commit_sha=sha), entrypoint=ENTRYPOINT)
    job_variables = {"working_dir": request.work_dir} if request.work_dir else {}
    deployment_id = flow.deploy(
        name=request.name, work_pool_name=request.pool, cron=cron or None, parameters={"publish": True},
        job_variables=job_variables, build=False, push=False, print_next_steps=False, ignore_warnings=True,
        description=f"alignflow pipeline at {sha[:10]} of {repo}", version=sha[:10],
    )
    return {"deployment": f"{flow.name}/{request.name}", "id": str(deployment_id), "repo": repo, "commit": sha,
            "pool": request.pool, "cron": cron or "none"}
