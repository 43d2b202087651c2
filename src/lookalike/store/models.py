"""Typed rows and results; nothing above store/ sees a pymilvus dict."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.store.fields import FIELDS, SCALAR_FIELDS, added_in

CROP_FIELDS = added_in(2)
"""What a detected crop adds; collections made before crops existed lack these fields."""
WHOLE_IMAGE_LABEL = "image"
"""The label of a whole picture that detection ran on (crops carry the detector's class)."""

Box = tuple[int, int, int, int]
"""x0, y0, x1, y1 in pixels of the original image; x1 and y1 exclusive."""


def box_text(box: Box | None) -> str:
    return ",".join(str(int(v)) for v in box) if box else ""


def parse_box(text: str) -> Box | None:
    """'x0,y0,x1,y1' → a box; '' → None.

    Raises:
        ValueError: not four integers with x0 < x1 and y0 < y1.
    """
    if not text.strip():
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"a box is four integers x0,y0,x1,y1, got {text!r}")
    x0, y0, x1, y1 = (int(float(p)) for p in parts)
    if x0 >= x1 or y0 >= y1 or min(x0, y0) < 0:
        raise ValueError(f"a box needs 0 <= x0 < x1 and 0 <= y0 < y1, got {text!r}")
    return x0, y0, x1, y1


class IndexType(StrEnum):
    FLAT = "FLAT"
    IVF_FLAT = "IVF_FLAT"
    IVF_SQ8 = "IVF_SQ8"
    IVF_PQ = "IVF_PQ"
    HNSW = "HNSW"


@dataclass(frozen=True)
class Item:
    """One stored image, or one detected crop of an image, and its metadata.

    A crop keeps its picture's uri, item_id, name, width and height; ``box`` says where it
    lies ("x0,y0,x1,y1", empty for a whole picture), ``parent_sha256`` whose bytes it came from,
    ``label`` and ``det_score`` what the detector saw.
    """

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
    # Keyword-only, so the positional order (…, width, height, vector) stays as it was before crops.
    parent_sha256: str = field(default="", kw_only=True)
    box: str = field(default="", kw_only=True)
    label: str = field(default="", kw_only=True)
    det_score: float = field(default=0.0, kw_only=True)
    category: str = field(default="", kw_only=True)
    tags: tuple[str, ...] = field(default=(), kw_only=True)

    @property
    def crop_box(self) -> Box | None:
        return parse_box(self.box) if self.box else None

    def metadata(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("vector")
        return data


@dataclass(frozen=True)
class Hit:
    """A search result: a stored item and its cosine similarity to the query (a keyword search's: its
    BM25 score; a hybrid search's: the fused score, with ``ranks``)."""

    score: float
    item: Item
    ranks: tuple[int | None, int | None] | None = field(default=None, kw_only=True, compare=False)
    """A hybrid hit's rank (from 1) in the vector and in the keyword hits (None: not among them)."""

    def to_dict(self) -> dict[str, Any]:
        """The hit as the API and ``search --json`` show it: the fields the table puts in a hit, the
        score after the id, a crop's box as four numbers (None for a whole picture)."""
        item = self.item
        data: dict[str, Any] = {"id": item.id, "score": round(self.score, 6)}
        for spec in FIELDS[1:]:
            if spec.in_hit:
                value = getattr(item, spec.name)
                data[spec.name] = spec.hit_value(value) if spec.hit_value else value
        box = item.crop_box
        data["box"] = list(box) if box else None
        data["det_score"] = round(float(item.det_score), 4) if box else None
        if self.ranks is not None:  # a hybrid search's hit only: others keep their shape
            data["ranks"] = {"vector": self.ranks[0], "keyword": self.ranks[1]}
        return data


def _check_item_fields() -> None:
    """``Item`` holds exactly the table's fields (a row added there needs its attribute here)."""
    names = [spec.name for spec in dataclasses.fields(Item) if spec.name != "vector"]
    if sorted(names) != sorted(SCALAR_FIELDS):
        raise RuntimeError(f"Item's fields {names} differ from the field table's {list(SCALAR_FIELDS)}")


_check_item_fields()


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
    search: dict[str, Any] | None = None
    """How a Lite collection's searches meet their recall promise (``ReadIndex.recall_summary``);
    None for a server, whose index is its own."""
