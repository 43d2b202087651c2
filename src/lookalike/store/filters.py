"""The one place that turns typed values into Milvus filter expressions.

User text is never pasted into an expression: strings become JSON-escaped literals
(Milvus reads the same escapes), numbers are formatted from ints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from lookalike.errors import ConfigError
from lookalike.store.rows import check_identity


def quote(value: str) -> str:
    """A Milvus string literal that holds exactly ``value``."""
    if any(ord(ch) < 0x20 for ch in value):
        raise ConfigError(f"Control characters are not allowed in filter values: {value!r}")
    return json.dumps(value, ensure_ascii=False)


def _int(value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"Expected an integer, got {value!r}")
    return str(int(value))


def _stored(name: str, value: str) -> str:
    """``value``, refused when no stored identity could hold it (over its byte limit, not UTF-8)."""
    check_identity(name, value, f"A {name} filter")
    return value


def build_filter(
    *,
    ids: Sequence[int] | None = None,
    exclude_ids: Sequence[int] | None = None,
    sources: Iterable[str] | None = None,
    since: int | None = None,
    until: int | None = None,
    sha256: Iterable[str] | None = None,
) -> str:
    """AND of the given conditions; an empty string matches everything.

    Args:
        ids: keep only these primary keys.
        exclude_ids: drop these primary keys.
        sources: keep items whose source is one of these.
        since: keep items with ``created_at >= since`` (unix seconds).
        until: keep items with ``created_at < until`` (unix seconds, exclusive).
        sha256: keep items with one of these content hashes.
    """
    clauses: list[str] = []
    if ids is not None:
        clauses.append(f"id in [{', '.join(_int(i) for i in ids)}]")
    if exclude_ids:
        clauses.append(f"not (id in [{', '.join(_int(i) for i in exclude_ids)}])")
    if sources is not None:
        clauses.append(f"source in [{', '.join(quote(_stored('source', s)) for s in sources)}]")
    if sha256 is not None:
        clauses.append(f"sha256 in [{', '.join(quote(_stored('sha256', s)) for s in sha256)}]")
    if since is not None:
        clauses.append(f"created_at >= {_int(since)}")
    if until is not None:
        clauses.append(f"created_at < {_int(until)}")
    return " and ".join(f"({c})" for c in clauses)
