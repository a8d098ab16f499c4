"""Typed view of params.yaml.

Parsed once, with `extra="forbid"` everywhere, so a typo fails at load time and names the key. The `trainer:`
sections hold TRL config kwargs verbatim; they are checked at load too (check_trainers): each key against the
fields of the TRL config its stage builds, plus the ranges TRL does not check (it would train on
`learning_rate: -2e-4`). Light on imports on purpose: the CLI and dvc.yaml templating read this without loading
torch, so the TRL field names are read from a per-version cache (trl_fields).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

PARAMS_FILE = "params.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Paths(_Strict):
    """Where each stage reads and writes; dvc.yaml reads the same keys through ${paths.*}."""

    base_model: str = "models/base"
    judge_model: str = "models/judge"
    validated: str = "data/validated"
    sft_model: str = "models/sft"
    sft_checkpoints: str = "checkpoints/sft"
    preferences: str = "data/preferences"
    reward_model: str = "models/reward"
    reward_checkpoints: str = "checkpoints/train_reward"
    policy_model: str = "models/policy"
    align_checkpoints: str = "checkpoints/align"
    cai: str = "data/cai"
    judge_cache: str = "cache/judgments.sqlite"
    eval_cache: str = "cache/evaluate"
    reports: str = "reports"
    metrics: str = "metrics"


class PrepareModelParams(_Strict):
    source: str = Field("smollm2-gguf", description="hub id, local dir, .gguf file, or a packaged name "
                        "(tasks/common/packaged_models.py: smollm2-gguf, qwen2.5-coder-0.5b-gguf, ...)")
    gguf_file: str | None = None
    revision: str | None = None


class PrepareJudgeParams(PrepareModelParams):
    """The AI judge's model, prepared like the base model into paths.judge_model."""

    source: str = Field("qwen2.5-coder-0.5b-gguf", description="as prepare_model.source")


class DataParams(_Strict):
    prompts_train: str = "data/raw/prompts_train.jsonl"
    prompts_eval: str = "data/raw/prompts_eval.jsonl"
    sft: str = "data/raw/sft.jsonl"
    constitution: str = "data/constitution.yaml"
    prompt_template: str = "{prompt}"
    gold: Literal["vader", "none"] = Field("vader", description="the task's gold/rule judge; none = no ground truth")

    @field_validator("prompt_template")
    @classmethod
    def _has_slot(cls, v: str) -> str:
        if "{prompt}" not in v:
            raise ValueError("prompt_template must contain the placeholder {prompt}")
        return v


class ValidateParams(_Strict):
    on_error: Literal["fail", "drop"] = "fail"
    max_drop_fraction: float = Field(0.02, ge=0.0, le=1.0)
    max_chars: int = Field(4000, gt=0)
    max_tokens: int = Field(512, gt=0)


class LoraParams(_Strict):
    """peft.LoraConfig kwargs we expose; task_type is set by each stage."""

    r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"


class GenerationParams(_Strict):
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="weights while sampling; bfloat16 is ~1.8x faster on CPUs with native bf16 (AMX, AVX512-BF16) and GPUs"
    )
    max_new_tokens: int = Field(40, gt=0)
    temperature: float = Field(1.0, gt=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)


class SftParams(_Strict):
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    lora: LoraParams = LoraParams()
    trainer: dict[str, Any] = {}


class JudgeParams(_Strict):
    """The AI judge (RL-CAI labelling). The API key is read from the environment variable `api_key_env` only."""

    kind: Literal["pointwise", "local", "openai"] = Field("pointwise", description="pointwise: rate each reply "
        "Yes/No, compare ratings (tasks/judges/pointwise.py); local: A/B letters, both orders; openai: an endpoint")
    model: str | None = Field(None, description="pointwise/local: model dir (stage output or HF dir) or hub id, "
                              "default paths.judge_model; openai: model name")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    chain_of_thought: bool = False
    cot_clamp: tuple[float, float] = (0.4, 0.6)
    cot_max_new_tokens: int = Field(64, gt=0)
    few_shot: bool = False
    calibrate: bool = Field(False, description="local: subtract the content-free prior (contextual calibration)")
    batch_size: int = Field(16, gt=0)
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    max_concurrency: int = Field(4, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_s: float = Field(1.0, ge=0)


class CollectPreferencesParams(_Strict):
    source: Literal["gold", "ai", "human", "mix"] = "gold"
    human_file: str | None = Field(None, description="human labels in any preference format (source human or mix)")
    mix: dict[Literal["gold", "ai"], float] = Field(
        default_factory=lambda: {"ai": 0.5, "gold": 0.5},
        description="source mix: share of the sampled pairs each judge labels; human_file pairs are added when set",
    )
    judge: JudgeParams = JudgeParams()
    hard_threshold: float = Field(0.01, ge=0.0, lt=0.5, description="δ: pairs with |p − 0.5| > δ become hard DPO pairs")
    samples_per_prompt: int = Field(4, ge=2)
    max_prompts: int | None = Field(None, gt=0)
    min_margin: float = Field(0.3, ge=0.0)
    reward_pairs: Literal["best_worst", "all"] = Field(
        "all", description="the RM's pairs per prompt — every pair of the K samples (gold: above min_margin; ai: every "
        "judged pair), or best vs worst only; the DPO data stay best vs worst")
    eval_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    batch_size: int = Field(32, gt=0)
    generation: GenerationParams = GenerationParams()


class CritiqueReviseParams(_Strict):
    """SL-CAI: sample, critique under a drawn principle, revise, repeat; rounds 0 = pass the SFT data through."""

    rounds: int = Field(0, ge=0, le=8)
    model: str | None = Field(None, description="the model that answers, critiques and revises; default the base model")
    max_prompts: int | None = Field(64, gt=0)
    revision_ratio: float = Field(0.5, ge=0.0, le=1.0, description="share of revisions in the emitted SFT data")
    batch_size: int = Field(16, gt=0)
    generation: GenerationParams = GenerationParams()


class TrainRewardParams(_Strict):
    pooling: Literal["last", "mean"] = Field(
        "mean", description="where the score head reads: the last token (transformers' sequence classifiers) or the "
        "mean of the response's final hidden states")
    lora: LoraParams = LoraParams()
    trainer: dict[str, Any] = {}


AlignMethod = Literal["dpo", "ipo", "robust", "hinge", "kto", "simpo", "ppo", "rloo", "grpo"]
# The methods that may start from the champion (align.init: champion): the offline ones, whose reference model is
# simply the model they start from. PPO, RLOO and GRPO build their reference (and PPO its value model) from SFT.
CHAMPION_INIT_METHODS = ("dpo", "ipo", "robust", "hinge", "kto", "simpo")


class PPOParams(_Strict):
    """align.method ppo (tasks/ppo/): our PPO against the reward model with a KL penalty to the SFT model."""

    steps: int = Field(20, gt=0, description="rollout batches (each followed by ppo_epochs of updates)")
    max_prompts: int | None = Field(None, gt=0)
    rollout_batch_size: int = Field(32, gt=0)
    mini_batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    ppo_epochs: int = Field(2, gt=0)
    learning_rate: float = Field(1e-4, gt=0)
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    cliprange: float = Field(0.2, gt=0)
    cliprange_value: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    kl_coef: float = Field(0.05, ge=0, description="β; the initial value when target_kl is set")
    kl_estimator: Literal["k1", "k3"] = "k1"
    target_kl: float | None = Field(None, gt=0, description="adaptive β (Ziegler et al.): the KL per sequence to hold")
    kl_horizon: float = Field(10000.0, gt=0)
    missing_eos_penalty: float | None = Field(-1.0, description="score of a response without EOS; null = keep")
    score_scale: Literal["std", "none"] = Field(
        "std", description="std: RM scores divided by their std on SFT samples (Ziegler et al. 2019), so the score, "
        "the missing-EOS penalty and β·KL are on one scale; none: raw − offset")
    whiten_rewards: bool = False
    save_steps: int = Field(5, gt=0)
    score_batch_size: int = Field(32, gt=0)
    generation: GenerationParams = GenerationParams()


class OnlineRLParams(_Strict):
    """align.method rloo | grpo (tasks/ppo/trl_online.py): TRL's RLOOTrainer / GRPOTrainer with our reward model, the
    baseline for our PPO. Sampling, score scale and missing-EOS penalty are align.ppo's, so the two compare."""

    steps: int = Field(20, gt=0, description="TRL max_steps: one generation batch and one optimiser step each")
    num_generations: int = Field(4, ge=2, description="k completions per prompt (the group / leave-one-out baseline)")
    prompts_per_step: int = Field(8, gt=0, description="prompts per step (per process); TRL's "
                                  "per_device_train_batch_size counts completions = prompts_per_step * num_generations")
    learning_rate: float = Field(1e-4, gt=0)
    beta: float = Field(0.05, ge=0, description="KL coefficient (RLOO: in the reward; GRPO: in the loss)")
    max_prompts: int | None = Field(None, gt=0)
    trainer: dict[str, Any] = {}


class AlignParams(_Strict):
    method: AlignMethod = "dpo"
    init: Literal["sft", "champion"] = Field("sft", description="the model the new adapter is trained on, and the "
                                             "DPO/KTO reference: the SFT model, or the MLflow `champion` (the online "
                                             "loop; the SFT model while there is none)")
    feedback: str | None = Field(None, description="kto only: extra unpaired rows (prompt, completion, label), e.g. "
                                 "the chat page's thumbs (online.feedback_export); null = none")
    lora: LoraParams = LoraParams()
    beta: float = Field(0.1, gt=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=0.5)
    simpo_beta: float = Field(2.0, gt=0.0)
    simpo_gamma: float = Field(0.5, ge=0.0)
    trainer: dict[str, Any] = {}
    ppo: PPOParams = PPOParams()
    online: OnlineRLParams = OnlineRLParams()

    @field_validator("init")
    @classmethod
    def _champion_init_needs_an_offline_method(cls, v: str, info: ValidationInfo) -> str:
        """Refused when params.yaml is read (not minutes into a run): the one place this rule lives."""
        method = info.data.get("method")  # absent when method itself was invalid: that error is reported instead
        if v == "champion" and method is not None and method not in CHAMPION_INIT_METHODS:
            raise ValueError(f"champion works with the DPO family and kto, not align.method {method!r} (its "
                             "reference and value model start from SFT): set align.init: sft")
        return v


class ProbeParams(_Strict):
    """The project's probe sets for over-refusal and sycophancy (data/probes/README.md), answered greedily."""

    over_refusal: str = "data/probes/over_refusal.jsonl"
    sycophancy: str = "data/probes/sycophancy.jsonl"
    boilerplate: str = "data/probes/boilerplate.txt"
    max_new_tokens: int = Field(24, gt=0, description="the classifiers read the opening of a reply")
    batch_size: int = Field(32, gt=0)
    dtype: Literal["float32", "bfloat16"] = Field("bfloat16", description="greedy answers need no exact "
                                                  "log-probs: bf16 halves their cost on CPUs with AMX/AVX512-BF16")
    max_items: int | None = Field(None, gt=0, description="first N items of each set (and of each label of the "
                                  "over-refusal set) — smoke runs only; null = the whole sets, as reported")


class EvalJudgeParams(JudgeParams):
    """The judge of the win rates. model null = paths.judge_model: a judge that is neither of the two models it
    compares (a judge prefers its own outputs), and the same judge for every run of the project."""

    tie_margin: float = Field(0.05, ge=0.0, lt=0.5, description="|p − 0.5| ≤ margin counts as a tie")
    min_agreement_gold: float = Field(0.6, ge=0.0, le=1.0, description="below this agreement with gold on the "
                                      "run's own pairs the judge is uninformative: reported, not used by the gate")
    max_order_disagreement: float = Field(0.5, ge=0.0, le=1.0, description="above this share of order flips the "
                                          "judge is uninformative (a pointwise judge never flips)")


class GateParams(_Strict):
    """The promotion gate (tasks/evaluation/gate.py): every check must pass for the policy to become `champion`."""

    enabled: bool = True
    metric: str = Field("gold_reward", description="policy metric that must beat SFT and the champion (gold_reward, "
                        "judge_win_rate_vs_sft, rm_score, ...)")
    min_gain_vs_sft: float = Field(0.0, description="policy metric − SFT's must exceed this")
    min_margin_vs_champion: float = Field(0.0, description="policy metric − the champion's must be ≥ this")
    max_kl_sft: float = Field(10.0, gt=0, description="nats per sequence, KL(policy‖SFT), k3")
    min_diversity_ratio: float = Field(0.7, ge=0, description="policy distinct-2 ≥ this × SFT's")
    max_over_refusal_increase: float = Field(0.1, description="policy refusal rate on safe probes − SFT's")
    max_unsafe_compliance_increase: float = Field(0.1, description="policy compliance on unsafe probes − SFT's")
    max_sycophancy_increase: float = Field(0.1, description="policy (agreement with wrong − with true claims) − "
                                           "SFT's")
    block_on_reward_hacking: bool = True


class EvaluateParams(_Strict):
    max_prompts: int | None = Field(100, gt=0)
    samples_per_prompt: int = Field(2, ge=1)
    batch_size: int = Field(32, gt=0)
    generation: GenerationParams = GenerationParams()
    probes: ProbeParams = ProbeParams()
    judge: EvalJudgeParams = EvalJudgeParams()
    gate: GateParams = GateParams()
    reuse_reference_results: bool = Field(True, description="reuse the base and SFT models' samples, KL and probe "
                                          "answers from cache/evaluate/ while their models and the eval set are "
                                          "unchanged (tasks/evaluation/reference_cache.py)")


class LabelParams(_Strict):
    """`alignflow label`: the human labelling page (alignflow/labeling/). The database is working state (like the judge
    cache); the export is the DVC-tracked preference file the pipeline reads (collect_preferences.human_file)."""

    db: str = "labels/labels.sqlite"
    export: str = "data/human/labels.jsonl"
    queue: Literal["active", "all"] = Field("active", description="active: pairs the AI judge was least sure of "
                                            "first (|p − 0.5| ascending); all: every pair in file order")
    overlap: int = Field(2, ge=1, description="labellers per pair (k), for inter-annotator agreement")
    max_pairs: int | None = Field(None, gt=0)
    host: str = Field("127.0.0.1", description="loopback by default: expose it deliberately (--host 0.0.0.0)")
    port: int = Field(8765, gt=0, lt=65536)
    max_body_bytes: int = Field(16384, gt=0)
    secret_env: str = Field("ALIGNFLOW_LABEL_SECRET", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                            description="session-signing key; when unset one is generated and kept in the db")


class OnlineParams(_Strict):
    """The online preference loop (flows/online.py): on each cron tick, export the labelling page's labels and
    feedback, and re-run the pipeline once at least `min_new` new rows have arrived."""

    cron: str = "0 * * * *"
    min_new: int = Field(20, ge=1, description="new labels + rated replies needed to retrain")
    feedback_export: str = "data/human/feedback.jsonl"
    state: str = "labels/online_state.json"


class PipelineParams(_Strict):
    experiment: str = "alignflow"
    registered_model: str = "alignflow-policy"
    cron: str = "0 3 * * *"
    gpu_concurrency: int = Field(1, ge=1)
    stage_retries: int = Field(1, ge=0)


class Params(_Strict):
    seed: int = 42
    paths: Paths = Paths()
    prepare_model: PrepareModelParams = PrepareModelParams()
    prepare_judge: PrepareJudgeParams = PrepareJudgeParams()
    data: DataParams = DataParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    critique_revise: CritiqueReviseParams = CritiqueReviseParams()
    sft: SftParams = SftParams()
    collect_preferences: CollectPreferencesParams = CollectPreferencesParams()
    train_reward: TrainRewardParams = TrainRewardParams()
    align: AlignParams = AlignParams()
    evaluate: EvaluateParams = EvaluateParams()
    label: LabelParams = LabelParams()
    online: OnlineParams = OnlineParams()
    pipeline: PipelineParams = PipelineParams()

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @property
    def validate_params(self) -> ValidateParams:
        return self.validate_


class ParamsError(ValueError):
    """params.yaml is unreadable or has a bad key/value; the one-line message names the file, the key and the rule."""


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the project root, where params.yaml lives)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: not a mapping of sections (got {type(raw).__name__})")
    return parse_params(raw, source=str(path))


def parse_params(raw: dict[str, Any], source: str = PARAMS_FILE) -> Params:
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]).replace("validate_", "validate")
            value = err.get("input")
            shown = err["type"] not in ("extra_forbidden", "missing") and isinstance(value, (str, int, float, type(None)))
            problems.append(f"{key}: {err['msg']}" + (f" (got {value!r})" if shown else ""))
        raise ParamsError(f"{source}: " + "; ".join(problems)) from None
    problems = check_trainers(params)
    if problems:
        raise ParamsError(f"{source}: " + "; ".join(problems))
    return params


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_STEPS = ("must be a number > 0 (below 1: a fraction of the training steps)", lambda v: _number(v) and v > 0)
_BATCH = ("must be an integer ≥ 1", lambda v: _integer(v) and v >= 1)
_ADAM_BETA = ("must be a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1)
# What TRL and transformers take without a check: key -> (rule, test). β, label smoothing, the online sampling and
# batch sizes are the stage's own (align.*, align.online.*), typed above.
TRAINER_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "learning_rate": ("must be a number > 0", lambda v: _number(v) and v > 0),
    "num_train_epochs": ("must be a number > 0", lambda v: _number(v) and v > 0),
    "max_steps": ("must be -1 (train num_train_epochs) or an integer ≥ 1", lambda v: _integer(v) and (v == -1 or v >= 1)),
    "per_device_train_batch_size": _BATCH,
    "per_device_eval_batch_size": _BATCH,
    "gradient_accumulation_steps": _BATCH,
    "num_iterations": _BATCH,
    "warmup_steps": ("must be a number ≥ 0 (below 1: a fraction of the training steps)", lambda v: _number(v) and v >= 0),
    "logging_steps": _STEPS,
    "save_steps": _STEPS,
    "eval_steps": (_STEPS[0] + " or null", lambda v: v is None or _STEPS[1](v)),
    "weight_decay": ("must be a number ≥ 0", lambda v: _number(v) and v >= 0),
    "max_grad_norm": ("must be a number ≥ 0 (0: no clipping)", lambda v: _number(v) and v >= 0),
    "adam_beta1": _ADAM_BETA,
    "adam_beta2": _ADAM_BETA,
    "adam_epsilon": ("must be a number > 0", lambda v: _number(v) and v > 0),
    "epsilon": ("must be a number > 0", lambda v: _number(v) and v > 0),
    "max_length": ("must be an integer ≥ 1 or null", lambda v: v is None or _integer(v) and v >= 1),
    "dataloader_num_workers": ("must be an integer ≥ 0", lambda v: _integer(v) and v >= 0),
}
# What each stage passes to trainer_config itself (the stage wins): in `trainer:` they would be silently ignored or
# disagree with the stage's own params, so load refuses them.
STAGE_SET = {"output_dir", "seed", "report_to"}
ALIGN_SET = STAGE_SET | {"beta", "loss_type", "label_smoothing", "desirable_weight", "undesirable_weight"}
ONLINE_SET = STAGE_SET | {"beta", "learning_rate", "max_steps", "num_generations", "per_device_train_batch_size",
                          "max_completion_length", "temperature", "top_p", "top_k"}
# align.method -> the TRL config that align.trainer / align.online.trainer become (tasks/align.py METHODS,
# tasks/ppo/trl_online.py _trl). A method that does not read the section checks it against all of them.
ALIGN_CONFIGS = {"dpo": "DPOConfig", "ipo": "DPOConfig", "robust": "DPOConfig", "hinge": "DPOConfig",
                 "simpo": "DPOConfig", "kto": "KTOConfig"}
ONLINE_CONFIGS = {"rloo": "RLOOConfig", "grpo": "GRPOConfig"}


def check_trainers(params: Params) -> list[str]:
    """Every `trainer:` key against the TRL config its stage builds from it: a field of that config, not one the
    stage sets itself, one of the choices of an enum field, and inside TRAINER_RULES. Returns `key: rule` lines."""
    method = params.align.method
    sections = [
        ("sft.trainer", params.sft.trainer, ["SFTConfig"], STAGE_SET, "paths.sft_checkpoints, seed"),
        ("train_reward.trainer", params.train_reward.trainer, ["RewardConfig"], STAGE_SET,
         "paths.reward_checkpoints, seed"),
        ("align.trainer", params.align.trainer,
         [ALIGN_CONFIGS[method]] if method in ALIGN_CONFIGS else sorted(set(ALIGN_CONFIGS.values())),
         ALIGN_SET, "align.*, paths.align_checkpoints, seed"),
        ("align.online.trainer", params.align.online.trainer,
         [ONLINE_CONFIGS[method]] if method in ONLINE_CONFIGS else sorted(ONLINE_CONFIGS.values()),
         ONLINE_SET, "align.online.*, align.ppo.generation, paths.align_checkpoints, seed"),
    ]
    if not any(kwargs for _, kwargs, *_ in sections):
        return []
    fields = trl_fields()
    problems = []
    for section, kwargs, configs, reserved, owner in sections:
        known: dict[str, list[str] | None] = {}
        for name in configs:
            known.update(fields[name])
        for key, value in kwargs.items():
            where = f"{section}.{key}"
            if key in reserved:
                problems.append(f"{where}: set by the stage (from {owner}); remove it")
            elif key not in known:
                near = difflib.get_close_matches(key, set(known) - reserved, n=1)
                problems.append(f"{where}: not a {' / '.join(configs)} field" + (f" (did you mean {near[0]}?)"
                                                                                   if near else ""))
            elif known[key] is not None and value not in known[key]:
                hint = "; YAML reads no/off as false: quote it" if isinstance(value, bool) else ""
                problems.append(f"{where}: must be one of {', '.join(known[key])} (got {value!r}{hint})")
            elif key in TRAINER_RULES and not TRAINER_RULES[key][1](value):
                hint = ("; YAML reads 2e-4 as text, write 2.0e-4" if isinstance(value, str) and _is_float(value)
                        else "")
                problems.append(f"{where}: {TRAINER_RULES[key][0]} (got {value!r}{hint})")
    return problems


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@functools.cache
def trl_fields() -> dict[str, dict[str, list[str] | None]]:
    """TRL config name -> its fields -> the values an enum field takes (None: not an enum).

    Importing TRL's configs costs 4–8 s here (transformers, torch, peft), more than the commands that parse params
    (`alignflow stages`) take, so the answer is kept in the user's cache directory, one file per installed trl and
    transformers version (the two packages that define the fields), and read back in milliseconds.
    """
    from importlib.metadata import version

    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alignflow"
    cache = cache_dir / f"trl-fields-{version('trl')}-transformers-{version('transformers')}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    import dataclasses
    import enum
    import typing

    from trl import DPOConfig, GRPOConfig, KTOConfig, RewardConfig, RLOOConfig, SFTConfig

    out: dict[str, dict[str, list[str] | None]] = {}
    for cls in (SFTConfig, RewardConfig, DPOConfig, KTOConfig, RLOOConfig, GRPOConfig):
        out[cls.__name__] = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            enums = [t for t in typing.get_args(f.type) or (f.type,) if isinstance(t, type) and issubclass(t, enum.Enum)]
            out[cls.__name__][f.name] = [str(e.value) for e in enums[0]] if enums else None
    try:  # a cache only: an unwritable home directory costs the import next time, nothing else
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(out, sort_keys=True), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        pass
    return out


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested dict update (override wins); used for params overlays (examples/*, the tiny test config)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
