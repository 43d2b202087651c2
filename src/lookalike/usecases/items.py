"""Stored items by their ids: one item, a catalog item's pictures, an item's image, the collection's figures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.errors import ConfigError, ItemNotFoundError
from lookalike.usecases.context import Context

if TYPE_CHECKING:
    from lookalike.store import CollectionInfo, Item
    from lookalike.workflow import Decision


def item(ctx: Context, item_id: int) -> Item:
    """The stored item with this internal id (all fields)."""
    found = ctx.store.get([item_id])
    if not found:
        raise ItemNotFoundError(f"No stored item has the id {item_id}.")
    return found[0]


def hashes(ctx: Context, ids: Sequence[int]) -> dict[int, tuple[str, int]]:
    """The stored PDQ hash and quality of these items (whole pictures hashed at ingest or by backfill)."""
    if not ids or not Path(ctx.settings.workflow_path()).exists():
        return {}  # no workflow database yet: nothing was hashed
    return ctx.workflow.hashes_of(list(ids))


def shown(ctx: Context, found: Sequence[Item]) -> list[dict[str, object]]:
    """Items as ``GET /items/{id}`` answers and ``show --json`` prints them: the stored fields and
    the PDQ hash and its quality (None where the picture was not hashed)."""
    known = hashes(ctx, [i.id for i in found])
    return [
        {
            **i.metadata(),
            "pdq": known[i.id][0] if i.id in known else None,
            "pdq_quality": known[i.id][1] if i.id in known else None,
        }
        for i in found
    ]


def by_item_id(ctx: Context, item_id: str, *, with_vector: bool = False) -> list[Item]:
    """Every stored item (picture or crop) of one catalog item id; raises if there is none.

    The store finds them by the item id (a Milvus filter; the read index's sorted item ids), not by
    a pass over the collection.
    """
    from lookalike.store.window import Window

    ctx.store.require()
    window = Window.of(item_ids=[item_id])
    found = [i for batch in ctx.store.iter_items(with_vector=with_vector, window=window) for i in batch]
    if not found:
        raise ItemNotFoundError(f"No stored item has the item id {item_id!r}.")
    return sorted(found, key=lambda i: i.id)


def item_image(ctx: Context, item_id: int, size: int | None = None) -> tuple[bytes, str]:
    """A stored item's image (or a thumbnail of longest side ``size``) and its media type.

    Only the uri stored with the item is read: no caller's value becomes a path.
    """
    from lookalike.ingest import encode_jpeg, image_media_type, shrink
    from lookalike.ingest.kept import stored_image

    found = item(ctx, item_id)
    data = stored_image(
        found.uri,
        found.parent_sha256 or found.sha256,
        ctx.settings.uploads_path(),
        max_bytes=ctx.max_bytes,
        timeout_s=ctx.settings.fetch_timeout_s,
    )
    if size is None:
        return data, image_media_type(data)
    return encode_jpeg(shrink(data, size, max_pixels=ctx.settings.max_image_pixels)), "image/jpeg"


def stats(ctx: Context) -> CollectionInfo:
    """The collection's figures; its model as people read it (the record's label)."""
    from dataclasses import replace

    from lookalike.usecases.embedding import label_of

    info = ctx.store.info()
    return replace(info, model=label_of(info.model))


def stats_row(info: CollectionInfo) -> dict[str, Any]:
    """The figures as the API answers them (``GET /stats``) and ``lookalike stats --json`` prints them."""
    from dataclasses import asdict

    data = asdict(info)
    data["partitions"] = [{"name": p.name, "rows": p.rows} for p in info.partitions]
    return data


def select(
    ctx: Context,
    *,
    ids: Sequence[int] = (),
    item_ids: Sequence[str] = (),
    sources: Sequence[str] = (),
    since: date | None = None,
    until: date | None = None,
) -> list[Item]:
    """The stored items matching every criterion given (ids, catalog item ids, sources, days).

    Raises:
        ConfigError: no criterion at all (deleting everything takes an explicit choice).
    """
    from lookalike.queries import day_window
    from lookalike.store.window import Window

    if not (ids or item_ids or sources or since or until):
        raise ConfigError("Say what to delete: ids, item ids, sources or a date window.")
    start, end = day_window(since, until)
    ctx.store.require()
    if ids and not (item_ids or sources or since or until):
        return ctx.store.get(list(ids))
    wanted_ids, wanted_keys = set(ids), set(item_ids)
    found: list[Item] = []
    window = Window.of(sources=list(sources) or None, since=start, until=end, item_ids=list(item_ids) or None)
    for batch in ctx.store.iter_items(batch_size=5000, with_vector=False, window=window):
        found.extend(
            item
            for item in batch
            if (not wanted_ids or item.id in wanted_ids) and (not wanted_keys or item.item_id in wanted_keys)
        )
    return found


def check_filter(field: str, values: Sequence[str], label: str) -> None:
    """Refuse a filter value no stored item can hold (over its byte limit, not UTF-8, a NUL).

    Raises:
        ConfigError: an answer of "nothing matches" would mislead; the message names ``label``.
    """
    from lookalike.store.rows import identity_problem

    for value in values:
        problem = identity_problem(field, value, label)
        if problem is not None:
            raise ConfigError(f"{problem}: no stored item can match it.")


def picture_and_crops(ctx: Context, item_id: int) -> list[int]:
    """The ids of a stored picture and of every object detected in it, from any one of them.

    A take-down must take them all: a crop's vector and uri are the picture's too. One pass over
    the item's source without vectors (take-downs are rare); an unknown id is returned alone.
    """
    from lookalike.store.window import Window

    found = ctx.store.get([item_id])
    if not found:
        return [item_id]
    item = found[0]
    picture = item.parent_sha256 if item.box else item.sha256
    family = {item_id}
    for batch in ctx.store.iter_items(with_vector=False, window=Window.of(sources=[item.source])):
        for other in batch:
            of = other.parent_sha256 if other.box else other.sha256  # the picture it was cut from
            if other.uri == item.uri and of == picture:
                family.add(other.id)
    return sorted(family)


def delete(
    ctx: Context, ids: Sequence[int], *, purge: bool = False, reason: str | None = "item deleted"
) -> int:
    """Delete items by id (gone from every read at once); ``purge`` also erases their bytes.

    Their open flags are closed with ``reason`` as soon as the store's delete is flushed (see
    ``gone``); ``reason=None`` leaves that to the caller, as a takedown records its own.
    """
    doomed = ctx.store.get(list(ids)) if purge else []
    deleted = ctx.store.delete(list(ids), erase=purge)  # erasure is planned first: a kill finishes it
    ctx.store.flush()
    if reason is not None:
        gone(ctx, ids, reason)
    if purge:
        names = {i.uri for i in doomed} | {h for i in doomed for h in (i.sha256, i.parent_sha256) if h}
        forget_unreferenced_images(ctx, names)
    return deleted


def gone(ctx: Context, ids: Sequence[int], reason: str) -> list[Decision]:
    """Close the open flags of items just deleted (``reason`` in the audit, by "system") and forget
    their perceptual hashes (data of the picture too): one SQLite transaction, written right
    after the store's delete is flushed.

    A process that dies between the two leaves open flags of items that no longer exist; no
    listing shows them open, because every flag listing first closes those whose item Milvus
    no longer holds (``review.settle``).
    """
    if not ids or not Path(ctx.settings.workflow_path()).exists():
        return []  # no workflow database yet: nothing was ever flagged or hashed
    return ctx.workflow.items_gone(list(ids), reason)


def compact(ctx: Context) -> int:
    """Rewrite storage so that deleted items' bytes are gone from every file; returns partitions rewritten.

    The image bytes lookalike kept of its own (API uploads, URL images kept at index time) go
    too once no stored item refers to them.
    """
    ctx.store.require()
    rewritten = ctx.store.compact()
    forget_unreferenced_images(ctx)
    return rewritten


def forget_unreferenced_images(ctx: Context, doomed: set[str] | None = None) -> int:
    """Remove kept uploads and URL images that no stored item refers to; returns how many.

    Those of items just deleted (``doomed``: their uris and hashes) go at once; other
    unreferenced files only after an hour, so that an upload still waiting for its index job
    is not taken from under it.
    """
    import time
    from pathlib import Path

    doomed = doomed or set()
    old = time.time() - 3600
    folder = Path(ctx.settings.uploads_path())
    if not folder.is_dir():
        return 0
    hashes: set[str] = set()
    uris: set[str] = set()
    for batch in ctx.store.iter_items(batch_size=5000, with_vector=False):
        for stored in batch:
            hashes.update(h for h in (stored.sha256, stored.parent_sha256) if h)
            uris.add(stored.uri)
    removed = 0
    for path in folder.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or (path.suffix == ".img" and path.stem in hashes):
            continue
        resolved = str(path.resolve())
        if resolved in uris:
            continue
        if resolved in doomed or path.stem in doomed or path.stat().st_mtime < old:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
