"""Retrieval quality: ranking metrics, evaluation query files, and a synthetic demo catalog."""

from __future__ import annotations

from lookalike.quality.metrics import METRICS, EvalQuery, load_eval_queries, rank_metrics

__all__ = ["METRICS", "EvalQuery", "load_eval_queries", "rank_metrics"]
