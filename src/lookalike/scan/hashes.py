"""PDQ hash lists and Hamming distances: matching stored hashes against a list, grouping by distance."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lookalike.errors import ConfigError
from lookalike.scan.neighbours import Pairs

DEFAULT_MAX_DISTANCE = 31  # PDQ's own recommendation for "the same picture"
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)

Bits = npt.NDArray[np.uint8]  # (n, 32): one 256-bit hash a row


@dataclass(frozen=True)
class ListedHash:
    line: int
    pdq: str
    label: str


def parse_hash_list(text: str, name: str = "hash list") -> list[ListedHash]:
    """One hash a line (64 hex digits), optionally followed by a label; '#' starts a comment."""
    listed = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.replace(",", " ").replace("\t", " ").split(None, 1)
        if not _HEX.match(fields[0]):
            raise ConfigError(f"{name}, line {number}: {fields[0][:80]!r} is not a PDQ hash (64 hex digits).")
        listed.append(ListedHash(number, fields[0].lower(), fields[1].strip() if len(fields) > 1 else ""))
    if not listed:
        raise ConfigError(f"{name} holds no hashes (one 64-hex-digit PDQ hash a line, optional label).")
    return listed


def load_hash_list(path: str | Path) -> list[ListedHash]:
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"Hash list not found: {file}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the hash list {file}: {exc}") from exc
    return parse_hash_list(text, file.name)


def check_distance(max_distance: int) -> None:
    if not 0 <= max_distance <= 256:
        raise ConfigError(f"--max-distance must be between 0 and 256 bits, got {max_distance}.")


def to_bits(hashes: Sequence[str]) -> Bits:
    if not hashes:
        return np.zeros((0, 32), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(len(hashes), 32)


def distances(query: Bits, stored: Bits) -> npt.NDArray[np.uint16]:
    """Hamming distance of one hash (32 bytes) to every stored one."""
    return _POPCOUNT[np.bitwise_xor(stored, query[None, :])].sum(axis=1, dtype=np.uint16)


def within(queries: Bits, stored: Bits, max_distance: int) -> list[tuple[int, int, int]]:
    """Every (query row, stored row, distance) with distance <= max_distance."""
    found = []
    for q in range(len(queries)):
        d = distances(queries[q], stored)
        for s in np.nonzero(d <= max_distance)[0].tolist():
            found.append((q, s, int(d[s])))
    return found


def pairs_within_distance(bits: Bits, max_distance: int) -> Pairs:
    """Every pair of rows (left < right) within ``max_distance`` bits; scores are the distances.

    Exhaustive (FAISS's binary flat index, batched range searches of popcounts): fine to a few
    hundred thousand pictures; PDQ's distance 31 over 256 bits admits no cheap exact index.
    """
    import faiss

    n = len(bits)
    lefts, rights, values = [], [], []
    if n > 1:
        index = faiss.IndexBinaryFlat(256)
        index.add(np.ascontiguousarray(bits))
        for start in range(0, n, 4096):
            block = np.ascontiguousarray(bits[start : start + 4096])
            limits, found, labels = index.range_search(block, max_distance + 1)  # distances below the radius
            bounds: npt.NDArray[np.int64] = np.asarray(limits, dtype=np.int64)
            rows = np.repeat(np.arange(start, start + len(block), dtype=np.int64), bounds[1:] - bounds[:-1])
            cols = labels.astype(np.int64)
            keep = cols > rows
            lefts.append(rows[keep])
            rights.append(cols[keep])
            values.append(found[keep].astype(np.float32))
    if not lefts:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0, dtype=np.float32))
    return Pairs(np.concatenate(lefts), np.concatenate(rights), np.concatenate(values))
