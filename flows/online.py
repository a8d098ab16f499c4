"""The online preference loop: on a cron, turn new human labels and chat feedback into a retrained, evaluated and
(only if the gate passes) promoted policy.

One iteration (orchestration glue written by hand, like the pipeline flow):
1. export the labelling page's store (alignflow/labeling/) to the pipeline's DVC-tracked inputs:
   `label.export` (pairs, for collect_preferences.human_file) and `online.feedback_export` (unpaired KTO rows);
2. validate them with the same great-expectations suites as any data (a bad row stops the iteration with file, row
   and rule, and nothing is trained);
3. count what is new since the last iteration that trained (`online.state`); below `online.min_new` it stops;
4. otherwise run the pipeline flow: DVC re-runs exactly what the new data invalidates (collect_preferences and
   everything after it), evaluate decides the gate, and the flow registers the policy and moves `champion` only on
   a pass. The pipeline's MLflow run is tagged as this iteration with the sha256 of the files it trained on.

With `align.init: champion` the new policy starts from (and is regularised towards) the champion instead of the SFT
model (tasks/common/policy_init.py); with `align.method: kto` and `align.feedback: <online.feedback_export>` the
chat's thumbs train too. Feedback counts towards `min_new` only when align trains on it.

    alignflow serve --online        # the cron deployment (online.cron)
    alignflow online                # one iteration now
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from tasks.common.io import atomic_write_text, sha256_file

HUMAN_SOURCES = ("human", "mix")


class OnlineLoopError(RuntimeError):
    """The loop cannot train on the labels as configured (the message says what to change)."""


def export_inputs(params) -> dict[str, Any]:
    """Write the label and feedback files from the store; their row counts and digests."""
    from alignflow.labeling.export import export, export_feedback
    from alignflow.labeling.store import LabelStore

    store = LabelStore(params.label.db)
    labels = export(store, params.label.export)
    feedback = export_feedback(store, params.online.feedback_export)
    out: dict[str, Any] = {"labels": int(labels.get("human/labels", 0)),
                           "feedback": int(feedback.get("feedback/up", 0) + feedback.get("feedback/down", 0))}
    for key, path in (("labels_sha256", params.label.export), ("feedback_sha256", params.online.feedback_export)):
        out[key] = sha256_file(path) if Path(path).exists() else None
    return out


def validate_inputs(params, counts: dict[str, Any]) -> None:
    """The exported files through the data suites; a bad row raises with file, row and rule."""
    from tasks.common.validation import load_and_validate

    if counts["labels"]:
        load_and_validate("preference", [params.label.export], params)
    if counts["feedback"]:
        load_and_validate("kto", [params.online.feedback_export], params)


def trains_on_feedback(params) -> bool:
    return params.align.method == "kto" and Path(params.align.feedback or "") == Path(params.online.feedback_export)


def read_state(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else {"labels": 0, "feedback": 0}


@flow(name="alignflow-online", log_prints=True)
def online_flow() -> dict[str, Any]:
    """One iteration of the loop; returns what it did ("waiting" or "trained", with the pipeline summary)."""
    import mlflow

    from flows.pipeline import pipeline_flow
    from tasks.common.params import load_params
    from tasks.common.tracking import tracking_uri

    logger = get_run_logger()
    params = load_params()
    if params.collect_preferences.source not in HUMAN_SOURCES:
        raise OnlineLoopError(f"collect_preferences.source is {params.collect_preferences.source!r}: set it to human "
                              "or mix in params.yaml, or the pipeline would not train on the labels")
    if Path(params.collect_preferences.human_file or "") != Path(params.label.export):
        raise OnlineLoopError(f"collect_preferences.human_file ({params.collect_preferences.human_file}) must be "
                              f"label.export ({params.label.export}), the file the loop writes")
    counts = export_inputs(params)
    validate_inputs(params, counts)
    state = read_state(params.online.state)
    new_feedback = counts["feedback"] - state["feedback"]
    if not trains_on_feedback(params):
        if new_feedback:
            logger.warning("online: %d new chat ratings are exported but not trained on: set align.method kto and "
                           "align.feedback %s", new_feedback, params.online.feedback_export)
        new_feedback = 0
    new = counts["labels"] - state["labels"] + new_feedback
    if new < params.online.min_new:
        logger.info("online: %d new labels/ratings since the last training (need %d): waiting", new,
                    params.online.min_new)
        return {"status": "waiting", "new": new, **counts}
    logger.info("online: %d new labels/ratings: re-running the pipeline", new)
    summary = pipeline_flow()
    client = mlflow.MlflowClient(tracking_uri())
    client.set_tag(summary["mlflow_run_id"], "alignflow.trigger", "online")
    client.set_tag(summary["mlflow_run_id"], "alignflow.online.new", str(new))
    for key in ("labels", "feedback", "labels_sha256", "feedback_sha256"):
        client.set_tag(summary["mlflow_run_id"], f"alignflow.online.{key}", str(counts[key]))
    atomic_write_text(params.online.state, json.dumps({**counts, "mlflow_run_id": summary["mlflow_run_id"]}))
    summary.pop("markdown", None)
    return {"status": "trained", "new": new, **counts, "pipeline": summary}


def online_deployment(cron: str):
    """The cron deployment `alignflow serve --online` runs."""
    return online_flow.to_deployment(name="alignflow-online", cron=cron,
                                     description="online preference loop (online.cron): retrain on new labels")
