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
from lookalike.workflow import Claim, Details, Flag, Workflow

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
    for matcher in MATCHERS:
        match = matcher(ctx, flag)
        if match is not None:
            return Detail(flag, item, claim, match)
    return Detail(flag, item, claim, {"kind": "unknown"})


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


MATCHERS: list[Callable[[Context, Flag], dict[str, Any] | None]] = [_wave_match, _label_match]
"""Tried in order; the first that knows the flag's kind says what it matched."""
