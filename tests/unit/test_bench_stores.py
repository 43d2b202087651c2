"""`lookalike bench --db https://...` opens the server's stores through the shared context, so that
its credentials and TLS reach them (they were dropped when the bench built stores of its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import lookalike.store as store_package
from lookalike.bench import BenchConfig, bench_server, clustered_vectors
from lookalike.config import load_settings
from lookalike.store import LiteStore
from lookalike.usecases import Context
from tests.cli import lookalike

SERVER = "https://milvus.example:19530"


def test_the_bench_opens_a_servers_stores_with_its_token_and_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[tuple[str, str, dict[str, Any]]] = []

    def fake_open_store(uri: str, collection: str, **options: Any) -> LiteStore:
        opened.append((uri, collection, options))
        return LiteStore(str(tmp_path / "stand-in.db"), collection)  # a Lite store stands in for the server

    monkeypatch.setattr(store_package, "open_store", fake_open_store)
    ctx = Context(load_settings(token="root:s3cret", tls_server_name="milvus.internal", timeout_s=7))
    vectors = clustered_vectors(300, 8, clusters=10)
    rows = bench_server(ctx, BenchConfig(db=SERVER, indexes=("FLAT",)), vectors[:290], vectors[290:], print)
    assert [(row["backend"], row["index"], row["vectors"]) for row in rows] == [
        ("milvus-server", "FLAT", 290)
    ]
    ((uri, collection, options),) = opened
    assert (uri, collection) == (SERVER, "bench_flat")
    assert options["token"] == "root:s3cret" and options["timeout_s"] == 7
    assert options["tls"] == {"server_name": "milvus.internal", "secure": "true"}
    assert bench_server(ctx, BenchConfig(db=None), vectors, vectors, print) == []  # no server, no stores


def test_the_bench_command_runs_on_a_context_with_the_environments_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lookalike.bench as bench

    seen: list[Context] = []

    def stop(ctx: Context, config: BenchConfig, say: Any) -> dict[str, Any]:
        seen.append(ctx)
        raise SystemExit(0)

    monkeypatch.setattr(bench, "run_bench", stop)
    env = {"LOOKALIKE_TOKEN": "root:s3cret", "PATH": "/usr/bin:/bin"}
    lookalike(env, "bench", "--db", SERVER, "--vectors", "100")
    (ctx,) = seen
    assert ctx.settings.token == "root:s3cret"


def test_the_bench_ingests_through_the_index_use_case_and_leaves_out_runtimes_the_model_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.bench import bench_ingest
    from lookalike.embed import Family, register, registry
    from lookalike.store import open_store
    from tests.helpers import FakeEmbedder

    monkeypatch.setattr(registry, "_FAMILIES", list(registry.families()))  # registered for this test only
    built: list[str] = []

    def build(settings: Any, weights: str) -> FakeEmbedder:
        built.append(settings.runtime)
        return FakeEmbedder(dim=24)

    register(Family("fake", lambda model: model == "fake-cnn", build, image_only=True))
    ctx = Context(load_settings(model="fake-cnn", db=str(tmp_path / "unused.db"), workers=1))
    lines: list[str] = []
    result, _ = bench_ingest(
        ctx, BenchConfig(images=5, image_size=64, runtimes=("torch", "onnx")), tmp_path, lines.append
    )
    assert built == [
        "torch",
        "auto",
    ]  # onnx is not tried; the last one is the settings' own (the choice it reports)
    assert any("does not run on onnx" in line for line in lines)
    assert list(result["runtimes"]) == ["python"] and result["images"] == 5
    # The ingest went through the index use case into its own collection, with its workflow beside it.
    store = open_store(str(tmp_path / "ingest-torch.db"), "images")
    assert store.count() == 5
    store.close()
    assert (tmp_path / "ingest-torch.db.images.workflow.sqlite").exists()
    assert not (tmp_path / "unused.db").exists()  # the CLI's own database is never touched
