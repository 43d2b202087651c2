"""The synthetic catalog: deterministic by seed, with queries whose relevant items have what they name."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from PIL import Image

from lookalike.quality.demo import CATEGORIES, COLOURS, PATTERNS, write_demo_data


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_writes_the_same_files_and_another_seed_does_not(tmp_path: Path) -> None:
    write_demo_data(tmp_path / "a", n=40, seed=3, size=96)
    write_demo_data(tmp_path / "b", n=40, seed=3, size=96)
    write_demo_data(tmp_path / "c", n=40, seed=4, size=96)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_catalog_rows_are_titled_pictures_with_dates_and_sources(tmp_path: Path) -> None:
    made = write_demo_data(tmp_path, n=30, seed=0, size=96)
    rows = list(csv.DictReader(made.catalog.open(encoding="utf-8")))
    assert len(rows) == 30 == made.items
    assert list(rows[0]) == ["image", "item_id", "name", "source", "created_at"]
    assert len({row["item_id"] for row in rows}) == 30
    assert {row["source"] for row in rows} == {"shop-a", "shop-b"}
    for row in rows:
        words = row["name"].split()
        assert len(words) == 3 and words[-1] in CATEGORIES
        assert (words[0] == "plain" and words[1] in COLOURS) or (words[0] in COLOURS and words[1] in PATTERNS)
        with Image.open(tmp_path / row["image"]) as image:
            assert image.size == (96, 96)
        assert row["created_at"].startswith("2026-")


def test_text_queries_list_exactly_the_items_with_every_named_attribute(tmp_path: Path) -> None:
    made = write_demo_data(tmp_path, n=250, seed=1, size=64)
    titles = {row["item_id"]: row["name"] for row in csv.DictReader(made.catalog.open(encoding="utf-8"))}
    queries = list(csv.DictReader(made.queries.open(encoding="utf-8")))
    text = [q for q in queries if q["kind"] == "text"]
    images = [q for q in queries if q["kind"] == "image"]
    assert len(text) == made.text_queries and len(images) == made.image_queries > 0
    for query in text:
        words = set(query["query"].split())
        expected = {item for item, title in titles.items() if words <= set(title.split())}
        if len(words) == 2:
            assert set(query["relevant"].split("|")) == expected, query["query"]
    exact = {q["query"]: set(q["relevant"].split("|")) for q in text}
    for title in set(titles.values()):
        assert exact[title] == {item for item, t in titles.items() if t == title}
    for query in images:
        assert (tmp_path / query["query"]).is_file()
        assert set(query["relevant"].split("|")) <= set(titles)
