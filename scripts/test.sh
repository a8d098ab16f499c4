#!/usr/bin/env bash
# The test suite: install (idempotent), lint, then pytest (unit, flow and the slow end-to-end tier).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
