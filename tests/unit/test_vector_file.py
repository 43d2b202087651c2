"""Float32 vectors read by position from a graph segment's file: any rows, any order, many threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from lookalike.store.vectorfile import VectorFile


@pytest.fixture
def stored(tmp_path: Path) -> tuple[VectorFile, np.ndarray]:
    matrix = np.random.default_rng(0).normal(size=(1000, 24)).astype(np.float32)
    VectorFile.write(tmp_path / "v.f32", matrix)
    return VectorFile(tmp_path / "v.f32", 24), matrix


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [0],
        [999],
        list(range(100, 400)),  # a run: one read
        [7, 3, 3, 900, 1, 500],  # scattered, repeated, unordered: a read per row
        list(range(0, 1000, 3)),  # dense but not a run: one read of the span
    ],
)
def test_rows_come_back_in_the_order_asked(stored: tuple[VectorFile, np.ndarray], rows: list[int]) -> None:
    file, matrix = stored
    got = file.take(np.asarray(rows, dtype=np.int64))
    assert got.shape == (len(rows), 24) and got.dtype == np.float32
    np.testing.assert_array_equal(got, matrix[rows])
    assert file.rows == 1000
    np.testing.assert_array_equal(file.all(), matrix)


def test_rows_outside_the_file_and_a_truncated_file_are_errors(tmp_path: Path) -> None:
    file_path = tmp_path / "v.f32"
    VectorFile.write(file_path, np.ones((10, 4), np.float32))
    file = VectorFile(file_path, 4)
    with pytest.raises(IndexError):
        file.take(np.asarray([10]))
    with pytest.raises(IndexError):
        file.take(np.asarray([-1]))
    with open(file_path, "r+b") as handle:
        handle.truncate(4 * 4 * 5 + 3)  # cut under the reader's feet: its row count is now wrong
    with pytest.raises(OSError, match="truncated"):
        file.take(np.asarray([8]))


def test_a_file_unlinked_after_opening_is_still_read(tmp_path: Path) -> None:
    """Readers of an old snapshot keep their segment's file open after a newer save removed it."""
    matrix = np.arange(40, dtype=np.float32).reshape(10, 4)
    VectorFile.write(tmp_path / "v.f32", matrix)
    file = VectorFile(tmp_path / "v.f32", 4)
    (tmp_path / "v.f32").unlink()
    np.testing.assert_array_equal(file.take(np.asarray([9, 0])), matrix[[9, 0]])


def test_threads_reading_at_once_each_get_their_own_rows(stored: tuple[VectorFile, np.ndarray]) -> None:
    file, matrix = stored
    errors: list[BaseException] = []

    def read(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(200):
                rows = rng.integers(0, 1000, int(rng.integers(1, 40)))
                np.testing.assert_array_equal(file.take(rows), matrix[rows])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


@pytest.mark.parametrize("missing", [("preadv",), ("preadv", "pread")])
def test_rows_are_read_the_same_where_the_os_lacks_preadv_or_pread(
    stored: tuple[VectorFile, np.ndarray], monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...]
) -> None:
    """macOS has no preadv; Windows has neither: the same rows come back."""
    import os

    file, matrix = stored
    for name in missing:
        monkeypatch.delattr(os, name)
    rows = np.asarray([5, 900, 3, 3, 0, 999])
    np.testing.assert_array_equal(file.take(rows), matrix[rows])
    np.testing.assert_array_equal(file.all(), matrix)
