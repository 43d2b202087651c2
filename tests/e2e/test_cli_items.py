"""The collection remembers its model; items by their catalog ids; output fit for pipes and scripts.

In-process runs (tests/cli.py) with the tiny real model, loaded through a user's checkpoint path.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.cli import lookalike
from tests.helpers import build_tiny_model, write_images

pytestmark = pytest.mark.slow


@pytest.fixture()
def indexed(tmp_path: Path, tiny_model: tuple[Path, Path]) -> tuple[dict[str, str], list[str]]:
    """A catalog of 10 items (SKU0..SKU9; SKU3 with two pictures) indexed with the tiny model's flags."""
    config, checkpoint = tiny_model
    photos = write_images(tmp_path / "photos", 11)
    catalog = tmp_path / "catalog.csv"
    with catalog.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "item_id", "name", "source", "created_at"])
        for i, path in enumerate(photos):
            writer.writerow(
                [f"photos/{path.name}", f"SKU{min(i, 9) if i != 10 else 3}", f"item {i}", "shop", 1700000000]
            )
    env = {k: v for k, v in os.environ.items() if k not in ("LOOKALIKE_MODEL", "LOOKALIKE_PRETRAINED")}
    env |= {"LOOKALIKE_DB": str(tmp_path / "items.db"), "HF_HUB_OFFLINE": "1"}
    flags = ["--model", str(config), "--pretrained", str(checkpoint)]
    done = lookalike(env, "index", str(catalog), *flags, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["indexed"] == 11 and report["skipped"] == []
    return env, flags


def test_later_commands_use_the_collections_model_and_refuse_another(
    indexed: tuple[dict[str, str], list[str]], tmp_path: Path
) -> None:
    env, flags = indexed
    plain = lookalike(env, "search", "--text", "red dress", "--json")  # no --model, no --pretrained
    assert plain.returncode == 0, plain.stderr
    assert len(json.loads(plain.stdout)["hits"]) == 10 and json.loads(plain.stdout)["warnings"] == []
    assert lookalike(env, "search", "--text", "red dress", *flags).returncode == 0  # the same, named

    other_config, other_weights = build_tiny_model(tmp_path / "other", seed=7)
    refused = lookalike(env, "search", "--text", "red dress", "--pretrained", str(other_weights))
    assert refused.returncode == 2
    assert str(flags[3]) in refused.stderr and str(other_weights) in refused.stderr  # both are named
    assert "--collection" in refused.stderr

    stats = json.loads(lookalike(env, "stats", "--json").stdout)
    assert stats["rows"] == 11 and stats["model"] == "tiny-clip.json:tiny-clip.pt"


def test_items_are_found_and_shown_by_their_catalog_ids(indexed: tuple[dict[str, str], list[str]]) -> None:
    env, _ = indexed
    like = json.loads(lookalike(env, "search", "--item-id", "SKU3", "--k", "20", "--json").stdout)
    found = [hit["item_id"] for hit in like["hits"]]
    assert "SKU3" not in found and len(found) == 9  # both pictures of SKU3 are the query, not hits

    shown = lookalike(env, "show", "--item-id", "SKU3", "--json")
    pictures = json.loads(shown.stdout)
    assert [p["item_id"] for p in pictures] == ["SKU3", "SKU3"] and all(
        p["uri"].endswith(".jpg") for p in pictures
    )
    one = json.loads(lookalike(env, "show", str(pictures[0]["id"]), "--json").stdout)
    assert one == [pictures[0]]
    missing = lookalike(env, "show", "--item-id", "NOPE")
    assert missing.returncode == 5 and "NOPE" in missing.stderr
    both = lookalike(env, "show", "1", "--item-id", "SKU3")
    assert both.returncode == 2


def test_offset_pages_and_min_score_cuts(indexed: tuple[dict[str, str], list[str]]) -> None:
    env, _ = indexed
    query = ["search", "--text", "red dress", "--json"]
    every = json.loads(lookalike(env, *query, "--k", "11").stdout)["hits"]
    page2 = json.loads(lookalike(env, *query, "--k", "4", "--offset", "4").stdout)["hits"]
    assert [h["id"] for h in page2] == [h["id"] for h in every[4:8]]
    cut = (every[5]["score"] + every[6]["score"]) / 2  # the JSON scores are rounded: cut between two
    above = json.loads(lookalike(env, *query, "--k", "11", "--min-score", str(cut)).stdout)["hits"]
    assert [h["id"] for h in above] == [h["id"] for h in every[:6]]
    bad = lookalike(env, "search", "--text", "x", "--min-score", "2")
    assert bad.returncode == 2


def test_tables_in_a_pipe_are_one_line_per_row_with_names_whole(
    indexed: tuple[dict[str, str], list[str]], tmp_path: Path
) -> None:
    env, _ = indexed
    long_name = (
        tmp_path / "photos" / ("a-very-long-file-name-that-would-wrap-in-eighty-columns-" * 2 + "x.jpg")
    )
    long_name.write_bytes(b"not an image at all")
    ran = lookalike(env, "index", str(tmp_path / "photos"), "--source", "folder")
    assert ran.returncode == 0
    lines = [line for line in ran.stderr.splitlines() if long_name.name in line]
    assert len(lines) == 1 and lines[0].split("\t")[0] == str(long_name)
    table = lookalike(env, "search", "--text", "red dress", "--k", "3").stdout.splitlines()
    assert table[0].split("\t") == ["rank", "score", "item_id", "name", "source", "date", "id", "uri"]
    assert len(table) == 1 + 3 and all(len(row.split("\t")) == 8 for row in table[1:4])  # pure TSV
    listed = json.loads(lookalike(env, "partitions", "list", "--json").stdout)
    assert {"name": "m2023_11", "rows": 11, "first_day": "2023-11-01", "last_day": "2023-11-30"} in listed
    assert sum(p["rows"] for p in listed) == 22  # the folder's 11 pictures are items of their own source


def test_the_first_use_of_a_model_says_what_it_prepares_and_how_long(
    tmp_path: Path, tiny_model: tuple[Path, Path]
) -> None:
    config, checkpoint = tiny_model
    write_images(tmp_path / "photos", 2)
    env = {
        **os.environ,
        "LOOKALIKE_CACHE_DIR": str(tmp_path / "cache"),
        "LOOKALIKE_DB": str(tmp_path / "n.db"),
    }
    args = ["index", str(tmp_path / "photos"), "--model", str(config), "--pretrained", str(checkpoint)]
    first = lookalike(env, *args)
    assert first.returncode == 0, first.stderr
    assert "exporting the model to ONNX" in first.stderr and "ONNX runtime ready in" in first.stderr
    assert "runtime probe done in" in first.stderr
    again = lookalike(env, *args)
    assert "ONNX" not in again.stderr and "probe" not in again.stderr  # prepared once per model and machine
