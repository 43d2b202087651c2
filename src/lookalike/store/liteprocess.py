"""Milvus Lite as a process resource: one store per collection, who holds a database's lock, letting go.

Milvus Lite lets one process hold a database, and runs one in-process server for it. Inside the
process, ``shared`` hands every opener of a (database, collection) the same store, so that the
command, the server and its jobs share one client and one read index; the last holder to close it
closes it. The clients connected to a database are counted, and that count and Milvus Lite's start
and stop of its server change under one lock, so that a connect never meets a half-stopped server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_OPEN: dict[str, int] = {}
"""Connected clients per database path in this process (Milvus Lite runs one server per path)."""
_OPEN_LOCK = threading.Lock()
"""Held while a client connects (Milvus Lite may start its server) and while one lets go (it may stop)."""


@dataclass
class _Shared:
    store: Any
    holders: int = 0
    closing: threading.Event | None = None  # the last holder's close is under way; set when it is done


_STORES: dict[tuple[str, str], _Shared] = {}
"""The store of each (database path, collection) in this process, and how many hold it."""
_STORES_LOCK = threading.Lock()
"""Guards _STORES only; never held while a store's own locks are taken (no lock order to keep)."""


def shared(key: tuple[str, str], make: Callable[[], T]) -> T:
    """The one store for ``key`` in this process, made on first use; each call is one more holder.

    An opener that arrives while the last holder is closing waits for that close to finish, then
    gets a new store: two stores of one collection never exist at once.
    """
    while True:
        with _STORES_LOCK:
            entry = _STORES.get(key)
            if entry is None:
                entry = _STORES[key] = _Shared(make())
            if entry.closing is None:
                entry.holders += 1
                store: T = entry.store
                return store
            closing = entry.closing
        closing.wait()


def let_go(key: tuple[str, str], store: object, close: Callable[[], None]) -> None:
    """One holder of ``store`` is done with it; the last one runs ``close``.

    A store that is not (or no longer) the shared one of its key, e.g. one built directly by a
    test, is simply closed.
    """
    with _STORES_LOCK:
        entry = _STORES.get(key)
        if entry is None or entry.store is not store or entry.closing is not None:
            entry = None
        else:
            entry.holders -= 1
            if entry.holders > 0:
                return
            entry.closing = threading.Event()
    try:
        close()
    finally:
        if entry is not None:
            with _STORES_LOCK:
                del _STORES[key]
            assert entry.closing is not None
            entry.closing.set()


def holders(key: tuple[str, str]) -> int:
    """How many hold the shared store of ``key`` (tests and diagnostics)."""
    with _STORES_LOCK:
        entry = _STORES.get(key)
        return entry.holders if entry is not None else 0


@dataclass
class Files:
    """A shared hold on a database's lock, taken to read Milvus Lite's files without starting it."""

    fd: int | None
    holders: int = 0


_FILES: dict[str, Files] = {}
"""Per database path: the hold on its lock while this process reads its files (Milvus Lite not started)."""


def hold_files(path: Path) -> Files | None:
    """Hold the database's lock shared, so that no process can write it while this one reads its files;
    None where Milvus Lite runs for it here (its collection answers then) or another process holds it.

    Milvus Lite takes the same lock exclusively, so readers that hold it shared exclude every writer
    and not each other. Each holder lets go once (``let_go_files``); a connect takes the hold away
    from all of them first (``held`` then turns false), and they go to Milvus Lite from then on.
    """
    import fcntl

    with _OPEN_LOCK:
        key = str(path)
        if _OPEN.get(key):
            return None
        entry = _FILES.get(key)
        if entry is None:
            try:  # never created here: a database Milvus Lite has not opened is not read from files
                fd = os.open(path / "LOCK", os.O_RDWR)
            except OSError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None
            entry = _FILES[key] = Files(fd)
        entry.holders += 1
        return entry


def held(entry: Files) -> bool:
    """Whether a hold still stands (a connect in this process ends it)."""
    return entry.fd is not None


def let_go_files(path: Path, entry: Files) -> None:
    """One holder is done with the files; the last one lets go of the lock."""
    with _OPEN_LOCK:
        entry.holders -= 1
        if entry.holders <= 0:
            _unlock(entry)
            if _FILES.get(str(path)) is entry:
                del _FILES[str(path)]


def end_file_holds(path: Path) -> None:
    """End this process's hold on a database's files (its holders go to Milvus Lite from then on):
    for a client that starts Milvus Lite without ``connect`` (pymilvus' own, on a .db path)."""
    with _OPEN_LOCK:
        _end_files(path)


def _end_files(path: Path) -> None:
    files = _FILES.pop(str(path), None)
    if files is not None:
        _unlock(files)


def _unlock(entry: Files) -> None:
    import fcntl

    if entry.fd is not None:
        fd, entry.fd = entry.fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def connect(path: Path, make: Callable[[], T]) -> T:
    """A new client of the database at ``path`` (``make`` connects it), counted.

    A hold on its files (``hold_files``) ends first: Milvus Lite takes the lock itself.
    """
    with _OPEN_LOCK:
        _end_files(path)
        client = make()
        _OPEN[str(path)] = _OPEN.get(str(path), 0) + 1
    return client


def release(path: Path) -> None:
    """One client of the database at ``path`` is closed; after the last, Milvus Lite lets go of it."""
    from milvus_lite.server_manager import server_manager_instance

    with _OPEN_LOCK:
        left = _OPEN.get(str(path), 1) - 1
        if left > 0:
            _OPEN[str(path)] = left
            return
        _OPEN.pop(str(path), None)
        server_manager_instance.release_server(str(path))
    return_free_memory()  # the server's segments (the whole collection) were just freed


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
