"""A process that only reads opens the read index from Milvus Lite's own files, without starting
Milvus Lite; whatever the files cannot vouch for (a log left by a crash, an unknown version, a
write the read index has not seen) opens Milvus Lite as before, and the first write starts it."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lookalike.errors import DatabaseInUseError
from lookalike.store import LiteStore, litefiles, open_store
from lookalike.store.partitions import partition_for
from lookalike.store.window import Window
from tests.store_model import DIM, JAN_2024, Model, foreign_row, make_item, vector

ROOT = Path(__file__).resolve().parents[2]


def _made(tmp_path: Path, rows: int = 60) -> tuple[Path, Model]:
    """A database written and closed cleanly: two months, a few deleted."""
    db = tmp_path / "r.db"
    store = LiteStore(str(db), "images")
    store.create(DIM)
    items = [make_item(i, month=i % 2, source=i % 2) for i in range(1, rows + 1)]
    store.insert(items)
    store.delete([3, 4])
    store.flush()
    store.close()
    model = Model()
    model.upsert(items)
    model.delete([3, 4])
    return db, model


def _milvus_lite_runs(db: Path) -> bool:
    from milvus_lite.server_manager import server_manager_instance

    return server_manager_instance._servers.get(os.path.abspath(db)) is not None


def _locked_by_another(db: Path) -> bool:
    """Whether a writer (Milvus Lite takes the lock exclusively) would find the database taken."""
    fd = os.open(db / "LOCK", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _answers_like(store: LiteStore, model: Model) -> None:
    assert store.count() == len(model.rows)
    assert store.existing_ids(list(range(1, 400))) == set(model.rows)
    assert [item.id for item in store.get([1, 2, 3])] == [1, 2]
    for seed in (5, 17, 33):
        query = vector(seed * 1000)
        assert [h.item.id for h in store.search(query[None, :], k=5)[0]] == model.top(query, 5)
        window = Window(since=JAN_2024 + 31 * 86_400)  # February: one whole month
        assert [h.item.id for h in store.search(query[None, :], k=5, window=window)[0]] == model.top(
            query, 5, window
        )
    exported = sorted(item.id for batch in store.iter_items(with_vector=False) for item in batch)
    assert exported == sorted(model.rows)


def test_a_reader_answers_from_the_files_without_starting_milvus_lite(tmp_path: Path) -> None:
    db, model = _made(tmp_path)
    index_files = sorted(
        (p.name, p.stat().st_mtime_ns) for p in (db / "lookalike-index" / "images").iterdir()
    )
    store = LiteStore(str(db), "images", read_files=True)
    _answers_like(store, model)
    assert store.exists() and store.dim() == DIM and store.index()[0] == "HNSW"
    info = store.info()
    assert info.rows == len(model.rows) and sum(info.sources.values()) == len(model.rows)
    assert {p.name for p in info.partitions if p.rows} == {
        partition_for(it.created_at) for it in model.rows.values()
    }
    assert info.search is not None and info.search["target_recall_at_10"] == 0.99
    assert store._client is None and not _milvus_lite_runs(db)
    assert _locked_by_another(db)  # no writer can change the files under the reader
    store.close()
    assert not _locked_by_another(db)
    after = sorted((p.name, p.stat().st_mtime_ns) for p in (db / "lookalike-index" / "images").iterdir())
    assert after == index_files  # a reader writes nothing


def test_two_readers_share_the_files_and_a_writer_is_told_who_holds_them(tmp_path: Path) -> None:
    db, model = _made(tmp_path)
    reader = LiteStore(str(db), "images", read_files=True)
    assert reader.count() == len(model.rows)
    script = textwrap.dedent(
        f"""
        from lookalike.store import LiteStore
        from lookalike.errors import DatabaseInUseError
        reader = LiteStore({str(db)!r}, "images", read_files=True)
        print("reader", reader.count(), reader._client is None)
        reader.close()
        try:
            LiteStore({str(db)!r}, "images").delete([1])
        except DatabaseInUseError as exc:
            print("writer refused:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert f"reader {len(model.rows)} True" in done.stdout, done.stderr[-2000:]
    assert "writer refused:" in done.stdout and f"pid {os.getpid()}" in done.stdout
    reader.close()


def test_the_first_write_starts_milvus_lite_and_the_reader_sees_it(tmp_path: Path) -> None:
    db, model = _made(tmp_path)
    store = LiteStore(str(db), "images", read_files=True)
    assert store.count() == len(model.rows) and store._client is None
    added = [make_item(i, month=i % 2) for i in (101, 102)]
    store.insert(added)
    store.delete([5])
    model.upsert(added)
    model.delete([5])
    assert store._client is not None
    _answers_like(store, model)
    store.close()
    again = LiteStore(str(db), "images", read_files=True)
    _answers_like(again, model)
    assert again._client is None  # closed cleanly: the files prove the saved index again
    again.close()


def test_a_log_left_by_a_crash_opens_milvus_lite(tmp_path: Path) -> None:
    db, model = _made(tmp_path)
    script = textwrap.dedent(
        f"""
        import os
        from lookalike.store import LiteStore
        from tests.store_model import make_item
        store = LiteStore({str(db)!r}, "images")
        store.insert([make_item(i, month=i % 2) for i in (201, 202, 203)])
        os._exit(9)  # killed: Milvus Lite's write-ahead log holds the rows, nothing was flushed
        """
    )
    subprocess.run(
        [sys.executable, "-c", script], check=False, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
    )  # fmt: skip
    assert any(name.startswith("wal_") for name in os.listdir(db / "collections" / "images" / "wal"))
    assert litefiles.read(db, "images") is None
    model.upsert([make_item(i, month=i % 2) for i in (201, 202, 203)])
    store = LiteStore(str(db), "images", read_files=True)
    _answers_like(store, model)
    assert store._client is not None
    store.close()


def test_an_unknown_milvus_lite_version_opens_milvus_lite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, model = _made(tmp_path)
    assert litefiles.read(db, "images") is not None
    monkeypatch.setattr(litefiles, "_milvus_lite_version", lambda: "9.9.9")
    assert litefiles.read(db, "images") is None
    store = LiteStore(str(db), "images", read_files=True)
    _answers_like(store, model)
    assert store._client is not None
    store.close()


def test_a_write_by_another_program_is_seen_and_repaired(tmp_path: Path) -> None:
    from milvus_lite.server_manager import server_manager_instance
    from pymilvus import MilvusClient

    db, model = _made(tmp_path)
    foreign = make_item(301, month=1)
    client = MilvusClient(str(db))
    client.insert("images", [foreign_row(foreign)], partition_name=partition_for(foreign.created_at))
    client.close()
    server_manager_instance.release_server(str(db))  # another program, gone
    model.upsert([foreign])
    store = LiteStore(str(db), "images", read_files=True)
    _answers_like(store, model)
    assert store._client is not None  # the files' generation is not the read index's
    store.close()


def test_the_files_say_what_milvus_lite_says(tmp_path: Path) -> None:
    """Generation, partitions, fields and properties from the files, against Milvus Lite reopened."""
    db = tmp_path / "f.db"
    store = LiteStore(str(db), "images")
    store.create(DIM, model="tiny")
    steps = [
        lambda: store.insert([make_item(i, month=i % 3) for i in range(1, 40)]),
        lambda: store.delete([1, 2, 3]),
        lambda: store.insert([make_item(5, month=2, version=1)]),  # moves an item to another month
        lambda: store.drop_partitions([partition_for(make_item(3, month=0).created_at)]),
        lambda: store.flush(),
    ]
    for step in steps:
        step()
        store.close()
        files = litefiles.read(db, "images")
        assert files is not None
        engine = LiteStore(str(db), "images")
        seq, partitions = engine.generation()
        assert (files.generation, files.partitions) == (seq, tuple(sorted(partitions)))
        described = engine._describe()
        assert files.description["properties"] == dict(described["properties"])
        dims = {f["name"]: f["params"].get("dim") for f in described["fields"]}
        assert {f["name"]: f["params"].get("dim") for f in files.description["fields"]} == dims
        engine.close()
        store = LiteStore(str(db), "images")
    store.close()


def test_one_store_per_database_and_a_second_collection_ends_the_hold(tmp_path: Path) -> None:
    db, model = _made(tmp_path)
    reader = open_store(str(db), "images", read_files=True)
    assert open_store(str(db), "images", read_files=True) is reader  # one store per collection
    assert reader.count() == len(model.rows) and reader._client is None
    other = open_store(str(db), "others")
    other.create(DIM)  # Milvus Lite starts in this process: the reader's hold ends
    other.insert([make_item(900)])
    _answers_like(reader, model)  # now through Milvus Lite's own state
    assert reader._on_files() is None
    for store in (reader, reader, other):
        store.close()
    assert not _locked_by_another(db)


def test_a_reader_refuses_nothing_a_writer_holds(tmp_path: Path) -> None:
    db, model = _made(tmp_path)
    writer = LiteStore(str(db), "images")
    assert writer.count() == len(model.rows)  # Milvus Lite runs here: the files are not read
    reader = LiteStore(str(db), "images", read_files=True)
    assert reader._on_files() is None
    reader.close()
    writer.close()
    blocker = os.open(db / "LOCK", os.O_RDWR)
    fcntl.flock(blocker, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process's Milvus Lite would
    try:
        with pytest.raises(DatabaseInUseError):
            LiteStore(str(db), "images", read_files=True).count()
    finally:
        os.close(blocker)


def test_a_command_that_only_reads_never_imports_milvus_lite(tmp_path: Path) -> None:
    db, _ = _made(tmp_path)
    script = textwrap.dedent(
        """
        import sys
        from lookalike.cli import app
        try:
            app(["stats", "--json"])
        except SystemExit:
            pass
        print("imported:", "milvus_lite" in sys.modules, "pymilvus" in sys.modules, file=sys.stderr)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "LOOKALIKE_DB": str(db)},
    )  # fmt: skip
    assert json.loads(done.stdout)["rows"] == 58, done.stderr[-2000:]
    assert "imported: False False" in done.stderr, done.stderr[-2000:]
