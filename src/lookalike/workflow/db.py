"""The SQLite side store: one file per collection, opened by every process that uses the collection.

Tables: ``policies`` (label sets scored at ingest), ``flags`` (item matched a policy's label or a
bank's hash), ``subjects`` (what a flag is about as it was when flagged: item id, source, uri,
sha256, PDQ hash; kept after the item is gone, for the audit), ``decisions`` (every review: who,
when, what, note, and the subject and score it was about; never updated, never deleted) and
``hashes`` (the PDQ perceptual hash of each whole picture, keyed by item id); the hash banks'
tables are in banks.py. A database from an older version (no side store yet, fewer tables or
columns) opens as it is: missing tables are created and missing columns added (``MIGRATIONS``),
in one transaction, whichever process opens it first.

An item that goes away (deleted, swept by ``index --sync``, taken down) takes its open flags
with it: they are *closed* with the reason, and each close is an audit record like a review,
all in one transaction with forgetting the item's hash (``items_gone``, ``take_down``).

Beside them (their own modules, tables created the same way): ``claims`` (the review queue's
leases, claims.py), ``events`` and ``deliveries`` (the webhook outbox, outbox.py) and ``waves``
(grouped flags of near-duplicate clusters, waves.py). Every flag raised and every decision writes
its webhook event in its own transaction, and every decision checks and lets go of claims there.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.errors import ConfigError, ItemNotFoundError, StoreError
from lookalike.workflow import claims, outbox, waves

Details = Mapping[int, Mapping[str, object]]
"""What a webhook event says of an item beyond its id (item_id, source, uri, sha256), by item id."""

if TYPE_CHECKING:
    from lookalike.workflow.banks import Banks

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
CREATE TABLE IF NOT EXISTS subjects (
    item INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL,
    source TEXT NOT NULL,
    uri TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    pdq TEXT NOT NULL
);
"""

# Columns added since a table was first created: (table, column, declaration), applied in order
# to a database that lacks them. Only ever appended to.
MIGRATIONS: tuple[tuple[str, str, str], ...] = (
    ("decisions", "item_id", "TEXT NOT NULL DEFAULT ''"),
    ("decisions", "source", "TEXT NOT NULL DEFAULT ''"),
    ("decisions", "uri", "TEXT NOT NULL DEFAULT ''"),
    ("decisions", "sha256", "TEXT NOT NULL DEFAULT ''"),
    ("decisions", "pdq", "TEXT NOT NULL DEFAULT ''"),
    ("decisions", "score", "REAL"),
)


class FlagStatus(StrEnum):
    OPEN = "open"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    CLOSED = "closed"  # its item went away before a review (the audit record says why)


SYSTEM = "system"  # the reviewer of closes nobody decided: an item deleted, swept or found gone


@dataclass(frozen=True)
class Policy:
    name: str
    labels: str  # the TOML text, as added
    created_at: int


@dataclass(frozen=True)
class NewFlag:
    item: int
    policy: str  # a policy's name, or "bank:NAME" for a match in a hash bank
    label: str
    score: float  # a policy's cosine, or a bank match's PDQ distance in bits


@dataclass(frozen=True)
class Subject:
    """What a flag is about, as it was when flagged; the audit keeps it after the item is gone."""

    item_id: str
    source: str
    uri: str
    sha256: str
    pdq: str = ""


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
    """One review of one flag: the audit record, with what the flag was about at the time."""

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
    subject: Subject | None = None  # None: decided before subjects were kept (or never known)
    score: float | None = None


class Workflow:
    """The side store of one collection; safe to share between threads (one connection, one lock)."""

    def __init__(self, path: str, *, webhooks: Sequence[str] = ()) -> None:
        self.path = path
        folder = Path(path).expanduser().resolve().parent
        if not folder.is_dir():
            raise ConfigError(f"The folder of the workflow database does not exist: {folder}")
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a decision acknowledged is a decision kept
            self._db.executescript(SCHEMA + claims.SCHEMA + outbox.SCHEMA + waves.SCHEMA)
            from lookalike.workflow.banks import SCHEMA as BANK_SCHEMA

            self._db.executescript(BANK_SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"Cannot open the workflow database {path}: {exc}") from exc
        self._lock = threading.RLock()
        self.claims = claims.Claims(self._db, self._lock)
        self.outbox = outbox.Outbox(self._db, self._lock, webhooks)
        self.waves = waves.Waves(self._db, self._lock)
        self._banks: Banks | None = None

    def _migrate(self) -> None:
        """Add the columns an older database lacks, in one transaction (two processes may open it at once)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for table, column, declaration in MIGRATIONS:
                present = {str(row[1]) for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @property
    def banks(self) -> Banks:
        """The hash banks and block list kept in this database (banks.py)."""
        if self._banks is None:
            from lookalike.workflow.banks import Banks

            with self._lock:
                if self._banks is None:
                    self._banks = Banks(self)
        return self._banks

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction, lock held: committed on exit, rolled back on error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

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

    def add_flags(
        self,
        flags: Sequence[NewFlag],
        *,
        at: int | None = None,
        details: Details | None = None,
        subjects: Mapping[int, Subject] | None = None,
    ) -> int:
        """Record matches; an item already flagged for the same policy and label keeps its flag.

        A flag closed because its item went away opens again when the item is stored and
        flagged again (the same picture indexed anew): nobody has reviewed it yet. Each flag
        raised (new or opened again) writes a ``flag.created`` webhook event in the same
        transaction; ``details`` are what the event says of each item. ``subjects`` (by item)
        are what the audit shows of each item once it is gone.
        """
        when = int(time.time()) if at is None else at
        with self._lock:
            self._db.execute("BEGIN")
            try:
                raised = [flag for flag in map(self._raise, flags, [when] * len(flags)) if flag is not None]
                for flag in raised:
                    self.outbox.enqueue("flag.created", outbox.flag_event(flag, details), when=when)
                self._put_subjects(
                    {f.item: subjects[f.item] for f in flags if subjects and f.item in subjects}
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if raised:
            self.outbox.notify()
        return len(raised)

    def _raise(self, flag: NewFlag, when: int) -> Flag | None:
        """Insert a flag, or open a closed one again; None when it is there already (lock held)."""
        row = self._db.execute(
            "INSERT INTO flags (item, policy, label, score, created_at) VALUES (?,?,?,?,?)"
            " ON CONFLICT (item, policy, label) DO UPDATE SET status = 'open',"
            " score = excluded.score, created_at = excluded.created_at WHERE status = 'closed'"
            " RETURNING id",
            (flag.item, flag.policy, flag.label, float(flag.score), when),
        ).fetchone()
        if row is None:
            return None
        return Flag(int(row[0]), flag.item, flag.policy, flag.label, float(flag.score), when, FlagStatus.OPEN)

    def put_subjects(self, subjects: Mapping[int, Subject]) -> None:
        """Remember what items are (a review refreshes them just before it decides)."""
        with self._lock:
            self._put_subjects(subjects)

    def _put_subjects(self, subjects: Mapping[int, Subject]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO subjects (item, item_id, source, uri, sha256, pdq) VALUES (?,?,?,?,?,?)",
            [(i, s.item_id, s.source, s.uri, s.sha256, s.pdq) for i, s in subjects.items()],
        )

    def subjects(self, items: Sequence[int]) -> dict[int, Subject]:
        """What these items were when last flagged or reviewed; an item never described has only its
        PDQ hash (if one is kept), and an item with neither is left out."""
        found: dict[int, Subject] = {}
        unique = sorted(set(items))
        for start in range(0, len(unique), 500):
            batch = unique[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = self._query(
                "SELECT s.item, s.item_id, s.source, s.uri, s.sha256, COALESCE(NULLIF(s.pdq, ''), h.pdq, '')"
                f" FROM subjects s LEFT JOIN hashes h ON h.item = s.item WHERE s.item IN ({marks})",
                batch,
            )
            found.update({int(r[0]): Subject(*(str(v) for v in r[1:])) for r in rows})
            hashed = self._query(f"SELECT item, pdq FROM hashes WHERE item IN ({marks})", batch)
            for item, pdq in hashed:
                found.setdefault(int(item), Subject("", "", "", "", str(pdq)))
        return found

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

    def open_items(self) -> list[int]:
        """The items that have an open flag (a refused upload's flag is about an item never stored: left out)."""
        rows = self._query(
            "SELECT DISTINCT item FROM flags WHERE status = 'open' AND id NOT IN (SELECT flag FROM refusals)"
        )
        return [int(row[0]) for row in rows]

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
        details: Details | None = None,
    ) -> list[Decision]:
        """Set the flags' status and append one audit record each, in one transaction.

        Raises:
            ClaimedError: another reviewer holds one of the flags (claims.py); nothing is decided.
        """
        if decision not in (FlagStatus.CONFIRMED, FlagStatus.DISMISSED):
            raise ConfigError("A review confirms or dismisses a flag.")
        claims.check_reviewer(reviewer, "A review")  # as a claim checks it: a decision needs no claim
        when = int(time.time()) if at is None else at
        flags = self.flags_by_id(flag_ids)
        missing = set(flag_ids) - {f.id for f in flags}
        if missing:
            raise ItemNotFoundError(f"No flag with id {', '.join(map(str, sorted(missing)))}.")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self.claims.check([f.id for f in flags], reviewer, time.time())
                records = self._decide(flags, decision, reviewer, note, when, took_down, details)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self.outbox.notify()
        return records

    def items_gone(
        self, items: Sequence[int], note: str, *, reviewer: str = SYSTEM, at: int | None = None
    ) -> list[Decision]:
        """Close the open flags of items no longer stored, with ``note`` as the reason, and forget
        their hashes; one transaction. Returns the audit records written (none if nothing was open)."""
        when = int(time.time()) if at is None else at
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # Read inside the write transaction: a close racing another sees each flag once.
                records = self._decide(
                    self._open_flags(items), FlagStatus.CLOSED, reviewer, note, when, False
                )
                self._forget_hashes(items)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if records:
            self.outbox.notify()
        return records

    def take_down(
        self,
        flag_id: int,
        decision: FlagStatus,
        *,
        reviewer: str,
        note: str = "",
        at: int | None = None,
        details: Details | None = None,
    ) -> list[Decision]:
        """Record a takedown once its item is deleted: the flag decided, the item's other open
        flags closed ("taken down with flag N"), its hash forgotten; one transaction. (The picture
        went on the block list before the item was deleted: ``Banks.block``.)"""
        if decision is not FlagStatus.CONFIRMED:
            raise ConfigError("Only a confirmed flag can take its item down.")
        claims.check_reviewer(reviewer, "A review")
        when = int(time.time()) if at is None else at
        flag = self.flag(flag_id)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self.claims.check([flag.id], reviewer, time.time())
                records = self._decide([flag], decision, reviewer, note, when, True, details)
                others = [f for f in self._open_flags([flag.item]) if f.id != flag.id]
                closing = f"taken down with flag {flag.id}"
                records += self._decide(others, FlagStatus.CLOSED, reviewer, closing, when, True, details)
                self._forget_hashes([flag.item])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self.outbox.notify()
        return records

    def _open_flags(self, items: Sequence[int]) -> list[Flag]:
        """The open flags of these items (lock held, inside a transaction)."""
        found: list[Flag] = []
        unique = sorted(set(items))
        for start in range(0, len(unique), 500):  # SQLite's bound on host parameters
            batch = unique[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                "SELECT id, item, policy, label, score, created_at, status FROM flags"
                f" WHERE status = 'open' AND item IN ({marks}) ORDER BY id",
                batch,
            ).fetchall()
            found += [self._flag(row) for row in rows]
        return found

    def _decide(
        self,
        flags: Sequence[Flag],
        decision: FlagStatus,
        reviewer: str,
        note: str,
        when: int,
        took_down: bool,
        details: Details | None = None,
    ) -> list[Decision]:
        """Set the flags' status and append one audit record each, with the subject it was about
        (read here, before a takedown forgets the item's hash; lock held, inside a transaction);
        their claims go, and each decision writes its ``flag.decided`` webhook event."""
        ids = []
        subjects = self.subjects([f.item for f in flags])
        for flag in flags:
            subject = subjects.get(flag.item) or Subject("", "", "", "")
            self._db.execute("UPDATE flags SET status = ? WHERE id = ?", (str(decision), flag.id))
            cursor = self._db.execute(
                "INSERT INTO decisions (flag, item, policy, label, decision, reviewer, note, at,"
                " took_down, item_id, source, uri, sha256, pdq, score) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                    subject.item_id,
                    subject.source,
                    subject.uri,
                    subject.sha256,
                    subject.pdq,
                    float(flag.score),
                ),
            )
            ids.append(int(cursor.lastrowid or 0))
        records = [
            Decision(
                i,
                f.id,
                f.item,
                f.policy,
                f.label,
                decision,
                reviewer,
                note,
                when,
                took_down,
                subjects.get(f.item),
                float(f.score),
            )
            for i, f in zip(ids, flags, strict=True)
        ]
        self.claims.drop([f.id for f in flags])
        for flag, record in zip(flags, records, strict=True):
            self.outbox.enqueue("flag.decided", outbox.decision_event(flag, record, details), when=when)
        return records

    def raise_wave(
        self,
        representative: int,
        score: float,
        when: int,
        details: Details | None = None,
        *,
        extra: Mapping[str, object] | None = None,
    ) -> int:
        """The flag of a new wave, on its representative item, with its ``flag.created`` event
        (lock held, inside waves.py's transaction); its id."""
        new = NewFlag(representative, waves.POLICY, waves.LABEL, score)
        flag = self._raise(new, when)
        if flag is None:  # the item's earlier wave flag, decided: a new wave gets a flag of its own
            row = self._db.execute(
                "SELECT id FROM flags WHERE item = ? AND policy = ? AND label = ?",
                (representative, waves.POLICY, waves.LABEL),
            ).fetchone()
            raise ConfigError(f"Item {representative} already has wave flag {row[0] if row else '?'}.")
        self.outbox.enqueue("flag.created", {**outbox.flag_event(flag, details), **(extra or {})}, when=when)
        return flag.id

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
            "SELECT id, flag, item, policy, label, decision, reviewer, note, at, took_down,"
            f" item_id, source, uri, sha256, pdq, score FROM decisions{where} ORDER BY id"
        )
        for row in self._query(sql, args):
            id_, flag, item, policy, label, decision, reviewer, note, at, took = row[:10]
            item_id, source, uri, sha256, pdq, score = row[10:]
            known = any((item_id, source, uri, sha256, pdq))
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
                Subject(str(item_id), str(source), str(uri), str(sha256), str(pdq)) if known else None,
                float(score) if score is not None else None,
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

    def hashes_of(self, items: Sequence[int]) -> dict[int, tuple[str, int]]:
        """The PDQ hash and quality of these items (those that have one)."""
        found: dict[int, tuple[str, int]] = {}
        unique = sorted(set(items))
        for start in range(0, len(unique), 500):
            batch = unique[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = self._query(f"SELECT item, pdq, quality FROM hashes WHERE item IN ({marks})", batch)
            found.update({int(i): (str(p), int(q)) for i, p, q in rows})
        return found

    def forget_hashes(self, items: Sequence[int]) -> None:
        with self._lock:
            self._forget_hashes(items)

    def _forget_hashes(self, items: Sequence[int]) -> None:
        self._db.executemany("DELETE FROM hashes WHERE item = ?", [(i,) for i in items])
