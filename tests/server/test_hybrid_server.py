"""Keyword and hybrid search on a real Milvus 2.3 server, which has neither BM25 nor hybrid search:
a clear error that says what to do, and vector search unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lookalike.config import load_settings
from lookalike.errors import ConfigError
from lookalike.store import open_store
from lookalike.usecases import Context, quality
from tests.cli import lookalike
from tests.helpers import FakeEmbedder
from tests.server.harness import MilvusServer
from tests.store_model import make_item, vector

pytestmark = pytest.mark.slow


def test_a_server_without_bm25_refuses_keyword_and_hybrid_search_saying_what_to_do(
    milvus_server: MilvusServer, tmp_path: Path
) -> None:
    store = open_store(milvus_server.uri, "keywords23")
    if store.exists():
        store.drop()
    store.create(16, index="FLAT")
    items = [make_item(i, name=f"merino wool {i}") for i in range(1, 4)]
    store.insert(items)
    described = {field["name"] for field in store.client.describe_collection("keywords23")["fields"]}
    assert "keywords" not in described  # a 2.3 collection gets no keyword field (it could not be used)
    for search in (
        lambda: store.keyword_search("merino", k=3),
        lambda: store.hybrid_search(vector(1)[None], "merino", k=3),
    ):
        with pytest.raises(ConfigError) as refused:
            search()
        message = str(refused.value)
        assert "Milvus 2.5 or later" in message and "2.3.5" in message
        assert "--db ./lookalike.db" in message and "without --keywords or --hybrid" in message
    assert [hit.item.id for hit in store.search(items[0].vector[None], k=1)[0]] == [1]

    # eval searches its text queries by vectors alone there, and says why once.
    queries = tmp_path / "queries.csv"
    queries.write_text("kind,query,relevant\ntext,merino,sku1\ntext,wool,sku2\n", encoding="utf-8")
    service = Context(
        load_settings(db=milvus_server.uri, collection="keywords23"), embedder=FakeEmbedder(dim=16)
    )
    report = quality.evaluate(service, str(queries))
    assert report.counts["text_to_image"] == 2 and "text_to_image_hybrid" not in report.metrics
    assert not report.failed and any("Milvus 2.5 or later" in note for note in report.notes)
    service.close()

    env = {**os.environ, "COLUMNS": "200"}
    ran = lookalike(
        env,
        "search",
        "--db",
        milvus_server.uri,
        "--collection",
        "keywords23",
        "--text",
        "merino",
        "--keywords",
    )
    assert ran.returncode == 2 and "Milvus 2.5 or later" in ran.stderr and "Traceback" not in ran.stderr
    store.drop()
    store.close()
