"""What the evaluate stage measured, typed: one `ModelResults` per model (base, SFT, policy), and the `Evaluation`
that the report document is built from (tasks/evaluation/report_doc.py).

A model's results are filled in stage order — samples, KL and probe answers while the model is loaded
(tasks/evaluation/sampling.py), then gold and RM scores, then the text metrics (tasks/evaluation/suite.py) — so
every later field is None until its step ran, and stays None when the step does not apply (no gold judge, no
reward model, K < 2, no probe sets). None means "not measured", an empty list "measured over nothing": the
metrics tell the two apart, as they did when these were the keys of an untyped dict.

Per-sample scores (gold, rm) are flat, prompt by prompt: sample j of prompt i is at i·K + j, where K is the number
of samples per prompt (every prompt has the same K).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.evaluation.frontier import Point
    from tasks.evaluation.reward_hacking import Guard

# The fields the reference cache stores (tasks/evaluation/reference_cache.py): what the models produced, as opposed
# to what is scored on it afterwards (recomputed on every run). Their JSON form is the cache file's, unchanged.
RAW_FIELDS = ("samples", "kl_k1", "kl_k3", "over_refusal", "sycophancy")


@dataclass
class ModelResults:
    """Everything measured for one model on the held-out prompts and the probe sets."""

    samples: list[list[dict[str, Any]]]
    """Per prompt, its K sampled completions {text, n_tokens, eos, ids} (the same seed for every model)."""
    kl_k1: list[float] | None = None
    """Per sequence, KL(model‖previous model in the chain), k1 estimator; None for the first model (no reference)."""
    kl_k3: list[float] | None = None
    """As kl_k1, k3 estimator (never negative)."""
    over_refusal: list[dict[str, Any]] | None = None
    """Greedy answers to the over-refusal probes, classified (tasks/evaluation/pathologies.py); None: no probes."""
    sycophancy: list[dict[str, Any]] | None = None
    """Greedy answers to the sycophancy probes, classified; None: no probes."""
    gold: list[float] | None = None
    """Per sample (flat), the gold score (tasks/common/gold.py); None when the task has no gold judge."""
    rm: list[float] | None = None
    """Per sample (flat), the reward model's score; None without a reward model."""
    self_bleu: list[float] | None = None
    """Per prompt, self-BLEU over its K samples; None when K < 2."""
    embedding_diversity: list[float] | None = None
    """Per prompt, mean pairwise 1 − cos of its K samples' embeddings; None when K < 2."""
    boilerplate_top: list[tuple[str, int]] | None = None
    """The template phrases found in most replies, with their reply counts (tasks/evaluation/boilerplate.py)."""

    @property
    def k(self) -> int:
        """Samples per prompt (1 when there are no prompts, so that index arithmetic stays defined)."""
        return len(self.samples[0]) if self.samples else 1

    def texts(self) -> list[str]:
        """Every sampled text, flat, prompt by prompt (the order of gold and rm)."""
        return [s["text"] for per in self.samples for s in per]

    def per_prompt(self, values: list[float]) -> list[float]:
        """Per-sample scores → one mean per prompt (a prompt's K samples are correlated: intervals are over
        prompts)."""
        k = self.k
        return [sum(values[i : i + k]) / k for i in range(0, len(values), k)]

    def firsts(self, values: list[float]) -> list[float]:
        """The score of each prompt's first sample (what the judge compares)."""
        return [values[i * self.k] for i in range(len(self.samples))]

    def raw(self) -> dict[str, Any]:
        """The reference cache's JSON form: the RAW_FIELDS that were measured, under their own names."""
        return {name: getattr(self, name) for name in RAW_FIELDS if getattr(self, name) is not None}

    @classmethod
    def from_raw(cls, doc: dict[str, Any]) -> ModelResults:
        """Back from `raw()` (a KeyError or TypeError when the document is not one: the cache treats it as a miss)."""
        if not set(doc) <= set(RAW_FIELDS):
            raise TypeError(f"not a cached model result: fields {sorted(set(doc) - set(RAW_FIELDS))}")
        return cls(**doc)


@dataclass
class Evaluation:
    """What one evaluate run measured and decided: the input of the report document (report_doc.build)."""

    run_id: str
    """The MLflow evaluate run."""
    method: str | None
    """align.method of the policy, from its chain file (None when there is no policy)."""
    eval_set: str
    """Digest of what makes two evaluations comparable (suite.eval_set_digest)."""
    prompts: list[dict[str, Any]]
    """The held-out prompts, in sampling order."""
    results: dict[str, ModelResults]
    """Model name (base, sft, policy: those that exist, in that order) → its results."""
    per_model: dict[str, dict[str, float]]
    """Model name → its flat metrics (gold_reward, kl_sft, ...: tasks/evaluation/report.py METRICS)."""
    metrics: dict[str, float]
    """metrics/eval.json: the per-model metrics as `<model>/<key>`, plus guard/, rm/, classifier/ and gate/ keys."""
    guard: Guard
    """The reward-hacking guard, policy vs SFT (tasks/evaluation/reward_hacking.py)."""
    train_rm_gain: float | None = None
    """The RM gain align reported in training (plots/align.csv), to set beside the held-out one."""
    points: list[Point] = field(default_factory=list)
    """The reward-vs-KL frontier across the experiment's runs (tasks/evaluation/frontier.py)."""
    gate: dict[str, Any] | None = None
    """The promotion gate's decision as a JSON-able dict; None without a policy."""
    judge: dict[str, Any] = field(default_factory=dict)
    """What the report says of the judge (suite.add_judge_metrics): identity, tie margin, uninformative, stats."""
    probe_sets: dict[str, list] = field(default_factory=dict)
    """The probe sets the models answered (suite.load_probe_sets)."""
    classifier: dict[str, float] = field(default_factory=dict)
    """The rule classifiers' accuracy on their labelled examples (suite.classifier_accuracy)."""
