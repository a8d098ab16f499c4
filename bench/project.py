"""The throw-away project every measured run starts from: params, the fixed data slice, the models, an MLflow store.

Built once per benchmark (`bench.run` starts it as its first subprocess) in <work>/project/; each worker copies it
to a fresh directory, so no run can resume another's checkpoints or read its outputs.

- params.yaml: the shipped params.yaml with only what a benchmark must change (`overrides`): max_steps, the prompt
  counts (collect_preferences / align.ppo / evaluate max_prompts), and evaluation/checkpointing inside training off
  (eval_fraction 0, eval_strategy / save_strategy "no"), so the training window holds training only — on both sides.
- data: the first rows of the default data, sized from params so every run trains exactly `steps` optimizer steps
  in one epoch: SFT rows from data/raw/sft.jsonl, prompts from data/raw/prompts_{train,eval}.jsonl (normalised
  with data.prompt_template, as the validate stage does), preference pairs from the pipeline's
  data/preferences/{train,hard_train}.jsonl when they exist, else built from the SFT rows (chosen = a row's
  completion, rejected = the next row's): the source is recorded in setup.json.
- models: models/base = a link to the model measured (--model; no stage run here writes it). models/sft,
  models/reward, models/policy: copies of the project's own when --model is the project's models/base and they
  exist; otherwise trained here for a few steps (the compute of a step does not depend on how well the adapters
  are trained; how long the samples are does, and the token counts are in the results).
- mlflow.db: migrated once here (creating a store costs ~9 s of migrations), copied into every run.
- the matmul peak (bench/peak.py), measured first, before anything else loads the machine.

    .venv/bin/python -m bench.project --out bench-work [--quick] [--model DIR]   # bench.run does this
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from tasks.common.io import read_jsonl, sha256_file, write_jsonl
from tasks.common.params import deep_merge, parse_params

REPO = Path(__file__).resolve().parents[1]

# Optimizer steps (training), PPO steps, prompts (sampling, evaluation) per measured run.
SIZES = {
    "full": {"sft_steps": 8, "reward_steps": 4, "dpo_steps": 6, "ppo_steps": 2, "generate_prompts": 32,
             "evaluate_prompts": 16},
    "quick": {"sft_steps": 2, "reward_steps": 1, "dpo_steps": 1, "ppo_steps": 1, "generate_prompts": 8,
              "evaluate_prompts": 4},
}
NO_EVAL_NO_SAVE = {"eval_strategy": "no", "save_strategy": "no"}


def overrides(sizes: dict[str, int], rollout_batch_size: int) -> dict[str, Any]:
    """What the benchmark changes in the shipped params (nothing else)."""
    return {
        "sft": {"eval_fraction": 0.0, "trainer": {**NO_EVAL_NO_SAVE, "max_steps": sizes["sft_steps"]}},
        "collect_preferences": {"max_prompts": sizes["generate_prompts"]},
        "train_reward": {"trainer": {**NO_EVAL_NO_SAVE, "max_steps": sizes["reward_steps"]}},
        "align": {"method": "dpo", "trainer": {**NO_EVAL_NO_SAVE, "max_steps": sizes["dpo_steps"]},
                  "ppo": {"steps": sizes["ppo_steps"], "max_prompts": sizes["ppo_steps"] * rollout_batch_size}},
        "evaluate": {"max_prompts": sizes["evaluate_prompts"]},
    }


def _rows_per_step(trainer: dict[str, Any]) -> int:
    return int(trainer.get("per_device_train_batch_size", 8)) * int(trainer.get("gradient_accumulation_steps", 1))


def _chat(text_or_messages: Any, template: str) -> list[dict[str, str]]:
    if isinstance(text_or_messages, list):
        return text_or_messages
    return [{"role": "user", "content": template.format(prompt=text_or_messages)}]


def _reply(text_or_messages: Any) -> list[dict[str, str]]:
    if isinstance(text_or_messages, list):
        return text_or_messages
    return [{"role": "assistant", "content": text_or_messages}]


def write_data(root: Path, params, sizes: dict[str, int]) -> dict[str, Any]:
    """The fixed slice; returns {file: {"source", "rows", "sha256"}}."""
    template = params.data.prompt_template
    raw = {name: read_jsonl(REPO / "data" / "raw" / f"{name}.jsonl") for name in ("sft", "prompts_train", "prompts_eval")}
    sft_rows = [{"id": r["id"], "prompt": _chat(r["prompt"], template), "completion": _reply(r["completion"])}
                for r in raw["sft"]]

    n_sft = sizes["sft_steps"] * _rows_per_step(params.sft.trainer)
    n_rm = sizes["reward_steps"] * _rows_per_step(params.train_reward.trainer)
    n_dpo = sizes["dpo_steps"] * _rows_per_step(params.align.trainer)
    n_ppo = sizes["ppo_steps"] * params.align.ppo.rollout_batch_size
    n_train_prompts = max(n_ppo, sizes["generate_prompts"])

    def pairs(name: str, n: int) -> tuple[list[dict], str]:
        produced = REPO / "data" / "preferences" / f"{name}.jsonl"
        if produced.exists() and len(read_jsonl(produced)) >= n:
            return read_jsonl(produced)[:n], str(produced.relative_to(REPO))
        made = [{"id": f"pair-{i:04d}", "prompt": a["prompt"], "chosen": a["completion"],
                 "rejected": b["completion"], "label": 1.0}
                for i, (a, b) in enumerate(zip(sft_rows, sft_rows[1:] + sft_rows[:1]))]
        return made[:n], "data/raw/sft.jsonl (pairs: a row's completion vs the next row's)"

    rm_pairs, rm_source = pairs("train", n_rm + 2)  # + 2 held out: the stage scores an eval split after training
    dpo_pairs, dpo_source = pairs("hard_train", n_dpo)
    files = {
        "data/cai/sft.jsonl": (sft_rows[:n_sft], "data/raw/sft.jsonl"),
        "data/validated/sft.jsonl": (sft_rows[:n_sft], "data/raw/sft.jsonl"),
        "data/validated/prompts_train.jsonl": (
            [{"id": r["id"], "prompt": _chat(r["prompt"], template)} for r in raw["prompts_train"][:n_train_prompts]],
            "data/raw/prompts_train.jsonl"),
        "data/validated/prompts_eval.jsonl": (
            [{"id": r["id"], "prompt": _chat(r["prompt"], template)} for r in raw["prompts_eval"][: sizes["evaluate_prompts"]]],
            "data/raw/prompts_eval.jsonl"),
        "data/preferences/train.jsonl": (rm_pairs[:n_rm], rm_source),
        "data/preferences/eval.jsonl": (rm_pairs[n_rm:], rm_source),
        "data/preferences/hard_train.jsonl": (dpo_pairs, dpo_source),
    }
    info = {}
    for rel, (rows, source) in files.items():
        write_jsonl(root / rel, rows)
        info[rel] = {"source": source, "rows": len(rows), "sha256": sha256_file(root / rel)[:16]}
    return info


def _project_chain(model_dir: Path) -> dict[str, Path] | None:
    """The project's own sft/reward/policy models, when the measured model is the project's models/base."""
    if model_dir.resolve() != (REPO / "models" / "base").resolve():
        return None
    chain = {name: REPO / "models" / name for name in ("sft", "reward", "policy")}
    if all((d / "alignflow_model.json").is_file() for d in chain.values()):
        return chain
    return None


def train_chain(root: Path, params) -> None:
    """A minimal SFT adapter, reward model and policy adapter in root/models (cwd = root): two SFT steps and one
    reward step through the stages themselves; the policy is a fresh LoRA on the SFT model (equal to it)."""
    from peft import LoraConfig, get_peft_model

    from tasks.common.modeling import load_causal_lm, load_tokenizer, write_chain
    from tasks.sft import run_sft
    from tasks.train_reward import run_train_reward

    short = params.model_copy(deep=True)
    short.sft.trainer = {**short.sft.trainer, "max_steps": 2}
    short.train_reward.trainer = {**short.train_reward.trainer, "max_steps": 1}
    run_sft(short)
    run_train_reward(short)
    paths = params.paths
    model = get_peft_model(load_causal_lm(paths.sft_model), LoraConfig(task_type="CAUSAL_LM",
                                                                      **params.align.lora.model_dump()))
    model.save_pretrained(paths.policy_model)
    load_tokenizer(paths.sft_model).save_pretrained(paths.policy_model)
    sft_chain = json.loads(Path(paths.sft_model, "alignflow_model.json").read_text())
    write_chain(paths.policy_model, sft_chain["base"], [*sft_chain["adapters"], paths.policy_model], method="dpo")
    for out in ("metrics", "plots", "checkpoints"):  # the chain's own stage outputs: not part of the template
        shutil.rmtree(root / out, ignore_errors=True)


NEEDS_CHAIN = {"reward", "dpo", "ppo", "generate", "evaluate"}  # every workload but sft starts from the SFT model


def build(out: Path, model_dir: Path, quick: bool, workloads: set[str] = NEEDS_CHAIN) -> dict[str, Any]:
    from bench import peak

    out.mkdir(parents=True, exist_ok=True)
    peak_info = peak.measure(quick=quick)
    root = out / "project"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    sizes = SIZES["quick" if quick else "full"]
    shipped = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    changes = overrides(sizes, parse_params(shipped).align.ppo.rollout_batch_size)
    raw = deep_merge(shipped, changes)
    params = parse_params(raw)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    data = write_data(root, params, sizes)

    (root / "models").mkdir()
    os.symlink(model_dir.resolve(), root / params.paths.base_model, target_is_directory=True)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_experiments()  # migrate once
        shutil.copy(root / "mlflow.db", out / "mlflow-empty.db")
        chain = _project_chain(model_dir)
        if not workloads & NEEDS_CHAIN:
            source = "none (not needed)"
        elif chain:  # copies (adapters: MBs), never links: a stage run in the bench replaces its output dir
            for name, src in chain.items():
                shutil.copytree(src, root / "models" / name)
            source = "copies of the project's models/{sft,reward,policy}"
        else:
            train_chain(root, params)
            source = "trained by bench/project.py (2 SFT steps, 1 RM step, fresh policy LoRA)"
            shutil.copy(out / "mlflow-empty.db", root / "mlflow.db")  # runs start from an empty store
            shutil.rmtree(root / "mlartifacts", ignore_errors=True)
    finally:
        os.chdir(cwd)
    setup = {"template": str(root), "model": str(model_dir.resolve()), "quick": quick, "sizes": sizes,
             "chain": source,
             "data": data, "peak": peak_info, "overrides": changes}
    (out / "setup.json").write_text(json.dumps(setup, indent=2), encoding="utf-8")
    return setup


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None,
                    help="the base model (default: models/base; with --quick: the tiny test model, built here)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workloads", default=",".join(sorted(NEEDS_CHAIN | {"sft"})), help="the ones that will run")
    args = ap.parse_args(argv)
    model = args.model
    if model is None and args.quick:
        from tests.tiny_model import build_tiny_model

        model = build_tiny_model(args.out / "tiny-model")
    build(args.out, model or REPO / "models" / "base", args.quick, set(args.workloads.split(",")))


if __name__ == "__main__":
    main()
