"""collect_preferences with AI feedback (RLAIF): the local tiny-model judge and the HTTP judge inside the stage.

Both orders are stored per pair, judgments are cached (a second run asks nothing), the soft and hard files follow
the threshold, the quality signals are computed against the gold judge, the API key never reaches a file or
MLflow, and a bad constitution fails the stage before any model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.common.io import read_json, read_jsonl, write_jsonl
from tests.test_collect_preferences import build_upstream
from tests.test_judge_http import KEY_ENV, SECRET, FakeOpenAI

FILES = ("train.jsonl", "eval.jsonl", "hard_train.jsonl", "hard_eval.jsonl", "judgments.jsonl", "samples.jsonl")


@pytest.fixture
def upstream(project, tiny_model_dir):
    build_upstream(project, tiny_model_dir)
    return project


def _params(**collect):
    from tasks.common.params import load_params

    params = load_params()
    for key, value in collect.items():
        setattr(params.collect_preferences, key, value)
    return params


def _run(params):
    from tasks.collect_preferences import run_collect_preferences

    return run_collect_preferences(params)


def test_pointwise_ai_judge_best_vs_worst_soft_pairs_and_cache(upstream):
    params = _params(source="ai", hard_threshold=0.0, reward_pairs="all")  # a random tiny judge is barely confident
    params.collect_preferences.judge.dtype = "float32"
    metrics = _run(params)

    judgments = read_jsonl("data/preferences/judgments.jsonl")
    soft = read_jsonl("data/preferences/train.jsonl") + read_jsonl("data/preferences/eval.jsonl")
    hard = read_jsonl("data/preferences/hard_train.jsonl") + read_jsonl("data/preferences/hard_eval.jsonl")
    label_principles = {"positivity", "praise", "recommendation"}  # on-topic applies to revisions only
    assert judgments and {j["principle"] for j in judgments} <= label_principles
    by_prompt: dict[str, list[dict]] = {}
    for j in judgments:
        by_prompt.setdefault(j["id"].rsplit("-", 1)[0], []).append(j)
        # a pointwise judge has no position: the two orders are the same answer
        assert j["p_ba"] == pytest.approx(1 - j["p_ab"]) and not j["position_flip"] and j["p_a"] == pytest.approx(j["p_ab"])
        assert j["judge"].startswith("pointwise:judge@") and j["gold_p_a"] in (0.0, 0.5, 1.0)
    # one principle per prompt; every pair of the K=3 samples judged (reward_pairs: all keeps them all)
    assert all(len({j["principle"] for j in js}) == 1 and len(js) == 3 for js in by_prompt.values())
    assert metrics["collect/candidate_pairs"] == len(judgments) == 3 * len(by_prompt)
    # every non-tied judgment is a soft row oriented to its preferred side; the DPO rows are each prompt's Borda
    # best vs worst: the winner beats the loser, and each has the highest / lowest summed win probability
    assert len(soft) == sum(j["p_a"] != 0.5 for j in judgments)
    assert all(0.5 < r["label"] <= 1 and r["source"] == "ai" for r in soft)
    assert len(hard) == len(by_prompt) and all(r.get("best_worst") is None for r in hard)
    for r in hard:
        js = by_prompt[r["id"].rsplit("-", 1)[0]]
        wins: dict[str, float] = {}
        for j in js:
            wins[j["a"]] = wins.get(j["a"], 0) + j["p_a"]
            wins[j["b"]] = wins.get(j["b"], 0) + 1 - j["p_a"]
        assert {r["chosen"][0]["content"], r["rejected"][0]["content"]} == {max(wins, key=wins.get),
                                                                              min(wins, key=wins.get)}
    assert all("gold_label" in r and r["score_chosen"] is not None for r in soft)

    n = len(judgments)
    assert metrics["judge/calls"] == 2 * n and metrics["judge/cached"] == 0 and metrics["judge/position_bias_rate"] == 0
    assert 0 <= metrics["judge/agreement_gold"] <= 1 and metrics["judge/agreement_gold_pairs"] <= len(by_prompt)
    assert metrics["judge/agreement_gold_all_pairs"] <= n and metrics["judge/tokens"] > 0
    assert read_json("metrics/collect_preferences.json")["judge/pairs"] == n
    hist = Path("plots/judge_confidence.csv").read_text().splitlines()
    assert hist[0] == "bin_low,bin_high,count" and sum(int(line.split(",")[2]) for line in hist[1:]) == n

    # a re-run (same seed, same samples) answers every question from the cache and writes the same files
    before = {f: Path("data/preferences", f).read_text() for f in FILES}
    again = _run(params)
    assert again["judge/calls"] == 0 and again["judge/cached"] == 2 * n
    assert before == {f: Path("data/preferences", f).read_text() for f in FILES}


def test_letter_judge_asks_both_orders_and_keeps_best_vs_worst(upstream):
    params = _params(source="ai", hard_threshold=0.0, reward_pairs="best_worst")  # one pair per prompt
    judge = params.collect_preferences.judge
    judge.kind, judge.model, judge.dtype = "local", "models/sft", "float32"
    metrics = _run(params)
    judgments = read_jsonl("data/preferences/judgments.jsonl")
    for j in judgments:
        assert j["p_a"] == pytest.approx((j["p_ab"] + 1 - j["p_ba"]) / 2)  # both orders, averaged
        assert j["disagreement"] == pytest.approx(abs(j["p_ab"] - (1 - j["p_ba"])))
        assert j["judge"].startswith("local:sft@")
    assert metrics["judge/calls"] == 2 * metrics["collect/candidate_pairs"]  # every pair asked, both orders
    assert len({j["id"].rsplit("-", 1)[0] for j in judgments}) == len(judgments)  # one kept pair per prompt


def test_http_judge_in_the_stage_key_stays_secret(upstream, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server = FakeOpenAI(mode="longer")
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        params = _params(source="ai", hard_threshold=0.1)
        judge = params.collect_preferences.judge
        judge.kind, judge.model, judge.base_url, judge.api_key_env = "openai", "fake-judge", server.url, KEY_ENV
        judge.backoff_s = 0.01
        metrics = _run(params)
    finally:
        server.shutdown()
    judgments = read_jsonl("data/preferences/judgments.jsonl")
    assert len(server.requests) == metrics["judge/calls"] == 2 * metrics["collect/candidate_pairs"]
    assert all(a == f"Bearer {SECRET}" for a in server.auth)
    for j in judgments:  # the fake judge prefers the longer option, in both orders
        expected = 0.8 if len(j["a"]) > len(j["b"]) else 0.2 if len(j["a"]) < len(j["b"]) else 0.5
        assert j["p_a"] == pytest.approx(expected)
        assert not j["position_flip"] or expected == 0.5
    for path in [*Path(".").rglob("*.jsonl"), *Path(".").rglob("*.json"), Path("mlflow.db"), *Path("cache").glob("*")]:
        assert SECRET.encode() not in path.read_bytes(), path


def test_position_biased_judge_gives_only_ties_and_a_clear_error(upstream):
    server = FakeOpenAI(mode="position")
    import threading

    from tasks.common.stage import StageError

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        params = _params(source="ai")
        judge = params.collect_preferences.judge
        judge.kind, judge.model, judge.base_url = "openai", "fake-judge", server.url
        with pytest.raises(StageError, match="exact ties"):
            _run(params)
    finally:
        server.shutdown()
    assert not Path("data/preferences").exists()  # nothing half-written


def test_mix_shares_pairs_and_measures_ai_against_humans(upstream):
    human = [{"prompt": f"the movie was number {i}", "chosen": "great fun , i loved it", "rejected": "boring mess",
              "labeller": f"ann-{i % 2}"} for i in range(6)]
    write_jsonl("human.jsonl", human)
    params = _params(source="mix", mix={"ai": 1.0, "gold": 1.0}, human_file="human.jsonl", hard_threshold=0.0)
    params.collect_preferences.judge.dtype = "float32"
    metrics = _run(params)
    judgments = read_jsonl("data/preferences/judgments.jsonl")
    by_source = {s: [j for j in judgments if j["source"] == s] for s in ("ai", "gold", "human")}
    assert abs(metrics["collect/ai_prompts"] - metrics["collect/gold_prompts"]) <= 1  # equal shares of the prompts
    assert by_source["ai"] and by_source["gold"]
    assert len(by_source["human"]) == 6 and {j["labeller"] for j in by_source["human"]} == {"ann-0", "ann-1"}
    assert metrics["human/agreement_gold"] == 1.0 and 0 <= metrics["judge/agreement_human"] <= 1
    assert metrics["judge/agreement_human_pairs"] <= 6


def test_bad_constitution_fails_before_sampling(upstream):
    from tasks.common.stage import StageError

    Path("data/constitution.yaml").write_text(
        "name: x\nprinciples:\n  - name: good\n    comparison: Which is better?\n    critique: Why?\n"
        "  - name: other\n    comparison: Which?\n    critique: c\n    revision: r\n"
    )
    with pytest.raises(StageError, match=r"(?s)constitution.yaml.*principles\[0\] \(name: 'good'\)\.revision"):
        _run(_params(source="ai"))
    assert not Path("data/preferences").exists() and not Path("data/preferences/samples.jsonl").exists()


def test_source_needs_what_it_reads(upstream):
    from tasks.common.stage import StageError

    with pytest.raises(StageError, match="human_file"):
        _run(_params(source="human", human_file="missing.jsonl"))
    params = _params(source="gold")
    params.data.gold = "none"
    with pytest.raises(StageError, match="data.gold is none"):
        _run(params)
