"""Waves over HTTP: a check of a window run as a job, and the waves raised so far."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from lookalike.api.deps import blocking, context_of
from lookalike.api.jobs import Jobs
from lookalike.api.schemas import SourceFilter
from lookalike.usecases import waves
from lookalike.workflow import Member, Wave

router = APIRouter(tags=["risk control"])


class WavesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str = Field(
        min_length=1,
        max_length=40,
        description="A day (2023-11-19), a UTC time (2023-11-19T08:00) or a span ago (6h, 2d).",
    )
    until: str | None = Field(default=None, min_length=1, max_length=40, description="As since; default now.")
    min_sellers: int = Field(default=3, ge=2, le=10_000, description="Distinct sources a cluster must span.")
    threshold: float = Field(
        default=0.95, ge=-1, le=1, description="Cosine that makes two pictures near-duplicates."
    )
    sources: list[SourceFilter] | None = Field(default=None, max_length=100)
    dry_run: bool = Field(default=False, description="Report the clusters; flag nothing.")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat().replace("+00:00", "Z")


def _members(members: tuple[Member, ...]) -> list[dict[str, Any]]:
    return [
        {"item": str(m.item), "item_id": m.item_id, "source": m.source, "score": round(m.score, 6)}
        for m in members
    ]


def wave_json(wave: Wave) -> dict[str, Any]:
    return {
        "id": wave.id,
        "flag": wave.flag,
        "found_at": _iso(wave.found_at),
        "since": _iso(wave.since),
        "until": _iso(wave.until),
        "threshold": wave.threshold,
        "sellers": wave.sellers,
        "items": _members(wave.members),
    }


@router.post("/waves", status_code=202)
async def check_waves(request: Request, body: WavesRequest) -> dict[str, str]:
    """Look for near-duplicate clusters created in the window across `min_sellers` sources; each new
    one is raised as one grouped flag (policy `waves`), never twice. A job: `GET /jobs/{id}`."""
    ctx = context_of(request)
    since = waves.moment(body.since, option="since")  # a bad time is a 400 now
    until = waves.moment(body.until, end=True, option="until") if body.until else None

    def work(on_start: Callable[[int], None], progress: Callable[[int], None]) -> dict[str, Any]:
        found = waves.find(
            ctx,
            since=since,
            until=until,
            min_sellers=body.min_sellers,
            threshold=body.threshold,
            sources=body.sources or (),
            dry_run=body.dry_run,
            progress=progress,
        )
        return waves.found_json(found)

    jobs: Jobs = request.app.state.jobs
    job = jobs.submit(work, kind="waves")
    return {"job_id": job.id, "status": job.status}


@router.get("/waves")
async def list_waves(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, lt=2**63)] = 0,
) -> dict[str, Any]:
    """Waves raised so far, newest first, with their items and sellers."""
    total, found = await blocking(waves.listed, context_of(request), limit=limit, offset=offset)
    return {"total": total, "waves": [wave_json(w) for w in found]}
