"""The rows of a CSV or Parquet catalog, or a CatalogError that names the file, line and the fix.

CSV must be UTF-8 (with or without a byte-order mark); anything else is refused at the first
line that does not decode, saying which encoding it looks like and how to convert it. A field
over 128 KB (the csv module's limit), a line over 16 MB and a Parquet file that cannot be read
are refused the same way, before anything is indexed (the listing is counted first).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from lookalike.errors import CatalogError
from lookalike.store.fields import CATALOG_FIELDS


class CatalogFile(Protocol):
    """What a catalog is read from: a local ``Path``, or an object in S3 (objects.ObjectFile)."""

    @property
    def name(self) -> str: ...

    def open(self, mode: str) -> BinaryIO: ...


def _parquet_input(path: Path | CatalogFile) -> Any:
    return path if isinstance(path, Path) else path.open("rb")


CATALOG_COLUMNS = ("image", "item_id", *CATALOG_FIELDS, "source", "created_at")
"""The columns a catalog may have: the image, the identities and date ingest reads itself, and the
fields of the field table that catalog columns fill (``tags``: texts separated by a vertical bar)."""
MAX_LINE_BYTES = 16 * 1024 * 1024
_UTF16_32 = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def encoding_hint(head: bytes) -> tuple[str, str]:
    """(what the bytes look like, the name iconv knows it by) for a file that is not UTF-8."""
    for bom, name in _UTF16_32:
        if head.startswith(bom):
            return name, name
    if head[:200].count(b"\x00") > len(head[:200]) // 4:
        return "UTF-16 without a byte-order mark", "UTF-16"
    try:
        head.decode("cp1252")
    except UnicodeDecodeError:
        return "a legacy 8-bit encoding (Latin-1, Windows-1252 or similar)", "LATIN1"
    return "Windows-1252 / Latin-1", "CP1252"


def _not_utf8(path: Path | CatalogFile, line: int, column: int, head: bytes) -> CatalogError:
    looks, name = encoding_hint(head)
    return CatalogError(
        f"The catalog {path.name} is not UTF-8: line {line}, column {column} does not decode. "
        f"It looks like {looks}; convert it to UTF-8, e.g. `iconv -f {name} -t UTF-8 {path.name} > utf8.csv`."
    )


def _lines(path: Path | CatalogFile, read: list[int]) -> Iterator[str]:
    """The lines of a UTF-8 file; ``read[0]`` holds the number of the last line handed out."""
    with path.open("rb") as handle:
        head = handle.read(4096)
        handle.seek(0)
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            read[0] += 1
            if len(raw) > MAX_LINE_BYTES:
                raise CatalogError(f"The catalog {path.name}: line {read[0]} is longer than 16 MB.")
            if read[0] == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, read[0], exc.start + 1, head) from None


def check_columns(path: Path | CatalogFile, names: Sequence[str]) -> None:
    """Refuse a catalog without an 'image' column, or with a column lookalike reads given twice.

    Two 'image' (or 'item_id', ...) columns leave no way to tell which one is meant, and a row
    read as a mapping would silently keep the last; columns lookalike does not read may repeat.
    """
    for name in CATALOG_COLUMNS:
        count = sum(1 for given in names if given == name)
        if count > 1:
            raise CatalogError(
                f"The catalog {path.name} has {count} columns named '{name}': keep one, or rename the others."
            )
    if "image" not in names:
        shown = ", ".join(str(name)[:80] for name in names[:20]) or "none"
        raise CatalogError(
            f"The catalog {path.name} has no 'image' column (found: {shown}). "
            f"Expected columns: {', '.join(CATALOG_COLUMNS)}; only 'image' is required."
        )


def csv_rows(path: Path | CatalogFile) -> Iterator[dict[str, Any]]:
    read = [0]
    reader = csv.DictReader(_lines(path, read))
    try:
        if not reader.fieldnames:
            said = "is empty" if reader.fieldnames is None else "starts with a blank line"
            raise CatalogError(
                f"The catalog {path.name} {said}: its first line names the columns "
                f"({', '.join(CATALOG_COLUMNS)}), then comes a row per image."
            )
        check_columns(path, reader.fieldnames)
        yield from reader
    except csv.Error as exc:
        reason = str(exc)
        if "field larger than field limit" in reason:
            reason = f"a field is larger than {csv.field_size_limit() // 1024} KB"
        elif "new-line character" in reason:
            reason = (
                "a line ends with a bare carriage return (\\r); save the file with \\n or \\r\\n line endings"
            )
        raise CatalogError(
            f"The catalog {path.name} cannot be read as CSV at line {read[0]}: {reason}."
        ) from None


def parquet_rows(
    path: Path | CatalogFile, row_groups: Sequence[int] | None = None, before: int = 0
) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet catalog, or of these row groups of it (``before``: rows ahead of them)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(_parquet_input(path))
        names = parquet.schema_arrow.names
    except Exception as exc:  # pyarrow raises several types (ArrowInvalid, OSError, ...) for bad files
        raise CatalogError(f"The catalog {path.name} is not a readable Parquet file: {exc}") from None
    check_columns(path, names)
    row = before
    try:
        for batch in parquet.iter_batches(batch_size=4096, row_groups=row_groups):
            for values in batch.to_pylist():
                row += 1
                yield values
    except CatalogError:
        raise
    except Exception as exc:  # a corrupt page or column part-way through
        raise CatalogError(f"The catalog {path.name} is corrupt after row {row}: {exc}") from None


def parquet_row_groups(path: Path | CatalogFile) -> list[int]:
    """The rows in each row group of a Parquet catalog (from its footer: no row is read)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(_parquet_input(path)).metadata
        return [int(meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
    except Exception as exc:  # as parquet_rows
        raise CatalogError(f"The catalog {path.name} is not a readable Parquet file: {exc}") from None


def parquet_count(path: Path | CatalogFile) -> int:
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(_parquet_input(path)).metadata.num_rows)
    except Exception as exc:  # as parquet_rows
        raise CatalogError(f"The catalog {path.name} is not a readable Parquet file: {exc}") from None
