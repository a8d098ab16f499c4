"""End to end in a real headless Chromium: uvicorn on a free loopback port, two labellers sign in and label with
clicks and keys 1-4, the pair whose completion is a <script> shows it as text and runs nothing, then the export."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from alignflow.labeling.export import export
from alignflow.labeling.queue import import_queue
from alignflow.labeling.server import create_app
from alignflow.labeling.store import LabelStore
from tests.browser import chromium
from tests.test_labeling_store import XSS, label_params, write_preferences


@contextmanager
def serve(app) -> Iterator[str]:
    """uvicorn in a background thread on 127.0.0.1 and a free port; yields the base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_label_in_a_browser(tmp_path, monkeypatch):
    from selenium.common.exceptions import NoAlertPresentException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.delenv("ALIGNFLOW_LABEL_SECRET", raising=False)
    params = label_params(tmp_path, overlap=2, queue="all")
    store = LabelStore(params.label.db)
    import_queue(store, write_preferences(tmp_path / "prefs", xss=True), queue="all")
    tokens = {name: store.add_labeller(name) for name in ("ann", "bob")}

    with serve(create_app(params, store)) as base, chromium() as driver:
        wait = WebDriverWait(driver, 10)

        def sign_in(name: str) -> None:
            driver.get(base + "/")
            driver.find_element(By.ID, "token").send_keys(tokens[name])
            driver.find_element(By.ID, "sign-in").click()
            wait.until(EC.presence_of_element_located((By.ID, "label-form")))

        def act(do) -> None:
            """Do something that submits the form; wait for the next page."""
            form = driver.find_element(By.ID, "label-form")
            do()
            wait.until(EC.staleness_of(form))
            wait.until(EC.presence_of_element_located((By.ID, "progress")))

        def press(key: str) -> None:
            for attempt in range(3):
                try:
                    act(lambda: driver.find_element(By.TAG_NAME, "body").send_keys(key))
                    return
                except WebDriverException as exc:
                    # Chromium under load can hand back the previous document's <body> right after a navigation
                    # ("Node with given id does not belong to the document"): the key never arrived, so send it
                    # again; the progress counts asserted below catch a key that counted twice.
                    if attempt == 2 or "does not belong to the document" not in str(exc):
                        raise
                    wait.until(EC.presence_of_element_located((By.ID, "label-form")))

        def click(button: str) -> None:
            act(lambda: driver.find_element(By.ID, button).click())

        sign_in("ann")
        # queue: all — the first pair has the <script> completion: shown as text, never run
        shown = driver.find_element(By.ID, "response-a").text + driver.find_element(By.ID, "response-b").text
        assert XSS in shown
        assert driver.execute_script("return typeof window.__xss") == "undefined"
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018 - the property access is the check
        assert driver.find_element(By.ID, "progress").text == "0 labelled · 7 left in the queue"
        driver.save_screenshot(str(tmp_path / "label.png"))
        # keys typed into the comment box are text, not choices
        driver.find_element(By.ID, "comment").send_keys("1 2 3 4 <b>odd</b> pair")
        click("choose-a")
        press("2")
        press("3")
        press("4")
        click("choose-b")
        assert driver.find_element(By.ID, "progress").text == "4 labelled · 2 left in the queue"
        driver.find_element(By.CSS_SELECTOR, "header button").click()  # sign out
        wait.until(EC.presence_of_element_located((By.ID, "token")))

        sign_in("bob")
        press("1")
        press("1")
        assert driver.find_element(By.ID, "progress").text == "2 labelled · 5 left in the queue"
        logs = driver.get_log("browser")
        assert not [e for e in logs if e["level"] == "SEVERE"], logs

    assert (tmp_path / "label.png").stat().st_size > 1000
    ann = {lab.pair_id: lab for lab in store.labels() if lab.labeller == "ann"}
    ordered = [ann[pid] for pid in store.pairs() if pid in ann]  # queue: all — labelled in import order
    expected_shown = ["first", "second", "tie", "skip", "second"]
    for lab, sel in zip(ordered, expected_shown, strict=True):
        original = {"first": "b" if lab.swapped else "a", "second": "a" if lab.swapped else "b"}.get(sel, sel)
        assert lab.choice == original, (lab, sel)
    assert ordered[0].comment == "1 2 3 4 <b>odd</b> pair"

    metrics = export(store, params.label.export)
    rows = [json.loads(line) for line in Path(params.label.export).read_text().splitlines()]
    assert sorted(r["labeller"] for r in rows) == ["ann"] * 4 + ["bob"] * 2
    assert {r["label"] for r in rows if r["labeller"] == "ann"} == {1.0, 0.5}
    xss_row = next(r for r in rows if r["labeller"] == "ann" and XSS in (r["chosen"][0]["content"],
                                                                           r["rejected"][0]["content"]))
    assert xss_row["source"] == "human" and xss_row["prompt"][0]["content"].startswith("Continue")
    assert metrics["human/labels"] == 6 and metrics["human/labellers"] == 2
