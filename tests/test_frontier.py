"""The reward-vs-KL frontier (tasks/evaluation/frontier.py) against a real MLflow store (sqlite in the tmp project): runs
logged through the stages' own stage_run, in every shape the store holds — pipeline children, top-level runs from
`dvc repro`, runs tagged with their align method — and the join that labels each point with its method."""

from __future__ import annotations

import csv
import time

import pytest

from tasks.evaluation import frontier


@pytest.fixture
def store(project):
    """(client, experiment id, params) for the project's MLflow store."""
    import mlflow

    from tasks.common.params import load_params
    from tasks.common.tracking import configure, tracking_uri

    params = load_params()
    experiment_id = configure(params.pipeline.experiment)
    return mlflow.MlflowClient(tracking_uri()), experiment_id, params


def _stage(params, stage, monkeypatch, parent=None, section=None, metrics=None, tags=None):
    """One stage run as the stage logs it (stage_run: stage tag, params section, parent from the environment)."""
    import mlflow

    from tasks.common.tracking import stage_run

    if parent:
        monkeypatch.setenv("ALIGNFLOW_PARENT_RUN_ID", parent)
    else:
        monkeypatch.delenv("ALIGNFLOW_PARENT_RUN_ID", raising=False)
    time.sleep(0.01)  # start times are in ms: keep the runs strictly ordered
    with stage_run(stage, params, section) as run:
        if tags:
            mlflow.set_tags(tags)
        if metrics:
            mlflow.log_metrics(metrics)
    return run.info.run_id


def _pipeline(client, experiment_id, method, metrics=None):
    """A pipeline parent run as flows/tracking_glue.py leaves it (align.method param, eval metrics copied in)."""
    run = client.create_run(experiment_id, tags={"alignflow.stage": "pipeline"}, run_name="pipeline")
    client.log_param(run.info.run_id, "align.method", method)
    for k, v in (metrics or {}).items():
        client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _point(kl, gold, rm=None):
    m = {"policy/kl_sft": kl, "policy/gold_reward": gold}
    if rm is not None:
        m["policy/rm_score"] = rm
    return m


def test_points_joined_to_their_align_method(store, monkeypatch, tmp_path):
    client, exp, params = store
    # 1. a pipeline run: align (dpo) and evaluate are children; the parent copies the eval metrics (not a point)
    p1 = _pipeline(client, exp, "dpo", metrics=_point(0.5, 0.3, 0.2))
    _stage(params, "align", monkeypatch, parent=p1, section={"method": "dpo"})
    e1 = _stage(params, "evaluate", monkeypatch, parent=p1, metrics=_point(0.5, 0.3, 0.2))
    # 2. `dvc repro` by hand: top-level align (ppo), then evaluate — joined by time order
    _stage(params, "align", monkeypatch, section={"method": "ppo"})
    e2 = _stage(params, "evaluate", monkeypatch, metrics=_point(1.5, 0.1))
    # 3. a tagged evaluate run (this version of evaluate): the tag wins over the ppo align run before it
    e3 = _stage(params, "evaluate", monkeypatch, metrics=_point(0.8, 0.4, 0.6), tags={frontier.TAG: "grpo"})
    # 4. a pipeline run in which align was cached: the parent's own align.method param
    p2 = _pipeline(client, exp, "kto")
    e4 = _stage(params, "evaluate", monkeypatch, parent=p2, metrics=_point(0.2, 0.25))
    # 5. not points: an evaluate run without a gold reward, and a sft stage run
    _stage(params, "evaluate", monkeypatch, metrics={"policy/kl_sft": 0.3, "policy/rm_score": 0.1})
    _stage(params, "sft", monkeypatch, metrics=_point(9.0, 9.0))

    current = _stage(params, "evaluate", monkeypatch, metrics=_point(0.6, 0.35, 0.3))
    metrics = {**_point(0.6, 0.35, 0.3), "sft/gold_reward": 0.05, "sft/rm_score": 0.0}
    points = frontier.collect_points(client, exp, current, metrics, "ppo")

    assert [(p.run_id, p.method, p.kl, p.gold_reward, p.current) for p in points] == [
        (current, "sft", 0.0, 0.05, True),
        (e1, "dpo", 0.5, 0.3, False),
        (e2, "ppo", 1.5, 0.1, False),
        (e3, "grpo", 0.8, 0.4, False),
        (e4, "kto", 0.2, 0.25, False),
        (current, "ppo", 0.6, 0.35, True),  # from its metrics, once (its MLflow copy is left out)
    ]

    out = tmp_path / "plots" / "reward_vs_kl.csv"
    frontier.write_csv(out, points)
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == frontier.COLUMNS
    assert rows[1] == {"run_id": e1, "method": "dpo", "kl": "0.5", "gold_reward": "0.3", "rm_score": "0.2",
                       "current": "0"}
    assert rows[2]["rm_score"] == "" and rows[-1]["current"] == "1" and len(rows) == 6

    png = frontier.plot(points)
    assert png[:4] == b"\x89PNG" and len(png) > 5000
    html = frontier.report_section(points, png, "note")
    assert html.count("<tr>") == 7 and "(this run)" in html and "data:image/png;base64," in html


def test_empty_experiment_and_no_gold(store, tmp_path):
    client, exp, _ = store
    assert frontier.past_points(client, exp) == []
    points = frontier.collect_points(client, exp, "run0", {"policy/kl_sft": 0.1}, "dpo")  # no gold: no points
    assert points == []
    out = tmp_path / "empty.csv"
    frontier.write_csv(out, points)
    assert out.read_text() == ",".join(frontier.COLUMNS) + "\n"  # still a valid dvc plots file
    assert "Not drawn" in frontier.report_section([], None, "Not drawn: no gold")
