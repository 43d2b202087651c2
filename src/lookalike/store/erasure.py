"""Erasure on Milvus Lite: rewriting partitions so that deleted rows' bytes leave every file.

A compaction is a multi-step change, so it is written as a plan first and finished on the next
open if a kill stops it (DESIGN: plan first, finish or roll back on the next open):

1. ``erase-plan.json`` names the partitions to rewrite (durably: temporary file, fsync, rename);
2. per partition, its live rows are saved to ``purge-NAME.parquet`` (durably), read back and
   checked, and only then is the partition dropped and written again from them; the saved file
   goes last;
3. the plan goes when every partition is rewritten.

On open, a saved file is written back (its partition may be half-written or gone) and then the
plan's partitions are rewritten again, so a purge that started always finishes. A saved file that
cannot be read (damaged by something other than lookalike: lookalike never leaves a torn one)
is set aside with one log line; its partition was never dropped unless the file was complete.

The functions here take what they need as arguments: the store's folder, and ``Partitions``, the
few operations on Milvus' own partitions a rewrite makes. The Lite store (lite.py) owns the rest:
its lock, its read index and its record of partitions to purge.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lookalike import durable
from lookalike.durable import crash_point
from lookalike.store.rows import arrow_schema, from_arrow, to_arrow

if TYPE_CHECKING:
    from lookalike.store.models import Item

REBUILD_BATCH = 5000
PLAN = "erase-plan.json"
log = logging.getLogger("lookalike.store.lite")


class Partitions(Protocol):
    """The operations on Milvus' partitions that rewriting one needs (the Lite store gives them)."""

    collection: str

    def names(self) -> list[str]:
        """The partitions Milvus holds."""
        ...

    def live_rows(self, name: str) -> list[Item]:
        """A partition's rows as Milvus, the system of record, holds them: one per id, with vectors."""
        ...

    def dim(self) -> int: ...

    def drop(self, name: str) -> None: ...

    def create(self, name: str) -> None:
        """The partition, made if it is not there."""
        ...

    def write(self, name: str, items: Sequence[Item]) -> None: ...

    def flush(self) -> None: ...


def plan(folder: Path, names: Sequence[str], every: Callable[[], list[str]]) -> None:
    """Record, durably, that these partitions are to be rewritten (added to a plan already there).

    ``every`` lists every partition (what an unreadable plan already there stands for).
    """
    wanted = sorted(set(names) | set(planned(folder, every)))
    durable.write_text(folder / PLAN, json.dumps({"partitions": wanted}), step="erase.plan")


def has_plan(folder: Path) -> bool:
    return (folder / PLAN).exists()


def planned(folder: Path, every: Callable[[], list[str]]) -> list[str]:
    """The partitions an unfinished compaction was to rewrite (none when there is no plan)."""
    path = folder / PLAN
    if not path.is_file():
        return []
    try:
        names = json.loads(path.read_text(encoding="utf-8"))["partitions"]
        return [str(name) for name in names]
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("read index of %s: an unreadable erase plan: every partition is rewritten", folder.name)
        return list(every())


def rewrite(folder: Path, partitions: Partitions, name: str) -> None:
    """Save one partition's live rows durably, then drop it and write it again from them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # The rows come from Milvus, the system of record, not from the read index: a read-index file
    # damaged in place (it is memory-mapped, not checksummed) must never be written into Milvus.
    items = partitions.live_rows(name)
    schema = arrow_schema(pa.list_(pa.float32(), partitions.dim()))
    table = to_arrow(items, schema) if items else schema.empty_table()
    saved = _saved(folder, name)
    durable.write_with(saved, lambda path: pq.write_table(table, path), step="erase.saved")
    refill(partitions, name, saved)


def _saved(folder: Path, name: str) -> Path:
    return folder / f"purge-{name}.parquet"


def refill(partitions: Partitions, name: str, path: Path) -> None:
    """Drop a partition and write it again from its saved live rows; the file goes last.

    The rows are read back (and so checked) before the partition is dropped.
    """
    items = _read_saved(path)
    if name in partitions.names() and name != "_default":
        crash_point("erase.drop")
        partitions.drop(name)
        crash_point("erase.dropped")
    partitions.create(name)
    for start in range(0, len(items), REBUILD_BATCH):
        partitions.write(name, items[start : start + REBUILD_BATCH])
        crash_point("erase.refill_batch")
    partitions.flush()
    crash_point("erase.refilled")
    path.unlink()
    durable.fsync_folder(path.parent)


def _read_saved(path: Path) -> list[Item]:
    import pyarrow.parquet as pq

    return from_arrow(pq.read_table(path).to_pydict())


def finish_purges(folder: Path, partitions: Partitions) -> None:
    """Complete a compaction that a crash interrupted: saved rows are written back first."""
    durable.sweep_temporary(folder)  # a save that never reached its rename: its partition is intact
    for path in sorted(folder.glob("purge-*.parquet")):
        name = path.stem.removeprefix("purge-")
        if not _readable(path):
            aside = path.with_name(path.name + ".damaged")
            path.replace(aside)
            log.error(
                "read index of %s: the saved rows of %s could not be read (%s kept aside); %s",
                partitions.collection,
                name,
                aside.name,
                "its partition is intact" if name in partitions.names() else "its partition is gone",
            )
            continue
        log.warning(
            "read index of %s: finishing an interrupted compaction of %s", partitions.collection, name
        )
        refill(partitions, name, path)


def _readable(path: Path) -> bool:
    try:
        _read_saved(path)
    except Exception:  # noqa: BLE001 - any reason a file of ours cannot be read means the same here
        return False
    return True


def remove_plan(folder: Path) -> None:
    path = folder / PLAN
    if path.exists():
        crash_point("erase.finish")
        path.unlink()
        durable.fsync_folder(path.parent)
