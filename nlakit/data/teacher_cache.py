"""The on-disk cache of teacher replies: one SQLite file, one row per paid answer.

A row is keyed by the SHA-256 of (teacher spec, prompt, sampling parameters), so
re-running a pipeline step, or resuming one that crashed, pays only for prompts
it has not sent before. Every `put` commits at once: a crash loses no answer that
was paid for. Only replies are stored — never API keys or request headers.

    cache = TeacherCache("teacher_cache.sqlite")
    key = cache.key("anthropic:claude-sonnet-4-5", prompt, {"max_tokens": 400, "temperature": 1.0})
    cache.get(key) or cache.put(key, completion)
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from nlakit.data.teacher_backends import Completion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    created REAL NOT NULL  -- Unix time of the paid call
)
"""


class TeacherCache:
    """A SQLite file of teacher completions; several processes may open it at once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): each put is its own durable transaction.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
        self._db.execute(_SCHEMA)

    @staticmethod
    def key(teacher_spec: str, prompt: str, params: dict) -> str:
        """Hex SHA-256 of a canonical JSON of the spec, the prompt and the sampling params."""
        canonical = json.dumps(
            {"teacher": teacher_spec, "prompt": prompt, "params": params},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Completion | None:
        """The stored completion for `key`, or None."""
        row = self._db.execute(
            "SELECT text, input_tokens, output_tokens FROM completions WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else Completion(row[0], int(row[1]), int(row[2]))

    def put(self, key: str, completion: Completion) -> None:
        """Store (or replace) the completion for `key`, committed immediately."""
        self._db.execute(
            "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?)",
            (
                key,
                completion.text,
                completion.input_tokens,
                completion.output_tokens,
                time.time(),
            ),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        """Close the connection (the data is already on disk)."""
        self._db.close()

    def __enter__(self) -> TeacherCache:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
