"""How broadly a graph is walked: the breadth (efSearch) that meets a stated recall@10, measured.

A fixed breadth keeps recall only on the data it was chosen for: at 100K uniform random vectors the
old default gave recall@10 0.35. So, as autofaiss tunes its indexes, the read index measures each
graph when it is built, and again once it has grown by a quarter: a sample of its stored vectors is
searched through the graph at increasing breadths, with the candidates and the float32 re-scoring a
search uses, and compared with exact search over the graph's live rows (each query's own row left
out). The smallest breadth whose recall@10 meets the target is kept with the graph and saved with
it. Where walking the graph would take longer than scoring every row of it, its rows are scored one
by one instead (exact, ``ef`` 0).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

K = 10
"""The recall promised is recall@10."""
SAMPLE = 256
"""Stored vectors searched to measure a graph (2,560 neighbours: a recall of 0.99 is measured to ±0.004)."""
BREADTHS = (10, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512, 640, 768,
            1024, 1280, 1536, 2048, 3072, 4096)  # fmt: skip
RETUNE_GROWTH = 0.25
"""A grown graph is measured again once it holds this share more rows than when last measured."""
WALK_WHOLE = 256
"""A graph of up to this many rows is walked whole (breadth = its size): exact, and nothing to measure."""


@dataclass(frozen=True)
class Tune:
    """A graph's search breadth and the recall measured with it."""

    ef: int
    """The breadth; 0: every row is scored (the walk was slower than that)."""
    recall: float
    """recall@10 measured at ``ef`` on the sample (1.0 for a graph walked whole or scored row by row)."""
    target: float
    rows: int
    """Rows of the graph when it was measured."""
    queries: int
    """Sample size (0: nothing was measured, the graph is walked whole)."""
    walk_ms: float = 0.0
    scan_ms: float = 0.0
    measured_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tune:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def stale(self, rows: int, target: float) -> bool:
        """Whether a graph now holding ``rows`` rows should be measured again for ``target``."""
        return self.target != target or rows > self.rows * (1 + RETUNE_GROWTH)


def measure(
    index: Any,
    floats: npt.NDArray[np.float32],
    live: npt.NDArray[np.bool_],
    target: float,
    *,
    want: int,
) -> Tune:
    """The smallest breadth of ``index`` (an HNSW graph over ``floats``' rows) meeting ``target``.

    ``live``: the rows a search may answer (others are tombstones, skipped by a selector as a search
    skips them); ``want``: the candidates a search of k=10 asks the graph for.
    """
    from lookalike.store.segments import faiss_module

    n = len(live)
    rows = np.flatnonzero(live)
    now = time.time()
    if n <= WALK_WHOLE or len(rows) <= K + 1:
        return Tune(ef=max(n, K), recall=1.0, target=target, rows=n, queries=0, measured_at=now)
    faiss = faiss_module()
    rng = np.random.default_rng(n)  # the same graph is measured the same way
    picked = np.sort(rng.choice(rows, min(SAMPLE, len(rows)), replace=False))
    queries = np.ascontiguousarray(floats[picked], dtype=np.float32)
    truth = _exact(queries, picked, floats, live)
    bitmap = np.packbits(live, bitorder="little") if len(rows) < n else None
    selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)) if bitmap is not None else None
    storage = faiss.downcast_index(index.storage)
    started = time.perf_counter()
    _, scanned = storage.search(queries, want + 1, params=faiss.SearchParameters(sel=selector))
    scan_ms = (time.perf_counter() - started) * 1000 / len(picked)
    best = Tune(
        0, _recall(scanned, picked, queries, floats, truth), target, n, len(picked), 0.0, scan_ms, now
    )
    for ef in BREADTHS:
        breadth = max(-(-ef * n // len(rows)), want + 1)  # widened for tombstones, as a search is
        params = faiss.SearchParametersHNSW(efSearch=breadth, sel=selector)
        started = time.perf_counter()
        _, found = index.search(queries, want + 1, params=params)
        walk_ms = (time.perf_counter() - started) * 1000 / len(picked)
        if walk_ms > scan_ms:
            break  # scoring every row is faster from here on
        recall = _recall(found, picked, queries, floats, truth)
        if recall >= target:
            return Tune(ef, recall, target, n, len(picked), walk_ms, scan_ms, now)
        if breadth >= n:
            break
    return best


def _exact(
    queries: npt.NDArray[np.float32],
    picked: npt.NDArray[np.int64],
    floats: npt.NDArray[np.float32],
    live: npt.NDArray[np.bool_],
) -> npt.NDArray[np.int64]:
    """The exact top K rows per query among the live rows, its own row left out (in chunks: no copy
    of the matrix)."""
    top_scores = np.full((len(queries), K), -np.inf, np.float32)
    top_rows = np.zeros((len(queries), K), np.int64)
    chunk = 65_536
    for start in range(0, len(live), chunk):
        block = floats[start : start + chunk]
        scores = queries @ block.T
        scores[:, ~live[start : start + chunk]] = -np.inf
        own = (picked >= start) & (picked < start + len(block))
        scores[np.flatnonzero(own), picked[own] - start] = -np.inf
        rows = np.broadcast_to(np.arange(start, start + len(block)), scores.shape)
        merged_scores = np.concatenate([top_scores, scores], axis=1)
        merged_rows = np.concatenate([top_rows, rows], axis=1)
        order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :K]
        top_scores = np.take_along_axis(merged_scores, order, axis=1)
        top_rows = np.take_along_axis(merged_rows, order, axis=1)
    return top_rows


def _recall(
    found: npt.NDArray[np.int64],
    picked: npt.NDArray[np.int64],
    queries: npt.NDArray[np.float32],
    floats: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
) -> float:
    """recall@K of the graph's candidates once re-scored in float32, as a search re-scores them."""
    hits = 0
    for q, row in enumerate(picked):
        candidates = found[q][(found[q] >= 0) & (found[q] != row)]
        exact = floats[candidates] @ queries[q]
        best = candidates[np.argsort(-exact, kind="stable")[:K]]
        hits += len(np.intersect1d(best, truth[q]))
    return hits / (K * len(picked))
