"""Policies: label sets kept with the collection, scored against every image as it is indexed.

A match becomes a flag (item, policy, label, score, time) in the collection's workflow
database; flags are reviewed in review.py. Images stored before a policy existed are flagged by
``scan --policy NAME --flag``, which scores the stored vectors (nothing is re-embedded).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import ConfigError
from lookalike.usecases.context import Context
from lookalike.usecases.embedding import bind
from lookalike.workflow import Details, NewFlag, Policy, Subject
from lookalike.workflow.waves import POLICY as WAVES

if TYPE_CHECKING:
    from lookalike.ingest.pipeline import Hashes
    from lookalike.scan import LabelSet, LabelSpec
    from lookalike.store import Item

Progress = Callable[[int], None]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def add(ctx: Context, labels_path: str, name: str | None = None, *, replace: bool = False) -> Policy:
    """Keep the label file with the collection as policy ``name`` (default: the file's stem)."""
    from lookalike.scan import load_labels

    path = Path(labels_path).expanduser()
    load_labels(path)  # a bad file is refused now, with its reason
    name = name if name is not None else path.stem
    if not _NAME.match(name):
        raise ConfigError(
            f"A policy name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit; got {name!r}."
        )
    if name == WAVES:
        raise ConfigError(
            f"{WAVES!r} names the flags of near-duplicate waves (lookalike waves); choose another --name."
        )
    return ctx.workflow.add_policy(name, path.read_text(encoding="utf-8"), replace=replace)


def listed(ctx: Context) -> list[Policy]:
    return ctx.workflow.policies()


def remove(ctx: Context, name: str) -> None:
    ctx.workflow.remove_policy(name)


def specs(policy: Policy) -> list[LabelSpec]:
    from lookalike.scan import parse_labels

    return parse_labels(policy.labels, f"policy {policy.name}")


def flags_of(policy: str, labels: LabelSet, items: Sequence[Item]) -> list[NewFlag]:
    """One flag per (item, label) whose score reaches the label's threshold and beats its negatives."""
    import numpy as np

    with_vectors = [item for item in items if item.vector is not None]
    if not with_vectors:
        return []
    scores = labels.score(np.stack([item.vector for item in with_vectors]))  # type: ignore[misc]
    rows, columns = np.nonzero(scores.matched)
    return [
        NewFlag(with_vectors[r].id, policy, labels.names[c], float(scores.cosine[r, c]))
        for r, c in zip(rows.tolist(), columns.tolist(), strict=True)
    ]


def on_stored(ctx: Context) -> Callable[[list[Item], Hashes], int]:
    """What the ingestor calls with each stored chunk: flags for every active policy, and PDQ hashes;
    it returns how many flags the chunk raised.

    The label vectors are built once here, from the collection's own model; a policy that this
    model cannot score (an image-only model) stops the run before anything is indexed.
    """
    from lookalike.usecases.risk import label_set

    workflow = ctx.workflow
    active = [(policy.name, label_set(ctx, specs(policy))) for policy in workflow.policies()]
    if active and ctx.store.exists():
        ctx.store.check_dim(active[0][1].vectors.shape[1])

    def stored(items: list[Item], hashes: Hashes) -> int:
        if hashes:
            workflow.put_hashes(hashes)
        found = [flag for name, labels in active for flag in flags_of(name, labels, items)]
        if not found:
            return 0
        return workflow.add_flags(found, details=item_details(items), subjects=subjects_of(items, hashes))

    return stored


def subjects_of(items: Sequence[Item], hashes: Hashes | None = None) -> dict[int, Subject]:
    """What the audit keeps of each item should it go: item id, source, uri, SHA-256, PDQ hash."""
    hashes = hashes or {}
    return {
        item.id: Subject(item.item_id, item.source, item.uri, item.sha256, hashes.get(item.id, ("", 0))[0])
        for item in items
    }


def scan_and_flag(
    ctx: Context,
    name: str,
    *,
    sources: Sequence[str] = (),
    since: date | None = None,
    until: date | None = None,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Flag the stored items in the window that match policy ``name``; returns (items scanned, new flags)."""
    from lookalike.usecases import risk

    policy = ctx.workflow.policy(name)
    ctx.store.require()
    bind(ctx)
    _, total, rows = risk.scan(
        ctx, specs(policy), sources=sources, since=since, until=until, progress=progress
    )
    added = 0
    batch: list[NewFlag] = []
    matched: list[Item] = []
    about: dict[int, Subject] = {}
    for row in rows:
        batch.extend(NewFlag(row.item.id, name, label, row.scores[label]) for label in row.matched)
        if row.matched:
            matched.append(row.item)
            about.update(subjects_of([row.item]))
        if len(batch) >= 1000:
            added += ctx.workflow.add_flags(batch, details=item_details(matched), subjects=about)
            batch, matched, about = [], [], {}
    added += ctx.workflow.add_flags(batch, details=item_details(matched), subjects=about) if batch else 0
    return total, added


def item_details(items: Sequence[Item]) -> Details:
    """What a webhook event says of each item: its catalog id, source, uri and hash."""
    return {
        item.id: {"item_id": item.item_id, "source": item.source, "uri": item.uri, "sha256": item.sha256}
        for item in items
    }
