"""The review queue for a team: a reviewer claims a flag with a lease, so two never decide the same one.

A claim is (flag, reviewer, until). Claiming is one ``BEGIN IMMEDIATE`` transaction, which
SQLite serialises across threads and processes: of two reviewers asking for the next flag at
the same instant, each gets a different one. A claim lasts ``lease_s`` seconds unless renewed
(claiming again); once it has expired anyone may take the flag. A reviewer holds one claim at a
time: claiming another flag lets the previous one go. Deciding a flag (workflow/db.py) checks the
claims in the decision's own transaction, refuses a flag another reviewer holds
(``ClaimedError``), and lets the flag's claim go.

Reviewers are known by the name they give (as in the audit): the same name in two browser tabs
is one reviewer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lookalike.errors import ClaimedError, ConfigError, ItemNotFoundError

if TYPE_CHECKING:
    from lookalike.workflow.db import Flag

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    flag INTEGER PRIMARY KEY REFERENCES flags (id),
    reviewer TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_by_reviewer ON claims (reviewer);
"""
_FLAG_COLUMNS = "f.id, f.item, f.policy, f.label, f.score, f.created_at, f.status"


@dataclass(frozen=True)
class Claim:
    flag: int
    reviewer: str
    claimed_at: float
    expires_at: float


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


def check_reviewer(reviewer: str, what: str = "A claim") -> str:
    """The reviewer's name stripped; refused when empty, over 200 characters or holding control
    characters (it is shown in every listing and kept in the audit)."""
    name = reviewer.strip()
    if not name:
        raise ConfigError(f"{what} needs the reviewer's name.")
    if len(name) > 200:
        raise ConfigError("A reviewer's name is at most 200 characters.")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise ConfigError("A reviewer's name must not hold control characters.")
    return name


class Claims:
    """Claims on the flags of one workflow database (its connection and lock, shared)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def next(
        self,
        reviewer: str,
        *,
        lease_s: float,
        where: str = "",
        args: Sequence[object] = (),
        after: int | None = None,
        now: float | None = None,
    ) -> tuple[Flag, Claim] | None:
        """Claim the next open flag for ``reviewer``; None when every open flag is decided or held.

        The flag the reviewer holds already (a page reloaded) comes first; else the oldest open
        flag nobody holds, from after ``after`` (a flag skipped) and round to the start. ``where``
        and ``args`` narrow the flags (``Workflow._flag_filter``'s clauses over flag columns).
        """
        from lookalike.workflow.db import Workflow

        name = check_reviewer(reviewer)
        when = time.time() if now is None else now
        extra = f" AND {where}" if where else ""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = None
                if after is None:
                    row = self._db.execute(
                        f"SELECT {_FLAG_COLUMNS} FROM flags f JOIN claims c ON c.flag = f.id"
                        f" WHERE c.reviewer = ? AND c.expires_at > ? AND f.status = 'open'{extra}"
                        " ORDER BY f.id LIMIT 1",
                        (name, when, *args),
                    ).fetchone()
                free = (
                    f"SELECT {_FLAG_COLUMNS} FROM flags f LEFT JOIN claims c ON c.flag = f.id"
                    f" AND c.expires_at > ? AND c.reviewer != ? WHERE f.status = 'open' AND c.flag IS NULL{extra}"
                )
                if row is None and after is not None:
                    row = self._db.execute(
                        f"{free} AND f.id > ? ORDER BY f.id LIMIT 1", (when, name, *args, after)
                    ).fetchone()
                if row is None:
                    row = self._db.execute(f"{free} ORDER BY f.id LIMIT 1", (when, name, *args)).fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return None
                flag = Workflow._flag(row)
                claim = self._take(flag.id, name, lease_s, when)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return flag, claim

    def claim(
        self, flag_id: int, reviewer: str, *, lease_s: float, now: float | None = None, open_only: bool = True
    ) -> Claim:
        """Claim one flag, or renew the reviewer's claim on it.

        Raises:
            ItemNotFoundError: no such flag.
            ClaimedError: another reviewer holds it and their lease has not expired.
            ConfigError: the flag is decided already (with ``open_only``).
        """
        name = check_reviewer(reviewer)
        when = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT status FROM flags WHERE id = ?", (flag_id,)).fetchone()
                if row is None:
                    raise ItemNotFoundError(f"No flag with id {flag_id}.")
                if open_only and row[0] != "open":
                    raise ConfigError(f"Flag {flag_id} is {row[0]}, not open: there is nothing to claim.")
                self.check([flag_id], name, when)
                claim = self._take(flag_id, name, lease_s, when)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return claim

    def release(self, flag_id: int, reviewer: str, *, now: float | None = None) -> bool:
        """Let a claim go; False when the reviewer held none on the flag.

        Raises:
            ClaimedError: another reviewer holds it (nobody releases another's claim; it expires).
        """
        name = check_reviewer(reviewer)
        when = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self.check([flag_id], name, when)
                cursor = self._db.execute(
                    "DELETE FROM claims WHERE flag = ? AND reviewer = ?", (flag_id, name)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return cursor.rowcount > 0

    def holders(self, flag_ids: Sequence[int], *, now: float | None = None) -> dict[int, Claim]:
        """The unexpired claims on these flags."""
        when = time.time() if now is None else now
        found: dict[int, Claim] = {}
        unique = sorted(set(flag_ids))
        with self._lock:
            for start in range(0, len(unique), 500):
                batch = unique[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    "SELECT flag, reviewer, claimed_at, expires_at FROM claims"
                    f" WHERE expires_at > ? AND flag IN ({marks})",
                    (when, *batch),
                ).fetchall()
                found.update((int(r[0]), _claim(r)) for r in rows)
        return found

    # inside a transaction, lock held (workflow/db.py's decisions call these)

    def check(self, flag_ids: Sequence[int], reviewer: str, when: float) -> None:
        """Refuse flags another reviewer holds (lock held, inside a transaction)."""
        for start in range(0, len(flag_ids), 500):
            batch = list(flag_ids[start : start + 500])
            marks = ",".join("?" * len(batch))
            row = self._db.execute(
                "SELECT flag, reviewer, claimed_at, expires_at FROM claims"
                f" WHERE expires_at > ? AND reviewer != ? AND flag IN ({marks}) ORDER BY flag LIMIT 1",
                (when, reviewer.strip(), *batch),
            ).fetchone()
            if row is not None:
                held = _claim(row)
                raise ClaimedError(
                    f"Flag {held.flag} is being reviewed by {held.reviewer!r} (claimed until"
                    f" {_clock(held.expires_at)}); it can be decided by someone else once that claim"
                    " is decided, released or expired."
                )

    def drop(self, flag_ids: Sequence[int]) -> None:
        """The claims of decided flags go (lock held, inside a transaction)."""
        self._db.executemany("DELETE FROM claims WHERE flag = ?", [(i,) for i in flag_ids])

    def _take(self, flag_id: int, reviewer: str, lease_s: float, when: float) -> Claim:
        if not 0 < lease_s <= 86400:
            raise ConfigError(f"A lease is more than 0 and at most 86400 seconds, got {lease_s:g}.")
        # One claim a reviewer: taking a flag lets the one held before go.
        self._db.execute("DELETE FROM claims WHERE reviewer = ? AND flag != ?", (reviewer, flag_id))
        self._db.execute(
            "INSERT INTO claims (flag, reviewer, claimed_at, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (flag) DO UPDATE SET reviewer = excluded.reviewer,"
            " claimed_at = CASE WHEN claims.reviewer = excluded.reviewer AND claims.expires_at > ?"
            " THEN claims.claimed_at ELSE excluded.claimed_at END, expires_at = excluded.expires_at",
            (flag_id, reviewer, when, when + lease_s, when),
        )
        row = self._db.execute(
            "SELECT flag, reviewer, claimed_at, expires_at FROM claims WHERE flag = ?", (flag_id,)
        ).fetchone()
        return _claim(row)


def _claim(row: Any) -> Claim:
    return Claim(int(row[0]), str(row[1]), float(row[2]), float(row[3]))
