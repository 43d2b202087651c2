"""The webhook outbox: events written in the transaction of the change they describe, delivered later.

``events`` holds each event once (its type and JSON body); ``deliveries`` one row per event and
webhook URL, with its state: ``pending`` (due at ``next_at``), ``delivered``, or ``failed`` (every
attempt used up, or its URL no longer configured): the durable list of failed deliveries, which
``replay`` makes pending again. Events are recorded only for the URLs configured in the process
that makes the change (``Workflow(webhooks=...)``); with none configured nothing is written.

Writing an event is an insert inside the caller's transaction (``enqueue``): the flag or decision
and its events commit together or not at all, and no network is involved. A worker
(webhooks/worker.py) takes due deliveries with a short lock (``take``), so two workers (the
server's and ``lookalike webhooks deliver``) do not send the same delivery at once; delivery is
at least once, so receivers deduplicate by the ``X-Lookalike-Delivery`` event id.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from lookalike.errors import ConfigError, ItemNotFoundError

if TYPE_CHECKING:
    from lookalike.workflow.db import Decision, Flag

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event INTEGER NOT NULL REFERENCES events (id),
    url TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    locked_until REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    UNIQUE (event, url)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
"""
MAX_BACKOFF_S = 3600.0


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    id: int
    event: int
    type: str
    url: str
    status: DeliveryStatus
    attempts: int
    next_at: float
    last_error: str
    updated_at: float
    created_at: int
    body: str


def iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat().replace("+00:00", "Z")


def backoff(attempts: int, first_s: float) -> float:
    """Seconds to wait after ``attempts`` failed attempts: ``first_s`` doubled each time, at most an hour."""
    return float(min(MAX_BACKOFF_S, first_s * 2 ** min(attempts - 1, 30)))


def _flag(flag: Flag, status: str) -> dict[str, Any]:
    return {
        "id": flag.id,
        "item": str(flag.item),  # a 64-bit id: a string, as the API writes it (JavaScript numbers lose it)
        "policy": flag.policy,
        "label": flag.label,
        "score": round(float(flag.score), 6),
        "status": status,
        "flagged_at": iso(flag.created_at),
    }


def _item(flag: Flag, details: Mapping[int, Mapping[str, object]] | None) -> dict[str, Any] | None:
    found = (details or {}).get(flag.item)
    return {key: value for key, value in found.items()} if found is not None else None


def flag_event(flag: Flag, details: Mapping[int, Mapping[str, object]] | None) -> dict[str, Any]:
    """The data of a ``flag.created`` event."""
    return {"flag": _flag(flag, "open"), "item": _item(flag, details)}


def decision_event(
    flag: Flag, decision: Decision, details: Mapping[int, Mapping[str, object]] | None
) -> dict[str, Any]:
    """The data of a ``flag.decided`` event: the flag as it now is, and the audit record."""
    return {
        "flag": _flag(flag, decision.decision.value),
        "decision": {
            "id": decision.id,
            "decision": decision.decision.value,
            "by": decision.reviewer,
            "note": decision.note,
            "at": iso(decision.at),
            "took_down": decision.took_down,
        },
        "item": _item(flag, details),
    }


def _finite(value: Any) -> Any:
    """A NaN or infinite number (a broken stored vector's score) as null: the event stays valid JSON,
    and writing it can never fail the flag or decision it belongs to."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class Outbox:
    """The events and deliveries of one workflow database (its connection and lock, shared)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock, urls: Sequence[str] = ()) -> None:
        self._db = db
        self._lock = lock
        self.urls = tuple(urls)
        self.on_enqueue: Callable[[], None] | None = None
        """Called (outside the lock) after a transaction that wrote events: a worker wakes up."""

    # inside a transaction, lock held

    def enqueue(self, type_: str, data: Mapping[str, Any], *, when: float | None = None) -> int | None:
        """Record an event for every configured URL (lock held, inside the caller's transaction)."""
        if not self.urls:
            return None
        at = time.time() if when is None else when
        cursor = self._db.execute(
            "INSERT INTO events (type, body, created_at) VALUES (?, '', ?)", (type_, int(at))
        )
        event = int(cursor.lastrowid or 0)
        body = _finite({"id": event, "type": type_, "created_at": iso(at), **data})
        self._db.execute(
            "UPDATE events SET body = ? WHERE id = ?",
            (json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")), event),
        )
        self._db.executemany(
            "INSERT INTO deliveries (event, url, next_at, updated_at) VALUES (?, ?, ?, ?)",
            [(event, url, at, at) for url in self.urls],
        )
        return event

    def notify(self) -> None:
        if self.urls and self.on_enqueue is not None:
            self.on_enqueue()

    # the worker's side

    def ping(self) -> int | None:
        """A test event for every configured URL; its id, or None with no URL configured."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                event = self.enqueue("ping", {"message": "lookalike webhook test"})
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self.notify()
        return event

    def take(
        self, *, limit: int = 50, lock_s: float, now: float | None = None, ids: Sequence[int] | None = None
    ) -> list[Delivery]:
        """Due pending deliveries (``ids``: only these, due or not), locked for ``lock_s`` seconds."""
        when = time.time() if now is None else now
        where = "d.status = 'pending' AND d.locked_until <= ?"
        args: list[object] = [when]
        if ids is not None:
            if not ids:
                return []
            where += f" AND d.id IN ({','.join('?' * len(ids))})"
            args += list(ids)
        else:
            where += " AND d.next_at <= ?"
            args.append(when)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    f"{_SELECT} WHERE {where} ORDER BY d.id LIMIT ?", (*args, limit)
                ).fetchall()
                self._db.executemany(
                    "UPDATE deliveries SET locked_until = ? WHERE id = ?",
                    [(when + lock_s, r[0]) for r in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [_delivery(row) for row in rows]

    def delivered(self, delivery: int, *, now: float | None = None) -> None:
        when = time.time() if now is None else now
        self._write(
            "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, locked_until = 0,"
            " last_error = '', updated_at = ? WHERE id = ?",
            (when, delivery),
        )

    def attempt_failed(
        self, delivery: int, error: str, *, max_attempts: int, backoff_s: float, now: float | None = None
    ) -> DeliveryStatus:
        """Record a failed attempt: pending again after the backoff, or failed once every attempt is used."""
        when = time.time() if now is None else now
        with self._lock:
            row = self._db.execute("SELECT attempts FROM deliveries WHERE id = ?", (delivery,)).fetchone()
            attempts = int(row[0]) + 1 if row else 1
            status = DeliveryStatus.FAILED if attempts >= max_attempts else DeliveryStatus.PENDING
            self._db.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, next_at = ?, locked_until = 0,"
                " last_error = ?, updated_at = ? WHERE id = ?",
                (str(status), attempts, when + backoff(attempts, backoff_s), error[:1000], when, delivery),
            )
        return status

    def give_up(self, delivery: int, error: str, *, now: float | None = None) -> None:
        """Fail a delivery at once (its URL is no longer configured): listed, replayable."""
        when = time.time() if now is None else now
        self._write(
            "UPDATE deliveries SET status = 'failed', locked_until = 0, last_error = ?, updated_at = ?"
            " WHERE id = ?",
            (error[:1000], when, delivery),
        )

    def _write(self, sql: str, args: Sequence[object]) -> None:
        with self._lock:
            self._db.execute(sql, tuple(args))

    # listing and replay

    def deliveries(
        self, *, status: DeliveryStatus | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[Delivery]]:
        where, args = ("WHERE d.status = ?", [str(status)]) if status is not None else ("", [])
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM deliveries d {where}", args).fetchone()[0])
            rows = self._db.execute(
                f"{_SELECT} {where} ORDER BY d.id LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
        return total, [_delivery(row) for row in rows]

    def delivery(self, delivery: int) -> Delivery:
        with self._lock:
            row = self._db.execute(f"{_SELECT} WHERE d.id = ?", (delivery,)).fetchone()
        if row is None:
            raise ItemNotFoundError(f"No webhook delivery with id {delivery}.")
        return _delivery(row)

    def replay(self, ids: Sequence[int] | None = None, *, now: float | None = None) -> list[int]:
        """Make failed deliveries pending again, due now, with their attempts counted afresh.

        ``ids``: these (each must exist and have failed); None: every failed delivery. Returns the ids.
        """
        when = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if ids is None:
                    chosen = [
                        int(r[0])
                        for r in self._db.execute("SELECT id FROM deliveries WHERE status = 'failed'")
                    ]
                else:
                    chosen = sorted(set(ids))
                    for delivery in chosen:
                        row = self._db.execute(
                            "SELECT status FROM deliveries WHERE id = ?", (delivery,)
                        ).fetchone()
                        if row is None:
                            raise ItemNotFoundError(f"No webhook delivery with id {delivery}.")
                        if row[0] != "failed":
                            raise ConfigError(
                                f"Webhook delivery {delivery} is {row[0]}; only a failed one is replayed."
                            )
                self._db.executemany(
                    "UPDATE deliveries SET status = 'pending', attempts = 0, next_at = ?, locked_until = 0,"
                    " updated_at = ? WHERE id = ?",
                    [(when, when, delivery) for delivery in chosen],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if chosen and self.on_enqueue is not None:
            self.on_enqueue()
        return chosen

    def next_due(self) -> float | None:
        """When the next pending delivery is due (None: nothing pending)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(MAX(next_at, locked_until)) FROM deliveries WHERE status = 'pending'"
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def prune(self, older_than_s: float, *, now: float | None = None) -> int:
        """Forget delivered deliveries older than this, and events left with no delivery; returns how many."""
        when = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                gone = self._db.execute(
                    "DELETE FROM deliveries WHERE status = 'delivered' AND updated_at < ?",
                    (when - older_than_s,),
                ).rowcount
                self._db.execute(
                    "DELETE FROM events WHERE created_at < ? AND id NOT IN (SELECT event FROM deliveries)",
                    (int(when - older_than_s),),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(gone)


_SELECT = (
    "SELECT d.id, d.event, e.type, d.url, d.status, d.attempts, d.next_at, d.last_error, d.updated_at,"
    " e.created_at, e.body FROM deliveries d JOIN events e ON e.id = d.event"
)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        int(row[0]),
        int(row[1]),
        str(row[2]),
        str(row[3]),
        DeliveryStatus(str(row[4])),
        int(row[5]),
        float(row[6]),
        str(row[7]),
        float(row[8]),
        int(row[9]),
        str(row[10]),
    )
