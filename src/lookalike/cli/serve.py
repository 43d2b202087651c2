"""`lookalike serve`: the HTTP API and the web page."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from lookalike.cli.common import (
    Collection,
    Db,
    Model,
    Pretrained,
    Runtime,
    Verbose,
    app,
    err,
    session,
)


def server_logging(verbose: bool) -> None:
    """Without --verbose the server still logs lookalike's own warnings and errors: failed jobs and
    any 500, each with its traceback."""
    logging.getLogger("lookalike").setLevel(logging.INFO if verbose else logging.WARNING)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    runtime: Runtime = None,
    verbose: Verbose = False,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) and the search page at /.

    Set LOOKALIKE_API_KEY to require an X-API-Key header on every route but /health and the two
    pages (/ and /review, which ask for the key).
    With LOOKALIKE_WEBHOOK_URLS set, flags and decisions are delivered as signed webhooks; with
    LOOKALIKE_WAVES_EVERY_S above 0, the server looks for waves on that schedule.
    """
    from lookalike.api import create_app, server
    from lookalike.store.readindex import use_one_blas_thread

    # A server writes while command lines may read: it holds Milvus Lite open from the start.
    with session(verbose, db, collection, model, pretrained, read_files=False, runtime=runtime) as ctx:
        if ctx.settings.text_threads == 0:  # see Settings.text_threads
            ctx.settings = ctx.settings.model_copy(update={"text_threads": 1})
        ctx.settings.webhook_targets()  # a webhook URL without a secret, say: refused before anything loads
        ctx.embedder.load()  # fail here, with a clear message, rather than inside the server
        use_one_blas_thread()  # concurrent requests keep the cores busy; BLAS threads only wait
        server_logging(verbose)
        application = create_app(ctx)
        err.print(f"lookalike serving {ctx.settings.db} on http://{host}:{port} (API docs at /docs)")
        # On a Milvus Lite file, the server records its address beside it while it listens: commands
        # on that database then go through it (lookalike/remote/).
        log_level = "info" if verbose else "warning"
        if not server.run(application, ctx.settings, host=host, port=port, log_level=log_level):
            raise typer.Exit(1)  # uvicorn said why (the port is taken, say)
