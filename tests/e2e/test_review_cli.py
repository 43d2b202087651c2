"""policy, scan --policy --flag, flags, review, audit, match-hashes and hashes backfill as a user runs them."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import pytest

from tests.cli import lookalike
from tests.e2e.test_cli import env  # noqa: F401  (the env fixture)
from tests.helpers import write_images

pytestmark = pytest.mark.slow


def test_policy_flags_review_and_audit_from_the_command_line(tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811
    photos = write_images(tmp_path / "photos", 4)
    labels = tmp_path / "everything.toml"  # threshold -1: every picture matches, whatever the model
    labels.write_text('[labels.anything]\nprompts = ["a picture"]\nthreshold = -1\n', encoding="utf-8")
    assert lookalike(env, "index", str(photos[0])).returncode == 0  # stored before the policy
    added = lookalike(env, "policy", "add", str(labels), "--name", "all")
    assert added.returncode == 0 and "policy all added (1 labels: anything)" in added.stdout
    assert "all\t" in lookalike(env, "policy", "list").stdout
    assert lookalike(env, "index", str(tmp_path / "photos")).returncode == 0
    listed = json.loads(lookalike(env, "flags", "--json").stdout)
    assert listed["total"] == 3  # the three indexed after the policy, flagged in the same pass
    scanned = lookalike(env, "scan", "--policy", "all", "--flag")
    assert scanned.returncode == 0 and "scanned 4 items; 1 new flags for policy all" in scanned.stdout

    refused = lookalike(env, "scan", "--policy", "all", "--flag", "--out", str(tmp_path / "r.csv"))
    assert refused.returncode == 2
    assert lookalike(env, "review", "1").returncode == 2  # neither --confirm nor --dismiss
    assert lookalike(env, "review", "77", "--confirm", "--by", "ana").returncode != 0
    assert lookalike(env, "flags", "--status", "maybe").returncode != 0

    first, second = (f["id"] for f in json.loads(lookalike(env, "flags", "--json").stdout)["flags"][:2])
    dismissed = lookalike(env, "review", str(first), "--dismiss", "--note", "fine", "--by", "ana")
    assert dismissed.returncode == 0 and f"flag {first} dismissed by ana" in dismissed.stdout
    down = lookalike(env, "review", str(second), "--confirm", "--take-down", "--by", "bo")
    assert down.returncode == 0 and "taken down" in down.stdout
    assert json.loads(lookalike(env, "flags", "--status", "open", "--json").stdout)["total"] == 2
    assert json.loads(lookalike(env, "stats", "--json").stdout)["rows"] == 3

    audit = tmp_path / "audit.csv"
    assert lookalike(env, "audit", "--out", str(audit)).returncode == 0
    with audit.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["decision"], r["reviewer"], r["note"], r["took_down"]) for r in rows] == [
        ("dismissed", "ana", "fine", "False"),
        ("confirmed", "bo", "", "True"),
    ]

    assert lookalike(env, "hashes", "backfill").returncode == 0
    stored = json.loads(
        lookalike(
            env, "match-hashes", str(_list(tmp_path, "f" * 64)), "--max-distance", "256", "--json"
        ).stdout
    )
    assert len(stored) == 3
    one = stored[0]["pdq"]
    near = json.loads(lookalike(env, "match-hashes", str(_list(tmp_path, f"{one} known")), "--json").stdout)
    assert one in {m["pdq"] for m in near} and all(
        m["label"] == "known" and m["distance"] <= 31 for m in near
    )
    bad = lookalike(env, "match-hashes", str(_list(tmp_path, "zz")))
    assert bad.returncode != 0 and "line 1" in bad.stderr
    removed = lookalike(env, "policy", "remove", "all")
    assert removed.returncode == 0 and lookalike(env, "policy", "remove", "all").returncode != 0


def _list(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "hashes.txt"
    path.write_text(line + "\n", encoding="utf-8")
    return path


def test_calibrate_and_pdq_duplicates_from_the_command_line(tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811
    photos = write_images(tmp_path / "photos", 6)
    from shutil import copy

    from PIL import Image

    Image.open(photos[0]).resize((120, 90)).save(tmp_path / "photos" / "resized.jpg", quality=60)
    copy(photos[1], tmp_path / "photos" / "same-bytes.jpg")
    assert lookalike(env, "index", str(tmp_path / "photos")).returncode == 0
    groups = tmp_path / "groups.json"
    found = lookalike(env, "duplicates", "--by", "pdq", "--out", str(groups))
    assert found.returncode == 0, found.stderr
    payload = json.loads(groups.read_text())
    assert payload["duplicates"]["by"] == "pdq"
    names = sorted(sorted(Path(i["uri"]).name for i in g["items"]) for g in payload["groups"])
    assert ["img_0000.jpg", "resized.jpg"] in names and ["img_0001.jpg", "same-bytes.jpg"] in names
    assert lookalike(env, "duplicates", "--by", "md5", "--out", str(groups)).returncode != 0

    labels = tmp_path / "labels.toml"
    labels.write_text('[labels.first]\nprompts = ["a picture"]\n', encoding="utf-8")
    rows = ["image,label", "photos/img_0000.jpg,first", "photos/resized.jpg,first"]
    rows += [f"photos/img_{i:04d}.jpg,none" for i in range(2, 6)]
    (tmp_path / "examples.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ran = lookalike(
        env, "calibrate", "--labels", str(labels), "--examples", str(tmp_path / "examples.csv"), "--json"
    )
    assert ran.returncode == 0, ran.stderr
    (result,) = json.loads(ran.stdout)
    assert (result["label"], result["positives"], result["negatives"]) == ("first", 2, 4)
    # A random tiny model ranks the pictures anyhow: at 0.95 a threshold may or may not exist.
    assert result["threshold"] is None or result["precision"] >= 0.95
    # At 0.3 one always does (keeping all six is 2/6 precise), and the sweep keeps the most recall:
    # every positive, at the precision of the cut, written into the label file.
    ran = lookalike(
        env,
        "calibrate",
        "--labels",
        str(labels),
        "--examples",
        str(tmp_path / "examples.csv"),
        "--precision",
        "0.3",
        "--write",
        "--json",
    )
    assert ran.returncode == 0, ran.stderr
    (result,) = json.loads(ran.stdout.splitlines()[0])
    assert result["threshold"] is not None and result["recall"] == 1.0
    assert 1 / 3 - 1e-9 <= result["precision"] <= 1.0
    written = tomllib.loads(labels.read_text(encoding="utf-8"))["labels"]["first"]
    assert written["threshold"] == pytest.approx(result["threshold"], abs=1e-6)
    assert written["prompts"] == ["a picture"]
    bad = tmp_path / "bad.csv"
    bad.write_text("image,label\nphotos/img_0000.jpg,second\n", encoding="utf-8")
    refused = lookalike(env, "calibrate", "--labels", str(labels), "--examples", str(bad))
    assert refused.returncode != 0 and "line 2" in refused.stderr
