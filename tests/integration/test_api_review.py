"""GET /flags, POST /flags/{id}/review, /policies and /audit over a collection with planted flags."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.usecases import Context, ingest, policies
from tests.helpers import write_images
from tests.unit.test_policies import make_context, plant, write_policy


def build_flagged(tmp_path: Path) -> Context:
    """12 photos and 3 copies of the prohibited picture, indexed under a policy: 3 open flags."""
    ctx = make_context(tmp_path)
    policies.add(ctx, str(write_policy(tmp_path)))
    write_images(tmp_path / "photos", 12)
    plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    return ctx


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(build_flagged(tmp_path))) as client:
        yield client


def test_flags_are_listed_filtered_and_reviewed(api: TestClient) -> None:
    assert [p["name"] for p in api.get("/policies").json()] == ["prohibited"]
    body = api.get("/flags", params={"status": "open"}).json()
    assert body["total"] == 3 and {f["label"] for f in body["flags"]} == {"contraband"}
    assert all(isinstance(f["item"], str) and f["stored"] for f in body["flags"])
    assert api.get("/flags", params={"policy": "none"}).json()["total"] == 0
    assert api.get("/flags", params={"until": "2001-01-01"}).json()["total"] == 0
    first, second, third = (f["id"] for f in body["flags"])

    done = api.post(f"/flags/{first}/review", json={"decision": "dismiss", "by": "ana", "note": "toy"})
    assert done.status_code == 200 and done.json()["decisions"][0]["decision"] == "dismissed"
    down = api.post(f"/flags/{second}/review", json={"decision": "confirm", "by": "bo", "take_down": True})
    assert down.status_code == 200
    item = down.json()["decisions"][0]["item"]
    assert api.get(f"/items/{item}").status_code == 404  # gone from the collection
    assert [f["id"] for f in api.get("/flags", params={"status": "open"}).json()["flags"]] == [third]
    taken = api.get("/flags", params={"status": "confirmed"}).json()["flags"]
    assert [(f["id"], f["stored"]) for f in taken] == [(second, False)]

    audit = api.get("/audit", params={"format": "csv"})
    assert audit.status_code == 200 and audit.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(audit.text)))
    assert [(r["flag"], r["decision"], r["reviewer"], r["took_down"]) for r in rows] == [
        (str(first), "dismissed", "ana", "False"),
        (str(second), "confirmed", "bo", "True"),
    ]
    assert len(api.get("/audit").json()["decisions"]) == 2


def test_bad_reviews_are_refused_and_change_nothing(api: TestClient) -> None:
    flag = api.get("/flags").json()["flags"][0]["id"]
    assert api.post("/flags/99999/review", json={"decision": "confirm", "by": "ana"}).status_code == 404
    assert api.post(f"/flags/{flag}/review", json={"decision": "maybe", "by": "ana"}).status_code == 422
    assert api.post(f"/flags/{flag}/review", json={"decision": "confirm", "by": ""}).status_code == 422
    refused = api.post(f"/flags/{flag}/review", json={"decision": "dismiss", "by": "a", "take_down": True})
    assert refused.status_code == 400 and "confirmed" in refused.json()["detail"]
    assert api.get("/flags", params={"status": "bogus"}).status_code == 422
    assert api.get("/flags", params={"status": "open"}).json()["total"] == 3
    assert api.get("/audit").json()["decisions"] == []


def test_an_image_indexed_through_the_api_is_flagged_in_the_same_pass(api: TestClient) -> None:
    import time

    from tests.helpers import jpeg_bytes, make_image
    from tests.unit.test_policies import PLANTED

    files = [("files", ("upload.jpg", jpeg_bytes(make_image(PLANTED).resize((180, 135))), "image/jpeg"))]
    job = api.post("/index", files=files, data={"source": "upload"}).json()["job_id"]
    for _ in range(200):
        if api.get(f"/jobs/{job}").json()["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert api.get(f"/jobs/{job}").json()["status"] == "done"
    flagged = api.get("/flags", params={"status": "open"}).json()["flags"]
    uploaded = [f for f in flagged if ".uploads" in (f["uri"] or "")]
    assert len(flagged) == 4 and len(uploaded) == 1  # the three planted before, and the upload
    assert uploaded[0]["label"] == "contraband" and uploaded[0]["score"] >= 0.95
    dups = api.post("/duplicates", json={"by": "pdq", "max_distance": 31})
    assert dups.status_code == 202
    assert api.post("/duplicates", json={"by": "sha1"}).status_code == 422
