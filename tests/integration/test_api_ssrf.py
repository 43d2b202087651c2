"""Every route that fetches, attacked through a hostile host on 127.0.0.1 (tests/hostile.py): no SSRF
attempt gets through, slow and endless downloads are cut off, and an item's image is what was
indexed, never fetched again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.usecases import Context, ingest
from tests.helpers import FakeEmbedder, write_images
from tests.hostile import ORIGINAL, FakeNet, Hostile, hostile_server


@pytest.fixture()
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Hostile, FakeNet]]:
    with hostile_server() as server:
        net = FakeNet(server)
        net.install(monkeypatch)
        yield server, net


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[TestClient]:
    write_images(tmp_path / "photos", 3)
    settings = load_settings(
        db=str(tmp_path / "ssrf.db"),
        workers=2,
        fetch_timeout_s=1.5,
        max_download_mb=0.5,
        index_roots=str(tmp_path / "roots"),
    )
    service = Context(settings, embedder=FakeEmbedder())
    ingest.index(service, str(tmp_path / "photos"))
    with TestClient(create_app(service)) as client:
        yield client


def attempts(port: int) -> list[str]:
    """URLs that must never reach an internal address: spellings of loopback and private ranges,
    names resolving inward, and public hops that redirect inward."""
    direct = [
        f"http://{host}:{port}/secret"
        for host in (
            "127.0.0.1", "localhost", "127.1", "0x7f000001", "2130706433", "017700000001", "0.0.0.0",
            "[::1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]",
            "[64:ff9b::7f00:1]", "[2002:7f00:1::1]", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
            "100.64.0.1", "[fe80::1]", "[fc00::1]", "[fd12::1]", "[fec0::1]", "224.0.0.1", "255.255.255.255",
            "evil.example",
        )
    ]  # fmt: skip
    redirects = [
        f"http://public.example:{port}{path}"
        for path in (
            "/to-loopback", "/to-localhost", "/to-metadata", "/to-mapped", "/to-compatible", "/to-decimal",
            "/to-evil", "/to-file", "/to-gopher", "/loop",
        )
    ]  # fmt: skip
    return direct + redirects


def wait_for(api: TestClient, job_id: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {seconds} s")


def _never_reached_inside(server: Hostile, net: FakeNet) -> None:
    assert "/secret" not in server.hits
    assert set(net.connected) <= {"93.184.216.34"}, net.connected  # only the checked public address


def test_search_by_image_url_refuses_every_attempt(api: TestClient, hostile: tuple[Hostile, FakeNet]) -> None:
    server, net = hostile
    urls = attempts(server.port)
    refused = 0
    for url in urls:
        response = api.post("/search", json={"image_url": url})
        assert response.status_code == 422, (url, response.status_code, response.text)
        refused += 1
    for url in urls:  # the multipart form takes the same field through the same policy
        response = api.post("/search", files={"x": ("x", b"")}, data={"image_url": url})
        assert response.status_code == 422, (url, response.text)
        refused += 1
    _never_reached_inside(server, net)
    print(f"POST /search image_url (JSON and form): {refused}/{2 * len(urls)} refused")
    assert (
        api.post("/search", json={"image_url": f"http://public.example:{server.port}/img.jpg"}).status_code
        == 200
    )


def test_index_refuses_every_attempt_as_a_skipped_url(
    api: TestClient, hostile: tuple[Hostile, FakeNet], tmp_path: Path
) -> None:
    server, net = hostile
    urls = attempts(server.port)
    started = api.post("/index", json={"inputs": urls, "source": "web"})
    assert started.status_code == 202, started.text
    job = wait_for(api, started.json()["job_id"])
    assert job["status"] == "done" and job["indexed"] == 0
    assert sorted(s["uri"] for s in job["skipped"]) == sorted(urls)
    for skipped in job["skipped"]:
        assert any(
            words in skipped["reason"]
            for words in ("non-public", "metadata", "only http(s)", "too many redirects")
        ), skipped
    # The same through a catalog under an allowed folder.
    roots = tmp_path / "roots"
    roots.mkdir()
    (roots / "catalog.csv").write_text("image,item_id\n" + "".join(f"{u},{i}\n" for i, u in enumerate(urls)))
    started = api.post("/index", json={"inputs": [str(roots / "catalog.csv")]})
    job = wait_for(api, started.json()["job_id"])
    assert job["status"] == "done" and job["indexed"] == 0 and len(job["skipped"]) == len(urls)
    # Schemes other than http(s) are refused before a job starts.
    for url in ("file:///etc/passwd", f"gopher://127.0.0.1:{server.port}/_x", "ftp://127.0.0.1/x.jpg"):
        assert api.post("/index", json={"inputs": [url]}).status_code == 422
    _never_reached_inside(server, net)
    print(f"POST /index URLs (JSON and catalog): {2 * len(urls)}/{2 * len(urls)} refused, 3 schemes refused")


def test_an_item_image_is_what_was_indexed_even_after_the_host_turns_hostile(
    api: TestClient, hostile: tuple[Hostile, FakeNet]
) -> None:
    server, net = hostile
    url = f"http://public.example:{server.port}/switch.jpg"
    job = wait_for(api, api.post("/index", json={"inputs": [url], "source": "web"}).json()["job_id"])
    assert job["indexed"] == 1, job
    (hit,) = api.post("/search", json={"text": "x", "sources": ["web"], "k": 5}).json()["hits"]
    fetches = server.hits.count("/switch.jpg")
    server.switched = True  # from now on the URL redirects to the internal service
    for params in ({}, {"size": 64}):
        image = api.get(f"/items/{hit['id']}/image", params=params)
        assert image.status_code == 200
    assert api.get(f"/items/{hit['id']}/image").content == ORIGINAL
    assert server.hits.count("/switch.jpg") == fetches  # served from what was kept, never fetched again
    _never_reached_inside(server, net)


def test_the_connection_goes_to_the_address_that_was_checked(
    api: TestClient, hostile: tuple[Hostile, FakeNet]
) -> None:
    server, net = hostile
    # rebind.example answers a public address to the check, and loopback to any later lookup.
    response = api.post("/search", json={"image_url": f"http://rebind.example:{server.port}/img.jpg"})
    assert response.status_code == 200, response.text
    assert net.connected == ["93.184.216.34"]  # the checked address, not a second lookup's loopback


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/drip", "took longer"),
        ("/drip-headers", "took longer"),
        ("/endless", "too large"),
        ("/huge-length", "too large"),
    ],
)
def test_slow_and_endless_downloads_are_cut_off(
    api: TestClient, hostile: tuple[Hostile, FakeNet], path: str, reason: str
) -> None:
    server, _ = hostile
    url = f"http://public.example:{server.port}{path}"
    started = time.monotonic()
    response = api.post("/search", json={"image_url": url})
    assert response.status_code == 422 and reason in response.json()["detail"], response.text
    assert time.monotonic() - started < 5  # the deadline is 1.5 s for the whole download
    job = wait_for(api, api.post("/index", json={"inputs": [url]}).json()["job_id"], seconds=20)
    assert job["status"] == "done" and reason in job["skipped"][0]["reason"]


def test_a_last_modified_in_year_9999_does_not_date_the_item(
    api: TestClient, hostile: tuple[Hostile, FakeNet]
) -> None:
    server, _ = hostile
    url = f"http://public.example:{server.port}/future.jpg"
    before = int(time.time())
    job = wait_for(api, api.post("/index", json={"inputs": [url]}).json()["job_id"])
    assert job["indexed"] == 1, job
    hits = api.post("/search", json={"text": "x", "k": 20}).json()["hits"]
    (item,) = [hit for hit in hits if hit["uri"] == url]
    assert before <= item["created_at"] <= time.time() + 5  # the time of indexing, not year 9999
    stats = api.get("/stats")
    assert stats.status_code == 200 and not any(
        p["name"].startswith("m9999") for p in stats.json()["partitions"]
    )
