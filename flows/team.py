"""A run's data on a team's servers: pull what the DVC remote holds before the stages run, push each stage's
outputs once it ran, and publish the run's dvc.lock and metrics as a git branch.

Why (orchestration glue; no library joins a Prefect worker's git checkout to DVC this way): a worker on another
host gets the code at a git revision (the deployment's git_clone pull step, alignflow/deploy.py) and nothing else —
no shared disk. DVC carries the data: the remote is configured the DVC way and committed with the code
(`dvc remote add -d team s3://bucket/path`, `.dvc/config`); credentials come only from the worker's environment
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or whatever the remote's backend reads), never from params or git.

- pull: before the first stage, `dvc pull --allow-missing`, so stages whose outputs some earlier run pushed are up
  to date here too and DVC re-runs only what is stale (a first run finds nothing, which is not an error).
- push: after a stage ran, `dvc push <stage>`: its outputs only. A stage that failed or was killed never reaches
  this line, and its outputs are swapped in whole (tasks/common/io.py), so nothing half-written is pushed.
- publish: dvc.lock and the git-tracked outputs (metrics, plots, reports) committed on `alignflow/runs/<run>` and
  pushed to the clone's `origin`, without moving the worker's HEAD or touching its working tree (a temporary git
  index), so a second clone can `git checkout` that branch, `dvc pull`, and see every stage up to date.

With no default remote configured (the embedded default), pull and push do nothing.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from flows.executables import venv_exe

RUN_BRANCH_PREFIX = "alignflow/runs/"


class TeamSyncError(RuntimeError):
    """A dvc pull/push or git push failed; the message holds the command and the end of its output."""


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-20:])
        raise TeamSyncError(f"`{' '.join(cmd)}` exited {r.returncode}:\n{tail}")
    return r.stdout


def default_remote() -> str | None:
    """The name of the DVC remote marked default (`dvc remote add -d`), or None."""
    out = subprocess.run([venv_exe("dvc"), "remote", "default"], capture_output=True, text=True)
    name = out.stdout.strip()
    return name if out.returncode == 0 and name else None


def pull(remote: str | None, logger) -> None:
    if not remote:
        return
    logger.info("dvc pull from remote %r (outputs earlier runs pushed; missing ones are computed here)", remote)
    _run([venv_exe("dvc"), "pull", "--allow-missing"])


def push(remote: str | None, stage: str, logger) -> None:
    if not remote:
        return
    _run([venv_exe("dvc"), "push", stage])
    logger.info("stage %s: outputs pushed to DVC remote %r", stage, remote)


def publish(run_name: str, logger, message: str) -> str:
    """Commit dvc.lock and the git-tracked outputs on `alignflow/runs/<run_name>` and push it to origin; returns the
    branch. HEAD, the index and the working tree stay as they were."""
    branch = RUN_BRANCH_PREFIX + run_name
    env = dict(os.environ)
    env.setdefault("GIT_AUTHOR_NAME", "alignflow worker")
    env.setdefault("GIT_AUTHOR_EMAIL", "worker@alignflow.invalid")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    with tempfile.TemporaryDirectory() as tmp:
        env["GIT_INDEX_FILE"] = str(Path(tmp) / "index")
        _run(["git", "read-tree", "HEAD"], env)
        _run(["git", "add", "-A", "."], env)  # .gitignore keeps DVC's cached outputs and local state out
        tree = _run(["git", "write-tree"], env).strip()
        commit = _run(["git", "commit-tree", tree, "-p", "HEAD", "-m", message], env).strip()
    _run(["git", "push", "-q", "origin", f"{commit}:refs/heads/{branch}"], env)
    logger.info("results published: git branch %s (%s) on origin; `git checkout %s && dvc pull` restores them",
                branch, commit[:10], branch)
    return branch
