"""The whole tiny pipeline, for real: Prefect (test harness server) → dvc repro per stage → MLflow on SQLite.

One module-scoped run in a throw-away git + DVC repository (a copy of the project with the tiny params), then
several assertions on what it left: dvc.lock, metrics, MLflow parent/child runs, the registered policy, a no-op
`dvc repro`, `dvc exp run -S`, and `dvc metrics diff`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tiny_params

pytestmark = pytest.mark.slow

STAGES = ["prepare_model", "prepare_judge", "validate", "critique_revise", "sft", "collect_preferences", "train_reward", "align", "evaluate"]


def _sh(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MLFLOW_TRACKING_URI", None)  # set in os.environ by mlflow.set_tracking_uri in earlier tests
    # commits in the throw-away repo must work on a machine with no git identity configured
    env.update(GIT_AUTHOR_NAME="alignflow tests", GIT_AUTHOR_EMAIL="tests@alignflow.invalid",
               GIT_COMMITTER_NAME="alignflow tests", GIT_COMMITTER_EMAIL="tests@alignflow.invalid")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def make_repo(root: Path, model_dir: Path, **overrides) -> Path:
    """A git + DVC repository holding the project's code, dvc.yaml, data/raw and tiny params."""
    for name in ("tasks", "flows", "data/raw", "data/human", "data/probes"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", "data/constitution.yaml"):
        shutil.copy(REPO / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(model_dir, **overrides), sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.autostage", "true"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "tiny project"]):
        r = _sh(cmd if cmd[0] == "git" else [str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], root)
        assert r.returncode == 0, r.stderr
    return root


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_model_dir):
    from prefect.testing.utilities import prefect_test_harness

    root = make_repo(tmp_path_factory.mktemp("e2e"), tiny_model_dir)
    old = Path.cwd()
    os.chdir(root)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    try:
        with prefect_test_harness():
            from flows.pipeline import pipeline_flow

            summary = pipeline_flow()
        yield root, summary
    finally:
        os.chdir(old)


def test_every_stage_ran_and_locked(pipeline_run):
    root, summary = pipeline_run
    assert [o["stage"] for o in summary["stages"]] == STAGES
    assert all(o["status"] == "ran" for o in summary["stages"])
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert (root / "models/policy/alignflow_model.json").exists()


def test_eval_metrics_written(pipeline_run):
    root, _ = pipeline_run
    metrics = json.loads((root / "metrics/eval.json").read_text())
    flat = json.dumps(metrics)
    for key in ("gold_reward", "kl", "distinct"):
        assert key in flat
    assert (root / "reports/eval/report.html").stat().st_size > 1000


def test_mlflow_parent_and_children(pipeline_run):
    import mlflow

    root, summary = pipeline_run
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    parent = mlflow.get_run(summary["mlflow_run_id"])
    assert parent.data.tags["alignflow.stage"] == "pipeline"
    assert set(STAGES) <= {k.removeprefix("dvc.lock.") for k in parent.data.tags if k.startswith("dvc.lock.")}
    children = mlflow.search_runs(
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        output_format="list",
        search_all_experiments=True,
    )
    by_stage = {c.data.tags["alignflow.stage"]: c for c in children}
    assert set(by_stage) == set(STAGES)
    assert "train/loss" in by_stage["sft"].data.metrics or "train_loss" in by_stage["sft"].data.metrics
    assert by_stage["sft"].data.tags.get("dvc.lock_hash")
    assert by_stage["sft"].inputs.dataset_inputs, "SFT run records its dataset inputs"
    assert summary["registered_version"]
    versions = mlflow.MlflowClient().search_model_versions("name = 'alignflow-policy'")
    assert len(versions) == 1 and versions[0].run_id == parent.info.run_id


def test_gate_decision_moves_the_champion_alias_or_names_the_failed_checks(pipeline_run):
    """The pipeline decided the gate on the registered version: promoted ⇔ alias `champion` on it, with the run
    tags, the summary and the report agreeing; the eval-set tag is on the run the champion lookup reads."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.common.registry import EVAL_SET_TAG

    root, summary = pipeline_run
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    tags = mlflow.get_run(summary["mlflow_run_id"]).data.tags
    gate = json.loads((root / "reports/eval/gate.json").read_text())
    assert summary["promoted"] is gate["passed"]  # no champion before: the flow's re-decision matches evaluate's
    assert tags["alignflow.promoted"] == str(summary["promoted"]).lower()
    assert len(tags[EVAL_SET_TAG]) == 16
    client = mlflow.MlflowClient()
    if summary["promoted"]:
        assert tags["alignflow.gate"] == "passed"
        assert str(client.get_model_version_by_alias("alignflow-policy", "champion").version) == "1"
    else:
        failed = [c["name"] for c in gate["checks"] if not c["passed"]]
        assert tags["alignflow.gate"] == "failed: " + ", ".join(failed)
        with pytest.raises(MlflowException):
            client.get_model_version_by_alias("alignflow-policy", "champion")
    report = (root / "reports/eval/report.html").read_text()
    assert ("Passed: the policy is promoted" if gate["passed"] else "Failed: not promoted") in report


def test_second_repro_is_a_noop(pipeline_run):
    root, _ = pipeline_run
    r = _sh(["dvc", "repro"], root)
    assert r.returncode == 0, r.stdout + r.stderr
    for stage in STAGES:
        assert f"'{stage}' didn't change" in r.stdout, r.stdout
    status = _sh(["dvc", "status", "--json"], root)
    assert json.loads(status.stdout or "{}") == {}


def test_noop_alignflow_run_answers_without_a_flow(pipeline_run):
    """`alignflow run` with every stage up to date says so and opens no MLflow run (no Prefect server start);
    once a stage's input changes, the same command sees it as stale."""
    import mlflow

    from flows.pipeline import stale_stages

    root, _ = pipeline_run
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    before = len(mlflow.search_runs(search_all_experiments=True))
    r = _sh([str(Path(sys.executable).parent / "alignflow"), "run"], root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every stage is up to date" in r.stdout
    assert len(mlflow.search_runs(search_all_experiments=True)) == before
    assert stale_stages(root) == []
    probes = root / "data/probes/boilerplate.txt"
    original = probes.read_text()
    try:
        probes.write_text(original + "as a language model\n")
        assert stale_stages(root) == ["evaluate"]
    finally:
        probes.write_text(original)


def test_experiment_and_metrics_diff(pipeline_run):
    root, _ = pipeline_run
    _sh(["git", "add", "-A"], root)
    assert _sh(["git", "commit", "-qm", "baseline run"], root).returncode == 0
    r = _sh(["dvc", "exp", "run", "-S", "align.beta=0.2"], root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Running stage 'align'" in r.stdout and "Running stage 'sft'" not in r.stdout
    diff = _sh(["dvc", "metrics", "diff", "--json", "HEAD"], root)
    assert diff.returncode == 0, diff.stderr
    plots = _sh(["dvc", "plots", "diff", "-o", str(root / "plots_html")], root)
    assert plots.returncode == 0, plots.stderr
