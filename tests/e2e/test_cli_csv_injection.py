"""`lookalike audit --out x.csv` writes the formula payloads of issue 27 as inert text (read back with
the csv module); in-process, over flags made with the fake embedder (the audit loads no model)."""

from __future__ import annotations

import csv
from pathlib import Path

from lookalike.usecases import review
from lookalike.workflow import FlagStatus
from tests.cli import lookalike
from tests.integration.test_api_csv_injection import hostile_flags
from tests.unit.test_csv_injection import HYPERLINK, LABEL, is_inert


def test_the_audit_file_carries_formula_payloads_as_inert_text(tmp_path: Path) -> None:
    ctx = hostile_flags(tmp_path)
    first, second, _ = (row.flag.id for row in review.flags(ctx)[1])
    review.review(ctx, first, FlagStatus.DISMISSED, reviewer=HYPERLINK, note="+1+1")
    review.review(ctx, second, FlagStatus.DISMISSED, reviewer="@SUM(1+1)", note="-2+3")
    ctx.close()
    out = tmp_path / "x.csv"
    ran = lookalike({"COLUMNS": "200"}, "audit", "--out", str(out), "--db", str(tmp_path / "lookalike.db"))
    assert ran.returncode == 0, ran.stderr
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["reviewer"], r["note"], r["label"]) for r in rows] == [
        ("'" + HYPERLINK, "'+1+1", "'" + LABEL),
        ("'@SUM(1+1)", "'-2+3", "'" + LABEL),
    ]
    assert all(is_inert(value) for row in rows for value in row.values())
