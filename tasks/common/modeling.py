"""Models on disk and in memory: the adapter chain, devices and batched sampling.

Why a chain: every training stage trains a LoRA adapter (MBs, cheap to version with DVC) instead of writing a
full copy of the weights. `models/sft/` is an adapter on `models/base/`; `models/policy/` is an adapter on the
SFT model (the SFT adapter merged into the base in memory). Each stage output holds `alignflow_model.json`
naming its chain, and `load_causal_lm` rebuilds the model by merging the chain in order. With the last adapter
kept unmerged, `model.disable_adapter()` gives the reference model for free (no second copy of the weights).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHAIN_FILE = "alignflow_model.json"


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def write_chain(out_dir: str | Path, base: str | Path, adapters: Sequence[str | Path], **extra: Any) -> None:
    """Record how to rebuild the model saved in `out_dir` (paths relative to the project root)."""
    info = {"base": str(base), "adapters": [str(a) for a in adapters], **extra}
    Path(out_dir, CHAIN_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def read_chain(model_dir: str | Path) -> dict[str, Any]:
    """A plain model directory (no chain file) is its own base with no adapters."""
    f = Path(model_dir, CHAIN_FILE)
    if not f.exists():
        return {"base": str(model_dir), "adapters": []}
    return json.loads(f.read_text(encoding="utf-8"))


def load_tokenizer(model_dir: str | Path, padding_side: str = "left"):
    """Tokenizers are saved beside every stage output; left padding is what generation needs."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.padding_side = padding_side
    if tok.pad_token is None:
        raise ValueError(f"{model_dir}: tokenizer has no pad token (prepare_model sets one; re-run it)")
    return tok


def load_causal_lm(model_dir: str | Path, merge_last: bool = True, dtype: Any = None):
    """Rebuild base + adapters. With merge_last=False the last adapter stays a live PeftModel (trainable)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    chain = read_chain(model_dir)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype  # "bfloat16" from params
    model = AutoModelForCausalLM.from_pretrained(chain["base"], dtype=dtype or torch.float32)
    adapters = list(chain["adapters"])
    for i, adapter in enumerate(adapters):
        last = i == len(adapters) - 1
        model = PeftModel.from_pretrained(model, adapter, is_trainable=last and not merge_last)
        if not last or merge_last:
            model = model.merge_and_unload()
    model.config.use_cache = True
    contiguous_lm_head(model)
    return model.to(device()).eval()


def contiguous_lm_head(model) -> None:
    """Hand the output head a contiguous input: generate's prefill keeps only the last position's logits
    (`hidden[:, -1:, :]`, a strided view), and for such an input torch 2.13's CPU `linear` goes through `bmm` over
    the weight expanded per batch row — a copy of the 49152×576 head for every sequence. Measured on this CPU, batch
    64, SmolLM2's head: bf16 2.89 s → 0.015 s, fp32 0.32 s → 0.04 s per prefill (one-off profile, script not kept).
    Generation in plain transformers pays it on every call; the copy costs nothing where the input is contiguous."""
    head = model.get_output_embeddings()
    if head is None or getattr(head, "_alignflow_contiguous", False):
        return
    head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))
    head._alignflow_contiguous = True


@contextmanager
def merged(model):
    """The live LoRA adapter merged into the weights while generating, the weights restored bit for bit after.

    A live LoRA adds two small matmuls to every adapted linear at every decoding step; merged, decoding costs what
    the plain model costs. Measured on the 135M SFT chain, 64 probe prompts × 24 greedy tokens, A/B twice
    (one-off profile, script not kept): bf16 12.4 → 9.1 s, fp32 16.0 → 11.5 s. PEFT's unmerge subtracts the delta
    again, which leaves a weight up to an ulp off; here the adapted weights are copied first and copied back, so the
    reference (adapter disabled) stays exactly the model it was, however many rollouts merge and unmerge."""
    if not hasattr(model, "merge_adapter"):
        yield model
        return
    import torch
    from peft.tuners.lora import LoraLayer

    saved = [(layer.get_base_layer().weight, layer.get_base_layer().weight.detach().clone())
             for layer in model.modules() if isinstance(layer, LoraLayer)]
    model.merge_adapter()
    try:
        yield model
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for weight, original in saved:
                weight.copy_(original)


def generate(
    model,
    tokenizer,
    prompts: list[list[dict[str, str]]],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    num_return_sequences: int = 1,
    batch_size: int = 32,
    seed: int | None = None,
    desc: str = "generate",
) -> list[list[dict[str, Any]]]:
    """Sample completions for chat prompts; returns, per prompt, a list of dicts (text, n_tokens, eos).

    Prompts are sorted by length before batching so that left padding wastes little compute; results come back in
    the caller's order. Generation stops at the tokenizer's EOS (the chat template's end-of-turn token).
    """
    import torch
    from tqdm.auto import tqdm

    from tasks.common.sampler import sampling_processors

    if seed is not None:
        torch.manual_seed(seed)
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    results: list[list[dict[str, Any]]] = [[] for _ in texts]
    eos_id = tokenizer.eos_token_id
    do_sample = temperature > 0
    per_batch = max(1, batch_size // max(1, num_return_sequences))
    with torch.inference_mode(), tqdm(total=len(texts), desc=desc, disable=_quiet()) as bar:
        for start in range(0, len(order), per_batch):
            idx = order[start : start + per_batch]
            enc = tokenizer(
                [texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            # Each prompt's K rows side by side, as generate's own num_return_sequences expansion lays them out
            # (greedy mode, which the sampler runs in, accepts one sequence per row only).
            enc = {k: v.repeat_interleave(num_return_sequences, dim=0) for k, v in enc.items()}
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,  # sampling is the last logits processor (tasks/common/sampler.py: 40× cheaper)
                logits_processor=sampling_processors(temperature, top_p, top_k) if do_sample else None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            for row, seq in enumerate(new.tolist()):
                has_eos = eos_id in seq
                ids = seq[: seq.index(eos_id)] if has_eos else [t for t in seq if t != tokenizer.pad_token_id]
                text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                results[idx[row // num_return_sequences]].append(
                    {"text": text, "ids": ids + [eos_id] if has_eos else ids, "n_tokens": len(ids) + int(has_eos),
                     "eos": has_eos}
                )
            bar.update(len(idx))
    return results


def _quiet() -> bool:
    return os.environ.get("ALIGNFLOW_QUIET", "") == "1"


def trainer_defaults(trainer: dict[str, Any]) -> dict[str, Any]:
    """TRL config kwargs: this project's defaults with the params.yaml `trainer:` dict over them (the user wins).

    bf16 autocast where the hardware does bf16 natively: GPUs with bf16, and CPUs with AMX / AVX512-BF16 (measured
    on this project's 2-core AVX512-BF16 CPU, SmolLM2-135M SFT: 41.3 s -> 31.5 s for 4 steps, loss within 2 %); elsewhere
    autocast is emulated and slower, so fp32. Gradient checkpointing off (TRL turns it on): a 135M model saves little
    memory for ~25 % more compute. Dataloader worker processes cost more than they save on a 2-core machine.
    """
    import torch

    on_gpu = torch.cuda.is_available()
    bf16 = torch.cuda.is_bf16_supported() if on_gpu else cpu_has_bf16()
    defaults: dict[str, Any] = {
        "bf16": bf16,
        "use_cpu": not on_gpu,  # transformers refuses bf16 on a CPU unless told it is meant to run there
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": on_gpu,
        "disable_tqdm": _quiet(),
        # Under DDP, transformers turns unused-parameter search on for PEFT models: an extra graph pass per step for
        # nothing (every LoRA weight gets a gradient). Off; a user setting wins.
        "ddp_find_unused_parameters": False,
    }
    if "gradient_checkpointing" not in trainer:  # transformers 5 renamed it; the new name would override the old
        defaults["activation_checkpointing"] = False
    return {**defaults, **trainer}


def trainer_config(config_cls: type, section: str, trainer: dict[str, Any], **stage_kwargs: Any):
    """A TRL config (SFTConfig, RewardConfig, DPOConfig, ...) from params `<section>.trainer` over this project's
    defaults, plus what the stage sets itself (output_dir, seed, ...; the stage wins). TRL validates the kwargs;
    its error is re-raised naming the params section, so a bad key reads as a params problem, not a traceback."""
    from tasks.common.stage import StageError

    try:
        return config_cls(**{**trainer_defaults(trainer), **stage_kwargs})
    except (TypeError, ValueError) as exc:
        raise StageError(f"params.yaml {section}.trainer: {exc}") from exc


def mixed_precision_weights(trainer) -> None:
    """Under bf16 mixed precision (trainer.args.bf16), store the frozen weights in bf16; trainable ones stay fp32.

    Frozen weights never take an optimiser step, so they need no fp32 master copy; kept in fp32 they are cast to bf16
    by autocast on every matmul, forward and backward. Measured on this project's 2-core AVX512-BF16 CPU,
    SmolLM2-135M + LoRA r=16 all-linear, 16 × 128 tokens, fwd + bwd + AdamW step (one-off profile, script not kept):
    fp32 19.7 s, fp32 weights + autocast 22.1 s (autocast alone is no faster here), bf16 frozen weights + autocast
    5.9 s (3.3×). Called once the trainer has wrapped the model (PEFT) and before it trains: `.to` changes the
    parameters in place, so every reference the trainer holds sees it.
    """
    import torch

    if trainer.args.bf16:
        trainer.model.to(torch.bfloat16)
        upcast_trainable(trainer.model)


def upcast_trainable(model) -> int:
    """Trainable parameters (LoRA weights, a new score head) to fp32: the optimiser must not update in bf16. PEFT
    already keeps adapter weights fp32 on a bf16 model; modules_to_save copies are not. Returns how many it cast."""
    import torch

    cast = 0
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
            cast += 1
    return cast


def cpu_has_bf16() -> bool:
    """True on x86 CPUs with native bf16 matmul (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
