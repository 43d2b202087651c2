"""Slow and vanishing clients over real sockets: a client that sends nothing, drips its headers or
stops mid-body is cut off by the read timeouts; one that disconnects mid-body is one info line and
a 499 in the metrics, never an error, a traceback or a 500."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.usecases import Context
from tests.helpers import FakeEmbedder
from tests.serving import serving

TIMEOUT_S = 0.6  # header, body and keep-alive timeouts of this test's server


@pytest.fixture()
def base(tmp_path: Path) -> Iterator[str]:
    settings = load_settings(
        db=str(tmp_path / "slow.db"),
        header_timeout_s=TIMEOUT_S,
        body_timeout_s=TIMEOUT_S,
        keep_alive_timeout_s=TIMEOUT_S,
    )
    with serving(create_app(Context(settings, embedder=FakeEmbedder()))) as url:
        yield url


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def closed_after(conn: socket.socket) -> tuple[float, bytes]:
    """How long until the server closed the connection, and what it said before."""
    started, said = time.monotonic(), b""
    while part := conn.recv(65536):
        said += part
    return time.monotonic() - started, said


def requests_counted(base: str, route: str) -> dict[str, float]:
    text = httpx.get(base + "/metrics").text
    pattern = (
        rf'lookalike_http_requests_total\{{method="POST",route="{re.escape(route)}",status="(\d+)"\}} (\S+)'
    )
    return {status: float(count) for status, count in re.findall(pattern, text)}


def test_connections_that_send_nothing_are_closed(base: str) -> None:
    idle = [connect(base) for _ in range(40)]
    try:
        for conn in idle:
            waited, said = closed_after(conn)
            assert said == b"" and waited < 5 * TIMEOUT_S
        assert httpx.get(base + "/health").json() == {"status": "ok"}  # the server goes on
    finally:
        for conn in idle:
            conn.close()


def test_headers_dripped_a_byte_at_a_time_are_cut_off_with_a_408(base: str) -> None:
    started = time.monotonic()
    with connect(base) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        for _ in range(100):  # the slowloris way: always a little more, never the end
            try:
                conn.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            time.sleep(TIMEOUT_S / 6)
            conn.setblocking(False)
            try:
                answer += conn.recv(65536)
            except BlockingIOError:
                pass
            finally:
                conn.setblocking(True)
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 5 * TIMEOUT_S


def test_a_kept_alive_connection_is_closed_when_idle(base: str) -> None:
    with connect(base) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        waited, said = closed_after(conn)
    assert said.startswith(b"HTTP/1.1 200") and waited < 5 * TIMEOUT_S


def test_a_client_gone_mid_body_is_an_info_line_and_a_499(
    base: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lookalike")
    routes = {  # the JSON read by the route, multipart forms, and a body FastAPI parses itself
        "/search": b"Content-Type: application/json\r\n",
        "/index": b"Content-Type: multipart/form-data; boundary=b\r\n",
        "/scan": b"Content-Type: application/json\r\n",
    }
    for route, content_type in routes.items():
        for _ in range(10):
            with connect(base) as conn:
                head = f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n".encode()
                conn.sendall(
                    head + content_type + b"\r\n" + b'--b\r\nContent-Disposition: form-data; name="source"'
                )
                time.sleep(0.01)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(requests_counted(base, "/scan").values()) < 10:
        time.sleep(0.05)
    for route in routes:
        assert requests_counted(base, route) == {"499": 10.0}, route
    gone = [r for r in caplog.records if "closed the connection before its answer" in r.getMessage()]
    assert len(gone) == 30 and all(r.levelno == logging.INFO and r.exc_info is None for r in gone)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_a_body_that_stops_coming_is_cut_off(base: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lookalike")
    with connect(base) as conn:
        conn.sendall(
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"text": "'
        )
        waited, said = closed_after(conn)  # the client is still there, only silent
    assert said == b"" and waited < 5 * TIMEOUT_S
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not requests_counted(base, "/search"):
        time.sleep(0.05)
    assert requests_counted(base, "/search") == {"499": 1.0}
    assert any("no more of its request body" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
