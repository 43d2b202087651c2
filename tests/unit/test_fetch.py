from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.errors import ImageError
from lookalike.ingest.policy import fetch
from lookalike.usecases import ingest
from tests.helpers import write_images
from tests.unit.test_service import make_service


def test_loopback_urls_are_refused_by_default(http_folder: tuple[str, Path]) -> None:
    base, _ = http_folder
    with pytest.raises(ImageError, match="non-public address"):
        fetch(f"{base}/img_0001.jpg", max_bytes=10_000_000, timeout_s=5)


@pytest.fixture()
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a folder of images."""
    folder = tmp_path / "served"
    write_images(folder, 3)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()


def test_url_bytes_and_last_modified_are_fetched(http_folder: tuple[str, Path]) -> None:
    base, folder = http_folder
    fetched = fetch(f"{base}/img_0001.jpg", max_bytes=10_000_000, timeout_s=5, allow_private=True)
    assert fetched.data == (folder / "img_0001.jpg").read_bytes()
    assert fetched.modified_at is not None


def test_url_errors_and_size_cap_are_reasons(http_folder: tuple[str, Path]) -> None:
    base, _ = http_folder
    with pytest.raises(ImageError, match="HTTP 404"):
        fetch(f"{base}/missing.jpg", max_bytes=10_000_000, timeout_s=5, allow_private=True)
    with pytest.raises(ImageError, match="too large"):
        fetch(f"{base}/img_0001.jpg", max_bytes=100, timeout_s=5, allow_private=True)


def test_local_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    (path,) = write_images(tmp_path, 1)
    with pytest.raises(ImageError, match="too large"):
        fetch(str(path), max_bytes=100, timeout_s=5)


def test_catalog_of_urls_is_indexed_and_a_dead_link_reported(
    tmp_path: Path, http_folder: tuple[str, Path]
) -> None:
    base, _ = http_folder
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "image,item_id,name,source,created_at\n"
        f"{base}/img_0000.jpg,A,first,web,2023-11-19\n"
        f"{base}/img_0002.jpg,B,second,web,\n"
        f"{base}/gone.jpg,C,gone,web,2023-11-19\n",
        encoding="utf-8",
    )
    service = make_service(tmp_path)
    service.settings.allow_private_urls = True  # the test's server is on loopback
    report = ingest.index(service, str(catalog))
    assert report.indexed == 2
    assert [(s.uri.rsplit("/", 1)[-1], s.reason) for s in report.skipped] == [
        ("gone.jpg", "HTTP 404 File not found")
    ]
