"""How broadly a graph is walked: the breadth (efSearch) that meets a stated recall@10, measured.

A fixed breadth keeps recall only on the data it was chosen for: at 100K uniform random vectors the
old default gave recall@10 0.35. So, as autofaiss tunes its indexes, each graph is measured when it
is built, and again once it has grown by a quarter. The measurement holds a sample of the rows out
of the graph: the graph is built without them, they are searched as queries, at increasing
breadths, with the candidates and the float32 re-scoring a search uses, and compared with exact
search over the rows the graph holds; then they are added. (Rows already in the graph make easy
queries: the walk finds the row itself and its links are its neighbours. On 100K clustered vectors
they measured 0.999 at a breadth where held-out queries found 0.98.)

The breadth kept is the smallest whose recall@10 meets the target with 95% confidence (a one-sided
Wilson bound over the sample's 2,560 neighbours), so a sampling accident does not break the
promise. The measured curve is kept with the graph: a new target is met from it without measuring
again. Where walking the graph would take longer than scoring every row of it, or no breadth
measured meets the target, its rows are scored one by one instead (``ef`` 0: exact).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

K = 10
"""The recall promised is recall@10."""
SAMPLE = 256
"""Rows held out to measure a graph (2,560 neighbours: recall 0.99 is measured to about ±0.004)."""
LEAST_SAMPLE = 64
"""Fewer rows than this to hold out (a small growth) measure nothing: the graph keeps its breadth."""
LADDER = (30, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512, 640, 768, 1024, 1280,
          1536, 2048, 2560, 3072, 4096)  # fmt: skip
"""Breadths measured, from the 30 candidates a search of k=10 asks for (a narrower walk is the same walk)."""
CURVE_TO = 0.9995
"""The curve is measured on until this recall, so that any target below it is met from the curve."""
RETUNE_GROWTH = 0.25
"""A grown graph is measured again once it holds this share more rows than when last measured."""
WALK_WHOLE = 256
"""A graph of up to this many rows is scored row by row (exact): nothing to measure."""
Z = 1.645
"""One-sided 95% confidence."""


def lower_bound(recall: float, trials: int) -> float:
    """The one-sided 95% Wilson lower bound of a recall measured over ``trials`` neighbours."""
    if trials <= 0:
        return 0.0
    z2 = Z * Z
    centre = recall + z2 / (2 * trials)
    spread = Z * math.sqrt(recall * (1 - recall) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - spread) / (1 + z2 / trials))


@dataclass(frozen=True)
class Tune:
    """A graph's search breadth, chosen for a target from the recall measured at each breadth."""

    ef: int
    """The breadth; 0: every row is scored (exact; faster than a walk that meets the target)."""
    recall: float
    """recall@10 measured at ``ef`` (for ``ef`` 0, the re-scored fp16 scan's)."""
    target: float
    rows: int
    """Rows of the graph when it was measured."""
    queries: int
    """Rows held out and searched (0: nothing was measured)."""
    curve: tuple[tuple[int, float, float], ...] = ()
    """(breadth, recall@10, ms per query) as measured, narrowest first."""
    scan_ms: float = 0.0
    """ms per query to score every row."""
    scan_recall: float = 1.0
    """recall@10 of scoring every row (fp16 codes, the best re-scored in float32)."""
    measured_at: float = 0.0
    window_share: float = 0.0
    """The share of the graph's rows in the window (one month) also measured (0: none was)."""
    window_curve: tuple[tuple[int, float, float], ...] = ()
    """(breadth, recall@10, ms per query) of walks answering only the window's rows."""
    window_scan_ms: float = 0.0
    window_ef: int = -1
    """The breadth chosen for a search of the window (0: score its rows one by one; -1: not measured)."""
    window_recall: float = 0.0

    @property
    def bound(self) -> float:
        """The recall@10 promised with 95% confidence at ``ef`` (its measured value's lower bound)."""
        return lower_bound(self.recall, K * self.queries)

    @property
    def window_bound(self) -> float:
        return lower_bound(self.window_recall, K * self.queries)

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("curve", "window_curve"):
            data[name] = [list(point) for point in data[name]]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tune:
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        for name in ("curve", "window_curve"):
            fields[name] = tuple((int(ef), float(r), float(ms)) for ef, r, ms in data.get(name, ()))
        return cls(**fields)

    def stale(self, rows: int) -> bool:
        """Whether a graph now holding ``rows`` rows should be measured again."""
        return rows > self.rows * (1 + RETUNE_GROWTH)

    def for_target(self, target: float) -> Tune:
        """This measurement's choice for another target (the same one for the same target)."""
        if target == self.target or not self.queries:
            return self if target == self.target else replace(self, target=target)
        trials = K * self.queries
        ef, recall = pick(self.curve, self.scan_ms, self.scan_recall, target, trials)
        window_ef, window_recall = self.window_ef, self.window_recall
        if self.window_share:
            window_ef, window_recall = pick(self.window_curve, self.window_scan_ms, 1.0, target, trials)
        return replace(
            self, ef=ef, recall=recall, target=target, window_ef=window_ef, window_recall=window_recall
        )

    def breadth(self, rows: int, kept: int) -> int | None:
        """The breadth of a walk answering ``kept`` of the graph's ``rows`` rows (None: score them one
        by one instead). A filter hides rows the walk still passes through. Where a window was
        measured, a filter keeping under half the rows is walked as broadly as the window was
        (widened by the share it hides beyond it); otherwise the unfiltered breadth is widened by the
        share hidden."""
        share = kept / rows
        if self.window_ef < 0 or not self.window_share or share >= 0.5:
            return -(-self.ef * rows // kept) if self.ef else None
        if self.window_ef == 0:
            return None
        wider = self.window_share / share if share < self.window_share else 1.0
        return max(math.ceil(self.window_ef * wider), self.ef)


def pick(
    curve: tuple[tuple[int, float, float], ...],
    scan_ms: float,
    scan_recall: float,
    target: float,
    trials: int,
) -> tuple[int, float]:
    """The narrowest measured breadth whose recall meets ``target`` with 95% confidence and whose walk
    is faster than scoring every row, and its recall; else (0, the scan's recall): score every row."""
    for ef, recall, ms in curve:
        if ms <= scan_ms and lower_bound(recall, trials) >= target:
            return ef, recall
    return 0, scan_recall


def exact(target: float, rows: int) -> Tune:
    """A graph scored row by row: nothing measured, exact."""
    return Tune(0, 1.0, target, rows, 0, measured_at=time.time())


def measure(
    index: Any,
    base: npt.NDArray[np.float32],
    live: npt.NDArray[np.bool_],
    queries: npt.NDArray[np.float32],
    target: float,
    *,
    want: int,
    window: npt.NDArray[np.bool_] | None = None,
) -> Tune:
    """Measure ``index`` (an HNSW graph over ``base``'s rows, which ``queries`` are not among) and
    choose its breadth for ``target``.

    ``live``: the rows a search may answer (others are tombstones, skipped by a selector as a search
    skips them); ``want``: the candidates a search of k=10 asks the graph for; ``window``: the rows of
    one month, measured too as a search of that month walks (answering only them).
    """
    n = len(live)
    kept = int(live.sum())
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    trials = K * len(queries)
    curve, scan_ms, scan_recall = _curve(index, base, live, queries, want, widen=n / kept)
    ef, recall = pick(curve, scan_ms, scan_recall, target, trials)
    tune = Tune(ef, recall, target, n, len(queries), curve, scan_ms, scan_recall, time.time())
    if window is None:
        return tune
    inside = window & live
    share = float(inside.sum()) / n
    if int(inside.sum()) < 10 * K or share > 0.5:
        return tune  # too few rows to measure, or too many to be a window
    curve, scan_ms, scan_recall = _curve(index, base, inside, queries, want, widen=1.0)
    window_ef, window_recall = pick(curve, scan_ms, scan_recall, target, trials)
    return replace(
        tune,
        window_share=round(share, 5),
        window_curve=curve,
        window_scan_ms=scan_ms,
        window_ef=window_ef,
        window_recall=window_recall,
    )


def _curve(
    index: Any,
    base: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_],
    queries: npt.NDArray[np.float32],
    want: int,
    widen: float,
) -> tuple[tuple[tuple[int, float, float], ...], float, float]:
    """recall@10 and ms per query of walks answering ``mask``'s rows at increasing breadths (each
    widened by ``widen``), up to ``CURVE_TO``, the graph's size, or the time of scoring those rows one
    by one; and that time and its recall."""
    from lookalike.store.segments import faiss_module

    faiss = faiss_module()
    n = len(mask)
    truth = _exact(queries, base, mask)
    bitmap = np.packbits(mask, bitorder="little") if not mask.all() else None
    selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)) if bitmap is not None else None
    scanned, scan_ms = _scan(index, queries, want, selector)
    scan_recall = _recall(scanned, queries, base, truth)
    curve: list[tuple[int, float, float]] = []
    for ef in LADDER:
        breadth = max(math.ceil(ef * widen), want)
        params = faiss.SearchParametersHNSW(efSearch=breadth, sel=selector)
        started = time.perf_counter()
        _, found = index.search(queries, want, params=params)
        ms = (time.perf_counter() - started) * 1000 / len(queries)
        recall = _recall(found, queries, base, truth)
        curve.append((ef, round(recall, 5), round(ms, 4)))
        if recall >= CURVE_TO or ms > scan_ms or breadth >= n:
            break
    return tuple(curve), round(scan_ms, 4), round(scan_recall, 5)


def _scan(index: Any, queries: npt.NDArray[np.float32], want: int, selector: Any) -> tuple[Any, float]:
    """Every row scored (the graph's fp16 codes): the candidates, and ms per query."""
    from lookalike.store.segments import faiss_module

    faiss = faiss_module()
    storage = faiss.downcast_index(index.storage)
    started = time.perf_counter()
    _, found = storage.search(queries, want, params=faiss.SearchParameters(sel=selector))
    return found, (time.perf_counter() - started) * 1000 / len(queries)


def _exact(
    queries: npt.NDArray[np.float32], base: npt.NDArray[np.float32], live: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """The exact top K rows per query among the live rows (in chunks: no copy of the matrix; each
    chunk's best K picked by a partition, not a sort)."""
    top_scores = np.full((len(queries), K), -np.inf, np.float32)
    top_rows = np.full((len(queries), K), -1, np.int64)
    chunk = 16_384  # a chunk of scores and its partition: 48 MB for 256 queries
    for start in range(0, len(live), chunk):
        scores = queries @ base[start : start + chunk].T
        scores[:, ~live[start : start + chunk]] = -np.inf
        if scores.shape[1] > K:
            best = np.argpartition(-scores, K - 1, axis=1)[:, :K]
            scores = np.take_along_axis(scores, best, axis=1)
            rows = best + start
        else:
            rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        merged_scores = np.concatenate([top_scores, scores], axis=1)
        merged_rows = np.concatenate([top_rows, rows], axis=1)
        order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :K]
        top_scores = np.take_along_axis(merged_scores, order, axis=1)
        top_rows = np.take_along_axis(merged_rows, order, axis=1)
    return top_rows


def _recall(
    found: npt.NDArray[np.int64],
    queries: npt.NDArray[np.float32],
    base: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
) -> float:
    """recall@K of the graph's candidates once re-scored in float32, as a search re-scores them."""
    hits = total = 0
    for q in range(len(queries)):
        expected = truth[q][truth[q] >= 0]
        candidates = found[q][found[q] >= 0]
        scores = base[candidates] @ queries[q]
        best = candidates[np.argsort(-scores, kind="stable")[:K]]
        hits += len(np.intersect1d(best, expected))
        total += len(expected)
    return hits / total if total else 1.0
