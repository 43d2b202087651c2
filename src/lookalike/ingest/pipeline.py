"""Ingest in stages: list → read and hash → select → decode → keep and screen → embed → sinks.

Each stage is a function of its inputs that returns its outputs (a batch of records, of reads with
their bytes, of decoded model inputs, of vectors), so that any runner can call it, in this process or
on other machines; none keeps state of its own. What a run remembers (the ids it has seen, the marks
``--sync`` sweeps by, the report) belongs to its runner, which passes it in. The local runner
(usecases/local_runner.py) overlaps the stages in threads. A distributed runner (Ray Data's
``map_batches``) calls the same functions, per batch of listed entries, in this order:

1. ``read(record, plan.fetch)`` for each Record, anywhere (I/O): the bytes, their SHA-256 and the
   item's stable id (``identify``), or a Skipped saying why not.
2. On the driver, which holds the store and the run's state: ``admit(entries, results, seen, marks)``
   drops what this run listed twice and marks what ``--sync`` keeps; ``known(store, reads, plan)``
   asks the store what it holds (and, with ``--sync``, which names or dates changed);
   ``fresh(reads, known)`` is what is left to embed.
3. ``decode(read, plan, prepare, input_size, detector)`` for each, anywhere (CPU): the model's inputs
   (the embedder's ``prepare_image``), the PDQ hash, detected crops; then ``keep_download(read, plan)``
   where downloaded images are kept (a shared folder).
4. On the driver: the screen (hash banks) judges ``uploads(outcomes)``; ``settle(outcomes, refused,
   marks, batch)`` records skips and refusals.
5. ``embed(units, encode)`` where the model is (an actor holding one): a vector or None per unit.
6. On the driver: ``items(units, vectors, plan)`` (``item_of`` is the one place a read becomes an
   Item) and ``unusable(units, vectors, marks, batch)`` (what got no vector); the sinks:
   ``store.insert(items + batch.updates)``, then, once written, ``on_stored(items,
   chunk_hashes(units))`` (policies' flags, PDQ hashes, bank flags).
7. Once every batch is written: ``sweep(store, plan.scope, marks)`` (sync.py), ``store.flush()``, and
   ``on_deleted(swept ids)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

import numpy as np
from PIL import Image

from lookalike.embed import Detection, Detector
from lookalike.embed.detect import crop
from lookalike.errors import ConfigError, ImageError
from lookalike.ingest.decode import decode_image
from lookalike.ingest.fetch import Fetched
from lookalike.ingest.ids import content_hash, stable_id
from lookalike.ingest.kept import keep
from lookalike.ingest.phash import pdq
from lookalike.ingest.policy import FetchPolicy, is_url
from lookalike.ingest.sources import Record, Skipped
from lookalike.ingest.sync import Marks, Scope, updated_metadata
from lookalike.store import Item, Store
from lookalike.store.models import WHOLE_IMAGE_LABEL, box_text
from lookalike.store.partitions import check_time

Progress = Callable[[int], None]
Fetch = Callable[[str], Fetched]
Prepare = Callable[[Image.Image], Any]
Encode = Callable[[Sequence[Any]], Any]
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


def _default_fetch() -> Fetch:
    return FetchPolicy().read


@dataclass(frozen=True)
class IngestPlan:
    """What one ingest does, as a value: any runner can be handed it, and send it to other machines.

    Args:
        chunk_size: listed entries per batch (at least the model's batch size).
        workers: threads (or tasks) reading and decoding at once.
        max_pixels: a larger picture is skipped, not decoded.
        fetch: reads a path or URL (a ``FetchPolicy``'s ``read``: its roots, deadline and byte cap).
        detect: every object the detector finds becomes an item of its own too.
        scope: ``--sync``: afterwards, the stored items in this scope that were not listed are deleted.
        perceptual_hashes: keep the PDQ hash of every new whole picture (and screen by it).
        keep: the folder where downloaded (URL) images are kept, so that they are never fetched again.
    """

    chunk_size: int = 256
    workers: int = 4
    max_pixels: int = 100_000_000
    fetch: Fetch = field(default_factory=_default_fetch)
    detect: bool = False
    scope: Scope | None = None
    perceptual_hashes: bool = False
    keep: str | None = None


@dataclass(frozen=True)
class Sinks:
    """What the driver tells and asks the workflow store during a run (all optional)."""

    on_stored: Stored | None = None  # each batch's new items and PDQ hashes, once written
    on_deleted: Deleted | None = None  # --sync: the ids swept, once the deletion is flushed
    screen: Screen | None = None  # judges each batch's new pictures before they are embedded


@dataclass(frozen=True)
class Read:
    """A record's bytes, hashed and named."""

    record: Record
    id: int
    sha256: str
    created_at: int
    data: bytes
    whole: bool = True  # False: the picture is stored (indexed before without detection); add its crops
    dated: bool = True  # False: no date was given or served, created_at is the time of this run


@dataclass(frozen=True)
class Unit:
    """One thing to embed: a whole picture, or one detected crop of it."""

    read: Read
    width: int
    height: int
    inputs: Any
    crop_index: int = 0
    detection: Detection | None = None
    pdq: tuple[str, int] | None = None  # of the whole picture, when asked


@dataclass
class Batch:
    """What the driver made of one batch of listed entries: units to embed, and what was left out."""

    size: int
    units: list[Unit] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    already_indexed: int = 0
    blocked: int = 0
    updates: list[Item] = field(default_factory=list)


@dataclass(frozen=True)
class Known:
    """What the store holds of a batch's reads."""

    stored: frozenset[int] = frozenset()
    updates: tuple[Item, ...] = ()  # --sync: stored pictures whose listing gives another name or date
    recrop: frozenset[int] = frozenset()  # --detect: stored pictures whose crops are still to add


Outcome = tuple[Read, "list[Unit] | Skipped"]


def batches(entries: Iterable[Record | Skipped], size: int) -> Iterator[list[Record | Skipped]]:
    """The listing, in batches of ``size`` entries."""
    iterator = iter(entries)
    while chunk := list(islice(iterator, size)):
        yield chunk


def read(record: Record, fetch: Fetch) -> Read | Skipped:
    """A record's bytes, hashed and named (``identify``), or why they could not be read."""
    try:
        fetched = fetch(record.uri)
    except ImageError as exc:
        return Skipped(record.shown, str(exc))
    except Exception as exc:  # one input must never end the run; the log keeps the traceback
        log.exception("reading %s failed", record.uri)
        return Skipped(record.shown, f"unexpected error: {type(exc).__name__}: {exc}")
    return identify(record, fetched)


def identify(record: Record, fetched: Fetched) -> Read | Skipped:
    """The hash stage: the bytes' SHA-256, the item's stable id and its date."""
    sha = content_hash(fetched.data)
    created_at = record.created_at
    if created_at is None:
        created_at = fetched.modified_at if fetched.modified_at is not None else int(time.time())
    try:
        check_time(created_at)  # a file modified "in 9999" or a server's odd Last-Modified
    except ConfigError as exc:
        return Skipped(record.shown, str(exc))
    dated = record.created_at is not None or fetched.modified_at is not None
    return Read(record, stable_id(record.source, record.key, sha), sha, created_at, fetched.data, dated=dated)


def admit(
    entries: Sequence[Record | Skipped], results: Sequence[Read | Skipped], seen: set[int], marks: Marks
) -> tuple[list[Read], Batch]:
    """The driver's first look at a batch: reads not seen before in this run, and a Batch of the rest.

    ``results`` are ``read``'s, one per Record of ``entries`` in order. Adds the new ids to ``seen``
    and marks, for ``--sync``, every record listed, read or not read.
    """
    batch = Batch(size=len(entries))
    records = [entry for entry in entries if isinstance(entry, Record)]
    reads: list[Read] = []
    for entry in entries:
        if isinstance(entry, Skipped):  # a catalog row listed but unusable (a bad date…)
            batch.skipped.append(entry)
            marks.not_read(entry)
        else:
            marks.record(entry)
    for record, result in zip(records, results, strict=True):
        if isinstance(result, Skipped):
            batch.skipped.append(result)
            marks.not_read(record)  # --sync keeps what it could not read this time
        elif result.id in seen:
            batch.already_indexed += 1  # listed twice in this run
        else:
            seen.add(result.id)
            marks.read(result.record, result.id, result.sha256)
            reads.append(result)
    return reads, batch


def known(store: Store, reads: Sequence[Read], plan: IngestPlan) -> Known:
    """What the store holds of these reads: the only stage that asks the store before writing."""
    stored = store.existing_ids([r.id for r in reads]) if store.exists() else set()
    if not stored:
        return Known()
    listed = [r for r in reads if r.id in stored]
    updates = _metadata_updates(store, listed) if plan.scope is not None else []
    recrop: set[int] = set()
    if plan.detect:
        # A picture stored by a run without detection gets its crops now; one stored by a
        # detecting run is done.
        detected = {item.id for item in store.get(sorted(stored)) if item.label == WHOLE_IMAGE_LABEL}
        # Crops added to such a picture later leave it unlabelled; its first crop marks it done.
        first_crop = {crop_id(r, 1): r.id for r in listed if r.id not in detected}
        detected |= {first_crop[i] for i in store.existing_ids(list(first_crop))}
        recrop = {r.id for r in listed if r.id not in detected}
    return Known(frozenset(stored), tuple(updates), frozenset(recrop))


def _metadata_updates(store: Store, reads: list[Read]) -> list[Item]:
    """Stored pictures whose listing now gives another name, item id or date (vectors kept)."""
    stored = {item.id: item for item in store.get([r.id for r in reads], with_vector=True)}
    updates = []
    for entry in reads:
        if entry.id in stored:
            old = stored[entry.id]
            changed = updated_metadata(old, entry.record, entry.created_at if entry.dated else old.created_at)
            if changed is not None:
                updates.append(changed)
    return updates


def fresh(reads: Sequence[Read], held: Known) -> list[Read]:
    """What is left to decode and embed: new pictures, and stored ones whose crops are still to add."""
    new = [r for r in reads if r.id not in held.stored]
    return new + [replace(r, whole=False) for r in reads if r.id in held.recrop]


def decode(
    entry: Read, plan: IngestPlan, prepare: Prepare, input_size: int | None, detector: Detector | None = None
) -> list[Unit] | Skipped:
    """The decode stage of one read: the model's inputs for the picture (and its crops), its PDQ hash.

    ``prepare`` is the embedder's ``prepare_image`` and ``input_size`` its input side (JPEGs are
    drafted down towards it); ``detector`` is needed when the plan detects.
    """
    # Detection needs the picture at full size: boxes are in its pixels and crops need detail.
    draft = None if plan.detect else input_size
    try:
        decoded = decode_image(entry.data, max_pixels=plan.max_pixels, draft=draft)
    except ImageError as exc:
        return Skipped(entry.record.shown, str(exc))
    except Exception as exc:  # a decoder plugin's own exception: this picture only
        log.exception("decoding %s failed", entry.record.uri)
        return Skipped(entry.record.shown, f"cannot decode: {type(exc).__name__}: {exc}")
    image, size = decoded.image, (decoded.width, decoded.height)
    hashed = pdq(image) if plan.perceptual_hashes and entry.whole else None
    units = [Unit(entry, *size, prepare(image), pdq=hashed)] if entry.whole else []
    if not plan.detect:
        return units
    if detector is None:
        raise ValueError("a plan that detects needs a detector")
    try:
        detections = detector.detect(image)
    except (RuntimeError, ValueError) as exc:  # one picture the detector chokes on is skipped
        return Skipped(entry.record.shown, f"object detection failed: {exc}")
    for index, detection in enumerate(detections, start=1):
        units.append(Unit(entry, *size, prepare(crop(image, detection.box)), index, detection))
    return units


def keep_download(entry: Read, plan: IngestPlan) -> Skipped | None:
    """The kept-uploads sink: a decoded URL image's bytes are kept, named by their hash; None when done."""
    if plan.keep is None or not is_url(entry.record.uri):
        return None
    try:
        keep(plan.keep, entry.sha256, entry.data)
    except OSError as exc:
        return Skipped(entry.record.shown, f"cannot keep the downloaded image: {exc.strerror or exc}")
    return None


def uploads(outcomes: Iterable[Outcome]) -> list[Upload]:
    """The new whole pictures of a batch, as a screen judges them."""
    return [
        Upload(read.id, read.sha256, units[0].pdq, read.record.source, read.record.item_id, read.record.uri)
        for read, units in outcomes
        if read.whole and not isinstance(units, Skipped) and units
    ]


def settle(outcomes: Iterable[Outcome], refused: dict[int, str], marks: Marks, batch: Batch) -> None:
    """The driver records a batch's decodes: units to embed, pictures skipped or refused (kept by --sync)."""
    for entry, outcome in outcomes:
        if isinstance(outcome, Skipped):
            batch.skipped.append(outcome)
            marks.not_read(entry.record)
        elif entry.id in refused:  # kept out; --sync keeps what the record had, as for an unread one
            batch.skipped.append(Skipped(entry.record.shown, refused[entry.id]))
            batch.blocked += 1
            marks.not_read(entry.record)
        else:
            batch.units.extend(outcome)
            if entry.whole:
                marks.added(entry.record)


def embed(units: Sequence[Unit], encode: Encode) -> list[np.ndarray | None]:
    """The embed stage: a vector per unit, None where the model overflowed (NaN, infinity: a zero row)."""
    if not units:
        return []
    vectors = np.asarray(encode([unit.inputs for unit in units]))
    usable = np.isfinite(vectors).all(axis=1) & (np.linalg.norm(vectors, axis=1) > 0.5)
    return [vector if ok else None for vector, ok in zip(vectors, usable, strict=True)]


def items(units: Sequence[Unit], vectors: Sequence[np.ndarray | None], plan: IngestPlan) -> list[Item]:
    """The items to store: every unit with a vector."""
    return [
        item_of(unit, v, labelled=plan.detect)
        for unit, v in zip(units, vectors, strict=True)
        if v is not None
    ]


def unusable(units: Sequence[Unit], vectors: Sequence[np.ndarray | None], marks: Marks, batch: Batch) -> None:
    """The driver records the whole pictures the model gave no vector: skipped, and kept by --sync.

    A crop without a vector is simply left out.
    """
    for unit, vector in zip(units, vectors, strict=True):
        if vector is None and unit.detection is None:
            batch.skipped.append(
                Skipped(unit.read.record.shown, "the model gave no usable vector (not finite): not stored")
            )
            marks.not_read(unit.read.record)  # --sync keeps what it had of it


def chunk_hashes(units: Iterable[Unit]) -> Hashes:
    """The PDQ hashes of a batch's whole pictures, by id."""
    return {u.read.id: u.pdq for u in units if u.pdq is not None and u.detection is None}


def crop_id(entry: Read, index: int) -> int:
    return stable_id(entry.record.source, entry.record.key, entry.sha256, index)


def item_of(unit: Unit, vector: Any, *, labelled: bool) -> Item:
    """The one place where a record, read and embedded, becomes an Item.

    ``labelled``: a detecting run labels a whole picture as such (its crops are then done).
    """
    entry, detection = unit.read, unit.detection
    item = Item(
        id=entry.id,
        sha256=entry.sha256,
        item_id=entry.record.item_id,
        name=entry.record.name,
        source=entry.record.source,
        created_at=entry.created_at,
        uri=entry.record.uri,
        width=unit.width,
        height=unit.height,
        label=WHOLE_IMAGE_LABEL if labelled else "",
        vector=vector,
        **dict(entry.record.details),
    )
    if detection is None:
        return item
    box = box_text(detection.box)
    # A crop is an item of its own: its id hashes the crop's rank, its sha256 the box within the bytes.
    return replace(
        item,
        id=crop_id(entry, unit.crop_index),
        sha256=content_hash(f"{entry.sha256}:{box}".encode()),
        parent_sha256=entry.sha256,
        box=box,
        label=detection.label,
        det_score=detection.score,
    )
