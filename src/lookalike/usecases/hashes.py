"""PDQ perceptual hashes: kept at ingest, backfilled for older collections, matched against hash lists.

Where they live: in the collection's workflow database (SQLite), keyed by item id, not as a
Milvus field. A Milvus scalar field would change the schema, and collections made by earlier
versions would need a migration (Milvus cannot add a field to a collection on 2.3); the side
store needs none, and an old database opens as it is. Milvus stays the record of which items
exist: a hash whose item is gone is never reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lookalike.errors import ImageError
from lookalike.usecases.context import Context

if TYPE_CHECKING:
    from lookalike.ingest import FetchPolicy
    from lookalike.ingest.sources import Skipped
    from lookalike.store import Item

Progress = Callable[[int], None]


@dataclass
class Backfilled:
    hashed: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def backfill(
    ctx: Context, *, policy: FetchPolicy | None = None, progress: Progress | None = None
) -> Backfilled:
    """Hash every stored whole picture that has no PDQ hash yet, reading it again from its uri."""
    from lookalike.ingest import decode_image
    from lookalike.ingest.phash import pdq
    from lookalike.ingest.sources import Skipped

    store, workflow = ctx.store, ctx.workflow
    result = Backfilled()
    if not store.exists():
        return result
    known = set(workflow.hashes())
    read = (policy or ctx.policy).read
    stored: set[int] = set()
    for batch in store.iter_items(batch_size=1000, with_vector=False):
        hashes: dict[int, tuple[str, int]] = {}
        stored.update(item.id for item in batch)
        for item in batch:
            if item.box or item.id in known:
                continue
            try:
                image = decode_image(read(item.uri).data, max_pixels=ctx.settings.max_image_pixels).image
            except ImageError as exc:
                result.skipped.append(Skipped(item.uri, str(exc)))
                continue
            hashes[item.id] = pdq(image)
        if hashes:
            workflow.put_hashes(hashes)
            result.hashed += len(hashes)
        if progress:
            progress(len(batch))
    if gone := known - stored:
        workflow.forget_hashes(sorted(gone))  # of items deleted since (a sync, a delete elsewhere)
    return result


@dataclass(frozen=True)
class HashMatch:
    item: Item
    pdq: str
    distance: int
    listed: str  # the hash in the list it matched
    label: str  # the list's label for that hash
    line: int


def match(ctx: Context, list_path: str, *, max_distance: int = 31) -> list[HashMatch]:
    """Stored pictures within ``max_distance`` bits of any hash in the list, nearest first."""
    from lookalike.scan.hashes import check_distance, load_hash_list, to_bits, within

    check_distance(max_distance)
    listed = load_hash_list(list_path)  # a bad list is refused before the store opens
    ctx.store.require()
    stored = ctx.workflow.hashes()
    ids = list(stored)
    pairs = within(to_bits([h.pdq for h in listed]), to_bits([stored[i][0] for i in ids]), max_distance)
    items = {item.id: item for item in ctx.store.get(sorted({ids[s] for _, s, _ in pairs}))}
    found = [
        HashMatch(items[ids[s]], stored[ids[s]][0], d, listed[q].pdq, listed[q].label, listed[q].line)
        for q, s, d in pairs
        if ids[s] in items  # deleted since it was hashed: not reported
    ]
    found.sort(key=lambda m: (m.distance, m.line, m.item.id))
    return found
