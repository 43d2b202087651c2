"""A collection made by an older lookalike is upgraded to the current schema when it is opened.

The old layouts are built here as the old code built them (raw pymilvus, its fields and limits,
no recorded version); the new code opens them, says so once, and reads and writes every field.
A kill at each step of the upgrade (a real SIGKILL, in a child process) is finished on the next open.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lookalike.store import Item, LiteStore, Window
from lookalike.store.fields import SCALAR_FIELDS, SCHEMA_PROPERTY, SCHEMA_VERSION
from lookalike.store.upgrade import temporary
from tests.store_model import DIM, make_item, milvus_rows

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OLD_ROWS = 7
ROOT = Path(__file__).resolve().parents[2]


VERSION_1 = SCALAR_FIELDS[:9]
VERSION_2 = SCALAR_FIELDS[:13]


def old_item(i: int) -> Item:
    """What an old layout held of ``make_item(i)``: no category, no tags."""
    return dataclasses.replace(make_item(i, month=i % 2), category="", tags=())


def build_old(db: Path, version: int, collection: str = "images") -> list[int]:
    """A collection as an older lookalike made it, rows in two months, no version recorded.

    1: no crop fields, 256-byte texts, a FLAT index kept by Milvus Lite. 2 (the layout before category
    and tags): the crop fields, today's byte limits, no index in Milvus Lite, the index asked for in a
    property (the read index builds it).
    """
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(str(db))
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    limits = {"sha256": 64, "item_id": 1024, "name": 2048, "source": 256} if version == 2 else {}
    for name in ("sha256", "item_id", "name", "source"):
        schema.add_field(name, DataType.VARCHAR, max_length=limits.get(name, 256))
    schema.add_field("created_at", DataType.INT64)
    schema.add_field("uri", DataType.VARCHAR, max_length=4096)
    schema.add_field("width", DataType.INT32)
    schema.add_field("height", DataType.INT32)
    properties = {"lookalike.model": "ViT-B-32:laion2b_s34b_b79k"}
    if version == 1:
        index = client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        client.create_collection(collection, schema=schema, index_params=index)
    else:
        for name, size in (("parent_sha256", 64), ("box", 64), ("label", 256)):
            schema.add_field(name, DataType.VARCHAR, max_length=size)
        schema.add_field("det_score", DataType.FLOAT)
        client.create_collection(collection, schema=schema)
        properties["lookalike.index"] = '{"type": "HNSW", "params": {"M": 16, "efConstruction": 100}}'
    client.alter_collection_properties(collection, properties)
    fields = VERSION_1 if version == 1 else VERSION_2
    ids = []
    for i in range(1, OLD_ROWS + 1):
        item = make_item(i, month=i % 2)
        row = {name: getattr(item, name) for name in fields}
        partition = "m2024_01" if i % 2 == 0 else "m2024_02"
        if not client.has_partition(collection, partition):
            client.create_partition(collection, partition)
        client.insert(collection, [{**row, "vector": item.vector}], partition_name=partition)
        ids.append(i)
    client.close()
    return ids


def upgrades_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "upgraded from schema version" in r.getMessage()]


STEPS_SAID = {
    1: "detected crops: parent_sha256, box, label, det_score; catalog fields: category, tags",
    2: "catalog fields: category, tags",
}


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_collection_is_upgraded_on_open_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    db = tmp_path / "old.db"
    ids = build_old(db, version)
    caplog.set_level(logging.WARNING)

    store = LiteStore(str(db), "images")
    assert store.count() == OLD_ROWS
    assert upgrades_logged(caplog) == [
        f"collection images: upgraded from schema version {version} to {SCHEMA_VERSION} "
        f"({STEPS_SAID[version]}): {OLD_ROWS} items copied into the new layout"
    ]
    # Every old row kept its values and vector; its new fields read as empty.
    got = {item.id: item for item in store.get(ids, with_vector=True)}
    for i in ids:
        assert got[i].metadata() == old_item(i).metadata()
        assert np.allclose(got[i].vector, old_item(i).vector)
    assert store.model() == "ViT-B-32:laion2b_s34b_b79k"
    assert store.index()[0] == ("FLAT" if version == 1 else "HNSW")
    assert store.partitions() == ["_default", "m2024_01", "m2024_02"]
    assert store.holds_crops()
    # The new layout takes what the old one could not: a crop, and a name over the old 256 bytes.
    crop = make_item(50, name="n" * 2000)
    crop = dataclasses.replace(crop, box="1,2,3,4", label="shoe", category="shoes", tags=("red", "sale"))
    store.insert([crop])
    stored = store.get([50])[0]
    assert (stored.box, len(stored.name), stored.category, stored.tags) == (
        "1,2,3,4",
        2000,
        "shoes",
        ("red", "sale"),
    )
    assert [i.id for b in store.iter_items(window=Window.of(tags=["sale"])) for i in b] == [50]
    hits = store.search(make_item(3).vector[None], k=3)[0]
    assert hits[0].item.id == 3
    store.close()

    again = LiteStore(str(db), "images")
    assert again.count() == OLD_ROWS + 1
    assert len(upgrades_logged(caplog)) == 1  # said once: the collection records its version now
    assert again._describe()["properties"][SCHEMA_PROPERTY] == str(SCHEMA_VERSION)
    assert sorted(milvus_rows(db, "images")) == sorted([*ids, 50])
    again.close()


def test_a_collection_made_now_records_its_version_and_is_not_copied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    store = LiteStore(str(tmp_path / "new.db"), "images")
    store.create(DIM, index="FLAT")
    store.insert([make_item(1)])
    store.close()
    again = LiteStore(str(tmp_path / "new.db"), "images")
    assert again.count() == 1
    assert again._describe()["properties"][SCHEMA_PROPERTY] == str(SCHEMA_VERSION)
    assert upgrades_logged(caplog) == []
    again.close()


def test_a_collection_of_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    from lookalike.errors import ConfigError

    store = LiteStore(str(tmp_path / "newer.db"), "images")
    store.create(DIM, index="FLAT")
    store.client.alter_collection_properties("images", {SCHEMA_PROPERTY: str(SCHEMA_VERSION + 1)})
    store.close()
    again = LiteStore(str(tmp_path / "newer.db"), "images")
    with pytest.raises(ConfigError, match="made by a newer lookalike"):
        again.count()
    again.close()


@pytest.mark.parametrize("upgraded_first", [False, True])
def test_a_collection_named_like_the_upgrade_s_copy_is_never_dropped(
    tmp_path: Path, upgraded_first: bool
) -> None:
    from lookalike.errors import ConfigError

    db = tmp_path / "old.db"
    build_old(db, 2, "images")
    theirs = build_old(db, 2, "images_upgrading")  # the user's own collection, not an upgrade's copy
    if upgraded_first:  # opened first, it is upgraded itself: its mark reads "" once in place
        own = LiteStore(str(db), "images_upgrading")
        assert own.count() == OLD_ROWS
        own.close()
    store = LiteStore(str(db), "images")
    with pytest.raises(ConfigError, match="left alone"):
        store.count()
    store.close()
    assert sorted(milvus_rows(db, "images_upgrading")) == theirs


CHILD = """
import sys
from lookalike.store import LiteStore
store = LiteStore(sys.argv[1], "images")
store.count()
store.close()
"""


@pytest.mark.parametrize("step", ["upgrade.copy:2", "upgrade.copied", "upgrade.dropped", "upgrade.renamed"])
def test_an_upgrade_killed_at_any_step_is_finished_on_the_next_open(tmp_path: Path, step: str) -> None:
    db = tmp_path / "old.db"
    ids = build_old(db, 2)
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(db))  # the child must be able to lock the database
    env = {**os.environ, "LOOKALIKE_CRASH_AT": step, "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.run([sys.executable, "-c", CHILD, str(db)], env=env, capture_output=True, timeout=300)
    assert child.returncode == -9, child.stderr.decode()[-2000:]  # killed at the step, not before or after

    store = LiteStore(str(db), "images")
    assert sorted(item.id for batch in store.iter_items(with_vector=False) for item in batch) == ids
    assert store._describe()["properties"][SCHEMA_PROPERTY] == str(SCHEMA_VERSION)
    assert not store.client.has_collection(temporary("images"))
    assert sorted(milvus_rows(db, "images")) == ids
    store.close()


def test_a_reader_of_milvus_lite_s_files_opens_milvus_to_upgrade_an_old_collection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from milvus_lite.server_manager import server_manager_instance

    db = tmp_path / "old.db"
    ids = build_old(db, 2)
    server_manager_instance.release_server(str(db))
    caplog.set_level(logging.WARNING)
    reader = LiteStore(str(db), "images", read_files=True)
    assert sorted(item.id for batch in reader.iter_items(with_vector=False) for item in batch) == ids
    assert len(upgrades_logged(caplog)) == 1
    assert reader.count(Window.of(categories=[""])) == OLD_ROWS  # the new field, empty, in the read index
    reader.close()
