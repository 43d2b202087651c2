"""What a search can be narrowed to: each filter field's known values with their counts (the search page's
pickers), and whether the collection holds names (a keyword search has something to read)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lookalike.queries import API_NAMES
from lookalike.store.distinct import DISTINCT_LIMIT, Distinct
from lookalike.store.fields import KEY_FIELDS
from lookalike.usecases.context import Context

log = logging.getLogger(__name__)

FILTER_FIELDS: tuple[str, ...] = ("source", *KEY_FIELDS)
"""The fields a search filters by: the source, and the table's key fields (category, tags)."""

# What the API calls each filter and how a person reads it. (The field table will describe its filters
# itself; until then the three filters the API has are named here.)
_PARAMS = {"source": API_NAMES.source, "category": API_NAMES.category, "tags": API_NAMES.tag}
_LABELS = {"source": "Source", "category": "Category", "tags": "Tags"}


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
    names = tuple(name for name in FILTER_FIELDS if name in _PARAMS)
    store = ctx.store
    if not store.exists():
        found = {name: Distinct(()) for name in names}
        has_names = False
    else:
        store.require()
        found = store.distinct(names, limit=limit)
        has_names = store.has_text("name")
    return Facets(
        tuple(Facet(name, _PARAMS[name], _LABELS.get(name, name), found[name]) for name in names),
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
