"""The live-feedback chat page: a signed-in labeller chats with the tiny model, rates replies 👍/👎 once, the votes
export as unpaired KTO rows that pass the validate stage's checks; the champion is resolved from a real MLflow
registry (sqlite in tmp) and served end to end."""

from __future__ import annotations

import json
from pathlib import Path

import markupsafe
import pytest
from fastapi.testclient import TestClient

from alignflow.labeling.export import export_feedback, feedback_rows
from alignflow.labeling.server import create_app
from alignflow.labeling.store import LabelError, LabelStore
from tasks.common.champion import ChampionError, load_champion, resolve_champion
from tests.conftest import copy_migrated_mlflow_db
from tests.test_labeling_api import field, sign_in
from tests.test_labeling_store import XSS, label_params

HELLO = [{"role": "user", "content": "hello world"}]


@pytest.fixture
def setup(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.delenv("ALIGNFLOW_LABEL_SECRET", raising=False)
    params = label_params(tmp_path)
    store = LabelStore(params.label.db)
    tokens = {name: store.add_labeller(name) for name in ("ann", "bob")}
    return params, store, tokens, create_app(params, store, chat_model=tiny_model_dir)


def send(client: TestClient, message: str, parent: str = "") -> str:
    """Post a chat message; returns the nonce of the reply it made."""
    page = client.get(f"/chat?at={parent}" if parent else "/chat").text
    r = client.post("/chat", data={"csrf": field(page, "csrf"), "message": message, "parent": parent},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.headers["location"].split("at=", 1)[1]


def vote(client: TestClient, nonce: str, up: str) -> int:
    csrf = field(client.get(f"/chat?at={nonce}").text, "csrf")
    return client.post("/feedback", data={"csrf": csrf, "nonce": nonce, "vote": up},
                       follow_redirects=False).status_code


def test_chat_vote_and_follow_up(setup, tiny_model_dir):
    params, store, tokens, app = setup
    ann = sign_in(app, tokens["ann"])
    page = ann.get("/chat").text
    assert 'id="chat-form"' in page and 'id="thumbs-up"' not in page
    assert 'href="/chat"' in ann.get("/label").text and 'href="/label"' in page  # the pages link each other
    nonce = send(ann, "hello world")
    page = ann.get(f"/chat?at={nonce}").text
    (fb,) = store.feedback_rows()
    assert fb.conversation == HELLO and fb.up is None and fb.model_version == f"local:{tiny_model_dir}"
    assert str(markupsafe.escape(fb.response)) in page and 'id="thumbs-up"' in page and 'id="thumbs-down"' in page
    assert vote(ann, nonce, "up") == 303
    voted = store.feedback_rows()[0]
    assert voted.up is True and voted.voted is not None
    assert "You rated this reply 👍" in ann.get(f"/chat?at={nonce}").text
    assert vote(ann, nonce, "up") == 303 and store.feedback_rows()[0] == voted  # a double click: no-op
    assert vote(ann, nonce, "down") == 409 and store.feedback_rows()[0] == voted  # a vote is not a toggle
    assert vote(ann, nonce, "sideways") == 400
    follow = send(ann, "why", parent=nonce)
    second = store.response("ann", follow)
    assert second.conversation == HELLO + [{"role": "assistant", "content": fb.response},
                                           {"role": "user", "content": "why"}]


def test_no_session_csrf_and_other_labellers(setup):
    params, store, tokens, app = setup
    anon = TestClient(app)
    assert anon.get("/chat", follow_redirects=False).headers["location"] == "/"
    assert anon.post("/chat", data={"message": "hello", "csrf": "x"}, follow_redirects=False).status_code == 401
    ann = sign_in(app, tokens["ann"])
    nonce = send(ann, "hello world")
    csrf = field(ann.get("/chat").text, "csrf")
    assert anon.post("/feedback", data={"csrf": csrf, "nonce": nonce, "vote": "up"},
                     follow_redirects=False).status_code == 401
    assert ann.post("/chat", data={"message": "hello"}, follow_redirects=False).status_code == 403
    assert ann.post("/feedback", data={"nonce": nonce, "vote": "up"}, follow_redirects=False).status_code == 403
    assert ann.post("/feedback", json={"csrf": csrf, "nonce": nonce, "vote": "up"},
                    follow_redirects=False).status_code == 415
    assert ann.post("/chat", data={"csrf": csrf, "message": "x" * params.label.max_body_bytes},
                    follow_redirects=False).status_code == 413
    bob = sign_in(app, tokens["bob"])
    assert bob.get(f"/chat?at={nonce}").status_code == 404  # ann's conversation is hers
    assert vote(bob, nonce, "down") == 409
    bobs = field(bob.get("/chat").text, "csrf")
    assert bob.post("/chat", data={"csrf": bobs, "message": "hi", "parent": nonce},
                    follow_redirects=False).status_code == 409
    rows = store.feedback_rows()
    assert len(rows) == 1 and rows[0].labeller == "ann" and rows[0].up is None


def test_reply_is_rendered_escaped(setup):
    params, store, tokens, app = setup
    nonce = store.add_response("ann", [{"role": "user", "content": XSS}], XSS, "alignflow-policy/3")
    page = sign_in(app, tokens["ann"]).get(f"/chat?at={nonce}")
    assert "<script>window.__xss" not in page.text and "<b>bold</b>" not in page.text
    assert page.text.count(str(markupsafe.escape(XSS))) == 2  # the user turn and the reply, as text
    assert "<script" not in page.text and "default-src 'none'" in page.headers["content-security-policy"]


def test_store_votes(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.add_labeller("ann")
    store.add_labeller("bob")
    nonce = store.add_response("ann", HELLO, "hi there", "m/1")
    with pytest.raises(LabelError, match="unknown response"):
        store.give_feedback("bob", nonce, True)
    with pytest.raises(LabelError, match="unknown response"):
        store.give_feedback("ann", "nope", True)
    first = store.give_feedback("ann", nonce, False)
    assert first.up is False and store.give_feedback("ann", nonce, False) == first
    with pytest.raises(LabelError, match="already has a thumbs down"):
        store.give_feedback("ann", nonce, True)
    assert store.feedback_rows(voted_only=True) == [first]


def test_export_feedback_validates_as_kto(setup):
    from tasks.common.validation import load_and_validate

    params, store, tokens, app = setup
    replies = [("ann", "good film", True), ("ann", "bad film", False), ("bob", "great film", True),
               ("bob", "dull plot", False), ("bob", "unrated", None), ("ann", "good film", True)]
    for who, text, up in replies:
        nonce = store.add_response(who, HELLO, text, "alignflow-policy/2")
        if up is not None:
            store.give_feedback(who, nonce, up)
    path = Path(params.label.export).with_name("feedback.jsonl")
    metrics = export_feedback(store, path)
    assert metrics == {"feedback/responses": 6.0, "feedback/up": 2.0, "feedback/down": 2.0, "feedback/up_rate": 0.5}
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == feedback_rows(store) and len(rows) == 4  # unrated left out, the repeated ann row kept once
    assert rows[0] == {"id": "feedback-000001", "prompt": HELLO,
                       "completion": [{"role": "assistant", "content": "good film"}], "label": True,
                       "labeller": "ann", "model_version": "alignflow-policy/2", "source": "feedback"}
    valid = load_and_validate("kto", [path], params)
    assert [r["label"] for r in valid] == [True, False, True, False]
    assert {r["source"] for r in valid} == {"feedback"}
    before = path.read_bytes()
    export_feedback(store, path)
    assert path.read_bytes() == before  # nothing new: byte-for-byte the same file for DVC


# The champion from a real MLflow registry ----------------------------------------------------------------------


def _adapter(base: Path, out: Path, chain_adapters: list[str]) -> Path:
    """A LoRA adapter on `base` saved like a stage output: weights, tokenizer and the chain file."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.common.modeling import write_chain

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    write_chain(out, base, chain_adapters)
    return out


def test_champion_from_the_registry(tmp_path, monkeypatch, tiny_model_dir):
    """No model, no alias → the clear error; a champion built on models/sft that is not here → says so; then it
    downloads once, rewrites its chain to the copy, and the chat page serves it."""
    from mlflow import MlflowClient

    from tasks.common.tracking import tracking_uri

    monkeypatch.delenv("ALIGNFLOW_LABEL_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    copy_migrated_mlflow_db(tmp_path)
    uri = tracking_uri()
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    name = "alignflow-policy"
    with pytest.raises(ChampionError, match="no champion yet"):
        resolve_champion(client, name)

    exp = client.create_experiment("t", artifact_location=(tmp_path / "mlartifacts").as_uri())
    run_id = client.create_run(exp).info.run_id
    policy = _adapter(tiny_model_dir, tmp_path / "built" / "policy", ["models/sft", "models/policy"])
    client.log_artifacts(run_id, str(policy), "policy")
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"{client.get_run(run_id).info.artifact_uri}/policy", run_id=run_id)
    with pytest.raises(ChampionError, match="no champion yet"):
        resolve_champion(client, name)  # a version, but no alias
    client.set_registered_model_alias(name, "champion", mv.version)
    with pytest.raises(ChampionError, match="models/sft, which is not here"):
        resolve_champion(client, name)

    _adapter(tiny_model_dir, tmp_path / "models" / "sft", ["models/sft"])
    champion = resolve_champion(client, name)
    assert champion.version == "1" and champion.run_id == run_id
    assert champion.local_dir == Path("labels/champion/alignflow-policy/1")
    chain = json.loads((champion.local_dir / "alignflow_model.json").read_text())
    assert chain["adapters"] == ["models/sft", str(champion.local_dir)]  # not the project's models/policy
    assert chain["logged_adapters"] == ["models/sft", "models/policy"]
    stamp = (champion.local_dir / "adapter_model.safetensors").stat().st_mtime_ns
    assert resolve_champion(client, name).local_dir == champion.local_dir
    assert (champion.local_dir / "adapter_model.safetensors").stat().st_mtime_ns == stamp  # cached, not re-downloaded

    params = label_params(tmp_path)
    model, tokenizer, version = load_champion(params)
    assert version == "alignflow-policy/1" and tokenizer.pad_token != tokenizer.eos_token
    store = LabelStore(params.label.db)
    ann = sign_in(create_app(params, store), store.add_labeller("ann"))
    send(ann, "hello world")
    assert [fb.model_version for fb in store.feedback_rows()] == ["alignflow-policy/1"]


def test_no_champion_is_a_clear_page(tmp_path, monkeypatch):
    monkeypatch.delenv("ALIGNFLOW_LABEL_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    copy_migrated_mlflow_db(tmp_path)
    params = label_params(tmp_path)
    store = LabelStore(params.label.db)
    ann = sign_in(create_app(params, store), store.add_labeller("ann"))
    csrf = field(ann.get("/chat").text, "csrf")
    r = ann.post("/chat", data={"csrf": csrf, "message": "hello"}, follow_redirects=False)
    assert r.status_code == 503 and "no champion yet" in r.text and "alignflow run" in r.text
    assert store.feedback_rows() == []


def test_chat_in_a_browser(setup, tmp_path):
    """Headless Chromium: from the labelling page to the chat, send, 👍, follow up; no script errors."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import chromium
    from tests.test_labeling_browser import serve

    params, store, tokens, app = setup
    with serve(app) as base, chromium() as driver:
        wait = WebDriverWait(driver, 15)
        driver.get(base + "/")
        driver.find_element(By.ID, "token").send_keys(tokens["ann"])
        driver.find_element(By.ID, "sign-in").click()
        wait.until(EC.presence_of_element_located((By.ID, "nav-chat"))).click()
        wait.until(EC.presence_of_element_located((By.ID, "chat-form")))
        driver.find_element(By.ID, "message").send_keys("hello world")
        driver.find_element(By.ID, "send").click()
        wait.until(EC.presence_of_element_located((By.ID, "thumbs-up"))).click()
        assert "👍" in wait.until(EC.presence_of_element_located((By.ID, "voted"))).text
        driver.save_screenshot(str(tmp_path / "chat.png"))
        driver.find_element(By.ID, "message").send_keys("why")
        driver.find_element(By.ID, "send").click()
        wait.until(EC.presence_of_element_located((By.ID, "thumbs-down"))).click()
        wait.until(EC.presence_of_element_located((By.ID, "voted")))
        logs = driver.get_log("browser")
        assert not [e for e in logs if e["level"] == "SEVERE"], logs
    assert [fb.up for fb in store.feedback_rows()] == [True, False]
    assert len(store.feedback_rows()[1].conversation) == 3
    assert (tmp_path / "chat.png").stat().st_size > 1000


def test_cli_export_writes_the_feedback_file(tmp_path, monkeypatch, capsys):
    import yaml

    from alignflow.cli import build_parser

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"paths": {"base_model": "no-model"}}))
    monkeypatch.chdir(tmp_path)
    store = LabelStore("labels/labels.sqlite")
    store.add_labeller("ann")
    store.give_feedback("ann", store.add_response("ann", HELLO, "hi", "m/1"), True)
    args = build_parser().parse_args(["label", "export"])
    assert args.fn(args) == 0
    out = capsys.readouterr().out
    assert "wrote data/human/feedback.jsonl (1 rated replies)" in out and '"feedback/up": 1.0' in out
    assert json.loads((tmp_path / "data/human/feedback.jsonl").read_text())["label"] is True
