"""The `lookalike` command as a user runs it, on generated images and the tiny real model.

Most runs are in-process (tests/cli.py); the offline advice and the entry point's --help run as
real processes, where a fresh interpreter is what is being tested.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli import lookalike, lookalike_process
from tests.helpers import write_images

pytestmark = pytest.mark.slow


@pytest.fixture()
def env(tmp_path: Path, tiny_model: tuple[Path, Path]) -> dict[str, str]:
    config, checkpoint = tiny_model
    return {
        **os.environ,
        "LOOKALIKE_MODEL": str(config),
        "LOOKALIKE_PRETRAINED": str(checkpoint),
        "LOOKALIKE_DB": str(tmp_path / "lookalike.db"),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }


# A whole picture's hit has these too, empty: they describe a detected crop.
CROP_KEYS = ("width", "height", "box", "label", "det_score", "parent_sha256")


def test_index_search_stats_export_import(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / "photos"
    paths = write_images(folder, 12)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "empty.png").write_bytes(b"")

    indexed = lookalike(env, "index", str(folder), "--source", "product")
    assert indexed.returncode == 0, indexed.stderr
    assert "indexed 12 new images" in indexed.stdout
    assert "broken.jpg" in indexed.stderr and "empty.png" in indexed.stderr
    assert "Traceback" not in indexed.stderr

    again = lookalike(env, "index", str(folder), "--source", "product")
    assert "indexed 0 new images, 12 already indexed" in again.stdout

    found = lookalike(env, "search", "--image", str(paths[5]), "--k", "3", "--json")
    assert found.returncode == 0, found.stderr
    result = json.loads(found.stdout)
    assert set(result) == {"took_ms", "hits", "warnings", "query_box"}
    top = result["hits"][0]
    assert set(top) == {
        "id",
        "score",
        "item_id",
        "name",
        "source",
        "category",
        "tags",
        "created_at",
        "uri",
        *CROP_KEYS,
    }
    assert top["uri"] == str(paths[5].resolve()) and top["score"] >= 0.99 and top["item_id"] == "img_0005"

    by_id = json.loads(lookalike(env, "search", "--id", str(top["id"]), "--json").stdout)
    assert top["id"] not in {hit["id"] for hit in by_id["hits"]}

    grid = tmp_path / "results.png"
    table = lookalike(env, "search", "--text", "floral top", "--k", "4", "--grid", str(grid))
    assert table.returncode == 0 and "hits in" in table.stderr and "img_" in table.stdout  # stdout: TSV
    from PIL import Image

    with Image.open(grid) as sheet:
        assert sheet.format == "PNG" and sheet.width > 4 * 190

    stats = lookalike(env, "stats")
    assert stats.returncode == 0 and "12 items" in stats.stderr and "product" in stats.stdout

    backup = tmp_path / "backup.parquet"
    assert lookalike(env, "export", str(backup)).returncode == 0
    restored = {**env, "LOOKALIKE_DB": str(tmp_path / "restored.db")}
    imported = lookalike(restored, "import", str(backup))
    assert imported.returncode == 0 and "imported 12 items" in imported.stdout
    same = json.loads(lookalike(restored, "search", "--image", str(paths[5]), "--k", "3", "--json").stdout)
    assert [h["id"] for h in same["hits"]] == [h["id"] for h in result["hits"]]


def test_offline_default_model_prints_advice_not_a_traceback(tmp_path: Path, env: dict[str, str]) -> None:
    write_images(tmp_path / "photos", 2)
    offline = {k: v for k, v in env.items() if k not in ("LOOKALIKE_MODEL", "LOOKALIKE_PRETRAINED")}
    run = lookalike_process(offline, "index", str(tmp_path / "photos"))
    assert run.returncode == 3
    assert "--pretrained /path/to/" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    stats = lookalike(offline, "stats")
    assert "does not exist" in stats.stderr  # the failed load created no collection


def test_bad_flags_get_clear_errors(tmp_path: Path, env: dict[str, str]) -> None:
    write_images(tmp_path / "photos", 2)
    wrong_index = lookalike(env, "index", str(tmp_path / "photos"), "--index", "IVF_PQ")
    assert wrong_index.returncode == 2 and "Supported: FLAT, IVF_FLAT, IVF_SQ8, HNSW" in wrong_index.stderr
    bad_db = lookalike(env, "stats", "--db", str(tmp_path / "data"))
    assert bad_db.returncode == 2 and "ending in .db" in bad_db.stderr
    bad_date = lookalike(env, "search", "--text", "x", "--since", "19/11/2023")
    assert bad_date.returncode == 2 and "2023-11-19" in bad_date.stderr
    nothing = lookalike(env, "search", "--text", "x")
    assert nothing.returncode == 4 and "lookalike index" in nothing.stderr
    for run in (wrong_index, bad_db, bad_date, nothing):
        assert "Traceback" not in run.stderr


def test_help_explains_every_command(env: dict[str, str]) -> None:
    top = lookalike_process(env, "--help")
    assert top.returncode == 0
    for command in ("index", "search", "stats", "export", "import"):
        assert command in top.stdout
    search = lookalike(env, "search", "--help")
    assert "LOOKALIKE_DB" in search.stdout and "--since" in search.stdout
