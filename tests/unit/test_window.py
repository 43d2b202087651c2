"""The window of a store read: its Milvus expression, its months, and the item-id lookup that finds a
catalog item's rows without a pass over the collection. (Both interpreters are checked against a
plain-Python model with random windows by the stateful tests: tests/store_machine.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.store import LiteStore, segments
from lookalike.store.filters import expression
from lookalike.store.window import Window
from tests.store_model import DIM, JAN_2024, make_item

DAY = 86_400


def test_a_window_is_one_milvus_expression_with_its_values_escaped() -> None:
    window = Window.of(
        sources=["shop", 'a"b'], since=100, until=200, item_ids=["sku1", "sku1", "x\\y"], exclude_ids=[7, 7]
    )
    assert expression(window) == (
        '(not (id in [7])) and (source in ["shop", "a\\"b"]) and (item_id in ["sku1", "x\\\\y"]) '
        "and (created_at >= 100) and (created_at < 200)"
    )
    assert expression(Window()) == ""
    assert Window().everything and not Window.of(exclude_ids=[1]).everything


def test_a_category_or_tag_filter_is_stripped_as_a_stored_one_was() -> None:
    # The catalog's " hats " is stored as "hats": --category " hats " found nothing.
    window = Window.of(categories=[" hats ", "hats"], tags=["\u00a0red "])
    assert window.values("category") == ("hats",) and window.values("tags") == ("red",)


@pytest.mark.parametrize(
    "window",
    [
        Window.of(sources=[]),
        Window.of(item_ids=[]),
        Window(since=200, until=200),
        Window(since=300, until=200),
    ],
)
def test_a_window_nothing_can_be_inside_is_known_before_any_read(window: Window) -> None:
    assert window.nothing


def test_an_item_id_lookup_reads_only_the_item_s_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments, "GRAPH_FROM", 3)  # a graph body as well as flat ones
    store = LiteStore(str(tmp_path / "w.db"), "images")
    store.create(DIM, index="HNSW")
    items = [make_item(i, month=i % 3) for i in range(1, 301)]
    twin = make_item(301, month=1)
    # sku9 (January) gets a second picture (February)
    twin = type(twin)(**{**twin.metadata(), "item_id": "sku9", "vector": twin.vector})
    store.insert([*items, twin])
    store.flush()  # the rows move into one graph shared by the months
    assert any(s.is_graph for _, s in store.read_index().snapshot.segments())

    read: list[int] = []
    items_of = segments.Segment.items

    def counting(self: segments.Segment, rows: np.ndarray, *, with_vector: bool) -> list:
        read.append(len(rows))
        return items_of(self, rows, with_vector=with_vector)

    monkeypatch.setattr(segments.Segment, "items", counting)
    found = [i for batch in store.iter_items(window=Window.of(item_ids=["sku9"])) for i in batch]
    assert sorted(i.id for i in found) == [9, 301]
    assert sum(read) == 2  # no other row was read out
    assert store.count(Window.of(item_ids=["sku9", "sku8", "nobody"])) == 3
    assert store.count(Window.of(item_ids=["sku9"], since=JAN_2024 + 20 * DAY)) == 1  # 301 is in February
    store.delete([9])
    assert [i.id for batch in store.iter_items(window=Window.of(item_ids=["sku9"])) for i in batch] == [301]
    store.close()


def test_categories_and_tags_that_differ_past_their_limit_never_merge(tmp_path: Path) -> None:
    """A filter key is never cut: cut to 256 bytes, two shops' categories that differ only past it were
    stored alike and each matched the other's --category (an adversary's find)."""
    import dataclasses

    shop_a, shop_b = "X" * 256 + "-hats", "X" * 256 + "-shoes"
    tag_a, tag_b = "t" * 128 + "-a", "t" * 128 + "-b"
    store = LiteStore(str(tmp_path / "k.db"), "images")
    store.create(DIM)
    a = dataclasses.replace(make_item(1), category=shop_a, tags=(tag_a, "red"))
    b = dataclasses.replace(make_item(2), category=shop_b, tags=(tag_b, "red"))
    fits = dataclasses.replace(make_item(3), category="X" * 256, tags=("t" * 128,))
    store.insert([a, b, fits])
    stored = {i.id: i for batch in store.iter_items() for i in batch}
    assert stored[1].category == "" and stored[2].category == ""  # left out whole, not cut
    assert stored[1].tags == ("red",) and stored[2].tags == ("red",)
    assert stored[3].category == "X" * 256 and stored[3].tags == ("t" * 128,)  # at the limit: kept
    for category in (shop_a, shop_b):
        assert store.count(Window.of(categories=[category])) == 0  # matches nothing, never the other shop
    assert store.count(Window.of(categories=["X" * 256])) == 1
    assert store.count(Window.of(tags=[tag_a])) == 0 and store.count(Window.of(tags=["t" * 128])) == 1
    query = np.asarray([make_item(1).vector], dtype=np.float32)
    hits = store.search(query, k=10, window=Window.of(categories=[shop_a]))[0]
    assert hits == []
    store.close()


def test_the_filter_fields_are_interpreted_from_the_field_table() -> None:
    # A text field is one of the values; a list field holds one of them at least.
    assert expression(Window.of(categories=["shoes", 'a"b'])) == 'category in ["shoes", "a\\"b"]'
    assert expression(Window.of(tags=["red"], categories=["shoes"], sources=["shop"])) == (
        '(source in ["shop"]) and (category in ["shoes"]) and (array_contains_any(tags, ["red"]))'
    )
    assert expression(Window.of(tags=["red"], categories=["shoes"])) == (
        '(category in ["shoes"]) and (array_contains_any(tags, ["red"]))'
    )
    assert Window.of(tags=[]).nothing and Window.of(categories=["x"]).by_rows
    with pytest.raises(TypeError, match="no filter field is called brands"):
        Window.of(brands=["acme"])
