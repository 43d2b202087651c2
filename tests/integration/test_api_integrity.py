"""The API refuses a source or item id it could only store cut (422, never a 500), and its answers
stay valid JSON when a stored vector is not finite."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.usecases import Context, ingest
from tests.helpers import FakeEmbedder, jpeg_bytes, make_image, write_images
from tests.integration.test_api import wait_for

SHOP_A = "X" * 256 + "-shopA"  # 262 bytes: over the 256-byte limit of a source


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Context]]:
    write_images(tmp_path / "photos", 4)
    service = Context(load_settings(db=str(tmp_path / "api.db"), workers=2), embedder=FakeEmbedder())
    ingest.index(service, str(tmp_path / "photos"), source="product")
    with TestClient(create_app(service)) as client:
        yield client, service


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in the JSON answer")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "body",
    [
        {"text": "x", "sources": ["product", SHOP_A]},
        {"item_id": "sku-" + "9" * 1021},  # 1025 bytes
        {"item_id": "名" * 342},  # 342 characters, 1026 bytes
    ],
)
def test_a_search_filter_no_stored_item_can_hold_is_a_422(api: tuple[TestClient, Context], body: Any) -> None:
    client, _ = api
    answer = client.post("/search", json=body)
    assert answer.status_code == 422, answer.text
    assert "bytes long in UTF-8, over the" in answer.text


def test_indexing_under_a_source_over_its_limit_is_a_422_and_keeps_nothing(
    api: tuple[TestClient, Context], tmp_path: Path
) -> None:
    client, service = api
    as_json = client.post("/index", json={"inputs": [str(tmp_path / "photos")], "source": SHOP_A})
    assert as_json.status_code == 422 and "262 bytes" in as_json.text
    upload = [("files", ("p.jpg", jpeg_bytes(make_image(99)), "image/jpeg"))]
    as_form = client.post("/index", files=upload, data={"source": SHOP_A})
    assert as_form.status_code == 422 and "262 bytes" in as_form.text
    kept = Path(service.settings.uploads_path())
    assert not kept.exists() or not any(kept.iterdir())  # refused before the upload was kept
    fits = client.post("/index", files=upload, data={"source": "X" * 256})  # at the limit: kept whole
    assert fits.status_code == 202, fits.text
    job = wait_for(client, fits.json()["job_id"])
    assert job["status"] == "done" and job["indexed"] == 1, job
    assert "X" * 256 in service.store.sources()


def test_answers_stay_valid_json_when_a_stored_vector_is_not_finite(api: tuple[TestClient, Context]) -> None:
    client, service = api
    some = next(iter(service.store.iter_items(with_vector=True)))[0]
    broken = dataclasses.replace(
        some, id=4242, sha256="e" * 64, vector=np.full_like(some.vector, np.nan), det_score=float("nan")
    )
    service.store.insert([broken])
    found = client.post("/search", json={"text": "x", "k": 10})
    assert found.status_code == 200, found.text
    body = strict_json(found.text)
    assert len(body["hits"]) == 4 and 4242 not in {hit["id"] for hit in body["hits"]}
    assert any("no valid score" in warning for warning in body["warnings"])
    item = client.get("/items/4242")
    assert item.status_code == 200 and strict_json(item.text)["det_score"] == 0.0
