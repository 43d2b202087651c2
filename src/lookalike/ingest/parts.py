"""A listing split into parts that list themselves wherever they are sent (``index --ray``: a task each).

A folder is its own files and one part per subfolder it enters (each walked whole); an ``s3://``
prefix likewise, one part per subprefix; a Parquet catalog is slices of its row groups, numbered as
the whole catalog numbers its rows; anything else (a CSV catalog, one image) is one part. The parts
list exactly what the listing lists, by the same rules (skips and their reasons included), each
entry once; only their order may differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lookalike.ingest.sources import Listing, Record, Skipped, subfolders

if TYPE_CHECKING:
    from lookalike.ingest.objects import ObjectListing
    from lookalike.ingest.sources import Inputs

SLICE_ROWS = 10_000  # rows of a Parquet catalog one part lists (whole row groups: at least one)
Part = Iterable[Record | Skipped]


@dataclass(frozen=True)
class CatalogSlice:
    """Some row groups of a Parquet catalog, local or in S3."""

    listing: Listing | ObjectListing
    groups: tuple[int, ...]
    first: int  # the number of its first row (the header is line 1)
    rows: int

    def __iter__(self) -> Iterator[Record | Skipped]:
        return self.listing.row_groups(self.groups, self.first)

    def count(self) -> int:
        return self.rows


def split(listing: Listing | ObjectListing | Inputs, slice_rows: int = SLICE_ROWS) -> list[Part]:
    """The parts of ``listing``: a folder's or prefix's own entries first, then its subfolders'."""
    from lookalike.ingest.objects import ObjectListing

    if isinstance(listing, Listing) and listing.path.is_dir():
        return [
            Listing(listing.path, listing.source, top_only=True),
            *(Listing(folder, listing.source) for folder in subfolders(listing.path)),
        ]
    if isinstance(listing, ObjectListing) and listing.is_folder:
        return [listing.part(listing.key, top_only=True), *map(listing.part, listing.subprefixes())]
    if isinstance(listing, Listing | ObjectListing) and listing.is_catalog and _is_parquet(listing):
        return _slices(listing, slice_rows)
    return [listing]


def count(part: Part) -> int:
    """What a part lists, counted (for the progress bar's total)."""
    counted = getattr(part, "count", None)
    return int(counted()) if callable(counted) else sum(1 for _ in part)


def _is_parquet(listing: Listing | ObjectListing) -> bool:
    name = listing.path.name if isinstance(listing, Listing) else listing.key
    return name.lower().endswith(".parquet")


def _slices(listing: Listing | ObjectListing, slice_rows: int) -> list[Part]:
    from lookalike.ingest.catalog import parquet_row_groups
    from lookalike.ingest.objects import ObjectFile

    sizes = parquet_row_groups(listing.path if isinstance(listing, Listing) else ObjectFile(listing.uri))
    parts: list[Part] = []
    groups: list[int] = []
    first = rows = 0
    for index, size in enumerate(sizes):
        groups.append(index)
        rows += size
        if rows >= slice_rows or index == len(sizes) - 1:
            parts.append(CatalogSlice(listing, tuple(groups), first + 2, rows))
            first, groups, rows = first + rows, [], 0
    return parts or [listing]
