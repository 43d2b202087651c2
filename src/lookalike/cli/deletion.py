"""Delete items and erase their bytes: delete, compact."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from lookalike.cli.common import (
    Collection,
    Db,
    Verbose,
    app,
    day,
    err,
    identities,
    out,
    parse_window,
    print_json,
    served,
    session,
    table,
)

SHOWN = 20
"""Items listed before asking; the rest are counted."""


@app.command()
def delete(
    ids: Annotated[list[int] | None, typer.Option("--id", help="A stored item's id (repeatable).")] = None,
    item_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--item-id",
            help="A catalog item id / file stem (repeatable).",
            callback=identities("item_id", "--item-id"),
        ),
    ] = None,
    sources: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="Every item of this source (repeatable).",
            callback=identities("source", "--source"),
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Items created on or after this day (YYYY-MM-DD, UTC).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Items created on or before this day (YYYY-MM-DD, UTC).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    purge: Annotated[
        bool,
        typer.Option(
            "--purge", help="Also rewrite storage so the deleted items' bytes leave every file (compact)."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print JSON: {"deleted": N, "ids": [...]}.')
    ] = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Delete items: by id, catalog item id, source and/or date window (all given must match).

    Prints what it will delete and asks first (--yes skips the question). Deleted items vanish
    from every search, export and scan at once; --purge (or `lookalike compact` later) also
    erases their bytes from the database files, for requests such as GDPR erasure.
    """
    first, last = parse_window(since, until)
    if not (ids or item_ids or sources or first or last):
        raise typer.BadParameter("say what to delete: --id, --item-id, --source, --since or --until.")
    from lookalike.usecases import items

    with session(verbose, db, collection, None, None) as ctx, served(ctx) as server:
        select = server.select if server is not None else functools.partial(items.select, ctx)
        doomed = select(
            ids=ids or [], item_ids=item_ids or [], sources=sources or [], since=first, until=last
        )
        if not doomed:
            if as_json:
                print_json({"deleted": 0, "ids": [], "purged": purge})
            else:
                out.print("no stored item matches; nothing deleted")
            return
        if not as_json or not yes:
            _show(doomed)
        if not yes and not _confirm(f"Delete these {len(doomed)} items?"):
            err.print("nothing deleted (pass --yes to delete without being asked)")
            raise typer.Exit(1)
        picked = [item.id for item in doomed]
        remove = server.delete if server is not None else functools.partial(items.delete, ctx)
        deleted = remove(picked, purge=purge)
    if as_json:
        print_json({"deleted": deleted, "ids": picked, "purged": purge})
    else:
        out.print(
            f"deleted {deleted} items" + ("; their bytes are erased from the database files" if purge else "")
        )


@app.command()
def compact(db: Db = None, collection: Collection = None, verbose: Verbose = False) -> None:
    """Rewrite storage so that deleted items' bytes are gone from every file under the database.

    Deleting hides items at once; their bytes stay in Milvus' segment files until a compaction
    rewrites them. Run this after deleting personal data that must be erased.
    """
    from lookalike.usecases import items

    with session(verbose, db, collection, None, None) as ctx:
        rewritten = items.compact(ctx)
    out.print(f"compacted: {rewritten} partitions rewritten without deleted rows")


def _show(items: list) -> None:
    columns = [(name, "left") for name in ("id", "item_id", "source", "created", "uri")]
    rows = [[str(i.id), i.item_id, i.source, day(i.created_at), i.uri] for i in items[:SHOWN]]
    table(f"{len(items)} items to delete", columns, rows, console=err)
    if len(items) > SHOWN:
        err.print(f"… and {len(items) - SHOWN} more")


def _confirm(question: str) -> bool:
    try:
        return typer.confirm(question, default=False, err=True)
    except typer.Abort:  # no terminal to answer, or Ctrl-C / Ctrl-D
        return False
