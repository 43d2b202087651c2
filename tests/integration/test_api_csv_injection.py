"""GET /audit?format=csv opens in a spreadsheet as data: the reviewer names, notes and policy labels an
attacker chose (the formula payloads of issue 27) come back as inert text, read with the csv module."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.usecases import Context, ingest, policies
from tests.unit.test_csv_injection import HYPERLINK, LABEL, is_inert
from tests.unit.test_policies import make_context, plant


def hostile_flags(tmp_path: Path) -> Context:
    """Three planted pictures flagged under a policy whose label is a formula."""
    ctx = make_context(tmp_path)
    labels = tmp_path / "hostile.toml"
    labels.write_text(
        '[labels.\'=HYPERLINK("http://x")\']\nprompts = ["a prohibited thing"]\nthreshold = 0.95\n',
        encoding="utf-8",
    )
    policies.add(ctx, str(labels), "hostile")
    plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    return ctx


def test_the_audit_csv_carries_formula_payloads_as_inert_text(tmp_path: Path) -> None:
    with TestClient(create_app(hostile_flags(tmp_path))) as api:
        flags = [f["id"] for f in api.get("/flags").json()["flags"]]
        assert len(flags) == 3 and {f["label"] for f in api.get("/flags").json()["flags"]} == {LABEL}
        reviews = [
            {"decision": "dismiss", "by": HYPERLINK, "note": "+1+1"},
            {"decision": "dismiss", "by": "@SUM(1+1)", "note": "-2+3"},
            {"decision": "confirm", "by": "ana", "note": "fine"},
        ]
        for flag, body in zip(flags, reviews, strict=True):
            assert api.post(f"/flags/{flag}/review", json=body).status_code == 200
        audit = api.get("/audit", params={"format": "csv"})
        assert audit.status_code == 200 and audit.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(audit.text)))
        assert [(r["reviewer"], r["note"], r["label"]) for r in rows] == [
            ("'" + HYPERLINK, "'+1+1", "'" + LABEL),
            ("'@SUM(1+1)", "'-2+3", "'" + LABEL),
            ("ana", "fine", "'" + LABEL),
        ]
        assert all(is_inert(value) for row in rows for value in row.values())
        # JSON is data for programs: it keeps the text exactly as given.
        decisions = api.get("/audit").json()["decisions"]
        assert [d["reviewer"] for d in decisions] == [HYPERLINK, "@SUM(1+1)", "ana"]
