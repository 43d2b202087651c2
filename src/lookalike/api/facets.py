"""``GET /facets``: the search page's pickers (each filter field's known values) and the search modes
this server's API offers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from lookalike.api.deps import blocking, context_of
from lookalike.api.schemas import SearchRequest
from lookalike.store.distinct import DISTINCT_LIMIT
from lookalike.usecases import facets as facets_of

router = APIRouter(tags=["search"])

OPTIONAL_FEATURES = ("hybrid", "keywords", "per_item", "like", "unlike")
"""Search request fields a page uses only where this server's API has them."""


def features() -> list[str]:
    """The optional search fields ``SearchRequest`` has (so a page never sends one the server refuses)."""
    return [name for name in OPTIONAL_FEATURES if name in SearchRequest.model_fields]


class ValueOut(BaseModel):
    value: str
    count: int


class FacetOut(BaseModel):
    name: str
    param: str
    label: str
    values: list[ValueOut]
    truncated: bool


class FacetsOut(BaseModel):
    fields: list[FacetOut]
    has_names: bool
    features: list[str]


@router.get("/facets", response_model=FacetsOut)
async def facets(
    request: Request,
    limit: int = Query(default=DISTINCT_LIMIT, ge=1, le=1000, description="Values listed per field at most."),
) -> dict[str, Any]:
    """Each filter field's most frequent values with their counts (`truncated`: more exist), whether
    the collection holds names, and which optional search fields (`features`) this server accepts."""
    found = await blocking(facets_of.facets, context_of(request), limit=limit)
    return {
        "fields": [
            {
                "name": facet.name,
                "param": facet.param,
                "label": facet.label,
                "values": [{"value": v, "count": n} for v, n in facet.values.values],
                "truncated": facet.values.truncated,
            }
            for facet in found.fields
        ],
        "has_names": found.has_names,
        "features": features(),
    }
