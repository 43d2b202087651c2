"""records → read → hash → skip stored → decode → embed → insert, never aborting on one bad file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

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
        report = IngestReport()
        started = time.perf_counter()
        seen_ids: set[int] = set()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="lookalike-io") as pool:
            for chunk in _chunks(records, self.chunk_size):
                self._index_chunk(chunk, pool, seen_ids, report)
                report.seen += len(chunk)
                report.elapsed_s = time.perf_counter() - started
                if progress:
                    progress(len(chunk))
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

    def _decode(self, read: _Read) -> DecodedImage | Skipped:
        try:
            return decode_image(read.data, max_pixels=self.max_pixels)
        except ImageError as exc:
            return Skipped(read.record.uri, str(exc))

    def _index_chunk(
        self,
        chunk: list[Record | Skipped],
        pool: ThreadPoolExecutor,
        seen_ids: set[int],
        report: IngestReport,
    ) -> None:
        report.skipped.extend(r for r in chunk if isinstance(r, Skipped))
        records = [r for r in chunk if isinstance(r, Record)]
        reads: list[_Read] = []
        for result in pool.map(self._read, records):
            if isinstance(result, Skipped):
                report.skipped.append(result)
            elif result.id in seen_ids:
                report.already_indexed += 1  # listed twice in this run
            else:
                seen_ids.add(result.id)
                reads.append(result)
        stored = self.store.existing_ids([r.id for r in reads]) if self.store.exists() else set()
        report.already_indexed += sum(1 for r in reads if r.id in stored)
        fresh = [r for r in reads if r.id not in stored]
        # Paths and images stay aligned: a failed decode drops its read from both lists.
        decoded: list[tuple[_Read, DecodedImage]] = []
        for read, image in zip(fresh, pool.map(self._decode, fresh), strict=True):
            if isinstance(image, Skipped):
                report.skipped.append(image)
            else:
                decoded.append((read, image))
        if not decoded:
            return
        vectors = self.embedder.embed_images([image.image for _, image in decoded])
        items = [
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
            for (read, image), vector in zip(decoded, vectors, strict=True)
        ]
        report.indexed += self.store.insert(items)
