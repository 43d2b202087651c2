"""Ranking metrics over item ids, and the query file ``lookalike eval`` reads.

recall@k is the share of queries with at least one relevant item among the first k
(the "R@k" of CLIP retrieval benchmarks); MRR is the mean reciprocal rank of the first
relevant item (0 when none is ranked); nDCG@10 uses binary relevance.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lookalike.errors import CatalogError
from lookalike.ingest.decode import supported_extensions

METRICS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")
QueryKind = Literal["text", "image"]
_SEPARATORS = re.compile(r"[|;]")


@dataclass(frozen=True)
class EvalQuery:
    """One evaluation query: a text or an image location, and the item ids that answer it."""

    kind: QueryKind
    query: str
    relevant: frozenset[str]


def _dedupe(ranking: Sequence[str]) -> list[str]:
    # Several stored rows may share an item id (the same product listed twice, crops of one
    # photo); an item counts once, at its best rank.
    return list(dict.fromkeys(ranking))


def rank_metrics(rankings: Sequence[Sequence[str]], relevant: Sequence[frozenset[str]]) -> dict[str, float]:
    """Mean recall@1/5/10, MRR and nDCG@10 of ranked item ids against each query's relevant ids."""
    if len(rankings) != len(relevant):
        raise ValueError("one ranking per query")
    totals = dict.fromkeys(METRICS, 0.0)
    for ranking, wanted in zip(rankings, relevant, strict=True):
        ranked = _dedupe(ranking)
        hits = [i for i, item in enumerate(ranked) if item in wanted]
        first = hits[0] if hits else None
        for k in (1, 5, 10):
            totals[f"recall@{k}"] += float(first is not None and first < k)
        totals["mrr"] += 1.0 / (first + 1) if first is not None else 0.0
        dcg = sum(1.0 / math.log2(i + 2) for i in hits if i < 10)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(wanted), 10)))
        totals["ndcg@10"] += dcg / ideal if ideal else 0.0
    count = max(len(rankings), 1)
    return {name: round(total / count, 4) for name, total in totals.items()}


def _kind(value: str, declared: str, base: Path) -> tuple[QueryKind, str]:
    declared = declared.strip().lower()
    if declared not in {"", "text", "image"}:
        raise ValueError(f"kind must be text or image, got {declared!r}")
    looks_like_image = Path(value).suffix.lower() in supported_extensions()
    if declared == "image" or (not declared and looks_like_image):
        if value.lower().startswith(("http://", "https://")):
            return "image", value
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if declared == "image" or path.is_file():
            return "image", str(path)
    return "text", value


def load_eval_queries(path: str | Path) -> list[EvalQuery]:
    """Read a CSV with columns ``query`` and ``relevant`` (item ids separated by | or ;).

    An optional ``kind`` column says text or image; without it, a query that names an
    existing image file (relative to the CSV's folder) or an image URL is an image query.

    Raises:
        CatalogError: the file is missing, a column is missing, or a row is malformed.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or ())
            if not {"query", "relevant"} <= columns:
                raise CatalogError(
                    f"{path} needs the columns 'query' and 'relevant' (item ids separated by | or ;), "
                    f"and may have 'kind' (text or image); it has {sorted(columns) or 'none'}."
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"Cannot read the query file {path}: {exc}") from exc
    queries = []
    for line, row in enumerate(rows, start=2):
        value = (row.get("query") or "").strip()
        relevant = frozenset(i.strip() for i in _SEPARATORS.split(row.get("relevant") or "") if i.strip())
        if not value or not relevant:
            raise CatalogError(f"{path}, line {line}: a query needs a non-empty 'query' and 'relevant'.")
        try:
            kind, query = _kind(value, row.get("kind") or "", path.parent)
        except ValueError as exc:
            raise CatalogError(f"{path}, line {line}: {exc}") from None
        queries.append(EvalQuery(kind, query, relevant))
    if not queries:
        raise CatalogError(f"{path} has no queries.")
    return queries
