"""The store's stateful test, shared by Milvus Lite (tests/unit) and a Milvus server (tests/server).

``StoreMachine`` runs random inserts, upserts that move items between months and sources,
deletes (with absent ids among them), partition drops and reopenings against a store and the
plain-Python ``Model``; after every step what Milvus holds, counts, gets, iteration and searches
must equal the model, and a rule reads a random window (sources, categories, tags, since, until, item ids,
excluded ids) through search,
count and iteration. A subclass says how its store opens and how another client sees Milvus, and
adds what only its backend has (Lite: crashes, half-way failures, foreign writes).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lookalike.store import Item, Store
from lookalike.store.distinct import count_rows, top
from lookalike.store.partitions import partition_for
from lookalike.store.window import Window
from tests.store_model import CATEGORIES, DIM, JAN_2024, SOURCES, Model, make_item, same, vector

DAY = 86_400
NAMES = itertools.count()  # a collection per example, never reused within a run

ids = st.integers(min_value=1, max_value=40)
months = st.integers(min_value=0, max_value=3)
PRODUCTS = ("p0", "p1", "p2", "")
"""Catalog items with several pictures, and none (each picture a product of its own)."""
specs = st.lists(
    st.tuples(ids, months, st.integers(0, len(SOURCES) - 1)),
    min_size=1,
    max_size=12,
    unique_by=lambda t: t[0],
)
windows = st.fixed_dictionaries(
    {},
    optional={
        "sources": st.lists(st.sampled_from([*SOURCES, "nobody"]), max_size=2),
        "since": st.integers(0, 120).map(lambda d: JAN_2024 + d * DAY),
        "until": st.integers(0, 130).map(lambda d: JAN_2024 + d * DAY),
        "item_ids": st.lists(ids.map(lambda i: f"sku{i}"), max_size=3),
        "categories": st.lists(st.sampled_from([*CATEGORIES, "hats"]), max_size=2),
        "tags": st.lists(st.sampled_from(["red", "sale", "blue", 'a "quoted" tag', "none"]), max_size=2),
        "exclude_ids": st.lists(ids, max_size=3),
        "exclude_item_ids": st.lists(st.sampled_from(["sku1", "sku2", *PRODUCTS]), max_size=2),
    },
).map(lambda given: Window.of(**given))


class StoreMachine(RuleBasedStateMachine):
    """Writes, deletes, drops and reopenings of one collection, checked against Model after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"invariant_{next(NAMES)}"
        self.store = self.open()
        self.store.create(DIM, index="HNSW")
        self.model = Model()
        self.version = 0

    # -- what a backend provides -------------------------------------------------------------------

    def open(self) -> Store:
        """A new store object on this machine's collection."""
        raise NotImplementedError

    def milvus_ids(self) -> set[int]:
        """The ids Milvus holds, asked through another client (as another program would)."""
        raise NotImplementedError

    # -- rules ---------------------------------------------------------------------------------------

    def _items(self, spec: list[tuple[int, int, int]]) -> list[Item]:
        self.version += 1
        return [make_item(i, month=m, source=s, version=self.version) for i, m, s in spec]

    @initialize(spec=specs)
    def fill(self, spec: list[tuple[int, int, int]]) -> None:
        """Every example starts with stored items, whichever rules it then runs."""
        self.insert(spec)

    @rule(spec=specs)
    def insert(self, spec: list[tuple[int, int, int]]) -> None:
        items = self._items(spec)
        self.store.insert(items)
        self.model.upsert(items)

    @rule(data=st.data())
    @precondition(lambda self: self.model.rows)
    def upsert_moving(self, data: st.DataObject) -> None:
        """Stored items written again, each maybe in another month and from another source."""
        stored = st.sampled_from(sorted(self.model.rows))
        chosen = data.draw(st.lists(stored, min_size=1, max_size=6, unique=True))
        sources = st.integers(0, len(SOURCES) - 1)
        items = self._items([(i, data.draw(months), data.draw(sources)) for i in chosen])
        assert self.store.upsert(items) == len(items)
        self.model.upsert(items)

    @rule(data=st.data())
    @precondition(lambda self: self.model.rows)
    def delete(self, data: st.DataObject) -> None:
        chosen = data.draw(st.lists(st.sampled_from(sorted(self.model.rows)), min_size=1, max_size=5))
        absent = data.draw(st.lists(st.integers(100, 110), max_size=2))
        assert self.store.delete([*chosen, *absent]) == len(set(chosen))
        self.model.delete(chosen)

    @rule(month=months)
    def drop_partition(self, month: int) -> None:
        name = partition_for(JAN_2024 + month * 31 * DAY + 1)
        if name in self.store.partitions():
            self.store.drop_partitions([name])
        self.model.drop(name)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self.open()

    @rule(spec=specs)
    def insert_pictures_of_products(self, spec: list[tuple[int, int, int]]) -> None:
        """Items that share a catalog item id (a product's pictures), or have none."""
        items = [dataclasses.replace(it, item_id=PRODUCTS[it.id % len(PRODUCTS)]) for it in self._items(spec)]
        self.store.insert(items)
        self.model.upsert(items)

    @rule(window=windows, k=st.integers(1, 6), per_item=st.integers(1, 3), seed=st.integers(0, 20))
    def read_products(self, window: Window, k: int, per_item: int, seed: int) -> None:
        """A search grouped per product answers the model's best products, whatever the window."""
        query = vector(seed)
        found = self.store.search_products(query, k=k, per_item=per_item, window=window)
        assert [[hit.item.id for hit in hits] for hits in found] == self.model.top_products(
            query, k, per_item, window
        )

    @rule(window=windows, k=st.integers(1, 12))
    def read_any_window(self, window: Window, k: int) -> None:
        query = vector(k)
        hits = self.store.search(query[None], k=k, window=window)[0]
        assert [hit.item.id for hit in hits] == self.model.top(query, k, window)
        for hit in hits:
            assert same(hit.item, self.model.rows[hit.item.id])
            assert abs(hit.score - float(np.dot(self.model.rows[hit.item.id].vector, query))) < 1e-5
        inside = self.model.window(window)
        assert self.store.count(window) == len(inside)
        seen = [item for batch in self.store.iter_items(batch_size=5, window=window) for item in batch]
        assert sorted(item.id for item in seen) == sorted(item.id for item in inside)
        assert all(same(item, self.model.rows[item.id]) for item in seen)

    # -- after every step (in name order: iteration first, before any other read) --------------------

    @invariant()
    def counts_gets_and_iteration_equal_the_model(self) -> None:
        store, model = self.store, self.model
        # Straight after the step's writes: a read that lags them must show here.
        seen = [item for batch in store.iter_items(batch_size=7) for item in batch]
        ids = sorted(item.id for item in seen)
        assert ids == sorted(model.rows), (ids, sorted(model.rows), store.partitions())
        assert all(same(item, model.rows[item.id]) for item in seen)
        assert store.count() == len(model.rows)
        assert store.count(Window.of(sources=[SOURCES[0]])) == len(
            model.window(Window.of(sources=[SOURCES[0]]))
        )
        got = store.get([*model.rows, 999], with_vector=True)
        assert len(got) == len(model.rows)
        assert all(same(item, model.rows[item.id]) for item in got)
        assert store.existing_ids([*model.rows, 999]) == set(model.rows)

    @invariant()
    def milvus_holds_the_model(self) -> None:
        assert self.milvus_ids() == set(self.model.rows)

    @invariant()
    def searches_equal_the_model(self) -> None:
        query = vector(7)
        for window in (
            Window(),
            Window.of(sources=[SOURCES[2]]),
            Window(since=JAN_2024 + 31 * DAY, until=JAN_2024 + 70 * DAY),
        ):
            hits = self.store.search(query[None], k=5, window=window)[0]
            assert [hit.item.id for hit in hits] == self.model.top(query, 5, window)

    @invariant()
    def distinct_values_equal_the_model(self) -> None:
        """The filter fields' values and counts (the search page's pickers) follow every write."""
        names = ("source", "category", "tags")
        rows = (
            {"source": i.source, "category": i.category, "tags": i.tags} for i in self.model.rows.values()
        )
        expected = count_rows(rows, names)
        found = self.store.distinct(names, limit=3)
        for name in names:
            assert found[name] == top(expected[name], 3), (name, found[name], expected[name])

    def teardown(self) -> None:
        self.store.drop()
        self.store.close()
