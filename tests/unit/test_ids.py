from __future__ import annotations

from lookalike.ingest.ids import content_hash, stable_id


def test_same_inputs_give_the_same_positive_id() -> None:
    sha = content_hash(b"bytes")
    first = stable_id("product", "item-1", sha)
    assert first == stable_id("product", "item-1", sha)
    assert 0 < first < 2**63


def test_same_bytes_under_two_sellers_are_two_items() -> None:
    sha = content_hash(b"bytes")
    assert stable_id("shop-a", "item-1", sha) != stable_id("shop-b", "item-1", sha)
    assert stable_id("shop-a", "item-1", sha) != stable_id("shop-a", "item-2", sha)
    assert stable_id("shop-a", "item-1", sha) != stable_id("shop-a", "item-1", sha, crop=1)
    assert stable_id("shop-a", "item-1", sha) != stable_id("shop-a", "item-1", content_hash(b"other"))
