"""The record `lookalike serve` keeps beside a Milvus Lite database: written durably, withdrawn by its
writer only, and live only while its process runs and its address answers /health."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lookalike.remote.record import announce, live, read, record_path, withdraw


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def answering() -> Iterator[str]:
    """A loopback address that answers GET /health as lookalike serve does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def another_process() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def write(path: Path, url: str, pid: int, collection: str = "images") -> None:
    path.write_text(json.dumps({"url": url, "pid": pid, "collection": collection}), encoding="utf-8")


def test_the_record_lies_beside_a_lite_database_and_a_server_uri_has_none(tmp_path: Path) -> None:
    assert record_path(str(tmp_path / "shop.db")) == tmp_path / "shop.db.serve.json"
    assert record_path("http://milvus:19530") is None
    assert announce("http://milvus:19530", "images", "http://127.0.0.1:8000") is None


def test_announce_writes_this_process_and_withdraw_removes_only_its_own_record(tmp_path: Path) -> None:
    db = str(tmp_path / "shop.db")
    path = announce(db, "images", "http://127.0.0.1:8000")
    assert path is not None and read(path) is not None
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed
    withdraw(path)
    assert not path.exists()

    path = announce(db, "images", "http://127.0.0.1:8000")
    assert path is not None
    write(path, "http://127.0.0.1:9000", os.getpid() + 1)  # another server took the database since
    withdraw(path)
    assert path.exists()


def test_a_record_is_live_only_while_its_process_runs_and_its_address_answers(tmp_path: Path) -> None:
    db = str(tmp_path / "shop.db")
    path = record_path(db)
    assert path is not None
    assert live(db) is None  # no record
    with answering() as url, another_process() as pid:
        write(path, url, pid)
        found = live(db)
        assert found is not None and (found.url, found.pid, found.collection) == (url, pid, "images")
        write(path, url, os.getpid())  # this process serves nothing to itself
        assert live(db) is None
    write(path, url, pid)  # its process is gone
    assert live(db) is None
    with another_process() as pid:
        write(path, url, pid)  # its process runs, its address does not answer
        assert live(db) is None
    path.write_text("{torn", encoding="utf-8")
    assert live(db) is None
