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

Codes = npt.NDArray[np.uint8]  # (n, 32): one PDQ hash a row, its hex's bytes in order


@dataclass(frozen=True)
class Found:
    """Every (query row, indexed position, distance) within the radius; rows sorted by query then position."""

    query: npt.NDArray[np.int64]
    position: npt.NDArray[np.int64]
    distance: npt.NDArray[np.int64]


def substrings(codes: Codes) -> npt.NDArray[np.uint32]:
    """Each hash's ``CHUNKS`` substrings as integers (bit 0 of the hash is the hex's first, most significant bit)."""
    words = np.ascontiguousarray(codes).view(">u8").astype(np.uint64)  # (n, 4), big-endian
    out = np.empty((len(codes), CHUNKS), dtype=np.uint32)
    for i, (start, width) in enumerate(zip(STARTS, WIDTHS, strict=True)):
        word, offset = divmod(start, 64)
        if offset + width <= 64:
            value = (words[:, word] >> np.uint64(64 - offset - width)) & np.uint64((1 << width) - 1)
        else:
            high = 64 - offset
            low = width - high
            value = ((words[:, word] & np.uint64((1 << high) - 1)) << np.uint64(low)) | (
                words[:, word + 1] >> np.uint64(64 - low)
            )
        out[:, i] = value.astype(np.uint32)
    return out


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
    return np.bitwise_count(words ^ query).sum(axis=-1, dtype=np.int64)


class HashIndex:
    """The hashes of one snapshot, findable by Hamming radius; built once, never changed."""

    def __init__(self, codes: Codes) -> None:
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 32)
        self.size = len(codes)
        self._words = codes.view(np.uint64)  # (n, 4), native order: only XOR and popcount touch it
        self._order: list[npt.NDArray[np.int32]] = []
        self._offsets: list[npt.NDArray[np.int32]] = []
        # Each table keys on the leading bits of its substring: about one hash a value.
        self._shifts = [max(0, w - max(8, int(np.ceil(np.log2(max(self.size, 2)))))) for w in WIDTHS]
        if self.size < SMALL:
            return
        for i, (width, shift) in enumerate(zip(WIDTHS, self._shifts, strict=True)):
            keys = np.empty(self.size, dtype=np.uint32)
            for start in range(0, self.size, 1_000_000):  # substrings of a million at a time: bounded memory
                keys[start : start + 1_000_000] = substrings(codes[start : start + 1_000_000])[:, i] >> shift
            self._order.append(np.argsort(keys, kind="stable").astype(np.int32))
            offsets = np.zeros((1 << (width - shift)) + 1, dtype=np.int32)
            np.cumsum(np.bincount(keys, minlength=1 << (width - shift)), out=offsets[1:])
            self._offsets.append(offsets)

    @property
    def nbytes(self) -> int:
        """The memory the index holds (the hashes included)."""
        arrays: list[npt.NDArray[np.generic]] = [self._words, *self._order, *self._offsets]
        return int(sum(a.nbytes for a in arrays))

    def within(self, queries: Codes, radius: int) -> Found:
        """Every indexed hash within ``radius`` bits of each query (exact)."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, 32)
        if not len(queries) or not self.size or radius < 0:
            empty = np.zeros(0, dtype=np.int64)
            return Found(empty, empty, empty)
        flips = flips_for(radius)
        probes = (
            sum(len(_flips(w, flips, s)) for w, s in zip(WIDTHS, self._shifts, strict=True))
            if flips <= 4
            else 1 << 40
        )
        if not self._order or probes * 4 > self.size:
            return self._scan(queries, radius)
        return self._probe(queries, radius, flips)

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

    def _probe(self, queries: Codes, radius: int, flips: int) -> Found:
        keys = substrings(queries)
        rows, positions = [], []
        for i, (width, shift) in enumerate(zip(WIDTHS, self._shifts, strict=True)):
            masks = _flips(width, flips, shift)
            probes = ((keys[:, i : i + 1] >> np.uint32(shift)) ^ masks[None, :]).ravel()
            offsets = self._offsets[i]
            low = offsets[probes].astype(np.int64)
            counts = offsets[probes + 1].astype(np.int64) - low
            total = int(counts.sum())
            if not total:
                continue
            ends = np.cumsum(counts)
            slots = np.repeat(low - (ends - counts), counts) + np.arange(total, dtype=np.int64)
            positions.append(self._order[i][slots].astype(np.int64))
            rows.append(np.repeat(np.repeat(np.arange(len(queries), dtype=np.int64), len(masks)), counts))
        if not positions:
            empty = np.zeros(0, dtype=np.int64)
            return Found(empty, empty, empty)
        row = np.concatenate(rows)
        position = np.concatenate(positions)
        distance = _distances(self._words[position], queries.view(np.uint64)[row])
        keep = distance <= radius
        # A hash near the query in several substrings was found once per substring: keep it once.
        pair = np.unique(row[keep] << 32 | position[keep])
        row, position = pair >> 32, pair & 0xFFFFFFFF
        distance = _distances(self._words[position], queries.view(np.uint64)[row])
        return Found(row, position, distance)


def brute_force(codes: Codes, queries: Codes, radius: int) -> Found:
    """The reference answer: every pair within ``radius`` by comparing each query with every hash."""
    index = HashIndex.__new__(HashIndex)
    index.size = len(codes)
    index._words = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 32).view(np.uint64)
    index._order, index._offsets, index._shifts = [], [], []
    if not len(queries) or not len(codes):
        empty = np.zeros(0, dtype=np.int64)
        return Found(empty, empty, empty)
    return index._scan(np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, 32), radius)
