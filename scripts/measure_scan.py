"""Measure scan throughput and duplicate detection on synthetic stored vectors (no model, no images).

python scripts/measure_scan.py --vectors 1000000 --task scan
python scripts/measure_scan.py --vectors 100000 --task duplicates
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import FakeEmbedder  # noqa: E402

from lookalike.config import load_settings  # noqa: E402
from lookalike.scan import find_duplicates, scan  # noqa: E402
from lookalike.scan.labels import LabelSet, LabelSpec  # noqa: E402
from lookalike.store import Item, Store, open_store  # noqa: E402
from lookalike.usecases import Context  # noqa: E402

DIM = 512


def fill(store: Store, n: int, rng: np.random.Generator) -> float:
    """Clustered unit vectors over 12 months, 1 % of them near-copies of another; returns insert seconds."""
    centres = rng.normal(size=(256, DIM)).astype(np.float32)
    start = 1_672_531_200  # 2023-01-01
    started = time.perf_counter()
    batch = 10_000
    for first in range(0, n, batch):
        size = min(batch, n - first)
        vectors = centres[rng.integers(0, 256, size)] + 0.6 * rng.normal(size=(size, DIM)).astype(np.float32)
        copies = rng.random(size) < 0.01
        vectors[copies] = vectors[0] + 0.01 * rng.normal(size=(int(copies.sum()), DIM))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        created = rng.integers(start, start + 365 * 86400, size)
        store.insert(
            [
                Item(
                    first + i,
                    f"{first + i:064x}",
                    f"item{first + i}",
                    "",
                    "product",
                    int(created[i]),
                    "",
                    0,
                    0,
                    vectors[i],
                )
                for i in range(size)
            ]
        )
        print(f"\rinserted {first + size}/{n}", end="", flush=True)
    store.flush()
    print()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--task", choices=("scan", "duplicates"), default="scan")
    parser.add_argument("--db", default=None, help="reuse (or create) this Milvus Lite file")
    args = parser.parse_args()
    db = args.db or str(Path(tempfile.mkdtemp(prefix="lookalike-scan-")) / "scan.db")
    store = open_store(db, "images")
    rng = np.random.default_rng(0)
    if not store.exists():
        store.create(DIM)
        seconds = fill(store, args.vectors, rng)
        print(f"insert: {args.vectors} vectors in {seconds:.1f} s = {args.vectors / seconds:.0f} vectors/s")
    total = store.count()
    if args.task == "scan":
        concepts = {f"concept {i}": rng.normal(size=DIM).astype(np.float32) for i in range(5)}
        labels = LabelSet([LabelSpec(name, (name,)) for name in concepts], FakeEmbedder(DIM, concepts))
        started = time.perf_counter()
        rows = sum(1 for _ in scan(store, labels, min_score=-1.0))
        seconds = time.perf_counter() - started
        print(
            f"scan: {rows} of {total} stored vectors scored against 5 labels in {seconds:.1f} s "
            f"= {rows / seconds:.0f} vectors/s"
        )
        started = time.perf_counter()
        window = sum(1 for _ in scan(store, labels, min_score=-1.0, since=1_700_352_000, until=1_700_784_000))
        print(
            f"scan of a 5-day window (19-23 Nov 2023): {window} items in {time.perf_counter() - started:.2f} s"
        )
    else:
        service = Context(load_settings(db=db), embedder=FakeEmbedder(DIM), store=store)
        started = time.perf_counter()
        groups = find_duplicates(service.store, threshold=0.95)
        seconds = time.perf_counter() - started
        print(f"duplicates: {len(groups)} groups among {total} vectors in {seconds:.1f} s")


if __name__ == "__main__":
    main()
