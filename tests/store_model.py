"""A plain-Python model of a collection, and helpers the store tests share."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.store import Item
from lookalike.store.partitions import partition_for
from lookalike.store.rows import normalise
from lookalike.store.window import EVERYTHING, Window

DIM = 16
JAN_2024 = 1_704_067_200
DAY = 86_400
SOURCES = (
    "shop-a",
    "shop-b",
    "アバター" * 21,
)  # the last one is 252 bytes: near the 256-byte limit, kept whole
CATEGORIES = ("shoes", "bags", "")
TAGS = ((), ("red",), ("red", "sale"), ("blue", 'a "quoted" tag'))


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make_item(item_id: int, *, month: int = 0, source: int = 0, version: int = 0, name: str = "") -> Item:
    return Item(
        id=item_id,
        sha256=f"{item_id:064x}",
        item_id=f"sku{item_id}",
        name=name or f"item {item_id} v{version}",
        source=SOURCES[source % len(SOURCES)],
        created_at=JAN_2024 + month * 31 * DAY + item_id,
        uri=f"/photos/{item_id}.jpg",
        width=800,
        height=600,
        vector=vector(item_id * 1000 + version),
        category=CATEGORIES[item_id % len(CATEGORIES)],
        tags=TAGS[(item_id + version) % len(TAGS)],  # a write again changes the tags
    )


class Model:
    """What Milvus should hold: id → the item as stored (normalised)."""

    def __init__(self) -> None:
        self.rows: dict[int, Item] = {}

    def upsert(self, items: Sequence[Item]) -> None:
        for item in items:
            self.rows[item.id] = normalise(item)

    def delete(self, ids: Sequence[int]) -> None:
        for i in ids:
            self.rows.pop(int(i), None)

    def drop(self, partition: str) -> None:
        self.rows = {i: it for i, it in self.rows.items() if partition_for(it.created_at) != partition}

    def window(self, window: Window = EVERYTHING) -> list[Item]:
        """The items inside a window, decided here in plain Python (the stores' interpreters are
        what is tested)."""
        categories, tags = window.values("category"), window.values("tags")
        return [
            it
            for it in self.rows.values()
            if (window.sources is None or it.source in window.sources)
            and (categories is None or it.category in categories)
            and (tags is None or bool(set(it.tags) & set(tags)))
            and (window.item_ids is None or it.item_id in window.item_ids)
            and (window.since is None or it.created_at >= window.since)
            and (window.until is None or it.created_at < window.until)
            and it.id not in window.exclude_ids
        ]

    def top(self, query: np.ndarray, k: int, window: Window = EVERYTHING) -> list[int]:
        rows = self.window(window)
        scored = sorted(rows, key=lambda it: -float(np.dot(it.vector, query)))
        return [it.id for it in scored[:k]]


def same(a: Item, b: Item) -> bool:
    """Equal metadata and (to float precision) the same vector."""
    if a.metadata() != b.metadata():
        return False
    return a.vector is None or b.vector is None or bool(np.allclose(a.vector, b.vector, atol=1e-6))


def milvus_rows(path: Path, collection: str) -> dict[int, dict[str, Any]]:
    """What Milvus itself holds, asked through a separate pymilvus client (as another program would)."""
    from pymilvus import MilvusClient

    client = MilvusClient(str(path))
    rows = client.query(collection, filter="id >= -9223372036854775807", output_fields=["*"], limit=16384)
    client.close()
    return {int(r["id"]): r for r in rows}


def foreign_row(item: Item) -> dict[str, Any]:
    row = dataclasses.asdict(normalise(item))
    row["tags"] = list(row["tags"])
    row["vector"] = item.vector
    return row
