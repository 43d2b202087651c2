"""The matching service: /h/hash and /m/lookup (HMA's API shape), /banks, and GET /audit's item columns."""

from __future__ import annotations

import csv
import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.usecases import Context, banks
from tests.unit.test_bank_cli import REFERENCE, REFERENCE_HASH
from tests.unit.test_flags_of_gone_items import flagged


def flip(value: str, bits: int) -> str:
    return format(int(value, 16) ^ ((1 << bits) - 1), "064x")


@pytest.fixture()
def ctx(tmp_path: Path) -> Context:
    service = flagged(tmp_path)
    banks.create(service, "known-bad", max_distance=20, labels=["counterfeit"], by="ana")
    banks.add(service, "known-bad", [REFERENCE_HASH], by="ana")
    banks.create(service, "stock", kind="allow", max_distance=4, by="ana")
    return service


@pytest.fixture()
def api(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as client:
        yield client


def test_hash_an_upload_as_hma_does(api: TestClient) -> None:
    for field in ("photo", "image", "file"):
        response = api.post("/h/hash", files={field: ("bridge.jpg", REFERENCE.read_bytes(), "image/jpeg")})
        assert response.status_code == 200 and response.json() == {"pdq": REFERENCE_HASH, "quality": 100}
    assert api.post("/h/hash", files={"other": ("b.jpg", REFERENCE.read_bytes())}).status_code == 422
    two = [("photo", ("a.jpg", REFERENCE.read_bytes())), ("image", ("b.jpg", REFERENCE.read_bytes()))]
    assert api.post("/h/hash", files=two).status_code == 422
    assert api.post("/h/hash", files={"photo": ("x.jpg", b"not a picture")}).status_code == 422
    assert api.post("/h/hash", json={"url": "http://x"}).status_code == 415


def test_hash_a_url_under_the_url_policy(ctx: Context, tmp_path: Path) -> None:
    folder = tmp_path / "web"
    folder.mkdir()
    (folder / "bridge.jpg").write_bytes(REFERENCE.read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/bridge.jpg"
    try:
        with TestClient(create_app(ctx)) as api:
            refused = api.get("/h/hash", params={"url": url})
            assert refused.status_code == 422 and "non-public" in refused.json()["detail"]
            assert api.get("/h/hash", params={"url": "file:///etc/passwd"}).status_code == 422
        ctx.settings.allow_private_urls = True
        with TestClient(create_app(ctx)) as api:
            assert api.get("/h/hash", params={"url": url}).json() == {"pdq": REFERENCE_HASH, "quality": 100}
    finally:
        server.shutdown()


def test_lookup_finds_the_banks_a_hash_matches_each_at_its_own_distance(
    api: TestClient, ctx: Context
) -> None:
    near = api.get("/m/lookup", params={"signal_type": "pdq", "signal": flip(REFERENCE_HASH, 20)}).json()
    assert near["banks"] == ["known-bad"] and near["allowed_by"] == []
    assert [(m["bank"], m["kind"], m["action"], m["distance"]) for m in near["matches"]] == [
        ("known-bad", "block", "flag", 20)
    ]
    far = api.get("/m/lookup", params={"signal": flip(REFERENCE_HASH, 21)}).json()
    assert far["banks"] == [] and far["matches"] == []
    only = api.get("/m/lookup", params={"signal": REFERENCE_HASH, "bank": "stock"}).json()
    assert only["banks"] == []
    assert api.get("/m/lookup", params={"signal": REFERENCE_HASH, "bank": "nope"}).status_code == 400
    assert api.get("/m/lookup", params={"signal": "xyz"}).status_code == 422
    assert (
        api.get("/m/lookup", params={"signal": REFERENCE_HASH, "signal_type": "video_md5"}).status_code == 422
    )
    # An allow bank's entry near the hash suppresses the block match.
    banks.add(ctx, "stock", [flip(REFERENCE_HASH, 2)], by="ana")
    allowed = api.get("/m/lookup", params={"signal": REFERENCE_HASH}).json()
    assert allowed["banks"] == [] and [m["bank"] for m in allowed["allowed_by"]] == ["stock"]
    # A bank switched off is not matched, at once.
    banks.switch(ctx, "stock", enabled=False, by="ana")
    banks.switch(ctx, "known-bad", enabled=False, by="ana")
    assert api.get("/m/lookup", params={"signal": REFERENCE_HASH}).json()["banks"] == []


def test_lookup_a_picture_or_a_thousand_hashes(api: TestClient, ctx: Context) -> None:
    picture = api.post("/m/lookup", files={"photo": ("b.jpg", REFERENCE.read_bytes())}).json()
    assert (
        picture["signal"] == REFERENCE_HASH
        and picture["quality"] == 100
        and picture["banks"] == ["known-bad"]
    )
    rng = np.random.default_rng(1)
    many = [bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(999)] + [
        REFERENCE_HASH.upper()
    ]
    answer = api.post("/m/lookup", json={"signal_type": "pdq", "signals": many})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert len(results) == 1000 and [r["banks"] for r in results if r["banks"]] == [["known-bad"]]
    assert results[-1]["signal"] == REFERENCE_HASH
    assert api.post("/m/lookup", json={"signals": many + [REFERENCE_HASH]}).status_code == 422
    assert api.post("/m/lookup", json={"signals": []}).status_code == 422
    assert api.post("/m/lookup", json={"signals": ["zz"]}).status_code == 422
    assert api.post("/m/lookup", json={"signals": [REFERENCE_HASH], "banks": ["nope"]}).status_code == 400
    assert (
        api.post("/m/lookup", content=b"[1, 2", headers={"content-type": "application/json"}).status_code
        == 400
    )


def test_banks_are_listed(api: TestClient) -> None:
    listed = {b["name"]: b for b in api.get("/banks").json()}
    assert listed["known-bad"] == {
        "name": "known-bad",
        "kind": "block",
        "action": "flag",
        "enabled": True,
        "max_distance": 20,
        "labels": ["counterfeit"],
        "entries": 1,
        "paused": 0,
    }
    assert listed["stock"]["kind"] == "allow"


def test_get_audit_carries_the_taken_down_item(api: TestClient) -> None:
    flags = api.get("/flags", params={"status": "open"}).json()["flags"]
    doomed = next(f for f in flags if f["uri"].endswith("planted_a.png"))
    response = api.post(
        f"/flags/{doomed['id']}/review", json={"decision": "confirm", "by": "bo", "take_down": True}
    )
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(api.get("/audit", params={"format": "csv"}).text)))
    assert [r["decision"] for r in rows if r["record"] == "bank"] == ["create", "add", "create"]
    [row] = [r for r in rows if r["record"] == "review"]
    assert (row["item"], row["item_id"], row["source"], row["reviewer"], row["policy"]) == (
        doomed["item"], "planted_a", "default", "bo", "prohibited",
    )  # fmt: skip
    assert row["uri"] == doomed["uri"] and len(row["sha256"]) == 64 and len(row["pdq"]) == 64
    [record] = [r for r in api.get("/audit").json()["decisions"] if r["record"] == "review"]
    assert record["pdq"] == row["pdq"] and record["score"] >= 0.95 and record["record"] == "review"


def test_an_upload_of_a_taken_down_picture_is_refused_by_post_index(api: TestClient, tmp_path: Path) -> None:
    import time

    flags = api.get("/flags", params={"status": "open"}).json()["flags"]
    doomed = next(f for f in flags if f["uri"].endswith("planted_a.png"))
    api.post(f"/flags/{doomed['id']}/review", json={"decision": "confirm", "by": "bo", "take_down": True})
    picture = (tmp_path / "photos" / "planted_a.png").read_bytes()
    job = api.post("/index", files={"files": ("again.png", picture, "image/png")}, data={"source": "shop-2"})
    assert job.status_code == 202
    for _ in range(200):
        state = api.get(f"/jobs/{job.json()['job_id']}").json()
        if state["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert state["status"] == "done" and state["indexed"] == 0 and state["blocked"] == 1
    assert state["skipped"][0]["reason"].startswith("blocked: taken down on ") and state["alerts"] == []
    attempt = [f for f in api.get("/flags", params={"policy": "bank:takedowns"}).json()["flags"]]
    assert len(attempt) == 1 and not attempt[0]["stored"] and attempt[0]["refused"].startswith("blocked:")
