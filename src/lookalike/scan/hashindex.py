"""An exact Hamming-radius index of 256-bit PDQ hashes: multi-index hashing (Norouzi et al., 2012).

The 256 bits are cut into ``m`` = 11 substrings of 23 or 24 bits. Two hashes within distance
``r`` differ in at most ``floor(r / m)`` bits of at least one substring (pigeonhole), so every
hash within ``r`` of a query is found by looking up, in each substring's table, the query's
substring with every pattern of at most ``f = ceil((r + 1) / m) - 1`` bits flipped; each
candidate found is then checked against the whole 256 bits. For PDQ's usual radius 31, ``f`` is
2: 3,119 probes a query, and at 10M random hashes about 3,000 candidates to check, instead of
10M. Nothing is approximate: the answer is the brute-force answer (tests/unit/test_hash_index.py).

A table is the positions of the hashes sorted by their substring (int32) and the offsets of each
value of the substring's leading ``log2(n)`` bits (CSR: one lookup a probe, no search), so the
memory grows with the hashes: 4 bytes a hash a table for the positions, about as much for the
offsets, 32 bytes a hash for the hashes; about 1.2 GB at 10M (scripts/bench_hash_index.py).
Radii where the probes would cost more than a scan (over 43 bits) are answered by a scan.

Pure numpy; one ``HashIndex`` is immutable once built (``build``), so readers share it freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import combinations

import numpy as np
import numpy.typing as npt

CHUNKS = 11
WIDTHS = tuple(256 // CHUNKS + (1 if i < 256 % CHUNKS else 0) for i in range(CHUNKS))
STARTS = tuple(int(s) for s in np.cumsum((0,) + WIDTHS[:-1]))
SMALL = 2048  # below this many hashes a scan is as fast as the tables, and needs no memory of its own
BATCH = 32  # queries probed together

Codes = npt.NDArray[np.uint8]  # (n, 32): one PDQ hash a row, its hex's bytes in order


@dataclass(frozen=True)
class Found:
    """Every (query row, indexed position, distance) within the radius; rows sorted by query then position."""

    query: npt.NDArray[np.int64]
    position: npt.NDArray[np.int64]
    distance: npt.NDArray[np.int64]


_WORD = np.array([start // 64 for start in STARTS], dtype=np.intp)
_OFFSET = np.array([start % 64 for start in STARTS], dtype=np.uint64)
_DROP = np.array([64 - width for width in WIDTHS], dtype=np.uint64)


def substrings(codes: Codes) -> npt.NDArray[np.uint32]:
    """Each hash's ``CHUNKS`` substrings as integers (bit 0 of the hash is the hex's first, most significant bit).

    A substring is bits ``[start, start + width)`` of the 128 bits of its word and the next one:
    shifted to the top of one 64-bit word, then down to its width; all substrings at once.
    """
    words = np.zeros((len(codes), 5), dtype=np.uint64)  # a zero fifth word: the last substring's "next"
    words[:, :4] = np.ascontiguousarray(codes).view(">u8")
    high, low = words[:, _WORD], words[:, _WORD + 1]
    # low >> (64 - offset) as two shifts, since a shift by 64 is not defined.
    top = (high << _OFFSET) | ((low >> np.uint64(1)) >> (np.uint64(63) - _OFFSET))
    return (top >> _DROP).astype(np.uint32)


@cache
def _flips(width: int, most: int, shift: int = 0) -> npt.NDArray[np.uint32]:
    """Every mask of ``width`` bits with at most ``most`` bits set, cut to its leading ``width - shift``
    bits (the part a table keys on), each once."""
    masks = [
        sum(1 << bit for bit in chosen) for k in range(most + 1) for chosen in combinations(range(width), k)
    ]
    return np.unique(np.array(masks, dtype=np.uint32) >> np.uint32(shift))


def flips_for(radius: int) -> int:
    """Bits to flip in each substring so that no hash within ``radius`` is missed."""
    return -(-(radius + 1) // CHUNKS) - 1


def _distances(words: npt.NDArray[np.uint64], query: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    counts = np.bitwise_count(words ^ query)  # (n, 2 or 4) bits set in each 64-bit word
    # Column adds: numpy's reduction along a short last axis is several times slower.
    total = counts[..., 0].astype(np.int64)
    for column in range(1, counts.shape[-1]):
        total += counts[..., column]
    return total


class HashIndex:
    """The hashes of one snapshot, findable by Hamming radius; built once, never changed.

    The tables are kept end to end: one array of positions (table t's at ``t * n``) and one of
    offsets (table t's from ``self._base[t]``), so a lookup probes every table in one pass.
    """

    def __init__(self, codes: Codes) -> None:
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 32)
        self.size = len(codes)
        self._words = codes.view(np.uint64)  # (n, 4), native order: only XOR and popcount touch it
        # Each table keys on the leading bits of its substring: about one hash a value.
        bits = max(8, int(np.ceil(np.log2(max(self.size, 2)))))
        self._shifts = np.array([max(0, w - bits) for w in WIDTHS], dtype=np.uint32)
        sizes = [(1 << (w - int(shift))) + 1 for w, shift in zip(WIDTHS, self._shifts, strict=True)]
        self._base = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self._order: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self._offsets: npt.NDArray[np.signedinteger] = np.zeros(0, dtype=np.int64)
        if self.size < SMALL:
            return
        order = np.empty(CHUNKS * self.size, dtype=np.int32)
        offsets: npt.NDArray[np.signedinteger] = np.empty(
            sum(sizes), dtype=np.int32 if self.size < 2**31 else np.int64
        )
        keys = np.empty((self.size, CHUNKS), dtype=np.uint32)
        for start in range(0, self.size, 1_000_000):  # a million at a time: bounded memory
            keys[start : start + 1_000_000] = substrings(codes[start : start + 1_000_000]) >> self._shifts
        for t in range(CHUNKS):
            column = keys[:, t]
            order[t * self.size : (t + 1) * self.size] = np.argsort(column, kind="stable")
            counts = np.bincount(column, minlength=sizes[t] - 1)
            table = offsets[self._base[t] : self._base[t] + sizes[t]]
            table[0] = 0
            np.cumsum(counts, out=table[1:])
        self._order, self._offsets = order, offsets

    @property
    def nbytes(self) -> int:
        """The memory the index holds (the hashes included)."""
        return int(self._words.nbytes + self._order.nbytes + self._offsets.nbytes)

    def within(self, queries: Codes, radius: int) -> Found:
        """Every indexed hash within ``radius`` bits of each query (exact)."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, 32)
        if not len(queries) or not self.size or radius < 0:
            return _EMPTY
        flips = flips_for(radius)
        if not len(self._order) or flips > 4:
            return self._scan(queries, radius)
        table, masks = _probes(flips, tuple(int(s) for s in self._shifts))
        if len(masks) * 4 > self.size:
            return self._scan(queries, radius)
        if len(queries) <= BATCH:
            return self._probe(queries, radius, table, masks)
        # A few dozen queries at a time: larger batches spill the caches and run slower a query.
        parts = [
            self._probe(queries[i : i + BATCH], radius, table, masks) for i in range(0, len(queries), BATCH)
        ]
        return Found(
            np.concatenate([p.query + i * BATCH for i, p in enumerate(parts)]),
            np.concatenate([p.position for p in parts]),
            np.concatenate([p.distance for p in parts]),
        )

    def _scan(self, queries: Codes, radius: int) -> Found:
        found_q, found_p, found_d = [], [], []
        words = queries.view(np.uint64)
        for row in range(len(queries)):
            distance = _distances(self._words, words[row])
            hits = np.nonzero(distance <= radius)[0]
            found_q.append(np.full(len(hits), row, dtype=np.int64))
            found_p.append(hits.astype(np.int64))
            found_d.append(distance[hits])
        return Found(np.concatenate(found_q), np.concatenate(found_p), np.concatenate(found_d))

    def _probe(
        self, queries: Codes, radius: int, table: npt.NDArray[np.intp], masks: npt.NDArray[np.uint32]
    ) -> Found:
        keys = substrings(queries) >> self._shifts  # (q, tables)
        probes = (keys[:, table] ^ masks).astype(np.int64) + self._base[table]  # (q, probes): into offsets
        low = self._offsets[probes].astype(np.int64)
        counts = (self._offsets[probes + 1] - low).ravel()
        total = int(counts.sum())
        if not total:
            return _EMPTY
        # Slots of every bucket probed, end to end: its start, then one more for each hash after it.
        starts = (low + (table * self.size).astype(np.int64)).ravel()
        ends = np.cumsum(counts)
        slots = np.repeat(starts - (ends - counts), counts) + np.arange(total, dtype=np.int64)
        words = queries.view(np.uint64)
        single = len(queries) == 1  # one query (one HTTP lookup): compared by broadcasting, no copies of it
        if single:
            row = np.zeros(total, dtype=np.int64)
        else:
            row = np.repeat(np.repeat(np.arange(len(queries), dtype=np.int64), len(masks)), counts)
        position = self._order[slots].astype(np.int64)
        # np.take, not [rows]: numpy's fancy indexing of 2-d rows is several times slower.
        found = np.take(self._words, position, axis=0)
        keep = _distances(found, words[0] if single else np.take(words, row, axis=0)) <= radius
        # A hash near the query in several substrings was found once per substring: keep it once.
        pair = np.unique(row[keep] << 32 | position[keep])
        row, position = pair >> 32, pair & 0xFFFFFFFF
        return Found(
            row, position, _distances(np.take(self._words, position, axis=0), np.take(words, row, axis=0))
        )


_EMPTY = Found(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


@cache
def _probes(flips: int, shifts: tuple[int, ...]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint32]]:
    """Every table's probe masks end to end, and the table each belongs to."""
    masks = [_flips(width, flips, shift) for width, shift in zip(WIDTHS, shifts, strict=True)]
    table = np.concatenate([np.full(len(m), t, dtype=np.intp) for t, m in enumerate(masks)])
    return table, np.concatenate(masks)


def brute_force(codes: Codes, queries: Codes, radius: int) -> Found:
    """The reference answer: every pair within ``radius`` by comparing each query with every hash."""
    index = HashIndex(np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 32)[:0])
    index.size = len(codes)
    index._words = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 32).view(np.uint64)
    if not len(queries) or not len(codes):
        return _EMPTY
    return index._scan(np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, 32), radius)
