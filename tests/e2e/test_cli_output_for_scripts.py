"""Output for scripts: every --json is exactly one line on stdout, in the API's field names; in a pipe,
a table's title and summary lines go to stderr and stdout holds only tab-separated rows.

CliRunner keeps stdout and stderr apart, and is no terminal: the pipe case. The API's answers for the
same database come from the app itself (TestClient), and its response models (api/schemas.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.cli import Ran, lookalike
from tests.helpers import write_images

pytestmark = pytest.mark.slow


@pytest.fixture()
def env(tmp_path: Path, tiny_model: tuple[Path, Path]) -> dict[str, str]:
    config, checkpoint = tiny_model
    return {
        **os.environ,
        "LOOKALIKE_MODEL": str(config),
        "LOOKALIKE_PRETRAINED": str(checkpoint),
        "LOOKALIKE_RUNTIME": "torch",
        "LOOKALIKE_DB": str(tmp_path / "scripts.db"),
        "HF_HUB_OFFLINE": "1",
    }


def one_json_line(ran: Ran) -> Any:
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()  # Python's line breaks: \n, \r, \x85, \u2028 and the like
    assert len(lines) == 1 and ran.stdout.endswith("\n"), ran.stdout
    return json.loads(lines[0])


def pure_tsv(ran: Ran, columns: int) -> list[list[str]]:
    """stdout's rows, each with ``columns`` cells; no comment or summary line among them."""
    assert ran.returncode == 0, ran.stderr
    rows = [line.split("\t") for line in ran.stdout.splitlines()]
    assert rows and all(len(row) == columns for row in rows), ran.stdout
    assert not any(row[0].startswith("#") for row in rows)
    return rows


def fields(model: Any) -> set[str]:
    return set(model.model_fields)


def _everything(tmp_path: Path, env: dict[str, str], count: int) -> tuple[list[Path], Path]:
    """``count`` pictures, each flagged by a match-everything policy added before they were indexed."""
    labels = tmp_path / "everything.toml"  # threshold -1: every picture matches, whatever the model
    labels.write_text('[labels.anything]\nprompts = ["a picture"]\nthreshold = -1\n', encoding="utf-8")
    assert lookalike(env, "policy", "add", str(labels), "--name", "all").returncode == 0
    return write_images(tmp_path / "photos", count), labels


def test_every_json_output_is_one_line_in_the_api_field_names(
    tmp_path: Path, env: dict[str, str], tiny_model: tuple[Path, Path]
) -> None:
    from lookalike.api.schemas import HitOut, ItemOut, JobOut, PartitionOut, SearchResponse, SkippedOut

    photos, labels = _everything(tmp_path, env, 4)
    # A name holding U+2028 (a line separator to Python, editors and log shippers) stays on the line.
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(f"image,item_id,name\nphotos/{photos[0].name},SKU0,one\u2028two\n", encoding="utf-8")
    indexed = one_json_line(lookalike(env, "index", str(catalog), "--json"))
    assert indexed["indexed"] == 1
    indexed = one_json_line(lookalike(env, "index", str(tmp_path / "photos"), "--json"))
    assert indexed["indexed"] == 4
    job_fields = fields(JobOut) - {"id", "kind", "status", "total", "done", "error", "result", "report_url"}
    assert job_fields <= set(indexed) and set(indexed["skipped"][0] if indexed["skipped"] else {}) <= fields(
        SkippedOut
    )

    found = one_json_line(lookalike(env, "search", "--text", "a red dress", "--k", "5", "--json"))
    assert set(found) == fields(SearchResponse) and len(found["hits"]) == 5
    # A hit says where each list ranked it only when a hybrid search fused two lists.
    assert all(set(hit) == fields(HitOut) - {"ranks"} for hit in found["hits"])
    fused = one_json_line(lookalike(env, "search", "--text", "a red dress", "--k", "5", "--hybrid", "--json"))
    assert fused["hits"] and all(set(hit) == fields(HitOut) for hit in fused["hits"])
    named = one_json_line(lookalike(env, "show", "--item-id", "SKU0", "--json"))
    assert [item["name"] for item in named] == ["one\u2028two"]
    first = found["hits"][0]["id"]
    (shown,) = one_json_line(lookalike(env, "show", str(first), "--json"))
    assert set(shown) == fields(ItemOut)
    partitions = one_json_line(lookalike(env, "partitions", "list", "--json"))
    assert all(set(p) == fields(PartitionOut) for p in partitions)
    stats = one_json_line(lookalike(env, "stats", "--json"))
    policies = one_json_line(lookalike(env, "policy", "list", "--json"))
    flags = one_json_line(lookalike(env, "flags", "--json"))
    assert flags["total"] == 5 and flags["flags"][0]["flagged_at"].endswith("Z")

    classified = one_json_line(lookalike(env, "classify", str(photos[0]), "--labels", str(labels), "--json"))
    assert classified[0]["labels"][0]["label"] == "anything"
    hashes = tmp_path / "hashes.txt"
    hashes.write_text("f" * 64 + " known\n", encoding="utf-8")
    assert lookalike(env, "hashes", "backfill").returncode == 0
    matched = one_json_line(lookalike(env, "match-hashes", str(hashes), "--max-distance", "256", "--json"))
    assert len(matched) == 5
    examples = tmp_path / "examples.csv"
    examples.write_text(
        "image,label\nphotos/img_0000.jpg,anything\nphotos/img_0001.jpg,none\n", encoding="utf-8"
    )
    calibrated = lookalike(
        env, "calibrate", "--labels", str(labels), "--examples", str(examples), "--write", "--json"
    )
    assert one_json_line(calibrated)[0]["label"] == "anything"
    assert "thresholds written" in calibrated.stderr  # not on stdout, beside the JSON
    queries = tmp_path / "queries.csv"
    queries.write_text("query,relevant\na picture,img_0000\n", encoding="utf-8")
    assert one_json_line(lookalike(env, "eval", "--queries", str(queries), "--json"))["text_to_image"]
    nothing = one_json_line(lookalike(env, "delete", "--item-id", "no-such-item", "--yes", "--json"))
    assert nothing == {"deleted": 0, "ids": [], "purged": False}
    deleted = one_json_line(lookalike(env, "delete", "--id", str(first), "--yes", "--json"))
    assert deleted == {"deleted": 1, "ids": [first], "purged": False}

    # The API's own answers for the same database: the same names (the command line may add some).
    from fastapi.testclient import TestClient

    from lookalike.api import create_app
    from lookalike.config import load_settings
    from lookalike.usecases.context import Context

    config, checkpoint = tiny_model
    settings = load_settings(
        db=env["LOOKALIKE_DB"], model=str(config), pretrained=str(checkpoint), runtime="torch"
    )
    with TestClient(create_app(Context(settings))) as api:
        assert set(stats) == set(api.get("/stats").json()) | {"db"}
        assert all(set(p) == {"name", "rows"} for p in stats["partitions"])
        (api_policy,) = api.get("/policies").json()
        assert set(policies[0]) == set(api_policy) and policies[0]["added"] == api_policy["added"]
        assert set(api_policy["labels"][0]) <= set(policies[0]["labels"][0])  # and the prompts
        api_flags = api.get("/flags", params={"limit": 100}).json()
        after = one_json_line(lookalike(env, "flags", "--json"))
        assert after == api_flags and set(api_flags["flags"][0]) == set(flags["flags"][0])
        assert {"deleted", "purged"} <= set(api.delete(f"/items/{found['hits'][1]['id']}").json())


def test_in_a_pipe_summaries_go_to_stderr_and_stdout_is_pure_tsv(tmp_path: Path, env: dict[str, str]) -> None:
    photos, labels = _everything(tmp_path, env, 3)
    assert lookalike(env, "index", str(tmp_path / "photos")).returncode == 0

    found = lookalike(env, "search", "--text", "a red dress", "--k", "2")
    assert len(pure_tsv(found, 8)) == 1 + 2
    assert "# 2 hits in" in found.stderr and " ms" in found.stderr
    flags = lookalike(env, "flags")
    assert len(pure_tsv(flags, 7)) == 1 + 3 and "# 3 of 3 flags" in flags.stderr
    stats = lookalike(env, "stats")
    assert pure_tsv(stats, 3)[0] == ["of", "name", "items"] and "3 items, dim 32" in stats.stderr
    assert ["source", "default", "3"] in pure_tsv(stats, 3)
    shown = lookalike(env, "show", "--item-id", "img_0001")
    rows = pure_tsv(shown, 17)  # one row per item, a column per field (the PDQ hash and its quality last)
    assert rows[0][:3] == ["id", "sha256", "item_id"] and rows[1][2] == "img_0001"
    classified = lookalike(env, "classify", str(photos[0]), str(photos[1]), "--labels", str(labels))
    rows = pure_tsv(classified, 5)  # one table, the image in its first column
    assert rows[0] == ["image", "label", "cosine", "probability", "decision"] and len(rows) == 1 + 2
    listed = lookalike(env, "partitions", "list")
    assert pure_tsv(listed, 4)[0] == ["partition", "items", "from", "to"]
    queries = tmp_path / "queries.csv"
    queries.write_text("query,relevant\na picture,img_0000\n", encoding="utf-8")
    evaluated = lookalike(env, "eval", "--queries", str(queries))
    assert (
        pure_tsv(evaluated, 7)[0][:2] == ["direction", "queries"] and "# lookalike eval" in evaluated.stderr
    )
