"""Waves: near-duplicate clusters that appeared across several sources (sellers) within a window.

A counterfeit or spam wave looks like this: the same picture, resized or recompressed, listed by
many sellers within hours. ``find`` reads the whole pictures created in the window with their
vectors, pairs those whose cosine reaches the threshold (the vector index of ``duplicates``,
scan/neighbours.py), groups them without chaining (every two members of a cluster are within the
threshold of each other), and raises one grouped flag for each cluster whose members come from
at least ``min_sellers`` sources. A wave is never raised twice: see workflow/waves.py.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lookalike.errors import ConfigError, LookalikeError
from lookalike.usecases.context import Context
from lookalike.workflow import Member, Wave

log = logging.getLogger(__name__)
Progress = Callable[[int], None]
_AGO = re.compile(r"^(\d{1,6})\s*([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Found:
    """One cluster that reached ``min_sellers``, and what recording it did."""

    members: tuple[Member, ...]  # the representative first
    wave: Wave | None  # the wave it is (new or grown); None: nothing recorded (dry run, or all known)
    new: bool  # a wave raised now, with its flag
    added: int  # items added to a wave (new or grown)

    @property
    def sellers(self) -> int:
        return len({m.source for m in self.members})


def found_json(found: Sequence[Found]) -> dict[str, Any]:
    """What a check found, as ``POST /waves``'s job answers it and ``lookalike waves --json`` prints
    it; item ids are strings (they exceed a JavaScript number)."""
    return {
        "clusters": len(found),
        "new_waves": sum(1 for f in found if f.new),
        "waves": [
            {
                "wave": f.wave.id if f.wave else None,
                "flag": f.wave.flag if f.wave else None,
                "new": f.new,
                "added": f.added,
                "sellers": f.sellers,
                "items": [
                    {
                        "item": str(m.item),
                        "item_id": m.item_id,
                        "source": m.source,
                        "score": round(m.score, 6),
                    }
                    for m in f.members
                ],
            }
            for f in found
        ],
    }


def moment(text: str, *, end: bool = False, option: str = "--since", now: float | None = None) -> int:
    """Unix seconds from ``YYYY-MM-DD`` (a UTC day: its start, or with ``end`` the next day's),
    an ISO date and time (UTC unless it says otherwise), or a span ago: ``90m``, ``6h``, ``2d``, ``1w``."""
    value = text.strip()
    clock = time.time() if now is None else now
    ago = _AGO.match(value)
    if ago:
        return int(clock - int(ago.group(1)) * _UNITS[ago.group(2)])
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return int((day + timedelta(days=1) if end else day).timestamp())
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise ConfigError(
            f"{option} {text!r} is not a day (2023-11-19), a time (2023-11-19T08:00) or a span ago (6h, 2d)."
        ) from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def _check(min_sellers: int, threshold: float, since: int, until: int) -> None:
    if min_sellers < 2:
        raise ConfigError(f"--min-sellers must be at least 2, got {min_sellers}.")
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be a cosine between -1 and 1, got {threshold}.")
    if since >= until:
        raise ConfigError("The window is empty: --since must be before --until.")


def find(
    ctx: Context,
    *,
    since: int,
    until: int | None = None,
    min_sellers: int = 3,
    threshold: float = 0.95,
    sources: Sequence[str] = (),
    dry_run: bool = False,
    progress: Progress | None = None,
) -> list[Found]:
    """Clusters of near-duplicates created in [since, until) across ``min_sellers`` sources or more.

    Each is recorded as a wave with one flag (unless ``dry_run``); one found before is not raised
    again, and an open one gains the cluster's new items. Largest clusters first.
    """
    import numpy as np

    from lookalike.scan.neighbours import leader_groups, pairs_within
    from lookalike.store.window import Window

    end = int(time.time()) + 1 if until is None else until
    _check(min_sellers, threshold, since, end)
    ctx.store.require()
    members: list[Member] = []
    vectors: list[np.ndarray] = []
    window = Window.of(sources=list(sources) or None, since=since, until=end)
    for batch in ctx.store.iter_items(batch_size=4096, with_vector=True, window=window):
        for item in batch:
            if item.box or item.vector is None:
                continue  # whole pictures only: a wave is the same photo listed again
            members.append(Member(item.id, item.source, item.item_id, 1.0, item.created_at))
            vectors.append(item.vector)
        if progress:
            progress(len(batch))
    if len({m.source for m in members}) < min_sellers:
        return []
    matrix = np.ascontiguousarray(np.stack(vectors), dtype=np.float32)
    clusters = []
    for rep, others, scores in leader_groups(len(members), pairs_within(matrix, threshold)):
        cluster = [members[rep]] + [
            Member(m.item, m.source, m.item_id, min(1.0, float(s)), m.created_at)
            for m, s in zip((members[o] for o in others), scores, strict=True)
        ]
        if len({m.source for m in cluster}) >= min_sellers:
            clusters.append(cluster)
    clusters.sort(key=lambda c: (-len({m.source for m in c}), -len(c), c[0].item))
    if dry_run:
        return [Found(tuple(c), None, False, 0) for c in clusters]
    return [_record(ctx, c, min_sellers, since, end, threshold) for c in clusters]


def _record(
    ctx: Context, cluster: list[Member], min_sellers: int, since: int, until: int, threshold: float
) -> Found:
    from lookalike.usecases.queue import details_of, items_of

    workflow = ctx.workflow
    details = details_of(items_of(ctx, [cluster[0].item]))

    def raise_flag(members: list[Member], score: float, when: int) -> int:
        extra = {"wave": _wave_event(members, since, until, threshold)}
        found = details if members[0].item == cluster[0].item else {}
        return workflow.raise_wave(members[0].item, score, when, found, extra=extra)

    def grown(wave: Wave, added: list[Member]) -> None:
        workflow.outbox.enqueue(
            "wave.grown",
            {"flag": wave.flag, "wave": wave.id, "sellers": wave.sellers, "added": _members(added)},
        )

    outcome = workflow.waves.record(
        cluster,
        min_sellers=min_sellers,
        since=since,
        until=until,
        threshold=threshold,
        raise_flag=raise_flag,
        grown=grown,
    )
    if outcome.added:
        workflow.outbox.notify()
    return Found(tuple(cluster), outcome.wave, outcome.new, outcome.added)


def _members(members: Sequence[Member]) -> list[dict[str, object]]:
    return [
        {"item": str(m.item), "item_id": m.item_id, "source": m.source, "score": round(m.score, 6)}
        for m in members
    ]


def _wave_event(members: Sequence[Member], since: int, until: int, threshold: float) -> dict[str, object]:
    from lookalike.workflow.outbox import iso

    return {
        "sellers": len({m.source for m in members}),
        "since": iso(since),
        "until": iso(until),
        "threshold": threshold,
        "items": _members(members),
    }


def listed(ctx: Context, *, limit: int = 100, offset: int = 0) -> tuple[int, list[Wave]]:
    return ctx.workflow.waves.listed(limit=limit, offset=offset)


def run(ctx: Context, stop: threading.Event, *, every_s: float) -> None:
    """The scheduled check of ``lookalike serve``: every ``every_s``, the last waves_window_s."""
    settings = ctx.settings
    while not stop.wait(every_s):
        until = int(time.time())
        try:
            found = find(
                ctx,
                since=until - int(settings.waves_window_s),
                until=until,
                min_sellers=settings.waves_min_sellers,
                threshold=settings.waves_threshold,
            )
        except LookalikeError as exc:  # no collection yet, say: tried again at the next turn
            log.info("scheduled wave check: %s", exc)
            continue
        except Exception:  # logged with its traceback; the loop goes on
            log.exception("scheduled wave check failed")
            continue
        raised = sum(1 for f in found if f.new)
        if raised:
            log.warning("wave check: %d new waves flagged", raised)
