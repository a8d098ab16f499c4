"""Malformed requests against the real labelling server (uvicorn on loopback, raw sockets): each gets its 4xx with a
one-line plain-text reason, nothing is logged as a server error, no label is written, and signing in and labelling
still work afterwards."""

from __future__ import annotations

import logging
import re
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from alignflow.labeling import server
from alignflow.labeling.queue import import_queue
from alignflow.labeling.server import MAX_FIELDS, MAX_HEADER_BYTES, MAX_URL_BYTES, create_app
from alignflow.labeling.store import LabelStore
from tests.test_labeling_api import field
from tests.test_labeling_browser import serve
from tests.test_labeling_store import label_params, write_preferences

ROUTES = {"/": "GET", "/healthz": "GET", "/login": "POST", "/logout": "POST", "/label": "GET, POST",
          "/chat": "GET, POST", "/feedback": "POST"}
FORM = "application/x-www-form-urlencoded"


def http(port: int, head: str, body: bytes = b"", *, raw: bytes | None = None, close: bool = False,
         pause: float = 0.0) -> tuple[int, dict[str, str], str] | None:
    """Send one request (`head` up to its blank line, or `raw` bytes as they are) on a fresh connection and read
    the answer to the end; `close` hangs up right after sending (returns None); `pause` waits before reading."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw if raw is not None else head.encode("latin-1") + b"\r\n" + body)
        if close:
            return None
        time.sleep(pause)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    lines, _, text = rest.partition(b"\r\n\r\n")
    headers = dict(line.decode("latin-1").split(": ", 1) for line in lines.split(b"\r\n"))
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, text.decode("utf-8", "replace")


def post(port: int, path: str, body: bytes | str, *, cookie: str = "", content_type: str = FORM,
         length: str | None = None, extra: str = "") -> tuple[int, dict[str, str], str]:
    body = body.encode("latin-1") if isinstance(body, str) else body
    head = (f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n{extra}")
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    return http(port, head, body)


def get(port: int, target: str, extra: str = "", method: str = "GET") -> tuple[int, dict[str, str], str]:
    return http(port, f"{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}")


class Errors(logging.Handler):
    """Collects what uvicorn logs at ERROR: a 500's traceback lands here."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def running(tmp_path, monkeypatch):
    """The real app on a free loopback port; yields (port, store, tokens, errors logged)."""
    monkeypatch.delenv("ALIGNFLOW_LABEL_SECRET", raising=False)
    monkeypatch.setattr(server, "BODY_TIMEOUT_S", 0.5)
    params = label_params(tmp_path, overlap=2, queue="all")
    store = LabelStore(params.label.db)
    import_queue(store, write_preferences(tmp_path / "prefs"), queue="all")
    tokens = {name: store.add_labeller(name) for name in ("ann", "bob")}
    errors, logger = Errors(), logging.getLogger("uvicorn.error")
    with serve(create_app(params, store)) as base:
        logger.addHandler(errors)  # after uvicorn's dictConfig, which drops the logger's handlers
        try:
            yield urlsplit(base).port, store, tokens, errors
        finally:
            logger.removeHandler(errors)


def sign_in(base: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=5)
    csrf = field(client.get("/").text, "csrf")
    r = client.post("/login", data={"token": token, "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/label", r.text
    return client


def label_one(client: httpx.Client) -> str:
    page = client.get("/label").text
    nonce = field(page, "nonce")
    r = client.post("/label", data={"csrf": field(page, "csrf"), "nonce": nonce, "choice": "first"})
    assert r.status_code == 303, r.text
    return nonce


def fields(n: int, **named: str) -> str:
    return "&".join([f"{k}={v}" for k, v in named.items()] + [f"f{i}=x" for i in range(n)])


def test_malformed_requests_get_4xx_and_the_server_keeps_serving(running):
    port, store, tokens, errors = running
    base = f"http://127.0.0.1:{port}"
    ann = sign_in(base, tokens["ann"])
    first = label_one(ann)
    session = f"af_session={ann.cookies['af_session']}"
    csrf = field(ann.get("/label").text, "csrf")
    login = httpx.get(base + "/")  # an anonymous sign-in form: its double-submit cookie and CSRF field
    login_cookie, login_csrf = f"af_login={login.cookies['af_login']}", field(login.text, "csrf")
    too_many = MAX_FIELDS + 1

    expected: list[tuple[str, tuple[int, dict[str, str], str], int, str]] = [
        # (what, answer, status, words in the reason)
        ("17 fields on /login, signed out", post(port, "/login", fields(too_many)), 400, "form fields"),
        ("1000 fields on /login", post(port, "/login", fields(1000)), 400, "form fields"),
        ("17 fields with a valid sign-in CSRF", post(port, "/login", fields(too_many, csrf=login_csrf),
                                                     cookie=login_cookie), 400, "form fields"),
        ("17 fields on /label, signed in", post(port, "/label", fields(too_many, csrf=csrf), cookie=session), 400,
         "form fields"),
        ("17 fields on /chat", post(port, "/chat", fields(too_many, csrf=csrf), cookie=session), 400, "form fields"),
        ("17 fields on /feedback", post(port, "/feedback", fields(too_many, csrf=csrf), cookie=session), 400,
         "form fields"),
        ("17 fields on /logout", post(port, "/logout", fields(too_many, csrf=csrf), cookie=session), 400,
         "form fields"),
        ("%ff%fe: not UTF-8", post(port, "/login", "token=%ff%fe&csrf=x"), 400, "UTF-8"),
        ("raw bytes, not UTF-8", post(port, "/label", b"csrf=" + csrf.encode() + b"&comment=\xff\xc3",
                                      cookie=session), 400, "UTF-8"),
        ("a bad percent-escape", post(port, "/login", "token=%zz&csrf=%4"), 400, "percent-encoding"),
        ("a bad escape, signed in", post(port, "/label", f"csrf={csrf}&comment=100%", cookie=session), 400,
         "percent-encoding"),
        ("a non-ASCII sign-in CSRF", post(port, "/login", "token=x&csrf=%C3%A9", cookie=login_cookie), 403,
         "expired"),
        ("a non-ASCII label CSRF", post(port, "/label", "csrf=%E2%9C%93&choice=first", cookie=session), 403,
         "CSRF"),
        ("bad JSON on /login", post(port, "/login", "{not json", content_type="application/json"), 415,
         "sign-in form"),
        ("bad JSON on /label", post(port, "/label", '{"csrf": ', content_type="application/json", cookie=session),
         415, "label form"),
        ("text/plain on /feedback", post(port, "/feedback", "vote=up", content_type="text/plain", cookie=session),
         415, "feedback form"),
        ("a garbage session cookie", post(port, "/label", "csrf=x", cookie="af_session=\x7f%%..\"zz"), 401,
         "Sign in"),
        ("Content-Length beyond the limit", post(port, "/login", "", length="1000000000"), 413, "too large"),
        ("no Content-Length on a POST", http(port, "POST /login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                                                   f"Content-Type: {FORM}\r\n"), 411, "Content-Length"),
        ("Content-Length -1", post(port, "/login", "", length="-1"), 400, ""),
        ("Content-Length abc", post(port, "/login", "", length="abc"), 400, ""),
        ("two Content-Lengths", post(port, "/login", "a=b", extra="Content-Length: 7\r\n"), 400, ""),
        ("a bad chunk size", post(port, "/login", b"zz\r\nab\r\n0\r\n\r\n", length="",
                                  extra="Transfer-Encoding: chunked\r\n"), 400, ""),
        ("a URL over the limit", get(port, "/label?x=" + "a" * MAX_URL_BYTES), 414, "URL"),
        ("headers over the limit", get(port, "/", "".join(f"X-Pad-{i}: {'p' * 2000}\r\n"
                                                          for i in range(MAX_HEADER_BYTES // 2000 + 1))), 431,
         "headers"),
        ("no Host header", http(port, "GET / HTTP/1.1\r\nConnection: close\r\n"), 400, ""),
        ("a garbage request line", http(port, "", raw=b"HELLO\r\n\r\n"), 400, ""),
        ("a non-ASCII target", http(port, "", raw=b"GET /\xff\xfe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
         400, ""),
        ("an unknown path", get(port, "/admin"), 404, "Not Found"),
        ("a stalled body (408)", http(port, "POST /login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                                            f"Content-Type: {FORM}\r\nContent-Length: 100\r\n", b"token=abc",
                                      pause=1.0), 408, "timed out"),
    ]
    for path, allowed in ROUTES.items():
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FROB"):
            expected.append((f"{method} {path}", get(port, path, method=method), 405, "Method Not Allowed"))
        for method in {"GET", "POST"} - set(allowed.split(", ")):
            if method == "POST":
                answer = post(port, path, "a=b", cookie=session)
            else:
                answer = get(port, path, f"Cookie: {session}\r\n")
            expected.append((f"{method} {path}", answer, 405, "Method Not Allowed"))

    wrong = [(what, answer[0], answer[2][:80]) for what, answer, status, _ in expected if answer[0] != status]
    assert not wrong, wrong
    for what, (status, headers, text), _, words in expected:
        assert headers.get("content-type", "").startswith(("text/plain", "text/html")), what
        assert words in text and "Traceback" not in text and len(text) < 10_000, (what, text[:200])
        if status == 405:
            assert headers["allow"] == ROUTES[what.split()[1]], (what, headers)  # both of /label's methods
        if headers.get("content-type", "").startswith("text/plain"):
            assert "\n" not in text.strip(), (what, text)  # one line

    # a huge header beyond h11's own head limit: uvicorn's 400 (431 if the parser let it through)
    assert get(port, "/", f"X-Big: {'b' * 70_000}\r\n")[0] in (400, 431)
    # truncated bodies: the client hangs up mid-body, on /login and on /label
    assert http(port, f"POST /login HTTP/1.1\r\nHost: t\r\nContent-Type: {FORM}\r\nContent-Length: 500\r\n",
                b"token=abc&csrf=", close=True) is None
    assert http(port, f"POST /label HTTP/1.1\r\nHost: t\r\nContent-Type: {FORM}\r\nContent-Length: 500\r\n"
                      f"Cookie: {session}\r\n", f"csrf={csrf}&nonce={first}".encode(), close=True) is None
    time.sleep(0.3)  # let the server notice the hang-ups

    assert not [r.getMessage() for r in errors.records]  # no 500, no traceback logged
    assert [lab.nonce for lab in store.labels()] == [first]  # nothing written by the corpus
    assert httpx.get(base + "/healthz").json() == {"ok": True}
    bob = sign_in(base, tokens["bob"])
    second, third = label_one(bob), label_one(ann)
    assert sorted(lab.nonce for lab in store.labels()) == sorted([first, second, third])
    assert re.search(r"2 labelled", ann.get("/label").text)
