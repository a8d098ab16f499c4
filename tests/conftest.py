"""Shared fixtures: a tiny model built once per session, and a throw-away project directory.

`project` copies the shipped params.yaml (with tests/params.tiny.yaml merged over it) and data/raw into a
temporary directory and chdirs there, so every stage runs exactly as in the repo, on tiny budgets, with its own
MLflow store (sqlite:///mlflow.db in that directory).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("ALIGNFLOW_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("ALIGNFLOW_PARENT_RUN_ID", None)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Prefect's temporary servers keep their database and leases under PREFECT_HOME: the tests get their own, so a
# test that kills a run can never leave a held `gpu` slot in the developer's ~/.prefect (and theirs cannot stall us).
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="alignflow-prefect-")
# Tiny models gain nothing from a second thread, and with 2 threads a busy machine makes each tiny op ~100x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


_one_thread()
_MLFLOW_DB: Path | None = None


def copy_migrated_mlflow_db(root: Path) -> None:
    """Put an already-migrated MLflow sqlite store at root/mlflow.db: creating one runs ~9 s of alembic migrations,
    which would otherwise dominate every stage test. Built once per test process, then copied."""
    global _MLFLOW_DB
    if _MLFLOW_DB is None:
        from mlflow.tracking import MlflowClient

        db = Path(tempfile.mkdtemp(prefix="alignflow-mlflow-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{db}").search_experiments()
        _MLFLOW_DB = db
    shutil.copy(_MLFLOW_DB, root / "mlflow.db")


def tiny_params(model_dir: str | Path, **overrides) -> dict:
    """The shipped params.yaml with the tiny overlay (and any keyword overrides) merged in."""
    from tasks.common.params import deep_merge

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw = deep_merge(raw, yaml.safe_load((REPO / "tests/params.tiny.yaml").read_text()))
    raw = deep_merge(raw, {"prepare_model": {"source": str(model_dir)}, "prepare_judge": {"source": str(model_dir)}})
    return deep_merge(raw, overrides)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def project(tmp_path, tiny_model_dir, monkeypatch) -> Path:
    """A temporary project root with params.yaml (tiny) and data/raw; cwd is set to it."""
    shutil.copytree(REPO / "data" / "raw", tmp_path / "data" / "raw")
    shutil.copy(REPO / "data" / "constitution.yaml", tmp_path / "data" / "constitution.yaml")
    shutil.copytree(REPO / "data" / "probes", tmp_path / "data" / "probes")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_model_dir), sort_keys=False))
    copy_migrated_mlflow_db(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
