"""A checkpoint file's SHA-256, computed once and remembered by its path, size, modification time and inode.

A collection records the hash of the checkpoint it was embedded with, and the exported towers of a
checkpoint are found by it; hashing a 600 MB file on every command cost more than the query.
A remembered hash is used only while the file's size, modification time (ns), inode and device are
those it was computed on, so a file replaced or rewritten in place is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from lookalike import durable

_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _signature(path: Path) -> dict[str, int | str]:
    stat = os.stat(path)
    return {
        "path": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "inode": stat.st_ino,
        "device": stat.st_dev,
    }


def file_sha256(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """The file's SHA-256; with ``cache_dir``, remembered there for as long as the file is unchanged."""
    path = Path(path).expanduser().resolve()
    if cache_dir is None:
        return _sha256(path)
    before = _signature(path)
    name = hashlib.blake2b(str(path).encode(), digest_size=10).hexdigest()
    remembered = Path(cache_dir).expanduser() / "hashes" / f"{name}.json"
    if remembered.is_file():  # not a FIFO or a device put there
        try:
            entry = json.loads(remembered.read_text(encoding="utf-8"))
            if isinstance(entry, dict) and {k: entry.get(k) for k in before} == before:
                sha = entry.get("sha256")
                if isinstance(sha, str) and len(sha) == 64:
                    return sha
        except (OSError, ValueError):
            pass  # unreadable: computed again and rewritten
    sha = _sha256(path)
    if _signature(path) == before:  # not changed while it was read
        # A read-only cache: the hash is still right, only not remembered.
        with contextlib.suppress(OSError):
            durable.write_text(remembered, json.dumps({**before, "sha256": sha}), step="hash")
    return sha
