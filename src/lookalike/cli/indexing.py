"""Index, stats, export, import and migrate."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lookalike.cli.common import (
    AsJson,
    Collection,
    Db,
    DetectMinScore,
    DetectorWeights,
    Model,
    Pretrained,
    Runtime,
    Verbose,
    app,
    counted,
    err,
    errors,
    out,
    print_json,
    progress_bar,
    served,
    session,
    summary,
    table,
    tagged,
)
from lookalike.errors import ConfigError

if TYPE_CHECKING:
    from lookalike.ingest import IngestReport


@app.command()
def index(
    path: Annotated[
        str,
        typer.Argument(
            help="A folder (recursive), an image file, or a .csv/.parquet catalog; local, or in S3-compatible "
            "storage as s3://bucket/prefix (credentials, region and AWS_ENDPOINT_URL from the AWS variables)."
        ),
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
            help="Also detect objects: each box above --detect-min-score and 32 px becomes its own item "
            "(parent sha256, box, label, score) beside the whole image.",
        ),
    ] = False,
    detector_weights: DetectorWeights = None,
    detect_min_score: DetectMinScore = None,
    sync: Annotated[
        bool,
        typer.Option(
            "--sync",
            help="Mirror this folder or catalog: delete its items that are no longer listed, replace an item "
            "whose image changed, update a changed name, date, category or tags without re-embedding. A "
            "folder's scope is its source under that folder; a catalog's, the sources its rows name (and --source).",
        ),
    ] = False,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run the stages on Ray Data: list, read, hash and decode as tasks, the model in an actor pool "
            "(one GPU per actor where the cluster has GPUs). Needs pip install 'lookalike[ray]'.",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="With --ray: the cluster to join (auto, or ray://host:10001); default: $RAY_ADDRESS, else "
            "a local Ray instance on this machine. Workers read the images themselves: give s3:// or URLs.",
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(
            "--actors", min=1, help="With --ray: model actors (default: one per GPU, else one per 4 CPUs)."
        ),
    ] = None,
    writers: Annotated[
        int | None,
        typer.Option(
            "--writers",
            min=1,
            max=64,
            help="With --ray into a Milvus server: writer actors upserting in parallel, one connection each "
            "(default 2). Milvus Lite has one writer, this process.",
        ),
    ] = None,
    bulk: Annotated[
        str | None,
        typer.Option(
            "--bulk",
            metavar="FOLDER",
            help="With --ray into a new (or empty) collection on a Milvus server: the writers write Parquet "
            "files (one per month each) into FOLDER, which the server loads with its bulk import at the end. "
            "FOLDER must be readable by the server (the same machine with local storage, or its storage's "
            "mount). Not with --sync.",
        ),
    ] = None,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    runtime: Runtime = None,
    verbose: Verbose = False,
) -> None:
    """Index images: embed every new image and store it; files already indexed are skipped.

    Catalog columns: image (path relative to the catalog, s3:// object or http(s) URL), item_id, name,
    category, tags (separated by a vertical bar, red|sale; a list column in Parquet), source,
    created_at (ISO date, YYYYMMDD, unix seconds or milliseconds; default: the file's modification
    time).
    Unreadable or corrupt files are skipped and listed at the end.
    """
    from lookalike.queries import parse_index_params
    from lookalike.usecases import ingest

    with errors(verbose):
        params = parse_index_params(index_params)  # before the model loads
        ingest.check_source(source)
        on_ray = _on_ray(
            ray, ray_address, actors, batch_size, detect, writers, bulk, sync
        )  # before the model
        ingest.check_path(path)  # a missing path, an empty or malformed catalog: before the model loads
    with (
        session(
            verbose,
            db,
            collection,
            model,
            pretrained,
            runtime=runtime,
            batch_size=batch_size,
            detector_weights=detector_weights,
            detect_min_score=detect_min_score,
        ) as ctx,
        served(ctx) as server,
        progress_bar() as bar,
    ):
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

        if server is not None:
            if on_ray is not None:
                raise ConfigError(
                    "--ray writes the database from this process, and `lookalike serve` holds it: "
                    "stop the server, or index without --ray."
                )
            through = _through_server(path, index_type, params, sync)
            report = server.index(
                [through], source=source, detect=detect, on_start=on_start, progress=advance
            )
        else:
            report = ingest.index(
                ctx,
                path,
                source=source,
                index=index_type,
                index_params=params,
                on_start=on_start,
                progress=advance,
                detect=detect,
                sync=sync,
                on_ray=on_ray,
            )
    if as_json:
        print_json(report_dict(report))
    else:
        print_report(report, detect, sync)
    if report.indexed == 0 and report.already_indexed == 0 and report.skipped:
        raise typer.Exit(1)


def _on_ray(
    ray: bool,
    address: str | None,
    actors: int | None,
    batch_size: int | None,
    detect: bool,
    writers: int | None = None,
    bulk: str | None = None,
    sync: bool = False,
) -> Any:
    """The --ray options as the use case takes them, or None; refused now where they cannot run."""
    from lookalike.usecases import ingest

    if not ray:
        given = {"--ray-address": address, "--actors": actors, "--writers": writers, "--bulk": bulk}
        for name, value in given.items():
            if value is not None:
                raise ConfigError(f"{name} goes with --ray.")
        return None
    if detect:
        raise ConfigError("--detect is not offered with --ray: index without --ray to detect objects.")
    if bulk is not None and sync:
        raise ConfigError("--bulk loads a new collection; --sync changes one: index with one or the other.")
    ingest.check_ray()
    return ingest.OnRay(address, actors, batch_size, writers or ingest.WRITERS, bulk)


def _through_server(path: str, index_type: str, params: dict[str, Any] | None, sync: bool) -> str:
    """What POST /index is asked to read: the path as the server sees it (absolute), or the URL."""
    if sync or params or index_type.upper() != "HNSW":
        given = "--sync" if sync else "--index-params" if params else "--index"
        raise ConfigError(
            f"{given} is not offered by the API of `lookalike serve`, which holds this database: index "
            "without it, or stop the server and run this command again."
        )
    return path if "://" in path else str(Path(path).expanduser().resolve())


def print_report(report: IngestReport, detect: bool, sync: bool) -> None:
    crops = f", {report.crops} detected objects" if detect else ""
    blocked = f" ({report.blocked} blocked)" if report.blocked else ""
    blocked += f"; {report.flagged} flagged for review" if report.flagged else ""
    if sync:
        line = (
            f"synced: {report.added} added, {report.updated} updated, {report.replaced} replaced, "
            f"{report.deleted} deleted, {report.left} left as they were, {report.kept} kept: could not read"
            f"{crops}, {len(report.skipped)} skipped{blocked}, in {report.elapsed_s:.1f} s"
        )
    else:
        line = (
            f"indexed {report.indexed} new images{crops}, {report.already_indexed} already indexed, "
            f"{len(report.skipped)} skipped{blocked}, in {report.elapsed_s:.1f} s ({report.images_per_s:.1f} img/s)"
        )
    out.print(line, highlight=False, markup=False)
    if report.skipped:
        rows = [[skipped.uri, skipped.reason] for skipped in report.skipped]
        table("skipped files", [("file", "left"), ("reason", "left")], rows, console=err)
    for alert in report.alerts:
        err.print(tagged("alert:", "bold yellow", alert))


def report_dict(report: IngestReport) -> dict[str, Any]:
    return {
        "indexed": report.indexed,
        "already_indexed": report.already_indexed,
        "crops": report.crops,
        "added": report.added,
        "updated": report.updated,
        "replaced": report.replaced,
        "deleted": report.deleted,
        "left": report.left,
        "kept": report.kept,
        "blocked": report.blocked,
        "flagged": report.flagged,
        "skipped": [{"uri": s.uri, "reason": s.reason} for s in report.skipped],
        "alerts": report.alerts,
        "elapsed_s": round(report.elapsed_s, 3),
        "images_per_s": round(report.images_per_s, 3),
    }


@app.command()
def stats(
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Show the collection: model, index, and item counts per partition (month) and per source."""
    from lookalike.usecases import items

    with session(verbose, db, collection, None, None) as ctx, served(ctx) as server:
        info = server.stats() if server is not None else items.stats_row(items.stats(ctx))
    info["db"] = ctx.settings.db
    if as_json:
        print_json(info, default=str)  # as GET /stats answers, and where the database is
        return
    params = info["index_params"]
    summary(
        f"collection {info['name']} in {info['db']}: {info['rows']} items, dim {info['dim']}, "
        f"index {info['index_type']} {json.dumps(params) if params else ''}, model {info['model'] or 'unknown'}"
    )
    if info.get("search") is not None:
        summary(search_note(info["search"]))  # the recall promise and its last measurement
    partitions = [[p["name"], str(p["rows"])] for p in info["partitions"]]
    sources = [[name, str(count)] for name, count in info["sources"].items()]
    if not out.is_terminal:  # for scripts: one table, each row saying what it counts
        rows = [["partition", *row] for row in partitions] + [["source", *row] for row in sources]
        table(None, [("of", "left"), ("name", "left"), ("items", "right")], rows)
        return
    table("partitions", [("partition", "left"), ("items", "right")], partitions)
    table("sources", [("source", "left"), ("items", "right")], sources)


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="Parquet file to write (every field and the vector).")],
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Write the whole collection, vectors included, to a Parquet file."""
    from lookalike.usecases import backup

    with session(verbose, db, collection, None, None) as ctx, served(ctx) as server:
        if server is not None:
            rows = server.export(file)
        else:
            rows = counted("exporting", lambda progress: backup.export(ctx, str(file), progress))
    out.print(f"exported {rows} items to {file}")


@app.command(name="import")
def import_(
    file: Annotated[Path, typer.Argument(help="Parquet file written by `lookalike export`.")],
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Restore a Parquet export into a collection, without re-embedding; items already there are kept.

    A file that is not a lookalike export (missing columns, an id column that is not integers,
    vectors that are not lists of numbers, no vector size, a size other than the collection's) is
    refused before anything is written. A row that cannot be stored as it is (a vector with NaN or
    infinite values, all zeros, of absurd length (outside 1e-6 .. 1e6) or of the wrong size; an id
    outside 0 .. 2^63-1; a date outside 1970 .. 2199; a source or item_id over its byte limit) is
    left out, the others are imported, and the command ends with exit status 2 counting the rows
    left out by reason, with their ids. Vectors that are not unit length are normalised.
    """
    from lookalike.usecases import backup

    with session(verbose, db, collection, None, None) as ctx:
        imported, already = counted("importing", lambda progress: backup.import_(ctx, str(file), progress))
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
    from lookalike.usecases import backup

    with session(verbose, from_, collection, None, None) as ctx:
        copied, already = counted(
            "copying",
            lambda progress: backup.migrate(ctx, to, to_collection, progress, bulk_dir=bulk_dir),
            total=ctx.store.count(),
        )
    out.print(f"copied {copied} items to {to} ({already} were already there)")


def search_note(search: dict[str, Any]) -> str:
    """One line on how searches keep their recall promise (``ReadIndex.recall_summary``)."""
    if search["exact"]:
        return "search: exact (FLAT: every row scored)"
    parts = []
    for graph in search["graphs"]:
        if not graph["sample"]:
            how = "every row scored" if graph["scanned"] else f"breadth {graph['ef']}, not measured"
        else:
            when = datetime.fromtimestamp(graph["measured_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
            walk = "every row scored" if graph["scanned"] else f"breadth {graph['ef']}"
            how = (
                f"{walk}: recall@10 measured {graph['recall_at_10']:.4f} (95% bound "
                f"{graph['recall_at_10_bound']:.4f}) on {graph['sample']} held-out rows at "
                f"{graph['measured_rows']} rows, {when}"
            )
        month = graph.get("month")
        if month:
            walk = "every row scored" if month["ef"] == 0 else f"breadth {month['ef']}"
            how += (
                f"; a month ({month['share']:.0%} of it): {walk}, recall@10 {month['recall_at_10']:.4f} "
                f"(bound {month['recall_at_10_bound']:.4f})"
            )
        parts.append(f"graph of {graph['live']} items, {how}")
    if search["exact_rows"]:
        parts.append(f"{search['exact_rows']} recent items scored exactly")
    return f"search: recall@10 >= {search['target_recall_at_10']} promised; " + "; ".join(
        parts or ["no items"]
    )
