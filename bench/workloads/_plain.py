"""The baselines' model work written directly against transformers / peft / torch, the way a user without this
project writes it: `model.generate` on batches in file order, plain forwards for log-probs and reward scores."""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, str]]


def load_chain(base: str, adapters: list[str], dtype: str = "float32", live_last: bool = False):
    """`from_pretrained` + peft: every adapter merged, or the last one left live (its reference = disable_adapter)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    for i, adapter in enumerate(adapters):
        model = PeftModel.from_pretrained(model, adapter)
        if not (live_last and i == len(adapters) - 1):
            model = model.merge_and_unload()
    return model.eval()


def tokenizer(model_dir: str, padding_side: str = "left"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = padding_side
    return tok


def generate(model, tok, prompts: list[Messages], *, max_new_tokens: int, temperature: float, top_p: float,
             top_k: int, num_return_sequences: int = 1, batch_size: int = 32) -> list[tuple[list[int], list[int]]]:
    """Sampled completions, `num_return_sequences` per prompt consecutively: (prompt ids, response ids up to and
    including the first EOS) per sequence. Batches of `batch_size` sequences in the prompts' order."""
    import torch

    eos, pad = tok.eos_token_id, tok.pad_token_id
    per_batch = max(1, batch_size // num_return_sequences)
    out: list[tuple[list[int], list[int]]] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), per_batch):
            enc = tok.apply_chat_template(prompts[start : start + per_batch], add_generation_prompt=True,
                                          padding=True, return_tensors="pt", return_dict=True)
            seqs = model.generate(**enc, do_sample=True, max_new_tokens=max_new_tokens, temperature=temperature,
                                  top_p=top_p, top_k=top_k, num_return_sequences=num_return_sequences,
                                  pad_token_id=pad, eos_token_id=eos)
            width = enc["input_ids"].shape[1]
            for row, seq in enumerate(seqs.tolist()):
                src = row // num_return_sequences
                prompt = [t for t, m in zip(enc["input_ids"][src].tolist(), enc["attention_mask"][src].tolist()) if m]
                new = seq[width:]
                new = new[: new.index(eos) + 1] if eos in new else [t for t in new if t != pad]
                out.append((prompt, new))
    return out


def response_logprobs(model, pairs: list[tuple[list[int], list[int]]], pad_id: int, temperature: float = 1.0,
                      batch_size: int = 32) -> list[list[float]]:
    """log π(y_t | x, y_<t) of every response token: prompt + response left-padded into one batch, one forward."""
    import torch

    out: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            width = max(len(p) + len(r) for p, r in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, (p, r) in enumerate(chunk):
                ids[i, width - len(p) - len(r):] = torch.tensor(p + r)
                mask[i, width - len(p) - len(r):] = 1
            logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
            logp = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
            token = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
            for i, (_, r) in enumerate(chunk):
                out.append(token[i, width - 1 - len(r):].tolist() if r else [])
    return out


def reward_scores(rm, rm_tok, prompts: list[Messages], texts: list[str], batch_size: int = 32) -> list[float]:
    """The reward model's score of each prompt + response (chat template, right padding, score at the last token)."""
    import torch

    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            convs = [list(p) + [{"role": "assistant", "content": t}]
                     for p, t in zip(prompts[start : start + batch_size], texts[start : start + batch_size])]
            enc = rm_tok.apply_chat_template(convs, padding=True, return_tensors="pt", return_dict=True)
            out.extend(rm(**enc).logits[:, 0].float().tolist())
    return out


def lengths(pairs: list[tuple[list[int], list[int]]]) -> tuple[list[int], list[int]]:
    return [len(p) for p, _ in pairs], [len(r) for _, r in pairs]


def sampling(generation: Any) -> dict[str, Any]:
    """The sampling kwargs of a GenerationParams (its dtype is how the weights are loaded, not a sampling knob)."""
    return generation.model_dump(exclude={"dtype"})
