"""Catalog edges: dates read by their size (YYYYMMDD, unix seconds, milliseconds) or refused with their
reason, non-ASCII digits refused, a column given twice and an empty catalog refused when opened."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lookalike.errors import CatalogError
from lookalike.ingest.sources import Record, Skipped, open_listing, parse_created_at
from tests.helpers import make_image

NOV_19 = int(datetime(2023, 11, 19, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    "value", ["20231119", 20231119, 20231119.0, " 20231119 ", "2023-11-19", "20231119T00:00"]
)
def test_eight_digits_are_a_date(value: object) -> None:
    assert parse_created_at(value) == NOV_19


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, 1_700_000_000),
        ("1700000000.9", 1_700_000_000),
        ("123456789", 123_456_789),  # nine digits: 1973-11-29
        (1_700_000_000_000, 1_700_000_000),  # milliseconds, as JavaScript writes them
        ("100000000000", 100_000_000),
    ],
)
def test_unix_seconds_and_milliseconds_are_read_by_their_size(value: object, expected: int) -> None:
    assert parse_created_at(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("20231340", "eight digits but is no date YYYYMMDD (year 2023, month 13, day 40)"),
        ("19691231", "outside 1970-01-01 .. 2199-12-31"),
        ("2023", "no plausible time"),  # a year: 34 minutes after the epoch as seconds
        (0, "no plausible time"),
        ("3", "no plausible time"),
        ("9999999999", "no plausible time"),  # after 2199 as seconds, 1970 as milliseconds
        ("99999999999", "no plausible time"),
        (1_700_000_000_000_000, "no plausible time"),  # microseconds
        ("20231119.5", "no plausible time"),
        ("-5", "outside 1970-01-01"),
        ("inf", "not a plain number"),
        ("1e9", "not a plain number"),  # float() reads it as 2001-09-09; the README reads by digits
        ("1_700_000_000", "not a plain number"),
        ("0x6553F100", "not a date or unix time"),
        (float("nan"), "not a finite number"),
        (10**400, "outside 1970-01-01"),
    ],
)
def test_a_number_that_is_no_plausible_time_is_refused_with_its_reason(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match="created_at") as refused:
        parse_created_at(value)
    assert reason in str(refused.value)


@pytest.mark.parametrize("value", ["٣", "٢٠٢٣١١١٩", "１７００００００００", "2023-11-1٩", "１９７０"])
def test_digits_other_than_ascii_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="characters other than ASCII"):
        parse_created_at(value)


def test_a_catalog_row_dated_yyyymmdd_lands_on_its_day_and_a_bad_one_is_skipped(tmp_path: Path) -> None:
    make_image(1).save(tmp_path / "a.jpg")
    make_image(2).save(tmp_path / "b.jpg")
    make_image(3).save(tmp_path / "c.jpg")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "image,item_id,created_at\na.jpg,A,20231119\nb.jpg,B,٣\nc.jpg,C,2023\n", encoding="utf-8"
    )
    a, b, c = list(open_listing(catalog))
    assert isinstance(a, Record) and a.created_at == NOV_19
    assert isinstance(b, Skipped) and "row 3" in b.reason and "ASCII" in b.reason
    assert isinstance(c, Skipped) and "row 4" in c.reason and "no plausible time" in c.reason
    table = pa.table({"image": ["a.jpg", "b.jpg"], "created_at": [20231119, 9_999_999_999]})
    pq.write_table(table, tmp_path / "catalog.parquet")
    first, second = list(open_listing(tmp_path / "catalog.parquet"))
    assert isinstance(first, Record) and first.created_at == NOV_19
    assert isinstance(second, Skipped) and "no plausible time" in second.reason


@pytest.mark.parametrize("column", ["image", "item_id", "created_at"])
def test_a_column_given_twice_is_refused_naming_it(tmp_path: Path, column: str) -> None:
    make_image(1).save(tmp_path / "a.jpg")
    header = ["image", "item_id", "created_at", column]
    (tmp_path / "twice.csv").write_text(",".join(header) + "\na.jpg,A,2023-11-19,b.jpg\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=f"twice.csv has 2 columns named '{column}'"):
        open_listing(tmp_path / "twice.csv")
    values = [pa.array(["a.jpg"]), pa.array(["A"]), pa.array(["2023-11-19"]), pa.array(["b.jpg"])]
    pq.write_table(pa.table(values, names=header), tmp_path / "twice.parquet")
    with pytest.raises(CatalogError, match=f"twice.parquet has 2 columns named '{column}'"):
        open_listing(tmp_path / "twice.parquet")


def test_columns_lookalike_does_not_read_may_repeat(tmp_path: Path) -> None:
    make_image(1).save(tmp_path / "a.jpg")
    (tmp_path / "notes.csv").write_text("image,note,note,,\na.jpg,x,y,,\n", encoding="utf-8")
    assert [r.item_id for r in open_listing(tmp_path / "notes.csv") if isinstance(r, Record)] == ["a"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "is empty: its first line names the columns"),
        ("\n\nimage\na.jpg\n", "starts with a blank line: its first line names the columns"),
        ("image,item_id\n", "has no rows: nothing to index"),
        ("image,item_id\n\n\n", "has no rows: nothing to index"),
        ("\ufeffimage\r\n", "has no rows: nothing to index"),
    ],
)
def test_an_empty_catalog_is_refused_when_opened(tmp_path: Path, content: str, reason: str) -> None:
    (tmp_path / "empty.csv").write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError, match=reason):
        open_listing(tmp_path / "empty.csv")


def test_an_empty_parquet_catalog_is_refused_when_opened(tmp_path: Path) -> None:
    pq.write_table(pa.table({"image": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    with pytest.raises(CatalogError, match="empty.parquet has no rows"):
        open_listing(tmp_path / "empty.parquet")
