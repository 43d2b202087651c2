"""The job queue and the download pool through the HTTP API: a stuck job does not block later jobs,
a cancel route, and slow downloads cannot starve searches."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.usecases import Context, ingest
from tests.helpers import FakeEmbedder, jpeg_bytes, make_image, write_images
from tests.hostile import hostile_server
from tests.serving import serving


def make(tmp_path: Path, **settings: Any) -> Context:
    write_images(tmp_path / "photos", 4)
    service = Context(
        load_settings(db=str(tmp_path / "jobs.db"), workers=2, **settings), embedder=FakeEmbedder()
    )
    ingest.index(service, str(tmp_path / "photos"), source="product")
    return service


def status(api: TestClient, job_id: str, until: tuple[str, ...], seconds: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not {until} after {seconds} s: {job}")


def upload(api: TestClient, seed: int) -> str:
    files = [("files", (f"{seed}.jpg", jpeg_bytes(make_image(seed)), "image/jpeg"))]
    response = api.post("/index", files=files, data={"source": "upload"})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_a_stuck_job_does_not_block_the_queue_and_can_be_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make(tmp_path, job_time_limit_s=1.0)
    release = threading.Event()
    real = ingest.index_inputs
    calls = [0]

    def sometimes_stuck(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] in (1, 3):  # the first and third jobs hang (think: a read that never returns)
            release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "index_inputs", sometimes_stuck)
    try:
        with TestClient(create_app(service)) as api:
            stuck = upload(api, 50)
            after = upload(api, 51)
            assert status(api, after, ("done",))["indexed"] == 1  # ran once the stuck one hit its limit
            assert "time limit" in status(api, stuck, ("failed",))["error"]
            hanging = upload(api, 52)
            status(api, hanging, ("running",))
            cancelled = api.post(f"/jobs/{hanging}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
            assert status(api, upload(api, 53), ("done",), seconds=5)["indexed"] == 1
            assert api.post("/jobs/unknown/cancel").status_code == 404
    finally:
        release.set()


def test_slow_downloads_do_not_starve_searches(tmp_path: Path) -> None:
    import httpx

    service = make(tmp_path, allow_private_urls=True, fetch_timeout_s=4, fetch_concurrency=2)
    with hostile_server() as hostile, serving(create_app(service)) as base:
        drip = f"http://127.0.0.1:{hostile.port}/drip"
        answers: list[int] = []

        def slow_search() -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                answers.append(client.post("/search", json={"image_url": drip}).status_code)

        slow = [threading.Thread(target=slow_search, daemon=True) for _ in range(45)]
        for thread in slow:
            thread.start()
        time.sleep(1.0)  # the downloads are under way, dripping a byte every 0.25 s
        with httpx.Client(base_url=base, timeout=30) as client:
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                response = client.post("/search", json={"text": "x", "k": 3})
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200
        assert max(timings) < 2.0, timings  # was 23 s when slow downloads held the search threads
        assert answers.count(503) >= 30  # beyond the pool and its queue, told to retry at once
        hostile.shutdown()  # end the drips
