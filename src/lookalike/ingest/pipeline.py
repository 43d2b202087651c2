"""records → read → hash → skip stored → decode → embed → insert, never aborting on one bad file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from lookalike.embed import Embedder
from lookalike.errors import ImageError
from lookalike.ingest.decode import DecodedImage, decode_image
from lookalike.ingest.fetch import Fetched, fetch
from lookalike.ingest.ids import content_hash, stable_id
from lookalike.ingest.sources import Record, Skipped
from lookalike.store import Item, MilvusStore

Progress = Callable[[int], None]


@dataclass
class IngestReport:
    """What an ingest did: counts, every skipped input with its reason, and the time taken."""

    seen: int = 0
    indexed: int = 0
    already_indexed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.indexed / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class _Read:
    record: Record
    id: int
    sha256: str
    created_at: int
    data: bytes


@dataclass
class _Prepared:
    """A chunk ready for the encoder: model inputs for its new images, and what was left out."""

    size: int
    decoded: list[tuple[_Read, DecodedImage, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    already_indexed: int = 0


def _chunks(items: Iterable[Record | Skipped], size: int) -> Iterator[list[Record | Skipped]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Ingestor:
    """Indexes Records into a store with an embedder; idempotent by content hash, hence resumable."""

    def __init__(
        self,
        embedder: Embedder,
        store: MilvusStore,
        *,
        chunk_size: int = 256,
        workers: int = 4,
        max_pixels: int = 100_000_000,
        max_bytes: int = 50_000_000,
        timeout_s: float = 20.0,
        fetcher: Callable[[str], Fetched] | None = None,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.chunk_size = chunk_size
        self.workers = workers
        self.max_pixels = max_pixels
        self._fetch = fetcher or (lambda uri: fetch(uri, max_bytes=max_bytes, timeout_s=timeout_s))

    def run(self, records: Iterable[Record | Skipped], progress: Progress | None = None) -> IngestReport:
        """Index every record; three stages overlap so that the encoder never waits.

        While the model encodes chunk n, the workers read, hash, decode and preprocess
        chunk n+1, and a writer thread inserts chunk n-1.
        """
        report = IngestReport()
        started = time.perf_counter()
        seen_ids: set[int] = set()
        chunks = _chunks(records, self.chunk_size)
        with (
            ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="lookalike-io") as pool,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-prepare") as stage,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-insert") as writer,
        ):

            def prepare(chunk: list[Record | Skipped]) -> _Prepared:
                return self._prepare(chunk, pool, seen_ids)

            upcoming = [stage.submit(prepare, chunk) for chunk in islice(chunks, 1)]
            inserting: Future[int] | None = None
            while upcoming:
                prepared = upcoming.pop().result()
                following = next(chunks, None)
                if following is not None:
                    upcoming.append(stage.submit(prepare, following))
                items = self._embed(prepared)
                if inserting is not None:
                    report.indexed += inserting.result()
                inserting = writer.submit(self.store.insert, items) if items else None
                report.seen += prepared.size
                report.already_indexed += prepared.already_indexed
                report.skipped.extend(prepared.skipped)
                report.elapsed_s = time.perf_counter() - started
                if progress:
                    progress(prepared.size)
            if inserting is not None:
                report.indexed += inserting.result()
        if report.indexed:
            self.store.flush()
        report.elapsed_s = time.perf_counter() - started
        return report

    def _read(self, record: Record) -> _Read | Skipped:
        try:
            fetched = self._fetch(record.uri)
        except ImageError as exc:
            return Skipped(record.uri, str(exc))
        sha = content_hash(fetched.data)
        created_at = record.created_at
        if created_at is None:
            created_at = fetched.modified_at if fetched.modified_at is not None else int(time.time())
        return _Read(record, stable_id(record.source, record.key, sha), sha, created_at, fetched.data)

    def _decode(self, read: _Read) -> tuple[DecodedImage, Any] | Skipped:
        try:
            decoded = decode_image(read.data, max_pixels=self.max_pixels, draft=self.embedder.input_size)
        except ImageError as exc:
            return Skipped(read.record.uri, str(exc))
        return decoded, self.embedder.prepare_image(decoded.image)

    def _prepare(
        self, chunk: list[Record | Skipped], pool: ThreadPoolExecutor, seen_ids: set[int]
    ) -> _Prepared:
        prepared = _Prepared(size=len(chunk))
        prepared.skipped.extend(r for r in chunk if isinstance(r, Skipped))
        records = [r for r in chunk if isinstance(r, Record)]
        reads: list[_Read] = []
        for result in pool.map(self._read, records):
            if isinstance(result, Skipped):
                prepared.skipped.append(result)
            elif result.id in seen_ids:
                prepared.already_indexed += 1  # listed twice in this run
            else:
                seen_ids.add(result.id)
                reads.append(result)
        stored = self.store.existing_ids([r.id for r in reads]) if self.store.exists() else set()
        prepared.already_indexed += sum(1 for r in reads if r.id in stored)
        fresh = [r for r in reads if r.id not in stored]
        # Reads and images stay aligned: a failed decode drops its read from both lists.
        for read, outcome in zip(fresh, pool.map(self._decode, fresh), strict=True):
            if isinstance(outcome, Skipped):
                prepared.skipped.append(outcome)
            else:
                prepared.decoded.append((read, outcome[0], outcome[1]))
        return prepared

    def _embed(self, prepared: _Prepared) -> list[Item]:
        if not prepared.decoded:
            return []
        vectors = self.embedder.embed_prepared([inputs for _, _, inputs in prepared.decoded])
        return [
            Item(
                id=read.id,
                sha256=read.sha256,
                item_id=read.record.item_id,
                name=read.record.name,
                source=read.record.source,
                created_at=read.created_at,
                uri=read.record.uri,
                width=image.width,
                height=image.height,
                vector=vector,
            )
            for (read, image, _), vector in zip(prepared.decoded, vectors, strict=True)
        ]
