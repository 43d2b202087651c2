"""The PDQ hash index answers exactly what comparing every hash answers, at every radius and size."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.scan.hashes import to_bits
from lookalike.scan.hashindex import CHUNKS, SMALL, WIDTHS, HashIndex, brute_force, flips_for, substrings


def near(codes: np.ndarray, rng: np.random.Generator, most: int) -> np.ndarray:
    """Each hash with up to ``most`` random bits flipped."""
    bits = np.unpackbits(codes, axis=1)
    for row in bits:
        row[rng.choice(256, int(rng.integers(0, most + 1)), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def pairs(found: object) -> set[tuple[int, int, int]]:
    return set(zip(found.query.tolist(), found.position.tolist(), found.distance.tolist(), strict=True))  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [0, 1, 100, SMALL + 1, 50_000])
@pytest.mark.parametrize("radius", [0, 8, 31, 40, 47])
def test_the_index_finds_exactly_what_brute_force_finds(size: int, radius: int) -> None:
    rng = np.random.default_rng(size * 1000 + radius)
    codes = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
    if size:
        codes[size // 2 :] = near(codes[: size - size // 2], rng, 6)  # clusters of close hashes
        queries = np.concatenate([near(codes[rng.integers(0, size, 60)], rng, radius + 4), codes[:3]])
    else:
        queries = rng.integers(0, 256, size=(5, 32), dtype=np.uint8)
    queries = np.concatenate([queries, rng.integers(0, 256, size=(20, 32), dtype=np.uint8)])
    index = HashIndex(codes)
    found = index.within(queries, radius)
    assert pairs(found) == pairs(brute_force(codes, queries, radius))
    if size:
        assert set(range(60, 60 + min(3, size))) <= set(found.query.tolist())  # a stored hash finds itself
    assert list(zip(found.query.tolist(), found.position.tolist(), strict=True)) == sorted(
        zip(found.query.tolist(), found.position.tolist(), strict=True)
    )


def test_substrings_read_the_hex_from_its_first_bit() -> None:
    first = to_bits(["8" + "0" * 63])  # only the hex's first (most significant) bit set
    last = to_bits(["0" * 63 + "1"])
    assert substrings(first)[0].tolist() == [1 << (WIDTHS[0] - 1)] + [0] * (CHUNKS - 1)
    assert substrings(last)[0].tolist() == [0] * (CHUNKS - 1) + [1]
    assert flips_for(31) == 2 and flips_for(10) == 0 and flips_for(32) == 2 and flips_for(33) == 3


def test_the_index_grows_with_its_hashes_well_under_8_gb_at_ten_million() -> None:
    codes = np.random.default_rng(1).integers(0, 256, size=(200_000, 32), dtype=np.uint8)
    # 32 bytes the hash, 44 its positions in the tables, and the offsets (about one a hash a table).
    per_hash = HashIndex(codes).nbytes / len(codes)
    assert per_hash < 150 and per_hash * 10_000_000 < 1.5e9
