"""train_reward: the reward model learns, reloads with its trained head, reproduces by seed, resumes after a kill;
the soft-label loss and the calibration error match worked numbers."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest

from tasks.common.io import read_json, read_jsonl, write_jsonl
from tasks.common.params import load_params
from tests.test_sft import fast_mlflow

GOOD = ["great", "wonderful", "brilliant", "lovely", "superb", "delightful", "charming", "excellent"]
BAD = ["terrible", "boring", "awful", "dull", "tedious", "clumsy", "disappointing", "bad"]
NOUN = ["film", "movie", "story", "plot", "cast", "ending", "music", "script"]


def write_preferences(root: Path, n_train: int = 32, n_eval: int = 8, labels: list[float] | None = None) -> None:
    """Preference pairs in the internal form (what collect_preferences writes), in the tiny tokenizer's words."""

    def row(i: int) -> dict:
        r = {
            "id": f"pair-{i}",
            "prompt": [{"role": "user", "content": f"continue this review : the {NOUN[i % 8]} was"}],
            "chosen": [{"role": "assistant", "content": f"{GOOD[i % 8]} and {GOOD[(i + 3) % 8]} ."}],
            "rejected": [{"role": "assistant", "content": f"{BAD[i % 8]} and {BAD[(i + 5) % 8]} ."}],
            "score_chosen": 0.8,
            "score_rejected": -0.6,
            "source": "gold",
        }
        if labels:
            r["label"] = labels[i % len(labels)]
        return r

    write_jsonl(root / "data/preferences/train.jsonl", [row(i) for i in range(n_train)])
    write_jsonl(root / "data/preferences/eval.jsonl", [row(100 + i) for i in range(n_eval)])


def write_sft_adapter(root: Path, tiny_model_dir: Path) -> None:
    """models/base + a stand-in SFT adapter (random non-zero LoRA B, so merging it visibly moves the backbone)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.common.modeling import write_chain

    shutil.copytree(tiny_model_dir, root / "models/base")
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear"),
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    model.save_pretrained(root / "models/sft")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(root / "models/sft")
    write_chain(root / "models/sft", base="models/base", adapters=["models/sft"])


def setup_reward_project(root: Path, tiny_model_dir: Path, **data) -> Path:
    fast_mlflow(root)
    write_sft_adapter(root, tiny_model_dir)
    write_preferences(root, **data)
    return root


@pytest.fixture
def rm_project(project, tiny_model_dir):
    return setup_reward_project(project, tiny_model_dir)


class Killed(RuntimeError):
    """Stands in for SIGKILL right after a checkpoint was written."""


def _eval_rewards(model_dir: str | Path, fn: str = "raw_rewards") -> tuple[list[float], list[float]]:
    from tasks.common import reward

    model, tok = reward.load_reward_model(model_dir)
    rows = read_jsonl("data/preferences/eval.jsonl")
    prompts = [r["prompt"] for r in rows]
    score = getattr(reward, fn)
    return (
        score(model, tok, prompts, [r["chosen"] for r in rows], batch_size=3),
        score(model, tok, prompts, [r["rejected"][0]["content"] for r in rows], batch_size=5),  # plain text works too
    )


def test_reward_model_trains_reloads_reproduces_and_resumes(rm_project, tiny_model_dir, tmp_path, monkeypatch, caplog):
    from safetensors.torch import load_file
    from trl.trainer.reward_trainer import RewardTrainer

    from tasks.common.modeling import read_chain
    from tasks.common.reward import load_sequence_classifier
    from tasks.common.seeding import seed_everything
    from tasks.train_reward import run_train_reward

    params = load_params()
    metrics = run_train_reward(params)

    # Metrics and curves
    assert 0.0 <= metrics["eval/accuracy"] <= 1.0 and 0.0 <= metrics["eval/ece"] <= 1.0
    assert all(math.isfinite(metrics[k]) for k in ("train/loss", "eval/loss", "eval/reward_mean", "eval/reward_std"))
    assert metrics["train/steps"] == 4
    assert read_json("metrics/train_reward.json") == pytest.approx(metrics)
    curve = Path("plots/train_reward.csv").read_text().splitlines()
    assert curve[0] == "step,train_loss,train_accuracy,eval_loss,eval_accuracy" and len(curve) == 1 + 4

    # Parameters changed: the reward LoRA moved, and the saved head is not the head the seed creates.
    saved = load_file("models/reward/adapter_model.safetensors")
    assert all(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)
    head = [v for k, v in saved.items() if "score" in k]
    assert len(head) == 1
    seed_everything(params.seed)
    initial = load_sequence_classifier("models/base", ["models/sft"], pad_token_id=0).score.weight
    assert not head[0].allclose(initial)

    # Reload: the trained head comes back (a re-initialised head would change every score).
    chain = read_chain("models/reward")
    assert chain["adapters"] == ["models/sft", "models/reward"]
    assert chain["reward_offset"] == pytest.approx(metrics["eval/reward_mean"])
    seed_everything(params.seed + 1)  # a different RNG state on load must not matter
    chosen, rejected = _eval_rewards("models/reward")
    assert sum(chosen + rejected) / len(chosen + rejected) == pytest.approx(metrics["eval/reward_mean"], abs=1e-5)
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)
    assert accuracy == metrics["eval/accuracy"]
    norm_chosen, norm_rejected = _eval_rewards("models/reward", fn="score")
    assert sum(norm_chosen + norm_rejected) == pytest.approx(0.0, abs=1e-4)  # SFT samples average 0
    assert norm_chosen[0] == pytest.approx(chosen[0] - chain["reward_offset"], abs=1e-6)

    # Same seed in a second project, killed right after checkpoint-2, then resumed: the same reward model.
    other = tmp_path / "killed"
    other.mkdir()
    shutil.copy(rm_project / "params.yaml", other / "params.yaml")
    setup_reward_project(other, tiny_model_dir)
    monkeypatch.chdir(other)
    save = RewardTrainer._save_checkpoint

    def save_then_die(self, model, trial):
        save(self, model, trial)
        if self.state.global_step == 2:
            raise Killed("killed after checkpoint-2")

    with monkeypatch.context() as m:
        m.setattr(RewardTrainer, "_save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            run_train_reward(load_params())
    with caplog.at_level(logging.INFO, logger="alignflow"):
        resumed = run_train_reward(load_params())
    assert "resuming from checkpoints/train_reward/checkpoint-2" in caplog.text
    assert resumed["train/steps"] == 4
    again_chosen, again_rejected = _eval_rewards("models/reward")
    # Seeded head + restored optimizer/RNG state: bitwise equal on CPU; the tolerance is for other hardware.
    assert again_chosen == pytest.approx(chosen, abs=1e-5) and again_rejected == pytest.approx(rejected, abs=1e-5)
    for key in ("eval/accuracy", "eval/ece", "eval/reward_mean", "eval/loss"):
        assert resumed[key] == pytest.approx(metrics[key], abs=1e-5), key


def test_soft_bradley_terry_loss_worked_numbers():
    """Δ = ln 3 gives σ(Δ) = 3/4, σ(−Δ) = 1/4.
    p = 1:    −ln(3/4)                          = 0.287682
    p = 3/4:  −(3/4·ln(3/4) + 1/4·ln(1/4))      = 0.215762 + 0.346574 = 0.562335
    p = 1/2 at Δ = 0:  −ln(1/2)                 = 0.693147
    Mean over the three pairs                   = 1.543164 / 3 = 0.514388
    """
    import torch

    from tasks.common.reward import soft_bradley_terry_loss

    def loss(deltas: list[float], p: list[float]) -> float:
        return float(soft_bradley_terry_loss(torch.tensor(deltas), torch.tensor(p)))

    ln3 = math.log(3)
    assert loss([ln3], [1.0]) == pytest.approx(0.287682, abs=1e-6)
    assert loss([ln3], [0.75]) == pytest.approx(0.562335, abs=1e-6)
    assert loss([0.0], [0.5]) == pytest.approx(0.693147, abs=1e-6)
    assert loss([ln3, ln3, 0.0], [1.0, 0.75, 0.5]) == pytest.approx(0.514388, abs=1e-6)


def test_pairs_of_one_prompt_become_one_group():
    """Three pairs over responses A, B, C of one prompt and one pair of another: two groups, each response once."""
    from tasks.common.kwise_reward import group_pairs

    def msg(text):
        return [{"role": "assistant", "content": text}]

    p1, p2 = [{"role": "user", "content": "one"}], [{"role": "user", "content": "two"}]
    rows = [
        {"prompt": p1, "chosen": msg("A"), "rejected": msg("B"), "label": 0.9},
        {"prompt": p2, "chosen": msg("X"), "rejected": msg("Y")},
        {"prompt": p1, "chosen": msg("A"), "rejected": msg("C"), "label": 0.7},
        {"prompt": p1, "chosen": msg("C"), "rejected": msg("B"), "label": 0.6},
    ]
    groups = group_pairs(rows)
    assert [g["responses"] for g in groups] == [[msg("A"), msg("B"), msg("C")], [msg("X"), msg("Y")]]
    assert groups[0]["pairs"] == [(0, 1, 0.9), (0, 2, 0.7), (2, 1, 0.6)]
    assert groups[1]["pairs"] == [(0, 1, 1.0)]  # no label: chosen is better


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_kwise_loss_equals_the_pairwise_loss_from_separate_forwards(rm_project, pooling):
    """One forward per response in the grouped batch gives, for every pair, the soft-label Bradley–Terry term that
    scoring each response alone gives: the grouping changes the cost, not the loss. `mean` is the head applied to the
    mean final hidden state over the response tokens, computed here by hand."""
    import torch
    import torch.nn.functional as F
    from datasets import Dataset
    from trl import RewardConfig

    from tasks.common.kwise_reward import GroupCollator, KWiseRewardTrainer
    from tasks.common.modeling import load_tokenizer
    from tasks.common.reward import load_sequence_classifier

    def msg(text):
        return [{"role": "assistant", "content": text}]

    p1, p2 = [{"role": "user", "content": "the film was"}], [{"role": "user", "content": "the music was"}]
    rows = [
        {"prompt": p1, "chosen": msg("great ."), "rejected": msg("dull and bad ."), "label": 0.9},
        {"prompt": p1, "chosen": msg("great ."), "rejected": msg("boring"), "label": 0.7},
        {"prompt": p1, "chosen": msg("boring"), "rejected": msg("dull and bad ."), "label": 0.6},
        {"prompt": p2, "chosen": msg("lovely lovely ."), "rejected": msg("awful"), "label": 0.8},
    ]
    tok = load_tokenizer("models/sft", padding_side="right")
    model = load_sequence_classifier("models/base", ["models/sft"], tok.pad_token_id)
    trainer = KWiseRewardTrainer(
        model=model, pooling=pooling,
        args=RewardConfig(output_dir="tmp-rm", report_to=[], bf16=False, activation_checkpointing=False,
                          per_device_train_batch_size=2),
        data_collator=GroupCollator(tok.pad_token_id), train_dataset=Dataset.from_list(rows), processing_class=tok,
    )
    trainer.model.score.weight.data.normal_(0, 1.0)  # make Δ clearly non-zero
    assert len(trainer.train_dataset) == 2
    batch = next(iter(trainer.get_train_dataloader()))  # the real path: unused columns removed, then collated
    assert batch["input_ids"].shape[0] == 5  # 3 + 2 responses for 4 pairs
    loss = trainer.compute_loss(trainer.model, dict(batch))

    def alone(prompt, response):
        full = tok.apply_chat_template(prompt + response, tokenize=True, return_dict=True)["input_ids"]
        start = len(tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                            return_dict=True)["input_ids"])
        with torch.no_grad():
            out = trainer.model(input_ids=torch.tensor([full]), output_hidden_states=True)
            if pooling == "last":
                return out.logits[0, 0]
            return trainer.model.score(out.hidden_states[-1][0, start:].mean(0))[0]

    delta = torch.stack([alone(r["prompt"], r["chosen"]) - alone(r["prompt"], r["rejected"]) for r in rows])
    p = torch.tensor([r["label"] for r in rows])
    expected = -(p * F.logsigmoid(delta) + (1 - p) * F.logsigmoid(-delta)).mean()
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    assert float(delta.abs().min()) > 1e-3


def test_mean_pooled_reward_model_trains_saves_and_scores_as_trained(rm_project):
    """train_reward.pooling: mean is recorded in the chain file; the reloaded model scores with it (the held-out
    rewards the stage measured are the ones later stages get)."""
    from tasks.common.modeling import read_chain
    from tasks.train_reward import run_train_reward

    rows = read_jsonl("data/preferences/eval.jsonl")
    for i, r in enumerate(rows):  # gold says chosen; every other pair is a near-tie by gold's score
        r["gold_label"], r["score_rejected"] = 1.0, (r["score_chosen"] - 0.01 if i % 2 else r["score_rejected"])
    write_jsonl("data/preferences/eval.jsonl", rows)
    params = load_params()
    params.train_reward.pooling = "mean"
    metrics = run_train_reward(params)
    assert read_chain("models/reward")["reward_pooling"] == "mean"
    assert metrics["eval/gold_pairs"] == len(rows) and metrics["eval/gold_clear_pairs"] == len(rows) // 2
    chosen, rejected = _eval_rewards("models/reward")
    deltas = [c - r for c, r in zip(chosen, rejected)]
    assert sum(d > 0 for d in deltas) / len(deltas) == pytest.approx(metrics["eval/accuracy"])
    assert sum(deltas) / len(deltas) == pytest.approx(metrics["eval/margin"], abs=1e-4)


def test_expected_calibration_error_worked_numbers():
    """σ(ln 3) = 0.75. Three correct pairs at Δ = ln 3 and one wrong at Δ = −ln 3: in bin [0.7, 0.8) three of four
    outcomes are wins at p = 0.75 (and mirrored in [0.2, 0.3)) -> perfectly calibrated, ECE 0. Four correct pairs at
    Δ = ln 3: every 0.75 is a sure win -> |1 − 0.75| = 0.25 (and the mirror |0 − 0.25|) -> ECE 0.25."""
    from tasks.common.reward import expected_calibration_error

    ln3 = math.log(3)
    assert expected_calibration_error([ln3, ln3, ln3, -ln3]) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error([ln3] * 4) == pytest.approx(0.25)
    assert expected_calibration_error([800.0, -800.0]) == pytest.approx(0.5)  # no overflow; half wrong at p = 1


def test_merge_adapter_changes_the_backbone(rm_project, tmp_path):
    import torch

    from tasks.common.reward import load_sequence_classifier

    base = load_sequence_classifier("models/base", [], pad_token_id=0)
    merged = load_sequence_classifier("models/base", ["models/sft"], pad_token_id=0)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(base.state_dict()[q], merged.state_dict()[q])
    assert torch.equal(base.state_dict()["model.embed_tokens.weight"], merged.state_dict()["model.embed_tokens.weight"])

    # An all-zero adapter (never trained, or keys that matched nothing) is an error, not a silent no-op.
    from safetensors.torch import load_file, save_file

    zero = tmp_path / "zero"
    shutil.copytree("models/sft", zero)
    weights = load_file(zero / "adapter_model.safetensors")
    save_file({k: v * 0 if "lora_B" in k else v for k, v in weights.items()}, zero / "adapter_model.safetensors")
    with pytest.raises(RuntimeError, match="all zeros"):
        load_sequence_classifier("models/base", [zero], pad_token_id=0)


def test_bad_inputs_are_stage_errors(project, tiny_model_dir):
    from tasks.common.stage import StageError
    from tasks.train_reward import run_train_reward

    with pytest.raises(StageError, match="data/preferences/train.jsonl"):
        run_train_reward(load_params())
    write_sft_adapter(project, tiny_model_dir)
    write_preferences(project, labels=[1.5])
    with pytest.raises(StageError, match=r"train.jsonl:1: label 1.5"):
        run_train_reward(load_params())
    write_preferences(project)
    rows = read_jsonl("data/preferences/train.jsonl")
    rows[2]["chosen"] = []
    Path("data/preferences/train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(StageError, match=r"train.jsonl:3: missing or empty chosen"):
        run_train_reward(load_params())


def test_shared_prefix_scoring_matches_the_plain_path(rm_project):
    """Scoring with the common prefix's KV cache shared gives the plain forwards' rewards (fp32 rounding), for
    batches of mixed lengths, including a sequence that is all prefix but its last token."""
    import torch

    from tasks.common.modeling import load_tokenizer
    from tasks.common.prefix_cache import shared_prefix
    from tasks.common.reward import raw_rewards
    from tasks.common.seeding import seed_everything

    seed_everything(0)
    tok = load_tokenizer("models/sft", padding_side="right")
    model = load_sequence_classifier_for_test(tok)
    head = "explain the answer because a kind answer is better"
    prompts = [[{"role": "user", "content": f"{head} {tail}"}] for tail in ("", "a", "b b b", "kind helpful honest")]
    completions = ["sure", "a better answer because", "b", "rewrite the revised response"]
    ids = [tok.apply_chat_template(p + [{"role": "assistant", "content": c}], tokenize=True, return_dict=True)["input_ids"]
           for p, c in zip(prompts, completions)]
    prefix = shared_prefix(ids, 1)
    assert len(prefix) >= 10 and all(x[: len(prefix)] == prefix and len(x) > len(prefix) for x in ids)
    assert shared_prefix(ids, len(prefix) + 1) == [] and shared_prefix(ids[:1], 1) == []
    assert shared_prefix([[1, 2, 3], [1, 2, 3, 4]], 1) == [1, 2]  # the shorter keeps its last token
    for pooling in ("last", "mean"):
        model.config.reward_pooling = pooling
        shared = raw_rewards(model, tok, prompts, completions, batch_size=3, min_shared_prefix=1)
        plain = raw_rewards(model, tok, prompts, completions, batch_size=3, min_shared_prefix=10**6)
        torch.testing.assert_close(torch.tensor(shared), torch.tensor(plain), atol=1e-5, rtol=1e-5)
        assert len(set(shared)) == len(shared)  # a head that ignored its input would pass the comparison trivially


def load_sequence_classifier_for_test(tok):
    from tasks.common.reward import load_sequence_classifier

    return load_sequence_classifier("models/base", ["models/sft"], pad_token_id=tok.pad_token_id).eval()
