"""Mirroring a changing folder or catalog (``index --sync``): what to update, replace and delete.

Mark and sweep. While an ingest runs, every listed record marks the id it maps to (stored
or new). Afterwards, stored items in the listing's scope that nothing marked are swept.
A listed item whose image is unchanged but whose name or date changed is *updated* in place
with its stored vector (no re-embedding).

Nothing is lost on bad input: an item whose record was listed but could not be read this
time (a missing file, a failed download, a picture that does not decode, a bad date), or that
lies under a subfolder that could not be listed (permissions, an I/O error), is *kept*. It is
matched by the record's key, not only its uri: a catalog row whose image moved to a URL that
fails this time still names its item id, and the item stays. A listing that
lists nothing sweeps nothing.

The counts add up. Per key (the uri in a folder, the item id in a catalog), each new picture
takes the place of one swept picture of that key while there are some (*replaced*); new
pictures beyond those are *added*, swept pictures beyond those are *deleted*. So, for the
whole pictures of the scope (crops follow their picture and are not counted)::

    indexed (new pictures)  = added + replaced
    swept (pictures gone)   = replaced + deleted
    stored after            = stored before + added - deleted
    stored before           = listed and unchanged or updated + kept + replaced + deleted

and every listed entry is one of added, replaced, updated, left as it was, or skipped.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field

from lookalike.errors import ConfigError
from lookalike.ingest.objects import ObjectListing
from lookalike.ingest.policy import is_s3
from lookalike.ingest.sources import DEFAULT_SOURCE, Inputs, Listing, Record, Skipped
from lookalike.store import Item, Store
from lookalike.store.rows import normalise
from lookalike.store.window import Window

SWEEP_BATCH = 5000


@dataclass
class Scope:
    """Which stored items a sync may delete: those of these sources, under this folder if given."""

    sources: set[str] = field(default_factory=set)
    folder: str | None = None
    uris: set[str] | None = None  # a single file: only itself
    catalog: bool = False  # a catalog's scope grows by the sources its rows name

    @classmethod
    def of(cls, listing: Listing | ObjectListing | Inputs) -> Scope:
        """The scope of one folder (its source, under it), one file, or one catalog (its sources)."""
        if isinstance(listing, Inputs):
            raise ConfigError("--sync mirrors one folder or catalog, not a list of inputs.")
        if isinstance(listing, ObjectListing):  # s3://bucket/prefix: the prefix is the folder
            if listing.is_folder:
                return cls({listing.source or DEFAULT_SOURCE}, folder=listing.uri.rstrip("/") + "/")
            if listing.is_catalog:
                return cls({listing.source} if listing.source else set(), catalog=True)
            return cls({listing.source or DEFAULT_SOURCE}, uris={listing.uri})
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
    unread_keys: set[tuple[str, str]] = field(default_factory=set)  # (source, key) of those
    unread_folders: set[str] = field(default_factory=set)  # folders that could not be listed (a/ b/)
    pictures: set[tuple[str, str, str]] = field(default_factory=set)  # (source, uri, sha256)
    new: Counter[tuple[str, str]] = field(default_factory=Counter)  # new pictures per (source, key)
    sources: set[str] = field(default_factory=set)
    listed: int = 0

    def record(self, record: Record) -> None:
        self.keys.add((record.source, record.key))
        self.sources.add(record.source)
        self.listed += 1

    def read(self, record: Record, item_id: int, sha256: str) -> None:
        self.ids.add(item_id)
        self.pictures.add((record.source, record.uri, sha256))

    def added(self, record: Record) -> None:
        """A new picture of this record was embedded (it is stored with this chunk)."""
        self.new[(record.source, record.key)] += 1

    def not_read(self, listed: Record | Skipped) -> None:
        """A listed record (or catalog row) that could not be read this time: its stored items stay."""
        self.unread.add(listed.uri)
        if isinstance(listed, Skipped) and listed.folder:  # nothing under it was listed: all stays
            if is_s3(listed.uri):  # a prefix that could not be listed
                self.unread_folders.add(listed.uri.rstrip("/") + "/")
            else:
                self.unread_folders.add(os.path.realpath(listed.uri).rstrip(os.sep) + os.sep)
        key = (listed.source, listed.key) if isinstance(listed, Record) else listed.key
        if key is not None:
            self.unread_keys.add(key)


@dataclass(frozen=True)
class Swept:
    """What a sweep did to the scope's stored whole pictures (crops go or stay with theirs)."""

    replaced: int = 0  # gone, and a new picture of the same key took its place
    deleted: int = 0  # gone, and nothing took its place
    kept: int = 0  # not listed again as it was, kept because a record of its key could not be read
    ids: tuple[int, ...] = ()  # every id deleted (pictures and crops)


def updated_metadata(stored: Item, record: Record, created_at: int) -> Item | None:
    """The stored item with the record's name, item id, date and other catalog fields (category, tags),
    or None when nothing changed."""
    given = {"name": record.name, "item_id": record.item_id, "created_at": created_at, **dict(record.details)}
    wanted = normalise(dataclasses.replace(stored, **given))
    if all(getattr(wanted, name) == getattr(stored, name) for name in given):
        return None
    return wanted


def sweep(store: Store, scope: Scope, marks: Marks) -> Swept:
    """Delete the scope's stored items that the run did not mark, and count what went and what stayed."""
    if not marks.listed:
        return Swept()  # an empty listing (an unmounted folder?) must not wipe the collection
    if scope.catalog:  # a catalog's scope grows by the sources its rows name (the plan's scope stays)
        scope = dataclasses.replace(scope, sources=scope.sources | marks.sources)
    doomed: list[Item] = []
    kept = 0
    window = Window.of(sources=sorted(scope.sources))
    for batch in store.iter_items(batch_size=SWEEP_BATCH, with_vector=False, window=window):
        for item in batch:
            if not scope.holds(item) or item.id in marks.ids or _with_its_picture(item, marks):
                continue
            if _unread(item, marks):
                kept += not item.box
            else:
                doomed.append(item)
    gone = Counter(_listed_key(item, marks) for item in doomed if not item.box)
    replaced = sum(min(count, marks.new[key]) for key, count in gone.items() if key is not None)
    ids = tuple(item.id for item in doomed)
    store.delete(list(ids))
    return Swept(replaced, gone.total() - replaced, kept, ids)


def _with_its_picture(item: Item, marks: Marks) -> bool:
    # A crop stays with its picture: the same listing entry and the same bytes.
    return bool(item.box) and (item.source, item.uri, item.parent_sha256) in marks.pictures


def _unread(item: Item, marks: Marks) -> bool:
    keys = marks.unread_keys
    if item.uri in marks.unread or (item.source, item.item_id) in keys or (item.source, item.uri) in keys:
        return True
    return any(item.uri.startswith(folder) for folder in marks.unread_folders)


def _listed_key(item: Item, marks: Marks) -> tuple[str, str] | None:
    """The listed key a stored item belongs to (catalog item id, else uri), or None if not listed."""
    for key in ((item.source, item.item_id), (item.source, item.uri)):
        if key in marks.keys:
            return key
    return None
