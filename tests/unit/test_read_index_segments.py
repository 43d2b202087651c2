"""The read index's shards under growth: one HNSW graph per month, grown by copies, never in place.

Thresholds are lowered so that a few hundred rows exercise every path (a flat tail, a graph
built from it, a copy of the graph grown by the next tail, a rebuild once a quarter is dead,
saved and memory-mapped segments grown again) and searched with a breadth past the row count,
so that the graph's answer is the exact one. The stateful test is derandomized unless
LOOKALIKE_TEST_SEED gives a seed or asks for a random one (tests/seeds.py).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lookalike.store import readindex, segments, tiers
from lookalike.store.models import IndexType
from lookalike.store.partitions import month_start, next_month, partition_for
from lookalike.store.readindex import ReadIndex
from lookalike.store.vectorfile import VectorFile
from lookalike.store.window import Window
from tests.seeds import seeded
from tests.store_model import DIM, SOURCES, Model, make_item, vector

SEAL, GRAPH_FROM = 40, 16


@pytest.fixture(autouse=True)
def _small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiers, "SEAL_ROWS", SEAL)
    monkeypatch.setattr(segments, "GRAPH_FROM", GRAPH_FROM)
    monkeypatch.setattr(tiers, "SEAL_LEAST", 4)


def _apply(index: ReadIndex, items: list, deletes: list[int], generation: int) -> None:
    by_partition: dict[str, list] = {}
    for item in items:
        by_partition.setdefault(partition_for(item.created_at), []).append(item)
    index.apply(items, deletes, by_partition, generation)


def _exact(model: Model, query: np.ndarray, k: int) -> list[int]:
    rows = sorted(model.rows.values(), key=lambda it: (-float(np.dot(it.vector, query)), it.id))
    return [it.id for it in rows[:k]]


def _exact_in(model: Model, query: np.ndarray, k: int, window: Window) -> list[int]:
    rows = model.window(window)
    ranked = sorted(rows, key=lambda it: (-float(np.dot(it.vector, query)), it.id))
    return [it.id for it in ranked[:k]]


def test_a_month_keeps_one_graph_grown_by_copies_and_old_snapshots_stay_as_they_were(tmp_path: Path) -> None:
    index = ReadIndex(tmp_path / "idx", DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    _apply(index, [make_item(i) for i in range(1, 51)], [], 1)  # 50 rows: past SEAL, one graph
    (graph,) = index.snapshot.shards["m2024_01"]
    assert graph.is_graph and len(graph) == 50
    before = index.snapshot
    _apply(index, [make_item(i) for i in range(51, 71)], [2, 3], 2)  # a flat tail of 20
    _apply(index, [make_item(i) for i in range(71, 91)], [], 3)  # the tail reaches 40: into the graph
    (grown,) = index.snapshot.shards["m2024_01"]
    assert grown.is_graph and grown is not graph and len(grown) == 90 and grown.live == 88
    assert int(graph.index.ntotal) == 50  # the old snapshot's graph was copied, not grown
    old_hits = index.search(vector(1 * 1000)[None, :], 3, ef=500)  # (now against the new state)
    assert [h.item.id for h in old_hits[0]][0] == 1
    assert before.shards["m2024_01"] == (graph,)  # the snapshot a reader held is unchanged

    index.save()
    (mapped,) = index.snapshot.shards["m2024_01"]
    assert mapped.saved_dead == 2 and mapped.mapped
    _apply(index, [], [5], 4)
    index.save()  # only a tombstone file is written; the mapped graph is kept, not read again
    (after,) = index.snapshot.shards["m2024_01"]
    assert after.saved_dead == 3 and after.index is mapped.index
    _apply(index, [make_item(i) for i in range(91, 131)], [], 5)  # a memory-mapped graph grows too
    (again,) = index.snapshot.shards["m2024_01"]
    assert len(again) == 130 and again.live == 127 and not again.mapped

    _apply(index, [], list(range(4, 40)), 6)  # 38 of 130 dead: the next tail rebuilds the graph
    _apply(index, [make_item(i) for i in range(131, 171)], [], 7)
    (rebuilt,) = index.snapshot.shards["m2024_01"]
    assert rebuilt.dead == 0 and len(rebuilt) == 130 - 38 + 40


def test_a_flush_moves_a_closed_months_flat_tail_into_its_graph(tmp_path: Path) -> None:
    index = ReadIndex(tmp_path / "idx", DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    _apply(index, [make_item(i) for i in range(1, 51)], [], 1)  # a graph of 50
    _apply(index, [make_item(i) for i in range(51, 53)], [], 2)  # a tail of 2: under 4, stays flat
    assert not index.seal()
    _apply(index, [make_item(i) for i in range(53, 61)], [7], 3)  # a tail of 10 (< SEAL): flat so far
    assert [s.is_graph for s in index.snapshot.shards["m2024_01"]] == [True, False]
    query = vector(57 * 1000)[None, :]
    before = [h.item.id for h in index.search(query, 5, ef=500)[0]]
    held = index.snapshot
    assert index.seal()  # 10 flat rows ≥ max(SEAL_LEAST, 50 // 16): one graph holds them all
    (graph,) = index.snapshot.shards["m2024_01"]
    assert graph.is_graph and len(graph) == 60 and graph.live == 59
    assert [h.item.id for h in index.search(query, 5, ef=500)[0]] == before
    assert [s.is_graph for s in held.shards["m2024_01"]] == [True, False]  # a reader's view unchanged
    assert not index.seal()  # nothing left to move


def test_a_flat_store_never_grows_graphs_at_a_flush(tmp_path: Path) -> None:
    index = ReadIndex(tmp_path / "idx", DIM, IndexType.FLAT, {})
    _apply(index, [make_item(i) for i in range(1, 30)], [], 1)
    assert not index.seal()
    assert not any(s.is_graph for s in index.snapshot.shards["m2024_01"])


def test_months_share_one_graph_and_a_window_walks_only_its_months_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = ReadIndex(tmp_path / "idx", DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    items = [make_item(i, month=i % 5) for i in range(1, 301)]  # five months of 60 rows
    tails = [make_item(i, month=i % 5) for i in range(301, 311)]
    _apply(index, items, [], 1)
    _apply(index, tails, [4, 9], 2)  # and flat tails
    views = [s for _, s in index.snapshot.segments() if s.is_graph]
    assert len(views) == 5 and len({s.name for s in views}) == 1  # one graph, a view of it per month
    assert [s.members for s in views] == [60] * 5 and sum(s.live for s in views) == 298
    model = Model()
    model.upsert([*items, *tails])
    model.delete([4, 9])
    march = month_start(partition_for(make_item(1, month=2).created_at))
    assert march is not None
    window = Window(since=march, until=next_month(march))
    queries = [vector(i * 1000 + 1) for i in (1, 57, 123, 299, 305)]
    for query in queries:
        assert [h.item.id for h in index.search(query[None, :], 7, ef=500)[0]] == _exact(model, query, 7)
        hits = index.search(query[None, :], 7, window, ef=500)[0]
        assert [h.item.id for h in hits] == model.top(query, 7, window)
    monkeypatch.setattr(readindex, "_ONE_BLAS_THREAD", True)  # a server: the same answers
    for query in queries:
        assert [h.item.id for h in index.search(query[None, :], 7, ef=500)[0]] == _exact(model, query, 7)


class ShardMachine(RuleBasedStateMachine):
    """Random inserts, upserts, deletes, drops, saves and reloads against a dict of rows."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.generation = 0
        self.next_id = 1

    @initialize(folder=st.integers(0, 10**9))
    def start(self, folder: int) -> None:
        self.folder = Path(self._tmp) / f"idx{folder}-{id(self)}"
        self.index = ReadIndex(self.folder, DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})

    def _write(self, items: list, deletes: list[int]) -> None:
        self.generation += 1
        _apply(self.index, items, deletes, self.generation)
        self.model.delete(deletes)
        self.model.upsert(items)

    @rule(n=st.integers(1, 45) | st.integers(30, 45), month=st.integers(0, 1))
    def insert(self, n: int, month: int) -> None:
        items = [make_item(self.next_id + i, month=month) for i in range(n)]
        self.next_id += n
        self._write(items, [])

    @rule(data=st.data(), version=st.integers(1, 3))
    def upsert_existing(self, data: st.DataObject, version: int) -> None:
        if self.model.rows:
            ids = data.draw(st.lists(st.sampled_from(sorted(self.model.rows)), min_size=1, max_size=8))
            month = data.draw(st.integers(0, 2))  # an upsert may move an item to another month
            self._write([make_item(i, month=month, version=version) for i in set(ids)], [])

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        if self.model.rows:
            ids = data.draw(st.lists(st.sampled_from(sorted(self.model.rows)), min_size=1, max_size=30))
            self._write([], ids)

    @rule(month=st.integers(0, 2))
    def drop(self, month: int) -> None:
        name = partition_for(make_item(1, month=month).created_at)
        self.generation += 1
        self.index.replace_shard(name, None, self.generation)
        self.model.drop(name)

    @rule()
    def seal(self) -> None:
        self.index.seal()  # what a flush does before it saves

    @rule()
    def save_and_reload(self) -> None:
        self.index.save()
        reloaded = ReadIndex(self.folder, DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
        assert reloaded.load() is not None
        self.index = reloaded

    @invariant()
    def answers_what_the_model_holds(self) -> None:
        if not hasattr(self, "index"):
            return
        assert self.index.count() == len(self.model.rows)
        for name, segs in self.index.snapshot.shards.items():
            assert sum(s.is_graph for s in segs) <= 1 and sum(not s.is_graph for s in segs) <= 1, name
        if self.model.rows:
            some = sorted(self.model.rows)[:: max(1, len(self.model.rows) // 3)]
            got = self.index.get(some, with_vector=True)
            assert [it.id for it in got] == some
            for it in got:
                np.testing.assert_array_equal(it.vector, self.model.rows[it.id].vector)
            query = vector(self.generation * 7 + 1)
            hits = self.index.search(query[None, :], 10, ef=1000)[0]
            assert [h.item.id for h in hits] == _exact(self.model, query, 10)
            # A whole month of the shared graph (its rows' own mask), part of one (row by row), a source.
            start = month_start(partition_for(make_item(1, month=self.generation % 3).created_at))
            assert start is not None
            for window in (
                Window(since=start, until=next_month(start)),
                Window(since=start + 20, until=next_month(start)),
                Window.of(sources=[SOURCES[0]]),
            ):
                hits = self.index.search(query[None, :], 10, window, ef=1000)[0]
                assert [h.item.id for h in hits] == _exact_in(self.model, query, 10, window), window


@pytest.mark.parametrize("run", [0])
def test_shards_answer_what_the_model_holds(tmp_path: Path, run: int) -> None:
    ShardMachine._tmp = str(tmp_path)  # type: ignore[attr-defined]
    case = seeded(ShardMachine).TestCase
    case.settings = settings(
        max_examples=40,
        stateful_step_count=30,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    case().runTest()


def test_left_out_segments_are_let_go_of_later_and_only_then_their_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readindex, "RETIRE_AFTER_S", 3600.0)  # released by hand below
    folder = tmp_path / "idx"
    index = ReadIndex(folder, DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    _apply(index, [make_item(i) for i in range(1, 51)], [], 1)
    index.save()
    (graph,) = index.snapshot.shards["m2024_01"]
    saved = [folder / f for f in graph.files()]
    _apply(index, [make_item(i) for i in range(51, 91)], [], 2)  # grown: the mapped graph is left out
    index.release()
    assert all(p.exists() for p in saved)  # state.json still names them: a crash now must find them
    index.save()
    assert not any(p.exists() for p in saved)

    index.save()
    (grown,) = index.snapshot.shards["m2024_01"]
    grown_files = [folder / f for f in grown.files()]
    index.replace_shard("m2024_01", None, 3)  # a month dropped while a reader may still be on it
    index.save()
    assert all(p.exists() for p in grown_files)  # held until the segment is let go of
    index.release()
    assert not any(p.exists() for p in grown_files)
    reopened = ReadIndex(folder, DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    assert reopened.load() is not None and reopened.count() == 0


def test_a_saved_graph_scores_in_float32_from_its_file_without_mapping_it(tmp_path: Path) -> None:
    """The graph walks fp16 codes; the best candidates are re-scored with the float32 vectors, read
    by position from the segment's ``.f32`` file, which is never memory-mapped (its pages would
    count as the process' memory)."""
    folder = tmp_path / "idx"
    index = ReadIndex(folder, DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    items = [make_item(i) for i in range(1, 201)]
    _apply(index, items, [], 1)
    index.save()
    (graph,) = index.snapshot.shards["m2024_01"]
    assert graph.is_graph and graph.mapped and isinstance(graph.floats, VectorFile)
    by_id = {it.id: it for it in items}
    for item_id in (1, 77, 200):
        query = by_id[item_id].vector
        hits = index.search(query[None, :], 10)[0]
        assert hits[0].item.id == item_id  # a stored vector finds itself first
        for hit in hits:  # every score is the float32 inner product, not fp16's approximation
            assert hit.score == pytest.approx(float(np.dot(query, by_id[hit.item.id].vector)), abs=1e-6)
    maps = Path("/proc/self/maps")
    if maps.exists():
        mapped_files = maps.read_text()
        assert f"{graph.name}.faiss" in mapped_files  # the graph and its fp16 codes are mapped
        assert f"{graph.name}.f32" not in mapped_files


def test_a_copy_saved_in_the_previous_format_is_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    index = ReadIndex(folder, DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    _apply(index, [make_item(i) for i in range(1, 60)], [], 1)
    index.save()
    state = json.loads((folder / "state.json").read_text())
    (folder / "state.json").write_text(json.dumps({**state, "version": 3}))
    assert ReadIndex(folder, DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40}).load() is None


def test_a_server_runs_blas_on_one_thread_and_searches_stop_limiting_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadpoolctl import threadpool_info

    index = ReadIndex(tmp_path / "idx", DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    _apply(index, [make_item(i) for i in range(1, 30)], [], 1)
    monkeypatch.setattr(readindex, "_ONE_BLAS_THREAD", False)
    limit = readindex.use_one_blas_thread()
    try:
        assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")

        def no_per_call_limit() -> None:
            raise AssertionError("a search limited BLAS again")

        monkeypatch.setattr(readindex, "_blas", no_per_call_limit)
        assert index.search(make_item(3).vector[None, :], 5)[0][0].item.id == 3
    finally:
        limit.restore_original_limits()


def test_near_ties_across_months_come_back_in_exact_float32_order(tmp_path: Path) -> None:
    """Scores 1e-5 apart (well inside fp16's rounding) in two months' graphs: the hits are the exact
    top k in float32 order, ties by id, whatever the fp16 codes made of them."""
    index = ReadIndex(tmp_path / "idx", DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    centre = vector(7)
    rng = np.random.default_rng(3)
    model = Model()
    items = []
    for i in range(1, 121):
        nudged = centre + 1e-3 * rng.normal(size=DIM).astype(np.float32)
        items.append(replace(make_item(i, month=i % 2), vector=nudged.astype(np.float32)))
    model.upsert(items)
    _apply(index, list(model.rows.values()), [], 1)
    index.save()
    assert all(s.is_graph for segs in index.snapshot.shards.values() for s in segs)
    for k in (1, 5, 10, 20):
        hits = index.search(centre[None, :], k, ef=200)[0]
        assert [h.item.id for h in hits] == _exact(model, centre, k)


def test_a_dropped_months_rows_leave_the_files_of_the_graph_it_shared(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    index = ReadIndex(folder, DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    items = [replace(make_item(i, month=i % 3), name=f"MARK{i}X") for i in range(1, 121)]
    _apply(index, items, [], 1)
    index.save()
    assert len({s.name for _, s in index.snapshot.segments() if s.is_graph}) == 1  # three months, one graph
    february = partition_for(make_item(1, month=1).created_at)
    index.drop([february], 2)
    index.save()
    index.release()  # what the old graph's readers held goes now, not two seconds later
    kept = [it for it in items if partition_for(it.created_at) != february]
    files = b"".join(p.read_bytes() for p in folder.iterdir())
    for item in items:
        assert (f"MARK{item.id}X".encode() in files) == (item in kept), item.id
        assert (np.asarray(item.vector, dtype=np.float32).tobytes() in files) == (item in kept)
    reloaded = ReadIndex(folder, DIM, IndexType.HNSW, {"M": 8, "efConstruction": 40})
    assert (
        reloaded.load() is not None
        and reloaded.count() == len(kept)
        and february not in reloaded.snapshot.shards
    )
    model = Model()
    model.upsert(kept)
    query = vector(4242)
    assert [h.item.id for h in reloaded.search(query[None, :], 10, ef=500)[0]] == _exact(model, query, 10)
