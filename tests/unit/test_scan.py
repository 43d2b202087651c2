"""Scans, partition drops and reports over stored vectors with known concepts (no images decoded)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from lookalike.config import load_settings
from lookalike.errors import ConfigError
from lookalike.scan import write_scan_report
from lookalike.store import Item, open_store
from lookalike.usecases import Context, risk
from tests.helpers import FakeEmbedder

DIM = 32


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def ts(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())


@pytest.fixture()
def planted(tmp_path: Path) -> tuple[Context, dict[str, set[int]]]:
    """300 random items from October to December 2023; samoyeds planted inside and outside 19-23 Nov."""
    rng = np.random.default_rng(7)
    samoyed = unit(rng.normal(size=DIM))
    store = open_store(str(tmp_path / "scan.db"), "images")
    store.create(DIM, model="fake-32")
    items, truth = [], {"inside": set(), "outside": set(), "window": set()}
    start, end = ts("2023-10-01"), ts("2023-12-31")
    for i in range(300):
        created = int(rng.integers(start, end))
        vector = unit(rng.normal(size=DIM))
        items.append((i, created, vector, "avatar" if i % 3 else "product"))
    # Planted: on the window's edges and inside it, and just outside on both sides.
    for i, day in enumerate(
        ["2023-11-19T00:00:00", "2023-11-20", "2023-11-21T12:00:00", "2023-11-23T23:59:59"]
    ):
        items.append((1000 + i, ts(day), unit(samoyed + 0.15 * unit(rng.normal(size=DIM))), "avatar"))
    for i, day in enumerate(["2023-11-18T23:59:59", "2023-11-24T00:00:00", "2023-10-05"]):
        items.append((2000 + i, ts(day), unit(samoyed + 0.15 * unit(rng.normal(size=DIM))), "avatar"))
    lo, hi = ts("2023-11-19"), ts("2023-11-24")
    for item_id, created, _, _ in items:
        if lo <= created < hi:
            truth["window"].add(item_id)
            if item_id >= 1000:
                truth["inside"].add(item_id)
        elif item_id >= 1000:
            truth["outside"].add(item_id)
    store.insert(
        [
            Item(i, f"sha{i}", f"item{i}", "", source, created, f"/img/{i}.jpg", 10, 10, vector)
            for i, created, vector, source in items
        ]
    )
    embedder = FakeEmbedder(dim=DIM, concepts={"a samoyed": samoyed, "a white fluffy dog": samoyed})
    service = Context(load_settings(db=str(tmp_path / "scan.db")), embedder=embedder, store=store)
    labels = tmp_path / "labels.toml"
    labels.write_text(
        '[labels.samoyed]\nprompts = ["a samoyed", "a white fluffy dog"]\nthreshold = 0.8\n', encoding="utf-8"
    )
    return service, truth


def run_scan(service: Context, tmp_path: Path, **kwargs: object) -> tuple[int, list]:
    _, total, rows = risk.scan(service, str(tmp_path / "labels.toml"), **kwargs)  # type: ignore[arg-type]
    return total, list(rows)


def test_scan_finds_exactly_the_planted_items_in_the_window(tmp_path: Path, planted: tuple) -> None:
    service, truth = planted
    total, rows = run_scan(service, tmp_path, since=date(2023, 11, 19), until=date(2023, 11, 23))
    assert {row.item.id for row in rows} == truth["inside"]
    assert total == len(truth["window"])
    assert all(row.label == "samoyed" and row.score >= 0.8 for row in rows)


def test_scan_with_a_low_min_score_reports_every_item_in_the_window_once(
    tmp_path: Path, planted: tuple
) -> None:
    service, truth = planted
    total, rows = run_scan(
        service, tmp_path, since=date(2023, 11, 19), until=date(2023, 11, 23), min_score=-1.0
    )
    ids = [row.item.id for row in rows]
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == truth["window"]


def test_scan_without_a_window_covers_everything_and_sources_filter(tmp_path: Path, planted: tuple) -> None:
    service, truth = planted
    _, rows = run_scan(service, tmp_path)
    assert {row.item.id for row in rows} == truth["inside"] | truth["outside"]
    _, products = run_scan(service, tmp_path, sources=["product"], min_score=-1.0)
    assert products and {row.item.source for row in products} == {"product"}


def test_reports_have_the_promised_columns(tmp_path: Path, planted: tuple) -> None:
    service, truth = planted
    for suffix in (".csv", ".json", ".html"):
        labels, _, rows = risk.scan(
            service, str(tmp_path / "labels.toml"), since=date(2023, 11, 19), until=date(2023, 11, 23)
        )
        written = write_scan_report(tmp_path / f"report{suffix}", rows, labels.names, {"since": "2023-11-19"})
        assert written == len(truth["inside"])
    with (tmp_path / "report.csv").open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == [
            "id",
            "item_id",
            "source",
            "created_at",
            "uri",
            "label",
            "score",
            "score_samoyed",
        ]
        assert {int(row["id"]) for row in reader} == truth["inside"]
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["labels"] == ["samoyed"] and len(report["rows"]) == len(truth["inside"])
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "samoyed: 4 items" in page and "image unavailable" in page  # the planted uris do not exist
    with pytest.raises(ConfigError, match="not supported"):
        write_scan_report(tmp_path / "report.xlsx", iter([]), ["samoyed"], {})


def test_partitions_drop_removes_only_whole_older_months(tmp_path: Path, planted: tuple) -> None:
    service, _ = planted
    before = {p.name: p.rows for p in risk.partitions(service)}
    assert set(before) == {"m2023_10", "m2023_11", "m2023_12"}
    assert [p.name for p in risk.partitions_before(service, date(2023, 11, 15))] == ["m2023_10"]
    doomed = risk.partitions_before(service, date(2023, 12, 1))
    assert [p.name for p in doomed] == ["m2023_10", "m2023_11"]
    risk.drop_partitions(service, [p.name for p in doomed])
    after = {p.name: p.rows for p in risk.partitions(service)}
    assert after == {"m2023_12": before["m2023_12"]}
    assert service.store.count() == before["m2023_12"]
    _, rows = run_scan(service, tmp_path, min_score=-1.0)
    assert len(rows) == before["m2023_12"]
