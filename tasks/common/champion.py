"""The registered version under the MLflow alias `champion`: what the chat page serves and `align.init: champion`
starts from.

The pipeline registers each new policy with the pipeline run's `policy` artifact dir as its source (the LoRA
adapter + tokenizer + chain file, flows/tracking_glue.register_policy) and the gate moves `champion` to it. Here the
champion's artifacts are downloaded once into `labels/champion/<model>/<version>/` (a version's source never
changes, so the copy is reused), and the copy's chain file is rewritten so the adapters inside the policy dir point into the copy:
the logged chain names the policy by its project path (`models/policy`, and `models/policy/init/<k>` for the earlier
adapters of a policy trained from a champion), which on this machine may hold another run's policy. The links
before the policy (`models/base`, `models/sft`) are project paths and must exist here.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.common.modeling import CHAIN_FILE, load_causal_lm, load_tokenizer, read_chain, write_chain
from tasks.common.stage import StageError

CACHE_DIR = "labels/champion"


class ChampionError(StageError):
    """No champion to serve, or its chain cannot be rebuilt here; the message says what to run."""


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    local_dir: Path


def resolve_champion(client: Any, model_name: str, cache_dir: str | Path = CACHE_DIR) -> Champion:
    """The champion version of `model_name`, its artifacts downloaded (or already cached) and its chain checked."""
    import mlflow

    from tasks.common.registry import current_champion

    found = current_champion(client, model_name)
    if found is None:
        raise ChampionError(f"no champion yet for registered model {model_name!r}: run `alignflow run` until the "
                            "gate promotes a policy (or set the alias by hand)")
    local = Path(cache_dir, re.sub(r"[^A-Za-z0-9_.-]", "_", model_name), found.version)
    if not (local / CHAIN_FILE).exists():
        source = client.get_model_version(model_name, found.version).source
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{found.version}-", dir=local.parent))
        try:
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging)))
            if not (got / CHAIN_FILE).exists():
                raise ChampionError(f"champion {model_name} v{found.version}: its source {source} has no "
                                    f"{CHAIN_FILE}; it is not an alignflow policy")
            chain = read_chain(got)
            extra = {k: v for k, v in chain.items() if k not in ("base", "adapters")}
            adapters = localised(chain["adapters"], local)
            write_chain(got, chain["base"], adapters, logged_adapters=chain["adapters"], **extra)
            if local.exists():  # a half-written copy from an interrupted download
                shutil.rmtree(local)
            got.rename(local)  # whole or absent: the chain file is written before the rename
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    chain = read_chain(local)
    missing = [p for p in [chain["base"], *chain["adapters"]] if not Path(p).exists()]
    if missing:
        raise ChampionError(f"champion {model_name} v{found.version} is built on {', '.join(missing)}, which "
                            f"{'is' if len(missing) == 1 else 'are'} not here: run `dvc pull` (or `dvc repro "
                            "sft`) in the project root first")
    return Champion(found.version, found.run_id, local)


def localised(adapters: list[str], local: Path) -> list[str]:
    """The logged chain's adapters with the policy dir (the last adapter) and anything inside it mapped to `local`."""
    if not adapters:
        return []
    policy = Path(adapters[-1])
    out = []
    for a in adapters:
        p = Path(a)
        out.append(str(local / p.relative_to(policy)) if p == policy or policy in p.parents else a)
    return out


def load_champion(params: Any, model_dir: str | Path | None = None) -> tuple[Any, Any, str]:
    """(model, tokenizer, version): the champion of params.pipeline.registered_model, or the model in `model_dir`
    (a plain HF dir or any stage output with a chain file; its version reads `local:<dir>`)."""
    if model_dir is not None:
        local, version = Path(model_dir), f"local:{model_dir}"
    else:
        from mlflow import MlflowClient

        from tasks.common.tracking import tracking_uri

        uri = tracking_uri()
        champion = resolve_champion(MlflowClient(uri, registry_uri=uri), params.pipeline.registered_model)
        local, version = champion.local_dir, f"{params.pipeline.registered_model}/{champion.version}"
    # Stage outputs save their tokenizer beside the adapter; a bare adapter falls back to its base's.
    has_tokenizer = (local / "tokenizer_config.json").exists()
    tokenizer = load_tokenizer(local if has_tokenizer else read_chain(local)["base"])
    return load_causal_lm(local, merge_last=True), tokenizer, version
