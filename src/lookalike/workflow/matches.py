"""What uploads matched in the hash banks: floods and their alerts, and uploads refused.

A flood: when one entry matches more than N uploads within the window (settings
``bank_flood_matches``, ``bank_flood_window_s``), its auto-action (refusal) is paused from that
match on, the uploads are stored and flagged for review instead, and one alert is kept
(``bank_alerts``) until a person resumes the entry. Every match is kept (``bank_matches``: entry,
item, distance, time), so a flag raised by a bank says what it matched (``matched``).

A refused upload raises a flag on the item it would have been, with a row of ``refusals`` saying
what it was (item id, source, uri, SHA-256, PDQ hash) and why; such a flag stays open although its
item was never stored (``Workflow.open_items`` leaves it out of the check for gone items).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lookalike.errors import ConfigError, ItemNotFoundError
from lookalike.workflow.banks import _ENTRY, Banks, Entry
from lookalike.workflow.db import Subject

if TYPE_CHECKING:
    from lookalike.workflow.db import Workflow


@dataclass(frozen=True)
class Alert:
    id: int
    at: int
    entry: int
    bank: str
    matches: int
    message: str
    resolved_at: int | None
    resolved_by: str | None


@dataclass(frozen=True)
class Refused:
    """An upload refused at ingest: what it was, what it matched, and why."""

    item: int
    subject: Subject
    entry: int
    distance: int
    reason: str
    policy: str  # "bank:NAME": the flag it raises
    label: str


class Matches:
    """The matches, floods and refusals of one workflow database; shares its connection and transactions."""

    def __init__(self, workflow: Workflow, banks: Banks) -> None:
        self._workflow = workflow
        self._banks = banks

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._workflow._query(sql, args)

    def note_matches(
        self, matches: Sequence[tuple[int, int, int]], *, limit: int, window_s: float, at: int | None = None
    ) -> tuple[list[Alert], set[tuple[int, int]]]:
        """Record (entry, item, distance) matches in order; an entry that matched more than ``limit``
        uploads within ``window_s`` is paused from that match on, with one alert. Returns the alerts
        raised and the (entry, item) matches that came at or after a pause this call made."""
        when = int(time.time()) if at is None else at
        raised: list[Alert] = []
        over: set[tuple[int, int]] = set()
        paused_now: set[int] = set()
        with self._workflow.transaction() as db:
            for entry, item, distance in matches:
                db.execute(
                    "INSERT INTO bank_matches (entry, item, distance, at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (entry, item) DO UPDATE SET at = excluded.at, distance = excluded.distance",
                    (entry, item, distance, when),
                )
                if entry in paused_now:
                    over.add((entry, item))
                    continue
                count = int(
                    db.execute(
                        "SELECT COUNT(*) FROM bank_matches WHERE entry = ? AND at > ?",
                        (entry, when - window_s),
                    ).fetchone()[0]
                )
                if count <= limit:
                    continue
                paused = db.execute(
                    "UPDATE bank_entries SET paused_at = ? WHERE id = ? AND paused_at IS NULL", (when, entry)
                )
                if not paused.rowcount:
                    continue  # paused already (or gone): one alert a flood
                paused_now.add(entry)
                over.add((entry, item))
                raised.append(self._alert(db, when, entry, count, limit, window_s))
            if raised:
                db.execute("UPDATE bank_version SET version = version + 1")
        return raised, over

    def _alert(
        self, db: sqlite3.Connection, when: int, entry: int, count: int, limit: int, window_s: float
    ) -> Alert:
        row = db.execute(
            f"SELECT {_ENTRY} FROM bank_entries e JOIN banks b ON b.id = e.bank WHERE e.id = ?", (entry,)
        ).fetchone()
        found = Banks._entry(row)
        message = (
            f"entry {entry} of bank {found.bank} matched {count} uploads within {window_s / 3600:g} h"
            f" (more than {limit}): its refusals of near copies are paused and its matches flagged for"
            f" review instead; `lookalike bank resume {found.bank} {entry}` resumes them"
        )
        cursor = db.execute(
            "INSERT INTO bank_alerts (at, entry, matches, message) VALUES (?, ?, ?, ?)",
            (when, entry, count, message),
        )
        Banks._log(
            db,
            when,
            "system",
            "pause",
            found.bank,
            entry=entry,
            pdq=found.pdq,
            sha256=found.sha256,
            note=message,
        )
        return Alert(int(cursor.lastrowid or 0), when, entry, found.bank, count, message, None, None)

    def refuse(self, refused: Sequence[Refused], *, at: int | None = None) -> list[int]:
        """Record refused uploads: each raises (or keeps open) a flag on the item it would have been,
        with a refusal row that says what it was and why; one transaction. A flag raised writes its
        ``flag.created`` webhook event there too, saying what the upload was and why it was refused.
        Returns the flag ids."""
        from lookalike.workflow import outbox
        from lookalike.workflow.db import NewFlag

        when = int(time.time()) if at is None else at
        flags: list[int] = []
        workflow = self._workflow
        raised_any = False
        with workflow.transaction() as db:
            for r in refused:
                raised = workflow._raise(NewFlag(r.item, r.policy, r.label, float(r.distance)), when)
                if raised is not None:
                    s = r.subject
                    about = {
                        r.item: {"item_id": s.item_id, "source": s.source, "uri": s.uri, "sha256": s.sha256}
                    }
                    event = {**outbox.flag_event(raised, about), "refused": r.reason}
                    workflow.outbox.enqueue("flag.created", event, when=when)
                    raised_any = True
                flag = int(
                    db.execute(
                        "SELECT id FROM flags WHERE item = ? AND policy = ? AND label = ?",
                        (r.item, r.policy, r.label),
                    ).fetchone()[0]
                )
                s = r.subject
                db.execute(
                    "INSERT INTO refusals (at, item, item_id, source, uri, sha256, pdq, entry, distance, reason, flag)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        when,
                        r.item,
                        s.item_id,
                        s.source,
                        s.uri,
                        s.sha256,
                        s.pdq,
                        r.entry,
                        r.distance,
                        r.reason,
                        flag,
                    ),
                )
                db.execute(
                    "INSERT OR REPLACE INTO subjects (item, item_id, source, uri, sha256, pdq) VALUES (?,?,?,?,?,?)",
                    (r.item, s.item_id, s.source, s.uri, s.sha256, s.pdq),
                )
                flags.append(flag)
        if raised_any:
            workflow.outbox.notify()
        return flags

    def refusals_of(self, flags: Sequence[int]) -> dict[int, tuple[Subject, str]]:
        """The latest refused upload (what it was, why) of each of these flags that has one."""
        found: dict[int, tuple[Subject, str]] = {}
        unique = sorted(set(flags))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._query(
                "SELECT flag, item_id, source, uri, sha256, pdq, reason FROM refusals"
                f" WHERE flag IN ({marks}) ORDER BY id",
                part,
            )
            found.update({int(r[0]): (Subject(*(str(v) for v in r[1:6])), str(r[6])) for r in rows})
        return found

    def refused_match(self, flag: int) -> tuple[int, int, str] | None:
        """The entry, PDQ distance and reason of a flag's latest refused upload; None if it has none."""
        rows = self._query(
            "SELECT entry, distance, reason FROM refusals WHERE flag = ? ORDER BY id DESC LIMIT 1", (flag,)
        )
        return (int(rows[0][0]), int(rows[0][1]), str(rows[0][2])) if rows else None

    def matched_ids(self, item: int) -> list[tuple[int, int]]:
        """(entry id, distance) of every entry an item matched, nearest first, removed entries too."""
        rows = self._query(
            "SELECT entry, distance FROM bank_matches WHERE item = ? ORDER BY distance, entry", (item,)
        )
        return [(int(e), int(d)) for e, d in rows]

    def matched(self, item: int) -> list[tuple[Entry, int]]:
        """The bank entries an item (stored or refused) matched, with the distance: what a flag is about."""
        rows = self._query(
            "SELECT entry, distance FROM bank_matches WHERE item = ? ORDER BY distance", (item,)
        )
        entries = self._banks.entries_by_id([int(r[0]) for r in rows])
        return [(entries[int(e)], int(d)) for e, d in rows if int(e) in entries]

    def alerts(self, *, open_only: bool = False) -> list[Alert]:
        where = " WHERE a.resolved_at IS NULL" if open_only else ""
        rows = self._query(
            "SELECT a.id, a.at, a.entry, COALESCE(b.name, ''), a.matches, a.message, a.resolved_at, a.resolved_by"
            " FROM bank_alerts a LEFT JOIN bank_entries e ON e.id = a.entry LEFT JOIN banks b ON b.id = e.bank"
            f"{where} ORDER BY a.id"
        )
        return [
            Alert(int(i), int(at), int(e), str(b), int(m), str(msg), int(r) if r is not None else None, rb)
            for i, at, e, b, m, msg, r, rb in rows
        ]

    def resume(self, name: str, entry: int, *, by: str, note: str = "", at: int | None = None) -> Entry:
        """Lift a flood's pause of an entry (its matches are refused again); its alerts are resolved."""
        when = int(time.time()) if at is None else at
        bank = self._banks.bank(name)
        with self._workflow.transaction() as db:
            row = db.execute(
                f"SELECT {_ENTRY} FROM bank_entries e JOIN banks b ON b.id = e.bank WHERE e.id = ? AND e.bank = ?",
                (entry, bank.id),
            ).fetchone()
            if row is None:
                raise ItemNotFoundError(f"Bank {name} holds no entry {entry}.")
            found = Banks._entry(row)
            if found.paused_at is None:
                raise ConfigError(f"Entry {entry} of bank {name} is not paused.")
            db.execute("UPDATE bank_entries SET paused_at = NULL WHERE id = ?", (entry,))
            db.execute("DELETE FROM bank_matches WHERE entry = ?", (entry,))  # the flood's count starts again
            db.execute(
                "UPDATE bank_alerts SET resolved_at = ?, resolved_by = ? WHERE entry = ? AND resolved_at IS NULL",
                (when, by, entry),
            )
            Banks._log(
                db, when, by, "resume", name, entry=entry, pdq=found.pdq, sha256=found.sha256, note=note
            )
            db.execute("UPDATE bank_version SET version = version + 1")
        return found
