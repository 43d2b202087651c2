"""`lookalike claim` prints a flag as the API shows it: item ids as strings, the claim, what it matched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lookalike.api import create_app
from lookalike.cli import app
from lookalike.config import load_settings
from lookalike.usecases import Context
from tests.helpers import FakeEmbedder, write_images
from tests.unit.test_bank_cli import cli, run

__all__ = ["cli"]  # the fixture


def test_claim_json_is_the_flag_as_the_api_shows_it(cli: CliRunner, tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 4)
    run(cli, "bank", "create", "known", "--label", "counterfeit", "--by", "ana")
    run(cli, "bank", "add", "known", str(tmp_path / "photos" / "img_0002.jpg"), "--by", "ana")
    run(cli, "index", str(tmp_path / "photos"))
    claimed = json.loads(run(cli, "claim", "--by", "ana", "--json"))
    listed = json.loads(run(cli, "flags", "--json"))["flags"][0]
    assert isinstance(claimed["item"], str) and claimed["item"] == listed["item"]
    assert claimed["item_id"] == "img_0002" and claimed["claim"]["by"] == "ana"
    assert claimed["match"]["kind"] == "bank" and claimed["match"]["bank"] == "known"

    settings = load_settings(db=str(tmp_path / "cli.db"))
    with TestClient(create_app(Context(settings, embedder=FakeEmbedder()))) as api:
        shown = api.get(f"/flags/{claimed['id']}").json()
    assert {**shown, "claim": None} == {**claimed, "claim": None}  # the same shape, the same values
    assert shown["claim"]["expires_at"] == claimed["claim"]["expires_at"]

    text = run(cli, "claim", str(claimed["id"]), "--by", "ana")
    assert f"flag {claimed['id']} claimed by ana" in text and "PDQ distance" in text and "img_0002" in text
    assert json.loads(run(cli, "claim", "--by", "bo", "--json")) == {"flag": None}


def test_flags_and_claim_name_a_refused_reupload_and_a_banks_distance(cli: CliRunner, tmp_path: Path) -> None:
    [picture] = write_images(tmp_path / "photos", 1, start=2)
    run(cli, "bank", "create", "known", "--by", "ana")
    run(cli, "bank", "add", "known", str(picture), "--by", "ana")
    run(cli, "index", str(tmp_path / "photos"))
    [flag] = json.loads(run(cli, "flags", "--json"))["flags"]
    run(cli, "review", str(flag["id"]), "--confirm", "--take-down", "--by", "ana")
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(picture, again / "renamed.jpg")
    refused = cli.invoke(app, ["index", str(again), "--source", "shop-2", "--json"])
    assert refused.exit_code == 1  # nothing indexed, something skipped
    report = json.loads(refused.stdout)
    assert report["blocked"] == 1 and report["flagged"] == 0

    listed = run(cli, "flags", "--status", "open")
    [line] = [row for row in listed.splitlines() if "takedowns" in row]
    assert "0 bits" in line and "renamed.jpg from shop-2 (refused, never stored)" in line
    claimed = run(cli, "claim", "--by", "bo")
    assert "shop-2 · renamed" in claimed and "(refused, never stored)" in claimed
