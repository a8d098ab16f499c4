"""The validate stage: GX column rules, the fail/drop policy, the report, and the stage's files-in/files-out contract.

Column-level bad inputs (missing/empty/over-long text, chosen == rejected, duplicates, label ranges, label balance,
token bounds) must come back naming file, row, field and rule; a failed run leaves data/validated untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.common.params import ValidateParams, load_params
from tasks.common.validation import DataValidationError, load_and_validate, validate_cli, validate_files
from tasks.validate import run_validate
from tests.test_records import write_rows

TEMPLATE = "{prompt}"


def issues_text(result) -> str:
    return "\n".join(str(i) for i in result.issues)


def check(tmp_path, kind, rows, name="data.jsonl", tokenizer=None, **vparams):
    path = write_rows(tmp_path / name, rows)
    return validate_files(kind, [path], ValidateParams(**vparams), TEMPLATE, tokenizer), path


def pairs(n: int) -> list[dict]:
    return [{"prompt": f"prompt {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(n)]


# Column rules (great-expectations) ------------------------------------------------------------------------------


def test_clean_data_has_no_issues(tmp_path):
    result, _ = check(tmp_path, "preference", pairs(5))
    assert not result.issues and len(result.rows) == 5 and result.n_rows == 5


def test_preference_column_rules(tmp_path):
    rows = pairs(3) + [
        {"prompt": "p4", "chosen": "same", "rejected": "same"},
        {"prompt": "  ", "chosen": "a", "rejected": "b"},
        {"prompt": "p6", "rejected": "b"},
        {"prompt": "p7", "chosen": "x" * 50, "rejected": "b"},
        {"prompt": "prompt 0", "chosen": "good 0", "rejected": "bad 0"},
        {"prompt": "p9", "chosen": "a", "rejected": "b", "label": 1.5, "score_chosen": "high"},
        {"prompt": "p10", "chosen": "a", "rejected": "b", "label": "yes"},
        {"id": "data-1", "prompt": "p11", "chosen": "a", "rejected": "b"},
    ]
    result, path = check(tmp_path, "preference", rows, max_chars=40)
    text = issues_text(result)
    assert f"{path}:4: field 'rejected': chosen_equals_rejected (chosen and rejected are the same text)" in text
    assert f"{path}:5: field 'prompt': empty (empty text)" in text
    assert f"{path}:6: field 'chosen': missing (required field is missing)" in text
    assert f"{path}:7: field 'chosen': max_chars (50 characters, over validate.max_chars=40)" in text
    assert f"{path}:8: duplicate (same content as {path}:1)" in text
    assert f"{path}:9: field 'label': label (soft label 1.5 is outside [0, 1])" in text
    assert f"{path}:9: field 'score_chosen': type (score must be a number, got 'high')" in text
    assert f"{path}:10: field 'label': type (soft label must be a number, got 'yes')" in text
    assert f"{path}:11: field 'id': duplicate_id (id already used at {path}:1)" in text
    assert sorted(row for _, row in result.dropped) == list(range(4, 12))
    assert [r["id"] for r in result.rows] == ["data-1", "data-2", "data-3"]


def test_kto_labels_and_balance(tmp_path):
    rows = [{"prompt": f"p{i}", "completion": f"c{i}", "label": True} for i in range(3)]
    result, path = check(tmp_path, "kto", rows + [{"prompt": "p", "completion": "c", "label": 2}])
    text = issues_text(result)
    assert f"{path}:4: field 'label': label (KTO label must be true/false or 1/0, got 2)" in text
    assert f"{path}: field 'label': label_balance (fraction of desirable (true) labels is 1;" in text

    rows = [{"prompt": "a", "completion": "b", "label": 1}, {"prompt": "c", "completion": "d", "label": False}]
    assert not check(tmp_path, "kto", rows, name="ok.csv")[0].issues


def test_token_bounds_and_special_tokens(tmp_path, tiny_model_dir):
    from tasks.common.modeling import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    rows = [{"prompt": "the film", "completion": "good"}, {"prompt": "the film " * 10, "completion": "good"},
            {"prompt": "the film", "completion": "good<|im_end|>"}]
    result, path = check(tmp_path, "sft", rows, tokenizer=tok, max_tokens=8)
    text = issues_text(result)
    assert f"{path}:2: field 'prompt': max_tokens (20 tokens, over validate.max_tokens=8)" in text
    assert f"{path}:3: field 'completion': special_tokens (contains a special token of the tokenizer" in text
    assert not result.notes and [r["id"] for r in result.rows] == ["data-1"]


def test_duplicates_are_found_across_files(tmp_path):
    a = write_rows(tmp_path / "a.jsonl", [{"prompt": "same"}])
    b = write_rows(tmp_path / "b.parquet", [{"prompt": "other"}, {"prompt": "same"}])
    result = validate_files("prompts", [a, b], ValidateParams(), TEMPLATE)
    assert issues_text(result) == f"{b}:2: duplicate (same content as {a}:1)"
    assert result.files[str(b)] == {"format": "prompt-only", "rows": 2, "kept": 1, "issues": 1}


# Policy and report ---------------------------------------------------------------------------------------------


def write_bad_pairs(root: Path, n_good: int, n_bad: int) -> Path:
    rows = pairs(n_good) + [{"prompt": f"x{i}", "chosen": "<script>same</script>", "rejected": "<script>same</script>"}
                            for i in range(n_bad)]
    return write_rows(root / "pairs.jsonl", rows)


def test_fail_policy_raises_naming_rows_and_the_report(project):
    path = write_bad_pairs(project, 5, 25)
    with pytest.raises(DataValidationError) as err:
        load_and_validate("preference", [path], load_params())
    msg = str(err.value)
    assert f"{path}: 25 issue(s) in 25 of 30 rows (validate.on_error=fail)" in msg
    assert f"  {path}:6: field 'rejected': chosen_equals_rejected (chosen and rejected are the same text)" in msg
    assert "… and 5 more issue(s)" in msg and msg.count("chosen_equals_rejected") == 20
    assert msg.endswith("Full report: reports/checks/preference-report.html")
    page = Path("reports/checks/preference-report.html").read_text()
    assert "&lt;script&gt;same&lt;/script&gt;" in page and "<script>" not in page


def test_drop_policy_within_and_over_the_fraction(project):
    from tests.conftest import tiny_params, write_params

    write_params(project, tiny_params("unused", validate={"on_error": "drop", "max_drop_fraction": 0.1}))
    path = write_bad_pairs(project, 18, 2)
    pairs_kept = load_and_validate("preference", [path], load_params())
    assert len(pairs_kept) == 18
    report = json.loads(Path("reports/checks/preference-report.json").read_text())
    dataset = report["datasets"][str(path)]
    assert dataset["status"] == "dropped rows" and dataset["dropped"] == [f"{path}:19", f"{path}:20"]
    assert f"{path}:19, {path}:20" in Path("reports/checks/preference-report.html").read_text()

    path = write_bad_pairs(project, 17, 3)
    with pytest.raises(DataValidationError, match=r"3 of 20 rows \(15.0%\) are bad, more than validate.max_drop_fraction=0.1"):
        load_and_validate("preference", [path], load_params())


def test_cli_without_params_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    good = write_rows(tmp_path / "good.csv", pairs(3))
    bad = write_bad_pairs(tmp_path, 3, 1)
    assert validate_cli("preference", [str(good)]) == 0
    assert validate_cli("preference", [str(bad)]) == 1
    out = capsys.readouterr().out
    assert "good.csv: standard, 3 rows, 3 good, 0 issue(s)" in out
    assert f"{bad}:4: field 'rejected': chosen_equals_rejected" in out
    assert "report: reports/checks/cli-report.html" in out and Path("reports/checks/cli-report.html").exists()
    assert validate_cli("preference", [str(bad)], on_error="drop", max_drop_fraction=0.5) == 0


# The stage -----------------------------------------------------------------------------------------------------


def ensure_raw_data(root: Path) -> None:
    """The shipped data/raw when present; otherwise a small stand-in (only inside the temporary project)."""
    raw = root / "data" / "raw"
    if not (raw / "sft.jsonl").exists():
        raw.mkdir(parents=True, exist_ok=True)
        write_rows(raw / "prompts_train.jsonl", [{"prompt": f"The film {i} was"} for i in range(20)])
        write_rows(raw / "prompts_eval.jsonl", [{"prompt": f"The movie {i} is"} for i in range(5)])
        write_rows(raw / "sft.jsonl", [{"prompt": f"Film {i}.", "completion": "I loved it."} for i in range(10)])


def test_run_validate_writes_validated_data_and_a_failure_leaves_it_untouched(project, tiny_model_dir):
    import mlflow

    ensure_raw_data(project)
    shutil.copytree(tiny_model_dir, project / "models" / "base")  # so the token rules run
    params = load_params()
    metrics = run_validate(params)

    validated = project / "data" / "validated"
    n_sft = sum(1 for line in Path("data/raw/sft.jsonl").read_text().splitlines() if line.strip())
    sft = [json.loads(line) for line in (validated / "sft.jsonl").read_text().splitlines()]
    assert len(sft) == n_sft == metrics["validate/sft/rows"] and metrics["validate/issues"] == 0
    assert sft[0]["prompt"][0]["role"] == "user" and sft[0]["completion"][0]["role"] == "assistant"
    assert json.loads(Path("metrics/validate.json").read_text()) == metrics
    assert Path("reports/validate/report.html").exists()
    run = mlflow.search_runs(experiment_names=[params.pipeline.experiment], output_format="list")[0]
    assert run.info.status == "FINISHED" and run.data.metrics["validate/rows"] == metrics["validate/rows"]
    before = {p.name: p.read_bytes() for p in validated.iterdir()}

    with open("data/raw/sft.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"prompt": "A film", "completion": ""}\n{"prompt": "broken"\n')
    with pytest.raises(DataValidationError) as err:
        run_validate(params)
    assert f"data/raw/sft.jsonl:{n_sft + 1}: field 'completion': empty (empty text)" in str(err.value)
    assert f"data/raw/sft.jsonl:{n_sft + 2}: json (malformed JSON" in str(err.value)
    assert {p.name: p.read_bytes() for p in validated.iterdir()} == before
    report = json.loads(Path("reports/validate/report.json").read_text())
    assert report["datasets"]["sft"]["status"] == "failed" and report["datasets"]["prompts_train"]["status"] == "ok"
