"""Risk-control routes: scans and duplicate searches as jobs, partitions listed and dropped."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse

from lookalike.api.deps import blocking, context_of
from lookalike.api.jobs import Jobs
from lookalike.api.schemas import DuplicatesRequest, PartitionOut, ScanRequest
from lookalike.queries import API_NAMES, day_window
from lookalike.usecases import risk

router = APIRouter(tags=["risk control"])
_MEDIA = {"json": "application/json", "csv": "text/csv", "html": "text/html"}


def _report_path(request: Request, job_hint: str, fmt: str) -> str:
    folder: Path = request.app.state.reports
    return str(folder / f"{job_hint}.{fmt}")


def _day(ts: int | None) -> date | None:
    return datetime.fromtimestamp(ts, UTC).date() if ts is not None else None


@router.post("/scan", status_code=202)
async def scan(request: Request, body: ScanRequest) -> dict[str, str]:
    """Score every stored item in the window against the label set; a job that writes a report.

    `GET /jobs/{id}` shows progress and, when done, the counts and `report_url`.
    """
    ctx = context_of(request)
    day_window(body.since, body.until, API_NAMES)  # a reversed window is a 400 now, in the API's own words
    specs = await blocking(risk.parse_labels, body.labels)  # a bad label table is a 400 now
    jobs: Jobs = request.app.state.jobs
    report = _report_path(request, f"scan-{uuid.uuid4().hex}", body.format)

    def work(on_start: Callable[[int], None], progress: Callable[[int], None]) -> dict[str, Any]:
        total, written = risk.scan_report(
            ctx,
            specs,
            report,
            sources=body.sources or (),
            since=body.since,
            until=body.until,
            min_score=body.min_score,
            on_start=on_start,
            progress=progress,
        )
        return {"items_in_window": total, "rows": written}

    job = jobs.submit(work, kind="scan", report=report)
    return {"job_id": job.id, "status": job.status}


@router.post("/duplicates", status_code=202)
async def duplicates(request: Request, body: DuplicatesRequest) -> dict[str, str]:
    """Find reused images (exact and near groups); a job that writes a report."""
    ctx = context_of(request)
    jobs: Jobs = request.app.state.jobs
    report = _report_path(request, f"duplicates-{uuid.uuid4().hex}", body.format)

    def work(on_start: Callable[[int], None], progress: Callable[[int], None]) -> dict[str, Any]:
        groups = risk.duplicates_report(
            ctx,
            report,
            threshold=body.threshold,
            sources=body.sources or (),
            progress=progress,
            by=body.by,
            max_distance=body.max_distance,
        )
        exact = sum(1 for group in groups if group.kind == "exact")
        return {"groups": len(groups), "exact": exact, "near": len(groups) - exact}

    job = jobs.submit(work, kind="duplicates", report=report)
    return {"job_id": job.id, "status": job.status}


@router.get("/jobs/{job_id}/report", response_class=FileResponse)
async def report(request: Request, job_id: str) -> FileResponse:
    """The report a finished scan or duplicates job wrote."""
    job = request.app.state.jobs.get(job_id)
    if job is None or job.report is None:
        raise HTTPException(404, f"no report for job {job_id!r}")
    if job.status != "done" or not Path(job.report).is_file():
        raise HTTPException(409, f"job {job_id} is {job.status}; its report is not ready")
    fmt = Path(job.report).suffix.lstrip(".")
    return FileResponse(job.report, media_type=_MEDIA.get(fmt), filename=f"lookalike-{job.kind}.{fmt}")


@router.get("/partitions", response_model=list[PartitionOut])
async def partitions(request: Request) -> list[dict[str, Any]]:
    found = await blocking(risk.partitions, context_of(request))
    return [
        {
            "name": p.name,
            "rows": p.rows,
            "first_day": _day(p.start),
            "last_day": _day(p.end - 1 if p.end is not None else None),
        }
        for p in found
    ]


@router.delete("/partitions")
async def drop_partitions(
    request: Request,
    before: Annotated[date, Query(description="Drop whole months that end before this day.")],
) -> dict[str, Any]:
    """Drop the monthly partitions strictly older than `before`, with all their items."""
    ctx = context_of(request)
    doomed = await blocking(risk.partitions_before, ctx, before)
    await blocking(risk.drop_partitions, ctx, [p.name for p in doomed])
    return {"dropped": [p.name for p in doomed], "items": sum(p.rows for p in doomed)}
