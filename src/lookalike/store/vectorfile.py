"""A graph segment's full-precision vectors, kept on disk and read by position.

A graph is walked over half-precision copies of its vectors; only the few candidates a search
keeps are re-scored with these. Reading them with ``pread`` rather than through a memory map
keeps them out of the process' resident memory: a mapped page also maps its neighbours
(the kernel's fault-around), so a thousand random reads made a whole 170 MB file resident.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

DENSE = 4
"""Rows wanted per row spanned above which one read of the whole span beats a read per row."""


class VectorFile:
    """Float32 rows of ``dim`` values, read without moving a file position (safe across threads).

    The file stays open for the object's lifetime, so that readers of an old snapshot can still
    read it after a newer save unlinked it.
    """

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed with the object
        self._width = 4 * dim
        self._lock = threading.Lock()
        self.rows = os.fstat(self._file.fileno()).st_size // self._width

    @staticmethod
    def write(path: Path, vectors: npt.NDArray[np.float32]) -> None:
        np.ascontiguousarray(vectors, dtype=np.float32).tofile(path)

    def take(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """These rows' vectors, in the order asked (a fresh array)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.empty((0, self.dim), dtype=np.float32)
        low, high = int(rows.min()), int(rows.max()) + 1
        if low < 0 or high > self.rows:
            raise IndexError(f"rows {low}..{high - 1} outside {self.path.name} ({self.rows} rows)")
        if high - low == len(rows) and bool(np.all(np.diff(rows) == 1)):
            return self._read(low, len(rows))  # a run of rows: read straight into the answer
        if high - low <= DENSE * len(rows):
            return self._read(low, high - low)[rows - low]
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        if not hasattr(os, "preadv"):
            for i, row in enumerate(rows.tolist()):
                self._read(row, 1, out[i : i + 1])
            return out
        # A search re-scores about ten scattered rows: one system call each, nothing else per row.
        fd, width = self._file.fileno(), self._width
        view = out.reshape(-1).view(np.uint8).data
        for i, row in enumerate(rows.tolist()):
            if os.preadv(fd, [view[i * width : (i + 1) * width]], row * width) != width:
                self._read(row, 1, out[i : i + 1])  # a short read: finish it (or say the file is cut)
        return out

    def all(self) -> npt.NDArray[np.float32]:
        return self._read(0, self.rows)

    def read_into(self, out: npt.NDArray[np.float32]) -> None:
        """The first ``len(out)`` rows, read straight into ``out`` (C-contiguous float32)."""
        if not out.flags.c_contiguous or out.dtype != np.float32 or out.shape[1:] != (self.dim,):
            raise ValueError("read_into needs a C-contiguous float32 array of rows")
        self._read(0, len(out), out)

    def _read(
        self, first: int, count: int, buffer: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]:
        if buffer is None:
            buffer = np.empty((count, self.dim), dtype=np.float32)
        view = buffer.reshape(-1).view(np.uint8).data
        done, offset = 0, first * self._width
        while done < len(view):  # a read may come back short; only an end of file is an error
            got = self._read_at(view[done:], offset + done)
            if got == 0:
                raise OSError(f"{self.path} ended at byte {offset + done}: the file is truncated")
            done += got
        return buffer

    def _read_at(self, view: memoryview, offset: int) -> int:
        if hasattr(os, "preadv"):  # Linux, the BSDs: straight into the buffer
            return os.preadv(self._file.fileno(), [view], offset)
        if hasattr(os, "pread"):  # macOS
            data = os.pread(self._file.fileno(), min(len(view), 1 << 26), offset)
            view[: len(data)] = data
            return len(data)
        with self._lock:  # no positionless read (Windows): seek and read under a lock
            self._file.seek(offset)
            return self._file.readinto(view) or 0
