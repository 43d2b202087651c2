"""The screen at ingest: every new whole picture against the hash banks, before it is embedded or stored.

Its SHA-256 is matched against the enabled block banks (the take-down block list among them), its
PDQ hash (quality 50 or more) against every enabled bank at the bank's own distance. A match in a
``refuse`` bank keeps it out: it is reported as skipped ("blocked: taken down on DATE by X, flag
N") and its attempt raises a flag. A match in a ``flag`` bank is flagged once the picture is
stored, like a policy's match. Every match counts towards a flood (workflow/matches.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lookalike.usecases.context import Context
from lookalike.usecases.policies import item_details
from lookalike.workflow import NewFlag, Subject
from lookalike.workflow.banks import MIN_QUALITY, Bank, BankAction, Entry
from lookalike.workflow.matches import Alert, Refused

if TYPE_CHECKING:
    from lookalike.ingest.pipeline import Upload
    from lookalike.store import Item
    from lookalike.workflow.matcher import Verdict


class Screen:
    """What the ingestor asks about each chunk's new pictures, and tells once they are stored."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._banks = ctx.workflow.banks
        self._lock = threading.Lock()
        self._pending: dict[int, list[NewFlag]] = {}  # flags for pictures about to be stored
        self._subjects: dict[int, Subject] = {}
        self.alerts: list[Alert] = []
        self.refused: list[Subject] = []  # what was refused: its bytes must not stay kept (ingest.py)

    def check(self, uploads: Sequence[Upload]) -> dict[int, str]:
        """Refusals, by id, of new pictures matching a refuse bank; the flags of flag-bank matches are
        kept until the pictures are stored (``stored``)."""
        from lookalike.scan.hashes import to_bits

        if not uploads or not self._banks.banks():
            return {}
        snapshot = self._banks.matcher.snapshot()
        exact = self._banks.by_sha256([u.sha256 for u in uploads])
        hashed = [u for u in uploads if u.pdq is not None and u.pdq[1] >= MIN_QUALITY]
        verdicts = snapshot.lookup(to_bits([u.pdq[0] for u in hashed if u.pdq])) if hashed else []
        near = {u.id: v for u, v in zip(hashed, verdicts, strict=True)}
        settings = self._ctx.settings
        flood = [(m.entry, u.id, m.distance) for u in hashed for m in near[u.id].matches]
        flood += [(e.id, u.id, 0) for u in uploads for e in exact.get(u.sha256, [])]
        over: set[tuple[int, int]] = set()
        if flood:
            raised, over = self._banks.matches.note_matches(
                flood, limit=settings.bank_flood_matches, window_s=settings.bank_flood_window_s
            )
            self.alerts += raised
        paused = snapshot.paused  # as they were before this chunk's matches
        banks = {b.name: b for b in snapshot.banks.values()}
        refusals: list[Refused] = []
        reasons: dict[int, str] = {}
        for upload in uploads:
            subject = Subject(
                upload.item_id, upload.source, upload.uri, upload.sha256, upload.pdq[0] if upload.pdq else ""
            )
            held = paused | {entry for entry, item in over if item == upload.id}
            hit = self._refusal(
                upload, subject, exact.get(upload.sha256, []), near.get(upload.id), held, banks
            )
            if hit is not None:
                refusals.append(hit)
                reasons[upload.id] = hit.reason
                continue
            flags = [
                NewFlag(upload.id, f"bank:{e.bank}", self._label(e, banks.get(e.bank)), 0.0)
                for e in exact.get(upload.sha256, [])
            ]
            verdict = near.get(upload.id)
            flags += [
                NewFlag(upload.id, f"bank:{m.bank.name}", self._label_of(m.entry, m.bank), float(m.distance))
                for m in (verdict.matches if verdict else ())
            ]
            if flags:
                with self._lock:
                    self._pending[upload.id] = _unique(flags)
                    self._subjects[upload.id] = subject
        if refusals:
            self._banks.matches.refuse(refusals)
            with self._lock:
                self.refused += [r.subject for r in refusals]
        return reasons

    def _refusal(
        self,
        upload: Upload,
        subject: Subject,
        exact: Sequence[Entry],
        verdict: Verdict | None,
        paused: frozenset[int],
        banks: dict[str, Bank],
    ) -> Refused | None:
        for entry in exact:  # the same bytes: never suppressed, never paused
            bank = banks.get(entry.bank)
            if bank is not None and bank.action is BankAction.REFUSE:
                reason = f"blocked: {entry.describe()}"
                return Refused(
                    upload.id, subject, entry.id, 0, reason, f"bank:{entry.bank}", self._label(entry, bank)
                )
        for match in verdict.matches if verdict else ():
            if match.bank.action is BankAction.REFUSE and match.entry not in paused:
                near = self._banks.entries_by_id([match.entry]).get(match.entry)
                if near is None:
                    continue  # removed a moment ago
                entry = near
                reason = f"blocked: {entry.describe()} (a near copy: PDQ distance {match.distance})"
                return Refused(
                    upload.id,
                    subject,
                    entry.id,
                    match.distance,
                    reason,
                    f"bank:{entry.bank}",
                    self._label(entry, match.bank),
                )
        return None

    @staticmethod
    def _label(entry: Entry | None, bank: Bank | None) -> str:
        """A flag's label: a take-down's, else the entry's first label, else its bank's, else "match"."""
        if entry is not None and entry.flag is not None:
            return "taken down"
        if entry is not None and entry.labels:
            return entry.labels[0]
        return bank.labels[0] if bank is not None and bank.labels else "match"

    def _label_of(self, entry_id: int, bank: Bank) -> str:
        return self._label(self._banks.entries_by_id([entry_id]).get(entry_id), bank)

    def stored(self, items: Sequence[Item]) -> int:
        """Flag the stored pictures that matched a flag bank (or a paused refuse entry); how many flags."""
        with self._lock:
            flags = [f for item in items for f in self._pending.pop(item.id, [])]
            subjects = {item.id: self._subjects.pop(item.id) for item in items if item.id in self._subjects}
        if not flags:
            return 0
        return self._ctx.workflow.add_flags(flags, details=item_details(items), subjects=subjects)


def _unique(flags: list[NewFlag]) -> list[NewFlag]:
    # One flag an (item, policy, label): the nearest match's.
    best: dict[tuple[str, str], NewFlag] = {}
    for flag in sorted(flags, key=lambda f: f.score):
        best.setdefault((flag.policy, flag.label), flag)
    return list(best.values())
