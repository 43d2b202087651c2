"""Immutable segments of the read index: scalar columns in Arrow, vectors in FAISS, tombstones.

A segment never changes once built; a delete makes a new segment object that shares the
columns and the vector index and carries a new ``alive`` mask. That is what lets a search
hold one consistent view (a snapshot) from its filter mask to its result while writers go on.

A graph segment walks an HNSW graph over half-precision (fp16) copies of its vectors and hands
back a few more candidates than asked; the read index re-scores the best of them with the float32
vectors, read from disk by position (``VectorFile``). The graph and its fp16 codes are
memory-mapped once saved: at 1M vectors they are 1.1 GB resident instead of the 2.2 GB a graph over
float32 vectors made resident, and Milvus Lite already holds a float32 copy of every vector.

A segment is a view: the rows of one partition (month) in a **body** of rows that several months
can share. Each row of a body carries its partition (a column of its table); each month's view has
its own ``alive`` mask, true only for its live rows. Flat bodies (new rows) belong to one month; a
graph body holds the rows of any months, so that a search walks one graph for all months instead
of one per month (twelve walks at 100K cost twelve times one), while a month is still dropped,
counted, rebuilt and erased on its own.
"""

from __future__ import annotations

import bisect
import functools
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.feather as feather

from lookalike import durable
from lookalike.store.breadth import WALK_WHOLE, Tune
from lookalike.store.fields import BY_NAME, Kind
from lookalike.store.models import SCALAR_FIELDS, Item
from lookalike.store.rows import ColumnReader, arrow_schema, from_arrow, to_arrow
from lookalike.store.vectorfile import VectorFile
from lookalike.store.window import Window

SCHEMA = arrow_schema()
PARTITION = "partition"
"""The column of a segment's table naming each row's partition (not a field of an item)."""
EXACT_BELOW = 20_000
"""A filter that keeps fewer rows of a graph segment than this (and under half of them) is answered
exactly over just those rows."""
EF_SEARCH = 64
"""HNSW search breadth for a graph of up to 62,500 vectors (a month's shard of a 750K-a-year shop)."""
SMALL_GRAPH, SMALL_GRAPH_EF = 15_625, 40
"""A graph of up to this many vectors (a month of a 190K-a-year shop) is walked with this breadth."""
GRAPH_FROM = 4096
"""Smaller HNSW segments are searched exactly: a graph pays off only past a few thousand rows."""
PREFETCH_WINDOW = 8 << 20
FEW_ROWS = 64
"""Rows read out of the columns' buffers one by one (``ColumnReader``); more go through Arrow."""
RESCORED = 10
"""Candidates a graph hands back beyond twice the k asked for, to be re-scored in float32 (fp16 scores
are off by about 1e-4, so the true top k is among them)."""
FP16_ERROR = 6e-4
"""A bound on |fp16 score - float32 score| per unit of query norm, for unit stored vectors: each
component is rounded by at most 2^-11 of itself (4.9e-4 over the whole product, by Cauchy-Schwarz),
plus float32 accumulation. Only candidates within twice this of the k-th are re-scored."""

Mask = npt.NDArray[np.bool_]
Rows = npt.NDArray[np.int64]


def faiss_module() -> Any:
    # faiss' bundled stubs miss much of its SWIG API (SearchParametersHNSW, get_xb, ...).
    import faiss

    return faiss


def default_ef(rows: int) -> int:
    """The search breadth for a graph of this size: 40 up to 15,625 vectors, 64 up to 62,500, then
    doubled for every 4× more (128 at 250K). At 100K over twelve months (graphs of about 8,300),
    ef 40 kept recall@10 at 1.0 and walked the months in 2.5 ms p50 against 3.4 ms at 64 (2-core
    Xeon with AMX); ef 32 lost a neighbour in a thousand."""
    if rows <= SMALL_GRAPH:
        return SMALL_GRAPH_EF
    ef, size = EF_SEARCH, 62_500
    while rows > size:
        ef, size = ef * 2, size * 4
    return ef


def candidates(k: int) -> int:
    return 2 * k + RESCORED


class Kept:
    """The rows of a body a search may answer, with FAISS's selector and search parameters over them,
    made once (a snapshot keeps one per window of whole months: see ``Snapshot.kept``)."""

    def __init__(self, mask: Mask, count: int | None = None) -> None:
        self.mask = mask
        self.count = int(mask.sum()) if count is None else count
        self._selector: tuple[Any, Any] | None = None
        self._params: dict[int, Any] = {}

    def selector(self) -> Any:
        found = self._selector
        if found is None:
            faiss = faiss_module()
            bits = np.packbits(self.mask, bitorder="little")  # the selector only points at these bits
            found = self._selector = (bits, faiss.IDSelectorBitmap(len(self.mask), faiss.swig_ptr(bits)))
        return found[1]

    def scan(self) -> Any:
        return self._kept(0, lambda faiss: faiss.SearchParameters(sel=self.selector()))

    def walk(self, breadth: int) -> Any:
        return self._kept(
            breadth, lambda faiss: faiss.SearchParametersHNSW(sel=self.selector(), efSearch=breadth)
        )

    def _kept(self, key: int, make: Any) -> Any:
        found = self._params.get(key)
        if found is None:
            found = self._params[key] = make(faiss_module())
        return found


@dataclass(frozen=True, eq=False)
class Segment:
    """One partition's rows in a body: columns, vectors and which of the rows are its live ones."""

    name: str
    """The body's name (its files); every view of one body has it."""
    table: pa.Table
    index: Any
    alive: Mask
    """This view's live rows: rows of its partition that are not deleted."""
    ids: Rows = field(repr=False)
    created: Rows = field(repr=False)
    codes: npt.NDArray[np.int32] = field(repr=False)
    source_names: tuple[str, ...] = field(repr=False)
    order: Rows = field(repr=False)
    sorted_ids: Rows = field(repr=False)
    parts: npt.NDArray[np.int32] = field(repr=False)
    """Each row's partition, as a position in ``part_names``."""
    part_names: tuple[str, ...] = field(repr=False)
    storage: Any = field(repr=False)
    """A graph's fp16 codes in FAISS, searched exactly under a narrow filter (None for a flat segment,
    whose ``index`` is its matrix)."""
    floats: Any = field(repr=False)
    """A graph's float32 vectors: a matrix until saved, then a ``VectorFile`` (None for a flat segment)."""
    shard: str = ""
    """The partition this view holds the rows of ("" for a body not yet cut into views)."""
    members: int = 0
    """Rows of the body in this view's partition, live or dead."""
    tune: Tune | None = field(default=None, repr=False)
    """A graph's measured search breadth (None for a flat segment)."""
    norm: float = 1.0
    """The largest norm of a graph's vectors (its fp16 scores are off by at most FP16_ERROR times it)."""
    lookups: dict[str, Any] = field(default_factory=dict, repr=False)
    """Indexes of the body's columns made on first use (``rows_of_items``), shared by its views."""
    saved_dead: int = -1
    """How many dead rows the saved tombstone file holds (-1: the segment is not saved)."""
    folder: Path | None = None
    """Where the columns and vectors are memory-mapped from (None: they are on the heap)."""

    @classmethod
    def flat(cls, items: Sequence[Item], shard: str) -> Segment:
        """A view of new rows of one partition, in a flat body of their own (graphs are built from
        flat rows as they gather: ``bodies``)."""
        vectors = np.stack([np.asarray(item.vector, dtype=np.float32) for item in items])
        table = to_arrow(items, SCHEMA)
        table = table.append_column(PARTITION, pa.array([shard] * len(items), pa.string()))
        return cls.of(f"s{uuid.uuid4().hex[:16]}", table, vectors, vectors).view(shard)

    @property
    def mapped(self) -> bool:
        return self.folder is not None

    @property
    def is_graph(self) -> bool:
        return not isinstance(self.index, np.ndarray)

    @classmethod
    def of(
        cls,
        name: str,
        table: pa.Table,
        index: Any,
        floats: Any,
        tune: Tune | None = None,
        norm: float | None = None,
    ) -> Segment:
        """A body (every row alive, no partition of its own yet: see ``view``); ``floats``: a graph's
        float32 vectors (a matrix or a ``VectorFile``), ignored for a flat one; ``norm``: their
        largest norm (measured when not given and ``floats`` is a matrix)."""
        graph = not isinstance(index, np.ndarray)
        if norm is None:
            norm = max_norm(floats) if graph and isinstance(floats, np.ndarray) else 1.0
        table = table.combine_chunks()
        ids = integers(table.column("id"), np.int64)
        encoded = table.column("source").combine_chunks().dictionary_encode()
        parts = table.column(PARTITION).combine_chunks().dictionary_encode()
        order = np.argsort(ids, kind="stable")
        return cls(
            name=name,
            table=table,
            index=index,
            alive=np.ones(len(ids), dtype=bool),
            ids=ids,
            created=integers(table.column("created_at"), np.int64),
            codes=integers(encoded.indices, np.int32),
            source_names=tuple(encoded.dictionary.to_pylist()),
            order=order,
            sorted_ids=ids[order],
            parts=integers(parts.indices, np.int32),
            part_names=tuple(parts.dictionary.to_pylist()),
            storage=_storage(index),
            floats=None if isinstance(index, np.ndarray) else floats,
            members=len(ids),
            tune=tune if graph else None,
            norm=norm,
        )

    def member(self, shard: str) -> Mask:
        """The body's rows of this partition, live or dead."""
        if shard not in self.part_names:
            return np.zeros(len(self), dtype=bool)
        return self.parts == self.part_names.index(shard)

    def view(self, shard: str, alive: Mask | None = None, saved_dead: int = -1) -> Segment:
        """This body's rows of ``shard``: all of them, or those ``alive`` marks (a subset of them)."""
        member = self.member(shard)
        return replace(
            self,
            shard=shard,
            alive=member if alive is None else alive,
            members=int(member.sum()),
            saved_dead=saved_dead,
        )

    def views(self) -> dict[str, Segment]:
        """A view per partition the body holds rows of, every row alive."""
        return {shard: self.view(shard) for shard in self.part_names}

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @cached_property
    def live(self) -> int:
        return int(self.alive.sum())  # alive never changes: a delete makes a new segment

    @property
    def dead(self) -> int:
        """Rows of this view's partition in the body that are deleted."""
        return self.members - self.live

    @cached_property
    def span(self) -> tuple[int, int]:
        """The earliest and latest created_at of the live rows ((0, -1) when none)."""
        created = self.created[self.alive]
        return (int(created.min()), int(created.max())) if len(created) else (0, -1)

    @property
    def breadth(self) -> int:
        """How broadly the graph is walked for k=10 unfiltered: measured, else by its size."""
        if self.tune is not None and self.tune.ef:
            return self.tune.ef
        return default_ef(len(self))

    @property
    def scanned(self) -> bool:
        """Whether the graph's rows are scored one by one (measured faster than walking it)."""
        return self.tune is not None and self.tune.ef == 0

    # -- lookups -----------------------------------------------------------------------------------

    def rows_of(self, ids: npt.NDArray[np.int64]) -> Rows:
        """Positions of the live rows holding these ids (ids absent or dead are left out)."""
        if not len(self) or not len(ids):
            return np.zeros(0, dtype=np.int64)
        sorted_ids = self.sorted_ids
        left = np.searchsorted(sorted_ids, ids, "left")
        counts = np.searchsorted(sorted_ids, ids, "right") - left
        # An id can sit in a grown graph twice: its dead old version and its live new one.
        starts = np.repeat(left, counts)
        offsets = np.arange(len(starts)) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = self.order[starts + offsets]
        return rows[self.alive[rows]]

    def without(self, ids: npt.NDArray[np.int64]) -> Segment:
        """This segment with these ids' rows dead (itself when none of them live here)."""
        rows = self.rows_of(ids)
        if not len(rows):
            return self
        alive = self.alive.copy()
        alive[rows] = False
        return replace(self, alive=alive)

    def mask(self, window: Window, base: Mask | None = None) -> Mask:
        """Live rows inside the window, as Milvus' filter expression (``filters.expression``) would
        choose them (the segment's own ``alive``, not a copy, when nothing filters: callers do not
        change it).

        ``base``: the live rows of several views of the body, instead of this one's."""
        alive = self.alive if base is None else base
        if not window.by_rows and not window.timed:
            return alive
        keep = alive.copy()
        if window.sources is not None:
            wanted = set(window.sources)
            codes = [code for code, name in enumerate(self.source_names) if name in wanted]
            keep &= np.isin(self.codes, np.asarray(codes, dtype=np.int32))
        for spec, values in window.key_fields():
            if spec.kind is Kind.TEXTS:
                keep &= self._holding(spec.name, values)
            else:
                per_row, names = self._encoded(spec.name)
                chosen = set(values)
                wanted_codes = [code for code, name in enumerate(names) if name in chosen]
                keep &= np.isin(per_row, np.asarray(wanted_codes, dtype=np.int32))
        if window.item_ids is not None:
            keep &= self.rows_of_items(window.item_ids)
        if window.since is not None:
            keep &= self.created >= window.since
        if window.until is not None:
            keep &= self.created < window.until
        if window.exclude_ids:
            keep &= ~np.isin(self.ids, np.asarray(window.exclude_ids, dtype=np.int64))
        if window.exclude_item_ids:
            keep &= ~self.rows_of_items(window.exclude_item_ids)
        return keep

    def rows_of_items(self, item_ids: Sequence[str]) -> Mask:
        """The body's rows (live or dead) of these catalog item ids, found in a sorted index of the
        column (made once per body, on first use), not by a pass over it."""
        values, order = self._item_index()
        found = np.zeros(len(self), dtype=bool)
        for item_id in item_ids:
            start, end = bisect.bisect_left(values, item_id), bisect.bisect_right(values, item_id)
            found[order[start:end]] = True
        return found

    def _encoded(self, name: str) -> tuple[npt.NDArray[np.int32], list[str]]:
        """A text column's codes per row and the texts they stand for (made once per body)."""
        found = self.lookups.get(name)
        if found is None:
            encoded = self.table.column(name).combine_chunks().dictionary_encode()
            found = (integers(encoded.indices, np.int32), encoded.dictionary.to_pylist())
            self.lookups[name] = found
        return found

    def _list_codes(self, name: str) -> tuple[Rows, npt.NDArray[np.int32], list[str]]:
        """Each text of a list field (tags) in the body: its row, its code, and the texts the codes stand
        for (made once per body)."""
        found = self.lookups.get(name)
        if found is None:
            import pyarrow.compute as pc

            column = self.table.column(name).combine_chunks()
            owners = integers(pc.list_parent_indices(column).cast(pa.int64()), np.int64)
            encoded = pc.list_flatten(column).dictionary_encode()
            found = (owners, integers(encoded.indices, np.int32), encoded.dictionary.to_pylist())
            self.lookups[name] = found
        return found

    def counts(self, name: str) -> dict[str, int]:
        """How many live rows of this view hold each value of a filter field (``source``, ``category``:
        one per row; a list field such as ``tags``: a row counts once for each of its texts); empty texts
        are left out."""
        if name not in self.table.column_names:
            return {}
        if BY_NAME[name].kind is Kind.TEXTS:
            owners, codes, names = self._list_codes(name)
            per_code = np.bincount(codes[self.alive[owners]], minlength=len(names))
        else:
            per_row, names = (
                (self.codes, list(self.source_names)) if name == "source" else self._encoded(name)
            )
            per_code = np.bincount(per_row[self.alive], minlength=len(names))
        return {text: n for text, n in zip(names, per_code.tolist(), strict=True) if n and text}

    def has_text(self, name: str) -> bool:
        """Whether a live row of this view holds a non-empty text in this field."""
        if name not in self.table.column_names:
            return False
        import pyarrow.compute as pc

        filled = pc.not_equal(pc.utf8_length(self.table.column(name).combine_chunks()), 0)
        return bool(np.asarray(filled.fill_null(False), dtype=bool)[self.alive].any())

    def _holding(self, name: str, texts: Sequence[str]) -> Mask:
        """The body's rows whose list of texts ``name`` (tags) holds one of these at least."""
        owners, codes, names = self._list_codes(name)
        wanted = set(texts)
        hit = np.isin(codes, np.asarray([c for c, n in enumerate(names) if n in wanted], dtype=np.int32))
        rows = np.zeros(len(self), dtype=bool)
        rows[owners[hit]] = True
        return rows

    def _item_index(self) -> tuple[list[str], Rows]:
        found = self.lookups.get("item_id")
        if found is None:
            import pyarrow.compute as pc

            column = self.table.column("item_id")
            order = integers(pc.sort_indices(column).cast(pa.int64()), np.int64)
            found = (column.take(pa.array(order, type=pa.int64())).to_pylist(), order)
            self.lookups["item_id"] = found  # shared by every view of the body (``replace`` keeps it)
        return found

    def items(self, rows: Rows, *, with_vector: bool) -> list[Item]:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) <= FEW_ROWS:  # a search's hits: read from the buffers
            columns = self.reader.read(rows)
        else:  # a batch: Arrow converts many rows faster than a loop over them (lists of texts aside)
            reader = self.reader
            plain = [name for name in reader.names if name not in reader.list_names]
            columns = self.table.select(plain).take(pa.array(rows, type=pa.int64())).to_pydict()
            columns.update(reader.lists(rows))
        return from_arrow(columns, self.vectors(rows) if with_vector else None)

    @cached_property
    def reader(self) -> ColumnReader:
        return ColumnReader(self.table, SCALAR_FIELDS)

    def vectors(self, rows: Rows) -> npt.NDArray[np.float32]:
        """These rows' float32 vectors (a fresh array)."""
        if isinstance(self.floats, VectorFile):
            return self.floats.take(rows)
        matrix = self.index if self.floats is None else self.floats
        return np.ascontiguousarray(matrix[rows], dtype=np.float32)  # fancy indexing copies already

    def rescore(self, query: npt.NDArray[np.float32], rows: Rows) -> npt.NDArray[np.float32]:
        """Exact inner products of one query with these rows (a graph's own scores are fp16's)."""
        return self.vectors(rows) @ query

    # -- search ------------------------------------------------------------------------------------

    def search(
        self, queries: npt.NDArray[np.float32], k: int, keep: Kept | None, ef: int | None
    ) -> tuple[npt.NDArray[np.float32], Rows]:
        """Top-k (scores, rows) per query among the kept rows of the body; rows -1 pad a short answer.

        ``keep``: the rows a search may answer (None: every row of the body). A graph answers
        ``candidates(k)`` rows with fp16 scores, for the caller to ``rescore``."""
        n = len(self)
        kept = n if keep is None else keep.count
        if kept == 0:
            return np.full((len(queries), 0), -np.inf, np.float32), np.zeros((len(queries), 0), np.int64)
        if not self.is_graph:
            scores = queries @ self.index.T  # one BLAS product; filtered rows then drop out
            if keep is not None and kept < n:
                scores[:, ~keep.mask] = -np.inf
            return _top(scores, min(k, kept), np.arange(n, dtype=np.int64))
        filtered = keep if keep is not None and kept < n else None
        want = min(candidates(k), kept)
        # A filter hides rows the walk still passes through: the walk is widened, as measured for a
        # month (``Tune.breadth``), else by the share hidden (an ``ef`` asked for is widened so too).
        tune = self.tune
        if ef or tune is None or (not tune.queries and tune.ef):
            walk: int | None = -(-(ef or self.breadth) * n // kept)
        elif not tune.queries:
            walk = None  # a graph scored row by row, nothing measured
        else:
            walk = tune.breadth(n, kept) if kept < n else (tune.ef or None)
        breadth = max(walk or 0, want)
        # Score every kept row where that is exact and no dearer than the walk: a narrow filter, a graph
        # measured slower to walk than to scan, or a breadth past the graph's size (a walk of a small
        # graph need not reach every row either: HNSW's pruning can leave near-duplicates unlinked).
        exact = (
            (walk is None and not ef) or kept < min(EXACT_BELOW, n // 2) or n <= WALK_WHOLE or breadth >= n
        )
        if exact:
            params = filtered.scan() if filtered is not None else None
            scores, rows = self.storage.search(queries, want, params=params)
        else:
            params = filtered.walk(breadth) if filtered is not None else _unfiltered(breadth)
            scores, rows = self.index.search(queries, want, params=params)
        return scores, rows.astype(np.int64)

    # -- files -------------------------------------------------------------------------------------

    def save(self, folder: Path, *, body: bool = True) -> Segment:
        """Write what is not on disk yet: the body's columns and vectors once (``body``: the first
        view of an unsaved body to be saved writes them), this view's tombstones when they changed.

        Each file is on the disk (fsync'd) when this returns; none is named by the saved state
        until the state file that names it is renamed into place, so a kill leaves only files
        that nothing names (swept by the next save).
        """
        if self.saved_dead < 0 and body:
            feather.write_feather(self.table, folder / f"{self.name}.arrow", compression="uncompressed")
            if self.is_graph:
                faiss_module().write_index(self.index, str(folder / f"{self.name}.faiss"))
                VectorFile.write(folder / f"{self.name}.f32", self.floats)
            else:
                np.save(folder / f"{self.name}.npy", self.index)
            for name in self.body_files():
                durable.fsync_file(folder / name)
        if self.dead != max(self.saved_dead, 0):
            tombstones = folder / self._tombstones(self.dead)
            with durable.replacing_file(tombstones, "wb", step="index.tombstones") as handle:
                np.save(handle, np.flatnonzero(self.member(self.shard) & ~self.alive))
        return replace(self, saved_dead=self.dead)

    def _tombstones(self, dead: int) -> str:
        return f"{self.name}.{self.shard}.dead-{dead}.npy"

    def body_files(self) -> list[str]:
        kept = [f"{self.name}.faiss", f"{self.name}.f32"] if self.is_graph else [f"{self.name}.npy"]
        return [f"{self.name}.arrow", *kept]

    def files(self) -> list[str]:
        return self.body_files() + ([self._tombstones(self.saved_dead)] if self.saved_dead > 0 else [])

    @classmethod
    def load(cls, folder: Path, name: str, tune: Tune | None = None, norm: float = 1.0) -> Segment:
        """A saved body, memory-mapped (cut it into views with ``load_view``)."""
        graph = folder / f"{name}.faiss"
        is_graph = graph.exists()
        files = [
            folder / f"{name}.arrow",
            *((graph, folder / f"{name}.f32") if is_graph else (folder / f"{name}.npy",)),
        ]
        for path in files:
            if not path.is_file():  # missing, or a FIFO or device put there: opening it could hang
                raise ValueError(f"segment {name}: {path.name} is not a regular file")
        for path in files[:2]:
            prefetch(path)
        table = feather.read_table(folder / f"{name}.arrow", memory_map=True)
        floats: VectorFile | None = None
        if is_graph:  # FAISS is imported only where there is a graph (a third of a second)
            faiss = faiss_module()
            index = faiss.read_index(str(graph), faiss.IO_FLAG_MMAP_IFC)
            floats = VectorFile(folder / f"{name}.f32", int(index.d))
            rows = int(index.ntotal) if floats.rows == int(index.ntotal) else -1
        else:
            index = np.load(folder / f"{name}.npy", mmap_mode="r")
            rows = len(index)
        if rows != table.num_rows or PARTITION not in table.column_names:
            raise ValueError(f"segment {name} is inconsistent")
        return replace(cls.of(name, table, index, floats, tune, norm), folder=folder)

    def load_view(self, folder: Path, shard: str, dead: int) -> Segment:
        """This saved body's rows of ``shard``, less the ``dead`` ones its tombstone file lists."""
        alive = self.member(shard)
        if dead:
            path = folder / f"{self.name}.{shard}.dead-{dead}.npy"
            if not path.is_file():
                raise ValueError(f"segment {self.name}: {path.name} is not a regular file")
            rows = np.load(path)
            if len(rows) != dead or not bool(alive[rows].all()):
                raise ValueError(f"segment {self.name}: {path.name} is inconsistent")
            alive = alive.copy()
            alive[rows] = False
        if not alive.any():
            raise ValueError(f"segment {self.name} holds no live rows of {shard}")
        return self.view(shard, alive, saved_dead=dead)


def prefetch(path: Path) -> None:
    """Ask the kernel to read a file that is about to be memory-mapped, in the background.

    A search walks a graph all over: on a cold page cache (after a reboot, or an ingest that wrote
    more than the cache holds) each fault read 4 KB from disk, and the first searches at 1M took 1-2 s
    each. Read ahead in large windows instead, the whole file in a few seconds; it costs no memory
    of the process (page cache, until a search maps a page).
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:  # not Linux: the first searches fault their pages in
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # a missing file is reported by the load itself
    try:
        size = os.fstat(fd).st_size
        for offset in range(0, size, PREFETCH_WINDOW):  # one call reads at most the device's readahead
            advise(fd, offset, PREFETCH_WINDOW, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass  # advice only
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=64)
def _unfiltered(ef: int) -> Any:
    """Search parameters without a filter, made once per breadth: a search only reads them, and
    making them through faiss' Python wrapper cost about 10 µs a month's graph, twelve per query."""
    return faiss_module().SearchParametersHNSW(efSearch=ef)


def integers(column: pa.Array | pa.ChunkedArray, dtype: type[np.signedinteger[Any]]) -> npt.NDArray[Any]:
    """An integer column as a numpy copy, read from its buffer: pyarrow's ``to_numpy`` imports pandas,
    a fifth of a command's start-up (one with nulls, or of another type, still goes through it)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count or not pa.types.is_signed_integer(array.type) or not len(array):
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=dtype)
    values = np.frombuffer(array.buffers()[1], dtype=f"<i{array.type.bit_width // 8}")
    return values[array.offset : array.offset + len(array)].astype(dtype)


def max_norm(matrix: npt.NDArray[np.float32]) -> float:
    """The largest row norm of a matrix (1.0 for none), in chunks."""
    largest = 0.0
    for start in range(0, len(matrix), 65_536):
        block = np.asarray(matrix[start : start + 65_536], dtype=np.float32)
        largest = max(largest, float(np.sqrt(np.einsum("ij,ij->i", block, block).max(initial=0.0))))
    return largest or 1.0


def _storage(index: Any) -> Any:
    return None if isinstance(index, np.ndarray) else faiss_module().downcast_index(index.storage)


def _top(scores: npt.NDArray[np.float32], k: int, rows: Rows) -> tuple[npt.NDArray[np.float32], Rows]:
    """The k best (scores, rows) per query row of a score matrix over ``rows``."""
    kk = min(k, scores.shape[1])
    top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(scores, top, axis=1), rows[top]
