"""A listing split into parts (index --ray lists each in a task) lists what the whole listing does, once."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.ingest import open_listing
from lookalike.ingest.parts import CatalogSlice, count, split
from tests.helpers import write_images


def _entries(parts: list) -> Counter:
    # Each part goes to a task as a pickle: list what comes out of one.
    return Counter(entry for part in parts for entry in pickle.loads(pickle.dumps(part)))


def test_a_folders_parts_list_every_entry_once_with_the_same_skips(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    write_images(root, 3)
    write_images(root / "a", 2, start=10)
    write_images(root / "a" / "deep", 2, start=20, suffix=".png")
    write_images(root / "b.jpg", 1, start=30)  # a folder named like an image: reported, then entered
    write_images(root / ".hidden", 1, start=40)  # not entered
    (root / "a" / "logo.svg").write_text("<svg/>")
    (root / ".secret.jpg").write_bytes(b"x")
    os.symlink(root / "a", root / "link")  # not followed: reported
    listing = open_listing(str(root))

    parts = split(listing)

    whole = Counter(listing)
    assert len(parts) == 3  # the root's own files, a/ and b.jpg/
    assert _entries(parts) == whole and max(whole.values()) == 1
    assert sum(count(part) for part in parts) == listing.count() == sum(whole.values())
    reasons = {entry.reason for entry in whole if not hasattr(entry, "item_id")}
    assert any("symbolic link" in r for r in reasons) and any("hidden" in r for r in reasons)


def test_a_parquet_catalogs_slices_number_its_rows_as_the_whole_catalog_does(tmp_path: Path) -> None:
    photos = write_images(tmp_path / "photos", 7)
    images = [str(p) for p in photos] + ["", str(tmp_path / "gone.jpg")]
    dates = ["2024-01-02"] * 5 + ["not a date"] + ["2024-01-03"] * 3
    table = pa.table({"image": images, "item_id": [f"sku{i}" for i in range(9)], "created_at": dates})
    catalog = tmp_path / "catalog.parquet"
    pq.write_table(table, catalog, row_group_size=2)  # five row groups
    listing = open_listing(str(catalog))

    parts = split(listing, slice_rows=3)

    assert [p.groups for p in parts if isinstance(p, CatalogSlice)] == [(0, 1), (2, 3), (4,)]
    whole = Counter(listing)
    assert _entries(parts) == whole and sum(whole.values()) == 9
    assert sum(count(part) for part in parts) == 9
    skipped = sorted(entry.uri for entry in whole if not hasattr(entry, "item_id"))
    assert "catalog.parquet row 9" in skipped  # row 8 of the data (the header is line 1): no image
    assert any("row 7" in entry.reason for entry in whole if hasattr(entry, "reason"))


def test_a_csv_catalog_or_one_image_is_one_part(tmp_path: Path) -> None:
    (photo,) = write_images(tmp_path, 1)
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(f"image,item_id\n{photo},sku1\n")

    assert [list(p) for p in split(open_listing(str(catalog)))] == [list(open_listing(str(catalog)))]
    assert [list(p) for p in split(open_listing(str(photo)))] == [list(open_listing(str(photo)))]
