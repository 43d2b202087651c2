"""The Lite store at scale: build time, peak RSS, search latency and recall, and searches during a month drop.

    python scripts/bench_store.py --vectors 1000000          # the issue's 1M × 512-d HNSW figures
    python scripts/bench_store.py --vectors 20000 --dim 64   # a smoke run
    python scripts/bench_store.py --work /tmp/b --measure-only --drop m2023_04   # again, on a kept database
    python scripts/bench_store.py --vectors 100000 --reference   # beside FAISS HNSWFlat, and one month

Vectors are clustered unit vectors spread evenly over twelve months, inserted in time order in
batches of 5,000 (as an ingest would), generated chunk by chunk so that the script itself
holds no second copy of the collection. Recall@10 is against exact search over the same rows,
computed on the fly. One thread searches while a month is dropped; its p99 is the figure the
issue asks for. With --reference, FAISS's IndexHNSWFlat is built over the same vectors in the same
process and tuned to recall@10 0.99, and both answer the same queries unfiltered and for one month
(lookalike/bench_search.py). Prints a JSON line, the CPU model first.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lookalike.bench_search import search_figures  # noqa: E402
from lookalike.store import Item, LiteStore  # noqa: E402

START = 1_672_531_200  # 2023-01-01
YEAR = 365 * 86_400
BATCH = 5_000


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def chunk_vectors(rng: np.random.Generator, centres: np.ndarray, size: int) -> np.ndarray:
    chunk = centres[rng.integers(0, len(centres), size)] + 0.5 * rng.normal(size=(size, centres.shape[1]))
    chunk = chunk.astype(np.float32)
    return chunk / np.linalg.norm(chunk, axis=1, keepdims=True)


def all_vectors(args: argparse.Namespace, centres: np.ndarray) -> np.ndarray:
    """Every stored vector, as ``build`` made them (for the FAISS reference and its exact answers)."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [
            chunk_vectors(rng, centres, min(BATCH, args.vectors - first))
            for first in range(0, args.vectors, BATCH)
        ]
    )


def memory_mb() -> dict[str, float]:
    """Resident memory now: anonymous (heap) and file-backed (memory-mapped segment files)."""
    fields = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                fields[key] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return fields


class Stalls:
    """What can stall a search without being the search: garbage collections and major page faults."""

    def __init__(self) -> None:
        self.gc_ms = 0.0
        self.gc_max_ms = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            took = (time.perf_counter() - self._started) * 1000
            self.gc_ms += took
            self.gc_max_ms = max(self.gc_max_ms, took)

    @staticmethod
    def major_faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def top10(
    best: tuple[np.ndarray, np.ndarray], queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray
) -> tuple:
    """The exact top-10 (scores, ids) per query so far, merged with one more chunk of vectors."""
    scores = np.concatenate([best[0], queries @ vectors.T], axis=1)
    merged = np.concatenate([best[1], np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
    top = np.argsort(-scores, axis=1)[:, :10]
    return np.take_along_axis(scores, top, axis=1), np.take_along_axis(merged, top, axis=1)


def build(args: argparse.Namespace, work: Path, queries: np.ndarray, centres: np.ndarray, say) -> tuple:
    rng = np.random.default_rng(0)
    best = (np.full((len(queries), 10), -np.inf, np.float32), np.zeros((len(queries), 10), np.int64))
    created = np.linspace(START, START + YEAR - 1, args.vectors).astype(np.int64)
    store = LiteStore(str(work / "bench.db"), "bench")
    store.create(args.dim, index=args.index)
    started = time.perf_counter()
    for first in range(0, args.vectors, BATCH):
        size = min(BATCH, args.vectors - first)
        vectors = chunk_vectors(rng, centres, size)
        ids = np.arange(first + 1, first + size + 1)
        best = top10(best, queries, vectors, ids)
        store.insert(
            [
                Item(
                    int(ids[i]), "", f"v{ids[i]}", "", "bench", int(created[first + i]), "", 0, 0, vectors[i]
                )
                for i in range(size)
            ]
        )
        if (first // BATCH) % 20 == 19:
            store.flush()
            say(f"  {first + size} inserted, {time.perf_counter() - started:.0f} s, memory {memory_mb()} MB")
    store.flush()
    build_s = time.perf_counter() - started
    store.close()
    return build_s, best[1]


def exact_ids(store: LiteStore, queries: np.ndarray) -> np.ndarray:
    """The exact top-10 ids per query over everything the store holds (for --measure-only)."""
    best = (np.full((len(queries), 10), -np.inf, np.float32), np.zeros((len(queries), 10), np.int64))
    for batch in store.iter_items(batch_size=20_000, with_vector=True):
        vectors = np.stack([item.vector for item in batch]).astype(np.float32)
        best = top10(best, queries, vectors, np.asarray([item.id for item in batch], np.int64))
    return best[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index", default="HNSW")
    parser.add_argument("--work", default="", help="Folder for the database (default: a temporary one).")
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="Reuse the database a run with --work left there: open, search and drop only.",
    )
    parser.add_argument("--drop", default="m2023_03", help="The month dropped while a thread searches.")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="Also time FAISS IndexHNSWFlat beside it, and a one-month window.",
    )
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="lookalike-bench-store-"))
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    say(f"CPU: {cpu_model()}; {args.vectors} × {args.dim}-d, {args.index}, in {work}")

    centres = np.random.default_rng(0).normal(size=(1000, args.dim)).astype(np.float32)
    queries = chunk_vectors(np.random.default_rng(1), centres, args.queries)
    build_s, best_ids = None, None
    if not args.measure_only:
        build_s, best_ids = build(args, work, queries, centres, say)

    opened = time.perf_counter()
    store = LiteStore(str(work / "bench.db"), "bench")
    store.search(queries[:1], k=10)
    open_s = time.perf_counter() - opened
    if best_ids is None:
        best_ids = exact_ids(store, queries)

    reference = None
    if args.reference:
        reference = search_figures(store, all_vectors(args, centres), queries, say)

    stalls = Stalls()
    faults_before = stalls.major_faults()
    latencies, hits_found = [], 0
    for q in range(args.queries):
        t = time.perf_counter()
        hits = store.search(queries[q : q + 1], k=10)[0]
        latencies.append((time.perf_counter() - t) * 1000)
        hits_found += len({h.item.id for h in hits} & set(best_ids[q].tolist()))
    recall = hits_found / (10 * args.queries)
    search_stalls = {
        "major_page_faults": stalls.major_faults() - faults_before,
        "gc_ms": round(stalls.gc_ms, 1),
        "gc_max_ms": round(stalls.gc_max_ms, 1),
        "slowest_ms": [round(x, 1) for x in sorted(latencies)[-3:]],
        "first_ms": [round(x, 1) for x in latencies[:3]],
    }

    during: list[float] = []
    done = threading.Event()

    def search_while_dropping() -> None:
        i = 0
        while not done.is_set():
            t = time.perf_counter()
            store.search(queries[i % args.queries : i % args.queries + 1], k=10)
            during.append((time.perf_counter() - t) * 1000)
            i += 1

    reader = threading.Thread(target=search_while_dropping)
    reader.start()
    time.sleep(0.5)
    dropped = time.perf_counter()
    store.drop_partitions([args.drop])
    drop_s = time.perf_counter() - dropped
    time.sleep(0.5)
    done.set()
    reader.join()
    rows_after = store.count()
    memory_after = memory_mb()
    store.close()

    result = {
        "cpu": cpu_model(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "vectors": args.vectors,
        "dim": args.dim,
        "index": args.index,
        "build_s": None if build_s is None else round(build_s, 1),
        "insert_per_s": None if build_s is None else round(args.vectors / build_s, 1),
        "open_s": round(open_s, 2),
        "search_ms_p50": round(statistics.median(latencies), 2),
        "search_ms_p99": round(percentile(latencies, 0.99), 2),
        "recall_at_10": round(recall, 4),
        "search_stalls": search_stalls,
        "reference": reference,
        "drop_month_s": round(drop_s, 2),
        "search_during_drop_ms_p50": round(statistics.median(during), 2) if during else None,
        "search_during_drop_ms_p99": round(percentile(during, 0.99), 2),
        "searches_during_drop": len(during),
        "rows_after_drop": rows_after,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_at_end_mb": memory_after,
        "index_folder_mb": round(
            sum(p.stat().st_size for p in (work / "bench.db").rglob("*") if p.is_file()) / 2**20
        ),
    }
    print(json.dumps(result))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
