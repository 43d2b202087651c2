"""A search grouped per product (``--per-item``): the k best catalog items, each ranked by its best
picture, exact whatever the over-fetch, checked against a plain-Python model and on the Lite store."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.errors import ConfigError
from lookalike.store import Hit, Item, LiteStore, grouping
from lookalike.store.fields import FIELDS
from lookalike.store.rows import to_row
from lookalike.store.server import ServerStore
from lookalike.store.window import Window
from tests.store_model import DIM, Model, make_item, vector

PRODUCTS = ("p0", "p1", "p2", "p3", "")


def catalog(assignment: list[int]) -> Model:
    """Items 1..n, the i-th a picture of PRODUCTS[assignment[i]] (the empty one: a product of its own)."""
    model = Model()
    model.upsert(
        [
            dataclasses.replace(make_item(i + 1), item_id=PRODUCTS[p % len(PRODUCTS)])
            for i, p in enumerate(assignment)
        ]
    )
    return model


def exact_search(model: Model, query: np.ndarray, calls: list[tuple[int, Window]]) -> grouping.Search:
    """The model's exhaustive per-picture search, recording what each round asked for."""

    def search(k: int, window: Window) -> list[Hit]:
        calls.append((k, window))
        ids = model.top(query, k, window)
        return [Hit(float(np.dot(model.rows[i].vector, query)), model.rows[i]) for i in ids]

    return search


@settings(max_examples=300, deadline=None)
@given(
    assignment=st.lists(st.integers(0, len(PRODUCTS) - 1), min_size=0, max_size=30),
    k=st.integers(1, 6),
    per_item=st.integers(1, 4),
    seed=st.integers(0, 50),
    first=st.integers(1, 8),
    excluded=st.lists(st.sampled_from(PRODUCTS[:-1]), max_size=2),
)
def test_grouping_answers_the_best_products_whatever_the_first_fetch(
    assignment: list[int], k: int, per_item: int, seed: int, first: int, excluded: list[str]
) -> None:
    model = catalog(assignment)
    query = vector(seed)
    window = Window.of(exclude_item_ids=excluded, exclude_ids=[3])
    calls: list[tuple[int, Window]] = []
    original = grouping.MIN_FETCH, grouping.OVERFETCH
    grouping.MIN_FETCH, grouping.OVERFETCH = first, 1  # small first rounds: the refills are what is tested
    try:
        found = grouping.per_product(exact_search(model, query, calls), k=k, per_item=per_item, window=window)
    finally:
        grouping.MIN_FETCH, grouping.OVERFETCH = original
    assert [[hit.item.id for hit in hits] for hits in found] == model.top_products(query, k, per_item, window)
    scores = [hits[0].score for hits in found]
    assert scores == sorted(scores, reverse=True)
    assert len(calls) <= 2 + k * per_item  # every round makes progress: it never loops
    for _, asked in calls:  # a round only narrows the caller's window
        assert set(window.exclude_ids) <= set(asked.exclude_ids)
        assert set(window.exclude_item_ids) <= set(asked.exclude_item_ids)


def test_a_product_with_many_pictures_fills_one_slot_and_the_next_products_still_come() -> None:
    """Item p0 has the 40 best pictures: a first round of 8 sees only p0, and later rounds find the rest."""
    query = vector(1)
    model = Model()
    near = [query + 0.01 * vector(100 + i) for i in range(40)]
    items = [
        dataclasses.replace(make_item(i + 1), item_id="p0", vector=(v / np.linalg.norm(v)).astype(np.float32))
        for i, v in enumerate(near)
    ]
    items += [make_item(100 + i) for i in range(5)]  # sku100..sku104, one picture each
    model.upsert(items)
    calls: list[tuple[int, Window]] = []
    original = grouping.MIN_FETCH, grouping.OVERFETCH
    grouping.MIN_FETCH, grouping.OVERFETCH = 8, 1
    try:
        found = grouping.per_product(exact_search(model, query, calls), k=4, per_item=2, window=Window())
    finally:
        grouping.MIN_FETCH, grouping.OVERFETCH = original
    assert [hits[0].item.item_id for hits in found][0] == "p0"
    assert [len(hits) for hits in found] == [2, 1, 1, 1]
    assert [[h.item.id for h in hits] for hits in found] == model.top_products(query, 4, 2)
    assert calls[1][1].exclude_item_ids == ("p0",)  # the second round looks past p0's pictures


def test_the_lite_store_groups_through_its_read_index_with_filters_and_ids_left_out(tmp_path: Path) -> None:
    store = LiteStore(str(tmp_path / "g.db"), "images")
    store.create(DIM)
    model = catalog([i % len(PRODUCTS) for i in range(60)])
    store.insert(list(model.rows.values()))
    query = vector(5)
    for window in (
        Window(),
        Window.of(sources=["shop-a"], exclude_ids=[1, 2]),
        Window.of(categories=["bags"]),
    ):
        for k, per_item in ((1, 1), (3, 1), (4, 3), (20, 2)):
            found = store.search_products(query, k=k, per_item=per_item, window=window)
            assert [[h.item.id for h in hits] for hits in found] == model.top_products(
                query, k, per_item, window
            )
    # 4 named products and 12 pictures without an item id: 16 products in all, however many are asked.
    assert len(store.search_products(query, k=100, per_item=1)) == 4 + 12
    with pytest.raises(ConfigError, match="per_item must be between 1 and 100"):
        store.search_products(query, k=3, per_item=0)
    store.close()


def test_an_item_without_an_item_id_is_a_product_of_its_own() -> None:
    assert grouping.product(dataclasses.replace(make_item(7), item_id="")) is None
    assert grouping.product(make_item(3)) == "sku3"


class FakeServer:
    """A Milvus client as far as a search needs one: it says its version and records each search, and
    answers a grouped search with two products and a plain one with two pictures without an item id."""

    def __init__(self, version: str, rows: dict[str, list[tuple[float, Item]]]) -> None:
        self.version = version
        self.rows = rows
        self.searches: list[dict[str, Any]] = []

    def get_server_version(self) -> str:
        return self.version

    def search(self, collection: str, **kwargs: Any) -> list[list[dict[str, Any]]]:
        self.searches.append(kwargs)
        answer = self.rows["grouped" if "group_by_field" in kwargs else "plain"]
        where = kwargs["filter"]
        if 'item_id in [""]' in where and 'not (item_id in [""])' not in where:
            answer = [(score, item) for score, item in answer if not item.item_id]
        fields = [spec.name for spec in FIELDS]
        return [
            [{"distance": score, **to_row(item, fields)} for score, item in answer][: kwargs["limit"] * 3]
        ]

    def close(self) -> None:
        pass


def server_store(client: FakeServer) -> ServerStore:
    store = ServerStore("http://127.0.0.1:1", "images")
    store._client = client
    store._loaded = store._schema_checked = True
    store._partitions = {"_default"}
    store._index = ("FLAT", {})
    store._description = {
        "fields": [{"name": "vector", "params": {"dim": DIM}}, *({"name": spec.name} for spec in FIELDS)]
    }
    return store


def picture(i: int, item_id: str) -> Item:
    return dataclasses.replace(make_item(i), item_id=item_id)


@pytest.mark.parametrize(("version", "per_item", "native"), [
    ("v2.5.4", 2, True), ("v2.4.9", 1, True), ("v2.4.9", 2, False), ("v2.3.5", 1, False), ("unknown", 1, False)
])  # fmt: skip
def test_a_server_with_grouping_search_groups_by_item_id_itself(
    version: str, per_item: int, native: bool
) -> None:
    grouped = [(0.9, picture(1, "p0")), (0.8, picture(2, "p0")), (0.5, picture(3, "p1"))]
    plain = [(0.85, picture(4, "")), (0.4, picture(5, ""))]
    client = FakeServer(version, {"grouped": grouped, "plain": plain + grouped})
    found = server_store(client).search_products(vector(1), k=3, per_item=per_item)
    if not native:  # lookalike groups the server's per-picture hits: no grouping asked of the server
        assert all("group_by_field" not in call for call in client.searches)
        assert [[h.item.id for h in hits] for hits in found] == [[1, 2][:per_item], [4], [3]]
        return
    asked = next(call for call in client.searches if "group_by_field" in call)
    assert asked["group_by_field"] == "item_id" and asked["limit"] == 3
    assert ("group_size" in asked) == (per_item > 1) and asked.get("strict_group_size") in (None, True)
    assert 'not (item_id in [""])' in asked["filter"]  # Milvus would make one group of them...
    alone = next(call for call in client.searches if "group_by_field" not in call)
    assert 'item_id in [""]' in alone["filter"]  # ...so they are searched apart, each its own product
    assert [[h.item.id for h in hits] for hits in found] == [[1, 2][:per_item], [4], [3]]
