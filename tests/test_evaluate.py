"""evaluate on the tiny model: base/SFT/policy metrics with the expected keys and finite values, a self-contained
report, seeded (repeat runs give identical numbers), KL estimates that agree with an explicit computation, the
reward-hacking guard recomputed from the samples, and the reward-vs-KL frontier across runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tasks.common.io import read_json, read_jsonl
from tests.test_collect_preferences import build_upstream, save_lora


def _policy_upstream(project, tiny_model_dir):
    """Upstream outputs plus a policy: a perturbed LoRA on the SFT model, saved as the chain base → sft → policy
    (method ppo, as align writes it: the frontier labels the point with it)."""
    from tasks.common.modeling import write_chain

    build_upstream(project, tiny_model_dir)
    save_lora(project / "models/sft", project / "models/policy", seed=2)
    write_chain(project / "models/policy", "models/base", ["models/sft", "models/policy"], method="ppo")
    return project


@pytest.fixture
def upstream(project, tiny_model_dir):
    return _policy_upstream(project, tiny_model_dir)


def _run():
    from tasks.common.params import load_params
    from tasks.evaluate import run_evaluate

    return run_evaluate(load_params())


def test_evaluate_writes_metrics_report_and_samples(upstream):
    metrics = _run()

    per_model = ["gold_reward", "gold_reward_ci_low", "gold_reward_ci_high", "response_tokens", "missing_eos",
                 "distinct_1", "distinct_2"]
    expected = {f"{m}/{k}" for m in ("base", "sft", "policy") for k in per_model}
    expected |= {"policy/kl_sft", "policy/kl_sft_k3", "sft/kl_base", "sft/kl_base_k3", "policy/gold_win_rate_vs_sft",
                 "policy/gold_gain_vs_sft", "policy/gold_gain_vs_sft_ci_low", "policy/gold_gain_vs_sft_ci_high"}
    assert expected <= set(metrics)
    assert metrics["policy/gold_gain_vs_sft"] == pytest.approx(metrics["policy/gold_reward"] - metrics["sft/gold_reward"])
    assert not any(k.startswith("guard/") or "rm_gain" in k for k in metrics)  # no reward model: no proxy to guard
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert read_json("metrics/eval.json") == metrics
    for m in ("base", "sft", "policy"):
        assert -1 <= metrics[f"{m}/gold_reward_ci_low"] <= metrics[f"{m}/gold_reward"] <= metrics[
            f"{m}/gold_reward_ci_high"] <= 1
        assert 0 <= metrics[f"{m}/missing_eos"] <= 1 and 0 < metrics[f"{m}/distinct_1"] <= 1
    # the perturbed adapters really move the models away from their references; k3 is never negative
    assert metrics["policy/kl_sft_k3"] > 0 and metrics["sft/kl_base_k3"] > 0

    report = Path("reports/eval/report.html").read_text()
    assert '<table id="metrics">' in report and '<img alt="reward per model" src="data:image/png;base64,' in report
    table = report[report.index('<table id="metrics">'):]
    assert "policy/" not in table[: table.index("</table>")] and "gold_reward" in table
    rows = read_jsonl("reports/eval/samples.jsonl")
    assert len(rows) == 3 * 8 * 2  # models × prompts × samples
    assert Path("reports/eval/gold_reward.png").read_bytes()[:4] == b"\x89PNG"
    assert "<h2>Reward hacking guard</h2>" in report and "Not computed: no reward-model scores" in report
    assert _frontier_rows() == [("sft", "0.0", "1"), ("ppo", repr(metrics["policy/kl_sft"]), "1")]

    assert _run() == metrics  # seeded: identical numbers on a re-run
    # the second run's frontier holds the first run's policy, found in MLflow and labelled from its tag
    assert _frontier_rows() == [("sft", "0.0", "1"), ("ppo", repr(metrics["policy/kl_sft"]), "0"),
                                ("ppo", repr(metrics["policy/kl_sft"]), "1")]
    assert Path("reports/eval/reward_vs_kl.png").read_bytes()[:4] == b"\x89PNG"
    assert 'alt="gold reward vs KL across runs"' in Path("reports/eval/report.html").read_text()


def _frontier_rows() -> list[tuple[str, str, str]]:
    import csv

    with open("plots/reward_vs_kl.csv", newline="") as f:
        return [(r["method"], r["kl"], r["current"]) for r in csv.DictReader(f)]


def test_evaluate_without_policy_or_reward_model(project, tiny_model_dir):
    build_upstream(project, tiny_model_dir, sft_adapter=False)
    metrics = _run()
    assert {k.split("/")[0] for k in metrics} == {"base", "sft", "classifier"}  # no policy: no judge, no gate
    assert metrics["sft/kl_base"] == 0.0  # an SFT chain without adapters is the base model
    assert metrics["sft/gold_reward"] == metrics["base/gold_reward"]


def test_response_logprobs_match_unpadded_forward(upstream):
    """Batched, left-padded scoring equals scoring each sequence alone with logits / temperature."""
    import torch

    from tasks.common.modeling import load_causal_lm, load_tokenizer
    from tasks.evaluation.sampling import response_logprobs

    model, tok = load_causal_lm("models/sft"), load_tokenizer("models/sft")
    prompts, responses = [[4, 20, 31], [4, 20, 31, 40, 41, 42]], [[50, 51, 3], [60]]
    got = response_logprobs(model, tok, prompts, responses, temperature=0.7, batch_size=2)
    for p, r, lp in zip(prompts, responses, got):
        with torch.no_grad():
            logits = model(torch.tensor([p + r])).logits[0, len(p) - 1 : -1] / 0.7
        want = torch.log_softmax(logits, -1).gather(-1, torch.tensor(r)[:, None]).squeeze(-1)
        assert lp == pytest.approx(want.tolist(), abs=1e-5)


def test_report_escapes_html(upstream):
    from tasks.common.io import write_jsonl

    write_jsonl("data/validated/prompts_eval.jsonl",
                [{"id": "x", "prompt": [{"role": "user", "content": "<script>alert(1)</script> the movie"}]}] * 2)
    _run()
    report = Path("reports/eval/report.html").read_text()
    assert "<script>" not in report and "&lt;script&gt;" in report
    json.loads(Path("metrics/eval.json").read_text())


def test_evaluate_scores_with_the_reward_model_when_there_is_one(upstream):
    """Integration with train_reward's interface (tasks/common/reward.py): a tiny RM trained by the real stage."""
    from tasks.common.params import load_params
    from tasks.train_reward import run_train_reward
    from tests.test_collect_preferences import write_pairs

    write_pairs(upstream)
    run_train_reward(load_params())
    metrics = _run()
    for m in ("base", "sft", "policy"):
        assert math.isfinite(metrics[f"{m}/rm_score"])
        assert metrics[f"{m}/rm_score_ci_low"] <= metrics[f"{m}/rm_score"] <= metrics[f"{m}/rm_score_ci_high"]
    rows = read_jsonl("reports/eval/samples.jsonl")
    assert {"model", "text", "gold", "rm"} <= set(rows[0])
    # the RM-vs-gold pair accuracy, recomputed by hand from the per-sample scores
    by = {}
    for r in rows:
        by.setdefault((r["model"], r["prompt_id"]), []).append(r)
    pairs = [(a["gold"] - b["gold"], a["rm"] - b["rm"]) for a, b in by.values() if a["gold"] != b["gold"]]
    pairs = [(g, r) for g, r in pairs if r != 0]
    assert metrics["rm/gold_pairs"] == len(pairs)
    assert metrics["rm/gold_pair_accuracy"] == pytest.approx(sum((g > 0) == (r > 0) for g, r in pairs) / len(pairs))


def test_reward_hacking_guard_recomputed_from_the_samples(upstream):
    """Paired gains policy − SFT per prompt (from samples.jsonl), the flag by its rule, the training RM gain from
    plots/align.csv, and the report section."""
    from tasks.common.metrics import mean_ci
    from tasks.common.params import load_params
    from tasks.train_reward import run_train_reward
    from tests.test_collect_preferences import write_pairs

    write_pairs(upstream)
    run_train_reward(load_params())
    Path("plots").mkdir(exist_ok=True)
    Path("plots/align.csv").write_text("step,train_loss,rm_score\n1,0.5,0.1\n2,0.4,0.3\n3,0.3,0.2\n4,0.2,0.6\n")
    metrics = _run()

    rows = read_jsonl("reports/eval/samples.jsonl")
    gains = {}
    for key in ("rm", "gold"):
        means = {}
        for r in rows:
            means.setdefault((r["model"], r["prompt_id"]), []).append(r[key])
        ids = [r["prompt_id"] for r in rows if r["model"] == "sft" and r["sample"] == 0]
        diffs = [sum(means["policy", i]) / len(means["policy", i]) - sum(means["sft", i]) / len(means["sft", i]) for i in ids]
        gains[key] = mean_ci(diffs)
        got = tuple(metrics[f"policy/{key}_gain_vs_sft{s}"] for s in ("", "_ci_low", "_ci_high"))
        assert got == pytest.approx(gains[key])
    assert metrics["policy/rm_gain_vs_sft"] == pytest.approx(metrics["policy/rm_score"] - metrics["sft/rm_score"])
    assert metrics["guard/reward_hacking"] == float(gains["rm"][1] > 0 and gains["gold"][0] < 0)
    assert metrics["guard/train_rm_gain"] == pytest.approx(0.6 - 0.1)  # last quarter [0.6] − first step

    report = Path("reports/eval/report.html").read_text()
    section = report[report.index("<h2>Reward hacking guard</h2>"):]
    assert "align.method ppo (online RL" in section and "RM score (proxy)" in section
    assert "RM score during training" in section and "+0.500" in section
    assert ("RAISED" if metrics["guard/reward_hacking"] else "Not raised") in section


def test_task_without_gold_uses_the_rm_and_reports_the_labels(upstream):
    """data.gold: none (examples/assistant): no gold metrics, the RM score is plotted, and the report shows the
    preference-label quality from the collect_preferences / train_reward stage metrics."""
    from tasks.common.io import write_json
    from tasks.common.params import load_params
    from tasks.evaluate import run_evaluate
    from tasks.train_reward import run_train_reward
    from tests.test_collect_preferences import write_pairs

    write_pairs(upstream)
    run_train_reward(load_params())
    write_json("metrics/collect_preferences.json", {"collect/pairs": 40, "judge/agreement_gold": 0.625,
                                                   "judge/position_bias_rate": 0.25})
    params = load_params()
    params.data.gold = "none"
    metrics = run_evaluate(params)
    assert not any("gold" in k for k in metrics) and math.isfinite(metrics["policy/rm_score"])
    assert "guard/reward_hacking" not in metrics and math.isfinite(metrics["policy/rm_gain_vs_sft"])
    report = Path("reports/eval/report.html").read_text()
    assert "Not computed: this task has no gold reward (data.gold: none)" in report
    assert "Not drawn: this task has no gold reward" in report and not Path("reports/eval/reward_vs_kl.png").exists()
    assert _frontier_rows() == []  # header only: still a valid `dvc plots` file
    assert "AI judge agreement with gold labels</td><td>0.625" in report
    assert "position-bias rate" in report and "reward model held-out accuracy (vs the training labels)" in report
    assert all(r["gold"] is None for r in read_jsonl("reports/eval/samples.jsonl"))


def test_merged_generation_matches_the_live_adapter(project, tiny_model_dir):
    """Generation with the adapter merged gives the live adapter's greedy tokens, and the weights come back bit for
    bit (a PPO run merges and unmerges once per rollout: rounding must not accumulate in the reference)."""
    import torch

    from tasks.common.modeling import generate, load_causal_lm, load_tokenizer, merged
    from tests.test_collect_preferences import build_upstream

    build_upstream(project, tiny_model_dir)
    model, tok = load_causal_lm("models/sft", merge_last=False), load_tokenizer("models/sft")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prompts = [[{"role": "user", "content": f"review number {i}"}] for i in range(4)]
    live = generate(model, tok, prompts, max_new_tokens=8, temperature=0.0)
    with merged(model):
        fused = generate(model, tok, prompts, max_new_tokens=8, temperature=0.0)
        assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items() if "base_layer" in k)
    assert [[s["ids"] for s in p] for p in fused] == [[s["ids"] for s in p] for p in live]
    for _ in range(3):
        with merged(model):
            pass
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_reference_results_are_reused_only_while_unchanged(upstream, monkeypatch):
    """Base/SFT results come from cache/evaluate/ on a re-run (the SFT chain is not even loaded) and give the same
    metrics as computing them; a changed SFT model is a new key and is computed afresh."""
    from tasks.common import modeling
    from tests.test_collect_preferences import save_lora

    first = _run()
    assert len(list(Path("cache/evaluate").glob("*.json"))) == 1
    loaded = []
    real = modeling.load_causal_lm
    monkeypatch.setattr(modeling, "load_causal_lm", lambda d, *a, **k: loaded.append(str(d)) or real(d, *a, **k))
    assert _run() == first
    assert "models/sft" not in loaded and "models/policy" in loaded

    save_lora(Path("models/base"), Path("models/sft"), seed=7)  # another SFT adapter: another key
    third = _run()
    assert "models/sft" in loaded and len(list(Path("cache/evaluate").glob("*.json"))) == 2
    assert third["sft/kl_base"] != first["sft/kl_base"]


def test_kl_scoring_with_a_shared_prefix_matches_plain_scoring(project, tiny_model_dir):
    """evaluate's response log-probs (prefix KV cache shared, batches grouped by length) equal PPO's plain scoring
    of each whole sequence, for the live adapter and for the reference."""
    import torch

    from tasks.common.logprobs import pack, reference, token_logprobs
    from tasks.common.modeling import generate, load_causal_lm, load_tokenizer
    from tasks.common.prefix_cache import shared_prefix
    from tasks.evaluation.sampling import response_logprobs
    from tests.test_collect_preferences import build_upstream

    build_upstream(project, tiny_model_dir)
    model, tok = load_causal_lm("models/sft", merge_last=False), load_tokenizer("models/sft")
    head = "explain the answer because a kind answer is better than a harmful answer"
    prompts = [[{"role": "user", "content": f"{head} {tail}"}] for tail in ("a", "b b b", "kind helpful", "sure")]
    samples = generate(model, tok, prompts, max_new_tokens=7, num_return_sequences=2, seed=3)
    prompt_ids, response_ids = [], []
    for prompt, per in zip(prompts, samples, strict=True):
        ids = tok(tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False)["input_ids"]
        for s in per:
            prompt_ids.append(ids)
            response_ids.append(list(s["ids"]))
    assert len(shared_prefix(prompt_ids)) >= 8  # the shared path is really taken
    for state in ("policy", "reference"):
        with reference(model) if state == "reference" else torch.inference_mode():
            fast = response_logprobs(model, tok, prompt_ids, response_ids, temperature=0.7, batch_size=3)
            with torch.inference_mode():
                batch = pack(prompt_ids, response_ids, tok.pad_token_id, tok.eos_token_id)
                plain = [row[keep.bool()].tolist()
                         for row, keep in zip(token_logprobs(model, batch, 0.7), batch.mask, strict=True)]
        assert [len(x) for x in fast] == [len(x) for x in plain] == [len(r) for r in response_ids]
        for a, b in zip(fast, plain, strict=True):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-5, rtol=1e-5)
