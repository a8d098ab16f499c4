"""`alignflow compare-methods`: the ways to turn feedback into a policy, measured side by side on one task.

Seven DVC experiments on the same prompts, data budget and seed — PPO on a gold-labelled reward model (RLHF),
PPO on an AI-labelled reward model (RLAIF), DPO on gold labels, DPO on AI labels, KTO, IPO and SimPO (the last
three on AI labels) — queued with `dvc exp run --queue -S ...` and run by `dvc queue start`, so each is an ordinary
experiment (`dvc exp show`, `dvc exp apply NAME`). Stages are shared through the committed baseline: each queued
experiment checks out the baseline's dvc.lock outputs from the DVC cache before `dvc repro`, so whatever a method
leaves unchanged from params.yaml (on the default, AI labels: the preference data and the AI reward model) is reused,
not recomputed — run the default pipeline and commit its dvc.lock first. DVC's run cache does not help across
experiments, because it skips stages with `persist: true` outputs (all of ours: each stage swaps its output in
atomically), so each gold-label method collects gold preferences and trains its gold reward model itself. Gold
stands in for human labels on the default task (its labels count as human-equivalent labels in the table).

Every experiment runs with the promotion gate off (a comparison must not move the MLflow champion), logs to the
project's MLflow store under `<pipeline.experiment>-compare-methods`, and reads and fills the project's judge cache
and evaluate's base/SFT cache (absolute paths, since DVC runs queued experiments in temporary copies of the
repository). When they are done, tasks/evaluation/method_table.py writes `<paths.reports>/compare_methods.{md,csv,png}`,
one MLflow run logs the numbers and files, and `--readme` puts the table into README.md between its markers.

    alignflow compare-methods                      # all seven, one at a time (the machine's cores go to each)
    alignflow compare-methods --methods dpo_ai ipo # a subset
    alignflow compare-methods --collect cm-20261204-0510   # only the table, from finished experiments
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

README_START = "<!-- compare-methods:start -->"
README_END = "<!-- compare-methods:end -->"
METRIC_FILES = ("eval", "align", "train_reward", "collect_preferences")
DONE = {"Success", "Failed"}


@dataclass(frozen=True)
class Method:
    label: str
    overrides: dict[str, str]
    uses_rm: bool  # optimises the reward model: its training time counts


METHODS: dict[str, Method] = {
    "ppo_gold_rm": Method("PPO, gold-labelled RM (RLHF)", {"collect_preferences.source": "gold", "align.method": "ppo"}, True),
    "ppo_ai_rm": Method("PPO, AI-labelled RM (RLAIF)", {"collect_preferences.source": "ai", "align.method": "ppo"}, True),
    "dpo_gold": Method("DPO, gold labels", {"collect_preferences.source": "gold", "align.method": "dpo"}, False),
    "dpo_ai": Method("DPO, AI labels (RLAIF)", {"collect_preferences.source": "ai", "align.method": "dpo"}, False),
    "kto": Method("KTO, AI labels", {"collect_preferences.source": "ai", "align.method": "kto"}, False),
    "ipo": Method("IPO, AI labels", {"collect_preferences.source": "ai", "align.method": "ipo"}, False),
    "simpo": Method("SimPO, AI labels", {"collect_preferences.source": "ai", "align.method": "simpo"}, False),
}


class CompareMethodsError(RuntimeError):
    """A dvc command failed or an experiment is missing; the message names it."""


def shared_caches(params: Any, root: Path) -> dict[str, str]:
    """The project's judge and evaluate caches by absolute path, as -S overrides: queued experiments run in
    temporary copies of the repository, where the relative paths would start empty (also for `alignflow sweep`)."""
    return {"paths.judge_cache": str((root / params.paths.judge_cache).resolve()),
            "paths.eval_cache": str((root / params.paths.eval_cache).resolve())}


def queue_environment(**extra: str) -> None:
    """The environment `dvc queue start` hands its workers: this project's MLflow store (absolute), this
    interpreter's tools first on PATH (the worker runs `dvc` and each stage's `python -m tasks...`), and `extra`."""
    from tasks.common.tracking import tracking_uri

    os.environ.update({"MLFLOW_TRACKING_URI": tracking_uri(),
                       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra})


def common_overrides(params: Any, root: Path) -> dict[str, str]:
    """What every compared experiment shares beyond params.yaml: no promotion, one MLflow experiment, the
    project's caches."""
    return {
        "evaluate.gate.enabled": "false",
        "pipeline.experiment": f"{params.pipeline.experiment}-compare-methods",
        **shared_caches(params, root),
    }


def queue_commands(methods: list[str], prefix: str, common: dict[str, str]) -> list[list[str]]:
    """One `dvc exp run --queue` per method, named `<prefix>-<method>`."""
    cmds = []
    for name in methods:
        sets = {**common, **METHODS[name].overrides}
        cmds.append(["dvc", "exp", "run", "--queue", "-n", f"{prefix}-{name}",
                     *[arg for k, v in sets.items() for arg in ("-S", f"{k}={v}")]])
    return cmds


def parse_queue_status(text: str, names: list[str]) -> dict[str, str]:
    """Status (Queued, Running, Success, Failed) of each named experiment in `dvc queue status` output."""
    found = {}
    for line in text.splitlines():
        cells = line.split()
        for name in names:
            if name in cells and cells[-1] in {"Queued", "Running", "Success", "Failed"}:
                found[name] = cells[-1]
    return found


def experiment_records(show_json: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, data) of every named record in `dvc exp show --json`, at any depth (baselines hold experiments)."""
    if isinstance(show_json, dict):
        if show_json.get("name") and isinstance(show_json.get("data"), dict):
            yield str(show_json["name"]), show_json["data"]
        for value in show_json.values():
            yield from experiment_records(value)
    elif isinstance(show_json, list):
        for value in show_json:
            yield from experiment_records(value)


def experiment_metrics(show_json: Any, names: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{experiment name: {metrics file stem: metrics}} for the named experiments that have metrics."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, data in experiment_records(show_json):
        files = {Path(path).stem: entry["data"] for path, entry in (data.get("metrics") or {}).items()
                 if isinstance(entry, dict) and isinstance(entry.get("data"), dict)}
        if name in names and files:
            out[name] = files
    return out


def build_rows(methods: list[str], prefix: str, metrics: dict[str, dict[str, dict[str, Any]]],
               failed: dict[str, str] | None = None):
    """The table's rows: SFT (from the first finished experiment), then each method in the order asked."""
    from tasks.evaluation.method_table import MethodRow, method_row, sft_row

    rows = []
    finished = [metrics[f"{prefix}-{m}"] for m in methods if f"{prefix}-{m}" in metrics]
    if finished:
        rows.append(sft_row(finished[0]))
    for m in methods:
        name = f"{prefix}-{m}"
        if name in metrics:
            rows.append(method_row(m, METHODS[m].label, metrics[name], METHODS[m].uses_rm))
        else:
            why = (failed or {}).get(name, "no metrics (not run, or failed: dvc queue logs " + name + ")")
            rows.append(MethodRow(m, METHODS[m].label, status=why))
    return rows


def update_readme(readme: Path, table_md: str, note: str) -> bool:
    """Replace the block between the README's compare-methods markers; False when the markers are missing."""
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        return False
    block = f"{README_START}\n{note}\n\n{table_md}{README_END}"
    from tasks.common.io import atomic_write_text

    atomic_write_text(readme, pattern.sub(lambda _: block, text))
    return True


# The glue: dvc commands and MLflow


def _dvc(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    from flows.executables import venv_exe

    cmd = [venv_exe("dvc"), *args[1:]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise CompareMethodsError(f"`{' '.join(args)}` failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def wait(names: list[str], poll_s: float = 10.0, out=sys.stdout) -> dict[str, str]:
    """Poll `dvc queue status` until every named experiment succeeded or failed; print each change."""
    seen: dict[str, str] = {}
    started: dict[str, float] = {}
    while True:
        status = parse_queue_status(_dvc(["dvc", "queue", "status"]).stdout, names)
        for name in names:
            s = status.get(name, seen.get(name, "Queued"))
            if s != seen.get(name):
                if s == "Running":
                    started[name] = time.monotonic()
                took = f" after {time.monotonic() - started[name]:.0f} s" if s in DONE and name in started else ""
                done = sum(1 for n in names if status.get(n, seen.get(n)) in DONE)
                print(f"[{done}/{len(names)}] {name}: {s}{took}", file=out, flush=True)
                seen[name] = s
        if all(seen.get(n) in DONE for n in names):
            return seen
        time.sleep(poll_s)


def log_to_mlflow(params: Any, rows, files: list[Path], prefix: str) -> str:
    import mlflow

    from tasks.common.tracking import configure

    experiment_id = configure(f"{params.pipeline.experiment}-compare-methods")
    with mlflow.start_run(experiment_id=experiment_id, run_name="compare-methods",
                          tags={"alignflow.compare_methods": prefix}) as run:
        for r in rows:
            if r.status != "ok":
                continue
            for key in ("gold", "gold_low", "gold_high", "gain", "gain_low", "gain_high", "kl", "distinct_2",
                        "sycophancy", "over_refusal", "train_s", "human_labels", "judge_labels"):
                value = getattr(r, key)
                if value is not None:
                    mlflow.log_metric(f"{r.method}/{key}", value)
        for f in files:
            mlflow.log_artifact(str(f), artifact_path="compare_methods")
        return run.info.run_id


def run_compare_methods(methods: list[str], collect: str | None = None, jobs: int = 1, readme: bool = False,
                        dry_run: bool = False, out=sys.stdout) -> int:
    from tasks.common.params import load_params
    from tasks.common.tracking import configure
    from tasks.evaluation.method_table import to_markdown, write_outputs

    params, root = load_params(), Path.cwd()
    prefix = collect or datetime.now().strftime("cm-%Y%m%d-%H%M%S")
    names = [f"{prefix}-{m}" for m in methods]
    failed: dict[str, str] = {}
    if not collect:
        cmds = queue_commands(methods, prefix, common_overrides(params, root))
        if dry_run:
            for c in [*cmds, ["dvc", "queue", "start", "-j", str(jobs)]]:
                print(" ".join(c), file=out)
            return 0
        # queued experiments run in temporary copies: MLflow must point at this project's store, and the
        # comparison's experiment must exist first so that its artifact location is this project's mlruns/
        queue_environment()
        configure(f"{params.pipeline.experiment}-compare-methods")
        for c in cmds:
            _dvc(c)
        print(f"queued {len(cmds)} experiments ({prefix}-*); starting {jobs} worker(s)", file=out, flush=True)
        _dvc(["dvc", "queue", "start", "-j", str(jobs)])
        status = wait(names, out=out)
        failed = {n: f"experiment failed (dvc queue logs {n})" for n, s in status.items() if s == "Failed"}
    show = json.loads(_dvc(["dvc", "exp", "show", "--json"]).stdout or "[]")
    rows = build_rows(methods, prefix, experiment_metrics(show, names), failed)
    files = write_outputs(rows, Path(params.paths.reports) / "compare_methods")
    run_id = log_to_mlflow(params, rows, files, prefix)
    table = to_markdown(rows)
    print(table, file=out)
    print(f"wrote {', '.join(map(str, files))}; MLflow run {run_id}", file=out)
    if readme:
        note = (f"Measured by `alignflow compare-methods` ({prefix}, {datetime.now():%Y-%m-%d}): same prompts, data "
                f"budget and seed; gain = paired gold gain over SFT, bold where its 95 % interval is above 0.")
        if not update_readme(root / "README.md", table, note):
            print(f"README.md has no {README_START} … {README_END} block: not updated", file=out)
    return 0 if not failed and all(r.status == "ok" for r in rows) else 1
