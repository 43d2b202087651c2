"""The review queue for a team: claim the next flag, hold it with a lease, see what it matched.

``next_flag`` gives each reviewer a flag nobody else holds (workflow/claims.py); ``claim``
takes or renews a chosen one; deciding (review.py) is refused while another reviewer holds
the flag. ``detail`` is what a reviewer looks at side by side: the item that was flagged and
what it matched, by the flag's kind (``MATCHERS``: a policy's label and its prompts, a wave's
member items; other kinds register theirs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from lookalike.errors import ConfigError
from lookalike.queries import day_window
from lookalike.usecases.context import Context
from lookalike.workflow import Claim, Details, Flag, Subject, Workflow

if TYPE_CHECKING:
    from lookalike.store import Item


@dataclass(frozen=True)
class Claimed:
    flag: Flag
    claim: Claim
    item: Item | None  # None: no longer stored


@dataclass(frozen=True)
class Detail:
    """One flag as a reviewer sees it: the item, who holds it, and what it matched."""

    flag: Flag
    item: Item | None
    claim: Claim | None
    match: dict[str, Any] = field(default_factory=dict)
    refused: tuple[Subject, str] | None = None  # an upload a hash bank refused: what it was, and why
    pdq: str = ""  # the upload's PDQ hash, where one is kept


def lease(ctx: Context, lease_s: float | None) -> float:
    value = ctx.settings.review_lease_s if lease_s is None else lease_s
    if not 0 < value <= 86400:
        raise ConfigError(f"A lease is more than 0 and at most 86400 seconds, got {value:g}.")
    return value


def items_of(ctx: Context, ids: Sequence[int]) -> dict[int, Item]:
    if not ids or not ctx.store.exists():
        return {}
    return {item.id: item for item in ctx.store.get(sorted(set(ids)))}


def details_of(items: dict[int, Item]) -> Details:
    """What webhook events say of each item."""
    from lookalike.usecases.policies import item_details

    return item_details(list(items.values()))


def next_flag(
    ctx: Context,
    reviewer: str,
    *,
    policy: str | None = None,
    since: date | None = None,
    until: date | None = None,
    after: int | None = None,
    lease_s: float | None = None,
) -> Claimed | None:
    """Claim the next open flag for ``reviewer`` (their own held one first; ``after``: skip to a later one)."""
    from lookalike.usecases.review import settle

    start, end = day_window(since, until)
    held = lease(ctx, lease_s)
    settle(ctx)  # a flag whose item is gone is closed, never handed out
    where, args = Workflow._flag_filter(policy, None, start, end, None)
    found = ctx.workflow.claims.next(
        reviewer, lease_s=held, where=where.removeprefix(" WHERE "), args=args, after=after
    )
    if found is None:
        return None
    flag, claim = found
    return Claimed(flag, claim, items_of(ctx, [flag.item]).get(flag.item))


def claim(ctx: Context, flag_id: int, reviewer: str, *, lease_s: float | None = None) -> Claimed:
    """Claim an open flag for ``reviewer``, or renew their claim (ClaimedError: another holds it)."""
    held = ctx.workflow.claims.claim(flag_id, reviewer, lease_s=lease(ctx, lease_s))
    flag = ctx.workflow.flag(flag_id)
    return Claimed(flag, held, items_of(ctx, [flag.item]).get(flag.item))


def release(ctx: Context, flag_id: int, reviewer: str) -> bool:
    ctx.workflow.flag(flag_id)  # an unknown flag is a 404, not "nothing held"
    return ctx.workflow.claims.release(flag_id, reviewer)


def claim_row(claim: Claim | None) -> dict[str, Any] | None:
    """A claim as the API answers it and ``flags --json`` prints it (times as ISO moments)."""
    import time
    from datetime import UTC, datetime

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")

    if claim is None:
        return None
    return {
        "by": claim.reviewer,
        "claimed_at": iso(claim.claimed_at),
        "expires_at": iso(claim.expires_at),
        "expires_in_s": max(0, round(claim.expires_at - time.time())),
    }


def holders(ctx: Context, flag_ids: Sequence[int]) -> dict[int, Claim]:
    return ctx.workflow.claims.holders(flag_ids)


def detail(ctx: Context, flag_id: int) -> Detail:
    workflow = ctx.workflow
    flag = workflow.flag(flag_id)
    item = items_of(ctx, [flag.item]).get(flag.item)
    claim = workflow.claims.holders([flag.id]).get(flag.id)
    refused = None if item else workflow.banks.matches.refusals_of([flag.id]).get(flag.id)
    hashed = workflow.hashes_of([flag.item]).get(flag.item)
    pdq = hashed[0] if hashed else (refused[0].pdq if refused else "")
    match: dict[str, Any] = {"kind": "unknown"}
    for matcher in MATCHERS:
        found = matcher(ctx, flag)
        if found is not None:
            match = found
            break
    return Detail(flag, item, claim, match, refused, pdq)


def detail_row(shown: Detail) -> dict[str, Any]:
    """One flag whole as the API answers it (``GET /flags/{id}``, ``/flags/next``) and ``lookalike
    claim --json`` prints it. Item ids are strings (they exceed a JavaScript number); times ISO."""
    from lookalike.usecases.review import timestamp

    flag, item = shown.flag, shown.item
    was = shown.refused[0] if shown.refused else None  # what a refused upload was
    return {
        "id": flag.id,
        "item": str(flag.item),
        "policy": flag.policy,
        "label": flag.label,
        "score": round(flag.score, 6),
        "status": flag.status.value,
        "flagged_at": timestamp(flag.created_at),
        "stored": item is not None,
        "item_id": item.item_id if item else (was.item_id if was else None),
        "source": item.source if item else (was.source if was else None),
        "name": item.name if item else None,
        "uri": item.uri if item else (was.uri if was else None),
        "sha256": item.sha256 if item else (was.sha256 if was else None),
        "pdq": shown.pdq or None,
        "created_at": timestamp(item.created_at) if item else None,
        "refused": shown.refused[1] if shown.refused else None,  # an upload refused as blocked: why
        "claim": claim_row(shown.claim),
        "match": _shown(shown.match),
    }


def _shown(match: dict[str, Any]) -> dict[str, Any]:
    """A wave's item ids as strings and its times as ISO text."""
    from lookalike.usecases.review import timestamp

    shown = dict(match)
    if "items" in shown:
        shown["items"] = [
            {**member, "item": str(member["item"]), "created_at": timestamp(member["created_at"])}
            for member in shown["items"]
        ]
    for key in ("since", "until"):
        if isinstance(shown.get(key), int):
            shown[key] = timestamp(shown[key])
    return shown


BANK = "bank:"  # a flag raised by a match in a hash bank: policy "bank:NAME"


def _bank_match(ctx: Context, flag: Flag) -> dict[str, Any] | None:
    """A bank flag's match: the bank, the nearest entry of it that the upload matched (its labels,
    note and hashes; a take-down's flag, reviewer and day) and the PDQ distance."""
    if not flag.policy.startswith(BANK):
        return None
    from lookalike.usecases.review import timestamp

    name = flag.policy.removeprefix(BANK)
    banks = ctx.workflow.banks
    bank = next((b for b in banks.banks() if b.name == name), None)
    refused = banks.matches.refused_match(flag.id)
    # A refused upload's own entry; else every entry the item matched, this bank's sorted out below.
    candidates = [refused[:2]] if refused is not None else banks.matches.matched_ids(flag.item)
    entries = banks.entries_by_id([e for e, _ in candidates])
    gone = banks.removals([e for e, _ in candidates if e not in entries])
    # The entries of this bank, those whose label the flag carries first, nearest first.
    bank_of = {**{e: c.bank for e, c in gone.items()}, **{e: entry.bank for e, entry in entries.items()}}
    ours = [(e, d) for e, d in candidates if bank_of.get(e) == name]
    ours.sort(key=lambda pair: (not _labelled(entries.get(pair[0]), flag.label), pair[1]))
    entry_id, distance = ours[0] if ours else (None, int(flag.score))
    shown: dict[str, Any] = {
        "kind": "bank",
        "bank": name,
        "bank_kind": bank.kind.value if bank else None,
        "action": bank.action.value if bank else None,
        "enabled": bank.enabled if bank else None,
        "max_distance": bank.max_distance if bank else None,
        "bank_labels": list(bank.labels) if bank else [],
        "label": flag.label,
        "distance": distance,
        "reason": refused[2] if refused else None,
        "entry": None,
        "other_entries": max(0, len(ours) - 1),
    }
    if entry_id is None:
        return shown
    entry = entries.get(entry_id)
    if entry is None:
        removal = gone.get(entry_id)
        was = removal.subject if removal else None
        shown["entry"] = {
            **dict.fromkeys(("labels", "note", "added_at", "added_by", "paused_at", "describe")),
            "id": entry_id,
            # A lifted block's log keeps the take-down's flag and item (who and when: in "reason").
            "taken_down": {
                "flag": removal.flag,
                "by": None,
                "at": None,
                "item": str(removal.item) if removal.item is not None else None,
                "item_id": was.item_id if was else None,
                "source": was.source if was else None,
                "uri": was.uri if was else None,
            }
            if removal is not None and removal.flag is not None
            else None,
            "pdq": removal.pdq or None if removal else None,
            "sha256": removal.sha256 or None if removal else None,
            "removed": {
                "at": timestamp(removal.at),
                "by": removal.who,
                "action": removal.action,
                "note": removal.note,
            }
            if removal
            else None,
        }
        return shown
    subject = entry.subject
    shown["entry"] = {
        "id": entry.id,
        "labels": list(entry.labels),
        "note": entry.note,
        "pdq": entry.pdq or None,
        "sha256": entry.sha256 or None,
        "added_at": timestamp(entry.added_at),
        "added_by": entry.added_by,
        "paused_at": timestamp(entry.paused_at) if entry.paused_at is not None else None,
        "describe": entry.describe(),
        "taken_down": {
            "flag": entry.flag,
            "by": entry.added_by,
            "at": timestamp(entry.added_at),
            "item": str(entry.item) if entry.item is not None else None,
            "item_id": subject.item_id if subject else None,
            "source": subject.source if subject else None,
            "uri": subject.uri if subject else None,
        }
        if entry.flag is not None
        else None,
        "removed": None,
    }
    return shown


def _labelled(entry: Any, label: str) -> bool:
    """Whether a flag with ``label`` may come from this entry (screening.py's labels)."""
    if entry is None:
        return False
    if entry.flag is not None:
        return label == "taken down"
    return not entry.labels or entry.labels[0] == label


def _wave_match(ctx: Context, flag: Flag) -> dict[str, Any] | None:
    wave = ctx.workflow.waves.of_flag(flag.id)
    if wave is None:
        return None
    members = list(wave.members)
    stored = ctx.store.existing_ids([m.item for m in members]) if ctx.store.exists() else set()
    return {
        "kind": "wave",
        "wave": wave.id,
        "sellers": wave.sellers,
        "since": wave.since,
        "until": wave.until,
        "threshold": wave.threshold,
        "items": [
            {
                "item": m.item,
                "item_id": m.item_id,
                "source": m.source,
                "score": m.score,
                "created_at": m.created_at,
                "stored": m.item in stored,
            }
            for m in members
        ],
    }


def _label_match(ctx: Context, flag: Flag) -> dict[str, Any] | None:
    from lookalike.usecases import policies

    known = {p.name: p for p in ctx.workflow.policies()}
    if flag.policy not in known:
        # The policy was removed since (or the flag comes from elsewhere): its label is all there is.
        return {"kind": "label", "policy": flag.policy, "label": flag.label, "prompts": None}
    specs = {spec.name: spec for spec in policies.specs(known[flag.policy])}
    spec = specs.get(flag.label)
    return {
        "kind": "label",
        "policy": flag.policy,
        "label": flag.label,
        "prompts": list(spec.prompts) if spec else None,
        "negative_prompts": list(spec.negative_prompts) if spec else None,
        "threshold": spec.threshold if spec else None,
    }


MATCHERS: list[Callable[[Context, Flag], dict[str, Any] | None]] = [_wave_match, _bank_match, _label_match]
"""Tried in order; the first that knows the flag's kind says what it matched."""
