"""The review queue: flags listed and filtered, each confirmed or dismissed with an audit record.

Confirming can take the item down: it is deleted from the collection and its kept bytes
erased (the same delete as ``lookalike delete --purge``), its hash forgotten, and the item's
other open flags closed with it. Every decision is appended to the audit, never changed.

A flag whose item is gone (deleted, swept by ``index --sync``, taken down, its month dropped)
is never listed as open: see ``settle``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike import csvsafe, durable
from lookalike.errors import ConfigError
from lookalike.queries import day_window
from lookalike.usecases import items as items_usecase
from lookalike.usecases.context import Context
from lookalike.usecases.policies import subjects_of
from lookalike.workflow import Decision, Flag, FlagStatus, Subject

if TYPE_CHECKING:
    from lookalike.store import Item
    from lookalike.workflow.banks import BankChange

AUDIT_FIELDS = (
    "record",  # review: a decision on a flag; bank: a change to a hash bank (lifting a block, ...)
    "id",
    "at",
    "decision",
    "reviewer",
    "note",
    "took_down",
    "flag",
    "item",
    "item_id",
    "source",
    "uri",
    "sha256",
    "pdq",
    "policy",
    "bank",
    "label",
    "score",  # a policy's cosine, or a bank match's PDQ distance in bits
)


@dataclass(frozen=True)
class Listed:
    flag: Flag
    item: Item | None  # None: the item is no longer stored (or, refused, never was)
    refused: tuple[Subject, str] | None = None  # an upload a hash bank refused: what it was, and why


def status_of(text: str | None) -> FlagStatus | None:
    if text is None:
        return None
    try:
        return FlagStatus(text)
    except ValueError:
        raise ConfigError(
            f"--status must be one of {', '.join(s.value for s in FlagStatus)}, got {text!r}."
        ) from None


def flags(
    ctx: Context,
    *,
    policy: str | None = None,
    status: FlagStatus | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[int, list[Listed]]:
    """The total matching the filter, and one page of flags with their items."""
    if limit is not None and limit < 1 or offset < 0:
        raise ConfigError("A page needs a limit of at least 1 and an offset of at least 0.")
    start, end = day_window(since, until)
    workflow = ctx.workflow
    settle(ctx)
    total = workflow.count_flags(policy=policy, status=status, since=start, until=end)
    page = workflow.flags(policy=policy, status=status, since=start, until=end, limit=limit, offset=offset)
    present = page and ctx.store.exists()
    stored = {item.id: item for item in ctx.store.get(sorted({f.item for f in page}))} if present else {}
    refused = workflow.banks.matches.refusals_of([f.id for f in page if f.item not in stored])
    return total, [Listed(flag, stored.get(flag.item), refused.get(flag.id)) for flag in page]


def settle(ctx: Context) -> int:
    """Close the open flags whose item the collection no longer holds; returns how many.

    Deleting items closes their flags in one SQLite transaction right after the store's delete
    (``items.gone``), but a process can die between the two, and a month dropped or a foreign
    delete closes nothing. Milvus is the system of record for which items exist, and a flag is
    only ever added for an item already stored; so before counting or listing, the items of
    open flags are checked against the store and the missing ones' flags closed (by "system",
    "item no longer stored"). This holds at any instant: a listing that runs while a delete is
    between its two steps closes the flag itself, and the delete then finds nothing open.
    """
    workflow = ctx.workflow
    items = workflow.open_items()
    if not items or not ctx.store.exists():
        return 0  # no collection (yet): nothing to check flags against, so nothing is closed
    missing = set(items) - ctx.store.existing_ids(items)
    return len(workflow.items_gone(sorted(missing), "item no longer stored")) if missing else 0


def review(
    ctx: Context,
    flag_id: int,
    decision: FlagStatus,
    *,
    reviewer: str,
    note: str = "",
    take_down: bool = False,
) -> list[Decision]:
    """Confirm or dismiss one flag; returns the audit records written (several with a takedown)."""
    if decision is FlagStatus.OPEN:
        raise ConfigError("Give --confirm or --dismiss.")
    if take_down and decision is not FlagStatus.CONFIRMED:
        raise ConfigError("Only a confirmed flag can take its item down.")
    if not reviewer.strip():
        raise ConfigError("A review needs the reviewer's name (--by NAME).")
    from lookalike.usecases import queue
    from lookalike.workflow.waves import POLICY as WAVES

    workflow = ctx.workflow
    flag = workflow.flag(flag_id)
    details = queue.details_of(queue.items_of(ctx, [flag.item]))  # for the webhook event
    known = workflow.subjects([flag.item]).get(flag.item)
    if not details and known is not None and known.uri:  # a refused upload (or an item gone): as it was
        details = {
            flag.item: {
                "item_id": known.item_id,
                "source": known.source,
                "uri": known.uri,
                "sha256": known.sha256,
            }
        }
    stored: list[Item] = []
    if take_down or known is None or not known.uri:  # an item flagged before subjects were kept
        stored = ctx.store.get([flag.item]) if ctx.store.exists() else []
        if stored:  # the audit keeps what the item is now, whatever happens to it later
            workflow.put_subjects(subjects_of(stored, workflow.hashes_of([flag.item])))
    if not take_down:
        # Refused (ClaimedError) while another reviewer holds the flag: see usecases/queue.py.
        return workflow.review([flag.id], decision, reviewer=reviewer, note=note, details=details)
    if flag.policy == WAVES:
        raise ConfigError(
            "A wave's flag is confirmed as a whole and its items taken down one by one"
            " (lookalike delete --purge ID...): its members are not all the same picture."
        )
    # The reviewer holds the flag first (refused if another does), so nobody can decide it
    # between the block, the delete and the decision.
    workflow.claims.claim(flag.id, reviewer, lease_s=ctx.settings.review_lease_s, open_only=False)
    # Block, then delete, then record. Blocked first: from then on the picture cannot come back,
    # whatever happens next. Deleted before the decision is recorded: if recording then fails
    # the flag stays open and the review can simply be repeated (blocking and deleting again are
    # no-ops); the reverse could leave an item up that the audit says was taken down. The
    # decision, the item's other open flags closed ("taken down with flag N") and its hash
    # forgotten are one transaction; should the process die before it, the next listing closes
    # them as "item no longer stored" (settle).
    block = _block_of(ctx, flag.item, stored[0] if stored else None)
    if block is not None:
        workflow.banks.block(flag=flag.id, item=flag.item, subject=block, by=reviewer)
    family = items_usecase.picture_and_crops(ctx, flag.item)  # the picture and its crops, all of them
    items_usecase.delete(ctx, family, purge=True, reason=None)
    others = [i for i in family if i != flag.item]
    if others:  # their open flags close with the same reason the item's own get
        workflow.items_gone(others, f"taken down with flag {flag.id}")
    return workflow.take_down(flag.id, decision, reviewer=reviewer, note=note, details=details)


def _block_of(ctx: Context, item: int, found: Item | None) -> Subject | None:
    """What goes on the block list for a taken-down item: its SHA-256 and PDQ hash (quality 50 or more).

    The hash is the one ingest kept; an item stored before hashes existed is hashed from its
    bytes now, before they are erased. A detected crop is no picture anyone uploads: not blocked.
    An item already gone (a repeated review) is blocked by what the audit kept of it.
    """
    from lookalike.workflow.banks import MIN_QUALITY

    if found is None:
        kept = ctx.workflow.subjects([item]).get(item)
        return kept if kept is not None and kept.sha256 else None
    if found.box:
        return None
    hashed = ctx.workflow.hashes_of([item]).get(item)
    if hashed is None:
        from lookalike.errors import ImageError
        from lookalike.usecases import banks

        try:
            hashed = banks.hash_bytes(ctx, items_usecase.item_image(ctx, item)[0])
        except ImageError:
            hashed = None
    pdq = hashed[0] if hashed is not None and hashed[1] >= MIN_QUALITY else ""
    return Subject(found.item_id, found.source, found.uri, found.sha256, pdq)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def timestamp(ts: int) -> str:
    """Unix seconds as the API writes a moment: ISO 8601 in UTC, ``2024-05-01T12:00:00Z``."""
    return _iso(ts)


def flag_row(row: Listed) -> dict[str, object]:
    """A listed flag as the API answers it (``GET /flags``) and ``lookalike flags --json`` prints it.

    Item ids are strings: they exceed a JavaScript number.
    """
    return {
        "id": row.flag.id,
        "item": str(row.flag.item),
        "policy": row.flag.policy,
        "label": row.flag.label,
        "score": round(row.flag.score, 6),
        "status": row.flag.status.value,
        "flagged_at": _iso(row.flag.created_at),
        "stored": row.item is not None,
        "item_id": row.item.item_id if row.item else (row.refused[0].item_id if row.refused else None),
        "source": row.item.source if row.item else (row.refused[0].source if row.refused else None),
        "uri": row.item.uri if row.item else (row.refused[0].uri if row.refused else None),
        "refused": row.refused[1] if row.refused else None,  # an upload refused as blocked: why
    }


def flag_rows(ctx: Context, page: Sequence[Listed]) -> list[dict[str, object]]:
    """Listed flags with who holds each (``claim``), as ``GET /flags`` and ``flags --json`` give them."""
    from lookalike.usecases import queue

    held = queue.holders(ctx, [row.flag.id for row in page])
    return [{**flag_row(row), "claim": queue.claim_row(held.get(row.flag.id))} for row in page]


def decision_row(d: Decision) -> dict[str, object]:
    """An audit record as the API answers a review (``POST /flags/{id}/review``)."""
    return {
        "id": d.id,
        "flag": d.flag,
        "item": str(d.item),
        "decision": d.decision.value,
        "by": d.reviewer,
        "note": d.note,
        "at": _iso(d.at),
        "took_down": d.took_down,
    }


def _policy_and_bank(policy: str) -> tuple[str, str]:
    return ("", policy.removeprefix("bank:")) if policy.startswith("bank:") else (policy, "")


def audit_rows(decisions: Sequence[Decision], changes: Sequence[BankChange] = ()) -> list[dict[str, object]]:
    """The audit, oldest first: review decisions with the item they were about, and changes to banks."""
    rows: list[tuple[int, int, dict[str, object]]] = []
    for d in decisions:
        policy, bank = _policy_and_bank(d.policy)
        s = d.subject or Subject("", "", "", "")
        row: dict[str, object] = {
            "record": "review",
            "id": d.id,
            "at": _iso(d.at),
            "decision": d.decision.value,
            "reviewer": d.reviewer,
            "note": d.note,
            "took_down": d.took_down,
            "flag": d.flag,
            "item": d.item,
            "item_id": s.item_id,
            "source": s.source,
            "uri": s.uri,
            "sha256": s.sha256,
            "pdq": s.pdq,
            "policy": policy,
            "bank": bank,
            "label": d.label,
            "score": round(d.score, 6) if d.score is not None else None,
        }
        rows.append((d.at, 0, row))
    for c in changes:
        s = c.subject or Subject("", "", "", c.sha256, c.pdq)
        row = {
            "record": "bank",
            "id": c.id,
            "at": _iso(c.at),
            "decision": c.action,
            "reviewer": c.who,
            "note": c.note,
            "took_down": False,
            "flag": c.flag,
            "item": c.item,
            "item_id": s.item_id,
            "source": s.source,
            "uri": s.uri,
            "sha256": c.sha256,
            "pdq": c.pdq,
            "policy": "",
            "bank": c.bank,
            "label": "",
            "score": None,
        }
        rows.append((c.at, 1, row))
    rows.sort(key=lambda r: (r[0], r[1], int(str(r[2]["id"]))))
    return [row for _, _, row in rows]


def _with_subjects(ctx: Context, decisions: list[Decision]) -> list[Decision]:
    """Decisions recorded before subjects were kept get them from the store, if their item is still there."""
    from dataclasses import replace

    from lookalike.errors import StoreError

    missing = sorted({d.item for d in decisions if d.subject is None})
    if not missing:
        return decisions
    found = ctx.workflow.subjects(missing)
    try:
        if ctx.store.exists():
            stored = ctx.store.get(missing)
            found.update(subjects_of(stored, ctx.workflow.hashes_of(missing)))
    except StoreError:
        pass  # the collection cannot be opened now: what the workflow database knows is written
    return [replace(d, subject=found.get(d.item)) if d.subject is None else d for d in decisions]


def export_audit(ctx: Context, out: str, *, since: date | None = None, until: date | None = None) -> int:
    """Write the audit records of the window to ``out`` (.csv or .json); returns how many.

    A review carries the item it was about as it was when flagged or reviewed (item id, source,
    uri, SHA-256, PDQ hash), so a taken-down item stays described after it is gone.
    """
    path = Path(out)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("csv", "json"):
        raise ConfigError(f"The audit export is .csv or .json, not {path.name!r}.")
    start, end = day_window(since, until)
    decisions = _with_subjects(ctx, list(ctx.workflow.decisions(since=start, until=end)))
    rows = audit_rows(decisions, ctx.workflow.banks.changes(since=start, until=end))
    try:
        with durable.replacing_file(path, "w", newline="") as handle:
            if fmt == "json":
                json.dump({"decisions": rows}, handle, ensure_ascii=False, indent=1)
            else:
                writer = csvsafe.DictWriter(handle, AUDIT_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}") from exc
    return len(rows)
