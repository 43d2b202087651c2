"""Stateful property test: whatever happens to a Lite collection, every read answers what Milvus holds.

Random sequences of inserts, upserts (moving items between months and sources), deletes,
partition drops, clean reopenings, crashes (the store abandoned without saving), writes that
fail half-way, and writes by another pymilvus client are run against the Lite store and a
plain-Python model. After every step, Milvus itself, and every read of the store (count with
and without filters, get, iteration, search with random filters) must equal the model. The
rules and checks shared with the server's run (tests/server/test_store_invariant_server.py) are
in tests/store_machine.py; the crashes, half-way failures and foreign writes are Lite's own.

STORE_EXAMPLES raises the number of examples (CI runs a bounded, derandomized set);
LOOKALIKE_TEST_SEED=random explores new sequences and prints the seed, LOOKALIKE_TEST_SEED=<n>
replays them (tests/seeds.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from lookalike.errors import StoreError
from lookalike.store import LiteStore, grouping, segments, tiers
from lookalike.store.partitions import partition_for
from tests.seeds import seeded
from tests.store_machine import StoreMachine, months, specs
from tests.store_model import foreign_row, make_item, milvus_rows, vector

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES = int(os.environ.get("STORE_EXAMPLES", "12"))
ROOT = Path(tempfile.mkdtemp(prefix="lookalike-invariant-"))
DB = ROOT / "invariant.db"  # one Milvus Lite server for the whole run; a collection per example


@pytest.fixture(autouse=True)
def _graphs_from_a_few_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Months of a few rows get HNSW graphs, grown and rebuilt, as months of thousands would."""
    monkeypatch.setattr(tiers, "SEAL_ROWS", 4)
    monkeypatch.setattr(segments, "GRAPH_FROM", 3)
    # A grouped search over-fetches 4 × 64 pictures: a few here, so that its refills are exercised.
    monkeypatch.setattr(grouping, "MIN_FETCH", 1)
    monkeypatch.setattr(grouping, "OVERFETCH", 1)


class LiteStoreMachine(StoreMachine):
    def open(self) -> LiteStore:
        return LiteStore(str(DB), self.name)

    def milvus_ids(self) -> set[int]:
        return set(milvus_rows(DB, self.name))

    @rule(spec=specs)
    def crash_after_a_write(self, spec: list[tuple[int, int, int]]) -> None:
        """The process dies after Milvus took a write and before the read index was saved."""
        items = self._items(spec)
        self.store.insert(items)
        self.model.upsert(items)
        self.store = self.open()  # the old store is abandoned: nothing of it is saved

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


LiteStoreMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_lite_store_answers_what_milvus_holds = seeded(LiteStoreMachine).TestCase
