"""A short PPO run on the tiny model with a toy reward ("use positive words"): the reward rises while the KL to the
reference stays small, and the loop is deterministic under a seed."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_model import WORDS, build_tiny_model

POSITIVE = {"great", "good", "wonderful", "brilliant", "beautiful", "fun", "best", "love", "loved", "enjoy", "enjoyed",
            "delightful", "charming", "stunning", "moving", "lovely", "excellent", "superb", "amazing", "happy", "joy",
            "bright", "warm", "positive", "yes", "liked", "like", "heartfelt"}
assert POSITIVE <= set(WORDS)


def toy_score(prompts, texts):
    """Share of the response's words that are positive, in [0, 1]."""
    out = []
    for t in texts:
        words = t.split()
        out.append(sum(w in POSITIVE for w in words) / max(1, len(words)))
    return out


@pytest.fixture(scope="module")
def rl_model_dir(tmp_path_factory):
    """The tiny model with larger initial weights: at the default 0.02 its logits are nearly uniform whatever the
    hidden state, so no LoRA on the linear layers can move the policy (measured: KL 0.02 after 25 steps)."""
    return build_tiny_model(tmp_path_factory.mktemp("rl") / "model", initializer_range=0.3)


def build(tiny_model_dir, seed=0, **settings):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from tasks.common.modeling import load_causal_lm, load_tokenizer
    from tasks.common.params import PPOParams
    from tasks.common.seeding import seed_everything
    from tasks.ppo.trainer import PPOTrainer

    seed_everything(seed)
    tok = load_tokenizer(tiny_model_dir)
    policy = get_peft_model(load_causal_lm(tiny_model_dir), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    value = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1)
    value.config.pad_token_id = tok.pad_token_id
    torch.nn.init.zeros_(value.score.weight)
    value = get_peft_model(value, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules="all-linear",
                                             modules_to_save=["score"]))
    prompts = [[{"role": "user", "content": f"continue this review : the movie was number {i}"}] for i in range(32)]
    defaults = dict(missing_eos_penalty=None,  # a random tiny model rarely stops within 8 tokens
                    rollout_batch_size=32, mini_batch_size=16, ppo_epochs=4, learning_rate=1e-2, kl_coef=0.05,
                    generation={"max_new_tokens": 8, "temperature": 1.0, "top_p": 1.0, "top_k": 0})
    return PPOTrainer(policy, value, tok, prompts, toy_score, PPOParams(**{**defaults, **settings}), seed=seed)


def test_ppo_raises_a_toy_reward_while_the_kl_stays_under_target(rl_model_dir):
    trainer = build(rl_model_dir, target_kl=15.0, kl_horizon=200.0)
    # 30 steps: over 15 the toy reward's trend depends on the random stream (measured over seeds 0–2: +0.02 to
    # +0.74); over 30 it is clear (seed 0: 0.14 → 0.43, seed 1: 0.17 → 0.78)
    history = [trainer.step() for _ in range(30)]
    first = sum(h["objective/scores"] for h in history[:3]) / 3
    last = sum(h["objective/scores"] for h in history[-3:]) / 3
    assert last > first + 0.15, [round(h["objective/scores"], 3) for h in history]
    # adaptive β holds the KL around its target, not under it: measured (seed 0) 0 → 6.8 by step 5, 13.5 by step 20,
    # then 12.4–19.2 around the target of 15
    kls = [round(h["objective/kl"], 2) for h in history]
    assert all(k < 15.0 for k in kls[:15]) and all(k < 1.5 * 15.0 for k in kls), kls
    # a stronger fixed KL penalty keeps the policy closer to the reference on the same data and seed
    tight = build(rl_model_dir, kl_coef=1.0)
    tight_history = [tight.step() for _ in range(30)]
    assert tight_history[-1]["objective/kl"] < history[-1]["objective/kl"]
    for h in history:
        assert 0 <= h["policy/clipfrac"] <= 1 and h["policy/approx_kl"] >= 0 and h["policy/entropy"] > 0
        assert h["val/eos_fraction"] >= 0 and h["time/rollout_s"] > 0


def test_adaptive_kl_moves_beta_towards_the_target(rl_model_dir):
    # the first rollout comes from the untouched policy (LoRA B = 0): KL 0, under any target → β shrinks by 20 %·n/H
    trainer = build(rl_model_dir, target_kl=100.0, kl_horizon=100.0)
    stats = trainer.step()
    assert stats["objective/kl"] == pytest.approx(0.0, abs=1e-5)
    assert trainer.kl_ctl.beta == pytest.approx(0.05 * (1 - 0.2 * 32 / 100))
    # once the policy has moved, a KL above the target makes β grow
    greedy = build(rl_model_dir, target_kl=1e-6, kl_horizon=100.0)
    greedy.step()
    beta1 = greedy.kl_ctl.beta
    stats = greedy.step()
    assert stats["objective/kl"] > 1e-6 and greedy.kl_ctl.beta == pytest.approx(beta1 * (1 + 0.2 * 32 / 100))


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_ppo_is_deterministic_under_a_seed(rl_model_dir, estimator):
    a = build(rl_model_dir, seed=3, kl_estimator=estimator).step()
    b = build(rl_model_dir, seed=3, kl_estimator=estimator).step()
    keys = [k for k in a if not k.startswith("time/")]
    assert {k: a[k] for k in keys} == pytest.approx({k: b[k] for k in keys}, nan_ok=True)


def test_resume_after_a_kill_ends_like_an_uninterrupted_run(rl_model_dir, tmp_path):
    straight = build(rl_model_dir, seed=5, target_kl=2.0, kl_horizon=100.0)
    expected = [straight.step() for _ in range(4)]

    first = build(rl_model_dir, seed=5, target_kl=2.0, kl_horizon=100.0)
    for _ in range(2):
        first.step()
    first.save(tmp_path / "ppo_state.pt")
    del first  # "killed"

    resumed = build(rl_model_dir, seed=5, target_kl=2.0, kl_horizon=100.0)
    torch.rand(1000)  # a fresh process would be at another point of the RNG stream: the checkpoint restores it
    resumed.load(tmp_path / "ppo_state.pt")
    got = [resumed.step() for _ in range(2)]
    keys = [k for k in expected[0] if not k.startswith("time/")]
    for want, have in zip(expected[2:], got, strict=True):
        assert {k: have[k] for k in keys} == {k: want[k] for k in keys}
    final = dict(straight.policy.named_parameters())
    for name, p in resumed.policy.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, final[name]), name
    assert resumed.kl_ctl == straight.kl_ctl and resumed.position == straight.position
    with pytest.raises(ValueError, match="seed 5"):
        build(rl_model_dir, seed=6).load(tmp_path / "ppo_state.pt")
