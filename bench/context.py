"""What a workload runner gets: the run directory's params, the baseline's TRL settings, and the phase record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.common.params import Params

# The product's execution choices (tasks.common.modeling.trainer_defaults, mixed_precision_weights) are not
# hyper-parameters: they change speed and memory, not the numbers a step computes. `--baseline-exec trl` leaves them
# at TRL's defaults (what a script written from the TRL docs gets: activation checkpointing on, fp32 weights under
# bf16 autocast); `product` gives them to the baseline (bench/workloads/_train.py product_execution).
PRECISION_KEYS = ("bf16", "use_cpu")


@dataclass
class Context:
    params: Params  # the run directory's params.yaml: shipped params + bench/project.py's overrides
    quick: bool
    baseline_exec: str  # "trl" | "product"

    @property
    def base(self) -> str:
        return self.params.paths.base_model

    def trl_kwargs(self, trainer: dict[str, Any], **stage: Any) -> dict[str, Any]:
        """TRL config kwargs for a baseline: params.yaml's `<section>.trainer` verbatim, the same precision as the
        stage (bf16 autocast where the CPU has it, as tasks.common.modeling decides), the same seed, no tracking."""
        from tasks.common.modeling import trainer_defaults

        product = trainer_defaults(trainer)  # the user's trainer dict already wins inside
        base = product if self.baseline_exec == "product" else {**{k: product[k] for k in PRECISION_KEYS}, **trainer}
        return {**base, "output_dir": str(Path("checkpoints/baseline").resolve()), "seed": self.params.seed,
                "report_to": [], **stage}


def phase(seconds: float, tokens: int, samples: float, flops: float, **extra: Any) -> dict[str, Any]:
    """One measured phase of a run: wall seconds, real tokens, samples (rows, pairs or sequences), model FLOPs."""
    return {"seconds": seconds, "tokens": int(tokens), "samples": float(samples), "flops": float(flops), **extra}
