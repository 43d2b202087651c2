"""What a search can be narrowed to: each filter field's known values with their counts (the search page's
pickers), and whether the collection holds names (a keyword search has something to read)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lookalike.queries import API_NAMES
from lookalike.store import fields
from lookalike.store.distinct import DISTINCT_LIMIT, Distinct
from lookalike.usecases.context import Context

log = logging.getLogger(__name__)

FILTER_FIELDS: tuple[str, ...] = ("source", *(spec.name for spec in fields.FILTER_FIELDS))
"""The fields a search filters by value: the source, and the field table's filter fields (category, tags)."""
PARAMS = {"source": API_NAMES.source, **{name: spec.param for name, spec in fields.FILTERS.items()}}
"""What the API (and the page's address) calls each filter."""


@dataclass(frozen=True)
class Facet:
    name: str
    """The field (``source``, ``category``, ``tags``)."""
    param: str
    """The search request's parameter that filters by it (``sources``, ``categories``, ``tags``)."""
    label: str
    values: Distinct


@dataclass(frozen=True)
class Facets:
    fields: tuple[Facet, ...]
    has_names: bool


def facets(ctx: Context, *, limit: int = DISTINCT_LIMIT) -> Facets:
    """Each filter field's most frequent values (at most ``limit``) with counts; none for a collection
    not made yet. On Lite this reads the read index's columns; on a server, one pass, kept a minute."""
    names = FILTER_FIELDS
    store = ctx.store
    if not store.exists():
        found = {name: Distinct(()) for name in names}
        has_names = False
    else:
        store.require()
        found = store.distinct(names, limit=limit)
        has_names = store.has_text("name")
    return Facets(
        tuple(Facet(name, PARAMS[name], name.replace("_", " ").capitalize(), found[name]) for name in names),
        has_names,
    )


def warm(ctx: Context) -> None:
    """Count a server's values once, in the background of ``serve``'s start, so that the first page
    load finds them kept (a server needs a pass over the collection; Lite's read index a few ms)."""
    try:
        if not ctx.store.is_lite:
            facets(ctx)
    except Exception:  # the first request will say what is wrong
        log.warning("could not count the filter fields' values ahead", exc_info=True)
