"""What the three TRL training workloads share: the measured phase from a trainer window, and the baseline's LoRA."""

from __future__ import annotations

from typing import Any

from bench import flops
from bench.context import Context, phase
from bench.instrument import TrainWindow


def train_phase(ctx: Context, window: TrainWindow, lora_r: int, *, lm_head: bool, rows_per_sample: int,
                reference: bool = False) -> dict[str, Any]:
    """The window's seconds and tokens; FLOPs per bench/flops.py: F_train per trained sequence (LM head at the
    positions the loss scores for causal-LM losses, none for the reward model's d×1 head), plus a reference forward
    each for DPO."""
    shape = flops.model_shape(ctx.base, lora_r)
    total = 0.0
    for length, scored in zip(window.lengths, window.scored, strict=True):
        head = scored if lm_head else 0
        total += flops.train(shape, length, head)
        if reference:
            total += flops.forward(shape, length, head)
    return phase(window.seconds, sum(window.lengths), len(window.lengths) / rows_per_sample, total,
                 padded_tokens=window.padded_tokens)


def lora_config(lora: Any, task_type: str, **extra: Any):
    from peft import LoraConfig

    return LoraConfig(task_type=task_type, **lora.model_dump(), **extra)


def product_execution(ctx: Context, trainer) -> None:
    """`--baseline-exec product`: the stage's execution choice between building the trainer and training — frozen
    weights stored in bf16 under bf16 autocast, trainable ones fp32 (tasks.common.modeling.mixed_precision_weights;
    the same numbers as autocast over fp32 weights, cast once instead of at every matmul). TRL defaults: nothing."""
    if ctx.baseline_exec == "product":
        from tasks.common.modeling import mixed_precision_weights

        mixed_precision_weights(trainer)
