"""The judge a params section asks for (`JudgeParams`: kind pointwise | local | openai), with the on-disk cache.

One place for collect_preferences (labelling) and evaluate (win rates), so both read the same keys the same way
and report a bad key by its section name. The default model of both is paths.judge_model (prepare_judge).
"""

from __future__ import annotations

from pathlib import Path

from tasks.common.params import JudgeParams
from tasks.common.stage import StageError


def configured_judge(cfg: JudgeParams, section: str, default_model: str, cache_path: str, constitution=None):
    """A PointwiseJudge or LocalJudge on `cfg.model or default_model`, or an OpenAIJudge; errors name `section`
    (e.g. evaluate.judge)."""
    from tasks.judges.cache import JudgmentCache

    if cfg.kind in ("pointwise", "local"):
        model = cfg.model or default_model
        if not Path(model).exists() and (model.startswith(("models/", ".", "/")) or "/" not in model):
            raise StageError(f"{section}.model: {model} not found (the judge model is prepared by the "
                             "prepare_judge stage: dvc repro prepare_judge)")
        cache = JudgmentCache(cache_path)
        if cfg.kind == "pointwise":
            from tasks.judges.pointwise import PointwiseJudge

            return PointwiseJudge(model, constitution, cache, cfg.batch_size, cfg.dtype)
        from tasks.judges.local import LocalJudge

        return LocalJudge(model, constitution, cache, cfg.chain_of_thought, tuple(cfg.cot_clamp),
                          cfg.cot_max_new_tokens, cfg.few_shot, cfg.batch_size, cfg.dtype, cfg.calibrate)
    cache = JudgmentCache(cache_path)
    from tasks.judges.openai_http import OpenAIJudge

    try:
        return OpenAIJudge(cfg, constitution, cache)
    except ValueError as exc:
        raise StageError(f"{section}: {exc}") from None
