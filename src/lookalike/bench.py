"""`lookalike bench`: ingest, query and search figures measured side by side in one run.

Everything runs on generated data in a temporary folder (or the --db given), so the
figures compare runtimes and backends on the same machine at the same moment.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lookalike.config import Settings
from lookalike.embed import Embedder, create_embedder, l2_normalise
from lookalike.ingest import Ingestor, open_listing
from lookalike.store import Item, MilvusStore, is_server_uri

Say = Callable[[str], None]
QUERIES = [
    "floral top",
    "red leather shoe",
    "blue striped dress",
    "white fluffy dog",
    "萨摩耶",
    "black handbag",
]


@dataclass
class BenchConfig:
    vectors: int = 100_000
    images: int = 256
    image_size: int = 800
    queries: int = 100
    db: str | None = None  # a server URI adds that backend; default: a temporary Milvus Lite file
    indexes: tuple[str, ...] = ("FLAT", "HNSW")
    runtimes: tuple[str, ...] = ("torch-fp32",)
    extra: dict[str, Any] = field(default_factory=dict)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def generate_photos(folder: Path, count: int, size: int, seed: int = 0) -> None:
    """Product-photo-like JPEGs: a background, shapes and noise, so decoding costs what a photo costs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        noise = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
        base = rng.integers(120, 255, 3, dtype=np.uint8)
        image = Image.fromarray(np.clip(noise + base // 2, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(8):
            x0, y0 = (int(v) for v in rng.integers(0, max(1, size - size // 4), 2))
            x1, y1 = (v + int(rng.integers(size // 8 + 1, size // 2 + 2)) for v in (x0, y0))
            draw.ellipse((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        image.save(folder / f"{i:05d}.jpg", quality=90)


def clustered_vectors(n: int, dim: int, seed: int = 0, clusters: int = 1000) -> np.ndarray:
    """Unit vectors around random centres: realistic neighbourhoods, so recall means something."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 50_000):
        size = min(50_000, n - start)
        chunk = centres[rng.integers(0, clusters, size)] + 0.5 * rng.normal(size=(size, dim)).astype(
            np.float32
        )
        out[start : start + size] = chunk
    return l2_normalise(out)


def _fill(store: MilvusStore, vectors: np.ndarray) -> float:
    """Insert the vectors spread over twelve months; returns the seconds taken."""
    start = 1_672_531_200
    created = np.linspace(start, start + 365 * 86400 - 1, len(vectors)).astype(np.int64)
    started = time.perf_counter()
    for first in range(0, len(vectors), 5000):
        batch = [
            Item(i + 1, "", f"v{i}", "", "bench", int(created[i]), "", 0, 0, vectors[i])
            for i in range(first, min(first + 5000, len(vectors)))
        ]
        store.insert(batch)
    store.flush()
    return time.perf_counter() - started


def bench_ingest(
    settings: Settings, config: BenchConfig, work: Path, say: Say
) -> tuple[dict[str, Any], Embedder]:
    photos = work / "photos"
    generate_photos(photos, config.images, config.image_size)
    runtimes: dict[str, Any] = {}
    embedder: Embedder | None = None
    for runtime in config.runtimes:
        embedder = create_embedder(settings)
        embedder.load()
        store = MilvusStore(str(work / f"ingest-{runtime}.db"), "images")
        store.create(embedder.dim, model=embedder.name)
        ingestor = Ingestor(
            embedder, store, chunk_size=max(embedder.batch_size * 4, 64), workers=settings.workers
        )
        report = ingestor.run(open_listing(photos))
        runtimes[runtime] = {"images_per_s": round(report.images_per_s, 2)}
        say(f"ingest {runtime}: {report.images_per_s:.1f} images/s ({report.indexed} images)")
        store.close()
    assert embedder is not None
    return {"model": embedder.name, "images": config.images, "runtimes": runtimes}, embedder


def bench_search(
    store: MilvusStore, vectors: np.ndarray, queries: np.ndarray, index: str, backend: str, say: Say
) -> tuple[dict[str, Any], float]:
    """Single-query latency and recall@10 against exact search; returns the row and insert seconds."""
    store.create(vectors.shape[1], index=index)
    insert_s = _fill(store, vectors)
    started = time.perf_counter()
    store.search(queries[:1], k=10)  # the first query loads the collection and waits for the index
    build_s = time.perf_counter() - started
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] + 1  # ids are row + 1
    latencies, hits = [], 0
    for row, query in enumerate(queries):
        started = time.perf_counter()
        result = store.search(query[None, :], k=10)[0]
        latencies.append((time.perf_counter() - started) * 1000)
        hits += len({hit.item.id for hit in result} & set(exact[row].tolist()))
    index_type, params = store.index()
    entry = {
        "backend": backend,
        "index": index_type,
        "params": params,
        "vectors": len(vectors),
        "dim": int(vectors.shape[1]),
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "recall_at_10": round(hits / (10 * len(queries)), 4),
        "build_s": round(build_s, 3),
    }
    say(
        f"search {backend} {index_type}: p50 {entry['p50_ms']} ms, p99 {entry['p99_ms']} ms, "
        f"recall@10 {entry['recall_at_10']} over {len(vectors)} vectors"
    )
    store.drop()
    return entry, insert_s


def run_bench(settings: Settings, config: BenchConfig, say: Say = lambda line: None) -> dict[str, Any]:
    """Run every measurement and return the JSON-ready results (see README, "Benchmark")."""
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    import torch

    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        }
    }
    result["ingest"], embedder = bench_ingest(settings, config, work, say)
    rng = np.random.default_rng(1)
    vectors = clustered_vectors(config.vectors, embedder.dim)
    # Queries near stored vectors, as a shopper's photo of a stored product would be.
    picks = rng.integers(0, config.vectors, config.queries)
    queries = l2_normalise(
        vectors[picks] + 0.3 * rng.normal(size=(config.queries, embedder.dim)).astype(np.float32)
    )
    backends = [("milvus-lite", str(work / "search.db"))]
    if config.db and is_server_uri(config.db):
        backends.append(("milvus-server", config.db))
    search_rows, insert_rates = [], []
    for backend, uri in backends:
        for index in config.indexes:
            store = MilvusStore(uri, f"bench_{index.lower()}")
            if store.exists():
                store.drop()
            if index.upper() not in {i.value for i in store.supported_indexes}:
                continue
            row, insert_s = bench_search(store, vectors, queries, index, backend, say)
            search_rows.append(row)
            insert_rates.append(len(vectors) / insert_s)
    result["search"] = search_rows
    result["insert"] = {"vectors_per_s": round(statistics.median(insert_rates), 1) if insert_rates else 0.0}
    say(f"insert: {result['insert']['vectors_per_s']} vectors/s")

    # Text query end to end: encode, then search the same vectors with the default (exact) index.
    text_store = MilvusStore(str(work / "text.db"), "images")
    text_store.create(embedder.dim)
    _fill(text_store, vectors)
    encode_ms, total_ms = [], []
    for i in range(config.queries):
        text = QUERIES[i % len(QUERIES)]
        started = time.perf_counter()
        vector = embedder.embed_texts([text])
        encoded = time.perf_counter()
        text_store.search(vector, k=10)
        done = time.perf_counter()
        encode_ms.append((encoded - started) * 1000)
        total_ms.append((done - started) * 1000)
    result["text_query"] = {
        "encode_ms_p50": round(statistics.median(encode_ms), 3),
        "total_ms_p50": round(statistics.median(total_ms), 3),
        "total_ms_p99": round(_percentile(total_ms, 0.99), 3),
    }
    say(
        f"text query: encode p50 {result['text_query']['encode_ms_p50']} ms, total p50 "
        f"{result['text_query']['total_ms_p50']} ms over {config.vectors} vectors"
    )
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result
