"""align.method rloo / grpo (TRL's trainers with our reward model) through the stage on the tiny pipeline, and the
reward function's score scaling and missing-EOS penalty against worked numbers."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tasks.common.io import read_json
from tests.test_align_ppo import upstream  # noqa: F401  (fixture: validated prompts, models/sft, models/reward)


def _params(method: str):
    from tasks.common.params import load_params

    params = load_params()
    params.align.method = method
    online = params.align.online
    online.steps, online.prompts_per_step, online.num_generations = 2, 2, 2
    online.trainer = {**online.trainer, "save_steps": 1, "bf16": False}
    params.align.ppo.generation.max_new_tokens = 6
    # The tiny model almost never samples EOS within 6 tokens: with the penalty every sample of a group would score
    # −1, all advantages would be 0 and the adapter could not move.
    params.align.ppo.missing_eos_penalty = None
    return params


def _lora_b_max(path: str) -> float:
    weights = load_file(path)
    return max(float(t.abs().max()) for k, t in weights.items() if "lora_B" in k)


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_online_stage_trains_saves_and_resumes(upstream, method):  # noqa: F811
    from tasks.align import run_align
    from tasks.common.modeling import read_chain

    metrics = run_align(_params(method))
    chain = read_chain("models/policy")
    assert chain["method"] == method and chain["adapters"] == ["models/sft", "models/policy"]
    adapter = "models/policy/adapter_model.safetensors"
    assert _lora_b_max(adapter) > 0  # LoRA B starts at 0: non-zero means the policy moved off the SFT model
    assert metrics["train/steps"] == 2 and "train/objective/scores" in metrics and "train/objective/kl" in metrics
    saved = read_json("metrics/align.json")
    assert saved == metrics and all(math.isfinite(v) for v in saved.values())
    curves = Path("plots/align.csv").read_text().splitlines()
    assert curves[0].startswith("step,train_loss,rm_score,non_score_reward,kl,beta") and len(curves) == 3
    assert curves[2].split(",")[0] == "2" and curves[2].split(",")[2] != ""  # rm_score filled
    assert Path("checkpoints/align/checkpoint-2/trainer_state.json").exists()

    # killed after the step-1 checkpoint (= drop checkpoint-2), run again: resumes at step 1, ends where this run did
    continuous = load_file(adapter)
    shutil.rmtree("checkpoints/align/checkpoint-2")
    resumed_metrics = run_align(_params(method))
    resumed = load_file(adapter)
    assert resumed_metrics["train/steps"] == 2 and resumed.keys() == continuous.keys()
    for key in continuous:
        assert resumed[key].allclose(continuous[key], atol=1e-6), key
    assert len(Path("plots/align.csv").read_text().splitlines()) == 3  # step 1's row came back with the checkpoint

    # killed after the FINAL checkpoint (before the outputs were swapped in): nothing left to train, same policy
    # (transformers alone would train a third step here: tasks/common/resume.train stops it)
    shutil.rmtree("models/policy")
    final_metrics = run_align(_params(method))
    assert final_metrics["train/steps"] == 2
    for key, value in load_file(adapter).items():
        assert value.allclose(continuous[key], atol=1e-6), key


def test_reward_fn_scales_scores_and_penalises_missing_eos(tiny_model_dir):
    """Zero score head: raw = 0, so score = raw − offset = −0.3 and the std scale 0.5 gives −0.6. A completion
    whose ids do not end with EOS gets the penalty −1 unscaled (as PPO does); penalty None keeps −0.6."""
    import torch

    from tasks.common.modeling import load_tokenizer
    from tasks.common.reward import load_sequence_classifier, raw_rewards
    from tasks.ppo.trl_online import rm_reward

    tok = load_tokenizer(tiny_model_dir, padding_side="right")
    rm = load_sequence_classifier(tiny_model_dir, [], tok.pad_token_id).eval()
    rm.config.reward_offset = 0.3
    eos = tok.eos_token_id
    prompts = [[{"role": "user", "content": "a review"}]] * 3
    completions = [[{"role": "assistant", "content": text}] for text in ("great fun", "boring", "a b")]
    ids = [[5, 6, eos], [7, 8], []]  # ends with EOS; cut at max length; empty (no EOS either)

    with torch.no_grad():
        rm.score.weight.zero_()
    kwargs = {"eos_token_ids": {eos}, "batch_size": 2}
    assert rm_reward(rm, tok, scale=0.5, missing_eos_penalty=-1.0, **kwargs)(
        prompts, completions, completion_ids=ids, trainer_state=None) == pytest.approx([-0.6, -1.0, -1.0])
    assert rm_reward(rm, tok, scale=0.5, missing_eos_penalty=None, **kwargs)(
        prompts, completions, completion_ids=ids) == pytest.approx([-0.6, -0.6, -0.6])

    with torch.no_grad():  # a non-trivial head: every score is (raw − offset) / scale
        rm.score.weight.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    raw = raw_rewards(rm, tok, prompts, completions)
    assert len(set(raw)) == 3
    got = rm_reward(rm, tok, scale=0.25, missing_eos_penalty=None, **kwargs)(prompts, completions, completion_ids=ids)
    assert got == pytest.approx([(r - 0.3) / 0.25 for r in raw])
