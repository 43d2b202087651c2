"""Use cases: one module each (search, ingest, items, backup, risk, quality, training) over one Context.

The CLI and the API build a Context from the settings and call these functions; nothing here
prints or exits, and nothing heavy is imported until a use case needs a model.
"""

from __future__ import annotations

from typing import Any

from lookalike.usecases.context import Context

__all__ = ["API_NAMES", "CLI_NAMES", "Classified", "Context", "FieldNames", "Query", "SearchResult"]


def __getattr__(name: str) -> Any:
    # The query types are re-exported lazily, so that importing the context stays light.
    if name in __all__:
        from lookalike import queries

        return getattr(queries, name)
    raise AttributeError(f"module 'lookalike.usecases' has no attribute {name!r}")
