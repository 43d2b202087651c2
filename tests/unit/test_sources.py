from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lookalike.errors import CatalogError, ConfigError
from lookalike.ingest.sources import Record, Skipped, open_listing, parse_created_at
from tests.helpers import make_image


def test_folder_walk_is_recursive_and_ignores_letter_case(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x.JPG", "a/y.Png", "a/b/z.webp", "a/b/w.TIFF", "notes.txt", ".hidden.jpg"):
        make_image(1).save(tmp_path / name, format="PNG") if not name.endswith(".txt") else (
            tmp_path / name
        ).write_text("hi")
    listing = open_listing(tmp_path, "product")
    records = list(listing)
    assert listing.count() == 5  # the hidden picture is reported, not dropped silently
    assert sorted(Path(r.uri).name for r in records if isinstance(r, Record)) == [
        "w.TIFF",
        "x.JPG",
        "y.Png",
        "z.webp",
    ]
    assert all(r.source == "product" and r.created_at is None for r in records if isinstance(r, Record))
    (hidden,) = [r for r in records if isinstance(r, Skipped)]
    assert Path(hidden.uri).name == ".hidden.jpg" and "hidden" in hidden.reason


def test_item_id_of_a_file_is_its_stem(tmp_path: Path) -> None:
    make_image(1).save(tmp_path / "sku-123.jpg")
    (record,) = list(open_listing(tmp_path / "sku-123.jpg"))
    assert isinstance(record, Record)
    assert record.item_id == "sku-123"
    assert record.source == "default"


def test_created_at_accepts_dates_datetimes_and_unix_seconds() -> None:
    assert parse_created_at("2023-11-19") == int(datetime(2023, 11, 19, tzinfo=UTC).timestamp())
    assert parse_created_at("2023-11-19T10:00:00Z") == int(datetime(2023, 11, 19, 10, tzinfo=UTC).timestamp())
    assert parse_created_at("1700000000") == 1700000000
    assert parse_created_at(1700000000) == 1700000000
    assert parse_created_at("") is None
    with pytest.raises(ValueError):
        parse_created_at("last tuesday")


def write_catalog(path: Path) -> None:
    (path.parent / "img").mkdir(exist_ok=True)
    make_image(1).save(path.parent / "img" / "a.jpg")
    path.write_text(
        "image,item_id,name,source,created_at\n"
        "img/a.jpg,A1,red dress,shop-1,2023-11-19\n"
        "https://example.com/p/b.jpg?x=1,,blue shoe,,1700000000\n"
        "img/c.jpg,C1,,shop-2,not a date\n"
        ",D1,,,\n",
        encoding="utf-8",
    )


def test_csv_catalog_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog)
    rows = list(open_listing(catalog, "fallback"))
    first, url, bad_date, no_image = rows
    assert isinstance(first, Record) and first.uri == str((tmp_path / "img" / "a.jpg").resolve())
    assert (first.item_id, first.name, first.source, first.key) == ("A1", "red dress", "shop-1", "A1")
    assert isinstance(url, Record) and url.uri.startswith("https://")
    assert (url.item_id, url.source, url.key) == ("b", "fallback", url.uri)
    assert isinstance(bad_date, Skipped) and "created_at" in bad_date.reason
    assert isinstance(no_image, Skipped)
    assert open_listing(catalog).count() == 4


def test_parquet_catalog_reads_like_csv(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.parquet"
    pq.write_table(pa.table({"image": ["a.jpg"], "item_id": ["A1"], "created_at": [1700000000]}), catalog)
    (record,) = list(open_listing(catalog))
    assert isinstance(record, Record)
    assert record.created_at == 1700000000 and record.item_id == "A1"


def test_a_parquet_number_column_of_zero_is_a_value_not_a_missing_one(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.parquet"
    table = {
        "image": ["a.jpg", "b.jpg"],
        "item_id": [0, 7],
        "category": [0, 3],
        "tags": [0, 5],
        "name": [0.0, None],
    }
    pq.write_table(pa.table(table), catalog)
    records = [r for r in open_listing(catalog) if isinstance(r, Record)]
    assert [(r.item_id, dict(r.details)["category"], dict(r.details)["tags"], r.name) for r in records] == [
        ("0", "0", ("0",), "0.0"),  # item 0 of the catalog, not the file's stem "a"
        ("7", "3", ("5",), ""),
    ]


def test_catalog_without_image_column_is_a_clear_error(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("path,item_id\na.jpg,1\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="no 'image' column"):
        list(open_listing(catalog))


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        open_listing(tmp_path / "nope")
