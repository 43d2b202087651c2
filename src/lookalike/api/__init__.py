"""The HTTP API and the web page: FastAPI over the same service object as the CLI."""

from __future__ import annotations

from lookalike.api.app import create_app

__all__ = ["create_app"]
