"""What align trains on: the SFT model (align.init: sft) or the MLflow `champion` (align.init: champion).

The online loop improves the policy that is live instead of starting again from SFT each time. A champion is
base → sft → [its own earlier adapters] → its adapter (tasks/common/champion.py downloads it). Training from it:
- the model is that whole chain merged in memory, and TRL's fresh LoRA goes on top; with `ref_model=None` the
  DPO/KTO reference is the same model with the new adapter disabled — the champion, one copy of the weights;
- the champion's adapters after the SFT model are copied into the new policy (`<policy>/init/<k>/`) and its chain
  reads sft → init/0 … → policy, so a registered policy is self-contained on top of the SFT model and loads the
  same after the alias has moved on. Each iteration adds one adapter (~20 MB for the 135M model at r=16); setting
  align.init back to sft starts a fresh chain.

A champion trained on another SFT model cannot continue on this one (its adapters are deltas on that model's
weights): every policy's chain records the SFT model's digest (`sft_digest`), and a mismatch is a clear error.
The first iteration of a loop has no champion yet and trains from SFT, and says so.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.common.modeling import read_chain
from tasks.common.resume import model_digest
from tasks.common.stage import StageError

log = logging.getLogger("alignflow.align")
INIT_DIR = "init"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class PolicyInit:
    model_dir: Path                      # what load_causal_lm merges: the SFT model or the champion's local copy
    adapters: list[Path] = field(default_factory=list)  # the champion's adapters after the SFT model, in order
    info: dict[str, Any] = field(default_factory=dict)  # recorded in the chain, align.json and the resume digest


def resolve_policy_init(params: Any) -> PolicyInit:
    """The start of align for params.align.init (see the module docstring). Only the DPO family and kto get here
    with init: champion: any other method is refused when params.yaml is read (params.AlignParams)."""
    paths, cfg = params.paths, params.align
    sft_digest = model_digest(paths.sft_model)
    if cfg.init == "sft":
        return PolicyInit(Path(paths.sft_model), [], {"init": "sft", "sft_digest": sft_digest})
    from mlflow import MlflowClient

    from tasks.common.champion import resolve_champion
    from tasks.common.registry import current_champion
    from tasks.common.tracking import tracking_uri

    uri, name = tracking_uri(), params.pipeline.registered_model
    client = MlflowClient(uri, registry_uri=uri)
    if current_champion(client, name) is None:
        log.warning("align.init is champion but %s has no champion yet: training from the SFT model", name)
        return PolicyInit(Path(paths.sft_model), [], {"init": "sft", "sft_digest": sft_digest,
                                                      "init_note": "no champion yet"})
    champ = resolve_champion(client, name)
    chain, sft_chain = read_chain(champ.local_dir), read_chain(paths.sft_model)
    where = f"champion {name} v{champ.version} (run {champ.run_id})"
    if chain.get("sft_digest") is None:
        raise StageError(f"align.init: champion — {where} records no SFT digest (trained before align.init "
                         "existed), so it is unknown whether it was trained on this SFT model: run once with "
                         "align.init: sft and let the gate promote that policy")
    if chain["sft_digest"] != sft_digest:
        raise StageError(f"align.init: champion — {where} was trained on another SFT model than {paths.sft_model} "
                         "(sft_digest differs): its adapters do not apply to this one. Run once with align.init: sft")
    n_sft = len(sft_chain["adapters"])
    if chain["base"] != sft_chain["base"] or chain["adapters"][:n_sft] != sft_chain["adapters"]:
        raise StageError(f"align.init: champion — {where} is built on {chain['base']} → {chain['adapters'][:n_sft]}, "
                         f"not on this project's {sft_chain['base']} → {sft_chain['adapters']}")
    adapters = [Path(a) for a in chain["adapters"][n_sft:]]
    return PolicyInit(champ.local_dir, adapters, {"init": "champion", "sft_digest": sft_digest,
                                                  "init_version": champ.version, "init_run_id": champ.run_id,
                                                  "init_model": name})


def copy_init_adapters(init: PolicyInit, staging: str | Path, final_dir: str | Path) -> list[str]:
    """Copy the champion's adapters into `staging/init/<k>`; their paths as the chain names them (under final_dir)."""
    out = []
    for k, adapter in enumerate(init.adapters):
        dest = Path(staging, INIT_DIR, str(k))
        dest.mkdir(parents=True)
        copied = [f for f in ADAPTER_FILES if (adapter / f).exists() and shutil.copy2(adapter / f, dest / f)]
        if "adapter_config.json" not in copied:
            raise StageError(f"align.init: champion adapter {adapter} has no adapter_config.json")
        out.append(str(Path(final_dir, INIT_DIR, str(k))))
    return out
