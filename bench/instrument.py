"""Measurement hooks, installed in a benchmark worker process only (never in the product).

The alignflow side of a workload calls the product's own stage code, which builds its trainer or calls `generate`
inside; to time exactly the same span on both sides without editing the product, the worker wraps a few library
and product entry points for the lifetime of one measurement:

- TRL trainers: the window opens when the outermost trainer `__init__` starts (TRL tokenises the data set there,
  and DPO precomputes the reference log-probs there) and closes when `Trainer.train` returns; every micro-batch
  that reaches `Trainer.training_step` has its real (attention-mask) sequence lengths recorded. The baseline's
  trainers pass through the same hooks, so both sides are measured by one piece of code.
- `tasks.common.modeling.generate`: its wall time, and per returned sequence the prompt length and new tokens.
- `tasks.ppo.trainer.PPOTrainer.rollout` / `.update`: wall time and the rollout batch's query/response lengths.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainWindow:
    start: float | None = None
    end: float | None = None
    lengths: list[int] = field(default_factory=list)  # real tokens of every trained sequence, in order
    scored: list[int] = field(default_factory=list)  # per sequence: positions whose next token the loss scores
    padded_tokens: int = 0

    @property
    def seconds(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("no trainer was constructed and trained inside the measurement")
        return self.end - self.start


def sequence_lengths(inputs: dict[str, Any]) -> list[int]:
    mask = inputs.get("attention_mask")
    if mask is not None:
        return [int(x) for x in mask.sum(dim=1).tolist()]
    ids = inputs["input_ids"]
    return [int(ids.shape[1])] * int(ids.shape[0])


def scored_positions(inputs: dict[str, Any]) -> list[int]:
    """Per sequence, the next-token predictions a causal-LM loss uses: SFT's labels ≠ −100 (completion-only loss),
    DPO's completion mask; every position of the sequence when a batch carries neither."""
    labels = inputs.get("labels")
    if labels is not None and labels.dim() == 2:
        return [int(x) for x in (labels[:, 1:] != -100).sum(dim=1).tolist()]
    completion = inputs.get("completion_mask")
    if completion is not None:
        return [int(x) for x in completion[:, 1:].sum(dim=1).tolist()]
    return sequence_lengths(inputs)


@contextlib.contextmanager
def _patched(owner: Any, name: str, make) -> Iterator[None]:
    original = owner.__dict__[name]
    setattr(owner, name, make(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def trainer_window() -> Iterator[TrainWindow]:
    """Time [outermost TRL trainer __init__, Trainer.train return] and record the trained sequence lengths."""
    import transformers
    from trl import DPOTrainer, KTOTrainer, RewardTrainer, SFTTrainer

    window = TrainWindow()
    depth = [0]

    def wrap_init(original):
        def __init__(self, *args, **kwargs):
            if depth[0] == 0 and window.start is None:
                window.start = time.perf_counter()
            depth[0] += 1
            try:
                original(self, *args, **kwargs)
            finally:
                depth[0] -= 1
        return __init__

    def wrap_train(original):
        def train(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            window.end = time.perf_counter()
            return out
        return train

    def wrap_step(original):
        def training_step(self, model, inputs, *args, **kwargs):
            window.lengths.extend(sequence_lengths(inputs))
            window.scored.extend(scored_positions(inputs))
            window.padded_tokens += int(inputs["input_ids"].numel())
            return original(self, model, inputs, *args, **kwargs)
        return training_step

    with contextlib.ExitStack() as stack:
        for cls in (SFTTrainer, RewardTrainer, DPOTrainer, KTOTrainer):
            stack.enter_context(_patched(cls, "__init__", wrap_init))
        stack.enter_context(_patched(transformers.Trainer, "train", wrap_train))
        stack.enter_context(_patched(transformers.Trainer, "training_step", wrap_step))
        yield window


@dataclass
class GenerateCall:
    seconds: float
    prompt_lens: list[int]  # per returned sequence
    new_tokens: list[int]  # per returned sequence, EOS included


@contextlib.contextmanager
def generate_calls() -> Iterator[list[GenerateCall]]:
    """Record every call of the product's `tasks.common.modeling.generate` (callers import it at call time)."""
    from tasks.common import modeling

    calls: list[GenerateCall] = []

    def wrap(original):
        def generate(model, tokenizer, prompts, *args, **kwargs):
            start = time.perf_counter()
            out = original(model, tokenizer, prompts, *args, **kwargs)
            seconds = time.perf_counter() - start
            lens = [len(tokenizer.apply_chat_template(p, tokenize=True, add_generation_prompt=True,
                                                      return_dict=True)["input_ids"]) for p in prompts]
            calls.append(GenerateCall(seconds, [lens[i] for i, per in enumerate(out) for _ in per],
                                      [s["n_tokens"] for per in out for s in per]))
            return out
        return generate

    with _patched(modeling, "generate", wrap):
        yield calls


@dataclass
class PPOPhase:
    seconds: float
    query_lens: list[int]
    response_lens: list[int]


@contextlib.contextmanager
def ppo_phases() -> Iterator[dict[str, list[PPOPhase]]]:
    """Record each PPOTrainer.rollout and .update: wall time and the batch's query/response lengths."""
    from tasks.ppo.trainer import PPOTrainer

    phases: dict[str, list[PPOPhase]] = {"rollout": [], "update": []}

    def lens(batch) -> tuple[list[int], list[int]]:
        return [int(x) for x in batch.query_mask.sum(1).tolist()], [int(x) for x in batch.mask.sum(1).tolist()]

    def wrap_rollout(original):
        def rollout(self):
            start = time.perf_counter()
            batch, data, stats = original(self)
            phases["rollout"].append(PPOPhase(time.perf_counter() - start, *lens(batch)))
            return batch, data, stats
        return rollout

    def wrap_update(original):
        def update(self, batch, data):
            start = time.perf_counter()
            out = original(self, batch, data)
            phases["update"].append(PPOPhase(time.perf_counter() - start, *lens(batch)))
            return out
        return update

    with _patched(PPOTrainer, "rollout", wrap_rollout), _patched(PPOTrainer, "update", wrap_update):
        yield phases


def peak_rss_mb() -> float:
    """Peak resident memory of this process (one worker = one measured run)."""
    import resource
    import sys

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)
