"""index --sync mirrors a changing folder or catalog; delete and compact from the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.config import load_settings
from lookalike.usecases import Context
from lookalike.usecases import ingest as ingesting
from tests.helpers import FakeEmbedder, make_image, write_images
from tests.unit.test_service import make_service, write_catalog


def _by_uri(service: Context) -> dict[str, Any]:
    return {item.uri: item for batch in service.store.iter_items(with_vector=False) for item in batch}


def test_sync_deletes_gone_files_replaces_changed_ones_and_leaves_the_rest(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    paths = write_images(photos, 5)
    embedder = FakeEmbedder()
    service = make_service(tmp_path, embedder)
    first = ingesting.index(service, str(photos), source="shop", sync=True)
    assert (first.added, first.deleted, first.replaced) == (5, 0, 0)
    paths[0].unlink()
    make_image(99).save(paths[1])  # same name, another picture
    calls = embedder.image_calls
    again = ingesting.index(service, str(photos), source="shop", sync=True)
    assert (again.added, again.replaced, again.deleted, again.updated, again.left) == (0, 1, 1, 0, 3)
    assert embedder.image_calls == calls + 1  # only the replaced picture was embedded
    stored = _by_uri(service)
    assert sorted(stored) == sorted(str(p.resolve()) for p in paths[1:])
    assert service.store.count() == 4


def test_sync_updates_a_changed_title_and_date_without_re_embedding(tmp_path: Path) -> None:
    folder = tmp_path / "cat"
    rows = [("a.jpg", "SKU1", "shop", "2024-01-05"), ("b.jpg", "SKU2", "shop", "2024-01-06")]
    catalog = write_catalog(folder, rows)
    embedder = FakeEmbedder()
    service = make_service(tmp_path, embedder)
    ingesting.index(service, str(catalog), sync=True)
    text = catalog.read_text(encoding="utf-8")
    catalog.write_text(
        text.replace("name SKU1,shop,2024-01-05", "new title,shop,2024-03-09"), encoding="utf-8"
    )
    calls = embedder.image_calls
    report = ingesting.index(service, str(catalog), sync=True)
    assert (report.updated, report.added, report.deleted, report.left) == (1, 0, 0, 1)
    assert embedder.image_calls == calls
    item = next(i for i in _by_uri(service).values() if i.item_id == "SKU1")
    assert item.name == "new title" and item.created_at == 1709942400
    assert "m2024_03" in service.store.partitions()  # the item moved to its new month
    assert service.store.count() == 2


def test_sync_keeps_items_whose_file_could_not_be_read_this_time(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    paths = write_images(photos, 3)
    service = make_service(tmp_path)
    ingesting.index(service, str(photos), sync=True)
    paths[2].write_bytes(b"not an image any more")
    report = ingesting.index(service, str(photos), sync=True)
    assert report.deleted == 0 and len(report.skipped) == 1 and service.store.count() == 3


def test_sync_of_an_empty_folder_deletes_nothing(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    paths = write_images(photos, 3)
    service = make_service(tmp_path)
    ingesting.index(service, str(photos), sync=True)
    for path in paths:
        path.unlink()
    report = ingesting.index(service, str(photos), sync=True)
    assert report.deleted == 0 and service.store.count() == 3


def test_sync_only_touches_its_own_folder_and_source(tmp_path: Path) -> None:
    write_images(tmp_path / "a", 2)
    write_images(tmp_path / "b", 2, start=10)
    service = make_service(tmp_path)
    ingesting.index(service, str(tmp_path / "a"), source="shop")
    ingesting.index(service, str(tmp_path / "b"), source="shop")
    ingesting.index(service, str(tmp_path / "a"), source="avatar")
    for path in (tmp_path / "a").iterdir():
        path.unlink()
    make_image(50).save(tmp_path / "a" / "new.jpg")
    report = ingesting.index(service, str(tmp_path / "a"), source="shop", sync=True)
    assert (report.added, report.deleted) == (1, 2)
    sources = sorted((i.source, Path(i.uri).parent.name) for i in _by_uri(service).values())
    assert sources == [("avatar", "a"), ("avatar", "a"), ("shop", "a"), ("shop", "b"), ("shop", "b")]


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI in-process, on a database in tmp_path, with the fake embedder."""
    db = str(tmp_path / "cli.db")

    def context_for(
        db_: str | None, collection: str | None, model: Any, pretrained: Any, **extra: Any
    ) -> Any:
        settings = load_settings(db=db_ or db, collection=collection, workers=2, **extra)
        return Context(settings, embedder=FakeEmbedder())

    monkeypatch.setattr("lookalike.cli.common.context_for", context_for)
    return CliRunner()


def test_delete_asks_first_then_deletes_by_item_id(cli: CliRunner, tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 4)
    assert cli.invoke(app, ["index", str(tmp_path / "photos")]).exit_code == 0
    refused = cli.invoke(app, ["delete", "--item-id", "img_0001"], input="n\n")
    assert refused.exit_code == 1 and "nothing deleted" in refused.output
    done = cli.invoke(app, ["delete", "--item-id", "img_0001", "--yes", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["deleted"] == 1
    stats = cli.invoke(app, ["stats"])
    assert "3" in stats.output
    none = cli.invoke(app, ["delete", "--item-id", "img_0001", "--yes"])
    assert none.exit_code == 0 and "nothing deleted" in none.output


def test_delete_with_purge_erases_the_bytes(cli: CliRunner, tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 3)
    cli.invoke(app, ["index", str(tmp_path / "photos")])
    marker = str((tmp_path / "photos" / "img_0002.jpg").resolve()).encode()
    folder = tmp_path / "cli.db"
    assert any(marker in Path(r, f).read_bytes() for r, _, fs in os.walk(folder) for f in fs)
    result = cli.invoke(app, ["delete", "--item-id", "img_0002", "--yes", "--purge"])
    assert result.exit_code == 0 and "erased" in result.output
    assert not any(marker in Path(r, f).read_bytes() for r, _, fs in os.walk(folder) for f in fs)
    assert cli.invoke(app, ["compact"]).exit_code == 0


def test_delete_needs_a_criterion(cli: CliRunner) -> None:
    result = cli.invoke(app, ["delete", "--yes"])
    assert result.exit_code == 2 and "say what to delete" in result.output


def test_index_sync_prints_what_it_did(cli: CliRunner, tmp_path: Path) -> None:
    paths = write_images(tmp_path / "photos", 3)
    cli.invoke(app, ["index", str(tmp_path / "photos"), "--sync"])
    paths[0].unlink()
    result = cli.invoke(app, ["index", str(tmp_path / "photos"), "--sync"])
    assert result.exit_code == 0
    assert "0 added, 0 updated, 0 replaced, 1 deleted, 2 left" in result.output


def test_a_catalog_row_dated_9999_is_skipped_with_its_reason(cli: CliRunner, tmp_path: Path) -> None:
    rows = [
        ("a.jpg", "A", "shop", "9999-12-31T23:59:59"),
        ("b.jpg", "B", "shop", "1700000000000"),
        ("c.jpg", "C", "shop", "inf"),
        ("d.jpg", "D", "shop", "-1e12"),
        ("e.jpg", "E", "shop", "2024-02-01"),
    ]
    catalog = write_catalog(tmp_path / "cat", rows)
    result = cli.invoke(app, ["index", str(catalog)])
    assert result.exit_code == 0, result.output
    assert "indexed 2 new images" in result.output and "3 skipped" in result.output
    assert "outside 1970-01-01" in result.output and "not a plain number" in result.output
    listed = cli.invoke(app, ["partitions", "list"])
    assert "m2023_11" in listed.output and "m2024_02" in listed.output and "m9999" not in listed.output


def test_a_year_9999_partition_can_be_listed_and_dropped_from_the_cli(cli: CliRunner, tmp_path: Path) -> None:
    from pymilvus import MilvusClient

    from tests.store_model import foreign_row, make_item

    write_images(tmp_path / "photos", 2)
    cli.invoke(app, ["index", str(tmp_path / "photos")])
    client = MilvusClient(str(tmp_path / "cli.db"))  # what an older version wrote for "9999-12-31"
    client.create_partition("images", "m9999_12")
    row = foreign_row(make_item(7))
    row.update(created_at=253402300799, vector=[0.1] * 192)
    client.insert("images", [row], partition_name="m9999_12")
    client.close()
    for command in (["stats"], ["partitions", "list"], ["search", "--id", str(7)]):
        result = cli.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
    assert "9999-12-31" in cli.invoke(app, ["partitions", "list"]).output
    dropped = cli.invoke(app, ["partitions", "drop", "--name", "m9999_12", "--yes"])
    assert dropped.exit_code == 0 and "dropped 1 partitions, 1 items" in dropped.output
    assert "m9999_12" not in cli.invoke(app, ["partitions", "list"]).output


def test_sync_keeps_what_lies_under_a_subfolder_it_could_not_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    write_images(photos, 2)
    inner = write_images(photos / "season" / "spring", 3)
    service = make_service(tmp_path)
    ingesting.index(service, str(photos), source="shop", sync=True)
    assert service.store.count() == 5
    (photos / "b-gone.jpg").write_bytes(b"")  # noise: a bad file beside
    inner_folder = str((photos / "season").resolve())
    real_scandir = os.scandir

    def denied(path: Any = ".") -> Any:  # the subfolder's permissions changed (we run as root here)
        if os.fspath(path) in (inner_folder, str(photos / "season")):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    report = ingesting.index(service, str(photos), source="shop", sync=True)
    monkeypatch.undo()
    assert report.deleted == 0 and report.kept == 3, report
    assert any("cannot read folder" in s.reason for s in report.skipped)
    assert sorted(_by_uri(service)) == sorted(
        str(p.resolve()) for p in [*sorted(photos.glob("img_*.jpg")), *inner]
    )
    # Once it reads again, a picture really gone from it is swept as before.
    inner[0].unlink()
    again = ingesting.index(service, str(photos), source="shop", sync=True)
    assert again.deleted == 1 and service.store.count() == 4


class _Overflowing(FakeEmbedder):
    """A model that overflows (NaN) on a pure blue picture."""

    def _encode_images(self, images: Any) -> Any:
        import numpy as np

        rows = super()._encode_images(images)
        for row, image in zip(rows, images, strict=True):
            red, green, blue = (float(c) for c in np.asarray(image.convert("RGB")).mean(axis=(0, 1)))
            if blue > 200 and red < 50 and green < 50:
                row[:] = np.nan
        return rows


def test_a_picture_the_model_gives_no_vector_for_is_skipped_never_stored_and_kept_by_sync(
    tmp_path: Path,
) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    write_images(photos, 3)
    service = make_service(tmp_path, _Overflowing())
    first = ingesting.index(service, str(photos), source="shop", sync=True)
    assert first.indexed == 3
    Image.new("RGB", (64, 64), (10, 20, 240)).save(photos / "img_0001.jpg")  # replaced by a blue one
    report = ingesting.index(service, str(photos), source="shop", sync=True)
    assert [s.reason for s in report.skipped] == ["the model gave no usable vector (not finite): not stored"]
    assert report.indexed == 0 and report.deleted == 0 and report.kept == 1
    stored = [i for batch in service.store.iter_items(with_vector=True) for i in batch]
    assert len(stored) == 3 and all(
        np.isfinite(i.vector).all() and abs(np.linalg.norm(i.vector) - 1) < 1e-3 for i in stored
    )
