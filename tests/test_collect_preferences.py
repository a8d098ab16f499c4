"""collect_preferences on the tiny model: valid best-vs-worst pairs with the gold margin, deterministic under a seed.

Also home of `build_upstream`, which fakes the stages upstream of collect/align/evaluate in a tmp project
(models/base, models/sft as a LoRA chain, data/validated prompts) so these tests do not depend on them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.common.io import read_json, read_jsonl, write_jsonl
from tests.conftest import copy_migrated_mlflow_db

OPENINGS = [
    "the movie was", "i watched this film", "the acting in this movie", "the plot of the story",
    "this comedy is", "my friend and i saw", "the ending was", "the director of this drama",
    "the music and the camera", "two hours of", "the cast is", "i went to the theater",
    "this thriller", "the characters were", "the first scene", "a western about a lighthouse keeper",
]


def build_upstream(root: Path, tiny_model_dir: Path, *, sft_adapter: bool = True, n_train: int = 16,
                   n_eval: int = 8) -> None:
    """models/base (tiny copy), models/sft (base + a perturbed LoRA adapter, or base alone), validated prompts."""
    from tasks.common.modeling import load_tokenizer, write_chain

    copy_migrated_mlflow_db(root)
    shutil.copytree(tiny_model_dir, root / "models/base")
    shutil.copytree(tiny_model_dir, root / "models/judge")  # prepare_judge's output: the AI judge's model
    sft = root / "models/sft"
    if sft_adapter:
        save_lora(root / "models/base", sft, seed=1)
        write_chain(sft, "models/base", ["models/sft"])
    else:
        load_tokenizer(tiny_model_dir).save_pretrained(sft)
        write_chain(sft, "models/base", [])
    template = "Continue this movie review:\n\n{prompt}"

    def rows(prefix: str, n: int) -> list[dict]:
        return [{"id": f"{prefix}-{i}", "prompt": [{"role": "user",
                                                   "content": template.format(prompt=OPENINGS[i % len(OPENINGS)])}]}
                for i in range(n)]

    write_jsonl(root / "data/validated/prompts_train.jsonl", rows("train", n_train))
    write_jsonl(root / "data/validated/prompts_eval.jsonl", rows("eval", n_eval))


def save_lora(model_dir: Path, out_dir: Path, seed: int, scale: float = 0.5) -> None:
    """A LoRA adapter with random non-zero B (a fresh one is the identity), saved with the tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tasks.common.modeling import load_causal_lm, load_tokenizer

    torch.manual_seed(seed)
    model = get_peft_model(load_causal_lm(model_dir), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, scale)
    model.save_pretrained(out_dir)
    load_tokenizer(model_dir).save_pretrained(out_dir)


def write_pairs(root: Path, n_train: int = 12, n_eval: int = 4) -> None:
    """Hand-written gold-style pairs (positive continuation chosen) in data/preferences/."""
    good = ["great fun and a wonderful cast", "brilliant and moving , i loved it", "superb acting , a delight"]
    bad = ["boring and slow , i hated it", "a terrible mess", "awful , dull and disappointing"]

    def rows(prefix: str, n: int) -> list[dict]:
        return [{"id": f"{prefix}-{i}",
                 "prompt": [{"role": "user", "content": f"Continue this movie review:\n\n{OPENINGS[i % 16]}"}],
                 "chosen": [{"role": "assistant", "content": good[i % 3]}],
                 "rejected": [{"role": "assistant", "content": bad[i % 3]}],
                 "score_chosen": 0.8, "score_rejected": -0.7, "label": 1.0, "source": "gold"}
                for i in range(n)]

    for prefix in ("", "hard_"):  # gold labels are all hard: the RM and DPO files hold the same pairs
        write_jsonl(root / f"data/preferences/{prefix}train.jsonl", rows("p", n_train))
        write_jsonl(root / f"data/preferences/{prefix}eval.jsonl", rows("q", n_eval))


@pytest.fixture
def upstream(project, tiny_model_dir):
    build_upstream(project, tiny_model_dir)
    return project


def _gold_params():
    """These tests are about the gold source (the default is ai: tests/test_collect_ai.py)."""
    from tasks.common.params import load_params

    params = load_params()
    params.collect_preferences.source = "gold"
    params.collect_preferences.reward_pairs = "best_worst"  # one pair per prompt; `all` has its own test below
    return params


def _run():
    from tasks.collect_preferences import run_collect_preferences

    return run_collect_preferences(_gold_params())


def test_collect_gold_pairs_are_valid_and_deterministic(upstream):
    from tasks.common.gold import gold_scores

    params = _gold_params()
    cfg = params.collect_preferences
    metrics = _run()

    train = read_jsonl("data/preferences/train.jsonl")
    held_out = read_jsonl("data/preferences/eval.jsonl")
    samples = read_jsonl("data/preferences/samples.jsonl")
    pairs = train + held_out
    assert metrics["collect/pairs"] == len(pairs) > 0
    assert metrics["collect/pairs"] + metrics["collect/dropped_low_margin"] == 16  # all 16 prompts (< max_prompts)
    assert len(samples) == 16 * cfg.samples_per_prompt
    assert held_out and {p["id"] for p in train}.isdisjoint(p["id"] for p in held_out)
    for p in pairs:
        chosen, rejected = p["chosen"][0]["content"], p["rejected"][0]["content"]
        assert chosen != rejected and chosen.strip() and rejected.strip()
        assert p["score_chosen"] >= p["score_rejected"] + cfg.min_margin
        # the stored scores are the gold judge's, and chosen/rejected are the best/worst of the K samples
        assert gold_scores([chosen, rejected]) == [p["score_chosen"], p["score_rejected"]]
        assert p["score_chosen"] == max(p["sample_scores"]) and len(p["sample_scores"]) == cfg.samples_per_prompt
        assert p["label"] == 1.0 and p["source"] == "gold"
    saved = read_json("metrics/collect_preferences.json")
    assert saved["collect/mean_chosen_gold"] > saved["collect/mean_rejected_gold"]
    assert saved["collect/gen_tokens_per_s"] > 0

    # same seed, same files
    first = {f: Path("data/preferences", f).read_text() for f in ("train.jsonl", "eval.jsonl", "samples.jsonl")}
    _run()
    assert first == {f: Path("data/preferences", f).read_text() for f in first}


def test_best_vs_worst_drops_ties_low_margin_and_empty():
    from tasks.collect_preferences import best_vs_worst

    prompt = {"id": "x", "prompt": [{"role": "user", "content": "hi"}]}
    assert best_vs_worst(prompt, ["a", "b"], [0.2, 0.2], 0.0) is None  # tie
    assert best_vs_worst(prompt, ["a", "b"], [0.3, 0.1], 0.3) is None  # margin 0.2 < 0.3
    assert best_vs_worst(prompt, ["", "b"], [0.9, 0.1], 0.1) is None  # empty sample is never paired
    pair = best_vs_worst(prompt, ["a", "b", "c"], [0.1, 0.9, -0.5], 0.3)
    assert pair["chosen"][0]["content"] == "b" and pair["rejected"][0]["content"] == "c"


def test_margin_pairs_all_pairs_above_margin_best_worst_keeps_the_prompt_id():
    from tasks.preferences.pairing import margin_pairs

    prompt = {"id": "x", "prompt": [{"role": "user", "content": "hi"}]}
    rows = margin_pairs(prompt, ["a", "b", "c", "d"], [0.1, 0.9, -0.5, 0.2], 0.3)
    got = {(r["chosen"][0]["content"], r["rejected"][0]["content"]): r for r in rows}
    # |Δ| ≥ 0.3: a-b 0.8, a-c 0.6, b-c 1.4, b-d 0.7, c-d 0.7; a-d 0.1 is below the margin
    assert set(got) == {("b", "a"), ("a", "c"), ("b", "c"), ("b", "d"), ("d", "c")}
    assert got[("b", "c")]["id"] == "x" and got[("b", "c")]["best_worst"] is True
    assert got[("b", "a")]["id"] == "x-01" and got[("b", "a")]["best_worst"] is False
    assert all(r["prompt_id"] == "x" and r["score_chosen"] > r["score_rejected"] for r in rows)
    assert margin_pairs(prompt, ["a", "b"], [0.3, 0.1], 0.3) == []  # best vs worst below the margin: nothing


def test_split_keeps_a_prompts_pairs_together():
    from tasks.collect_preferences import split_pairs

    pairs = [{"id": f"p{i}-{k}", "prompt_id": f"p{i}"} for i in range(20) for k in range(3)]
    train, held_out = split_pairs(pairs, 0.1, seed=42)
    assert len(held_out) == 6 and len({p["prompt_id"] for p in held_out}) == 2
    assert {p["prompt_id"] for p in train}.isdisjoint(p["prompt_id"] for p in held_out)


def test_reward_pairs_all_adds_rm_pairs_and_keeps_the_dpo_pairs(upstream):
    from tasks.collect_preferences import run_collect_preferences

    _run()
    before = {f: read_jsonl(Path("data/preferences", f)) for f in ("train.jsonl", "hard_train.jsonl", "hard_eval.jsonl")}
    params = _gold_params()
    params.collect_preferences.reward_pairs = "all"
    metrics = run_collect_preferences(params)
    train, held_out = read_jsonl("data/preferences/train.jsonl"), read_jsonl("data/preferences/eval.jsonl")
    assert len(train) > len(before["train.jsonl"]) and metrics["collect/train_pairs"] == len(train)
    assert {p["prompt_id"] for p in train}.isdisjoint(p["prompt_id"] for p in held_out)
    # the DPO data are exactly the best-vs-worst pairs of the default
    for name in ("hard_train.jsonl", "hard_eval.jsonl"):
        assert read_jsonl(Path("data/preferences", name)) == before[name]


def test_split_is_deterministic_and_order_free():
    from tasks.collect_preferences import split_pairs

    pairs = [{"id": f"p{i}"} for i in range(20)]
    train, held_out = split_pairs(pairs, 0.1, seed=42)
    assert len(held_out) == 2 and len(train) == 18
    _, held_out2 = split_pairs(list(reversed(pairs)), 0.1, seed=42)
    assert {p["id"] for p in held_out} == {p["id"] for p in held_out2}


def test_no_pairs_is_a_stage_error(upstream):
    from tasks.collect_preferences import run_collect_preferences
    from tasks.common.stage import StageError

    params = _gold_params()
    params.collect_preferences.min_margin = 5.0  # VADER lies in [-1, 1]: nothing can pass
    with pytest.raises(StageError, match="min_margin"):
        run_collect_preferences(params)
    assert not Path("data/preferences").exists()


def test_collect_from_human_file_normalises_and_validates(upstream):
    from tasks.collect_preferences import run_collect_preferences
    from tasks.common.params import load_params
    from tasks.common.stage import StageError

    good = [{"prompt": f"the movie was number {i}", "chosen": "great fun , i loved it", "rejected": "boring mess"}
            for i in range(10)]
    write_jsonl("user_pairs.jsonl", good)
    params = load_params()
    params.collect_preferences.source = "human"
    params.collect_preferences.human_file = "user_pairs.jsonl"
    metrics = run_collect_preferences(params)
    pairs = read_jsonl("data/preferences/train.jsonl") + read_jsonl("data/preferences/eval.jsonl")
    assert metrics["collect/pairs"] == len(pairs) == 10 and metrics["human/agreement_gold"] == 1.0
    assert {p["source"] for p in pairs} == {"human"} and all(p["gold_label"] == 1.0 for p in pairs)
    assert pairs[0]["prompt"][0]["role"] == "user" and pairs[0]["chosen"][0]["role"] == "assistant"
    assert "Continue this movie review" in pairs[0]["prompt"][0]["content"]  # plain text went through the template

    write_jsonl("user_pairs.jsonl", good[:5] + [{"prompt": "x", "chosen": "same", "rejected": "same"}])
    before = Path("data/preferences/train.jsonl").read_text()
    with pytest.raises(StageError, match="user_pairs.jsonl"):
        run_collect_preferences(params)
    assert Path("data/preferences/train.jsonl").read_text() == before  # the previous good output is kept


def test_produced_pairs_go_through_the_preference_suite(project):
    from tasks.collect_preferences import _validate_pairs
    from tasks.common.params import load_params
    from tasks.common.stage import StageError

    msg = [{"role": "user", "content": "Continue this movie review:\n\nthe movie was"}]
    same = [{"role": "assistant", "content": "great"}]
    write_jsonl("pairs.jsonl", [{"id": "a", "prompt": msg, "chosen": same, "rejected": same, "label": 1.0}])
    with pytest.raises(StageError, match="pairs.jsonl"):
        _validate_pairs([Path("pairs.jsonl")], load_params())
