"""The window of a store read: which items a search, a count or a pass over the collection sees.

One immutable value, taken by every read of every store, with one interpreter per backend: a
Milvus filter expression (``filters.expression``) and a read-index row mask (``Segment.mask``).
The months a window can touch are chosen here alone (``may_hold``, ``partitions``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lookalike.store.fields import BY_NAME, BY_PARAM, FILTER_FIELDS, Field
from lookalike.store.partitions import month_start, next_month


def _texts(values: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Window:
    """Items inside every condition given (None: that condition is not asked for).

    ``sources``, ``item_ids``: the item's value is one of these (an empty tuple matches nothing);
    ``keys``: for each filter field of the field table asked for (``fields.FILTER_FIELDS``: category,
    tags), the values wanted: a text field's value is one of them, a list field holds one at least;
    ``since`` <= created_at < ``until`` (unix seconds); ``exclude_ids``: leave these stored ids out.
    """

    sources: tuple[str, ...] | None = None
    keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(field name, values) for each filter field asked for, in the field table's order."""
    since: int | None = None
    until: int | None = None
    item_ids: tuple[str, ...] | None = None
    exclude_ids: tuple[int, ...] = ()

    @classmethod
    def of(
        cls,
        *,
        sources: Iterable[str] | None = None,
        since: int | None = None,
        until: int | None = None,
        item_ids: Iterable[str] | None = None,
        exclude_ids: Iterable[int] | None = None,
        **keys: Iterable[str] | None,
    ) -> Window:
        """A window from any sequences (an empty list of values matches nothing). ``keys`` are the
        filter fields by their parameter's name (``categories=["shoes"]``, ``tags=["red"]``); each
        value is stripped, as a stored one was, and never cut: one longer than its field holds matches
        nothing, since none is stored (``rows.keep_whole``)."""
        unknown = sorted(set(keys) - set(BY_PARAM))
        if unknown:
            raise TypeError(f"no filter field is called {', '.join(unknown)} (known: {', '.join(BY_PARAM)})")
        wanted = {BY_PARAM[param].name: values for param, values in keys.items() if values is not None}
        return cls(
            sources=_texts(sources),
            keys=tuple(
                (field.name, tuple(dict.fromkeys(value.strip() for value in wanted[field.name])))
                for field in FILTER_FIELDS
                if field.name in wanted
            ),
            since=since,
            until=until,
            item_ids=_texts(item_ids),
            exclude_ids=tuple(dict.fromkeys(int(i) for i in exclude_ids or ())),
        )

    @property
    def everything(self) -> bool:
        """Whether the window holds every item (nothing is asked for)."""
        return self == EVERYTHING

    @property
    def nothing(self) -> bool:
        """Whether no item can be inside (an empty list of values, or since at or after until)."""
        return (
            self.sources == ()
            or any(values == () for _, values in self.keys)
            or self.item_ids == ()
            or (self.since is not None and self.until is not None and self.since >= self.until)
        )

    @property
    def by_rows(self) -> bool:
        """Whether a condition other than the time is asked for (it is checked row by row)."""
        return (
            self.sources is not None or bool(self.keys) or self.item_ids is not None or bool(self.exclude_ids)
        )

    def values(self, name: str) -> tuple[str, ...] | None:
        """The values wanted of a filter field (by its name: ``category``), or None if not asked."""
        return dict(self.keys).get(name)

    def key_fields(self) -> Iterable[tuple[Field, tuple[str, ...]]]:
        """Each filter field asked for, with its values."""
        return ((BY_NAME[name], values) for name, values in self.keys)

    @property
    def timed(self) -> bool:
        return self.since is not None or self.until is not None

    def may_hold(self, partition: str) -> bool:
        """Whether a partition can hold items of the window: a monthly one that overlaps its time, or
        any other (``_default``, a foreign one), which is filtered row by row."""
        start = month_start(partition)
        if start is None:
            return True
        return (self.since is None or next_month(start) > self.since) and (
            self.until is None or start < self.until
        )

    def partitions(self, existing: Sequence[str]) -> list[str] | None:
        """The existing partitions a read of the window needs (None: all of them, no time asked)."""
        if not self.timed:
            return None
        return [name for name in existing if self.may_hold(name)]

    def covers(self, first: int, last: int) -> bool:
        """Whether created_at from ``first`` to ``last`` lies wholly inside the window's time."""
        return (self.since is None or self.since <= first) and (self.until is None or last < self.until)


EVERYTHING = Window()
