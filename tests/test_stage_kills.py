"""Kill-anywhere: a real stage (validate; sft on the tiny model) is SIGKILLed at random moments while it replaces a
good output with a new one; after every kill each of its outputs is either the previous good one, unchanged, or
the new one, complete — and a run to the end afterwards leaves the new outputs and no staging leftovers.

"The new one" is a reference run of the same inputs in another directory. Files that differ between two reference
runs (timings in metrics, adapters if training is not bit-exact) are checked for completeness instead: the same
names, each one parses (JSON, JSONL, safetensors) — a torn file would not."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_sft import setup_sft_project, write_sft_data

Snapshot = dict[str, str]  # relative path -> sha256 ("" for a missing output)


def _run(root: Path, stage: str, timeout: float = 600) -> float:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", f"tasks.{stage}"], cwd=root, env=_env(), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return time.monotonic() - t0


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _kill_after(root: Path, stage: str, seconds: float) -> None:
    proc = subprocess.Popen([sys.executable, "-m", f"tasks.{stage}"], cwd=root, env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _snapshot(root: Path, outputs: list[str]) -> dict[str, Snapshot]:
    snap = {}
    for out in outputs:
        path = root / out
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []
        snap[out] = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    return snap


def _parses(path: Path) -> bool:
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        elif path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as fh:
                list(fh.keys())
        else:
            return path.stat().st_size > 0
    except Exception:
        return False
    return True


def _is_new(root: Path, state: Snapshot, reference: Snapshot, volatile: set[str]) -> bool:
    if set(state) != set(reference):
        return False
    return all(state[f] == reference[f] if f not in volatile else _parses(root / f) for f in state)


def _check_kills(tmp_path: Path, stage: str, setup, change, outputs: list[str], seeds: int) -> None:
    """setup(root) builds a project; change(root) switches its inputs from the old to the new ones."""
    refs = []
    for i in range(2):  # two reference runs of the new inputs: what may differ between runs is "volatile"
        ref = setup(tmp_path / f"ref{i}")
        change(ref)
        duration = _run(ref, stage)
        refs.append(_snapshot(ref, outputs))
    reference = refs[0]
    volatile = {f for out in outputs for f in reference[out] if reference[out][f] != refs[1][out].get(f)}
    base = setup(tmp_path / "base")
    _run(base, stage)
    old = _snapshot(base, outputs)
    assert old != reference  # the kills must be able to tell old from new
    rng = random.Random(0)
    seen = {"old": 0, "new": 0}
    for seed in range(seeds):
        root = tmp_path / f"kill{seed}"
        shutil.copytree(base, root, symlinks=True)
        change(root)
        _kill_after(root, stage, rng.uniform(0.2, 1.15) * duration)
        state = _snapshot(root, outputs)
        for out in outputs:
            is_old, is_new = state[out] == old[out], _is_new(root, state[out], reference[out], volatile)
            assert is_old or is_new, f"seed {seed}: {out} is neither the old nor a complete new output"
            seen["new" if is_new and not is_old else "old"] += 1
        _run(root, stage)
        state = _snapshot(root, outputs)
        assert all(_is_new(root, state[o], reference[o], volatile) for o in outputs), f"seed {seed}: rerun"
        leftovers = [p for p in root.rglob(".*") if any(k in p.name for k in (".staging-", ".old-", ".tmp-"))]
        assert not leftovers, leftovers
    assert seen["old"] and seen["new"], seen  # some kills fell before the swap, some after


def _validate_project(tiny_model_dir: Path, project: Path):
    def setup(root: Path) -> Path:
        shutil.copytree(project, root, symlinks=True)
        shutil.copytree(tiny_model_dir, root / "models" / "base", dirs_exist_ok=True)
        return root

    def change(root: Path) -> None:
        path = root / "data/raw/prompts_train.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:300]))

    return setup, change


def test_validate_killed_anywhere_keeps_old_or_new_outputs(tmp_path, project, tiny_model_dir):
    setup, change = _validate_project(tiny_model_dir, project)
    _check_kills(tmp_path, "validate", setup, change, ["data/validated", "reports/validate", "metrics/validate.json"],
                 seeds=5)


@pytest.mark.slow
def test_sft_killed_anywhere_keeps_old_or_new_outputs(tmp_path, project, tiny_model_dir):
    def setup(root: Path) -> Path:
        shutil.copytree(project, root, symlinks=True)
        return setup_sft_project(root, tiny_model_dir) if not (root / "models/base").exists() else root

    def change(root: Path) -> None:
        write_sft_data(root, n=16)  # other training rows: another adapter

    _check_kills(tmp_path, "sft", setup, change, ["models/sft", "metrics/sft.json"], seeds=4)
