"""Keyword search: how texts become terms, BM25 over the read index, and fusion with vector hits."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookalike.store import Hit, Item, LiteStore
from lookalike.store.fusion import Fusion, fuse, keyword_norm, vector_norm
from lookalike.store.keywords import item_terms, tokenize
from lookalike.store.models import IndexType
from lookalike.store.partitions import partition_for
from lookalike.store.readindex import ReadIndex
from lookalike.store.window import Window
from tests.keyword_model import bm25, check_hits
from tests.store_model import DIM, JAN_2024, Model, make_item, vector

# -- tokens ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("Levi's 501 Jeans", ["levi", "levis", "501", "jeans"]),
        ("LEVIS 501", ["levis", "501"]),
        ("Levi’s", ["levi", "levis"]),  # a typographic apostrophe, as shops paste it
        ("Merino-wool, knit!", ["merino", "wool", "knit"]),
        ("MeRiNo", ["merino"]),
        ("Ｌｅｖｉ５０１", ["levi501"]),  # full-width forms fold to ASCII (NFKC)
        ("萨摩耶", ["萨摩", "摩耶"]),
        ("猫", ["猫"]),
        ("iPhone手机壳 case", ["iphone", "手机", "机壳", "case"]),
        ("हिन्दी किताब", ["हिन्दी", "किताब"]),  # vowel signs stay inside their word
        ("rock'n'roll t_shirt", ["rocknroll", "t", "shirt"]),
        ("Straße", ["strasse"]),  # case-folded, not just lower-cased
        ("!!! --- ...", []),
        ("", []),
    ],
)
def test_texts_become_the_terms_a_shopper_would_match(text: str, terms: list[str]) -> None:
    assert tokenize(text) == terms


def test_an_item_is_found_by_its_name_category_and_each_tag() -> None:
    assert item_terms("Red Dress", "Women's", ("summer sale", "萨摩耶")) == [
        "red", "dress", "women", "womens", "summer", "sale", "萨摩", "摩耶",
    ]  # fmt: skip


# -- BM25 over the read index -------------------------------------------------------------------

NAMES = [
    "Levi's 501 original jeans",
    "Levi's 511 slim jeans",
    "merino wool crew sweater",
    "merino wool socks",
    "cotton crew t-shirt",
    "萨摩耶 plush toy",
    "red floral dress",
    "red dress red belt",
    "blue striped shirt",
    "",
]


def items(names: list[str] = NAMES) -> list[Item]:
    return [make_item(i + 1, month=i % 3, source=i % 2, name=name or " ") for i, name in enumerate(names)]


def index_of(tmp_path: Path, stored: list[Item]) -> ReadIndex:
    index = ReadIndex(tmp_path / "idx", DIM, IndexType.FLAT, {})
    by_partition: dict[str, list[Item]] = {}
    for item in stored:
        by_partition.setdefault(partition_for(item.created_at), []).append(item)
    index.apply(stored, [], by_partition, 1)
    return index


@pytest.mark.parametrize(
    "query",
    ["levi's", "levis 501", "merino", "crew", "萨摩耶", "red dress", "RED", "sale", "shoes", "nothing"],
)
def test_keyword_scores_are_bm25_over_name_category_and_tags(tmp_path: Path, query: str) -> None:
    stored = items()
    index = index_of(tmp_path, stored)
    rows = {item.id: item for item in stored}
    for k in (1, 3, 20):
        check_hits(index.keyword_search(query, k), bm25(rows, stored, query), k)


def test_rare_terms_weigh_more_and_a_repeated_term_counts_with_saturation(tmp_path: Path) -> None:
    index = index_of(tmp_path, items())
    hits = index.keyword_search("red dress", 5)
    by_id = {hit.item.id: hit.score for hit in hits}
    assert [hit.item.id for hit in hits[:2]] == [8, 7]  # "red dress red belt" says red twice
    assert by_id[8] < 2 * by_id[7]  # ... but a second occurrence is worth less than the first
    wool = index.keyword_search("merino socks", 2)
    assert wool[0].item.id == 4 and wool[0].score > wool[1].score  # "socks" is rarer than "merino"


def test_the_window_filters_the_keyword_hits_but_not_the_statistics(tmp_path: Path) -> None:
    stored = items()
    index = index_of(tmp_path, stored)
    rows = {item.id: item for item in stored}
    windows = [
        Window.of(sources=[stored[0].source]),
        Window.of(categories=["shoes"]),
        Window.of(tags=["red"]),
        Window.of(since=JAN_2024 + 31 * 86_400),
        Window.of(exclude_ids=[1, 2]),
        Window.of(item_ids=["sku3", "sku4"]),
        Window.of(categories=[]),
    ]
    model_windows = Model()
    model_windows.upsert(stored)
    for window in windows:
        inside = model_windows.window(window)
        for query in ("levi's jeans", "merino wool", "red", "crew"):
            check_hits(index.keyword_search(query, 10, window), bm25(rows, inside, query), 10)


def test_deleted_and_replaced_rows_neither_answer_nor_weigh(tmp_path: Path) -> None:
    stored = items()
    index = index_of(tmp_path, stored)
    renamed = dataclasses.replace(stored[2], name="alpaca scarf")
    index.apply([renamed], [1, 4], {partition_for(renamed.created_at): [renamed]}, 2)
    rows = {item.id: item for item in stored if item.id not in (1, 4)} | {renamed.id: renamed}
    for query in ("levi's", "merino", "alpaca", "wool"):
        check_hits(index.keyword_search(query, 10), bm25(rows, list(rows.values()), query), 10)
    assert [hit.item.id for hit in index.keyword_search("merino", 10)] == []


def test_a_keyword_hit_reads_the_item_as_stored(tmp_path: Path) -> None:
    stored = items()
    hits = index_of(tmp_path, stored).keyword_search("萨摩耶", 3)
    assert [hit.item for hit in hits] == [stored[5]] and hits[0].ranks is None


# -- fusion -----------------------------------------------------------------------------------------


def hit(item_id: int, score: float) -> Hit:
    return Hit(score, make_item(item_id))


def test_rrf_adds_one_over_k_plus_rank_from_each_list() -> None:
    by_vector = [hit(1, 0.9), hit(2, 0.8), hit(3, 0.7)]
    by_keywords = [hit(3, 9.0), hit(4, 5.0), hit(1, 1.0)]
    fused = fuse(by_vector, by_keywords, Fusion(rrf_k=60), 10)
    expected = {1: 1 / 61 + 1 / 63, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 62}
    assert {h.item.id: h.score for h in fused} == pytest.approx(expected)
    # Equal scores go to the better vector rank, then the better keyword rank.
    assert [h.item.id for h in fused] == [1, 3, 2, 4]
    assert [h.ranks for h in fused] == [(1, 3), (3, 1), (2, None), (None, 2)]
    assert [h.item.id for h in fuse(by_vector, by_keywords, Fusion(rrf_k=1), 2)] == [1, 3]


def test_an_item_in_both_lists_beats_one_that_a_single_list_ranks_first() -> None:
    fused = fuse([hit(1, 0.9), hit(2, 0.8)], [hit(3, 7.0), hit(2, 6.0)], Fusion(), 3)
    assert fused[0].item.id == 2


def test_weights_sum_the_normalised_scores_as_milvus_weighted_ranker_does() -> None:
    by_vector = [hit(1, 0.9), hit(2, 0.2)]
    by_keywords = [hit(2, 8.0), hit(3, 0.5)]
    fused = fuse(by_vector, by_keywords, Fusion(keyword_weight=0.25), 10)
    expected = {
        1: 0.75 * (0.5 + math.atan(0.9) / math.pi),
        2: 0.75 * (0.5 + math.atan(0.2) / math.pi) + 0.25 * (2 * math.atan(8.0) / math.pi),
        3: 0.25 * (2 * math.atan(0.5) / math.pi),
    }
    assert {h.item.id: h.score for h in fused} == pytest.approx(expected)
    assert vector_norm(1.0) == pytest.approx(0.75) and keyword_norm(0.0) == 0.0
    only_keywords = fuse(by_vector, by_keywords, Fusion(keyword_weight=1.0), 10)
    assert [h.item.id for h in only_keywords][:2] == [2, 3]
    only_vectors = fuse(by_vector, by_keywords, Fusion(keyword_weight=0.0), 10)
    assert [h.item.id for h in only_vectors][:2] == [1, 2]


def test_a_fusion_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Fusion(keyword_weight=1.5)
    with pytest.raises(ValueError, match="at least 1"):
        Fusion(rrf_k=0)


def test_hybrid_on_a_lite_store_fuses_its_own_vector_and_keyword_hits(tmp_path: Path) -> None:
    store = LiteStore(str(tmp_path / "h.db"), "c")
    try:
        store.create(DIM, index="FLAT")
        stored = items()
        store.insert(stored)
        query = vector(3)
        by_vector = store.search(query[None], k=100)[0]
        by_keywords = store.keyword_search("red dress", k=100)
        fused = store.hybrid_search(query[None], "red dress", k=5)
        assert [(h.item.id, h.ranks) for h in fused] == [
            (h.item.id, h.ranks) for h in fuse(by_vector, by_keywords, Fusion(), 5)
        ]
        assert fused[0].ranks is not None and fused[0].ranks[1] is not None
        window = Window.of(categories=["bags"])
        inside = {h.item.id for h in store.search(query[None], k=100, window=window)[0]}
        assert {
            h.item.id for h in store.hybrid_search(query[None], "red dress", k=10, window=window)
        } <= inside
        np.testing.assert_equal(len(store.hybrid_search(query[None], "!!!", k=3)), 3)
    finally:
        store.drop()
        store.close()


# -- eval side by side -------------------------------------------------------------------------------


def test_eval_reports_each_text_query_by_vectors_keywords_and_hybrid_side_by_side() -> None:
    from lookalike.quality import EvalQuery, evaluate

    queries = [
        EvalQuery("text", "red dress", frozenset({"a"})),
        EvalQuery("text", "blue bag", frozenset({"b"})),
        EvalQuery("image", "q.jpg", frozenset({"b"})),
    ]
    ranked = {
        "vector": {"red dress": ["x", "a"], "blue bag": ["x"], "q.jpg": ["b"]},
        "keywords": {"red dress": ["a"], "blue bag": []},
        "hybrid": {"red dress": ["a", "x"], "blue bag": ["x", "b"]},
    }

    def searcher(mode: str) -> Any:
        return lambda query: ranked[mode][query.query]

    modes = {"keywords": searcher("keywords"), "hybrid": searcher("hybrid")}
    report = evaluate(queries, searcher("vector"), text_modes=modes)
    assert list(report.metrics) == [
        "text_to_image", "text_to_image_by_keywords", "text_to_image_hybrid", "image_to_image",
    ]  # fmt: skip
    assert report.metrics["text_to_image"]["mrr"] == pytest.approx(0.25)  # type: ignore[index]
    assert report.metrics["text_to_image_by_keywords"]["recall@1"] == 0.5  # type: ignore[index]
    assert report.metrics["text_to_image_hybrid"]["recall@5"] == 1.0  # type: ignore[index]
    assert report.counts == {k: 2 for k in list(report.metrics)[:3]} | {"image_to_image": 1}
    # A model that embeds images only: text queries are still searched by keywords alone.
    image_only = evaluate(queries, searcher("vector"), text_supported=False, text_modes=modes)
    assert image_only.metrics["text_to_image"] is None and image_only.metrics["text_to_image_hybrid"] is None
    assert image_only.counts["text_to_image_by_keywords"] == 2
    assert "searched by keywords alone" in image_only.notes[0]


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_ascii_texts_get_the_same_terms_by_the_fast_path_as_by_the_unicode_one(text: str) -> None:
    # A non-ASCII word after the text sends the whole text down the Unicode path.
    assert tokenize(text + " é") == [*tokenize(text), "é"]
