"""The evaluation report: one self-contained HTML page per run, and its markdown summary.

Rendering is a pure function of one JSON document (`report_data.json`, written by the evaluate stage and logged to
MLflow), so `alignflow report RUN_ID` re-renders any past run with today's renderer without touching a model. The
figures are drawn at render time from the numbers in that document and embedded as base64 PNGs: the page opens
from a file, an MLflow artifact view or an e-mail, with no server and no network.

The metric table puts base | SFT | policy side by side with their 95 % intervals; an arrow beside each number
says which way it moved from the previous model in the chain, green when that is the good direction for the metric
(`BETTER`), red when it is the bad one, grey when the metric has no good direction (KL, length).
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from tasks.evaluation import plots

# (group, metric, what it says, better direction: +1 higher is better, −1 lower is better, 0 neither)
METRICS: list[tuple[str, str, str, int]] = [
    ("Reward", "gold_reward", "gold reward (the task's ground truth)", +1),
    ("Reward", "rm_score", "reward-model score (the proxy)", +1),
    ("Reward", "proxy_gold_gap", "proxy − gold gain over SFT, in SFT standard deviations", -1),
    ("Reward", "gold_win_rate_vs_sft", "gold win rate vs SFT (paired by prompt)", +1),
    ("Judge", "judge_win_rate_vs_sft", "judge win rate vs SFT (both orders, ties ½)", +1),
    ("Judge", "judge_win_rate_vs_sft_lc", "… length-controlled", +1),
    ("Judge", "judge_win_rate_vs_base", "judge win rate vs base", +1),
    ("Judge", "judge_win_rate_vs_base_lc", "… length-controlled", +1),
    ("Judge", "judge_order_disagreement_vs_sft", "judge flips with the order (vs SFT)", -1),
    ("Judge", "judge_agreement_gold_vs_sft", "judge agrees with gold on these pairs (vs SFT)", +1),
    ("Drift", "kl_sft", "KL(policy‖SFT), nats per sequence (k1)", 0),
    ("Drift", "kl_sft_k3", "KL(policy‖SFT) (k3)", 0),
    ("Drift", "kl_base", "KL(SFT‖base), nats per sequence (k1)", 0),
    ("Drift", "kl_base_k3", "KL(SFT‖base) (k3)", 0),
    ("Length and format", "response_tokens", "mean response tokens", 0),
    ("Length and format", "missing_eos", "responses that never end (missing EOS)", -1),
    ("Length and format", "boilerplate_rate", "responses with a template phrase", -1),
    ("Length and format", "opening_share", "share of the most common 3-word opening", -1),
    ("Diversity", "distinct_1", "distinct-1 (all samples)", +1),
    ("Diversity", "distinct_2", "distinct-2 (all samples)", +1),
    ("Diversity", "self_bleu", "self-BLEU over K samples per prompt", -1),
    ("Diversity", "embedding_diversity", "embedding diversity (1 − cos, MiniLM) per prompt", +1),
    ("Over-refusal", "over_refusal", "refusals on safe prompts (XSTest-style)", -1),
    ("Over-refusal", "unsafe_compliance", "compliance on unsafe twins", -1),
    ("Sycophancy", "probe_accuracy", "correct first answers on the probe set", +1),
    ("Sycophancy", "sycophancy_flip_rate", "answer flips after “are you sure?”", -1),
    ("Sycophancy", "sycophancy_agree_wrong", "agrees with a user's wrong claim", -1),
    ("Sycophancy", "sycophancy_agree_right", "agrees with a user's right claim", +1),
]
PREVIOUS = {"policy": "sft", "sft": "base"}
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;
text-align:left}th{background:#f3f3f3}td.num{white-space:nowrap;font-variant-numeric:tabular-nums}
td.text{white-space:pre-wrap;max-width:380px}.up-good,.down-good{color:#1a7f37}.up-bad,.down-bad{color:#c62828}
.flat{color:#888}tr.group td{background:#fafafa;font-weight:bold}.pass{color:#1a7f37}.fail{color:#c62828}
img{max-width:100%}small{color:#666}"""


def metric_rows(per_model: dict[str, dict[str, float]]) -> list[tuple[str, str, str, int]]:
    """The table's rows: the known metrics in their groups, then any other metric a model reported."""
    present = {k for m in per_model.values() for k in m}
    rows = [r for r in METRICS if r[1] in present]
    known = {r[1] for r in METRICS}
    rows += [("Other", k, k, 0) for k in sorted(present - known) if not k.endswith(("_ci_low", "_ci_high", "_n"))
             and not k.startswith(("rm_gain", "gold_gain", "judge_"))]
    return rows


def arrow(value: float, previous: float | None, better: int) -> tuple[str, str]:
    """(symbol, css class) for the move from `previous` to `value`."""
    if previous is None or not (math.isfinite(value) and math.isfinite(previous)):
        return "", "flat"
    if value == previous:
        return "→", "flat"
    up = value > previous
    if better == 0:
        return ("↑" if up else "↓"), "flat"
    good = up == (better > 0)
    return ("↑" if up else "↓"), f"{'up' if up else 'down'}-{'good' if good else 'bad'}"


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}"


def cell(per_model: dict[str, dict[str, float]], name: str, key: str, better: int) -> str:
    m = per_model.get(name, {})
    if key not in m:
        return '<td class="num">—</td>'
    low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    interval = f" <small>[{_num(low)}, {_num(high)}]</small>" if low is not None and math.isfinite(low) else ""
    prev = per_model.get(PREVIOUS.get(name, ""), {}).get(key)
    sym, css = arrow(m[key], prev, better)
    mark = f' <span class="{css}" title="vs {PREVIOUS.get(name)}">{sym}</span>' if sym else ""
    return f'<td class="num">{_num(m[key])}{interval}{mark}</td>'


def metric_table(per_model: dict[str, dict[str, float]]) -> str:
    names = [n for n in ("base", "sft", "policy") if n in per_model]
    head = "".join(f"<th>{n}</th>" for n in names)
    body, group = [], None
    for g, key, what, better in metric_rows(per_model):
        if g != group:
            body.append(f'<tr class="group"><td colspan="{len(names) + 1}">{html.escape(g)}</td></tr>')
            group = g
        cells = "".join(cell(per_model, n, key, better) for n in names)
        body.append(f'<tr data-metric="{html.escape(key)}"><td>{html.escape(what)} <small>{html.escape(key)}'
                    f"</small></td>{cells}</tr>")
    return f'<table id="metrics"><tr><th>metric</th>{head}</tr>{"".join(body)}</table>'


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return f"<p><small>{html.escape(alt)}: no data.</small></p>"
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def gate_section(gate: dict[str, Any] | None) -> str:
    if gate is None:
        return "<h2 id=\"gate\">Promotion gate</h2><p>Not evaluated: no policy model.</p>"
    failed = [c["name"] for c in gate["checks"] if not c["passed"]]
    headline = ("Passed: the policy is promoted to <code>champion</code> when the pipeline registers it"
                if gate["passed"] else f"Failed: not promoted ({html.escape(', '.join(failed))})")
    rows = "".join(
        f'<tr><td class="{"pass" if c["passed"] else "fail"}">{"✓" if c["passed"] else "✗"}</td>'
        f"<td>{html.escape(c['name'])}</td><td>{html.escape(c['detail'])}</td></tr>" for c in gate["checks"])
    champion = gate.get("champion") or "none yet"
    return (f'<h2 id="gate">Promotion gate</h2><p class="{"pass" if gate["passed"] else "fail"}"><b>{headline}'
            f"</b></p><p>Current champion: {html.escape(str(champion))}.</p>"
            f"<table><tr><th></th><th>check</th><th>detail</th></tr>{rows}</table>")


def probe_section(data: dict[str, Any]) -> str:
    probes = data.get("probes") or {}
    if not probes:
        return ""
    sizes = ", ".join(f"{k}: {v}" for k, v in probes.get("sizes", {}).items())
    acc = probes.get("classifier", {})
    acc_text = ", ".join(f"{k.removeprefix('classifier/')} {_num(v)}" for k, v in acc.items()
                         if k.endswith("accuracy"))
    rows = []
    for name, ex in probes.get("examples", {}).items():
        for r in ex.get("over_refusal", []):
            rows.append(f"<tr><td>{name}</td><td>over-refusal ({html.escape(r['label'])}, "
                        f"{html.escape(r['type'])})</td><td class=\"text\">{html.escape(r['prompt'])}</td>"
                        f"<td class=\"text\">{html.escape(r['response'])}</td>"
                        f"<td>{'refused' if r['refused'] else 'complied'}</td></tr>")
        for r in ex.get("sycophancy", []):
            rows.append(f"<tr><td>{name}</td><td>sycophancy</td><td class=\"text\">{html.escape(r['question'])}"
                        f"</td><td class=\"text\">{html.escape(r['reply'])}</td><td>{html.escape(r['verdict'])}"
                        "</td></tr>")
    return (f"<h2>Probe sets</h2><p>Sizes: {html.escape(sizes)}. Rule classifiers' accuracy on their labelled "
            f"examples (data/probes/labelled): {html.escape(acc_text or 'not measured')}.</p>"
            f"<table><tr><th>model</th><th>probe</th><th>prompt</th><th>reply</th><th>classified</th></tr>"
            f"{''.join(rows)}</table>")


def samples_section(data: dict[str, Any]) -> str:
    names = [n for n in ("base", "sft", "policy") if n in data["per_model"]]
    head = "".join(f"<th>{n}</th>" for n in names)

    def note(s: dict[str, Any]) -> str:
        parts = [f"{k} {_num(s.get(k))}" for k in ("gold", "rm") if s.get(k) is not None]
        return f"<br><small>{' · '.join(parts)}</small>" if parts else ""

    body = "".join(
        f'<tr><td class="text">{html.escape(row["prompt"])}</td>'
        + "".join(f'<td class="text">{html.escape(row[n]["text"])}{note(row[n])}</td>' for n in names if n in row)
        + "</tr>" for row in data.get("samples", []))
    return f'<h2>Sample completions (first sample per prompt)</h2><table id="samples"><tr><th>prompt</th>{head}</tr>{body}</table>'


def render_html(data: dict[str, Any]) -> str:
    """The whole page from the report document."""
    from tasks.evaluation import frontier, reward_hacking

    run, per_model = data["run"], data["per_model"]
    gen = run.get("generation", {})
    labels = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>" for a, b in data.get("labels", []))
    sections = []
    if data.get("guard") is not None:
        g = data["guard"]
        guard = reward_hacking.Guard(*(reward_hacking.Gain(**g[k]) if g[k] else None for k in ("rm", "gold")),
                                     g["flag"])
        sections.append(reward_hacking.report_section(guard, per_model, data.get("train_rm_gain"), run.get("method")))
    points = [frontier.Point(**p) for p in data.get("points", [])]
    sections.append(frontier.report_section(points, frontier.plot(points) if points else None,
                                            data.get("frontier_note", "")))
    judge = data.get("judge") or {}
    judge_note = (f"<p>Judge: {html.escape(judge['identity'])}; tie when |p − ½| ≤ {judge['tie_margin']}; both orders "
                  "asked and averaged. Length-controlled: the win rate a logistic fit predicts at equal length.</p>"
                  if judge.get("identity") else "")
    for ref, reasons in (judge.get("uninformative") or {}).items():
        judge_note += (f"<p class=\"fail\">The judge is uninformative on this run's own pairs (policy vs "
                       f"{html.escape(ref)}): it {html.escape('; '.join(reasons))}. Its win rate vs {html.escape(ref)} "
                       "says little about the models, and the promotion gate does not use it. Point evaluate.judge "
                       "at a stronger model (a larger local model, or kind: openai).</p>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>alignflow evaluation {html.escape(run.get('run_id', '')[:8])}</title>
<style>{STYLE}</style></head><body>
<h1>alignflow evaluation</h1>
<p>MLflow evaluate run <code>{html.escape(run.get('run_id', ''))}</code>; align.method
<b>{html.escape(str(run.get('method')))}</b>; held-out set <code>{html.escape(str(run.get('eval_set', ''))[:12])}</code>.
{run.get('n_prompts')} prompts × {run.get('samples_per_prompt')} samples per model (seed {run.get('seed')};
temperature {gen.get('temperature')}, top_p {gen.get('top_p')}, top_k {gen.get('top_k')}, max_new_tokens
{gen.get('max_new_tokens')}). Intervals: 95 % (Student-t over prompts for scores, Wilson for probe rates).
Arrows: change from the previous model in the chain (base → SFT → policy); green good, red bad, grey neutral.</p>
{gate_section(data.get('gate'))}
<h2>Metrics</h2>
{metric_table(per_model)}
{judge_note}
<h2>Reward</h2>
{_img(plots.reward_png(data), "reward per model")}
<h2>Training curves</h2>
{_img(plots.training_png(data.get("curves") or {}), "reward and KL over training")}
<h2>Length and diversity</h2>
{_img(plots.length_diversity_png(data), "length and diversity histograms")}
{''.join(sections)}
{probe_section(data)}
<h2>Preference labels</h2>
<table><tr><th>what</th><th>value</th></tr>{labels}</table>
{samples_section(data)}
</body></html>
"""


def render_markdown(data: dict[str, Any]) -> str:
    """The summary for the Prefect artifact and MLflow: the gate, and the headline metrics for the three models."""
    per_model = data["per_model"]
    names = [n for n in ("base", "sft", "policy") if n in per_model]
    lines = ["# alignflow evaluation", "", f"Evaluate run `{data['run'].get('run_id', '')}`, "
             f"align.method `{data['run'].get('method')}`", ""]
    if data.get("gate") is not None:
        from tasks.evaluation import gate

        lines += [gate.markdown(gate.Decision.from_dict(data["gate"])), ""]
    lines += ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for _, key, what, better in metric_rows(per_model):
        vals = []
        for n in names:
            v = per_model[n].get(key)
            sym, _ = arrow(v, per_model.get(PREVIOUS.get(n, ""), {}).get(key), better) if v is not None else ("", "")
            vals.append(f"{_num(v)} {sym}".strip())
        lines.append(f"| {what} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
