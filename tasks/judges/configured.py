"""The judge a params section asks for (`JudgeParams`: kind local | openai), with the on-disk judgment cache.

One place for collect_preferences (labelling, default model: the SFT model) and evaluate (win rates, default
model: the base model), so both read the same keys the same way and report a bad key by its section name.
"""

from __future__ import annotations

from pathlib import Path

from tasks.common.params import JudgeParams
from tasks.common.stage import StageError


def configured_judge(cfg: JudgeParams, section: str, default_model: str, cache_path: str, constitution=None):
    """A LocalJudge on `cfg.model or default_model`, or an OpenAIJudge; errors name `section` (e.g. evaluate.judge)."""
    from tasks.judges.cache import JudgmentCache

    cache = JudgmentCache(cache_path)
    if cfg.kind == "local":
        from tasks.judges.local import LocalJudge

        model = cfg.model or default_model
        if not Path(model).exists() and "/" not in model:
            raise StageError(f"{section}.model: {model} not found")
        return LocalJudge(model, constitution, cache, cfg.chain_of_thought, tuple(cfg.cot_clamp),
                          cfg.cot_max_new_tokens, cfg.few_shot, cfg.batch_size, cfg.dtype)
    from tasks.judges.openai_http import OpenAIJudge

    try:
        return OpenAIJudge(cfg, constitution, cache)
    except ValueError as exc:
        raise StageError(f"{section}: {exc}") from None
