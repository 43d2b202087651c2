"""What the command line stores and prints stays whole and valid: sources and item ids are never cut
(two sellers stay two), imports store only embeddings, and every --json output is valid JSON.

In-process with Typer's CliRunner and the fake embedder (no model loads)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from lookalike.config import load_settings
from lookalike.usecases import Context
from tests.helpers import FakeEmbedder, make_image

PREFIX = "X" * 256  # two sellers whose names share their first 256 bytes, the source limit
TOO_LONG_A, TOO_LONG_B = PREFIX + "-shopA", PREFIX + "-shopB"
FITS_A, FITS_B = "X" * 250 + "-shopA", "X" * 250 + "-shopB"  # 256 bytes each: kept whole


def strict_json(text: str) -> Any:
    """JSON as a strict parser reads it: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in the JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture()
def opened(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Context]:
    """Every context a command builds (over tmp_path/cli.db, with the fake embedder)."""
    from lookalike.cli import common

    built: list[Context] = []

    def context_for(db: Any, collection: Any, model: Any, pretrained: Any, **extra: Any) -> Context:
        extra = {key: value for key, value in extra.items() if value is not None}
        ctx = Context(
            load_settings(db=str(tmp_path / "cli.db"), collection=collection, workers=2, **extra),
            embedder=FakeEmbedder(),
        )
        built.append(ctx)
        return ctx

    monkeypatch.setattr(common, "context_for", context_for)
    monkeypatch.setenv("COLUMNS", "400")
    return built


@pytest.fixture()
def cli(opened: list[Context]) -> Callable[..., Result]:
    from lookalike.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def write_catalog(folder: Path, rows: list[tuple[str, str, str]], first: int = 0) -> Path:
    """rows: (image file, item_id, source); the images are made from their position."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,item_id,source"]
    for i, (image, item_id, source) in enumerate(rows, start=first):
        if not (folder / image).exists():
            make_image(i).save(folder / image)
        lines.append(f"{image},{item_id},{source}")
    path = folder / "catalog.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def stored(tmp_path: Path) -> list[Any]:
    ctx = Context(load_settings(db=str(tmp_path / "cli.db"), workers=1), embedder=FakeEmbedder())
    try:
        return [item for batch in ctx.store.iter_items(with_vector=False) for item in batch]
    finally:
        ctx.close()


def test_two_sellers_sharing_256_bytes_of_name_are_never_merged(
    tmp_path: Path, cli: Callable[..., Result], opened: list[Context]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    make_image(1).save(folder / "a.jpg")
    refused = cli("index", str(folder), "--source", TOO_LONG_A)
    assert refused.exit_code == 2, refused.output
    assert "--source is 262 bytes long in UTF-8, over the 256-byte limit" in refused.output
    assert opened == [] and not (tmp_path / "cli.db").exists()  # refused before a model or a database opens
    undecodable = cli("index", str(folder), "--source", "shop-\udce9")  # a Latin-1 argv, as Python sees it
    assert undecodable.exit_code == 2 and "not valid UTF-8" in undecodable.output and opened == []

    # In catalogs, such rows are bad rows: skipped and reported, never stored under a cut name.
    shop_a = write_catalog(tmp_path / "a", [("a1.jpg", "A1", TOO_LONG_A), ("a2.jpg", "A2", FITS_A)])
    shop_b = write_catalog(tmp_path / "b", [("b1.jpg", "B1", TOO_LONG_B), ("b2.jpg", "B2", FITS_B)], first=10)
    for catalog in (shop_a, shop_b):
        run = cli("index", str(catalog), "--json")
        assert run.exit_code == 0, run.output
        report = strict_json(run.stdout)
        assert report["indexed"] == 1 and len(report["skipped"]) == 1
        assert "row 2: source is 262 bytes long" in report["skipped"][0]["reason"]
    assert sorted((item.item_id, item.source) for item in stored(tmp_path)) == [
        ("A2", FITS_A),
        ("B2", FITS_B),
    ]

    search = cli("search", "--text", "x", "--source", TOO_LONG_A)
    assert search.exit_code == 2 and "no stored item can match it" in search.output
    assert "Traceback" not in search.output


def test_sellers_whose_long_names_fit_are_searched_and_synced_apart(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    rows_a = [(f"a{i}.jpg", f"A{i}", FITS_A) for i in range(3)]
    shop_a = write_catalog(tmp_path / "a", rows_a)
    shop_b = write_catalog(tmp_path / "b", [(f"b{i}.jpg", f"B{i}", FITS_B) for i in range(3)], first=10)
    for catalog in (shop_a, shop_b):
        assert cli("index", str(catalog)).exit_code == 0
    found = strict_json(cli("search", "--text", "x", "-k", "10", "--source", FITS_A, "--json").stdout)
    assert sorted(hit["item_id"] for hit in found["hits"]) == ["A0", "A1", "A2"]
    assert {hit["source"] for hit in found["hits"]} == {FITS_A}

    write_catalog(tmp_path / "a", rows_a[:2])  # shop A delists A2
    synced = cli("index", str(shop_a), "--sync", "--json")
    assert synced.exit_code == 0, synced.output
    assert strict_json(synced.stdout)["deleted"] == 1
    assert sorted(item.item_id for item in stored(tmp_path)) == ["A0", "A1", "B0", "B1", "B2"]


def test_json_output_stays_valid_when_a_stored_vector_or_score_is_not_finite(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    catalog = write_catalog(tmp_path / "a", [(f"a{i}.jpg", f"A{i}", "shop") for i in range(3)])
    assert cli("index", str(catalog)).exit_code == 0
    # What an unchecked import or another program could have written before: a NaN vector and score.
    ctx = Context(load_settings(db=str(tmp_path / "cli.db"), workers=1), embedder=FakeEmbedder())
    some = next(iter(ctx.store.iter_items(with_vector=True)))[0]
    broken = dataclasses.replace(
        some, id=4242, sha256="e" * 64, item_id="broken", vector=np.full_like(some.vector, np.nan)
    )
    ctx.store.insert([dataclasses.replace(broken, det_score=float("nan"))])
    ctx.close()

    found = cli("search", "--text", "x", "-k", "10", "--json")
    assert found.exit_code == 0, found.output
    result = strict_json(found.stdout)
    assert sorted(hit["item_id"] for hit in result["hits"]) == ["A0", "A1", "A2"]
    assert any("1 hits had no valid score" in warning for warning in result["warnings"])
    shown = cli("show", "4242", "--json")
    assert shown.exit_code == 0, shown.output
    assert strict_json(shown.stdout)[0]["det_score"] == 0.0


def test_import_leaves_out_rows_that_are_no_embeddings_and_says_why(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    catalog = write_catalog(tmp_path / "a", [(f"a{i}.jpg", f"A{i}", "shop") for i in range(3)])
    assert cli("index", str(catalog)).exit_code == 0
    backup = tmp_path / "backup.parquet"
    assert cli("export", str(backup)).exit_code == 0
    table = pq.read_table(backup)
    vectors = table.column("vector").to_pylist()
    vectors[0] = [float("nan")] * len(vectors[0])
    vectors[1] = [value * 7.0 for value in vectors[1]]  # finite, not unit length: normalised
    bad = table.set_column(1, "vector", pa.array(vectors, type=table.schema.field("vector").type))
    pq.write_table(bad.replace_schema_metadata(table.schema.metadata), tmp_path / "bad.parquet")
    imported = cli("import", str(tmp_path / "bad.parquet"), "--collection", "restored")
    assert imported.exit_code == 2, imported.output
    assert "Imported 2 items (0 were already stored), but 1 rows of" in imported.output
    assert "1 with NaN or infinite values in the vector" in imported.output
    help_text = cli("import", "--help").output
    assert "left out" in help_text and "normalised" in help_text


def test_import_refuses_a_file_whose_columns_are_not_an_exports_before_creating_anything(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    catalog = write_catalog(tmp_path / "a", [(f"a{i}.jpg", f"A{i}", "shop") for i in range(3)])
    assert cli("index", str(catalog)).exit_code == 0
    backup = tmp_path / "backup.parquet"
    assert cli("export", str(backup)).exit_code == 0
    table = pq.read_table(backup)
    meta = table.schema.metadata

    def variant(name: str, column: str, values: pa.Array) -> Path:
        changed = table.set_column(table.schema.get_field_index(column), column, values)
        path = tmp_path / f"{name}.parquet"
        pq.write_table(changed.replace_schema_metadata(meta), path)
        return path

    rows = table.num_rows
    cases = {
        "dates as text": (
            variant("text", "created_at", pa.array(["2024-01-01"] * rows)),
            "created_at column",
        ),
        "dates as floats": (
            variant("floats", "created_at", pa.array([float("nan")] * rows)),
            "created_at column",
        ),
        "binary uris": (variant("binary", "uri", pa.array([b"\xff\xfe"] * rows)), "uri column"),
    }
    for name, (path, said) in cases.items():
        refused = cli("import", str(path), "--collection", "restored")
        assert refused.exit_code == 2 and said in refused.output and "Traceback" not in refused.output, name
    huge = tmp_path / "huge.parquet"
    pq.write_table(table.replace_schema_metadata({**meta, b"lookalike.dim": b"100000"}), huge)
    refused = cli("import", str(huge), "--collection", "restored")
    assert refused.exit_code == 2 and "over Milvus' limit" in refused.output
    from lookalike.store import LiteStore

    untouched = LiteStore(str(tmp_path / "cli.db"), "restored")
    try:
        assert not untouched.exists()  # each was refused before a collection was created
    finally:
        untouched.close()
    nul = variant("nul", "source", pa.array(["nul\x00shop"] * rows))  # rows refused one by one
    refused = cli("import", str(nul), "--collection", "restored")
    assert refused.exit_code == 2 and "holding NUL" in refused.output
