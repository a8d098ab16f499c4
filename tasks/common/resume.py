"""Checkpointed TRL training: resume a killed stage only when nothing it depends on changed; its curves.

Trainer checkpoints (`checkpoint-N/` under `paths.<stage>_checkpoints`) carry the adapter, optimizer, scheduler
and RNG states. A stage killed mid-run (OOM, preemption, Ctrl-C) and started again should continue from its last
complete checkpoint; a stage started after its params, data or upstream model changed must not, or it would
silently mix two configurations. So the checkpoint directory holds a fingerprint of everything that determines
the training (params section, seed, sha256 of the data files and of the upstream models) and a run resumes only
on an exact match; anything else clears the directory and starts fresh, saying which inputs changed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_write_text, read_json, sha256_file, write_json

log = logging.getLogger("alignflow")

FINGERPRINT_FILE = "alignflow_fingerprint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def model_digest(model_dir: str | Path) -> str:
    """sha256 naming a model directory: its manifest when it has one (it holds the weights' sha256), else all files."""
    model_dir = Path(model_dir)
    manifest = model_dir / "manifest.json"
    files = [manifest] if manifest.exists() else sorted(p for p in model_dir.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(model_dir)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def resume_checkpoint(ckpt_dir: str | Path, parts: dict[str, Any], stage: str) -> str | None:
    """Make `ckpt_dir` ready for a run; return the checkpoint to resume from, or None for a fresh start.

    `parts` is everything the training depends on (JSON-able). Checkpoints without `trainer_state.json` (the file
    the Trainer writes last) were cut short by the kill and are removed.
    """
    ckpt_dir = Path(ckpt_dir)
    parts = json.loads(json.dumps(parts, sort_keys=True, default=str))
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    fp_file = ckpt_dir / FINGERPRINT_FILE
    if ckpt_dir.exists():
        old = read_json(fp_file) if fp_file.exists() else None
        if old and old.get("digest") == digest:
            checkpoints = sorted(
                (p for p in ckpt_dir.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)),
                key=lambda p: int(_CHECKPOINT.match(p.name).group(1)),
            )
            complete = [p for p in checkpoints if (p / "trainer_state.json").is_file()]
            for partial in set(checkpoints) - set(complete):
                log.info("%s: removing incomplete checkpoint %s", stage, partial)
                shutil.rmtree(partial)
            if complete:
                log.info("%s: resuming from %s (same config fingerprint %s)", stage, complete[-1], digest[:12])
                return str(complete[-1])
            log.info("%s: no complete checkpoint in %s; starting fresh", stage, ckpt_dir)
        elif any(ckpt_dir.iterdir()):
            changed = sorted(k for k in parts if not old or old.get("parts", {}).get(k) != parts[k])
            log.info(
                "%s: config changed since the checkpoints in %s were made (%s); starting fresh",
                stage,
                ckpt_dir,
                ", ".join(changed) or "no fingerprint",
            )
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True)
    write_json(fp_file, {"digest": digest, "parts": parts})
    return None


def train(trainer, resume: str | None):
    """`trainer.train(resume_from_checkpoint=resume)`, minus one transformers 5.24 off-by-one.

    Resumed from its final checkpoint (killed after the last save, before the stage swapped its outputs in), a
    Trainer whose max_steps ends mid-epoch trains one step more than the uninterrupted run: the loop checks
    max_steps only after a step. A callback stops it before that step instead; the model already holds the
    checkpoint's weights, so the stage ends where the uninterrupted run ended. (An epoch-based run never takes
    the extra step: its epoch loop is already exhausted.)
    """
    from transformers import TrainerCallback
    from transformers.trainer_utils import TrainOutput

    class AlreadyFinished(Exception):
        pass

    class StopAtMaxSteps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if 0 < state.max_steps <= state.global_step:
                raise AlreadyFinished

    callback = StopAtMaxSteps()
    trainer.add_callback(callback)
    try:
        return trainer.train(resume_from_checkpoint=resume)
    except AlreadyFinished:
        log.info("resumed from the final checkpoint %s: nothing left to train", resume)
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        return TrainOutput(trainer.state.global_step, sum(losses) / len(losses) if losses else float("nan"), {})
    finally:
        trainer.remove_callback(callback)


def write_curves(path: str | Path, log_history: list[dict[str, Any]], columns: dict[str, str]) -> int:
    """Per-step curves for `dvc plots` from a Trainer's log history: CSV column <- log key, one row per step."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        values = {col: entry[key] for col, key in columns.items() if key in entry}
        if values and "step" in entry:
            rows.setdefault(int(entry["step"]), {}).update(values)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", *columns], lineterminator="\n")
    writer.writeheader()
    for step in sorted(rows):
        writer.writerow({"step": step, **rows[step]})
    atomic_write_text(path, buf.getvalue())
    return len(rows)
