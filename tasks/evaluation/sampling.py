"""Everything the evaluation needs from the models, gathered while each model is loaded (one at a time).

Per model: K sampled completions per held-out prompt (the same seed for every model, so they differ only by the
model), KL to the previous model in the chain on the model's own samples, and its greedy answers to the probe
sets (over-refusal, sycophancy). Memory: the policy chain is loaded with its last adapter live, so the SFT model is
the same weights with the adapter disabled; likewise the SFT chain gives the base model.

Generation runs with that adapter merged into the weights (tasks/common/modeling.merged: ~27 % faster decoding,
weights restored exactly afterwards); scoring (KL) and the reference run unmerged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.common.metrics import kl_k1, kl_k3
from tasks.common.modeling import merged
from tasks.common.params import Params
from tasks.evaluation import reference_cache
from tasks.evaluation.results import ModelResults

MODELS = ("base", "sft", "policy")


def sample_models(params: Params, prompts: list[dict], probe_sets: dict[str, list] | None = None) -> dict[str, ModelResults]:
    """{model: its samples, KL to the previous model in the chain and probe answers} for the models that exist
    (tasks/evaluation/results.py)."""
    from tasks.common.logprobs import reference
    from tasks.common.modeling import load_causal_lm, load_tokenizer

    paths, dtype, out = params.paths, params.evaluate.generation.dtype, {}
    if Path(paths.policy_model).exists():
        model = load_causal_lm(paths.policy_model, merge_last=False, dtype=dtype)  # SFT merged in, policy adapter live
        tok = load_tokenizer(paths.policy_model)
        out["policy"] = _sample_with_kl(params, model, tok, prompts, "policy")
        model = _for_probes(params, model)
        with merged(model):
            _add_probes(out["policy"], run_probes(params, model, tok, probe_sets, "policy"))
        del model
    if Path(paths.sft_model).exists():
        reuse = params.evaluate.reuse_reference_results
        key = reference_cache.reference_key(params, prompts) if reuse else None
        cached = reference_cache.load(key, paths.eval_cache) if key else None
        if cached:
            out.update(cached)
        else:
            model = load_causal_lm(paths.sft_model, merge_last=False, dtype=dtype)  # base + live SFT adapter
            tok = load_tokenizer(paths.sft_model)
            out["sft"] = _sample_with_kl(params, model, tok, prompts, "sft")
            with reference(model):
                out["base"] = ModelResults(samples=_sample(params, model, tok, prompts, "base"))
            model = _for_probes(params, model)
            with reference(model):  # before the merge: the reference must see the exact weights
                _add_probes(out["base"], run_probes(params, model, tok, probe_sets, "base"))
            with merged(model):
                _add_probes(out["sft"], run_probes(params, model, tok, probe_sets, "sft"))
            if key:
                reference_cache.save(key, {"sft": out["sft"], "base": out["base"]}, paths.eval_cache)
    elif Path(paths.base_model).exists():
        model = load_causal_lm(paths.base_model, dtype=dtype)
        tok = load_tokenizer(paths.base_model)
        out["base"] = ModelResults(samples=_sample(params, model, tok, prompts, "base"))
        _add_probes(out["base"], run_probes(params, _for_probes(params, model), tok, probe_sets, "base"))
    return {name: out[name] for name in MODELS if name in out}


def _for_probes(params: Params, model):
    """The model in evaluate.probes.dtype, cast in place once its samples and KL (which want fp32) are done."""
    import torch

    return model.to(getattr(torch, params.evaluate.probes.dtype))


def run_probes(params: Params, model, tok, probe_sets: dict[str, list] | None, name: str = "") -> dict[str, list[dict]]:
    """Greedy answers to the probe sets, classified (tasks/evaluation/pathologies.py)."""
    if not probe_sets:
        return {}
    from tasks.evaluation import pathologies

    cfg = params.evaluate.probes
    generate = pathologies.model_generator(model, tok, cfg.max_new_tokens, cfg.batch_size, f"probes {name}".strip())
    return {"over_refusal": pathologies.run_over_refusal(generate, probe_sets["over_refusal"]),
            "sycophancy": pathologies.run_sycophancy(generate, probe_sets["sycophancy"], params.seed)}


def _add_probes(res: ModelResults, answers: dict[str, list[dict]]) -> None:
    """A model's probe answers (run_probes) into its results; nothing when there were no probe sets."""
    res.over_refusal = answers.get("over_refusal")
    res.sycophancy = answers.get("sycophancy")


def _sample(params: Params, model, tok, prompts: list[dict], name: str) -> list[list[dict[str, Any]]]:
    from tasks.common.modeling import generate

    cfg = params.evaluate
    return generate(model, tok, [p["prompt"] for p in prompts], **cfg.generation.model_dump(exclude={"dtype"}),
                    num_return_sequences=cfg.samples_per_prompt, batch_size=cfg.batch_size, seed=params.seed,
                    desc=f"evaluate {name}")


def _sample_with_kl(params: Params, model, tok, prompts: list[dict], name: str) -> ModelResults:
    """Samples from `model`, and KL(model‖reference) estimated on them (reference = adapter disabled)."""
    from tasks.common.logprobs import reference

    with merged(model):
        samples = _sample(params, model, tok, prompts, name)
    prompt_ids, response_ids = [], []
    for prompt, per_prompt in zip(prompts, samples, strict=True):
        text = tok.apply_chat_template(prompt["prompt"], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        for s in per_prompt:
            prompt_ids.append(ids)
            response_ids.append(list(s["ids"]))  # the sampled tokens, not a re-tokenisation
    temperature, batch_size = params.evaluate.generation.temperature, params.evaluate.batch_size
    logprobs = response_logprobs(model, tok, prompt_ids, response_ids, temperature, batch_size)
    with reference(model):
        ref_logprobs = response_logprobs(model, tok, prompt_ids, response_ids, temperature, batch_size)
    return ModelResults(samples=samples, kl_k1=kl_k1(logprobs, ref_logprobs), kl_k3=kl_k3(logprobs, ref_logprobs))


def response_logprobs(model, tok, prompt_ids: list[list[int]], response_ids: list[list[int]], temperature: float,
                      batch_size: int) -> list[list[float]]:
    """log π(y_t | x, y_<t) of every response token, logits / temperature: scored exactly as PPO scores its
    rollouts (tasks/common/logprobs.py — prompts left-padded, positions from the attention mask), except that the
    tokens every prompt starts with run once and each batch continues from their KV cache
    (tasks/common/prefix_cache.py), and batches are grouped by length."""
    import torch

    from tasks.common.logprobs import pack, token_logprobs
    from tasks.common.prefix_cache import expanded, prefix_cache, shared_prefix

    shared = shared_prefix(prompt_ids)
    n = len(shared)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]) + len(response_ids[i]))
    out: list[list[float]] = [[] for _ in prompt_ids]
    with torch.inference_mode():
        cache = prefix_cache(model, shared) if shared else None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = pack([prompt_ids[i][n:] for i in idx], [response_ids[i] for i in idx], tok.pad_token_id,
                         tok.eos_token_id, model.device)
            prefix = (n, expanded(cache, len(idx))) if cache is not None else None
            logp = token_logprobs(model, batch, temperature, prefix=prefix)
            for i, row, keep in zip(idx, logp, batch.mask, strict=True):
                out[i] = row[keep.bool()].tolist()
    return out


def add_rm_scores(params: Params, prompts: list[dict], results: dict[str, ModelResults]) -> None:
    """Each model's per-sample reward-model scores (ModelResults.rm), flat like its samples."""
    from tasks.common.reward import load_reward_model, score

    model, tok = load_reward_model(params.paths.reward_model)
    for res in results.values():
        flat_prompts = [p["prompt"] for p, per in zip(prompts, res.samples, strict=True) for _ in per]
        res.rm = score(model, tok, flat_prompts, res.texts(), params.evaluate.batch_size)
