"""The labelling page's HTTP API through FastAPI's TestClient: sign-in, CSRF, sessions, body limit, escaping,
queue rules, idempotent re-submits, concurrent labellers, export."""

from __future__ import annotations

import html
import re
import threading

import markupsafe
import pytest
from fastapi.testclient import TestClient

from alignflow.labeling.export import export, export_rows
from alignflow.labeling.queue import import_queue
from alignflow.labeling.server import create_app
from alignflow.labeling.store import LabelStore
from tests.test_labeling_store import XSS, label_params, write_preferences

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.delenv("ALIGNFLOW_LABEL_SECRET", raising=False)
    params = label_params(tmp_path, overlap=2, queue="all")
    store = LabelStore(params.label.db)
    import_queue(store, write_preferences(tmp_path / "prefs", xss=True), queue="all")
    tokens = {name: store.add_labeller(name) for name in ("ann", "bob", "cy")}
    return params, store, tokens


def field(page: str, name: str) -> str:
    return html.unescape(re.search(rf'name="{name}" value="([^"]*)"', page).group(1))


def sign_in(app, token: str) -> TestClient:
    client = TestClient(app)
    csrf = field(client.get("/").text, "csrf")
    r = client.post("/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/label", r.text
    return client


def label(client: TestClient, choice: str = "first", comment: str = "") -> str | None:
    """Label the pair on the page; returns its nonce (None when nothing is left)."""
    page = client.get("/label").text
    if 'name="nonce"' not in page:
        return None
    nonce = field(page, "nonce")
    r = client.post("/label", data={"csrf": field(page, "csrf"), "nonce": nonce, "choice": choice,
                                    "comment": comment}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return nonce


def test_sign_in(setup):
    params, store, tokens = setup
    app = create_app(params, store)
    client = TestClient(app)
    assert client.get("/healthz").json() == {"ok": True}
    page = client.get("/")
    assert page.status_code == 200 and 'name="token"' in page.text
    csrf = field(page.text, "csrf")
    bad = client.post("/login", data={"token": "nope", "csrf": csrf}, follow_redirects=False)
    assert bad.status_code == 401 and "unknown token" in bad.text and "af_session" not in client.cookies
    no_csrf = client.post("/login", data={"token": tokens["ann"]}, follow_redirects=False)
    assert no_csrf.status_code == 403 and "af_session" not in client.cookies
    csrf = field(client.get("/").text, "csrf")
    ok = client.post("/login", data={"token": tokens["ann"], "csrf": csrf}, follow_redirects=False)
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"].lower()
    assert "af_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert tokens["ann"] not in ok.headers["set-cookie"]  # the token never travels back
    assert client.get("/", follow_redirects=False).headers["location"] == "/label"
    assert ">ann <button" in client.get("/label").text


def test_no_session_no_write(setup):
    params, store, tokens = setup
    app = create_app(params, store)
    anon = TestClient(app)
    assert anon.get("/label", follow_redirects=False).headers["location"] == "/"
    ann = sign_in(app, tokens["ann"])
    page = ann.get("/label").text
    form = {"csrf": field(page, "csrf"), "nonce": field(page, "nonce"), "choice": "first"}
    assert anon.post("/label", data=form, follow_redirects=False).status_code == 401
    anon.cookies.set("af_session", ann.cookies["af_session"][:-3] + "xyz")  # tampered signature
    assert anon.post("/label", data=form, follow_redirects=False).status_code == 401
    assert store.labels() == []


def test_csrf_and_content_type(setup):
    params, store, tokens = setup
    ann = sign_in(create_app(params, store), tokens["ann"])
    page = ann.get("/label").text
    form = {"nonce": field(page, "nonce"), "choice": "first"}
    assert ann.post("/label", data=form, follow_redirects=False).status_code == 403
    assert ann.post("/label", data=form | {"csrf": "guess"}, follow_redirects=False).status_code == 403
    bob = sign_in(create_app(params, store), tokens["bob"])
    bobs = field(bob.get("/label").text, "csrf")
    assert ann.post("/label", data=form | {"csrf": bobs}, follow_redirects=False).status_code == 403
    r = ann.post("/label", json=form | {"csrf": field(page, "csrf")}, follow_redirects=False)
    assert r.status_code == 415
    assert ann.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert store.labels() == []


def test_body_limit(setup):
    params, store, tokens = setup
    ann = sign_in(create_app(params, store), tokens["ann"])
    page = ann.get("/label").text
    form = {"csrf": field(page, "csrf"), "nonce": field(page, "nonce"), "choice": "first"}
    big = ann.post("/label", data=form | {"comment": "x" * params.label.max_body_bytes}, follow_redirects=False)
    assert big.status_code == 413
    chunks = iter([b"csrf=x&comment=", b"y" * params.label.max_body_bytes, b"z"])  # chunked: no Content-Length
    assert ann.post("/label", content=chunks, headers=FORM, follow_redirects=False).status_code == 413
    assert store.labels() == []
    assert ann.post("/label", data=form | {"comment": "fine"}, follow_redirects=False).status_code == 303


def test_escaping_and_security_headers(setup):
    params, store, tokens = setup
    ann = sign_in(create_app(params, store), tokens["ann"])
    page = ann.get("/label")  # queue: all — train-0000, whose b is the script, comes first
    assert "<script>window.__xss" not in page.text and "<b>bold</b>" not in page.text
    assert str(markupsafe.escape(XSS)) in page.text  # &lt;script&gt;…: shown as text
    assert page.text.count("<script") == 1  # only the page's own keyboard script
    csp = page.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'<script nonce="{nonce}">' in page.text and "default-src 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    nonce = label(ann, "second", comment="<script>alert(1)</script>")
    assert store.labels()[0].comment == "<script>alert(1)</script>"  # stored as typed, shown only escaped


def test_idempotent_resubmit_and_progress(setup):
    params, store, tokens = setup
    ann = sign_in(create_app(params, store), tokens["ann"])
    page = ann.get("/label").text
    assert "0 labelled · 7 left in the queue" in page
    form = {"csrf": field(page, "csrf"), "nonce": field(page, "nonce"), "choice": "first", "comment": "one"}
    for choice in ("first", "second"):  # a double click, then a resend with another choice
        assert ann.post("/label", data=form | {"choice": choice}, follow_redirects=False).status_code == 303
    labels = store.labels()
    assert len(labels) == 1 and labels[0].comment == "one"
    assert labels[0].choice == ("b" if labels[0].swapped else "a")
    assert "1 labelled · 6 left in the queue" in ann.get("/label").text
    label(ann, "skip")
    assert "1 labelled · 5 left in the queue" in ann.get("/label").text
    bob = sign_in(create_app(params, store), tokens["bob"])
    stolen = bob.post("/label", data=form | {"csrf": field(bob.get("/label").text, "csrf")}, follow_redirects=False)
    assert stolen.status_code == 409 and len(store.labels()) == 2  # ann's nonce is not bob's


def test_queue_rules_and_export(setup):
    """overlap 2, three labellers: ann and bob get every pair once, cy nothing; the export has their rows and κ."""
    params, store, tokens = setup
    app = create_app(params, store)
    shown = {}
    for name, choice in (("ann", "first"), ("bob", "first"), ("cy", "first")):
        client = sign_in(app, tokens[name])
        nonces = []
        while (nonce := label(client, choice)) is not None:
            nonces.append(nonce)
        shown[name] = nonces
        assert "Nothing left to label" in client.get("/label").text
    assert len(shown["ann"]) == len(shown["bob"]) == 7 and shown["cy"] == []
    pairs_of = {name: [lab.pair_id for lab in store.labels() if lab.labeller == name] for name in ("ann", "bob")}
    assert all(len(set(p)) == len(p) == 7 for p in pairs_of.values())
    metrics = export(store, params.label.export)
    rows = export_rows(store)
    assert len(rows) == 14 and {r["labeller"] for r in rows} == {"ann", "bob"}
    assert metrics["human/labels"] == 14 and metrics["human/pairs"] == 7 and "human/fleiss_kappa" in metrics
    assert metrics["human/cohen_kappa_rater_pairs"] == 1


def test_two_labellers_at_once_through_the_api(setup):
    params, store, tokens = setup
    app = create_app(params, store)
    clients = {name: sign_in(app, tokens[name]) for name in ("ann", "bob")}
    start, errors, done = threading.Barrier(2), [], {"ann": 0, "bob": 0}

    def work(name: str) -> None:
        try:
            start.wait()
            while label(clients[name], "second") is not None:
                done[name] += 1
        except Exception as exc:  # noqa: BLE001 - reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and done == {"ann": 7, "bob": 7}
    keys = [(lab.pair_id, lab.labeller) for lab in store.labels()]
    assert len(keys) == len(set(keys)) == 14


def test_cli(tmp_path, monkeypatch, capsys):
    """`alignflow label import|add-labeller|export` from a project root (params.yaml there)."""
    import yaml

    from alignflow.cli import build_parser

    write_preferences(tmp_path / "data/preferences")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"paths": {"base_model": "no-model"}}))
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> int:
        args = build_parser().parse_args(["label", *argv])
        return args.fn(args)

    assert run("import") == 0 and '"new": 7' in capsys.readouterr().out
    assert run("import") == 0 and '"new": 0' in capsys.readouterr().out
    assert run("add-labeller", "ann") == 0
    token = capsys.readouterr().out.strip().rsplit(" ", 1)[1]
    assert LabelStore("labels/labels.sqlite").authenticate(token) == "ann"
    assert run("add-labeller", "ann") == 2
    assert run("export") == 0 and "wrote data/human/labels.jsonl (0 labels)" in capsys.readouterr().out
    assert (tmp_path / "data/human/labels.jsonl").read_text() == ""
