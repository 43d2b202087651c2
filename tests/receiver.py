"""A webhook receiver on 127.0.0.1 for tests: it verifies each request's signature the way the README
tells a shop to, records what came, and answers as told (200, a failure, a redirect, or slowly)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lookalike.webhooks import SignatureError, verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    why: str = ""

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    url: str
    secret: str
    status: int = 200
    delay_s: float = 0.0
    location: str = ""
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.received)} of {count} webhooks arrived"
                self.arrived.wait(left)
            return list(self.received)


@contextmanager
def receiver(secret: str) -> Iterator[Receiver]:
    state: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            me = state[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {key: value for key, value in self.headers.items()}
            try:
                verify(me.secret, body, headers)
                got = Received(self.path, headers, body, True)
            except SignatureError as exc:
                got = Received(self.path, headers, body, False, str(exc))
            if me.delay_s:
                time.sleep(me.delay_s)
            self.send_response(401 if not got.verified else me.status)
            if me.location:
                self.send_header("Location", me.location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            with me.arrived:
                me.received.append(got)
                me.arrived.notify_all()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/lookalike", secret))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        server.shutdown()
        server.server_close()
