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
