"""How bodies of rows are made: built, grown into a copy of a graph, merged, scrubbed.

A body never changes once built (see ``segments``): new rows make a new body. A graph body is
measured for the recall promised as it is built (``breadth``): a sample of the rows it is given is
held out of it, searched for, and added last. Growing a graph copies it (readers may still walk the
old one) and measures it again once it has grown by a quarter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lookalike.store import breadth, segments
from lookalike.store.breadth import LEAST_SAMPLE, SAMPLE, WALK_WHOLE
from lookalike.store.models import IndexType
from lookalike.store.segments import PARTITION, Mask, Segment, candidates, faiss_module, max_norm
from lookalike.store.vectorfile import VectorFile

LEAST_M = 32
"""Links per row of a graph (level 0 holds twice as many). One graph holds every month, and with M 16
(Milvus' default) 1M clustered 512-d rows plateaued at recall@10 0.99 however broadly they were walked
(a percent of the neighbours of new queries out of reach), so the promise of 0.99 fell back to scoring
every row (75 ms); FAISS's HNSW with M 32 over the same rows reached it at a breadth of 96. At 512-d
the links cost 256 bytes a row beside 1,024 of fp16 codes."""


def build_index(vectors: npt.NDArray[np.float32], index_type: str, params: dict[str, Any]) -> Any:
    """A flat segment's vectors are a plain matrix (scored by one BLAS product); larger approximate
    segments get an HNSW graph over fp16 codes."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if index_type == IndexType.FLAT or len(vectors) < segments.GRAPH_FROM:
        return vectors
    index = new_graph(int(vectors.shape[1]), params)
    _add(index, vectors)
    return index


def new_graph(dim: int, params: dict[str, Any]) -> Any:
    """An empty HNSW graph over fp16 codes. Every approximate Milvus index type is served by an HNSW
    graph here: on one machine it is the fastest at high recall. fp16 needs no training data and has
    no range to clip to. It links each row to at least ``LEAST_M`` others, whatever ``M`` the
    collection asked for."""
    faiss = faiss_module()
    links = max(int(params.get("M", 16)), LEAST_M)
    index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, links, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(params.get("efConstruction", 100))
    index.train(np.zeros((1, dim), dtype=np.float32))  # fp16 learns nothing
    return index


def _live(segments: Sequence[Segment]) -> tuple[list[pa.Table], npt.NDArray[np.float32]]:
    """The live rows of these views: their column tables (partition included) and one matrix of
    their vectors."""
    tables, vectors = [], []
    for segment in segments:
        rows = np.flatnonzero(segment.alive)
        tables.append(segment.table.take(pa.array(rows, type=pa.int64())))
        vectors.append(segment.vectors(rows))
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, 1), np.float32)
    return tables, np.ascontiguousarray(matrix, dtype=np.float32)


def _owned(graph: Segment) -> Any:
    """A heap copy of a graph: FAISS cannot change a memory-mapped graph (nor a clone of one)."""
    faiss = faiss_module()
    if graph.folder is not None:
        return faiss.read_index(str(graph.folder / f"{graph.name}.faiss"))
    return faiss.clone_index(graph.index)


def _all_floats(graph: Segment, rows: int | None = None) -> npt.NDArray[np.float32]:
    """A graph body's float32 vectors on the heap, in a matrix of ``rows`` rows (the rest left for
    the caller to fill)."""
    floats = np.empty((rows or len(graph), graph.storage.d), dtype=np.float32)
    if isinstance(graph.floats, VectorFile):
        graph.floats.read_into(floats[: len(graph)])
    else:
        floats[: len(graph)] = graph.floats
    return floats


def _union(views: Sequence[Segment]) -> Mask:
    live = np.zeros(len(views[0]), dtype=bool)
    for view in views:
        live |= view.alive
    return live


def _hold_out(matrix: npt.NDArray[np.float32], held: int) -> npt.NDArray[np.int64]:
    """Move a random sample of ``held`` rows of ``matrix`` to its end, in place, each swapped with a
    row there (the others keep their places); returns the order of the rows now (for the columns)."""
    count = len(matrix)
    order = np.arange(count)
    sample = np.random.default_rng(count).choice(count, held, replace=False)  # the same rows each time
    tail = np.arange(count - held, count)
    out, into = np.setdiff1d(sample, tail), np.setdiff1d(tail, sample)
    order[out], order[into] = into, out
    matrix[out], matrix[into] = matrix[into], matrix[out]
    return order


def _held(rows: int, share: int = 8) -> int:
    """Rows of ``rows`` new ones to hold out of a graph to measure it (0: too few to measure): an
    eighth of a new graph's rows, up to ``SAMPLE``; half of the rows added to a grown one (a flush adds
    as few as 256)."""
    held = min(SAMPLE, rows // share)
    return held if held >= LEAST_SAMPLE else 0


def _month(table: pa.Table, rows: int) -> Mask | None:
    """The first ``rows`` rows' largest month holding at most half of them (measured as a window)."""
    parts = table.column(PARTITION).slice(0, rows).combine_chunks().dictionary_encode()
    codes = segments.integers(parts.indices, np.int32)
    counts = np.bincount(codes, minlength=len(parts.dictionary))
    counts[counts * 2 > rows] = 0
    return codes == int(counts.argmax()) if counts.any() else None


def _add(index: Any, matrix: npt.NDArray[np.float32]) -> None:
    for start in range(0, len(matrix), 50_000):
        index.add(matrix[start : start + 50_000])


def _graph(
    table: pa.Table, matrix: npt.NDArray[np.float32], params: dict[str, Any], target: float | None
) -> Segment:
    """A graph body of these rows (``matrix`` is its own: rows may move), measured for ``target``:
    built without a held-out sample of them, searched with the sample, then the sample added."""
    name = f"s{uuid.uuid4().hex[:16]}"
    held = _held(len(matrix)) if target is not None and len(matrix) > WALK_WHOLE else 0
    if not held:
        index = build_index(matrix, IndexType.HNSW, params)
        tune = breadth.exact(target, len(matrix)) if target is not None else None
        return Segment.of(name, table, index, matrix, tune)
    assert target is not None
    table = table.take(pa.array(_hold_out(matrix, held), type=pa.int64()))
    index = new_graph(int(matrix.shape[1]), params)
    kept = len(matrix) - held
    _add(index, matrix[:kept])
    live = np.ones(kept, dtype=bool)
    window = _month(table, kept)
    want = candidates(breadth.K)
    tune = breadth.measure(index, matrix[:kept], live, matrix[kept:], target, want=want, window=window)
    _add(index, matrix[kept:])
    return Segment.of(name, table, index, matrix, tune)


def extend(
    views: Sequence[Segment], others: Sequence[Segment], target: float | None = None
) -> dict[str, Segment]:
    """New views of a new graph body: the rows of ``views``' body (every view of it; its tombstones
    kept) followed by the live rows of ``others``, inserted into a copy of its HNSW graph instead of
    building one from scratch. The graph is measured again (``_graph``, the sample held out of the new
    rows) once it has grown by a quarter since it last was; otherwise it keeps its breadth.

    The copy is what keeps snapshots immutable: readers may still be walking the old graph.
    """
    graph = views[0]
    tables, matrix = _live(others)
    old, added = len(graph), len(matrix)
    previous = graph.tune
    held = 0
    if target is not None and (previous is None or previous.stale(old + added)):
        held = _held(added, share=2)
    table = pa.concat_tables(tables).combine_chunks()
    if held:
        table = table.take(pa.array(_hold_out(matrix, held), type=pa.int64()))
    table = pa.concat_tables([graph.table, table]).combine_chunks()
    index = _owned(graph)
    floats = _all_floats(graph, old + added)  # one copy, no more; dead rows keep their place
    floats[old:] = matrix
    kept = added - held
    _add(index, matrix[:kept])
    tune = previous.for_target(target) if previous is not None and target is not None else previous
    if held:
        assert target is not None
        live = np.concatenate([_union(views), np.ones(kept, dtype=bool)])
        window = _month(table, old + kept)
        tune = breadth.measure(
            index,
            floats[: old + kept],
            live,
            matrix[kept:],
            target,
            want=candidates(breadth.K),
            window=window,
        )
    _add(index, matrix[kept:])
    body = Segment.of(
        f"s{uuid.uuid4().hex[:16]}", table, index, floats, tune, norm=max(graph.norm, max_norm(matrix))
    )
    new = np.zeros(len(body), dtype=bool)
    new[old:] = True
    alive = {view.shard: np.concatenate([view.alive, np.zeros(added, dtype=bool)]) for view in views}
    for shard in dict.fromkeys(other.shard for other in others):
        alive[shard] = alive.get(shard, np.zeros(len(body), dtype=bool)) | (new & body.member(shard))
    return {shard: body.view(shard, mask) for shard, mask in alive.items()}


def merge(
    parts: Sequence[Segment], index_type: str, params: dict[str, Any], target: float | None = None
) -> dict[str, Segment]:
    """Views of one new body holding the live rows of these (their tombstones purged); a graph is
    measured for ``target`` (``_graph``)."""
    tables, matrix = _live(parts)
    table = pa.concat_tables(tables).combine_chunks()
    if index_type == IndexType.FLAT or len(matrix) < segments.GRAPH_FROM:
        return Segment.of(f"s{uuid.uuid4().hex[:16]}", table, matrix, matrix).views()
    return _graph(table, matrix, params, target).views()


def scrub(views: Sequence[Segment]) -> dict[str, Segment]:
    """Views of a copy of ``views``' body (every view of it) whose dead rows hold nothing any more:
    vectors and fp16 codes zero, columns empty, the row kept in place as a tombstone.

    The graph's links stay, so erasing a few rows of a large graph costs a copy, not a rebuild.
    """
    body = views[0]
    gone = ~_union(views)
    if not gone.any():
        return {view.shard: view for view in views}
    rows = np.flatnonzero(gone)
    if body.is_graph:
        index = _owned(body)
        storage = faiss_module().downcast_index(index.storage)
        codes = faiss_module().rev_swig_ptr(storage.codes.data(), storage.codes.size())
        codes.reshape(len(body), -1)[rows] = 0
        floats: Any = _all_floats(body)
        floats[rows] = 0.0
    else:
        index = floats = np.array(body.index, dtype=np.float32)
        index[rows] = 0.0
    columns = {}
    for name in body.table.column_names:
        column = body.table.column(name).combine_chunks()
        if name != PARTITION:  # the partition stays: it tells whose tombstone the row is
            empty: Any = "" if pa.types.is_string(column.type) else [] if pa.types.is_list(column.type) else 0
            blank = pa.scalar(empty, column.type)
            column = pc.if_else(pa.array(gone), blank, column)
        columns[name] = column
    table = pa.table(columns, schema=body.table.schema)
    clean = Segment.of(f"s{uuid.uuid4().hex[:16]}", table, index, floats, body.tune, body.norm)
    return {view.shard: clean.view(view.shard, view.alive) for view in views}
