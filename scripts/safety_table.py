"""Run the adversarial corpus, the abusive catalogs and the SSRF attempts, and print the table.

    python scripts/safety_table.py

Everything runs in-process with the fake embedder over a Milvus Lite database in a temporary folder;
the hostile host listens on 127.0.0.1 behind a fake DNS (tests/hostile.py). Nothing leaves the machine.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.adversarial import GOOD, build_corpus  # noqa: E402
from tests.adversarial_catalogs import catalogs  # noqa: E402
from tests.helpers import FakeEmbedder  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from lookalike.cli import common  # noqa: E402
from lookalike.cli.common import app  # noqa: E402
from lookalike.config import load_settings  # noqa: E402
from lookalike.usecases import (
    Context,  # noqa: E402
)

LIMITS = {"max_image_pixels": 4_000_000, "max_download_mb": 1.0, "fetch_timeout_s": 1.5, "workers": 2}


def _cli(db: Path) -> Any:
    common.context_for = lambda *a, **k: Context(load_settings(db=str(db), **LIMITS), embedder=FakeEmbedder())
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), env={"COLUMNS": "300"})


def files(work: Path) -> dict[str, Any]:
    folder = work / "corpus"
    kinds = build_corpus(folder)
    result = _cli(work / "files.db")("index", str(folder))
    service = Context(load_settings(db=str(work / "files.db"), **LIMITS), embedder=FakeEmbedder())
    stored = {item.uri for batch in service.store.iter_items(with_vector=False) for item in batch}
    service.close()
    good = [
        os.path.realpath(os.path.join(os.fsencode(folder), n)).decode()
        for k in kinds
        if k.expect == GOOD
        for n in k.files
    ]
    bad = sum(len(k.files) or 1 for k in kinds if k.expect != GOOD)
    return {
        "kinds": len(kinds),
        "bad kinds": sum(1 for k in kinds if k.expect != GOOD),
        "bad files": bad,
        "aborted": int(result.exit_code not in (0, 1)),
        "lost": sum(1 for uri in good if uri not in stored),
        "tracebacks": result.output.count("Traceback"),
    }


def abusive_catalogs(work: Path) -> dict[str, Any]:
    aborted = lost = tracebacks = clear = 0
    all_catalogs = catalogs()
    for number, catalog in enumerate(all_catalogs):
        folder = work / f"catalog-{number}"
        folder.mkdir()
        for name in ("bom.jpg", "wide.jpg"):
            from tests.helpers import jpeg_bytes, make_image

            (folder / name).write_bytes(jpeg_bytes(make_image(number)))
        catalog.make(folder)
        result = _cli(work / f"catalog-{number}.db")("index", str(folder / catalog.file))
        tracebacks += result.output.count("Traceback")
        if catalog.error is not None:
            ok = result.exit_code == 2 and catalog.error.lower() in result.output.lower()
            clear += ok
            aborted += not ok
        else:
            aborted += result.exit_code not in (0, 1)
            lost += f"indexed {catalog.good} new images" not in result.output
    return {
        "catalogs": len(all_catalogs),
        "clear errors": clear,
        "aborted": aborted,
        "lost": lost,
        "tracebacks": tracebacks,
    }


def ssrf(work: Path) -> dict[str, tuple[int, int]]:
    import pytest
    from fastapi.testclient import TestClient
    from tests.hostile import FakeNet, hostile_server
    from tests.integration.test_api_ssrf import attempts, wait_for

    from lookalike.api import create_app

    routes: dict[str, tuple[int, int]] = {}
    monkeypatch = pytest.MonkeyPatch()
    settings = load_settings(
        db=str(work / "api.db"), fetch_timeout_s=1.5, max_download_mb=0.5, index_roots=str(work)
    )
    service = Context(settings, embedder=FakeEmbedder())
    try:
        with hostile_server() as server, TestClient(create_app(service)) as api:
            net = FakeNet(server)
            net.install(monkeypatch)
            urls = attempts(server.port)
            json_refused = sum(api.post("/search", json={"image_url": u}).status_code == 422 for u in urls)
            routes["POST /search image_url (JSON)"] = (json_refused, len(urls))
            form = [api.post("/search", files={"x": ("x", b"")}, data={"image_url": u}) for u in urls]
            routes["POST /search image_url (form)"] = (sum(r.status_code == 422 for r in form), len(urls))
            job = wait_for(api, api.post("/index", json={"inputs": urls}).json()["job_id"])
            routes["POST /index URLs"] = (len(job["skipped"]) if job["indexed"] == 0 else 0, len(urls))
            (work / "c.csv").write_text("image,item_id\n" + "".join(f"{u},{i}\n" for i, u in enumerate(urls)))
            job = wait_for(api, api.post("/index", json={"inputs": [str(work / "c.csv")]}).json()["job_id"])
            routes["POST /index catalog rows"] = (
                len(job["skipped"]) if job["indexed"] == 0 else 0,
                len(urls),
            )
            schemes = [
                "file:///etc/passwd",
                "gopher://127.0.0.1/_x",
                "ftp://127.0.0.1/x",
                "dict://127.0.0.1:11211/",
            ]
            refused = sum(api.post("/index", json={"inputs": [u]}).status_code == 422 for u in schemes)
            routes["POST /index other schemes"] = (refused, len(schemes))
            paths = [
                "/etc/passwd",
                "/proc/self/environ",
                "/dev/urandom",
                str(work / ".." / "x"),
                "/nonexistent",
            ]
            forbidden = [api.post("/index", json={"inputs": [p]}) for p in paths]
            routes["POST /index server paths outside roots (403)"] = (
                sum(r.status_code == 403 for r in forbidden),
                len(paths),
            )
            url = f"http://public.example:{server.port}/switch.jpg"
            wait_for(api, api.post("/index", json={"inputs": [url], "source": "web"}).json()["job_id"])
            (hit,) = api.post("/search", json={"text": "x", "sources": ["web"]}).json()["hits"]
            server.switched = True
            before = server.hits.count("/switch.jpg")
            served = api.get(f"/items/{hit['id']}/image").status_code == 200
            routes["GET /items/{id}/image after the host turned hostile"] = (
                int(served and server.hits.count("/switch.jpg") == before),
                1,
            )
            assert "/secret" not in server.hits
    finally:
        monkeypatch.undo()
    return routes


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lookalike-safety-") as tmp:
        work = Path(tmp)
        f = files(work)
        c = abusive_catalogs(work)
        s = ssrf(work)
    print("| input | kinds | runs | runs aborted | rows lost | tracebacks shown |")
    print("|---|---|---|---|---|---|")
    kinds = f"{f['kinds']} ({f['bad kinds']} bad, {f['bad files']} bad files)"
    print(
        f"| odd and hostile files, one folder | {kinds} | 1 | {f['aborted']} | {f['lost']} | {f['tracebacks']} |"
    )
    kinds = f"{c['catalogs']} ({c['clear errors']} clear exit-2 errors)"
    runs = c["catalogs"]
    print(f"| abusive catalogs | {kinds} | {runs} | {c['aborted']} | {c['lost']} | {c['tracebacks']} |")
    print()
    print("| route | SSRF / path attempts refused |")
    print("|---|---|")
    for route, (refused, total) in s.items():
        print(f"| {route} | {refused}/{total} |")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
