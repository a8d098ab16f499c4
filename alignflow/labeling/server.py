"""The labelling page and the live-feedback chat page: FastAPI, server-rendered Jinja2 templates and one small inline
script (keys 1-4).

/chat serves the MLflow `champion` (tasks/common/champion.py; loaded once, on the first message, so the
labelling page starts without a model) and records each reply (alignflow/labeling/store.py `feedback`); 👍 / 👎 sets its
label once. A follow-up message names the reply it continues (`parent`, a nonce of the labeller's own reply): the
conversation is rebuilt from the store, never from what the browser sends back. Restart the server to pick up a new
champion.

Security, in the order a request meets it:
- a malformed request is a 4xx with a one-line plain-text reason, never a 500: uvicorn (h11) answers 400 to what it
  cannot parse; RequestLimits refuses a URL over MAX_URL_BYTES (414), headers over MAX_HEADER_BYTES (431), a bad
  Content-Length (400), a POST without one or chunking (411) and a body above params.label.max_body_bytes (413)
  before any handler reads it; `form` turns a body that is cut short (400), stalls past BODY_TIMEOUT_S (408), has
  more than MAX_FIELDS fields, bad percent-escapes or invalid UTF-8 (400) into refusals; a wrong method is 405 with
  Allow. Each goes through the one HTTPException handler; a real bug is still a bare 500, its traceback logged by
  uvicorn and never sent;
- every write needs a valid session: a cookie signed with itsdangerous (HttpOnly, SameSite=Strict, 12 h), made by
  POST /login from a labeller's token (the store keeps only its sha256);
- every form carries a CSRF token: per session in the signed cookie (the label form), or a signed double-submit
  cookie for the sign-in form; a missing or wrong one is 403;
- prompts and model outputs are text, never markup: Jinja2 autoescape, and a Content-Security-Policy that lets only
  the page's own nonce-tagged script run, so even an escaping mistake would not execute a completion's <script>;
- the server binds to params.label.host (loopback by default).

Forms are parsed here (urlencoded, at most a few fields) rather than with FastAPI's Form(), which needs
python-multipart — not a dependency of this project.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from itsdangerous import BadData, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from alignflow.labeling.queue import next_pair, progress
from alignflow.labeling.store import LabelError, LabelStore
from tasks.common.params import Params
from tasks.common.stage import StageError

SESSION, LOGIN = "af_session", "af_login"
SESSION_S = 12 * 3600
FORM = "application/x-www-form-urlencoded"
CHAT_MAX_NEW_TOKENS = 128
CHAT_TEMPERATURE = 0.0  # greedy: the feedback is on what the champion most likely says
CHAT_MAX_MESSAGES = 7  # the new user turn and the last three exchanges before it: a bounded prompt
MAX_MESSAGE_CHARS = 2000
MAX_FIELDS = 16  # the largest form (label) has five
# Below h11's 16 KiB limit on a request head, which it enforces only on a head still arriving (uvicorn answers that
# a bare 400); a larger head that arrives at once reaches the app.
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 12 * 1024
BODY_TIMEOUT_S = 10.0  # a form is at most max_body_bytes; a client that stalls mid-body must not hold a worker
BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")  # a browser escapes a literal % as %25


class BodyTooLarge(Exception):
    pass


class RequestLimits:
    """ASGI middleware: refuse, before routing, a URL or headers too large for any page here, a missing or bad
    Content-Length, and a body over `max_bytes` (by Content-Length or, for a chunked body, counting as it is read)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if len(scope.get("raw_path", b"")) + len(scope["query_string"]) > MAX_URL_BYTES:
            return await _refuse(414, "URL too long", scope, receive, send)
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            return await _refuse(431, "request headers too large", scope, receive, send)
        if length is not None and not length.isdigit():
            return await _refuse(400, "bad Content-Length", scope, receive, send)
        if length is not None and int(length) > self.max_bytes:
            return await _refuse(413, "request body too large", scope, receive, send)
        if length is None and scope["method"] == "POST" and b"transfer-encoding" not in headers:
            return await _refuse(411, "Content-Length required", scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await _refuse(413, "request body too large", scope, receive, send)


async def _refuse(status: int, message: str, scope, receive, send):
    await PlainTextResponse(message, status_code=status)(scope, receive, send)


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two texts; compare_digest itself raises on a non-ASCII str (a 500 for `csrf=é`)."""
    return secrets.compare_digest(given.encode(), expected.encode())


class ChatModel:
    """The served model, loaded on first use; one generation at a time (a model's memory and CPU are not shared)."""

    def __init__(self, params: Params, model_dir: str | Path | None):
        self.params, self.model_dir = params, model_dir
        self.lock = threading.Lock()
        self.loaded: tuple[Any, Any, str] | None = None

    def reply(self, conversation: list[dict[str, str]]) -> tuple[str, str]:
        """(response text, model version)."""
        from tasks.common.champion import load_champion
        from tasks.common.modeling import generate

        with self.lock:
            if self.loaded is None:
                self.loaded = load_champion(self.params, self.model_dir)
            model, tokenizer, version = self.loaded
            out = generate(model, tokenizer, [conversation], max_new_tokens=CHAT_MAX_NEW_TOKENS,
                           temperature=CHAT_TEMPERATURE, batch_size=1, desc="chat")
        return out[0][0]["text"], version


def create_app(params: Params, store: LabelStore | None = None, chat_model: str | Path | None = None) -> FastAPI:
    """`chat_model`: serve this model dir on /chat instead of the MLflow champion (tests, a local model)."""
    cfg = params.label
    store = store if store is not None else LabelStore(cfg.db)
    signer = URLSafeTimedSerializer(store.secret(cfg.secret_env), salt="alignflow-label")
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
    app = FastAPI(title="alignflow label", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestLimits, max_bytes=cfg.max_body_bytes)
    app.state.store = store
    app.state.chat = ChatModel(params, chat_model)

    def page(template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(12)
        response = HTMLResponse(env.get_template(template).render(csp_nonce=nonce, **ctx), status_code=status)
        response.headers.update({
            "Content-Security-Policy": f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self' "
                                       "'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        })
        return response

    def session(request: Request) -> dict | None:
        try:
            data = signer.loads(request.cookies.get(SESSION, ""), max_age=SESSION_S)
        except BadData:
            return None
        return data if store.labeller_exists(data.get("user", "")) else None

    async def form(request: Request) -> dict[str, str] | None:
        """The urlencoded body as {field: first value}; None for another content type. Every body is read here, so
        this is where a malformed one becomes its 4xx."""
        if request.headers.get("content-type", "").split(";")[0].strip() != FORM:
            return None
        try:
            body = await asyncio.wait_for(request.body(), BODY_TIMEOUT_S)
        except TimeoutError:
            raise HTTPException(408, "request body timed out") from None
        except ClientDisconnect:  # nobody is left to read the answer; this keeps it out of the error log
            raise HTTPException(400, "request body cut short") from None
        if BAD_ESCAPE.search(body):
            raise HTTPException(400, "malformed percent-encoding in the form")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS,
                              errors="strict")
        except UnicodeDecodeError:
            raise HTTPException(400, "the form is not valid UTF-8") from None
        except ValueError:  # parse_qs: max_num_fields exceeded
            raise HTTPException(400, f"more than {MAX_FIELDS} form fields") from None
        return {k: v[0] for k, v in parsed.items()}

    async def signed_form(request: Request, what: str) -> tuple[dict, dict[str, str]] | Response:
        """The signed-in user's session and form fields, or the refusal: 401 without a session, 415 for another
        body type, 403 without the session's CSRF token. Every write endpoint goes through here."""
        s = session(request)
        if s is None:
            return page("message.html", 401, title="Not signed in", message="Sign in first.")
        fields = await form(request)
        if fields is None:
            return page("message.html", 415, title="Unsupported", message=f"send the {what} form")
        if not same(fields.get("csrf", ""), s["csrf"]):
            return page("message.html", 403, title="Forbidden", message="missing or wrong CSRF token")
        return s, fields

    def login_page(status: int = 200, error: str = "") -> HTMLResponse:
        token = secrets.token_urlsafe(18)
        response = page("login.html", status, csrf=token, error=error)
        response.set_cookie(LOGIN, signer.dumps(token, salt="login"), max_age=3600, httponly=True, samesite="strict")
        return response

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/")
    def index(request: Request) -> Response:
        return RedirectResponse("/label", 303) if session(request) else login_page()

    @app.post("/login")
    async def login(request: Request) -> Response:
        fields = await form(request)
        if fields is None:
            return login_page(415, "send the sign-in form")
        try:
            expected = signer.loads(request.cookies.get(LOGIN, ""), salt="login", max_age=3600)
        except BadData:
            expected = None
        if not expected or not same(fields.get("csrf", ""), expected):
            return login_page(403, "the form expired: sign in again")
        user = await run_in_threadpool(store.authenticate, fields.get("token", "").strip())
        if user is None:
            return login_page(401, "unknown token")
        response = RedirectResponse("/label", 303)
        response.set_cookie(SESSION, signer.dumps({"user": user, "csrf": secrets.token_urlsafe(18)}),
                            max_age=SESSION_S, httponly=True, samesite="strict")
        response.delete_cookie(LOGIN)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        s, fields = session(request), await form(request) or {}
        if s is None or not same(fields.get("csrf", ""), s["csrf"]):
            return page("message.html", 403, title="Forbidden", message="missing or wrong CSRF token")
        response = RedirectResponse("/", 303)
        response.delete_cookie(SESSION)
        return response

    @app.get("/label")
    def label_page(request: Request) -> Response:
        s = session(request)
        if s is None:
            return RedirectResponse("/", 303)
        assignment = next_pair(store, s["user"], cfg.overlap, cfg.queue)
        counts = progress(store, s["user"], cfg.overlap)
        if assignment is None:
            return page("message.html", title="All done", message=f"Nothing left to label — thank you, {s['user']}.",
                        user=s["user"], csrf=s["csrf"], progress=counts)
        first, second = assignment.shown
        return page("label.html", user=s["user"], csrf=s["csrf"], nonce=assignment.nonce,
                    prompt=assignment.pair.prompt, first=first, second=second, progress=counts)

    @app.post("/label")
    async def submit(request: Request) -> Response:
        checked = await signed_form(request, "label")
        if isinstance(checked, Response):
            return checked
        s, fields = checked
        try:
            await run_in_threadpool(store.submit, s["user"], fields.get("nonce", ""), fields.get("choice", ""),
                                    fields.get("comment", ""))
        except LabelError as exc:
            return page("message.html", 409, title="Not saved", message=str(exc), user=s["user"], csrf=s["csrf"])
        return RedirectResponse("/label", 303)

    @app.get("/chat")
    def chat_page(request: Request, at: str = "") -> Response:
        s = session(request)
        if s is None:
            return RedirectResponse("/", 303)
        fb = store.response(s["user"], at) if at else None
        if at and fb is None:
            return page("message.html", 404, title="Not found", message="unknown response", user=s["user"],
                        csrf=s["csrf"])
        return page("chat.html", user=s["user"], csrf=s["csrf"], fb=fb)

    @app.post("/chat")
    async def chat(request: Request) -> Response:
        checked = await signed_form(request, "chat")
        if isinstance(checked, Response):
            return checked
        s, fields = checked
        text = fields.get("message", "").strip()[:MAX_MESSAGE_CHARS]
        if not text:
            return RedirectResponse(f"/chat?at={quote(fields['parent'])}" if fields.get("parent") else "/chat", 303)
        history: list[dict[str, str]] = []
        if fields.get("parent"):
            parent = await run_in_threadpool(store.response, s["user"], fields["parent"])
            if parent is None:
                return page("message.html", 409, title="Not sent", message="unknown response", user=s["user"],
                            csrf=s["csrf"])
            history = parent.conversation + [{"role": "assistant", "content": parent.response}]
        conversation = (history + [{"role": "user", "content": text}])[-CHAT_MAX_MESSAGES:]
        try:
            response, version = await run_in_threadpool(app.state.chat.reply, conversation)
        except StageError as exc:  # no champion, or its chain is not here
            return page("message.html", 503, title="No model to chat with", message=str(exc), user=s["user"],
                        csrf=s["csrf"])
        nonce = await run_in_threadpool(store.add_response, s["user"], conversation, response, version)
        return RedirectResponse(f"/chat?at={nonce}", 303)

    @app.post("/feedback")
    async def feedback(request: Request) -> Response:
        checked = await signed_form(request, "feedback")
        if isinstance(checked, Response):
            return checked
        s, fields = checked
        vote = fields.get("vote", "")
        if vote not in ("up", "down"):
            return page("message.html", 400, title="Not saved", message="vote must be up or down", user=s["user"],
                        csrf=s["csrf"])
        try:
            fb = await run_in_threadpool(store.give_feedback, s["user"], fields.get("nonce", ""), vote == "up")
        except LabelError as exc:
            return page("message.html", 409, title="Not saved", message=str(exc), user=s["user"], csrf=s["csrf"])
        return RedirectResponse(f"/chat?at={fb.nonce}", 303)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> Response:
        """Every refusal (the form's, and routing's 404 and 405) as one line of plain text."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # routing names only the first route on the path; GET and POST /label are two
            headers["Allow"] = ", ".join(sorted({method for route in app.routes
                                                 if route.matches(request.scope)[0] != Match.NONE
                                                 for method in route.methods}))
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=headers)

    return app
