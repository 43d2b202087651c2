"""The service with a deterministic fake embedder over a real Milvus Lite database."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from PIL import Image

from lookalike.config import load_settings
from lookalike.errors import (
    CollectionNotFoundError,
    ConfigError,
    DimensionMismatchError,
    ItemNotFoundError,
    UnsupportedIndexError,
)
from lookalike.usecases import Context, Query, backup, ingest, items
from lookalike.usecases import search as searching
from tests.helpers import FakeEmbedder, make_image, write_images


def make_service(tmp_path: Path, embedder: FakeEmbedder | None = None, db: str = "lookalike.db") -> Context:
    settings = load_settings(db=str(tmp_path / db), collection="images", workers=2)
    return Context(settings, embedder=embedder or FakeEmbedder())


def write_catalog(folder: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """rows: (file name, item_id, source, created_at); images are made from the row index."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,item_id,name,source,created_at"]
    for i, (name, item_id, source, created_at) in enumerate(rows):
        if not (folder / name).exists():
            make_image(i).save(folder / name)
        lines.append(f"{name},{item_id},name {item_id},{source},{created_at}")
    catalog = folder / "catalog.csv"
    catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return catalog


def test_indexed_image_searched_by_itself_ranks_first(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "photos", 12)
    service = make_service(tmp_path)
    report = ingest.index(service, str(tmp_path / "photos"), source="product")
    assert report.indexed == 12 and not report.skipped
    for path in paths[:4]:
        hits = searching.search(service, Query(image=str(path), k=3)).hits
        assert hits[0].item.uri == str(path.resolve())
        assert hits[0].score >= 0.99
        assert hits[0].item.source == "product" and hits[0].item.width == 160


def test_reindexing_adds_nothing_and_embeds_nothing(tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 10)
    embedder = FakeEmbedder()
    service = make_service(tmp_path, embedder)
    ingest.index(service, str(tmp_path / "photos"))
    calls = embedder.image_calls
    again = ingest.index(service, str(tmp_path / "photos"))
    assert (again.indexed, again.already_indexed) == (0, 10)
    assert embedder.image_calls == calls
    assert service.store.count() == 10


def test_corrupt_files_are_reported_and_the_rest_indexed(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_images(folder, 5)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    good = (folder / "img_0000.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    Image.new("1", (12000, 12000)).save(folder / "bomb.png")
    report = ingest.index(make_service(tmp_path), str(folder))
    assert report.indexed == 5
    reasons = {Path(s.uri).name: s.reason for s in report.skipped}
    assert set(reasons) == {"empty.jpg", "text.png", "truncated.jpg", "bomb.png"}
    assert reasons["bomb.png"].startswith("decompression bomb")
    assert reasons["empty.jpg"] == "empty file"
    assert "not an image" in reasons["text.png"]


def test_source_filter_never_widens_the_result(tmp_path: Path) -> None:
    write_images(tmp_path / "a", 4)
    write_images(tmp_path / "b", 4, start=10)
    service = make_service(tmp_path)
    ingest.index(service, str(tmp_path / "a"), source="shop-a")
    ingest.index(service, str(tmp_path / "b"), source='shop"b')
    probe = str(tmp_path / "a" / "img_0000.jpg")
    only_a = searching.search(service, Query(image=probe, k=50, sources=("shop-a",))).hits
    assert {h.item.source for h in only_a} == {"shop-a"} and len(only_a) == 4
    quoted = searching.search(service, Query(image=probe, k=50, sources=('shop"b',))).hits
    assert {h.item.source for h in quoted} == {'shop"b'} and len(quoted) == 4
    for hostile in ('x" or source != "x', "x' or 1==1 or '", 'shop-a"] or source in ["shop"b'):
        assert searching.search(service, Query(image=probe, k=50, sources=(hostile,))).hits == []


def test_date_window_never_leaks(tmp_path: Path) -> None:
    days = [
        "2023-10-31",
        "2023-11-18",
        "2023-11-19",
        "2023-11-21",
        "2023-11-23T23:59:59",
        "2023-11-24",
        "2023-12-02",
    ]
    catalog = write_catalog(
        tmp_path / "cat", [(f"{i}.jpg", f"I{i}", "product", d) for i, d in enumerate(days)]
    )
    service = make_service(tmp_path)
    ingest.index(service, str(catalog))
    assert service.store.partitions() == ["_default", "m2023_10", "m2023_11", "m2023_12"]
    hits = searching.search(
        service,
        Query(
            image=str(tmp_path / "cat" / "0.jpg"), k=100, since=date(2023, 11, 19), until=date(2023, 11, 23)
        ),
    ).hits
    assert sorted(h.item.item_id for h in hits) == ["I2", "I3", "I4"]
    empty = searching.search(service, Query(text="anything", since=date(2030, 1, 1)))
    assert empty.hits == []


def test_until_before_since_is_refused(tmp_path: Path) -> None:
    write_images(tmp_path / "p", 1)
    service = make_service(tmp_path)
    ingest.index(service, str(tmp_path / "p"))
    with pytest.raises(ConfigError, match="after"):
        searching.search(service, Query(text="x", since=date(2023, 11, 2), until=date(2023, 11, 1)))


def test_search_by_id_finds_copies_and_not_itself(tmp_path: Path) -> None:
    write_images(tmp_path / "a", 5)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    service = make_service(tmp_path)
    ingest.index(service, str(tmp_path / "a"), source="seller-1")
    ingest.index(service, str(tmp_path / "b"), source="seller-2")
    assert service.store.count() == 10  # same bytes under two sellers are two items
    original = searching.search(
        service, Query(image=str(tmp_path / "a" / "img_0002.jpg"), k=1, sources=("seller-1",))
    )
    item = original.hits[0].item
    hits = searching.search(service, Query(id=item.id, k=3)).hits
    assert item.id not in {h.item.id for h in hits}
    assert hits[0].item.source == "seller-2" and hits[0].item.sha256 == item.sha256
    assert hits[0].score >= 0.999
    with pytest.raises(ItemNotFoundError):
        searching.search(service, Query(id=12345))


def test_query_needs_exactly_one_kind(tmp_path: Path) -> None:
    write_images(tmp_path / "p", 1)
    service = make_service(tmp_path)
    ingest.index(service, str(tmp_path / "p"))
    with pytest.raises(ConfigError, match="exactly one"):
        searching.search(service, Query(text="a", id=1))
    with pytest.raises(ConfigError, match="not found"):
        searching.search(service, Query(image=str(tmp_path / "missing.jpg")))


def test_search_before_indexing_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CollectionNotFoundError, match="lookalike index"):
        searching.search(make_service(tmp_path), Query(text="floral top"))


def test_export_then_import_gives_the_same_hits(tmp_path: Path) -> None:
    days = ["2023-10-05", "2023-11-19", "2023-11-20", "2024-01-02"]
    catalog = write_catalog(
        tmp_path / "cat", [(f"{i}.jpg", f"I{i}", f"s{i % 2}", d) for i, d in enumerate(days)]
    )
    source = make_service(tmp_path, db="source.db")
    ingest.index(source, str(catalog))
    export = tmp_path / "backup.parquet"
    assert backup.export(source, str(export)) == 4
    target = make_service(tmp_path, db="target.db")
    assert backup.import_(target, str(export)) == (4, 0)
    assert backup.import_(target, str(export)) == (0, 4)
    assert target.store.partitions() == source.store.partitions()
    for query in (Query(image=str(tmp_path / "cat" / "1.jpg"), k=4), Query(text="red", k=4, sources=("s1",))):
        before = [(h.item, round(h.score, 5)) for h in searching.search(source, query).hits]
        after = [(h.item, round(h.score, 5)) for h in searching.search(target, query).hits]
        assert before == after and before


def test_a_model_of_another_size_leaves_the_collection_untouched(tmp_path: Path) -> None:
    write_images(tmp_path / "p", 3)
    ingest.index(make_service(tmp_path, FakeEmbedder(dim=192)), str(tmp_path / "p"))
    other = make_service(tmp_path, FakeEmbedder(dim=64))
    write_images(tmp_path / "q", 3, start=20)
    with pytest.raises(DimensionMismatchError, match="192-dimensional"):
        ingest.index(other, str(tmp_path / "q"))
    with pytest.raises(DimensionMismatchError):
        searching.search(other, Query(text="x"))
    assert make_service(tmp_path).store.count() == 3


def test_an_index_the_engine_lacks_is_named_with_the_supported_ones(tmp_path: Path) -> None:
    write_images(tmp_path / "p", 2)
    service = make_service(tmp_path)
    for wrong in ("IVF_PQ", "BOGUS"):
        with pytest.raises(UnsupportedIndexError, match="FLAT, IVF_FLAT, IVF_SQ8, HNSW"):
            ingest.index(service, str(tmp_path / "p"), index=wrong)
    assert not service.store.exists()


@pytest.mark.parametrize(
    ("index", "params"), [("HNSW", {"M": 8, "efConstruction": 64}), ("IVF_FLAT", {"nlist": 4})]
)
def test_approximate_indexes_find_an_exact_copy(tmp_path: Path, index: str, params: dict[str, int]) -> None:
    paths = write_images(tmp_path / "p", 20)
    service = make_service(tmp_path)
    ingest.index(service, str(tmp_path / "p"), index=index, index_params=params)
    assert service.store.index()[0] == index
    hits = searching.search(service, Query(image=str(paths[7]), k=1)).hits
    assert hits[0].item.uri == str(paths[7].resolve())


def test_stats_count_partitions_and_sources(tmp_path: Path) -> None:
    days = ["2023-10-05", "2023-11-19", "2023-11-20"]
    catalog = write_catalog(
        tmp_path / "cat", [(f"{i}.jpg", f"I{i}", ["a", "b", "b"][i], d) for i, d in enumerate(days)]
    )
    service = make_service(tmp_path)
    ingest.index(service, str(catalog))
    info = items.stats(service)
    assert info.rows == 3 and info.dim == 192 and info.model == "fake-192"
    assert {p.name: p.rows for p in info.partitions} == {"m2023_10": 1, "m2023_11": 2}
    assert info.sources == {"a": 1, "b": 2}


def test_grid_draws_every_hit_with_a_title(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "p", 7)
    service = make_service(tmp_path)
    ingest.index(service, str(tmp_path / "p"))
    result = searching.search(service, Query(image=str(paths[2]), k=7))
    searching.write_grid(result, str(tmp_path / "grid.png"), "lookalike: image query")
    with Image.open(tmp_path / "grid.png") as sheet:
        assert sheet.size == (5 * 210 + 10, 48 + 2 * (190 + 52) + 10)  # 7 hits: two rows of five columns
        # The first cell holds the query image's thumbnail: not the background colour.
        assert sheet.getpixel((110, 140)) != (255, 255, 255)
    with pytest.raises(ConfigError, match=".png"):
        searching.write_grid(result, str(tmp_path / "grid.jpg"), "x")
