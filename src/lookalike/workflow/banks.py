"""Hash banks: named lists of PDQ hashes (and SHA-256 digests) that uploads are matched against.

A bank is ``block`` (a match flags the upload, or refuses it when the bank's action is
``refuse``) or ``allow`` (a negative bank: a match suppresses every block bank's PDQ match of
that upload, as HMA's users ask for known false positives); each has labels, an on/off switch
and its own maximum distance. The block list of take-downs is the bank ``takedowns`` (block,
refuse): confirming a flag with a take-down puts the picture's SHA-256 and PDQ hash there, in
the same transaction as the decision, with who took it down, when, and the flag.

Every change to a bank is one row of ``bank_log`` (who, when, what, which entry) and bumps
``bank_version``, which the in-memory index of the entries (matcher.py) compares to know it is
current. Entries are never reused: ids only grow and a removed entry's id is appended to
``bank_removed``, so the index catches up by reading what is new since its last look.

What uploads matched (floods and their alerts, refused uploads) is kept by matches.py.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from lookalike.errors import ConfigError, ItemNotFoundError
from lookalike.workflow.db import Subject

if TYPE_CHECKING:
    from lookalike.workflow.db import Workflow
    from lookalike.workflow.matcher import Matcher
    from lookalike.workflow.matches import Matches

SCHEMA = """
CREATE TABLE IF NOT EXISTS banks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    max_distance INTEGER NOT NULL,
    labels TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bank_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bank INTEGER NOT NULL,
    pdq BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    labels TEXT NOT NULL,
    note TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    added_by TEXT NOT NULL,
    flag INTEGER,
    item INTEGER,
    item_id TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    uri TEXT NOT NULL DEFAULT '',
    paused_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS bank_entries_by_hash ON bank_entries (bank, pdq, sha256);
CREATE INDEX IF NOT EXISTS bank_entries_by_sha256 ON bank_entries (sha256);
CREATE TABLE IF NOT EXISTS bank_removed (seq INTEGER PRIMARY KEY AUTOINCREMENT, entry INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bank_version (id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER NOT NULL);
INSERT OR IGNORE INTO bank_version (id, version) VALUES (0, 0);
CREATE TABLE IF NOT EXISTS bank_matches (
    entry INTEGER NOT NULL,
    item INTEGER NOT NULL,
    distance INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (entry, item)
);
CREATE INDEX IF NOT EXISTS bank_matches_by_time ON bank_matches (entry, at);
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    item INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    source TEXT NOT NULL,
    uri TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    pdq TEXT NOT NULL,
    entry INTEGER NOT NULL,
    distance INTEGER NOT NULL,
    reason TEXT NOT NULL,
    flag INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refusals_by_flag ON refusals (flag);
CREATE TABLE IF NOT EXISTS bank_alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    entry INTEGER NOT NULL,
    matches INTEGER NOT NULL,
    message TEXT NOT NULL,
    resolved_at INTEGER,
    resolved_by TEXT
);
CREATE TABLE IF NOT EXISTS bank_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    bank TEXT NOT NULL,
    entry INTEGER,
    pdq TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    item INTEGER,
    item_id TEXT NOT NULL,
    source TEXT NOT NULL,
    uri TEXT NOT NULL,
    flag INTEGER,
    note TEXT NOT NULL
);
"""

TAKEDOWNS = "takedowns"
DEFAULT_DISTANCE = 31  # PDQ's own recommendation for "the same picture"
MIN_QUALITY = 50  # PDQ: a hash of lower quality describes too little structure to match on
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LABEL = re.compile(r"^[A-Za-z0-9][^\s,]{0,99}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_ENTRY = (
    "e.id, b.name, e.pdq, e.sha256, e.labels, e.note, e.added_at, e.added_by, e.flag, e.item,"
    " e.item_id, e.source, e.uri, e.paused_at"
)


class BankKind(StrEnum):
    BLOCK = "block"  # a match flags the upload (or refuses it: action refuse)
    ALLOW = "allow"  # a negative bank: a match suppresses the upload's block matches


class BankAction(StrEnum):
    FLAG = "flag"  # store the upload and flag it for review
    REFUSE = "refuse"  # do not store it; report it and flag the attempt


@dataclass(frozen=True)
class Bank:
    id: int
    name: str
    kind: BankKind
    action: BankAction
    enabled: bool
    max_distance: int
    labels: tuple[str, ...]
    created_at: int


@dataclass(frozen=True)
class NewEntry:
    """A hash to put in a bank: a PDQ hash (64 hex digits, or "" for none) and/or a SHA-256 digest."""

    pdq: str
    sha256: str = ""
    labels: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Entry:
    id: int
    bank: str
    pdq: str  # "" when the entry has only a SHA-256
    sha256: str
    labels: tuple[str, ...]
    note: str
    added_at: int
    added_by: str
    flag: int | None  # a take-down: the flag that was confirmed
    item: int | None  # a take-down: the item taken down
    subject: Subject | None  # a take-down: what the item was
    paused_at: int | None  # its auto-actions paused by a flood since then

    def describe(self) -> str:
        """Why an upload matching this entry is refused, in the report's words."""
        if self.flag is not None:
            when = time.strftime("%Y-%m-%d", time.gmtime(self.added_at))
            return f"taken down on {when} by {self.added_by}, flag {self.flag}"
        labels = f" ({', '.join(self.labels)})" if self.labels else ""
        return f"in bank {self.bank}, entry {self.id}{labels}"


@dataclass(frozen=True)
class BankChange:
    """One change to a bank: the audit record (``lookalike audit`` lists them with the reviews)."""

    id: int
    at: int
    who: str
    action: str  # create, enable, disable, set, add, import, remove, pause, resume
    bank: str
    entry: int | None
    pdq: str
    sha256: str
    item: int | None
    subject: Subject | None
    flag: int | None
    note: str


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"A bank name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit; got {name!r}."
        )
    return name


def check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    for label in labels:
        if not _LABEL.match(label):
            raise ConfigError(
                f"A label is 1-100 characters without spaces or commas, starting with a letter or digit; got {label!r}."
            )
    return tuple(dict.fromkeys(labels))


def check_distance(distance: int) -> int:
    if not 0 <= distance <= 256:
        raise ConfigError(f"A bank's --max-distance is between 0 and 256 bits, got {distance}.")
    return distance


def pdq_bytes(pdq: str) -> bytes:
    if not pdq:
        return b""
    if not _HEX.match(pdq):
        raise ConfigError(f"{pdq[:80]!r} is not a PDQ hash (64 hex digits).")
    return bytes.fromhex(pdq)


class Banks:
    """The banks of one workflow database; shares its connection, lock and transactions."""

    def __init__(self, workflow: Workflow) -> None:
        self._workflow = workflow
        self._matcher: Matcher | None = None
        self._matches: Matches | None = None

    @property
    def matches(self) -> Matches:
        """What uploads matched: floods and their alerts, refused uploads (matches.py)."""
        if self._matches is None:
            from lookalike.workflow.matches import Matches

            self._matches = Matches(self._workflow, self)
        return self._matches

    @property
    def matcher(self) -> Matcher:
        """The process's one in-memory index of these banks' hashes (matcher.py), built on first use."""
        if self._matcher is None:
            from lookalike.workflow.matcher import Matcher

            self._matcher = Matcher(self)
        return self._matcher

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._workflow._query(sql, args)

    # the banks themselves

    def create(
        self,
        name: str,
        *,
        kind: BankKind = BankKind.BLOCK,
        action: BankAction = BankAction.FLAG,
        max_distance: int = DEFAULT_DISTANCE,
        labels: Sequence[str] = (),
        by: str,
        at: int | None = None,
    ) -> Bank:
        check_name(name)
        check_distance(max_distance)
        labels = check_labels(labels)
        if name == TAKEDOWNS and (kind, action) != (BankKind.BLOCK, BankAction.REFUSE):
            raise ConfigError(
                f"The bank {TAKEDOWNS} is the block list of take-downs: kind block, action refuse."
            )
        when = int(time.time()) if at is None else at
        with self._workflow.transaction() as db:
            if self._bank_row(db, name) is not None:
                raise ConfigError(f"A bank named {name!r} exists already.")
            self._insert_bank(db, name, kind, action, max_distance, labels, when)
            self._log(db, when, by, "create", name, note=f"{kind} {action} max distance {max_distance}")
        return self.bank(name)

    @staticmethod
    def _insert_bank(
        db: sqlite3.Connection,
        name: str,
        kind: BankKind,
        action: BankAction,
        max_distance: int,
        labels: Sequence[str],
        when: int,
    ) -> int:
        cursor = db.execute(
            "INSERT INTO banks (name, kind, action, enabled, max_distance, labels, created_at)"
            " VALUES (?, ?, ?, 1, ?, ?, ?)",
            (name, str(kind), str(action), max_distance, " ".join(labels), when),
        )
        db.execute("UPDATE bank_version SET version = version + 1")
        return int(cursor.lastrowid or 0)

    @staticmethod
    def _bank_row(db: sqlite3.Connection, name: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = db.execute(
            "SELECT id, name, kind, action, enabled, max_distance, labels, created_at FROM banks WHERE name = ?",
            (name,),
        ).fetchone()
        return row

    @staticmethod
    def _bank(row: tuple[Any, ...]) -> Bank:
        id_, name, kind, action, enabled, distance, labels, created = row
        return Bank(
            int(id_),
            str(name),
            BankKind(str(kind)),
            BankAction(str(action)),
            bool(enabled),
            int(distance),
            tuple(str(labels).split()),
            int(created),
        )

    def banks(self) -> list[Bank]:
        rows = self._query(
            "SELECT id, name, kind, action, enabled, max_distance, labels, created_at FROM banks ORDER BY name"
        )
        return [self._bank(row) for row in rows]

    def bank(self, name: str) -> Bank:
        for bank in self.banks():
            if bank.name == name:
                return bank
        known = ", ".join(b.name for b in self.banks()) or "none"
        raise ConfigError(f"No bank named {name!r} (banks: {known}).")

    def sizes(self) -> dict[str, tuple[int, int]]:
        """Per bank name: (entries, entries paused by a flood)."""
        rows = self._query(
            "SELECT b.name, COUNT(e.id), COUNT(e.paused_at) FROM banks b"
            " LEFT JOIN bank_entries e ON e.bank = b.id GROUP BY b.name"
        )
        return {str(n): (int(c), int(p)) for n, c, p in rows}

    def update(
        self,
        name: str,
        *,
        by: str,
        enabled: bool | None = None,
        max_distance: int | None = None,
        action: BankAction | None = None,
        labels: Sequence[str] | None = None,
        note: str = "",
        at: int | None = None,
    ) -> Bank:
        """Switch a bank on or off, or change its distance, action or labels; each change is logged."""
        when = int(time.time()) if at is None else at
        if max_distance is not None:
            check_distance(max_distance)
        new_labels = check_labels(labels) if labels is not None else None
        with self._workflow.transaction() as db:
            row = self._bank_row(db, name)
            if row is None:
                raise ConfigError(f"No bank named {name!r}.")
            bank = self._bank(row)
            if action is not None and bank.kind is BankKind.ALLOW and action is BankAction.REFUSE:
                raise ConfigError("An allow bank suppresses matches; it cannot refuse uploads.")
            if action is not None and name == TAKEDOWNS and action is not BankAction.REFUSE:
                raise ConfigError(
                    f"The bank {TAKEDOWNS} refuses what was taken down; lift a block with bank remove."
                )
            changes: list[tuple[str, str, object]] = []
            if enabled is not None and enabled != bank.enabled:
                changes.append(("enable" if enabled else "disable", "enabled", int(enabled)))
            if max_distance is not None and max_distance != bank.max_distance:
                changes.append(("set", "max_distance", max_distance))
            if action is not None and action != bank.action:
                changes.append(("set", "action", str(action)))
            if new_labels is not None and new_labels != bank.labels:
                changes.append(("set", "labels", " ".join(new_labels)))
            for verb, column, value in changes:
                db.execute(f"UPDATE banks SET {column} = ? WHERE id = ?", (value, bank.id))
                said = f"{column} {value}" if verb == "set" else ""
                self._log(db, when, by, verb, name, note="; ".join(p for p in (said, note) if p))
            if changes:
                db.execute("UPDATE bank_version SET version = version + 1")
        return self.bank(name)

    # entries

    def add(
        self, name: str, entries: Sequence[NewEntry], *, by: str, action: str = "add", at: int | None = None
    ) -> tuple[int, int]:
        """Put hashes in a bank; returns (added, already there). ``action`` "import" logs one row for all."""
        when = int(time.time()) if at is None else at
        rows = []
        for entry in entries:
            if not entry.pdq and not entry.sha256:
                raise ConfigError("An entry needs a PDQ hash or a SHA-256 digest.")
            rows.append(
                (pdq_bytes(entry.pdq), entry.sha256.lower(), " ".join(check_labels(entry.labels)), entry.note)
            )
        with self._workflow.transaction() as db:
            row = self._bank_row(db, name)
            if row is None:
                raise ConfigError(f"No bank named {name!r}.")
            bank = self._bank(row)
            added = 0
            for pdq, sha, labels, note in rows:
                cursor = db.execute(
                    "INSERT INTO bank_entries (bank, pdq, sha256, labels, note, added_at, added_by)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (bank.id, pdq, sha, labels, note, when, by),
                )
                if cursor.rowcount and action == "add":
                    self._log(
                        db,
                        when,
                        by,
                        "add",
                        name,
                        entry=cursor.lastrowid,
                        pdq=pdq.hex(),
                        sha256=sha,
                        note=note,
                    )
                added += cursor.rowcount
            if action != "add" and added:
                self._log(db, when, by, action, name, note=f"{added} entries")
            if added:
                db.execute("UPDATE bank_version SET version = version + 1")
        return added, len(rows) - added

    def remove(
        self, name: str, targets: Sequence[str], *, by: str, note: str = "", at: int | None = None
    ) -> list[Entry]:
        """Take entries out of a bank by entry id, PDQ hash or SHA-256; each removal is logged (lifting a
        take-down's block is removing its entry from ``takedowns``). Nothing matched is an error."""
        when = int(time.time()) if at is None else at
        bank = self.bank(name)
        with self._workflow.transaction() as db:
            found: dict[int, Entry] = {}
            for target in targets:
                value = target.strip().lower()
                args: list[object]
                if value.isdigit() and len(value) < 19:
                    where, args = "e.id = ?", [int(value)]
                elif _HEX.match(value):
                    where, args = "(e.pdq = ? OR e.sha256 = ?)", [bytes.fromhex(value), value]
                else:
                    raise ConfigError(f"{target[:80]!r} is neither an entry id nor a 64-hex-digit hash.")
                rows = db.execute(
                    f"SELECT {_ENTRY} FROM bank_entries e JOIN banks b ON b.id = e.bank"
                    f" WHERE e.bank = ? AND {where}",
                    [bank.id, *args],
                ).fetchall()
                if not rows:
                    raise ItemNotFoundError(f"Bank {name} holds no entry {target[:80]!r}.")
                found.update({int(r[0]): self._entry(r) for r in rows})
            for entry in found.values():
                db.execute("DELETE FROM bank_entries WHERE id = ?", (entry.id,))
                db.execute("INSERT INTO bank_removed (entry) VALUES (?)", (entry.id,))
                action = "unblock" if entry.flag is not None else "remove"
                self._log(
                    db,
                    when,
                    by,
                    action,
                    name,
                    entry=entry.id,
                    pdq=entry.pdq,
                    sha256=entry.sha256,
                    item=entry.item,
                    subject=entry.subject,
                    flag=entry.flag,
                    note=note,
                )
            db.execute("UPDATE bank_version SET version = version + 1")
        return list(found.values())

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> Entry:
        id_, bank, pdq, sha, labels, note, added, by, flag, item, item_id, source, uri, paused = row
        subject = Subject(str(item_id), str(source), str(uri), str(sha), bytes(pdq).hex()) if item else None
        return Entry(
            int(id_),
            str(bank),
            bytes(pdq).hex(),
            str(sha),
            tuple(str(labels).split()),
            str(note),
            int(added),
            str(by),
            int(flag) if flag is not None else None,
            int(item) if item is not None else None,
            subject,
            int(paused) if paused is not None else None,
        )

    def entries(self, name: str, *, batch: int = 10_000) -> Iterator[list[Entry]]:
        """Every entry of a bank, oldest first, a batch at a time (an export of millions)."""
        bank = self.bank(name)
        last = 0
        while True:
            rows = self._query(
                f"SELECT {_ENTRY} FROM bank_entries e JOIN banks b ON b.id = e.bank"
                " WHERE e.bank = ? AND e.id > ? ORDER BY e.id LIMIT ?",
                (bank.id, last, batch),
            )
            if not rows:
                return
            found = [self._entry(r) for r in rows]
            last = found[-1].id
            yield found

    def entries_by_id(self, ids: Sequence[int]) -> dict[int, Entry]:
        found: dict[int, Entry] = {}
        unique = sorted(set(ids))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._query(
                f"SELECT {_ENTRY} FROM bank_entries e JOIN banks b ON b.id = e.bank WHERE e.id IN ({marks})",
                part,
            )
            found.update({int(r[0]): self._entry(r) for r in rows})
        return found

    def removals(self, entries: Sequence[int]) -> dict[int, BankChange]:
        """How entries no longer in their bank left it (removed, or a block lifted): the log's record."""
        found: dict[int, BankChange] = {}
        unique = sorted(set(entries))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            where = f" WHERE entry IN ({marks}) AND action IN ('remove', 'unblock')"
            found.update({c.entry: c for c in self._changes(where, part) if c.entry is not None})
        return found

    def by_sha256(self, digests: Sequence[str]) -> dict[str, list[Entry]]:
        """The entries of enabled block banks holding these SHA-256 digests, by digest."""
        found: dict[str, list[Entry]] = {}
        unique = sorted({d for d in digests if d})
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._query(
                f"SELECT {_ENTRY} FROM bank_entries e JOIN banks b ON b.id = e.bank"
                f" WHERE e.sha256 IN ({marks}) AND b.enabled = 1 AND b.kind = 'block' ORDER BY e.id",
                part,
            )
            for row in rows:
                entry = self._entry(row)
                found.setdefault(entry.sha256, []).append(entry)
        return found

    # the take-down block list

    def block(self, *, flag: int, item: int, subject: Subject, by: str, at: int | None = None) -> None:
        """Put a picture about to be taken down on the block list (its SHA-256 and its PDQ hash, if
        any); a picture blocked already is left as it is."""
        when = int(time.time()) if at is None else at
        with self._workflow.transaction() as db:
            self._block(db, flag=flag, item=item, subject=subject, by=by, at=when)

    def _block(
        self, db: sqlite3.Connection, *, flag: int, item: int, subject: Subject, by: str, at: int
    ) -> None:
        pdq = subject.pdq
        row = self._bank_row(db, TAKEDOWNS)
        if row is None:  # created by the first take-down, whose decision is the audit record
            bank = self._insert_bank(
                db, TAKEDOWNS, BankKind.BLOCK, BankAction.REFUSE, DEFAULT_DISTANCE, (), at
            )
        else:
            bank = int(row[0])
        db.execute(
            "INSERT INTO bank_entries (bank, pdq, sha256, labels, note, added_at, added_by, flag, item, item_id,"
            " source, uri) VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                bank,
                pdq_bytes(pdq),
                subject.sha256,
                f"taken down with flag {flag}",
                at,
                by,
                flag,
                item,
                subject.item_id,
                subject.source,
                subject.uri,
            ),
        )
        db.execute("UPDATE bank_version SET version = version + 1")

    # what the matcher reads (matcher.py)

    def version(self) -> int:
        return int(self._query("SELECT version FROM bank_version")[0][0])

    def load(self, after: int = 0, batch: int = 200_000) -> Iterator[list[tuple[int, int, bytes]]]:
        """(entry id, bank id, PDQ bytes) of every entry with a PDQ hash and an id over ``after``, by id."""
        while True:
            rows = self._query(
                "SELECT id, bank, pdq FROM bank_entries WHERE id > ? AND length(pdq) = 32 ORDER BY id LIMIT ?",
                (after, batch),
            )
            if not rows:
                return
            after = int(rows[-1][0])
            yield [(int(i), int(b), bytes(p)) for i, b, p in rows]

    def removed_since(self, seq: int) -> tuple[int, list[int]]:
        """The last removal's sequence number, and the entries removed after ``seq``."""
        rows = self._query("SELECT seq, entry FROM bank_removed WHERE seq > ? ORDER BY seq", (seq,))
        last = int(rows[-1][0]) if rows else max(seq, self._last_removal())
        return last, [int(r[1]) for r in rows]

    def _last_removal(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM bank_removed")[0][0])

    def paused(self) -> frozenset[int]:
        return frozenset(
            int(r[0]) for r in self._query("SELECT id FROM bank_entries WHERE paused_at IS NOT NULL")
        )

    # the log of changes (the audit)

    @staticmethod
    def _log(
        db: sqlite3.Connection,
        at: int,
        who: str,
        action: str,
        bank: str,
        *,
        entry: int | None = None,
        pdq: str = "",
        sha256: str = "",
        item: int | None = None,
        subject: Subject | None = None,
        flag: int | None = None,
        note: str = "",
    ) -> None:
        s = subject or Subject("", "", "", "")
        db.execute(
            "INSERT INTO bank_log (at, who, action, bank, entry, pdq, sha256, item, item_id, source, uri, flag, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (at, who, action, bank, entry, pdq, sha256, item, s.item_id, s.source, s.uri, flag, note),
        )

    def changes(self, *, since: int | None = None, until: int | None = None) -> list[BankChange]:
        clauses, args = [], []
        if since is not None:
            clauses.append("at >= ?")
            args.append(since)
        if until is not None:
            clauses.append("at < ?")
            args.append(until)
        return self._changes(" WHERE " + " AND ".join(clauses) if clauses else "", args)

    def _changes(self, where: str, args: Sequence[object]) -> list[BankChange]:
        rows = self._query(
            "SELECT id, at, who, action, bank, entry, pdq, sha256, item, item_id, source, uri, flag, note"
            f" FROM bank_log{where} ORDER BY id",
            args,
        )
        return [
            BankChange(
                int(r[0]),
                int(r[1]),
                str(r[2]),
                str(r[3]),
                str(r[4]),
                int(r[5]) if r[5] is not None else None,
                str(r[6]),
                str(r[7]),
                int(r[8]) if r[8] is not None else None,
                Subject(str(r[9]), str(r[10]), str(r[11]), str(r[7]), str(r[6]))
                if r[8] is not None
                else None,
                int(r[12]) if r[12] is not None else None,
                str(r[13]),
            )
            for r in rows
        ]
