"""Scoring many sequences that start with the same tokens: run the shared start once, reuse its KV cache.

Every scored sequence here opens with the chat template's system prompt and the task's instruction (31 of the
88 tokens of an evaluate sample on the default task), so a forward over the whole sequence recomputes the same
attention keys and values for 35 % of its tokens. The RM scorer (tasks/common/reward.py) and evaluate's KL scoring
(tasks/evaluation/sampling.py) compute that prefix once per model state, then run each batch over the rest with a
copy of the prefix's cache: positions continue from the prefix, so the numbers are the plain forward's to fp32
rounding (tests compare the two paths).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

MIN_SHARED = 8  # fewer shared tokens than this: the plain path (the copy and the extra call would not pay)


def shared_prefix(ids: Sequence[Sequence[int]], min_length: int = MIN_SHARED) -> list[int]:
    """The leading tokens all sequences share, leaving each at least one token of its own."""
    if len(ids) < 2:
        return []
    prefix = list(os.path.commonprefix([list(x) for x in ids]))[: min(len(x) for x in ids) - 1]
    return prefix if len(prefix) >= min_length else []


def prefix_cache(model, prefix: list[int]) -> Any:
    """The KV cache of `prefix` (batch 1) under the model's current state (adapter on or off)."""
    import torch

    return model(input_ids=torch.tensor([prefix], device=model.device), use_cache=True).cache


def expanded(cache: Any, batch: int) -> Any:
    """A copy of a batch-1 cache repeated for `batch` rows (the forward extends the cache it is given)."""
    out = copy.deepcopy(cache)
    out.batch_repeat_interleave(batch)
    return out
