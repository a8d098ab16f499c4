"""Data validation for every file a stage reads: parse rules and great-expectations suites, the policy, the report.

One home for the checks that the validate stage runs on the raw data sets and that other stages run on the files
a user hands them (collect_preferences' human or file labels, align's KTO feedback, critique_revise's outputs,
the chat page's export, `alignflow validate FILE…`): the same rules, the same report, the same error.

Policy (params.validate): `on_error: fail` stops on any issue; `on_error: drop` removes the bad rows while their
fraction is ≤ max_drop_fraction, listing each in the report. The report is written also on failure: it is the
thing the user needs to read.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_write_text, write_json
from tasks.common.params import PARAMS_FILE, Params, ValidateParams, load_params
from tasks.common.records import KINDS, Issue, load_file
from tasks.common.stage import StageError

MAX_LISTED = 20  # issues quoted in an error message; the report has all of them
# Ad-hoc reports (CLI, other stages' files) stay out of reports/validate/: that directory is a DVC output of this
# stage, and an extra file in it would make `dvc repro` see the stage as changed.
CHECKS_DIR = "checks"
CLI_REPORT = f"reports/{CHECKS_DIR}/cli-report.html"


class DataValidationError(StageError):
    """The data broke a rule; the message names file, row, field and rule, and points at the report."""


@dataclass
class ValidationResult:
    kind: str
    name: str
    n_rows: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # good rows, normalised
    issues: list[Issue] = field(default_factory=list)
    dropped: list[tuple[str, int]] = field(default_factory=list)  # (file, row) of every row with an issue
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # per file: format, rows, kept, issues
    notes: list[str] = field(default_factory=list)


def validate_files(kind: str, paths: list[str | Path], vparams: ValidateParams, prompt_template: str,
                   tokenizer: Any = None) -> ValidationResult:
    """Load, normalise and check `paths` as one data set of `kind` (duplicates are found across the files)."""
    from tasks.common.expectations import check_rows

    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r} (use {', '.join(KINDS)})")
    result = ValidationResult(kind, ", ".join(str(p) for p in paths))
    rows = []
    for path in paths:
        loaded = load_file(path, kind, prompt_template)
        result.files[loaded.path] = {"format": loaded.format, "rows": loaded.n_rows}
        result.n_rows += loaded.n_rows
        result.issues += loaded.issues
        rows += loaded.rows
    result.issues += check_rows(kind, rows, vparams.max_chars, vparams.max_tokens, tokenizer, result.name)
    result.issues.sort(key=lambda i: (i.file, i.row or 0, i.field or "", i.rule))
    if tokenizer is None:
        result.notes.append("max_tokens and special-token rules skipped: no tokenizer")
    bad = {(i.file, i.row) for i in result.issues if i.row is not None}
    result.rows = [r.record for r in rows if (r.file, r.row) not in bad]
    result.dropped = sorted(bad)
    for name, stats in result.files.items():
        stats["issues"] = sum(i.file == name for i in result.issues)
        stats["kept"] = sum(r.file == name and (r.file, r.row) not in bad for r in rows)
    return result


def policy_failure(result: ValidationResult, vparams: ValidateParams) -> str | None:
    """Why this data set cannot be used under the policy; None when it can (perhaps after dropping rows)."""
    if not result.issues:
        return None
    if vparams.on_error == "fail":
        return f"{len(result.issues)} issue(s) in {len(result.dropped)} of {result.n_rows} rows (validate.on_error=fail)"
    if any(i.row is None for i in result.issues):
        return "file- or data-set-level issues, which dropping rows cannot fix"
    fraction = len(result.dropped) / max(result.n_rows, 1)
    if fraction > vparams.max_drop_fraction:
        return (f"{len(result.dropped)} of {result.n_rows} rows ({fraction:.1%}) are bad, more than "
                f"validate.max_drop_fraction={vparams.max_drop_fraction}")
    return None


def error_message(failures: dict[str, str], results: list[ValidationResult], report: Path) -> str:
    issues = [i for r in results if r.name in failures for i in r.issues]
    lines = [f"data validation failed: {name}: {why}" for name, why in failures.items()]
    lines += [f"  {i}" for i in issues[:MAX_LISTED]]
    if len(issues) > MAX_LISTED:
        lines.append(f"  … and {len(issues) - MAX_LISTED} more issue(s)")
    lines.append(f"Full report: {report}")
    return "\n".join(lines)


def load_tokenizer_if_present(model_dir: str) -> Any:
    """The base model's tokenizer for the token rules, or None before prepare_model has run."""
    if not Path(model_dir, "tokenizer_config.json").exists():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


# Report --------------------------------------------------------------------------------------------------------


def build_report(results: list[ValidationResult], vparams: ValidateParams) -> dict[str, Any]:
    datasets = {}
    for r in results:
        why = policy_failure(r, vparams)
        status = "failed" if why else "dropped rows" if r.issues else "ok"
        datasets[r.name] = {
            "kind": r.kind, "status": status, "reason": why, "rows": r.n_rows, "kept": len(r.rows),
            "files": r.files, "issues": [asdict(i) for i in r.issues], "notes": r.notes,
            "dropped": [f"{f}:{row}" for f, row in r.dropped] if status == "dropped rows" else [],
        }
    return {"policy": vparams.model_dump(), "datasets": datasets}


def write_report(report: dict[str, Any], html_path: str | Path) -> None:
    html_path = Path(html_path)
    write_json(html_path.with_suffix(".json"), report)
    atomic_write_text(html_path, render_html(report))


CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}
.ok{color:#17702a}.failed{color:#b00020}.dropped{color:#a15c00}code{font-size:12px;white-space:pre-wrap}"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict[str, Any], max_listed: int = 2000) -> str:
    """Self-contained page: per data set a status line, per-file and per-rule summaries, every issue, dropped rows."""
    out = [f"<!doctype html><meta charset=utf-8><title>alignflow validation</title><style>{CSS}</style>",
           "<h1>alignflow data validation</h1>", _table(["setting", "value"], list(report["policy"].items()))]
    for name, ds in report["datasets"].items():
        css = ds["status"].split()[0]
        out.append(f"<h2>{html.escape(name)} ({ds['kind']}): <span class={css}>{ds['status']}</span></h2>")
        out += [f"<p>{html.escape(text)}</p>" for text in [ds["reason"], *ds["notes"]] if text]
        files = [[f, s["format"] or "-", s["rows"], s["kept"], s["issues"]] for f, s in ds["files"].items()]
        out.append(_table(["file", "format", "rows", "kept", "issues"], files))
        by_rule = Counter((i["file"], i["rule"]) for i in ds["issues"])
        if by_rule:
            out.append(_table(["file", "rule", "issues"], [[f, rule, n] for (f, rule), n in sorted(by_rule.items())]))
            listed = [[i["file"], i["row"] or "-", i["field"] or "-", i["rule"], i["message"], _code(i["value"])]
                      for i in ds["issues"][:max_listed]]
            out.append("<h3>Issues</h3>" + _table(["file", "row", "field", "rule", "message", "value"], listed))
            if len(ds["issues"]) > max_listed:
                out.append(f"<p>… {len(ds['issues']) - max_listed} more in the JSON report.</p>")
        if ds["dropped"]:
            out.append(f"<h3>Dropped rows ({len(ds['dropped'])})</h3><p>{html.escape(', '.join(ds['dropped']))}</p>")
    return "\n".join(out)


class _Html(str):
    """Markup that _table must not escape again."""


def _escape(cell: Any) -> str:
    return cell if isinstance(cell, _Html) else html.escape(str(cell))


def _code(value: str | None) -> str:
    return "" if value is None else _Html(f"<code>{html.escape(value)}</code>")


def load_and_validate(kind: str, paths: list[str | Path], params: Params, tokenizer: Any = None) -> list[dict[str, Any]]:
    """For stages that read a user's file (collect_preferences with source: file): normalised rows, or raise.

    Uses params.validate's policy; on any issue writes reports/checks/<kind>-report.html (the error names it).
    """
    vparams = params.validate_params
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer_if_present(params.paths.base_model)
    result = validate_files(kind, paths, vparams, params.data.prompt_template, tokenizer)
    if result.issues:
        report_path = Path(params.paths.reports) / CHECKS_DIR / f"{kind}-report.html"
        write_report(build_report([result], vparams), report_path)
        why = policy_failure(result, vparams)
        if why:
            raise DataValidationError(error_message({result.name: why}, [result], report_path))
    return result.rows


def validate_cli(kind: str, files: list[str], on_error: str | None = None, max_drop_fraction: float | None = None,
                 report: str | Path = CLI_REPORT) -> int:
    """`alignflow validate --kind KIND FILE…`: print a summary, write the report; exit code 0 (usable) or 1."""
    params = load_params() if Path(PARAMS_FILE).exists() else Params()
    update = {k: v for k, v in (("on_error", on_error), ("max_drop_fraction", max_drop_fraction)) if v is not None}
    vparams = ValidateParams.model_validate(params.validate_params.model_dump() | update)
    tokenizer = load_tokenizer_if_present(params.paths.base_model)
    result = validate_files(kind, files, vparams, params.data.prompt_template, tokenizer)
    summary = build_report([result], vparams)
    write_report(summary, report)
    ds = summary["datasets"][result.name]
    for name, stats in result.files.items():
        print(f"{name}: {stats['format'] or 'unknown format'}, {stats['rows']} rows, {stats['kept']} good, "
              f"{stats['issues']} issue(s)")
    for issue in result.issues[:MAX_LISTED]:
        print(f"  {issue}")
    if len(result.issues) > MAX_LISTED:
        print(f"  … and {len(result.issues) - MAX_LISTED} more issue(s)")
    for note in result.notes:
        print(f"note: {note}")
    print(f"{kind}: {ds['status']}" + (f" ({ds['reason']})" if ds["reason"] else "") + f"; report: {report}")
    return 1 if ds["reason"] else 0
