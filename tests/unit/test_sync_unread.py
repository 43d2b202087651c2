"""index --sync keeps what it could not read this time, and its counts add up and are never negative."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.config import load_settings
from lookalike.errors import ImageError
from lookalike.ingest import IngestPlan, IngestReport
from lookalike.ingest.fetch import Fetched
from lookalike.ingest.ids import content_hash, stable_id
from lookalike.ingest.sources import Record, Skipped
from lookalike.ingest.sync import Scope
from lookalike.store import Item
from lookalike.usecases import Context, local_runner
from lookalike.usecases import ingest as ingesting
from tests.helpers import FakeEmbedder, make_image, write_images
from tests.unit.test_service import make_service


class _Broken(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(500, "the image server is down")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def broken_url() -> Iterator[str]:
    """An image URL on loopback that answers HTTP 500."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/b.jpg"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI in-process on a database in tmp_path, with the fake embedder; loopback URLs allowed."""
    db = str(tmp_path / "cli.db")

    def context_for(
        db_: str | None, collection: str | None, model: Any, pretrained: Any, **extra: Any
    ) -> Any:
        settings = load_settings(
            db=db_ or db, collection=collection, workers=2, allow_private_urls=True, **extra
        )
        return Context(settings, embedder=FakeEmbedder())

    monkeypatch.setattr("lookalike.cli.common.context_for", context_for)
    return CliRunner()


def _catalog(path: Path, images: Sequence[str]) -> Path:
    lines = ["image,item_id,name,source,created_at"]
    lines += [f"{image},SKU{i},name {i},shop,2024-01-0{i + 1}" for i, image in enumerate(images)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _stored(db: Path) -> dict[str, str]:
    settings = load_settings(db=str(db), collection="images", workers=2)
    ctx = Context(settings, embedder=FakeEmbedder())
    try:
        return {i.item_id: i.uri for batch in ctx.store.iter_items(with_vector=False) for i in batch}
    finally:
        ctx.close()


def test_a_catalog_row_whose_new_image_cannot_be_read_keeps_its_item(
    cli: CliRunner, tmp_path: Path, broken_url: str
) -> None:
    folder = tmp_path / "cat"
    folder.mkdir()
    names = [f"{c}.jpg" for c in "abcde"]
    for i, name in enumerate(names):
        make_image(i).save(folder / name)
    first = cli.invoke(app, ["index", str(_catalog(folder / "cat.csv", names)), "--sync"])
    assert first.exit_code == 0, first.output
    before = _stored(tmp_path / "cli.db")
    assert len(before) == 5

    moved = ["missing.jpg", broken_url, *names[2:]]  # SKU0 now names a missing file, SKU1 a failing URL
    result = cli.invoke(app, ["index", str(_catalog(folder / "cat2.csv", moved)), "--sync"])
    assert result.exit_code == 0, result.output
    assert (
        "synced: 0 added, 0 updated, 0 replaced, 0 deleted, 3 left as they were, 2 kept: could not read, "
        "2 skipped" in result.output
    )
    assert "HTTP 500" in result.output
    assert _stored(tmp_path / "cli.db") == before  # both items still there, as they were

    as_json = cli.invoke(app, ["index", str(folder / "cat2.csv"), "--sync", "--json"])
    counts = json.loads(as_json.stdout)
    assert {k: counts[k] for k in ("added", "replaced", "deleted", "updated", "left", "kept")} == {
        "added": 0,
        "replaced": 0,
        "deleted": 0,
        "updated": 0,
        "left": 3,
        "kept": 2,
    }
    assert len(counts["skipped"]) == 2

    # Once the rows name readable pictures again, they replace the old ones: one each, not two.
    make_image(40).save(folder / "missing.jpg")
    make_image(41).save(folder / "b2.jpg")
    back = cli.invoke(
        app, ["index", str(_catalog(folder / "cat3.csv", ["missing.jpg", "b2.jpg", *names[2:]])), "--sync"]
    )
    assert "synced: 0 added, 0 updated, 2 replaced, 0 deleted, 3 left as they were, 0 kept" in back.output
    after = _stored(tmp_path / "cli.db")
    assert len(after) == 5 and after["SKU0"] == str((folder / "missing.jpg").resolve())


def test_a_catalog_row_with_a_bad_date_keeps_its_item(tmp_path: Path) -> None:
    folder = tmp_path / "cat"
    folder.mkdir()
    for i, name in enumerate(["a.jpg", "b.jpg"]):
        make_image(i).save(folder / name)
    service = make_service(tmp_path)
    ingesting.index(service, str(_catalog(folder / "cat.csv", ["a.jpg", "b.jpg"])), sync=True)
    (folder / "cat.csv").write_text(
        "image,item_id,name,source,created_at\na.jpg,SKU0,x,shop,2024-01-01\nb2.jpg,SKU1,x,shop,not a date\n",
        encoding="utf-8",
    )
    report = ingesting.index(service, str(folder / "cat.csv"), sync=True)
    assert (report.deleted, report.replaced, report.kept, len(report.skipped)) == (0, 0, 1, 1)
    assert service.store.count() == 2


def test_a_folder_sync_keeps_a_file_that_became_truncated(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    paths = write_images(photos, 4)
    service = make_service(tmp_path)
    ingesting.index(service, str(photos), sync=True)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 3])  # a copy cut short: other bytes, and no picture
    paths[3].unlink()
    report = ingesting.index(service, str(photos), sync=True)
    assert (report.added, report.replaced, report.deleted, report.kept, report.left) == (0, 0, 1, 1, 2)
    assert len(report.skipped) == 1 and report.skipped[0].uri.endswith(paths[1].name)
    uris = {i.uri for batch in service.store.iter_items(with_vector=False) for i in batch}
    assert uris == {str(p.resolve()) for p in paths[:3]}


def test_counts_are_never_negative_when_old_pictures_outnumber_new_ones(tmp_path: Path) -> None:
    """A product listed with fewer pictures than before: the extra ones are deleted, not "replaced"."""
    folder = tmp_path / "cat"
    folder.mkdir()
    for i in range(3):
        make_image(i).save(folder / f"{i}.jpg")
    catalog = folder / "cat.csv"
    rows = "image,item_id,name,source,created_at\n"
    catalog.write_text(rows + "".join(f"{i}.jpg,SKU,n,shop,2024-01-01\n" for i in range(3)), encoding="utf-8")
    service = make_service(tmp_path)
    ingesting.index(service, str(catalog), sync=True)
    make_image(9).save(folder / "9.jpg")
    catalog.write_text(rows + "9.jpg,SKU,n,shop,2024-01-01\n", encoding="utf-8")
    report = ingesting.index(service, str(catalog), sync=True)
    assert (report.added, report.replaced, report.deleted) == (0, 1, 2)
    assert service.store.count() == 1


# -- random sync rounds against a plain model, with some records failing to read ----------------------

PICTURES = [make_image(i, size=(40, 30)) for i in range(6)]


def _png(index: int) -> bytes:
    buffer = io.BytesIO()
    PICTURES[index].save(buffer, format="PNG")
    return buffer.getvalue()


BYTES = [_png(i) for i in range(len(PICTURES))]


class MemoryStore:
    """The part of the Store protocol an ingest with --sync uses, in a dict."""

    def __init__(self) -> None:
        self.rows: dict[int, Item] = {}

    def exists(self) -> bool:
        return True

    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        return {i for i in ids if i in self.rows}

    def get(self, ids: Sequence[int], *, with_vector: bool = False) -> list[Item]:
        return [self.rows[i] for i in dict.fromkeys(ids) if i in self.rows]

    def insert(self, items: Sequence[Item]) -> int:
        self.rows.update((item.id, item) for item in items)
        return len(items)

    def delete(self, ids: Sequence[int]) -> int:
        return sum(self.rows.pop(i, None) is not None for i in ids)

    def iter_items(
        self, *, batch_size: int = 1000, with_vector: bool = True, **_: Any
    ) -> Iterator[list[Item]]:
        yield list(self.rows.values())

    def flush(self) -> None:
        pass


@dataclass(frozen=True)
class Row:
    sku: int
    picture: int
    fails: bool  # this round, reading it fails (a missing file, an HTTP error)
    undated: bool  # this round, its date is bad: the row is skipped at listing


ROWS = st.builds(
    Row,
    sku=st.integers(0, 4),
    picture=st.integers(0, len(PICTURES) - 1),
    fails=st.booleans(),
    undated=st.integers(0, 5).map(lambda n: n == 0),
)


def _uri(number: int, row: Row) -> str:
    return f"/cat/{number}-{row.picture}.png"


def _round(store: MemoryStore, rows: list[Row]) -> IngestReport:
    listing: list[Record | Skipped] = []
    failing: set[str] = set()
    for number, row in enumerate(rows):
        uri = _uri(number, row)
        if row.undated:
            listing.append(Skipped(uri, "bad date", ("shop", f"SKU{row.sku}")))
            continue
        listing.append(Record(uri, f"SKU{row.sku}", "", "shop", 1_704_067_200, f"SKU{row.sku}"))
        if row.fails:
            failing.add(uri)

    def fetch(uri: str) -> Fetched:
        if uri in failing:
            raise ImageError("HTTP 500 Internal Server Error")
        return Fetched(BYTES[int(uri.rsplit("-", 1)[1].split(".")[0])], None)

    plan = IngestPlan(chunk_size=3, workers=1, fetch=fetch, scope=Scope({"shop"}, catalog=True))
    return local_runner.run(plan, listing, FakeEmbedder(), store)


def _read_ids(rows: list[Row]) -> set[int]:
    return {
        stable_id("shop", f"SKU{r.sku}", content_hash(BYTES[r.picture]))
        for r in rows
        if not (r.fails or r.undated)
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds=st.lists(st.lists(ROWS, max_size=7), min_size=1, max_size=4))
def test_random_sync_rounds_never_delete_what_could_not_be_read(rounds: list[list[Row]]) -> None:
    store = MemoryStore()
    for rows in rounds:
        before = dict(store.rows)
        report = _round(store, rows)
        after = store.rows
        counts = (report.added, report.replaced, report.deleted, report.updated, report.left, report.kept)
        assert min(counts) >= 0, counts
        # The listing's side: every entry is new, stored already, or skipped.
        assert report.added + report.replaced == report.indexed
        assert report.updated + report.left == report.already_indexed
        assert report.indexed + report.already_indexed + len(report.skipped) == report.seen == len(rows)
        # The store's side: what went, what came, what stayed.
        gone, new = set(before) - set(after), set(after) - set(before)
        assert len(gone) == report.replaced + report.deleted and len(new) == report.indexed
        assert len(after) == len(before) + report.added - report.deleted
        read = _read_ids(rows)
        unreadable = {f"SKU{r.sku}" for r in rows if r.fails or r.undated}
        if all(r.undated for r in rows):  # nothing listed as a record: nothing swept
            assert set(after) == set(before) | read and report.kept == 0
            continue
        # Exactly what the listing holds: what was read, and the stored pictures of unreadable rows.
        # (A stored item at the uri of an unreadable row stays too, whatever its item id.)
        unread_uris = {_uri(n, r) for n, r in enumerate(rows) if r.fails or r.undated}
        held = {i for i, item in before.items() if item.item_id in unreadable or item.uri in unread_uris}
        assert set(after) == read | held
        assert not gone & held  # nothing whose record was listed but could not be read is deleted
        assert report.kept == len(held - read)
        assert len(before) == len(set(before) & read) + report.kept + report.replaced + report.deleted
        # replaced pairs a new picture with a gone one of the same item id, one for one.
        per_key = {
            sku: (sum(after[i].item_id == sku for i in new), sum(before[i].item_id == sku for i in gone))
            for sku in {item.item_id for item in [*before.values(), *after.values()]}
        }
        assert report.replaced == sum(min(n, g) for n, g in per_key.values())
