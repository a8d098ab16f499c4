"""Evaluate base, SFT and policy on held-out prompts against the gold reward, at a measured KL from the SFT model.

For each model that exists, sample `samples_per_prompt` continuations of the first `max_prompts` eval prompts (the
same seed for every model, so they differ only by the model) and report:
- gold reward (VADER, tasks/common/gold.py): mean with a Student-t 95 % interval over prompts (each prompt's samples
  averaged first: they are correlated), the policy's paired gold win rate over the SFT model;
- reward-model score, when models/reward exists;
- KL(policy‖SFT) and KL(SFT‖base) per sequence from the first model's own samples: Σ_t log π(y_t) − log π_ref(y_t)
  (k1) and the k3 estimate, with logits divided by the sampling temperature (tasks/common/metrics.py);
- pathologies: mean response tokens, missing-EOS rate, distinct-1/2;
- reward-hacking guard (tasks/common/reward_hacking.py): the policy's paired RM and gold gains over SFT, and
  guard/reward_hacking = 1 when the RM score rose (paired 95 % interval above 0) while the gold reward fell;
- the reward-vs-KL frontier across the experiment's runs, by align method (tasks/common/frontier.py).

Memory: one model at a time. The policy chain is loaded with its last adapter live, so the SFT model is the same
weights with the adapter disabled; likewise the SFT chain gives the base model.

Reads  models/{base,sft,policy,reward}, data/validated/prompts_eval.jsonl, plots/align.csv (training RM score),
       past evaluate runs of the MLflow experiment (the frontier)
Writes metrics/eval.json (flat keys: policy/gold_reward, policy/kl_sft, ...), reports/eval/{report.html,
       gold_reward.png, reward_vs_kl.png, samples.jsonl}, plots/reward_vs_kl.csv

    dvc repro evaluate
    alignflow run
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from tasks.common import frontier, reward_hacking
from tasks.common.gold import gold_scores
from tasks.common.io import atomic_dir, read_jsonl, write_json, write_jsonl
from tasks.common.metrics import distinct_n, kl_k1, kl_k3, mean_ci, win_rate
from tasks.common.params import Params
from tasks.common.stage import StageError, stage_main

MODELS = ("base", "sft", "policy")
FRONTIER_NOTE = ("The align method of each point comes from the evaluate run's own tag, written from the policy's "
                 "chain file (older runs: the align run beside it; see tasks/common/frontier.py).")
NO_GOLD = "Not drawn: this task has no gold reward (data.gold: none)."
REFERENCE = {"policy": "sft", "sft": "base"}  # KL(model‖reference): the previous model in the chain
CI = "Student-t 95 % interval over prompts"


def run_evaluate(params: Params) -> dict[str, float]:
    """Files in, files out, metrics returned."""
    import mlflow

    from tasks.common.modeling import read_chain, seed_everything
    from tasks.common.tracking import log_dataset, log_metrics, stage_run, tracking_uri

    cfg, paths = params.evaluate, params.paths
    prompts_file = Path(paths.validated) / "prompts_eval.jsonl"
    if not prompts_file.exists():
        raise StageError(f"evaluate: {prompts_file} not found (run validate first)")
    seed_everything(params.seed)
    # The align method that made the policy, from the chain file align wrote beside it (frontier.TAG).
    method = read_chain(paths.policy_model).get("method") if Path(paths.policy_model).exists() else None
    with stage_run("evaluate", params, cfg.model_dump()) as run:
        if method:
            mlflow.set_tag(frontier.TAG, method)
        prompts = read_jsonl(prompts_file)[: cfg.max_prompts]
        log_dataset(prompts_file, prompts, context="evaluation")
        results = sample_models(params, prompts)
        if not results:
            raise StageError(f"evaluate: none of {paths.base_model}, {paths.sft_model}, {paths.policy_model} exists")
        for res in results.values():
            if params.data.gold != "none":  # a task without ground truth (data.gold: none) has no gold reward
                res["gold"] = gold_scores([s["text"] for per_prompt in res["samples"] for s in per_prompt])
        if Path(paths.reward_model).exists():
            _add_rm_scores(params, prompts, results)

        per_model = {name: summarise(res, REFERENCE.get(name)) for name, res in results.items()}
        if "policy" in results and "sft" in results and params.data.gold != "none":
            per_model["policy"]["gold_win_rate_vs_sft"] = win_rate(results["policy"]["gold"], results["sft"]["gold"])
        metrics = {f"{name}/{k}": v for name, m in per_model.items() for k, v in m.items() if math.isfinite(v)}
        metrics.update(rm_gold_agreement(results))
        guard = guard_policy(results)
        train_rm_gain = reward_hacking.read_training_rm_gain("plots/align.csv") if "policy" in results else None
        metrics.update({k: v for k, v in reward_hacking.guard_metrics(guard, train_rm_gain).items() if math.isfinite(v)})

        if params.data.gold != "none":
            client = mlflow.MlflowClient(tracking_uri())
            points = frontier.collect_points(client, run.info.experiment_id, run.info.run_id, metrics, method)
        else:
            points = []
        frontier.write_csv("plots/reward_vs_kl.csv", points)

        rows = sample_rows(prompts, results)
        with atomic_dir(Path(paths.reports) / "eval") as out:
            png = gold_plot(results, per_model)
            (out / "gold_reward.png").write_bytes(png)
            frontier_png = frontier.plot(points) if points else None
            if frontier_png:
                (out / "reward_vs_kl.png").write_bytes(frontier_png)
            labels = preference_summary(params, metrics)
            note = FRONTIER_NOTE if points else NO_GOLD if params.data.gold == "none" else "Not drawn: no points yet."
            sections = [frontier.report_section(points, frontier_png, note)]
            if "policy" in results and "sft" in results:
                sections.insert(0, reward_hacking.report_section(guard, per_model, train_rm_gain, method))
            (out / "report.html").write_text(report_html(params, prompts, per_model, rows, png, labels, sections),
                                             encoding="utf-8")
            write_jsonl(out / "samples.jsonl", rows)
        write_json(Path(paths.metrics) / "eval.json", metrics)

        log_metrics(metrics)
        mlflow.log_artifact(str(Path(paths.reports, "eval", "report.html")), "eval")
        mlflow.log_artifact(str(Path(paths.reports, "eval", "gold_reward.png")), "eval")
        if points:
            mlflow.log_artifact(str(Path(paths.reports, "eval", "reward_vs_kl.png")), "eval")
            mlflow.log_artifact("plots/reward_vs_kl.csv", "eval")
        mlflow.log_table({k: [r[k] for r in rows] for k in ("prompt_id", "model", "sample", "text", "gold")},
                         artifact_file="eval_completions.json")
    return metrics


def sample_models(params: Params, prompts: list[dict]) -> dict[str, dict[str, Any]]:
    """{model: {"samples": per prompt [{text, n_tokens, eos}], "kl_k1"/"kl_k3": per sequence}} for existing models."""
    from tasks.common.modeling import load_causal_lm, load_tokenizer
    from tasks.ppo.rollout import reference

    paths, out = params.paths, {}
    if Path(paths.policy_model).exists():
        model = load_causal_lm(paths.policy_model, merge_last=False, dtype=params.evaluate.generation.dtype)  # SFT merged in, policy adapter live
        out["policy"] = _sample_with_kl(params, model, load_tokenizer(paths.policy_model), prompts, "policy")
        del model
    if Path(paths.sft_model).exists():
        model = load_causal_lm(paths.sft_model, merge_last=False, dtype=params.evaluate.generation.dtype)  # base + live SFT adapter
        tok = load_tokenizer(paths.sft_model)
        out["sft"] = _sample_with_kl(params, model, tok, prompts, "sft")
        with reference(model):
            out["base"] = {"samples": _sample(params, model, tok, prompts, "base")}
    elif Path(paths.base_model).exists():
        model = load_causal_lm(paths.base_model, dtype=params.evaluate.generation.dtype)
        out["base"] = {"samples": _sample(params, model, load_tokenizer(paths.base_model), prompts, "base")}
    return {name: out[name] for name in MODELS if name in out}


def _sample(params: Params, model, tok, prompts: list[dict], name: str) -> list[list[dict[str, Any]]]:
    from tasks.common.modeling import generate

    cfg = params.evaluate
    return generate(model, tok, [p["prompt"] for p in prompts], **cfg.generation.model_dump(exclude={"dtype"}),
                    num_return_sequences=cfg.samples_per_prompt, batch_size=cfg.batch_size, seed=params.seed,
                    desc=f"evaluate {name}")


def _sample_with_kl(params: Params, model, tok, prompts: list[dict], name: str) -> dict[str, Any]:
    """Samples from `model`, and KL(model‖reference) estimated on them (reference = adapter disabled)."""
    from tasks.ppo.rollout import reference

    samples = _sample(params, model, tok, prompts, name)
    prompt_ids, response_ids = [], []
    for prompt, per_prompt in zip(prompts, samples, strict=True):
        text = tok.apply_chat_template(prompt["prompt"], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        for s in per_prompt:
            prompt_ids.append(ids)
            response_ids.append(list(s["ids"]))  # the sampled tokens, not a re-tokenisation
    temperature, batch_size = params.evaluate.generation.temperature, params.evaluate.batch_size
    logprobs = response_logprobs(model, tok, prompt_ids, response_ids, temperature, batch_size)
    with reference(model):
        ref_logprobs = response_logprobs(model, tok, prompt_ids, response_ids, temperature, batch_size)
    return {"samples": samples, "kl_k1": kl_k1(logprobs, ref_logprobs), "kl_k3": kl_k3(logprobs, ref_logprobs)}


def response_logprobs(model, tok, prompt_ids: list[list[int]], response_ids: list[list[int]], temperature: float,
                      batch_size: int) -> list[list[float]]:
    """log π(y_t | x, y_<t) of every response token, logits / temperature: scored exactly as PPO scores its
    rollouts (tasks/ppo/rollout.py — prompts left-padded, positions from the attention mask)."""
    import torch

    from tasks.ppo.rollout import pack, token_logprobs

    out: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(prompt_ids), batch_size):
            batch = pack(prompt_ids[start : start + batch_size], response_ids[start : start + batch_size],
                         tok.pad_token_id, tok.eos_token_id, model.device)
            logp = token_logprobs(model, batch, temperature)
            out.extend(row[keep.bool()].tolist() for row, keep in zip(logp, batch.mask, strict=True))
    return out


def _add_rm_scores(params: Params, prompts: list[dict], results: dict[str, dict]) -> None:
    from tasks.common.reward import load_reward_model, score

    model, tok = load_reward_model(params.paths.reward_model)
    for res in results.values():
        flat_prompts = [p["prompt"] for p, per in zip(prompts, res["samples"], strict=True) for _ in per]
        completions = [s["text"] for per in res["samples"] for s in per]
        res["rm"] = score(model, tok, flat_prompts, completions, params.evaluate.batch_size)


def summarise(res: dict[str, Any], ref: str | None = None) -> dict[str, float]:
    """Per-model metrics; rewards get (mean, ci_low, ci_high) over per-prompt means; KL named by its reference."""
    samples = [s for per in res["samples"] for s in per]
    out: dict[str, float] = {}
    for key, name in (("gold", "gold_reward"), ("rm", "rm_score")):
        if key in res:
            out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = mean_ci(per_prompt(res, key))
    if "kl_k1" in res:
        out[f"kl_{ref}"] = sum(res["kl_k1"]) / len(res["kl_k1"])
        out[f"kl_{ref}_k3"] = sum(res["kl_k3"]) / len(res["kl_k3"])
    out["response_tokens"] = sum(s["n_tokens"] for s in samples) / len(samples)
    out["missing_eos"] = sum(not s["eos"] for s in samples) / len(samples)
    out["distinct_1"] = distinct_n([s["text"] for s in samples], 1)
    out["distinct_2"] = distinct_n([s["text"] for s in samples], 2)
    return out


def per_prompt(res: dict[str, Any], key: str) -> list[float]:
    """Per-sample scores → one mean per prompt (every prompt has the same number of samples)."""
    k = len(res["samples"][0]) if res["samples"] else 1
    return [sum(res[key][i : i + k]) / k for i in range(0, len(res[key]), k)]


def guard_policy(results: dict[str, dict]) -> reward_hacking.Guard:
    """Policy vs SFT, paired by prompt (both sampled on the same prompts, in the same order)."""
    policy, sft = results.get("policy", {}), results.get("sft", {})

    def scores(key: str) -> tuple[list[float] | None, list[float] | None]:
        both = key in policy and key in sft
        return (per_prompt(policy, key), per_prompt(sft, key)) if both else (None, None)

    return reward_hacking.guard(*scores("rm"), *scores("gold"))


def rm_gold_agreement(results: dict[str, dict]) -> dict[str, float]:
    """How often the reward model orders two samples of the same prompt as the gold judge does, over every pair of
    samples per prompt and model (held-out prompts, on-policy samples; gold ties and RM ties left out). The proxy's
    fidelity where it matters — on what the policies actually write — on far more pairs than the RM's eval split."""
    agree = total = 0
    for res in results.values():
        if "rm" not in res or "gold" not in res:
            continue
        i = 0
        for per_prompt in res["samples"]:
            k = len(per_prompt)
            for a in range(i, i + k):
                for b in range(a + 1, i + k):
                    g, r = res["gold"][a] - res["gold"][b], res["rm"][a] - res["rm"][b]
                    if g != 0 and r != 0:
                        total += 1
                        agree += (g > 0) == (r > 0)
            i += k
    if total == 0:
        return {}
    return {"rm/gold_pair_accuracy": agree / total, "rm/gold_pairs": float(total)}


def sample_rows(prompts: list[dict], results: dict[str, dict]) -> list[dict[str, Any]]:
    rows = []
    for name, res in results.items():
        i = 0
        for prompt, per_prompt in zip(prompts, res["samples"], strict=True):
            for j, s in enumerate(per_prompt):
                row = {"prompt_id": prompt["id"], "model": name, "sample": j, "prompt": prompt["prompt"][-1]["content"],
                       "text": s["text"], "gold": res["gold"][i] if "gold" in res else None, "n_tokens": s["n_tokens"], "eos": s["eos"]}
                if "rm" in res:
                    row["rm"] = res["rm"][i]
                rows.append(row)
                i += 1
    return rows


def gold_plot(results: dict[str, dict], per_model: dict[str, dict[str, float]]) -> bytes:
    """PNG: gold-reward distribution per model, and mean gold reward with its 95 % interval (the reward-model score
    instead for a task without a gold judge)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    first = next(iter(results.values()))
    key, metric, label = (("gold", "gold_reward", "gold reward (VADER compound)") if "gold" in first
                          else ("rm", "rm_score", "reward-model score"))
    names = [n for n in per_model if metric in per_model[n]]
    values = [v for n in names for v in results[n][key]]
    low, high = (min(values), max(values)) if values else (-1.0, 1.0)
    bins = [low + (high - low) * i / 20 for i in range(21)] if high > low else 20
    for name in names:
        left.hist(results[name][key], bins=bins, histtype="step", linewidth=1.8, label=name)
    left.set(xlabel=label, ylabel="samples", title="distribution")
    if names:
        left.legend()
    means = [per_model[n][metric] for n in names]
    errs = [[m - per_model[n].get(f"{metric}_ci_low", m) for n, m in zip(names, means)],
            [per_model[n].get(f"{metric}_ci_high", m) - m for n, m in zip(names, means)]]
    errs = [[0.0 if math.isnan(e) else e for e in side] for side in errs]
    right.bar(names, means, yerr=errs, capsize=6, color=["#999999", "#4c72b0", "#dd8452"][: len(names)])
    right.axhline(0, color="black", linewidth=0.6)
    right.set(ylabel=f"mean {label.split(' (')[0]}", title=CI)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


PREFERENCE_ROWS = [  # (metrics file stem, key, what it says) — the labels the policy and RM learned from
    ("collect_preferences", "collect/pairs", "preference pairs (soft, for the RM)"),
    ("collect_preferences", "collect/hard_train_pairs", "hard pairs for DPO (train)"),
    ("collect_preferences", "collect/ties_dropped", "exact ties dropped"),
    ("collect_preferences", "judge/agreement_gold", "AI judge agreement with gold labels"),
    ("collect_preferences", "judge/agreement_gold_pairs", "… over pairs (both prefer an option)"),
    ("collect_preferences", "judge/position_bias_rate", "AI judge position-bias rate (preference flips with order)"),
    ("collect_preferences", "judge/first_position_rate", "AI judge picks the first option (0.5 = unbiased)"),
    ("collect_preferences", "judge/mean_confidence", "AI judge mean |p − 0.5|"),
    ("collect_preferences", "judge/agreement_human", "AI judge agreement with human labels"),
    ("collect_preferences", "human/agreement_gold", "human labels agreement with gold"),
    ("collect_preferences", "judge/calls", "judge calls (cache hits not counted)"),
    ("collect_preferences", "judge/cached", "judge answers from the cache"),
    ("train_reward", "eval/accuracy", "reward model held-out accuracy (vs the training labels)"),
    ("train_reward", "eval/gold_accuracy", "reward model held-out accuracy vs gold labels"),
    ("eval", "rm/gold_pair_accuracy", "reward model orders sample pairs as gold does (held-out prompts)"),
    ("eval", "rm/gold_pairs", "… over sample pairs"),
]


def preference_summary(params: Params, eval_metrics: dict[str, float]) -> list[tuple[str, str]]:
    """(what, value) rows about the preference labels, from the stage metrics of collect_preferences/train_reward
    and this stage's RM-vs-gold agreement."""
    found = {"eval": eval_metrics}
    for stem in ("collect_preferences", "train_reward"):
        f = Path(params.paths.metrics) / f"{stem}.json"
        found[stem] = json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}
    rows = []
    for stem, key, what in PREFERENCE_ROWS:
        if key in found[stem]:
            v = found[stem][key]
            rows.append((what, f"{v:.0f}" if float(v).is_integer() else f"{v:.3f}"))
    return rows


def report_html(params: Params, prompts: list[dict], per_model: dict[str, dict[str, float]], rows: list[dict],
                png: bytes, labels: list[tuple[str, str]] = (), sections: list[str] = ()) -> str:
    """Self-contained HTML: metric table (base | SFT | policy), the embedded plot, `sections` (already HTML: the
    reward-hacking guard, the frontier), sample completions side by side."""
    names = list(per_model)
    keys = [k for k in dict.fromkeys(k for m in per_model.values() for k in m)
            if not k.endswith(("_ci_low", "_ci_high"))]

    def cell(name: str, key: str) -> str:
        m = per_model[name]
        if key not in m:
            return "—"
        low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
        interval = f" [{low:.3f}, {high:.3f}]" if low is not None and math.isfinite(low) else ""
        return f"{m[key]:.3f}{interval}"

    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{cell(n, k)}</td>" for n in names) + "</tr>"
                   for k in keys)
    by_key = {(r["prompt_id"], r["model"]): r for r in rows if r["sample"] == 0}
    examples = "".join(
        f"<tr><td>{html.escape(p['prompt'][-1]['content'])}</td>"
        + "".join(f"<td>{html.escape(by_key[(p['id'], n)]['text'])}{_gold_note(by_key[(p['id'], n)])}</td>"
                  for n in names)
        + "</tr>"
        for p in prompts[:12]
    )
    gen = params.evaluate.generation
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>alignflow evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left;white-space:pre-wrap}} th{{background:#f3f3f3}}</style>
</head><body>
<h1>Evaluation: gold reward vs KL</h1>
<p>{len(prompts)} held-out prompts × {params.evaluate.samples_per_prompt} samples per model (seed {params.seed};
temperature {gen.temperature}, top_p {gen.top_p}, top_k {gen.top_k}, max_new_tokens {gen.max_new_tokens}).
Intervals: {CI}. KL per sequence from the model's own samples (k1, and k3), reference = the previous model in the
chain.</p>
<h2>Metrics</h2>
<table><tr><th>metric</th>{head}</tr>{body}</table>
<h2>Preference labels</h2>
<table><tr><th>what</th><th>value</th></tr>{"".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>" for a, b in labels)}</table>
<h2>Gold reward</h2>
<img alt="gold reward per model" src="data:image/png;base64,{base64.b64encode(png).decode()}">
{"".join(sections)}
<h2>Sample completions (first sample per prompt)</h2>
<table><tr><th>prompt</th>{head}</tr>{examples}</table>
</body></html>
"""


def _gold_note(row: dict[str, Any]) -> str:
    return f"<br><small>gold {row['gold']:.3f}</small>" if row.get("gold") is not None else ""


if __name__ == "__main__":
    stage_main("evaluate", run_evaluate)
