"""The local read path answers exactly what Milvus Lite answers, survives restarts and notices drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.bench import clustered_vectors
from lookalike.store import Item, MilvusStore

DAY = 86_400
JAN_2024 = 1_704_067_200


def _items(n: int, dim: int = 16, seed: int = 0, first_id: int = 1) -> list[Item]:
    vectors = clustered_vectors(n, dim, seed=seed, clusters=8)
    sources = ("shop-a", "shop-b", "avatar")
    return [
        Item(
            id=first_id + i,
            sha256=f"{i:064x}",
            item_id=f"sku{i}",
            name=f"item {i}",
            source=sources[i % 3],
            created_at=JAN_2024 + (i % 90) * DAY,  # January to March
            uri=f"/photos/{i}.jpg",
            width=800,
            height=600,
            vector=vectors[i],
        )
        for i in range(n)
    ]


def _store(tmp_path: Path, *, local: bool = True, index: str = "FLAT", create: bool = False) -> MilvusStore:
    store = MilvusStore(str(tmp_path / "t.db"), "images", local_index=local)
    if create:
        store.create(16, index=index)
    return store


def _ids(hits: list) -> list[int]:
    return [hit.item.id for hit in hits]


WINDOWS = [
    {},
    {"sources": ["shop-a"]},
    {"sources": ["avatar", "nobody"]},
    {"since": JAN_2024 + 31 * DAY},
    {"since": JAN_2024 + 10 * DAY, "until": JAN_2024 + 40 * DAY, "sources": ["shop-b"]},
    {"until": JAN_2024},  # before everything
    {"exclude_ids": [1, 2, 3, 4, 5]},
]


@pytest.mark.parametrize("window", WINDOWS)
def test_local_search_matches_milvus_lite_exactly(tmp_path: Path, window: dict) -> None:
    items = _items(300)
    store = _store(tmp_path, create=True)
    store.insert(items)
    store.flush()
    queries = clustered_vectors(5, 16, seed=9, clusters=8)
    local_hits = store.search(queries, k=10, **window)
    assert store.local_index() is not None
    store.close()
    direct = _store(tmp_path, local=False)
    milvus_hits = direct.search(queries, k=10, **window)
    direct.close()
    for mine, theirs in zip(local_hits, milvus_hits, strict=True):
        assert _ids(mine) == _ids(theirs)
        assert [h.item for h in mine] == [h.item for h in theirs]
        np.testing.assert_allclose([h.score for h in mine], [h.score for h in theirs], atol=1e-5)
    if window.get("until") == JAN_2024:
        assert local_hits == [[]] * 5


def test_local_reads_match_stored_items(tmp_path: Path) -> None:
    items = _items(120)
    store = _store(tmp_path, create=True)
    store.insert(items)
    store.flush()
    assert store.existing_ids([5, 7, 999_999]) == {5, 7}
    got = store.get([7, 999_999, 5], with_vector=True)
    assert [item.id for item in got] == [7, 5]
    assert got[0] == items[6]
    assert got[0].vector is not None
    np.testing.assert_allclose(got[0].vector, items[6].vector, atol=1e-6)
    window = list(store.iter_items(batch_size=7, sources=["avatar"], since=JAN_2024 + 31 * DAY))
    expected = {i.id for i in items if i.source == "avatar" and i.created_at >= JAN_2024 + 31 * DAY}
    assert {item.id for batch in window for item in batch} == expected
    assert max(len(batch) for batch in window) <= 7
    store.close()


def test_saved_copy_is_reused_without_reading_milvus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path, create=True)
    store.insert(_items(50))
    store.close()  # close saves what flush has not

    reopened = _store(tmp_path)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the saved copy should have been used")

    monkeypatch.setattr(MilvusStore, "_milvus_items", fail)
    local = reopened.local_index()
    assert local is not None and len(local) == 50
    assert _ids(reopened.search(np.stack([_items(50)[3].vector]), k=1)[0]) == [4]
    reopened.close()


def test_a_copy_that_missed_writes_is_rebuilt_from_milvus(tmp_path: Path) -> None:
    store = _store(tmp_path, create=True)
    store.insert(_items(40))
    store.close()
    # Another program writes through pymilvus without lookalike's copy.
    foreign = _store(tmp_path, local=False)
    extra = _items(10, seed=3, first_id=1000)
    foreign.insert(extra)
    foreign.flush()
    foreign.close()

    reopened = _store(tmp_path)
    local = reopened.local_index()
    assert local is not None and len(local) == 50
    assert reopened.existing_ids([1000, 1009]) == {1000, 1009}
    hit = reopened.search(np.stack([extra[4].vector]), k=1)[0][0]
    assert hit.item.id == 1004 and hit.score == pytest.approx(1.0, abs=1e-5)
    reopened.close()


def test_dropping_a_partition_removes_its_items_from_the_copy(tmp_path: Path) -> None:
    items = _items(90)
    store = _store(tmp_path, index="HNSW", create=True)
    store.insert(items)
    store.flush()
    store.drop_partitions(["m2024_01"])
    left = {item.id for batch in store.iter_items(with_vector=False) for item in batch}
    assert left == {i.id for i in items if i.created_at >= JAN_2024 + 31 * DAY}
    hits = store.search(np.stack([items[0].vector]), k=90)[0]  # a January item
    assert hits and all(hit.item.created_at >= JAN_2024 + 31 * DAY for hit in hits)
    store.close()
    reopened = _store(tmp_path)
    local = reopened.local_index()
    assert local is not None and len(local) == len(left)
    reopened.close()


def test_hnsw_copy_finds_the_exact_neighbours(tmp_path: Path) -> None:
    vectors = clustered_vectors(3000, 16, seed=1, clusters=30)
    store = _store(tmp_path, index="HNSW", create=True)
    store.insert([Item(i + 1, "", "", "", "s", JAN_2024, "", 0, 0, v) for i, v in enumerate(vectors[:2900])])
    queries = vectors[2900:]
    exact = np.argsort(-(queries @ vectors[:2900].T), axis=1)[:, :10] + 1
    results = store.search(queries, k=10)
    recall = np.mean([len(set(_ids(r)) & set(e.tolist())) / 10 for r, e in zip(results, exact, strict=True)])
    assert recall >= 0.99
    store.close()


def test_a_recreated_collection_starts_with_an_empty_copy(tmp_path: Path) -> None:
    store = _store(tmp_path, create=True)
    store.insert(_items(20))
    store.flush()
    store.drop()
    store.create(16)
    assert store.existing_ids([1, 2]) == set()
    assert store.search(np.stack([_items(1)[0].vector]), k=3) == [[]]
    store.close()
