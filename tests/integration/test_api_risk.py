"""Scans, duplicates and partitions over the HTTP API (fake embedder, real Milvus Lite)."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.usecases import Context, ingest
from tests.helpers import FakeEmbedder, make_image
from tests.integration.test_api import wait_for

LABELS = '[labels.target]\nprompts = ["the target"]\nthreshold = 0.99\n'


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[TestClient]:
    """Six items over three months; item 2 is also listed, byte for byte, by a second seller."""
    folder = tmp_path / "cat"
    folder.mkdir()
    rows = ["image,item_id,name,source,created_at"]
    for i, day in enumerate(
        ["2023-10-03", "2023-11-19", "2023-11-20", "2023-11-23", "2023-11-25", "2023-12-04"]
    ):
        make_image(i).save(folder / f"{i}.jpg")
        rows.append(f"{i}.jpg,SKU{i},item {i},shop,{day}")
    shutil.copy(folder / "2.jpg", folder / "copy.jpg")
    rows.append("copy.jpg,COPY,copied,other-shop,2023-11-21")
    (folder / "catalog.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    embedder = FakeEmbedder()
    service = Context(load_settings(db=str(tmp_path / "risk.db"), workers=2), embedder=embedder)
    ingest.index(service, str(folder / "catalog.csv"))
    embedder.concepts["the target"] = embedder.embed_images([make_image(3)])[0]  # SKU3 is the target
    with TestClient(create_app(service)) as client:
        yield client


def test_scan_job_reports_the_window(api: TestClient) -> None:
    started = api.post(
        "/scan", json={"labels": LABELS, "since": "2023-11-19", "until": "2023-11-23", "format": "csv"}
    )
    assert started.status_code == 202
    job = wait_for(api, started.json()["job_id"])
    assert job["kind"] == "scan" and job["status"] == "done", job
    assert job["result"] == {"items_in_window": 4, "rows": 1}
    report = api.get(job["report_url"])
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert [row["item_id"] for row in rows] == ["SKU3"] and "score_target" in rows[0]
    every = wait_for(api, api.post("/scan", json={"labels": LABELS, "min_score": -1}).json()["job_id"])
    assert every["result"] == {"items_in_window": 7, "rows": 7}
    assert len(api.get(every["report_url"]).json()["rows"]) == 7


def test_bad_scan_requests_are_refused(api: TestClient) -> None:
    assert api.post("/scan", json={"labels": "[labels.x\n"}).status_code == 400
    assert api.post("/scan", json={"labels": "[labels.x]\nprompts = []\n"}).status_code == 400
    assert api.post("/scan", json={"labels": LABELS, "format": "xlsx"}).status_code == 422
    assert api.post("/scan", json={"labels": LABELS, "since": "soon"}).status_code == 422
    reversed_window = api.post("/scan", json={"labels": LABELS, "since": "2023-11-23", "until": "2023-11-19"})
    assert reversed_window.status_code == 400
    assert "since 2023-11-23 is after until" in reversed_window.json()["detail"]  # API fields, not --flags
    assert api.post("/scan", content=b"{", headers={"content-type": "application/json"}).status_code == 422
    assert api.get("/jobs/nope/report").status_code == 404


def test_duplicates_job_finds_the_byte_copy(api: TestClient) -> None:
    job = wait_for(api, api.post("/duplicates", json={"threshold": 0.999999}).json()["job_id"])
    assert job["status"] == "done" and job["result"]["exact"] == 1
    groups = api.get(job["report_url"]).json()["groups"]
    exact = [g for g in groups if g["kind"] == "exact"]
    assert sorted(item["item_id"] for item in exact[0]["items"]) == ["COPY", "SKU2"]


def test_partitions_are_listed_and_old_months_dropped(api: TestClient) -> None:
    listed = api.get("/partitions").json()
    assert [(p["name"], p["rows"]) for p in listed] == [("m2023_10", 1), ("m2023_11", 5), ("m2023_12", 1)]
    assert listed[0]["first_day"] == "2023-10-01" and listed[0]["last_day"] == "2023-10-31"
    assert api.delete("/partitions").status_code == 422  # before= is required
    assert api.delete("/partitions", params={"before": "2023-11-15"}).json() == {
        "dropped": ["m2023_10"],
        "items": 1,
    }
    assert [p["name"] for p in api.get("/partitions").json()] == ["m2023_11", "m2023_12"]
    assert api.get("/stats").json()["rows"] == 6
