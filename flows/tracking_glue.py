"""The pipeline's MLflow parent run: opened before the first stage, closed with the lineage of the result.

At the start the parent run logs the seed, align.method and the KL coefficient that method trains with
(kl_coefficient). At the end of a run the parent gets: the dvc.lock stage hashes as tags (so a run points at the
exact data, params and code it used), dvc.lock and params.yaml as artifacts, the evaluation metrics, and — when the
align stage produced a new policy — a registered model version whose source is the logged adapter, and the promotion
gate's decision for it (tasks/evaluation/gate.py decides; this module only calls it and moves the alias).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tasks.common.registry import EVAL_SET_TAG
from tasks.common.tracking import configure, git_sha


@contextlib.contextmanager
def parent_run(params) -> Iterator[Any]:
    import mlflow

    experiment_id = configure(params.pipeline.experiment)
    tags = {"alignflow.stage": "pipeline", "git_sha": git_sha(), "seed": str(params.seed)}
    with mlflow.start_run(experiment_id=experiment_id, run_name="pipeline", tags=tags) as run:
        mlflow.log_param("seed", params.seed)
        mlflow.log_param("align.method", params.align.method)
        source, value = kl_coefficient(params.align)
        mlflow.log_param("kl_coef.param", source or "none")
        if value is not None:
            mlflow.log_param("kl_coef", value)
        yield run


# align.method -> the params key of the KL coefficient that method trains with. The DPO family reads align.beta (IPO
# as its τ), our PPO align.ppo.kl_coef (the initial β when align.ppo.target_kl adapts it), TRL's RLOO/GRPO
# align.online.beta; SimPO is reference-free: it has no KL term (align.simpo_beta scales its reward margin).
KL_COEF_PARAM: dict[str, str | None] = {
    "dpo": "beta", "ipo": "beta", "robust": "beta", "hinge": "beta", "kto": "beta",
    "simpo": None, "ppo": "ppo.kl_coef", "rloo": "online.beta", "grpo": "online.beta",
}


def kl_coefficient(align) -> tuple[str | None, float | None]:
    """("align.<key>", value) of the KL coefficient `align.method` really uses, for the lineage (logging
    align.beta for every method told a reader PPO trained with a β it never read); (None, None) for SimPO."""
    key = KL_COEF_PARAM[align.method]
    if key is None:
        return None, None
    value: Any = align
    for part in key.split("."):
        value = getattr(value, part)
    return f"align.{key}", float(value)


def lock_stage_hashes(lock_path: str | Path = "dvc.lock") -> dict[str, str]:
    """A short content hash of each stage's dvc.lock entry (its deps, params and outs)."""
    path = Path(lock_path)
    if not path.exists():
        return {}
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    return {
        name: hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:12]
        for name, entry in stages.items()
    }


def finish_parent(params, run_id: str, outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    import mlflow

    hashes = lock_stage_hashes()
    mlflow.set_tags({f"dvc.lock.{name}": h for name, h in hashes.items()})
    for o in outcomes:
        mlflow.set_tag(f"stage.{o['stage']}", o["status"])
        mlflow.log_metric(f"time/{o['stage']}_s", o["seconds"])
    for f in ("dvc.lock", "params.yaml"):
        if Path(f).exists():
            mlflow.log_artifact(f, artifact_path="lineage")
    _tag_children(run_id, hashes)
    eval_metrics = _flat_eval_metrics(Path(params.paths.metrics) / "eval.json")
    if eval_metrics:
        mlflow.log_metrics(eval_metrics)
    eval_dir = Path(params.paths.reports) / "eval"
    eval_set = _eval_set(eval_dir / "report_data.json")
    if eval_set:
        mlflow.set_tag(EVAL_SET_TAG, eval_set)  # the gate compares champions only on equal sets
    version, promoted = None, None
    if any(o["stage"] == "align" and o["status"] == "ran" for o in outcomes):
        version = register_policy(params, run_id, hashes.get("align", ""), eval_metrics)
        promoted = apply_gate(params, run_id, version, eval_metrics, eval_set)
    report = eval_dir / "report.html"
    markdown = _markdown(run_id, outcomes, eval_metrics, version, report, promoted)
    mlflow.log_text(markdown, "summary.md")
    return {
        "mlflow_run_id": run_id,
        "stages": outcomes,
        "eval": eval_metrics,
        "registered_version": version,
        "promoted": promoted,
        "report": str(report) if report.exists() else None,
        "markdown": markdown,
    }


def register_policy(params, run_id: str, align_hash: str, metrics: dict[str, float]) -> str | None:
    """Log the policy adapter (and its chain file) to the parent run and register it as a new model version."""
    import mlflow
    from mlflow import MlflowClient

    policy = Path(params.paths.policy_model)
    if not policy.exists():
        return None
    mlflow.log_artifacts(str(policy), artifact_path="policy")
    client = MlflowClient()
    name = params.pipeline.registered_model
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.create_registered_model(name, description="alignflow aligned policy (LoRA adapter chain)")
    source = f"{mlflow.get_run(run_id).info.artifact_uri}/policy"
    tags = {"align.method": params.align.method, "dvc.lock.align": align_hash}
    tags.update({k: f"{v:.4f}" for k, v in metrics.items() if k.startswith("policy/")})
    mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    mlflow.set_tag("registered_model_version", f"{name}/{mv.version}")
    return f"{name}/{mv.version}"


def apply_gate(params, run_id: str, version: str | None, metrics: dict[str, float], eval_set: str | None) -> bool | None:
    """Decide again with the evaluate stage's own function (gate.decide_against_champion), against the champion of
    this moment (the evaluate stage decided against the champion of its own time, and DVC may have skipped it, or
    another run may have promoted since), then move the `champion` alias to the new version if every check passes,
    and tag the run and the version either way. None: nothing to decide."""
    from mlflow import MlflowClient

    from tasks.evaluation import gate

    if version is None or not metrics:
        return None
    client = MlflowClient()
    name, number = version.rsplit("/", 1)  # name is params.pipeline.registered_model (register_policy)
    decision = gate.decide_against_champion(client, params, metrics, eval_set)
    gate.promote(client, name, number, run_id, decision)
    return decision.passed


def _eval_set(path: Path) -> str | None:
    if not path.exists():
        return None
    return (json.loads(path.read_text()).get("run") or {}).get("eval_set")


def _tag_children(parent_id: str, hashes: dict[str, str]) -> None:
    import mlflow

    children = mlflow.search_runs(
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", output_format="list", search_all_experiments=True
    )
    client = mlflow.MlflowClient()
    for child in children:
        stage = child.data.tags.get("alignflow.stage")
        if stage in hashes:
            client.set_tag(child.info.run_id, "dvc.lock_hash", hashes[stage])


def _flat_eval_metrics(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    out: dict[str, float] = {}

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            out[prefix] = float(obj)

    walk("", json.loads(path.read_text()))
    return out


def _markdown(run_id, outcomes, metrics, version, report: Path, promoted: bool | None = None) -> str:
    lines = ["# alignflow pipeline run", "", f"MLflow run: `{run_id}`", ""]
    lines += ["| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {o['stage']} | {o['status']} | {o['seconds']:.1f} |" for o in outcomes]
    keys = [k for k in metrics if k.endswith("gold_reward") or "kl" in k]
    if keys:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {metrics[k]:.4f} |" for k in sorted(keys)]
    if version:
        lines += ["", f"Registered model version: `{version}`"]
    if promoted is not None:
        lines += ["", "Promotion gate: **passed** — alias `champion` moved to this version" if promoted
                  else "Promotion gate: **failed** — `champion` unchanged (the report says which checks failed)"]
    if report.exists():
        lines += ["", f"Evaluation report: `{report.resolve()}`"]
    return "\n".join(lines) + "\n"
