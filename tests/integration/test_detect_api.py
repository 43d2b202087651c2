"""Detect and crop through the HTTP API, with the fake detector and the fake embedder over Milvus Lite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.usecases import Context, ingest
from tests.helpers import FakeDetector, FakeEmbedder, write_images

HANDBAG = [60, 10, 160, 110]


def build_with_crops(tmp_path: Path) -> tuple[Context, list[Path]]:
    """A collection of 6 street photos, each stored whole and as its 2 detected objects."""
    photos = write_images(tmp_path / "photos", 6)
    embedder = FakeEmbedder()
    # The API reads server files only under LOOKALIKE_INDEX_ROOTS.
    settings = load_settings(db=str(tmp_path / "crops.db"), workers=2, index_roots=str(tmp_path))
    service = Context(settings, embedder=embedder, detector=FakeDetector())
    ingest.index(service, str(tmp_path / "photos"), source="street", detect=True)
    # "red handbag" means exactly the handbag crop of photo 3 to the fake embedder.
    from PIL import Image

    with Image.open(photos[3]) as picture:
        embedder.concepts["red handbag"] = embedder.embed_images([picture.crop(tuple(HANDBAG))])[0]
    return service, photos


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[tuple[TestClient, list[Path]]]:
    service, photos = build_with_crops(tmp_path)
    with TestClient(create_app(service)) as test_client:
        yield test_client, photos


def test_hits_of_crops_carry_their_box_label_score_and_parent(client: tuple[TestClient, list[Path]]) -> None:
    api, photos = client
    body = api.post("/search", json={"text": "red handbag", "k": 3}).json()
    top = body["hits"][0]
    assert top["uri"] == str(photos[3].resolve()) and top["box"] == HANDBAG
    assert top["label"] == "handbag" and top["det_score"] == 0.9 and len(top["parent_sha256"]) == 64
    assert (top["width"], top["height"]) == (160, 120)
    item = api.get(f"/items/{top['id']}").json()
    assert item["box"] == "60,10,160,110" and item["parent_sha256"] == top["parent_sha256"]


def test_an_uploaded_query_image_is_searched_by_its_largest_object_or_a_given_box(
    client: tuple[TestClient, list[Path]],
) -> None:
    api, photos = client
    data = photos[2].read_bytes()
    detected = api.post("/search", files={"image": ("q.png", data)}, data={"detect": "true", "k": "2"}).json()
    assert detected["query_box"] == HANDBAG and detected["hits"][0]["box"] == HANDBAG
    boxed = api.post("/search", files={"image": ("q.png", data)}, data={"box": "5,20,55,90", "k": "2"}).json()
    assert boxed["query_box"] == [5, 20, 55, 90] and boxed["hits"][0]["box"] == [5, 20, 55, 90]
    whole = api.post("/search", files={"image": ("q.png", data)}, data={"k": "1"}).json()
    assert whole["query_box"] is None and whole["hits"][0]["box"] is None
    bad = api.post("/search", files={"image": ("q.png", data)}, data={"box": "9,9,1,1"})
    assert bad.status_code == 422 and "box" in bad.text


def test_index_job_with_detect_reports_the_objects_it_stored(
    client: tuple[TestClient, list[Path]], tmp_path: Path
) -> None:
    api, _ = client
    more = write_images(tmp_path / "more", 2, start=40)
    response = api.post("/index", json={"inputs": [str(more[0].parent)], "detect": True})
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    for _ in range(200):
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in {"done", "failed"}:
            break
        time.sleep(0.05)
    assert job["status"] == "done" and (job["indexed"], job["crops"]) == (2, 4)
