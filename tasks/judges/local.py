"""A local Hugging Face causal LM as the AI judge (default: the SFT model judging its own samples, as in RLAIF's
"same model" setting; any stage output, local HF directory or hub id works).

The label is soft: after the chat-formatted comparison the assistant turn is prefilled with
"The better response is (" and the judge's next-token logits for the two letters are normalised over the pair,
p(first) = softmax(logit_A, logit_B)[0] — the answer-token log-probs of Bai et al. (2022) and Lee et al. (2023),
never a sampled letter. With chain of thought the model first writes its reasoning (greedy), then the same answer
line is scored after it. Questions are batched, sorted by length so left padding wastes little compute.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from tasks.common.constitution import Constitution
from tasks.judges.base import Judge, Query, Verdict
from tasks.judges.cache import JudgmentCache
from tasks.judges.prompting import ANSWER_PREFIX, judge_messages, strip_answer


class LocalJudge(Judge):
    def __init__(
        self,
        model_dir: str | Path,
        constitution: Constitution | None = None,
        cache: JudgmentCache | None = None,
        chain_of_thought: bool = False,
        cot_clamp: tuple[float, float] = (0.4, 0.6),
        cot_max_new_tokens: int = 64,
        few_shot: bool = True,
        batch_size: int = 16,
        dtype: str = "float32",
        calibrate: bool = False,
    ):
        from tasks.common.modeling import load_causal_lm, load_tokenizer

        super().__init__(constitution if few_shot else None, cache, chain_of_thought, cot_clamp)
        self.model = load_causal_lm(model_dir, dtype=dtype)
        self.tokenizer = load_tokenizer(model_dir)
        self.batch_size = batch_size
        self.cot_max_new_tokens = cot_max_new_tokens
        self.chunk_size = max(batch_size * 4, 32)
        self.letters = answer_token_ids(self.tokenizer)
        self.letter_rows = self.model.get_output_embeddings().weight[list(self.letters)].detach().float()
        self.identity = f"local:{model_identity(model_dir)}:{dtype}"
        self.calibrate = calibrate

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "cot_max_new_tokens": self.cot_max_new_tokens if self.chain_of_thought else None,
                **({"calibrate": CONTENT_FREE} if self.calibrate else {})}

    def score(self, queries: list[Query]) -> list[Verdict]:
        tok = self.tokenizer
        convs = [
            judge_messages(q.prompt, q.first, q.second, q.principle, self.constitution, self.chain_of_thought)
            for q in queries
        ]
        texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in convs]
        reasoning: list[str | None] = [None] * len(texts)
        generated = [0] * len(texts)
        if self.chain_of_thought:
            from tasks.common.modeling import generate

            outs = generate(self.model, tok, convs, max_new_tokens=self.cot_max_new_tokens, temperature=0.0,
                            batch_size=self.batch_size, desc="judge reasoning")
            reasoning = [strip_answer(o[0]["text"]) for o in outs]
            generated = [o[0]["n_tokens"] for o in outs]
            texts = [t + r + "\n" for t, r in zip(texts, reasoning, strict=True)]
        p_first, n_tokens = self._letter_probs([t + ANSWER_PREFIX for t in texts])
        if self.calibrate:
            p_first = self._calibrated(queries, p_first)
        return [
            Verdict(p_first=p, tokens=n + g, reasoning=r)
            for p, n, g, r in zip(p_first, n_tokens, generated, reasoning, strict=True)
        ]

    def _calibrated(self, queries: list[Query], p_first: list[float]) -> list[float]:
        """Contextual calibration (Zhao et al. 2021, https://arxiv.org/abs/2102.09690): the same question with both
        options replaced by a content-free reply measures the judge's prior for "A" on that conversation and
        principle; its log-odds are subtracted, so a judge that always says "A" by the same margin says ½."""
        tok = self.tokenizer
        free = [Query(q.prompt, CONTENT_FREE, CONTENT_FREE, q.principle) for q in queries]
        texts = [tok.apply_chat_template(judge_messages(q.prompt, q.first, q.second, q.principle, self.constitution,
                                                         False), tokenize=False, add_generation_prompt=True)
                 + ANSWER_PREFIX for q in free]
        unique = sorted(set(texts))
        prior = dict(zip(unique, self._letter_probs(unique)[0], strict=True))
        return [calibrate_p(p, prior[t]) for p, t in zip(p_first, texts, strict=True)]

    def _letter_probs(self, texts: list[str]) -> tuple[list[float], list[int]]:
        import torch

        tok, model = self.tokenizer, self.model
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs, lengths = [0.0] * len(texts), [0] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = enc.to(model.device)
                # Only two logits are needed: the last hidden state times the two letters' rows of the LM head, in
                # fp32 — bf16 logits round the small A/B difference of a weak judge into exact ties.
                hidden = model.base_model(**enc).last_hidden_state[:, -1, :].float()
                logits = hidden @ self.letter_rows.T
                pair = torch.softmax(logits, dim=-1)[:, 0]
                for row, i in enumerate(idx):
                    probs[i] = float(pair[row])
                    lengths[i] = int(enc["attention_mask"][row].sum())
        return probs, lengths


CONTENT_FREE = "N/A"


def calibrate_p(p: float, prior: float) -> float:
    """σ(logit p − logit prior): p with the content-free prior's log-odds removed (clipped away from 0 and 1)."""
    eps = 1e-6
    p, prior = min(max(p, eps), 1 - eps), min(max(prior, eps), 1 - eps)
    z = math.log(p / (1 - p)) - math.log(prior / (1 - prior))
    return 1.0 / (1.0 + math.exp(-z))


def answer_token_ids(tokenizer, prefix: str = ANSWER_PREFIX, answers: tuple[str, str] = ("A", "B")) -> tuple[int, int]:
    """The single tokens for the two answers right after `prefix`; a tokenizer that merges or splits them cannot
    give a two-way soft label this way, so it is an error rather than a silent wrong answer."""
    base = tokenizer(prefix, add_special_tokens=False).input_ids
    ids = []
    for answer in answers:
        full = tokenizer(prefix + answer, add_special_tokens=False).input_ids
        if full[: len(base)] != base or len(full) != len(base) + 1:
            raise ValueError(
                f"judge tokenizer encodes {prefix + answer!r} so that the answer is not one token after the "
                "prefix; choose another judge model"
            )
        ids.append(full[-1])
    if ids[0] == ids[1] or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"judge tokenizer has no distinct tokens for the answers {answers}")
    return ids[0], ids[1]


def model_identity(model_dir: str | Path) -> str:
    """Names the weights, not the path: the cache must not answer for a retrained model. Local directories (and
    adapter chains) hash their files; a hub id is named as it is (pin a revision for reproducible caching)."""
    from tasks.common.modeling import read_chain
    from tasks.common.resume import model_digest

    if not Path(model_dir).exists():
        return str(model_dir)
    chain = read_chain(model_dir)
    h = hashlib.sha256()
    for part in [chain["base"], *chain["adapters"]]:
        h.update(model_digest(part).encode() if Path(part).exists() else str(part).encode())
    return f"{Path(model_dir).name}@{h.hexdigest()[:16]}"
