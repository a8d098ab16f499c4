"""K-wise reward-model training: each prompt's responses are scored once, and the loss sums the Bradley–Terry terms of
every labelled pair among them.

Why (Ouyang et al. 2022, InstructGPT §3.5): with K responses per prompt there are K(K−1)/2 comparisons. Fed as
separate pairs, every response is forwarded K−1 times per epoch and the RM overfits within one epoch; fed as one
group, each response is forwarded once, so all six pairs of K = 4 cost four sequences instead of twelve. TRL's
RewardTrainer has no grouped loss, so this is written here; it is a RewardTrainer subclass, so its PEFT wrapping,
logging, checkpoints and metrics stay TRL's.

A training example is one group: the prompt's distinct responses (tokenised with the chat template, as TRL tokenises
pairs) and its pairs as index triples (chosen, rejected, p = P(chosen is better)); the loss is the soft-label
Bradley–Terry loss (tasks.common.reward.soft_bradley_terry_loss) averaged over every pair in the batch.

Pooling (`train_reward.pooling`): `last` reads the score head at the last token (transformers' sequence classifiers);
`mean` applies it to the mean of the response's final hidden states. A lexical property such as sentiment is spread
over the reply, and a mean reads all of it: measured in BENCHMARKS.md ("Reward model ...").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trl.trainer.reward_trainer import RewardTrainer

from tasks.common.reward import pooled_rewards, soft_bradley_terry_loss

log = logging.getLogger("alignflow.train_reward")

GROUP_COLUMNS = ["sequence_ids", "response_start", "pair_chosen", "pair_rejected", "pair_label"]


def group_pairs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs of one prompt into one group: its distinct responses and the pairs as indices into them (order kept:
    first appearance). Rows without a `label` count as p = 1 (chosen is better)."""
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = json.dumps(row["prompt"], sort_keys=True)
        g = groups.setdefault(key, {"prompt": row["prompt"], "responses": [], "index": {}, "pairs": []})
        ends = []
        for side in ("chosen", "rejected"):
            text = json.dumps(row[side], sort_keys=True)
            if text not in g["index"]:
                g["index"][text] = len(g["responses"])
                g["responses"].append(row[side])
            ends.append(g["index"][text])
        label = row.get("label")
        g["pairs"].append((ends[0], ends[1], 1.0 if label is None else float(label)))
    return [{"prompt": g["prompt"], "responses": g["responses"], "pairs": g["pairs"]} for g in groups.values()]


def tokenize_groups(groups: Sequence[dict[str, Any]], tokenizer, max_length: int | None) -> tuple[list[dict], int]:
    """Groups as trainer rows; responses over max_length tokens are dropped with their pairs. Returns the rows and
    how many pairs were dropped."""
    rows, dropped = [], 0
    for g in groups:
        start = len(tokenizer.apply_chat_template(g["prompt"], tokenize=True, add_generation_prompt=True,
                                                  return_dict=True)["input_ids"])
        ids = [tokenizer.apply_chat_template(list(g["prompt"]) + _messages(r), tokenize=True,
                                             return_dict=True)["input_ids"] for r in g["responses"]]
        keep = [max_length is None or len(s) <= max_length for s in ids]
        pairs = [(c, r, p) for c, r, p in g["pairs"] if keep[c] and keep[r]]
        dropped += len(g["pairs"]) - len(pairs)
        if not pairs:
            continue
        used = sorted({i for c, r, _ in pairs for i in (c, r)})
        new = {old: n for n, old in enumerate(used)}
        rows.append({
            "sequence_ids": [ids[i] for i in used],
            "response_start": [start] * len(used),
            "pair_chosen": [new[c] for c, _, _ in pairs],
            "pair_rejected": [new[r] for _, r, _ in pairs],
            "pair_label": [p for _, _, p in pairs],
        })
    return rows, dropped


def grouped_dataset(pair_rows: Sequence[dict[str, Any]], tokenizer, max_length: int | None, name: str):
    from datasets import Dataset

    rows, dropped = tokenize_groups(group_pairs(pair_rows), tokenizer, max_length)
    if dropped:
        log.warning("%s: %d of %d pairs dropped (a response over max_length=%s tokens)", name, dropped,
                    len(pair_rows), max_length)
    if not rows:
        raise ValueError(f"{name}: no pair within max_length={max_length} tokens")
    return Dataset.from_list(rows)


@dataclass
class GroupCollator:
    """Every group's sequences in one right-padded batch; pair indices offset to the flat batch."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        from trl.trainer.utils import pad

        seqs, starts, chosen, rejected, labels = [], [], [], [], []
        for ex in examples:
            offset = len(seqs)
            seqs += [torch.tensor(s) for s in ex["sequence_ids"]]
            starts += ex["response_start"]
            chosen += [offset + i for i in ex["pair_chosen"]]
            rejected += [offset + i for i in ex["pair_rejected"]]
            labels += ex["pair_label"]
        kw = {"padding_side": "right", "pad_to_multiple_of": self.pad_to_multiple_of}
        return {
            "input_ids": pad(seqs, padding_value=self.pad_token_id, **kw),
            "attention_mask": pad([torch.ones_like(s) for s in seqs], padding_value=0, **kw),
            "response_start": torch.tensor(starts),
            "pair_chosen": torch.tensor(chosen),
            "pair_rejected": torch.tensor(rejected),
            "pair_label": torch.tensor(labels, dtype=torch.float32),
        }


class KWiseRewardTrainer(RewardTrainer):
    """RewardTrainer over groups (see the module docstring); `pooling` is `last` or `mean`."""

    def __init__(self, *args, pooling: str = "last", **kwargs):
        self.pooling = pooling
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "sequence_ids" in dataset.column_names:
            return dataset
        return grouped_dataset(list(dataset), processing_class, args.max_length, dataset_name)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = list(GROUP_COLUMNS)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

        mode = "train" if self.model.training else "eval"
        chosen, rejected = inputs.pop("pair_chosen"), inputs.pop("pair_rejected")
        p, start = inputs.pop("pair_label"), inputs.pop("response_start")
        outputs = model(**inputs, use_cache=False, output_hidden_states=self.pooling == "mean")
        rewards = pooled_rewards(model, outputs, inputs["attention_mask"], start, self.pooling)
        delta = rewards[chosen] - rewards[rejected]
        loss = soft_bradley_terry_loss(delta, p.to(delta.dtype))
        if self.args.center_rewards_coefficient is not None:  # as in TRL's loss, over every scored response
            loss = loss + self.args.center_rewards_coefficient * (rewards**2).mean()
        with torch.no_grad():
            agree = ((delta > 0) == (p > 0.5)).float()[p != 0.5]
            self._metrics[mode]["accuracy"].append(agree.mean().item() if len(agree) else float("nan"))
            self._metrics[mode]["margin"].append(delta.mean().item())
            self._metrics[mode]["mean_reward"].append(rewards.mean().item())
        return (loss, outputs) if return_outputs else loss


def _messages(response) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": response}] if isinstance(response, str) else list(response)
