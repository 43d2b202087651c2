"""A cap on request bodies, counted while they stream in: a chunked body (no Content-Length) is
capped like any other, and nothing over the cap is read, let alone spooled to disk.

Starlette's RequestBodyLimitMiddleware counts the same way but answers in plain text; this one
raises the app's HTTPException, so the 413 is JSON like every other error of the API.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, message: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A declared Content-Length over the cap is answered before this runs (app.py's guard).
        total = 0

        async def limited() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited, send)
