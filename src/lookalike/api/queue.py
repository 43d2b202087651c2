"""The review queue for a team over HTTP: claim the next flag, hold or let go of one, see one whole."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from lookalike.api.deps import blocking, context_of
from lookalike.usecases import queue

router = APIRouter(tags=["review"])
FlagId = Annotated[int, PathParam(ge=0, lt=2**63)]  # SQLite's integers are 64-bit
Reviewer = Annotated[
    str, Query(min_length=1, max_length=200, description="The reviewer's name, as in the audit.")
]
Lease = Annotated[
    float | None,
    Query(
        gt=0,
        le=86400,
        description="Seconds the claim lasts unless renewed (default LOOKALIKE_REVIEW_LEASE_S).",
    ),
]


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=200, description="The reviewer's name, as in the audit.")
    lease_s: float | None = Field(default=None, gt=0, le=86400, description="Seconds the claim lasts.")


claim_json = queue.claim_row  # one shape for the API and the command line
detail_json = queue.detail_row  # one shape for the API and `lookalike claim --json`


@router.get("/flags/next")
async def next_flag(
    request: Request,
    response: Response,
    by: Reviewer,
    policy: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[date | None, Query(description="Flagged on or after this day (UTC).")] = None,
    until: Annotated[date | None, Query(description="Flagged on or before this day (UTC).")] = None,
    after: Annotated[int | None, Query(ge=0, lt=2**63, description="Skip to a flag after this one.")] = None,
    lease_s: Lease = None,
) -> dict[str, Any]:
    """Claim the next open flag for a reviewer: the one they hold already, else the oldest nobody holds.

    Two reviewers asking at once never get the same flag. `flag` is null when every open flag is
    decided or held by someone else. Deciding a flag another reviewer holds answers 409.
    """
    response.headers["Cache-Control"] = "no-store"
    ctx = context_of(request)

    def work() -> dict[str, Any]:
        found = queue.next_flag(
            ctx, by, policy=policy, since=since, until=until, after=after, lease_s=lease_s
        )
        if found is None:
            return {"flag": None}
        return {"flag": detail_json(queue.detail(ctx, found.flag.id))}

    return await blocking(work)


@router.get("/flags/{flag_id}")
async def flag_detail(request: Request, flag_id: FlagId) -> dict[str, Any]:
    """One flag whole: its item, who holds it, and what it matched (a policy's label and prompts, a
    wave's items)."""
    return detail_json(await blocking(queue.detail, context_of(request), flag_id))


@router.post("/flags/{flag_id}/claim")
async def claim_flag(request: Request, flag_id: FlagId, body: ClaimRequest) -> dict[str, Any]:
    """Claim an open flag, or renew the claim (409 while another reviewer holds it)."""
    ctx = context_of(request)

    def work() -> dict[str, Any]:
        queue.claim(ctx, flag_id, body.by, lease_s=body.lease_s)
        return detail_json(queue.detail(ctx, flag_id))

    return await blocking(work)


@router.delete("/flags/{flag_id}/claim")
async def release_flag(request: Request, flag_id: FlagId, by: Reviewer) -> dict[str, Any]:
    """Let a claim go (409 if another reviewer holds it); `released` is false when none was held."""
    released = await blocking(queue.release, context_of(request), flag_id, by)
    return {"released": released}


@router.get("/review/config")
async def review_config(request: Request) -> dict[str, Any]:
    """What the review page starts with: whether pictures are blurred until revealed, the lease."""
    settings = context_of(request).settings
    return {"blur": settings.review_blur, "lease_s": settings.review_lease_s}
