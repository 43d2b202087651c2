"""The Ray runner (``index --ray``): ingest's stages on Ray Data; this driver decides what is written.

List, read, hash and decode run as Ray tasks (ingest/onray.py), the model in an actor pool: one model
per actor, one GPU per actor where the cluster has GPUs, CPU actors otherwise; the driver never loads
it. The listing is split into parts (a folder's subfolders, a prefix's subprefixes, a Parquet
catalog's row groups: ingest/parts.py), each listed and counted by a task; the driver holds no more of
it than the batches coming back. Ids already stored are found by a pre-pass over the stored ids (in
batches) and skipped before decoding. The driver then does what needs the run's whole state:
pipeline.py's ``admit``, ``settle``, ``unusable`` and ``items``, the hash banks' screen, the sinks and,
with ``--sync``, the sweep. The rows go into Milvus Lite from this process (one process may hold a
database), into a Milvus server through a pool of writer actors (parallel upserts, or Parquet files
and the server's bulk import: ingest/writers.py). A killed run resumes: what was written is skipped.

What differs from the local runner: the screen judges a new picture after it is embedded, not before
(it is still never stored); ``--detect`` is not offered.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import ConfigError, LookalikeError, StoreError
from lookalike.ingest.onray import (
    GPU_BATCH,
    NEW,
    STORED,
    TASK_CPUS,
    EmbedActor,
    Meta,
    list_chunks,
    read_and_decode,
)
from lookalike.ingest.parts import Part, split
from lookalike.ingest.pipeline import (
    Batch,
    Hashes,
    IngestPlan,
    Progress,
    Read,
    Sinks,
    Unit,
    admit,
    chunk_hashes,
    items,
    known,
    settle,
    unusable,
    uploads,
)
from lookalike.ingest.report import IngestReport
from lookalike.ingest.sources import Record, Skipped
from lookalike.ingest.sync import Marks, Swept, sweep
from lookalike.ingest.writers import BulkFile, BulkWriter, Connection, StoreWriter
from lookalike.store import Item, Store, partition_for
from lookalike.store.server import ServerStore

if TYPE_CHECKING:
    from lookalike.ingest.objects import ObjectListing
    from lookalike.ingest.sources import Inputs, Listing

log = logging.getLogger(__name__)
INSTALL_HINT = "--ray needs Ray Data: pip install 'lookalike[ray]'"
STORED_IDS_BATCH = 10_000
BULK_VISIBLE_S = 600.0  # how long imported rows may take to be counted


@dataclass(frozen=True)
class ActorShape:
    """How many model actors, what each asks of a node, and the device and batch size each runs with."""

    actors: int
    gpus: float
    cpus: float
    device: str
    batch_size: int


def actor_shape(
    resources: Mapping[str, float],
    *,
    actors: int | None,
    batch_size: int | None,
    device: str,
    default_batch: int,
) -> ActorShape:
    """One actor per GPU where the cluster has GPUs (``device`` auto or cuda), batches of ``GPU_BATCH``;
    otherwise CPU actors (one per four cores) sharing the cores the read-and-decode tasks leave.

    Raises:
        ConfigError: more actors than the cluster can place.
    """
    gpus = int(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    if gpus >= 1 and device in ("auto", "cuda"):
        count = actors or gpus
        if count > gpus:
            raise ConfigError(f"--actors {count}: the cluster has {gpus} GPUs, one per actor.")
        return ActorShape(count, 1.0, 1.0, "cuda", batch_size or GPU_BATCH)
    count = actors or max(1, int(cpus // 4))
    share = int((cpus - TASK_CPUS) / count * 4) / 4  # quarters of a core, so that the tasks keep theirs
    if share < 0.25:
        raise ConfigError(
            f"--actors {count}: the cluster has {cpus:g} CPUs; at most {int((cpus - TASK_CPUS) * 4)} actors "
            "fit beside the read-and-decode tasks."
        )
    return ActorShape(
        count, 0.0, min(share, 4.0), "cpu" if device == "auto" else device, batch_size or default_batch
    )


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (Ray without its data extra has no ray.data)
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``ray://host:port``), or start a local Ray instance
    (None; ``RAY_ADDRESS`` is honoured). Returns whether this call started Ray (and should end it).

    Raises:
        ConfigError: Ray is not installed, or cannot be reached.
    """
    ray = _ray()
    # Ray Data's execution plans would bury the command's own report; --verbose shows ours.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    # Ray Data's MapWorker warns at error level of its own constructor arguments in the object store.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # read by the processes Ray starts here
    # Ray waits a few seconds for its control store to start; on a busy machine that was too short.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "60")
    for attempt in (1, 2):
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            return True
        except Exception as exc:  # Ray raises bare Exceptions too (a node that timed out starting)
            ray.shutdown()  # what did start goes, before a second try or the error
            if attempt == 2 or address is not None:
                where = address or "a local instance"
                raise ConfigError(
                    f"Cannot start or join Ray at {where}: {exc} (on a busy machine, start Ray once with "
                    "`ray start --head` and pass --ray-address auto)"
                ) from None
            log.warning("Ray did not start (%s): trying once more", exc)
    return True


def disconnect() -> None:
    """End the Ray instance ``connect`` started."""
    _ray().shutdown()


def stored_ids(store: Store) -> npt.NDArray[np.int64]:
    """Every stored id, sorted: the pre-pass the tasks skip stored pictures by, read in batches."""
    if not store.exists():
        return np.zeros(0, dtype=np.int64)
    parts = [
        np.fromiter((item.id for item in batch), dtype=np.int64, count=len(batch))
        for batch in store.iter_items(batch_size=STORED_IDS_BATCH, with_vector=False)
    ]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def run(
    plan: IngestPlan,
    listing: Listing | ObjectListing | Inputs,
    settings: Any,
    store: Store,
    *,
    input_size: int | None,
    actors: int | None = None,
    batch_size: int | None = None,
    sinks: Sinks | None = None,
    on_start: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    ready: Callable[[], None] | None = None,
    writers: Writers | None = None,
) -> IngestReport:
    """Index every entry of ``listing`` by ``plan`` on the Ray instance this process is connected to.

    ``settings`` build each actor's model (``create_embedder``), with the device and batch size
    ``actor_shape`` chooses for the cluster; this process never loads it. The listing is split into
    parts (ingest/parts.py) that tasks list and count (``on_start`` gets the count). ``ready`` is
    called once, before the first write: after the first actor has loaded its model and embedded
    a batch (or at the end, when nothing reached the actors), so that a model that cannot load
    leaves no collection behind. ``writers``: a Milvus server's rows go through a pool of writer actors
    (parallel upserts, or Parquet files and a bulk import at the end); without, this process writes.

    Raises:
        ConfigError: Ray is missing or not connected, the plan detects, the actors do not fit, or
            an actor cannot load the model.
    """
    ray = _ray()
    if plan.detect:
        raise ConfigError("--detect is not offered with --ray: index without --ray to detect objects.")
    if not ray.is_initialized():
        raise ConfigError("Ray is not connected: call connect() first.")
    sinks = sinks or Sinks()
    report = IngestReport()
    started = time.perf_counter()
    shape = actor_shape(
        ray.cluster_resources(),
        actors=actors,
        batch_size=batch_size,
        device=str(settings.device),
        default_batch=int(settings.batch_size),
    )
    on_actor = settings.model_copy(update={"device": shape.device, "batch_size": shape.batch_size})
    parts: list[Part] = ray.get(ray.remote(num_cpus=TASK_CPUS)(split).remote(listing))
    chunks, total = _listed(ray, parts, plan.chunk_size)
    if on_start:
        on_start(total)
    seen: set[int] = set()
    marks = Marks()
    ensure = _Once(ready)
    out = _Writes(ray, store, sinks, writers)
    with _actor_errors():
        for batch in _embedded(ray, chunks, plan, store, shape, on_actor, input_size):
            problem = next((str(p) for p in batch["problem"] if p), "")
            if problem:
                raise ConfigError(
                    f"A Ray actor could not load the model --model {settings.model} --pretrained "
                    f"{settings.pretrained}: {problem}"
                )
            ensure()
            done = _write(batch, plan, store, sinks, seen, marks, out)
            _count(report, *done)
            report.elapsed_s = time.perf_counter() - started
            log.info("stored %d new items; %d listed entries done", len(done[1]), report.seen)
            if progress:
                progress(done[0].size)
    ensure()
    out.finish()
    swept = sweep(store, plan.scope, marks) if plan.scope is not None else Swept()
    report.replaced, report.deleted, report.kept = swept.replaced, swept.deleted, swept.kept
    if report.indexed or report.updated or swept.ids:
        store.flush()
    if swept.ids and sinks.on_deleted is not None:
        sinks.on_deleted(list(swept.ids))
    report.elapsed_s = time.perf_counter() - started
    return report


def _listed(ray: Any, parts: list[Part], size: int) -> tuple[list[Any], int]:
    """The parts listed by tasks, all at once: references to their chunks (this process holds none of
    the entries) and how many entries they hold."""
    lister = ray.remote(num_cpus=TASK_CPUS, num_returns="streaming")(list_chunks)
    chunks: list[Any] = []
    total = 0
    for generator in [lister.remote(part, size) for part in parts]:
        refs = list(generator)
        chunks += refs[:-1]
        total += int(ray.get(refs[-1]))
    return chunks, total


def _embedded(
    ray: Any,
    chunks: list[Any],
    plan: IngestPlan,
    store: Store,
    shape: ActorShape,
    on_actor: Any,
    input_size: int | None,
) -> Iterator[dict[str, Any]]:
    """The listed chunks read, decoded (tasks) and embedded (the actor pool), in batches as they come."""
    if not chunks:
        return
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the command's own bar counts
    # One block per chunk of listed entries: a read-and-decode task each.
    dataset = (
        ray.data.from_arrow_refs(chunks)
        .map_batches(
            read_and_decode,
            fn_kwargs={"plan": plan, "stored": stored_ids(store), "input_size": input_size},
            batch_size=plan.chunk_size,
            num_cpus=TASK_CPUS,
        )
        .map_batches(
            EmbedActor,
            fn_constructor_kwargs={"settings": on_actor, "threads": max(1, round(shape.cpus))},
            batch_size=shape.batch_size,
            compute=ray.data.ActorPoolStrategy(size=shape.actors),
            num_cpus=shape.cpus,
            num_gpus=shape.gpus,
        )
    )
    yield from dataset.iter_batches(batch_size=plan.chunk_size, batch_format="numpy")


class _Once:
    def __init__(self, call: Callable[[], None] | None) -> None:
        self.call = call

    def __call__(self) -> None:
        if self.call is not None:
            call, self.call = self.call, None
            call()


@contextmanager
def _actor_errors() -> Iterator[None]:
    """An actor whose model cannot load (weights gone or corrupt) stops the run with its own reason."""
    try:
        yield
    except LookalikeError:
        raise
    except Exception as exc:
        cause = _root(exc)
        if "EmbedActor" not in str(exc) and "EmbedActor" not in "".join(
            traceback.format_tb(exc.__traceback__)
        ):
            raise
        raise ConfigError(f"A Ray actor could not load or run the model: {cause}") from exc


def _root(exc: BaseException) -> str:
    """The innermost reason Ray wrapped (a task's error arrives inside Ray's own exceptions)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _write(
    rows: Mapping[str, Any],
    plan: IngestPlan,
    store: Store,
    sinks: Sinks,
    seen: set[int],
    marks: Marks,
    out: _Writes,
) -> tuple[Batch, list[Item]]:
    """The driver's stages for one batch of rows back from the actors: what local_runner does after
    its reads and decodes, with the vectors already made."""
    metas: list[Meta] = [pickle.loads(raw) for raw in rows["meta"]]
    statuses = [str(status) for status in rows["status"]]
    results: list[Read | Skipped] = []
    for meta in metas:
        if isinstance(meta.entry, Record):
            if meta.read is None:
                raise RuntimeError(f"{meta.entry.shown} came back from the tasks without its read")
            results.append(meta.read)
    reads, batch = admit([m.entry for m in metas], results, seen, marks)
    by_id: dict[int, tuple[str, Unit | Skipped | None, Any]] = {}
    for meta, status, vector, usable in zip(metas, statuses, rows["vector"], rows["usable"], strict=True):
        if isinstance(meta.read, Read):
            by_id.setdefault(meta.read.id, (status, meta.unit, vector if usable else None))
    already = [r for r in reads if by_id[r.id][0] == STORED]
    batch.already_indexed += len(already)
    if plan.scope is not None and already:
        batch.updates = list(known(store, already, plan).updates)
    outcomes: list[tuple[Read, list[Unit] | Skipped]] = []
    for entry in reads:
        status, unit, _ = by_id[entry.id]
        if status == NEW and unit is not None:
            outcomes.append((entry, unit if isinstance(unit, Skipped) else [unit]))
    new = uploads(outcomes) if sinks.screen is not None else []
    settle(outcomes, sinks.screen(new) if new and sinks.screen else {}, marks, batch)
    vectors = [by_id[unit.read.id][2] for unit in batch.units]
    new_items = items(batch.units, vectors, plan)
    unusable(batch.units, vectors, marks, batch)
    out.write(new_items + batch.updates, new_items, chunk_hashes(batch.units))
    return batch, new_items


@dataclass(frozen=True)
class Writers:
    """A pool of writer actors for a Milvus server: ``count`` connections; ``bulk``: the folder (which
    the server can read) where they write Parquet files for its bulk import, instead of upserting."""

    connection: Connection
    count: int = 2
    bulk: str | None = None


class _Writes:
    """Where each batch's rows go: this process's store, or a pool of writer actors (round robin, a
    few batches in flight each); a batch's items reach ``on_stored`` once they are written (with
    ``--bulk``: once imported, at the end)."""

    def __init__(self, ray: Any, store: Store, sinks: Sinks, writers: Writers | None) -> None:
        self.ray, self.store, self.sinks, self.writers = ray, store, sinks, writers
        self.actors: list[Any] = []
        self.pending: deque[tuple[Any, list[Item], Hashes]] = deque()
        self.imported: list[tuple[list[Item], Hashes]] = []  # --bulk: told once imported
        self.turn = 0

    def write(self, writes: list[Item], new_items: list[Item], hashes: Hashes) -> None:
        if self.writers is None:
            if writes:
                self.store.insert(writes)
            self._stored(new_items, hashes)
            return
        if not writes:
            return  # nothing new in this batch (no item, hence nothing to tell)
        if not self.actors:
            self.actors = [self._actor(number) for number in range(self.writers.count)]
        if self.writers.bulk is None:
            # One process creates the batch's months, before the writers race to.
            self.store.ensure_partitions(sorted({partition_for(item.created_at) for item in writes}))
        ref = self.actors[self.turn % len(self.actors)].write.remote(writes)
        self.turn += 1
        self.pending.append((ref, new_items, hashes))
        while len(self.pending) > 2 * len(self.actors):
            self._settle_oldest()

    def finish(self) -> None:
        """Every write done (and, with --bulk, imported and visible); the writers gone."""
        while self.pending:
            self._settle_oldest()
        if not self.actors:
            return
        files: list[BulkFile] = [
            f for got in self.ray.get([a.close.remote() for a in self.actors]) for f in got
        ]
        self.actors = []
        if self.writers is not None and self.writers.bulk is not None and files:
            if not isinstance(self.store, ServerStore):
                raise ConfigError("--bulk needs a Milvus server (--db http://host:19530).")
            before = self.store.count()
            expected = before + sum(self.store.bulk_import([f.path], f.partition) for f in files)
            deadline = time.monotonic() + BULK_VISIBLE_S
            while self.store.count() < expected:  # imported segments are counted once indexed
                if time.monotonic() > deadline:
                    raise StoreError(f"{expected - before} rows were imported but not all are visible yet.")
                time.sleep(1.0)
        for new_items, hashes in self.imported:
            self._stored(new_items, hashes)
        self.imported = []

    def _actor(self, number: int) -> Any:
        assert self.writers is not None
        if self.writers.bulk is None:
            return self.ray.remote(num_cpus=0)(StoreWriter).remote(self.writers.connection)
        name = f"{self.writers.connection.collection}-{os.getpid()}-{number}"
        return self.ray.remote(num_cpus=0)(BulkWriter).remote(self.writers.bulk, name)

    def _settle_oldest(self) -> None:
        ref, new_items, hashes = self.pending.popleft()
        self.ray.get(ref)  # a writer's StoreError arrives as one (Ray's error is a subclass of it)
        if self.writers is not None and self.writers.bulk is not None:
            self.imported.append((new_items, hashes))
        else:
            self._stored(new_items, hashes)

    def _stored(self, new_items: list[Item], hashes: Hashes) -> None:
        if self.sinks.on_stored is not None and new_items:
            self.sinks.on_stored(new_items, hashes)


def _count(report: IngestReport, batch: Batch, new_items: list[Item]) -> None:
    report.updated += len(batch.updates)
    report.indexed += len(new_items)
    report.seen += batch.size
    report.already_indexed += batch.already_indexed
    report.blocked += batch.blocked
    report.skipped.extend(batch.skipped)
