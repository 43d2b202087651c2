"""The review queue over HTTP: policies, flags, decisions (with takedown), the audit, the review page."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from lookalike.api.deps import STATIC, blocking, context_of
from lookalike.usecases import policies, review
from lookalike.workflow import FlagStatus

router = APIRouter(tags=["review"])


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["confirm", "dismiss"]
    by: str = Field(min_length=1, max_length=200, description="Who decides, for the audit.")
    note: str = Field(default="", max_length=5000)
    take_down: bool = Field(default=False, description="With confirm: delete the item and erase its bytes.")


@router.get("/policies")
async def list_policies(request: Request) -> list[dict[str, Any]]:
    """The collection's policies and their labels."""
    found = await blocking(policies.listed, context_of(request))
    return [
        {
            "name": p.name,
            "added": review.timestamp(p.created_at),
            "labels": [{"label": s.name, "threshold": s.threshold} for s in policies.specs(p)],
        }
        for p in found
    ]


@router.get("/flags")
async def list_flags(
    request: Request,
    policy: Annotated[str | None, Query(max_length=70, description="A policy, or bank:NAME.")] = None,
    status: Annotated[FlagStatus | None, Query()] = None,
    since: Annotated[date | None, Query(description="Flagged on or after this day (UTC).")] = None,
    until: Annotated[date | None, Query(description="Flagged on or before this day (UTC).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, lt=2**63)] = 0,  # SQLite's integers are 64-bit
) -> dict[str, Any]:
    """Flags raised by policies, oldest first; item ids are strings (they exceed a JavaScript number)."""
    total, page = await blocking(
        review.flags,
        context_of(request),
        policy=policy,
        status=status,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return {"total": total, "flags": await blocking(review.flag_rows, context_of(request), page)}


@router.post("/flags/{flag_id}/review")
async def review_flag(
    request: Request, flag_id: Annotated[int, PathParam(ge=0, lt=2**63)], body: ReviewRequest
) -> dict[str, Any]:
    """Confirm or dismiss a flag; every decision is kept as an audit record.

    409 while another reviewer holds the flag (`GET /flags/next`, `POST /flags/{id}/claim`) and
    their lease has not expired.
    """
    decision = FlagStatus.CONFIRMED if body.decision == "confirm" else FlagStatus.DISMISSED
    records = await blocking(
        review.review,
        context_of(request),
        flag_id,
        decision,
        reviewer=body.by,
        note=body.note,
        take_down=body.take_down,
    )
    return {"decisions": [review.decision_row(d) for d in records]}


@router.get("/audit", response_class=FileResponse)
async def audit(
    request: Request,
    format: Annotated[Literal["csv", "json"], Query()] = "json",
    since: date | None = None,
    until: date | None = None,
) -> FileResponse:
    """The audit as CSV or JSON: every review decision (who, when, what, note, taken down) with the item it
    was about (item id, source, uri, SHA-256, PDQ hash), the policy or bank and the score, and every change
    to a hash bank (`record`: review or bank)."""
    folder = Path(tempfile.mkdtemp(prefix="lookalike-audit-"))
    path = folder / f"audit.{format}"
    await blocking(review.export_audit, context_of(request), str(path), since=since, until=until)

    def clean() -> None:
        path.unlink(missing_ok=True)
        folder.rmdir()

    media = "text/csv" if format == "csv" else "application/json"
    return FileResponse(
        path, media_type=media, filename=f"lookalike-audit.{format}", background=BackgroundTask(clean)
    )


@router.get("/review", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "review.html", media_type="text/html")
