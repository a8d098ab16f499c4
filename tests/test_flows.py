"""The pipeline flow's own rules (flows/pipeline.py, flows/dvc_repro.py, flows/tracking_glue.py), without running a
stage: the stage list is dvc.yaml's, a user error is known by its exit status alone, and the lineage names the KL
coefficient the chosen method trains with."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from flows import pipeline, tracking_glue
from tasks.common.params import AlignMethod, AlignParams, OnlineRLParams, PPOParams
from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _dvc_project(root: Path, stages: dict) -> Path:
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True, env=ENV)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return root


def test_stage_list_is_dvc_yaml(tmp_path):
    """Every dvc.yaml stage has a flow — including one added to dvc.yaml and nowhere else."""
    shipped = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert sorted(pipeline.stage_order(REPO)) == sorted(shipped)
    assert {s for s in shipped if not pipeline.uses_gpu(s)} == {"validate"}
    assert pipeline.CPU_STAGES <= set(shipped)  # no stale name in the exception list

    _dvc_project(tmp_path, {"first": {"cmd": "echo a > a", "outs": ["a"]},
                            "brand_new": {"cmd": "cat a > b", "deps": ["a"], "outs": ["b"]}})
    assert pipeline.stage_order(tmp_path) == ["first", "brand_new"]
    flow = pipeline.stage_flow("brand_new")
    assert flow.name == "brand_new" and pipeline.stage_flow("brand_new") is flow
    assert pipeline.uses_gpu("brand_new")  # unknown stages take the gpu slot: the safe side


@pytest.mark.parametrize(("stage", "status"), [("user_error", 2), ("crash", 1), ("ok", 0)])
def test_user_error_is_known_by_exit_status_alone(tmp_path, stage, status):
    """flows/dvc_repro.py exits with the stage command's status (the `dvc` command says 255 for all); the text
    a stage prints decides nothing: a crash that prints stage_main's error wording is still retried."""
    wording = "print('alignflow x: error: looks like a user error', file=sys.stderr)"
    _dvc_project(tmp_path, {
        "user_error": {"cmd": f"{sys.executable} -c \"import sys; sys.exit(2)\""},
        "crash": {"cmd": f"{sys.executable} -c \"import sys; {wording}; sys.exit(1)\""},
        "ok": {"cmd": f"{sys.executable} -c \"print('fine')\""},
    })
    r = subprocess.run([sys.executable, "-m", "flows.dvc_repro", stage], cwd=tmp_path, env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == status, r.stdout + r.stderr
    if status:
        assert pipeline._no_retry_on_user_error(None, None, _failed_state(stage, r.returncode)) == (status != 2)


def _failed_state(stage: str, code: int):
    class State:
        def result(self):
            raise pipeline.StageFailed(stage, code, "")

    return State()


def test_kl_coefficient_is_the_methods_own():
    align = AlignParams(beta=0.1, simpo_beta=2.0, ppo=PPOParams(kl_coef=0.03), online=OnlineRLParams(beta=0.07))
    expected = {"dpo": ("align.beta", 0.1), "ipo": ("align.beta", 0.1), "robust": ("align.beta", 0.1),
                "hinge": ("align.beta", 0.1), "kto": ("align.beta", 0.1), "simpo": (None, None),
                "ppo": ("align.ppo.kl_coef", 0.03), "rloo": ("align.online.beta", 0.07),
                "grpo": ("align.online.beta", 0.07)}
    assert set(expected) == set(typing.get_args(AlignMethod)) == set(tracking_glue.KL_COEF_PARAM)
    for method, want in expected.items():
        assert tracking_glue.kl_coefficient(align.model_copy(update={"method": method})) == want


def test_parent_run_logs_the_methods_kl_coefficient(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from tasks.common.params import Params
    from tests.conftest import copy_migrated_mlflow_db

    monkeypatch.chdir(tmp_path)
    copy_migrated_mlflow_db(tmp_path)
    params = Params(align=AlignParams(method="ppo", beta=0.1, ppo=PPOParams(kl_coef=0.03)))
    with tracking_glue.parent_run(params) as run:
        run_id = run.info.run_id
    logged = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id).data.params
    assert logged["kl_coef"] == "0.03" and logged["kl_coef.param"] == "align.ppo.kl_coef"
    assert "align.beta" not in logged  # PPO never reads it
