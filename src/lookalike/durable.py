"""Durable writes, in one place, and the crash points where the crash harness kills the process.

Every file lookalike writes goes through :func:`replacing`: the content goes to a temporary file
in the same folder, is flushed and fsync'd, renamed over the target, and the folder is fsync'd
(SQLite's and LevelDB's discipline). A kill at any instant leaves the old file or the new one,
never a torn one; the only debris is a temporary file whose name starts with a dot and ends in
``.tmp``, which the owner of the folder may sweep (:func:`sweep_temporary`).

Crash points mark each durable step (a rename, a Milvus write, a partition drop). The crash
harness (``tests/crash``, ``scripts/crash_harness.py``) sets ``LOOKALIKE_CRASH_AT=STEP`` or
``STEP:N`` and the process kills itself with SIGKILL the N-th time (default first) it reaches
STEP; ``LOOKALIKE_CRASH_AT=list`` appends every step reached to the file named by
``LOOKALIKE_CRASH_LOG``, so that the harness learns which steps a command passes. Without the
variable a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

CRASH_ENV = "LOOKALIKE_CRASH_AT"
CRASH_LOG_ENV = "LOOKALIKE_CRASH_LOG"
TEMPORARY_SUFFIX = ".tmp"

_plan = os.environ.get(CRASH_ENV, "")  # a test hook, read once like the settings
_step, _, _nth = _plan.partition(":")
_seen: dict[str, int] = {}
_seen_lock = threading.Lock()


def crash_point(step: str) -> None:
    """A durable step: the crash harness may kill the process here (see the module docstring)."""
    if not _plan:
        return
    if _step == "list":
        log = os.environ.get(CRASH_LOG_ENV)
        if log:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(step + "\n")
        return
    if step != _step:
        return
    with _seen_lock:
        _seen[step] = _seen.get(step, 0) + 1
        reached = _seen[step]
    if reached >= int(_nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_file(path: Path) -> None:
    """Flush a file's content to the disk (a file written by a library that does not do it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make the names in a folder durable (a rename or a new file in it)."""
    with contextlib.suppress(OSError):  # some file systems (and Windows) cannot open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temporary_for(path: Path) -> Path:
    """The temporary name a new version of ``path`` is written under (same folder, hidden)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{TEMPORARY_SUFFIX}")


@contextmanager
def replacing(path: Path | str, *, step: str = "file") -> Iterator[Path]:
    """Write a new version of ``path`` durably: yields a temporary path to write to.

    On a normal exit the temporary file is fsync'd, renamed over ``path`` and the folder fsync'd;
    on an exception it is removed and ``path`` is untouched. ``step`` names the crash points
    (``STEP.written`` before the rename, ``STEP.renamed`` after).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_for(target)
    try:
        yield temporary
        fsync_file(temporary)
        crash_point(f"{step}.written")
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)
    crash_point(f"{step}.renamed")


@contextmanager
def replacing_file(
    path: Path | str, mode: str = "w", *, step: str = "file", **kwargs: Any
) -> Iterator[IO[Any]]:
    """Like :func:`replacing`, yielding an open handle (``mode`` "w" or "wb"; text kwargs pass on)."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with replacing(path, step=step) as temporary, open(temporary, mode, **kwargs) as handle:
        yield handle


def write_text(path: Path | str, text: str, *, step: str = "file") -> None:
    """Replace a text file (UTF-8) durably."""
    with replacing_file(path, "w", step=step) as handle:
        handle.write(text)


def write_bytes(path: Path | str, data: bytes, *, step: str = "file") -> None:
    """Replace a file durably."""
    with replacing_file(path, "wb", step=step) as handle:
        handle.write(data)


def write_with(path: Path | str, writer: Callable[[Path], Any], *, step: str = "file") -> None:
    """Replace a file that a library writes to a path itself (``writer(temporary_path)``)."""
    with replacing(path, step=step) as temporary:
        writer(temporary)


def sweep_temporary(folder: Path) -> int:
    """Remove temporary files a killed writer left in ``folder``; returns how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIX) and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed
