"""The banks' PDQ hashes in memory, and the one answer to "which bank entries does this hash match".

Derived data with one owner (STYLE 11): ``Matcher`` alone builds the index of the entries, stamps
each snapshot with the ``bank_version`` it read, and before every lookup compares that stamp
with the database, catching up on what changed (new entries, removed ones, banks switched or
re-set, entries paused) so that a lookup answers exactly what the banks hold now, whichever
process changed them. New entries since the last build are scanned beside the index until they
are many, then the index is rebuilt; removed ones are masked out.

A snapshot is immutable: lookups run on it without a lock while another thread catches up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lookalike.scan.hashindex import Codes, Found, HashIndex, brute_force
from lookalike.workflow.banks import MIN_QUALITY, Bank, BankKind, Banks


@dataclass(frozen=True)
class Match:
    entry: int
    bank: Bank
    distance: int


@dataclass(frozen=True)
class Verdict:
    """What one hash matched: block banks' entries (none if an allow bank suppressed them) and allow banks'."""

    matches: tuple[Match, ...] = ()
    allowed_by: tuple[Match, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    version: int
    banks: dict[int, Bank]
    paused: frozenset[int]
    index: HashIndex
    ids: npt.NDArray[np.int64]  # entry id at each index position (ascending)
    bank_of: npt.NDArray[np.int64]
    alive: npt.NDArray[np.bool_]
    delta_codes: Codes  # entries added since the index was built, scanned
    delta_ids: npt.NDArray[np.int64]
    delta_banks: npt.NDArray[np.int64]
    built_to: int  # the last entry id in the index
    removed_seq: int
    dead: int = 0
    lookups: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        return int(self.alive.sum()) + len(self.delta_ids)

    def lookup(self, codes: Codes, *, only: set[str] | None = None) -> list[Verdict]:
        """Each hash's verdict against the enabled banks (``only``: just these), each bank at its own distance."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 32)
        banks = {i: b for i, b in self.banks.items() if b.enabled and (only is None or b.name in only)}
        if not banks or not len(codes):
            return [Verdict() for _ in range(len(codes))]
        radius = max(b.max_distance for b in banks.values())
        found = self.index.within(codes, radius)
        rows, entries, bank_ids, distances = self._kept(found, self.ids, self.bank_of, self.alive)
        if len(self.delta_ids):
            near = brute_force(self.delta_codes, codes, radius)
            alive = np.ones(len(self.delta_ids), dtype=bool)
            more = self._kept(near, self.delta_ids, self.delta_banks, alive)
            rows, entries, bank_ids, distances = (
                np.concatenate(p) for p in zip((rows, entries, bank_ids, distances), more, strict=True)
            )
        per_query: list[list[Match]] = [[] for _ in range(len(codes))]
        for row, entry, bank_id, distance in zip(
            rows.tolist(), entries.tolist(), bank_ids.tolist(), distances.tolist(), strict=True
        ):
            bank = banks.get(bank_id)
            if bank is not None and distance <= bank.max_distance:
                per_query[row].append(Match(entry, bank, distance))
        verdicts = []
        for matched in per_query:
            matched.sort(key=lambda m: (m.distance, m.entry))
            allowed = tuple(m for m in matched if m.bank.kind is BankKind.ALLOW)
            blocked = () if allowed else tuple(m for m in matched if m.bank.kind is BankKind.BLOCK)
            verdicts.append(Verdict(blocked, allowed))
        return verdicts

    @staticmethod
    def _kept(
        found: Found, ids: npt.NDArray[np.int64], bank_of: npt.NDArray[np.int64], alive: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int64], ...]:
        keep = alive[found.position]
        position = found.position[keep]
        return found.query[keep], ids[position], bank_of[position], found.distance[keep]


class Matcher:
    """The banks' entries in memory for one process, always as current as the database."""

    def __init__(self, banks: Banks, *, rebuild_at: int = 20_000) -> None:
        self._banks = banks
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self.rebuild_at = rebuild_at  # scanned new entries past which the index is rebuilt
        self.builds = 0

    def snapshot(self) -> Snapshot:
        """The current snapshot: checked against the database's version, caught up if it changed."""
        version = self._banks.version()
        current = self._snapshot
        if current is not None and current.version == version:
            return current
        with self._lock:
            current = self._snapshot
            if current is None or current.version != version:
                current = self._catch_up(current)
                self._snapshot = current
            return current

    def _catch_up(self, old: Snapshot | None) -> Snapshot:
        # Read the version first: anything changed after it is seen by the next lookup.
        version = self._banks.version()
        banks = {b.id: b for b in self._banks.banks()}
        paused = self._banks.paused()
        if old is None:
            return self._build(version, banks, paused)
        removed_seq, removed = self._banks.removed_since(old.removed_seq)
        alive = old.alive
        dead = old.dead
        gone = np.asarray([r for r in removed if r <= old.built_to], dtype=np.int64)
        if len(gone):
            positions = np.searchsorted(old.ids, gone)
            positions = positions[
                (positions < len(old.ids)) & (old.ids[np.minimum(positions, len(old.ids) - 1)] == gone)
            ]
            alive = alive.copy()
            dead += int(alive[positions].sum())
            alive[positions] = False
        fresh = [row for chunk in self._banks.load(after=old.built_to) for row in chunk]
        if len(fresh) > self.rebuild_at + len(old.ids) // 20 or dead > len(old.ids) // 4:
            return self._build(version, banks, paused)
        codes = np.frombuffer(b"".join(p for _, _, p in fresh), dtype=np.uint8).reshape(-1, 32)
        return Snapshot(
            version,
            banks,
            paused,
            old.index,
            old.ids,
            old.bank_of,
            alive,
            codes,
            np.asarray([i for i, _, _ in fresh], dtype=np.int64),
            np.asarray([b for _, b, _ in fresh], dtype=np.int64),
            old.built_to,
            removed_seq,
            dead,
        )

    def _build(self, version: int, banks: dict[int, Bank], paused: frozenset[int]) -> Snapshot:
        removed_seq, _ = self._banks.removed_since(0)
        ids: list[npt.NDArray[np.int64]] = []
        bank_of: list[npt.NDArray[np.int64]] = []
        codes: list[Codes] = []
        for chunk in self._banks.load():
            ids.append(np.fromiter((i for i, _, _ in chunk), dtype=np.int64, count=len(chunk)))
            bank_of.append(np.fromiter((b for _, b, _ in chunk), dtype=np.int64, count=len(chunk)))
            codes.append(np.frombuffer(b"".join(p for _, _, p in chunk), dtype=np.uint8).reshape(-1, 32))
        all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        all_codes = np.concatenate(codes) if codes else np.zeros((0, 32), dtype=np.uint8)
        self.builds += 1
        return Snapshot(
            version,
            banks,
            paused,
            HashIndex(all_codes),
            all_ids,
            np.concatenate(bank_of) if bank_of else np.zeros(0, dtype=np.int64),
            np.ones(len(all_ids), dtype=bool),
            np.zeros((0, 32), dtype=np.uint8),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            int(all_ids[-1]) if len(all_ids) else 0,
            removed_seq,
        )


__all__ = ["MIN_QUALITY", "Match", "Matcher", "Snapshot", "Verdict"]
