"""`alignflow compare`: pipeline runs side by side — what changed in params.yaml, and what it did to the metrics.

Params come from each pipeline run's `lineage/params.yaml` artifact (the exact file the run used, flattened to
dotted keys like `align.beta`), and only keys whose values differ between the compared runs are shown: with ~200
knobs per run, the difference is the point. A run without that artifact (it failed before the end, or predates
it) falls back to the params its own run and its stage runs logged — the same dotted names, since each stage logs
its params section under the stage's name. A stage (child) run id stands for its pipeline run: params, tags and
metrics of the parent, with the stage's own metrics over them.

Metrics are the run's latest values whose names match the patterns (fnmatch; default policy/*, sft/*, gate/*,
guard/*), one row per name, one column per run.

    alignflow compare                          # the last 5 pipeline runs of params.pipeline.experiment
    alignflow compare RUN_ID RUN_ID --format markdown --metrics 'policy/*' 'time/*'
"""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from tasks.common.tracking import flatten

DEFAULT_PATTERNS = ("policy/*", "sft/*", "gate/*", "guard/*")
PARAMS_ARTIFACT = "lineage/params.yaml"
PARENT_TAG = "mlflow.parentRunId"
# tag -> row name in the "run" section, shown when any compared run has the tag
RUN_TAGS = {"alignflow.align_method": "align_method", "alignflow.promoted": "promoted"}


class CompareError(ValueError):
    """A run id that the tracking store does not know, or nothing to compare; the message names it."""


@dataclass
class ComparedRuns:
    """Rows of (section, key) by column; a value is None where that run lacks the key."""

    columns: list[str]  # short run ids, in the order asked for
    run: dict[str, list[str | None]]  # run_id, start, stage, align_method, promoted
    params: dict[str, list[str | None]]  # only keys whose values differ
    metrics: dict[str, list[float | None]]

    def rows(self) -> list[tuple[str, str, list[Any]]]:
        return ([("run", k, v) for k, v in self.run.items()] + [("params", k, v) for k, v in self.params.items()]
                + [("metrics", k, v) for k, v in self.metrics.items()])


def pipeline_runs(client, experiment: str, last: int = 5) -> list[str]:
    """Ids of the last `last` pipeline parent runs of `experiment`, oldest first (read left to right)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise CompareError(f"no MLflow experiment named {experiment!r} in {client.tracking_uri}")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`alignflow.stage` = 'pipeline'",
                              order_by=["attributes.start_time DESC"], max_results=last)
    if not runs:
        raise CompareError(f"no pipeline runs in experiment {experiment!r} ({client.tracking_uri})")
    return [r.info.run_id for r in reversed(runs)]


def collect(client, run_ids: list[str], patterns: tuple[str, ...] | list[str] = DEFAULT_PATTERNS) -> ComparedRuns:
    run_rows: dict[str, list[str | None]] = {"run_id": [], "start (UTC)": [], "stage": []}
    run_rows.update({name: [] for name in RUN_TAGS.values()})
    all_params, all_metrics = [], []
    with tempfile.TemporaryDirectory(prefix="alignflow-compare-") as tmp:
        for i, run_id in enumerate(run_ids):
            run = _get_run(client, run_id)
            parent_id = run.data.tags.get(PARENT_TAG)
            parent = _get_run(client, parent_id) if parent_id else run
            tags = {**parent.data.tags, **run.data.tags}
            run_rows["run_id"].append(run_id)
            run_rows["start (UTC)"].append(
                datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M"))
            run_rows["stage"].append(tags.get("alignflow.stage"))
            for tag, name in RUN_TAGS.items():
                run_rows[name].append(tags.get(tag))
            all_params.append(_params(client, parent, Path(tmp, str(i))))
            metrics = {**parent.data.metrics, **run.data.metrics}
            all_metrics.append({k: v for k, v in metrics.items() if any(fnmatchcase(k, p) for p in patterns)})
    # rows that say nothing: the stage row when every run is a pipeline run, a tag no run carries
    run_rows = {k: v for k, v in run_rows.items()
                if any(x is not None for x in v) and not (k == "stage" and set(v) == {"pipeline"})}
    keys = sorted(set().union(*all_params))
    params = {k: [p.get(k) for p in all_params] for k in keys}
    params = {k: v for k, v in params.items() if len(set(v)) > 1}
    names = sorted(set().union(*all_metrics))
    return ComparedRuns([r[:8] for r in run_ids], run_rows, params,
                        {k: [m.get(k) for m in all_metrics] for k in names})


def _get_run(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise CompareError(f"unknown run id {run_id!r} (not in {client.tracking_uri})") from None
        raise


def _params(client, run, dst: Path) -> dict[str, str]:
    """The run's params.yaml flattened to dotted keys (values as MLflow logs them: str); else its logged params."""
    import mlflow

    if any(f.path == PARAMS_ARTIFACT for f in client.list_artifacts(run.info.run_id, "lineage")):
        dst.mkdir(parents=True)
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=PARAMS_ARTIFACT,
                                                    dst_path=str(dst), tracking_uri=client.tracking_uri)
        raw = yaml.safe_load(Path(local).read_text()) or {}
        return {k: str(v) for k, v in flatten(raw).items()}
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{run.info.run_id}'")
    out: dict[str, str] = {}
    for r in [*children, run]:
        out.update(r.data.params)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def to_markdown(c: ComparedRuns) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |"

    lines = [line(["", *c.columns]), "|" + "---|" * (len(c.columns) + 1)]
    section = None
    for sec, key, values in c.rows():
        if sec != section:
            lines.append(line([f"**{sec}**", *[""] * len(c.columns)]))
            section = sec
        lines.append(line([key, *map(_fmt, values)]))
    return "\n".join(lines) + "\n"


def to_csv(c: ComparedRuns) -> str:
    """Full precision, empty cells for missing values: for spreadsheets and pandas."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "key", *c.columns])
    for sec, key, values in c.rows():
        w.writerow([sec, key, *("" if v is None else repr(v) if isinstance(v, float) else v for v in values)])
    return buf.getvalue()


def to_text(c: ComparedRuns) -> str:
    table = [["", *c.columns]]
    section = None
    for sec, key, values in c.rows():
        if sec != section:
            table.append([f"[{sec}]", *[""] * len(c.columns)])
            section = sec
        table.append([key, *map(_fmt, values)])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table) + "\n"


FORMATS = {"table": to_text, "markdown": to_markdown, "csv": to_csv}
