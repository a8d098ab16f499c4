"""PPO: rollouts (sample, score with policy / reference / value / reward model) and updates, align.ppo's settings.

alignflow: `tasks.align.run_align` with align.method ppo (tasks/ppo/: the stage builds the policy = SFT + LoRA and
           the value model = RM + LoRA + head, then `PPOTrainer.step()` align.ppo.steps times); the bench times each
           `rollout()` and `update()` and, inside the rollout, the `generate` call.
baseline:  TRL has no PPOTrainer since 1.16, so the baseline is plain PyTorch: `model.generate` on the same prompts
           (one batch of rollout_batch_size, file order), plain forwards of policy, reference (adapter disabled),
           value backbone + head and reward model, GAE, and for each of ppo_epochs × minibatches a forward/backward
           of the clipped policy and value losses with AdamW — the same models, LoRA, batch sizes and sampling.
Phases: rollout_generate (sampling only: the "≥ 2× plain generate" target), rollout (sampling + scoring + GAE),
update, step (rollout + update). Tokens: response tokens (update: prompt + response tokens × ppo_epochs).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import flops, instrument
from bench.context import Context, phase
from bench.workloads import _plain
from bench.workloads._train import lora_config


def ppo_phases(ctx: Context, gen_s: float, rollout_s: float, update_s: float, query_lens: list[int],
               response_lens: list[int], prompt_lens: list[int], new_tokens: list[int]) -> dict:
    """query/response_lens: the rollout rows; prompt_lens/new_tokens: the sampled sequences (the same rows)."""
    ppo = ctx.params.align.ppo
    shape = flops.model_shape(ctx.base, ctx.params.align.lora.r)
    gen = sum(flops.generation(shape, p, n) for p, n in zip(prompt_lens, new_tokens, strict=True))
    score = upd = 0.0
    for q, r in zip(query_lens, response_lens, strict=True):
        score += 2 * flops.forward(shape, q + r, r) + 2 * flops.forward(shape, q + r, 0)  # π, π_ref; V, RM
        upd += ppo.ppo_epochs * (flops.train(shape, q + r, r) + flops.train(shape, q + r, 0))  # π, V
    rows, resp = len(response_lens), sum(response_lens)
    upd_tokens = ppo.ppo_epochs * (sum(query_lens) + resp)
    return {
        "rollout_generate": phase(gen_s, sum(new_tokens), len(new_tokens), gen),
        "rollout": phase(rollout_s, resp, rows, gen + score),
        "update": phase(update_s, upd_tokens, rows * ppo.ppo_epochs, upd),
        "step": phase(rollout_s + update_s, resp, rows, gen + score + upd),
    }


def alignflow(ctx: Context) -> dict:
    from tasks.align import run_align

    params = ctx.params.model_copy(deep=True)
    params.align.method = "ppo"
    with instrument.ppo_phases() as phases, instrument.generate_calls() as calls:
        run_align(params)
    rollouts, updates = phases["rollout"], phases["update"]
    return ppo_phases(ctx, sum(c.seconds for c in calls), sum(r.seconds for r in rollouts),
                      sum(u.seconds for u in updates), [x for r in rollouts for x in r.query_lens],
                      [x for r in rollouts for x in r.response_lens], [x for c in calls for x in c.prompt_lens],
                      [x for c in calls for x in c.new_tokens])


def _pack(pairs, pad_id: int):
    """prompt + response per row, left-padded as one sequence: responses end at the right edge. Returns ids,
    attention mask, position ids and the mask of positions (of the W−1 next-token predictions) that predict a
    response token."""
    import torch

    width = max(len(p) + len(r) for p, r in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    predicts = torch.zeros((len(pairs), width - 1))
    for i, (p, r) in enumerate(pairs):
        ids[i, width - len(p) - len(r):] = torch.tensor(p + r)
        attention[i, width - len(p) - len(r):] = 1
        predicts[i, width - 1 - len(r):] = 1.0
    return ids, attention, (attention.cumsum(-1) - 1).clamp(min=0), predicts


def _logprobs(model, ids, attention, positions, predicts, temperature: float):
    import torch

    logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits[:, :-1].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1) * predicts


def _values(value_model, ids, attention, positions, predicts):
    classifier = value_model.get_base_model()
    hidden = classifier.base_model(input_ids=ids, attention_mask=attention, position_ids=positions).last_hidden_state
    return classifier.score(hidden[:, :-1]).squeeze(-1).float() * predicts


def _masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def baseline(ctx: Context) -> dict:
    import torch
    from peft import get_peft_model

    from tasks.common.io import read_jsonl
    from tasks.common.reward import load_reward_model

    params, paths, ppo = ctx.params, ctx.params.paths, ctx.params.align.ppo
    prompts = [r["prompt"] for r in read_jsonl(Path(paths.validated) / "prompts_train.jsonl")[: ppo.max_prompts]]
    torch.manual_seed(params.seed)
    policy = get_peft_model(_plain.load_chain(ctx.base, [paths.sft_model]), lora_config(params.align.lora, "CAUSAL_LM"))
    tok = _plain.tokenizer(paths.sft_model)
    rm, _ = load_reward_model(paths.reward_model)  # the project's chain format; loading is not measured
    rm_tok = _plain.tokenizer(paths.reward_model, "right")
    value = get_peft_model(rm, lora_config(params.align.lora, "SEQ_CLS", modules_to_save=["score"]))
    trainable = [p for m in (policy, value) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=ppo.learning_rate, eps=1e-5)
    sampling, temperature = _plain.sampling(ppo.generation), ppo.generation.temperature
    n = ppo.rollout_batch_size
    gen_s = rollout_s = update_s = 0.0
    rows: list[tuple[list[int], list[int]]] = []
    for step in range(ppo.steps):
        batch = [prompts[(step * n + i) % len(prompts)] for i in range(n)]
        policy.eval()
        value.eval()
        start = time.perf_counter()
        pairs = _plain.generate(policy, tok, batch, **sampling, num_return_sequences=1, batch_size=n)
        gen_s += time.perf_counter() - start
        ids, attention, positions, mask = _pack(pairs, tok.pad_token_id)
        with torch.no_grad():
            logp = _logprobs(policy, ids, attention, positions, mask, temperature)
            with policy.disable_adapter():
                ref = _logprobs(policy, ids, attention, positions, mask, temperature)
            values = _values(value, ids, attention, positions, mask)
            with value.disable_adapter():
                texts = [tok.decode(r, skip_special_tokens=True).strip() for _, r in pairs]
                scores = torch.tensor(_plain.reward_scores(value, rm_tok, batch, texts, n))
        if ppo.missing_eos_penalty is not None:
            has_eos = torch.tensor([bool(r) and r[-1] == tok.eos_token_id for _, r in pairs])
            scores = torch.where(has_eos, scores, torch.full_like(scores, ppo.missing_eos_penalty))
        rewards = -ppo.kl_coef * (logp - ref) * mask
        rewards[:, -1] += scores  # every response ends at the right edge
        advantages = torch.zeros_like(rewards)
        last = torch.zeros(n)
        for t in reversed(range(rewards.shape[1])):
            next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros(n)
            last = rewards[:, t] + ppo.gamma * next_value - values[:, t] + ppo.gamma * ppo.lam * last
            advantages[:, t] = last
        returns = (advantages + values) * mask
        mean = _masked_mean(advantages, mask)
        advantages = (advantages - mean) / (_masked_mean((advantages - mean) ** 2, mask).sqrt() + 1e-8) * mask
        rollout_s += time.perf_counter() - start

        start = time.perf_counter()
        for _ in range(ppo.ppo_epochs):
            for idx in torch.randperm(n).split(ppo.mini_batch_size):
                mb_mask = mask[idx]
                new_logp = _logprobs(policy, ids[idx], attention[idx], positions[idx], mb_mask, temperature)
                ratio = torch.exp(new_logp - logp[idx])
                clipped = torch.clamp(ratio, 1 - ppo.cliprange, 1 + ppo.cliprange)
                pg = _masked_mean(torch.max(-advantages[idx] * ratio, -advantages[idx] * clipped), mb_mask)
                v = _values(value, ids[idx], attention[idx], positions[idx], mb_mask)
                v_clip = values[idx] + torch.clamp(v - values[idx], -ppo.cliprange_value, ppo.cliprange_value)
                vl = 0.5 * _masked_mean(torch.max((v - returns[idx]) ** 2, (v_clip - returns[idx]) ** 2), mb_mask)
                (pg + ppo.vf_coef * vl).backward()
                torch.nn.utils.clip_grad_norm_(trainable, ppo.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        update_s += time.perf_counter() - start
        rows.extend(pairs)
    query_lens, response_lens = _plain.lengths(rows)
    return ppo_phases(ctx, gen_s, rollout_s, update_s, query_lens, response_lens, query_lens, response_lens)
