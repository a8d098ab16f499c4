"""SQLite store of the labelling page: labellers, pairs, assignments (what a labeller was shown, in which order) and
labels. Nothing is lost: WAL journal, a busy timeout, and one short transaction per label.

A connection per operation (not per store) so the store can be shared by the server's threads and by several
processes on the same file; SQLite serialises the writers (`BEGIN IMMEDIATE` takes the write lock up front, so a
read-then-write cannot be overtaken by another writer).

Live feedback (the chat page): each reply of the served model is a `feedback` row (the conversation the model saw,
its response, the model version) with a nonce; the labeller's thumbs up/down is set on that row once. The same vote
again is a no-op, another vote is refused: a vote is an answer, not a toggle.

Idempotence: the nonce of an assignment is the nonce of its label. Re-submitting it returns the stored label (a
double click, a resent form, a retry after a dropped connection); a labeller gets one assignment per pair, so a
second, different label for the same pair cannot be made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CHOICES = ("a", "b", "tie", "skip")  # in terms of the pair's original a/b
SHOWN = ("first", "second", "tie", "skip")  # what the page sends: the response shown first/second
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
MAX_COMMENT = 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labellers (
    name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, source_id TEXT NOT NULL, prompt TEXT NOT NULL,
    a TEXT NOT NULL, b TEXT NOT NULL, ai_p REAL, judge TEXT, source TEXT);
CREATE TABLE IF NOT EXISTS assignments (
    pair_id TEXT NOT NULL REFERENCES pairs(id), labeller TEXT NOT NULL REFERENCES labellers(name),
    swapped INTEGER NOT NULL, nonce TEXT NOT NULL UNIQUE, created TEXT NOT NULL, PRIMARY KEY (pair_id, labeller));
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY, pair_id TEXT NOT NULL REFERENCES pairs(id), labeller TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'skip')), swapped INTEGER NOT NULL,
    comment TEXT NOT NULL DEFAULT '', nonce TEXT NOT NULL UNIQUE, created TEXT NOT NULL,
    UNIQUE (pair_id, labeller));
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY, labeller TEXT NOT NULL REFERENCES labellers(name), conversation TEXT NOT NULL,
    response TEXT NOT NULL, up INTEGER CHECK (up IN (0, 1)), model_version TEXT NOT NULL,
    nonce TEXT NOT NULL UNIQUE, created TEXT NOT NULL, voted TEXT);
"""


class LabelError(ValueError):
    """A submission the store refuses (unknown nonce, another label for the same pair, a bad choice)."""


@dataclass(frozen=True)
class Pair:
    id: str
    source_id: str
    prompt: list[dict[str, str]]
    a: str
    b: str
    ai_p: float | None
    judge: str | None
    source: str | None


@dataclass(frozen=True)
class Assignment:
    """A pair as one labeller is shown it: `swapped` means b is shown first."""

    pair: Pair
    labeller: str
    swapped: bool
    nonce: str

    @property
    def shown(self) -> tuple[str, str]:
        return (self.pair.b, self.pair.a) if self.swapped else (self.pair.a, self.pair.b)


@dataclass(frozen=True)
class Label:
    pair_id: str
    labeller: str
    choice: str
    swapped: bool
    comment: str
    nonce: str
    created: str


def pair_key(source_id: str, prompt: Any, a: str, b: str) -> str:
    """The pair's id in the store: the file's id plus a content hash, because collect_preferences reuses ids
    (train-0001) across runs for new samples, and a label must never move to texts its labeller did not read."""
    digest = hashlib.sha256(json.dumps([prompt, a, b], ensure_ascii=False).encode()).hexdigest()
    return f"{source_id}-{digest[:8]}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Feedback:
    """A model reply shown on the chat page; `up` is None until the labeller votes (`voted` is then set)."""

    id: int
    labeller: str
    conversation: list[dict[str, str]]  # the messages up to and including the user turn the model answered
    response: str
    up: bool | None
    model_version: str
    nonce: str
    created: str
    voted: str | None


class LabelStore:
    def __init__(self, path: str | Path, busy_timeout_ms: int = 10_000):
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")  # a label acknowledged to the browser survives a power cut
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its first statement."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # Labellers ---------------------------------------------------------------------------------------------------

    def add_labeller(self, name: str) -> str:
        """Register `name`; returns the sign-in token, which is not stored (only its sha256)."""
        if not NAME_RE.match(name):
            raise LabelError(f"labeller name {name!r}: use 1-40 letters, digits, '.', '_' or '-'")
        token = secrets.token_urlsafe(24)
        try:
            with self.transaction() as conn:
                conn.execute("INSERT INTO labellers VALUES (?, ?, ?)", (name, hash_token(token), now()))
        except sqlite3.IntegrityError:
            raise LabelError(f"labeller {name!r} already exists") from None
        return token

    def authenticate(self, token: str) -> str | None:
        """The labeller whose token this is, or None."""
        if not token:
            return None
        with self.connect() as conn:
            row = conn.execute("SELECT name FROM labellers WHERE token_sha256 = ?", (hash_token(token),)).fetchone()
        return row["name"] if row else None

    def labeller_exists(self, name: str) -> bool:
        with self.connect() as conn:
            return conn.execute("SELECT 1 FROM labellers WHERE name = ?", (name,)).fetchone() is not None

    def labellers(self) -> list[str]:
        with self.connect() as conn:
            return [r["name"] for r in conn.execute("SELECT name FROM labellers ORDER BY name")]

    def secret(self, env_name: str) -> str:
        """The session-signing key: from the environment, else generated once and kept here (sessions survive a
        restart, and several server processes on one db agree)."""
        if os.environ.get(env_name):
            return os.environ[env_name]
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_urlsafe(32),))
            return conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()["value"]

    # Pairs -------------------------------------------------------------------------------------------------------

    def add_pairs(self, pairs: list[dict[str, Any]]) -> int:
        """Insert pairs {source_id, prompt, a, b, ai_p, judge, source} not yet here; returns how many were new."""
        added = 0
        with self.transaction() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM pairs").fetchone()[0]
            for p in pairs:
                key = pair_key(p["source_id"], p["prompt"], p["a"], p["b"])
                cur = conn.execute(
                    "INSERT OR IGNORE INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, seq + 1, p["source_id"], json.dumps(p["prompt"], ensure_ascii=False), p["a"], p["b"],
                     p.get("ai_p"), p.get("judge"), p.get("source")))
                if cur.rowcount:
                    seq += 1
                    added += 1
        return added

    def pairs(self) -> dict[str, Pair]:
        with self.connect() as conn:
            return {r["id"]: pair_from_row(r) for r in conn.execute("SELECT * FROM pairs ORDER BY seq")}

    # Labels ------------------------------------------------------------------------------------------------------

    def submit(self, labeller: str, nonce: str, shown: str, comment: str = "") -> Label:
        """Record the label of the assignment `nonce` (`shown` in SHOWN, relative to the order the labeller saw);
        re-submitting a nonce returns the label stored the first time."""
        if shown not in SHOWN:
            raise LabelError(f"choice must be one of {', '.join(SHOWN)}")
        comment = (comment or "").strip()[:MAX_COMMENT]
        with self.transaction() as conn:
            done = conn.execute("SELECT * FROM labels WHERE nonce = ?", (nonce,)).fetchone()
            if done is not None:
                if done["labeller"] != labeller:
                    raise LabelError("unknown assignment")
                return _label(done)
            a = conn.execute("SELECT * FROM assignments WHERE nonce = ? AND labeller = ?",
                             (nonce, labeller)).fetchone()
            if a is None:
                raise LabelError("unknown assignment")
            if conn.execute("SELECT 1 FROM labels WHERE pair_id = ? AND labeller = ?",
                            (a["pair_id"], labeller)).fetchone():
                raise LabelError(f"pair {a['pair_id']} is already labelled by {labeller}")
            choice = _original(shown, bool(a["swapped"]))
            row = (a["pair_id"], labeller, choice, a["swapped"], comment, nonce, now())
            conn.execute("INSERT INTO labels (pair_id, labeller, choice, swapped, comment, nonce, created) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        return Label(row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6])

    def labels(self) -> list[Label]:
        with self.connect() as conn:
            return [_label(r) for r in conn.execute("SELECT * FROM labels ORDER BY pair_id, labeller")]

    def counts(self, labeller: str) -> dict[str, int]:
        """Labels by this labeller: all submitted, and those that were not skips."""
        with self.connect() as conn:
            row = conn.execute("SELECT COUNT(*), SUM(choice != 'skip') FROM labels WHERE labeller = ?",
                               (labeller,)).fetchone()
        return {"submitted": row[0], "labelled": row[1] or 0}

    # Live feedback -----------------------------------------------------------------------------------------------

    def add_response(self, labeller: str, conversation: list[dict[str, str]], response: str,
                     model_version: str) -> str:
        """Record a reply shown to `labeller`; returns its nonce (what the thumbs form sends back)."""
        nonce = secrets.token_urlsafe(18)
        with self.transaction() as conn:
            conn.execute("INSERT INTO feedback (labeller, conversation, response, model_version, nonce, created) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (labeller, json.dumps(conversation, ensure_ascii=False), response, model_version, nonce,
                          now()))
        return nonce

    def response(self, labeller: str, nonce: str) -> Feedback | None:
        """The reply `nonce` if it was shown to `labeller` (another labeller's nonce reads as unknown)."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM feedback WHERE nonce = ? AND labeller = ?", (nonce, labeller)).fetchone()
        return _feedback(row) if row else None

    def give_feedback(self, labeller: str, nonce: str, up: bool) -> Feedback:
        """Set the thumbs of reply `nonce`: the same vote again returns the stored row, another vote is refused."""
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM feedback WHERE nonce = ? AND labeller = ?", (nonce, labeller)).fetchone()
            if row is None:
                raise LabelError("unknown response")
            if row["up"] is not None:
                if bool(row["up"]) != up:
                    raise LabelError(f"this response already has a thumbs {'up' if row['up'] else 'down'} from "
                                     f"{labeller}")
                return _feedback(row)
            voted = now()
            conn.execute("UPDATE feedback SET up = ?, voted = ? WHERE id = ?", (int(up), voted, row["id"]))
        return replace(_feedback(row), up=up, voted=voted)

    def feedback_rows(self, voted_only: bool = False) -> list[Feedback]:
        """Every reply in the order it was made (with `voted_only`, those that have a vote)."""
        where = " WHERE up IS NOT NULL" if voted_only else ""
        with self.connect() as conn:
            return [_feedback(r) for r in conn.execute(f"SELECT * FROM feedback{where} ORDER BY id")]


def _feedback(r: sqlite3.Row) -> Feedback:
    return Feedback(r["id"], r["labeller"], json.loads(r["conversation"]), r["response"],
                    None if r["up"] is None else bool(r["up"]), r["model_version"], r["nonce"], r["created"],
                    r["voted"])


def _original(shown: str, swapped: bool) -> str:
    if shown in ("tie", "skip"):
        return shown
    first = shown == "first"
    return "a" if first != swapped else "b"


def pair_from_row(r: sqlite3.Row) -> Pair:
    return Pair(r["id"], r["source_id"], json.loads(r["prompt"]), r["a"], r["b"], r["ai_p"], r["judge"], r["source"])


def _label(r: sqlite3.Row) -> Label:
    return Label(r["pair_id"], r["labeller"], r["choice"], bool(r["swapped"]), r["comment"], r["nonce"],
                 r["created"])
