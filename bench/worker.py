"""One measured run: one workload, one side, in its own process and its own copy of the bench project.

A fresh process per run, so the peak RSS (getrusage of this process) belongs to this run alone and no run warms
a cache for the next. `bench.run` starts it; by hand:

    .venv/bin/python -m bench.worker --setup bench-work/setup.json --workload sft --side alignflow --out r.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.workloads import dpo, evaluate, generate, ppo, reward, sft

WORKLOADS = {"sft": sft, "reward": reward, "dpo": dpo, "ppo": ppo, "generate": generate, "evaluate": evaluate}


def run(setup: dict, workload: str, side: str, baseline_exec: str, keep: bool = False) -> dict:
    from bench.context import Context
    from bench.instrument import peak_rss_mb
    from tasks.common.params import load_params

    module = WORKLOADS[workload]
    runner = {"alignflow": module.alignflow, "baseline": module.baseline}[side]
    template = Path(setup["template"])
    run_dir = Path(tempfile.mkdtemp(prefix=f"{workload}-{side}-", dir=template.parent))
    shutil.copytree(template, run_dir, symlinks=True, dirs_exist_ok=True)
    cwd = Path.cwd()
    os.chdir(run_dir)
    try:
        # Imported before any window opens, on both sides alike: import time is not what either side is measured on.
        import peft  # noqa: F401
        import torch
        import transformers  # noqa: F401

        if workload != "generate":  # the trainers, and the project's reward-model loader, import TRL
            from trl.trainer import reward_trainer  # noqa: F401

        ctx = Context(load_params(), setup["quick"], baseline_exec)
        start = time.perf_counter()
        phases = runner(ctx)
        call_s = time.perf_counter() - start
        return {"workload": workload, "side": side, "phases": phases, "call_s": call_s,
                "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}
    finally:
        os.chdir(cwd)
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", type=Path, required=True)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    ap.add_argument("--side", choices=["alignflow", "baseline"], required=True)
    ap.add_argument("--baseline-exec", choices=["trl", "product"], default="trl")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args(argv)
    result = run(json.loads(args.setup.read_text()), args.workload, args.side, args.baseline_exec, args.keep)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
