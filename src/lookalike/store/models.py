"""Typed rows and results; nothing above store/ sees a pymilvus dict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

SCALAR_FIELDS = ("id", "sha256", "item_id", "name", "source", "created_at", "uri", "width", "height")


def arrow_schema(vector: Any = None, metadata: dict[str, str] | None = None) -> Any:
    """The Arrow schema of stored items; ``vector`` (an Arrow list type) adds the vector after the id."""
    import pyarrow as pa

    types = {"id": pa.int64(), "created_at": pa.int64(), "width": pa.int32(), "height": pa.int32()}
    fields = [(name, types.get(name, pa.string())) for name in SCALAR_FIELDS]
    if vector is not None:
        fields.insert(1, ("vector", vector))
    return pa.schema(fields, metadata=metadata)


class IndexType(StrEnum):
    FLAT = "FLAT"
    IVF_FLAT = "IVF_FLAT"
    IVF_SQ8 = "IVF_SQ8"
    IVF_PQ = "IVF_PQ"
    HNSW = "HNSW"


@dataclass(frozen=True)
class Item:
    """One stored image and its metadata."""

    id: int
    sha256: str
    item_id: str
    name: str
    source: str
    created_at: int
    uri: str
    width: int
    height: int
    vector: npt.NDArray[np.float32] | None = field(default=None, compare=False, repr=False)

    def metadata(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("vector")
        return data


@dataclass(frozen=True)
class Hit:
    """A search result: a stored item and its cosine similarity to the query."""

    score: float
    item: Item

    def to_dict(self) -> dict[str, Any]:
        meta = self.item.metadata()
        return {
            "id": meta["id"],
            "score": round(self.score, 6),
            "item_id": meta["item_id"],
            "name": meta["name"],
            "source": meta["source"],
            "created_at": meta["created_at"],
            "uri": meta["uri"],
        }


@dataclass(frozen=True)
class PartitionStats:
    """A partition's row count and, for a monthly partition, the [start, end) it covers."""

    name: str
    rows: int
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    dim: int
    index_type: str
    index_params: dict[str, Any]
    model: str
    rows: int
    partitions: list[PartitionStats]
    sources: dict[str, int]
