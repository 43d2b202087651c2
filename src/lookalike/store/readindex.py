"""The read index of a Milvus Lite collection: derived data that serves every read.

Milvus Lite 3.x spends 100-400 ms per search at 100K vectors whatever the index: it walks
every stored primary key in Python before asking FAISS anything, and reads rows out at about
2K rows/s. The read index keeps what reads need (vectors in FAISS, scalar columns in Arrow)
beside the ``.db`` folder, one shard per monthly partition, each shard a few immutable
segments with tombstones. ``LiteStore`` alone writes it; it is stamped with the Milvus
generation it matches and can always be rebuilt from Milvus. Deleting its folder is safe.

Readers take a snapshot (an immutable mapping of shards) and never lock; writers build new
segments and publish a new snapshot in one assignment.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from lookalike import durable
from lookalike.durable import crash_point
from lookalike.store import segments as segment_tiers
from lookalike.store.models import Hit, IndexType, Item
from lookalike.store.partitions import month_start, next_month
from lookalike.store.rows import from_arrow
from lookalike.store.segments import SEAL_ROWS, Segment, candidates, extend, merge

KEPT_BY_STORE = ("purge-", "erase-")
"""Files of the store's erasure beside the segments, which a save leaves alone."""
FORMAT_VERSION = 4  # 3: shards of segments with tombstones; 4: graphs over fp16, float32 beside
MAX_SEGMENTS = 8
"""Segments per shard before the smallest are merged (each merge rebuilds only what it merges)."""
MERGE_FACTOR = 4
RETIRE_AFTER_S = 2.0
"""How long segments left out of a new snapshot are kept for readers of the old one (a search
takes milliseconds; an export or a scan that holds a snapshot longer releases it itself)."""
SEAL_SHARE = 16
"""At a flush, flat rows of new items join their month's graph once they number a sixteenth of it:
each joining copies the graph, so a row is copied at most 16 times over, while a search no longer
scores a month's tail of up to ``SEAL_ROWS`` rows one by one (a month closed in the middle of
an ingest kept its tail flat, and at 100K over twelve months the tails were half a query's time)."""
SEAL_LEAST = 256
MAX_FLAT = 1
"""Flat segments of new rows per HNSW shard: a second one is concatenated with the first (a copy of
fewer than ``SEAL_ROWS`` rows), so a search walks at most one graph and one matrix per month."""


@dataclass(frozen=True)
class Snapshot:
    shards: Mapping[str, tuple[Segment, ...]]
    generation: int

    def segments(self, partitions: Sequence[str] | None = None) -> Iterator[tuple[str, Segment]]:
        for name in sorted(self.shards) if partitions is None else partitions:
            for segment in self.shards.get(name, ()):
                yield name, segment

    def rows(self) -> dict[str, int]:
        return {name: sum(s.live for s in segs) for name, segs in self.shards.items()}


FEW_QUERIES = 16
_CONTROLLER: Any = None
_ONE_BLAS_THREAD = False


def use_one_blas_thread() -> Any:
    """BLAS on one thread for the rest of the process: for a server, whose concurrent requests
    already keep the cores busy. Searches then skip limiting it per call, which under load cost more
    than the search (OpenBLAS' thread-count calls are process-wide and wait for each other).

    Returns the limit (``restore_original_limits()`` undoes it)."""
    from threadpoolctl import threadpool_limits

    global _ONE_BLAS_THREAD
    # Every BLAS loaded by now (a controller made earlier would miss those loaded since); kept, not
    # used as a context.
    limit = threadpool_limits(limits=1, user_api="blas")
    _ONE_BLAS_THREAD = True
    return limit


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()

Part = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], Segment]


def _each(search: Callable[[Segment], Part], segments: list[Segment], queries: int) -> list[Part]:
    """``search`` over each segment, in order: split between the cores for a single query on a
    process of its own (a CLI command), one after another in a server or for a batch of queries.

    FAISS lets go of the GIL while it walks a graph, and a month's graph is walked for every query
    over all months: twelve walks at 100K took 4.5 ms on one core and 2.6 ms on two.
    """
    graphs = sum(s.is_graph for s in segments)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if _ONE_BLAS_THREAD or queries > 1 or cores < 2 or graphs < 2:
        return [search(segment) for segment in segments]
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(min(cores, 4) - 1, thread_name_prefix="lookalike-shards")
        pool = _POOL
    shares = min(cores, 4)
    # Graphs dealt round-robin (they cost alike), flat segments stay with this thread.
    work = [s for s in segments if s.is_graph]
    mine = work[0::shares] + [s for s in segments if not s.is_graph]

    def run(part: list[Segment]) -> list[Part]:
        return [search(segment) for segment in part]

    theirs = [pool.submit(run, work[i::shares]) for i in range(1, shares)]
    found = {id(part[2]): part for part in run(mine)}
    for future in theirs:
        found.update((id(part[2]), part) for part in future.result())
    return [found[id(segment)] for segment in segments]


def _blas() -> Any:
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _hits(best: list[tuple[float, int, int, Segment]]) -> list[Hit]:
    """Hits in score order: one row sliced out of each hit's segment, all converted at once
    (a take and a conversion per segment cost 110 µs each, most of a search's own time)."""
    if not best:
        return []
    rows = pa.concat_tables([segment.table.slice(row, 1) for _, _, row, segment in best])
    items = from_arrow(rows.to_pydict())
    return [Hit(score, item) for (score, _, _, _), item in zip(best, items, strict=True)]


def in_window(partition: str, since: int | None, until: int | None) -> bool:
    """Whether a partition can hold items with since <= created_at < until."""
    start = month_start(partition)
    if start is None:
        return True  # _default or a foreign partition: filter row by row
    return (since is None or next_month(start) > since) and (until is None or start < until)


class ReadIndex:
    """Shards of segments, the Milvus generation they match, and their files."""

    def __init__(self, folder: Path, dim: int, index_type: str, params: dict[str, Any]) -> None:
        self.folder = folder
        self.dim = dim
        self.index_type = IndexType.FLAT if index_type == IndexType.FLAT else IndexType.HNSW
        self.params = dict(params)
        self.snapshot = Snapshot({}, -1)
        self._save_lock = threading.Lock()
        self._retired: list[list[Segment]] = []
        self._retired_lock = threading.Lock()
        self._saved_files: set[str] = set()

    # -- reads (lock-free over one snapshot) ------------------------------------------------------

    def locate(self, ids: Sequence[int]) -> dict[int, str]:
        """The partition of each id present."""
        wanted = np.asarray(list(ids), dtype=np.int64)
        found: dict[int, str] = {}
        for name, segment in self.snapshot.segments():
            for row in segment.rows_of(wanted):
                found[int(segment.ids[row])] = name
        return found

    def get(self, ids: Sequence[int], *, with_vector: bool) -> list[Item]:
        wanted = np.asarray(list(ids), dtype=np.int64)
        found: dict[int, Item] = {}
        for _, segment in self.snapshot.segments():
            rows = segment.rows_of(wanted)
            if len(rows):
                found.update((item.id, item) for item in segment.items(rows, with_vector=with_vector))
        return [found[i] for i in dict.fromkeys(int(i) for i in ids) if i in found]

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        *,
        sources: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
        exclude_ids: Sequence[int] | None = None,
        ef: int | None = None,
    ) -> list[list[Hit]]:
        """Top-k by inner product per query row among the items in the window, from one snapshot."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if len(queries) > FEW_QUERIES or _ONE_BLAS_THREAD:
            return self._search(queries, k, sources, since, until, exclude_ids, ef)
        # A few queries against many small matrices: BLAS threads only add their start-up and
        # spin-waits (20× slower on a busy 2-core machine); searches run in parallel instead.
        with _blas().limit(limits=1):
            return self._search(queries, k, sources, since, until, exclude_ids, ef)

    def _search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        sources: Sequence[str] | None,
        since: int | None,
        until: int | None,
        exclude_ids: Sequence[int] | None,
        ef: int | None,
    ) -> list[list[Hit]]:
        snap = self.snapshot
        excluded = np.asarray(list(exclude_ids), dtype=np.int64) if exclude_ids else None
        chosen = [segment for name, segment in snap.segments() if in_window(name, since, until)]

        def search(segment: Segment) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], Segment]:
            scores, rows = segment.search(queries, k, segment.mask(sources, since, until, excluded), ef)
            return scores, rows, segment

        parts = [part for part in _each(search, chosen, len(queries)) if part[0].shape[1]]
        if not parts:
            return [[] for _ in queries]
        scores = np.concatenate([p[0] for p in parts], axis=1)
        rows = np.concatenate([p[1] for p in parts], axis=1)
        part = np.concatenate([np.full(p[0].shape[1], i) for i, p in enumerate(parts)])
        graphs = any(p[2].is_graph for p in parts)
        found = []
        for q in range(len(queries)):
            best = scores[q]
            # Best score first; ties by segment, then row, so that an answer never depends on timing.
            order = np.lexsort((rows[q], part, -best))
            order = order[rows[q][order] >= 0]
            if graphs:  # graphs scored in fp16: re-score the best candidates in float32, then pick k
                order = order[: candidates(k)]
                best = best.copy()
                for i in np.unique(part[order]):
                    if parts[i][2].is_graph:
                        picked = order[part[order] == i]
                        best[picked] = parts[i][2].rescore(queries[q], rows[q, picked])
                order = order[np.lexsort((rows[q, order], part[order], -best[order]))]
            found.append(
                _hits([(float(best[j]), int(part[j]), int(rows[q, j]), parts[part[j]][2]) for j in order[:k]])
            )
        return found

    def iter_items(
        self,
        *,
        batch_size: int,
        with_vector: bool,
        sources: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> Iterator[list[Item]]:
        snap = self.snapshot  # one state for the whole pass
        for name, segment in snap.segments():
            if not in_window(name, since, until):
                continue
            rows = np.flatnonzero(segment.mask(sources, since, until, None))
            for start in range(0, len(rows), batch_size):
                yield segment.items(rows[start : start + batch_size], with_vector=with_vector)

    def count(
        self, sources: Sequence[str] | None = None, since: int | None = None, until: int | None = None
    ) -> int:
        snap = self.snapshot
        return sum(
            int(segment.mask(sources, since, until, None).sum())
            for name, segment in snap.segments()
            if in_window(name, since, until)
        )

    def sources(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, segment in self.snapshot.segments():
            per_code = np.bincount(segment.codes[segment.alive], minlength=len(segment.source_names))
            for name, n in zip(segment.source_names, per_code.tolist(), strict=True):
                if n:
                    counts[name] = counts.get(name, 0) + n
        return dict(sorted(counts.items()))

    # -- writes (the owner serialises them) ---------------------------------------------------------

    def publish(self, shards: Mapping[str, tuple[Segment, ...]], generation: int) -> None:
        old, self.snapshot = self.snapshot, Snapshot(dict(shards), generation)
        kept = {id(s.index) for segs in shards.values() for s in segs}
        retired = [s for segs in old.shards.values() for s in segs if id(s.index) not in kept]
        if retired:
            self._retire(retired)

    def _retire(self, segments: list[Segment]) -> None:
        """Hold segments a new snapshot left out for a while, then let go of them in a timer thread.

        Letting go of a segment unmaps its files, and the last unmap of a deleted file frees its
        pages and disk blocks: 40-120 ms for a month's graph at 1M, with the GIL held. So the
        files are deleted only after the segments are let go of (``os.unlink`` runs without the
        GIL), and never by the reader whose search happened to hold the old snapshot last.
        """
        with self._retired_lock:
            self._retired.append(segments)
        timer = threading.Timer(RETIRE_AFTER_S, self.release, args=(1,))
        timer.daemon = True
        timer.start()

    def release(self, count: int | None = None) -> None:
        """Let go of the oldest ``count`` retired groups of segments (all: None), then delete their
        files that neither the snapshot, a retired segment nor the saved state refers to."""
        with self._retired_lock:
            n = len(self._retired) if count is None else min(count, len(self._retired))
            released, self._retired = self._retired[:n], self._retired[n:]
            names = {f for segs in released for s in segs for f in s.files()}
            names -= self._held_files() | self._saved_files
        del released  # the last references: unmapping a file that is still linked is cheap
        for name in names:
            (self.folder / name).unlink(missing_ok=True)

    def _held_files(self) -> set[str]:
        """Files of the current snapshot's and the retired segments (under ``_retired_lock``)."""
        segments = [s for segs in self.snapshot.shards.values() for s in segs]
        return {f for s in [*segments, *(s for segs in self._retired for s in segs)] for f in s.files()}

    def apply(
        self,
        upserts: Sequence[Item],
        deletes: Sequence[int],
        by_partition: Mapping[str, Sequence[Item]],
        generation: int,
    ) -> None:
        """Delete ids (and the old versions of upserted ones) everywhere, then add the new rows."""
        gone = np.asarray([*deletes, *(item.id for item in upserts)], dtype=np.int64)
        shards = {
            name: tuple(s for s in (segment.without(gone) for segment in segs) if s.live)
            for name, segs in self.snapshot.shards.items()
        }
        for name, items in by_partition.items():
            if items:
                added = Segment.build(items, IndexType.FLAT, self.params)  # _tiered moves it into the graph
                shards[name] = self._tiered(shards.get(name, ()) + (added,))
        self.publish(shards, generation)

    def seal(self) -> bool:
        """Move each month's flat rows into its graph where they are many enough (see
        ``SEAL_SHARE``); returns whether anything moved. Called at a flush, not per write."""
        if self.index_type != IndexType.HNSW:
            return False
        shards = dict(self.snapshot.shards)
        changed = False
        for name, segments in shards.items():
            flat = sum(s.live for s in segments if not s.is_graph)
            graph = sum(len(s) for s in segments if s.is_graph)
            least = max(SEAL_LEAST, graph // SEAL_SHARE) if graph else segment_tiers.GRAPH_FROM
            if flat >= least:
                shards[name] = self._tiered(segments, seal_at=least)
                changed = True
        if changed:
            self.publish(shards, self.snapshot.generation)
        return changed

    def _tiered(self, segments: tuple[Segment, ...], seal_at: int | None = None) -> tuple[Segment, ...]:
        """Keep a shard to a few segments.

        HNSW: one graph plus a few flat segments of new rows. Once those reach ``seal_at`` rows
        (``SEAL_ROWS`` on a write, fewer at a flush: see ``seal``) they are inserted into a copy of
        the graph, so a search walks one graph per month; the graph is rebuilt instead when a
        quarter of it is dead. FLAT, and any shard still over ``MAX_SEGMENTS``: the smallest segments merge
        (Lucene-style tiers).
        """
        graphs = [s for s in segments if s.is_graph]
        flat = [s for s in segments if not s.is_graph and s.live]
        if self.index_type == IndexType.HNSW and sum(s.live for s in flat) >= (seal_at or SEAL_ROWS):
            if len(graphs) == 1 and graphs[0].dead * 4 <= len(graphs[0]):
                segments = (extend(graphs[0], flat),)
            else:
                live = [s for s in (*graphs, *flat) if s.live]
                segments = (merge(live, self.index_type, self.params),)
        elif self.index_type == IndexType.HNSW and len(flat) > MAX_FLAT:
            segments = (*graphs, merge(flat, IndexType.FLAT, self.params))
        while len(segments) > MAX_SEGMENTS:
            ordered = sorted(segments, key=lambda s: s.live)
            small, rest = ordered[:MERGE_FACTOR], ordered[MERGE_FACTOR:]
            live = [s for s in small if s.live]
            segments = tuple(rest) + ((merge(live, self.index_type, self.params),) if live else ())
        return segments

    def replace_shard(self, name: str, items: Sequence[Item] | None, generation: int) -> None:
        """Set one partition's rows (None: the partition is gone)."""
        shards = dict(self.snapshot.shards)
        shards.pop(name, None)
        if items is not None:
            shards[name] = (Segment.build(items, self.index_type, self.params),) if items else ()
        self.publish(shards, generation)

    def purge(self, name: str) -> None:
        """Rewrite a shard without its dead rows (their bytes leave the files at the next save)."""
        shards = dict(self.snapshot.shards)
        segments = shards.get(name, ())
        if not any(s.dead for s in segments):
            return
        live = [s for s in segments if s.live]
        shards[name] = (merge(live, self.index_type, self.params),) if live else ()
        self.publish(shards, self.snapshot.generation)

    # -- files ----------------------------------------------------------------------------------

    def save(self, extra: Mapping[str, Any] | None = None) -> None:
        """Write new segments and tombstones, then the state file, atomically; old files go last."""
        with self._save_lock:
            snap = self.snapshot
            self.folder.mkdir(parents=True, exist_ok=True)
            shards = {name: tuple(s.save(self.folder) for s in segs) for name, segs in snap.shards.items()}
            state = {
                "version": FORMAT_VERSION,
                "dim": self.dim,
                "index_type": self.index_type.value,
                "generation": snap.generation,
                "shards": {name: {s.name: s.saved_dead for s in segs} for name, segs in shards.items()},
                **(extra or {}),
            }
            crash_point("index.segments_saved")
            durable.write_text(self.folder / "state.json", json.dumps(state, indent=1), step="index.state")
            if self.snapshot is snap:  # no writer published meanwhile: keep the mapped copies
                self.publish(
                    {name: tuple(self._mapped(s) for s in segs) for name, segs in shards.items()},
                    snap.generation,
                )
            keep = {"state.json", "journal.jsonl"} | {
                f for segs in shards.values() for s in segs for f in s.files()
            }
            with self._retired_lock:
                self._saved_files = keep
                keep = keep | self._held_files()  # a retired segment's files go when it is let go of
            for path in self.folder.iterdir():
                if path.name not in keep and path.is_file() and not path.name.startswith(KEPT_BY_STORE):
                    path.unlink(missing_ok=True)

    def _mapped(self, segment: Segment) -> Segment:
        # A freshly built segment lives on the heap; its saved copy is memory-mapped instead. One
        # already mapped is kept as it is (a drop or a delete then saves without reloading anything).
        if segment.mapped:
            return segment
        return Segment.load(self.folder, segment.name, segment.saved_dead)

    def load(self) -> dict[str, Any] | None:
        """The saved state, with the shards published; None when there is none usable."""
        try:
            if not (self.folder / "state.json").is_file():  # absent, or not a file to read (a FIFO hangs)
                return None
            state = json.loads((self.folder / "state.json").read_text(encoding="utf-8"))
            if (state.get("version"), state.get("dim"), state.get("index_type")) != (
                FORMAT_VERSION,
                self.dim,
                self.index_type.value,
            ):
                return None
            shards = {
                name: tuple(Segment.load(self.folder, seg, int(dead)) for seg, dead in segs.items())
                for name, segs in state["shards"].items()
            }
        except (OSError, ValueError, KeyError, RuntimeError, TypeError, EOFError, IndexError, AttributeError):
            return None  # a damaged file of the cache (an empty .npy is an EOFError): rebuilt from Milvus
        self.publish(shards, int(state["generation"]))
        self._saved_files = {"state.json", "journal.jsonl"} | {
            f for segs in shards.values() for s in segs for f in s.files()
        }
        return dict(state)
