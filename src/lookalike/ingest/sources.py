"""Where images come from: a folder, one file, or a CSV/Parquet catalog; each becomes Records."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lookalike.errors import CatalogError, ConfigError
from lookalike.ingest.decode import supported_extensions
from lookalike.store.partitions import MAX_TIME, MIN_TIME

CATALOG_EXTENSIONS = (".csv", ".parquet")
CATALOG_COLUMNS = ("image", "item_id", "name", "source", "created_at")
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class Record:
    """One image to index, before its bytes are read."""

    uri: str
    item_id: str
    name: str
    source: str
    created_at: int | None  # None: the file's modification time, or the time of indexing for a URL
    key: str  # what the id hashes besides source and content: the catalog item_id, else the uri


@dataclass(frozen=True)
class Skipped:
    """An input that was not indexed, and why."""

    uri: str
    reason: str


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def parse_created_at(value: Any) -> int | None:
    """ISO date or datetime (naive = UTC) or unix seconds → unix seconds; empty → None.

    A number too large for seconds but in range as milliseconds (``1700000000000``) is read as
    milliseconds. Dates outside 1970-01-01 .. 2199-12-31 are refused: one row dated 9999 must
    not create a partition nothing can name.

    Raises:
        ValueError: the value is neither, is not finite, or is out of range; the message says which.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return _in_range(int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()), value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _seconds(float(value), value)
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        return _seconds(number, value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"created_at {value!r} is not a date or unix time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return _in_range(int(parsed.timestamp()), value)
    except (OverflowError, ValueError):
        raise ValueError(f"created_at {value!r} is outside 1970-01-01 .. 2199-12-31") from None


def _seconds(number: float, value: Any) -> int:
    if not math.isfinite(number):
        raise ValueError(f"created_at {value!r} is not a finite number")
    if MAX_TIME <= number < MAX_TIME * 1000:
        number /= 1000  # milliseconds since the epoch, as JavaScript and many exports write them
    return _in_range(int(number), value)


def _in_range(seconds: int, value: Any) -> int:
    if not MIN_TIME <= seconds < MAX_TIME:
        raise ValueError(f"created_at {value!r} is outside 1970-01-01 .. 2199-12-31")
    return seconds


def _walk_images(root: Path) -> Iterator[Path]:
    extensions = supported_extensions()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in extensions:
                yield Path(folder) / name


class Listing:
    """A re-iterable list of Records (and Skipped rows) with a cheap count for the progress bar."""

    def __init__(self, path: Path, source: str | None) -> None:
        self.path = path
        self.source = source

    @property
    def is_catalog(self) -> bool:
        return self.path.is_file() and self.path.suffix.lower() in CATALOG_EXTENSIONS

    def count(self) -> int:
        if self.path.is_dir():
            return sum(1 for _ in _walk_images(self.path))
        if not self.is_catalog:
            return 1
        if self.path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(self.path).metadata.num_rows)
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            return sum(1 for _ in csv.DictReader(handle))

    def __iter__(self) -> Iterator[Record | Skipped]:
        if self.path.is_dir():
            for file in _walk_images(self.path):
                yield self._file_record(file)
        elif self.is_catalog:
            yield from self._catalog_records()
        else:
            yield self._file_record(self.path)

    def _file_record(self, file: Path) -> Record:
        uri = str(file.resolve())
        return Record(uri, file.stem, "", self.source or DEFAULT_SOURCE, None, uri)

    def _rows(self) -> Iterator[dict[str, Any]]:
        if self.path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            try:
                parquet = pq.ParquetFile(self.path)
            except Exception as exc:  # pyarrow raises several types for unreadable files
                raise CatalogError(f"Cannot read the catalog {self.path}: {exc}") from exc
            self._check_columns(parquet.schema_arrow.names)
            for batch in parquet.iter_batches(batch_size=4096):
                yield from batch.to_pylist()
            return
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            self._check_columns(reader.fieldnames or [])
            yield from reader

    def _check_columns(self, names: Sequence[str]) -> None:
        if "image" not in names:
            raise CatalogError(
                f"The catalog {self.path} has no 'image' column (found: {', '.join(names) or 'none'}). "
                f"Expected columns: {', '.join(CATALOG_COLUMNS)}; only 'image' is required."
            )

    def _catalog_records(self) -> Iterator[Record | Skipped]:
        base = self.path.resolve().parent
        for number, row in enumerate(self._rows(), start=2):
            where = f"{self.path.name} row {number}"
            image = str(row.get("image") or "").strip()
            if not image:
                yield Skipped(where, "no image in this row")
                continue
            if is_url(image):
                uri = image
            else:
                path = Path(image).expanduser()
                uri = str((path if path.is_absolute() else base / path).resolve())
            try:
                created_at = parse_created_at(row.get("created_at"))
            except ValueError as exc:
                yield Skipped(uri, f"{where}: {exc}")
                continue
            item_id = str(row.get("item_id") or "").strip()
            source = str(row.get("source") or "").strip() or self.source or DEFAULT_SOURCE
            stem = Path(image.split("?")[0].rstrip("/")).stem
            yield Record(uri, item_id or stem, str(row.get("name") or ""), source, created_at, item_id or uri)


def open_listing(path: str | os.PathLike[str], source: str | None = None) -> Listing:
    """The images under ``path``: a folder (recursive), one image file, or a .csv/.parquet catalog."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise ConfigError(f"No such file or folder: {path}")
    if source is not None and not source.strip():
        raise ConfigError("--source must not be empty.")
    return Listing(resolved, source)


class Inputs:
    """Several inputs indexed as one: paths (folders, files, catalogs) and image URLs."""

    def __init__(self, inputs: Sequence[str], source: str | None = None) -> None:
        if source is not None and not source.strip():
            raise ConfigError("source must not be empty.")
        self.source = source
        self.urls = [value for value in inputs if is_url(value)]
        self.listings = [open_listing(value, source) for value in inputs if not is_url(value)]

    def count(self) -> int:
        return len(self.urls) + sum(listing.count() for listing in self.listings)

    def __iter__(self) -> Iterator[Record | Skipped]:
        for url in self.urls:
            stem = Path(url.split("?")[0].rstrip("/")).stem
            yield Record(url, stem, "", self.source or DEFAULT_SOURCE, None, url)
        for listing in self.listings:
            yield from listing
