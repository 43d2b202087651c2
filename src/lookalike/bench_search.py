"""Vector search beside its reference: lookalike's store and FAISS's ``IndexHNSWFlat``, same vectors,
same queries, same process, unfiltered and with a one-month window.

The reference is tuned as a user of FAISS would tune it: its search breadth (efSearch) is raised
step by step until recall@10 on these queries reaches the target (0.99), and that breadth's median
latency is the figure. A window is searched two ways by FAISS: the one index with the month's rows
as a selector (what an index over everything can do), and an index built over that month alone (what
a separate index per month gives, at the price of one more index per month).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.store import Store
from lookalike.store.window import Window

START = 1_672_531_200  # 2023-01-01
YEAR = 365 * 86_400
LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
TARGET = 0.99
Say = Callable[[str], None]
Search = Callable[[npt.NDArray[np.float32]], list[int]]


def created_at(rows: int) -> npt.NDArray[np.int64]:
    """The bench's dates: rows spread evenly over twelve months of 2023, in row order."""
    return np.linspace(START, START + YEAR - 1, rows).astype(np.int64)


def one_month(created: npt.NDArray[np.int64]) -> tuple[int, int, npt.NDArray[np.int64]]:
    """A whole month in the middle of the data (June 2023): since, until, and the rows in it."""
    from lookalike.store.partitions import month_start, next_month, partition_for

    since = month_start(partition_for(int(created[len(created) * 5 // 12 + 1])))
    assert since is not None
    until = next_month(since)
    return since, until, np.flatnonzero((created >= since) & (created < until))


def exact_top10(
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """The true ten nearest rows per query (among ``rows``, default all), in chunks."""
    rows = np.arange(len(vectors)) if rows is None else rows
    best_scores = np.full((len(queries), 10), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 10), np.int64)
    for start in range(0, len(rows), 65_536):
        chunk = rows[start : start + 65_536]
        scores = np.concatenate([best_scores, queries @ vectors[chunk].T], axis=1)
        ids = np.concatenate([best_rows, np.broadcast_to(chunk, (len(queries), len(chunk)))], axis=1)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        best_scores, best_rows = np.take_along_axis(scores, top, axis=1), np.take_along_axis(ids, top, axis=1)
    return best_rows


def timed(
    search: Search, queries: npt.NDArray[np.float32], truth: npt.NDArray[np.int64]
) -> tuple[float, float]:
    """Median latency (ms) of one query at a time, and recall@10 against ``truth``."""
    latencies, found = [], 0
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        rows = search(query[None, :])
        latencies.append((time.perf_counter() - started) * 1000)
        found += len(set(rows) & set(expected.tolist()))
    return statistics.median(latencies), found / (10 * len(queries))


def hnsw_flat(vectors: npt.NDArray[np.float32], m: int = 32) -> Any:
    """FAISS's IndexHNSWFlat over these vectors (inner product, efConstruction 100, one thread)."""
    import faiss

    faiss.omp_set_num_threads(1)  # a search is one query at a time, as lookalike's
    index = faiss.IndexHNSWFlat(int(vectors.shape[1]), m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 100
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def tuned(
    index: Any,
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    *,
    selector: Any = None,
    rows: npt.NDArray[np.int64] | None = None,
) -> dict[str, Any]:
    """The narrowest efSearch of ``LADDER`` reaching recall@10 ``TARGET``, and its figures
    (``rows``: what the index's positions stand for, when it holds a subset)."""
    from lookalike.store.segments import faiss_module

    faiss = faiss_module()  # its bundled stubs miss the search parameters
    p50, recall, ef = 0.0, 0.0, LADDER[0]
    for ef in LADDER:
        params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector) if selector is not None else (
            faiss.SearchParametersHNSW(efSearch=ef)
        )  # fmt: skip

        def search(query: npt.NDArray[np.float32], params: Any = params) -> list[int]:
            found = index.search(query, 10, params=params)[1][0]
            found = found[found >= 0]
            return (rows[found] if rows is not None else found).tolist()

        p50, recall = timed(search, queries, truth)
        if recall >= TARGET:
            break
    return {"ef": ef, "p50_ms": round(p50, 4), "recall_at_10": round(recall, 4)}


def search_figures(
    store: Store,
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    say: Say = lambda line: None,
    ids: npt.NDArray[np.int64] | None = None,
) -> dict[str, Any]:
    """lookalike's search (``store``, holding ``vectors`` with ids row + 1 dated by ``created_at``,
    unless ``ids`` says otherwise) beside the FAISS references, unfiltered and for one month."""
    ids = np.arange(1, len(vectors) + 1) if ids is None else ids
    position = {int(i): row for row, i in enumerate(ids.tolist())}
    created = created_at(len(vectors))
    since, until, month = one_month(created)
    truth, month_truth = exact_top10(vectors, queries), exact_top10(vectors, queries, month)

    def ours(since: int | None = None, until: int | None = None) -> Search:
        return lambda query: [
            position[h.item.id] for h in store.search(query, k=10, window=Window(since=since, until=until))[0]
        ]

    say(f"FAISS reference: IndexHNSWFlat M32 over {len(vectors)} vectors …")
    started = time.perf_counter()
    everything = hnsw_flat(vectors)
    build_s = time.perf_counter() - started
    alone = hnsw_flat(vectors[month])
    import faiss

    selector = faiss.IDSelectorRange(int(month[0]), int(month[-1]) + 1)  # the rows are in date order
    figures: dict[str, Any] = {
        "vectors": len(vectors),
        "month_rows": len(month),
        "faiss_build_s": round(build_s, 1),
    }
    for rep in range(2):  # twice, side by side: the second round is the one kept
        p50, recall = timed(ours(), queries, truth)
        reference = tuned(everything, queries, truth)
        window_p50, window_recall = timed(ours(since=since, until=until), queries, month_truth)
        selected = tuned(everything, queries, month_truth, selector=selector)
        separate = tuned(alone, queries, month_truth, rows=month)
        figures["unfiltered"] = {
            "lookalike": {"p50_ms": round(p50, 4), "recall_at_10": round(recall, 4)},
            "faiss": reference,
            "ratio": round(p50 / reference["p50_ms"], 2),
        }
        figures["one_month"] = {
            "lookalike": {"p50_ms": round(window_p50, 4), "recall_at_10": round(window_recall, 4)},
            "faiss_selector": selected,
            "faiss_month_index": separate,
            "ratio_selector": round(window_p50 / selected["p50_ms"], 2),
            "ratio_month_index": round(window_p50 / separate["p50_ms"], 2),
        }
        if rep == 0:
            continue
        say(
            f"search unfiltered: lookalike {p50:.3f} ms at recall@10 {recall:.4f}; FAISS HNSWFlat ef "
            f"{reference['ef']} {reference['p50_ms']:.3f} ms at {reference['recall_at_10']:.4f} "
            f"(x{figures['unfiltered']['ratio']})"
        )
        say(
            f"search one month ({len(month)} rows): lookalike {window_p50:.3f} ms at {window_recall:.4f}; "
            f"FAISS with a selector ef {selected['ef']} {selected['p50_ms']:.3f} ms at "
            f"{selected['recall_at_10']:.4f} (x{figures['one_month']['ratio_selector']}); FAISS over the "
            f"month alone ef {separate['ef']} {separate['p50_ms']:.3f} ms (x{figures['one_month']['ratio_month_index']})"
        )
    return figures
