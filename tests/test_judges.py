"""Judges without HTTP: the local HF judge on the tiny model, the gold and human judges, the both-order arithmetic,
the quality signals and the pairing rules — each against a hand-computed example."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.common.constitution import load_constitution
from tasks.judges.base import Judge, Verdict, combine

CONSTITUTION = load_constitution(Path(__file__).parents[1] / "data" / "constitution.yaml")
PROMPT = [{"role": "user", "content": "continue this review : the movie was"}]


class Scripted(Judge):
    """p(first better) from a table keyed by the first option: exact, so the arithmetic can be checked."""

    identity = "scripted"

    def __init__(self, table, **kw):
        super().__init__(**kw)
        self.table, self.asked = table, []

    def score(self, queries):
        self.asked += [q.first for q in queries]
        return [Verdict(p_first=self.table[q.first], tokens=3, reasoning="because") for q in queries]


def test_both_orders_are_averaged_and_flips_detected():
    # a first: 0.9; b first: 0.3 → p(a) = (0.9 + 1 − 0.3) / 2 = 0.8, disagreement |0.9 − 0.7| = 0.2, no flip
    j = Scripted({"a": 0.9, "b": 0.3}).pairwise(PROMPT, "a", "b", CONSTITUTION.get("positivity"))
    assert (j.p_a, j.p_ab, j.p_ba) == (pytest.approx(0.8), 0.9, 0.3)
    assert j.disagreement == pytest.approx(0.2) and not j.position_flip and j.principle == "positivity"
    assert j.tokens == 6
    # a judge that always prefers the first option: p = ½ after averaging, and the preference flips with the order
    j = Scripted({"a": 0.7, "b": 0.7}).pairwise(PROMPT, "a", "b", None)
    assert j.p_a == pytest.approx(0.5) and j.position_flip and j.principle is None
    assert combine(0.5, 0.5) == (0.5, 0.0, False)


def test_chain_of_thought_labels_are_clamped():
    j = Scripted({"a": 1.0, "b": 0.0}, chain_of_thought=True).pairwise(PROMPT, "a", "b", None)
    assert (j.p_ab, j.p_ba, j.p_a) == (0.6, 0.4, pytest.approx(0.6)) and j.reasoning == ["because", "because"]


def test_cache_answers_repeated_questions(tmp_path):
    from tasks.judges.cache import JudgmentCache

    cache = JudgmentCache(tmp_path / "j.sqlite")
    first = Scripted({"a": 0.9, "b": 0.3}, cache=cache)
    first.pairwise_many([(PROMPT, "a", "b", None)])
    assert first.stats.calls == 2 and len(cache) == 2
    second = Scripted({"a": 0.0, "b": 0.0}, cache=JudgmentCache(tmp_path / "j.sqlite"))  # would answer differently
    j = second.pairwise(PROMPT, "a", "b", None)
    assert second.asked == [] and second.stats.cached == 2 and j.p_a == pytest.approx(0.8) and j.cached == 2
    # a different principle is a different question
    second.pairwise(PROMPT, "a", "b", CONSTITUTION.get("praise"))
    assert sorted(second.asked) == ["a", "b"]


def test_local_judge_on_the_tiny_model(tiny_model_dir, tmp_path):
    from tasks.judges.cache import JudgmentCache
    from tasks.judges.local import LocalJudge, answer_token_ids

    judge = LocalJudge(tiny_model_dir, CONSTITUTION, JudgmentCache(tmp_path / "c.sqlite"), dtype="float32",
                       few_shot=True, batch_size=2)
    assert judge.identity.startswith("local:model@") and answer_token_ids(judge.tokenizer) == judge.letters
    items = [(PROMPT, "great fun", "a boring mess", CONSTITUTION.get("positivity")),
             (PROMPT, "a boring mess", "great fun", CONSTITUTION.get("praise")),
             (PROMPT, "i loved it", "i hated it", None)]
    out = judge.pairwise_many(items)
    for j in out:
        assert 0 < j.p_ab < 1 and 0 < j.p_ba < 1 and j.p_a == pytest.approx((j.p_ab + 1 - j.p_ba) / 2)
        assert j.tokens > 0
    # batched scoring equals one-by-one scoring (left padding does not leak into the answer)
    single = LocalJudge(tiny_model_dir, CONSTITUTION, None, dtype="float32", few_shot=True, batch_size=1)
    again = single.pairwise_many(items)
    assert [j.p_ab for j in again] == pytest.approx([j.p_ab for j in out], abs=1e-5)
    # reasoning first: greedy reasoning is generated, kept, and the label clamped
    cot = LocalJudge(tiny_model_dir, CONSTITUTION, None, chain_of_thought=True, cot_max_new_tokens=5, dtype="float32")
    j = cot.pairwise(*items[0])
    assert 0.4 <= j.p_ab <= 0.6 and 0.4 <= j.p_ba <= 0.6 and all(r is not None for r in j.reasoning)


def test_gold_judge():
    from tasks.judges.rule import GoldJudge

    gold = GoldJudge()
    j = gold.pairwise(PROMPT, "a wonderful , moving film", "a dull , awful mess", CONSTITUTION.get("praise"))
    assert (j.p_a, j.p_ab, j.p_ba, j.position_flip, j.principle) == (1.0, 1.0, 0.0, False, None)
    assert gold.pairwise(PROMPT, "the film", "the movie", None).p_a == 0.5  # equal gold scores: a tie
    with pytest.raises(ValueError, match="no gold judge"):
        GoldJudge("imdb")


def test_gold_preference_is_the_one_rule():
    """The rule every gold comparison calls (judge verdicts, gold_label, agreement with gold, rm_gold_agreement)."""
    from tasks.common.gold import gold_preference

    assert (gold_preference(0.3, -0.1), gold_preference(-0.1, 0.3), gold_preference(0.2, 0.2)) == (1.0, 0.0, 0.5)


def test_quality_signals_hand_computed():
    from tasks.judges.quality import agreement, confidence_histogram, judge_signals

    # pair 3: the AI says ½ (excluded); pair 4: gold tie (excluded) → 2 of 3 compared pairs agree
    assert agreement([0.9, 0.2, 0.5, 0.7, 0.6], [1.0, 1.0, 0.0, 0.5, 1.0]) == (pytest.approx(2 / 3), 3)
    hist = confidence_histogram([0.0, 0.05, 0.5, 0.99, 1.0])
    assert [h["count"] for h in hist] == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2] and sum(h["count"] for h in hist) == 5
    judgments = [
        {"p_a": 0.8, "p_ab": 0.9, "p_ba": 0.3, "disagreement": 0.2, "position_flip": False},
        {"p_a": 0.5, "p_ab": 0.7, "p_ba": 0.7, "disagreement": 0.4, "position_flip": True},
    ]
    s = judge_signals(judgments, hard_threshold=0.1)
    assert s["judge/position_bias_rate"] == 0.5 and s["judge/exact_ties"] == 1 and s["judge/below_threshold"] == 1
    assert s["judge/first_position_rate"] == 0.75  # p_first 0.9, 0.3, 0.7, 0.7: the first option wins 3 of 4
    assert s["judge/mean_disagreement"] == pytest.approx(0.3) and s["judge/mean_confidence"] == pytest.approx(0.15)


def test_pairing_rules():
    from tasks.preferences.pairing import all_pairs, assign_shares, borda_best_worst, to_row

    prompt = {"id": "p1", "prompt": PROMPT}
    pairs = all_pairs(prompt, ["a", "b", "", "c", "c"])  # empty skipped; (c, c) identical: not judged
    assert [(p["a"], p["b"], p["id"]) for p in pairs] == [("a", "b", "p1-01"), ("a", "c", "p1-03"), ("a", "c", "p1-04"),
                                                          ("b", "c", "p1-13"), ("b", "c", "p1-14")]
    # Borda: wins a = 0.9 + 0.6 = 1.5, b = 0.1 + 0.2 = 0.3, c = 0.4 + 0.8 = 1.2 → best a, worst b: pair a-b
    three = all_pairs(prompt, ["a", "b", "c"])
    assert borda_best_worst(three, [0.9, 0.6, 0.2]) == "p1-01"
    assert borda_best_worst(three, [0.1, 0.5, 0.5]) == "p1-01"  # b best (1.4), a worst (0.6): the same pair
    assert borda_best_worst([], []) is None

    shares = assign_shares([f"x{i}" for i in range(100)], {"ai": 3.0, "gold": 1.0}, seed=1)
    assert sum(v == "ai" for v in shares.values()) == 75
    assert shares == assign_shares([f"x{i}" for i in reversed(range(100))], {"ai": 3.0, "gold": 1.0}, seed=1)

    pair = {"id": "q", "prompt": PROMPT, "a": "good", "b": "bad"}
    row = to_row(pair, 0.3, "ai", "judge-x", gold=(0.8, -0.5))  # the judge prefers b: b is chosen, label 0.7
    assert row["chosen"][0]["content"] == "bad" and row["label"] == pytest.approx(0.7)
    assert (row["score_chosen"], row["score_rejected"], row["gold_label"]) == (-0.5, 0.8, 0.0)
    assert to_row(pair, 0.5, "ai", "judge-x", None) is None


def test_contextual_calibration_hand_computed():
    from tasks.judges.local import calibrate_p

    # logit 0.8 − logit 0.6 = ln 4 − ln 1.5 = ln(8/3) → p = (8/3) / (1 + 8/3) = 8/11
    assert calibrate_p(0.8, 0.6) == pytest.approx(8 / 11)
    assert calibrate_p(0.8, 0.5) == pytest.approx(0.8)  # a judge without a prior is left as it is
    assert calibrate_p(0.7, 0.7) == pytest.approx(0.5)  # an answer that is only the prior says nothing
    assert 0 < calibrate_p(1.0, 0.0) < 1  # clipped, never 0/0


def test_calibrated_local_judge_subtracts_the_content_free_prior(tiny_model_dir):
    from tasks.judges.base import Query
    from tasks.judges.local import CONTENT_FREE, LocalJudge, calibrate_p

    raw = LocalJudge(tiny_model_dir, CONSTITUTION, None, dtype="float32", few_shot=False, batch_size=2)
    cal = LocalJudge(tiny_model_dir, CONSTITUTION, None, dtype="float32", few_shot=False, batch_size=2,
                     calibrate=True)
    principle = CONSTITUTION.get("positivity")
    p_raw, p_free = (v.p_first for v in raw.score([Query(PROMPT, "great fun", "a boring mess", principle),
                                                   Query(PROMPT, CONTENT_FREE, CONTENT_FREE, principle)]))
    j = cal.pairwise(PROMPT, "great fun", "a boring mess", principle)
    assert j.p_ab == pytest.approx(calibrate_p(p_raw, p_free), abs=1e-6)
    assert cal.key(Query(PROMPT, "a", "b", None)) != raw.key(Query(PROMPT, "a", "b", None))  # cached apart


def test_pointwise_judge_on_the_tiny_model(tiny_model_dir):
    import math

    from tasks.judges.pointwise import PointwiseJudge

    judge = PointwiseJudge(tiny_model_dir, CONSTITUTION, None, batch_size=3, dtype="float32")
    assert judge.identity.startswith("pointwise:model@")
    items = [(PROMPT, "great fun", "a boring mess", CONSTITUTION.get("positivity")),
             (PROMPT, "i loved it", "great fun", CONSTITUTION.get("positivity")),
             (PROMPT, "i loved it", "i hated it", None)]
    out = judge.pairwise_many(items)
    # 5 distinct (reply, question) ratings for 6 ordered questions: each reply is rated once
    assert judge.rated == 5
    for (_, a, b, pr), j in zip(items, out, strict=True):
        # order-invariant by construction: p_BA = 1 − p_AB, no flip, and p = σ(r_a − r_b)
        assert j.p_ba == pytest.approx(1 - j.p_ab, abs=1e-12) and not j.position_flip and j.disagreement < 1e-12
        r_a, r_b = (judge.ratings[judge._rating_key(PROMPT, x, pr)] for x in (a, b))
        assert j.p_a == pytest.approx(1 / (1 + math.exp(-(r_a - r_b))))
    # batched, right-padded and continued from the shared prefix's cache = one plain forward over the whole question
    import torch

    from tasks.judges.pointwise import RATING_PREFIX, rating_messages

    tok, model = judge.tokenizer, judge.model
    for (_, a, _, pr) in items:
        text = tok.apply_chat_template(rating_messages(PROMPT, a, pr), tokenize=False, add_generation_prompt=True)
        ids = tok(text + RATING_PREFIX, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
        yes, no = (int(x) for x in tok(" yes no", add_special_tokens=False).input_ids)
        assert judge.ratings[judge._rating_key(PROMPT, a, pr)] == pytest.approx(float(logp[yes] - logp[no]), abs=1e-4)
