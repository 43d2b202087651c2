"""Risk control: classify, scan, partitions, duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lookalike.cli.common import (
    AsJson,
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
    errors,
    identities,
    out,
    parse_day,
    parse_window,
    print_json,
    progress_bar,
    session,
    table,
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
Sources = Annotated[
    list[str] | None,
    typer.Option(
        "--source", help="Only these sources (repeatable).", callback=identities("source", "--source")
    ),
]


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
    from lookalike.usecases import risk

    with errors(verbose):  # before a model loads
        specs = risk.load_labels(str(labels))
        risk.check_images(images)
    with session(verbose, None, None, model, pretrained, runtime=runtime) as ctx:
        label_set, results = risk.classify(ctx, images, specs)
    payload: list[dict[str, Any]] = []
    columns = [("label", "left"), ("cosine", "right"), ("probability", "right"), ("decision", "left")]
    piped: list[list[str]] = []  # in a pipe, one TSV table with the image in its first column
    for result in results:
        if result.scores is None:
            err.print(tagged("skipped", "yellow", f"{result.uri}: {result.error}"))
            payload.append({"image": result.uri, "error": result.error})
            continue
        rows: list[dict[str, Any]] = [
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
            cells = [
                [
                    str(row["label"]),
                    f"{row['score']:.4f}",
                    f"{row['probability']:.3f}",
                    "match" if row["match"] else "-",
                ]
                for row in sorted(rows, key=lambda r: -float(r["score"]))
            ]
            if out.is_terminal:
                table(result.uri, columns, cells)
            else:
                piped += [[result.uri, *cell] for cell in cells]
    if as_json:
        print_json(payload)
    elif piped:
        table(None, [("image", "left"), *columns], piped)
    if all(result.scores is None for result in results):
        raise typer.Exit(1)


@app.command()
def scan(
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="TOML label set: [labels.NAME] with prompts = [...], optional threshold and negative_prompts.",
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--out", help="Report file: .csv, .json or .html (a gallery).")
    ] = None,
    policy: Annotated[
        str | None, typer.Option("--policy", help="Score against this stored policy instead of --labels.")
    ] = None,
    flag: Annotated[
        bool,
        typer.Option("--flag", help="With --policy: raise a flag for every match (see `lookalike flags`)."),
    ] = False,
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
    `--policy NAME --flag` flags the stored images that match a policy, as ingest does for new ones.
    """
    from lookalike.usecases import policies, risk

    if (labels is None) == (policy is None):
        raise typer.BadParameter("give either --labels FILE or --policy NAME.")
    if flag and policy is None:
        raise typer.BadParameter("--flag needs --policy NAME (flags belong to a policy).")
    if flag and (report is not None or min_score is not None):
        raise typer.BadParameter(
            "--flag uses the policy's thresholds and writes flags, not --out or --min-score."
        )
    if not flag and report is None:
        raise typer.BadParameter("give --out REPORT, or --policy NAME --flag.")
    first, last = parse_window(since, until)
    with errors(verbose):  # before a model loads
        specs = risk.load_labels(str(labels)) if labels is not None else None
    with (
        session(verbose, db, collection, model, pretrained, runtime=runtime) as ctx,
        progress_bar() as bar,
    ):
        task = bar.add_task("scanning", total=None, rate="")
        if flag:
            assert policy is not None
            total, added = policies.scan_and_flag(
                ctx,
                policy,
                sources=source or (),
                since=first,
                until=last,
                progress=lambda n: bar.update(task, advance=n),
            )
            bar.stop()
            out.print(f"scanned {total} items; {added} new flags for policy {policy}")
            return
        assert report is not None
        chosen = specs if specs is not None else policies.specs(ctx.workflow.policy(str(policy)))
        total, written = risk.scan_report(
            ctx,
            chosen,
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
def partitions_list(
    as_json: AsJson = False, db: Db = None, collection: Collection = None, verbose: Verbose = False
) -> None:
    """Each partition with its item count and the dates it covers."""
    from lookalike.usecases import risk

    with session(verbose, db, collection, None, None) as ctx:
        partitions = risk.partitions(ctx)
    rows = []
    for partition in partitions:
        first = day(partition.start) if partition.start is not None else ""
        last = day(partition.end - 1) if partition.end is not None else ""
        rows.append([partition.name, str(partition.rows), first, last])
    if as_json:  # as GET /partitions answers
        keys = ("name", "rows", "first_day", "last_day")
        payload = [dict(zip(keys, [r[0], int(r[1]), r[2] or None, r[3] or None], strict=True)) for r in rows]
        print_json(payload)
        return
    table(None, [("partition", "left"), ("items", "right"), ("from", "left"), ("to", "left")], rows)


@partitions_app.command("drop")
def partitions_drop(
    before: Annotated[
        str | None, typer.Option(help="Drop whole months that end before this day (YYYY-MM-DD).")
    ] = None,
    names: Annotated[
        list[str] | None,
        typer.Option("--name", help="Drop this partition by name, e.g. m9999_12 (repeatable)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Drop monthly partitions with all their items: those strictly older than --before, or --name ones.

    Newer data is never touched. --name also removes a partition no date can reach (one an old
    version created for a row dated in year 9999, say).
    """
    if (before is None) == (not names):
        raise typer.BadParameter("give either --before DAY or --name PARTITION.")
    cutoff = parse_day(before, "--before")
    from lookalike.usecases import risk

    with session(verbose, db, collection, None, None) as ctx:
        if names:
            known = {p.name: p for p in risk.partitions(ctx)}
            missing = [name for name in names if name not in known or name == "_default"]
            if missing:
                raise typer.BadParameter(f"no such partition: {', '.join(missing)}", param_hint="--name")
            doomed = [known[name] for name in names]
        else:
            assert cutoff is not None
            doomed = risk.partitions_before(ctx, cutoff)
        if not doomed:
            out.print(f"no whole month ends before {cutoff}; nothing dropped")
            return
        rows = sum(p.rows for p in doomed)
        listed = ", ".join(p.name for p in doomed)
        out.print(f"about to drop {len(doomed)} partitions ({listed}) holding {rows} items")
        if not yes and not _confirm("Drop them?"):
            err.print("nothing dropped (pass --yes to drop without being asked)")
            raise typer.Exit(1)
        risk.drop_partitions(ctx, [p.name for p in doomed])
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
    by: Annotated[
        str, typer.Option("--by", help="vector: CLIP cosine; pdq: PDQ perceptual hash distance.")
    ] = "vector",
    max_distance: Annotated[
        int, typer.Option(help="With --by pdq: Hamming distance (bits) from which pictures differ.")
    ] = 31,
    source: Sources = None,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Find reused images: byte-identical copies (exact) and resized, recompressed or cropped ones (near).

    Groups do not chain: each has a representative (its first item) and every member is within
    the threshold of it. Crops are compared with crops; a reused picture's crops join its group.
    """
    from lookalike.usecases import risk

    with session(verbose, db, collection, None, None) as ctx:
        groups = counted(
            "reading vectors",
            lambda progress: risk.duplicates_report(
                ctx,
                str(report),
                threshold=threshold,
                sources=source or (),
                progress=progress,
                by=by,
                max_distance=max_distance,
            ),
        )
    exact = sum(1 for g in groups if g.kind == "exact")
    crop = sum(1 for g in groups if g.kind == "crop")
    summary = f"{exact} exact, {len(groups) - exact - crop} near" + (f", {crop} crop" if crop else "")
    out.print(f"{len(groups)} groups ({summary}) written to {report}")
