"""A hostile web host on 127.0.0.1 for the API's safety tests, and a fake DNS that makes it look public.

``public.example`` resolves to a public address (93.184.216.34) whose connections are carried to
the hostile server, the way a real attacker's host would be reached; ``evil.example`` resolves to
loopback; ``rebind.example`` resolves to the public address once and to loopback afterwards.
Every path the server is asked for is recorded, so a test can prove that ``/secret`` (the
"internal service") was never reached.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.helpers import jpeg_bytes, make_image

PUBLIC = "93.184.216.34"
ORIGINAL = jpeg_bytes(make_image(61))
SWITCHED = jpeg_bytes(make_image(62))


class Hostile(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port = self.server_address[1]
        self.hits: list[str] = []
        self.switched = False  # after indexing, /switch.jpg redirects inward


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Hostile
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _body(self, data: bytes, content_type: str = "image/jpeg") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        path, port = self.path, self.server.port
        self.server.hits.append(path)
        inward = {
            "/to-loopback": f"http://127.0.0.1:{port}/secret",
            "/to-localhost": f"http://localhost:{port}/secret",
            "/to-metadata": "http://169.254.169.254/latest/meta-data/",
            "/to-mapped": f"http://[::ffff:127.0.0.1]:{port}/secret",
            "/to-compatible": f"http://[::7f00:1]:{port}/secret",
            "/to-decimal": f"http://2130706433:{port}/secret",
            "/to-evil": f"http://evil.example:{port}/secret",
            "/to-file": "file:///etc/passwd",
            "/to-gopher": f"gopher://127.0.0.1:{port}/_INFO",
            "/loop": "/loop",
        }
        if path in inward:
            self._redirect(inward[path])
        elif path == "/secret":
            self._body(b"internal secret", "text/plain")
        elif path == "/img.jpg":
            self._body(ORIGINAL)
        elif path == "/future.jpg":
            self.send_response(200)
            self.send_header("Last-Modified", "Fri, 31 Dec 9999 23:59:59 GMT")
            self.send_header("Content-Length", str(len(SWITCHED)))
            self.end_headers()
            self.wfile.write(SWITCHED)
        elif path == "/switch.jpg":
            if self.server.switched:
                self._redirect(f"http://127.0.0.1:{port}/secret")
            else:
                self._body(ORIGINAL)
        elif path == "/drip":
            self._drip_body()
        elif path == "/drip-headers":
            self._drip_headers()
        elif path == "/endless":
            self._endless()
        elif path == "/huge-length":
            self.send_response(200)
            self.send_header("Content-Length", str(10**10))
            self.end_headers()
        else:
            self.send_error(404)

    def _drip_body(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(ORIGINAL)))
        self.end_headers()
        try:
            for byte in ORIGINAL:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass

    def _drip_headers(self) -> None:
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 400:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass

    def _endless(self) -> None:
        self.send_response(200)
        self.end_headers()  # no Content-Length: the body runs until the connection closes
        try:
            while True:
                self.wfile.write(b"\xff" * 65536)
        except OSError:
            pass


@contextmanager
def hostile_server() -> Iterator[Hostile]:
    server = Hostile()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class FakeNet:
    """Patches name resolution and connections for the *.example hosts; records every connection."""

    def __init__(self, server: Hostile) -> None:
        self.server = server
        self.connected: list[str] = []
        self._real_getaddrinfo = socket.getaddrinfo
        self._real_connect = socket.create_connection
        self._rebind_calls = 0

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        address = None
        if name == "public.example":
            address = PUBLIC
        elif name == "evil.example":
            address = "127.0.0.1"
        elif name == "rebind.example":
            self._rebind_calls += 1
            address = PUBLIC if self._rebind_calls == 1 else "127.0.0.1"
        if address is None:
            return self._real_getaddrinfo(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 80)))]

    def create_connection(self, address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        host, port = address[0], address[1]
        self.connected.append(str(host))
        if host == PUBLIC:  # the "internet": the attacker's public host is the hostile server
            return self._real_connect(("127.0.0.1", self.server.port), *args, **kwargs)
        return self._real_connect((host, port), *args, **kwargs)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", self.create_connection)
