"""The OpenAI-compatible judge against a real HTTP server on loopback that speaks chat completions.

The fake server decides from the request: in "content" mode it prefers the option containing the word "good",
in "position" mode always option (A), in "longer" mode the longer option. It answers "(A)"/"(B)" as three tokens with log-probs p = 0.8 for its
choice, so every soft label below is exact arithmetic. A per-request script injects failures (an int is an
HTTP status whose body echoes the Authorization header back, a float is seconds to stall before answering).
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.common.constitution import load_constitution
from tasks.common.params import JudgeParams
from tasks.judges.base import Query
from tasks.judges.cache import JudgmentCache
from tasks.judges.openai_http import JudgeError, OpenAIJudge
from tasks.judges.prompting import REASONED

CONSTITUTION = load_constitution(Path(__file__).parents[1] / "data" / "constitution.yaml")
PRINCIPLE = CONSTITUTION.get("positivity")
PROMPT = [{"role": "user", "content": "Continue this movie review:\n\nI watched it last night and"}]
GOOD, BAD = "it was good fun from start to end.", "it was dull and far too long."
P = 0.8  # the fake server's probability for the letter it picks
SECRET = "sk-test-0123456789abcdef"
KEY_ENV = "ALIGNFLOW_TEST_JUDGE_KEY"


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode="content", logprobs=True, text=None, script=(), default=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode, self.logprobs, self.text = mode, logprobs, text
        self.script, self.default = list(script), default  # per-request steps; `default` once the script is used up
        self.requests, self.auth = [], []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply(self, body: dict) -> dict:
        first, second = re.search(r"\(A\) (.*)\n\(B\) (.*)\n", body["messages"][-1]["content"]).groups()
        if self.mode == "longer":  # prefers the longer option; equal lengths fall to (B) in both orders = a tie
            letter = "A" if len(first) > len(second) else "B"
        else:
            letter = "A" if self.mode == "position" or "good" in first else "B"
        other = "B" if letter == "A" else "A"
        text = f"({letter})"
        if self.text is not None:
            text = self.text
        elif body["max_tokens"] > 5:  # reasoning first: it names the losing option before the final answer
            text = f"Option ({other}) is less positive about the film. The better response is ({letter})."
        tokens = re.findall(r"\(|\)|[^()]+", text)
        content = [{"token": t, "logprob": 0.0, "top_logprobs": _top(t)} for t in tokens]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": {"content": content} if self.logprobs else None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103},
        }


def _top(token: str) -> list[dict]:
    if token not in ("A", "B"):
        return [{"token": token, "logprob": 0.0}]
    other = "B" if token == "A" else "A"
    return [{"token": token, "logprob": math.log(P)}, {"token": other, "logprob": math.log(1 - P)}]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests.append(body)
            srv.auth.append(self.headers.get("Authorization"))
            step = srv.script.pop(0) if srv.script else srv.default
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            if isinstance(step, int):
                echo = {"error": {"message": f"status {step}; you sent Authorization: {self.headers.get('Authorization')}"}}
                self._send(step, echo, {"Retry-After": "0"} if step == 429 else {})
            else:
                time.sleep(step or 0.0)
                self._send(200, srv.reply(body))
        except OSError:
            pass  # the client timed out and hung up
        finally:
            with srv.lock:
                srv.inflight -= 1

    def _send(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers, judges = [], []

    def start(**kw) -> FakeOpenAI:
        srv = FakeOpenAI(**kw)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return srv

    start.judges = judges
    yield start
    for j in judges:
        j.close()
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def make(serve, url, cache=None, **kw) -> OpenAIJudge:
    cfg = JudgeParams(**{"kind": "openai", "few_shot": True, "model": "fake-judge", "base_url": url, "api_key_env": KEY_ENV,
                         "max_retries": 3, "backoff_s": 0.01, "timeout_s": 5.0, **kw})
    judge = OpenAIJudge(cfg, CONSTITUTION, cache)
    serve.judges.append(judge)
    return judge


def one(serve, srv, **kw) -> list:
    return make(serve, srv.url, **kw).score([Query(PROMPT, GOOD, BAD, PRINCIPLE)])


def test_position_bias_averages_out_over_both_orders(serve):
    srv = serve(mode="position")
    judge = make(serve, srv.url)
    [r] = judge.pairwise_many([(PROMPT, GOOD, BAD, PRINCIPLE)])
    # p_AB = p_BA = 0.8 → p(a) = (0.8 + 1 − 0.8) / 2 = 0.5; disagreement |0.8 − 0.2| = 0.6; the winner flips
    assert (r.p_ab, r.p_ba, r.p_a, r.disagreement) == pytest.approx((0.8, 0.8, 0.5, 0.6))
    assert r.position_flip and r.principle == "positivity" and r.judge == judge.identity
    assert r.tokens == 2 * 103 and judge.stats.calls == 2 and len(srv.requests) == 2
    body = srv.requests[0]
    assert body["model"] == "fake-judge" and body["temperature"] == 0 and body["max_tokens"] == 5
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert len(body["messages"]) == 1 + 2 * len(CONSTITUTION.few_shot) + 1  # system, few-shot turns, question
    assert PRINCIPLE.comparison in body["messages"][-1]["content"]
    assert srv.auth == [None, None]  # no key in the environment: no Authorization header


def test_content_judge_prefers_good_option_in_both_orders(serve):
    srv = serve(mode="content")
    judge = make(serve, srv.url, few_shot=False)
    good_first, good_second = judge.pairwise_many([(PROMPT, GOOD, BAD, PRINCIPLE), (PROMPT, BAD, GOOD, PRINCIPLE)])
    # a first: p_AB = 0.8; b first: p_BA = 0.2 → p(a) = (0.8 + 0.8) / 2 = 0.8, the orders agree
    assert (good_first.p_ab, good_first.p_ba, good_first.p_a, good_first.disagreement) == pytest.approx((0.8, 0.2, 0.8, 0.0))
    assert good_second.p_a == pytest.approx(0.2)
    assert not good_first.position_flip and not good_second.position_flip
    assert len(srv.requests[0]["messages"]) == 2  # few_shot off: system + question


def test_second_judge_reads_every_answer_from_the_cache(serve, tmp_path):
    srv = serve()
    other = "it was long."
    items = [(PROMPT, GOOD, BAD, PRINCIPLE), (PROMPT, GOOD, other, PRINCIPLE), (PROMPT, GOOD, BAD, CONSTITUTION.get("praise"))]
    first = make(serve, srv.url + "/", JudgmentCache(tmp_path / "c.sqlite")).pairwise_many(items)
    assert len(srv.requests) == 6
    items.append((PROMPT, BAD, GOOD, PRINCIPLE))  # the first pair reversed: the same two questions
    again = make(serve, srv.url, JudgmentCache(tmp_path / "c.sqlite"))  # a new process; "/v1/" == "/v1"
    second = again.pairwise_many(items)
    assert len(srv.requests) == 6 and again.stats.calls == 0 and again.stats.cached == 8
    assert all(r.cached == 2 for r in second)
    assert [{**r.to_dict(), "cached": 0} for r in second[:3]] == [{**r.to_dict(), "cached": 0} for r in first]
    assert second[3].p_a == pytest.approx(1 - first[0].p_a)
    make(serve, srv.url, JudgmentCache(tmp_path / "c.sqlite"), chain_of_thought=True).pairwise_many(items[:1])
    assert len(srv.requests) == 8  # another setting is another question


def test_transient_failures_are_retried(serve):
    srv = serve(script=[429, 500])
    judge = make(serve, srv.url, max_concurrency=1)
    [v] = judge.score([Query(PROMPT, GOOD, BAD, PRINCIPLE)])
    assert v.p_first == pytest.approx(0.8) and judge.retries == 2 and len(srv.requests) == 3


def test_retries_run_out_with_a_named_error(serve):
    srv = serve(default=500)
    with pytest.raises(JudgeError, match=r"/v1/chat/completions failed after 3 attempts; last: HTTP 500") as err:
        one(serve, srv, max_retries=2)
    assert len(srv.requests) == 3 and "HTTP 500" in str(err.value)


def test_client_errors_are_not_retried(serve):
    srv = serve(default=404)
    judge = make(serve, srv.url)
    with pytest.raises(JudgeError, match="HTTP 404.*not retried"):
        judge.score([Query(PROMPT, GOOD, BAD, PRINCIPLE)])
    assert len(srv.requests) == 1 and judge.retries == 0


def test_a_timeout_is_retried_and_then_exhausted(serve):
    srv = serve(script=[0.6])  # the first answer comes after 0.6 s, past the 0.2 s timeout
    judge = make(serve, srv.url, timeout_s=0.2)
    [v] = judge.score([Query(PROMPT, GOOD, BAD, PRINCIPLE)])
    assert v.p_first == pytest.approx(0.8) and judge.retries == 1 and len(srv.requests) == 2
    slow = serve(default=0.6)
    with pytest.raises(JudgeError, match="after 2 attempts; last: .*Timeout"):
        one(serve, slow, timeout_s=0.2, max_retries=1)


def test_no_server_is_a_named_error():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = JudgeParams(kind="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_s=0.01)
    judge = OpenAIJudge(cfg)
    with pytest.raises(JudgeError, match=f"127.0.0.1:{port}/v1/chat/completions failed after 2 attempts; last: ConnectError"):
        judge.score([Query(PROMPT, GOOD, BAD, PRINCIPLE)])
    judge.close()


def test_api_key_is_sent_but_never_shown(serve, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # httpx/httpcore debug logs included
    monkeypatch.setenv(KEY_ENV, SECRET)
    srv = serve()
    judge = make(serve, srv.url, JudgmentCache(tmp_path / "c.sqlite"))
    [r] = judge.pairwise_many([(PROMPT, GOOD, BAD, PRINCIPLE)])
    assert srv.auth == [f"Bearer {SECRET}"] * 2
    shown = [judge.identity, repr(judge), json.dumps(judge.settings()), json.dumps(r.to_dict())]
    shown += [p.read_bytes().decode("latin-1") for p in tmp_path.glob("c.sqlite*")]  # the db and its WAL
    errors = []
    for status, retries in ((401, 2), (500, 2)):  # the server echoes the Authorization header in its error body
        failing = serve(default=status)
        with pytest.raises(JudgeError) as err:
            one(serve, failing, max_retries=retries)
        errors.append(str(err.value))
    assert all("Bearer ***" in e for e in errors)  # the echo was there, and was redacted
    assert "retry 1/2" in caplog.text
    for text in shown + errors + [caplog.text]:
        assert SECRET not in text


def test_text_answers_without_logprobs(serve):
    srv = serve(logprobs=False)
    judge = make(serve, srv.url)
    [r] = judge.pairwise_many([(PROMPT, GOOD, BAD, PRINCIPLE)])
    assert (r.p_ab, r.p_ba, r.p_a) == (1.0, 0.0, 1.0) and judge.unparsed == 0
    vague = serve(logprobs=False, text="Both are fine, I cannot decide.")
    judge = make(serve, vague.url)
    [r] = judge.pairwise_many([(PROMPT, GOOD, BAD, PRINCIPLE)])
    assert (r.p_ab, r.p_ba, r.p_a) == (0.5, 0.5, 0.5) and judge.unparsed == 2


def test_chain_of_thought_is_parsed_kept_and_clamped(serve):
    srv = serve(logprobs=False)
    judge = make(serve, srv.url, chain_of_thought=True, cot_max_new_tokens=48)
    [r] = judge.pairwise_many([(PROMPT, GOOD, BAD, PRINCIPLE)])
    assert (r.p_ab, r.p_ba, r.p_a) == pytest.approx((0.6, 0.4, 0.6))  # 1 and 0 clamped to [0.4, 0.6]
    assert r.reasoning[0].endswith("The better response is (A).") and "(B)" in r.reasoning[1][-4:]
    body = srv.requests[0]
    assert body["max_tokens"] > 48 and body["messages"][-1]["content"].endswith(REASONED)
    # with log-probs, the final letter's (0.8) and not the losing option named in the reasoning (0.2)
    wide = serve()
    [r] = make(serve, wide.url, chain_of_thought=True, cot_clamp=(0.0, 1.0)).pairwise_many([(PROMPT, GOOD, BAD, PRINCIPLE)])
    assert (r.p_ab, r.p_ba) == pytest.approx((0.8, 0.2))


def test_concurrency_is_bounded_and_order_kept(serve):
    srv = serve(default=0.05)
    judge = make(serve, srv.url, max_concurrency=2)
    pairs = [(f"{GOOD} #{i}", f"{BAD} #{i}") for i in range(4)]  # distinct, so none is asked twice
    items = [(PROMPT, g, b, PRINCIPLE) if i % 2 == 0 else (PROMPT, b, g, PRINCIPLE) for i, (g, b) in enumerate(pairs)]
    results = judge.pairwise_many(items)
    assert len(srv.requests) == 8 and srv.max_inflight == 2
    assert [r.p_a for r in results] == pytest.approx([0.8, 0.2, 0.8, 0.2])


def test_missing_endpoint_or_credentials_in_url_are_rejected():
    with pytest.raises(ValueError, match="judge.base_url"):
        OpenAIJudge(JudgeParams(kind="openai", model="m"))
    with pytest.raises(ValueError, match="judge.model and base_url"):
        OpenAIJudge(JudgeParams(kind="openai"))
    with pytest.raises(ValueError, match="must not carry credentials") as err:
        OpenAIJudge(JudgeParams(kind="openai", model="m", base_url="https://user:hunter2@example.com/v1"))
    assert "hunter2" not in str(err.value)
