"""The one converter between ``Item`` and what stores hold: Milvus rows and Arrow tables.

Every value is normalised once, on the way in (``normalise``), so Milvus, the read index,
exports and bulk files all hold the same bytes: VARCHARs are cut to their limit in UTF-8
bytes (what a Milvus server enforces) on a character boundary, and ``created_at`` must lie in
the range partitions can name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lookalike.store.models import SCALAR_FIELDS, Item
from lookalike.store.partitions import check_time

VARCHAR_BYTES = {
    "sha256": 64,
    "item_id": 1024,
    "name": 2048,
    "source": 256,
    "uri": 4096,
    "parent_sha256": 64,
    "box": 64,
    "label": 256,
}
"""The VARCHAR fields and their limits in UTF-8 bytes."""


def cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def normalise(item: Item) -> Item:
    """The item as every store holds it: VARCHARs cut by bytes, created_at checked.

    Raises:
        ConfigError: created_at outside 1970 .. 2199.
    """
    check_time(item.created_at)
    changes: dict[str, Any] = {
        name: cut_utf8(value, limit)
        for name, limit in VARCHAR_BYTES.items()
        if len((value := getattr(item, name)).encode("utf-8", "surrogatepass")) > limit
    }
    return dataclasses.replace(item, **changes) if changes else item


def to_row(item: Item, fields: Iterable[str]) -> dict[str, Any]:
    """A Milvus row of a normalised item, holding only the collection's ``fields`` and the vector."""
    meta = item.metadata()
    row = {name: meta[name] for name in fields if name in meta}
    row["vector"] = item.vector
    return row


def from_row(row: Mapping[str, Any], with_vector: bool = False) -> Item:
    """An item from a Milvus query or search row (an older collection may lack the crop fields)."""
    entity = row.get("entity", row)
    vector = None
    if with_vector and entity.get("vector") is not None:
        vector = np.asarray(entity["vector"], dtype=np.float32)
    return _item(lambda name: entity.get(name, row.get(name)), vector)


def _item(value: Any, vector: Any) -> Item:
    def text(name: str) -> str:
        return str(value(name) or "")

    def number(name: str) -> int:
        return int(value(name) or 0)

    return Item(
        id=number("id"),
        sha256=text("sha256"),
        item_id=text("item_id"),
        name=text("name"),
        source=text("source"),
        created_at=number("created_at"),
        uri=text("uri"),
        width=number("width"),
        height=number("height"),
        parent_sha256=text("parent_sha256"),
        box=text("box"),
        label=text("label"),
        det_score=float(value("det_score") or 0.0),
        vector=vector,
    )


def arrow_schema(vector: Any = None, metadata: dict[str, str] | None = None) -> Any:
    """The Arrow schema of stored items; ``vector`` (an Arrow list type) adds the vector after the id."""
    import pyarrow as pa

    types = {"id": pa.int64(), "created_at": pa.int64(), "width": pa.int32(), "height": pa.int32()}
    types["det_score"] = pa.float32()
    fields = [(name, types.get(name, pa.string())) for name in SCALAR_FIELDS]
    if vector is not None:
        fields.insert(1, ("vector", vector))
    return pa.schema(fields, metadata=metadata)


def to_arrow(items: Sequence[Item], schema: Any) -> Any:
    """An Arrow table of items in ``schema`` (with a vector column if the schema has one)."""
    import pyarrow as pa

    columns: dict[str, Any] = {
        name: [getattr(item, name) for item in items] for name in schema.names if name != "vector"
    }
    if "vector" in schema.names:
        vectors = np.stack([np.asarray(item.vector, dtype=np.float32) for item in items])
        flat = pa.array(vectors.reshape(-1))
        dim = vectors.shape[1]
        if isinstance(schema.field("vector").type, pa.FixedSizeListType):
            columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, dim)
        else:  # Milvus' bulk import reads a plain list column
            offsets = pa.array(np.arange(0, len(flat) + 1, dim, dtype=np.int32))
            columns["vector"] = pa.ListArray.from_arrays(offsets, flat)
    return pa.table({name: columns[name] for name in schema.names}, schema=schema)


def from_arrow(columns: Mapping[str, Sequence[Any]], vectors: Any = None) -> list[Item]:
    """Items from Arrow columns (``to_pydict()``); ``vectors``: a matrix aligned with the rows.

    Columns an older export lacks read as empty; ``vectors`` defaults to a ``vector`` column.
    """
    count = len(columns["id"])
    if vectors is None and "vector" in columns:
        vectors = [np.asarray(v, dtype=np.float32) for v in columns["vector"]]
    items = []
    for i in range(count):

        def value(name: str, row: int = i) -> Any:
            values = columns.get(name)
            return values[row] if values is not None else None

        items.append(_item(value, vectors[i] if vectors is not None else None))
    return items
