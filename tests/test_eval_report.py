"""The evaluation report: arrows that know each metric's good direction, escaping, the markdown summary, the
gate section, and the real page opened in headless Chromium (tables filled, every figure decoded) — both as the
evaluate stage wrote it and as `alignflow report RUN_ID` re-renders it from MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.evaluation import report
from tests.browser import chromium


def _doc(**over):
    per_model = {
        "base": {"gold_reward": 0.1, "gold_reward_ci_low": 0.0, "gold_reward_ci_high": 0.2, "over_refusal": 0.1,
                 "response_tokens": 20.0},
        "sft": {"gold_reward": 0.2, "gold_reward_ci_low": 0.1, "gold_reward_ci_high": 0.3, "over_refusal": 0.1,
                "response_tokens": 25.0, "kl_base": 1.5},
        "policy": {"gold_reward": 0.4, "gold_reward_ci_low": 0.3, "gold_reward_ci_high": 0.5, "over_refusal": 0.3,
                   "response_tokens": 20.0, "kl_sft": 2.0, "judge_win_rate_vs_sft": 0.7},
    }
    doc = {"run": {"run_id": "abc123", "method": "dpo", "eval_set": "e" * 16, "seed": 1, "n_prompts": 2,
                   "samples_per_prompt": 2, "generation": {"temperature": 1.0}},
           "per_model": per_model, "labels": [], "guard": None, "points": [], "curves": {},
           "dists": {n: {"gold": [0.1, 0.2], "response_tokens": [3, 4], "self_bleu": [0.2, 0.4]} for n in per_model},
           "samples": [{"prompt": "<b>p</b>", **{n: {"text": f"<script>{n}</script>", "gold": 0.1, "rm": None}
                                                  for n in per_model}}],
           "gate": {"passed": False, "champion": None, "checks": [
               {"name": "beats_sft", "passed": True, "detail": "0.4 > 0.2"},
               {"name": "over_refusal", "passed": False, "detail": "0.3 − 0.1 = 0.2 > 0.1"}]}}
    doc.update(over)
    return doc


def test_arrows_follow_each_metrics_good_direction():
    assert report.arrow(0.4, 0.2, +1) == ("↑", "up-good")
    assert report.arrow(0.3, 0.1, -1) == ("↑", "up-bad")  # more over-refusal is bad
    assert report.arrow(0.1, 0.3, -1) == ("↓", "down-good")
    assert report.arrow(2.0, 1.0, 0) == ("↑", "flat")  # KL and length: no good direction
    assert report.arrow(0.2, None, +1) == ("", "flat")  # base has no previous model
    assert report.arrow(0.2, 0.2, +1) == ("→", "flat")


def test_metric_table_rows_intervals_and_arrows():
    html = report.metric_table(_doc()["per_model"])
    row = html[html.index('data-metric="gold_reward"'):].split("</tr>")[0]
    assert row.count("<td") == 4  # label + base | sft | policy
    assert "0.400 <small>[0.300, 0.500]</small>" in row and 'class="up-good"' in row
    refusal = html[html.index('data-metric="over_refusal"'):].split("</tr>")[0]
    assert 'class="up-bad"' in refusal  # the policy refuses more safe prompts than SFT
    judge = html[html.index('data-metric="judge_win_rate_vs_sft"'):].split("</tr>")[0]
    assert judge.count("—") == 2  # only the policy has a win rate over SFT
    assert html.index("Reward") < html.index("Judge") < html.index("Drift") < html.index("Over-refusal")


def test_page_escapes_model_text_and_states_the_gate():
    page = report.render_html(_doc())
    assert "<script>policy</script>" not in page and "&lt;script&gt;policy&lt;/script&gt;" in page
    assert "&lt;b&gt;p&lt;/b&gt;" in page
    assert "Failed: not promoted (over_refusal)" in page
    md = report.render_markdown(_doc())
    assert "**Not promoted: over_refusal** (no champion to compare with)" in md
    assert "| over_refusal | ✗ | 0.3 − 0.1 = 0.2 > 0.1 |" in md
    line = next(x for x in md.splitlines() if x.startswith("| gold reward"))
    assert line == "| gold reward (the task's ground truth) | 0.100 | 0.200 ↑ | 0.400 ↑ |"


def test_page_without_policy_says_the_gate_was_not_evaluated():
    doc = _doc(gate=None)
    del doc["per_model"]["policy"]
    page = report.render_html(doc)
    assert "Not evaluated: no policy model" in page and "<th>policy</th>" not in page


def _check_page(driver, path: Path) -> dict:
    """What a reader sees: the metric table per model, every figure decoded, the gate, the samples."""
    from selenium.webdriver.common.by import By

    driver.get(path.resolve().as_uri())
    assert driver.title.startswith("alignflow evaluation")
    heads = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#metrics tr:first-child th")]
    assert heads == ["metric", "base", "sft", "policy"]
    rows = {r.get_attribute("data-metric"): [td.text for td in r.find_elements(By.TAG_NAME, "td")]
            for r in driver.find_elements(By.CSS_SELECTOR, "#metrics tr[data-metric]")}
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0]);")
    assert len(images) >= 4 and all(ok for _, ok in images), images
    gate = driver.find_element(By.ID, "gate").find_element(By.XPATH, "following-sibling::p").text
    samples = driver.find_elements(By.CSS_SELECTOR, "#samples tr")
    assert len(samples) > 1
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    return {"rows": rows, "images": [a for a, _ in images], "gate": gate}


@pytest.mark.slow
def test_report_in_headless_chromium_and_rerendered_from_mlflow(project, tiny_model_dir):
    from tasks.common.params import load_params
    from tasks.evaluate import run_evaluate
    from tests.test_evaluate import _policy_upstream

    _policy_upstream(project, tiny_model_dir)
    Path("plots").mkdir(exist_ok=True)  # the align stage's curves, as PPO writes them
    Path("plots/align.csv").write_text("step,rm_score,kl,beta\n1,0.1,0.0,0.05\n2,0.3,0.4,0.05\n3,0.5,0.9,0.05\n")
    metrics = run_evaluate(load_params())
    with chromium() as driver:
        seen = _check_page(driver, Path("reports/eval/report.html"))
        for key in ("gold_reward", "kl_sft", "distinct_2", "self_bleu", "embedding_diversity", "over_refusal",
                    "unsafe_compliance", "sycophancy_flip_rate", "sycophancy_agree_wrong", "boilerplate_rate",
                    "judge_win_rate_vs_sft", "judge_win_rate_vs_base"):
            assert key in seen["rows"], key
        # the policy's gold reward as the page prints it, with its interval
        assert seen["rows"]["gold_reward"][3].startswith(f"{metrics['policy/gold_reward']:.3f} [")
        assert {"reward per model", "reward and KL over training", "length and diversity histograms"} <= set(
            seen["images"])
        assert seen["gate"].startswith(("Passed", "Failed"))

        # `alignflow report RUN_ID` from the pipeline-less evaluate run: same table, same figures
        import mlflow

        from alignflow.cli import main
        from tasks.common.tracking import tracking_uri

        run_id = mlflow.MlflowClient(tracking_uri()).search_runs(
            ["0", *[e.experiment_id for e in mlflow.search_experiments()]],
            filter_string="tags.`alignflow.stage` = 'evaluate'", max_results=1)[0].info.run_id
        with pytest.raises(SystemExit) as exit_:
            main(["report", run_id])
        assert exit_.value.code == 0
        again = _check_page(driver, Path("reports/runs") / run_id / "report.html")
        assert again["rows"] == seen["rows"] and again["images"] == seen["images"]
    data = json.loads(Path("reports/eval/report_data.json").read_text())
    assert data["run"]["run_id"] == run_id and data["metrics"] == metrics


def test_page_says_when_the_judge_is_uninformative_next_to_its_win_rate():
    doc = _doc(judge={"identity": "local:base", "tie_margin": 0.05, "uninformative": {}})
    assert "uninformative" not in report.render_html(doc)
    doc["judge"]["uninformative"] = {"sft": ["agrees with gold on 52% of these pairs (< min_agreement_gold 60%)"]}
    page = report.render_html(doc)
    assert "The judge is uninformative on this run's own pairs (policy vs sft): it agrees with gold on 52%" in page
    assert "the promotion gate does not use it" in page
    # the note sits right after the metrics table, where the win rates are
    assert page.index("<h2>Metrics</h2>") < page.index("uninformative") < page.index("<h2>Reward</h2>")
