"""Parquet backups of a collection: every field and the vector, restored without re-embedding."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lookalike.errors import ConfigError, LookalikeError
from lookalike.store.models import IndexType, Item
from lookalike.store.partitions import MAX_TIME, MIN_TIME
from lookalike.store.protocol import Store
from lookalike.store.rows import arrow_schema, from_arrow, to_arrow
from lookalike.store.server import ServerStore

Progress = Callable[[int], None]
EXPORT_BATCH = 2000


def export_parquet(store: Store, path: str, progress: Progress | None = None) -> int:
    """Write every item and its vector to a Parquet file; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = store.dim()
    index_type, index_params = store.index()
    schema = arrow_schema(
        pa.list_(pa.float32(), dim),
        metadata={
            "lookalike.dim": str(dim),
            "lookalike.model": store.model(),
            "lookalike.index": json.dumps({"type": index_type, "params": index_params}),
        },
    )
    target = Path(path).expanduser()
    if target.suffix.lower() != ".parquet":
        raise ConfigError(f"Export writes Parquet: give a file name ending in .parquet, not {path}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    rows = 0
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            for batch in store.iter_items(batch_size=EXPORT_BATCH, with_vector=True):
                writer.write_table(_items_to_table(batch, schema, dim))
                rows += len(batch)
                if progress:
                    progress(len(batch))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def import_parquet(store: Store, path: str, progress: Progress | None = None) -> tuple[int, int]:
    """Restore a Parquet export without re-embedding; returns (imported, already present)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(Path(path).expanduser())
    except FileNotFoundError as exc:
        raise ConfigError(f"No such file: {path}") from exc
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise ConfigError(f"Cannot read {path} as Parquet: {exc}") from exc
    names = set(parquet.schema_arrow.names)
    missing = {"id", "vector", "created_at"} - names
    if missing:
        raise ConfigError(f"{path} is not a lookalike export: missing columns {', '.join(sorted(missing))}.")
    meta = {k.decode(): v.decode() for k, v in (parquet.schema_arrow.metadata or {}).items()}
    vector_type = parquet.schema_arrow.field("vector").type
    dim = int(meta.get("lookalike.dim") or getattr(vector_type, "list_size", 0) or 0)
    if dim <= 0:
        raise ConfigError(f"{path}: cannot tell the vector size.")
    index = json.loads(meta.get("lookalike.index", "{}")) or {}
    index_type = str(index.get("type", IndexType.FLAT))
    if index_type not in {i.value for i in store.supported_indexes}:
        index_type, index["params"] = IndexType.FLAT, {}
    store.ensure(
        dim, index=index_type, index_params=index.get("params"), model=meta.get("lookalike.model", "")
    )
    imported = already = 0
    refused: list[int] = []
    for batch in parquet.iter_batches(batch_size=EXPORT_BATCH):
        items = _table_to_items(batch.to_pydict(), dim)
        refused += [item.id for item in items if not MIN_TIME <= item.created_at < MAX_TIME]
        items = [item for item in items if MIN_TIME <= item.created_at < MAX_TIME]
        present = store.existing_ids([item.id for item in items])
        fresh = [item for item in items if item.id not in present]
        imported += store.insert(fresh)
        already += len(items) - len(fresh)
        if progress:
            progress(len(items))
    if imported:
        store.flush()
    if refused:
        shown = ", ".join(str(i) for i in refused[:5]) + (" …" if len(refused) > 5 else "")
        raise ConfigError(
            f"Imported {imported} items ({already} were already stored), but {len(refused)} rows of {path} "
            f"are dated outside 1970-01-01 .. 2199-12-31 and were left out (ids {shown})."
        )
    return imported, already


def _items_to_table(items: Sequence[Item], schema: Any, dim: int) -> Any:
    return to_arrow(items, schema)


def _table_to_items(columns: dict[str, list[Any]], dim: int) -> list[Item]:
    items = from_arrow(columns)
    for item in items:
        if item.vector is None or item.vector.shape != (dim,):
            size = 0 if item.vector is None else item.vector.size
            raise LookalikeError(f"Row with id {item.id} has a vector of size {size}, expected {dim}.")
    return items


def copy_collection(source: Store, target: Store, progress: Progress | None = None) -> tuple[int, int]:
    """Copy a collection with its vectors, partitions, index choice and model to another Milvus.

    Resumable: items the target already holds are skipped, so an interrupted copy can be run
    again. Reading the next batch overlaps writing the previous one. Returns (copied, already
    present).
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    source.require()
    dim = source.dim()
    index_type, index_params = source.index()
    if index_type not in {i.value for i in target.supported_indexes}:
        raise ConfigError(
            f"The source collection uses a {index_type} index, which {target.uri} does not support."
        )
    target.ensure(dim, index=index_type, index_params=index_params, model=source.model())
    target.ensure_partitions([name for name in source.partitions() if name != "_default"])
    copied = already = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-copy") as writer:
        writing: Future[int] | None = None
        for batch in source.iter_items(batch_size=EXPORT_BATCH, with_vector=True):
            present = target.existing_ids([item.id for item in batch])
            fresh = [item for item in batch if item.id not in present]
            already += len(batch) - len(fresh)
            if writing is not None:
                copied += writing.result()
            writing = writer.submit(target.insert, fresh)
            if progress:
                progress(len(batch))
        if writing is not None:
            copied += writing.result()
    target.flush()
    return copied, already


def bulk_copy(
    source: Store,
    target: Store,
    folder: str,
    progress: Progress | None = None,
    wait_s: float = 600.0,
) -> int:
    """Copy a collection into a new collection on a server through Parquet files and bulk import.

    One Parquet file per monthly partition is written into ``folder`` (which the server must
    be able to read), and the server imports each itself: no row-by-row inserts. Returns the
    rows imported once they are all visible.
    """
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    source.require()
    if not isinstance(target, ServerStore):
        raise ConfigError("--bulk-dir needs a Milvus server as the target (--to http://host:19530).")
    if target.exists() and target.count() > 0:
        raise ConfigError(
            f"The collection '{target.collection}' on {target.uri} is not empty, and a bulk import does "
            "not check ids: bulk-copy into a new collection, or migrate without --bulk-dir."
        )
    dim = source.dim()
    index_type, index_params = source.index()
    target.ensure(dim, index=index_type, index_params=index_params, model=source.model())
    out = Path(folder).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    schema = arrow_schema(pa.list_(pa.float32()))  # a plain list column, as bulk import reads it
    expected = 0
    for partition in source.partition_stats():
        if not partition.rows or partition.start is None:
            continue
        path = out / f"{target.collection}-{partition.name}.parquet"
        rows = 0
        with pq.ParquetWriter(path, schema) as writer:
            for batch in source.iter_items(
                batch_size=EXPORT_BATCH, with_vector=True, since=partition.start, until=partition.end
            ):
                writer.write_table(_items_to_table(batch, schema, dim))
                rows += len(batch)
                if progress:
                    progress(len(batch))
        if rows:
            expected += target.bulk_import([str(path)], partition.name)
    deadline = time.monotonic() + wait_s
    while target.count() < expected:  # imported segments become searchable once indexed
        if time.monotonic() > deadline:
            raise LookalikeError(f"{expected} rows were imported but only {target.count()} are visible yet.")
        time.sleep(1.0)
    return expected
