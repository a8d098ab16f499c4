"""Evaluate base, SFT and policy side by side on the same held-out sets, decide whether the policy may be
promoted, and write the report.

For each model that exists (tasks/evaluation/sampling.py: one model in memory at a time):
- K samples per held-out prompt (same seed for every model) → gold reward (tasks/common/gold.py) and RM score with
  Student-t 95 % intervals over prompts (each prompt's samples averaged first: they are correlated); KL to the
  previous model in the chain (k1 and k3, tasks/common/metrics.py); response length, missing-EOS rate,
  boilerplate/template rate (tasks/evaluation/boilerplate.py); diversity over the K samples: distinct-1/2,
  self-BLEU and embedding diversity (tasks/evaluation/diversity.py);
- greedy answers to the probe sets (data/probes, tasks/evaluation/pathologies.py): over-refusal on an
  XSTest-style contrast set and sycophancy (flips under "are you sure?", agreement with wrong claims), with Wilson
  intervals; the rule classifiers' accuracy on their labelled examples is reported beside them;
- judge win rates of the policy over SFT and over base, both orders, ties counted, length-controlled
  (tasks/evaluation/winrates.py; the judge is evaluate.judge, by default the base model);
- the reward-hacking guard and the proxy-vs-gold gap (tasks/evaluation/reward_hacking.py), the reward-vs-KL frontier
  across the experiment's runs (tasks/evaluation/frontier.py);
- the promotion gate against the registered `champion` (tasks/evaluation/gate.py); the pipeline flow moves the
  alias when it registers a policy that passed.

Reads  models/{base,sft,policy,reward}, data/validated/prompts_eval.jsonl, data/probes/*, plots/align.csv,
       the MLflow experiment's past evaluate runs (frontier) and the model registry (champion)
Writes metrics/eval.json (flat keys: policy/gold_reward, ...), reports/eval/{report.html, summary.md,
       report_data.json, gate.json, samples.jsonl, probes.jsonl, *.png}, plots/reward_vs_kl.csv

    dvc repro evaluate
    alignflow run
    alignflow report RUN_ID        # re-render a past run's report from its MLflow artifacts
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasks.common.gold import gold_preference, gold_scores
from tasks.common.io import read_jsonl, write_json
from tasks.common.metrics import distinct_n, mean_ci, win_rate
from tasks.common.params import Params
from tasks.common.registry import EVAL_SET_TAG
from tasks.common.stage import StageError, stage_main
from tasks.evaluation import frontier, report_doc, reward_hacking, suite
from tasks.evaluation.results import Evaluation, ModelResults
from tasks.evaluation.sampling import add_rm_scores, sample_models

log = logging.getLogger("alignflow.evaluate")

REFERENCE = {"policy": "sft", "sft": "base"}  # KL(model‖reference): the previous model in the chain


def run_evaluate(params: Params) -> dict[str, float]:
    """Files in, files out, metrics returned."""
    import mlflow

    from tasks.common.modeling import read_chain
    from tasks.common.seeding import seed_everything
    from tasks.common.tracking import log_dataset, log_metrics, stage_run, tracking_uri

    cfg, paths = params.evaluate, params.paths
    timings = Phases()
    prompts_file = Path(paths.validated) / "prompts_eval.jsonl"
    if not prompts_file.exists():
        raise StageError(f"evaluate: {prompts_file} not found (run validate first)")
    probe_sets = suite.load_probe_sets(params)  # bad probe files fail here, before any model is loaded
    seed_everything(params.seed)
    # The align method that made the policy, from the chain file align wrote beside it (frontier.TAG).
    method = read_chain(paths.policy_model).get("method") if Path(paths.policy_model).exists() else None
    eval_set = suite.eval_set_digest(params, prompts_file)
    with stage_run("evaluate", params, cfg.model_dump()) as run:
        mlflow.set_tag(EVAL_SET_TAG, eval_set)
        if method:
            mlflow.set_tag(frontier.TAG, method)
        prompts = read_jsonl(prompts_file)[: cfg.max_prompts]
        log_dataset(prompts_file, prompts, context="evaluation")
        with timings("sample_kl_probes"):
            results = sample_models(params, prompts, probe_sets)
        if not results:
            raise StageError(f"evaluate: none of {paths.base_model}, {paths.sft_model}, {paths.policy_model} exists")
        with timings("gold"):
            for res in results.values():
                if params.data.gold != "none":  # a task without ground truth (data.gold: none) has no gold reward
                    res.gold = gold_scores(res.texts())
        if Path(paths.reward_model).exists():
            with timings("rm_scores"):
                add_rm_scores(params, prompts, results)

        per_model = {name: summarise(res, REFERENCE.get(name)) for name, res in results.items()}
        with timings("text_metrics"):
            suite.add_text_metrics(params, results, per_model)
        for res, m in zip(results.values(), per_model.values(), strict=True):
            m.update(suite.probe_metrics(res))
        with timings("judge"):
            judge_info = suite.add_judge_metrics(params, prompts, results, per_model)
        if "policy" in results and "sft" in results and params.data.gold != "none":
            per_model["policy"]["gold_win_rate_vs_sft"] = win_rate(results["policy"].gold, results["sft"].gold)
        guard = guard_policy(results)
        if guard.rm is not None and guard.gold is not None:
            policy, sft = results["policy"], results["sft"]
            per_model["policy"].update(reward_hacking.proxy_gold_gap(
                policy.per_prompt(policy.rm), sft.per_prompt(sft.rm), policy.per_prompt(policy.gold),
                sft.per_prompt(sft.gold)))
        metrics = {f"{name}/{k}": float(v) for name, m in per_model.items() for k, v in m.items() if math.isfinite(v)}
        metrics.update(rm_gold_agreement(results))
        train_rm_gain = reward_hacking.read_training_rm_gain("plots/align.csv") if "policy" in results else None
        metrics.update({k: v for k, v in reward_hacking.guard_metrics(guard, train_rm_gain).items() if math.isfinite(v)})
        with timings("classifier_accuracy"):
            classifier = suite.classifier_accuracy(params)
        metrics.update(classifier)

        client = mlflow.MlflowClient(tracking_uri())
        points = (frontier.collect_points(client, run.info.experiment_id, run.info.run_id, metrics, method)
                  if params.data.gold != "none" else [])
        frontier.write_csv("plots/reward_vs_kl.csv", points)
        from tasks.evaluation import gate

        decision = gate.decide_against_champion(client, params, metrics, eval_set) if "policy" in results else None
        gate_info = decision.to_dict() if decision is not None else None
        if decision is not None:
            metrics["gate/passed"] = float(decision.passed)
            mlflow.set_tag(gate.GATE_TAG, gate.run_tag(decision))

        with timings("report"):
            rows = sample_rows(prompts, results)
            data = report_doc.build(params, Evaluation(
                run_id=run.info.run_id, method=method, eval_set=eval_set, prompts=prompts, results=results,
                per_model=per_model, metrics=metrics, guard=guard, train_rm_gain=train_rm_gain, points=points,
                gate=gate_info, judge=judge_info, probe_sets=probe_sets, classifier=classifier))
            report_doc.write(params, data, rows, results)
        write_json(Path(paths.metrics) / "eval.json", metrics)

        with timings("mlflow_logging"):
            log_metrics(metrics)
            mlflow.log_artifacts(str(Path(paths.reports, "eval")), "eval")
            if points:
                mlflow.log_artifact("plots/reward_vs_kl.csv", "eval")
            mlflow.log_table({k: [r[k] for r in rows] for k in ("prompt_id", "model", "sample", "text", "gold")},
                             artifact_file="eval_completions.json")
        # Where the stage's time went (MLflow only: eval.json stays comparable across runs and machines)
        log.info("evaluate phases (s): %s", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
        log_metrics({f"time/{k}_s": v for k, v in timings.items()})
    return metrics


class Phases(dict):
    """Seconds per named part of the stage: `with phases("judge"): ...` adds to phases["judge"]."""

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start


def summarise(res: ModelResults, ref: str | None = None) -> dict[str, float]:
    """Per-model metrics; rewards get (mean, ci_low, ci_high) over per-prompt means; KL named by its reference."""
    samples = [s for per in res.samples for s in per]
    out: dict[str, float] = {}
    for scores, name in ((res.gold, "gold_reward"), (res.rm, "rm_score")):
        if scores is not None:
            out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = mean_ci(res.per_prompt(scores))
    if res.kl_k1 is not None and res.kl_k3 is not None:
        out[f"kl_{ref}"] = sum(res.kl_k1) / len(res.kl_k1)
        out[f"kl_{ref}_k3"] = sum(res.kl_k3) / len(res.kl_k3)
    out["response_tokens"] = sum(s["n_tokens"] for s in samples) / len(samples)
    out["missing_eos"] = sum(not s["eos"] for s in samples) / len(samples)
    out["distinct_1"] = distinct_n([s["text"] for s in samples], 1)
    out["distinct_2"] = distinct_n([s["text"] for s in samples], 2)
    return out


def guard_policy(results: dict[str, ModelResults]) -> reward_hacking.Guard:
    """Policy vs SFT, paired by prompt (both sampled on the same prompts, in the same order)."""
    policy, sft = results.get("policy"), results.get("sft")

    def scores(pick: Callable[[ModelResults], list[float] | None]) -> tuple[list[float] | None, list[float] | None]:
        if policy is None or sft is None or pick(policy) is None or pick(sft) is None:
            return None, None
        return policy.per_prompt(pick(policy)), sft.per_prompt(pick(sft))

    return reward_hacking.guard(*scores(lambda r: r.rm), *scores(lambda r: r.gold))


def rm_gold_agreement(results: dict[str, ModelResults]) -> dict[str, float]:
    """How often the reward model orders two samples of the same prompt as the gold judge does, over every pair of
    samples per prompt and model (held-out prompts, on-policy samples; gold ties and RM ties left out). The proxy's
    fidelity where it matters — on what the policies actually write — on far more pairs than the RM's eval split."""
    agree = total = 0
    for res in results.values():
        if res.rm is None or res.gold is None:
            continue
        i = 0
        for per_prompt in res.samples:
            k = len(per_prompt)
            for a in range(i, i + k):
                for b in range(a + 1, i + k):
                    gold_p, r = gold_preference(res.gold[a], res.gold[b]), res.rm[a] - res.rm[b]
                    if gold_p != 0.5 and r != 0:
                        total += 1
                        agree += (gold_p == 1.0) == (r > 0)
            i += k
    if total == 0:
        return {}
    return {"rm/gold_pair_accuracy": agree / total, "rm/gold_pairs": float(total)}


def sample_rows(prompts: list[dict], results: dict[str, ModelResults]) -> list[dict[str, Any]]:
    """Every sample with its scores, one row each (reports/eval/samples.jsonl and MLflow's completions table)."""
    rows = []
    for name, res in results.items():
        i = 0
        for prompt, per_prompt in zip(prompts, res.samples, strict=True):
            for j, s in enumerate(per_prompt):
                row = {"prompt_id": prompt["id"], "model": name, "sample": j, "prompt": prompt["prompt"][-1]["content"],
                       "text": s["text"], "gold": res.gold[i] if res.gold is not None else None,
                       "n_tokens": s["n_tokens"], "eos": s["eos"]}
                if res.rm is not None:
                    row["rm"] = res.rm[i]
                rows.append(row)
                i += 1
    return rows


if __name__ == "__main__":
    stage_main("evaluate", run_evaluate)
