# alignflow: the same environment as scripts/install.sh, then the pipeline on the embedded defaults.
# CPU by default; for CUDA: docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# TOKENIZERS_* is no secret (DL3064 matches on the word TOKEN)
# hadolint ignore=DL3064
ENV PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false \
    HF_HUB_OFFLINE=1

# git: DVC tracks the pipeline in the repository; no recommends keeps the image small.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
COPY alignflow/__init__.py alignflow/__init__.py
COPY flows/__init__.py flows/__init__.py
COPY tasks/__init__.py tasks/__init__.py
RUN TORCH_INDEX_URL="$TORCH_INDEX_URL" bash scripts/install.sh

COPY . .
RUN .venv/bin/python -m pip install --no-cache-dir --no-deps -e . \
    && git config --global user.email "alignflow@localhost" \
    && git config --global user.name "alignflow"

ENV PATH=/app/.venv/bin:$PATH
CMD ["alignflow", "run"]
