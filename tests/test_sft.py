"""sft: the adapter learns, eval loss is finite, only completion tokens are trained, and a killed run resumes."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import pytest

from tasks.common.io import read_json, write_jsonl
from tasks.common.params import load_params
from tests.conftest import copy_migrated_mlflow_db

ADJ = ["great", "good", "wonderful", "brilliant", "lovely", "charming", "superb", "moving"]
NOUN = ["film", "movie", "story", "plot", "cast", "ending", "music", "script"]


fast_mlflow = copy_migrated_mlflow_db  # an empty, already-migrated MLflow store (see conftest)


def write_sft_data(root: Path, n: int = 24) -> Path:
    """Conversational prompt/completion rows in the validated form, using only the tiny tokenizer's words."""
    rows = [
        {
            "id": f"sft-{i}",
            "prompt": [{"role": "user", "content": f"continue this review : the {NOUN[i % 8]} was"}],
            "completion": [{"role": "assistant", "content": f"{ADJ[i % 8]} and the cast was {ADJ[(i + 3) % 8]} ."}],
        }
        for i in range(n)
    ]
    path = root / "data" / "cai" / "sft.jsonl"  # what critique_revise hands to sft (pass-through by default)
    write_jsonl(path, rows)
    return path


def setup_sft_project(root: Path, tiny_model_dir: Path, params_from: Path | None = None) -> Path:
    if params_from:
        root.mkdir(parents=True)
        shutil.copy(params_from / "params.yaml", root / "params.yaml")
    fast_mlflow(root)
    write_sft_data(root)
    shutil.copytree(tiny_model_dir, root / "models" / "base")
    return root


@pytest.fixture
def sft_project(project, tiny_model_dir):
    return setup_sft_project(project, tiny_model_dir)


def _adapter(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


class Killed(RuntimeError):
    """Stands in for SIGKILL right after a checkpoint was written."""


def test_sft_trains_resumes_after_kill_and_matches_uninterrupted_run(
    sft_project, tiny_model_dir, tmp_path, monkeypatch, caplog
):
    import torch
    from trl import SFTTrainer

    from tasks.common.modeling import load_causal_lm, read_chain
    from tasks.sft import run_sft

    # Uninterrupted run (its trainer kept for the masking check).
    trainers = []
    train = SFTTrainer.train
    with monkeypatch.context() as m:
        m.setattr(SFTTrainer, "train", lambda self, **kw: trainers.append(self) or train(self, **kw))
        metrics = run_sft(load_params())

    assert math.isfinite(metrics["eval/loss"]) and math.isfinite(metrics["train/loss"])
    assert metrics["train/steps"] == 6 and metrics["train/tokens_per_s"] > 0
    assert read_json("metrics/sft.json") == pytest.approx(metrics)
    curve = Path("plots/sft.csv").read_text().splitlines()
    assert curve[0] == "step,train_loss,eval_loss" and len(curve) == 1 + 6
    # LoRA B starts at zero: a non-zero B everywhere means the optimizer moved every adapter.
    straight = _adapter(Path("models/sft"))
    lora_b = [v for k, v in straight.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)
    assert read_chain("models/sft") == {"base": "models/base", "adapters": ["models/sft"]}
    assert load_causal_lm("models/sft").config.vocab_size > 0  # the chain loads and merges
    assert_completion_only(trainers[0])

    # The same run in a second project, killed right after checkpoint-3 was written, then started again.
    other = setup_sft_project(tmp_path / "killed", tiny_model_dir, params_from=sft_project)
    monkeypatch.chdir(other)
    save = SFTTrainer._save_checkpoint

    def save_then_die(self, model, trial):
        save(self, model, trial)
        if self.state.global_step == 3:
            raise Killed("killed after checkpoint-3")

    with monkeypatch.context() as m:
        m.setattr(SFTTrainer, "_save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            run_sft(load_params())
    assert Path("checkpoints/sft/checkpoint-3/trainer_state.json").exists()
    assert not Path("models/sft").exists()  # nothing half-written

    with caplog.at_level(logging.INFO, logger="alignflow"):
        resumed_metrics = run_sft(load_params())
    assert "resuming from checkpoints/sft/checkpoint-3" in caplog.text
    assert resumed_metrics["train/steps"] == 6
    assert read_json("checkpoints/sft/checkpoint-6/trainer_state.json")["global_step"] == 6
    assert len(Path("plots/sft.csv").read_text().splitlines()) == 1 + 6  # the log history survived the kill
    resumed = _adapter(Path("models/sft"))
    # Same seed, same data order (the resumed dataloader skips the batches already consumed), optimizer, scheduler
    # and RNG states restored from the checkpoint: on CPU the adapters come out bitwise equal; the tolerance only
    # leaves room for non-deterministic kernels on other hardware.
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.allclose(straight[key], resumed[key], rtol=0, atol=1e-6), key
    assert resumed_metrics["eval/loss"] == pytest.approx(metrics["eval/loss"], abs=1e-5)


def assert_completion_only(trainer) -> None:
    """Labels are -100 on every prompt token, the real ids on the completion (end-of-turn token included)."""
    import torch

    tok = trainer.processing_class
    assert trainer.completion_only_loss
    example = trainer.train_dataset[0]
    batch = trainer.data_collator([example])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    n_prompt = next(i for i, label in enumerate(labels.tolist()) if label != -100)
    prompt = tok.decode(ids[:n_prompt])
    assert prompt.startswith("<|im_start|>") and prompt.rstrip().endswith("assistant")
    assert torch.equal(labels[n_prompt:], ids[n_prompt:])
    completion = tok.decode(ids[n_prompt:])
    assert "cast was" in completion and completion.rstrip().endswith("<|im_end|>")  # the model learns to stop


def test_split_is_deterministic_and_disjoint():
    from tasks.sft import split_rows

    rows = [{"i": i} for i in range(50)]
    train, held = split_rows(rows, 0.1, seed=1)
    assert len(held) == 5 and len(train) == 45
    assert {r["i"] for r in train}.isdisjoint(r["i"] for r in held)
    assert split_rows(rows, 0.1, seed=1) == (train, held)
    assert split_rows(rows, 0.1, seed=2)[1] != held


def test_resume_checkpoint_only_on_same_fingerprint(tmp_path, caplog):
    from tasks.common.resume import resume_checkpoint

    ckpt = tmp_path / "ckpt"
    parts = {"sft": {"lora": {"r": 16}}, "seed": 1, "data": "abc"}
    assert resume_checkpoint(ckpt, parts, "sft") is None  # fresh
    for step in (3, 6):
        (ckpt / f"checkpoint-{step}").mkdir()
        (ckpt / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (ckpt / "checkpoint-9").mkdir()  # killed while saving: no trainer_state.json

    with caplog.at_level(logging.INFO, logger="alignflow"):
        assert resume_checkpoint(ckpt, parts, "sft") == str(ckpt / "checkpoint-6")
    assert not (ckpt / "checkpoint-9").exists()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alignflow"):
        assert resume_checkpoint(ckpt, {**parts, "data": "changed"}, "sft") is None
    assert "config changed" in caplog.text and "(data)" in caplog.text
    assert sorted(p.name for p in ckpt.iterdir()) == ["alignflow_fingerprint.json"]


def test_missing_data_is_a_stage_error(project):
    from tasks.common.stage import StageError
    from tasks.sft import run_sft

    with pytest.raises(StageError, match="data/cai/sft.jsonl"):
        run_sft(load_params())


def test_throughput_counts_only_the_steps_this_process_trained():
    """num_tokens is cumulative from step 0; after resuming at step 2 the 4 s runtime covers steps 3-4 only, and a
    run resumed at its last checkpoint trained nothing, so it reports no throughput rather than millions."""
    from tasks.sft import summarize

    history = [{"step": s, "loss": 1.0, "num_tokens": 100 * s} for s in (1, 2, 3, 4)]
    assert summarize(history, {"train_runtime": 4.0}, {}, 4)["train/tokens_per_s"] == 100.0
    assert summarize(history, {"train_runtime": 4.0}, {}, 4, start_step=2)["train/tokens_per_s"] == 50.0
    assert "train/tokens_per_s" not in summarize(history, {"train_runtime": 0.01}, {}, 4, start_step=4)
