"""Evaluation's model work on held-out prompts: K samples from policy, SFT and base, KL(policy‖SFT) and
KL(SFT‖base) on each model's own samples, and reward-model scores of every sample.

alignflow: `tasks.evaluation.sampling.sample_models` + `add_rm_scores`, the calls the evaluate stage makes for this
           (the probes, the judge win rates, diversity and the report are left out: they are not in the baseline).
baseline:  the same with transformers and peft directly: `model.generate` per model (adapter disabled for the
           reference), one plain forward per model and reference for the log-probs, the reward model's forward (the
           reward model built by the project's loader: its chain of adapters is the project's format).
Measured: everything, model loading included (the product loads inside `sample_models`). Tokens: sampled tokens.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import flops
from bench.context import Context, phase
from bench.workloads import _plain


def _prompts(ctx: Context) -> list[dict]:
    from tasks.common.io import read_jsonl

    return read_jsonl(Path(ctx.params.paths.validated) / "prompts_eval.jsonl")[: ctx.params.evaluate.max_prompts]


def evaluate_phase(ctx: Context, seconds: float, prompt_lens: list[int], new_tokens: dict[str, list[int]],
                   with_kl: set[str]) -> dict:
    """new_tokens: per model, per sample (prompts in order, K samples each); prompt_lens: per sample."""
    shape = flops.model_shape(ctx.base)
    total = 0.0
    for name, per_sample in new_tokens.items():
        for lp, n in zip(prompt_lens, per_sample, strict=True):
            total += flops.generation(shape, lp, n) + flops.forward(shape, lp + n, 0)  # sampling + RM score
            if name in with_kl:
                total += 2 * flops.forward(shape, lp + n, n)  # the model and its reference
    tokens = sum(sum(v) for v in new_tokens.values())
    return phase(seconds, tokens, sum(len(v) for v in new_tokens.values()), total)


def alignflow(ctx: Context) -> dict:
    from tasks.common.modeling import load_tokenizer
    from tasks.common.seeding import seed_everything
    from tasks.evaluation.sampling import add_rm_scores, sample_models

    params, prompts = ctx.params, _prompts(ctx)
    seed_everything(params.seed)
    start = time.perf_counter()
    results = sample_models(params, prompts, None)
    add_rm_scores(params, prompts, results)
    seconds = time.perf_counter() - start
    tok = load_tokenizer(params.paths.sft_model)
    k = params.evaluate.samples_per_prompt
    prompt_lens = [len(tok.apply_chat_template(p["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"])
                   for p in prompts for _ in range(k)]
    new_tokens = {name: [s["n_tokens"] for per in res.samples for s in per] for name, res in results.items()}
    kl = {n: sum(r.kl_k1) / len(r.kl_k1) for n, r in results.items() if r.kl_k1 is not None}
    return {"evaluate": {**evaluate_phase(ctx, seconds, prompt_lens, new_tokens, set(kl)), "kl_k1": kl}}


def baseline(ctx: Context) -> dict:
    import torch

    from tasks.common.reward import load_reward_model

    params, paths, prompts = ctx.params, ctx.params.paths, _prompts(ctx)
    cfg = params.evaluate
    chats = [p["prompt"] for p in prompts]
    kwargs = {**_plain.sampling(cfg.generation), "num_return_sequences": cfg.samples_per_prompt,
              "batch_size": cfg.batch_size}
    samples: dict[str, list[tuple[list[int], list[int]]]] = {}
    kl: dict[str, float] = {}
    start = time.perf_counter()
    for name, adapters in (("policy", [paths.sft_model, paths.policy_model]), ("sft", [paths.sft_model])):
        model = _plain.load_chain(ctx.base, adapters, cfg.generation.dtype, live_last=True)
        tok = _plain.tokenizer(adapters[-1])
        torch.manual_seed(params.seed)
        samples[name] = _plain.generate(model, tok, chats, **kwargs)
        logp = _plain.response_logprobs(model, samples[name], tok.pad_token_id, cfg.generation.temperature,
                                        cfg.batch_size)
        with model.disable_adapter():
            ref = _plain.response_logprobs(model, samples[name], tok.pad_token_id, cfg.generation.temperature,
                                           cfg.batch_size)
            if name == "sft":  # the base model = the SFT chain with its adapter disabled
                torch.manual_seed(params.seed)
                samples["base"] = _plain.generate(model, tok, chats, **kwargs)
        kl[name] = sum(sum(a) - sum(b) for a, b in zip(logp, ref, strict=True)) / len(logp)  # k1 per sequence
        del model
    rm, rm_tok = load_reward_model(paths.reward_model)
    flat = [c for c in chats for _ in range(cfg.samples_per_prompt)]
    for pairs in samples.values():
        texts = [tok.decode(r, skip_special_tokens=True).strip() for _, r in pairs]
        _plain.reward_scores(rm, rm_tok, flat, texts, cfg.batch_size)
    seconds = time.perf_counter() - start
    prompt_lens = _plain.lengths(samples["sft"])[0]
    new_tokens = {name: _plain.lengths(pairs)[1] for name, pairs in samples.items()}
    return {"evaluate": {**evaluate_phase(ctx, seconds, prompt_lens, new_tokens, {"policy", "sft"}),
                         "kl_k1": kl}}
