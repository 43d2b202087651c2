"""Policies scored at ingest, the review queue of their flags, the audit, and PDQ hash matching."""

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
    Verbose,
    app,
    counted,
    day,
    err,
    errors,
    out,
    parse_window,
    print_json,
    served,
    session,
    summary,
    table,
    tagged,
)

policy_app = typer.Typer(
    help="Label sets kept with the collection: every image indexed afterwards is scored against them.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")
hashes_app = typer.Typer(help="PDQ perceptual hashes of the stored pictures.", no_args_is_help=True)
app.add_typer(hashes_app, name="hashes")

Since = Annotated[str | None, typer.Option(help="On or after this day (YYYY-MM-DD, UTC).")]
Until = Annotated[str | None, typer.Option(help="On or before this day (YYYY-MM-DD, UTC).")]


@policy_app.command("add")
def policy_add(
    labels: Annotated[Path, typer.Argument(help="TOML label set: [labels.NAME] with prompts, threshold.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Policy name (default: the file's stem).")
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a policy of that name.")] = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Keep a label set as a policy: images indexed from now on are flagged when a label matches.

    Images already stored are flagged by `lookalike scan --policy NAME --flag`.
    """
    from lookalike.usecases import policies

    with session(verbose, db, collection, None, None) as ctx:
        policy = policies.add(ctx, str(labels), name, replace=replace)
        labels_in = [spec.name for spec in policies.specs(policy)]
    out.print(f"policy {policy.name} added ({len(labels_in)} labels: {', '.join(labels_in)})")


@policy_app.command("list")
def policy_list(
    as_json: AsJson = False, db: Db = None, collection: Collection = None, verbose: Verbose = False
) -> None:
    """The collection's policies with their labels and thresholds."""
    from lookalike.usecases import policies, review

    with session(verbose, db, collection, None, None) as ctx:
        found = [(p, policies.specs(p)) for p in policies.listed(ctx)]
    if as_json:
        payload = [  # as GET /policies answers, with each label's prompts
            {
                "name": p.name,
                "added": review.timestamp(p.created_at),
                "labels": [
                    {"label": s.name, "threshold": s.threshold, "prompts": list(s.prompts)} for s in specs
                ],
            }
            for p, specs in found
        ]
        print_json(payload)
        return
    rows = [
        [p.name, day(p.created_at), ", ".join(f"{s.name} ≥ {s.threshold:g}" for s in specs)]
        for p, specs in found
    ]
    table(None, [("policy", "left"), ("added", "left"), ("labels", "left")], rows)


@policy_app.command("remove")
def policy_remove(
    name: Annotated[str, typer.Argument(help="The policy to remove.")],
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Stop flagging with a policy; its flags and their reviews are kept."""
    from lookalike.usecases import policies

    with session(verbose, db, collection, None, None) as ctx:
        policies.remove(ctx, name)
    out.print(f"policy {name} removed; its flags and reviews are kept")


@app.command()
def flags(
    policy: Annotated[str | None, typer.Option(help="Only this policy's flags.")] = None,
    status: Annotated[str | None, typer.Option(help="open, confirmed, dismissed or closed.")] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """The review queue: flags raised by policies, hash banks (policy bank:NAME; the score is the PDQ
    distance in bits) and waves, oldest first, filtered by policy, status and day."""
    from lookalike.usecases import review

    first, last = parse_window(since, until)
    with errors(verbose):
        wanted = review.status_of(status)  # before the database opens
    with session(verbose, db, collection, None, None) as ctx, served(ctx) as server:
        if server is not None:
            listed = server.flags(
                policy=policy,
                status=wanted.value if wanted else None,
                since=first,
                until=last,
                limit=limit,
                offset=offset,
            )
        else:
            total, page = review.flags(
                ctx, policy=policy, status=wanted, since=first, until=last, limit=limit, offset=offset
            )
            listed = {"total": total, "flags": review.flag_rows(ctx, page)}
    if as_json:
        print_json(listed)  # as GET /flags answers
        return
    total, payload = listed["total"], listed["flags"]
    columns = [("flag", "right"), ("policy", "left"), ("label", "left"), ("score", "right")]
    columns += [("status", "left"), ("flagged", "left"), ("item", "left")]
    rows = [
        [
            str(p["id"]),
            str(p["policy"]),
            str(p["label"]),
            f"{p['score']:.0f} bits" if str(p["policy"]).startswith("bank:") else f"{p['score']:.4f}",
            str(p["status"]),
            str(p["flagged_at"])[:10],
            _shown(p),
        ]
        for p in payload
    ]
    table(None, columns, rows, caption=f"{len(rows)} of {total} flags")


def _shown(flag: dict[str, Any]) -> str:
    if flag.get("refused") and not flag["stored"]:
        return f"{flag['uri']} from {flag['source']} (refused, never stored)"
    if flag["uri"]:
        return str(flag["uri"])
    return f"{flag['item']} (no longer stored)"


@app.command("review")
def review_flag(
    flag_id: Annotated[int, typer.Argument(help="The flag's id (see `lookalike flags`).")],
    confirm: Annotated[bool, typer.Option("--confirm", help="The match is right.")] = False,
    dismiss: Annotated[bool, typer.Option("--dismiss", help="The match is wrong.")] = False,
    take_down: Annotated[
        bool, typer.Option("--take-down", help="With --confirm: delete the item and erase its kept bytes.")
    ] = False,
    note: Annotated[str, typer.Option(help="Why, for the audit.")] = "",
    by: Annotated[str | None, typer.Option("--by", help="Reviewer's name (default: $USER).")] = None,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Confirm or dismiss a flag; the decision is kept as an audit record (who, when, what, note)."""
    import getpass

    from lookalike.usecases import review
    from lookalike.workflow import FlagStatus

    if confirm == dismiss:
        raise typer.BadParameter("give exactly one of --confirm or --dismiss.")
    try:
        reviewer = by if by is not None else getpass.getuser()
    except (KeyError, OSError):  # no login name to be found: the reviewer must say who they are
        raise typer.BadParameter("give the reviewer's name with --by NAME.") from None
    decision = FlagStatus.CONFIRMED if confirm else FlagStatus.DISMISSED
    with session(verbose, db, collection, None, None) as ctx, served(ctx) as server:
        if server is not None:
            said = "confirm" if confirm else "dismiss"
            records = server.review(flag_id, decision=said, by=reviewer, note=note, take_down=take_down)
        else:
            decided = review.review(ctx, flag_id, decision, reviewer=reviewer, note=note, take_down=take_down)
            records = [review.decision_row(d) for d in decided]
    done = f"flag {flag_id} {decision.value} by {reviewer}"
    if take_down:
        done += f"; item {records[0]['item']} taken down"
        if len(records) > 1:
            done += f" (and {len(records) - 1} other open flags of it closed)"
    out.print(done)


@app.command()
def audit(
    report: Annotated[Path, typer.Option("--out", help="Audit file: .csv or .json.")],
    since: Since = None,
    until: Until = None,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Export the audit to CSV or JSON: every review decision (who, when, what, note, taken down) with the
    item it was about (item id, source, uri, SHA-256, PDQ hash), the policy or bank and the score, and
    every change to a hash bank (who lifted which block, and why)."""
    from lookalike.usecases import review

    first, last = parse_window(since, until)
    with session(verbose, db, collection, None, None) as ctx, served(ctx) as server:
        if server is not None:
            written = server.audit(report, since=first, until=last)
        else:
            written = review.export_audit(ctx, str(report), since=first, until=last)
    out.print(f"{written} audit records written to {report}")


@app.command("match-hashes")
def match_hashes(
    hash_list: Annotated[
        Path, typer.Argument(help="One PDQ hash (64 hex digits) a line, optional label after it.")
    ],
    max_distance: Annotated[
        int, typer.Option(help="Hamming distance (bits) that still counts as a match.")
    ] = 31,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """List stored pictures whose PDQ hash lies within --max-distance of any hash in the list."""
    from lookalike.usecases import hashes

    with session(verbose, db, collection, None, None) as ctx:
        found = hashes.match(ctx, str(hash_list), max_distance=max_distance)
    payload = [
        {
            "id": m.item.id,
            "item_id": m.item.item_id,
            "source": m.item.source,
            "uri": m.item.uri,
            "pdq": m.pdq,
            "distance": m.distance,
            "listed": m.listed,
            "label": m.label,
            "line": m.line,
        }
        for m in found
    ]
    if as_json:
        print_json(payload)
        return
    rows = [
        [
            str(p["distance"]),
            str(p["line"]),
            str(p["label"]),
            str(p["source"]),
            str(p["item_id"]),
            str(p["uri"]),
        ]
        for p in payload
    ]
    columns = [
        ("distance", "right"),
        ("line", "right"),
        ("label", "left"),
        ("source", "left"),
        ("item_id", "left"),
        ("uri", "left"),
    ]
    table(None, columns, rows, caption=f"{len(rows)} matches")


@hashes_app.command("backfill")
def hashes_backfill(
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    verbose: Verbose = False,
) -> None:
    """Compute the PDQ hash of every stored picture that has none (collections indexed before hashes)."""
    from lookalike.usecases import hashes

    with session(verbose, db, collection, model, pretrained) as ctx:
        done = counted("hashing", lambda progress: hashes.backfill(ctx, progress=progress))
    for skipped in done.skipped:
        err.print(tagged("skipped", "yellow", f"{skipped.uri}: {skipped.reason}"))
    out.print(f"{done.hashed} pictures hashed; {len(done.skipped)} could not be read")


@app.command()
def calibrate(
    labels: Annotated[Path, typer.Option("--labels", help="The TOML label set to calibrate.")],
    examples: Annotated[
        Path, typer.Option("--examples", help="CSV with image,label columns (label: a label's name or none).")
    ],
    precision: Annotated[float, typer.Option(help="The precision each label's threshold must reach.")] = 0.95,
    write: Annotated[
        bool, typer.Option("--write", help="Write the thresholds found into the label file.")
    ] = False,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    verbose: Verbose = False,
) -> None:
    """Per label, the threshold that reaches --precision on labelled examples, and its recall.

    A precision-recall sweep over the examples' scores: the lowest threshold whose precision
    still reaches the target. Use the collection's model (--db) so that thresholds fit its vectors.
    """
    from lookalike.usecases import risk

    with session(verbose, db, collection, model, pretrained) as ctx:
        found, unreadable = risk.calibrate(ctx, str(labels), str(examples), precision=precision, write=write)
    for image, reason in unreadable:
        err.print(tagged("skipped", "yellow", f"{image}: {reason}"))
    payload = [
        {
            "label": c.label,
            "threshold": c.threshold,
            "precision": round(c.precision, 4),
            "recall": round(c.recall, 4),
            "positives": c.positives,
            "negatives": c.negatives,
        }
        for c in found
    ]
    if as_json:
        print_json(payload)
    else:
        rows = [
            [
                str(p["label"]),
                f"{p['threshold']:.4f}" if p["threshold"] is not None else "unreachable",
                f"{p['precision']:.3f}",
                f"{p['recall']:.3f}",
                str(p["positives"]),
                str(p["negatives"]),
            ]
            for p in payload
        ]
        columns = [("label", "left"), ("threshold", "right"), ("precision", "right"), ("recall", "right")]
        columns += [("positives", "right"), ("negatives", "right")]
        table(None, columns, rows, caption=f"target precision {precision:g}")
    if write:
        written = sum(1 for c in found if c.threshold is not None)
        done = f"{written} thresholds written to {labels}"
        if as_json:
            err.print(done)  # stdout holds the JSON line alone
        else:
            summary(done)
