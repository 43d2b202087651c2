"""The HTTP API through FastAPI's TestClient, over a real Milvus Lite db and the fake embedder."""

from __future__ import annotations

import functools
import http.server
import importlib
import json
import threading
import time
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

fetch_module = importlib.import_module("lookalike.ingest.fetch")  # the module, not the function of that name

# A whole picture's hit has these too, empty: they describe a detected crop.
CROP_KEYS = ("width", "height", "box", "label", "det_score", "parent_sha256")


def build(tmp_path: Path, **settings: Any) -> tuple[Context, list[Path]]:
    photos = write_images(tmp_path / "photos", 8)
    embedder = FakeEmbedder()
    service = Context(load_settings(db=str(tmp_path / "api.db"), workers=2, **settings), embedder=embedder)
    ingest.index(service, str(tmp_path / "photos"), source="product")
    # "red floral dress" means exactly photo 3 to the fake embedder.
    embedder.concepts["red floral dress"] = embedder.embed_images([make_image(3)])[0]
    return service, photos


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[tuple[TestClient, list[Path]]]:
    service, photos = build(tmp_path)
    with TestClient(create_app(service)) as test_client:
        yield test_client, photos


def test_text_search_answers_like_the_cli_json(client: tuple[TestClient, list[Path]]) -> None:
    api, photos = client
    response = api.post("/search", json={"text": "red floral dress", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"took_ms", "hits", "warnings", "query_box"} and body["warnings"] == []
    assert set(body["hits"][0]) == {
        "id",
        "score",
        "item_id",
        "name",
        "source",
        "created_at",
        "uri",
        *CROP_KEYS,
        "category",
        "tags",
    }
    assert body["hits"][0]["item_id"] == "img_0003" and body["hits"][0]["score"] > 0.99


def test_uploaded_image_finds_itself_and_filters_apply(client: tuple[TestClient, list[Path]]) -> None:
    api, photos = client
    files = {"image": ("query.jpg", photos[5].read_bytes(), "image/jpeg")}
    response = api.post("/search", files=files, data={"k": "2", "sources": "product"})
    assert response.status_code == 200, response.text
    assert response.json()["hits"][0]["item_id"] == "img_0005"
    none = api.post("/search", files=files, data={"sources": "avatar"})
    assert none.status_code == 200 and none.json()["hits"] == []
    window = api.post("/search", json={"text": "x", "since": "2001-01-01", "until": "2001-01-02"})
    assert window.json()["hits"] == []


def test_more_like_this_by_id_leaves_the_item_out(client: tuple[TestClient, list[Path]]) -> None:
    api, _ = client
    first = api.post("/search", json={"text": "red floral dress", "k": 1}).json()["hits"][0]
    similar = api.post("/search", json={"id": first["id"], "k": 5}).json()["hits"]
    assert similar and first["id"] not in {hit["id"] for hit in similar}
    assert api.post("/search", json={"id": 42}).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"text": 5}',
        b'{"text": "x", "k": 0}',
        b'{"text": "x", "k": "many"}',
        b'{"id": "abc"}',
        b'{"text": "x", "since": "19/11/2023"}',
        b'{"text": "x", "id": 3}',
        b'{"text": "x", "colour": "red"}',
        b'{"image_url": "file:///etc/passwd"}',
        b'{"text": "x", "sources": "product"}',
        b'{"text": "x", "since": "2023-11-20", "until": "2023-11-01"}',
        b'{"text": "   "}',
    ],
)
def test_malformed_requests_get_a_4xx_with_a_message(
    client: tuple[TestClient, list[Path]], body: bytes
) -> None:
    api, _ = client
    response = api.post("/search", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
    assert response.json()["detail"]


def test_bad_uploads_are_refused_with_a_reason(tmp_path: Path) -> None:
    service, _ = build(tmp_path, max_upload_mb=0.01)
    with TestClient(create_app(service)) as api:
        big = jpeg_bytes(make_image(1, size=(800, 800)), quality=95)
        assert len(big) > 0.01 * 1024 * 1024
        too_big = api.post("/search", files={"image": ("big.jpg", big, "image/jpeg")})
        assert too_big.status_code == 413 and "limit" in too_big.json()["detail"]
        text = api.post("/search", files={"image": ("notes.jpg", b"hello, I am text", "image/jpeg")})
        assert text.status_code == 422 and "not an image" in text.json()["detail"]
        empty = api.post("/search", files={"image": ("empty.jpg", b"", "image/jpeg")})
        assert empty.status_code == 422


def test_items_and_their_images_are_served_only_by_stored_id(client: tuple[TestClient, list[Path]]) -> None:
    api, photos = client
    hit = api.post("/search", json={"text": "red floral dress", "k": 1}).json()["hits"][0]
    item = api.get(f"/items/{hit['id']}").json()
    assert item["width"] == 160 and item["sha256"] and item["uri"] == hit["uri"]
    full = api.get(f"/items/{hit['id']}/image")
    assert full.status_code == 200 and full.content == photos[3].read_bytes()
    assert full.headers["content-type"] == "image/jpeg"
    thumb = api.get(f"/items/{hit['id']}/image", params={"size": 64})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    import io

    from PIL import Image

    assert max(Image.open(io.BytesIO(thumb.content)).size) == 64
    for attempt in (
        "/items/..%2F..%2Fetc%2Fpasswd/image",
        "/items/%2Fetc%2Fpasswd/image",
        "/items/-1/image",
        "/items/12345/image",
        "/items/99999999999999999999999/image",
        f"/items/{hit['id']}abc",
    ):
        assert api.get(attempt).status_code == 404, attempt
    assert api.get("/items/../../etc/passwd").status_code == 404
    assert api.get("/static/../../../etc/passwd").status_code == 404


def test_api_key_guards_every_route_but_health_and_the_pages(tmp_path: Path) -> None:
    service, _ = build(tmp_path, api_key="s3cret")
    with TestClient(create_app(service)) as api:
        assert api.get("/health").status_code == 200
        assert api.get("/").status_code == 200
        assert api.get("/review").status_code == 200  # a page; it asks for the key like the search page
        assert api.get("/static/app.js").status_code == 200
        for method, path in (
            ("GET", "/stats"),
            ("GET", "/metrics"),
            ("POST", "/search"),
            ("GET", "/openapi.json"),
            ("GET", "/flags"),
            ("GET", "/policies"),
            ("GET", "/audit"),
            ("GET", "/banks"),
            ("GET", "/m/lookup"),
            ("POST", "/m/lookup"),
            ("POST", "/h/hash"),
            ("GET", "/review/"),
            ("POST", "/flags/1/review"),
        ):
            assert api.request(method, path).status_code == 401
            assert api.request(method, path, headers={"X-API-Key": "wrong"}).status_code == 401
        ok = api.post("/search", json={"text": "x"}, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200


def test_an_api_key_with_non_ascii_characters_matches_its_utf8_bytes(tmp_path: Path) -> None:
    service, _ = build(tmp_path, api_key="clé-ü")
    with TestClient(create_app(service)) as api:
        assert api.get("/stats", headers={"X-API-Key": "clé-ü".encode()}).status_code == 200
        assert api.get("/stats", headers={"X-API-Key": "clé-u".encode()}).status_code == 401
        assert api.get("/stats", headers={"X-API-Key": b"cl\xc3"}).status_code == 401


class _Redirector(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "web"
    write_images(folder, 2)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_image_url_on_loopback_is_refused_unless_allowed(tmp_path: Path, served: str) -> None:
    service, _ = build(tmp_path)
    with TestClient(create_app(service)) as api:
        refused = api.post("/search", json={"image_url": f"{served}/img_0001.jpg"})
        assert refused.status_code == 422 and "non-public address" in refused.json()["detail"]
    service.settings.allow_private_urls = True
    with TestClient(create_app(service)) as api:
        allowed = api.post("/search", json={"image_url": f"{served}/img_0001.jpg", "k": 1})
        assert allowed.status_code == 200 and allowed.json()["hits"][0]["item_id"] == "img_0001"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
    ],
)
def test_non_public_addresses_are_refused(host: str) -> None:
    from lookalike.errors import ImageError

    # link-local and metadata addresses have their own, sharper refusal
    with pytest.raises(ImageError, match="non-public|link-local"):
        fetch_module.check_public_host(host, 80)


def test_a_redirect_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.errors import ImageError

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    real_check = fetch_module.check_public_host
    # Pretend the first hop is public; the redirect target must still be checked for real.
    monkeypatch.setattr(
        fetch_module, "check_public_host", lambda host, p: "127.0.0.1" if p == port else real_check(host, p)
    )
    try:
        with pytest.raises(ImageError, match="non-public address"):
            fetch_module.fetch_public_url(f"http://127.0.0.1:{port}/a.jpg", max_bytes=10_000, timeout_s=5)
    finally:
        server.shutdown()


def wait_for(api: TestClient, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_index_jobs_take_uploads_and_paths_and_report_skips(tmp_path: Path) -> None:
    service, _ = build(tmp_path, index_roots=str(tmp_path / "new"))
    with TestClient(create_app(service)) as api:
        _uploads_and_paths_are_indexed(api, tmp_path)


def _uploads_and_paths_are_indexed(api: TestClient, tmp_path: Path) -> None:
    new = write_images(tmp_path / "new", 3, start=50)
    files = [
        ("files", ("a.jpg", new[0].read_bytes(), "image/jpeg")),
        ("files", ("broken.jpg", b"\xff\xd8 nope", "image/jpeg")),
    ]
    started = api.post("/index", files=files, data={"source": "upload"})
    assert started.status_code == 202
    job = wait_for(api, started.json()["job_id"])
    assert job["status"] == "done" and job["indexed"] == 1
    assert [s["uri"] for s in job["skipped"]] == ["broken.jpg"] and "not an image" in job["skipped"][0][
        "reason"
    ]
    (tmp_path / "new" / "bad.png").write_bytes(b"")
    by_path = api.post("/index", json={"inputs": [str(tmp_path / "new")], "source": "folder"})
    job = wait_for(api, by_path.json()["job_id"])
    assert (job["status"], job["total"], job["done"], job["indexed"]) == ("done", 4, 4, 3)
    assert [Path(s["uri"]).name for s in job["skipped"]] == ["bad.png"]
    assert api.post("/index", json={"inputs": [str(tmp_path / "new" / "missing")]}).status_code == 400
    assert api.post("/index", json={"inputs": [str(tmp_path / "missing")]}).status_code == 403
    assert api.post("/index", json={"inputs": []}).status_code == 422
    assert api.get("/jobs/nope").status_code == 404
    stats = api.get("/stats").json()
    assert stats["rows"] == 8 + 1 + 3 and stats["sources"]["upload"] == 1


def test_metrics_and_openapi(client: tuple[TestClient, list[Path]]) -> None:
    api, _ = client
    api.post("/search", json={"text": "x"})
    api.post("/search", content=b"nope", headers={"content-type": "application/json"})
    text = api.get("/metrics").text
    assert 'lookalike_http_requests_total{method="POST",route="/search",status="200"} 1.0' in text
    assert 'lookalike_http_requests_total{method="POST",route="/search",status="400"} 1.0' in text
    assert "lookalike_http_request_duration_seconds_bucket" in text
    spec = api.get("/openapi.json").json()
    assert {
        "/search",
        "/items/{item_id}",
        "/items/{item_id}/image",
        "/index",
        "/jobs/{job_id}",
        "/stats",
    } <= set(spec["paths"])
    assert api.get("/docs").status_code == 200
    page = api.get("/")
    assert (
        page.status_code == 200
        and "/static/app.js" in page.text
        and "http" not in page.text.split("<body>")[1].split("lookalike")[0]
    )
    assert np.isfinite(api.post("/search", json={"text": "x"}).json()["took_ms"])


def test_delete_removes_an_item_from_every_read_at_once(client: tuple[TestClient, list[Path]]) -> None:
    api, photos = client
    hit = api.post("/search", json={"text": "red floral dress", "k": 1}).json()["hits"][0]
    assert api.delete(f"/items/{hit['id']}").json() == {"deleted": 1, "id": hit["id"], "purged": False}
    assert api.get(f"/items/{hit['id']}").status_code == 404
    assert hit["id"] not in [
        h["id"] for h in api.post("/search", json={"text": "red floral dress", "k": 8}).json()["hits"]
    ]
    assert api.get("/stats").json()["rows"] == 7
    assert api.delete(f"/items/{hit['id']}").status_code == 404
    for bad in ("abc", "-1", "²", str(2**63), "1.5"):
        assert api.delete(f"/items/{bad}").status_code == 404
    other = api.post("/search", json={"text": "red floral dress", "k": 1}).json()["hits"][0]
    assert api.delete(f"/items/{other['id']}?purge=true").json()["purged"] is True
    assert api.get("/stats").json()["rows"] == 6


def test_docs_are_served_from_the_apps_own_files(client: tuple[TestClient, list[Path]]) -> None:
    api, _ = client
    docs = api.get("/docs").text
    assert "cdn" not in docs.lower() and "/static/docs/swagger-ui-bundle.js" in docs
    bundle = api.get("/static/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert api.get("/static/docs/swagger-ui.css").status_code == 200
    redoc = api.get("/redoc").text
    assert "cdn" not in redoc.lower() and api.get("/static/docs/redoc.standalone.js").status_code == 200


def test_search_pages_cuts_and_finds_catalog_items(client: tuple[TestClient, list[Path]]) -> None:
    api, _ = client
    every = api.post("/search", json={"text": "red floral dress", "k": 8}).json()["hits"]
    page = api.post("/search", json={"text": "red floral dress", "k": 3, "offset": 3}).json()["hits"]
    assert [h["id"] for h in page] == [h["id"] for h in every[3:6]]
    cut = (every[1]["score"] + every[2]["score"]) / 2
    above = api.post("/search", json={"text": "red floral dress", "k": 8, "min_score": cut}).json()["hits"]
    assert [h["id"] for h in above] == [h["id"] for h in every[:2]]
    like = api.post("/search", json={"item_id": "img_0003", "k": 8}).json()["hits"]
    assert len(like) == 7 and "img_0003" not in {h["item_id"] for h in like}
    missing = api.post("/search", json={"item_id": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_api_messages_name_api_fields_not_cli_flags(client: tuple[TestClient, list[Path]]) -> None:
    api, _ = client
    for body in ({"text": "   "}, {"text": "x", "since": "2023-11-20", "until": "2023-11-01"}):
        detail = json.dumps(api.post("/search", json=body).json()["detail"])
        assert "--" not in detail, detail
    empty_source = api.post("/search", json={"text": "x", "sources": [" "]}).json()["detail"]
    assert "sources" in json.dumps(empty_source) and "--" not in json.dumps(empty_source)


def test_purging_an_uploaded_item_erases_the_kept_upload_too(tmp_path: Path) -> None:
    service, _ = build(tmp_path)
    picture = jpeg_bytes(make_image(77))
    with TestClient(create_app(service)) as api:
        job = wait_for(
            api, api.post("/index", files=[("files", ("p.jpg", picture, "image/jpeg"))]).json()["job_id"]
        )
        assert job["indexed"] == 1
        kept = [p for p in Path(service.settings.uploads_path()).rglob("*") if p.is_file()]
        assert [p.read_bytes() for p in kept] == [picture]
        hit = api.post("/search", files={"image": ("q.jpg", picture, "image/jpeg")}, data={"k": "1"}).json()[
            "hits"
        ][0]
        assert api.delete(f"/items/{hit['id']}?purge=true").json()["purged"] is True
        assert not [p for p in Path(service.settings.uploads_path()).rglob("*") if p.is_file()]
        assert api.get("/stats").json()["rows"] == 8
