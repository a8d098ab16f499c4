"""The online loop on the tiny pipeline: labels given through the labelling store are exported, validated and, once
enough are new, trained on by a real pipeline run (Prefect + DVC + MLflow); without new labels it waits; a
misconfigured source is refused before anything runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_labeling_store import write_preferences
from tests.test_pipeline_e2e import make_repo

pytestmark = pytest.mark.slow

HUMAN = {"source": "human", "human_file": "data/human/labels.jsonl"}


def _label(root: Path, n: int) -> None:
    from alignflow.labeling.queue import import_queue, next_pair
    from alignflow.labeling.store import LabelStore

    store = LabelStore(root / "labels/labels.sqlite")
    import_queue(store, write_preferences(root / "incoming", n=14))
    if not store.labeller_exists("ann"):
        store.add_labeller("ann")
    for i in range(n):
        a = next_pair(store, "ann", overlap=1)
        store.submit("ann", a.nonce, "first" if i % 3 else "second")


def _rate(root: Path, n: int) -> None:
    """n chat replies rated by ann, alternately up and down (the /chat page's store calls)."""
    from alignflow.labeling.store import LabelStore

    store = LabelStore(root / "labels/labels.sqlite")
    prompt = [{"role": "user", "content": "Continue this movie review:\n\nThe film opens with"}]
    for i in range(n):
        nonce = store.add_response("ann", prompt, f"{'a joy' if i % 2 == 0 else 'a bore'} {i}", "alignflow-policy/1")
        store.give_feedback("ann", nonce, i % 2 == 0)


@pytest.fixture
def loop_repo(tmp_path, tiny_model_dir):
    from prefect.testing.utilities import prefect_test_harness

    root = make_repo(tmp_path / "repo", tiny_model_dir, collect_preferences=HUMAN, online={"min_new": 8},
                     label={"overlap": 1})
    old, old_path = Path.cwd(), os.environ["PATH"]
    os.chdir(root)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{old_path}"
    try:
        with prefect_test_harness():
            yield root
    finally:
        os.chdir(old)
        os.environ["PATH"] = old_path


def test_new_labels_retrain_and_an_idle_tick_waits(loop_repo):
    import mlflow

    from flows.online import online_flow

    _label(loop_repo, 10)
    result = online_flow()
    assert result["status"] == "trained" and result["new"] == 10 and result["labels"] == 10
    stages = {o["stage"]: o["status"] for o in result["pipeline"]["stages"]}
    assert stages["collect_preferences"] == stages["align"] == stages["evaluate"] == "ran"
    collected = json.loads((loop_repo / "metrics/collect_preferences.json").read_text())
    assert collected["collect/human_pairs"] == 10  # the pipeline trained on exactly the exported labels
    rows = [json.loads(x) for x in (loop_repo / "data/human/labels.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and {r["labeller"] for r in rows} == {"ann"}

    mlflow.set_tracking_uri(f"sqlite:///{loop_repo / 'mlflow.db'}")
    tags = mlflow.get_run(result["pipeline"]["mlflow_run_id"]).data.tags
    from tasks.common.io import sha256_file

    assert tags["alignflow.trigger"] == "online" and tags["alignflow.online.labels"] == "10"
    assert tags["alignflow.online.labels_sha256"] == sha256_file(loop_repo / "data/human/labels.jsonl")
    assert "alignflow.promoted" in tags  # the gate decided on the new version either way
    state = json.loads((loop_repo / "labels/online_state.json").read_text())
    assert state["labels"] == 10 and state["mlflow_run_id"] == result["pipeline"]["mlflow_run_id"]

    # a tick with nothing new trains nothing; 3 new labels are still below min_new = 8
    assert online_flow()["status"] == "waiting"
    _label(loop_repo, 3)
    again = online_flow()
    assert again["status"] == "waiting" and again["new"] == 3

    # Iteration 2 starts from the champion and trains KTO on the labels plus the chat's thumbs. Whether the tiny
    # model's first policy passed the gate is not the subject here: if it did not, it is promoted by hand.
    from mlflow import MlflowClient

    from tasks.common.modeling import read_chain
    from tasks.common.registry import current_champion

    client = MlflowClient()
    version = result["pipeline"]["registered_version"].split("/")[-1]
    promoted = tags["alignflow.promoted"] == "true"
    champion = current_champion(client, "alignflow-policy")
    assert (champion is not None and champion.version == version) == promoted
    client.set_registered_model_alias("alignflow-policy", "champion", version)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["align"].update(init="champion", method="kto", feedback="data/human/feedback.jsonl")
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _rate(loop_repo, 5)
    second = online_flow()
    assert second["status"] == "trained" and second["new"] == 3 + 5 and second["feedback"] == 5
    chain = read_chain(loop_repo / "models/policy")
    assert chain["init"] == "champion" and chain["init_version"] == version
    assert chain["adapters"] == ["models/sft", "models/policy/init/0", "models/policy"]
    aligned = json.loads((loop_repo / "metrics/align.json").read_text())
    assert aligned["train/feedback_rows"] == 5 and aligned["init/champion_version"] == int(version)


def test_loop_refuses_a_source_that_ignores_the_labels(loop_repo):
    from flows.online import OnlineLoopError, online_flow

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["collect_preferences"]["source"] = "gold"
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(OnlineLoopError, match="collect_preferences.source is 'gold'"):
        online_flow()
    assert not Path("data/human/labels.jsonl").exists()  # refused before exporting anything
