"""The FastAPI application: built around one use-case context, models loaded once in the lifespan."""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike import __version__
from lookalike.api import facets, matching, queue, review, risk, waves, webhooks
from lookalike.api.background import Background
from lookalike.api.deps import STATIC
from lookalike.api.jobs import Jobs
from lookalike.api.limits import BodyLimit
from lookalike.api.metrics import Metrics
from lookalike.api.routes import router
from lookalike.errors import (
    ClaimedError,
    CollectionNotFoundError,
    ConfigError,
    ExampleError,
    ImageError,
    ItemNotFoundError,
    LookalikeError,
    ModelMismatchError,
    ModelUnavailableError,
    PathRefusedError,
    StoreError,
)
from lookalike.ingest import FetchPolicy
from lookalike.usecases import banks
from lookalike.usecases.context import Context
from lookalike.usecases.facets import warm as warm_facets

log = logging.getLogger(__name__)
OPEN_PATHS = ("/health", "/", "/static/", "/favicon.ico", "/review")  # pages ask for the key; data needs it
DOCS_ASSETS = "/static/docs"  # under /static/, so open like the page
CLIENT_GONE = 499  # nginx's status for a client that closed the connection before the answer


def status_for(exc: LookalikeError) -> int:
    """The HTTP status of a domain error; the core knows nothing of HTTP."""
    if isinstance(exc, ItemNotFoundError | CollectionNotFoundError):
        return 404
    if isinstance(exc, PathRefusedError):
        return 403
    if isinstance(exc, ImageError | ExampleError):
        return 422
    if isinstance(exc, ClaimedError):
        return 409  # another reviewer holds the flag
    if isinstance(exc, ModelMismatchError):
        return 409  # the collection's vectors come from another model than this server runs
    if isinstance(exc, ConfigError):
        return 400
    if isinstance(exc, ModelUnavailableError | StoreError):
        return 503
    return 400


def create_app(ctx: Context) -> FastAPI:
    """An app answering for ``ctx``; ``lookalike serve`` and the tests build it the same way."""
    settings = ctx.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load the model once, before the first request, off the event loop; concurrent queries are
        # then encoded together in small batches while their searches run in parallel.
        ctx.batch_queries(settings.serve_batch, settings.serve_batch_wait_ms)
        await run_in_threadpool(ctx.embedder.load)
        app.state.reports.mkdir(parents=True, exist_ok=True)  # removed, with its reports, at shutdown
        # image_url downloads run in a pool of their own, so slow hosts cannot take the threads searches use.
        app.state.downloads = ThreadPoolExecutor(
            settings.fetch_concurrency, thread_name_prefix="lookalike-fetch"
        )
        background = Background(ctx)  # webhook delivery, the scheduled wave check: when configured
        await run_in_threadpool(background.start)
        # The hash banks' index is built in the background: at millions of hashes that takes minutes,
        # which the first lookup would otherwise wait for (lookups meanwhile wait for it, then answer).
        threading.Thread(target=banks.warm, args=(ctx,), name="lookalike-banks", daemon=True).start()
        # A server's filter values take a pass over the collection: counted ahead, for the search page.
        threading.Thread(target=warm_facets, args=(ctx,), name="lookalike-facets", daemon=True).start()
        yield
        await run_in_threadpool(background.close)
        app.state.downloads.shutdown(wait=False, cancel_futures=True)
        ctx.close()
        shutil.rmtree(app.state.reports, ignore_errors=True)

    # FastAPIOffline serves /docs (Swagger UI) and /redoc from its own packaged files, not a CDN.
    app = FastAPIOffline(
        title="lookalike",
        version=__version__,
        description="Image similarity search: CLIP embeddings in Milvus. Search by text, image or stored id.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
    )
    app.state.context = ctx
    app.state.jobs = Jobs(
        time_limit_s=settings.job_time_limit_s, keep=settings.jobs_keep, keep_s=settings.jobs_keep_s
    )
    app.state.metrics = Metrics()
    app.state.max_upload = int(settings.max_upload_mb * 1024 * 1024)
    # What requests may name: uploads and public URLs, server files only under LOOKALIKE_INDEX_ROOTS.
    app.state.policy = FetchPolicy.from_settings(settings, server=True)
    app.state.download_slots = asyncio.Semaphore(settings.fetch_concurrency * 4)
    app.state.reports = Path(tempfile.mkdtemp(prefix="lookalike-reports-"))
    app.include_router(router)
    app.include_router(facets.router)
    app.include_router(risk.router)
    app.include_router(queue.router)  # before review's: /flags/next is no flag id
    app.include_router(review.router)
    app.include_router(webhooks.router)
    app.include_router(waves.router)
    app.include_router(matching.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Counted while the body streams in, so a chunked body (no Content-Length) is capped too.
    too_large = f"request body over the {settings.max_upload_mb:g} MB limit"
    app.add_middleware(BodyLimit, max_bytes=app.state.max_upload + 64 * 1024, message=too_large)

    app.add_middleware(
        Guard,
        owner=app,
        api_key=settings.api_key,
        max_body=app.state.max_upload + 64 * 1024,
        too_large=too_large,
    )
    _error_handlers(app)
    return app


class Guard:
    """The API key, the declared body size, per-route metrics, and a JSON 500 (logged with its
    traceback) for anything unhandled: the outermost layer of the app.

    A client that goes away before its answer (mid-body, say) is no error of the server: it is
    counted as 499, the way nginx counts it, and logged as one info line without a traceback.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` runs each request through an
    extra task and memory streams, which under 50 concurrent clients cost a share of every request.
    """

    def __init__(self, app: ASGIApp, *, owner: FastAPI, api_key: str, max_body: int, too_large: str) -> None:
        self.app = app
        self.owner = owner
        self.api_key = api_key.encode()
        self.max_body = max_body
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        refusal = self._refusal(scope)
        if refusal is not None:
            status = refusal.status_code
            await refusal(scope, receive, send)
            self._observe(scope, status, started)
            return
        response_started = client_gone = False

        async def receiving() -> Message:
            nonlocal client_gone
            message = await receive()
            if message["type"] == "http.disconnect" and not response_started:
                client_gone = True  # whatever the app makes of it (an error, a 400), nobody reads it
            return message

        async def sending(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        except Exception:  # the last line of defence: log it (traceback included), answer JSON, keep serving
            if not client_gone:
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                if not response_started:
                    status = 500
                    await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)
        finally:
            if client_gone:
                status = CLIENT_GONE
                log.info(
                    "%s %s: the client closed the connection before its answer (%d)",
                    scope.get("method"),
                    scope.get("path"),
                    CLIENT_GONE,
                )
            self._observe(scope, status, started)

    def _refusal(self, scope: Scope) -> Response | None:
        path = scope["path"]
        headers: dict[bytes, bytes] = dict(scope["headers"])  # raw bytes, names in lower case
        guarded = self.api_key and not path.startswith(OPEN_PATHS[2]) and path not in OPEN_PATHS
        # The bytes as sent: a key with non-ASCII characters matches when sent in UTF-8.
        if guarded and not hmac.compare_digest(headers.get(b"x-api-key", b""), self.api_key):
            return JSONResponse({"detail": "missing or wrong X-API-Key header"}, status_code=401)
        length = headers.get(b"content-length", b"")
        if length.isascii() and length.isdigit() and int(length) > self.max_body:
            return JSONResponse({"detail": self.too_large}, status_code=413)
        return None

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route: Any = scope.get("route")
        path = scope["path"]
        name = getattr(route, "path", None) or ("/static" if path.startswith("/static/") else "unmatched")
        metrics: Metrics = self.owner.state.metrics
        method = scope.get("method", "")
        metrics.requests.labels(name, method, str(status)).inc()
        metrics.latency.labels(name, method).observe(time.perf_counter() - started)


def _error_handlers(app: FastAPI) -> None:
    """Every error as JSON: domain errors by their HTTP status, validation errors without the input."""

    @app.exception_handler(LookalikeError)
    async def domain_error(request: Request, exc: LookalikeError) -> JSONResponse:
        # "error" names the domain error, so that a command going through this server (remote/client.py)
        # raises what it would have raised itself, with the same exit code.
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
