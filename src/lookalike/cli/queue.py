"""The team's side of review: `claim` a flag, `webhooks` (list, replay, deliver, ping), and `waves`."""

from __future__ import annotations

import time
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
    err,
    out,
    print_json,
    served,
    session,
    table,
    tagged,
)
from lookalike.cli.risk import Sources

webhooks_app = typer.Typer(
    help="Signed webhooks of every flag and decision: deliveries listed, failed ones replayed.",
    no_args_is_help=True,
)
app.add_typer(webhooks_app, name="webhooks")

By = Annotated[str | None, typer.Option("--by", help="Reviewer's name (default: $USER).")]


def _reviewer(by: str | None) -> str:
    import getpass

    try:
        return by if by is not None else getpass.getuser()
    except (KeyError, OSError):  # no login name to be found: the reviewer must say who they are
        raise typer.BadParameter("give the reviewer's name with --by NAME.") from None


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(ts))


@app.command()
def claim(
    flag_id: Annotated[
        int | None, typer.Argument(help="The flag to claim or renew (default: the next open one).")
    ] = None,
    by: By = None,
    policy: Annotated[str | None, typer.Option(help="The next flag of this policy only.")] = None,
    lease: Annotated[
        float | None,
        typer.Option(min=1, max=86400, help="Seconds the claim lasts. (env LOOKALIKE_REVIEW_LEASE_S, 300)"),
    ] = None,
    release: Annotated[bool, typer.Option("--release", help="Let the claim on FLAG_ID go.")] = False,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Claim a flag to review, so no other reviewer gets it or decides it while the lease lasts.

    Without FLAG_ID: the flag this reviewer holds already, else the oldest open flag nobody holds.
    Decide it with `lookalike review FLAG_ID --confirm|--dismiss --by NAME`. With --json: the flag
    as the API's GET /flags/{id} shows it (its claim, what it matched), or {"flag": null}.
    """
    from lookalike.usecases import queue

    reviewer = _reviewer(by)
    if release and flag_id is None:
        raise typer.BadParameter("--release needs the FLAG_ID to let go.")
    with session(verbose, db, collection, None, None) as ctx, served(ctx) as server:
        if release:
            assert flag_id is not None
            mine = server.release(flag_id, by=reviewer) if server else queue.release(ctx, flag_id, reviewer)
            out.print(
                f"flag {flag_id} released by {reviewer}"
                if mine
                else f"{reviewer} held no claim on flag {flag_id}"
            )
            return
        # The flag whole, as the API shows it (GET /flags/{id}): item ids as strings, times ISO.
        shown: dict[str, Any] | None
        if server is not None:
            shown = server.claim(flag_id, by=reviewer, policy=policy, lease_s=lease)
        else:
            if flag_id is None:
                found = queue.next_flag(ctx, reviewer, policy=policy, lease_s=lease)
            else:
                found = queue.claim(ctx, flag_id, reviewer, lease_s=lease)
            shown = queue.detail_row(queue.detail(ctx, found.flag.id)) if found else None
    if shown is None:
        if as_json:
            print_json({"flag": None})
        else:
            out.print("no open flag left that nobody holds")
        return
    if as_json:
        print_json(shown)
        return
    where = " · ".join(str(shown[k]) for k in ("source", "item_id", "uri") if shown[k] is not None)
    if not shown["stored"]:
        gone = "refused, never stored" if shown["refused"] else "no longer stored"
        where = f"{where or 'item ' + shown['item']} ({gone})"
    score = float(shown["score"])
    said = f"PDQ distance {score:.0f}" if shown["policy"].startswith("bank:") else f"{score:.4f}"
    until = str(shown["claim"]["expires_at"])[11:19]
    out.print(
        f"flag {shown['id']} claimed by {shown['claim']['by']} until {until} UTC: "
        f"{shown['policy']} · {shown['label']} ({said}) — {where}"
    )


@webhooks_app.command("list")
def webhooks_list(
    status: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Webhook deliveries, oldest first: pending (and when they are next tried), delivered, failed."""
    from lookalike.usecases import webhooks
    from lookalike.workflow import DeliveryStatus

    try:
        state = DeliveryStatus(status) if status is not None else None
    except ValueError:
        raise typer.BadParameter("must be pending, delivered or failed.", param_hint="--status") from None
    with session(verbose, db, collection, None, None) as ctx:
        total, page = webhooks.deliveries(ctx, status=state, limit=limit, offset=offset)
    payload = [
        {
            "id": d.id,
            "event": d.event,
            "type": d.type,
            "url": d.url,
            "status": d.status.value,
            "attempts": d.attempts,
            "next_attempt_at": int(d.next_at) if d.status is DeliveryStatus.PENDING else None,
            "last_error": d.last_error or None,
        }
        for d in page
    ]
    if as_json:
        print_json({"total": total, "deliveries": payload})
        return
    columns = [("delivery", "right"), ("event", "right"), ("type", "left"), ("status", "left")]
    columns += [("attempts", "right"), ("url", "left"), ("last error", "left")]
    rows = [
        [
            str(p["id"]),
            str(p["event"]),
            str(p["type"]),
            str(p["status"]),
            str(p["attempts"]),
            str(p["url"]),
            str(p["last_error"] or ""),
        ]
        for p in payload
    ]
    table(None, columns, rows, caption=f"{len(rows)} of {total} deliveries")


@webhooks_app.command("replay")
def webhooks_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Failed deliveries to send again.")] = None,
    all_failed: Annotated[bool, typer.Option("--all", help="Every failed delivery.")] = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Send failed deliveries again: pending now, their attempts counted afresh.

    With LOOKALIKE_WEBHOOK_URLS set here they are attempted at once; otherwise the server's
    worker (or `lookalike webhooks deliver`) sends them.
    """
    from lookalike.usecases import webhooks

    if bool(ids) == all_failed:
        raise typer.BadParameter("give delivery ids, or --all for every failed delivery.")
    with session(verbose, db, collection, None, None) as ctx:
        replayed = webhooks.replay(ctx, None if all_failed else ids)
        done = webhooks.deliver(ctx, ids=replayed) if replayed and webhooks.targets(ctx) else None
    out.print(f"{len(replayed)} deliveries to send again")
    if done is not None:
        out.print(f"{done.delivered} delivered, {done.retrying} to retry, {done.failed} failed")


@webhooks_app.command("deliver")
def webhooks_deliver(
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep delivering, as `lookalike serve` does, until interrupted.")
    ] = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Deliver every pending webhook that is due (for a setup without `lookalike serve`, from cron)."""
    import threading

    from lookalike.usecases import webhooks

    with session(verbose, db, collection, None, None) as ctx:
        if watch:
            err.print(f"delivering webhooks to {', '.join(webhooks.targets(ctx))}; Ctrl-C stops")
            webhooks.run(ctx, threading.Event(), threading.Event(), poll_s=5.0)
            return
        done = webhooks.deliver_all_due(ctx)
        waiting = ctx.workflow.outbox.next_due()
    line = f"{done.delivered} delivered, {done.retrying} to retry, {done.failed} failed"
    if waiting is not None:
        line += f"; the next retry is due at {_clock(waiting)}"
    out.print(line)
    if done.failed:
        err.print(
            tagged(
                "warning:", "yellow", "see `lookalike webhooks list --status failed`; replay them once fixed"
            )
        )


@webhooks_app.command("ping")
def webhooks_ping(db: Db = None, collection: Collection = None, verbose: Verbose = False) -> None:
    """Send a `ping` event to every configured URL (to check a receiver and its secret)."""
    from lookalike.usecases import webhooks

    with session(verbose, db, collection, None, None) as ctx:
        event = webhooks.ping(ctx)
        done = webhooks.deliver_all_due(ctx) if event is not None else None
    if done is None:
        raise typer.BadParameter("LOOKALIKE_WEBHOOK_URLS is not set: there is nowhere to send a ping.")
    out.print(
        f"ping event {event}: {done.delivered} delivered, {done.retrying} to retry, {done.failed} failed"
    )
    if done.delivered == 0:
        raise typer.Exit(1)


@app.command()
def waves(
    since: Annotated[
        str,
        typer.Option(
            help="Window start: a day (2023-11-19), a UTC time (2023-11-19T08:00) or a span ago (6h, 2d)."
        ),
    ],
    until: Annotated[
        str | None, typer.Option(help="Window end, as --since (a day: its end); default now.")
    ] = None,
    min_sellers: Annotated[
        int, typer.Option(min=2, help="Distinct sources (sellers) a cluster must span to be a wave.")
    ] = 3,
    threshold: Annotated[
        float, typer.Option(help="Cosine at which two pictures count as near-duplicates.")
    ] = 0.95,
    source: Sources = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the clusters; flag nothing.")] = False,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    verbose: Verbose = False,
) -> None:
    """Find near-duplicate clusters created within a window across several sources: counterfeit or
    spam waves. Each new wave is one grouped flag (policy `waves`), never raised twice.

    Reads the stored vectors of the window (nothing is embedded). See `lookalike flags --policy waves`.
    """
    from lookalike.usecases import waves as finding

    with session(verbose, db, collection, model, pretrained) as ctx:
        start = finding.moment(since, option="--since")  # a bad time is refused here, server or not
        end = finding.moment(until, end=True, option="--until") if until else None
        with served(ctx) as server:
            if server is not None:
                result = counted(
                    "reading the window",
                    lambda progress: server.waves(
                        since=since,
                        until=until,
                        min_sellers=min_sellers,
                        threshold=threshold,
                        sources=source or (),
                        dry_run=dry_run,
                        on_start=lambda total: None,
                        progress=progress,
                    ),
                )
            else:
                found = counted(
                    "reading the window",
                    lambda progress: finding.find(
                        ctx,
                        since=start,
                        until=end,
                        min_sellers=min_sellers,
                        threshold=threshold,
                        sources=source or (),
                        dry_run=dry_run,
                        progress=progress,
                    ),
                )
                result = finding.found_json(found)
    if as_json:
        print_json(result)
        return
    payload: list[dict[str, Any]] = result["waves"]

    def state(p: dict[str, object]) -> str:
        if dry_run:
            return "found (dry run)"
        if p["new"]:
            return "new wave"
        return f"grew by {p['added']}" if p["added"] else "known"

    rows = [
        [
            str(p["flag"] or ""),
            state(p),
            str(p["sellers"]),
            str(len(p["items"])),
            ", ".join(sorted({str(m["source"]) for m in p["items"]})),
        ]
        for p in payload
    ]
    columns = [
        ("flag", "right"),
        ("wave", "left"),
        ("sellers", "right"),
        ("items", "right"),
        ("sources", "left"),
    ]
    table(
        None,
        columns,
        rows,
        caption=f"{result['clusters']} clusters across {min_sellers}+ sources; {result['new_waves']} new waves flagged",
    )
