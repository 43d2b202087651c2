"""The one place that turns typed values into Milvus filter expressions.

User text is never pasted into an expression: strings become JSON-escaped literals
(Milvus reads the same escapes), numbers are formatted from ints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from lookalike.errors import ConfigError
from lookalike.store.fields import Kind
from lookalike.store.rows import check_identity
from lookalike.store.window import Window


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
    item_ids: Iterable[str] | None = None,
) -> str:
    """AND of the given conditions; an empty string matches everything.

    Args:
        ids: keep only these primary keys.
        exclude_ids: drop these primary keys.
        sources: keep items whose source is one of these.
        since: keep items with ``created_at >= since`` (unix seconds).
        until: keep items with ``created_at < until`` (unix seconds, exclusive).
        sha256: keep items with one of these content hashes.
        item_ids: keep items whose catalog item id is one of these.
    """
    clauses: list[str] = []
    if ids is not None:
        clauses.append(f"id in [{', '.join(_int(i) for i in ids)}]")
    if exclude_ids:
        clauses.append(f"not (id in [{', '.join(_int(i) for i in exclude_ids)}])")
    if sources is not None:
        clauses.append(f"source in [{', '.join(quote(_stored('source', s)) for s in sources)}]")
    if item_ids is not None:
        clauses.append(f"item_id in [{', '.join(quote(_stored('item_id', s)) for s in item_ids)}]")
    if sha256 is not None:
        clauses.append(f"sha256 in [{', '.join(quote(_stored('sha256', s)) for s in sha256)}]")
    if since is not None:
        clauses.append(f"created_at >= {_int(since)}")
    if until is not None:
        clauses.append(f"created_at < {_int(until)}")
    return " and ".join(f"({c})" for c in clauses)


def expression(window: Window) -> str:
    """The Milvus filter expression of a window (the read index's interpreter is ``Segment.mask``)."""
    clauses = [
        build_filter(
            exclude_ids=window.exclude_ids,
            sources=window.sources,
            since=window.since,
            until=window.until,
            item_ids=window.item_ids,
        )
    ]
    for field, values in window.key_fields():
        listed = ", ".join(quote(value) for value in values)
        if field.kind is Kind.TEXTS:  # a list field: holding one of the values at least
            clauses.append(f"array_contains_any({field.name}, [{listed}])")
        else:
            clauses.append(f"{field.name} in [{listed}]")
    base, keys = clauses[0], clauses[1:]
    return " and ".join([base] * bool(base) + [f"({c})" if base or len(keys) > 1 else c for c in keys])
