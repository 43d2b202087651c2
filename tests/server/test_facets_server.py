"""The distinct values of the filter fields (GET /facets) on a real Milvus server, as on Milvus Lite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.store import Item, open_store
from tests.server.harness import MilvusServer

pytestmark = pytest.mark.slow

ROWS = [  # source, category, tags, name
    ("shop", "shoes", ("red", "sale"), "red shoe"),
    ("shop", "shoes", ("blue",), ""),
    ("north", "bags", ("red", "leather"), ""),
    ("north", "", (), ""),
]


def items() -> list[Item]:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(len(ROWS), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        Item(
            i + 1,
            f"{i:064x}",
            f"SKU{i}",
            name,
            source,
            1_700_000_000 + i * 40 * 86_400,
            f"/p/{i}.jpg",
            4,
            4,
            vectors[i],
            category=category,
            tags=tags,
        )
        for i, (source, category, tags, name) in enumerate(ROWS)
    ]


def test_both_stores_list_the_same_values_and_follow_their_own_writes(
    milvus_server: MilvusServer, tmp_path: Path
) -> None:
    names = ("source", "category", "tags")
    for uri in (str(tmp_path / "lite.db"), milvus_server.uri):
        store = open_store(uri, "facets")
        store.create(8)
        store.insert(items())
        store.flush()
        found = store.distinct(names, limit=200)
        assert found["source"].values == (("north", 2), ("shop", 2)), uri
        assert found["category"].values == (("shoes", 2), ("bags", 1)), uri
        assert found["tags"].values == (("red", 2), ("blue", 1), ("leather", 1), ("sale", 1)), uri
        assert store.has_text("name") and not store.has_text("label"), uri

        top = store.distinct(names, limit=1)
        assert top["tags"].values == (("red", 2),) and top["tags"].truncated, uri
        assert store.distinct(names, limit=2)["source"] == found["source"], uri  # all of them: not truncated
        assert not found["source"].truncated and found["source"] != top["source"], uri

        store.delete([1, 3])
        after = store.distinct(names, limit=200)  # the store's own write is seen at once, not after a minute
        assert after["category"].values == (("shoes", 1),), uri
        assert after["tags"].values == (("blue", 1),), uri
        assert not store.has_text("name"), uri
        store.drop()
        store.close()
