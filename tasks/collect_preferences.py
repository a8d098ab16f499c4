"""Collect preference pairs: sample K continuations per prompt from the SFT model and label pairs of them — with the
task's gold judge, an AI judge guided by the constitution (RLAIF / RL-CAI), human labels from a file, or a mix.

collect_preferences.source (LABELLERS maps each to the function that labels its pairs):
  gold   best vs worst of the K samples by the gold judge (VADER: the default task's synthetic human, docs/methods.md, "The default task"),
         kept above `min_margin`; labels are hard (1.0).
  ai     every pair of the K samples judged by `collect_preferences.judge` (default: the pointwise judge on
         models/judge, the packaged Qwen2.5 0.5B Instruct; or the A/B letter judge on any local model, or an
         OpenAI-compatible endpoint) under one principle of the constitution drawn per prompt; the judge's best vs
         worst sample (Borda count) is the DPO pair, every judged pair an RM pair with reward_pairs: all; labels
         are soft p(chosen better). Judgments are cached on disk (paths.judge_cache), so a re-run or a resumed
         run asks no question twice.
  human  the pairs and labels of `human_file` (any preference format; labeller ids kept).
  mix    the prompts are shared between the gold and AI judges by `mix` weights; human_file pairs are added
         when the file exists, and the AI judge also labels them to measure its agreement with the humans.

Outputs (data/preferences/): train.jsonl + eval.jsonl — every non-tied pair with its soft label, for the reward
model (eval rows carry `gold_label` when the task has a gold judge, so the RM's held-out accuracy is measured
against ground truth); hard_train.jsonl + hard_eval.jsonl — the pairs with |p − ½| > hard_threshold, for the DPO
family; judgments.jsonl — every judgment (p_AB, p_BA, disagreement, principle, judge); samples.jsonl. Quality
signals (agreement with gold/human, position-bias rate, confidence histogram, ties, calls, tokens, time) go to
metrics/collect_preferences.json, plots/judge_confidence.csv and MLflow. Everything passes its great-expectations
suite before it replaces the previous data/preferences/ (atomic_dir).

Reads  models/sft (chain), data/validated/prompts_train.jsonl, data/constitution.yaml, collect_preferences.human_file
Writes data/preferences/, metrics/collect_preferences.json, plots/judge_confidence.csv

    dvc repro collect_preferences
    alignflow run
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasks.common.constitution import draw_principle
from tasks.common.gold import gold_preference
from tasks.common.io import atomic_dir, read_jsonl, write_json, write_jsonl
from tasks.common.params import Params
from tasks.common.stage import StageError, stage_main
from tasks.judges.quality import agreement, confidence_histogram, judge_signals
from tasks.preferences.pairing import (
    assign_shares,
    best_vs_worst,
    margin_pairs,
    split_pairs,
    to_row,
)

__all__ = ["run_collect_preferences", "best_vs_worst", "split_pairs"]
log = logging.getLogger("alignflow.collect_preferences")
PAIR_FILES = ("train.jsonl", "eval.jsonl", "hard_train.jsonl", "hard_eval.jsonl")


def run_collect_preferences(params: Params) -> dict[str, float]:
    """Files in, files out, metrics returned."""
    from tasks.common.seeding import seed_everything
    from tasks.common.tracking import log_dataset, log_metrics, stage_run

    cfg = params.collect_preferences
    seed_everything(params.seed)
    with stage_run("collect_preferences", params, cfg.model_dump()):
        labelled, samples, metrics = _label(params)
        rows = [to_row(x["pair"], x["judgment"].p_a, x["source"], x["labeller"], x["gold"]) for x in labelled]
        rows = [r for r in rows if r is not None]
        metrics["collect/ties_dropped"] = len(labelled) - len(rows)
        if not rows:
            raise StageError(
                f"collect_preferences: no preference pairs ({metrics.get('collect/dropped_low_margin', 0):.0f} "
                f"prompts dropped below collect_preferences.min_margin={cfg.min_margin}, "
                f"{metrics['collect/ties_dropped']} exact ties); lower min_margin or raise samples_per_prompt"
            )
        train, held_out = split_pairs(rows, cfg.eval_fraction, params.seed)
        # DPO data: confident pairs, and with reward_pairs=all only each prompt's best-vs-worst pair (as before)
        hard = {r["id"] for r in rows if abs(r["label"] - 0.5) > cfg.hard_threshold and r.get("best_worst", True)}
        outputs = {
            "train.jsonl": train,
            "eval.jsonl": held_out,
            "hard_train.jsonl": [_dpo_row(r) for r in train if r["id"] in hard],
            "hard_eval.jsonl": [_dpo_row(r) for r in held_out if r["id"] in hard],
        }
        if not outputs["hard_train.jsonl"]:
            raise StageError(
                f"collect_preferences: no pair is confident enough for DPO (|p − 0.5| > hard_threshold="
                f"{cfg.hard_threshold}); lower collect_preferences.hard_threshold or use a stronger judge"
            )
        judgments = [_judgment_record(x) for x in labelled]

        out_dir = Path(params.paths.preferences)
        with atomic_dir(out_dir) as staging:
            for name, part in outputs.items():
                if part:
                    write_jsonl(staging / name, part)
            write_jsonl(staging / "judgments.jsonl", judgments)
            if samples:
                write_jsonl(staging / "samples.jsonl", samples)
            # Produced data go through the same suites as user data, before they replace the old output.
            # The RM set and the DPO set overlap by design: each is checked as one data set on its own.
            for names in (("train.jsonl", "eval.jsonl"), ("hard_train.jsonl", "hard_eval.jsonl")):
                _validate_pairs([staging / n for n in names if outputs[n]], params)
            _validate_judgments(staging / "judgments.jsonl", params)

        metrics.update({f"collect/{n.removesuffix('.jsonl')}_pairs": len(p) for n, p in outputs.items()})
        metrics["collect/pairs"] = len(rows)
        metrics.update(_gold_means(rows, samples))
        histogram = confidence_histogram([j["p_a"] for j in judgments if j["source"] == "ai"] or
                                         [j["p_a"] for j in judgments])
        _write_histogram(histogram)
        write_json(Path(params.paths.metrics) / "collect_preferences.json", metrics)
        log_metrics(metrics)
        log_dataset(out_dir / "train.jsonl", train, context="output", name="preferences_train")
        _log_artifacts(rows[:20], histogram, cfg.source)
    return metrics


Labels = tuple[list[dict], list[dict], dict[str, float]]  # labelled pairs, samples (samples.jsonl), stage metrics


def _label(params: Params) -> Labels:
    """Every labelled pair as {pair, judgment, source, labeller, gold}, the samples, and the stage metrics: the
    labelling function of collect_preferences.source (LABELLERS)."""
    return LABELLERS[params.collect_preferences.source](params)


def _label_gold(params: Params) -> Labels:
    """gold: each prompt's best vs worst sample by the gold judge (every pair above the margin with
    reward_pairs: all)."""
    cfg = params.collect_preferences
    _require_gold(params)
    prompts, completions, metrics = _sample(params)
    labelled, metrics["collect/dropped_low_margin"] = _gold_pairs(prompts, completions, cfg.min_margin,
                                                                  cfg.reward_pairs)
    return labelled, _sample_rows(prompts, completions, has_gold=True), metrics


def _label_ai(params: Params) -> Labels:
    """ai: every pair of each prompt's samples judged by the AI judge under a principle drawn for the prompt."""
    # The constitution is checked before any model is loaded: a bad principle fails in a second, not after sampling.
    constitution = _constitution(params)
    prompts, completions, metrics = _sample(params)
    with _ai_judge(params, constitution) as judge:
        labelled, judge_metrics = _judge_sampled(params, prompts, completions, judge, constitution, share={})
    metrics.update(judge_metrics)
    return labelled, _sample_rows(prompts, completions, _has_gold(params)), metrics


def _label_human(params: Params) -> Labels:
    """human: the pairs and labels of human_file, one item per person's vote; no sampling, no judge."""
    human_file = Path(params.collect_preferences.human_file) if params.collect_preferences.human_file else None
    if human_file is None or not human_file.exists():
        raise StageError(f"collect_preferences.source is human but human_file "
                         f"{params.collect_preferences.human_file} does not exist")
    human = _load_human(params, human_file)
    return human, [], _human_metrics(params, human, None, None)


def _label_mix(params: Params) -> Labels:
    """mix: the prompts shared between the gold and AI judges by `mix` weights, plus human_file's pairs when the
    file exists (which the AI judge also labels, to measure its agreement with the humans)."""
    cfg = params.collect_preferences
    _require_gold(params)
    human_file = Path(cfg.human_file) if cfg.human_file else None
    constitution = _constitution(params)  # before any model is loaded, as for ai
    prompts, completions, metrics = _sample(params)
    share = assign_shares([p["id"] for p in prompts], cfg.mix, params.seed)
    with _ai_judge(params, constitution) as judge:
        labelled, judge_metrics = _judge_sampled(params, prompts, completions, judge, constitution, share)
        metrics.update(judge_metrics)
        if human_file is not None and human_file.exists():
            human = _load_human(params, human_file)
            metrics.update(_human_metrics(params, human, judge, constitution))
            labelled += human
    return labelled, _sample_rows(prompts, completions, has_gold=True), metrics


# collect_preferences.source → the function that labels its pairs (the module docstring says what each one does).
LABELLERS: dict[str, Callable[[Params], Labels]] = {
    "gold": _label_gold,
    "ai": _label_ai,
    "human": _label_human,
    "mix": _label_mix,
}


def _has_gold(params: Params) -> bool:
    return params.data.gold != "none"


def _require_gold(params: Params) -> None:
    if not _has_gold(params):
        raise StageError(f"collect_preferences.source={params.collect_preferences.source} needs a gold judge, but "
                         "data.gold is none")


def _sample(params: Params) -> tuple[list[dict], list[list[dict]], dict[str, float]]:
    from tasks.common.modeling import generate, load_causal_lm, load_tokenizer
    from tasks.common.tracking import log_dataset

    cfg, paths = params.collect_preferences, params.paths
    prompts_file = Path(paths.validated) / "prompts_train.jsonl"
    for needed in (prompts_file, Path(paths.sft_model)):
        if not needed.exists():
            raise StageError(f"collect_preferences: {needed} not found (run the stage that writes it first)")
    prompts = read_jsonl(prompts_file)[: cfg.max_prompts]
    log_dataset(prompts_file, prompts, context="prompts")
    model = load_causal_lm(paths.sft_model, dtype=cfg.generation.dtype)
    tok = load_tokenizer(paths.sft_model)
    start = time.perf_counter()
    completions = generate(
        model, tok, [p["prompt"] for p in prompts], **cfg.generation.model_dump(exclude={"dtype"}),
        num_return_sequences=cfg.samples_per_prompt, batch_size=cfg.batch_size, seed=params.seed,
        desc="collect_preferences",
    )
    gen_s = time.perf_counter() - start
    del model
    gc.collect()  # the judge may load its own model next
    n_tokens = sum(s["n_tokens"] for per_prompt in completions for s in per_prompt)
    return prompts, completions, {
        "collect/prompts": len(prompts),
        "collect/gen_seconds": gen_s,
        "collect/gen_tokens_per_s": n_tokens / gen_s if gen_s > 0 else 0.0,
        "collect/empty_samples": sum(1 for c in completions for s in c if not s["text"]),
    }


def _sample_rows(prompts: list[dict], completions: list[list[dict]], has_gold: bool) -> list[dict]:
    from tasks.common.gold import gold_scores

    rows = []
    for prompt, per_prompt in zip(prompts, completions, strict=True):
        scores = gold_scores([s["text"] for s in per_prompt]) if has_gold else [None] * len(per_prompt)
        for k, (s, score) in enumerate(zip(per_prompt, scores, strict=True)):
            rows.append({
                "id": f"{prompt['id']}-{k}", "prompt_id": prompt["id"], "prompt": prompt["prompt"],
                "completion": [{"role": "assistant", "content": s["text"]}], "score": score,
                "n_tokens": s["n_tokens"], "eos": s["eos"],
            })
    return rows


def _dpo_row(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("prompt_id", "best_worst")}


def _gold_pairs(prompts: list[dict], completions: list[list[dict]], min_margin: float,
                reward_pairs: str) -> tuple[list[dict], int]:
    from tasks.common.gold import gold_scores
    from tasks.judges.rule import GoldJudge

    pairs, dropped = [], 0
    for prompt, per_prompt in zip(prompts, completions, strict=True):
        texts = [s["text"] for s in per_prompt]
        scores = gold_scores(texts)
        found = margin_pairs(prompt, texts, scores, min_margin) if reward_pairs == "all" else \
            [r for r in [best_vs_worst(prompt, texts, scores, min_margin)] if r is not None]
        if not found:
            dropped += 1
        for row in found:
            extra = {"sample_scores": scores}
            if reward_pairs == "all":
                extra |= {"prompt_id": row["prompt_id"], "best_worst": row["best_worst"]}
            pairs.append({"id": row["id"], "prompt": row["prompt"], "a": row["chosen"][0]["content"],
                          "b": row["rejected"][0]["content"], "extra": extra,
                          "gold": (row["score_chosen"], row["score_rejected"])})
    judgments = GoldJudge().pairwise_many([(p["prompt"], p["a"], p["b"], None) for p in pairs], desc="gold judge")
    return [_labelled(p, j, "gold", "vader", p["gold"]) for p, j in zip(pairs, judgments, strict=True)], dropped


def _judge_sampled(params: Params, prompts: list[dict], completions: list[list[dict]], judge, constitution,
                   share: dict[str, str]) -> tuple[list[dict], dict]:
    """AI (and, for mix, gold) labels. Each prompt goes to one labeller: `share` maps a prompt id to "gold" or "ai"
    (mix: by `mix` shares; ai: empty, every prompt to the AI judge). The AI judge
    compares every pair of the prompt's K samples under one principle drawn for the prompt (a pointwise judge
    rates each sample once, so this costs K ratings); the samples are ranked by their summed win probability
    (Borda count) and the judge's best vs worst is the prompt's DPO pair — the RLAIF counterpart of the gold
    source's best vs worst. With reward_pairs: all the reward model also gets every other judged pair."""
    from tasks.common.gold import gold_scores
    from tasks.preferences.pairing import all_pairs, borda_best_worst

    cfg = params.collect_preferences
    has_gold = _has_gold(params)
    gold_share = [(p, c) for p, c in zip(prompts, completions, strict=True) if share.get(p["id"], "ai") == "gold"]
    ai_share = [(p, c) for p, c in zip(prompts, completions, strict=True) if share.get(p["id"], "ai") == "ai"]

    groups, items = [], []
    for prompt, c in ai_share:
        pairs = all_pairs(prompt, [s["text"] for s in c])
        principle = draw_principle(constitution, params.seed, prompt["id"])
        groups.append(pairs)
        items += [(p["prompt"], p["a"], p["b"], principle) for p in pairs]
    judged = iter(judge.pairwise_many(items, desc="AI judge"))
    labelled, all_judged = [], []
    for pairs in groups:
        judgments = [next(judged) for _ in pairs]
        top = borda_best_worst(pairs, [j.p_a for j in judgments])
        for pair, j in zip(pairs, judgments, strict=True):
            pair["gold"] = tuple(gold_scores([pair["a"], pair["b"]])) if has_gold else None
            pair["extra"] = {"prompt_id": pair["prompt_id"], "best_worst": pair["id"] == top}
            all_judged.append((pair, j))
            if pair["id"] == top or cfg.reward_pairs == "all":
                labelled.append(_labelled(pair, j, "ai", judge.identity, pair["gold"]))
    gold_labelled, dropped = _gold_pairs([p for p, _ in gold_share], [c for _, c in gold_share], cfg.min_margin,
                                         cfg.reward_pairs) if gold_share else ([], 0)
    labelled += gold_labelled

    metrics = judge_signals([j.to_dict() for _, j in all_judged], cfg.hard_threshold, prefix="judge")
    metrics.update({
        "judge/calls": judge.stats.calls, "judge/cached": judge.stats.cached,
        "judge/tokens": judge.stats.tokens, "judge/seconds": judge.stats.seconds,
        "collect/candidate_pairs": len(all_judged), "collect/gold_labelled_pairs": len(gold_labelled),
        "collect/gold_prompts": len(gold_share), "collect/ai_prompts": len(ai_share),
    })
    if gold_share:
        metrics["collect/dropped_low_margin"] = dropped
    if has_gold and all_judged:
        metrics.update(_agreement_with_gold(all_judged, cfg.hard_threshold))
    return labelled, metrics


def _agreement_with_gold(judged: list[tuple[dict, Any]], hard_threshold: float) -> dict[str, float]:
    """judge/agreement_gold on the judge's best-vs-worst pairs (the preference data the policy is trained on),
    judge/agreement_gold_all on every pair it compared (near gold ties included: VADER's own noise there makes
    ~0.7 the most any judge reaches), judge/agreement_gold_hard on the compared pairs above hard_threshold."""
    out: dict[str, float] = {}
    subsets = {"": [x for x in judged if x[0]["extra"]["best_worst"]], "_all": judged,
               "_hard": [x for x in judged if abs(x[1].p_a - 0.5) > hard_threshold]}
    for suffix, subset in subsets.items():
        if subset:
            out[f"judge/agreement_gold{suffix}"], out[f"judge/agreement_gold{suffix}_pairs"] = agreement(
                [j.p_a for _, j in subset], [gold_preference(*p["gold"]) for p, _ in subset])
    return out


def _constitution(params: Params):
    from tasks.common.constitution import ConstitutionError, load_constitution

    try:
        return load_constitution(params.data.constitution)
    except ConstitutionError as exc:
        raise StageError(str(exc)) from None


@contextmanager
def _ai_judge(params: Params, constitution):
    """The configured AI judge (default model: paths.judge_model), with the on-disk judgment cache; its HTTP
    connections and cache are closed on leaving, whatever happened."""
    from tasks.judges.configured import configured_judge

    judge = configured_judge(params.collect_preferences.judge, "collect_preferences.judge", params.paths.judge_model,
                             params.paths.judge_cache, constitution)
    try:
        yield judge
    finally:
        if hasattr(judge, "close"):
            judge.close()  # HTTP connections
        judge.cache.close()


def _labelled(pair: dict, judgment, source: str, labeller: str, gold) -> dict:
    return {"pair": pair, "judgment": judgment, "source": source, "labeller": labeller, "gold": gold}


def _load_human(params: Params, path: Path) -> list[dict]:
    """Human pairs as judged items, one per row: each row keeps its own label (p(chosen better), 1 when absent) and
    labeller id. Several labellers may label the same pair (`alignflow label`, label.overlap): each vote is its own
    item, and all votes on one prompt share a split group (prompt_id), so they never straddle train/eval."""
    import hashlib
    import json

    from tasks.common.gold import gold_scores
    from tasks.common.validation import DataValidationError, load_and_validate
    from tasks.judges.base import Judgment

    try:
        rows = load_and_validate("preference", [str(path)], params)
    except DataValidationError as exc:
        raise StageError(f"collect_preferences.human_file: {exc}") from exc
    has_gold = _has_gold(params)
    identity = f"human:{path.name}"
    out = []
    for n, r in enumerate(rows):
        a, b = r["chosen"][-1]["content"], r["rejected"][-1]["content"]
        p = 1.0 if r.get("label") is None else float(r["label"])
        group = hashlib.sha256(json.dumps(r["prompt"], sort_keys=True).encode()).hexdigest()[:16]
        pair = {"id": f"human-{r.get('id', n)}", "prompt": r["prompt"], "a": a, "b": b,
                "extra": {"prompt_id": f"human-{group}"}}
        # A person's label needs no order swap: both "orders" are the same answer.
        judgment = Judgment(p_a=p, p_ab=p, p_ba=1.0 - p, disagreement=0.0, position_flip=False, principle=None,
                            judge=identity)
        gold = tuple(gold_scores([a, b])) if has_gold else None
        out.append(_labelled(pair, judgment, "human", str(r.get("labeller") or identity), gold))
    return out


def _human_metrics(params: Params, human: list[dict], judge, constitution) -> dict[str, float]:
    """How far the human labels agree with the gold judge, and with the AI judge when one is in play."""
    metrics: dict[str, float] = {"collect/human_pairs": len(human)}
    metrics.update(_inter_annotator(human))
    p_human = [x["judgment"].p_a for x in human]
    if _has_gold(params) and human:
        gold_p = [gold_preference(*x["gold"]) for x in human]
        metrics["human/agreement_gold"], metrics["human/agreement_gold_pairs"] = agreement(p_human, gold_p)
    if judge is not None and human:
        items = [(x["pair"]["prompt"], x["pair"]["a"], x["pair"]["b"],
                  draw_principle(constitution, params.seed, x["pair"]["id"])) for x in human]
        ai_p = [j.p_a for j in judge.pairwise_many(items, desc="AI judge on human pairs")]
        metrics["judge/agreement_human"], metrics["judge/agreement_human_pairs"] = agreement(ai_p, p_human)
    return metrics


def _inter_annotator(human: list[dict]) -> dict[str, float]:
    """Fleiss' κ over every pair that ≥ 2 people labelled, and the mean pairwise Cohen's κ (alignflow/labeling/
    agreement.py). A pair is its prompt and its two texts in either order; votes are a / b / tie in a fixed order."""
    import hashlib
    import json
    import math

    from tasks.preferences.agreement import by_item, fleiss_from_labels, mean_cohen

    votes = []
    for x in human:
        a, b, p = x["pair"]["a"], x["pair"]["b"], x["judgment"].p_a
        first, second = sorted((a, b))
        key = hashlib.sha256(json.dumps([x["pair"]["prompt"], first, second]).encode()).hexdigest()
        votes.append((key, x["labeller"], "tie" if p == 0.5 else "a" if (p > 0.5) == (a == first) else "b"))
    items = by_item(votes)
    cohen, rater_pairs = mean_cohen(items)
    out = {"human/labellers": len({v[1] for v in votes}), "human/overlap_pairs": sum(len(v) >= 2 for v in items.values()),
           "human/fleiss_kappa": fleiss_from_labels(items), "human/cohen_kappa": cohen,
           "human/cohen_kappa_rater_pairs": rater_pairs}
    return {k: float(v) for k, v in out.items() if not math.isnan(v)}


def _judgment_record(x: dict) -> dict[str, Any]:
    j, pair = x["judgment"], x["pair"]
    rec = {"id": pair["id"], "source": x["source"], "labeller": x["labeller"], **j.to_dict(),
           "a": pair["a"], "b": pair["b"]}
    rec.pop("cached")  # a fact about this run, not about the pair: the file must not change when the cache hits
    if x["gold"] is not None:
        rec["gold_p_a"] = gold_preference(*x["gold"])
    return rec


def _gold_means(rows: list[dict], samples: list[dict]) -> dict[str, float]:
    """Mean gold score of the samples and of the chosen/rejected sides (a sanity check on any labeller)."""
    scored = [r for r in rows if r.get("score_chosen") is not None]
    out = {}
    if scored:
        out["collect/mean_chosen_gold"] = sum(r["score_chosen"] for r in scored) / len(scored)
        out["collect/mean_rejected_gold"] = sum(r["score_rejected"] for r in scored) / len(scored)
    sample_scores = [s["score"] for s in samples if s.get("score") is not None]
    if sample_scores:
        out["collect/mean_sample_gold"] = sum(sample_scores) / len(sample_scores)
    return out


def _write_histogram(histogram: list[dict]) -> None:
    """plots/judge_confidence.csv for `dvc plots` (bar chart of the soft labels)."""
    import csv

    path = Path("plots") / "judge_confidence.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["bin_low", "bin_high", "count"])
        writer.writeheader()
        writer.writerows(histogram)


def _validate_pairs(files: list[Path], params: Params) -> None:
    from tasks.common.validation import DataValidationError, load_and_validate

    try:
        load_and_validate("preference", files, params)
    except DataValidationError as exc:
        raise StageError(f"collect_preferences: the produced pairs failed the preference suite: {exc}") from exc


def _validate_judgments(path: Path, params: Params) -> None:
    from tasks.common.constitution import load_constitution
    from tasks.preferences.judgment_checks import check_judgments

    names = load_constitution(params.data.constitution).names if Path(params.data.constitution).exists() else []
    issues = check_judgments(read_jsonl(path), names, str(path))
    if issues:
        listed = "\n".join(f"  {i}" for i in issues[:20])
        raise StageError(f"collect_preferences: the judgments failed their suite ({len(issues)} issues):\n{listed}")


def _log_artifacts(rows: list[dict], histogram: list[dict], source: str) -> None:
    import mlflow

    mlflow.log_table(
        {
            "prompt": [p["prompt"][-1]["content"] for p in rows],
            "chosen": [p["chosen"][-1]["content"] for p in rows],
            "rejected": [p["rejected"][-1]["content"] for p in rows],
            "label": [p["label"] for p in rows],
            "labeller": [p["labeller"] for p in rows],
        },
        artifact_file="sample_pairs.json",
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar([h["bin_low"] + 0.05 for h in histogram], [h["count"] for h in histogram], width=0.09)
    ax.set_xlabel("p(a better), both orders averaged")
    ax.set_ylabel("pairs")
    ax.set_title(f"label confidence ({source})")
    fig.tight_layout()
    mlflow.log_figure(fig, "judge_confidence.png")
    plt.close(fig)


if __name__ == "__main__":
    stage_main("collect_preferences", run_collect_preferences)
