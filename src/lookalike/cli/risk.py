"""Risk control: classify, scan, partitions, duplicates."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from lookalike.cli.common import (
    Collection,
    Db,
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
    tagged,
)

partitions_app = typer.Typer(
    help="List monthly partitions, or drop old months in one call.", no_args_is_help=True
)
app.add_typer(partitions_app, name="partitions")

Labels = Annotated[
    Path,
    typer.Option(
        "--labels",
        help="TOML label set: [labels.NAME] with prompts = [...], optional threshold and negative_prompts.",
    ),
]
Sources = Annotated[list[str] | None, typer.Option("--source", help="Only these sources (repeatable).")]


@app.command()
def classify(
    images: Annotated[list[str], typer.Argument(help="Image files or URLs to classify.")],
    labels: Labels,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    model: Model = None,
    pretrained: Pretrained = None,
    runtime: Runtime = None,
    verbose: Verbose = False,
) -> None:
    """Zero-shot classify images: each label's cosine, softmax probability and whether it matches."""
    with session(verbose, None, None, model, pretrained, runtime=runtime) as service:
        label_set, results = service.classify(images, str(labels))
    payload = []
    for result in results:
        if result.scores is None:
            err.print(tagged("skipped", "yellow", f"{result.uri}: {result.error}"))
            payload.append({"image": result.uri, "error": result.error})
            continue
        rows = [
            {
                "label": name,
                "score": round(float(result.scores.cosine[0, i]), 6),
                "probability": round(float(result.scores.probability[0, i]), 6),
                "match": bool(result.scores.matched[0, i]),
            }
            for i, name in enumerate(label_set.names)
        ]
        payload.append({"image": result.uri, "labels": rows})
        if not as_json:
            table = Table(title=result.uri, title_justify="left")
            for column in ("label", "cosine", "probability", "decision"):
                table.add_column(column, justify="left" if column in ("label", "decision") else "right")
            for row in sorted(rows, key=lambda r: -float(r["score"])):
                decision = Text("match", style="bold red") if row["match"] else "-"
                table.add_row(str(row["label"]), f"{row['score']:.4f}", f"{row['probability']:.3f}", decision)
            out.print(table)
    if as_json:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    if all(result.scores is None for result in results):
        raise typer.Exit(1)


@app.command()
def scan(
    labels: Labels,
    report: Annotated[Path, typer.Option("--out", help="Report file: .csv, .json or .html (a gallery).")],
    since: Annotated[
        str | None, typer.Option(help="Items created on or after this day (YYYY-MM-DD, UTC).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Items created on or before this day (YYYY-MM-DD, UTC).")
    ] = None,
    source: Sources = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            help="Report every item whose best cosine reaches this, instead of the labels' own thresholds."
        ),
    ] = None,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    runtime: Runtime = None,
    verbose: Verbose = False,
) -> None:
    """Score every stored image in a time window against a label set and write a report.

    Uses the stored vectors only (nothing is decoded or re-embedded) and reads only the
    monthly partitions the window needs; every item in the window is scored, none sampled.
    """
    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    with (
        session(verbose, db, collection, model, pretrained, runtime=runtime) as service,
        progress_bar() as bar,
    ):
        task = bar.add_task("scanning", total=None, rate="")
        total, written = service.scan_report(
            str(labels),
            str(report),
            sources=source or (),
            since=first,
            until=last,
            min_score=min_score,
            on_start=lambda n: bar.update(task, total=n),
            progress=lambda n: bar.update(task, advance=n),
        )
    out.print(f"scanned {total} items; {written} rows written to {report}")


@partitions_app.command("list")
def partitions_list(db: Db = None, collection: Collection = None, verbose: Verbose = False) -> None:
    """Each partition with its item count and the dates it covers."""
    with session(verbose, db, collection, None, None) as service:
        partitions = service.partitions()
    table = Table()
    for column in ("partition", "items", "from", "to"):
        table.add_column(column, justify="right" if column == "items" else "left")
    for partition in partitions:
        first = day(partition.start) if partition.start is not None else ""
        last = day(partition.end - 1) if partition.end is not None else ""
        table.add_row(partition.name, str(partition.rows), first, last)
    out.print(table)


@partitions_app.command("drop")
def partitions_drop(
    before: Annotated[str, typer.Option(help="Drop whole months that end before this day (YYYY-MM-DD).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Drop the monthly partitions strictly older than a day, with all their items. Newer data is never touched."""
    cutoff = parse_day(before, "--before")
    assert cutoff is not None
    with session(verbose, db, collection, None, None) as service:
        doomed = service.partitions_before(cutoff)
        if not doomed:
            out.print(f"no whole month ends before {cutoff}; nothing dropped")
            return
        rows = sum(p.rows for p in doomed)
        names = ", ".join(p.name for p in doomed)
        out.print(f"about to drop {len(doomed)} partitions ({names}) holding {rows} items")
        if not yes and not _confirm("Drop them?"):
            err.print("nothing dropped (pass --yes to drop without being asked)")
            raise typer.Exit(1)
        service.drop_partitions([p.name for p in doomed])
    out.print(f"dropped {len(doomed)} partitions, {rows} items")


def _confirm(question: str) -> bool:
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:  # no terminal to answer, or Ctrl-C / Ctrl-D
        return False


@app.command()
def duplicates(
    report: Annotated[Path, typer.Option("--out", help="Report file: .json, .csv or .html (a gallery).")],
    threshold: Annotated[
        float, typer.Option(help="Cosine from which two different files count as the same picture.")
    ] = 0.95,
    source: Sources = None,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Find reused images: byte-identical copies (exact) and resized, recompressed or cropped ones (near)."""
    with session(verbose, db, collection, None, None) as service:
        groups = counted(
            "reading vectors",
            lambda progress: service.duplicates_report(
                str(report), threshold=threshold, sources=source or (), progress=progress
            ),
        )
    exact = sum(1 for g in groups if g.kind == "exact")
    out.print(f"{len(groups)} groups ({exact} exact, {len(groups) - exact} near) written to {report}")
