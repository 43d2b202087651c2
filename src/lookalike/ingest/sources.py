"""Where images come from: a folder, one file, or a CSV/Parquet catalog; each becomes Records."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.errors import CatalogError, ConfigError
from lookalike.ingest.catalog import CATALOG_COLUMNS, csv_rows, parquet_count, parquet_rows
from lookalike.ingest.decode import HEIC_EXTENSIONS, IMAGE_EXTENSIONS, supported_extensions
from lookalike.ingest.policy import file_problem, has_scheme, is_s3, is_url, printable_path
from lookalike.store.fields import BY_NAME, CATALOG_FIELDS, catalog_value, cell_text
from lookalike.store.partitions import MAX_TIME, MIN_TIME
from lookalike.store.rows import check_identity, identity_problem

if TYPE_CHECKING:
    from lookalike.ingest.objects import ObjectListing

CATALOG_EXTENSIONS = (".csv", ".parquet")
DETAILS = tuple(BY_NAME[name] for name in CATALOG_FIELDS if name != "name")
"""The catalog fields a Record carries in ``details`` (its name has an attribute of its own)."""
__all__ = ["CATALOG_COLUMNS", "CATALOG_EXTENSIONS", "Inputs", "Listing", "Record", "Skipped", "is_url"]
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
    listed: str = ""  # the path as the folder listed it (a link's own name), for reports
    details: tuple[tuple[str, Any], ...] = ()
    """A catalog row's other catalog fields (``fields.CATALOG_FIELDS`` but the name): (field, value)."""

    @property
    def shown(self) -> str:
        return self.listed or self.uri


@dataclass(frozen=True)
class Skipped:
    """An input that was not indexed, and why."""

    uri: str
    reason: str
    # (source, key) of a listed catalog row that could not become a Record: index --sync keeps
    # the stored item of that key (its row is still listed, only unreadable this time).
    key: tuple[str, str] | None = None
    # A folder that could not be listed: index --sync keeps every stored item under it.
    folder: bool = False


# A number is read by its size: 8 digits are a date (YYYYMMDD), 9-10 digits unix seconds, 12-13
# digits unix milliseconds, both from 1973-03-03 (where seconds reach 9 digits) to 2199-12-31.
# Anything else is no plausible time: a YYYYMMDD read as seconds was a day in 1970, a year (2023)
# 34 minutes after the epoch, microseconds the year 55000.
MIN_SECONDS = 100_000_000
MIN_MILLISECONDS = 100_000_000_000


_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def parse_created_at(value: Any) -> int | None:
    """ISO date or datetime (naive = UTC), YYYYMMDD, unix seconds or milliseconds → unix seconds; empty → None.

    Numbers are read by their size: eight digits (``20231119``) are a date; 9 or 10 digits unix
    seconds; 12 or 13 digits (``1700000000000``) unix milliseconds; any other number (``2023``,
    ``-5``, microseconds) is refused, as is text with non-ASCII characters (``٣``, full-width
    digits). Dates outside 1970-01-01 .. 2199-12-31 are refused: one row dated 9999 must not
    create a partition nothing can name.

    Raises:
        ValueError: the value is none of these, is not finite, or is out of range; the message says which.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return _in_range(int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()), value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _seconds(float(value), value)
        except OverflowError:  # an int too large for a float
            raise ValueError(f"created_at {value!r} is outside 1970-01-01 .. 2199-12-31") from None
    text = str(value).strip()
    if not text:
        return None
    if not text.isascii():  # float() and int() read ٣ or ３ as 3: a date is written in ASCII digits
        raise ValueError(
            f"created_at {value!r} has characters other than ASCII: write it with the digits 0-9"
        )
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not _PLAIN_NUMBER.fullmatch(text):  # 1e9, 1_000_000_000, inf: float() reads them
            raise ValueError(
                f"created_at {value!r} is not a plain number: write unix time with the digits 0-9, or a date"
            )
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
    if number.is_integer() and 10_000_000 <= number < 100_000_000:
        return _yyyymmdd(int(number), value)
    if MIN_SECONDS <= number < MAX_TIME:
        return int(number)
    if MIN_MILLISECONDS <= number < MAX_TIME * 1000:
        return int(number / 1000)  # milliseconds since the epoch, as JavaScript and many exports write them
    if number < 0:
        raise ValueError(f"created_at {value!r} is outside 1970-01-01 .. 2199-12-31")
    raise ValueError(
        f"created_at {value!r} is no plausible time: numbers are read as YYYYMMDD (8 digits), unix seconds "
        "(9-10 digits) or milliseconds (12-13 digits) from 1973-03-03 to 2199-12-31; write a date instead"
    )


def _yyyymmdd(number: int, value: Any) -> int:
    year, month, day = number // 10_000, number // 100 % 100, number % 100
    try:
        parsed = datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"created_at {value!r} has eight digits but is no date YYYYMMDD (year {year}, month {month}, "
            f"day {day})"
        ) from None
    return _in_range(int(parsed.timestamp()), value)


def _in_range(seconds: int, value: Any) -> int:
    if not MIN_TIME <= seconds < MAX_TIME:
        raise ValueError(f"created_at {value!r} is outside 1970-01-01 .. 2199-12-31")
    return seconds


# Named like pictures, but not formats lookalike decodes: reported, never dropped silently.
UNSUPPORTED_EXTENSIONS = frozenset(
    {
        ".svg",
        ".svgz",
        ".pdf",
        ".eps",
        ".ai",
        ".psd",
        ".avif",
        ".jxl",
        ".jp2",
        ".ico",
        ".raw",
        ".cr2",
        ".nef",
        ".arw",
        ".dng",
    }
)
MAX_URI_BYTES = 4096  # the store's uri field


def _suffix(name: str) -> str:
    # ".jpg" alone is a hidden file named like an image (pathlib sees no suffix in it).
    return "." + name.rsplit(".", 1)[1].lower() if "." in name else ""


def _named_like_image(name: str) -> bool:
    suffix = _suffix(name)
    return suffix in IMAGE_EXTENSIONS or suffix in HEIC_EXTENSIONS or suffix in UNSUPPORTED_EXTENSIONS


def _passed_over(name: str, extensions: frozenset[str]) -> str | None:
    """Why a file named like an image is not read, or None when it is read (or not an image name)."""
    suffix = _suffix(name)
    if not _named_like_image(name):
        return None
    if name.startswith("."):
        return "hidden file (its name starts with a dot): not indexed"
    if suffix in extensions:
        return None
    if suffix in HEIC_EXTENSIONS:
        return "HEIC/HEIF needs the pillow-heif plugin: pip install 'lookalike[heic]'"
    return f"{suffix} is not a supported image format (supported: {', '.join(sorted(extensions))})"


def _walk_images(root: Path, *, top_only: bool = False) -> Iterator[Path | Skipped]:
    """Image files under ``root``, and every entry named like an image that is passed over, with why.

    ``top_only``: the files of ``root`` itself (its subfolders are judged, not entered: ``subfolders``).
    """
    extensions = supported_extensions()
    problems: list[Skipped] = []

    def unreadable(exc: OSError) -> None:
        problems.append(
            Skipped(
                printable_path(exc.filename or root),
                f"cannot read folder: {exc.strerror or exc}",
                folder=True,
            )
        )

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        yield from problems
        problems.clear()
        here = Path(folder)
        entered = []
        for name in sorted(dirs):
            try:
                linked = (here / name).is_symlink()
            except OSError as exc:  # a path over PATH_MAX
                yield Skipped(
                    printable_path(here / name), f"cannot read folder: {exc.strerror or exc}", folder=True
                )
                continue
            if linked:
                yield Skipped(printable_path(here / name), "a symbolic link to a folder: not followed")
            elif _named_like_image(name) and not name.startswith("."):
                yield Skipped(
                    printable_path(here / name), "a folder named like an image: its contents are indexed"
                )
            if not name.startswith("."):
                entered.append(name)
        dirs[:] = [] if top_only else entered
        for name in sorted(files):
            reason = _passed_over(name, extensions)
            if reason is not None:
                yield Skipped(printable_path(here / name), reason)
            elif Path(name).suffix.lower() in extensions:
                yield here / name
    yield from problems


def subfolders(root: Path) -> list[Path]:
    """The folders a walk of ``root`` enters from it (as ``_walk_images`` does), in name order."""
    try:
        with os.scandir(root) as entries:
            names = sorted(entry.name for entry in entries if _is_dir(entry))
    except OSError:  # the walk of the root reports it
        return []
    found = []
    for name in names:
        try:
            linked = (root / name).is_symlink()
        except OSError:  # the walk of the root reports it
            continue
        if not linked and not name.startswith("."):
            found.append(root / name)
    return found


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # as os.walk judges it
    except OSError:
        return False


def _file_record(file: Path, source: str | None) -> Record | Skipped:
    shown = printable_path(file)
    if shown != str(file):
        return Skipped(shown, "the file name is not valid UTF-8: rename it to index it")
    try:
        uri = str(file.resolve())
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        return Skipped(
            shown, "symbolic link loop" if "loop" in str(exc).lower() else f"cannot resolve: {exc}"
        )
    if len(uri.encode("utf-8", "surrogateescape")) > MAX_URI_BYTES:
        return Skipped(shown, f"the path is longer than {MAX_URI_BYTES} bytes")
    problem = identity_problem("item_id", file.stem, "the file name (its item_id)")
    if problem is not None:
        return Skipped(shown, problem)
    return Record(uri, file.stem, "", source or DEFAULT_SOURCE, None, uri, listed=shown)


class Listing:
    """A re-iterable list of Records (and Skipped rows) with a cheap count for the progress bar."""

    def __init__(self, path: Path, source: str | None, *, top_only: bool = False) -> None:
        self.path = path
        self.source = source
        self.top_only = top_only  # a folder's own files, not its subfolders' (a part of its listing)

    @property
    def is_catalog(self) -> bool:
        return self.path.is_file() and self.path.suffix.lower() in CATALOG_EXTENSIONS

    def count(self) -> int:
        if self.path.is_dir():
            return sum(1 for _ in _walk_images(self.path, top_only=self.top_only))
        if not self.is_catalog:
            return 1
        if self.path.suffix.lower() == ".parquet":
            return parquet_count(self.path)
        return sum(1 for _ in self._rows())

    def __iter__(self) -> Iterator[Record | Skipped]:
        if self.path.is_dir():
            for file in _walk_images(self.path, top_only=self.top_only):
                yield file if isinstance(file, Skipped) else _file_record(file, self.source)
        elif self.is_catalog:
            yield from self._catalog_records()
        else:
            yield _file_record(self.path, self.source)

    def check_rows(self) -> None:
        """Refuse now a catalog that has no rows, or whose columns are wrong (reads its first row only).

        Raises:
            CatalogError: empty, no 'image' column, a column given twice, unreadable.
        """
        if not self.is_catalog:
            return
        # The generator is dropped (and its file closed) as soon as the first row is read.
        if next(self._rows(), None) is None:
            raise CatalogError(f"The catalog {self.path.name} has no rows: nothing to index.")

    def check_indexable(self) -> None:
        """Refuse now a catalog none of whose rows can be indexed, before a model loads for nothing.

        Rows are read up to the first that can be (a URL, or a local file that is a regular readable
        file): one row for a sound catalog, every row only when none can be. A run that indexes some
        rows reports the others as skipped, as ever.

        Raises:
            CatalogError: no row can be indexed; the message counts them and gives the first reasons.
        """
        if not self.is_catalog:
            return
        reasons: list[str] = []  # the first few; the rest are counted
        rows = 0
        for rows, entry in enumerate(self._catalog_records(), start=1):  # one entry a row
            number = rows + 1  # the header is line 1
            if isinstance(entry, Skipped):
                where = f"{self.path.name} row {number}"
                subject = entry.uri.removeprefix(where).removeprefix(": ")
                reason = entry.reason.removeprefix(f"{where}: ")
                problem = f"{subject}: {reason}" if subject else reason
            else:
                found = _local_problem(entry.uri)
                if found is None:
                    return
                problem = f"{printable_path(entry.uri)}: {found}"
            if len(reasons) < BAD_ROWS_SHOWN:
                reasons.append(f"row {number}: {problem}")
        more = "; …" if rows > len(reasons) else ""
        raise CatalogError(
            f"The catalog {self.path.name} has no row that can be indexed ({rows} rows, every one bad): "
            + "; ".join(reasons)
            + more
        )

    def _rows(self) -> Iterator[dict[str, Any]]:
        if self.path.suffix.lower() == ".parquet":
            return parquet_rows(self.path)
        return csv_rows(self.path)

    def _catalog_records(self) -> Iterator[Record | Skipped]:
        return self.row_groups(None, 2)

    def row_groups(self, groups: Sequence[int] | None, first: int) -> Iterator[Record | Skipped]:
        """The records of these row groups of a Parquet catalog (None: every row of the catalog),
        numbered from ``first`` (the header is line 1): a slice of the listing, read anywhere."""
        base = self.path.resolve().parent
        rows = parquet_rows(self.path, groups, first - 2) if groups is not None else self._rows()
        return catalog_records(
            rows, self.path.name, lambda image, where: _row_uri(image, base, where), self.source, first
        )


def catalog_records(
    rows: Iterator[dict[str, Any]],
    name: str,
    row_uri: Callable[[str, str], str | Skipped],
    default_source: str | None,
    first: int = 2,
) -> Iterator[Record | Skipped]:
    """A catalog's rows as Records, or Skipped rows with why; ``row_uri`` places a row's image.

    ``first``: the number of the first of ``rows`` (2: the header is line 1; more for a slice).
    """
    for number, row in enumerate(rows, start=first):
        where = f"{name} row {number}"
        image = cell_text(row.get("image")).strip()
        item_id = cell_text(row.get("item_id")).strip()
        source = cell_text(row.get("source")).strip() or default_source or DEFAULT_SOURCE
        listed = (source, item_id) if item_id else None
        if not image:
            yield Skipped(where, "no image in this row", listed)
            continue
        uri_or_skip = row_uri(image, where)
        if isinstance(uri_or_skip, Skipped):
            yield dataclasses.replace(uri_or_skip, key=listed)
            continue
        uri = uri_or_skip
        try:
            created_at = parse_created_at(row.get("created_at"))
        except ValueError as exc:
            yield Skipped(uri, f"{where}: {exc}", listed or (source, uri))
            continue
        stem = Path(image.split("?")[0].rstrip("/")).stem
        # An identity over its limit is a bad row: cut, it would name another seller's item.
        problem = identity_problem("source", source) or identity_problem(
            "item_id", item_id or stem, "item_id" if item_id else "the image's file name (its item_id)"
        )
        if problem is not None:
            yield Skipped(uri, f"{where}: {problem}")
            continue
        details = tuple((spec.name, catalog_value(spec, row.get(spec.name))) for spec in DETAILS)
        name_ = cell_text(row.get("name"))
        yield Record(uri, item_id or stem, name_, source, created_at, item_id or uri, details=details)


BAD_ROWS_SHOWN = 3
"""Reasons quoted when a catalog has no good row; the others are counted."""


def _local_problem(uri: str) -> str | None:
    """Why a catalog row's local image cannot be read now (a URL is read only when indexed)."""
    return None if is_url(uri) or is_s3(uri) else file_problem(uri)


def _row_uri(image: str, base: Path, where: str) -> str | Skipped:
    """A catalog row's image as a URL or an absolute path, or why it cannot be one."""
    if len(image.encode("utf-8", "surrogateescape")) > MAX_URI_BYTES:
        return Skipped(
            f"{where}: {image[:120]}…", f"the image path or URL is longer than {MAX_URI_BYTES} bytes"
        )
    if is_url(image) or is_s3(image):
        return image
    if has_scheme(image):
        return Skipped(image, f"{where}: only http(s) URLs, s3:// objects and file paths can be indexed")
    try:
        path = Path(image).expanduser()
        return str((path if path.is_absolute() else base / path).resolve())
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL byte
        return Skipped(printable_path(image) if "\x00" not in image else repr(image), f"{where}: {exc}")


def open_listing(path: str | os.PathLike[str], source: str | None = None) -> Listing | ObjectListing:
    """The images under ``path``: a folder (recursive), one image file, or a .csv/.parquet catalog;
    local, or an ``s3://bucket/prefix`` in S3-compatible storage."""
    if isinstance(path, str) and is_s3(path):
        from lookalike.ingest.objects import open_objects

        return open_objects(path, source)
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise ConfigError(f"No such file or folder: {path}")
    if source is not None:
        check_source(source, "--source")
    listing = Listing(resolved, source)
    listing.check_rows()
    return listing


def check_source(source: str, label: str = "source") -> None:
    """Refuse a source that cannot name items: empty, not UTF-8, or over its byte limit (never cut).

    Raises:
        ConfigError: the message names ``label``.
    """
    if not source.strip():
        raise ConfigError(f"{label} must not be empty.")
    check_identity("source", source, label)


class Inputs:
    """Several inputs indexed as one: paths (folders, files, catalogs) and image URLs."""

    def __init__(self, inputs: Sequence[str], source: str | None = None) -> None:
        if source is not None:
            check_source(source)
        self.source = source
        self.urls = [value for value in inputs if is_url(value)]
        self.listings = [open_listing(value, source) for value in inputs if not is_url(value)]

    def count(self) -> int:
        return len(self.urls) + sum(listing.count() for listing in self.listings)

    def check_indexable(self) -> None:
        """Refuse now a catalog among them none of whose rows can be indexed (``Listing.check_indexable``)."""
        for listing in self.listings:
            listing.check_indexable()

    def __iter__(self) -> Iterator[Record | Skipped]:
        for url in self.urls:
            stem = Path(url.split("?")[0].rstrip("/")).stem
            problem = identity_problem("item_id", stem, "the URL's file name (its item_id)")
            if problem is not None:
                yield Skipped(url, problem)
                continue
            yield Record(url, stem, "", self.source or DEFAULT_SOURCE, None, url)
        for listing in self.listings:
            yield from listing
