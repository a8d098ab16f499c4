"""align.init: champion and align.feedback on the tiny model, against a real MLflow registry in the project dir.

The online loop's contract: a new policy starts from the live champion (which is also its DPO/KTO reference), carries
the champion's adapters inside itself so it loads the same after the alias moves on, and a champion trained on
another SFT model is refused rather than stacked on the wrong weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.common.io import write_jsonl
from tests.test_align import _params, upstream  # noqa: F401  (fixture)

IDS = [[5, 9, 14, 30, 42, 7]]


def _logits(model_dir: str | Path):
    import torch

    from tasks.common.modeling import load_causal_lm

    with torch.no_grad():
        return load_causal_lm(model_dir)(torch.tensor(IDS)).logits


def _promote(policy_dir: str = "models/policy") -> str:
    """Log the policy like flows/tracking_glue.register_policy and point the `champion` alias at it."""
    from mlflow import MlflowClient

    from tasks.common.tracking import tracking_uri

    uri = tracking_uri()
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name("champions") or client.get_experiment(
        client.create_experiment("champions", artifact_location=Path("mlartifacts").resolve().as_uri()))
    run_id = client.create_run(exp.experiment_id).info.run_id
    client.log_artifacts(run_id, policy_dir, "policy")
    if not client.search_registered_models("name = 'alignflow-policy'"):
        client.create_registered_model("alignflow-policy")
    mv = client.create_model_version("alignflow-policy", source=f"{client.get_run(run_id).info.artifact_uri}/policy",
                                     run_id=run_id)
    client.set_registered_model_alias("alignflow-policy", "champion", mv.version)
    return str(mv.version)


def _feedback(n: int = 6) -> Path:
    """Chat-page thumbs in the export's form (alignflow/labeling/export.py)."""
    prompt = [{"role": "user", "content": "Continue this movie review:\n\nThe film opens with"}]
    texts = [("a joy from start to finish", True), ("tedious and flat", False)]
    rows = [{"id": f"feedback-{i:06d}", "prompt": prompt,
             "completion": [{"role": "assistant", "content": f"{texts[i % 2][0]} {i}"}], "label": texts[i % 2][1],
             "labeller": "ann", "model_version": "alignflow-policy/1", "source": "feedback"} for i in range(n)]
    path = Path("data/human/feedback.jsonl")
    write_jsonl(path, rows)
    return path


def test_champion_start_reference_and_self_contained_chain(upstream):  # noqa: F811
    from tasks.align import run_align
    from tasks.common.champion import resolve_champion
    from tasks.common.modeling import read_chain, write_chain

    run_align(_params("dpo"))  # iteration 0: from SFT, becomes champion v1
    first = read_chain("models/policy")
    assert first["init"] == "sft" and len(first["sft_digest"]) == 64
    assert _promote() == "1"
    champion_logits = _logits("models/policy")

    params = _params("kto")  # iteration 1: from the champion, with the chat's thumbs
    params.align.init = "champion"
    params.align.feedback = str(_feedback())
    metrics = run_align(params)
    chain = read_chain("models/policy")
    assert chain["adapters"] == ["models/sft", "models/policy/init/0", "models/policy"]
    assert (chain["init"], chain["init_version"], chain["init_model"]) == ("champion", "1", "alignflow-policy")
    assert metrics["init/champion_version"] == 1 and metrics["init/adapters"] == 1
    assert metrics["train/feedback_rows"] == 6 and metrics["train/pairs"] == 12

    # The reference is the champion: the chain without the new adapter gives the champion's logits exactly.
    ref = Path("ref-only")
    ref.mkdir()
    write_chain(ref, chain["base"], chain["adapters"][:-1])
    import torch

    torch.testing.assert_close(_logits(ref), champion_logits, atol=1e-5, rtol=1e-5)
    new_logits = _logits("models/policy")
    assert not torch.allclose(new_logits, champion_logits, atol=1e-4)

    # Promoted and downloaded elsewhere, it loads the same: init/0 is read from the copy, not from models/policy.
    assert _promote() == "2"
    from mlflow import MlflowClient

    from tasks.common.tracking import tracking_uri

    uri = tracking_uri()
    local = resolve_champion(MlflowClient(uri, registry_uri=uri), "alignflow-policy").local_dir
    assert read_chain(local)["adapters"] == ["models/sft", str(local / "init/0"), str(local)]
    shutil.rmtree("models/policy")  # nothing may still point here
    torch.testing.assert_close(_logits(local), new_logits, atol=1e-5, rtol=1e-5)

    # Iteration 2 stacks one more adapter on champion v2.
    params.align.method, params.align.feedback = "dpo", None
    run_align(params)
    assert read_chain("models/policy")["adapters"] == [
        "models/sft", "models/policy/init/0", "models/policy/init/1", "models/policy"]


def test_no_champion_yet_trains_from_sft(upstream):  # noqa: F811
    from tasks.align import run_align
    from tasks.common.modeling import read_chain

    params = _params("dpo")
    params.align.init = "champion"
    run_align(params)
    chain = read_chain("models/policy")
    assert chain["adapters"] == ["models/sft", "models/policy"]
    assert chain["init"] == "sft" and chain["init_note"] == "no champion yet"


def test_a_champion_of_another_sft_model_is_refused(upstream):  # noqa: F811
    from tasks.align import run_align
    from tasks.common.modeling import CHAIN_FILE
    from tasks.common.stage import StageError

    run_align(_params("dpo"))
    chain_file = Path("models/policy", CHAIN_FILE)
    chain = json.loads(chain_file.read_text())
    chain_file.write_text(json.dumps({**chain, "sft_digest": "0" * 64}))
    _promote()
    before = Path("models/policy/adapter_model.safetensors").read_bytes()
    params = _params("dpo")
    params.align.init = "champion"
    with pytest.raises(StageError, match="another SFT model"):
        run_align(params)
    assert Path("models/policy/adapter_model.safetensors").read_bytes() == before  # the good output is kept

    # PPO/RLOO/GRPO build their reference from SFT: init: champion with them is refused when the params are read.
    from tasks.common.params import ParamsError, parse_params

    raw = params.model_dump()
    raw["align"]["method"] = "ppo"
    with pytest.raises(ParamsError, match="align.init: .*DPO family and kto"):
        parse_params(raw)


def test_feedback_needs_kto_and_valid_rows(upstream):  # noqa: F811
    from tasks.align import run_align
    from tasks.common.stage import StageError
    from tasks.common.validation import DataValidationError

    params = _params("dpo")
    params.align.feedback = str(_feedback())
    with pytest.raises(StageError, match="only with kto"):
        run_align(params)
    path = _feedback()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[3]["label"] = "maybe"
    write_jsonl(path, rows)
    params.align.method = "kto"
    with pytest.raises(DataValidationError, match="feedback.jsonl"):
        run_align(params)
    assert not Path("models/policy").exists()
