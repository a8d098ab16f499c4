"""The reward model: Bradley–Terry loss with soft labels, calibration, and loading + scoring for later stages.

A reward model is a sequence classifier (`num_labels=1`) on the SFT model: `AutoModelForSequenceClassification`
from models/base with the SFT LoRA merged in, then a reward LoRA whose score head is trained and saved whole
(`modules_to_save=["score"]`). The head is created randomly when the classifier is built, so a saved reward model
is only the same model again if the saved head replaces it on load (tests/test_train_reward.py checks this).
The score is read at the last non-pad token (transformers' sequence classifiers do this from `pad_token_id`).

Scores are normalised so that the SFT model's own responses average 0: `score = raw − reward_offset`, the offset
stored in the reward model's alignflow_model.json. (Ziegler et al. 2019 also scale to std 1 on those samples;
`reward_std` is stored beside the offset for a stage that wants that.)

    model, tok = load_reward_model("models/reward")
    rewards = score(model, tok, prompts, completions, batch_size=16)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from tasks.common.prefix_cache import MIN_SHARED, expanded, prefix_cache, shared_prefix

Messages = list[dict[str, str]]


# Loss


def soft_bradley_terry_loss(delta, p):
    """Bradley–Terry loss with soft labels: −(p·log σ(Δ) + (1 − p)·log σ(−Δ)), averaged over pairs.

    Δ = r_chosen − r_rejected and p = P(chosen is better) from an AI labeller (Bai et al. 2022, Constitutional AI;
    Lee et al. 2023, RLAIF). p = 1 is the usual −log σ(Δ) of TRL's RewardTrainer.
    """
    import torch.nn.functional as F

    return -(p * F.logsigmoid(delta) + (1 - p) * F.logsigmoid(-delta)).mean()


# Calibration


def expected_calibration_error(deltas: Sequence[float], n_bins: int = 10) -> float:
    """ECE (Guo et al. 2017) of σ(Δ) as the probability that the chosen response is the better one.

    Every pair counts in both orders, (σ(Δ), 1) and (σ(−Δ), 0), so that outcomes are both 0 and 1 and the bins
    cover [0, 1]; ties aside, this equals the confidence-ECE over max(σ(Δ), σ(−Δ)).
    ECE = Σ_b |B_b|/N · |mean y − mean p| over the bins B_b of equal width.
    """
    probs = [0.5 * (1 + math.tanh(d / 2)) for d in deltas]  # σ(Δ), without overflow for large |Δ|
    items = [(p, 1.0) for p in probs] + [(1 - p, 0.0) for p in probs]
    bins: list[list[tuple[float, float]]] = [[] for _ in range(n_bins)]
    for p, y in items:
        bins[min(int(p * n_bins), n_bins - 1)].append((p, y))
    return sum(
        len(b) / len(items) * abs(sum(y for _, y in b) / len(b) - sum(p for p, _ in b) / len(b)) for b in bins if b
    )


# Model


def load_sequence_classifier(base: str | Path, adapters: Sequence[str | Path], pad_token_id: int):
    """A `num_labels=1` classifier on `base` with each LoRA adapter merged in turn (the head is new unless an
    adapter saves it); call seed_everything first when the head must be reproducible."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    with suppress_seqcls_warning():  # "score.weight newly initialised": expected, the head is created here
        model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = pad_token_id
    for adapter in adapters:
        model = merge_adapter(model, adapter)
    return model


def merge_adapter(model, adapter_dir: str | Path):
    """Merge a LoRA adapter into `model` and check that it really changed the weights.

    The SFT adapter was trained on a causal LM; its keys name the same backbone modules as the classifier's,
    but a causal-LM PeftModel cannot wrap a classifier (it wants generation), so it is loaded as a plain
    PeftModel. A key mismatch would load nothing and merge a no-op silently: hence the check.
    """
    import torch
    from peft import PeftConfig, PeftModel
    from peft.tuners.lora import LoraLayer

    config = PeftConfig.from_pretrained(str(adapter_dir))
    if str(config.task_type) in ("CAUSAL_LM", "TaskType.CAUSAL_LM"):
        config.task_type = None
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), config=config)
    layers = {n: m for n, m in peft_model.base_model.model.named_modules() if isinstance(m, LoraLayer)}
    if not layers:
        raise RuntimeError(f"{adapter_dir}: no module of this adapter exists in {type(model).__name__}")
    name, layer = next(iter(layers.items()))
    delta = layer.get_delta_weight("default").detach()
    before = layer.get_base_layer().weight.detach().clone()
    if not delta.abs().max() > 0:
        raise RuntimeError(f"{adapter_dir}: the adapter is all zeros (weights not loaded, or never trained)")
    merged = peft_model.merge_and_unload()
    if not torch.allclose(merged.get_submodule(name).weight, before + delta, atol=1e-6):
        raise RuntimeError(f"{adapter_dir}: merging did not change {name} as the adapter says")
    return merged


def load_reward_model(model_dir: str | Path):
    """(model, tokenizer) for scoring: base + SFT + reward adapters merged, trained head restored, offset attached.

    Kept in fp32: scoring evaluate's 600 samples in bf16 was 2.1× faster, but the scores' spread is small (σ 0.09)
    and bf16 moved the policy's mean gain over SFT by 13 % and flipped 5 % of same-prompt orderings
    (one-off profile, script not kept) — too much for the reward-hacking guard that compares those gains."""
    from tasks.common.modeling import device, load_tokenizer, read_chain

    chain = read_chain(model_dir)
    if "reward_offset" not in chain:
        raise ValueError(f"{model_dir}: not a reward model (alignflow_model.json has no reward_offset)")
    tok = load_tokenizer(model_dir, padding_side="right")
    model = load_sequence_classifier(chain["base"], chain["adapters"], tok.pad_token_id)
    model.config.reward_offset = float(chain["reward_offset"])
    model.config.reward_pooling = chain.get("reward_pooling", "last")  # reward models saved before pooling: last
    return model.to(device()).eval(), tok


# Scoring


def raw_rewards(
    model, tokenizer, prompts: Sequence[Messages], completions: Sequence[str | Messages], batch_size: int = 16,
    min_shared_prefix: int = MIN_SHARED,
) -> list[float]:
    """Unnormalised rewards, tokenised exactly as RewardTrainer tokenised training pairs (chat template, no
    truncation); batches sorted by length and right-padded, results in the caller's order.

    The tokens every sequence starts with run once, and every batch continues from a copy of their KV cache
    (tasks/common/prefix_cache.py): the same rewards to fp32 rounding (max |Δ| 3e-6 on evaluate's 600 samples) from
    35 % fewer tokens, 96 → 57 s (one-off profile, script not kept). Fewer than `min_shared_prefix` shared tokens: the
    plain path."""
    import torch

    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    ids = [
        tokenizer.apply_chat_template(list(p) + _as_messages(c), tokenize=True, return_dict=True)["input_ids"]
        for p, c in zip(prompts, completions, strict=True)
    ]
    pooling = getattr(model.config, "reward_pooling", "last")
    starts = [0] * len(ids)
    if pooling == "mean":  # where each response begins: the prompt with the generation prompt, as in training
        starts = [len(tokenizer.apply_chat_template(list(p), tokenize=True, add_generation_prompt=True,
                                                    return_dict=True)["input_ids"]) for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [0.0] * len(ids)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        prefix = shared_prefix(ids, min_shared_prefix)
        if pooling == "mean" and len(prefix) > min(starts):  # the cached prefix must not reach into a response
            prefix = prefix[: min(starts)] if min(starts) >= min_shared_prefix else []
        cache = prefix_cache(model, prefix) if prefix else None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx) - len(prefix)
            input_ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), len(prefix) + width), dtype=torch.long)
            for row, i in enumerate(idx):
                rest = ids[i][len(prefix):]
                input_ids[row, : len(rest)] = torch.tensor(rest)
                mask[row, : len(ids[i])] = 1
            # positions continue from the prefix; the pooled token is the last non-pad one of the rest
            kwargs = {"cache": expanded(cache, len(idx))} if cache is not None else {}
            mask = mask.to(model.device)
            outputs = model(input_ids=input_ids.to(model.device), attention_mask=mask,
                            use_cache=cache is not None, output_hidden_states=pooling == "mean", **kwargs)
            rewards = pooled_rewards(model, outputs, mask, torch.tensor([starts[i] for i in idx]), pooling,
                                     offset=len(prefix))
            for row, i in enumerate(idx):
                out[i] = float(rewards[row])
    model.train(was_training)
    return out


def pooled_rewards(model, outputs, attention_mask, response_start, pooling: str, offset: int = 0):
    """One reward per right-padded sequence from a sequence classifier's forward `outputs`.

    `last`: transformers' own read, the score head at the last non-pad token (outputs.logits). `mean`: the score head
    applied to the mean final hidden state over the response — positions from `response_start` (where the chat
    template's generation prompt ends) to the last non-pad token; `outputs` needs `output_hidden_states=True`.
    `offset` is the absolute position of the first position in `outputs` (a shared prefix run from a KV cache)."""
    import torch

    if pooling == "last":
        return outputs.logits.squeeze(-1)
    if pooling != "mean":
        raise ValueError(f"pooling {pooling!r}: expected 'last' or 'mean'")
    hidden = outputs.hidden_states[-1]  # after the final norm: what the score head reads
    position = offset + torch.arange(hidden.shape[1], device=hidden.device)
    last = attention_mask.sum(1) - 1
    keep = (position[None, :] >= response_start[:, None].to(hidden.device)) & (position[None, :] <= last[:, None])
    if not bool(keep.any(1).all()):
        raise ValueError("a sequence has no response token to pool (response_start past its end)")
    mean = (hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
    head = getattr(model, "module", model).score
    return head(mean).squeeze(-1)


def score(
    model, tokenizer, prompts: Sequence[Messages], completions: Sequence[str | Messages], batch_size: int = 16
) -> list[float]:
    """Normalised rewards (raw − reward_offset: the SFT model's responses average 0); model from load_reward_model."""
    offset = getattr(model.config, "reward_offset", None)
    if offset is None:
        raise ValueError("model has no reward_offset: load it with load_reward_model")
    return [r - offset for r in raw_rewards(model, tokenizer, prompts, completions, batch_size)]


def _as_messages(completion: str | Messages) -> Messages:
    return [{"role": "assistant", "content": completion}] if isinstance(completion, str) else list(completion)
