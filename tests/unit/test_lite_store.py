"""The Lite store's read index answers what Milvus holds: each defect once found, as a test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pymilvus import MilvusClient

from lookalike.errors import ConfigError, DatabaseInUseError, StoreError
from lookalike.store import Item, LiteStore
from lookalike.store.partitions import partition_for
from lookalike.store.rows import cut_utf8
from lookalike.store.window import Window
from tests.store_model import DIM, JAN_2024, foreign_row, make_item, milvus_rows, vector

DAY = 86_400


def _store(tmp_path: Path, *, create: bool = True, index: str = "HNSW") -> LiteStore:
    store = LiteStore(str(tmp_path / "t.db"), "images")
    if create:
        store.create(DIM, index=index)
    return store


def _two_months(n: int) -> list[Item]:
    return [make_item(i, month=i % 2) for i in range(1, n + 1)]


def _ids(store: LiteStore) -> list[int]:
    return sorted(item.id for batch in store.iter_items(with_vector=False) for item in batch)


def test_an_insert_failing_on_its_second_partition_leaves_no_row_unseen(tmp_path: Path) -> None:
    store = _store(tmp_path)
    write_rows = store._write_rows
    calls = []

    def fail_second(partition: str, group: list, *, upsert: bool) -> None:
        calls.append(partition)
        if len(calls) == 2:
            raise StoreError("injected: the server went away")
        write_rows(partition, group, upsert=upsert)

    store._write_rows = fail_second  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        store.insert(_two_months(74))
    del store._write_rows
    held = milvus_rows(tmp_path / "t.db", "images")
    assert 0 < len(held) < 74  # Milvus kept the first partition's rows
    assert store.count() == len(held) and _ids(store) == sorted(held)
    assert store.existing_ids(list(range(1, 75))) == set(held)
    store.close()
    reopened = _store(tmp_path, create=False)
    assert reopened.count() == len(held) and _ids(reopened) == sorted(held)
    reopened.insert(_two_months(74))  # the "already stored?" check saw the right rows: now all 74
    assert reopened.count() == 74 == len(milvus_rows(tmp_path / "t.db", "images"))


def test_a_foreign_delete_and_insert_with_equal_counts_is_seen_on_reopen(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert([make_item(i) for i in range(1, 11)])
    store.close()
    newcomer = make_item(500, version=7)
    script = f"""
        from pymilvus import MilvusClient
        import numpy as np
        client = MilvusClient({str(tmp_path / "t.db")!r})
        client.delete("images", ids=[3])
        row = {dict(foreign_row(newcomer), vector=None)!r}
        row["vector"] = np.asarray({newcomer.vector.tolist()!r}, dtype=np.float32)
        client.insert("images", [row], partition_name={partition_for(newcomer.created_at)!r})
        client.close()
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=True, timeout=120)
    reopened = _store(tmp_path, create=False)
    assert 3 not in _ids(reopened) and 500 in _ids(reopened) and reopened.count() == 10
    assert reopened.get([3]) == [] and reopened.get([500])[0].id == 500
    hits = reopened.search(newcomer.vector[None], k=1)[0]
    assert hits[0].item.id == 500


def test_a_foreign_write_in_the_same_process_is_seen_by_the_next_read(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert([make_item(i) for i in range(1, 6)])
    assert store.count() == 5
    client = MilvusClient(str(tmp_path / "t.db"))
    client.delete("images", ids=[2])
    client.insert(
        "images", [foreign_row(make_item(77))], partition_name=partition_for(make_item(77).created_at)
    )
    assert _ids(store) == [1, 3, 4, 5, 77]


def test_a_saved_read_index_is_reused_without_reading_milvus(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert(_two_months(50))
    store.close()
    reopened = _store(tmp_path, create=False)

    def no_rebuild(**_: object) -> None:
        raise AssertionError("the saved read index should have been used")

    reopened._milvus_items = no_rebuild  # type: ignore[method-assign,assignment]
    assert reopened.count() == 50 and len(reopened.search(vector(3)[None], k=5)[0]) == 5


def test_a_crash_after_a_write_is_caught_up_from_the_journal(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert(_two_months(10))
    store.flush()
    store.insert([make_item(i, month=2) for i in range(20, 25)])
    store.delete([1, 2])
    # The process "dies": the store is abandoned without saving; Milvus kept both writes.
    reopened = _store(tmp_path, create=False)
    assert _ids(reopened) == sorted([*range(3, 11), *range(20, 25)])


def test_names_are_cut_by_utf8_bytes_the_same_way_in_milvus_and_the_read_index(tmp_path: Path) -> None:
    source = "ショップ" * 21  # 84 characters, 252 bytes: near the 256-byte limit, kept whole
    item = make_item(1)
    item = Item(**{**item.metadata(), "source": source, "name": "名" * 1000, "vector": item.vector})
    store = _store(tmp_path)
    store.insert([item])
    cut = cut_utf8("名" * 1000, 2048)
    assert len(cut.encode()) <= 2048 and len(cut) == 682
    held = milvus_rows(tmp_path / "t.db", "images")[1]
    assert held["source"] == source == store.get([1])[0].source
    assert held["name"] == cut == store.get([1])[0].name
    assert [
        h.item.id for h in store.search(item.vector[None], k=1, window=Window.of(sources=[source]))[0]
    ] == [1]
    store.close()
    import shutil

    shutil.rmtree(tmp_path / "t.db" / "lookalike-index")  # rebuilt from Milvus: the same answer
    rebuilt = _store(tmp_path, create=False)
    assert [
        h.item.id for h in rebuilt.search(item.vector[None], k=1, window=Window.of(sources=[source]))[0]
    ] == [1]


def test_a_source_over_its_byte_limit_is_refused_whole_never_cut(tmp_path: Path) -> None:
    store = _store(tmp_path)
    long_source = "ショップ" * 75  # 900 bytes: cut to 256, two shops sharing that prefix would merge
    bad = Item(**{**make_item(2).metadata(), "source": long_source, "vector": vector(2)})
    with pytest.raises(ConfigError, match=r"source of item 2 is 900 bytes .* 256-byte limit .* never cut"):
        store.insert([make_item(1), bad])
    assert store.count() == 0 and milvus_rows(tmp_path / "t.db", "images") == {}


@pytest.mark.parametrize("created_at", [253402300799, -1_000_000_000_000, 1_700_000_000_000, -1])
def test_the_store_refuses_dates_it_cannot_partition(tmp_path: Path, created_at: int) -> None:
    store = _store(tmp_path)
    bad = Item(**{**make_item(1).metadata(), "created_at": created_at, "vector": vector(1)})
    with pytest.raises(ConfigError, match="outside 1970-01-01"):
        store.insert([make_item(2), bad])
    assert store.count() == 0  # refused whole, before anything was written
    assert store.partitions() == ["_default"]


def test_a_database_holding_a_year_9999_partition_still_opens_lists_and_drops_it(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert([make_item(1)])
    store.close()
    client = MilvusClient(str(tmp_path / "t.db"))  # what an older lookalike did with "9999-12-31T23:59:59"
    client.create_partition("images", "m9999_12")
    row = foreign_row(make_item(2))
    row["created_at"] = 253402300799
    client.insert("images", [row], partition_name="m9999_12")
    reopened = _store(tmp_path, create=False)
    stats = {p.name: p for p in reopened.partition_stats()}
    assert stats["m9999_12"].rows == 1 and stats["m9999_12"].start == 253399622400
    assert reopened.info().rows == 2 and reopened.count() == 2
    assert len(reopened.search(vector(5)[None], k=5)[0]) == 2
    reopened.drop_partitions(["m9999_12"])
    assert _ids(reopened) == [1] and "m9999_12" not in reopened.partitions()


def test_a_database_open_in_another_process_is_named_as_in_use(tmp_path: Path) -> None:
    _store(tmp_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from pymilvus import MilvusClient; MilvusClient({str(tmp_path / 't.db')!r}); "
         "print('open', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(DatabaseInUseError) as caught:
            _store(tmp_path, create=False).count()
        message = str(caught.value)
        assert "in use by another process" in message and f"pid {holder.pid}" in message
        assert "lookalike serve" in message and "POST /index" in message
    finally:
        holder.kill()
        holder.wait()


def test_compact_erases_deleted_rows_bytes_from_every_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    marker = "erase-me-GDPR-7f3a9c"
    doomed = Item(**{**make_item(5).metadata(), "name": marker, "vector": vector(424242)})
    kept = [make_item(i) for i in range(1, 5)]
    store.insert([*kept, doomed])
    store.flush()
    store.close()  # everything on disk: Milvus Lite segments and the read index
    folder = tmp_path / "t.db"
    needles = [marker.encode(), np.asarray(doomed.vector, dtype=np.float32).tobytes()[:32]]
    assert _files_holding(folder, needles)  # the bytes are there before
    store = _store(tmp_path, create=False)
    assert store.delete([5]) == 1
    assert store.compact() >= 1
    store.close()
    assert _files_holding(folder, needles) == []
    assert _files_holding(folder, [kept[0].name.encode()])  # the other rows are still stored
    assert _ids(_store(tmp_path, create=False)) == [1, 2, 3, 4]


def _files_holding(folder: Path, needles: list[bytes]) -> list[str]:
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            data = Path(root, name).read_bytes()
            if any(needle in data for needle in needles):
                found.append(os.path.relpath(Path(root, name), folder))
    return found


def test_moving_an_item_to_another_month_keeps_one_copy(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert([make_item(1, month=0), make_item(2, month=0)])
    store.upsert([make_item(1, month=2, version=5)])
    assert _ids(store) == [1, 2]
    got = store.get([1], with_vector=True)[0]
    assert got.created_at == JAN_2024 + 2 * 31 * DAY + 1 and np.allclose(got.vector, vector(1005))
    assert {p.name: p.rows for p in store.partition_stats()} == {"_default": 0, "m2024_01": 1, "m2024_03": 1}
    store.drop_partitions(["m2024_03"])
    assert _ids(store) == [2] and set(milvus_rows(tmp_path / "t.db", "images")) == {2}


def test_an_import_leaves_out_rows_dated_out_of_range_and_says_so(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lookalike.store.backup import import_parquet
    from lookalike.store.rows import arrow_schema, to_arrow

    rows = [make_item(i) for i in range(1, 4)]
    rows.append(Item(**{**make_item(4).metadata(), "created_at": 253402300799, "vector": vector(4)}))
    schema = arrow_schema(pa.list_(pa.float32(), DIM), metadata={"lookalike.dim": str(DIM)})
    pq.write_table(to_arrow(rows, schema), tmp_path / "old.parquet")
    store = _store(tmp_path, create=False)
    with pytest.raises(ConfigError, match=r"Imported 3 items .* 1 rows .* dated outside .*ids 4"):
        import_parquet(store, str(tmp_path / "old.parquet"))
    assert _ids(store) == [1, 2, 3]


@pytest.fixture
def _graphs_from_a_few_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.store import segments, tiers

    monkeypatch.setattr(tiers, "SEAL_ROWS", 8)
    monkeypatch.setattr(segments, "GRAPH_FROM", 8)


@pytest.mark.usefixtures("_graphs_from_a_few_rows")
def test_compact_erases_a_graph_rows_float32_and_fp16_bytes(tmp_path: Path) -> None:
    """A graph holds a vector twice on disk: fp16 codes in its FAISS file, float32 beside it."""
    store = _store(tmp_path)
    doomed = Item(**{**make_item(7).metadata(), "vector": vector(515151)})
    store.insert([*(make_item(i) for i in range(1, 7)), doomed, *(make_item(i) for i in range(8, 21))])
    store.close()
    folder = tmp_path / "t.db"
    index_files = folder / "lookalike-index" / "images"
    assert list(index_files.glob("*.f32"))  # the month is a graph
    as_float32 = np.asarray(doomed.vector, dtype=np.float32).tobytes()[:32]
    as_fp16 = np.asarray(doomed.vector, dtype=np.float16).tobytes()[:16]
    assert _files_holding(index_files, [as_float32]) and _files_holding(index_files, [as_fp16])
    store = _store(tmp_path, create=False)
    assert store.delete([7]) == 1 and store.compact() >= 1
    store.close()
    assert _files_holding(folder, [as_float32, as_fp16]) == []
    assert _ids(_store(tmp_path, create=False)) == [i for i in range(1, 21) if i != 7]


@pytest.mark.usefixtures("_graphs_from_a_few_rows")
def test_a_graph_whose_vector_file_is_lost_is_rebuilt_from_milvus(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(tmp_path)
    items = [make_item(i) for i in range(1, 21)]
    store.insert(items)
    store.close()
    (lost,) = (tmp_path / "t.db" / "lookalike-index" / "images").glob("*.f32")
    lost.unlink()
    reopened = _store(tmp_path, create=False)
    hits = reopened.search(items[4].vector[None], k=3)[0]
    assert hits[0].item.id == 5 and hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert _ids(reopened) == list(range(1, 21))
    assert "rebuilt" in caplog.text


@pytest.mark.usefixtures("_graphs_from_a_few_rows")
@pytest.mark.parametrize("suffix", [".f32", ".arrow", "state.json"])
def test_a_fifo_in_place_of_a_read_index_file_is_rebuilt_around_not_waited_on(
    tmp_path: Path, suffix: str
) -> None:
    store = _store(tmp_path)
    store.insert([make_item(i) for i in range(1, 21)])
    store.close()
    folder = tmp_path / "t.db" / "lookalike-index" / "images"
    (victim,) = [folder / "state.json"] if suffix == "state.json" else folder.glob(f"*{suffix}")
    victim.unlink()
    os.mkfifo(victim)
    reopened = _store(tmp_path, create=False)  # opening the FIFO for reading would block for ever
    assert _ids(reopened) == list(range(1, 21))
    assert reopened.search(make_item(5).vector[None], k=1)[0][0].item.id == 5


@pytest.mark.usefixtures("_graphs_from_a_few_rows")
def test_a_flush_leaves_a_month_one_graph_when_its_tail_is_a_sixteenth_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.store import tiers

    monkeypatch.setattr(tiers, "SEAL_LEAST", 2)
    store = _store(tmp_path)
    store.insert([make_item(i) for i in range(1, 21)])  # a graph of 20
    store.insert([make_item(i) for i in range(21, 25)])  # a tail of 4 (< SEAL_ROWS: flat)
    shard = store.read_index().snapshot.shards["m2024_01"]
    assert [s.is_graph for s in shard] == [True, False]
    store.flush()
    shard = store.read_index().snapshot.shards["m2024_01"]
    assert [(s.is_graph, s.live) for s in shard] == [(True, 24)]
    store.close()
    assert _ids(_store(tmp_path, create=False)) == list(range(1, 25))


def test_rows_milvus_lite_replays_twice_after_a_kill_are_one_item_each_in_the_read_index(
    tmp_path: Path,
) -> None:
    """Killed during Milvus Lite's flush, its first reopen can answer each row twice (segment file
    and write-ahead log both replayed); the next reopen answers it once. The read index rebuilt
    from the first must hold every item once, or every hit is doubled for good."""
    import shutil

    store = _store(tmp_path)
    store.insert(_two_months(30))
    store.close()
    shutil.rmtree(tmp_path / "t.db" / "lookalike-index")  # rebuilt from Milvus on the next open
    reopened = _store(tmp_path, create=False)
    replay = reopened._milvus_items

    def doubled(**kwargs: object) -> object:
        for offset, batch in replay(**kwargs):  # type: ignore[arg-type]
            yield offset, batch
            yield offset, batch

    reopened._milvus_items = doubled  # type: ignore[method-assign,assignment]
    assert _ids(reopened) == list(range(1, 31)) and reopened.count() == 30
    hits = reopened.search(vector(3)[None], k=6)[0]
    assert len({h.item.id for h in hits}) == 6


def test_a_purge_writes_milvus_from_milvus_never_from_a_damaged_read_index_file(tmp_path: Path) -> None:
    """Read-index files are memory-mapped, not checksummed: junk written into one in place is not seen.
    A purge rewrites its partition from what Milvus holds, so the damage never reaches Milvus."""
    import shutil

    store = _store(tmp_path)
    items = [make_item(i) for i in range(1, 21)]
    store.insert(items)
    store.close()
    damaged = 0
    for path in (tmp_path / "t.db" / "lookalike-index" / "images").glob("*.npy"):
        vectors = np.load(path, mmap_mode="r+")
        vectors[0], vectors[1] = np.nan, 0.0
        vectors.flush()
        damaged += 1
    assert damaged
    reopened = _store(tmp_path, create=False)
    reopened.delete([20], erase=True)
    reopened.close()
    shutil.rmtree(tmp_path / "t.db" / "lookalike-index")  # what Milvus holds, read again
    fresh = _store(tmp_path, create=False)
    stored = {item.id: item for batch in fresh.iter_items(with_vector=True) for item in batch}
    assert sorted(stored) == list(range(1, 20))
    for item in items[:19]:
        np.testing.assert_allclose(stored[item.id].vector, item.vector, atol=1e-6)


@pytest.mark.parametrize("damage", ["empty", "header only", "junk"])
def test_a_damaged_vector_file_of_the_read_index_is_rebuilt_from_milvus(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(tmp_path)
    store.insert([make_item(i) for i in range(1, 21)])
    store.close()
    (victim, *_) = sorted((tmp_path / "t.db" / "lookalike-index" / "images").glob("*.npy"))
    content = {"empty": b"", "header only": victim.read_bytes()[:64], "junk": b"\x93NUMPY" + b"\xff" * 50}
    victim.write_bytes(content[damage])
    reopened = _store(tmp_path, create=False)
    assert _ids(reopened) == list(range(1, 21)) and reopened.count() == 20
    assert "rebuilt" in caplog.text
