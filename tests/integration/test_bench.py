"""A smoke-size `lookalike bench`: every key of the JSON is there and the figures are sane (no timing asserts)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lookalike.bench import BenchConfig, clustered_vectors, run_bench
from lookalike.config import load_settings
from lookalike.usecases import Context
from tests.cli import lookalike


def test_bench_reports_every_figure(tiny_model: tuple[Path, Path]) -> None:
    config, checkpoint = tiny_model
    settings = load_settings(model=str(config), pretrained=str(checkpoint), workers=2)
    lines: list[str] = []
    result = run_bench(
        Context(settings), BenchConfig(vectors=1500, images=3, image_size=128, queries=5), say=lines.append
    )
    assert set(result) == {
        "machine", "ingest", "text_query", "search", "search_reference", "insert", "peak_rss_mb"
    }  # fmt: skip
    ingest = result["ingest"]
    assert ingest["images"] == 3
    everywhere = {"torch-fp32", "onnx-fp32", "onnx-int8", "onnx-int8-static", "openvino", "openvino-int8"}
    assert everywhere <= set(ingest["runtimes"])
    assert set(ingest["runtimes"]) - everywhere <= {"torch-bf16"}  # only where the CPU has bfloat16
    assert all(entry["images_per_s"] > 0 for entry in ingest["runtimes"].values())
    # Every runtime's stability is reported; the ones auto may choose are stable (whichever this CPU allows).
    assert all(0 < entry["batch_min_cosine"] <= 1 + 1e-6 for entry in ingest["runtimes"].values())
    for tower in ("image", "text"):
        assert ingest["auto"][tower] in ingest["runtimes"]
    assert ingest["runtimes"][ingest["auto"]["image"]]["batch_min_cosine"] >= 0.9999
    machine = result["machine"]
    assert set(machine["extensions"]) == {"AVX2", "AVX-512", "VNNI", "AVX512-BF16", "AMX"}
    assert len(machine["load_average"]) == len(machine["load_average_end"]) == 3
    assert ingest["runtimes"]["onnx-fp32"]["agreement_min_cosine"] >= 0.999
    assert ingest["runtimes"]["onnx-int8"]["agreement_min_cosine"] >= 0.99
    assert ingest["runtimes"]["onnx-int8-static"]["agreement_min_cosine"] >= 0.99
    assert ingest["runtimes"]["openvino"]["agreement_min_cosine"] >= 0.99
    assert ingest["runtimes"]["openvino-int8"]["agreement_min_cosine"] >= 0.99
    assert ingest["fastest"] in ingest["runtimes"]
    assert {"encode_ms_p50", "total_ms_p50", "total_ms_p99"} <= set(result["text_query"])
    assert result["text_query"]["total_ms_p50"] >= result["text_query"]["encode_ms_p50"] > 0
    rows = {(row["backend"], row["index"]): row for row in result["search"]}
    assert set(rows) == {
        ("milvus-lite", "FLAT"),
        ("milvus-lite", "HNSW"),
        ("milvus-lite-direct", "FLAT"),
        ("milvus-lite-direct", "HNSW"),
    }
    # Exact search is exact, through lookalike's copy and through Milvus Lite itself.
    assert (
        rows["milvus-lite", "FLAT"]["recall_at_10"]
        == rows["milvus-lite-direct", "FLAT"]["recall_at_10"]
        == 1.0
    )
    assert rows["milvus-lite", "HNSW"]["recall_at_10"] >= 0.95
    for row in result["search"]:
        assert row["vectors"] == 1500 and row["dim"] == 32
        assert 0 < row["p50_ms"] <= row["p99_ms"] and 0 <= row["recall_at_10"] <= 1 and row["build_s"] >= 0
    # FAISS's own HNSW beside lookalike's, tuned to recall@10 0.99 on the same queries.
    reference = result["search_reference"]
    assert reference["vectors"] == 1500 and 0 < reference["month_rows"] < 1500
    whole, month = reference["unfiltered"], reference["one_month"]
    assert whole["faiss"]["p50_ms"] > 0 and whole["ratio"] > 0 and whole["lookalike"]["recall_at_10"] >= 0.95
    assert month["lookalike"]["recall_at_10"] >= 0.95
    for faiss in (whole["faiss"], month["faiss_selector"], month["faiss_month_index"]):
        assert faiss["recall_at_10"] >= 0.99 or faiss["ef"] == 4096
    assert any("FAISS HNSWFlat" in line for line in lines)
    assert result["insert"]["vectors_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert any("recall@10" in line for line in lines)
    json.dumps(result)  # JSON-ready


def test_clustered_vectors_are_unit_length_and_clustered() -> None:
    vectors = clustered_vectors(2000, 16, clusters=10)
    assert vectors.shape == (2000, 16)
    assert abs(float((vectors**2).sum(axis=1).mean()) - 1) < 1e-5
    # Neighbours share a cluster: the nearest other vector is much closer than a random one.
    sims = vectors[:50] @ vectors.T
    sims[range(50), range(50)] = -1
    assert float(sims.max(axis=1).mean()) > float(sims.mean()) + 0.3


def test_bench_command_writes_its_json(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    config, checkpoint = tiny_model
    out = tmp_path / "bench.json"
    run = lookalike(
        dict(os.environ),
        "bench",
        "--vectors",
        "500",
        "--images",
        "2",
        "--image-size",
        "64",
        "--queries",
        "3",
        "--model",
        str(config),
        "--pretrained",
        str(checkpoint),
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert "insert (vectors/s)" in run.stdout and "onnx-int8-static" in run.stdout
    assert "CPU vector extensions" in run.stdout and "runtime chosen" in run.stdout
    assert json.loads(out.read_text())["search"][0]["vectors"] == 500
