"""Judgments cached on disk by content hash, so a re-run or a resumed run never asks a judge the same question.

SQLite (WAL) rather than a JSONL file: each batch of answers is committed as it arrives, so a run killed halfway
keeps every judgment it paid for, and two processes can share one cache. The key is a hash of everything that
determines the answer (judge identity and settings, prompt wording version, principle text, conversation, the two
options in order); the value is the verdict. Nothing secret is stored: API keys are never part of a key or value.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any


def cache_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class JudgmentCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, judge TEXT, value TEXT)")
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(f"SELECT key, value FROM judgments WHERE key IN ({marks})", chunk):
                found[key] = json.loads(value)
        return found

    def put_many(self, judge: str, items: dict[str, dict[str, Any]]) -> None:
        with self._db:  # one transaction per batch
            self._db.executemany(
                "INSERT OR REPLACE INTO judgments (key, judge, value) VALUES (?, ?, ?)",
                [(k, judge, json.dumps(v)) for k, v in items.items()],
            )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    def close(self) -> None:
        self._db.close()
