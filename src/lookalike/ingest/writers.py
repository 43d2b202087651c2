"""The writers of ``index --ray`` into a Milvus server: a small pool of actors, one connection each.

``StoreWriter`` upserts the rows it is sent (parallel upserts: the driver no longer writes them
itself); ``BulkWriter`` (``--bulk``) writes them into Parquet files, one per month (a partition) per
writer, for the server's bulk import once the run has embedded everything. Milvus Lite lets one
process hold a database: there the driver stays the single writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.store import Item, Store, open_store
from lookalike.store.base import group_by_partition
from lookalike.store.rows import arrow_schema, normalise, to_arrow


@dataclass(frozen=True)
class Connection:
    """How a writer reaches the collection: ``open_store``'s arguments (credentials, TLS, timeout)."""

    uri: str
    collection: str
    options: dict[str, Any] = field(default_factory=dict)

    def open(self) -> Store:
        return open_store(self.uri, self.collection, **self.options)


@dataclass(frozen=True)
class BulkFile:
    """A Parquet file a ``BulkWriter`` closed: its path, the partition it goes to, its rows."""

    path: str
    partition: str
    rows: int


class StoreWriter:
    """Upserts the rows it is sent through a connection of its own."""

    def __init__(self, connection: Connection) -> None:
        self.store = connection.open()

    def write(self, items: list[Item]) -> int:
        return self.store.insert(items)

    def close(self) -> list[BulkFile]:
        self.store.close()
        return []


class BulkWriter:
    """Writes the rows it is sent into Parquet files under ``folder``, one per month, named ``name-month``."""

    def __init__(self, folder: str, name: str) -> None:
        import pyarrow as pa

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.schema = arrow_schema(pa.list_(pa.float32()))  # a plain list column, as bulk import reads it
        self.open: dict[str, tuple[Any, Path]] = {}
        self.rows: dict[str, int] = {}

    def write(self, items: list[Item]) -> int:
        import pyarrow.parquet as pq

        for partition, group in group_by_partition([normalise(item) for item in items]).items():
            if partition not in self.open:
                path = self.folder / f"{self.name}-{partition}.parquet"
                self.open[partition] = (pq.ParquetWriter(path, self.schema), path)
                self.rows[partition] = 0
            self.open[partition][0].write_table(to_arrow(group, self.schema))
            self.rows[partition] += len(group)
        return len(items)

    def close(self) -> list[BulkFile]:
        files = []
        for partition, (writer, path) in self.open.items():
            writer.close()
            files.append(BulkFile(str(path), partition, self.rows[partition]))
        self.open.clear()
        return files
