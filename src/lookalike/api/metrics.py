"""Prometheus metrics: requests and latency per route, items indexed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """One registry per app, so that several apps (tests) do not share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lookalike_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lookalike_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.indexed = Counter(
            "lookalike_items_indexed_total", "Images indexed through this server.", registry=self.registry
        )
        self.items = Gauge("lookalike_items", "Items stored in the collection.", registry=self.registry)
