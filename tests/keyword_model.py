"""BM25 in plain Python, by the textbook formula, for the keyword tests to check the stores against."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from lookalike.store import Hit, Item
from lookalike.store.keywords import K1, B, item_terms, tokenize


def bm25(rows: Mapping[int, Item], inside: Sequence[Item], text: str) -> dict[int, float]:
    """Each item of ``inside`` that holds a term of ``text``, with its BM25 score, the statistics
    counted over every item of ``rows`` (the collection's live items)."""
    docs = {i: Counter(item_terms(it.name, it.category, it.tags)) for i, it in rows.items()}
    if not docs:
        return {}
    mean = sum(sum(d.values()) for d in docs.values()) / len(docs)
    scores: dict[int, float] = {}
    for item in inside:
        doc = docs[item.id]
        length = sum(doc.values())
        score = 0.0
        for term in dict.fromkeys(tokenize(text)):
            tf = doc.get(term, 0)
            if not tf:
                continue
            df = sum(1 for d in docs.values() if term in d)
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / mean))
        if score > 0:
            scores[item.id] = score
    return scores


def check_hits(hits: Sequence[Hit], expected: Mapping[int, float], k: int) -> None:
    """The hits are a top k of ``expected`` (ties in any order), best first, with its scores."""
    ids = [hit.item.id for hit in hits]
    assert len(ids) == len(set(ids)) == min(k, len(expected)), (ids, expected)
    for hit in hits:
        assert hit.item.id in expected, (hit.item.id, expected)
        assert math.isclose(hit.score, expected[hit.item.id], rel_tol=1e-4, abs_tol=1e-5), (hit, expected)
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    if hits:
        floor = hits[-1].score + 1e-4
        assert {i for i, s in expected.items() if s > floor} <= set(ids), (ids, expected)
