"""What lookalike asks a Milvus 2.5+ server for keyword and hybrid search, checked against a recording
client (no 2.5 server installs here: the real 2.3 server's refusal is tests/server/test_hybrid_server.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lookalike.errors import ConfigError
from lookalike.store import ServerStore, Window
from lookalike.store.base import INDEX_PROPERTY
from lookalike.store.fields import SCALAR_FIELDS
from lookalike.store.fusion import Fusion
from lookalike.store.rows import to_row
from lookalike.store.serverkeywords import SPARSE_FIELD, TEXT_FIELD, parse_version, supports_bm25, text_of
from tests.store_model import DIM, make_item, vector


class RecordingClient:
    def __init__(self, version: str) -> None:
        self.version = version
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.row = {**to_row(make_item(7, name="Levi's 501"), list(SCALAR_FIELDS)), "distance": 0.5}

    def get_server_version(self) -> str:
        return self.version

    def list_partitions(self, collection: str) -> list[str]:
        return ["_default", "p202401"]

    def search(self, *args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
        self.calls.append(("search", args, kwargs))
        return [[dict(self.row)]]

    def hybrid_search(self, *args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
        self.calls.append(("hybrid_search", args, kwargs))
        return [[dict(self.row)]]

    def close(self) -> None:
        pass


def server(version: str, *, keyword_field: bool = True) -> tuple[ServerStore, RecordingClient]:
    store = ServerStore("http://127.0.0.1:1", "kw")
    client = RecordingClient(version)
    store._client = client
    fields = [{"name": "id"}, {"name": "vector", "params": {"dim": DIM}}]
    fields += [{"name": name} for name in SCALAR_FIELDS if name != "id"]
    fields += [{"name": TEXT_FIELD}, {"name": SPARSE_FIELD}] if keyword_field else []
    store._description = {
        "fields": fields,
        "properties": {INDEX_PROPERTY: json.dumps({"type": "HNSW", "params": {"M": 16}})},
    }
    store._loaded = store._schema_checked = True
    return store, client


def test_versions_are_read_and_bm25_starts_at_2_5() -> None:
    assert parse_version("v2.3.5") == (2, 3, 5) and parse_version("2.5.4-dev") == (2, 5, 4)
    assert parse_version("v2.6") == (2, 6, 0) and parse_version("unknown") == (0, 0, 0)
    assert not supports_bm25((2, 4, 9)) and supports_bm25((2, 5, 0)) and supports_bm25((3, 0, 0))


def test_a_keyword_search_asks_the_bm25_field_with_the_terms_lookalike_makes() -> None:
    store, client = server("v2.5.4")
    hits = store.keyword_search("LEVI'S 萨摩耶", k=3, window=Window.of(sources=["shop-a"]))
    assert [hit.item.id for hit in hits] == [7] and hits[0].score == 0.5
    ((name, _, asked),) = client.calls
    assert name == "search" and asked["anns_field"] == SPARSE_FIELD and asked["limit"] == 3
    assert asked["data"] == ["levi levis 萨摩 摩耶"] and "shop-a" in asked["filter"]
    assert asked["search_params"] == {"metric_type": "BM25"}
    assert store.keyword_search("!!!", k=3) == [] and len(client.calls) == 1  # no terms: nothing to ask


@pytest.mark.parametrize(
    ("fusion", "ranker"), [(Fusion(rrf_k=30), "RRFRanker"), (Fusion(keyword_weight=0.3), "WeightedRanker")]
)
def test_a_hybrid_search_is_one_hybrid_search_call_with_the_chosen_ranker(
    fusion: Fusion, ranker: str
) -> None:
    store, client = server("2.5.4")
    hits = store.hybrid_search(vector(1)[None], "merino wool", k=4, fusion=fusion)
    assert [hit.item.id for hit in hits] == [7]
    ((name, args, asked),) = client.calls
    searches, chosen = args[1], args[2]
    assert name == "hybrid_search" and type(chosen).__name__ == ranker and asked["limit"] == 4
    assert [s.anns_field for s in searches] == ["vector", SPARSE_FIELD]
    assert (
        searches[1].data == ["merino wool"] and searches[0].limit == searches[1].limit == 100
    )  # as deep as Lite
    assert searches[0].param == {"metric_type": "IP", "params": {"ef": 100}}
    assert searches[1].param == {"metric_type": "BM25"}
    params = chosen.dict()["params"]
    assert params == ({"k": 30} if ranker == "RRFRanker" else {"weights": [0.7, 0.3], "norm_score": True})


def test_the_keyword_field_holds_the_item_terms_cut_to_whole_terms() -> None:
    item = make_item(1, name="Levi's 501 " + "x" * 70_000)
    assert text_of(make_item(2, name="Merino wool")).startswith("merino wool ")
    assert text_of(item) == "levi levis 501"  # the one over-long term is left out, not cut in half


def test_a_collection_without_the_keyword_field_says_how_to_get_one() -> None:
    store, _ = server("2.5.4", keyword_field=False)
    with pytest.raises(ConfigError, match="created without a keyword field"):
        store.keyword_search("merino", k=3)
    old, _ = server("v2.3.5")
    with pytest.raises(ConfigError, match="need Milvus 2.5 or later"):
        old.hybrid_search(vector(1)[None], "merino", k=3)
