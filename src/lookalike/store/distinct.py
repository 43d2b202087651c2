"""The distinct values of a filter field with their counts: what a search page offers to pick from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DISTINCT_LIMIT = 200
"""Values listed per field by default: the most frequent ones (a picker of more helps nobody)."""


@dataclass(frozen=True)
class Distinct:
    """A field's values, the most frequent first (ties by value), and whether more were left out."""

    values: tuple[tuple[str, int], ...]
    truncated: bool = False


def top(counts: Mapping[str, int], limit: int) -> Distinct:
    """The ``limit`` most frequent values of these counts (empty texts are not values)."""
    ranked = sorted(
        ((value, n) for value, n in counts.items() if value and n > 0), key=lambda p: (-p[1], p[0])
    )
    return Distinct(tuple(ranked[:limit]), truncated=len(ranked) > limit)


def add(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for value, n in counts.items():
        into[value] = into.get(value, 0) + n


def count_rows(rows: Iterable[Mapping[str, object]], names: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per field, how many rows hold each value (a list field's row counts once per distinct value)."""
    wanted = tuple(names)
    counts: dict[str, dict[str, int]] = {name: {} for name in wanted}
    for row in rows:
        for name in wanted:
            value = row.get(name)
            texts = set(value) if isinstance(value, list | tuple) else (value,)
            found = counts[name]
            for text in texts:
                if isinstance(text, str) and text:
                    found[text] = found.get(text, 0) + 1
    return counts
