"""Model FLOPs: how the benchmark counts the arithmetic a workload needed (not what the hardware happened to do).

Notation: a decoder with `n_layers` layers, width `d`, query width `d_attn` = heads × head_dim, vocabulary `V`.
`N_body` = the parameters of the linear layers inside the blocks (q, k, v, o, gate, up, down; grouped-query k/v are
counted at their real, smaller size); embeddings, norms and the LM head are not in it. `N_lora` = the parameters of
live (unmerged) LoRA adapters, r·(d_in + d_out) per adapted linear. A multiply-add is 2 FLOPs. Only real tokens
count: padding, and positions after a sequence finished in a batched `generate`, are work the hardware did but the
model did not need, so they lower the achieved FLOP/s rather than raise it (the MFU convention of PaLM, App. B).

Forward over one sequence of L tokens, with the LM head applied at `h` positions:

    F_fwd = 2·N_body·L + 2·n_layers·d_attn·L·(L+1) + 2·V·d·h

The attention term is the causal count exactly: the token at position c multiplies its query with c keys and its
attention weights with c values (2·c·d_attn FLOPs each) in every layer, and Σ_{c=1..L} 4·n_layers·d_attn·c =
2·n_layers·d_attn·L·(L+1) — Kaplan et al.'s 2·n_layer·n_ctx·d_attn per token, with the causal mask taken at its
word. h = the positions whose next token is scored: the completion for SFT (completion-only loss) and DPO, the
response for PPO/KL log-probs, 1 for a generation prefill, 0 for a reward/value model (its head is d×1: 2·d per
position, negligible, and left out). Work beyond that is not counted: TRL 1.16's fused LM head scores every
position on a CPU (its compact path is for Triton devices), the PPO/KL scoring keeps logits at the batch's widest
response + 1, and the plain baselines take the logits of every position. A live LoRA adapter adds 2·N_lora·L to a forward (4.6 % of 2·N_body·L at r = 16 on
SmolLM2-135M); it is counted in training passes only, where it is trained, and left out of sampling and scoring.

Backward, for LoRA training (every base weight frozen):
- frozen linears and the LM head need only the gradient w.r.t. their input, one matmul of the forward's size:
  1× their forward FLOPs (a full fine-tune would add the weight gradient, another 1×: the familiar 6·N per token);
- the attention matmuls (QKᵀ and AV) have activations on both sides: gradients for both, 2× their forward;
- LoRA weights get both gradients: 2× their (small) forward.
So one training pass = F_train = 4·N_body·L + 6·N_lora·L + 6·n_layers·d_attn·L·(L+1) + 4·V·d·h, i.e. ~2× the
forward, not the 3× of a full fine-tune. Recomputation by activation checkpointing is not counted (it is hardware
work the model did not need: a run that checkpoints gets a lower achieved FLOP/s for the same model FLOPs).

Per workload (bench/workloads/*.py apply these to the lengths they measured):
- SFT: F_train per trained sequence (prompt + completion, truncated to max_length; h = scored completion tokens).
- reward: F_train for chosen and rejected (head h = 0).
- DPO: F_train for chosen and rejected + one reference F_fwd each (the LoRA adapter disabled, no LoRA term), whether
  the reference pass runs in the step or once up front (`precompute_ref_log_probs`); both are one pass per pair per
  epoch.
- generation: per sequence a prefill F_fwd over its prompt (h = 1), then one decode forward per new token but the
  last (the last is sampled from the previous forward's logits): 2·N_body + 4·n_layers·d_attn·c + 2·V·d at
  context length c. Prompts are counted once per returned sequence, as `generate`
  with `num_return_sequences` prefills each copy.
- PPO: generation as above, then the scoring forwards of policy, reference (adapter disabled) and value model
  (policy/reference h = response length, value h = 0) and the reward model (h = 0) on prompt + response, then
  for each of `ppo_epochs` × minibatches F_train of the policy and of the value model.
- evaluate: generation for each model, the KL forwards (model and reference, h = response), the reward model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Shape:
    n_layers: int
    d_model: int
    d_attn: int
    vocab: int
    n_body: int  # parameters of the blocks' linear layers
    n_lora: int  # parameters of a LoRA adapter on every linear of the blocks (rank r), 0 without one

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def model_shape(model_dir: str | Path, lora_r: int = 0) -> Shape:
    """The shape of the causal LM in `model_dir`, counted on an empty (meta-device) copy: no weights are read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(model_dir))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n_body = n_lora = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}":
            n_body += module.in_features * module.out_features
            n_lora += lora_r * (module.in_features + module.out_features)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return Shape(config.num_hidden_layers, config.hidden_size, config.num_attention_heads * head_dim,
                 config.vocab_size, n_body, n_lora)


def _attn(s: Shape, length: int) -> float:
    return 2.0 * s.n_layers * s.d_attn * length * (length + 1)


def forward(s: Shape, length: int, head: int) -> float:
    """F_fwd of one sequence of `length` tokens with the LM head at `head` positions (no LoRA term: see above)."""
    return 2.0 * s.n_body * length + _attn(s, length) + 2.0 * s.vocab * s.d_model * head


def train(s: Shape, length: int, head: int) -> float:
    """F_train (forward + backward) of one sequence under LoRA training: see the module docstring."""
    return 4.0 * s.n_body * length + 6.0 * s.n_lora * length + 3.0 * _attn(s, length) + 4.0 * s.vocab * s.d_model * head


def generation(s: Shape, prompt_len: int, new_tokens: int) -> float:
    """Prefill of the prompt (head at its last position), then one decode forward per new token but the last."""
    per_token = 2.0 * s.n_body + 2.0 * s.vocab * s.d_model
    decode = sum(per_token + 4.0 * s.n_layers * s.d_attn * (prompt_len + t) for t in range(1, new_tokens + 1))
    # The last new token is sampled from the previous step's logits; no forward runs after it.
    if new_tokens:
        decode -= per_token + 4.0 * s.n_layers * s.d_attn * (prompt_len + new_tokens)
    return forward(s, prompt_len, head=1) + decode
