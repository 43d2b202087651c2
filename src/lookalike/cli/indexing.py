"""Index, search, stats, export and import."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lookalike.cli.common import (
    Collection,
    Db,
    DetectorWeights,
    MinScore,
    Model,
    Pretrained,
    Runtime,
    Verbose,
    app,
    counted,
    day,
    err,
    out,
    parse_day,
    progress_bar,
    session,
    short_uri,
    tagged,
)


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
            help=(
                "Vector index when the collection is created: HNSW (default), FLAT (exact), IVF_FLAT, "
                "IVF_SQ8, IVF_PQ (server only). On a Milvus Lite file lookalike searches its own copy: "
                "exact for FLAT, an HNSW graph for the others."
            ),
        ),
    ] = "HNSW",
    index_params: Annotated[
        str | None,
        typer.Option("--index-params", help="Index build parameters as JSON, e.g. '{\"nlist\": 1024}'."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per model batch. (env LOOKALIKE_BATCH_SIZE, default 32)")
    ] = None,
    detect: Annotated[
        bool,
        typer.Option(
            "--detect",
            help="Also detect objects: each box above --min-score and 32 px becomes its own item "
            "(parent sha256, box, label, score) beside the whole image.",
        ),
    ] = False,
    detector_weights: DetectorWeights = None,
    min_score: MinScore = None,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    runtime: Runtime = None,
    verbose: Verbose = False,
) -> None:
    """Index images: embed every new image and store it; files already indexed are skipped.

    Catalog columns: image (path relative to the catalog, or http(s) URL), item_id, name,
    source, created_at (ISO date or unix seconds; default: the file's modification time).
    Unreadable or corrupt files are skipped and listed at the end.
    """
    from lookalike.service import parse_index_params

    with session(
        verbose,
        db,
        collection,
        model,
        pretrained,
        runtime=runtime,
        batch_size=batch_size,
        detector_weights=detector_weights,
        detect_min_score=min_score,
    ) as service:
        params = parse_index_params(index_params)
        with progress_bar() as bar:
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
                detect=detect,
            )
    crops = f", {report.crops} detected objects" if detect else ""
    out.print(
        f"indexed {report.indexed} new images{crops}, {report.already_indexed} already indexed, "
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


def parse_box_option(text: str | None) -> tuple[int, int, int, int] | None:
    from lookalike.service import parse_box

    if text is None:
        return None
    try:
        return parse_box(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--box") from None


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
    search_params: Annotated[
        str | None,
        typer.Option(
            "--search-params",
            help="Index knobs at query time as JSON: '{\"ef\": 128}' (HNSW), '{\"nprobe\": 16}' (IVF).",
        ),
    ] = None,
    detect: Annotated[
        bool,
        typer.Option(
            "--detect", help="With --image: embed the largest object the detector finds, not the whole image."
        ),
    ] = False,
    box: Annotated[
        str | None,
        typer.Option(
            "--box", help="With --image: embed this part, x0,y0,x1,y1 in pixels (clipped to the image)."
        ),
    ] = None,
    detector_weights: DetectorWeights = None,
    min_score: MinScore = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {took_ms, hits: [...]}.")] = False,
    grid: Annotated[
        Path | None,
        typer.Option(help="Also draw the hits as a PNG grid of thumbnails with names and scores."),
    ] = None,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    runtime: Runtime = None,
    verbose: Verbose = False,
) -> None:
    """Find the stored images most similar to a text, an image, or a stored item."""
    from lookalike.service import Query, parse_index_params

    query = Query(
        text=text,
        image=image,
        id=id,
        k=k,
        sources=tuple(source or ()),
        since=parse_day(since, "--since"),
        until=parse_day(until, "--until"),
        search_params=tuple(sorted((parse_index_params(search_params, "--search-params") or {}).items())),
        detect=detect,
        box=parse_box_option(box),
    )
    with session(
        verbose,
        db,
        collection,
        model,
        pretrained,
        runtime=runtime,
        detector_weights=detector_weights,
        detect_min_score=min_score,
    ) as service:
        result = service.search(query)
        if grid is not None:
            label = f'"{text}"' if text is not None else (f"image {image}" if image else f"like id {id}")
            service.write_grid(result, str(grid), f"lookalike: {label}")
    for warning in result.warnings:
        err.print(tagged("warning:", "yellow", warning))
    if result.query_box is not None and not as_json:
        err.print(
            f"searched the part {','.join(map(str, result.query_box))} of the query image", highlight=False
        )
    if grid is not None:
        err.print(f"grid written to {grid}")
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        return
    table = Table(caption=f"{len(result.hits)} hits in {result.took_ms:.1f} ms", caption_justify="left")
    crops = any(hit.item.box for hit in result.hits)
    columns = [
        ("rank", "right"),
        ("score", "right"),
        ("item_id", "left"),
        ("name", "left"),
        ("source", "left"),
    ]
    columns += [("date", "left"), *([("box", "left"), ("label", "left")] if crops else []), ("uri", "left")]
    for column, justify in columns:
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for rank, hit in enumerate(result.hits, start=1):
        item = hit.item
        cells = [str(rank), f"{hit.score:.4f}", item.item_id, item.name, item.source, day(item.created_at)]
        if crops:
            cells += [item.box or "whole", f"{item.label} {item.det_score:.2f}" if item.box else ""]
        table.add_row(*cells, short_uri(item.uri))
    out.print(table)


@app.command()
def stats(
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    verbose: Verbose = False,
) -> None:
    """Show the collection: model, index, and item counts per partition (month) and per source."""
    with session(verbose, db, collection, model, pretrained) as service:
        info = service.stats()
    out.print(
        f"collection {info.name} in {service.settings.db}: {info.rows} items, dim {info.dim}, "
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


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="Parquet file to write (every field and the vector).")],
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    verbose: Verbose = False,
) -> None:
    """Write the whole collection, vectors included, to a Parquet file."""
    with session(verbose, db, collection, model, pretrained) as service:
        rows = counted("exporting", lambda progress: service.export(str(file), progress))
    out.print(f"exported {rows} items to {file}")


@app.command(name="import")
def import_(
    file: Annotated[Path, typer.Argument(help="Parquet file written by `lookalike export`.")],
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    verbose: Verbose = False,
) -> None:
    """Restore a Parquet export into a collection, without re-embedding; items already there are kept."""
    with session(verbose, db, collection, model, pretrained) as service:
        imported, already = counted("importing", lambda progress: service.import_(str(file), progress))
    out.print(f"imported {imported} items ({already} were already there)")


@app.command()
def migrate(
    to: Annotated[
        str, typer.Option("--to", help="Target: a Milvus server URI (http://host:19530) or another .db file.")
    ],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Source database (default --db / LOOKALIKE_DB, i.e. ./lookalike.db)."),
    ] = None,
    collection: Collection = None,
    to_collection: Annotated[
        str | None, typer.Option("--to-collection", help="Collection name on the target (default: the same).")
    ] = None,
    bulk_dir: Annotated[
        str | None,
        typer.Option(
            "--bulk-dir",
            help="For large collections: write one Parquet file per month here and let the server bulk-import "
            "them instead of inserting rows. The server must be able to read this folder (same machine with "
            "local storage, or its object-storage mount); the target collection must be new or empty.",
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Copy a collection (vectors, metadata, monthly partitions, index choice, model) to another Milvus.

    Typically from the embedded Milvus Lite file to a server. Nothing is re-embedded; items the target
    already holds are skipped, so an interrupted migration resumes when run again. Credentials and TLS
    for the target come from LOOKALIKE_TOKEN / _USER / _PASSWORD and LOOKALIKE_TLS_*.
    """
    with session(verbose, from_, collection, None, None) as service:
        copied, already = counted(
            "copying",
            lambda progress: service.migrate(to, to_collection, progress, bulk_dir=bulk_dir),
            total=service.store.count(),
        )
    out.print(f"copied {copied} items to {to} ({already} were already there)")
