"""Waves: near-duplicate clusters that appeared across several sources (sellers) within a window.

A wave is one grouped flag (policy ``waves``, on the cluster's representative item) and its
members in ``wave_items``. Every item belongs to at most one wave, which is what keeps a wave from
being raised twice: a cluster found again whose items are all known adds nothing; one that shares
items with a wave whose flag is still open adds its new items to that wave; one whose wave has
been decided raises a new wave only if its new items alone span enough sellers.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS waves (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flag INTEGER NOT NULL UNIQUE REFERENCES flags (id),
    found_at INTEGER NOT NULL,
    since INTEGER NOT NULL,
    until INTEGER NOT NULL,
    threshold REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS wave_items (
    item INTEGER PRIMARY KEY,
    wave INTEGER NOT NULL REFERENCES waves (id),
    source TEXT NOT NULL,
    item_id TEXT NOT NULL,
    score REAL NOT NULL,
    created_at INTEGER NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS wave_items_by_wave ON wave_items (wave);
"""
POLICY = "waves"  # the policy name of wave flags; refused as a user policy's name
LABEL = "near-duplicate wave"


@dataclass(frozen=True)
class Member:
    item: int
    source: str
    item_id: str
    score: float  # cosine to the wave's representative
    created_at: int


@dataclass(frozen=True)
class Wave:
    id: int
    flag: int
    found_at: int
    since: int
    until: int
    threshold: float
    members: tuple[Member, ...]

    @property
    def sellers(self) -> int:
        return len({m.source for m in self.members})


@dataclass(frozen=True)
class Outcome:
    """What recording one cluster did: a new wave, a wave grown, or nothing (all known)."""

    wave: Wave | None
    new: bool
    added: int


class Waves:
    """The waves of one workflow database (its connection and lock, shared)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def record(
        self,
        members: Sequence[Member],
        *,
        min_sellers: int,
        since: int,
        until: int,
        threshold: float,
        raise_flag: Callable[[list[Member], float, int], int],
        grown: Callable[[Wave, list[Member]], None],
        now: int | None = None,
    ) -> Outcome:
        """Record one cluster (its representative first) in one transaction; see the module doc.

        ``raise_flag(members, score, when)`` inserts the flag of a new wave of ``members`` (its
        representative first) with its event, and returns its id; ``grown(wave, added)`` records
        that an open wave gained items. Both run inside this transaction, with the lock held.
        """
        when = int(time.time()) if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                outcome = self._record(members, min_sellers, since, until, threshold, raise_flag, grown, when)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return outcome

    def _record(
        self,
        members: Sequence[Member],
        min_sellers: int,
        since: int,
        until: int,
        threshold: float,
        raise_flag: Callable[[list[Member], float, int], int],
        grown: Callable[[Wave, list[Member]], None],
        when: int,
    ) -> Outcome:
        known = self._waves_of([m.item for m in members])
        fresh = [m for m in members if m.item not in known]
        if not fresh:
            return Outcome(None, False, 0)
        if known:
            oldest = self._wave(min(known.values()))
            status = self._db.execute("SELECT status FROM flags WHERE id = ?", (oldest.flag,)).fetchone()
            if status is not None and status[0] == "open":
                self._add(oldest.id, fresh, when)
                wave = self._wave(oldest.id)
                grown(wave, fresh)
                return Outcome(wave, False, len(fresh))
        if len({m.source for m in fresh}) < min_sellers:
            return Outcome(None, False, 0)
        # The representative is the cluster's; where it is known already, the first fresh item.
        score = min(m.score for m in fresh)
        flag = raise_flag(fresh, score, when)
        cursor = self._db.execute(
            "INSERT INTO waves (flag, found_at, since, until, threshold) VALUES (?, ?, ?, ?, ?)",
            (flag, when, since, until, threshold),
        )
        wave_id = int(cursor.lastrowid or 0)
        self._add(wave_id, fresh, when)
        return Outcome(self._wave(wave_id), True, len(fresh))

    def _add(self, wave: int, members: Sequence[Member], when: int) -> None:
        self._db.executemany(
            "INSERT INTO wave_items (item, wave, source, item_id, score, created_at, added_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(m.item, wave, m.source, m.item_id, float(m.score), m.created_at, when) for m in members],
        )

    def _waves_of(self, items: Sequence[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        for start in range(0, len(items), 500):
            batch = list(items[start : start + 500])
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(f"SELECT item, wave FROM wave_items WHERE item IN ({marks})", batch)
            found.update((int(i), int(w)) for i, w in rows)
        return found

    def _wave(self, wave_id: int) -> Wave:
        row = self._db.execute(
            "SELECT id, flag, found_at, since, until, threshold FROM waves WHERE id = ?", (wave_id,)
        ).fetchone()
        members = self._db.execute(
            "SELECT item, source, item_id, score, created_at FROM wave_items WHERE wave = ?"
            " ORDER BY score DESC, item",
            (wave_id,),
        ).fetchall()
        return _wave(row, members)

    def of_flag(self, flag_id: int) -> Wave | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM waves WHERE flag = ?", (flag_id,)).fetchone()
            return self._wave(int(row[0])) if row else None

    def listed(self, *, limit: int = 100, offset: int = 0) -> tuple[int, list[Wave]]:
        """Waves, newest first."""
        with self._lock:
            total = int(self._db.execute("SELECT COUNT(*) FROM waves").fetchone()[0])
            ids = self._db.execute("SELECT id FROM waves ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))
            return total, [self._wave(int(r[0])) for r in ids.fetchall()]

    def flag_ids(self, flag_ids: Sequence[int]) -> set[int]:
        """Which of these flags are waves'."""
        if not flag_ids:
            return set()
        marks = ",".join("?" * len(flag_ids))
        with self._lock:
            rows = self._db.execute(f"SELECT flag FROM waves WHERE flag IN ({marks})", list(flag_ids))
            return {int(r[0]) for r in rows}


def _wave(row: Any, members: Sequence[Any]) -> Wave:
    return Wave(
        int(row[0]),
        int(row[1]),
        int(row[2]),
        int(row[3]),
        int(row[4]),
        float(row[5]),
        tuple(Member(int(m[0]), str(m[1]), str(m[2]), float(m[3]), int(m[4])) for m in members),
    )
