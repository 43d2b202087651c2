"""Retrieval quality: ranking metrics, evaluation runs, and a synthetic demo catalog."""

from __future__ import annotations

from lookalike.quality.evaluate import EvalReport, evaluate
from lookalike.quality.metrics import METRICS, EvalQuery, load_eval_queries, rank_metrics

__all__ = ["METRICS", "EvalQuery", "EvalReport", "evaluate", "load_eval_queries", "rank_metrics"]
