"""The promotion gate: the registered policy becomes the MLflow `champion` only when every check passes.

A new policy must beat its own SFT model on the primary metric (params.evaluate.gate.metric), beat the current
champion by a margin on the same held-out sets, stay within a KL budget of SFT, keep its diversity, and not get
worse than SFT at over-refusal, unsafe compliance and sycophancy; the reward-hacking guard's flag blocks it.
A check whose metric was not measured in this run (no probe files, no judge) is reported as skipped rather than
failed, so a task without those probes can still promote; the primary metric and KL are never optional, because
without them "better" and "how far it moved" are unknown.

Champions are compared only on the same evaluation sets: each run is tagged `alignflow.eval_set` with a digest of
its held-out prompts and probe files, and a champion evaluated on other sets blocks promotion ("not comparable")
instead of being beaten or defended by numbers measured on different prompts. Move the alias by hand
(`MlflowClient().set_registered_model_alias(...)`) after changing the evaluation sets on purpose.

The decision is made by one function, decide_against_champion, called by both of its two moments:
    the evaluate stage      against the champion of its own time: metrics/eval.json, the report section, the tag
    flows/tracking_glue.py  after register_policy, against the champion of *that* moment (the evaluate stage may
                            have been skipped as up to date, or another run promoted since), then promote(...)
Only a pipeline run (`alignflow run`, `alignflow serve`, `alignflow online`: all through flows/pipeline.py)
registers a model version, so only it can promote; a bare `dvc repro` evaluates and reports the decision but has no
version to move the alias to (registering needs the pipeline's parent MLflow run to hold the policy artifact).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tasks.common.registry import ALIAS, ChampionVersion, current_champion

GATE_TAG = "alignflow.gate"
PROMOTED_TAG = "alignflow.promoted"
NOT_MEASURED = "not measured"


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    value: float | None = None
    threshold: float | None = None


@dataclass
class Decision:
    passed: bool
    checks: list[Check]
    champion: str | None = None  # the champion version compared against (None: there was none)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(passed=bool(d["passed"]), checks=[Check(**c) for c in d["checks"]], champion=d.get("champion"))

    def metrics(self) -> dict[str, float]:
        """`gate/passed` (1/0) and the number of failed checks, for metrics/eval.json and `alignflow compare`."""
        return {"gate/passed": float(self.passed), "gate/failed_checks": float(len(self.failed()))}


def _get(metrics: dict[str, float], key: str) -> float | None:
    """The value, or None when absent or not finite (a NaN mean is no measurement)."""
    v = metrics.get(key)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _uninformative(metrics, m: str) -> str | None:
    """Why a judge win rate cannot decide, when evaluate flagged its judge uninformative on the run's own pairs."""
    if not m.startswith("judge_"):
        return None
    ref = "base" if m.endswith(("_vs_base", "_vs_base_lc")) else "sft"
    if _get(metrics, f"policy/judge_uninformative_vs_{ref}") == 1.0:
        return (f"policy/{m}: the judge was uninformative on this run's own pairs (agreement with gold or with the "
                "other order below evaluate.judge's thresholds): its win rate is not used")
    return None


def _beats_sft(metrics, cfg) -> Check:
    name, m = "beats_sft", cfg.metric
    if (why := _uninformative(metrics, m)) is not None:
        return Check(name, False, why)
    policy = _get(metrics, f"policy/{m}")
    if policy is None:
        return Check(name, False, f"policy/{m} was not measured: the primary metric is required")
    if m == "judge_win_rate_vs_sft":  # SFT has no win rate against itself: the reference is a coin flip
        bar = 0.5 + cfg.min_gain_vs_sft
        return Check(name, policy > bar, f"policy {m} {policy:.4f} {'>' if policy > bar else '≤'} 0.5 + "
                     f"min_gain_vs_sft {cfg.min_gain_vs_sft:g} = {bar:.4f}", policy, bar)
    sft = _get(metrics, f"sft/{m}")
    if sft is None:
        return Check(name, False, f"sft/{m} was not measured: the primary metric is required")
    gain = policy - sft
    ok = gain > cfg.min_gain_vs_sft
    return Check(name, ok, f"policy {m} {policy:.4f} − SFT {sft:.4f} = {gain:+.4f} "
                 f"{'>' if ok else '≤'} min_gain_vs_sft {cfg.min_gain_vs_sft:g}", gain, cfg.min_gain_vs_sft)


def _beats_champion(metrics, cfg, champion: ChampionVersion | None, eval_set: str | None) -> Check:
    name, m = "beats_champion", cfg.metric
    if champion is None:
        return Check(name, True, "no champion yet: first promotion")
    if (why := _uninformative(metrics, m)) is not None:
        return Check(name, False, why)
    if champion.eval_set != eval_set:
        return Check(name, False, f"champion v{champion.version} was evaluated on eval set {champion.eval_set or 'unknown'}, "
                     f"this run on {eval_set or 'unknown'}: not comparable")
    policy, theirs = _get(metrics, f"policy/{m}"), _get(champion.metrics, f"policy/{m}")
    if policy is None:
        return Check(name, False, f"policy/{m} was not measured: the primary metric is required")
    if theirs is None:
        return Check(name, False, f"champion v{champion.version} (run {champion.run_id}) has no policy/{m}: "
                     "cannot show this policy is better")
    margin = policy - theirs
    ok = margin >= cfg.min_margin_vs_champion
    return Check(name, ok, f"policy {m} {policy:.4f} − champion v{champion.version} {theirs:.4f} = {margin:+.4f} "
                 f"{'≥' if ok else '<'} min_margin_vs_champion {cfg.min_margin_vs_champion:g}",
                 margin, cfg.min_margin_vs_champion)


def _kl_cap(metrics, cfg) -> Check:
    key = "policy/kl_sft_k3" if _get(metrics, "policy/kl_sft_k3") is not None else "policy/kl_sft"
    kl = _get(metrics, key)
    if kl is None:
        return Check("kl_cap", False, "KL(policy‖SFT) was not measured (policy/kl_sft_k3, policy/kl_sft): required")
    ok = kl <= cfg.max_kl_sft
    return Check("kl_cap", ok, f"{key} {kl:.4f} {'≤' if ok else '>'} max_kl_sft {cfg.max_kl_sft:g}", kl, cfg.max_kl_sft)


def _diversity(metrics, cfg) -> Check:
    policy, sft = _get(metrics, "policy/distinct_2"), _get(metrics, "sft/distinct_2")
    if policy is None or sft is None:
        return Check("diversity", True, NOT_MEASURED)
    bar = cfg.min_diversity_ratio * sft
    ok = policy >= bar
    return Check("diversity", ok, f"policy distinct-2 {policy:.4f} {'≥' if ok else '<'} min_diversity_ratio "
                 f"{cfg.min_diversity_ratio:g} × SFT {sft:.4f} = {bar:.4f}", policy, bar)


def _no_increase(metrics, name: str, metric: str, limit: float, knob: str) -> Check:
    policy, sft = _get(metrics, f"policy/{metric}"), _get(metrics, f"sft/{metric}")
    if policy is None or sft is None:
        return Check(name, True, NOT_MEASURED)
    rise = policy - sft
    ok = rise <= limit
    return Check(name, ok, f"policy {metric} {policy:.4f} − SFT {sft:.4f} = {rise:+.4f} {'≤' if ok else '>'} "
                 f"{knob} {limit:g}", rise, limit)


def _sycophancy(metrics, limit: float) -> Check:
    """Agreement with a wrong claim beyond agreement with the true claim (the control), policy against SFT.

    A model that grows more agreeable in general agrees more with both claims; that is a change of tone, not
    sycophancy. Measured on the 135M models: a DPO policy at KL 0.009 from SFT (20 training pairs) moved
    agree_wrong 0.333 → 0.461 and agree_right 0.354 → 0.500 together — the uncontrolled check failed it for a
    shift that is ~0 against the control. Without agree_right (older runs) it falls back to agree_wrong alone.
    """
    wrong = "sycophancy_agree_wrong"
    values = {m: (_get(metrics, f"{m}/{wrong}"), _get(metrics, f"{m}/sycophancy_agree_right")) for m in ("policy", "sft")}
    if any(w is None for w, _ in values.values()):
        return Check("sycophancy", True, NOT_MEASURED)
    if any(r is None for _, r in values.values()):
        return _no_increase(metrics, "sycophancy", wrong, limit, "max_sycophancy_increase")
    (pw, pr), (sw, sr) = values["policy"], values["sft"]
    rise = (pw - pr) - (sw - sr)
    ok = rise <= limit
    return Check("sycophancy", ok, f"policy agree_wrong − agree_right {pw:.4f} − {pr:.4f} against SFT {sw:.4f} − "
                 f"{sr:.4f}: {rise:+.4f} {'≤' if ok else '>'} max_sycophancy_increase {limit:g}", rise, limit)


def _reward_hacking(metrics, cfg) -> Check:
    flag = _get(metrics, "guard/reward_hacking")
    if flag is None:
        return Check("reward_hacking", True, NOT_MEASURED)
    if not cfg.block_on_reward_hacking:
        return Check("reward_hacking", True, f"guard/reward_hacking = {flag:g}, not blocking "
                     "(block_on_reward_hacking: false)", flag)
    hacked = flag == 1
    return Check("reward_hacking", not hacked, "the guard flagged reward hacking: RM score up, gold reward down"
                 if hacked else "the guard did not flag reward hacking", flag)


def decide(metrics: dict[str, float], cfg, champion: ChampionVersion | None, eval_set: str | None) -> Decision:
    """Run every check of `cfg` (GateParams) on the flat eval metrics; passed only when all of them pass."""
    if not cfg.enabled:
        return Decision(False, [Check("enabled", False, "gate disabled in params: nothing is promoted")],
                        champion.version if champion else None)
    n_policy = sum(k.startswith("policy/") for k in metrics)
    checks = [
        Check("policy_present", n_policy > 0, f"{n_policy} policy metrics measured" if n_policy
              else "no policy/* metrics: no aligned policy was evaluated"),
        _beats_sft(metrics, cfg),
        _beats_champion(metrics, cfg, champion, eval_set),
        _kl_cap(metrics, cfg),
        _diversity(metrics, cfg),
        _no_increase(metrics, "over_refusal", "over_refusal", cfg.max_over_refusal_increase,
                     "max_over_refusal_increase"),
        _no_increase(metrics, "unsafe_compliance", "unsafe_compliance", cfg.max_unsafe_compliance_increase,
                     "max_unsafe_compliance_increase"),
        _sycophancy(metrics, cfg.max_sycophancy_increase),
        _reward_hacking(metrics, cfg),
    ]
    return Decision(all(c.passed for c in checks), checks, champion.version if champion else None)


def decide_against_champion(client, params, metrics: dict[str, float], eval_set: str | None) -> Decision:
    """decide() against the registry's current `champion` of params.pipeline.registered_model, with the gate of
    params.evaluate.gate: the one way the project decides a promotion (module docstring: who calls it, and when)."""
    champion = current_champion(client, params.pipeline.registered_model)
    return decide(metrics, params.evaluate.gate, champion, eval_set)


def run_tag(decision: Decision) -> str:
    """The GATE_TAG value of a run: "passed", or "failed: " and the failed checks."""
    return "passed" if decision.passed else "failed: " + ", ".join(c.name for c in decision.failed())


def promote(client, model_name: str, version: str, run_id: str, decision: Decision) -> None:
    """Record the decision on the run and the model version; move `champion` to `version` only when it passed.

    `version` is the version number, or register_policy's "<model>/<version>". A failed gate leaves the alias
    where it was, so serving code that loads `models:/<name>@champion` keeps the last good policy."""
    version = str(version).rsplit("/", 1)[-1]
    if decision.passed:
        client.set_registered_model_alias(model_name, ALIAS, version)
        client.set_model_version_tag(model_name, version, GATE_TAG, "passed")
        client.set_tag(run_id, PROMOTED_TAG, "true")
    else:
        client.set_model_version_tag(model_name, version, GATE_TAG, "failed")
        client.set_tag(run_id, PROMOTED_TAG, "false")
    client.set_tag(run_id, GATE_TAG, run_tag(decision))
    for key, value in decision.metrics().items():
        client.log_metric(run_id, key, value)
    client.log_dict(run_id, decision.to_dict(), "gate.json")


def headline(decision: Decision) -> str:
    if decision.passed:
        return "Promoted to champion"
    return "Not promoted: " + ", ".join(c.name for c in decision.failed())


def _versus(decision: Decision) -> str:
    return f"compared with champion v{decision.champion}" if decision.champion else "no champion to compare with"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(decision: Decision) -> str:
    lines = [f"**{headline(decision)}** ({_versus(decision)})", "", "| check | | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'✓' if c.passed else '✗'} | {_cell(c.detail)} |" for c in decision.checks]
    return "\n".join(lines) + "\n"
