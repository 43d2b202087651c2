"""classify, scan, partitions and duplicates as a user runs them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.cli import lookalike
from tests.e2e.test_cli import env  # noqa: F401  (the env fixture)
from tests.helpers import make_image

pytestmark = pytest.mark.slow


def test_risk_control_commands(tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811
    folder = tmp_path / "cat"
    folder.mkdir()
    days = ["2023-10-03", "2023-11-19", "2023-11-20", "2023-11-23", "2023-11-25", "2023-12-04"]
    rows = ["image,item_id,name,source,created_at"]
    for i, day in enumerate(days):
        make_image(i).save(folder / f"{i}.jpg")
        rows.append(f"{i}.jpg,SKU{i},item {i},shop-{i % 2},{day}")
    shutil.copy(folder / "2.jpg", folder / "copy.jpg")
    rows.append("copy.jpg,COPY,copied photo,shop-9,2023-11-21")
    (folder / "catalog.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    labels = tmp_path / "labels.toml"
    labels.write_text(
        '[labels.dog]\nprompts = ["a samoyed", "萨摩耶"]\n[labels.qr]\nprompts = ["a QR code"]\n'
    )
    assert lookalike(env, "index", str(folder / "catalog.csv")).returncode == 0

    classified = lookalike(
        env, "classify", str(folder / "1.jpg"), str(tmp_path / "nope.jpg"), "--labels", str(labels), "--json"
    )
    assert classified.returncode == 0, classified.stderr
    first, missing = json.loads(classified.stdout)
    assert [r["label"] for r in first["labels"]] == ["dog", "qr"]
    assert abs(sum(r["probability"] for r in first["labels"]) - 1) < 1e-4
    assert missing["error"] == "file not found"

    report = tmp_path / "report.csv"
    scanned = lookalike(
        env,
        "scan",
        "--labels",
        str(labels),
        "--since",
        "2023-11-19",
        "--until",
        "2023-11-23",
        "--min-score",
        "-1",
        "--out",
        str(report),
    )
    assert scanned.returncode == 0, scanned.stderr
    assert "scanned 4 items; 4 rows" in scanned.stdout
    with report.open(encoding="utf-8") as handle:
        got = sorted(row["item_id"] for row in csv.DictReader(handle))
    assert got == ["COPY", "SKU1", "SKU2", "SKU3"]

    groups = tmp_path / "groups.json"
    found = lookalike(env, "duplicates", "--out", str(groups))
    assert found.returncode == 0, found.stderr
    exact = [g for g in json.loads(groups.read_text())["groups"] if g["kind"] == "exact"]
    assert [sorted(i["item_id"] for i in g["items"]) for g in exact] == [["COPY", "SKU2"]]

    listed = lookalike(env, "partitions", "list")
    assert "m2023_10" in listed.stdout and "2023-10-31" in listed.stdout
    refused = lookalike(env, "partitions", "drop", "--before", "2023-12-01")
    assert refused.returncode == 1 and "nothing dropped" in refused.stderr  # no --yes, no terminal to confirm
    dropped = lookalike(env, "partitions", "drop", "--before", "2023-12-01", "--yes")
    assert dropped.returncode == 0 and "dropped 2 partitions, 6 items" in dropped.stdout
    remaining = lookalike(env, "partitions", "list").stdout
    assert "m2023_12" in remaining and "m2023_11" not in remaining and "m2023_10" not in remaining

    bad = lookalike(env, "scan", "--labels", str(labels), "--out", str(tmp_path / "r.xlsx"))
    assert bad.returncode == 2 and ".csv, .json or .html" in bad.stderr
