"""The Ray runner (``index --ray``): ingest's stages on Ray Data; this driver alone writes the store.

Read, hash and decode run as Ray tasks (ingest/onray.py), the model in an actor pool: one model per
actor, one GPU per actor where the cluster has GPUs, CPU actors otherwise. Ids already stored are
found by a pre-pass over the stored ids (in batches) and skipped before decoding. The driver then
does what only the holder of the store may: pipeline.py's ``admit``, ``settle``, ``unusable`` and
``items``, the hash banks' screen, the inserts (Milvus Lite lets one process hold a database: this
one), the sinks and, with ``--sync``, the sweep. A killed run resumes: what was written is skipped.

What differs from the local runner: the listing is made on the driver and handed to Ray whole;
the screen judges a new picture after it is embedded, not before (it is still never stored);
``--detect`` is not offered.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import ConfigError
from lookalike.ingest.onray import (
    GPU_BATCH,
    NEW,
    STORED,
    TASK_CPUS,
    EmbedActor,
    Meta,
    entry_rows,
    read_and_decode,
)
from lookalike.ingest.pipeline import (
    Batch,
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
from lookalike.store import Item, Store

log = logging.getLogger(__name__)
INSTALL_HINT = "--ray needs Ray Data: pip install 'lookalike[ray]'"
STORED_IDS_BATCH = 10_000


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
    entries: Iterable[Record | Skipped],
    settings: Any,
    store: Store,
    *,
    input_size: int | None,
    actors: int | None = None,
    batch_size: int | None = None,
    sinks: Sinks | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Index every listed entry by ``plan`` on the Ray instance this process is connected to.

    ``settings`` build each actor's model (``create_embedder``), with the device and batch size
    ``actor_shape`` chooses for the cluster.

    Raises:
        ConfigError: Ray is missing or not connected, the plan detects, or the actors do not fit.
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
    rows = entry_rows(list(entries))
    seen: set[int] = set()
    marks = Marks()
    if rows:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the command's own bar counts
        dataset = (
            ray.data.from_items(rows)
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
        for batch in dataset.iter_batches(batch_size=plan.chunk_size, batch_format="numpy"):
            done = _write(batch, plan, store, sinks, seen, marks)
            _count(report, *done)
            report.elapsed_s = time.perf_counter() - started
            log.info(
                "stored %d new items; %d of %d listed entries done", len(done[1]), report.seen, len(rows)
            )
            if progress:
                progress(done[0].size)
    swept = sweep(store, plan.scope, marks) if plan.scope is not None else Swept()
    report.replaced, report.deleted, report.kept = swept.replaced, swept.deleted, swept.kept
    if report.indexed or report.updated or swept.ids:
        store.flush()
    if swept.ids and sinks.on_deleted is not None:
        sinks.on_deleted(list(swept.ids))
    report.elapsed_s = time.perf_counter() - started
    return report


def _write(
    rows: Mapping[str, Any], plan: IngestPlan, store: Store, sinks: Sinks, seen: set[int], marks: Marks
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
    writes = new_items + batch.updates
    if writes:
        store.insert(writes)
    if sinks.on_stored is not None and new_items:
        sinks.on_stored(new_items, chunk_hashes(batch.units))
    return batch, new_items


def _count(report: IngestReport, batch: Batch, new_items: list[Item]) -> None:
    report.updated += len(batch.updates)
    report.indexed += len(new_items)
    report.seen += batch.size
    report.already_indexed += batch.already_indexed
    report.blocked += batch.blocked
    report.skipped.extend(batch.skipped)
