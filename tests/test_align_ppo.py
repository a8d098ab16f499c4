"""align.method ppo through the stage on the tiny pipeline: policy adapter + chain, per-step metrics and curves,
checkpoints, and a run killed after a checkpoint that resumes to the same policy as an uninterrupted run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.common.io import read_json
from tests.test_collect_preferences import build_upstream, write_pairs


@pytest.fixture
def upstream(project, tiny_model_dir):
    from tasks.common.params import load_params
    from tasks.train_reward import run_train_reward

    build_upstream(project, tiny_model_dir)
    write_pairs(project)
    run_train_reward(load_params())
    return project


def _params():
    from tasks.common.params import load_params

    params = load_params()
    params.align.method = "ppo"
    ppo = params.align.ppo
    ppo.steps, ppo.rollout_batch_size, ppo.mini_batch_size, ppo.save_steps = 3, 8, 4, 2
    ppo.generation.max_new_tokens = 6
    return params


def _adapter_bytes() -> bytes:
    return Path("models/policy/adapter_model.safetensors").read_bytes()


def test_ppo_stage_trains_saves_and_resumes(upstream, monkeypatch):
    from tasks.align import run_align
    from tasks.common.modeling import load_causal_lm, read_chain
    from tasks.ppo.trainer import PPOTrainer

    metrics = run_align(_params())
    chain = read_chain("models/policy")
    assert chain["method"] == "ppo" and chain["adapters"] == ["models/sft", "models/policy"]
    assert load_causal_lm("models/policy") is not None
    assert metrics["train/steps"] == 3 and "train/objective/kl" in metrics and "train/policy/clipfrac" in metrics
    assert read_json("metrics/align.json")["train/steps"] == 3
    curves = Path("plots/align.csv").read_text().splitlines()
    assert curves[0].startswith("step,train_loss,rm_score,non_score_reward,kl,beta") and len(curves) == 4
    assert (Path("checkpoints/align/checkpoint-3") / "trainer_state.json").exists()
    uninterrupted = _adapter_bytes()

    # killed right after the step-2 checkpoint, then run again: resumes at step 2, same final policy
    shutil.rmtree("checkpoints/align")
    real_step = PPOTrainer.step

    def dies_at_three(self):
        if self.step_count == 2:
            raise KeyboardInterrupt("killed")
        return real_step(self)

    monkeypatch.setattr(PPOTrainer, "step", dies_at_three)
    with pytest.raises(KeyboardInterrupt):
        run_align(_params())
    assert Path("checkpoints/align/checkpoint-2/trainer_state.json").exists()
    monkeypatch.setattr(PPOTrainer, "step", real_step)
    resumed = run_align(_params())
    assert resumed["train/steps"] == 3 and _adapter_bytes() == uninterrupted
    assert len(Path("plots/align.csv").read_text().splitlines()) == 4  # the history survived the kill


def test_rm_is_the_value_model_with_its_adapter_disabled(upstream):
    """The PPO stage keeps one copy of the RM weights: scores come from the value model with its adapter disabled.
    After the value LoRA and its copy of the head have moved, those scores must still be the RM's."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tasks.common.reward import load_reward_model, score

    prompts = [[{"role": "user", "content": "continue this movie review : the movie was"}]] * 3
    texts = ["great fun", "boring mess", "the acting was fine"]
    rm, tok = load_reward_model("models/reward")
    expected = score(rm, tok, prompts, texts)
    value = get_peft_model(rm, LoraConfig(task_type="SEQ_CLS", modules_to_save=["score"], r=4, lora_alpha=8,
                                          target_modules="all-linear"))
    with torch.no_grad():
        for name, p in value.named_parameters():
            if p.requires_grad:  # what training does to the LoRA weights and the head copy
                p.add_(torch.randn_like(p) * 0.5)
    with value.disable_adapter():
        assert score(value, tok, prompts, texts) == pytest.approx(expected, abs=1e-6)
    assert score(value, tok, prompts, texts) != pytest.approx(expected, abs=1e-3)  # the adapter does act
