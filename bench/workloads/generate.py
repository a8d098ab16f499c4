"""Sampling: collect_preferences' generation (K samples per training prompt, its dtype, batch size and sampling).

alignflow: `tasks.common.modeling.generate` on the SFT model loaded by `load_causal_lm` (prompts sorted by length,
           batched, cut at EOS) — the call collect_preferences makes.
baseline:  `model.generate` on the same prompts in file order, batches of the same size, same weights and dtype.
Measured: the sampling calls (model loading outside). Tokens: new tokens up to and including EOS; samples: sequences.
"""

from __future__ import annotations

from pathlib import Path

from bench import flops, instrument
from bench.context import Context, phase
from bench.workloads import _plain


def _prompts(ctx: Context) -> list:
    from tasks.common.io import read_jsonl

    rows = read_jsonl(Path(ctx.params.paths.validated) / "prompts_train.jsonl")
    return [r["prompt"] for r in rows[: ctx.params.collect_preferences.max_prompts]]  # as the stage cuts them


def generation_phase(ctx: Context, seconds: float, prompt_lens: list[int], new_tokens: list[int]) -> dict:
    shape = flops.model_shape(ctx.base)
    total = sum(flops.generation(shape, p, n) for p, n in zip(prompt_lens, new_tokens, strict=True))
    return phase(seconds, sum(new_tokens), len(new_tokens), total)


def alignflow(ctx: Context) -> dict:
    from tasks.common import modeling

    cfg, paths = ctx.params.collect_preferences, ctx.params.paths
    prompts = _prompts(ctx)
    model = modeling.load_causal_lm(paths.sft_model, dtype=cfg.generation.dtype)
    tok = modeling.load_tokenizer(paths.sft_model)
    with instrument.generate_calls() as calls:
        modeling.generate(model, tok, prompts, **_plain.sampling(cfg.generation),
                          num_return_sequences=cfg.samples_per_prompt, batch_size=cfg.batch_size,
                          seed=ctx.params.seed, desc="bench generate")
    return {"generate": generation_phase(ctx, sum(c.seconds for c in calls),
                                         [x for c in calls for x in c.prompt_lens],
                                         [x for c in calls for x in c.new_tokens])}


def baseline(ctx: Context) -> dict:
    import time

    import torch

    cfg, paths = ctx.params.collect_preferences, ctx.params.paths
    prompts = _prompts(ctx)
    model = _plain.load_chain(ctx.base, [paths.sft_model], dtype=cfg.generation.dtype)
    tok = _plain.tokenizer(paths.sft_model)
    torch.manual_seed(ctx.params.seed)
    start = time.perf_counter()
    pairs = _plain.generate(model, tok, prompts, **_plain.sampling(cfg.generation),
                            num_return_sequences=cfg.samples_per_prompt, batch_size=cfg.batch_size)
    seconds = time.perf_counter() - start
    return {"generate": generation_phase(ctx, seconds, *_plain.lengths(pairs))}
