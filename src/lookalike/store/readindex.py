"""The read index of a Milvus Lite collection: derived data that serves every read.

Milvus Lite 3.x spends 100-400 ms per search at 100K vectors whatever the index: it walks
every stored primary key in Python before asking FAISS anything, and reads rows out at about
2K rows/s. The read index keeps what reads need (vectors in FAISS, scalar columns in Arrow)
beside the ``.db`` folder, one shard per monthly partition, each shard a few immutable
segments with tombstones. ``LiteStore`` alone writes it; it is stamped with the Milvus
generation it matches and can always be rebuilt from Milvus. Deleting its folder is safe.

A shard's segments are views of bodies of rows (see ``segments``): new rows sit in flat bodies of
their month, and are moved into one HNSW graph shared by every month, so that a search walks one
graph however many months it covers (a second, smaller graph of recent rows saves copying the large
one for every few thousand rows). A window of whole months selects their rows of that graph; a
narrow one is scored row by row. Each graph is walked as broadly as its measured breadth says
(``breadth``): the recall@10 promised, default 0.99, holds for the data it holds.

Readers take a snapshot (an immutable mapping of shards) and never lock; writers build new
segments and publish a new snapshot in one assignment.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike import durable
from lookalike.durable import crash_point
from lookalike.store import keywords, tiers
from lookalike.store.bodies import merge, scrub
from lookalike.store.breadth import Tune
from lookalike.store.distinct import Distinct, add, top
from lookalike.store.fusion import Fusion, depth, fuse
from lookalike.store.models import Hit, IndexType, Item
from lookalike.store.ranking import best, hits
from lookalike.store.segments import Kept, Segment
from lookalike.store.tiers import Tiers, ordered, swap
from lookalike.store.window import EVERYTHING, Window

log = logging.getLogger(__name__)

KEPT_BY_STORE = ("purge-", "erase-")
"""Files of the store's erasure beside the segments, which a save leaves alone."""
FORMAT_VERSION = 6
"""3: shards of segments with tombstones; 4: graphs over fp16, float32 beside; 5: one graph shared by
the months (views), with its measured breadth; 6: the category and tags columns."""
DEFAULT_RECALL = 0.99
RETIRE_AFTER_S = 2.0
"""How long segments left out of a new snapshot are kept for readers of the old one (a search
takes milliseconds; an export or a scan that holds a snapshot longer releases it itself)."""


@dataclass(frozen=True)
class Snapshot:
    shards: Mapping[str, tuple[Segment, ...]]
    generation: int
    cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    """What searches of this snapshot derive from it once (it never changes): masks and their bits."""

    def segments(self, partitions: Sequence[str] | None = None) -> Iterator[tuple[str, Segment]]:
        for name in sorted(self.shards) if partitions is None else partitions:
            for segment in self.shards.get(name, ()):
                yield name, segment

    def rows(self) -> dict[str, int]:
        return {name: sum(s.live for s in segs) for name, segs in self.shards.items()}

    def bodies(self) -> dict[str, list[Segment]]:
        """Every view of each body, by the body's name, bodies in shard order."""
        found = self.cache.get("bodies")
        if found is None:
            found = {}
            for _, segment in self.segments():
                found.setdefault(segment.name, []).append(segment)
            self.cache["bodies"] = found
        return found

    def kept(self, views: Sequence[Segment]) -> Kept | None:
        """The live rows of these views of one body (None: every row of it), made once per snapshot
        and set of views, with their FAISS selector."""
        key = (views[0].name, *(view.shard for view in views))
        if key not in self.cache:
            alive = views[0].alive.copy() if len(views) > 1 else views[0].alive
            for view in views[1:]:
                alive |= view.alive
            kept = sum(view.live for view in views)
            self.cache[key] = None if kept == len(views[0]) else Kept(alive, kept)
        found: Kept | None = self.cache[key]
        return found


FEW_QUERIES = 16
PLANS_KEPT = 256
"""Windows of whole months (the unfiltered search among them) whose plan a snapshot keeps."""
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


def _blas() -> Any:
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _covers(segment: Segment, window: Window) -> bool:
    """Whether every live row of the view lies inside the window's time."""
    return window.covers(*segment.span)


class ReadIndex:
    """Shards of segments, the Milvus generation they match, and their files."""

    def __init__(
        self,
        folder: Path,
        dim: int,
        index_type: str,
        params: dict[str, Any],
        recall: float = DEFAULT_RECALL,
    ) -> None:
        """``recall``: the recall@10 each graph is walked broadly enough to meet (measured)."""
        self.folder = folder
        self.dim = dim
        self.index_type = IndexType.FLAT if index_type == IndexType.FLAT else IndexType.HNSW
        self.params = dict(params)
        self.recall = recall
        self.tiers = Tiers(self.index_type, self.params, recall)
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
        window: Window = EVERYTHING,
        *,
        ef: int | None = None,
        snap: Snapshot | None = None,
    ) -> list[list[Hit]]:
        """Top-k by inner product per query row among the items in the window, from one snapshot
        (``snap``: this one, else the current one)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        plan = self._plan(window, snap)
        if len(queries) > FEW_QUERIES or _ONE_BLAS_THREAD or all(body.is_graph for body, *_ in plan):
            return self._search(queries, k, plan, ef)
        # A few queries against small matrices: BLAS threads only add their start-up and spin-waits
        # (20× slower on a busy 2-core machine). A graph needs no BLAS: no limit to set (10 µs).
        with _blas().limit(limits=1):
            return self._search(queries, k, plan, ef)

    def keyword_search(
        self, text: str, k: int, window: Window = EVERYTHING, *, snap: Snapshot | None = None
    ) -> list[Hit]:
        """Top-k by BM25 over name, category and tags among the items in the window, from one
        snapshot (``keywords``: derived from its segments, so exact whenever they are)."""
        snap = self.snapshot if snap is None else snap
        found = keywords.search(snap, self._plan(window, snap), text, k)
        return hits(found) if found else []

    def hybrid_search(
        self,
        query: npt.NDArray[np.float32],
        text: str,
        k: int,
        fusion: Fusion,
        window: Window = EVERYTHING,
        *,
        ef: int | None = None,
    ) -> list[Hit]:
        """The k best of the vector and the keyword hits of one snapshot, fused (``fusion``)."""
        snap = self.snapshot
        wanted = depth(k)
        by_vector = self.search(query[None, :], wanted, window, ef=ef, snap=snap)[0]
        return fuse(by_vector, self.keyword_search(text, wanted, window, snap=snap), fusion, k)

    def _plan(self, window: Window, snap: Snapshot | None = None) -> list[tuple[Segment, Kept | None]]:
        """Per body of the snapshot: the rows a search in this window may answer (None: all of them).

        The months of the window are chosen by name; a body whose chosen months lie wholly inside
        the window (the usual case: whole months, no other filter) uses rows (and FAISS selectors)
        made once per snapshot, and the plan itself is kept with the snapshot.
        """
        snap = self.snapshot if snap is None else snap
        if window.nothing:
            return []
        rowwise = window.by_rows
        key = ("plan", window.since, window.until)
        if not rowwise and key in snap.cache:
            cached: list[tuple[Segment, Kept | None]] = snap.cache[key]
            return cached
        chosen: dict[str, list[Segment]] = {}
        whole: dict[str, bool] = {}
        for name, segment in snap.segments():
            if segment.live and window.may_hold(name):
                chosen.setdefault(segment.name, []).append(segment)
                inside = not rowwise and _covers(segment, window)
                whole[segment.name] = whole.get(segment.name, True) and inside
        plan: list[tuple[Segment, Kept | None]] = []
        bodies = snap.bodies()
        for name, views in chosen.items():
            if whole[name] and (len(views) == 1 or len(views) == sum(1 for v in bodies[name] if v.live)):
                plan.append((views[0], snap.kept(views)))
                continue
            base = views[0].alive.copy() if len(views) > 1 else views[0].alive
            for view in views[1:]:
                base |= view.alive
            keep = Kept(views[0].mask(window, base=base))
            if keep.count:
                plan.append((views[0], keep))
        if not rowwise and all(whole.values()) and len(snap.cache) < PLANS_KEPT:
            snap.cache[key] = plan  # its rows are the snapshot's own: nothing more is held
        return plan

    def _search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        plan: list[tuple[Segment, Kept | None]],
        ef: int | None,
    ) -> list[list[Hit]]:
        parts = []
        for body, keep in plan:
            scores, rows = body.search(queries, k, keep, ef)
            if scores.shape[1]:
                parts.append((scores, rows, body))
        return best(queries, k, parts)

    def iter_items(
        self, *, batch_size: int, with_vector: bool, window: Window = EVERYTHING
    ) -> Iterator[list[Item]]:
        snap = self.snapshot  # one state for the whole pass
        if window.nothing:
            return
        for name, segment in snap.segments():
            if not window.may_hold(name):
                continue
            rows = np.flatnonzero(segment.mask(window))
            for start in range(0, len(rows), batch_size):
                yield segment.items(rows[start : start + batch_size], with_vector=with_vector)

    def count(self, window: Window = EVERYTHING) -> int:
        snap = self.snapshot
        if window.nothing:
            return 0
        return sum(
            segment.live if not window.by_rows and _covers(segment, window) else
            int(segment.mask(window).sum())
            for name, segment in snap.segments()
            if window.may_hold(name)
        )  # fmt: skip

    def sources(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, segment in self.snapshot.segments():
            per_code = np.bincount(segment.codes[segment.alive], minlength=len(segment.source_names))
            for name, n in zip(segment.source_names, per_code.tolist(), strict=True):
                if n:
                    counts[name] = counts.get(name, 0) + n
        return dict(sorted(counts.items()))

    def distinct(self, names: Sequence[str], limit: int) -> dict[str, Distinct]:
        """Each field's most frequent values among the live rows, counted once per snapshot."""
        snap = self.snapshot
        key = ("distinct", tuple(names), limit)
        found: dict[str, Distinct] | None = snap.cache.get(key)
        if found is None:
            counts: dict[str, dict[str, int]] = {name: {} for name in names}
            for _, segment in snap.segments():
                for name in names:
                    add(counts[name], segment.counts(name))
            found = {name: top(counts[name], limit) for name in names}
            if len(snap.cache) < PLANS_KEPT:
                snap.cache[key] = found
        return found

    def has_text(self, name: str) -> bool:
        """Whether a live row holds a non-empty text in this field (checked once per snapshot)."""
        snap = self.snapshot
        key = ("has_text", name)
        if key not in snap.cache:
            snap.cache[key] = any(segment.has_text(name) for _, segment in snap.segments())
        return bool(snap.cache[key])

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
            if items:  # flat at first: _tiered moves rows into the graph
                shards[name] = shards.get(name, ()) + (Segment.flat(items, name),)
        self.publish(self.tiers.tiered(shards), generation)

    def seal(self) -> bool:
        """Move flat rows into the graphs where they are many enough (``tiers.SEAL_LEAST``, and see
        ``Tiers.fold``); returns whether anything moved. Called at a flush, not per write."""
        if self.index_type != IndexType.HNSW:
            return False
        before = self.snapshot.shards
        shards = self.tiers.tiered(before, seal_at=tiers.SEAL_LEAST)
        changed = {id(s) for segs in shards.values() for s in segs} != {
            id(s) for segs in before.values() for s in segs
        }
        if changed:
            self.publish(shards, self.snapshot.generation)
        return changed

    def replace_shard(self, name: str, items: Sequence[Item] | None, generation: int) -> None:
        """Set one partition's rows (None: the partition is gone: see ``drop``)."""
        if items is None:
            self.drop([name], generation)
            return
        shards = dict(self.snapshot.shards)
        shards.pop(name, None)
        shards[name] = (Segment.flat(items, name),) if items else ()
        self.publish(self.tiers.tiered(shards) if items else shards, generation)

    def drop(self, names: Sequence[str], generation: int) -> None:
        """Forget these partitions. Their rows in a graph shared with other months leave its files too
        (``scrub``: one copy of the graph for all of them, written at the next save): what a drop
        removes is gone from the disk, as it was when each month had files of its own."""
        shards = dict(self.snapshot.shards)
        gone = [segment for name in names for segment in shards.pop(name, ())]
        bodies = self.snapshot.bodies()
        for body in dict.fromkeys(segment.name for segment in gone if segment.is_graph):
            views = [view for view in bodies[body] if view.shard not in names]
            if views:
                shards = swap(shards, views, scrub(views))
        self.publish({name: ordered(segments) for name, segments in shards.items()}, generation)

    def purge(self, name: str) -> None:
        """Rewrite the bodies holding a shard's rows without their dead rows' bytes (they leave the
        files at the next save): a month's flat body without its tombstones, a graph shared by months
        scrubbed in place (its dead rows, of any month, emptied and kept as tombstones)."""
        shards = dict(self.snapshot.shards)
        bodies = self.snapshot.bodies()
        for body in dict.fromkeys(s.name for s in shards.get(name, ())):
            views = bodies[body]
            if len(views[0]) == sum(v.live for v in views):
                continue
            if views[0].is_graph:
                shards = swap(shards, views, scrub(views))
            else:
                shards = swap(shards, views, merge(views, IndexType.FLAT, self.params))
        shards = {shard: ordered(segments) for shard, segments in shards.items()}
        self.publish(shards, self.snapshot.generation)

    def recall_summary(self) -> dict[str, Any]:
        """The recall promised and what was measured, for ``stats``: per graph its rows, its breadth
        (0: every row scored), the recall@10 measured there and its 95% lower bound, on how many
        held-out rows, when; and the rows scored exactly (flat segments, or every row of FLAT)."""
        graphs = []
        exact = 0
        for views in self.snapshot.bodies().values():
            live = sum(view.live for view in views)
            tune = views[0].tune
            if not views[0].is_graph:
                exact += live
                continue
            graphs.append(
                {
                    "rows": len(views[0]),
                    "live": live,
                    "ef": tune.ef if tune else views[0].breadth,
                    "recall_at_10": round(tune.recall, 4) if tune else None,
                    "recall_at_10_bound": round(tune.bound, 4) if tune and tune.queries else None,
                    "sample": tune.queries if tune else 0,
                    "measured_rows": tune.rows if tune else 0,
                    "measured_at": tune.measured_at if tune else None,
                    "scanned": views[0].scanned,
                    "month": {
                        "share": tune.window_share,
                        "ef": tune.window_ef,
                        "recall_at_10": round(tune.window_recall, 4),
                        "recall_at_10_bound": round(tune.window_bound, 4),
                    }
                    if tune and tune.window_share
                    else None,
                }
            )
        return {
            "target_recall_at_10": self.recall,
            "exact": self.index_type == IndexType.FLAT,
            "graphs": sorted(graphs, key=lambda g: -g["rows"]),
            "exact_rows": exact,
        }

    # -- files ----------------------------------------------------------------------------------

    def save(self, extra: Mapping[str, Any] | None = None) -> None:
        """Write new bodies and tombstones, then the state file, atomically; old files go last."""
        with self._save_lock:
            snap = self.snapshot
            self.folder.mkdir(parents=True, exist_ok=True)
            written: set[str] = set()
            shards: dict[str, tuple[Segment, ...]] = {}
            for name, segs in snap.shards.items():
                saved = []
                for segment in segs:  # a body shared by months is written once, by its first view
                    saved.append(segment.save(self.folder, body=segment.name not in written))
                    written.add(segment.name)
                shards[name] = tuple(saved)
            graphs = {
                body: {"norm": views[0].norm, "tune": views[0].tune.to_json() if views[0].tune else None}
                for body, views in snap.bodies().items()
                if views[0].is_graph
            }
            state = {
                "version": FORMAT_VERSION,
                "dim": self.dim,
                "index_type": self.index_type.value,
                "generation": snap.generation,
                "shards": {name: {s.name: s.saved_dead for s in segs} for name, segs in shards.items()},
                "graphs": graphs,
                **(extra or {}),
            }
            crash_point("index.segments_saved")
            durable.write_text(self.folder / "state.json", json.dumps(state, indent=1), step="index.state")
            if self.snapshot is snap:  # no writer published meanwhile: keep the mapped copies
                mapped: dict[str, Segment] = {}
                self.publish(
                    {name: tuple(self._mapped(s, mapped) for s in segs) for name, segs in shards.items()},
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

    def _mapped(self, segment: Segment, bodies: dict[str, Segment]) -> Segment:
        # A freshly built segment lives on the heap; its saved copy is memory-mapped instead (each
        # body once, in ``bodies``). One already mapped is kept as it is (a drop or a delete then
        # saves without reloading anything).
        if segment.mapped:
            return segment
        if segment.name not in bodies:
            bodies[segment.name] = Segment.load(self.folder, segment.name, segment.tune, segment.norm)
        return bodies[segment.name].view(segment.shard, segment.alive, segment.saved_dead)

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
            bodies: dict[str, Segment] = {}
            shards: dict[str, tuple[Segment, ...]] = {}
            for name, segs in state["shards"].items():
                views = []
                for body, dead in segs.items():
                    if body not in bodies:
                        graph = state["graphs"].get(body) or {}
                        tune = Tune.from_json(graph["tune"]) if graph.get("tune") else None
                        bodies[body] = Segment.load(self.folder, body, tune, float(graph.get("norm", 1.0)))
                    views.append(bodies[body].load_view(self.folder, name, int(dead)))
                shards[name] = tuple(views)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError, EOFError, IndexError, AttributeError):
            return None  # a damaged file of the cache (an empty .npy is an EOFError): rebuilt from Milvus
        self.publish(shards, int(state["generation"]))
        self._saved_files = {"state.json", "journal.jsonl"} | {
            f for segs in shards.values() for s in segs for f in s.files()
        }
        self._measure_again()
        return dict(state)

    def _measure_again(self) -> None:
        """Choose again the breadth of graphs measured for another recall than the one promised now
        (the setting changed), from the curve measured with them; the next save records it."""
        bodies = self.snapshot.bodies()
        stale = [
            views
            for views in bodies.values()
            if views[0].tune is not None and views[0].tune.target != self.recall
        ]
        if not stale:
            return
        shards = dict(self.snapshot.shards)
        for views in stale:
            body = views[0]
            assert body.tune is not None
            tune = body.tune.for_target(self.recall)
            chosen = replace(body, tune=tune)
            shards = swap(
                shards, views, {v.shard: chosen.view(v.shard, v.alive, v.saved_dead) for v in views}
            )
            log.warning(
                "read index: a graph of %d rows now walked for recall@10 %s: breadth %s (measured %.4f)",
                len(body),
                self.recall,
                tune.ef or "every row",
                tune.recall,
            )
        self.publish({name: ordered(segs) for name, segs in shards.items()}, self.snapshot.generation)
