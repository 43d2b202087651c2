"""The `lookalike` command: parses, builds the use cases' context, prints, exits. No logic lives here."""

from __future__ import annotations

# Importing a module registers its commands; --help lists them in import order.
from lookalike.cli import banks, bench, deletion, indexing, quality, queue, review, risk, search, serve  # noqa: F401
from lookalike.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
