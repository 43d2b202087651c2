"""How uvicorn serves the app: read timeouts of a reverse proxy, and an address the command line finds.

uvicorn closes a kept-alive connection that stays idle between requests (``timeout_keep_alive``),
but waits for ever on a connection that sends nothing, drips its headers a byte at a time
(slowloris) or stops in the middle of a body: a few thousand such clients hold a server's sockets
and tasks. ``TimedHttpTools`` adds the two timeouts nginx has:

- headers: a request's headers must be complete within ``header_timeout_s`` of the connection
  (or of the first byte of the next request on a kept-alive connection); otherwise the client is
  answered 408 (or, if it sent nothing at all, simply closed);
- body: a body in progress may pause at most ``body_timeout_s`` between two reads; otherwise the
  connection is closed and the app sees the client disconnect (logged as one 499 line).

``Announcing`` records the server's address beside the Milvus Lite database it holds while it
listens, so that commands on that database go through it (lookalike/remote/).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lookalike.remote.record import announce, withdraw

log = logging.getLogger(__name__)
_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\nconnection: close\r\n\r\nRequest Timeout"
)


class TimedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read timeouts (the class attributes)."""

    header_timeout_s = 60.0
    body_timeout_s = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._begun = False  # a byte of the request now awaited has come

    def _arm(self, seconds: float, handler: Any) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, handler)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        if self._read_timer is None:  # the next request on a kept-alive connection
            self._arm(self.header_timeout_s, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout_s, self._body_too_slow)  # cancelled at once when there is no body
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm(self.body_timeout_s, self._body_too_slow)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._begun = False
        super().on_message_complete()

    def _peer(self) -> str:
        return "{}:{}".format(*self.client) if self.client else "a client"

    def _headers_too_slow(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        client = self._peer()
        if self._begun:
            log.info(
                "%s sent no complete request headers in %g s: 408, closed", client, self.header_timeout_s
            )
            self.transport.write(_TIMEOUT_408)
        else:
            log.info("%s sent nothing in %g s: closed", client, self.header_timeout_s)
        self.transport.close()

    def _body_too_slow(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server stopped reading (its buffer is full), not the client
            self._arm(self.body_timeout_s, self._body_too_slow)
            return
        client = self._peer()
        log.info("%s sent no more of its request body in %g s: closed", client, self.body_timeout_s)
        self.transport.close()


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """uvicorn.Config's keyword arguments for the timeouts in ``settings`` (LOOKALIKE_*_TIMEOUT_S)."""
    protocol = type(
        "TimedHttpTools",
        (TimedHttpTools,),
        {"header_timeout_s": settings.header_timeout_s, "body_timeout_s": settings.body_timeout_s},
    )
    return {"http": protocol, "timeout_keep_alive": settings.keep_alive_timeout_s}


def reachable(host: str, port: int) -> str:
    """The address a command on this machine reaches the server at (an any-address host: loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Announcing(uvicorn.Server):
    """uvicorn's server, which records its address beside the Milvus Lite database it holds once it
    listens, and removes the record when it stops listening: commands then go through it
    (lookalike/remote/) instead of failing on the database's lock."""

    def __init__(self, config: uvicorn.Config, *, db: str, collection: str) -> None:
        super().__init__(config)
        self.db, self.collection = db, collection
        self.record: Path | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            port = self.servers[0].sockets[0].getsockname()[1] if self.servers else self.config.port
            try:
                self.record = announce(self.db, self.collection, reachable(self.config.host, port))
            except OSError as exc:  # a read-only folder: serve all the same, commands get the lock's message
                log.warning(
                    "cannot record this server's address beside %s (%s): commands will not find it",
                    self.db,
                    exc,
                )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.withdraw()  # first: a command starting now no longer sends its request to a server going away
        await super().shutdown(sockets=sockets)

    def withdraw(self) -> None:
        withdraw(self.record)
        self.record = None


def run(app: Any, settings: Any, *, host: str, port: int, log_level: str) -> bool:
    """Serve ``app`` until stopped, as ``lookalike serve`` does: the read timeouts of ``settings``, and
    the address recorded beside a Milvus Lite database while it listens. False when it never listened
    (uvicorn said why: the port is taken, say)."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, **uvicorn_options(settings))
    server = Announcing(config, db=settings.db, collection=settings.collection)
    try:
        server.run()
    finally:
        server.withdraw()  # also when uvicorn stops without its shutdown (a second Ctrl-C)
    return bool(server.started)
