"""Milvus Lite as a process resource: who holds a database's lock, and letting go of it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

_OPEN: dict[str, int] = {}
"""Open LiteStores per database path in this process (Milvus Lite runs one server per path)."""
_OPEN_LOCK = threading.Lock()


def release(path: Path) -> None:
    from milvus_lite.server_manager import server_manager_instance

    with _OPEN_LOCK:
        left = _OPEN.get(str(path), 1) - 1
        _OPEN[str(path)] = max(left, 0)
    if left <= 0:
        server_manager_instance.release_server(str(path))
        return_free_memory()  # the server's segments (the whole collection) were just freed


def opened(path: Path) -> None:
    with _OPEN_LOCK:
        _OPEN[str(path)] = _OPEN.get(str(path), 0) + 1


def fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def lock_holder(path: Path) -> str | None:
    """' (pid N)' when another process holds Milvus Lite's lock on this database, '' if unknown who; None if free."""
    import fcntl

    lock = path / "LOCK"
    if not lock.exists():
        return None
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return None
    try:
        inode = os.stat(lock).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if len(parts) > 5 and parts[5].endswith(f":{inode}") and int(parts[4]) != os.getpid():
                return f" (pid {parts[4]})"
    except (OSError, ValueError):
        pass
    return ""


def return_free_memory() -> None:
    """Give memory that a large write freed back to the system.

    Milvus Lite decodes every insert into Python lists and Arrow buffers; freed, they stay with
    Arrow's allocator and in glibc's heap (hundreds of MB after 100K rows), and the next write's
    temporary buffers land on top of them. Measured by ``scripts/bench_store.py``.
    """
    import contextlib
    import ctypes
    import sys

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, for one): nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)
