"""The agent's on-disk queue of samples not yet accepted by the server (SQLite, crash-safe).

Samples are appended as soon as they are read and deleted only after the server answered 2xx,
so a crash, a restart or a network outage loses nothing: the next run sends what is left,
oldest first. The server ignores samples it already has, so sending one twice (a reply lost
after the server stored it) is harmless. Samples the server refuses as invalid are moved to a
`rejected` table with the reason, for an operator to look at, so one bad sample cannot block
the queue. A lock file keeps a second agent off the same state directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# 8 devices every 10 s is ~69,000 samples a day: two weeks of outage fit; beyond, the oldest go.
DEFAULT_MAX_SAMPLES = 1_000_000


class SpoolBusy(RuntimeError):
    """Another agent holds this state directory."""


class Spool:
    def __init__(
        self, state_dir: str | os.PathLike, *, max_samples: int = DEFAULT_MAX_SAMPLES
    ) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_samples = max_samples
        self._lock_file = open(self.dir / "agent.lock", "a+")  # held (and locked) until close()
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolBusy(
                f"Another agent is running with the state directory {self.dir}: stop it, or give this one "
                "its own --state-dir."
            ) from None
        self.path = self.dir / "spool.sqlite3"
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an appended sample survives a power cut
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS samples (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS rejected (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, reason TEXT NOT NULL,"
            " rejected_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )

    def append(self, samples: Iterable[dict[str, Any]]) -> int:
        rows = [(json.dumps(s, separators=(",", ":")),) for s in samples]
        if not rows:
            return 0
        with self._transaction():
            self.db.executemany("INSERT INTO samples (payload) VALUES (?)", rows)
            over = self.count() - self.max_samples
            if over > 0:
                self.db.execute(
                    "DELETE FROM samples WHERE id IN (SELECT id FROM samples ORDER BY id LIMIT ?)",
                    (over,),
                )
                logger.warning(
                    "spool full (%d samples): dropped the %d oldest", self.max_samples, over
                )
        return len(rows)

    def oldest(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        cursor = self.db.execute("SELECT id, payload FROM samples ORDER BY id LIMIT ?", (limit,))
        return [(row_id, json.loads(payload)) for row_id, payload in cursor]

    def delete(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._transaction():
            self.db.executemany("DELETE FROM samples WHERE id = ?", [(i,) for i in ids])

    def reject(self, ids: list[int], reason: str) -> None:
        """Move these samples out of the queue into `rejected`, keeping them and the reason."""
        if not ids:
            return
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO rejected (id, payload, reason) SELECT id, payload, ? FROM samples WHERE id = ?",
                [(reason[:2000], i) for i in ids],
            )
            self.db.executemany("DELETE FROM samples WHERE id = ?", [(i,) for i in ids])

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM samples").fetchone()[0]

    def rejected_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM rejected").fetchone()[0]

    def _transaction(self):
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        finally:
            self._lock_file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
