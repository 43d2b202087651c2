"""records → read → hash → skip stored → decode → embed → insert, never aborting on one bad file."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

import numpy as np

from lookalike.embed import Detection, Detector, Embedder
from lookalike.embed.detect import crop
from lookalike.errors import ConfigError, ImageError
from lookalike.ingest.decode import decode_image
from lookalike.ingest.fetch import Fetched
from lookalike.ingest.ids import content_hash, stable_id
from lookalike.ingest.phash import pdq
from lookalike.ingest.policy import FetchPolicy, is_url
from lookalike.ingest.sources import Record, Skipped
from lookalike.ingest.sync import Marks, Scope, Swept, sweep, updated_metadata
from lookalike.store import Item, Store
from lookalike.store.models import WHOLE_IMAGE_LABEL, box_text
from lookalike.store.partitions import check_time

Progress = Callable[[int], None]
Hashes = dict[int, tuple[str, int]]  # item id -> (PDQ hash, quality)
Stored = Callable[[list[Item], Hashes], None]
Deleted = Callable[[list[int]], object]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    """A new picture, decoded and hashed, before it is embedded or stored: what a screen judges."""

    id: int
    sha256: str
    pdq: tuple[str, int] | None  # PDQ hash and quality, when hashes are kept
    source: str
    item_id: str
    uri: str


Screen = Callable[[list[Upload]], dict[int, str]]
"""Returns, by id, the uploads refused and why (the hash banks' block list); the rest are stored."""


@dataclass
class IngestReport:
    """What an ingest did: counts, every skipped input with its reason, and the time taken.

    The counts add up (sync.py says how ``replaced`` pairs new pictures with swept ones):
    every entry listed is new (``added`` + ``replaced`` = ``indexed``), was stored already
    (``updated`` + ``left`` = ``already_indexed``; an entry listed twice counts as left) or
    was skipped, so ``seen`` = ``indexed`` + ``already_indexed`` + ``len(skipped)``. With
    ``--sync``, the scope's stored pictures go from N to N + ``added`` - ``deleted``, and
    ``kept`` of them stayed only because a record of theirs could not be read this time.
    No count is ever negative.
    """

    seen: int = 0
    indexed: int = 0
    already_indexed: int = 0
    blocked: int = 0  # refused by a hash bank (a take-down's block list); counted among the skipped too
    crops: int = 0  # detected objects stored as their own items (--detect)
    updated: int = 0  # --sync: name or date changed, image the same (no re-embedding)
    replaced: int = 0  # --sync: a new image for a listed item, in place of an old one deleted
    deleted: int = 0  # --sync: stored pictures gone with nothing in their place (no longer listed)
    kept: int = 0  # --sync: stored pictures kept because their record could not be read this time
    skipped: list[Skipped] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # hash banks' floods noticed during the run
    elapsed_s: float = 0.0

    @property
    def added(self) -> int:
        return self.indexed - self.replaced

    @property
    def left(self) -> int:
        return self.already_indexed - self.updated

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
    whole: bool = True  # False: the picture is stored (indexed before without detection); add its crops
    dated: bool = True  # False: no date was given or served, created_at is the time of this run


@dataclass(frozen=True)
class _Unit:
    """One thing to embed: a whole picture, or one detected crop of it."""

    read: _Read
    width: int
    height: int
    inputs: Any
    crop_index: int = 0
    detection: Detection | None = None
    pdq: tuple[str, int] | None = None  # of the whole picture, when asked


@dataclass
class _Prepared:
    """A chunk ready for the encoder: model inputs for its new images and crops, and what was left out."""

    size: int
    decoded: list[_Unit] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    already_indexed: int = 0
    blocked: int = 0
    updates: list[Item] = field(default_factory=list)


def _chunks(items: Iterable[Record | Skipped], size: int) -> Iterator[list[Record | Skipped]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Ingestor:
    """Indexes Records into a store with an embedder; idempotent by content hash, hence resumable."""

    def __init__(
        self,
        embedder: Embedder,
        store: Store,
        *,
        chunk_size: int = 256,
        workers: int = 4,
        max_pixels: int = 100_000_000,
        max_bytes: int = 50_000_000,
        timeout_s: float = 20.0,
        fetcher: Callable[[str], Fetched] | None = None,
        detector: Detector | None = None,
        keep: Callable[[str, bytes], None] | None = None,
        scope: Scope | None = None,
        on_stored: Stored | None = None,
        perceptual_hashes: bool = False,
        on_deleted: Deleted | None = None,
        screen: Screen | None = None,
    ) -> None:
        self.embedder = embedder
        self.detector = detector
        self.store = store
        self.chunk_size = chunk_size
        self.workers = workers
        self.max_pixels = max_pixels
        self.scope = scope  # --sync: mirror the listing within this scope
        self.marks = Marks()
        self._fetch = fetcher or FetchPolicy(max_bytes=max_bytes, timeout_s=timeout_s).read
        # Called with (sha256, bytes) for each new URL image, so that it is never fetched again.
        self._keep = keep
        # Called with each chunk's new items (vectors included) once they are stored, and the
        # PDQ hashes of its whole pictures: policies score them without a second embedding.
        self._on_stored = on_stored
        self._hashes = perceptual_hashes
        # --sync: called with the ids a sweep deleted, once the deletion is flushed (their flags close).
        self._on_deleted = on_deleted
        # Judges each chunk's new pictures before they are embedded: a refused one is skipped with its reason.
        self._screen = screen

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
            inserted: tuple[list[Item], Hashes] = ([], {})
            while upcoming:
                prepared = upcoming.pop().result()
                following = next(chunks, None)
                if following is not None:
                    upcoming.append(stage.submit(prepare, following))
                items = self._embed(prepared)
                if inserting is not None:
                    inserting.result()
                    self._stored(*inserted)
                writes = items + prepared.updates
                inserting = writer.submit(self.store.insert, writes) if writes else None
                inserted = (items, self._chunk_hashes(prepared))
                report.updated += len(prepared.updates)
                report.crops += sum(1 for item in items if item.box)
                report.indexed += sum(1 for item in items if not item.box)
                report.seen += prepared.size
                report.already_indexed += prepared.already_indexed
                report.blocked += prepared.blocked
                report.skipped.extend(prepared.skipped)
                report.elapsed_s = time.perf_counter() - started
                if progress:
                    progress(prepared.size)
            if inserting is not None:
                inserting.result()
                self._stored(*inserted)
        swept = sweep(self.store, self.scope, self.marks) if self.scope is not None else Swept()
        report.replaced, report.deleted, report.kept = swept.replaced, swept.deleted, swept.kept
        if report.indexed or report.crops or report.updated or swept.ids:
            self.store.flush()
        if swept.ids and self._on_deleted is not None:
            self._on_deleted(list(swept.ids))
        report.elapsed_s = time.perf_counter() - started
        return report

    def _stored(self, items: list[Item], hashes: Hashes) -> None:
        if self._on_stored is not None and (items or hashes):
            self._on_stored(items, hashes)

    @staticmethod
    def _chunk_hashes(prepared: _Prepared) -> Hashes:
        return {u.read.id: u.pdq for u in prepared.decoded if u.pdq is not None and u.detection is None}

    def _read(self, record: Record) -> _Read | Skipped:
        try:
            fetched = self._fetch(record.uri)
        except ImageError as exc:
            return Skipped(record.shown, str(exc))
        except Exception as exc:  # one input must never end the run; the log keeps the traceback
            log.exception("reading %s failed", record.uri)
            return Skipped(record.shown, f"unexpected error: {type(exc).__name__}: {exc}")
        sha = content_hash(fetched.data)
        created_at = record.created_at
        if created_at is None:
            created_at = fetched.modified_at if fetched.modified_at is not None else int(time.time())
        try:
            check_time(created_at)  # a file modified "in 9999" or a server's odd Last-Modified
        except ConfigError as exc:
            return Skipped(record.shown, str(exc))
        dated = record.created_at is not None or fetched.modified_at is not None
        item_id = stable_id(record.source, record.key, sha)
        return _Read(record, item_id, sha, created_at, fetched.data, dated=dated)

    def _decode(self, read: _Read) -> list[_Unit] | Skipped:
        # Detection needs the picture at full size: boxes are in its pixels and crops need detail.
        draft = None if self.detector else self.embedder.input_size
        try:
            decoded = decode_image(read.data, max_pixels=self.max_pixels, draft=draft)
        except ImageError as exc:
            return Skipped(read.record.shown, str(exc))
        except Exception as exc:  # a decoder plugin's own exception: this picture only
            log.exception("decoding %s failed", read.record.uri)
            return Skipped(read.record.shown, f"cannot decode: {type(exc).__name__}: {exc}")
        if self._keep is not None and is_url(read.record.uri):
            try:
                self._keep(read.sha256, read.data)
            except OSError as exc:
                return Skipped(read.record.shown, f"cannot keep the downloaded image: {exc.strerror or exc}")
        image, size = decoded.image, (decoded.width, decoded.height)
        hashed = pdq(image) if self._hashes and read.whole else None
        units = [_Unit(read, *size, self.embedder.prepare_image(image), pdq=hashed)] if read.whole else []
        if self.detector is None:
            return units
        try:
            detections = self.detector.detect(image)
        except (RuntimeError, ValueError) as exc:  # one picture the detector chokes on is skipped
            return Skipped(read.record.shown, f"object detection failed: {exc}")
        for index, detection in enumerate(detections, start=1):
            inputs = self.embedder.prepare_image(crop(image, detection.box))
            units.append(_Unit(read, *size, inputs, index, detection))
        return units

    def _prepare(
        self, chunk: list[Record | Skipped], pool: ThreadPoolExecutor, seen_ids: set[int]
    ) -> _Prepared:
        prepared = _Prepared(size=len(chunk))
        prepared.skipped.extend(r for r in chunk if isinstance(r, Skipped))
        records = [r for r in chunk if isinstance(r, Record)]
        for record in records:
            self.marks.record(record)
        reads: list[_Read] = []
        for record, result in zip(records, pool.map(self._read, records), strict=True):
            if isinstance(result, Skipped):
                prepared.skipped.append(result)
                self.marks.not_read(record)  # --sync keeps what it could not read this time
            elif result.id in seen_ids:
                prepared.already_indexed += 1  # listed twice in this run
            else:
                seen_ids.add(result.id)
                self.marks.read(result.record, result.id, result.sha256)
                reads.append(result)
        stored = self.store.existing_ids([r.id for r in reads]) if self.store.exists() else set()
        prepared.already_indexed += sum(1 for r in reads if r.id in stored)
        if self.scope is not None and stored:
            prepared.updates = self._metadata_updates([r for r in reads if r.id in stored])
        fresh = [r for r in reads if r.id not in stored]
        if self.detector is not None and stored:
            # A picture stored by a run without detection gets its crops now; one stored by a
            # detecting run is done.
            detected = {item.id for item in self.store.get(sorted(stored)) if item.label == WHOLE_IMAGE_LABEL}
            # Crops added to such a picture later leave it unlabelled; its first crop marks it done.
            first_crop = {self._crop_id(r, 1): r.id for r in reads if r.id in stored and r.id not in detected}
            detected |= {first_crop[i] for i in self.store.existing_ids(list(first_crop))}
            fresh += [replace(r, whole=False) for r in reads if r.id in stored and r.id not in detected]
        # Each unit carries its read, so a failed decode drops only its own picture.
        outcomes = list(zip(fresh, pool.map(self._decode, fresh), strict=True))
        refused = self._screened(outcomes)
        for read, outcome in outcomes:
            if isinstance(outcome, Skipped):
                prepared.skipped.append(outcome)
                self.marks.not_read(read.record)
            elif read.id in refused:  # kept out; --sync keeps what the record had, as for an unread one
                prepared.skipped.append(Skipped(read.record.shown, refused[read.id]))
                prepared.blocked += 1
                self.marks.not_read(read.record)
            else:
                prepared.decoded.extend(outcome)
                if read.whole:
                    self.marks.added(read.record)
        for entry in chunk:
            if isinstance(entry, Skipped):  # a catalog row listed but unusable (a bad date…)
                self.marks.not_read(entry)
        return prepared

    def _screened(self, outcomes: list[tuple[_Read, list[_Unit] | Skipped]]) -> dict[int, str]:
        """The screen's refusals of this chunk's new whole pictures (none without a screen)."""
        if self._screen is None:
            return {}
        uploads = [
            Upload(read.id, read.sha256, units[0].pdq, read.record.source, read.record.item_id, read.record.uri)
            for read, units in outcomes
            if read.whole and not isinstance(units, Skipped) and units
        ]
        return self._screen(uploads) if uploads else {}

    def _metadata_updates(self, reads: list[_Read]) -> list[Item]:
        """Stored pictures whose listing now gives another name, item id or date (vectors kept)."""
        stored = {item.id: item for item in self.store.get([r.id for r in reads], with_vector=True)}
        updates = []
        for read in reads:
            if read.id in stored:
                old = stored[read.id]
                changed = updated_metadata(
                    old, read.record, read.created_at if read.dated else old.created_at
                )
                if changed is not None:
                    updates.append(changed)
        return updates

    def _embed(self, prepared: _Prepared) -> list[Item]:
        if not prepared.decoded:
            return []
        vectors = self.embedder.embed_prepared([unit.inputs for unit in prepared.decoded])
        # A model that overflows (NaN, infinity: normalised to a zero row) gives no vector to store.
        usable = np.isfinite(vectors).all(axis=1) & (np.linalg.norm(vectors, axis=1) > 0.5)
        items = []
        for unit, vector, ok in zip(prepared.decoded, vectors, usable, strict=True):
            if ok:
                items.append(self._item(unit, vector))
            elif unit.detection is None:  # a crop without a vector is simply left out
                prepared.skipped.append(
                    Skipped(unit.read.record.shown, "the model gave no usable vector (not finite): not stored")
                )
                self.marks.not_read(unit.read.record)  # --sync keeps what it had of it
        return items

    @staticmethod
    def _crop_id(read: _Read, index: int) -> int:
        return stable_id(read.record.source, read.record.key, read.sha256, index)

    def _item(self, unit: _Unit, vector: Any) -> Item:
        read, detection = unit.read, unit.detection
        item = Item(
            id=read.id,
            sha256=read.sha256,
            item_id=read.record.item_id,
            name=read.record.name,
            source=read.record.source,
            created_at=read.created_at,
            uri=read.record.uri,
            width=unit.width,
            height=unit.height,
            label=WHOLE_IMAGE_LABEL if self.detector is not None else "",
            vector=vector,
            **dict(read.record.details),
        )
        if detection is None:
            return item
        box = box_text(detection.box)
        # A crop is an item of its own: its id hashes the crop's rank, its sha256 the box within the bytes.
        return replace(
            item,
            id=self._crop_id(read, unit.crop_index),
            sha256=content_hash(f"{read.sha256}:{box}".encode()),
            parent_sha256=read.sha256,
            box=box,
            label=detection.label,
            det_score=detection.score,
        )
