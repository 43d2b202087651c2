"""The local runner: ingest's stages (ingest/pipeline.py) overlapped in threads of this process.

While the model encodes batch n, a thread reads, hashes, decodes and preprocesses batch n+1 (its
reads and decodes spread over ``plan.workers`` threads), and a writer thread stores batch n-1; a
batch's items reach ``on_stored`` only once they are written.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice

from lookalike.embed import Detector, Embedder
from lookalike.ingest.pipeline import (
    Batch,
    Hashes,
    IngestPlan,
    Progress,
    Read,
    Sinks,
    Unit,
    admit,
    batches,
    chunk_hashes,
    decode,
    embed,
    fresh,
    items,
    keep_download,
    known,
    read,
    settle,
    unusable,
    uploads,
)
from lookalike.ingest.report import IngestReport
from lookalike.ingest.sources import Record, Skipped
from lookalike.ingest.sync import Marks, Swept, sweep
from lookalike.store import Item, Store


@dataclass
class _Run:
    """One run's inputs and what it remembers (the driver's state, passed to the stages that use it)."""

    plan: IngestPlan
    embedder: Embedder
    store: Store
    detector: Detector | None
    sinks: Sinks
    pool: ThreadPoolExecutor  # reads and decodes, plan.workers at once
    seen: set[int] = field(default_factory=set)
    marks: Marks = field(default_factory=Marks)

    def decoded(self, entry: Read) -> list[Unit] | Skipped:
        units = decode(entry, self.plan, self.embedder.prepare_image, self.embedder.input_size, self.detector)
        if isinstance(units, Skipped):
            return units
        return keep_download(entry, self.plan) or units

    def prepare(self, chunk: list[Record | Skipped]) -> Batch:
        """Read, hash, select, decode and screen one batch (pipeline.py, steps 1 to 4)."""
        records = [entry for entry in chunk if isinstance(entry, Record)]
        results = list(self.pool.map(partial(read, fetch=self.plan.fetch), records))
        reads, batch = admit(chunk, results, self.seen, self.marks)
        held = known(self.store, reads, self.plan)
        batch.already_indexed += sum(1 for r in reads if r.id in held.stored)
        batch.updates = list(held.updates)
        todo = fresh(reads, held)
        # Each unit carries its read, so a failed decode drops only its own picture.
        outcomes = list(zip(todo, self.pool.map(self.decoded, todo), strict=True))
        screen = self.sinks.screen
        new = uploads(outcomes) if screen is not None else []
        settle(outcomes, screen(new) if new and screen is not None else {}, self.marks, batch)
        return batch

    def stored(self, written: tuple[list[Item], Hashes]) -> None:
        if self.sinks.on_stored is not None and (written[0] or written[1]):
            self.sinks.on_stored(*written)


def run(
    plan: IngestPlan,
    entries: Iterable[Record | Skipped],
    embedder: Embedder,
    store: Store,
    *,
    detector: Detector | None = None,
    sinks: Sinks | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Index every listed entry by ``plan``; idempotent by content hash, hence resumable.

    Raises:
        ValueError: the plan detects and no detector is given.
    """
    if plan.detect and detector is None:
        raise ValueError("a plan that detects needs a detector")
    report = IngestReport()
    started = time.perf_counter()
    chunks = batches(entries, plan.chunk_size)
    with (
        ThreadPoolExecutor(max_workers=plan.workers, thread_name_prefix="lookalike-io") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-prepare") as stage,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-insert") as writer,
    ):
        state = _Run(plan, embedder, store, detector, sinks or Sinks(), pool)
        upcoming = [stage.submit(state.prepare, chunk) for chunk in islice(chunks, 1)]
        inserting: Future[int] | None = None
        inserted: tuple[list[Item], Hashes] = ([], {})
        while upcoming:
            batch = upcoming.pop().result()
            following = next(chunks, None)
            if following is not None:
                upcoming.append(stage.submit(state.prepare, following))
            vectors = embed(batch.units, embedder.embed_prepared)
            new_items = items(batch.units, vectors, plan)
            unusable(batch.units, vectors, state.marks, batch)
            if inserting is not None:
                inserting.result()
                state.stored(inserted)
            writes = new_items + batch.updates
            inserting = writer.submit(store.insert, writes) if writes else None
            inserted = (new_items, chunk_hashes(batch.units))
            _count(report, batch, new_items)
            report.elapsed_s = time.perf_counter() - started
            if progress:
                progress(batch.size)
        if inserting is not None:
            inserting.result()
            state.stored(inserted)
    _finish(state, report)
    report.elapsed_s = time.perf_counter() - started
    return report


def _finish(state: _Run, report: IngestReport) -> None:
    """Step 7: the sweep (--sync), one flush, and the flags of what the sweep deleted."""
    swept = sweep(state.store, state.plan.scope, state.marks) if state.plan.scope is not None else Swept()
    report.replaced, report.deleted, report.kept = swept.replaced, swept.deleted, swept.kept
    if report.indexed or report.crops or report.updated or swept.ids:
        state.store.flush()
    if swept.ids and state.sinks.on_deleted is not None:
        state.sinks.on_deleted(list(swept.ids))


def _count(report: IngestReport, batch: Batch, new_items: list[Item]) -> None:
    report.updated += len(batch.updates)
    report.crops += sum(1 for item in new_items if item.box)
    report.indexed += sum(1 for item in new_items if not item.box)
    report.seen += batch.size
    report.already_indexed += batch.already_indexed
    report.blocked += batch.blocked
    report.skipped.extend(batch.skipped)
