"""Webhook deliveries over HTTP: listed by state, failed ones replayed, a test event sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam

from lookalike.api.deps import blocking, context_of
from lookalike.usecases import webhooks
from lookalike.workflow import Delivery, DeliveryStatus

router = APIRouter(tags=["webhooks"])


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat().replace("+00:00", "Z")


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event": d.event,
        "type": d.type,
        "url": d.url,
        "status": d.status.value,
        "attempts": d.attempts,
        "next_attempt_at": _iso(d.next_at) if d.status is DeliveryStatus.PENDING else None,
        "last_error": d.last_error or None,
        "updated_at": _iso(d.updated_at),
        "created_at": _iso(d.created_at),
        "body": json.loads(d.body),
    }


@router.get("/webhooks/deliveries")
async def list_deliveries(
    request: Request,
    status: Annotated[DeliveryStatus | None, Query(description="failed: the list to replay from.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, lt=2**63)] = 0,
) -> dict[str, Any]:
    """Webhook deliveries, oldest first: pending (with the next attempt's time), delivered, failed."""
    total, page = await blocking(
        webhooks.deliveries, context_of(request), status=status, limit=limit, offset=offset
    )
    return {"total": total, "deliveries": [delivery_json(d) for d in page]}


@router.post("/webhooks/deliveries/{delivery_id}/replay")
async def replay_one(
    request: Request, delivery_id: Annotated[int, PathParam(ge=0, lt=2**63)]
) -> dict[str, Any]:
    """Send a failed delivery again: pending now, its attempts counted afresh (400 unless failed)."""
    return {"replayed": await blocking(webhooks.replay, context_of(request), [delivery_id])}


@router.post("/webhooks/replay")
async def replay_failed(request: Request) -> dict[str, Any]:
    """Send every failed delivery again."""
    return {"replayed": await blocking(webhooks.replay, context_of(request), None)}


@router.post("/webhooks/ping")
async def ping(request: Request) -> dict[str, Any]:
    """A `ping` event to every configured URL (null: LOOKALIKE_WEBHOOK_URLS is not set)."""
    return {"event": await blocking(webhooks.ping, context_of(request))}
