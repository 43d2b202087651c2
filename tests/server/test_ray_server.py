"""`index --ray` into a real Milvus 2.3 server: parallel upserts from writer actors, and --bulk
(Parquet files from the writers, the server's bulk import), against a local run on Milvus Lite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lookalike.store import Item, open_store
from lookalike.store.server import ServerStore
from tests.cli import lookalike
from tests.server.harness import MilvusServer
from tests.server.test_server import env, ok, write_catalog  # noqa: F401  (env: the fixture)

ray = pytest.importorskip("ray")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray instance with 2 CPUs for the module; the runs join it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_gcs_server_port_wait_time_s", "60")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        yield
        ray.shutdown()


@pytest.fixture(autouse=True)
def writers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process (the driver) must not write rows to the server: the writer actors do (processes of
    their own, where this patch does not reach)."""

    def refuse(*args: object, **kwargs: object) -> int:
        raise AssertionError("the driver wrote rows itself")

    monkeypatch.setattr(ServerStore, "insert", refuse)
    monkeypatch.setattr(ServerStore, "upsert", refuse)


def _stored(uri: str, collection: str) -> dict[int, Item]:
    store = open_store(uri, collection)
    try:
        return {i.id: i for batch in store.iter_items(with_vector=True) for i in batch}
    finally:
        store.close()


def _same(ours: dict[int, Item], theirs: dict[int, Item]) -> None:
    assert set(ours) == set(theirs)
    for key, item in ours.items():
        other = theirs[key]
        assert (item.uri, item.item_id, item.source, item.created_at) == (
            other.uri,
            other.item_id,
            other.source,
            other.created_at,
        )
        assert float(np.dot(item.vector, other.vector)) >= 0.9999


def test_ray_upserts_from_writer_actors_give_the_local_runs_items(
    tmp_path: Path,
    env: dict[str, str],  # noqa: F811
    milvus_server: MilvusServer,
) -> None:
    catalog = write_catalog(tmp_path, 24)
    (tmp_path / "photos" / "img_0003.jpg").write_bytes(b"\xff\xd8 torn")
    lite = ok(lookalike(env, "index", str(catalog), "--db", str(tmp_path / "lite.db"), "--json"))
    server = ["--db", milvus_server.uri, "--collection", "ray_upserts"]

    run = ok(lookalike(env, "index", str(catalog), "--ray", "--writers", "3", "--json", *server))

    report, expected = json.loads(run.stdout), json.loads(lite.stdout)
    assert report["indexed"] == expected["indexed"] == 23
    assert [s["reason"] for s in report["skipped"]] == [s["reason"] for s in expected["skipped"]]
    stored = _stored(milvus_server.uri, "ray_upserts")
    local = open_store(str(tmp_path / "lite.db"), "images")
    try:
        _same(stored, {i.id: i for batch in local.iter_items(with_vector=True) for i in batch})
    finally:
        local.close()
    again = json.loads(ok(lookalike(env, "index", str(catalog), "--ray", "--json", *server)).stdout)
    assert (again["indexed"], again["already_indexed"]) == (0, 23)
    assert len(_stored(milvus_server.uri, "ray_upserts")) == 23


def test_bulk_writes_parquet_from_the_writers_and_the_server_imports_it(
    tmp_path: Path,
    env: dict[str, str],  # noqa: F811
    milvus_server: MilvusServer,
) -> None:
    catalog = write_catalog(tmp_path, 20)
    upserted = ["--db", milvus_server.uri, "--collection", "ray_reference"]
    ok(lookalike(env, "index", str(catalog), "--ray", *upserted))
    bulk = ["--db", milvus_server.uri, "--collection", "ray_bulk", "--bulk", str(tmp_path / "bulk")]

    run = ok(lookalike(env, "index", str(catalog), "--ray", "--writers", "2", "--json", *bulk))

    assert json.loads(run.stdout)["indexed"] == 20
    files = sorted(p.name for p in (tmp_path / "bulk").iterdir())
    assert files and all(name.startswith("ray_bulk-") and name.endswith(".parquet") for name in files)
    assert {name.rsplit("-", 1)[1] for name in files} == {"m2023_10.parquet", "m2023_11.parquet"}
    _same(_stored(milvus_server.uri, "ray_bulk"), _stored(milvus_server.uri, "ray_reference"))
    store = open_store(milvus_server.uri, "ray_bulk")
    try:
        assert set(store.partitions()) >= {"m2023_10", "m2023_11"}
    finally:
        store.close()

    again = lookalike(env, "index", str(catalog), "--ray", *bulk)  # a bulk import does not check ids

    assert again.returncode == 2 and "not empty" in again.stderr
    assert len(_stored(milvus_server.uri, "ray_bulk")) == 20


def test_bulk_is_refused_on_milvus_lite_and_with_sync(
    tmp_path: Path,
    env: dict[str, str],  # noqa: F811
) -> None:
    catalog = write_catalog(tmp_path, 2)
    lite = ["--db", str(tmp_path / "lite.db"), "--bulk", str(tmp_path / "bulk")]

    on_lite = lookalike(env, "index", str(catalog), "--ray", *lite)
    with_sync = lookalike(env, "index", str(catalog), "--ray", "--sync", *lite)
    without_ray = lookalike(env, "index", str(catalog), *lite)

    assert on_lite.returncode == 2 and "--bulk needs a Milvus server" in on_lite.stderr
    assert with_sync.returncode == 2 and "--sync" in with_sync.stderr
    assert without_ray.returncode == 2 and "--bulk goes with --ray" in without_ray.stderr
    assert not (tmp_path / "lite.db").exists() and not (tmp_path / "bulk").exists()
