"""Where a `lookalike serve` holding a Milvus Lite database listens: a small file beside the database.

``DB.serve.json`` (for ``./lookalike.db``: ``./lookalike.db.serve.json``) holds the server's address,
process id and collection. The server writes it durably once it listens and removes it when it stops
listening. A record left by a killed server is stale: its process is gone, or its address does not
answer ``GET /health``; commands ignore it (and the next server replaces it).

Nothing here imports httpx unless a record exists.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from lookalike import durable

SUFFIX = ".serve.json"
HEALTH_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Record:
    """A `lookalike serve` holding a database: where it listens, its process, what it serves."""

    url: str
    pid: int
    collection: str


def record_path(db: str) -> Path | None:
    """The record of a Milvus Lite database (None for a Milvus server URI: it has no lock to share)."""
    if "://" in db:
        return None
    path = Path(db).expanduser().resolve()
    return path.with_name(path.name + SUFFIX)


def announce(db: str, collection: str, url: str) -> Path | None:
    """Record, durably, that this process serves ``db`` at ``url``; returns the record's path."""
    path = record_path(db)
    if path is None:
        return None
    record = {"url": url, "pid": os.getpid(), "collection": collection, "db": str(Path(db).expanduser())}
    killed_mid_write = f".{glob.escape(path.name)}.*{durable.TEMPORARY_SUFFIX}"
    for debris in path.parent.glob(killed_mid_write):
        debris.unlink(missing_ok=True)
    durable.write_text(path, json.dumps(record) + "\n", step="serve-record")
    return path


def withdraw(path: Path | None) -> None:
    """Remove this process's record; a record another server has written since is left alone."""
    if path is None:
        return
    record = read(path)
    if record is not None and record.pid == os.getpid():
        path.unlink(missing_ok=True)
        durable.fsync_folder(path.parent)


def read(path: Path) -> Record | None:
    """The record at ``path``; None when there is none or it cannot be read (torn, foreign)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Record(str(data["url"]), int(data["pid"]), str(data["collection"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live(db: str) -> Record | None:
    """The record of the `lookalike serve` holding ``db`` now; None when none does (or it is stale)."""
    path = record_path(db)
    if path is None or not path.is_file():
        return None
    record = read(path)
    if record is None or not _alive(record.pid) or not _answers(record.url):
        return None
    return record


def _alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False  # this process serves no database to itself
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _answers(url: str) -> bool:
    import httpx

    try:
        # No proxy: the server is on this machine (or where its record says), never behind HTTP_PROXY.
        answer = httpx.get(url.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S, trust_env=False)
        return answer.status_code == 200 and answer.json().get("status") == "ok"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
