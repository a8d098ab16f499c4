"""Reuse the base and SFT models' evaluation results while nothing they depend on has changed.

Most evaluations after the first change only the policy (an align sweep, every online-loop iteration), yet base and
SFT are sampled, scored for KL and probed again each time: two thirds of the generation in the stage. Their results
are a pure function of the two models' weights, the held-out prompts, the probe files, the sampling settings, the
seed and the code that produces them, so they are stored under a digest of exactly those (plus torch's version and
thread count, which can change the last bits of a matmul and so a sampled token) in `<paths.eval_cache>/<key>.json`
(default cache/evaluate; `alignflow compare-methods` points every queued experiment at the project's own).
Anything that differs gives another key; a missing or unreadable file is computed afresh. What is cached is the raw
samples, per-sequence KL and probe answers (ModelResults.raw(): the file keeps the field names as JSON keys);
everything scored on them (gold, RM, judge, diversity) is recomputed.
`evaluate.reuse_reference_results: false` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_write_text, sha256_file
from tasks.evaluation.results import ModelResults

log = logging.getLogger("alignflow.evaluate")
# The code that turns (models, prompts, settings) into the cached results.
CODE = ("tasks/evaluation/sampling.py", "tasks/evaluation/pathologies.py", "tasks/evaluation/probes.py",
        "tasks/common/modeling.py", "tasks/common/sampler.py", "tasks/common/prefix_cache.py", "tasks/common/logprobs.py",
        "tasks/common/kl.py", "tasks/evaluation/results.py")


def reference_key(params: Any, prompts: list[dict]) -> str:
    import torch

    from tasks.common.resume import model_digest

    cfg, paths = params.evaluate, params.paths
    here = Path(__file__).resolve().parents[2]
    doc = {
        "models": {"sft": model_digest(paths.sft_model), "base": model_digest(paths.base_model)},
        "prompts": hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest(),
        "probe_files": {f: sha256_file(f) for f in (cfg.probes.over_refusal, cfg.probes.sycophancy)
                        if Path(f).exists()},
        "settings": {"max_prompts": cfg.max_prompts, "samples_per_prompt": cfg.samples_per_prompt,
                     "batch_size": cfg.batch_size, "generation": cfg.generation.model_dump(mode="json"),
                     "probes": cfg.probes.model_dump(mode="json", exclude={"boilerplate"})},
        "seed": params.seed,
        "code": {f: sha256_file(here / f) for f in CODE},
        "torch": [torch.__version__, torch.get_num_threads()],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def load(key: str, directory: str | Path) -> dict[str, ModelResults] | None:
    path = Path(directory) / f"{key}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if set(doc) != {"sft", "base"}:
            return None
        results = {name: ModelResults.from_raw(raw) for name, raw in doc.items()}
    except (OSError, ValueError, TypeError, KeyError):
        return None
    log.info("evaluate: base and SFT results reused from %s (their models and the eval set are unchanged)", path)
    return results


def save(key: str, results: dict[str, ModelResults], directory: str | Path) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(directory) / f"{key}.json", json.dumps({name: r.raw() for name, r in results.items()}))
