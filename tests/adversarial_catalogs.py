"""Abusive catalogs, generated: broken encodings, oversized fields, corrupt Parquet, hostile rows.
Each says whether the run must stop with a clear error (exit 2) or complete with its good rows."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import jpeg_bytes, make_image


@dataclass(frozen=True)
class Catalog:
    """An abusive catalog: its file name, how it is written, and what the run must say.

    ``error`` set: the run stops before anything is indexed, exit 2, and the message holds these
    words (``{folder}``: the folder the catalog is written in). A catalog none of whose rows can be
    indexed is such an error: refused before a model loads. Otherwise the run completes: ``good``
    rows indexed, every other row reported.
    """

    name: str
    file: str
    make: Callable[[Path], None]
    error: str | None = None
    good: int = 0


def _csv(text: str, encoding: str = "utf-8") -> Callable[[Path], bytes]:
    return lambda folder: text.encode(encoding)


def _catalog(file: str, data: Callable[[Path], bytes]) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / file).write_bytes(data(folder))

    return make


def _parquet(file: str, column: list[object]) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"image": column}), folder / file)

    return make


def _parquet_columns(file: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"picture": ["a.jpg"]}), folder / file)

    return make


def _cut_parquet(file: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"image": [f"p{i}.jpg" for i in range(2000)]}), folder / file)
        data = (folder / file).read_bytes()
        (folder / file).write_bytes(data[: len(data) // 2])

    return make


def _hostile_rows(folder: Path) -> bytes:
    os.mkfifo(folder / "pipe.jpg")
    lines = [
        "image,item_id,name,source",
        'good1.jpg,A,"[bold red]markup[/] name",shop',
        'good2.jpg,B,"\x1b[2Jescape",shop',
        "pipe.jpg,C,fifo,shop",
        "/dev/zero,D,device,shop",
        "/proc/self/mem,E,unreadable,shop",
        "missing.jpg,F,missing,shop",
        ".,G,a folder,shop",
        "../../../../../../etc/passwd,H,traversal,shop",
        "file:///etc/passwd,I,file url,shop",
        "gopher://127.0.0.1:6379/_FLUSHALL,J,gopher,shop",
        "http://127.0.0.1:9/x.jpg,K,loopback url,shop",
        "http://169.254.169.254/latest/meta-data/,L,metadata url,shop",
        f"{'x' * 5000}.jpg,M,too long,shop",
        ",N,no image,shop",
        "good3.jpg",  # fewer fields
        'good1.jpg,O,"multi\nline name",shop,extra,fields',
    ]
    for i in (1, 2, 3):
        (folder / f"good{i}.jpg").write_bytes(jpeg_bytes(make_image(100 + i)))
    return ("\n".join(lines) + "\n").encode()


def catalogs() -> list[Catalog]:
    header = "image,item_id,name\n"
    return [
        Catalog(
            "Latin-1 encoded",
            "latin1.csv",
            _catalog("latin1.csv", _csv(header + "a.jpg,1,Café crème\n", "latin-1")),
            "not UTF-8",
        ),
        Catalog(
            "UTF-16 with a BOM",
            "utf16.csv",
            _catalog("utf16.csv", _csv(header + "a.jpg,1,x\n", "utf-16")),
            "UTF-16",
        ),
        Catalog(
            "Windows-1252 quotes",
            "cp1252.csv",
            _catalog("cp1252.csv", _csv(header + "a.jpg,1,\u201cquoted\u201d\n", "cp1252")),
            "line 2",
        ),
        Catalog(
            "a field over 128 KB",
            "wide.csv",
            _catalog("wide.csv", _csv(header + "a.jpg,1," + "x" * 200_000 + "\n")),
            "128 KB",
        ),
        Catalog(
            "a line over 16 MB",
            "long.csv",
            _catalog("long.csv", lambda f: header.encode() + b"a" * (17 * 1024 * 1024)),
            "16 MB",
        ),
        Catalog(
            "classic Mac line endings",
            "mac.csv",
            _catalog("mac.csv", _csv("image,item_id\ra.jpg,1\rb.jpg,2\r")),
            "line",
        ),
        Catalog(  # read past the NUL byte; its one row names a missing file: nothing to index
            "a NUL byte",
            "nul.csv",
            _catalog("nul.csv", _csv(header + "a.jpg,1,x\x00y\n")),
            "row 2: " + "{folder}/a.jpg: file not found",
        ),
        Catalog(
            "no image column",
            "noimage.csv",
            _catalog("noimage.csv", _csv("picture,item_id\na.jpg,1\n")),
            "no 'image' column",
        ),
        Catalog("an empty file", "empty.csv", _catalog("empty.csv", _csv("")), "empty.csv is empty"),
        Catalog(
            "random bytes as Parquet",
            "random.parquet",
            _catalog("random.parquet", lambda f: os.urandom(4096)),
            "Parquet",
        ),
        Catalog("a truncated Parquet file", "cut.parquet", _cut_parquet("cut.parquet"), "Parquet"),
        Catalog("an empty Parquet file", "zero.parquet", _catalog("zero.parquet", lambda f: b""), "Parquet"),
        Catalog(
            "Parquet without an image column",
            "cols.parquet",
            _parquet_columns("cols.parquet"),
            "no 'image' column",
        ),
        Catalog(
            "Parquet with integer images",
            "ints.parquet",
            _parquet("ints.parquet", [1, 2, 3]),
            "no row that can be indexed (3 rows, every one bad): row 2: {folder}/1: file not found",
        ),
        Catalog(
            "Parquet with null images",
            "nulls.parquet",
            _parquet("nulls.parquet", [None, None]),
            "no row that can be indexed (2 rows, every one bad): row 2: no image in this row; row 3: no image",
        ),
        Catalog("a header only", "header.csv", _catalog("header.csv", _csv(header)), "has no rows"),
        Catalog("hostile rows", "hostile.csv", _catalog("hostile.csv", _hostile_rows), None, 4),
        Catalog(
            "a UTF-8 BOM and CRLF",
            "bom.csv",
            _catalog("bom.csv", lambda f: b"\xef\xbb\xbfimage,item_id\r\nbom.jpg,1\r\n"),
            None,
            1,
        ),
        Catalog(
            "10,000 columns",
            "columns.csv",
            _catalog(
                "columns.csv",
                lambda f: (",".join(["image"] + [f"c{i}" for i in range(10_000)]) + "\nwide.jpg\n").encode(),
            ),
            None,
            1,
        ),
        Catalog("a FIFO named like a catalog", "pipe.csv", lambda f: os.mkfifo(f / "pipe.csv"), None, 0),
    ]
