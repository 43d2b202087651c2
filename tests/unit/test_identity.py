"""Identity fields (source, item_id, the hashes) are refused whole when they do not fit, never cut;
display fields (name, uri, label, box) are cut on a character boundary, with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lookalike.config import load_settings
from lookalike.errors import ConfigError
from lookalike.ingest.sources import Inputs, Record, Skipped, open_listing
from lookalike.queries import API_NAMES, Query
from lookalike.store import Item, build_filter
from lookalike.store.rows import cut_utf8, normalise
from lookalike.usecases import Context, ingest
from lookalike.usecases import search as searching
from tests.helpers import FakeEmbedder, make_image
from tests.store_model import make_item, vector

# Two sellers whose names share their first 256 bytes: cut to the limit, they would be one source.
SHOP_A = "X" * 256 + "-shopA"
LONG_ITEM_ID = "sku-" + "9" * 1021  # 1025 bytes


def with_field(field: str, value: object) -> Item:
    return Item(**{**make_item(1).metadata(), field: value, "vector": vector(1)})


@pytest.mark.parametrize(
    ("field", "value"),
    [("source", SHOP_A), ("item_id", LONG_ITEM_ID), ("sha256", "f" * 65), ("parent_sha256", "a" * 65)],
)
def test_an_identity_over_its_byte_limit_is_refused_not_cut(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"The {field} of item 1 is {len(value)} bytes .* never cut"):
        normalise(with_field(field, value))


def test_an_identity_is_measured_in_utf8_bytes_and_kept_whole_at_its_limit() -> None:
    assert normalise(with_field("source", "é" * 128)).source == "é" * 128  # 128 characters, 256 bytes
    with pytest.raises(ConfigError, match="258 bytes"):
        normalise(with_field("source", "é" * 129))


def test_an_identity_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        normalise(with_field("source", "shop\udcff"))  # what a Latin-1 argv becomes in Python


def test_a_long_name_is_cut_on_a_character_boundary_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    item = Item(**{**make_item(7).metadata(), "name": "名" * 1000, "label": "l" * 300, "vector": vector(7)})
    with caplog.at_level(logging.WARNING, logger="lookalike.store.rows"):
        stored = normalise(item)
    assert stored.name == "名" * 682 == cut_utf8(item.name, 2048) and stored.label == "l" * 256
    assert stored.source == item.source and stored.item_id == item.item_id
    [record] = caplog.records  # one line for the item, naming every field cut
    assert "item 7" in record.getMessage() and "name (2048 bytes)" in record.getMessage()
    assert "label (256 bytes)" in record.getMessage()


def write_catalog(folder: Path, rows: list[tuple[str, str, str, str]], kind: str = "csv") -> Path:
    """rows: (file name, item_id, name, source); images are made from the row index."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, *_rest) in enumerate(rows):
        make_image(i).save(folder / image)
    columns = {
        "image": [r[0] for r in rows],
        "item_id": [r[1] for r in rows],
        "name": [r[2] for r in rows],
        "source": [r[3] for r in rows],
    }
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "catalog.parquet"
        pq.write_table(pa.table(columns), path)
        return path
    import csv

    path = folder / "catalog.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(columns))
        writer.writerows(rows)
    return path


def make_service(tmp_path: Path) -> Context:
    return Context(load_settings(db=str(tmp_path / "t.db"), workers=2), embedder=FakeEmbedder())


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_catalog_rows_whose_identity_is_too_long_are_skipped_and_reported(tmp_path: Path, kind: str) -> None:
    rows = [
        ("a.jpg", "sku-1", "first", "shop"),
        ("b.jpg", LONG_ITEM_ID, "second", "shop"),
        ("c.jpg", "sku-3", "third", SHOP_A),
        ("d.jpg", "sku-4", "fourth", ""),
    ]
    catalog = write_catalog(tmp_path / "cat", rows, kind)
    service = make_service(tmp_path)
    report = ingest.index(service, str(catalog), source="fallback")
    assert report.indexed == 2 and len(report.skipped) == 2
    reasons = sorted(skipped.reason for skipped in report.skipped)
    assert "row 3: item_id is 1025 bytes long in UTF-8, over the 1024-byte limit" in reasons[0]
    assert "row 4: source is 262 bytes long in UTF-8, over the 256-byte limit" in reasons[1]
    stored = {item.item_id: item for batch in service.store.iter_items() for item in batch}
    assert set(stored) == {"sku-1", "sku-4"} and stored["sku-4"].source == "fallback"
    assert all(len(item.source.encode()) <= 256 for item in stored.values())
    service.close()


def test_a_long_catalog_name_is_cut_with_a_warning_and_still_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = write_catalog(tmp_path / "cat", [("a.jpg", "sku-1", "名" * 1000, "shop")])
    service = make_service(tmp_path)
    with caplog.at_level(logging.WARNING, logger="lookalike.store.rows"):
        report = ingest.index(service, str(catalog))
    assert report.indexed == 1 and not report.skipped
    [item] = [item for batch in service.store.iter_items() for item in batch]
    assert item.name == "名" * 682 and item.item_id == "sku-1" and item.source == "shop"
    assert any("sku-1" in r.getMessage() and "name (2048 bytes)" in r.getMessage() for r in caplog.records)
    service.close()


def test_a_source_option_that_cannot_be_stored_whole_is_refused(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(ConfigError, match=r"--source is 262 bytes long .* 256-byte limit"):
        open_listing(tmp_path / "photos", SHOP_A)
    with pytest.raises(ConfigError, match=r"source is not valid UTF-8"):
        Inputs([str(tmp_path / "photos")], "shop\udcff")
    with pytest.raises(ConfigError, match="--source must not be empty"):
        ingest.check_source("  ")
    ingest.check_source("X" * 250 + "-shopA")  # a long name within the limit is fine


def test_a_url_whose_file_name_is_too_long_for_an_item_id_is_skipped() -> None:
    url = "https://example.com/" + "a" * 1100 + ".jpg"
    listed = list(Inputs([url, "https://example.com/ok.jpg"]))
    assert isinstance(listed[0], Skipped) and "over the 1024-byte limit" in listed[0].reason
    assert isinstance(listed[1], Record) and listed[1].item_id == "ok"


def test_filters_on_values_no_stored_item_can_hold_are_refused() -> None:
    with pytest.raises(ConfigError, match="A source filter is 262 bytes"):
        build_filter(sources=["shop", SHOP_A])
    with pytest.raises(ConfigError, match="A sha256 filter is not valid UTF-8"):
        build_filter(sha256=["\udcff"])
    with pytest.raises(ConfigError, match=r"--source is 262 bytes .*: no stored item can match it"):
        searching.validate(Query(text="x", sources=("shop", SHOP_A)))
    with pytest.raises(ConfigError, match=r"^sources is 262 bytes"):
        searching.validate(Query(text="x", sources=(SHOP_A,), names=API_NAMES))
    with pytest.raises(ConfigError, match=r"--item-id is 1025 bytes"):
        searching.validate(Query(item_id=LONG_ITEM_ID))
