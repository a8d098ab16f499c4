"""`alignflow compare-methods`: the table from metrics files (hand-made numbers), the queue-status and exp-show
parsing, the README block, and — slow — two methods run for real as queued DVC experiments on the tiny pipeline."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.test_pipeline_e2e import _sh, make_repo


def _files(gold=0.40, low=0.33, high=0.47, gain=0.25, gain_low=0.15, source="ai"):
    ev = {"policy/gold_reward": gold, "policy/gold_reward_ci_low": low, "policy/gold_reward_ci_high": high,
          "policy/gold_gain_vs_sft": gain, "policy/gold_gain_vs_sft_ci_low": gain_low,
          "policy/gold_gain_vs_sft_ci_high": gain + 0.1, "policy/kl_sft_k3": 0.62, "policy/distinct_2": 0.81,
          "policy/sycophancy_agree_wrong": 0.5, "policy/over_refusal": 0.02,
          "sft/gold_reward": 0.16, "sft/gold_reward_ci_low": 0.09, "sft/gold_reward_ci_high": 0.23,
          "sft/distinct_2": 0.85, "sft/sycophancy_agree_wrong": 0.49, "sft/over_refusal": 0.01}
    collect = ({"collect/ai_prompts": 192, "collect/gold_labelled_pairs": 0, "collect/pairs": 1152, "judge/pairs": 1152}
               if source == "ai" else {"collect/ai_prompts": 0, "collect/gold_labelled_pairs": 0, "collect/pairs": 700})
    return {"eval": ev, "align": {"train/runtime_s": 200.0}, "train_reward": {"train/runtime": 150.0},
            "collect_preferences": collect}


def test_rows_table_and_figure_from_metrics(tmp_path):
    from tasks.evaluation.method_table import method_row, sft_row, to_markdown, write_outputs

    ppo = method_row("ppo_gold_rm", "PPO, gold-labelled RM (RLHF)", _files(source="gold"), uses_rm=True)
    ipo = method_row("ipo", "IPO, AI labels", _files(gold=0.2, low=0.12, high=0.28, gain=0.04, gain_low=-0.05), False)
    missing = method_row("kto", "KTO, AI labels", {"eval": {}}, False)
    assert ppo.train_s == 350.0 and ipo.train_s == 200.0  # the RM's training counts for PPO only
    assert (ppo.human_labels, ppo.judge_labels) == (700, 0) and (ipo.human_labels, ipo.judge_labels) == (0, 1152)
    assert ppo.beats_sft() is True and ipo.beats_sft() is False and missing.status != "ok"
    rows = [sft_row(_files()), ppo, ipo, missing]
    md = to_markdown(rows)
    lines = md.splitlines()
    assert len(lines) == 2 + len(rows)
    assert "| PPO, gold-labelled RM (RLHF) | 0.400 [0.330, 0.470] | **+0.250 [+0.150, +0.350]** | 0.62 |" in md
    assert "| IPO, AI labels | 0.200 [0.120, 0.280] | +0.040 [-0.050, +0.140] |" in md  # not bold: CI crosses 0
    assert "KTO, AI labels | failed: no policy/gold_reward" in md
    written = write_outputs(rows, tmp_path / "reports/compare_methods")
    assert [p.suffix for p in written] == [".md", ".csv", ".png"]
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_lines = written[1].read_text().splitlines()
    assert csv_lines[0].startswith("method,label,status,gold") and len(csv_lines) == 1 + len(rows)


def test_queue_status_and_exp_show_parsing():
    from flows.compare_methods import experiment_metrics, parse_queue_status

    status = """Task     Name              Created    Status
8a3c2f1  cm-1-dpo_ai       05:01 AM   Success
1b2c3d4  cm-1-ipo          05:01 AM   Running
9f8e7d6  cm-1-kto          05:01 AM   Queued
aaaaaaa  other-exp         04:00 AM   Failed

Worker status: 1 active, 0 idle"""
    assert parse_queue_status(status, ["cm-1-dpo_ai", "cm-1-ipo", "cm-1-kto", "cm-1-simpo"]) == {
        "cm-1-dpo_ai": "Success", "cm-1-ipo": "Running", "cm-1-kto": "Queued"}
    show = [{"rev": "workspace", "name": None, "data": {"metrics": {"metrics/eval.json": {"data": {"x": 1}}}}},
            {"rev": "abc", "name": "main", "experiments": [
                {"revs": [{"rev": "def", "name": "cm-1-dpo_ai", "data": {"metrics": {
                    "metrics/eval.json": {"data": {"policy/gold_reward": 0.4}},
                    "metrics/align.json": {"data": {"train/runtime_s": 3.0}}}}}]},
                {"revs": [{"rev": "fed", "name": "cm-1-ipo", "data": {"metrics": {}}, "error": {"msg": "failed"}}]}]}]
    got = experiment_metrics(show, ["cm-1-dpo_ai", "cm-1-ipo"])
    assert got == {"cm-1-dpo_ai": {"eval": {"policy/gold_reward": 0.4}, "align": {"train/runtime_s": 3.0}}}


def test_readme_block_is_replaced_between_its_markers(tmp_path):
    from flows.compare_methods import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{README_START}\nold table\n{README_END}\nafter\n")
    assert update_readme(readme, "| a |\n", "note")
    assert readme.read_text() == f"# x\n\nbefore\n{README_START}\nnote\n\n| a |\n{README_END}\nafter\n"
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, "| a |\n", "note") and plain.read_text() == "no markers\n"


def test_the_shipped_readme_has_the_block():
    from flows.compare_methods import README_END, README_START
    from tests.conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.count(README_START) == 1 and text.index(README_START) < text.index(README_END)


def experiment_params(show, dotted: str, prefix: str = "cm-") -> list:
    """The value of one params.yaml key in every experiment named PREFIX… of `dvc exp show --json`."""
    from flows.compare_methods import experiment_records

    found = []
    for name, data in experiment_records(show):
        if name.startswith(prefix):
            value = data.get("params", {}).get("params.yaml", {}).get("data", {})
            for part in dotted.split("."):
                value = value.get(part, {}) if isinstance(value, dict) else {}
            found.append(value)
    return found


@pytest.mark.slow
def test_two_methods_run_as_queued_dvc_experiments(tmp_path, tiny_model_dir):
    """The real path on the tiny pipeline: `dvc exp run --queue` per method, `dvc queue start`, the wait, the
    metrics from `dvc exp show`, the table/figure files and the MLflow run. The stages the methods share come from
    the committed baseline (its dvc.lock and the DVC cache), not from DVC's run cache, which skips stages with
    persist outputs: with everything up to the reward model reproduced and committed first, each experiment runs
    only align and evaluate."""
    import subprocess

    from mlflow import MlflowClient

    root = make_repo(tmp_path / "repo", tiny_model_dir)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    dvc = str(Path(sys.executable).parent / "dvc")
    for cmd in ([dvc, "repro", "train_reward"], ["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run([sys.executable, "-m", "alignflow.cli", "compare-methods", "--methods", "dpo_ai", "ipo"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[2/2]" in r.stdout and "Failed" not in r.stdout
    md = (root / "reports/compare_methods.md").read_text()
    assert "| DPO, AI labels (RLAIF) |" in md and "| IPO, AI labels |" in md and "failed" not in md
    assert (root / "reports/compare_methods.png").stat().st_size > 1000
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("alignflow-compare-methods")
    runs = client.search_runs([exp.experiment_id])
    summary = [x for x in runs if x.info.run_name == "compare-methods"]
    assert len(summary) == 1 and "dpo_ai/gold" in summary[0].data.metrics and "ipo/kl" in summary[0].data.metrics
    stages = [x.data.tags.get("alignflow.stage") for x in runs if x.info.run_name != "compare-methods"]
    assert stages.count("align") == 2 and stages.count("evaluate") == 2
    assert stages.count("train_reward") == 0 and stages.count("sft") == 0  # reused from the committed baseline
    shown = json.loads(_sh([dvc, "exp", "show", "--json"], root).stdout)
    assert set(experiment_params(shown, "evaluate.gate.enabled")) == {False}  # no comparison run may promote
