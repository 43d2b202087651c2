"""s3:// folders and catalogs, against moto's S3 server on 127.0.0.1 (no network beyond loopback)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.config import load_settings
from lookalike.errors import ConfigError, ImageError
from lookalike.ingest import open_listing
from lookalike.ingest.ids import content_hash, stable_id
from lookalike.ingest.objects import read_object
from lookalike.ingest.sources import Record, Skipped
from lookalike.usecases import Context
from tests.helpers import FakeEmbedder, jpeg_bytes, make_image
from tests.s3 import CLEARED, aws_environment, moto_endpoint

pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

_buckets = itertools.count()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's S3 server in this process, on a free loopback port."""
    with moto_endpoint() as url:
        yield url


@pytest.fixture()
def bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh bucket, with fake credentials and the endpoint in the AWS variables."""
    for key, value in aws_environment(endpoint).items():
        monkeypatch.setenv(key, value)
    for key in CLEARED:
        monkeypatch.delenv(key, raising=False)
    name = f"shop{next(_buckets)}"
    s3 = boto3.resource("s3", endpoint_url=endpoint)
    return s3.create_bucket(Bucket=name)


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI in-process on a database in tmp_path, with the fake embedder."""

    def context_for(db: str | None, collection: str | None, model: Any, pretrained: Any, **extra: Any) -> Any:
        settings = load_settings(db=db or str(tmp_path / "s3.db"), collection=collection, workers=2, **extra)
        return Context(settings, embedder=FakeEmbedder())

    monkeypatch.setattr("lookalike.cli.common.context_for", context_for)
    return CliRunner()


def _put(bucket: Any, key: str, body: bytes) -> str:
    bucket.put_object(Key=key, Body=body)
    return f"s3://{bucket.name}/{key}"


def _stored(db: Path) -> dict[str, Any]:
    ctx = Context(load_settings(db=str(db), collection="images", workers=2), embedder=FakeEmbedder())
    try:
        return {i.uri: i for batch in ctx.store.iter_items(with_vector=False) for i in batch}
    finally:
        ctx.close()


def test_a_prefix_is_listed_like_a_folder(bucket: Any) -> None:
    a = _put(bucket, "photos/a.jpg", jpeg_bytes(make_image(1)))
    b = _put(bucket, "photos/sub/b.png", b"not read while listing")
    _put(bucket, "photos/.hidden.jpg", b"x")
    _put(bucket, "photos/logo.svg", b"<svg/>")
    _put(bucket, "photos/notes.txt", b"not named like an image")
    _put(bucket, "elsewhere/c.jpg", b"outside the prefix")

    listing = open_listing(f"s3://{bucket.name}/photos/", source="shop")
    entries = list(listing)

    records = [e for e in entries if isinstance(e, Record)]
    assert [(r.uri, r.item_id, r.source, r.key) for r in records] == [
        (a, "a", "shop", a),
        (b, "b", "shop", b),
    ]
    skipped = {e.uri: e.reason for e in entries if isinstance(e, Skipped)}
    assert set(skipped) == {f"s3://{bucket.name}/photos/.hidden.jpg", f"s3://{bucket.name}/photos/logo.svg"}
    assert "hidden" in skipped[f"s3://{bucket.name}/photos/.hidden.jpg"]
    assert listing.count() == len(entries)


def test_a_key_with_an_empty_segment_is_reported_not_listed_forever(bucket: Any) -> None:
    # S3 keys may hold "//": listing "photos/a/" names the folder "photos/a" again (its common
    # prefix "photos/a//" without the trailing slash), which once sent the walk round for ever.
    a = _put(bucket, "photos/a.jpg", jpeg_bytes(make_image(1)))
    _put(bucket, "photos/a//double.jpg", jpeg_bytes(make_image(2)))

    listing = open_listing(f"s3://{bucket.name}/photos", source="shop")
    entries = list(itertools.islice(listing, 20))

    assert [e.uri for e in entries if isinstance(e, Record)] == [a]
    skipped = [e for e in entries if isinstance(e, Skipped)]
    assert [(e.uri, e.folder) for e in skipped] == [(f"s3://{bucket.name}/photos/a//", True)]
    assert "//" in skipped[0].reason
    assert listing.count() == len(entries)
    # Named directly, the key is refused with a reason rather than pyarrow's ArrowInvalid.
    with pytest.raises(ConfigError, match="empty segment"):
        open_listing(f"s3://{bucket.name}/photos/a//double.jpg")
    with pytest.raises(ImageError, match="empty segment"):
        read_object(f"s3://{bucket.name}/photos/a//double.jpg", max_bytes=1 << 20, timeout_s=10)


def test_a_missing_prefix_or_bucket_is_refused_before_anything_loads(bucket: Any) -> None:
    with pytest.raises(ConfigError, match="No such object or prefix"):
        open_listing(f"s3://{bucket.name}/nothing-here")
    with pytest.raises(ConfigError, match="bucket not found|No such object"):
        open_listing("s3://no-such-bucket-anywhere/photos")
    with pytest.raises(ConfigError, match="names no bucket"):
        open_listing("s3:///photos")


def test_reading_an_object_keeps_the_byte_cap_and_says_what_is_wrong(bucket: Any) -> None:
    data = jpeg_bytes(make_image(2))
    uri = _put(bucket, "one.jpg", data)
    fetched = read_object(uri, max_bytes=10_000_000, timeout_s=10)
    assert fetched.data == data
    assert fetched.modified_at is not None  # the object's Last-Modified: its created_at
    with pytest.raises(ImageError, match="object too large"):
        read_object(uri, max_bytes=100, timeout_s=10)
    with pytest.raises(ImageError, match="object not found"):
        read_object(f"s3://{bucket.name}/gone.jpg", max_bytes=10_000_000, timeout_s=10)
    with pytest.raises(ImageError, match="a prefix"):
        _put(bucket, "dir/x.jpg", data)
        read_object(f"s3://{bucket.name}/dir", max_bytes=10_000_000, timeout_s=10)


def test_indexing_a_prefix_stores_what_decodes_and_reports_the_rest(
    cli: CliRunner, bucket: Any, tmp_path: Path
) -> None:
    good = {f"photos/p{i}.jpg": jpeg_bytes(make_image(i)) for i in range(3)}
    for key, body in good.items():
        _put(bucket, key, body)
    broken = _put(bucket, "photos/broken.jpg", b"\xff\xd8 not a jpeg")

    result = cli.invoke(app, ["index", f"s3://{bucket.name}/photos", "--source", "shop", "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["indexed"] == 3
    assert [s["uri"] for s in report["skipped"]] == [broken]
    stored = _stored(tmp_path / "s3.db")
    for key, body in good.items():
        uri = f"s3://{bucket.name}/{key}"
        assert stored[uri].id == stable_id("shop", uri, content_hash(body))  # the same id rule as files
        assert stored[uri].sha256 == content_hash(body)
    again = json.loads(
        cli.invoke(app, ["index", f"s3://{bucket.name}/photos", "--source", "shop", "--json"]).stdout
    )
    assert (again["indexed"], again["already_indexed"]) == (0, 3)


def _catalog(bucket: Any, key: str, images: list[str]) -> str:
    lines = ["image,item_id,name,source,created_at"]
    lines += [f"{image},SKU{i},name {i},shop,2024-01-0{i + 1}" for i, image in enumerate(images)]
    return _put(bucket, key, ("\n".join(lines) + "\n").encode())


def test_a_catalog_in_s3_names_keys_relative_to_it(cli: CliRunner, bucket: Any, tmp_path: Path) -> None:
    _put(bucket, "cat/img/a.jpg", jpeg_bytes(make_image(5)))
    other = _put(bucket, "other/b.jpg", jpeg_bytes(make_image(6)))
    catalog = _catalog(bucket, "cat/list.csv", ["img/a.jpg", other, "img/missing.jpg", "/etc/passwd"])

    result = cli.invoke(app, ["index", catalog, "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["indexed"] == 2
    reasons = {s["uri"]: s["reason"] for s in report["skipped"]}
    assert reasons[f"s3://{bucket.name}/cat/img/missing.jpg"] == "object not found"
    assert "names objects" in reasons["/etc/passwd"]  # a catalog in a bucket reads no local file
    stored = _stored(tmp_path / "s3.db")
    assert {i.item_id for i in stored.values()} == {"SKU0", "SKU1"}
    assert stored[other].created_at == 1704153600  # the catalog's date, 2024-01-02


def test_a_local_catalog_may_name_objects(cli: CliRunner, bucket: Any, tmp_path: Path) -> None:
    uri = _put(bucket, "x/a.jpg", jpeg_bytes(make_image(7)))
    catalog = tmp_path / "local.csv"
    catalog.write_text(f"image,item_id\n{uri},A1\n", encoding="utf-8")
    result = cli.invoke(app, ["index", str(catalog), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["indexed"] == 1
    assert _stored(tmp_path / "s3.db")[uri].item_id == "A1"


def test_sync_never_deletes_an_item_whose_object_could_not_be_read(
    cli: CliRunner, bucket: Any, tmp_path: Path
) -> None:
    for i in range(4):
        _put(bucket, f"cat/{i}.jpg", jpeg_bytes(make_image(10 + i)))
    images = [f"{i}.jpg" for i in range(4)]
    first = cli.invoke(app, ["index", _catalog(bucket, "cat/list.csv", images), "--sync", "--json"])
    assert json.loads(first.stdout)["indexed"] == 4, first.output
    before = _stored(tmp_path / "s3.db")

    bucket.Object("cat/1.jpg").delete()  # listed, but gone this time
    _put(bucket, "cat/2.jpg", b"\xff\xd8 torn upload")  # listed, but no longer decodes
    # SKU3's row is dropped from the catalog: that item goes.
    second = cli.invoke(app, ["index", _catalog(bucket, "cat/list.csv", images[:3]), "--sync", "--json"])

    counts = json.loads(second.stdout)
    assert {k: counts[k] for k in ("added", "deleted", "kept", "left")} == {
        "added": 0,
        "deleted": 1,
        "kept": 2,
        "left": 1,
    }, second.output
    after = _stored(tmp_path / "s3.db")
    assert set(after) == set(before) - {f"s3://{bucket.name}/cat/3.jpg"}


def test_sync_of_a_prefix_deletes_only_objects_gone_from_it(
    cli: CliRunner, bucket: Any, tmp_path: Path
) -> None:
    for i in range(3):
        _put(bucket, f"p/{i}.jpg", jpeg_bytes(make_image(20 + i)))
    _put(bucket, "q/9.jpg", jpeg_bytes(make_image(29)))
    assert cli.invoke(app, ["index", f"s3://{bucket.name}/q", "--sync"]).exit_code == 0
    assert cli.invoke(app, ["index", f"s3://{bucket.name}/p", "--sync"]).exit_code == 0
    bucket.Object("p/0.jpg").delete()

    counts = json.loads(cli.invoke(app, ["index", f"s3://{bucket.name}/p", "--sync", "--json"]).stdout)

    assert (counts["deleted"], counts["left"]) == (1, 2)
    assert set(_stored(tmp_path / "s3.db")) == {
        f"s3://{bucket.name}/{k}" for k in ("p/1.jpg", "p/2.jpg", "q/9.jpg")
    }


def test_a_parquet_catalog_in_s3_is_counted_and_read(bucket: Any) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    a = _put(bucket, "pq/a.jpg", jpeg_bytes(make_image(30)))
    buffer = io.BytesIO()
    pq.write_table(pa.table({"image": ["a.jpg", "b.jpg"], "item_id": ["P1", "P2"]}), buffer)
    catalog = _put(bucket, "pq/list.parquet", buffer.getvalue())

    listing = open_listing(catalog)

    assert listing.count() == 2
    assert [(e.uri, e.item_id) for e in listing if isinstance(e, Record)] == [
        (a, "P1"),
        (f"s3://{bucket.name}/pq/b.jpg", "P2"),  # listed; reported missing only when read
    ]


def test_a_prefixs_parts_list_every_object_once_with_the_same_skips(bucket: Any) -> None:
    from collections import Counter

    from lookalike.ingest.parts import split

    for key in ("top.jpg", "a/1.jpg", "a/deep/2.jpg", "b/3.jpg", "b/logo.svg", ".hidden/4.jpg", "c/.5.jpg"):
        bucket.put_object(Key=f"p/{key}", Body=jpeg_bytes(make_image(len(key))))
    listing = open_listing(f"s3://{bucket.name}/p")

    parts = split(listing)

    whole = Counter(listing)
    assert len(parts) == 4  # p/'s own objects, a/, b/ and c/
    assert Counter(entry for part in parts for entry in part) == whole and max(whole.values()) == 1
    assert {e.uri.rsplit("/p/", 1)[1] for e in whole if isinstance(e, Record)} == {
        "top.jpg",
        "a/1.jpg",
        "a/deep/2.jpg",
        "b/3.jpg",
    }
    assert sum(1 for e in whole if isinstance(e, Skipped)) == 2  # the .svg and the hidden .5.jpg
