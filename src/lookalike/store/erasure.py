"""Erasure on Milvus Lite: rewriting partitions so that deleted rows' bytes leave every file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lookalike.store.base import milvus_errors
from lookalike.store.liteprocess import fsync
from lookalike.store.rows import arrow_schema, from_arrow, to_arrow

if TYPE_CHECKING:
    from lookalike.store.lite import LiteStore

REBUILD_BATCH = 5000
log = logging.getLogger("lookalike.store.lite")


def compact(store: LiteStore) -> int:
    """Rewrite storage so that deleted rows' bytes are gone from every file; returns partitions rewritten.

    Milvus Lite keeps deleted and replaced rows in its segment files until its own compaction,
    which it runs only now and then. Each partition that has lost rows since the last
    compaction is rewritten: its live rows are saved to a file first (so that a crash cannot
    lose them), the partition is dropped and written again, and the read index's shard is
    rewritten without tombstones.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    store.require()
    with store._lock:
        read = store.read_index()  # fresh first, then readers keep their snapshot while this rewrites
        with store.writing():
            names = sorted(store._purge & set(store.partitions()))
            schema = arrow_schema(pa.list_(pa.float32(), store.dim()))
            for name in names:
                shard = read.snapshot.shards.get(name, ())
                items = [item for s in shard for item in s.items(np.flatnonzero(s.alive), with_vector=True)]
                path = store._folder() / f"purge-{name}.parquet"
                pq.write_table(to_arrow(items, schema) if items else schema.empty_table(), path)
                fsync(path)
                refill(store, name, path)
                read.purge(name)
                read.publish(read.snapshot.shards, store.generation()[0])
                store._purge.discard(name)
                store._save()
            read.release()  # the replaced segments' files are deleted now, not after a grace period
        return len(names)


def refill(store: LiteStore, name: str, path: Path) -> None:
    """Drop a partition and write it again from its saved live rows; the file goes last."""
    import pyarrow.parquet as pq

    if name in store.partitions() and name != "_default":
        store._drop_milvus_partition(name)
    items = from_arrow(pq.read_table(path).to_pydict())
    store._ensure_partition(name)
    for start in range(0, len(items), REBUILD_BATCH):
        store._write_rows(name, items[start : start + REBUILD_BATCH], upsert=False)
    with milvus_errors("flush"):
        store.client.flush(store.collection)
    path.unlink()


def finish_purges(store: LiteStore) -> None:
    """Complete a compaction that a crash interrupted: its saved rows are written back."""
    for path in sorted(store._folder().glob("purge-*.parquet")):
        name = path.stem.removeprefix("purge-")
        log.warning("read index of %s: finishing an interrupted compaction of %s", store.collection, name)
        refill(store, name, path)
