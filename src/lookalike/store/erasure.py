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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike import durable
from lookalike.durable import crash_point
from lookalike.store.base import milvus_errors
from lookalike.store.rows import arrow_schema, from_arrow, to_arrow

if TYPE_CHECKING:
    from lookalike.store.lite import LiteStore
    from lookalike.store.models import Item

REBUILD_BATCH = 5000
PLAN = "erase-plan.json"
log = logging.getLogger("lookalike.store.lite")


def plan(store: LiteStore, names: Sequence[str]) -> None:
    """Record, durably, that these partitions are to be rewritten (added to a plan already there)."""
    wanted = sorted(set(names) | set(planned(store)))
    durable.write_text(store._folder() / PLAN, json.dumps({"partitions": wanted}), step="erase.plan")


def planned(store: LiteStore) -> list[str]:
    """The partitions an unfinished compaction was to rewrite (none when there is no plan)."""
    path = store._folder() / PLAN
    if not path.is_file():
        return []
    try:
        names = json.loads(path.read_text(encoding="utf-8"))["partitions"]
        return [str(name) for name in names]
    except (OSError, ValueError, KeyError, TypeError):
        log.warning(
            "read index of %s: an unreadable erase plan: every partition is rewritten", store.collection
        )
        return list(store.partitions())


def compact(store: LiteStore, names: Sequence[str] | None = None) -> int:
    """Rewrite storage so that deleted rows' bytes are gone from every file; returns partitions rewritten.

    Milvus Lite keeps deleted and replaced rows in its segment files until its own compaction,
    which it runs only now and then. Each partition that has lost rows since the last
    compaction (or each of ``names``) is rewritten from its live rows, and the read index's shard
    is rewritten without tombstones.
    """
    store.require()
    with store._lock:
        read = store._writable()  # fresh first, then readers keep their snapshot while this rewrites
        with store.writing():
            wanted = store._purge if names is None else set(names)
            todo = sorted(wanted & set(store.partitions()))
            if todo:
                plan(store, todo)
            for name in todo:
                _rewrite(store, name)
            read.release()  # the replaced segments' files are deleted now, not after a grace period
            remove_plan(store)
            if names is not None:
                store._save()
        return len(todo)


def _rewrite(store: LiteStore, name: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    read = store.read_index()
    # The rows come from Milvus, the system of record, not from the read index: a read-index file
    # damaged in place (it is memory-mapped, not checksummed) must never be written into Milvus.
    rows: dict[int, Item] = {}  # one per id (see LiteStore._rebuild)
    for _, batch in store._milvus_items(batch_size=REBUILD_BATCH, with_vector=True, partitions=[name]):
        rows.update((item.id, item) for item in batch)
    items = list(rows.values())
    schema = arrow_schema(pa.list_(pa.float32(), store.dim()))
    table = to_arrow(items, schema) if items else schema.empty_table()
    durable.write_with(_saved(store, name), lambda path: pq.write_table(table, path), step="erase.saved")
    refill(store, name, _saved(store, name))
    read.purge(name)
    read.publish(read.snapshot.shards, store.generation()[0])
    store._purge.discard(name)
    store._save()
    crash_point("erase.partition_done")


def _saved(store: LiteStore, name: str) -> Path:
    return store._folder() / f"purge-{name}.parquet"


def refill(store: LiteStore, name: str, path: Path) -> None:
    """Drop a partition and write it again from its saved live rows; the file goes last.

    The rows are read back (and so checked) before the partition is dropped.
    """
    items = _read_saved(path)
    if name in store.partitions() and name != "_default":
        crash_point("erase.drop")
        store._drop_milvus_partition(name)
        crash_point("erase.dropped")
    store._ensure_partition(name)
    for start in range(0, len(items), REBUILD_BATCH):
        store._write_rows(name, items[start : start + REBUILD_BATCH], upsert=False)
        crash_point("erase.refill_batch")
    with milvus_errors("flush"):
        store.client.flush(store.collection)
    crash_point("erase.refilled")
    path.unlink()
    durable.fsync_folder(path.parent)


def _read_saved(path: Path) -> list[Item]:
    import pyarrow.parquet as pq

    return from_arrow(pq.read_table(path).to_pydict())


def finish_purges(store: LiteStore) -> None:
    """Complete a compaction that a crash interrupted: saved rows are written back first."""
    folder = store._folder()
    durable.sweep_temporary(folder)  # a save that never reached its rename: its partition is intact
    for path in sorted(folder.glob("purge-*.parquet")):
        name = path.stem.removeprefix("purge-")
        if not _readable(path):
            aside = path.with_name(path.name + ".damaged")
            path.replace(aside)
            log.error(
                "read index of %s: the saved rows of %s could not be read (%s kept aside); %s",
                store.collection,
                name,
                aside.name,
                "its partition is intact" if name in store.partitions() else "its partition is gone",
            )
            continue
        log.warning("read index of %s: finishing an interrupted compaction of %s", store.collection, name)
        refill(store, name, path)


def _readable(path: Path) -> bool:
    try:
        _read_saved(path)
    except Exception:  # noqa: BLE001 - any reason a file of ours cannot be read means the same here
        return False
    return True


def finish_plan(store: LiteStore) -> None:
    """Rewrite the partitions of a compaction plan that a kill interrupted, then drop the plan."""
    names = planned(store)
    if not (store._folder() / PLAN).exists():
        return
    log.warning(
        "read index of %s: finishing an interrupted erasure of %s",
        store.collection,
        ", ".join(names) or "nothing",
    )
    compact(store, names)


def remove_plan(store: LiteStore) -> None:
    path = store._folder() / PLAN
    if path.exists():
        crash_point("erase.finish")
        path.unlink()
        durable.fsync_folder(path.parent)
