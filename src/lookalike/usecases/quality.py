"""Retrieval quality: evaluate the collection on labelled queries; write the demo catalog."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from lookalike.errors import ConfigError
from lookalike.queries import Query
from lookalike.usecases import hybrid as fusing
from lookalike.usecases.context import Context
from lookalike.usecases.embedding import bind
from lookalike.usecases.search import search, text_search_problem

if TYPE_CHECKING:
    from lookalike.quality import EvalQuery, EvalReport
    from lookalike.quality.demo import DemoData

Progress = Callable[[int], None]
EVAL_DEPTH = 100  # hits ranked per evaluation query: MRR counts a first relevant item up to here


def demo_data(
    out_dir: str, n: int = 500, seed: int = 0, progress: Progress | None = None, *, shop_names: bool = False
) -> DemoData:
    """Write the synthetic captioned catalog and its evaluation queries (``lookalike demo-data``)."""
    from lookalike.quality.demo import write_demo_data

    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}.")
    return write_demo_data(out_dir, n, seed, progress=progress, shop_names=shop_names)


def evaluate(
    ctx: Context,
    queries_path: str,
    *,
    on_start: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    rrf_k: int | None = None,
    keyword_weight: float | None = None,
) -> EvalReport:
    """Recall@1/5/10, MRR and nDCG@10 of the collection's answers to the queries in a CSV file: image
    queries by vectors; text queries by vectors, by keywords alone and hybrid, side by side (``rrf_k``,
    ``keyword_weight``: how the hybrid fuses, as ``search --hybrid`` takes them)."""
    from lookalike.quality import evaluate as score
    from lookalike.quality import load_eval_queries

    fusing.validate(Query(text="probe", hybrid=True, rrf_k=rrf_k, keyword_weight=keyword_weight))
    queries = load_eval_queries(queries_path)
    ctx.store.require()
    bind(ctx)
    text_supported = text_search_problem(ctx) is None
    notes: list[str] = []
    if on_start:
        on_start(len(queries))

    def ranked(query: EvalQuery, mode: str = "vector") -> list[str]:
        text, image = (query.query, None) if query.kind == "text" else (None, query.query)
        hybrid = mode == "hybrid"
        asked = Query(
            text=text,
            image=image,
            k=EVAL_DEPTH,
            hybrid=hybrid,
            keywords=mode == "keywords",
            rrf_k=rrf_k if hybrid else None,
            keyword_weight=keyword_weight if hybrid else None,
        )
        result = search(ctx, asked)
        notes.extend(w for w in result.warnings if w not in notes)
        return [hit.item.item_id for hit in result.hits]

    # Each text query is also searched by keywords alone and by both fused (RRF, k 60 unless asked), side by side,
    # where the store can (a Milvus server before 2.5 cannot: one note says why, not one per query).
    modes = {name: functools.partial(ranked, mode=name) for name in ("keywords", "hybrid")}
    try:
        ctx.store.keyword_search("probe", k=1)
    except ConfigError as exc:
        modes = {}
        notes.append(f"Text queries were searched by vectors only: {exc}")
    report = score(queries, ranked, text_supported=text_supported, progress=progress, text_modes=modes)
    report.notes.extend(notes)
    return report
