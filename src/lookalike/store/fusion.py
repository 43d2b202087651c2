"""Fusing vector hits and keyword hits into one ranking: reciprocal rank fusion, or weights.

RRF (Cormack et al. 2009; Milvus' ``RRFRanker``, Qdrant, LanceDB, Marqo): an item scores the sum of
``1 / (k + rank)`` over the lists it is in (rank from 1; k 60 by default), so an item both lists rank
well beats one that only one list ranks first, and no score needs to be comparable with another.

Weights (Milvus' ``WeightedRanker`` with ``norm_score``): each list's scores are mapped into [0, 1]
the way Milvus maps them (an inner product by ``0.5 + atan(s) / pi``, BM25 by ``2 * atan(s) / pi``),
then summed with the weights ``1 - keyword_weight`` and ``keyword_weight``; a list an item is not in
gives it 0. A server with hybrid search computes the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lookalike.store.models import Hit, Item

DEFAULT_RRF_K = 60
FUSION_DEPTH = 100
"""Hits fetched from each side before fusing (at least the k + offset asked for)."""


@dataclass(frozen=True)
class Fusion:
    """How to fuse: RRF with ``rrf_k``, or weights when ``keyword_weight`` (0..1) is given."""

    rrf_k: int = DEFAULT_RRF_K
    keyword_weight: float | None = None

    def __post_init__(self) -> None:
        if self.rrf_k < 1:
            raise ValueError(f"RRF's k must be at least 1, got {self.rrf_k}")
        if self.keyword_weight is not None and not 0.0 <= self.keyword_weight <= 1.0:
            raise ValueError(f"the keyword weight must be between 0 and 1, got {self.keyword_weight}")


def depth(k: int) -> int:
    """How many hits each side hands to the fusion for the k best fused ones."""
    return max(FUSION_DEPTH, k)


def vector_norm(score: float) -> float:
    return 0.5 + math.atan(score) / math.pi


def keyword_norm(score: float) -> float:
    return 2.0 * math.atan(score) / math.pi


def fuse(vector: Sequence[Hit], keyword: Sequence[Hit], fusion: Fusion, k: int) -> list[Hit]:
    """The k best items of both lists (each best first), fused; each hit says its rank in each list.

    Ties go to the better vector rank, then the better keyword rank, so that an answer never depends
    on the order the lists were computed in."""
    ranks: dict[int, list[int | None]] = {}
    scores: dict[int, float] = {}
    items: dict[int, Item] = {}
    weight = fusion.keyword_weight
    for side, hits in enumerate((vector, keyword)):
        for rank, hit in enumerate(hits, start=1):
            item_id = hit.item.id
            if item_id in ranks and ranks[item_id][side] is not None:
                continue  # one item listed twice by a side counts once, at its best rank
            ranks.setdefault(item_id, [None, None])[side] = rank
            items.setdefault(item_id, hit.item)
            if weight is None:
                part = 1.0 / (fusion.rrf_k + rank)
            elif side == 0:
                part = (1.0 - weight) * vector_norm(hit.score)
            else:
                part = weight * keyword_norm(hit.score)
            scores[item_id] = scores.get(item_id, 0.0) + part
    big = len(vector) + len(keyword) + 1

    def order(item_id: int) -> tuple[float, int, int, int]:
        vector_rank, keyword_rank = ranks[item_id]
        return (-scores[item_id], vector_rank or big, keyword_rank or big, item_id)

    best = sorted(scores, key=order)[:k]
    return [Hit(scores[i], items[i], ranks=(ranks[i][0], ranks[i][1])) for i in best]


RRF = Fusion()
"""Reciprocal rank fusion with k 60: the default."""
