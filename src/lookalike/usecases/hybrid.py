"""Keyword and hybrid search: BM25 over name, category and tags, alone or fused with the vector hits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike.errors import ConfigError
from lookalike.queries import Query
from lookalike.store.fusion import DEFAULT_RRF_K, Fusion
from lookalike.store.window import Window

if TYPE_CHECKING:
    import numpy as np

    from lookalike.store import Hit
    from lookalike.usecases.context import Context

MAX_RRF_K = 100_000


def by_keywords(query: Query) -> bool:
    """Whether the query ranks by keywords at all (alone or fused)."""
    return query.hybrid or query.keywords


def validate(query: Query) -> None:
    """The checks of the keyword and hybrid options, before a model or a database opens."""
    names = query.names
    if query.hybrid and query.keywords:
        raise ConfigError(
            f"Give {names.hybrid} (keywords and vectors fused) or {names.keywords} (keywords alone), not both."
        )
    if query.hybrid and query.text is None:
        raise ConfigError(
            f"{names.hybrid} fuses the keyword and the vector hits of a text query: give {names.text} too "
            f"(an image, a stored id or an item id has no words to match)."
        )
    if query.keywords and query.text is None:
        raise ConfigError(
            f"{names.keywords} searches names, categories and tags by words: give {names.text} too."
        )
    for value, name in ((query.keyword_weight, names.keyword_weight), (query.rrf_k, names.rrf_k)):
        if value is not None and not query.hybrid:
            raise ConfigError(f"{name} sets how {names.hybrid} fuses its hits: give {names.hybrid} too.")
    if query.keyword_weight is not None and query.rrf_k is not None:
        raise ConfigError(
            f"Give {names.keyword_weight} (weighted fusion) or {names.rrf_k} (reciprocal rank fusion), not both."
        )
    if query.keyword_weight is not None and not 0.0 <= query.keyword_weight <= 1.0:
        raise ConfigError(
            f"{names.keyword_weight} must be between 0 (vectors only) and 1 (keywords only), "
            f"got {query.keyword_weight}."
        )
    if query.rrf_k is not None and not 1 <= query.rrf_k <= MAX_RRF_K:
        raise ConfigError(f"{names.rrf_k} must be from 1 to {MAX_RRF_K}, got {query.rrf_k}.")
    if query.keywords and (query.like or query.unlike):
        raise ConfigError(
            f"{names.keywords} ranks by words alone: examples ({names.like}, {names.unlike}) need vectors; "
            f"give {names.hybrid} instead to fuse both."
        )
    if by_keywords(query) and query.min_score is not None:
        which = names.hybrid if query.hybrid else names.keywords
        raise ConfigError(
            f"{names.min_score} is a cosine, and {which} scores are not: leave {names.min_score} out."
        )


def fusion(query: Query) -> Fusion:
    return Fusion(rrf_k=query.rrf_k or DEFAULT_RRF_K, keyword_weight=query.keyword_weight)


def hits(ctx: Context, query: Query, vector: np.ndarray | None, window: Window, k: int) -> list[Hit]:
    """The k best hits of a keyword or hybrid query (``vector``: the query's, for hybrid)."""
    assert query.text is not None
    if query.keywords:
        return ctx.store.keyword_search(query.text, k=k, window=window)
    assert vector is not None
    return ctx.store.hybrid_search(
        vector, query.text, k=k, fusion=fusion(query), window=window, params=dict(query.search_params) or None
    )


def warnings(query: Query) -> list[str]:
    from lookalike.store.keywords import tokenize

    if by_keywords(query) and query.text is not None and not tokenize(query.text):
        side = "no hit" if query.keywords else "only vector hits"
        return [f"The text has no letters or digits to match by keywords: {side}."]
    return []


def keywords_hint(query: Query) -> str:
    """What an image-only collection still offers a text query that asked for hybrid search."""
    if query.hybrid:
        return f" For words matched in names, categories and tags alone, use {query.names.keywords}."
    return ""
