"""Objects in S3-compatible storage: ``s3://bucket/prefix`` folders and catalogs, read through pyarrow.

Credentials come from the AWS SDK's usual chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and ``~/.aws``, an instance role); the endpoint of an
S3-compatible store (MinIO, Ceph, R2, a test server) from ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``, which pyarrow's S3 filesystem does not read by itself; the region from
``AWS_REGION`` or ``AWS_DEFAULT_REGION``.

The rules are those of local files: a prefix is listed like a folder (one level at a time,
names sorted, hidden names and unsupported formats reported); an object that is missing,
unreadable, too large or too slow is skipped and reported; a prefix that cannot be listed is
reported as a folder that could not be read, so ``index --sync`` keeps everything under it.
"""

from __future__ import annotations

import copy
import functools
import io
import os
import posixpath
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lookalike.errors import CatalogError, ConfigError, ImageError
from lookalike.ingest.catalog import parquet_count
from lookalike.ingest.decode import supported_extensions
from lookalike.ingest.fetch import Fetched, plausible_time
from lookalike.ingest.policy import S3_SCHEME, is_s3
from lookalike.ingest.sources import (
    CATALOG_EXTENSIONS,
    DEFAULT_SOURCE,
    MAX_URI_BYTES,
    Record,
    Skipped,
    _passed_over,
    catalog_records,
    check_source,
)
from lookalike.store.rows import identity_problem

if TYPE_CHECKING:
    from pyarrow.fs import FileInfo, S3FileSystem

CHUNK = 1 << 20
# The SDK's own default is 3 s to connect and no limit on a request; a run must not hang on one object.
CONNECT_TIMEOUT_S = 10.0


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b.jpg`` → (``bucket``, ``a/b.jpg``); the key may be empty (the whole bucket).

    Raises:
        ConfigError: no bucket named, or an empty segment in the key (``a//b.jpg``).
    """
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise ConfigError(f"{uri!r} names no bucket: write s3://bucket/prefix")
    key = key.strip("/")
    if "//" in key:  # pyarrow's S3 filesystem refuses such a path (ArrowInvalid), an S3 key may hold one
        raise ConfigError(f"{uri!r} has an empty segment (//): such a key cannot be read")
    return bucket, key


def join(bucket: str, key: str) -> str:
    return f"{S3_SCHEME}{bucket}/{key}" if key else f"{S3_SCHEME}{bucket}"


def endpoint() -> str | None:
    """The S3 endpoint the AWS variables name (None: AWS itself)."""
    # AWS's own variables, read where the S3 filesystem is made (pyarrow reads the credentials itself).
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def filesystem(timeout_s: float = 20.0) -> S3FileSystem:
    """pyarrow's S3 filesystem for the endpoint and region of the environment, one per process."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    return _filesystem(endpoint(), region, float(timeout_s))


@functools.lru_cache(maxsize=8)
def _filesystem(endpoint_url: str | None, region: str | None, timeout_s: float) -> S3FileSystem:
    from pyarrow.fs import S3FileSystem

    options: dict[str, Any] = {
        "connect_timeout": min(CONNECT_TIMEOUT_S, timeout_s),
        "request_timeout": timeout_s,
    }
    if endpoint_url:
        options["endpoint_override"] = endpoint_url
    if region:
        options["region"] = region
    return S3FileSystem(**options)


def _reason(exc: OSError) -> str:
    text = str(exc)
    if isinstance(exc, FileNotFoundError) or "NO_SUCH_KEY" in text or "NoSuchKey" in text:
        return "object not found"
    if "NO_SUCH_BUCKET" in text:
        return "bucket not found"
    if "ACCESS_DENIED" in text or "AccessDenied" in text or "403" in text:
        return "access denied"
    return f"cannot read object: {text.splitlines()[0][:300] if text else type(exc).__name__}"


def read_object(uri: str, *, max_bytes: int, timeout_s: float) -> Fetched:
    """The bytes of one object, at most ``max_bytes``, read within ``timeout_s``.

    Raises:
        ImageError: missing, a prefix rather than an object, unreadable, too large or too slow.
    """
    from pyarrow.fs import FileType

    try:
        bucket, key = split(uri)
    except ConfigError as exc:
        raise ImageError(str(exc)) from None
    if not key:
        raise ImageError("not an object: a whole bucket")
    deadline = time.monotonic() + timeout_s
    fs = filesystem(timeout_s)
    try:
        info = fs.get_file_info(f"{bucket}/{key}")
        if info.type == FileType.NotFound:
            raise ImageError("object not found")
        if info.type != FileType.File:
            raise ImageError("not an object: a prefix (a folder)")
        if info.size is not None and info.size > max_bytes:
            raise ImageError(
                f"object too large: {info.size / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:g} MB"
            )
        parts: list[bytes] = []
        total = 0
        with fs.open_input_stream(f"{bucket}/{key}") as stream:
            while chunk := stream.read(CHUNK):
                total += len(chunk)
                if total > max_bytes:  # an object replaced by a larger one between the two requests
                    raise ImageError(f"object too large: over the limit of {max_bytes / 1e6:g} MB")
                if time.monotonic() > deadline:
                    raise ImageError("reading the object took too long")
                parts.append(chunk)
    except OSError as exc:
        raise ImageError(_reason(exc)) from exc
    return Fetched(b"".join(parts), _modified(info))


def _modified(info: FileInfo) -> int | None:
    mtime = info.mtime
    return plausible_time(mtime.timestamp()) if isinstance(mtime, datetime) else None


class ObjectFile:
    """A catalog object, opened the way catalog.py opens a local file (``name``, ``open("rb")``)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.bucket, self.key = split(uri)
        self.name = posixpath.basename(self.key)
        self.suffix = posixpath.splitext(self.name)[1]

    def open(self, mode: str = "rb") -> Any:
        if mode != "rb":
            raise ValueError("objects are read only")
        try:
            # pyarrow's files read, seek and readinto but have no readline: the csv reader needs one.
            return io.BufferedReader(filesystem().open_input_file(f"{self.bucket}/{self.key}"), CHUNK)
        except OSError as exc:
            raise CatalogError(f"The catalog {self.uri} cannot be read: {_reason(exc)}") from None


class ObjectListing:
    """The images under an ``s3://`` prefix, one object, or the rows of a catalog object.

    The same interface as ``sources.Listing``: re-iterable Records and Skipped entries, a count
    for the progress bar, and the checks made before a model loads.
    """

    def __init__(self, uri: str, source: str | None) -> None:
        from pyarrow.fs import FileType

        self.bucket, self.key = split(uri)
        self.uri = join(self.bucket, self.key)
        self.source = source
        try:
            kind = filesystem().get_file_info(f"{self.bucket}/{self.key}" if self.key else self.bucket).type
        except OSError as exc:
            raise ConfigError(f"Cannot read {self.uri}: {_reason(exc)}") from None
        if kind == FileType.NotFound:
            raise ConfigError(f"No such object or prefix: {self.uri}")
        self.is_folder = kind == FileType.Directory
        self.is_catalog = not self.is_folder and posixpath.splitext(self.key)[1].lower() in CATALOG_EXTENSIONS
        self.top_only = False  # a prefix's own objects, not those under its subprefixes (a part)

    def part(self, key: str, *, top_only: bool = False) -> ObjectListing:
        """The listing of a prefix under this one (found by ``subprefixes``), made without a request."""
        other = copy.copy(self)
        other.key, other.uri, other.top_only = key, join(self.bucket, key), top_only
        return other

    def subprefixes(self) -> list[str]:
        """The keys of the prefixes a listing of this one enters (as ``_walk`` does), in name order."""
        from pyarrow.fs import FileSelector, FileType

        where = f"{self.bucket}/{self.key}" if self.key else self.bucket
        try:
            infos = filesystem().get_file_info(FileSelector(where, recursive=False))
        except OSError:  # the walk of this prefix reports it
            return []
        keys = []
        for info in sorted(infos, key=lambda info: info.path):
            key = info.path.split("/", 1)[1] if "/" in info.path else ""
            if info.type == FileType.Directory and not info.base_name.startswith(".") and key != self.key:
                keys.append(key)
        return keys

    def count(self) -> int:
        if self.is_folder:
            return sum(1 for _ in self._walk())
        if not self.is_catalog:
            return 1
        if self.key.lower().endswith(".parquet"):
            return parquet_count(ObjectFile(self.uri))
        return sum(1 for _ in self._rows())

    def __iter__(self) -> Iterator[Record | Skipped]:
        if self.is_folder:
            yield from self._walk()
        elif self.is_catalog:
            yield from catalog_records(self._rows(), ObjectFile(self.uri).name, self._row_uri, self.source)
        else:
            yield self._record(self.key)

    def check_rows(self) -> None:
        """Refuse now a catalog that has no rows or whose columns are wrong (``Listing.check_rows``)."""
        if self.is_catalog and next(self._rows(), None) is None:
            raise CatalogError(f"The catalog {self.uri} has no rows: nothing to index.")

    def check_indexable(self) -> None:
        """Refuse now a catalog none of whose rows names an image (objects are read only when indexed)."""
        if not self.is_catalog:
            return
        rows = 0
        reasons: list[str] = []
        for rows, entry in enumerate(self, start=1):
            if isinstance(entry, Record):
                return
            if len(reasons) < 3:
                reasons.append(f"row {rows + 1}: {entry.reason}")
        raise CatalogError(
            f"The catalog {self.uri} has no row that can be indexed ({rows} rows, every one bad): "
            + "; ".join(reasons)
        )

    def _rows(self) -> Iterator[dict[str, Any]]:
        from lookalike.ingest.catalog import csv_rows, parquet_rows

        file = ObjectFile(self.uri)
        return parquet_rows(file) if self.key.lower().endswith(".parquet") else csv_rows(file)

    def row_groups(self, groups: Sequence[int] | None, first: int) -> Iterator[Record | Skipped]:
        """The records of these row groups of a Parquet catalog, numbered from ``first`` (a slice)."""
        from lookalike.ingest.catalog import parquet_rows

        file = ObjectFile(self.uri)
        rows = parquet_rows(file, groups, first - 2) if groups is not None else self._rows()
        return catalog_records(rows, file.name, self._row_uri, self.source, first)

    def _row_uri(self, image: str, where: str) -> str | Skipped:
        """A row's image: an s3:// or http(s) URI as it is, a relative key under the catalog's prefix."""
        if is_s3(image) or image.lower().startswith(("http://", "https://")):
            return image
        if "://" in image or image.startswith(("/", "~")):
            return Skipped(
                image[:300],
                f"{where}: a catalog in S3 names objects (s3://… or keys relative to it) or http(s) URLs",
            )
        key = posixpath.normpath(posixpath.join(posixpath.dirname(self.key), image))
        if key.startswith("../") or key == "..":
            return Skipped(image[:300], f"{where}: the key leads out of the bucket")
        return join(self.bucket, key)

    def _record(self, key: str) -> Record | Skipped:
        uri = join(self.bucket, key)
        if len(uri.encode("utf-8")) > MAX_URI_BYTES:
            return Skipped(uri[:300] + "…", f"the key is longer than {MAX_URI_BYTES} bytes")
        stem = posixpath.splitext(posixpath.basename(key))[0]
        problem = identity_problem("item_id", stem, "the object's name (its item_id)")
        if problem is not None:
            return Skipped(uri, problem)
        return Record(uri, stem, "", self.source or DEFAULT_SOURCE, None, uri)

    def _walk(self) -> Iterator[Record | Skipped]:
        """The prefix like a folder: one listing request per level, names sorted, hidden names left out."""
        from pyarrow.fs import FileSelector, FileType

        extensions = supported_extensions()
        fs = filesystem()
        pending = [self.key]
        listed = {self.key}
        top = True
        while pending:
            prefix = pending.pop()
            where = f"{self.bucket}/{prefix}" if prefix else self.bucket
            try:
                infos = fs.get_file_info(FileSelector(where, recursive=False))
            except OSError as exc:
                yield Skipped(join(self.bucket, prefix), f"cannot list objects: {_reason(exc)}", folder=True)
                continue
            folders = []
            for info in sorted(infos, key=lambda info: info.path):
                key = info.path.split("/", 1)[1] if "/" in info.path else ""
                name = info.base_name
                if info.type == FileType.Directory:
                    if name.startswith("."):
                        continue
                    if key in listed:  # "a//b.jpg": the listing of a/ names a/ again, forever
                        yield Skipped(
                            join(self.bucket, key) + "//",
                            "cannot list objects: a key under it has an empty segment (//)",
                            folder=True,
                        )
                        continue
                    listed.add(key)
                    if not (top and self.top_only):
                        folders.append(key)
                    continue
                reason = _passed_over(name, extensions)
                if reason is not None:
                    yield Skipped(join(self.bucket, key), reason)
                elif posixpath.splitext(name)[1].lower() in extensions:
                    yield self._record(key)
            top = False
            pending.extend(reversed(folders))  # depth first, in name order, as os.walk's listing


def open_objects(uri: str, source: str | None = None) -> ObjectListing:
    """The images under an ``s3://`` URI: a prefix (recursive), one object, or a .csv/.parquet catalog.

    Raises:
        ConfigError: no bucket, nothing at that URI, or the storage cannot be reached.
    """
    if source is not None:
        check_source(source, "--source")
    listing = ObjectListing(uri, source)
    listing.check_rows()
    return listing
