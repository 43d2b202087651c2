"""One hit per product and examples as queries on a real Milvus server (2.3.5 here: no grouping search,
so lookalike groups the server's hits itself), checked against the plain-Python model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lookalike.config import load_settings
from lookalike.examples import Example, ExampleKind
from lookalike.queries import Query
from lookalike.store import grouping, open_store
from lookalike.store.server import ServerStore
from lookalike.store.window import Window
from lookalike.usecases import Context
from lookalike.usecases import search as searching
from tests.helpers import FakeEmbedder
from tests.server.harness import MilvusServer
from tests.store_model import DIM, Model, make_item, vector

pytestmark = pytest.mark.slow

PRODUCTS = ("p0", "p1", "p2", "p3", "")


def test_a_server_without_grouping_search_groups_per_product_exactly(
    milvus_server: MilvusServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = open_store(milvus_server.uri, "grouping")
    if store.exists():
        store.drop()
    store.create(DIM, index="FLAT")
    assert isinstance(store, ServerStore) and store.server_version() == (2, 3)  # the client-side path
    model = Model()
    items = [dataclasses.replace(make_item(i), item_id=PRODUCTS[i % len(PRODUCTS)]) for i in range(1, 61)]
    store.insert(items)
    model.upsert(items)
    monkeypatch.setattr(grouping, "MIN_FETCH", 2)  # small rounds: the refills meet the server's filters
    monkeypatch.setattr(grouping, "OVERFETCH", 1)
    for seed in (1, 2):
        query = vector(seed)
        for window in (
            Window(),
            Window.of(sources=["shop-a"], exclude_ids=[1, 2]),
            Window.of(categories=["bags"]),
        ):
            for k, per_item in ((1, 1), (3, 1), (4, 3), (20, 2)):
                found = store.search_products(query, k=k, per_item=per_item, window=window)
                assert [[h.item.id for h in hits] for hits in found] == model.top_products(
                    query, k, per_item, window
                ), (seed, window, k, per_item)
    assert len(store.search_products(vector(3), k=100, per_item=1)) == 4 + 12  # p0-p3 and 12 alone

    # Through the use case: grouping and examples (stored ones need no model) on the server.
    service = Context(load_settings(db=milvus_server.uri, collection="grouping"), embedder=FakeEmbedder(DIM))
    like = (Example("item:p1", ExampleKind.ITEM, "p1"),)
    found = searching.search(service, Query(like=like, k=3, per_item=2, offset=1))
    p1 = [i for i in model.rows.values() if i.item_id == "p1"]
    query = np.mean([i.vector for i in p1], axis=0)
    query /= np.linalg.norm(query)
    expected = model.top_products(query, 4, 2, Window.of(exclude_ids=[i.id for i in p1]))[1:]
    assert [h.item.id for h in found.hits] == [i for ids in expected for i in ids]
    store.drop()
    store.close()
