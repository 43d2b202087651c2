"""A taken-down picture uploaded again through the API, or listed by URL, is refused, and its bytes are not
kept: the upload folder holds nothing of it once the run ends (an ordinary picture beside it is kept and
stored)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.store.window import Window
from tests.helpers import make_image
from tests.integration.test_api_review import build_flagged
from tests.unit.test_takedowns import near_copy, take_down_planted


def finished(api: TestClient, job: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (state := api.get(f"/jobs/{job}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return dict(state)


def test_a_blocked_upload_is_refused_and_its_bytes_are_not_kept(tmp_path: Path) -> None:
    ctx = build_flagged(tmp_path)
    take_down_planted(ctx)
    near_copy(tmp_path / "near" / "copy.jpg")
    ordinary = tmp_path / "ordinary.jpg"
    make_image(4242).save(ordinary)
    uploads = Path(ctx.settings.uploads_path())
    with TestClient(create_app(ctx)) as api:
        files = [
            ("files", ("again.png", (tmp_path / "photos" / "planted_a.png").read_bytes(), "image/png")),
            ("files", ("copy.jpg", (tmp_path / "near" / "copy.jpg").read_bytes(), "image/jpeg")),
            ("files", ("fine.jpg", ordinary.read_bytes(), "image/jpeg")),
        ]
        sent = api.post("/index", files=files, data={"source": "api-shop"})
        assert sent.status_code == 202, sent.text
        state = finished(api, sent.json()["job_id"])
        assert state["status"] == "done" and state["indexed"] == 1 and state["blocked"] == 2
        reasons = sorted(s["reason"] for s in state["skipped"])
        assert all(r.startswith("blocked: taken down on") for r in reasons) and "near copy" in reasons[1]
        kept = sorted(p.name for p in uploads.rglob("*") if p.is_file())
        [stored] = [
            i for batch in ctx.store.iter_items(window=Window.of(sources=["api-shop"])) for i in batch
        ]
        assert kept == [Path(stored.uri).name]  # the ordinary upload only
        assert api.get(f"/items/{stored.id}/image").status_code == 200


def test_a_blocked_picture_listed_by_url_is_refused_and_its_download_not_kept(tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    from lookalike.config import load_settings
    from lookalike.usecases import Context, ingest, policies
    from tests.helpers import FakeEmbedder, write_images
    from tests.unit.test_policies import PLANTED, plant, write_policy

    embedder = FakeEmbedder()
    embedder.concepts["a prohibited thing"] = embedder.embed_images([make_image(PLANTED)])[0]
    settings = load_settings(db=str(tmp_path / "lookalike.db"), workers=2, allow_private_urls=True)
    ctx = Context(settings, embedder=embedder)
    policies.add(ctx, str(write_policy(tmp_path)))
    write_images(tmp_path / "photos", 3)
    plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    take_down_planted(ctx)
    near_copy(tmp_path / "served" / "copy.jpg")
    make_image(4242).save(tmp_path / "served" / "fine.jpg")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path / "served"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        report = ingest.index_inputs(ctx, [f"{base}/copy.jpg", f"{base}/fine.jpg"], source="web-shop")
    finally:
        server.shutdown()
        server.server_close()
    assert report.indexed == 1 and report.blocked == 1 and "near copy" in report.skipped[0].reason
    kept = [p.stem for p in Path(ctx.settings.uploads_path()).rglob("*.img")]
    [stored] = [i for batch in ctx.store.iter_items(window=Window.of(sources=["web-shop"])) for i in batch]
    assert kept == [stored.sha256]  # the stored picture's download only
