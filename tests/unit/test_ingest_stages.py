"""Ingest's stages are functions of their inputs: another runner, in other processes, gets what the local one gets."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import numpy as np
import pytest

from lookalike.ingest import IngestPlan, open_listing
from lookalike.ingest.pipeline import (
    Read,
    Unit,
    admit,
    batches,
    decode,
    embed,
    fresh,
    items,
    known,
    read,
    settle,
    unusable,
)
from lookalike.ingest.sources import Record, Skipped
from lookalike.ingest.sync import Marks, Scope
from lookalike.usecases import local_runner
from tests.helpers import FakeEmbedder, write_images
from tests.unit.test_sync_unread import MemoryStore


def _read_elsewhere(record: Record, plan: IngestPlan) -> Read | Skipped:
    return read(record, plan.fetch)


def _decode_elsewhere(entry: Read, plan: IngestPlan) -> list[Unit] | Skipped:
    # A worker builds its own embedder's preprocessing: nothing is shared with the driver but the plan.
    return decode(entry, plan, FakeEmbedder().prepare_image, None)


def _distributed(plan: IngestPlan, entries: list[Record | Skipped], store: MemoryStore) -> list[Skipped]:
    """The order pipeline.py's docstring gives a distributed runner: reads and decodes in other processes."""
    seen: set[int] = set()
    marks = Marks()
    skipped: list[Skipped] = []
    embedder = FakeEmbedder()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as workers:
        for chunk in batches(entries, plan.chunk_size):
            records = [entry for entry in chunk if isinstance(entry, Record)]
            results = list(workers.map(_read_elsewhere, records, [plan] * len(records)))
            reads, batch = admit(chunk, results, seen, marks)
            todo = fresh(reads, known(store, reads, plan))
            outcomes = list(zip(todo, workers.map(_decode_elsewhere, todo, [plan] * len(todo)), strict=True))
            settle(outcomes, {}, marks, batch)
            vectors = embed(batch.units, embedder.embed_prepared)
            unusable(batch.units, vectors, marks, batch)
            store.insert(items(batch.units, vectors, plan))
            skipped += batch.skipped
    return skipped


def test_stages_run_in_other_processes_store_what_the_local_runner_stores(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    paths = write_images(folder, 9)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "again.jpg").write_bytes(paths[0].read_bytes())  # the same bytes under another name
    entries = list(open_listing(folder, "shop"))
    plan = IngestPlan(chunk_size=4, workers=2)

    local = MemoryStore()
    report = local_runner.run(plan, entries, FakeEmbedder(), local)
    elsewhere = MemoryStore()
    skipped = _distributed(plan, entries, elsewhere)

    assert report.indexed == 10 and [Path(s.uri).name for s in report.skipped] == ["broken.jpg"]
    assert sorted(local.rows) == sorted(elsewhere.rows)
    for item_id, item in local.rows.items():
        other = elsewhere.rows[item_id]
        assert (other.sha256, other.uri, other.created_at, other.width) == (
            item.sha256,
            item.uri,
            item.created_at,
            item.width,
        )
        np.testing.assert_allclose(other.vector, item.vector, rtol=1e-6)
    assert [(s.uri, s.reason) for s in skipped] == [(s.uri, s.reason) for s in report.skipped]


def test_a_run_again_skips_what_is_stored_and_the_plan_stays_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_images(folder, 5)
    plan = IngestPlan(chunk_size=2, workers=1, scope=Scope(set(), catalog=True))
    store = MemoryStore()
    embedder = FakeEmbedder()
    first = local_runner.run(plan, open_listing(folder, "shop"), embedder, store)
    calls = embedder.image_calls
    second = local_runner.run(plan, open_listing(folder, "shop"), embedder, store)
    assert (first.indexed, second.indexed, second.already_indexed, second.deleted) == (5, 0, 5, 0)
    assert embedder.image_calls == calls  # nothing embedded twice
    # The sweep widened its own copy of a catalog's scope, not the plan's.
    assert plan.scope is not None and plan.scope.sources == set()
    copy = pickle.loads(pickle.dumps(plan))  # as a runner sends it to other machines
    assert replace(copy, fetch=plan.fetch) == plan
    assert copy.fetch.__self__ == plan.fetch.__self__  # type: ignore[attr-defined]  # the same FetchPolicy
    with pytest.raises(FrozenInstanceError):
        plan.workers = 8  # type: ignore[misc]


def test_a_plan_that_detects_without_a_detector_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="detector"):
        local_runner.run(IngestPlan(detect=True), [], FakeEmbedder(), MemoryStore())
