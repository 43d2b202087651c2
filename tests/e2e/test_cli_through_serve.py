"""While `lookalike serve` holds a Milvus Lite database, the command line goes through its API.

A real server process on a free loopback port (the tiny model), then the commands in-process
against the same --db: each says on stderr that it went through the server, answers what the API
answers, and prints the same output as it does on its own once the server is gone; the API key
travels with them. A command the API does not offer says which server holds the database. A stale
record (its process gone, or its address silent: a server killed with SIGKILL) is ignored, and the
next server replaces it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli import lookalike
from tests.helpers import write_images

pytestmark = pytest.mark.slow

KEY = "s3cret key"
TABLES = {  # commands whose tables are compared, through the server and on their own
    "search": ("search", "--text", "red dress", "--k", "5"),
    "show": ("show", "--item-id", "SKU1"),
    "flags": ("flags",),
    "stats": ("stats",),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`lookalike serve` as its own process, until it answers /health and has recorded its address."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    record = Path(env["LOOKALIKE_DB"] + ".serve.json")
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "lookalike", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, log.read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200 and _recorded_by(
                    record, server.pid
                ):
                    break
            assert time.monotonic() < deadline, "lookalike serve did not start: " + log.read_text()
            time.sleep(0.2)
        yield url, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(30)


def _recorded_by(record: Path, pid: int) -> bool:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return bool(json.loads(record.read_text())["pid"] == pid)
    return False


@pytest.fixture()
def env(tmp_path: Path, tiny_model: tuple[Path, Path]) -> dict[str, str]:
    config, checkpoint = tiny_model
    return {
        **os.environ,
        "LOOKALIKE_MODEL": str(config),
        "LOOKALIKE_PRETRAINED": str(checkpoint),
        "LOOKALIKE_RUNTIME": "torch",
        "LOOKALIKE_DB": str(tmp_path / "held.db"),
        "LOOKALIKE_API_KEY": KEY,
        "LOOKALIKE_INDEX_ROOTS": str(tmp_path / "roots"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }


def _collection(tmp_path: Path, env: dict[str, str]) -> list[Path]:
    """Six pictures (two of them one catalog item, SKU1), each flagged by a match-everything policy."""
    photos = write_images(tmp_path / "photos", 6)
    catalog = tmp_path / "catalog.csv"
    with catalog.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "item_id", "name", "source", "created_at"])
        for i, photo in enumerate(photos):  # a catalog's images are relative to it
            item = "SKU1" if i < 2 else f"SKU{i}"
            writer.writerow([f"photos/{photo.name}", item, f"thing {i}", "shop", f"2024-05-0{i + 1}"])
    labels = tmp_path / "everything.toml"  # threshold -1: every picture matches, whatever the model
    labels.write_text('[labels.anything]\nprompts = ["a picture"]\nthreshold = -1\n', encoding="utf-8")
    assert lookalike(env, "policy", "add", str(labels), "--name", "all").returncode == 0
    indexed = lookalike(env, "index", str(catalog))
    assert indexed.returncode == 0, indexed.stderr
    return photos


def _api(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60)


def _one_json_line(text: str) -> Any:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return json.loads(lines[0])


def _without_took(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "took_ms"}


def test_the_command_line_goes_through_the_server_holding_the_database(
    tmp_path: Path, env: dict[str, str]
) -> None:
    photos = _collection(tmp_path, env)
    (tmp_path / "roots").mkdir()
    extra = write_images(tmp_path / "roots", 1, start=40)[0]
    with serving(env, tmp_path / "serve.log") as (url, server), _api(url) as api:
        via = f"via lookalike serve at {url}"

        stats = lookalike(env, "stats", "--json")
        assert stats.returncode == 0, stats.stderr
        assert stats.stderr.splitlines() == [via]  # said once, on stderr; stdout holds the JSON alone
        assert _one_json_line(stats.stdout) == {**api.get("/stats").json(), "db": env["LOOKALIKE_DB"]}

        found = lookalike(env, "search", "--text", "red dress", "--k", "4", "--json")
        assert found.returncode == 0 and via in found.stderr, found.stderr
        asked = api.post("/search", json={"text": "red dress", "k": 4}).json()
        assert _without_took(_one_json_line(found.stdout)) == _without_took(asked)
        assert len(asked["hits"]) == 4

        by_image = lookalike(env, "search", "--image", str(photos[3]), "--k", "3", "--json")
        assert by_image.returncode == 0, by_image.stderr
        uploaded = api.post("/search", files={"image": ("q.jpg", photos[3].read_bytes())}, data={"k": "3"})
        assert _without_took(_one_json_line(by_image.stdout)) == _without_took(uploaded.json())
        assert uploaded.json()["hits"][0]["item_id"] == "SKU3"

        first = asked["hits"][0]["id"]
        shown = lookalike(env, "show", str(first), "--json")
        assert _one_json_line(shown.stdout) == [api.get(f"/items/{first}").json()]
        pair = _one_json_line(lookalike(env, "show", "--item-id", "SKU1", "--json").stdout)
        assert pair == api.get("/items", params={"item_id": "SKU1"}).json() and len(pair) == 2
        missing = lookalike(env, "show", "123456789")
        assert missing.returncode == 5 and "123456789" in missing.stderr

        flags = lookalike(env, "flags", "--json")
        listed = _one_json_line(flags.stdout)
        assert listed == api.get("/flags", params={"limit": 100}).json() and listed["total"] == 6
        assert {"flagged_at", "stored", "item"} <= set(listed["flags"][0])
        flag = listed["flags"][0]["id"]
        held = lookalike(env, "claim", "--by", "ana", "--json")
        assert held.returncode == 0 and via in held.stderr, held.stderr
        claimed = _one_json_line(held.stdout)
        assert claimed["id"] == flag and claimed["claim"]["by"] == "ana"
        assert {**claimed, "claim": None} == {**api.get(f"/flags/{flag}").json(), "claim": None}
        taken = lookalike(env, "claim", str(flag), "--by", "bo")
        assert taken.returncode == 6 and "being reviewed by 'ana'" in taken.stderr, taken.stderr
        other = _one_json_line(lookalike(env, "claim", "--by", "bo", "--json").stdout)
        assert other["id"] != flag and other["claim"]["by"] == "bo"
        let_go = lookalike(env, "claim", str(other["id"]), "--by", "bo", "--release")
        assert let_go.returncode == 0 and f"flag {other['id']} released by bo" in let_go.stdout
        decided = lookalike(env, "review", str(flag), "--dismiss", "--note", "fine", "--by", "ana")
        assert decided.returncode == 0 and f"flag {flag} dismissed by ana" in decided.stdout, decided.stderr
        audit = tmp_path / "audit.json"
        written = lookalike(env, "audit", "--out", str(audit))
        assert written.returncode == 0 and "1 audit records written" in written.stdout, written.stderr
        assert json.loads(audit.read_text()) == api.get("/audit", params={"format": "json"}).json()

        exported = lookalike(env, "export", str(tmp_path / "all.parquet"))
        assert exported.returncode == 0 and "exported 6 items" in exported.stdout, exported.stderr
        import pyarrow.parquet as pq

        assert pq.read_table(tmp_path / "all.parquet").num_rows == 6

        doomed = next(hit["id"] for hit in asked["hits"] if hit["item_id"] != "SKU1")
        deleted = lookalike(env, "delete", "--id", str(doomed), "--yes", "--json")
        assert _one_json_line(deleted.stdout) == {"deleted": 1, "ids": [doomed], "purged": False}
        assert api.get(f"/items/{doomed}").status_code == 404
        by_source = lookalike(env, "delete", "--source", "shop", "--yes")
        assert by_source.returncode == 2 and "--id and --item-id" in by_source.stderr

        added = lookalike(env, "index", str(extra), "--source", "late")
        assert added.returncode == 0 and "indexed 1 new images" in added.stdout, added.stderr
        assert "1 flagged for review" in added.stdout  # the match-everything policy's flag
        refused = lookalike(env, "index", str(tmp_path / "photos"))
        assert refused.returncode != 0 and "LOOKALIKE_INDEX_ROOTS" in refused.stderr
        assert api.get("/stats").json()["rows"] == 6

        window = ("--since", "2000-01-01", "--min-sellers", "2", "--threshold", "-1", "--dry-run")
        checked = lookalike(env, "waves", *window, "--json")
        assert checked.returncode == 0 and via in checked.stderr, checked.stderr
        job = api.post(
            "/waves", json={"since": "2000-01-01", "min_sellers": 2, "threshold": -1, "dry_run": True}
        )
        while (state := api.get(f"/jobs/{job.json()['job_id']}").json())["status"] not in ("done", "failed"):
            time.sleep(0.1)
        assert _one_json_line(checked.stdout) == state["result"] and state["result"]["clusters"] == 1
        assert {m["item_id"] for m in state["result"]["waves"][0]["items"]} >= {"SKU1", "SKU3"}

        keyless = lookalike({k: v for k, v in env.items() if k != "LOOKALIKE_API_KEY"}, "stats")
        assert keyless.returncode == 2 and "LOOKALIKE_API_KEY" in keyless.stderr
        other = lookalike(env, "stats", "--collection", "other")
        assert other.returncode == 4 and "serves the collection 'images', not 'other'" in other.stderr
        not_offered = lookalike(env, "import", str(tmp_path / "all.parquet"))
        assert not_offered.returncode == 4, not_offered.stderr
        assert f"in use by `lookalike serve` at {url} (pid {server.pid})" in not_offered.stderr
        assert "this command does not go through the server" in not_offered.stderr
        reversed_window = lookalike(env, "flags", "--since", "2024-05-02", "--until", "2024-05-01")
        assert reversed_window.returncode == 2 and via not in reversed_window.stderr  # checked first

        through = {name: lookalike(env, *args) for name, args in TABLES.items()}
        assert all(via in answer.stderr for answer in through.values())
    assert not Path(env["LOOKALIKE_DB"] + ".serve.json").exists()  # removed at shutdown

    for name, answer in through.items():  # the same output on its own, the server gone
        alone = lookalike(env, *TABLES[name])
        assert alone.returncode == 0 and "via lookalike serve" not in alone.stderr, alone.stderr
        assert alone.stdout == answer.stdout, name


def test_a_stale_record_is_ignored(tmp_path: Path, env: dict[str, str]) -> None:
    write_images(tmp_path / "photos", 2)
    assert lookalike(env, "index", str(tmp_path / "photos")).returncode == 0
    record = Path(env["LOOKALIKE_DB"] + ".serve.json")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": gone.pid, "collection": "images"}))
    ran = lookalike(env, "stats", "--json")  # its process is gone
    assert ran.returncode == 0 and json.loads(ran.stdout)["rows"] == 2 and "via" not in ran.stderr

    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        port = _free_port()  # nothing listens there
        record.write_text(
            json.dumps({"url": f"http://127.0.0.1:{port}", "pid": silent.pid, "collection": "images"})
        )
        ran = lookalike(env, "stats", "--json")  # its process lives, its address does not answer
        assert ran.returncode == 0 and json.loads(ran.stdout)["rows"] == 2 and "via" not in ran.stderr
        record.write_text("{not json")
        assert lookalike(env, "stats").returncode == 0
    finally:
        silent.kill()
        silent.wait()


def test_a_killed_server_leaves_a_stale_record_that_commands_see_through(
    tmp_path: Path, env: dict[str, str]
) -> None:
    write_images(tmp_path / "photos", 3)
    assert lookalike(env, "index", str(tmp_path / "photos")).returncode == 0
    record = Path(env["LOOKALIKE_DB"] + ".serve.json")
    with serving(env, tmp_path / "killed.log") as (url, server):
        assert f"via lookalike serve at {url}" in lookalike(env, "stats").stderr
        os.killpg(server.pid, signal.SIGKILL)  # no shutdown: the record stays behind
        server.wait(30)
    assert json.loads(record.read_text())["pid"] == server.pid
    alone = lookalike(env, "stats", "--json")  # the lock went with the process; the record is stale
    assert alone.returncode == 0 and json.loads(alone.stdout)["rows"] == 3, alone.stderr
    assert "via lookalike serve" not in alone.stderr

    with serving(env, tmp_path / "again.log") as (url, server):  # the next server replaces the record
        assert json.loads(record.read_text())["pid"] == server.pid
        through = lookalike(env, "search", "--text", "red dress", "--k", "2", "--json")
        assert through.returncode == 0 and f"via lookalike serve at {url}" in through.stderr
    assert not record.exists()
