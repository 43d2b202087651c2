"""The review queue: flags listed and filtered, each confirmed or dismissed with an audit record.

Confirming can take the item down: it is deleted from the collection and its kept bytes
erased (the same delete as ``lookalike delete --purge``), its hash forgotten, and the item's
other open flags closed with it. Every decision is appended to the audit, never changed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import ConfigError
from lookalike.queries import day_window
from lookalike.usecases import items as items_usecase
from lookalike.usecases.context import Context
from lookalike.workflow import Decision, Flag, FlagStatus

if TYPE_CHECKING:
    from lookalike.store import Item

AUDIT_FIELDS = ("id", "flag", "item", "policy", "label", "decision", "reviewer", "note", "at", "took_down")


@dataclass(frozen=True)
class Listed:
    flag: Flag
    item: Item | None  # None: the item is no longer stored


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
    total = workflow.count_flags(policy=policy, status=status, since=start, until=end)
    page = workflow.flags(policy=policy, status=status, since=start, until=end, limit=limit, offset=offset)
    present = page and ctx.store.exists()
    stored = {item.id: item for item in ctx.store.get(sorted({f.item for f in page}))} if present else {}
    return total, [Listed(flag, stored.get(flag.item)) for flag in page]


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
    workflow = ctx.workflow
    flag = workflow.flag(flag_id)
    if not take_down:
        return workflow.review([flag.id], decision, reviewer=reviewer, note=note)
    # Delete first: if recording then fails the flag stays open and the review can simply be
    # repeated (deleting a deleted item is a no-op); the reverse could leave an item up that
    # the audit says was taken down.
    items_usecase.delete(ctx, [flag.item], purge=True)
    workflow.forget_hashes([flag.item])
    others = [f.id for f in workflow.flags(item=flag.item, status=FlagStatus.OPEN) if f.id != flag.id]
    records = workflow.review([flag.id], decision, reviewer=reviewer, note=note, took_down=True)
    if others:
        records += workflow.review(
            others, decision, reviewer=reviewer, note=f"taken down with flag {flag.id}", took_down=True
        )
    return records


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def audit_rows(decisions: Sequence[Decision]) -> list[dict[str, object]]:
    return [
        {
            "id": d.id,
            "flag": d.flag,
            "item": d.item,
            "policy": d.policy,
            "label": d.label,
            "decision": d.decision.value,
            "reviewer": d.reviewer,
            "note": d.note,
            "at": _iso(d.at),
            "took_down": d.took_down,
        }
        for d in decisions
    ]


def export_audit(ctx: Context, out: str, *, since: date | None = None, until: date | None = None) -> int:
    """Write every review decision in the window to ``out`` (.csv or .json); returns how many."""
    path = Path(out)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("csv", "json"):
        raise ConfigError(f"The audit export is .csv or .json, not {path.name!r}.")
    start, end = day_window(since, until)
    rows = audit_rows(list(ctx.workflow.decisions(since=start, until=end)))
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            if fmt == "json":
                json.dump({"decisions": rows}, handle, ensure_ascii=False, indent=1)
            else:
                writer = csv.DictWriter(handle, fieldnames=AUDIT_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}") from exc
    return len(rows)
