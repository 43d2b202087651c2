"""Stateful property test: whatever happens to a Lite collection, every read answers what Milvus holds.

Random sequences of inserts, upserts (moving items between months and sources), deletes,
partition drops, clean reopenings, crashes (the store abandoned without saving), writes that
fail half-way, and writes by another pymilvus client are run against the Lite store and a
plain-Python model. After every step, Milvus itself, and every read of the store (count with
and without filters, get, iteration, search with random filters) must equal the model.

STORE_EXAMPLES raises the number of examples (CI runs a bounded, seeded set).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lookalike.errors import StoreError
from lookalike.store import LiteStore, readindex, segments
from lookalike.store.partitions import partition_for
from tests.store_model import DIM, JAN_2024, SOURCES, Model, foreign_row, make_item, milvus_rows, same, vector

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES = int(os.environ.get("STORE_EXAMPLES", "12"))
ROOT = Path(tempfile.mkdtemp(prefix="lookalike-invariant-"))
DB = ROOT / "invariant.db"  # one Milvus Lite server for the whole run; a collection per example
NAMES = itertools.count()
DAY = 86_400


@pytest.fixture(autouse=True)
def _graphs_from_a_few_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Months of a few rows get HNSW graphs, grown and rebuilt, as months of thousands would."""
    monkeypatch.setattr(segments, "SEAL_ROWS", 4)
    monkeypatch.setattr(readindex, "SEAL_ROWS", 4)
    monkeypatch.setattr(segments, "GRAPH_FROM", 3)


ids = st.integers(min_value=1, max_value=40)
months = st.integers(min_value=0, max_value=3)
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
    },
)


class LiteStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.name = f"c{next(NAMES)}"
        self.store = LiteStore(str(DB), self.name)
        self.store.create(DIM, index="HNSW")
        self.model = Model()
        self.version = 0

    def _items(self, spec: list[tuple[int, int, int]]) -> list[Any]:
        self.version += 1
        return [make_item(i, month=m, source=s, version=self.version) for i, m, s in spec]

    def _reopen(self) -> None:
        self.store = LiteStore(str(DB), self.name)

    @rule(spec=specs)
    def insert(self, spec: list[tuple[int, int, int]]) -> None:
        items = self._items(spec)
        self.store.insert(items)
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
        self._reopen()

    @rule(spec=specs)
    def crash_after_a_write(self, spec: list[tuple[int, int, int]]) -> None:
        """The process dies after Milvus took a write and before the read index was saved."""
        items = self._items(spec)
        self.store.insert(items)
        self.model.upsert(items)
        self._reopen()  # the old store is abandoned: nothing of it is saved

    @rule(spec=specs)
    def write_fails_half_way(self, spec: list[tuple[int, int, int]]) -> None:
        """The second partition write of an insert fails; Milvus keeps what came before it."""
        store = self.store
        items = self._items(spec)
        reached: list[tuple[str, Any]] = []
        write_rows, delete_rows = store._write_rows, store._delete_rows

        def failing_write(partition: str, group: Any, *, upsert: bool) -> None:
            if any(kind == "write" for kind, _ in reached):
                raise StoreError("injected failure")
            write_rows(partition, group, upsert=upsert)
            reached.append(("write", group))

        def recording_delete(ids: Any, partition: Any = None) -> None:
            delete_rows(ids, partition)
            reached.append(("delete", ids))

        store._write_rows = failing_write  # type: ignore[method-assign]
        store._delete_rows = recording_delete  # type: ignore[method-assign]
        try:
            store.insert(items)
        except StoreError:
            pass
        finally:
            del store._write_rows, store._delete_rows
        for kind, payload in reached:
            if kind == "delete":
                self.model.delete(payload)
            else:
                self.model.upsert(payload)

    @rule(data=st.data(), new_id=st.integers(200, 220), month=months)
    @precondition(lambda self: self.model.rows)
    def foreign_write(self, data: st.DataObject, new_id: int, month: int) -> None:
        """Another pymilvus program deletes one item and inserts another in the same partition."""
        from pymilvus import MilvusClient

        victim = self.model.rows[data.draw(st.sampled_from(sorted(self.model.rows)))]
        if new_id in self.model.rows:
            return  # a second copy of a stored id in another partition is not one item any more
        newcomer = make_item(new_id, month=0, version=99)
        newcomer = type(newcomer)(
            **{**newcomer.metadata(), "created_at": victim.created_at + 1, "vector": vector(new_id)}
        )
        client = MilvusClient(str(DB))
        client.delete(self.name, ids=[victim.id])
        client.insert(self.name, [foreign_row(newcomer)], partition_name=partition_for(victim.created_at))
        client.close()
        self.model.delete([victim.id])
        self.model.upsert([newcomer])

    # -- after every step --------------------------------------------------------------------------

    @invariant()
    def a_milvus_holds_the_model(self) -> None:
        assert set(milvus_rows(DB, self.name)) == set(self.model.rows)

    @invariant()
    def counts_gets_and_iteration_equal_the_model(self) -> None:
        store, model = self.store, self.model
        seen = [item.id for batch in store.iter_items(batch_size=7) for item in batch]
        assert sorted(seen) == sorted(model.rows)
        assert store.count() == len(model.rows)
        assert store.count(sources=[SOURCES[0]]) == len(model.window([SOURCES[0]], None, None))
        got = store.get([*model.rows, 999], with_vector=True)
        assert len(got) == len(model.rows)
        assert all(same(item, model.rows[item.id]) for item in got)
        seen = [item for batch in store.iter_items(batch_size=7) for item in batch]
        assert sorted(item.id for item in seen) == sorted(model.rows)
        assert store.existing_ids([*model.rows, 999]) == set(model.rows)

    @invariant()
    def searches_equal_the_model(self) -> None:
        query = vector(7)
        for window in (
            {},
            {"sources": [SOURCES[2]]},
            {"since": JAN_2024 + 31 * DAY, "until": JAN_2024 + 70 * DAY},
        ):
            hits = self.store.search(query[None], k=5, **window)[0]
            assert [hit.item.id for hit in hits] == self.model.top(query, 5, **window)

    @rule(window=windows, k=st.integers(1, 12))
    def search_any_window(self, window: dict[str, Any], k: int) -> None:
        query = vector(k)
        hits = self.store.search(query[None], k=k, **window)[0]
        assert [hit.item.id for hit in hits] == self.model.top(query, k, **window)
        for hit in hits:
            assert same(hit.item, self.model.rows[hit.item.id])
            assert abs(hit.score - float(np.dot(self.model.rows[hit.item.id].vector, query))) < 1e-5

    def teardown(self) -> None:
        self.store.drop()
        self.store.close()


LiteStoreMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_lite_store_answers_what_milvus_holds = LiteStoreMachine.TestCase
