"""Keyword and hybrid search on a Milvus server: its own BM25 function and ``hybrid_search`` (2.5+).

A collection made by lookalike on a 2.5+ server gets a ``keywords`` text field (the terms of the
item's name, category and tags, as ``keywords.tokenize`` makes them, joined by spaces, so that both
stores split words alike, CJK bigrams included), a sparse vector field that Milvus' BM25 function
fills from it, and a BM25 index over that. A server older than 2.5 has neither the function nor
hybrid search: asking it is a clear error naming what to do instead.
"""

from __future__ import annotations

import re
from typing import Any

from lookalike.errors import ConfigError
from lookalike.store.fusion import Fusion, depth
from lookalike.store.keywords import item_terms, tokenize
from lookalike.store.models import Item

TEXT_FIELD = "keywords"
SPARSE_FIELD = "keywords_bm25"
FUNCTION = "keywords_to_bm25"
MAX_TEXT_BYTES = 65_535
FIRST_VERSION = (2, 5)


def parse_version(text: str) -> tuple[int, int, int]:
    """'v2.3.5', '2.5.4-dev' → (2, 3, 5); (0, 0, 0) when no version can be read."""
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not found:
        return (0, 0, 0)
    return (int(found.group(1)), int(found.group(2)), int(found.group(3) or 0))


def supports_bm25(version: tuple[int, int, int]) -> bool:
    return version[:2] >= FIRST_VERSION


def unsupported(uri: str, version_text: str) -> ConfigError:
    return ConfigError(
        f"Keyword and hybrid search (--keywords, --hybrid) need Milvus 2.5 or later, which has a BM25 "
        f"function and hybrid search; the server at {uri} runs Milvus {version_text or 'of an unknown version'}. "
        "Upgrade the server to 2.5 or later and create the collection there again (export and import), "
        "search by vectors alone (without --keywords or --hybrid), or keep the collection in a Milvus Lite "
        "database (--db ./lookalike.db), where lookalike's own keyword index serves them."
    )


def no_keyword_field(collection: str) -> ConfigError:
    return ConfigError(
        f"The collection '{collection}' was created without a keyword field (on a server older than 2.5, or "
        "by an older lookalike), so it cannot be searched by keywords: export it, drop it and import it "
        "again on this server (the import creates the field), or search by vectors alone."
    )


def add_fields(schema: Any, index_spec: Any) -> None:
    """The text field, its BM25 sparse field, the function between them and its index."""
    from pymilvus import DataType, Function, FunctionType

    schema.add_field(TEXT_FIELD, DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True)
    schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name=FUNCTION,
            function_type=FunctionType.BM25,
            input_field_names=[TEXT_FIELD],
            output_field_names=[SPARSE_FIELD],
        )
    )
    index_spec.add_index(
        field_name=SPARSE_FIELD,
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
        params={"bm25_k1": 1.2, "bm25_b": 0.75},
    )


def text_of(item: Item) -> str:
    """The keyword field's value: the item's terms, cut to whole terms within the field's limit."""
    text = " ".join(item_terms(item.name, item.category, item.tags))
    data = text.encode("utf-8")
    if len(data) <= MAX_TEXT_BYTES:
        return text
    return data[:MAX_TEXT_BYTES].decode("utf-8", "ignore").rsplit(" ", 1)[0]


def query_text(text: str) -> str:
    return " ".join(tokenize(text))


def requests(
    vector: list[float], text: str, k: int, expr: str, params: dict[str, Any], fusion: Fusion
) -> tuple[list[Any], Any]:
    """The two searches of ``hybrid_search`` (vector, BM25), each as deep as Lite's (``fusion.depth``),
    and the ranker that fuses them; ``params``: the vector search's, as ``search_params`` makes them."""
    from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

    wanted = depth(k)
    searches = [
        AnnSearchRequest(
            data=[vector],
            anns_field="vector",
            param={"metric_type": "IP", **params},
            limit=wanted,
            expr=expr or None,
        ),
        AnnSearchRequest(
            data=[query_text(text)],
            anns_field=SPARSE_FIELD,
            param={"metric_type": "BM25"},
            limit=wanted,
            expr=expr or None,
        ),
    ]
    weight = fusion.keyword_weight
    ranker = RRFRanker(fusion.rrf_k) if weight is None else WeightedRanker(1.0 - weight, weight)
    return searches, ranker
