"""SL-CAI, the supervised phase of Constitutional AI: critique and revise sampled responses, emit SFT data.

Bai et al. 2022 §3: sample a response to each prompt; ask the same model to critique it under a principle drawn at
random from the constitution, then to rewrite it; repeat with fresh principles; fine-tune on the final revisions
mixed with helpful demonstrations. Here, per `critique_revise` params:

- rounds 0 (the default) is a pass-through: data/cai/sft.jsonl is data/validated/sft.jsonl byte for byte and no
  model is loaded, so the DAG (validate → critique_revise → sft) is the same whether SL-CAI is on or off.
- rounds > 0: for the first `max_prompts` training prompts, each step (sample, then per round critique and
  revision) is one batched `generate` over all prompts. Principles come from `constitution.draw(rng, "revise")`
  with a `random.Random(seed)`, fresh within a prompt until they run out. Each round is a new conversation
  (prompt, current response, critique request, critique, revision request; wording in tasks/critique/cai_text.py)
  rather than the paper's transcript growing over all rounds: it keeps a small model's context short.
- Boilerplate around critiques and revisions ("Sure, here is a revised response:") is stripped
  (cai_text.strip_boilerplate). A prompt is dropped when its sample, a critique or a revision is empty after
  stripping (nothing to critique or train on), or when its final revision is its initial sample (nothing revised).
- Mixing: `revision_ratio` r is the share of revisions in the emitted data: every kept revision plus a seeded
  sample of round(n_rev·(1−r)/r) helpful rows (all of them at most); r = 1 → revisions only, r = 0 → helpful only.
  Revision rows answer their training prompt and get the id `cai-<prompt id>`; helpful rows keep their ids.

Both outputs pass their suites before they replace data/cai/: revisions.jsonl the revisions suite
(tasks/common/produced_checks.py), sft.jsonl the validate stage's sft suite (params.validate's policy). On failure
the previous data/cai/ stays (atomic_dir).

Reads  data/validated/sft.jsonl, and with rounds > 0 data/validated/prompts_train.jsonl, params.data.constitution
       and critique_revise.model (default models/base; a plain HF dir or a stage output with alignflow_model.json)
Writes data/cai/sft.jsonl (what sft trains on), data/cai/revisions.jsonl (rounds > 0: per prompt the initial
       sample, each round's principle, critique and revision, and the final text), metrics/critique_revise.json

    dvc repro critique_revise
    alignflow run
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

from tasks.common.constitution import Constitution, ConstitutionError, load_constitution
from tasks.common.io import atomic_dir, read_jsonl, write_json, write_jsonl
from tasks.common.modeling import CHAIN_FILE
from tasks.common.params import Params
from tasks.common.stage import StageError, stage_main
from tasks.critique.cai_text import critique_messages, revision_messages, strip_boilerplate

log = logging.getLogger("alignflow.critique_revise")
MAX_LISTED = 20  # issues quoted in an error message


def run_critique_revise(params: Params) -> dict[str, float]:
    """Files in, files out, metrics returned."""
    from tasks.common.seeding import seed_everything
    from tasks.common.tracking import log_dataset, log_metrics, stage_run

    cfg, paths = params.critique_revise, params.paths
    seed_everything(params.seed)
    sft_file = Path(paths.validated) / "sft.jsonl"
    prompts_file = Path(paths.validated) / "prompts_train.jsonl"
    model_dir = cfg.model or paths.base_model
    _require(sft_file)
    constitution = _load_constitution(params.data.constitution) if cfg.rounds else None
    if cfg.rounds:  # every input checked before the model loads or a run opens
        _require(prompts_file)
        if not (Path(model_dir, "config.json").is_file() or Path(model_dir, CHAIN_FILE).is_file()):
            raise StageError(f"critique_revise.model: {model_dir} is not a model directory (config.json or "
                             f"{CHAIN_FILE}); run prepare_model, or point it at a model")

    out_dir = Path(paths.cai)
    with stage_run("critique_revise", params, cfg.model_dump()):
        helpful = read_jsonl(sft_file)
        log_dataset(sft_file, helpful, context="helpful")
        revisions: list[dict[str, Any]] = []
        if cfg.rounds == 0:
            with atomic_dir(out_dir) as staging:
                shutil.copyfile(sft_file, staging / "sft.jsonl")
            metrics = {"cai/prompts": 0, "cai/rounds": 0, "cai/revisions": 0}
            rows = helpful
        else:
            prompts = read_jsonl(prompts_file)[: cfg.max_prompts]
            log_dataset(prompts_file, prompts, context="prompts")
            revisions, metrics = critique_and_revise(prompts, constitution, params, model_dir)
            if not revisions and cfg.revision_ratio > 0:
                raise StageError(
                    f"critique_revise: no revision kept of {len(prompts)} prompts ({metrics['cai/dropped_empty']:.0f} "
                    f"empty, {metrics['cai/dropped_unchanged']:.0f} unchanged); raise generation.max_new_tokens or "
                    "max_prompts, or check the model's answers in the MLflow run"
                )
            rows = mix(revisions, helpful, cfg.revision_ratio, params.seed)
            with atomic_dir(out_dir) as staging:
                write_jsonl(staging / "revisions.jsonl", revisions)
                write_jsonl(staging / "sft.jsonl", rows)
                rows = _check_outputs(staging, out_dir, revisions, rows, constitution, params)

        revision_ids = {f"cai-{r['id']}" for r in revisions} if cfg.revision_ratio > 0 else set()
        n_rev = sum(r["id"] in revision_ids for r in rows)
        metrics |= {"cai/sft_rows": len(rows), "cai/helpful_rows": len(rows) - n_rev,
                    "cai/revision_share": n_rev / len(rows) if rows else 0.0}
        write_json(Path(paths.metrics) / "critique_revise.json", metrics)
        log_metrics(metrics)
        log_dataset(out_dir / "sft.jsonl", rows, context="output", name="cai_sft")
        if revisions:
            _log_sample_revisions(revisions[:20])
    return metrics


def critique_and_revise(prompts: list[dict], constitution: Constitution, params: Params,
                        model_dir: str) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The SL-CAI loop, one batched generation per step; returns the kept revision records and their metrics."""
    from tasks.common.modeling import generate, load_causal_lm, load_tokenizer

    cfg = params.critique_revise
    model = load_causal_lm(model_dir, dtype=cfg.generation.dtype)
    tok = load_tokenizer(model_dir)
    timing = {"seconds": 0.0, "tokens": 0}
    counts = {"stripped": 0, "empty": 0}  # boilerplate-stripped texts; prompts dropped for an empty text

    def sample(chats: list[list[dict[str, str]]], step: int, desc: str) -> list[str]:
        # A seed per step: the same seed for every step would replay one noise sequence across steps.
        start = time.perf_counter()
        out = generate(model, tok, chats, **cfg.generation.model_dump(exclude={"dtype"}), batch_size=cfg.batch_size,
                       seed=params.seed + step, desc=f"critique_revise: {desc}")
        timing["seconds"] += time.perf_counter() - start
        timing["tokens"] += sum(o[0]["n_tokens"] for o in out)
        return [o[0]["text"] for o in out]

    def strip(texts: list[str]) -> list[str]:
        clean = [strip_boilerplate(t) for t in texts]
        counts["stripped"] += sum(c != t.strip() for c, t in zip(clean, texts, strict=True))
        return clean

    records = [{"id": p["id"], "prompt": p["prompt"], "initial": text, "rounds": [], "final": text}
               for p, text in zip(prompts, sample([p["prompt"] for p in prompts], 0, "sample"), strict=True)]
    active = [r for r in records if r["initial"].strip()]
    counts["empty"] += len(records) - len(active)
    rng = random.Random(params.seed)
    for k in range(cfg.rounds):
        principles = [constitution.draw(rng, "revise", exclude={x["principle"] for x in r["rounds"]}) for r in active]
        critiques = strip(sample([critique_messages(r["prompt"], r["final"], p) for r, p in zip(active, principles)],
                                 2 * k + 1, f"critique {k + 1}/{cfg.rounds}"))
        todo = [(r, p, c) for r, p, c in zip(active, principles, critiques, strict=True) if c]
        revised = strip(sample([revision_messages(r["prompt"], r["final"], p, c) for r, p, c in todo],
                               2 * k + 2, f"revise {k + 1}/{cfg.rounds}"))
        before, active = len(active), []
        for (r, p, c), v in zip(todo, revised, strict=True):
            if v:
                r["rounds"].append({"principle": p.name, "critique": c, "revision": v})
                r["final"] = v
                active.append(r)
        counts["empty"] += before - len(active)
        log.info("round %d/%d: %d of %d prompts revised (%d dropped: empty critique or revision)",
                 k + 1, cfg.rounds, len(active), before, before - len(active))

    kept = [r for r in active if r["final"] != r["initial"]]
    metrics = {
        "cai/prompts": len(prompts),
        "cai/rounds": cfg.rounds,
        "cai/revisions": len(kept),
        "cai/dropped_empty": counts["empty"],
        "cai/dropped_unchanged": len(active) - len(kept),
        "cai/boilerplate_stripped": counts["stripped"],
        "cai/mean_initial_chars": _mean([len(r["initial"]) for r in kept]),
        "cai/mean_critique_chars": _mean([len(x["critique"]) for r in kept for x in r["rounds"]]),
        "cai/mean_final_chars": _mean([len(r["final"]) for r in kept]),
        "cai/gen_seconds": timing["seconds"],
        "cai/gen_tokens_per_s": timing["tokens"] / timing["seconds"] if timing["seconds"] > 0 else 0.0,
    }
    return kept, metrics


def mix(revisions: list[dict], helpful: list[dict], ratio: float, seed: int) -> list[dict]:
    """SFT rows where revisions make up `ratio` of the whole (as near as whole rows allow): revisions first, then a
    seeded sample of the helpful rows in their file order."""
    revised = [{"id": f"cai-{r['id']}", "prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["final"]}]}
               for r in revisions] if ratio > 0 else []
    if ratio >= 1:
        n_helpful = 0
    elif ratio <= 0:
        n_helpful = len(helpful)
    else:
        n_helpful = min(len(helpful), round(len(revised) * (1 - ratio) / ratio))
    picked = sorted(random.Random(seed).sample(range(len(helpful)), n_helpful))
    return revised + [helpful[i] for i in picked]


def _check_outputs(staging: Path, out_dir: Path, revisions: list[dict], rows: list[dict],
                   constitution: Constitution, params: Params) -> list[dict]:
    """Both produced files through their suites; returns the SFT rows kept (validate.on_error: drop may drop)."""
    from tasks.common.produced_checks import check_revisions
    from tasks.common.validation import DataValidationError, load_and_validate

    names = [p.name for p in constitution.for_use("revise")]
    issues = check_revisions(revisions, names, params.critique_revise.rounds, str(out_dir / "revisions.jsonl"))
    if issues:
        listed = [f"  {i}" for i in issues[:MAX_LISTED]] + ([f"  … and {len(issues) - MAX_LISTED} more"]
                                                           if len(issues) > MAX_LISTED else [])
        raise StageError("critique_revise: the produced revisions failed the revisions suite:\n" + "\n".join(listed))
    try:
        kept = load_and_validate("sft", [staging / "sft.jsonl"], params)
    except DataValidationError as exc:
        # Name the file where it would have gone: the staging directory is removed as this error propagates.
        message = str(exc).replace(str(staging), str(out_dir))
        raise StageError(f"critique_revise: the produced SFT data failed the sft suite: {message}") from exc
    if len(kept) < len(rows):
        write_jsonl(staging / "sft.jsonl", kept)
    return kept


def _require(path: Path) -> None:
    if not path.is_file():
        raise StageError(f"critique_revise: {path} not found (run the validate stage first)")


def _load_constitution(path: str) -> Constitution:
    try:
        return load_constitution(path)
    except ConstitutionError as exc:
        raise StageError(f"critique_revise: {exc}") from None


def _log_sample_revisions(records: list[dict]) -> None:
    import mlflow

    mlflow.log_table(
        {
            "id": [r["id"] for r in records],
            "prompt": [r["prompt"][-1]["content"] for r in records],
            "initial": [r["initial"] for r in records],
            "principles": [", ".join(x["principle"] for x in r["rounds"]) for r in records],
            "last_critique": [r["rounds"][-1]["critique"] for r in records],
            "final": [r["final"] for r in records],
        },
        artifact_file="sample_revisions.json",
    )


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


if __name__ == "__main__":
    stage_main("critique_revise", run_critique_revise)
