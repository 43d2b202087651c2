"""Mirroring a changing folder or catalog (``index --sync``): what to update, replace and delete.

Mark and sweep. While an ingest runs, every listed record marks the id it maps to (stored
or new). Afterwards, stored items in the listing's scope that nothing marked are swept:
an item whose key (uri or catalog item id) was listed again under a new image was
*replaced*, any other was *deleted*. A listed item whose image is unchanged but whose name
or date changed is *updated* in place with its stored vector (no re-embedding).

Nothing is lost on bad input: an item whose record was listed but could not be read this
time (a failed download, a bad date) is kept, and a listing that lists nothing sweeps nothing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from lookalike.errors import ConfigError
from lookalike.ingest.sources import DEFAULT_SOURCE, Inputs, Listing, Record
from lookalike.store import Item, Store
from lookalike.store.rows import normalise

SWEEP_BATCH = 5000


@dataclass
class Scope:
    """Which stored items a sync may delete: those of these sources, under this folder if given."""

    sources: set[str] = field(default_factory=set)
    folder: str | None = None
    uris: set[str] | None = None  # a single file: only itself
    catalog: bool = False  # a catalog's scope grows by the sources its rows name

    @classmethod
    def of(cls, listing: Listing | Inputs) -> Scope:
        """The scope of one folder (its source, under it), one file, or one catalog (its sources)."""
        if isinstance(listing, Inputs):
            raise ConfigError("--sync mirrors one folder or catalog, not a list of inputs.")
        path = listing.path.expanduser().resolve()
        if path.is_dir():
            return cls({listing.source or DEFAULT_SOURCE}, folder=str(path) + os.sep)
        if listing.is_catalog:
            return cls({listing.source} if listing.source else set(), catalog=True)
        return cls({listing.source or DEFAULT_SOURCE}, uris={str(path)})

    def holds(self, item: Item) -> bool:
        if item.source not in self.sources:
            return False
        if self.uris is not None:
            return item.uri in self.uris
        return self.folder is None or item.uri.startswith(self.folder)


@dataclass
class Marks:
    """What a run saw: ids listed (stored or new), keys and uris listed, pictures whose crops stay."""

    ids: set[int] = field(default_factory=set)
    keys: set[tuple[str, str]] = field(default_factory=set)
    unread: set[str] = field(default_factory=set)  # uris listed but not read this time
    pictures: set[tuple[str, str, str]] = field(default_factory=set)  # (source, uri, sha256)
    sources: set[str] = field(default_factory=set)
    listed: int = 0

    def record(self, record: Record) -> None:
        self.keys.add((record.source, record.key))
        self.sources.add(record.source)
        self.listed += 1

    def read(self, record: Record, item_id: int, sha256: str) -> None:
        self.ids.add(item_id)
        self.pictures.add((record.source, record.uri, sha256))


def updated_metadata(stored: Item, record: Record, created_at: int) -> Item | None:
    """The stored item with the record's name, item id and date, or None when nothing changed."""
    wanted = normalise(
        dataclasses.replace(stored, name=record.name, item_id=record.item_id, created_at=created_at)
    )
    if (wanted.name, wanted.item_id, wanted.created_at) == (stored.name, stored.item_id, stored.created_at):
        return None
    return wanted


def sweep(store: Store, scope: Scope, marks: Marks) -> tuple[int, int]:
    """Delete the scope's stored items that the run did not mark; returns (replaced, deleted)."""
    if not marks.listed:
        return 0, 0  # an empty listing (an unmounted folder?) must not wipe the collection
    if scope.catalog:
        scope.sources |= marks.sources
    doomed: list[Item] = []
    for batch in store.iter_items(batch_size=SWEEP_BATCH, with_vector=False, sources=sorted(scope.sources)):
        doomed.extend(item for item in batch if scope.holds(item) and not _kept(item, marks))
    replaced = sum(1 for item in doomed if not item.box and _listed_again(item, marks))
    store.delete([item.id for item in doomed])
    crops = sum(1 for item in doomed if item.box)
    return replaced, len(doomed) - replaced - crops


def _kept(item: Item, marks: Marks) -> bool:
    if item.id in marks.ids or item.uri in marks.unread:
        return True
    # A crop stays with its picture: the same listing entry and the same bytes.
    return bool(item.box) and (item.source, item.uri, item.parent_sha256) in marks.pictures


def _listed_again(item: Item, marks: Marks) -> bool:
    return (item.source, item.item_id) in marks.keys or (item.source, item.uri) in marks.keys
