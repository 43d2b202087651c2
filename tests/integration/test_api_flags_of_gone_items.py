"""DELETE /items/{id} closes the item's open flags; the audit says why; a vanished item shows no open flag."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fastapi.testclient import TestClient

from lookalike.api import create_app
from tests.integration.test_api_review import build_flagged


def test_deleting_an_item_over_http_closes_its_flags(tmp_path: Path) -> None:
    ctx = build_flagged(tmp_path)
    with TestClient(create_app(ctx)) as api:
        flags = api.get("/flags", params={"status": "open"}).json()["flags"]
        assert len(flags) == 3
        doomed = flags[1]["item"]
        assert api.delete(f"/items/{doomed}").status_code == 200
        still = api.get("/flags", params={"status": "open"}).json()
        assert still["total"] == 2 and doomed not in {f["item"] for f in still["flags"]}
        closed = api.get("/flags", params={"status": "closed"}).json()["flags"]
        assert [(f["id"], f["item"], f["stored"]) for f in closed] == [(flags[1]["id"], doomed, False)]
        rows = list(csv.DictReader(io.StringIO(api.get("/audit", params={"format": "csv"}).text)))
        assert [(r["item"], r["decision"], r["reviewer"], r["note"], r["took_down"]) for r in rows] == [
            (doomed, "closed", "system", "item deleted", "False")
        ]
        # Gone from under the workflow (a crash before the close, a foreign delete): not listed open.
        vanished = int(flags[2]["item"])
        ctx.store.delete([vanished])
        body = api.get("/flags", params={"status": "open"}).json()
        assert body["total"] == 1 and [f["item"] for f in body["flags"]] == [flags[0]["item"]]
