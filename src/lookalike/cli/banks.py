"""PDQ hashes of files, and hash banks: create, list, switch, fill, empty, exchange, resume after a flood."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lookalike.cli.common import (
    AsJson,
    Collection,
    Db,
    Verbose,
    app,
    day,
    err,
    errors,
    out,
    print_json,
    session,
    table,
    tagged,
)

bank_app = typer.Typer(
    help=(
        "Hash banks: lists of PDQ hashes that new pictures are matched against at ingest (block: flag or "
        "refuse them; allow: suppress block matches). The block list of take-downs is the bank 'takedowns'."
    ),
    no_args_is_help=True,
)
app.add_typer(bank_app, name="bank")

By = Annotated[str | None, typer.Option("--by", help="Who makes the change, for the audit (default: $USER).")]
Note = Annotated[str, typer.Option(help="Why, for the audit.")]
BankName = Annotated[str, typer.Argument(help="The bank's name.")]
Labels = Annotated[
    list[str] | None, typer.Option("--label", help="A label (no spaces or commas; repeatable).")
]
Format = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="tx (threatexchange signal file: 'pdq HASH' lines), csv (tx dataset --csv) or te "
        "(tx simple.TYPE.te). Default: by the file's suffix (.csv, .te), else tx.",
    ),
]


def who(by: str | None) -> str:
    import getpass

    try:
        return by if by is not None else getpass.getuser()
    except (KeyError, OSError):  # no login name to be found: say who you are
        raise typer.BadParameter("give your name with --by NAME.") from None


@app.command("hash")
def hash_files(
    files: Annotated[list[str], typer.Argument(help="Image files or URLs.")],
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Print each picture's PDQ hash (64 hex digits, the reference bit order of pdqhash and threatexchange)
    and its quality (0-100; below 50 the hash is not to be matched on)."""
    from lookalike.usecases import banks

    with session(verbose, None, None, None, None) as ctx:
        found = banks.hash_files(ctx, files)
    for hashed in found:
        if hashed.error:
            err.print(tagged("skipped", "yellow", f"{hashed.uri}: {hashed.error}"))
    good = [h for h in found if not h.error]
    if as_json:
        print_json([{"file": h.uri, "pdq": h.pdq, "quality": h.quality} for h in good])
    else:
        table(
            None,
            [("pdq", "left"), ("quality", "right"), ("file", "left")],
            [[h.pdq, str(h.quality), h.uri] for h in good],
        )
    if not good:
        raise typer.Exit(1)


@bank_app.command("create")
def bank_create(
    name: BankName,
    kind: Annotated[
        str,
        typer.Option(help="block: matches are flagged or refused; allow: matches suppress block matches."),
    ] = "block",
    action: Annotated[
        str | None,
        typer.Option(
            help="For a block bank: flag (store and flag for review) or refuse (do not store; flag the attempt)."
        ),
    ] = None,
    max_distance: Annotated[
        int, typer.Option(help="PDQ distance (bits) that still counts as a match (PDQ recommends 31).")
    ] = 31,
    label: Labels = None,
    by: By = None,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Create a bank."""
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        bank = banks.create(
            ctx, name, kind=kind, action=action, max_distance=max_distance, labels=label or (), by=who(by)
        )
    out.print(f"bank {bank.name} created ({bank.kind}, {bank.action}, max distance {bank.max_distance})")


@bank_app.command("list")
def bank_list(
    as_json: AsJson = False, db: Db = None, collection: Collection = None, verbose: Verbose = False
) -> None:
    """The banks: kind, action, on or off, distance, labels, entries (and entries paused by a flood)."""
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        found = banks.listed(ctx)
    payload = [
        {
            "name": b.bank.name,
            "kind": b.bank.kind.value,
            "action": b.bank.action.value,
            "enabled": b.bank.enabled,
            "max_distance": b.bank.max_distance,
            "labels": list(b.bank.labels),
            "entries": b.entries,
            "paused": b.paused,
            "created": day(b.bank.created_at),
        }
        for b in found
    ]
    if as_json:
        print_json(payload)
        return
    columns = [("bank", "left"), ("kind", "left"), ("action", "left"), ("on", "left"), ("distance", "right")]
    columns += [("entries", "right"), ("paused", "right"), ("labels", "left")]
    rows = [
        [
            str(p["name"]),
            str(p["kind"]),
            str(p["action"]),
            "on" if p["enabled"] else "off",
            str(p["max_distance"]),
            str(p["entries"]),
            str(p["paused"]),
            " ".join(b.bank.labels),
        ]
        for p, b in zip(payload, found, strict=True)
    ]
    table(None, columns, rows)


@bank_app.command("show")
def bank_show(
    name: BankName,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """A bank's entries, oldest first: id, PDQ hash, SHA-256, labels, who added them and why."""
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        total, shown = banks.entries(ctx, name, limit=limit, offset=offset)
    payload = [
        {
            "entry": e.id,
            "pdq": e.pdq or None,
            "sha256": e.sha256 or None,
            "labels": list(e.labels),
            "added": day(e.added_at),
            "by": e.added_by,
            "note": e.note,
            "flag": e.flag,
            "item_id": e.subject.item_id if e.subject else None,
            "source": e.subject.source if e.subject else None,
            "uri": e.subject.uri if e.subject else None,
            "paused": e.paused_at is not None,
        }
        for e in shown
    ]
    if as_json:
        print_json({"total": total, "entries": payload})
        return
    columns = [
        ("entry", "right"),
        ("pdq", "left"),
        ("sha256", "left"),
        ("added", "left"),
        ("by", "left"),
        ("note", "left"),
    ]
    rows = [
        [
            str(p["entry"]),
            str(p["pdq"] or ""),
            str(p["sha256"] or ""),
            str(p["added"]),
            str(p["by"]),
            str(p["note"]) + (" (paused)" if p["paused"] else ""),
        ]
        for p in payload
    ]
    table(None, columns, rows, caption=f"{len(rows)} of {total} entries")


def _switch(
    name: str, enabled: bool, by: str | None, note: str, db: str | None, collection: str | None, verbose: bool
) -> None:
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        bank = banks.switch(ctx, name, enabled=enabled, by=who(by), note=note)
    out.print(f"bank {bank.name} {'enabled' if bank.enabled else 'disabled'}")


@bank_app.command("enable")
def bank_enable(
    name: BankName,
    by: By = None,
    note: Note = "",
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Match new pictures against this bank again."""
    _switch(name, True, by, note, db, collection, verbose)


@bank_app.command("disable")
def bank_disable(
    name: BankName,
    by: By = None,
    note: Note = "",
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Stop matching against this bank (its entries are kept)."""
    _switch(name, False, by, note, db, collection, verbose)


@bank_app.command("set")
def bank_set(
    name: BankName,
    max_distance: Annotated[
        int | None, typer.Option(help="PDQ distance (bits) that still counts as a match.")
    ] = None,
    action: Annotated[str | None, typer.Option(help="flag or refuse.")] = None,
    label: Labels = None,
    by: By = None,
    note: Note = "",
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Change a bank's distance, action or labels."""
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        bank = banks.configure(
            ctx, name, by=who(by), max_distance=max_distance, action=action, labels=label, note=note
        )
    out.print(
        f"bank {bank.name}: {bank.kind}, {bank.action}, max distance {bank.max_distance}, labels {' '.join(bank.labels) or '-'}"
    )


@bank_app.command("add")
def bank_add(
    name: BankName,
    values: Annotated[
        list[str], typer.Argument(help="PDQ hashes (64 hex digits), or image files or URLs to hash.")
    ],
    label: Labels = None,
    by: By = None,
    note: Note = "",
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Put hashes in a bank: given as hashes, or hashed from pictures (quality 50 or more)."""
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        done = banks.add(ctx, name, values, labels=label or (), note=note, by=who(by))
    for hashed in done.skipped:
        err.print(tagged("skipped", "yellow", f"{hashed.uri}: {hashed.error}"))
    for hashed in done.low_quality:
        err.print(tagged("skipped", "yellow", f"{hashed.uri}: PDQ quality {hashed.quality} is below 50"))
    out.print(f"{done.added} added to bank {name}, {done.already} already there")
    if not done.added and not done.already:
        raise typer.Exit(1)


@bank_app.command("remove")
def bank_remove(
    name: BankName,
    targets: Annotated[list[str], typer.Argument(help="Entry ids, PDQ hashes or SHA-256 digests.")],
    by: By = None,
    note: Note = "",
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Take entries out of a bank; every removal is an audit record. Lifting a take-down's block is
    `lookalike bank remove takedowns ENTRY --note WHY`."""
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        removed = banks.remove(ctx, name, targets, by=who(by), note=note)
    for entry in removed:
        what = (
            f" (taken down with flag {entry.flag}: {entry.subject.uri})"
            if entry.flag is not None and entry.subject
            else ""
        )
        out.print(f"entry {entry.id} removed from bank {name}{what}")


@bank_app.command("import")
def bank_import(
    name: BankName,
    file: Annotated[
        Path, typer.Argument(help="A threatexchange hash file: tx signal file, tx dataset CSV or .te.")
    ],
    fmt: Format = None,
    by: By = None,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Import PDQ hashes from a file python-threatexchange writes (`tx hash`, `tx dataset -P --csv`, the
    local-file exchange, .te state files): checked whole first, so a bad line imports nothing."""
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        done = banks.import_(ctx, name, str(file), fmt=fmt, by=who(by))
    for kind, count in sorted(done.other_types.items()):
        err.print(tagged("skipped", "yellow", f"{count} {kind} signals (not PDQ)"))
    if done.contrary:
        err.print(
            tagged("skipped", "yellow", f"{done.contrary} signals whose category contradicts the bank's kind")
        )
    out.print(f"imported {done.added} hashes into bank {name}, {done.already} already there")


@bank_app.command("export")
def bank_export(
    name: BankName,
    file: Annotated[Path, typer.Argument(help="The file to write.")],
    fmt: Format = None,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Write a bank's PDQ hashes in a format python-threatexchange reads."""
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        written = banks.export(ctx, name, str(file), fmt=fmt)
    out.print(f"exported {written} hashes of bank {name} to {file}")


@bank_app.command("alerts")
def bank_alerts(
    open_only: Annotated[bool, typer.Option("--open", help="Only alerts nobody resolved.")] = False,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Floods: entries that matched too many uploads within the window, whose refusals are paused."""
    from lookalike.usecases import banks

    with session(verbose, db, collection, None, None) as ctx:
        found = banks.alerts(ctx, open_only=open_only)
    payload = [
        {
            "id": a.id,
            "at": day(a.at),
            "bank": a.bank,
            "entry": a.entry,
            "matches": a.matches,
            "message": a.message,
            "resolved_by": a.resolved_by,
        }
        for a in found
    ]
    if as_json:
        print_json(payload)
        return
    rows = [
        [
            str(p["id"]),
            str(p["at"]),
            str(p["bank"]),
            str(p["entry"]),
            str(p["resolved_by"] or "open"),
            str(p["message"]),
        ]
        for p in payload
    ]
    table(
        None,
        [
            ("alert", "right"),
            ("day", "left"),
            ("bank", "left"),
            ("entry", "right"),
            ("status", "left"),
            ("message", "left"),
        ],
        rows,
    )


@bank_app.command("resume")
def bank_resume(
    name: BankName,
    entry: Annotated[int, typer.Argument(help="The paused entry's id (see `lookalike bank alerts`).")],
    by: By = None,
    note: Note = "",
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Lift a flood's pause: the entry's matches are refused again; its alerts are resolved."""
    from lookalike.usecases import banks

    with errors(verbose):
        if entry < 0 or entry >= 2**63:
            raise typer.BadParameter("an entry id is a positive 64-bit integer.")
    with session(verbose, db, collection, None, None) as ctx:
        banks.resume(ctx, name, entry, by=who(by), note=note)
    out.print(f"entry {entry} of bank {name} resumed")
