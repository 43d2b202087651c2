"""The local runner: ingest's stages (ingest/pipeline.py) overlapped in threads of this process.

While the model encodes batch n, a thread reads, hashes, decodes and preprocesses batch n+1 (its
reads and decodes spread over ``plan.workers`` threads), and a writer thread stores batch n-1; a
batch's items reach ``on_stored`` only once they are written.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from itertools import islice

from lookalike.embed import Detector, Embedder
from lookalike.ingest.pipeline import (
    Batch,
    Hashes,
    IngestPlan,
    IngestReport,
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
from lookalike.ingest.sources import Record, Skipped
from lookalike.ingest.sync import Marks, Swept, sweep
from lookalike.store import Item, Store


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
    sinks = sinks or Sinks()
    report = IngestReport()
    started = time.perf_counter()
    seen: set[int] = set()
    marks = Marks()
    chunks = batches(entries, plan.chunk_size)
    with (
        ThreadPoolExecutor(max_workers=plan.workers, thread_name_prefix="lookalike-io") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-prepare") as stage,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-insert") as writer,
    ):

        def decoded(entry: Read) -> list[Unit] | Skipped:
            units = decode(entry, plan, embedder.prepare_image, embedder.input_size, detector)
            if isinstance(units, Skipped):
                return units
            return keep_download(entry, plan) or units

        def prepare(chunk: list[Record | Skipped]) -> Batch:
            records = [entry for entry in chunk if isinstance(entry, Record)]
            reads, batch = admit(chunk, list(pool.map(partial(read, fetch=plan.fetch), records)), seen, marks)
            held = known(store, reads, plan)
            batch.already_indexed += sum(1 for r in reads if r.id in held.stored)
            batch.updates = list(held.updates)
            todo = fresh(reads, held)
            # Each unit carries its read, so a failed decode drops only its own picture.
            outcomes = list(zip(todo, pool.map(decoded, todo), strict=True))
            new = uploads(outcomes) if sinks.screen is not None else []
            settle(outcomes, sinks.screen(new) if new and sinks.screen else {}, marks, batch)
            return batch

        def stored(written: tuple[list[Item], Hashes]) -> None:
            if sinks.on_stored is not None and (written[0] or written[1]):
                sinks.on_stored(*written)

        upcoming = [stage.submit(prepare, chunk) for chunk in islice(chunks, 1)]
        inserting: Future[int] | None = None
        inserted: tuple[list[Item], Hashes] = ([], {})
        while upcoming:
            batch = upcoming.pop().result()
            following = next(chunks, None)
            if following is not None:
                upcoming.append(stage.submit(prepare, following))
            vectors = embed(batch.units, embedder.embed_prepared)
            new_items = items(batch.units, vectors, plan)
            unusable(batch.units, vectors, marks, batch)
            if inserting is not None:
                inserting.result()
                stored(inserted)
            writes = new_items + batch.updates
            inserting = writer.submit(store.insert, writes) if writes else None
            inserted = (new_items, chunk_hashes(batch.units))
            _count(report, batch, new_items)
            report.elapsed_s = time.perf_counter() - started
            if progress:
                progress(batch.size)
        if inserting is not None:
            inserting.result()
            stored(inserted)
    swept = sweep(store, plan.scope, marks) if plan.scope is not None else Swept()
    report.replaced, report.deleted, report.kept = swept.replaced, swept.deleted, swept.kept
    if report.indexed or report.crops or report.updated or swept.ids:
        store.flush()
    if swept.ids and sinks.on_deleted is not None:
        sinks.on_deleted(list(swept.ids))
    report.elapsed_s = time.perf_counter() - started
    return report


def _count(report: IngestReport, batch: Batch, new_items: list[Item]) -> None:
    report.updated += len(batch.updates)
    report.crops += sum(1 for item in new_items if item.box)
    report.indexed += sum(1 for item in new_items if not item.box)
    report.seen += batch.size
    report.already_indexed += batch.already_indexed
    report.blocked += batch.blocked
    report.skipped.extend(batch.skipped)
