"""Run evaluation queries through a search function and summarise each direction's ranking metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lookalike.errors import LookalikeError
from lookalike.quality.metrics import EvalQuery, rank_metrics

DIRECTIONS = {"text": "text_to_image", "image": "image_to_image"}
TEXT_MODES = {"keywords": "text_to_image_by_keywords", "hybrid": "text_to_image_hybrid"}
"""Other ways a text query is searched, reported beside the vector search's text_to_image."""
NEEDS_MODEL = {"text_to_image", "text_to_image_hybrid"}

Search = Callable[[EvalQuery], list[str]]


@dataclass
class EvalReport:
    """Metrics per direction (None where there were no queries), and the queries that could not run."""

    metrics: dict[str, dict[str, float] | None]
    counts: dict[str, int]
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            name: ({**metrics, "queries": self.counts[name]} if metrics is not None else None)
            for name, metrics in self.metrics.items()
        }
        payload["failed"] = [{"query": query, "reason": reason} for query, reason in self.failed]
        payload["notes"] = self.notes
        return payload


def evaluate(
    queries: Sequence[EvalQuery],
    search: Search,
    *,
    text_supported: bool = True,
    progress: Callable[[int], None] | None = None,
    text_modes: Mapping[str, Search] | None = None,
) -> EvalReport:
    """Rank with ``search`` (a query → item ids, best first) and score against each query's relevant ids.

    ``text_modes``: other searches of each text query (``TEXT_MODES``: by keywords, hybrid), each
    reported as a direction of its own beside text_to_image. A query whose search fails (an
    unreadable image) is reported in ``failed`` and left out of the means; it does not stop the others.
    """
    searches: dict[str, Search] = {"text_to_image": search, "image_to_image": search}
    searches.update({TEXT_MODES[mode]: found for mode, found in (text_modes or {}).items()})
    order = ["text_to_image", *(TEXT_MODES[m] for m in TEXT_MODES if TEXT_MODES[m] in searches)]
    order.append("image_to_image")
    rankings: dict[str, list[list[str]]] = {name: [] for name in order}
    relevant: dict[str, list[frozenset[str]]] = {name: [] for name in order}
    report = EvalReport({}, {})
    skipped_text = 0
    for query in queries:
        if progress:
            progress(1)
        directions = (
            [n for n in order if n.startswith("text")] if query.kind == "text" else ["image_to_image"]
        )
        if query.kind == "text" and not text_supported:
            skipped_text += 1
            directions = [n for n in directions if n not in NEEDS_MODEL]
        for name in directions:
            try:
                ranked = searches[name](query)
            except LookalikeError as exc:
                report.failed.append((query.query, str(exc)))
                break  # one reason per query: the same one would fail its other searches too
            rankings[name].append(ranked)
            relevant[name].append(query.relevant)
    if skipped_text:
        how = "searched by keywords alone" if TEXT_MODES["keywords"] in searches else "skipped"
        report.notes.append(f"{skipped_text} text queries {how}: the model embeds images only.")
    for name in order:
        report.counts[name] = len(rankings[name])
        report.metrics[name] = rank_metrics(rankings[name], relevant[name]) if rankings[name] else None
    return report
