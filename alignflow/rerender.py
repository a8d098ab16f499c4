"""`alignflow report RUN_ID`: re-render a past run's evaluation report from its MLflow artifacts.

The evaluate stage logs the report document (eval/report_data.json) with every run, so a report can be rebuilt
with the current renderer — after a fix to the page, or on a machine that never had the run's files — without a
model or a GPU. RUN_ID may be the evaluate run or the pipeline run above it.
"""

from __future__ import annotations

import json
from pathlib import Path

ARTIFACT = "eval/report_data.json"


class ReportNotFound(LookupError):
    """The run does not exist, or neither it nor its evaluate child logged a report document."""


def evaluate_run_id(client, run_id: str) -> str:
    """The run that holds the report document: `run_id` itself, or its evaluate child run (the latest)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ReportNotFound(f"no MLflow run {run_id!r} in {client.tracking_uri}") from None
    if run.data.tags.get("alignflow.stage") == "evaluate":
        return run_id
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}' and tags.`alignflow.stage` = 'evaluate'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not children:
        raise ReportNotFound(f"run {run_id} is neither an evaluate run nor the parent of one")
    return children[0].info.run_id


def rerender(run_id: str, out_dir: str | Path | None = None) -> Path:
    """Write report.html and summary.md for the run under `out_dir` (default reports/runs/<evaluate run id>)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.common.io import atomic_dir
    from tasks.common.tracking import tracking_uri
    from tasks.evaluation import report

    client = mlflow.MlflowClient(tracking_uri())
    eval_id = evaluate_run_id(client, run_id)
    try:
        local = mlflow.artifacts.download_artifacts(run_id=eval_id, artifact_path=ARTIFACT,
                                                    tracking_uri=tracking_uri())
    except (MlflowException, OSError):
        raise ReportNotFound(f"evaluate run {eval_id} has no {ARTIFACT} (evaluated before reports were "
                             "re-renderable?)") from None
    data = json.loads(Path(local).read_text(encoding="utf-8"))
    target = Path(out_dir) if out_dir else Path("reports") / "runs" / eval_id
    with atomic_dir(target) as out:
        (out / "report.html").write_text(report.render_html(data), encoding="utf-8")
        (out / "summary.md").write_text(report.render_markdown(data), encoding="utf-8")
    return target / "report.html"
