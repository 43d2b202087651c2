"""The SQLite side store: one file per collection, opened by every process that uses the collection.

Tables: ``policies`` (label sets scored at ingest), ``flags`` (item matched a policy's label),
``decisions`` (every review: who, when, what, note; never updated, never deleted) and ``hashes``
(the PDQ perceptual hash of each whole picture, keyed by item id). A database from an older
version (no side store yet, or fewer tables) opens as it is: missing tables are created.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from lookalike.errors import ConfigError, ItemNotFoundError, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS policies (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS flags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item INTEGER NOT NULL,
    policy TEXT NOT NULL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    UNIQUE (item, policy, label)
);
CREATE INDEX IF NOT EXISTS flags_by_status ON flags (status, created_at);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flag INTEGER NOT NULL REFERENCES flags (id),
    item INTEGER NOT NULL,
    policy TEXT NOT NULL,
    label TEXT NOT NULL,
    decision TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    note TEXT NOT NULL,
    at INTEGER NOT NULL,
    took_down INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hashes (
    item INTEGER PRIMARY KEY,
    pdq TEXT NOT NULL,
    quality INTEGER NOT NULL
);
"""


class FlagStatus(StrEnum):
    OPEN = "open"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


@dataclass(frozen=True)
class Policy:
    name: str
    labels: str  # the TOML text, as added
    created_at: int


@dataclass(frozen=True)
class NewFlag:
    item: int
    policy: str
    label: str
    score: float


@dataclass(frozen=True)
class Flag:
    id: int
    item: int
    policy: str
    label: str
    score: float
    created_at: int
    status: FlagStatus


@dataclass(frozen=True)
class Decision:
    """One review of one flag: the audit record."""

    id: int
    flag: int
    item: int
    policy: str
    label: str
    decision: FlagStatus
    reviewer: str
    note: str
    at: int
    took_down: bool


class Workflow:
    """The side store of one collection; safe to share between threads (one connection, one lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        folder = Path(path).expanduser().resolve().parent
        if not folder.is_dir():
            raise ConfigError(f"The folder of the workflow database does not exist: {folder}")
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a decision acknowledged is a decision kept
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"Cannot open the workflow database {path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, tuple(args)).fetchall())

    # policies

    def add_policy(self, name: str, labels: str, *, replace: bool = False) -> Policy:
        policy = Policy(name, labels, int(time.time()))
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            with self._lock:
                self._db.execute(
                    f"{verb} INTO policies (name, labels, created_at) VALUES (?, ?, ?)",
                    (policy.name, policy.labels, policy.created_at),
                )
        except sqlite3.IntegrityError as exc:
            raise ConfigError(
                f"A policy named {name!r} exists already; remove it first or give another --name."
            ) from exc
        return policy

    def policies(self) -> list[Policy]:
        rows = self._query("SELECT name, labels, created_at FROM policies ORDER BY name")
        return [Policy(str(n), str(t), int(c)) for n, t, c in rows]

    def policy(self, name: str) -> Policy:
        for policy in self.policies():
            if policy.name == name:
                return policy
        known = ", ".join(p.name for p in self.policies()) or "none"
        raise ConfigError(f"No policy named {name!r} (policies: {known}).")

    def remove_policy(self, name: str) -> None:
        """The policy stops flagging; its flags and their reviews stay (they are the audit)."""
        self.policy(name)
        with self._lock:
            self._db.execute("DELETE FROM policies WHERE name = ?", (name,))

    # flags

    def add_flags(self, flags: Sequence[NewFlag], *, at: int | None = None) -> int:
        """Record matches; an item already flagged for the same policy and label keeps its flag."""
        when = int(time.time()) if at is None else at
        rows = [(f.item, f.policy, f.label, float(f.score), when) for f in flags]
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO flags (item, policy, label, score, created_at) VALUES (?,?,?,?,?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def flags(
        self,
        *,
        policy: str | None = None,
        status: FlagStatus | None = None,
        since: int | None = None,
        until: int | None = None,
        item: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Flag]:
        where, args = self._flag_filter(policy, status, since, until, item)
        sql = f"SELECT id, item, policy, label, score, created_at, status FROM flags{where} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [self._flag(row) for row in self._query(sql, args)]

    def count_flags(
        self,
        *,
        policy: str | None = None,
        status: FlagStatus | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> int:
        where, args = self._flag_filter(policy, status, since, until, None)
        return int(self._query(f"SELECT COUNT(*) FROM flags{where}", args)[0][0])

    @staticmethod
    def _flag_filter(
        policy: str | None, status: FlagStatus | None, since: int | None, until: int | None, item: int | None
    ) -> tuple[str, list[object]]:
        clauses: list[str] = []
        args: list[object] = []
        for column, value in (("policy = ?", policy), ("status = ?", status), ("item = ?", item)):
            if value is not None:
                clauses.append(column)
                args.append(str(value) if column != "item = ?" else value)
        if since is not None:
            clauses.append("created_at >= ?")
            args.append(since)
        if until is not None:
            clauses.append("created_at < ?")
            args.append(until)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    @staticmethod
    def _flag(row: tuple[Any, ...]) -> Flag:
        id_, item, policy, label, score, created, status = row
        return Flag(
            int(id_),
            int(item),
            str(policy),
            str(label),
            float(score),
            int(created),
            FlagStatus(str(status)),
        )

    def flag(self, flag_id: int) -> Flag:
        found = self.flags_by_id([flag_id])
        if not found:
            raise ItemNotFoundError(f"No flag with id {flag_id}.")
        return found[0]

    def flags_by_id(self, ids: Sequence[int]) -> list[Flag]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT id, item, policy, label, score, created_at, status FROM flags WHERE id IN ({marks})", ids
        )
        return [self._flag(row) for row in rows]

    # reviews

    def review(
        self,
        flag_ids: Sequence[int],
        decision: FlagStatus,
        *,
        reviewer: str,
        note: str = "",
        took_down: bool = False,
        at: int | None = None,
    ) -> list[Decision]:
        """Set the flags' status and append one audit record each, in one transaction."""
        if decision is FlagStatus.OPEN:
            raise ConfigError("A review confirms or dismisses a flag.")
        when = int(time.time()) if at is None else at
        flags = self.flags_by_id(flag_ids)
        missing = set(flag_ids) - {f.id for f in flags}
        if missing:
            raise ItemNotFoundError(f"No flag with id {', '.join(map(str, sorted(missing)))}.")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids = []
                for flag in flags:
                    self._db.execute("UPDATE flags SET status = ? WHERE id = ?", (str(decision), flag.id))
                    cursor = self._db.execute(
                        "INSERT INTO decisions (flag, item, policy, label, decision, reviewer, note, at,"
                        " took_down) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            flag.id,
                            flag.item,
                            flag.policy,
                            flag.label,
                            str(decision),
                            reviewer,
                            note,
                            when,
                            int(took_down),
                        ),
                    )
                    ids.append(int(cursor.lastrowid or 0))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [
            Decision(i, f.id, f.item, f.policy, f.label, decision, reviewer, note, when, took_down)
            for i, f in zip(ids, flags, strict=True)
        ]

    def decisions(self, *, since: int | None = None, until: int | None = None) -> Iterator[Decision]:
        clauses: list[str] = []
        args: list[object] = []
        if since is not None:
            clauses.append("at >= ?")
            args.append(since)
        if until is not None:
            clauses.append("at < ?")
            args.append(until)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        sql = (
            "SELECT id, flag, item, policy, label, decision, reviewer, note, at, took_down"
            f" FROM decisions{where} ORDER BY id"
        )
        for row in self._query(sql, args):
            id_, flag, item, policy, label, decision, reviewer, note, at, took = row
            yield Decision(
                int(id_),
                int(flag),
                int(item),
                str(policy),
                str(label),
                FlagStatus(str(decision)),
                str(reviewer),
                str(note),
                int(at),
                bool(took),
            )

    # perceptual hashes

    def put_hashes(self, hashes: dict[int, tuple[str, int]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO hashes (item, pdq, quality) VALUES (?, ?, ?)",
                    [(item, pdq, quality) for item, (pdq, quality) in hashes.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def hashes(self) -> dict[int, tuple[str, int]]:
        rows = self._query("SELECT item, pdq, quality FROM hashes")
        return {int(i): (str(p), int(q)) for i, p, q in rows}

    def forget_hashes(self, items: Sequence[int]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM hashes WHERE item = ?", [(i,) for i in items])
