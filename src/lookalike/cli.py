"""The `lookalike` command: parses, builds the service, prints, exits. No logic lives here."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lookalike.config import DEFAULT_MODEL, DEFAULT_PRETRAINED, load_settings
from lookalike.errors import LookalikeError

app = typer.Typer(
    name="lookalike",
    help=(
        "Image similarity search: embed images with CLIP, store them in Milvus, search by text, "
        "image or id.\n\nData lives in --db: a file path is an embedded Milvus Lite database (no setup), "
        "http://host:19530 is a Milvus server."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

# Options every command takes. Defaults come from Settings (environment LOOKALIKE_*), so
# None here means "not given on the command line".
Db = Annotated[
    str | None,
    typer.Option(
        "--db", help="Milvus Lite file path or Milvus server URI. (env LOOKALIKE_DB, default ./lookalike.db)"
    ),
]
Collection = Annotated[
    str | None,
    typer.Option("--collection", help="Collection name. (env LOOKALIKE_COLLECTION, default images)"),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help=f"open_clip architecture name or model-config JSON path. (env LOOKALIKE_MODEL, default {DEFAULT_MODEL})",
    ),
]
Pretrained = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        help=(
            "open_clip pretrained tag, a local checkpoint file, or 'random'. "
            f"(env LOOKALIKE_PRETRAINED, default {DEFAULT_PRETRAINED})"
        ),
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log what the libraries do.")]


def _service(
    db: str | None, collection: str | None, model: str | None, pretrained: str | None, **extra: Any
) -> Any:
    from lookalike.service import Lookalike

    settings = load_settings(db=db, collection=collection, model=model, pretrained=pretrained, **extra)
    return Lookalike(settings)


def _setup_logging(verbose: bool) -> None:
    # open_clip and huggingface_hub log download failures and retries at ERROR on the root
    # logger; the user gets one clear message from us instead.
    logging.basicConfig(
        level=logging.INFO if verbose else logging.CRITICAL, format="%(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        for name in ("huggingface_hub", "open_clip"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


@contextmanager
def _errors(verbose: bool = False) -> Iterator[None]:
    try:
        yield
    except LookalikeError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted; what was already inserted is kept and a re-run resumes from it.")
        raise typer.Exit(130) from None
    except Exception as exc:
        if verbose:
            raise
        err.print(
            f"[bold red]unexpected error:[/] {type(exc).__name__}: {exc}\n"
            "Run the command again with --verbose for the traceback, and please report it.",
            highlight=False,
        )
        raise typer.Exit(70) from None


def _parse_day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date like 2023-11-19.", param_hint=flag) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


def _short(uri: str) -> str:
    """A path under the working directory is shown relative to it."""
    try:
        return str(Path(uri).relative_to(Path.cwd()))
    except ValueError:
        return uri


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


@app.command()
def index(
    path: Annotated[
        str, typer.Argument(help="A folder (recursive), an image file, or a .csv/.parquet catalog.")
    ],
    source: Annotated[
        str | None,
        typer.Option(
            help="Source label for these images (product, avatar, a shop…); a catalog's source column wins."
        ),
    ] = None,
    index_type: Annotated[
        str,
        typer.Option(
            "--index",
            help="Vector index when the collection is created: FLAT (exact), IVF_FLAT, IVF_SQ8, IVF_PQ (server only), HNSW.",
        ),
    ] = "FLAT",
    index_params: Annotated[
        str | None,
        typer.Option("--index-params", help="Index build parameters as JSON, e.g. '{\"nlist\": 1024}'."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per model batch. (env LOOKALIKE_BATCH_SIZE, default 32)")
    ] = None,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    verbose: Verbose = False,
) -> None:
    """Index images: embed every new image and store it; files already indexed are skipped.

    Catalog columns: image (path relative to the catalog, or http(s) URL), item_id, name,
    source, created_at (ISO date or unix seconds; default: the file's modification time).
    Unreadable or corrupt files are skipped and listed at the end.
    """
    from lookalike.service import parse_index_params

    _setup_logging(verbose)
    with _errors(verbose):
        service = _service(db, collection, model, pretrained, batch_size=batch_size)
        params = parse_index_params(index_params)
        with _progress() as bar:
            task = bar.add_task("loading model", total=None, rate="")
            # The rate counts from the first image, not from the model load before it.
            started = [time.perf_counter()]

            def on_start(total: int) -> None:
                started[0] = time.perf_counter()
                bar.update(task, total=total, description="indexing")

            def advance(n: int) -> None:
                elapsed = (time.perf_counter() - started[0]) or 1e-9
                done = bar.tasks[0].completed + n
                bar.update(task, advance=n, rate=f"{done / elapsed:.1f} img/s")

            report = service.index(
                path,
                source=source,
                index=index_type,
                index_params=params,
                on_start=on_start,
                progress=advance,
            )
        service.close()
    out.print(
        f"indexed [bold]{report.indexed}[/] new images, {report.already_indexed} already indexed, "
        f"{len(report.skipped)} skipped, in {report.elapsed_s:.1f} s ({report.images_per_s:.1f} img/s)",
        highlight=False,
    )
    if report.skipped:
        table = Table(title="skipped files", title_justify="left", show_lines=False)
        table.add_column("file", overflow="fold")
        table.add_column("reason", overflow="fold")
        for skipped in report.skipped:
            table.add_row(skipped.uri, skipped.reason)
        err.print(table)
    if report.indexed == 0 and report.already_indexed == 0 and report.skipped:
        raise typer.Exit(1)


@app.command()
def search(
    text: Annotated[str | None, typer.Option(help='Search by words, e.g. "floral top".')] = None,
    image: Annotated[
        str | None, typer.Option(help="Search by an image: a file path or an http(s) URL.")
    ] = None,
    id: Annotated[
        int | None, typer.Option("--id", help="Search by a stored item's id (lookalikes of it).")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=16384, help="How many hits.")] = 10,
    source: Annotated[list[str] | None, typer.Option(help="Only these sources (repeatable).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only items created on or after this day (YYYY-MM-DD, UTC).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only items created on or before this day (YYYY-MM-DD, UTC).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {took_ms, hits: [...]}.")] = False,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    verbose: Verbose = False,
) -> None:
    """Find the stored images most similar to a text, an image, or a stored item."""
    from lookalike.service import Query

    _setup_logging(verbose)
    query = Query(
        text=text,
        image=image,
        id=id,
        k=k,
        sources=tuple(source or ()),
        since=_parse_day(since, "--since"),
        until=_parse_day(until, "--until"),
    )
    with _errors(verbose):
        service = _service(db, collection, model, pretrained)
        result = service.search(query)
        service.close()
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        return
    table = Table(caption=f"{len(result.hits)} hits in {result.took_ms:.1f} ms", caption_justify="left")
    for column, justify in (
        ("rank", "right"),
        ("score", "right"),
        ("item_id", "left"),
        ("name", "left"),
        ("source", "left"),
        ("date", "left"),
        ("uri", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for rank, hit in enumerate(result.hits, start=1):
        item = hit.item
        table.add_row(
            str(rank),
            f"{hit.score:.4f}",
            item.item_id,
            item.name,
            item.source,
            _day(item.created_at),
            _short(item.uri),
        )
    out.print(table)


@app.command()
def stats(
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Show the collection: model, index, and item counts per partition (month) and per source."""
    _setup_logging(verbose)
    with _errors(verbose):
        service = _service(db, collection, None, None)
        info = service.stats()
        service.close()
    out.print(
        f"collection [bold]{info.name}[/] in {service.settings.db}: {info.rows} items, dim {info.dim}, "
        f"index {info.index_type} {json.dumps(info.index_params) if info.index_params else ''}, "
        f"model {info.model or 'unknown'}",
        highlight=False,
    )
    parts = Table(title="partitions", title_justify="left")
    parts.add_column("partition")
    parts.add_column("items", justify="right")
    for partition in info.partitions:
        parts.add_row(partition.name, str(partition.rows))
    out.print(parts)
    sources = Table(title="sources", title_justify="left")
    sources.add_column("source")
    sources.add_column("items", justify="right")
    for name, count in info.sources.items():
        sources.add_row(name, str(count))
    out.print(sources)


def _counted(description: str, run: Callable[[Callable[[int], None]], Any]) -> Any:
    with _progress() as bar:
        task = bar.add_task(description, total=None, rate="")
        return run(lambda n: bar.update(task, advance=n))


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="Parquet file to write (every field and the vector).")],
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Write the whole collection, vectors included, to a Parquet file."""
    _setup_logging(verbose)
    with _errors(verbose):
        service = _service(db, collection, None, None)
        rows = _counted("exporting", lambda progress: service.export(str(file), progress))
        service.close()
    out.print(f"exported {rows} items to {file}")


@app.command(name="import")
def import_(
    file: Annotated[Path, typer.Argument(help="Parquet file written by `lookalike export`.")],
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Restore a Parquet export into a collection, without re-embedding; items already there are kept."""
    _setup_logging(verbose)
    with _errors(verbose):
        service = _service(db, collection, None, None)
        imported, already = _counted("importing", lambda progress: service.import_(str(file), progress))
        service.close()
    out.print(f"imported {imported} items ({already} were already there)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
