"""Hits grouped per product: the k best catalog items, each ranked by its best picture (or crop), with
up to n of its pictures, out of a search that ranks pictures.

A product with many pictures fills many slots of a per-picture search, so the pictures are fetched
in rounds until the answer is exact: the first round over-fetches; while fewer than k products are
found, the next round leaves out every picture of the products already complete (``exclude_item_ids``)
and the pictures already seen; once k products are found, the next round looks only among the
pictures of the products still short of n (``item_ids``). A round that answers fewer hits than it
asked for has seen everything it could, so grouping never returns fewer products, or fewer pictures
of one, than the window holds. Each round searches a subset of the previous one's window, so its hits
score no higher than the previous round's: the order is the order one exhaustive search would give.

An item with an empty ``item_id`` is a product of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from lookalike.store.milvus import MAX_K
from lookalike.store.models import Hit, Item
from lookalike.store.window import Window

Search = Callable[[int, Window], list[Hit]]
"""A per-picture search of one query: (k, window) → hits, best first."""

OVERFETCH = 4
"""Pictures fetched per wanted one in the first round: most products have a few pictures, so most
searches need one round (each further round filters the collection row by row)."""
MIN_FETCH = 64


def product(item: Item) -> str | None:
    """The catalog item an item belongs to, or None when it has none (it is a product of its own)."""
    return item.item_id or None


def _score(hit: Hit) -> float:
    return hit.score if math.isfinite(hit.score) else -math.inf  # a hit without a valid score ranks last


def per_product(
    search: Search, *, k: int, per_item: int, window: Window, cap: int = MAX_K
) -> list[list[Hit]]:
    """The ``k`` best products in the window, best first, each as its up to ``per_item`` best hits.

    ``search`` is called once per round, never with more than ``cap`` hits.
    """
    groups: dict[str | int, list[Hit]] = {}  # by item_id, or by stored id for an item without one
    fetch = min(cap, max(MIN_FETCH, OVERFETCH * k * per_item))
    asked = window
    while True:
        found = search(fetch, asked)
        for hit in found:
            key = product(hit.item) or hit.item.id
            group = groups.setdefault(key, [])
            if len(group) < per_item and all(h.item.id != hit.item.id for h in group):
                group.append(hit)
        ranked = sorted(groups.items(), key=lambda pair: -max(_score(h) for h in pair[1]))  # stable
        if len(found) < fetch:  # this round's window holds nothing more
            break
        # Products that may have more pictures to show (an item without an item_id has one).
        short = {key: hits for key, hits in ranked[:k] if isinstance(key, str) and len(hits) < per_item}
        if len(ranked) >= k:
            if not short:
                break
            # Enough products: fill the ones short of pictures, from their own pictures.
            groups = dict(ranked[:k])
            asked = replace(
                window,
                item_ids=_within(window.item_ids, list(short)),
                exclude_ids=(*window.exclude_ids, *(h.item.id for hits in short.values() for h in hits)),
            )
            fetch = min(cap, sum(per_item - len(hits) for hits in short.values()))
            continue
        # Too few products: look past every picture of the complete ones and the pictures held.
        complete = [key for key, hits in ranked if isinstance(key, str) and key not in short]
        held = [h.item.id for key, hits in ranked if key not in complete for h in hits]
        asked = replace(
            window,
            exclude_ids=(*window.exclude_ids, *held),
            exclude_item_ids=(*window.exclude_item_ids, *complete),
        )
        missing = (k - len(ranked)) * per_item + sum(per_item - len(hits) for hits in short.values())
        fetch = min(cap, max(MIN_FETCH, OVERFETCH * missing))
    return [sorted(hits, key=lambda h: -_score(h)) for _, hits in ranked[:k]]


def _within(allowed: tuple[str, ...] | None, wanted: list[str]) -> tuple[str, ...]:
    return tuple(wanted) if allowed is None else tuple(i for i in wanted if i in allowed)
