"""align on the tiny model, every method: a few steps change the LoRA weights, the policy saves as a chain and
reloads, and the reference is the policy with its adapter disabled (no second copy of the weights)."""

from __future__ import annotations

import csv
import math

import pytest

from tasks.common.io import read_json
from tests.test_collect_preferences import build_upstream, write_pairs


@pytest.fixture
def upstream(project, tiny_model_dir):
    build_upstream(project, tiny_model_dir)
    write_pairs(project)
    return project


def _params(method: str):
    from tasks.common.params import load_params

    params = load_params()
    params.align.method = method
    params.align.trainer["learning_rate"] = 1e-2  # tiny budget: make the 4 steps visibly move the adapter
    return params


@pytest.mark.parametrize("method", ["dpo", "ipo", "robust", "hinge", "kto", "simpo"])
def test_align_method_trains_saves_and_reloads(upstream, method, monkeypatch):
    import torch
    from peft import PeftModel

    from tasks import align
    from tasks.common.modeling import load_causal_lm, read_chain

    trainers = []
    for name, (build, config_kwargs) in align.METHODS.items():
        def spy(*args, _build=build, **kwargs):
            trainer = _build(*args, **kwargs)
            trainers.append(trainer)
            return trainer
        monkeypatch.setitem(align.METHODS, name, (spy, config_kwargs))

    metrics = align.run_align(_params(method))

    trainer = trainers[0]
    params = _params(method)
    expected_loss = {"dpo": ["sigmoid"], "ipo": ["ipo"], "robust": ["robust"], "hinge": ["hinge"], "simpo": ["sigmoid"]}
    if method in expected_loss:  # simpo's loss_type is unused (SimPOTrainer replaces the loss)
        assert trainer.args.loss_type == expected_loss[method]
    assert trainer.args.beta == (params.align.simpo_beta if method == "simpo" else params.align.beta)
    if method == "robust":
        assert trainer.args.label_smoothing == params.align.label_smoothing > 0
    if method == "kto":  # n_D = n_U, so λ_D·n_D / (λ_U·n_U) = 1
        assert trainer.args.desirable_weight == trainer.args.undesirable_weight == 1.0
    assert isinstance(trainer.model, PeftModel)
    if trainer.args.bf16:  # frozen weights stored in bf16, the trained ones fp32 (modeling.mixed_precision_weights)
        assert {(p.requires_grad, p.dtype) for p in trainer.model.parameters()} == {
            (True, torch.float32), (False, torch.bfloat16)}
    assert trainer.ref_model is None  # reference = the same model with the adapter disabled
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["train/steps"] == 4 and "train/loss" in metrics
    if method != "kto":  # KTO logs margins only for batches holding both labels
        assert {"train/rewards/margins", "train/rewards/accuracies", "eval/rewards/accuracies"} <= set(metrics)
    assert read_json("metrics/align.json") == metrics
    with open("plots/align.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {"step", "train_loss"} <= set(rows[0])

    # the chain: base → sft → policy, and the saved adapter is the trained one (non-zero B: a fresh LoRA is zero)
    chain = read_chain("models/policy")
    assert {k: chain[k] for k in ("base", "adapters", "method", "init")} == {
        "base": "models/base", "adapters": ["models/sft", "models/policy"], "method": method, "init": "sft"}
    trained = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_B" in k}
    assert trained and all(v.abs().sum() > 0 for v in trained.values())
    reloaded = load_causal_lm("models/policy", merge_last=False)
    saved = {k.replace(".default", ""): v for k, v in reloaded.named_parameters() if "lora_B" in k}
    for key, value in trained.items():
        torch.testing.assert_close(saved[key.replace(".default", "")], value)

    # the reloaded policy differs from the SFT model, and with its adapter disabled it *is* the SFT model
    ids = torch.tensor([[5, 9, 14, 30, 42, 7]])
    with torch.no_grad():
        sft_logits = load_causal_lm("models/sft")(ids).logits
        assert not torch.allclose(reloaded(ids).logits, sft_logits, atol=1e-4)
        with reloaded.disable_adapter():
            torch.testing.assert_close(reloaded(ids).logits, sft_logits, atol=1e-4, rtol=1e-4)


def test_killed_run_resumes_to_the_same_adapter(upstream):
    """Kill after step 2 (= drop the step-4 checkpoint), re-run: it resumes at step 2 and ends where a run that was
    never interrupted ends."""
    import shutil

    from safetensors.torch import load_file

    from tasks import align

    params = _params("dpo")
    params.align.trainer["save_total_limit"] = 2
    align.run_align(params)
    continuous = load_file("models/policy/adapter_model.safetensors")
    shutil.rmtree("checkpoints/align/checkpoint-4")
    metrics = align.run_align(params)
    resumed = load_file("models/policy/adapter_model.safetensors")
    assert metrics["train/steps"] == 4 and continuous.keys() == resumed.keys()
    for key in continuous:
        assert resumed[key].allclose(continuous[key], atol=1e-5), key


def test_oriented_pairs_and_unpaired():
    from tasks.align import oriented_pairs, unpaired

    a, b, p = [{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}], []
    rows = [{"prompt": p, "chosen": a, "rejected": b, "label": 0.9},
            {"prompt": p, "chosen": a, "rejected": b, "label": 0.2},
            {"prompt": p, "chosen": a, "rejected": b, "label": 0.5}]
    pairs = oriented_pairs(rows)
    assert [x["chosen"] for x in pairs] == [a, b]
    kto = unpaired(pairs, seed=0)
    assert sorted((r["completion"][0]["content"], r["label"]) for r in kto) == [
        ("a", False), ("a", True), ("b", False), ("b", True)]


def test_simpo_loss_worked_example():
    import torch

    from tasks.dpo.simpo import simpo_loss

    loss = simpo_loss(torch.tensor([-1.0]), torch.tensor([-1.5]), beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(0.474077, abs=1e-6)


def test_mixed_precision_weights_keeps_trainable_fp32(tiny_model_dir):
    """A score head under modules_to_save is trainable and would be bf16 after the cast: it is upcast; nothing
    changes without bf16."""
    from types import SimpleNamespace

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from tasks.common.modeling import mixed_precision_weights

    for bf16 in (False, True):
        model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1),
                               LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["q_proj"],
                                          modules_to_save=["score"]))
        mixed_precision_weights(SimpleNamespace(args=SimpleNamespace(bf16=bf16), model=model))
        frozen = torch.bfloat16 if bf16 else torch.float32
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert any("score" in n for n in trainable) and any("lora_A" in n for n in trainable)
        for name, p in model.named_parameters():
            assert p.dtype == (torch.float32 if p.requires_grad else frozen), name
