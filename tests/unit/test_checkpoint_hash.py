"""A checkpoint is hashed once, and again only when the file changes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from lookalike.embed import checkpoints


def test_a_checkpoint_is_hashed_once_while_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights" * 1000)
    calls: list[Path] = []
    real = checkpoints._sha256
    monkeypatch.setattr(checkpoints, "_sha256", lambda path: calls.append(path) or real(path))
    cache = tmp_path / "cache"
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert checkpoints.file_sha256(weights, cache) == expected
    assert checkpoints.file_sha256(str(weights), cache) == expected
    assert len(calls) == 1

    weights.write_bytes(b"other" * 1000)  # rewritten in place: another size and time
    assert checkpoints.file_sha256(weights, cache) == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert len(calls) == 2

    same_size = weights.read_bytes().replace(b"other", b"OTHER")
    stat = weights.stat()
    weights.write_bytes(same_size)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert checkpoints.file_sha256(weights, cache) == hashlib.sha256(same_size).hexdigest()
    assert len(calls) == 3


def test_a_damaged_remembered_hash_is_computed_again(tmp_path: Path) -> None:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"w" * 100)
    cache = tmp_path / "cache"
    checkpoints.file_sha256(weights, cache)
    for entry in (cache / "hashes").iterdir():
        entry.write_text('{"sha256": "not a hash"', encoding="utf-8")
    assert checkpoints.file_sha256(weights, cache) == hashlib.sha256(b"w" * 100).hexdigest()
