"""A fast in-process read path for Milvus Lite: its vectors in a FAISS index, its columns in Arrow.

Milvus Lite 3.x answers a single query in 100-400 ms at 100K vectors whatever the index:
before it asks FAISS anything, every search walks every stored primary key in Python
(the cross-segment max-seq map and the per-row visibility mask in
``milvus_lite.search.executor_indexed``), and reading rows out materialises each one in
Python (about 2K rows/s). That cost is per call and grows with the collection, so no
choice of index, segment size or search params brings it near a few milliseconds.

LocalIndex keeps a copy of what searches and scans read (the vectors plus the scalar
columns) beside the ``.db`` file and answers those reads itself, with the same filter
semantics as the Milvus expressions. Milvus Lite stays the system of record: every write
goes to it first, the copy is checked against its per-partition row counts when opened,
and a copy that does not match (a crash before the save, a write by another program)
is rebuilt from Milvus. Deleting the folder is always safe.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.feather as feather

from lookalike.store.models import Hit, IndexType, Item, arrow_schema
from lookalike.store.partitions import partition_for

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: the crop columns
EF_SEARCH = 128
"""HNSW search breadth up to 250K vectors (recall@10 1.0 at 100K in `lookalike bench`)."""


def default_ef(rows: int) -> int:
    """The search breadth for a graph of this size: doubled for every 4× more vectors past 250K.

    `lookalike bench` measured recall@10 0.946 at 1M vectors with 128, so a bigger graph
    searches wider.
    """
    ef, size = EF_SEARCH, 250_000
    while rows > size:
        ef, size = ef * 2, size * 4
    return ef


EXACT_BELOW = 20_000
"""A filter that keeps fewer rows than this is answered exactly over just those rows."""

_SCHEMA = arrow_schema()

Fingerprint = dict[str, int]
"""Rows per partition, as Milvus reports them: what a saved copy must match."""


def _faiss() -> Any:
    # faiss' bundled stubs miss much of its SWIG API (SearchParametersHNSW, get_xb, ...).
    import faiss

    return faiss


def _new_faiss_index(dim: int, index_type: str, params: dict[str, Any]) -> Any:
    faiss = _faiss()

    if index_type == IndexType.FLAT:
        return faiss.IndexFlatIP(dim)
    # Every approximate Milvus index type is served by an HNSW graph here: on one machine it
    # is the fastest at high recall, and it needs no training pass over the data.
    index = faiss.IndexHNSWFlat(dim, int(params.get("M", 16)), faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(params.get("efConstruction", 100))
    return index


class LocalIndex:
    """The vectors and scalar columns of one collection, searchable in well under a millisecond."""

    def __init__(self, folder: Path, dim: int, index_type: str, params: dict[str, Any]) -> None:
        self.folder = folder
        self.dim = dim
        self.index_type = IndexType.FLAT if index_type == IndexType.FLAT else IndexType.HNSW
        self.params = dict(params)
        self._index = _new_faiss_index(dim, self.index_type, self.params)
        self._batches: list[pa.RecordBatch] = []
        self._table: pa.Table | None = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._created = np.zeros(0, dtype=np.int64)
        self._source_codes = np.zeros(0, dtype=np.int32)
        self._source_names: dict[str, int] = {}
        self._order: npt.NDArray[np.int64] | None = None
        self._lock = threading.RLock()
        self.dirty = False

    # -- persistence -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        folder: Path,
        *,
        dim: int,
        index_type: str,
        params: dict[str, Any],
        fingerprint: Fingerprint,
        rebuild: Callable[[], Iterable[list[Item]]],
    ) -> LocalIndex:
        """Load the saved copy when it matches Milvus' row counts, else rebuild it from ``rebuild()``."""
        local = cls(folder, dim, index_type, params)
        if local._load(fingerprint):
            return local
        rows = sum(fingerprint.values())
        if rows:
            log.warning("rebuilding the local search index of %s from Milvus (%d items)", folder, rows)
        for batch in rebuild():
            local.add(batch)
        local.save(fingerprint)
        return local

    def _load(self, fingerprint: Fingerprint) -> bool:
        faiss = _faiss()

        state_path = self.folder / "state.json"
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        expected = {
            "version": FORMAT_VERSION,
            "dim": self.dim,
            "index_type": self.index_type.value,
            "fingerprint": {k: v for k, v in fingerprint.items() if v},
        }
        if any(state.get(key) != value for key, value in expected.items()):
            return False
        try:
            table = feather.read_table(self.folder / "columns.arrow")
            index = faiss.read_index(str(self.folder / "vectors.faiss"))
        except (OSError, RuntimeError, pa.ArrowInvalid) as exc:
            log.warning("the local search index in %s is unreadable (%s); rebuilding it", self.folder, exc)
            return False
        if index.ntotal != table.num_rows or index.d != self.dim:
            return False
        self._index = index
        self._batches = table.to_batches()
        self._table = table
        self._ids = table.column("id").to_numpy().astype(np.int64)
        self._created = table.column("created_at").to_numpy().astype(np.int64)
        self._set_sources(table.column("source").to_pylist())
        return True

    def save(self, fingerprint: Fingerprint) -> None:
        """Write the copy atomically: a crash leaves the old copy or the new one, never a mix."""
        faiss = _faiss()

        with self._lock:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            staging = self.folder.with_name(self.folder.name + ".saving")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            feather.write_feather(self.table(), staging / "columns.arrow", compression="uncompressed")
            faiss.write_index(self._index, str(staging / "vectors.faiss"))
            state = {
                "version": FORMAT_VERSION,
                "dim": self.dim,
                "index_type": self.index_type.value,
                "fingerprint": {k: v for k, v in fingerprint.items() if v},
                "rows": len(self),
            }
            (staging / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
            old = self.folder.with_name(self.folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if self.folder.exists():
                os.replace(self.folder, old)
            os.replace(staging, self.folder)
            shutil.rmtree(old, ignore_errors=True)
            self.dirty = False

    # -- writes ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def add(self, items: Sequence[Item]) -> None:
        """Append items (each with its vector); ids already present are left as they are."""
        if not items:
            return
        with self._lock:
            present = set(self._ids[self.rows_of([item.id for item in items])].tolist())
            fresh = [item for item in items if item.id not in present]
            if not fresh:
                return
            vectors = np.stack([np.asarray(item.vector, dtype=np.float32) for item in fresh])
            self._index.add(np.ascontiguousarray(vectors))
            columns = {name: [getattr(item, name) for item in fresh] for name in _SCHEMA.names}
            self._batches.append(pa.record_batch(columns, schema=_SCHEMA))
            self._table = None
            self._ids = np.concatenate([self._ids, np.asarray(columns["id"], dtype=np.int64)])
            self._created = np.concatenate([self._created, np.asarray(columns["created_at"], dtype=np.int64)])
            self._source_codes = np.concatenate(
                [self._source_codes, np.asarray([self._code(s) for s in columns["source"]], np.int32)]
            )
            self._order = None
            self.dirty = True

    def drop_partitions(self, names: Iterable[str]) -> None:
        """Forget the items of whole monthly partitions (the graph is rebuilt without them)."""
        dropped = set(names)
        with self._lock:
            keep = np.array([partition_for(int(c)) not in dropped for c in self._created], dtype=bool)
            if keep.all():
                return
            rows = np.flatnonzero(keep)
            vectors = self.vectors(rows)
            table = self.table().take(pa.array(rows))
            self._index = _new_faiss_index(self.dim, self.index_type, self.params)
            for start in range(0, len(rows), 50_000):
                self._index.add(np.ascontiguousarray(vectors[start : start + 50_000]))
            self._batches = table.to_batches()
            self._table = table
            self._ids = self._ids[rows]
            self._created = self._created[rows]
            self._set_sources(table.column("source").to_pylist())
            self._order = None
            self.dirty = True

    # -- reads -----------------------------------------------------------------------------------

    def table(self) -> pa.Table:
        with self._lock:
            if self._table is None:
                self._table = pa.Table.from_batches(self._batches, schema=_SCHEMA).combine_chunks()
                self._batches = self._table.to_batches()
            return self._table

    def _matrix(self) -> npt.NDArray[np.float32]:
        """All stored vectors, as a view into FAISS' storage (valid until the next add)."""
        faiss = _faiss()

        storage = self._index if self.index_type == IndexType.FLAT else self._index.storage
        flat = faiss.downcast_index(storage)
        n = int(flat.ntotal)
        return faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)

    def vectors(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """A copy of the vectors at these row positions."""
        return np.array(self._matrix()[rows], dtype=np.float32)

    def rows_of(self, ids: Sequence[int]) -> npt.NDArray[np.int64]:
        """Row positions of the ids present, in the order given (absent ids are left out)."""
        with self._lock:
            if self._order is None:
                self._order = np.argsort(self._ids, kind="stable")
            wanted = np.asarray(list(ids), dtype=np.int64)
            sorted_ids = self._ids[self._order]
            positions = np.searchsorted(sorted_ids, wanted)
            positions = np.minimum(positions, max(len(sorted_ids) - 1, 0))
            found = (sorted_ids[positions] == wanted) if len(sorted_ids) else np.zeros(0, bool)
            return self._order[positions[found]]

    def mask(
        self,
        *,
        sources: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
        exclude_ids: Sequence[int] | None = None,
    ) -> npt.NDArray[np.bool_] | None:
        """Rows matching the window, as Milvus' filter would choose them; None means all rows."""
        keep: npt.NDArray[np.bool_] | None = None

        def both(condition: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
            return condition if keep is None else keep & condition

        if sources is not None:
            codes = [self._source_names[s] for s in sources if s in self._source_names]
            keep = both(np.isin(self._source_codes, np.asarray(codes, dtype=np.int32)))
        if since is not None:
            keep = both(self._created >= since)
        if until is not None:
            keep = both(self._created < until)
        if exclude_ids:
            keep = both(~np.isin(self._ids, np.asarray(list(exclude_ids), dtype=np.int64)))
        return keep

    def items(self, rows: npt.NDArray[np.int64], *, with_vector: bool) -> list[Item]:
        with self._lock:
            columns = self.table().take(pa.array(rows, type=pa.int64())).to_pydict()
            vectors = self.vectors(rows) if with_vector else None
        return [
            Item(
                id=columns["id"][i],
                sha256=columns["sha256"][i],
                item_id=columns["item_id"][i],
                name=columns["name"][i],
                source=columns["source"][i],
                created_at=columns["created_at"][i],
                uri=columns["uri"][i],
                width=columns["width"][i],
                height=columns["height"][i],
                parent_sha256=columns["parent_sha256"][i],
                box=columns["box"][i],
                label=columns["label"][i],
                det_score=columns["det_score"][i],
                vector=vectors[i] if vectors is not None else None,
            )
            for i in range(len(rows))
        ]

    def iter_rows(
        self, keep: npt.NDArray[np.bool_] | None, batch_size: int
    ) -> Iterator[npt.NDArray[np.int64]]:
        rows = np.arange(len(self), dtype=np.int64) if keep is None else np.flatnonzero(keep)
        for start in range(0, len(rows), batch_size):
            yield rows[start : start + batch_size]

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        keep: npt.NDArray[np.bool_] | None,
        *,
        ef: int | None = None,
    ) -> list[list[Hit]]:
        """Top-k by inner product for each query row among the kept rows (``ef``: HNSW breadth)."""
        faiss = _faiss()

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:
            n = len(self)
            if n == 0 or (keep is not None and not keep.any()):
                return [[] for _ in queries]
            narrow = keep is not None and int(keep.sum()) < min(EXACT_BELOW, n)
            if narrow or self.index_type == IndexType.FLAT:
                # Exact scores: a narrow filter beats a filtered graph walk this way, and for FLAT
                # one BLAS product uses every core where FAISS scans on one for a single query.
                if narrow:
                    assert keep is not None
                    rows = np.flatnonzero(keep)
                    scores = queries @ self.vectors(rows).T
                else:
                    rows = np.arange(n, dtype=np.int64)
                    scores = queries @ self._matrix().T
                    if keep is not None:
                        scores[:, ~keep] = -np.inf
                kk = min(k, scores.shape[1], len(rows) if keep is None else int(keep.sum()))
                top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
                order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
                top = np.take_along_axis(top, order, axis=1)
                found_rows, found_scores = rows[top], np.take_along_axis(scores, top, axis=1)
            else:
                # The bitmap must outlive the search: the selector only points at it.
                bitmap = np.packbits(keep, bitorder="little") if keep is not None else None
                selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)) if bitmap is not None else None
                params: Any = None
                if self.index_type == IndexType.HNSW:
                    params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef or default_ef(n), k))
                elif selector is not None:
                    params = faiss.SearchParameters(sel=selector)
                found_scores, found_rows = self._index.search(queries, min(k, n), params=params)
            results = []
            for q in range(len(queries)):
                valid = found_rows[q] >= 0
                rows_q = found_rows[q][valid].astype(np.int64)
                scores_q = found_scores[q][valid]
                items = self.items(rows_q, with_vector=False)
                results.append([Hit(float(s), item) for s, item in zip(scores_q, items, strict=True)])
            return results

    # -- source dictionary -----------------------------------------------------------------------

    def _code(self, source: str) -> int:
        code = self._source_names.get(source)
        if code is None:
            code = self._source_names[source] = len(self._source_names)
        return code

    def _set_sources(self, sources: list[str]) -> None:
        self._source_names = {}
        self._source_codes = np.asarray([self._code(s) for s in sources], dtype=np.int32)
