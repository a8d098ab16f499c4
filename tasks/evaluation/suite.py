"""The evaluation's measurements beyond reward and KL, and the gate decision: the evaluate stage's building blocks.

Each function reads the per-model results (tasks/evaluation/results.py ModelResults) and adds flat metrics to a
model's row (names in tasks/evaluation/report.py METRICS). Rates over independent probe items get Wilson
intervals; per-prompt quantities (self-BLEU, embedding diversity, boilerplate) get Student-t intervals over prompts,
because a prompt's K samples are correlated.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from tasks.common.io import sha256_file
from tasks.common.metrics import mean_ci
from tasks.common.params import Params
from tasks.evaluation.results import ModelResults


def load_probe_sets(params: Params) -> dict[str, list]:
    """The over-refusal and sycophancy sets (validated; a bad file names its line and field), cut to
    evaluate.probes.max_items per set — and per label for over-refusal — for smoke runs."""
    from tasks.evaluation import probes

    cfg = params.evaluate.probes
    refusal = probes.load_over_refusal(cfg.over_refusal)
    sycophancy = probes.load_sycophancy(cfg.sycophancy)
    if cfg.max_items:
        refusal = ([p for p in refusal if p.label == "safe"][: cfg.max_items]
                   + [p for p in refusal if p.label == "unsafe"][: cfg.max_items])
        sycophancy = sycophancy[: cfg.max_items]
    return {"over_refusal": refusal, "sycophancy": sycophancy}


def probe_sizes(probe_sets: dict[str, list]) -> dict[str, int]:
    refusal = probe_sets.get("over_refusal", [])
    return {"over-refusal safe": sum(p.label == "safe" for p in refusal),
            "over-refusal unsafe": sum(p.label == "unsafe" for p in refusal),
            "sycophancy items": len(probe_sets.get("sycophancy", []))}


def eval_set_digest(params: Params, prompts_file: Path) -> str:
    """What makes two evaluations comparable: the held-out prompts, the probe files, the sampling settings, the
    judge and the seed (not the gate thresholds). The gate compares a policy with the champion only when equal."""
    cfg = params.evaluate
    files = [prompts_file, Path(cfg.probes.over_refusal), Path(cfg.probes.sycophancy), Path(cfg.probes.boilerplate)]
    doc = {"files": {str(f): sha256_file(f) if f.exists() else None for f in files},
           "evaluate": cfg.model_dump(exclude={"gate", "batch_size", "reuse_reference_results"}, mode="json"),
           "seed": params.seed,
           "gold": params.data.gold}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _with_ci(name: str, values: list[float]) -> dict[str, float]:
    mean, low, high = mean_ci(_finite(values))
    return {name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high}


def add_text_metrics(params: Params, results: dict[str, ModelResults], per_model: dict[str, dict[str, float]]) -> None:
    """Diversity over each prompt's K samples and the boilerplate rate; the per-prompt values are kept in the
    results for the report's histograms."""
    from tasks.evaluation import boilerplate, diversity

    phrases = boilerplate.load_phrases(params.evaluate.probes.boilerplate)
    k = params.evaluate.samples_per_prompt
    encoder = diversity.load_encoder() if k >= 2 else None
    for name, res in results.items():
        groups = [[s["text"] for s in per] for per in res.samples]
        texts = [t for g in groups for t in g]
        m = per_model[name]
        if k >= 2:
            res.self_bleu = diversity.per_prompt_self_bleu(groups)
            res.embedding_diversity = diversity.embedding_diversity(encoder, groups)
            m.update(_with_ci("self_bleu", res.self_bleu))
            m.update(_with_ci("embedding_diversity", res.embedding_diversity))
        per_prompt = [sum(bool(boilerplate.boilerplate_hits(t, phrases)) for t in g) / len(g) for g in groups if g]
        m.update(_with_ci("boilerplate_rate", per_prompt))
        m["opening_share"] = boilerplate.opening_share(texts)
        res.boilerplate_top = boilerplate.top_phrases(texts, phrases)


def probe_metrics(res: ModelResults) -> dict[str, float]:
    """Over-refusal and sycophancy rates of a model's probe answers (none when there were no probe sets)."""
    from tasks.evaluation import pathologies

    out: dict[str, float] = {}
    if res.over_refusal is not None:
        out.update(pathologies.over_refusal_metrics(res.over_refusal))
    if res.sycophancy is not None:
        out.update(pathologies.sycophancy_metrics(res.sycophancy))
    return out


def classifier_accuracy(params: Params) -> dict[str, float]:
    """The rule classifiers scored on their labelled examples (data/probes/labelled), reported in every run."""
    from tasks.evaluation import classifiers

    return classifiers.accuracy_on_labelled(Path(params.evaluate.probes.over_refusal).parent / "labelled")


def build_judge(params: Params):
    """evaluate.judge on paths.judge_model by default (neither of the models it compares), with the constitution."""
    from tasks.judges.configured import configured_judge

    return configured_judge(params.evaluate.judge, "evaluate.judge", params.paths.judge_model,
                            params.paths.judge_cache, _constitution(params))


def _constitution(params: Params):
    from tasks.common.constitution import load_constitution

    return load_constitution(params.data.constitution) if Path(params.data.constitution).exists() else None


def _renamed(key: str, ref: str) -> str:
    """judge_win_rate_lc → judge_win_rate_vs_sft_lc; judge_ties → judge_ties_vs_sft."""
    if key.startswith("judge_win_rate"):
        return f"judge_win_rate_vs_{ref}{key[len('judge_win_rate'):]}"
    return f"{key}_vs_{ref}"


def add_judge_metrics(params: Params, prompts: list[dict], results: dict[str, ModelResults],
                      per_model: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Policy vs SFT and vs base on the first sample of each prompt, each prompt under a principle of the
    constitution; returns what the report says of the judge.

    The same pairs calibrate the judge: with a gold judge, its agreement with gold on them
    (judge_agreement_gold_vs_<ref>); always, how often its preference flips with the order. Below
    evaluate.judge.min_agreement_gold or above max_order_disagreement the judge is flagged uninformative
    (judge_uninformative_vs_<ref> = 1): the report says so next to the win rate and the gate does not use it."""
    refs = [r for r in ("sft", "base") if r in results]
    if "policy" not in results or not refs:
        return {}
    from tasks.common.constitution import draw_principle
    from tasks.common.gold import gold_preference
    from tasks.evaluation.winrates import judge_win_rates
    from tasks.judges.quality import agreement

    cfg = params.evaluate.judge
    judge = build_judge(params)
    constitution = _constitution(params)
    principles = ([draw_principle(constitution, params.seed, f"eval:{p['id']}") for p in prompts]
                  if constitution is not None else None)
    policy_res = results["policy"]
    policy = [per[0]["text"] for per in policy_res.samples]
    info: dict[str, Any] = {"identity": judge.identity, "tie_margin": cfg.tie_margin, "uninformative": {}}
    for ref in refs:
        other_res = results[ref]
        other = [per[0]["text"] for per in other_res.samples]
        metrics, rows = judge_win_rates(judge, [p["prompt"] for p in prompts], policy, other,
                                        cfg.tie_margin, ids=[p["id"] for p in prompts],
                                        desc=f"judge policy vs {ref}", principles=principles)
        reasons = []
        if policy_res.gold is not None and other_res.gold is not None:
            gold_p = [gold_preference(a, b) for a, b in zip(policy_res.firsts(policy_res.gold),
                                                            other_res.firsts(other_res.gold), strict=True)]
            metrics["judge_agreement_gold"], metrics["judge_agreement_gold_pairs"] = agreement(
                [r["p"] for r in rows], gold_p)
            if metrics["judge_agreement_gold"] < cfg.min_agreement_gold:
                reasons.append(f"agrees with gold on {metrics['judge_agreement_gold']:.0%} of these pairs "
                               f"(< min_agreement_gold {cfg.min_agreement_gold:.0%})")
        if metrics["judge_order_disagreement"] > cfg.max_order_disagreement:
            reasons.append(f"its preference flips with the order on {metrics['judge_order_disagreement']:.0%} "
                           f"of the pairs (> max_order_disagreement {cfg.max_order_disagreement:.0%})")
        metrics["judge_uninformative"] = float(bool(reasons))
        per_model["policy"].update({_renamed(k, ref): v for k, v in metrics.items()})
        info[f"rows_vs_{ref}"] = rows
        if reasons:
            info["uninformative"][ref] = reasons
    info["stats"] = {k: v for k, v in vars(judge.stats).items() if isinstance(v, (int, float))}
    del judge
    return info
