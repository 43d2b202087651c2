"""A live server on loopback: the page in headless Chromium, and a small load test."""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn

from lookalike.api import create_app
from lookalike.usecases import Context
from tests.integration.test_api import build
from tests.integration.test_detect_api import build_with_crops

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(os.environ.get("LOOKALIKE_TEST_SHOTS", "out/screenshots"))
LOADED = (
    "Array.from(document.images).every(i => !i.getAttribute('src') || (i.complete && i.naturalWidth > 0))"
)
"""Every picture with a source has loaded (the closed detail view's holds none)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    yield from serve(*build(tmp_path))


@pytest.fixture()
def live_crops(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    yield from serve(*build_with_crops(tmp_path))


def serve(service: Context, photos: list[Path]) -> Iterator[tuple[str, list[Path]]]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", photos
    server.should_exit = True
    thread.join(timeout=10)


def test_twenty_clients_searching_get_no_errors(live: tuple[str, list[Path]]) -> None:
    url, photos = live
    queries = [{"text": "red floral dress", "k": 10}, {"text": "blue shoe", "k": 10, "sources": ["product"]}]

    def client(number: int) -> list[float]:
        latencies = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in range(200):
                started = time.perf_counter()
                response = http.post("/search", json=queries[(number + i) % len(queries)])
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
                assert response.json()["hits"]
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        latencies = sorted(ms for result in pool.map(client, range(20)) for ms in result)
    seconds = time.perf_counter() - started
    assert len(latencies) == 4000
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"\nload: 20 clients x 200 searches, 0 errors, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {4000 / seconds:.0f} req/s"
    )


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)"
)
def test_the_page_searches_by_text_by_upload_and_more_like_this(live: tuple[str, list[Path]]) -> None:
    from playwright.sync_api import sync_playwright

    url, photos = live
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url + "/")
        page.fill("#text", "red floral dress")
        page.press("#text", "Enter")
        page.wait_for_selector(".card")
        assert page.inner_text(".card .name") == "img_0003"
        assert "results for" in page.inner_text("#status") and "ms" in page.inner_text("#status")
        page.wait_for_function(LOADED)
        page.screenshot(path=str(SHOTS / "text-search.png"))

        page.set_input_files("#file", str(photos[6]))
        page.wait_for_function(
            "document.querySelector('#status').textContent.includes('your image')"
            " && document.querySelector('#status').textContent.includes('results')"
        )
        assert page.inner_text(".card .name") == "img_0006"
        page.screenshot(path=str(SHOTS / "image-search.png"))

        page.click(".card >> nth=0")  # the details, then "More like this"
        page.wait_for_selector("#detail[open]")
        page.click("#detail-more")
        page.wait_for_function(
            "document.querySelector('#status').textContent.startsWith('') &&"
            " document.querySelector('#status').textContent.includes('more like')"
            " && document.querySelector('#status').textContent.includes('results')"
        )
        names = page.locator(".card .name").all_inner_texts()
        assert names and "img_0006" not in names  # the item itself is left out of "more like this"
        assert page.is_hidden("#more")  # 7 hits, fewer than a page: nothing more to ask for
        page.screenshot(path=str(SHOTS / "more-like-this.png"))

        # The API docs render from the app's own files: nothing here can reach a CDN.
        page.goto(url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "lookalike" in page.inner_text(".swagger-ui .info .title")
        browser.close()


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)"
)
def test_the_gallery_draws_the_box_of_a_detected_crop(live_crops: tuple[str, list[Path]]) -> None:
    from playwright.sync_api import sync_playwright

    url, _ = live_crops
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url + "/")
        page.fill("#text", "red handbag")
        page.press("#text", "Enter")
        page.wait_for_selector(".card.crop .box[data-placed='true']")
        first = page.locator(".card >> nth=0")
        assert "handbag" in first.locator(".rank").inner_text()
        # The handbag box (60,10)-(160,110) of a 160x120 picture, over the picture as drawn.
        geometry = page.evaluate(
            """() => {
                const card = document.querySelector('.card');
                const img = card.querySelector('img').getBoundingClientRect();
                const thumb = card.querySelector('.thumb').getBoundingClientRect();
                const box = card.querySelector('.box').getBoundingClientRect();
                const scale = Math.min(thumb.width / 160, thumb.height / 120);
                const top = thumb.top + (thumb.height - 120 * scale) / 2;
                return {left: (box.left - thumb.left) / scale, top: (box.top - top) / scale,
                        width: box.width / scale, height: box.height / scale};
            }"""
        )
        assert abs(geometry["left"] - 60) < 2 and abs(geometry["top"] - 10) < 2
        assert abs(geometry["width"] - 100) < 2 and abs(geometry["height"] - 100) < 2
        whole = page.locator(".card:not(.crop)")
        assert whole.count() > 0 and whole.first.locator(".box").count() == 0
        page.wait_for_function(LOADED)
        page.screenshot(path=str(SHOTS / "detected-crops.png"))
        browser.close()


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)"
)
def test_the_page_filters_by_category_and_tag(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from lookalike.config import load_settings
    from lookalike.usecases import ingest
    from tests.helpers import FakeEmbedder
    from tests.integration.test_category_tags import ROWS, write_catalog

    service = Context(load_settings(db=str(tmp_path / "web.db"), workers=2), embedder=FakeEmbedder())
    ingest.index(service, str(write_catalog(tmp_path / "cat", ROWS)))
    for url, _ in serve(service, []):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready='true']")  # the pickers hold the collection's values
            page.click("#picker-categories summary")
            page.check("#picker-categories input[value='shoes']")
            page.check("#picker-categories input[value='bags']")
            page.click("#picker-tags summary")
            page.check("#picker-tags input[value='red']")
            page.fill("#text", "anything")
            page.press("#text", "Enter")
            page.wait_for_function("document.querySelector('#status').textContent.includes('results')")
            assert sorted(page.locator(".card .name").all_inner_texts()) == ["name SKU1", "name SKU3"]
            assert "shoes" in page.inner_text(".card >> nth=0") or "bags" in page.inner_text(".card >> nth=0")

            page.uncheck("#picker-categories input[value='shoes']")
            page.uncheck("#picker-categories input[value='bags']")
            page.uncheck("#picker-tags input[value='red']")
            page.check("#picker-tags input[value='blue']")
            page.set_input_files(
                "#file", str(tmp_path / "cat" / "a.jpg")
            )  # an upload sends them as form fields
            page.wait_for_function(
                "document.querySelector('#status').textContent.includes('your image')"
                " && document.querySelector('#status').textContent.includes('results')"
            )
            assert page.locator(".card .name").all_inner_texts() == ["name SKU2"]
            browser.close()
