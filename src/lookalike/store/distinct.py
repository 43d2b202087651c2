"""The distinct values of a filter field with their counts: what a search page offers to pick from."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

log = logging.getLogger(__name__)
T = TypeVar("T")

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


class Recent:
    """Answers kept for a while by key: fresh for ``fresh_s``; then, up to ``stale_s``, still given while
    one refresh runs in the background; older ones are computed again before answering. ``forget``
    drops them all at once (a write), and an answer computed across a ``forget`` is not kept."""

    def __init__(self, fresh_s: float, stale_s: float) -> None:
        self.fresh_s = fresh_s
        self.stale_s = stale_s
        self._lock = threading.Lock()
        self._kept: dict[Hashable, tuple[float, Any]] = {}
        self._refreshing: set[Hashable] = set()
        self._generation = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            found = self._kept.get(key)
            age = time.monotonic() - found[0] if found else math.inf
            if found and age < self.fresh_s:
                return cast(T, found[1])
            if found and age < self.stale_s:
                if key not in self._refreshing:
                    self._refreshing.add(key)
                    threading.Thread(target=self._refresh, args=(key, compute), daemon=True).start()
                return cast(T, found[1])
            generation = self._generation
        return self._keep(key, compute(), generation)

    def forget(self) -> None:
        with self._lock:
            self._kept.clear()
            self._generation += 1

    def _keep(self, key: Hashable, value: T, generation: int) -> T:
        with self._lock:
            if generation == self._generation:
                self._kept[key] = (time.monotonic(), value)
        return value

    def _refresh(self, key: Hashable, compute: Callable[[], Any]) -> None:
        with self._lock:
            generation = self._generation
        try:
            self._keep(key, compute(), generation)
        except Exception:  # a failed refresh leaves the kept answer to age out; the next read computes
            log.warning("refreshing %r failed", key, exc_info=True)
        finally:
            with self._lock:
                self._refreshing.discard(key)
