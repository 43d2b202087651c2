"""Searches and writes together through the real server: one store per database, so no search or job
ever meets "in use by another process", and no answer leaves its filter or shows what was removed.

Real sockets (uvicorn in a thread), the tiny real model, a real Milvus Lite database.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.store import LiteStore
from lookalike.store.liteprocess import holders, lock_holder
from lookalike.usecases import Context, Query, ingest
from lookalike.usecases import search as searching
from tests.helpers import write_images
from tests.serving import serving

CLIENTS = 6
JAN_2023 = 1_673_000_000  # mid-January 2023: the archive's month, dropped while searches run
FILTERS: list[list[str] | None] = [
    ["product"],
    ["archive"],
    ["new"],
    ["product", "new"],
    ["archive", "new"],
    None,
]
TEXTS = ["red dress", "blue shoe", "striped top", "a dog", "萨摩耶", "green bag"]


@dataclass
class Answer:
    started: float
    status: int
    sources: list[str] | None
    hits: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def _context(tmp_path: Path, tiny_model: tuple[Path, Path]) -> Context:
    config, checkpoint = tiny_model
    settings = load_settings(
        db=str(tmp_path / "busy.db"),
        model=str(config),
        pretrained=str(checkpoint),
        runtime="torch",  # no runtime probe: the test times the store, not the model
        index_roots=str(tmp_path / "roots"),
        workers=2,
    )
    return Context(settings)


def _seed(ctx: Context, tmp_path: Path) -> list[int]:
    """Index 12 product and 6 archive pictures, as `lookalike index` would; returns the product ids."""
    write_images(tmp_path / "product", 12)
    archive = write_images(tmp_path / "archive", 6, start=50)
    for path in archive:
        os.utime(path, (JAN_2023, JAN_2023))
    write_images(tmp_path / "roots" / "new", 10, start=100)  # indexed through the API
    try:
        ingest.index(ctx, str(tmp_path / "product"), source="product")
        ingest.index(ctx, str(tmp_path / "archive"), source="archive")
        found = searching.search(ctx, Query(text="x", k=50, sources=("product",)))
        return [hit.item.id for hit in found.hits]
    finally:
        ctx.close()


def _searcher(base: str, seed: int, stop: threading.Event, answers: list[Answer]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            sources = rng.choice(FILTERS)
            body: dict[str, Any] = {"text": rng.choice(TEXTS), "k": 10}
            if sources is not None:
                body["sources"] = sources
            started = time.monotonic()
            try:
                response = client.post("/search", json=body)
            except httpx.HTTPError as exc:
                answers.append(Answer(started, 0, sources, error=repr(exc)))
                continue
            answer = Answer(started, response.status_code, sources)
            if response.status_code == 200:
                answer.hits = response.json()["hits"]
            else:
                answer.error = response.text[:300]
            answers.append(answer)


def _job(client: httpx.Client, job_id: str, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {seconds} s")


def test_searches_never_fail_or_leave_their_filter_while_the_api_indexes_deletes_drops_erases_and_compacts(
    tmp_path: Path, tiny_model: tuple[Path, Path]
) -> None:
    began = time.monotonic()
    products = _seed(_context(tmp_path, tiny_model), tmp_path)
    deleted, erased, hidden = products[0], products[1], products[2]
    ctx = _context(tmp_path, tiny_model)  # the server's: nothing opened yet when the clients start
    key = (str((tmp_path / "busy.db").resolve()), "images")
    answers: list[Answer] = []
    stop = threading.Event()
    events: dict[str, float] = {}
    with serving(create_app(ctx)) as base, httpx.Client(base_url=base, timeout=60) as writer:
        threads = [
            threading.Thread(target=_searcher, args=(base, seed, stop, answers), daemon=True)
            for seed in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # every client is searching (the first ones opened the store) before the first write
        try:
            submitted = writer.post(
                "/index", json={"inputs": [str(tmp_path / "roots" / "new")], "source": "new"}
            )
            assert submitted.status_code == 202, submitted.text
            job = _job(writer, submitted.json()["job_id"])
            events["indexed"] = time.monotonic()
            time.sleep(0.3)
            gone = writer.delete(f"/items/{deleted}")
            assert gone.status_code == 200, gone.text
            events["deleted"] = time.monotonic()
            time.sleep(0.3)
            dropped = writer.delete("/partitions", params={"before": "2023-06-01"})
            assert dropped.status_code == 200, dropped.text
            assert dropped.json() == {"dropped": ["m2023_01"], "items": 6}
            events["dropped"] = time.monotonic()
            time.sleep(0.3)
            purged = writer.delete(f"/items/{erased}", params={"purge": "true"})
            assert purged.status_code == 200, purged.text
            events["erased"] = time.monotonic()
            time.sleep(0.3)
            assert writer.delete(f"/items/{hidden}").status_code == 200  # deleted, its bytes left for:
            compacted = writer.post("/compact")
            assert compacted.status_code == 200, compacted.text
            assert compacted.json()["partitions_rewritten"] >= 1  # the deleted item's month
            time.sleep(0.5)  # searches after the last write
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        final = writer.get("/stats").json()
    took = time.monotonic() - began

    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} searches failed: {failed[:3]}"
    assert job["status"] == "done" and job["indexed"] == 10 and job["error"] is None, job
    for answer in answers:
        ids = [hit["id"] for hit in answer.hits]
        assert len(set(ids)) == len(ids)
        if answer.sources is not None:
            assert all(hit["source"] in answer.sources for hit in answer.hits), (answer.sources, answer.hits)
        if answer.started > events["deleted"]:
            assert deleted not in ids
        if answer.started > events["erased"]:
            assert erased not in ids
        if answer.started > events["dropped"]:
            assert all(hit["source"] != "archive" for hit in answer.hits)
    after = [a for a in answers if a.started > events["indexed"] and a.sources == ["new"]]
    assert after and all(len(a.hits) == 10 for a in after)  # the job's items are searchable at once
    assert final["rows"] == 12 - 3 + 10
    # The server's close was the last hold: the database is free for another process.
    assert holders(key) == 0 and lock_holder(tmp_path / "busy.db") is None
    print(f"{len(answers)} searches by {CLIENTS} clients, 0 failed, 1 index job done, {took:.1f} s in all")
    assert len(answers) >= 6 * CLIENTS and took < 60


def test_every_opener_of_a_lite_collection_shares_one_store(tmp_path: Path) -> None:
    from lookalike.store import open_store

    path = str(tmp_path / "one.db")
    first, second = open_store(path, "images"), open_store(str(tmp_path / "." / "one.db"), "images")
    other = open_store(path, "other")  # another collection of the database: its own store
    assert first is second and isinstance(first, LiteStore) and other is not first
    first.create(4)
    other.create(4)
    first.close()
    assert second.exists() and lock_holder(tmp_path / "one.db") == ""  # still held, by this process
    second.close()
    assert other.exists()  # Milvus Lite stays while a store of the database is open
    other.close()
    assert lock_holder(tmp_path / "one.db") is None  # the last holder let go of Milvus Lite too
    again = open_store(path, "images")
    assert again is not first and again.exists()  # closed for good: a later opener gets a new one
    again.close()
