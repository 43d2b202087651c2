"""The same commands against a real Milvus server as against Milvus Lite, plus what only a server has."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lookalike.bench import clustered_vectors
from lookalike.store import Item, Store, open_store
from lookalike.store.window import Window
from tests.cli import Ran, lookalike  # in-process; the kill test below runs a real process
from tests.helpers import write_images
from tests.server.harness import MilvusServer

pytestmark = pytest.mark.slow

DAY = 86_400
OCT_2023 = 1_696_118_400


@pytest.fixture()
def env(tmp_path: Path, tiny_model: tuple[Path, Path]) -> dict[str, str]:
    config, checkpoint = tiny_model
    return {
        **os.environ,
        "LOOKALIKE_MODEL": str(config),
        "LOOKALIKE_PRETRAINED": str(checkpoint),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }


def ok(run: Ran) -> Ran:
    assert run.returncode == 0, run.stderr
    return run


def write_catalog(folder: Path, count: int) -> Path:
    """Images over two months and two sources, listed in a catalog."""
    paths = write_images(folder / "photos", count)
    catalog = folder / "catalog.csv"
    with catalog.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "item_id", "name", "source", "created_at"])
        for i, path in enumerate(paths):
            created = OCT_2023 + (i * 50 // count) * DAY  # October and November
            writer.writerow(
                [
                    path.name and f"photos/{path.name}",
                    f"sku{i}",
                    f"item {i}",
                    ("shop", "avatar")[i % 2],
                    created,
                ]
            )
    return catalog


def hits(run: Ran) -> list[tuple[int, float]]:
    return [(hit["id"], hit["score"]) for hit in json.loads(ok(run).stdout)["hits"]]


def test_the_cli_answers_the_same_on_a_server_as_on_milvus_lite(
    tmp_path: Path, env: dict[str, str], milvus_server: MilvusServer
) -> None:
    catalog = write_catalog(tmp_path, 30)
    photo = sorted((tmp_path / "photos").iterdir())[7]
    answers = {}
    for backend, db in (("lite", str(tmp_path / "lite.db")), ("server", milvus_server.uri)):
        common = ["--db", db, "--collection", "cli_same"]
        ok(lookalike(env, "index", str(catalog), "--index", "FLAT", *common))
        again = ok(lookalike(env, "index", str(catalog), *common))
        assert "indexed 0 new images, 30 already indexed" in again.stdout
        answers[backend] = {
            "text": hits(
                lookalike(env, "search", "--text", "red floral dress", "--k", "5", "--json", *common)
            ),
            "image": hits(lookalike(env, "search", "--image", str(photo), "--k", "5", "--json", *common)),
            "filtered": hits(
                lookalike(
                    env,
                    "search",
                    "--image",
                    str(photo),
                    "--source",
                    "avatar",
                    "--since",
                    "2023-10-20",
                    "--until",
                    "2023-11-05",
                    "--k",
                    "30",
                    "--json",
                    *common,
                )
            ),
            "partitions": ok(lookalike(env, "partitions", "list", *common)).stdout,
        }
        export = tmp_path / f"{backend}.parquet"
        ok(lookalike(env, "export", str(export), *common))
        restored = ["--db", db, "--collection", "cli_restored"]
        assert "imported 30 items" in ok(lookalike(env, "import", str(export), *restored)).stdout
        answers[backend]["restored"] = hits(
            lookalike(env, "search", "--image", str(photo), "--k", "5", "--json", *restored)
        )
        dropped = ok(lookalike(env, "partitions", "drop", "--before", "2023-11-01", "--yes", *common))
        assert "m2023_10" in dropped.stdout
        answers[backend]["after_drop"] = hits(
            lookalike(env, "search", "--image", str(photo), "--k", "30", "--json", *common)
        )
    lite, server = answers["lite"], answers["server"]
    assert lite["partitions"] == server["partitions"]
    for key in ("text", "image", "filtered", "restored", "after_drop"):
        assert [i for i, _ in lite[key]] == [i for i, _ in server[key]], key
        np.testing.assert_allclose([s for _, s in lite[key]], [s for _, s in server[key]], atol=1e-4)
    assert len(lite["filtered"]) > 0 and len(lite["after_drop"]) < 30


def _store(server: MilvusServer, name: str) -> Store:
    store = open_store(server.uri, name)
    if store.exists():
        store.drop()
    return store


@pytest.mark.parametrize(
    ("index", "params", "search"),
    [("IVF_PQ", {"nlist": 16, "m": 8}, {"nprobe": 16}), ("HNSW", {"M": 8, "efConstruction": 64}, {"ef": 64})],
)
def test_server_index_types_build_load_release_and_search(
    milvus_server: MilvusServer, index: str, params: dict, search: dict
) -> None:
    vectors = clustered_vectors(2000, 32, seed=4, clusters=40)
    store = _store(milvus_server, f"idx_{index.lower()}")
    store.create(32, index=index, index_params=params)
    store.insert(
        [Item(i + 1, "", f"v{i}", "", "s", OCT_2023 + i * 60, "", 0, 0, v) for i, v in enumerate(vectors)]
    )
    store.flush()
    built, built_params = store.index()
    assert built == index and {k: int(v) for k, v in built_params.items()} == params
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the server builds the index in the background
        info = store.client.describe_index(store.collection, "vector")
        if int(info.get("indexed_rows", 0)) >= 2000:
            break
        time.sleep(1)
    assert int(info["indexed_rows"]) == 2000
    queries = vectors[:50]
    found = store.search(queries, k=10, params=search)
    assert np.mean([row[0].item.id == i + 1 for i, row in enumerate(found)]) >= 0.9
    store.release()
    assert store.search(queries[:1], k=1, params=search)[0][0].item.id == 1  # loaded again on demand
    assert store.count() == 2000
    store.drop()
    store.close()


def test_migrate_copies_a_lite_collection_to_the_server(
    tmp_path: Path, env: dict[str, str], milvus_server: MilvusServer
) -> None:
    catalog = write_catalog(tmp_path, 24)
    lite = ["--db", str(tmp_path / "lite.db")]
    ok(
        lookalike(
            env,
            "index",
            str(catalog),
            "--index",
            "HNSW",
            "--index-params",
            '{"M": 8, "efConstruction": 64}',
            *lite,
        )
    )
    target = open_store(milvus_server.uri, "migrated")
    if target.exists():
        target.drop()
    moved = ok(
        lookalike(
            env,
            "migrate",
            "--from",
            str(tmp_path / "lite.db"),
            "--to",
            milvus_server.uri,
            "--to-collection",
            "migrated",
        )
    )
    assert "copied 24 items" in moved.stdout
    assert target.count() == 24
    assert target.index()[0] == "HNSW"
    assert set(target.partitions()) >= {"m2023_10", "m2023_11"}
    again = ok(
        lookalike(
            env,
            "migrate",
            "--from",
            str(tmp_path / "lite.db"),
            "--to",
            milvus_server.uri,
            "--to-collection",
            "migrated",
        )
    )
    assert "copied 0 items" in again.stdout and "24 were already there" in again.stdout
    photo = str(sorted((tmp_path / "photos").iterdir())[3])
    on_lite = hits(lookalike(env, "search", "--image", photo, "--k", "5", "--json", *lite))
    on_server = hits(
        lookalike(
            env,
            "search",
            "--image",
            photo,
            "--k",
            "5",
            "--json",
            "--db",
            milvus_server.uri,
            "--collection",
            "migrated",
        )
    )
    assert on_lite[0][0] == on_server[0][0] and on_lite[0][1] == pytest.approx(1.0, abs=1e-3)
    target.close()


def test_a_server_killed_mid_ingest_loses_and_duplicates_nothing_once_resumed(
    tmp_path: Path, env: dict[str, str], milvus_server: MilvusServer
) -> None:
    catalog = write_catalog(tmp_path, 400)
    env = {**env, "LOOKALIKE_BATCH_SIZE": "4", "LOOKALIKE_TIMEOUT_S": "5"}
    common = ["--db", milvus_server.uri, "--collection", "crash"]
    store = _store(milvus_server, "crash")
    ingest = subprocess.Popen(
        [sys.executable, "-m", "lookalike", "index", str(catalog), *common],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and ingest.poll() is None:
        try:
            if store.exists() and store.count() >= 40:
                break
        except Exception:
            pass
        time.sleep(0.2)
    assert ingest.poll() is None, "the ingest finished before the server could be killed"
    store.close()
    milvus_server.kill()
    _, stderr = ingest.communicate(timeout=300)
    assert ingest.returncode != 0 and "Traceback" not in stderr  # a clear error, not a crash
    milvus_server.start()

    resumed = ok(lookalike(env, "index", str(catalog), *common))
    assert "already indexed" in resumed.stdout
    store = open_store(milvus_server.uri, "crash")
    assert store.count() == 400
    ids = [item.id for batch in store.iter_items(with_vector=False) for item in batch]
    assert len(ids) == len(set(ids)) == 400
    assert {item.item_id for batch in store.iter_items(with_vector=False) for item in batch} == {
        f"sku{i}" for i in range(400)
    }
    store.close()


def test_migrate_bulk_imports_parquet_files_into_a_new_server_collection(
    tmp_path: Path, env: dict[str, str], milvus_server: MilvusServer
) -> None:
    catalog = write_catalog(tmp_path, 24)
    lite = ["--db", str(tmp_path / "lite.db")]
    ok(lookalike(env, "index", str(catalog), "--index", "FLAT", *lite))
    target = _store(milvus_server, "bulk_copy")
    move = [
        "migrate",
        "--from",
        str(tmp_path / "lite.db"),
        "--to",
        milvus_server.uri,
        "--to-collection",
        "bulk_copy",
        "--bulk-dir",
        str(tmp_path / "bulk"),
    ]
    assert "copied 24 items" in ok(lookalike(env, *move)).stdout
    assert sorted(p.name for p in (tmp_path / "bulk").iterdir()) == [
        "bulk_copy-m2023_10.parquet",
        "bulk_copy-m2023_11.parquet",
    ]
    assert target.count() == 24 and set(target.partitions()) >= {"m2023_10", "m2023_11"}
    photo = str(sorted((tmp_path / "photos").iterdir())[5])
    server = ["--db", milvus_server.uri, "--collection", "bulk_copy"]
    on_lite = hits(lookalike(env, "search", "--image", photo, "--k", "24", "--json", *lite))
    on_server = hits(lookalike(env, "search", "--image", photo, "--k", "24", "--json", *server))
    assert [i for i, _ in on_lite] == [i for i, _ in on_server]
    np.testing.assert_allclose([s for _, s in on_lite], [s for _, s in on_server], atol=1e-4)
    again = lookalike(env, *move)  # a bulk import does not check ids: a second one is refused
    assert again.returncode == 2 and "not empty" in again.stderr
    target.drop()
    target.close()


def test_the_cli_builds_and_searches_an_ivf_pq_index_on_the_server(
    tmp_path: Path, env: dict[str, str], milvus_server: MilvusServer
) -> None:
    catalog = write_catalog(tmp_path, 40)
    _store(milvus_server, "cli_pq").close()
    server = ["--db", milvus_server.uri, "--collection", "cli_pq"]
    pq_index = ["--index", "IVF_PQ", "--index-params", '{"nlist": 8, "m": 8}']
    ok(lookalike(env, "index", str(catalog), *pq_index, *server))
    stats = ok(lookalike(env, "stats", *server)).stderr  # in a pipe the collection line goes to stderr
    assert "IVF_PQ" in stats and "40 items" in stats
    photo = str(sorted((tmp_path / "photos").iterdir())[11])
    found = hits(
        lookalike(env, "search", "--image", photo, "--search-params", '{"nprobe": 8}', "--json", *server)
    )
    top = open_store(milvus_server.uri, "cli_pq").get([found[0][0]])[0]
    assert top.item_id == "sku11"
    refused = lookalike(env, "index", str(catalog), *pq_index, "--db", str(tmp_path / "lite.db"))
    assert refused.returncode == 2 and "IVF_PQ needs a Milvus server" in refused.stderr


def test_detected_crops_are_stored_and_searched_on_the_server(
    tmp_path: Path, milvus_server: MilvusServer
) -> None:
    from lookalike.config import load_settings
    from lookalike.usecases import Context, Query, ingest
    from lookalike.usecases import search as searching
    from tests.helpers import FakeDetector, FakeEmbedder

    store = _store(milvus_server, "crops")
    service = Context(
        load_settings(db=milvus_server.uri, collection="crops", workers=2),
        embedder=FakeEmbedder(),
        store=store,
        detector=FakeDetector(),
    )
    photos = write_images(tmp_path / "photos", 3)
    report = ingest.index(service, str(tmp_path / "photos"), detect=True)
    assert (report.indexed, report.crops) == (3, 6) and store.count() == 9
    found = searching.search(service, Query(image=str(photos[1]), detect=True, k=1))
    top = found.hits[0].item
    assert found.query_box == (60, 10, 160, 110) == top.crop_box
    assert top.label == "handbag" and abs(top.det_score - 0.9) < 1e-6 and top.parent_sha256
    assert ingest.index(service, str(tmp_path / "photos"), detect=True).crops == 0 and store.count() == 9
    store.drop()
    service.close()


def test_long_cjk_names_are_cut_by_bytes_like_lite_and_deletes_work_on_a_server(
    milvus_server: MilvusServer, tmp_path: Path
) -> None:
    from lookalike.store.rows import cut_utf8
    from tests.store_model import make_item

    # A 252-byte source is kept whole (an identity is never cut); a 3000-byte name is cut to 2048.
    source, name = "ショップ" * 21, "名" * 1000
    items = [
        Item(
            **{
                **make_item(i, month=i % 2).metadata(),
                "source": source,
                "name": name,
                "vector": make_item(i).vector,
            }
        )
        for i in range(1, 6)
    ]
    server = open_store(milvus_server.uri, "cjk")
    if server.exists():
        server.drop()
    server.create(16, index="FLAT")
    assert server.insert(items) == 5  # a Milvus server refuses the whole chunk if one value is too long
    lite = open_store(str(tmp_path / "cjk.db"), "cjk")
    lite.create(16, index="FLAT")
    lite.insert(items)
    for store in (server, lite):
        got = store.get([1])[0]
        assert got.source == source and got.name == cut_utf8(name, 2048)
        assert len(store.search(items[0].vector[None], k=5, window=Window.of(sources=[source]))[0]) == 5
        assert store.delete([1, 2, 99]) == 2 and store.count() == 3
        assert sorted(i.id for b in store.iter_items(with_vector=False) for i in b) == [3, 4, 5]
    moved = Item(
        **{**items[2].metadata(), "created_at": items[2].created_at + 62 * DAY, "vector": items[2].vector}
    )
    server.upsert([moved])
    assert server.count() == 3 and server.get([3])[0].created_at == moved.created_at
    server.drop()
    lite.close()


def test_a_collection_of_the_layout_before_category_and_tags_is_upgraded_on_a_server(
    milvus_server: MilvusServer, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses
    import logging

    from pymilvus import DataType, MilvusClient

    from lookalike.store.fields import SCHEMA_PROPERTY, SCHEMA_VERSION
    from lookalike.store.partitions import partition_for
    from tests.store_model import make_item

    # Schema version 2 as the code before it made it on a server: HNSW index, no version recorded.
    client = MilvusClient(uri=milvus_server.uri)
    if client.has_collection("old_layout"):
        client.drop_collection("old_layout")
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=16)
    for name, size in (("sha256", 64), ("item_id", 1024), ("name", 2048), ("source", 256)):
        schema.add_field(name, DataType.VARCHAR, max_length=size)
    schema.add_field("created_at", DataType.INT64)
    schema.add_field("uri", DataType.VARCHAR, max_length=4096)
    schema.add_field("width", DataType.INT32)
    schema.add_field("height", DataType.INT32)
    for name, size in (("parent_sha256", 64), ("box", 64), ("label", 256)):
        schema.add_field(name, DataType.VARCHAR, max_length=size)
    schema.add_field("det_score", DataType.FLOAT)
    index = client.prepare_index_params()
    index.add_index(
        field_name="vector", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 64}
    )
    client.create_collection("old_layout", schema=schema, index_params=index)
    old = [dataclasses.replace(make_item(i, month=i % 2), category="", tags=()) for i in range(1, 6)]
    fields = [f for f in old[0].metadata() if f not in ("category", "tags")]
    for item in old:
        partition = partition_for(item.created_at)
        if not client.has_partition("old_layout", partition):
            client.create_partition("old_layout", partition)
        row = {name: getattr(item, name) for name in fields}
        client.insert("old_layout", [{**row, "vector": item.vector}], partition_name=partition)
    client.flush("old_layout")
    client.close()

    caplog.set_level(logging.WARNING)
    store = open_store(milvus_server.uri, "old_layout")
    assert store.count() == 5
    said = [r.getMessage() for r in caplog.records if "upgraded from schema version 2" in r.getMessage()]
    assert len(said) == 1
    assert store.index()[0] == "HNSW"
    got = {item.id: item for item in store.get([1, 2, 3, 4, 5], with_vector=True)}
    assert all(got[item.id].metadata() == item.metadata() for item in old)
    store.upsert([dataclasses.replace(old[0], category="shoes", tags=("red", "sale"), vector=old[0].vector)])
    assert [
        h.item.id for h in store.search(old[0].vector[None], k=5, window=Window.of(tags=["sale"]))[0]
    ] == [1]
    assert store.count(Window.of(categories=["shoes"])) == 1
    store.close()
    again = open_store(milvus_server.uri, "old_layout")
    assert again.count() == 5 and again._describe()["properties"][SCHEMA_PROPERTY] == str(SCHEMA_VERSION)
    assert len([r for r in caplog.records if "upgraded from schema version" in r.getMessage()]) == 1
    again.drop()
    again.close()
