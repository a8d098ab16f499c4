"""Validate stage: every raw data set passes the loader's parse rules and its great-expectations suite first.

Reads  params.data.prompts_train, params.data.prompts_eval (kind prompts), params.data.sft (kind sft), in any
       supported format (tasks/common/records.py); the tokenizer at params.paths.base_model when it exists
Writes data/validated/{prompts_train,prompts_eval,sft}.jsonl (the internal conversational form),
       reports/validate/report.{html,json}, metrics/validate.json

    dvc repro validate
    alignflow run                                   # the same, through the Prefect pipeline
    alignflow validate --kind preference FILE…      # any files of any kind (tasks/common/validation.py)

Policy (params.validate): `on_error: fail` stops on any issue; `on_error: drop` removes the bad rows while their
fraction is ≤ max_drop_fraction, listing each in the report. On failure data/validated/ is left exactly as it was
(everything is built first, then swapped in by atomic_dir), but the report is still written: it is the thing the
user needs to read.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tasks.common.io import atomic_dir, write_json, write_jsonl
from tasks.common.params import Params
from tasks.common.stage import stage_main
from tasks.common.validation import (
    DataValidationError,
    ValidationResult,
    build_report,
    error_message,
    load_tokenizer_if_present,
    validate_files,
    write_report,
)

DATASETS = {"prompts_train": "prompts", "prompts_eval": "prompts", "sft": "sft"}  # params.data key -> kind


def run_validate(params: Params) -> dict[str, float]:
    """Validate the raw data sets; write them normalised to paths.validated, or raise and leave it untouched."""
    from tasks.common import tracking

    vparams = params.validate_params
    report_path = Path(params.paths.reports) / "validate" / "report.html"
    section = {"validate": vparams.model_dump(), "data": params.data.model_dump()}
    with tracking.stage_run("validate", params, section):
        tokenizer = load_tokenizer_if_present(params.paths.base_model)
        results = []
        for name, kind in DATASETS.items():
            result = validate_files(kind, [getattr(params.data, name)], vparams, params.data.prompt_template, tokenizer)
            result.name = name
            results.append(result)
        report = build_report(results, vparams)
        write_report(report, report_path)
        _log_report(report_path)
        failures = {n: d["reason"] for n, d in report["datasets"].items() if d["reason"]}
        if failures:
            raise DataValidationError(error_message(failures, results, report_path))

        with atomic_dir(params.paths.validated) as staging:
            for result in results:
                write_jsonl(staging / f"{result.name}.jsonl", result.rows)
        metrics = _metrics(results)
        write_json(Path(params.paths.metrics) / "validate.json", metrics)
        tracking.log_metrics(metrics)
        for result in results:
            tracking.log_dataset(getattr(params.data, result.name), result.rows, context=result.name)
    return metrics


def _metrics(results: list[ValidationResult]) -> dict[str, float]:
    metrics: dict[str, float] = {
        "validate/rows": sum(r.n_rows for r in results),
        "validate/kept": sum(len(r.rows) for r in results),
        "validate/dropped": sum(len(r.dropped) for r in results),
        "validate/issues": sum(len(r.issues) for r in results),
    }
    for r in results:
        metrics[f"validate/{r.name}/rows"] = len(r.rows)
    for rule, n in Counter(i.rule for r in results for i in r.issues).items():
        metrics[f"validate/issues/{rule}"] = n
    return metrics


def _log_report(report_path: Path) -> None:
    import mlflow

    mlflow.log_artifact(str(report_path), artifact_path="validate")
    mlflow.log_artifact(str(report_path.with_suffix(".json")), artifact_path="validate")


if __name__ == "__main__":
    stage_main("validate", run_validate)
