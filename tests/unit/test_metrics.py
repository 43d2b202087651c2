"""Ranking metrics by hand-worked examples, and the evaluation query file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lookalike.errors import CatalogError
from lookalike.quality import load_eval_queries, rank_metrics
from tests.helpers import make_image


def test_a_first_place_hit_scores_one_everywhere() -> None:
    metrics = rank_metrics([["a", "b", "c"]], [frozenset({"a"})])
    assert metrics == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "mrr": 1.0, "ndcg@10": 1.0}


def test_metrics_match_a_hand_worked_ranking() -> None:
    # Query 1: relevant at ranks 3 and 7. Query 2: nothing relevant ranked.
    ranking = ["x1", "x2", "r1", "x3", "x4", "x5", "r2", "x6"]
    metrics = rank_metrics([ranking, ["y1", "y2"]], [frozenset({"r1", "r2"}), frozenset({"z"})])
    assert metrics["recall@1"] == 0.0
    assert metrics["recall@5"] == 0.5  # query 1 has r1 at rank 3
    assert metrics["recall@10"] == 0.5
    assert metrics["mrr"] == round((1 / 3 + 0) / 2, 4)
    ndcg_1 = (1 / math.log2(4) + 1 / math.log2(8)) / (1 / math.log2(2) + 1 / math.log2(3))
    assert metrics["ndcg@10"] == round(ndcg_1 / 2, 4)


def test_an_item_listed_twice_counts_once_at_its_best_rank() -> None:
    # Two crops of one item must not push a relevant item down the ranking.
    metrics = rank_metrics([["a", "a", "a", "a", "a", "b"]], [frozenset({"b"})])
    assert metrics["recall@5"] == 1.0 and metrics["mrr"] == 0.5


def test_query_file_tells_text_from_image_queries(tmp_path: Path) -> None:
    (tmp_path / "q").mkdir()
    make_image(1).save(tmp_path / "q" / "shopper.jpg")
    (tmp_path / "queries.csv").write_text(
        "query,relevant\nred floral dress,sku-1|sku-2\nq/shopper.jpg,sku-3\n萨摩耶,dog-1; dog-2\n",
        encoding="utf-8",
    )
    queries = load_eval_queries(tmp_path / "queries.csv")
    assert [(q.kind, q.relevant) for q in queries] == [
        ("text", frozenset({"sku-1", "sku-2"})),
        ("image", frozenset({"sku-3"})),
        ("text", frozenset({"dog-1", "dog-2"})),
    ]
    assert queries[1].query == str(tmp_path / "q" / "shopper.jpg")
    assert queries[2].query == "萨摩耶"


def test_declared_kind_wins_and_a_missing_image_query_stays_an_image_query(tmp_path: Path) -> None:
    (tmp_path / "queries.csv").write_text(
        "kind,query,relevant\nimage,gone.jpg,a\ntext,photo.jpg,b\n", encoding="utf-8"
    )
    first, second = load_eval_queries(tmp_path / "queries.csv")
    assert first.kind == "image" and second.kind == "text"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,ids\nred,a\n", "needs the columns 'query' and 'relevant'"),
        ("query,relevant\nred dress,\n", "line 2"),
        ("query,relevant\n", "has no queries"),
        ("kind,query,relevant\nvideo,red,a\n", "kind must be text or image"),
    ],
)
def test_malformed_query_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "queries.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError, match=message):
        load_eval_queries(path)
