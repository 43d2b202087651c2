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
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from lookalike.bench_search import created_at, search_figures
from lookalike.embed import Embedder, family_of, l2_normalise
from lookalike.store import Item, ServerStore, Store, is_server_uri

if TYPE_CHECKING:
    from lookalike.usecases.context import Context

Say = Callable[[str], None]
QUERIES = [
    "floral top",
    "red leather shoe",
    "blue striped dress",
    "white fluffy dog",
    "萨摩耶",
    "black handbag",
]


def default_runtimes() -> tuple[str, ...]:
    """Every runtime that can run here: PyTorch's bfloat16 only where the CPU multiplies it natively."""
    from lookalike.embed.runtimes import bf16_is_fast, openvino_installed

    return (
        "torch",
        "onnx",
        "onnx-int8",
        "onnx-int8-static",
        *(("torch-bf16",) if bf16_is_fast() else ()),
        *(("openvino", "openvino-int8") if openvino_installed() else ()),
    )


@dataclass
class BenchConfig:
    vectors: int = 100_000
    images: int = 256
    image_size: int = 800
    queries: int = 100
    db: str | None = None  # a server URI adds that backend; default: a temporary Milvus Lite file
    indexes: tuple[str, ...] = ("FLAT", "HNSW")
    runtimes: tuple[str, ...] = field(default_factory=default_runtimes)
    direct_queries: int = 20  # Milvus Lite's own search path is slow; 0 skips it
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


def _fill(store: Store, vectors: np.ndarray) -> float:
    """Insert the vectors spread over twelve months; returns the seconds taken."""
    created = created_at(len(vectors))
    started = time.perf_counter()
    for first in range(0, len(vectors), 5000):
        batch = [
            Item(i + 1, "", f"v{i}", "", "bench", int(created[i]), "", 0, 0, vectors[i])
            for i in range(first, min(first + 5000, len(vectors)))
        ]
        store.insert(batch)
    store.flush()
    return time.perf_counter() - started


def _vectors(embedder: Embedder, images: list[Image.Image]) -> np.ndarray:
    return np.concatenate([embedder.embed_images(images), embedder.embed_texts(QUERIES)])


def batch_stability(embedder: Embedder, photos: list[Image.Image], mates: int = 32) -> float:
    """The lowest cosine between a photograph encoded alone and inside a batch of ``mates`` others."""
    others = [photos[(i + 1) % len(photos)].rotate(90 * (1 + i // len(photos))) for i in range(mates)]
    alone = np.concatenate([embedder.embed_images([photo]) for photo in photos])
    batch_size, embedder.batch_size = embedder.batch_size, mates + 1
    try:
        together = np.concatenate([embedder.embed_images([photo, *others])[:1] for photo in photos])
    finally:
        embedder.batch_size = batch_size
    return float(np.sum(alone * together, axis=1).min())


def runtime_context(ctx: Context, work: Path, runtime: str, **settings: Any) -> Context:
    """A context like ``ctx`` (the CLI's), with this runtime and its own collection under ``work``.

    Its embedder, store and workflow are built the way every command builds them (usecases/context.py).
    """
    from lookalike.usecases.context import Context

    db = str(work / f"ingest-{runtime}.db")
    return Context(
        ctx.settings.model_copy(update={"runtime": runtime, "db": db, "collection": "images", **settings})
    )


def bench_ingest(ctx: Context, config: BenchConfig, work: Path, say: Say) -> tuple[dict[str, Any], Embedder]:
    """End-to-end ingest (``lookalike index``: read, hash, decode, preprocess, encode, insert) with each runtime.

    Returns the figures and the embedder of the settings' own runtime (``auto`` by default),
    which the text-query measurement uses.
    """
    from lookalike.embed.probe import probe_photos
    from lookalike.usecases import ingest

    photos = work / "photos"
    generate_photos(photos, config.images, config.image_size)
    samples = [Image.open(path).convert("RGB") for path in sorted(photos.iterdir())[:8]]
    natural = probe_photos()  # agreement and stability are measured on photographs, not generated data
    runtimes: dict[str, Any] = {}
    reference: tuple[str, np.ndarray] | None = None
    name = ""
    served = family_of(ctx.settings.model).runtimes
    asked = [requested for requested in config.runtimes if requested in served]
    if left_out := [requested for requested in config.runtimes if requested not in served]:
        say(f"{ctx.settings.model} does not run on {', '.join(left_out)}: left out")
    for step, requested in enumerate(asked, start=1):
        say(f"[{step}/{len(asked)}] ingest with --runtime {requested}: {config.images} generated JPEGs …")
        run = runtime_context(ctx, work, requested)
        try:
            embedder = run.embedder
            embedder.load()
            label, name = embedder.runtime, embedder.name
            # One full batch first, for every runtime alike: the first call of a runtime allocates
            # its buffers and picks kernels, which a 96-image run would otherwise count.
            warm = [embedder.prepare_image(samples[i % len(samples)]) for i in range(embedder.batch_size)]
            embedder.embed_prepared(warm)
            report = ingest.index(run, str(photos), source="bench")
        finally:
            run.close()
        entry: dict[str, Any] = {
            "images_per_s": round(report.images_per_s, 2),
            "batch_min_cosine": round(batch_stability(embedder, natural), 6),
        }
        # Agreement: the lowest cosine with the first runtime over the photographs and the queries.
        vectors = _vectors(embedder, natural)
        note = f", alone vs in a batch of 32 ≥ {entry['batch_min_cosine']}"
        if reference is None:
            reference = (label, vectors)
        else:
            entry["agreement_min_cosine"] = round(float(np.sum(reference[1] * vectors, axis=1).min()), 5)
            note += f", cosine with {reference[0]} ≥ {entry['agreement_min_cosine']}"
        runtimes[label] = entry
        del embedder, run  # one model in memory at a time
        say(f"ingest {label}: {report.images_per_s:.1f} images/s ({report.indexed} images{note})")
    fastest = max(runtimes, key=lambda label: runtimes[label]["images_per_s"])
    base = runtimes.get("torch-fp32", {}).get("images_per_s")
    if base:
        for entry in runtimes.values():
            entry["speedup_vs_torch"] = round(entry["images_per_s"] / base, 2)
    chosen = runtime_context(ctx, work, ctx.settings.runtime, probe="now").embedder  # the choice it reports
    chosen.load()
    choice = chosen.runtime_choice
    say(
        f"--runtime {ctx.settings.runtime} chose {choice['image']} (image tower), {choice['text']} (text tower)"
    )
    result = {
        "model": name,
        "images": config.images,
        "runtimes": runtimes,
        "fastest": fastest,
        "auto": choice,
    }
    return result, chosen


def _time_search(store: Store, vectors: np.ndarray, queries: np.ndarray) -> tuple[list[float], float]:
    """Single-query latencies (ms) and recall@10 against exact search."""
    # The true ten nearest, as sets (order is not compared); ids are row + 1.
    exact = np.argpartition(-(queries @ vectors.T), 10, axis=1)[:, :10] + 1
    latencies, hits = [], 0
    for row, query in enumerate(queries):
        started = time.perf_counter()
        result = store.search(query[None, :], k=10)[0]
        latencies.append((time.perf_counter() - started) * 1000)
        hits += len({hit.item.id for hit in result} & set(exact[row].tolist()))
    return latencies, hits / (10 * len(queries))


def _search_row(
    store: Store, backend: str, vectors: np.ndarray, queries: np.ndarray, build_s: float, say: Say
) -> dict[str, Any]:
    latencies, recall = _time_search(store, vectors, queries)
    index_type, params = store.index()
    entry = {
        "backend": backend,
        "index": index_type,
        "params": params,
        "vectors": len(vectors),
        "dim": int(vectors.shape[1]),
        "queries": len(queries),
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "recall_at_10": round(recall, 4),
        "build_s": round(build_s, 3),
    }
    say(
        f"search {backend} {index_type}: p50 {entry['p50_ms']} ms, p99 {entry['p99_ms']} ms, "
        f"recall@10 {entry['recall_at_10']} over {len(vectors)} vectors"
    )
    return entry


def _fill_and_load(store: Store, vectors: np.ndarray, index: str) -> tuple[float, float]:
    """Create and fill the collection; returns (insert seconds, seconds until the first answer)."""
    store.create(vectors.shape[1], index=index)
    insert_s = _fill(store, vectors)
    started = time.perf_counter()
    store.search(vectors[:1], k=10)  # the first query loads the collection and waits for the index
    return insert_s, insert_s + time.perf_counter() - started


def _text_query(embedder: Embedder, store: Store, count: int) -> dict[str, Any]:
    """Encode a shop query and search with it, end to end, as `lookalike search` does."""
    encode_ms, total_ms = [], []
    for i in range(count):
        text = QUERIES[i % len(QUERIES)]
        started = time.perf_counter()
        vector = embedder.embed_texts([text])
        encoded = time.perf_counter()
        store.search(vector, k=10)
        done = time.perf_counter()
        encode_ms.append((encoded - started) * 1000)
        total_ms.append((done - started) * 1000)
    return {
        "runtime": embedder.runtime,
        "encode_ms_p50": round(statistics.median(encode_ms), 3),
        "total_ms_p50": round(statistics.median(total_ms), 3),
        "total_ms_p99": round(_percentile(total_ms, 0.99), 3),
    }


VECTOR_FLAGS = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "AVX512-BF16": ("avx512_bf16",),
    "AMX": ("amx_tile",),
}


def cpu_extensions() -> dict[str, bool]:
    """Which vector extensions the CPU has (what int8 and bfloat16 kernels need), from /proc/cpuinfo."""
    from lookalike.embed.probe import cpu_info

    flags = cpu_info()[1]
    return {name: any(f in flags for f in names) for name, names in VECTOR_FLAGS.items()}


def cpu_model() -> str:
    """The CPU's model name (figures from two machines compare only with it), else the architecture."""
    from lookalike.embed.probe import cpu_info

    return cpu_info()[0] or platform.processor() or platform.machine()


def run_bench(ctx: Context, config: BenchConfig, say: Say = lambda line: None) -> dict[str, Any]:
    """Run every measurement and return the JSON-ready results (see README, "Benchmark").

    The model is the settings' (the bench makes its own collections); every store is opened by
    ``ctx``, so that a server's credentials, TLS and timeouts reach it.
    """
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    import torch

    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": cpu_model(),
            "extensions": cpu_extensions(),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        }
    }
    machine = result["machine"]
    has = ", ".join(name for name, present in machine["extensions"].items() if present) or "none listed"
    say(
        f"lookalike bench on {machine['processor']} ({machine['cpus']} CPUs; {has}; load {machine['load_average']})"
    )
    result["ingest"], embedder = bench_ingest(ctx, config, work, say)
    # Held-out vectors from the same clusters as queries: a new photo of a kind of product the
    # shop already has, whose neighbours are its cluster (not a near-copy, not noise).
    everything = clustered_vectors(config.vectors + config.queries, embedder.dim)
    vectors, queries = everything[: config.vectors], everything[config.vectors :]
    search_rows: list[dict[str, Any]] = []
    insert_rates: list[float] = []
    lite = str(work / "search.db")
    for index in config.indexes:
        store = ctx.open_store(lite, f"bench_{index.lower()}")
        if index.upper() not in {i.value for i in store.supported_indexes}:
            continue
        say(f"search milvus-lite {index}: inserting {len(vectors)} vectors and building the index …")
        insert_s, build_s = _fill_and_load(store, vectors, index)
        insert_rates.append(len(vectors) / insert_s)
        search_rows.append(_search_row(store, "milvus-lite", vectors, queries, build_s, say))
        if index.upper() == "HNSW":
            # FAISS's own HNSW beside lookalike's, same vectors and queries, unfiltered and one month.
            result["search_reference"] = search_figures(store, vectors, queries, say)
            result["text_query"] = _text_query(embedder, store, config.queries)
            say(
                f"text query ({embedder.runtime}): encode p50 {result['text_query']['encode_ms_p50']} ms, "
                f"total p50 {result['text_query']['total_ms_p50']} ms over {config.vectors} vectors"
            )
        store.close()
        if config.direct_queries:
            # Milvus Lite answering by itself, with the index built inside it.
            say(
                f"search milvus-lite-direct {index}: {config.direct_queries} queries through Milvus Lite itself …"
            )
            # (ServerStore on a .db path: pymilvus' own client, no read index in front of it.)
            direct = ServerStore(lite, f"bench_direct_{index.lower()}")
            _, build_s = _fill_and_load(direct, vectors, index)
            row = _search_row(
                direct, "milvus-lite-direct", vectors, queries[: config.direct_queries], build_s, say
            )
            search_rows.append(row)
            direct.drop()
            direct.close()
    search_rows += bench_server(ctx, config, vectors, queries, say)
    result["search"] = search_rows
    result["insert"] = {"vectors_per_s": round(statistics.median(insert_rates), 1) if insert_rates else 0.0}
    say(f"insert: {result['insert']['vectors_per_s']} vectors/s")
    if "text_query" not in result:
        store = ctx.open_store(str(work / "text.db"), "images")
        _fill_and_load(store, vectors, "FLAT")
        result["text_query"] = _text_query(embedder, store, config.queries)
        store.close()
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def bench_server(
    ctx: Context, config: BenchConfig, vectors: np.ndarray, queries: np.ndarray, say: Say
) -> list[dict[str, Any]]:
    """Search figures of the Milvus server ``config.db`` names (none without one), through ``ctx``'s stores."""
    rows: list[dict[str, Any]] = []
    if not (config.db and is_server_uri(config.db)):
        return rows
    for index in config.indexes:
        store = ctx.open_store(config.db, f"bench_{index.lower()}")
        try:
            if store.exists():
                store.drop()
            _, build_s = _fill_and_load(store, vectors, index)
            rows.append(_search_row(store, "milvus-server", vectors, queries, build_s, say))
            store.drop()
        finally:
            store.close()
    return rows
