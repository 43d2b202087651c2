"""Requests shaped to break the API: server paths outside the allowed folders, malformed values,
bodies too large or too deep, sources with commas. Each is a 4xx with a message, never a 500;
a 500 that still happens is logged with its traceback."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.usecases import Context, ingest
from tests.helpers import FakeEmbedder, jpeg_bytes, make_image, write_images


def make(tmp_path: Path, **settings: Any) -> Context:
    write_images(tmp_path / "photos", 4)
    service = Context(
        load_settings(db=str(tmp_path / "safety.db"), workers=2, **settings), embedder=FakeEmbedder()
    )
    ingest.index(service, str(tmp_path / "photos"), source="product")
    return service


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make(tmp_path, index_roots=str(tmp_path / "roots")))) as client:
        yield client


def wait_for(api: TestClient, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_without_index_roots_no_server_path_is_read_and_none_is_hinted(tmp_path: Path) -> None:
    with TestClient(create_app(make(tmp_path))) as api:
        answers = [
            api.post("/index", json={"inputs": [path]})
            for path in (
                str(tmp_path / "photos"),
                str(tmp_path / "missing"),
                "/proc/self/environ",
                "/dev/urandom",
                "/",
            )
        ]
        assert {a.status_code for a in answers} == {403}
        assert len({a.json()["detail"] for a in answers}) == 1  # the same words, existing or not
        assert "upload" in answers[0].json()["detail"]


def test_under_index_roots_links_and_catalog_rows_leading_out_are_skipped(
    api: TestClient, tmp_path: Path
) -> None:
    roots = tmp_path / "roots"
    outside = tmp_path / "outside"
    write_images(roots, 2, start=20)
    write_images(outside, 1, start=30)
    os.symlink(outside / "img_0030.jpg", roots / "link-out.jpg")
    os.symlink("/etc/passwd", roots / "passwd.jpg")
    os.mkfifo(roots / "fifo.jpg")
    (roots / "catalog.csv").write_text(
        "image,item_id\nimg_0020.jpg,in\n../outside/img_0030.jpg,out\n/etc/passwd,etc\n/dev/urandom,dev\n"
    )
    for path in (str(outside), str(outside / "img_0030.jpg"), str(roots / ".." / "outside"), "/etc/passwd"):
        assert api.post("/index", json={"inputs": [path]}).status_code == 403, path
    assert api.post("/index", json={"inputs": [str(roots / "missing.jpg")]}).status_code == 400
    job = wait_for(api, api.post("/index", json={"inputs": [str(roots)], "source": "roots"}).json()["job_id"])
    assert job["status"] == "done" and job["indexed"] == 2, job
    reasons = {Path(s["uri"]).name: s["reason"] for s in job["skipped"]}
    assert "not under a folder" in reasons["link-out.jpg"] and "not under a folder" in reasons["passwd.jpg"]
    assert "FIFO" in reasons["fifo.jpg"]
    job = wait_for(api, api.post("/index", json={"inputs": [str(roots / "catalog.csv")]}).json()["job_id"])
    assert job["status"] == "done" and job["already_indexed"] + job["indexed"] == 1, job
    assert len(job["skipped"]) == 3 and all("not under a folder" in s["reason"] for s in job["skipped"])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/items/%C2%B2", None),
        ("GET", "/items/%C2%B2/image", None),
        ("GET", "/items/9223372036854775808", None),
        ("GET", "/items/99999999999999999999999999999999999999/image", None),
        ("GET", "/items/%00", None),
        ("GET", "/jobs/%C2%B2", None),
        ("POST", "/jobs/nope/cancel", None),
        ("POST", "/search", {"id": 2**63}),
        ("POST", "/search", {"id": -1}),
        ("POST", "/search", {"id": 10**40}),
        ("POST", "/search", {"text": "x", "k": 2**63}),
        ("POST", "/search", {"text": "x", "since": "0000-01-01"}),
        ("POST", "/search", {"text": "x", "since": "10000-01-01"}),
        ("POST", "/search", {"text": "x", "sources": [[["x"]]]}),
        ("POST", "/search", b'{"text": "\\udcff"}'),  # a lone surrogate, escaped in JSON
        ("POST", "/index", b'{"inputs": ["\\ud800.jpg"]}'),
        ("POST", "/search", b'{"text": "x", "sources": ["\\udfff"]}'),
        ("POST", "/search", b'{"text": "x", "sources": ["\\ud83d"]}'),
        ("POST", "/search", {"image_url": "http://[::1"}),
        ("POST", "/search", {"image_url": "http://example.com:99999/x.jpg"}),
        ("POST", "/search", {"image_url": "http://a b/x.jpg"}),
        ("POST", "/search", {"text": "x", "box": "1,2,3"}),
        ("POST", "/index", {"inputs": ["x" * 5000]}),
        ("POST", "/index", {"inputs": ["\x00"]}),
        ("POST", "/scan", {"labels": "[labels.x]\nprompts = 'not a list'"}),
        ("POST", "/scan", {"labels": "x" * 10}),
        ("POST", "/duplicates", {"threshold": "nan"}),
        ("DELETE", "/partitions?before=99999-01-01", None),
    ],
)
def test_malformed_values_are_a_4xx_with_a_message(
    api: TestClient, method: str, path: str, body: Any
) -> None:
    if isinstance(body, bytes):
        response = api.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        response = api.request(method, path, json=body) if body is not None else api.request(method, path)
    assert 400 <= response.status_code < 500, (path, body, response.status_code, response.text)
    assert response.json()["detail"]


def test_the_widest_date_window_is_answered(api: TestClient) -> None:
    response = api.post("/search", json={"text": "x", "since": "0001-01-01", "until": "9999-12-31", "k": 10})
    assert response.status_code == 200, response.text
    assert len(response.json()["hits"]) == 4


@pytest.mark.parametrize("depth", [1000, 100_000])
@pytest.mark.parametrize("path", ["/search", "/index", "/scan", "/duplicates"])
def test_deeply_nested_json_is_a_4xx(api: TestClient, path: str, depth: int) -> None:
    body = '{"text": ' + "[" * depth + "]" * depth + "}"
    response = api.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, (path, depth, response.status_code)


def _send_chunked(base: str, path: str, chunks: int) -> tuple[bytes, int]:
    """POST a chunked body over a raw socket, a chunk at a time, until the server answers.

    Returns (the answer, how many 64 KB chunks had been sent when it came).
    """
    import select
    import socket

    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
        sent = 0
        while sent < chunks and not select.select([conn], [], [], 0)[0]:
            try:
                conn.sendall(chunk)
            except OSError:  # closed by the server after its answer
                break
            sent += 1
        answer = b""
        while b"}" not in answer:  # the JSON body may come after the headers
            part = conn.recv(65536)
            if not part:
                break
            answer += part
        return answer, sent


def test_a_chunked_body_is_capped_while_it_streams(tmp_path: Path) -> None:
    from tests.serving import serving

    with serving(create_app(make(tmp_path, max_upload_mb=0.05))) as base:
        for path in ("/search", "/index"):
            answer, sent = _send_chunked(base, path, chunks=1600)  # 100 MB if nobody stopped it
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert b"limit" in answer
            assert sent < 200, sent  # answered after the cap (0.05 MB), long before 100 MB


def test_a_source_with_a_comma_is_one_source(tmp_path: Path) -> None:
    with TestClient(create_app(make(tmp_path))) as api:
        files = [("files", ("a.jpg", jpeg_bytes(make_image(40)), "image/jpeg"))]
        job = wait_for(api, api.post("/index", files=files, data={"source": "acme, inc"}).json()["job_id"])
        assert job["indexed"] == 1, job
        query = {"image": ("q.jpg", jpeg_bytes(make_image(40)), "image/jpeg")}
        form = api.post("/search", files=query, data={"sources": "acme, inc"}).json()
        assert [hit["source"] for hit in form["hits"]] == ["acme, inc"]
        both = api.post("/search", files=query, data={"sources": ["acme, inc", "product"], "k": "10"}).json()
        assert {hit["source"] for hit in both["hits"]} == {"acme, inc", "product"}
        split = api.post("/search", files=query, data={"sources": "acme"}).json()
        assert split["hits"] == []


def test_an_unexpected_error_is_a_500_logged_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.usecases import items
    from tests.helpers import captured_logs

    service = make(tmp_path)

    def broken(ctx: object) -> None:
        raise RuntimeError("the store fell over")

    monkeypatch.setattr(items, "stats", broken)
    with TestClient(create_app(service), raise_server_exceptions=False) as api:
        with captured_logs("lookalike") as records:
            response = api.get("/stats")
        assert response.status_code == 500 and response.json() == {"detail": "internal error"}
    (record,) = [r for r in records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and "the store fell over" in str(record.exc_info[1])


def test_serve_logs_lookalike_errors_at_its_default_level() -> None:
    from lookalike.cli.common import setup_logging
    from lookalike.cli.serve import server_logging

    setup_logging(verbose=False)  # the root logger at CRITICAL: libraries stay quiet
    server_logging(verbose=False)
    assert not logging.getLogger("pymilvus").isEnabledFor(logging.ERROR)
    assert logging.getLogger("lookalike.api.app").isEnabledFor(logging.ERROR)
    assert logging.getLogger("lookalike.api.jobs").isEnabledFor(logging.ERROR)
