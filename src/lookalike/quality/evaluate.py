"""Run evaluation queries through a search function and summarise each direction's ranking metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lookalike.errors import LookalikeError
from lookalike.quality.metrics import EvalQuery, rank_metrics

DIRECTIONS = {"text": "text_to_image", "image": "image_to_image"}


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
    search: Callable[[EvalQuery], list[str]],
    *,
    text_supported: bool = True,
    progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """Rank with ``search`` (a query → item ids, best first) and score against each query's relevant ids.

    A query whose search fails (an unreadable image) is reported in ``failed`` and left out
    of the means; it does not stop the others.
    """
    rankings: dict[str, list[list[str]]] = {name: [] for name in DIRECTIONS.values()}
    relevant: dict[str, list[frozenset[str]]] = {name: [] for name in DIRECTIONS.values()}
    report = EvalReport({}, {})
    skipped_text = 0
    for query in queries:
        if progress:
            progress(1)
        if query.kind == "text" and not text_supported:
            skipped_text += 1
            continue
        try:
            ranked = search(query)
        except LookalikeError as exc:
            report.failed.append((query.query, str(exc)))
            continue
        rankings[DIRECTIONS[query.kind]].append(ranked)
        relevant[DIRECTIONS[query.kind]].append(query.relevant)
    if skipped_text:
        report.notes.append(f"{skipped_text} text queries skipped: the model embeds images only.")
    for name in DIRECTIONS.values():
        report.counts[name] = len(rankings[name])
        report.metrics[name] = rank_metrics(rankings[name], relevant[name]) if rankings[name] else None
    return report
