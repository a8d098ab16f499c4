"""`alignflow compare` (alignflow/compare.py) against a real MLflow store (sqlite in the tmp project): two
pipeline parent runs as tracking_glue leaves them (params.yaml lineage artifact, eval metrics, tags), a stage run
under one of them, and runs that only logged params."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import pytest
import yaml

from alignflow import compare
from alignflow.cli import main

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def _ms(minutes: int) -> int:
    return int(T0.timestamp() * 1000) + minutes * 60_000


@pytest.fixture
def store(project):
    """(client, experiment id, the project's params.yaml as a dict)."""
    from mlflow import MlflowClient

    from tasks.common.params import load_params
    from tasks.common.tracking import configure, tracking_uri

    exp = configure(load_params().pipeline.experiment)
    return MlflowClient(tracking_uri()), exp, yaml.safe_load((project / "params.yaml").read_text())


def _pipeline(client, exp, minutes, params=None, metrics=None, tags=None, logged=None):
    run = client.create_run(exp, start_time=_ms(minutes), tags={"alignflow.stage": "pipeline", **(tags or {})})
    run_id = run.info.run_id
    if params is not None:
        client.log_text(run_id, yaml.safe_dump(params, sort_keys=False), "lineage/params.yaml")
    for k, v in (logged or {}).items():
        client.log_param(run_id, k, v)
    for k, v in (metrics or {}).items():
        client.log_metric(run_id, k, v)
    client.set_terminated(run_id)
    return run_id


@pytest.fixture
def two_runs(store):
    """Run a (dpo, β 0.1, promoted) and run b (ppo, β 0.25, seed 7, not promoted) 30 minutes later."""
    client, exp, raw = store
    b_params = {**raw, "seed": 7, "align": {**raw["align"], "method": "ppo", "beta": 0.25}}
    a = _pipeline(client, exp, 0, raw, tags={"alignflow.promoted": "true"}, metrics={
        "policy/gold_reward": 0.3, "sft/gold_reward": 0.2, "policy/kl_sft": 1.25, "gate/passed": 1.0,
        "train/loss": 0.5})
    b = _pipeline(client, exp, 30, b_params, tags={"alignflow.promoted": "false", "alignflow.align_method": "ppo"},
                  metrics={"policy/gold_reward": 0.45, "sft/gold_reward": 0.2, "guard/reward_hacking": 0.0})
    return client, exp, raw, a, b


def test_collect_shows_only_differing_params(two_runs):
    client, _, raw, a, b = two_runs
    c = compare.collect(client, [a, b])
    assert c.columns == [a[:8], b[:8]]
    assert c.run == {"run_id": [a, b], "start (UTC)": ["2026-11-27 10:00", "2026-11-27 10:30"],
                     "align_method": [None, "ppo"], "promoted": ["true", "false"]}
    assert c.params == {"align.beta": [str(raw["align"]["beta"]), "0.25"],
                        "align.method": [raw["align"]["method"], "ppo"], "seed": [str(raw["seed"]), "7"]}
    assert c.metrics == {"gate/passed": [1.0, None], "guard/reward_hacking": [None, 0.0],
                         "policy/gold_reward": [0.3, 0.45], "policy/kl_sft": [1.25, None],
                         "sft/gold_reward": [0.2, 0.2]}
    assert list(compare.collect(client, [a, b], patterns=["train/*"]).metrics) == ["train/loss"]


def test_markdown_and_csv(two_runs):
    client, _, raw, a, b = two_runs
    c = compare.collect(client, [a, b], patterns=["policy/*"])
    assert compare.to_markdown(c) == "\n".join([
        f"|  | {a[:8]} | {b[:8]} |",
        "|---|---|---|",
        "| **run** |  |  |",
        f"| run_id | {a} | {b} |",
        "| start (UTC) | 2026-11-27 10:00 | 2026-11-27 10:30 |",
        "| align_method | — | ppo |",
        "| promoted | true | false |",
        "| **params** |  |  |",
        "| align.beta | 0.1 | 0.25 |",
        "| align.method | dpo | ppo |",
        "| seed | 42 | 7 |",
        "| **metrics** |  |  |",
        "| policy/gold_reward | 0.3000 | 0.4500 |",
        "| policy/kl_sft | 1.2500 | — |",
    ]) + "\n"
    rows = list(csv.reader(io.StringIO(compare.to_csv(c))))
    assert rows == [
        ["section", "key", a[:8], b[:8]],
        ["run", "run_id", a, b],
        ["run", "start (UTC)", "2026-11-27 10:00", "2026-11-27 10:30"],
        ["run", "align_method", "", "ppo"],
        ["run", "promoted", "true", "false"],
        ["params", "align.beta", "0.1", "0.25"],
        ["params", "align.method", "dpo", "ppo"],
        ["params", "seed", "42", "7"],
        ["metrics", "policy/gold_reward", "0.3", "0.45"],
        ["metrics", "policy/kl_sft", "1.25", ""],
    ]
    text = compare.to_text(c).splitlines()
    assert text[0].split() == [a[:8], b[:8]] and "[params]" in text
    assert text[text.index("[params]") + 1].split() == ["align.beta", "0.1", "0.25"]


def test_stage_run_stands_for_its_pipeline_run(two_runs):
    client, exp, _, a, b = two_runs
    child = client.create_run(exp, start_time=_ms(40), tags={"alignflow.stage": "evaluate",
                                                              "mlflow.parentRunId": b}).info.run_id
    client.log_metric(child, "policy/gold_reward", 0.5)
    c = compare.collect(client, [a, child])
    assert c.run["stage"] == ["pipeline", "evaluate"] and c.run["align_method"] == [None, "ppo"]
    assert c.params == compare.collect(client, [a, b]).params
    assert c.metrics["policy/gold_reward"] == [0.3, 0.5] and c.metrics["guard/reward_hacking"] == [None, 0.0]


def test_logged_params_fallback(store):
    client, exp, _ = store
    runs = []
    for i, beta in enumerate(("0.1", "0.3")):
        run = _pipeline(client, exp, i, logged={"seed": "42", "align.beta": beta})
        child = client.create_run(exp, tags={"alignflow.stage": "align", "mlflow.parentRunId": run}).info.run_id
        client.log_param(child, "align.method", "dpo")
        runs.append(run)
    assert compare.collect(client, runs).params == {"align.beta": ["0.1", "0.3"]}


def test_cli_default_runs_to_csv_file(two_runs, project, capsys, monkeypatch):
    client, _, _, a, b = two_runs
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the CLI sets it; keep it out of other tests
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--format", "csv", "--output", "out/compare.csv", "--metrics", "sft/*"])
    assert exit_.value.code == 0
    assert "wrote out/compare.csv (2 runs)" in capsys.readouterr().out
    rows = list(csv.reader((project / "out" / "compare.csv").open()))
    assert rows[0] == ["section", "key", a[:8], b[:8]]
    assert rows[-1] == ["metrics", "sft/gold_reward", "0.2", "0.2"]

    with pytest.raises(SystemExit) as exit_:
        main(["compare", b, "--format", "markdown"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"|  | {b[:8]} |\n") and "**params**" not in out  # one run: nothing differs


def test_cli_unknown_run_id(two_runs, capsys, monkeypatch):
    _, _, _, a, _ = two_runs
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with pytest.raises(SystemExit) as exit_:
        main(["compare", a, "0123456789abcdef0123456789abcdef"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "alignflow compare: unknown run id '0123456789abcdef0123456789abcdef'" in err

    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--experiment", "nope"])
    assert exit_.value.code == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err
