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
    assert window.categories == ("hats",) and window.tags == ("red",)


@pytest.mark.parametrize(
    "window",
    [Window.of(sources=[]), Window.of(item_ids=[]), Window(since=200, until=200), Window(since=300, until=200)],
)
def test_a_window_nothing_can_be_inside_is_known_before_any_read(window: Window) -> None:
    assert window.nothing


def test_an_item_id_lookup_reads_only_the_item_s_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
