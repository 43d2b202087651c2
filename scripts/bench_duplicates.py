"""Near-duplicate mining at scale: time and recall of `duplicates`' vector-index search against exhaustive search.

    python scripts/bench_duplicates.py --vectors 1000000            # the issue's 1M × 512-d figures
    python scripts/bench_duplicates.py --vectors 50000 --dim 64 --sample 2000   # a smoke run
    python scripts/bench_duplicates.py --vectors 100000 --store     # through a Milvus Lite store too

Vectors: clustered unit vectors (1,000 topics, as catalog embeddings are), 5% of them near
copies of another row (cosine 0.96–0.995). The search under test is scan/neighbours.py
(k-means inverted file, ``--nprobe`` cells a vector, exact float32 products), then the
grouping (neighbours.leader_groups). Recall: for ``--sample`` random rows, every row of the
whole set within the threshold is found exhaustively (one matrix product per block) and
compared with the pairs the index found. ``--store`` also writes the rows into a Lite
collection and times `find_duplicates` over it (reading the vectors back included).
Prints a JSON line, the CPU model first.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lookalike.scan.neighbours import choose, leader_groups, pairs_within  # noqa: E402

CHUNK = 50_000


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def generate(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered rows, written chunk by chunk into one array (no second copy of the collection)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    vectors = np.empty((n, dim), dtype=np.float32)
    copies = int(n * 0.05)
    for start in range(0, n - copies, CHUNK):
        size = min(CHUNK, n - copies - start)
        chunk = centres[rng.integers(0, 1000, size)] + 0.5 * rng.normal(size=(size, dim)).astype(np.float32)
        vectors[start : start + size] = unit(chunk)
    for start in range(n - copies, n, CHUNK):
        size = min(CHUNK, n - start)
        originals = vectors[rng.integers(0, n - copies, size)]
        noise = unit(rng.normal(size=(size, dim)))
        strength = rng.uniform(0.1, 0.29, size=(size, 1)).astype(np.float32)
        vectors[start : start + size] = unit(originals + strength * noise)
    return vectors


def exhaustive_recall(
    vectors: np.ndarray, found: set[int], sample: np.ndarray, threshold: float
) -> tuple[int, int]:
    """(pairs of the sample within the threshold, how many of them the index found)."""
    n = len(vectors)
    truth = hit = 0
    for start in range(0, len(sample), 1000):
        rows = sample[start : start + 1000]
        for first in range(0, n, 200_000):
            sims = vectors[rows] @ vectors[first : first + 200_000].T
            r, c = np.nonzero(sims >= threshold)
            left, right = rows[r], c.astype(np.int64) + first
            keep = left != right
            keys = np.minimum(left[keep], right[keep]) * n + np.maximum(left[keep], right[keep])
            truth += len(keys)
            hit += sum(1 for k in keys.tolist() if k in found)
    return truth, hit


def through_store(vectors: np.ndarray, threshold: float, nprobe: int | None, say) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from lookalike.scan import find_duplicates
    from lookalike.store import Item, LiteStore

    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-dups-"))
    store = LiteStore(str(work / "bench.db"), "bench")
    store.create(vectors.shape[1])
    started = time.perf_counter()
    for first in range(0, len(vectors), 5000):
        store.insert(
            [
                Item(i + 1, f"{i:064x}", f"v{i}", "", "bench", 1_672_531_200 + i * 30, "", 0, 0, vectors[i])
                for i in range(first, min(len(vectors), first + 5000))
            ]
        )
    store.flush()
    build_s = time.perf_counter() - started
    say(f"  store built in {build_s:.0f} s")
    started = time.perf_counter()
    groups = find_duplicates(store, threshold=threshold, nprobe=nprobe)
    end_to_end = time.perf_counter() - started
    started = time.perf_counter()
    read = sum(len(batch) for batch in store.iter_items(batch_size=8192, with_vector=True))
    read_s = time.perf_counter() - started
    store.close()
    shutil.rmtree(work, ignore_errors=True)
    return {
        "store_build_s": round(build_s, 1),
        "store_duplicates_s": round(end_to_end, 1),
        "store_read_vectors_s": round(read_s, 1),
        "store_rows_read": read,
        "store_groups": len(groups),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--nprobe", type=int, default=None)
    parser.add_argument(
        "--sample", type=int, default=20_000, help="Rows whose pairs are checked exhaustively."
    )
    parser.add_argument("--store", action="store_true", help="Also run `find_duplicates` over a Lite store.")
    args = parser.parse_args()
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    choice = choose(args.vectors, nprobe=args.nprobe)
    say(f"CPU: {cpu_model()} ({os.cpu_count()} cores); {args.vectors} × {args.dim}-d; {choice}")

    started = time.perf_counter()
    vectors = generate(args.vectors, args.dim)
    say(f"  generated in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    pairs = pairs_within(vectors, args.threshold, nprobe=args.nprobe)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    groups = leader_groups(len(vectors), pairs)
    group_s = time.perf_counter() - started
    say(f"  {len(pairs)} pairs in {search_s:.0f} s, {len(groups)} groups in {group_s:.1f} s")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    found = set((pairs.left * len(vectors) + pairs.right).tolist())
    sample = np.sort(
        np.random.default_rng(1).choice(len(vectors), size=min(args.sample, len(vectors)), replace=False)
    )
    started = time.perf_counter()
    truth, hit = exhaustive_recall(vectors, found, sample, args.threshold)
    exact_s = time.perf_counter() - started
    say(f"  exhaustive check of {len(sample)} rows in {exact_s:.0f} s: {hit}/{truth}")
    result = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "vectors": args.vectors,
        "dim": args.dim,
        "threshold": args.threshold,
        "exact": choice.exact,
        "nlist": choice.nlist,
        "nprobe": choice.nprobe,
        "search_s": round(search_s, 1),
        "grouping_s": round(group_s, 2),
        "pairs": len(pairs),
        "groups": len(groups),
        "sample": len(sample),
        "sample_pairs_exhaustive": truth,
        "sample_pairs_found": hit,
        "recall": round(hit / truth, 5) if truth else 1.0,
        "exhaustive_sample_s": round(exact_s, 1),
        "peak_rss_mb": round(rss_mb),
    }
    if args.store:
        result.update(through_store(vectors, args.threshold, args.nprobe, say))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
