"""The matching service, after HMA's (Hasher-Matcher-Actioner's) API: hash a picture, look a hash up in the banks.

- ``GET /h/hash?url=...`` and ``POST /h/hash`` (one picture, multipart field ``photo``, ``image`` or
  ``file``): ``{"pdq": HASH, "quality": Q}``, the hash other PDQ tools compute for the picture.
- ``GET /m/lookup?signal_type=pdq&signal=HASH``: which enabled banks the hash matches, each at its
  own distance (``bank=NAME``, repeatable: only these); ``POST /m/lookup`` with a picture hashes
  and looks it up; with JSON ``{"signals": [...]}`` looks up to 1,000 hashes at once.
- ``GET /banks``: the banks, their settings and sizes.

An allow bank's match suppresses the block matches (``allowed_by`` says which entries did); a
picture's hash of quality below 50 is not matched (PDQ's own advice), as at ingest.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from lookalike.api.deps import blocking, context_of
from lookalike.api.routes import _download, _json, _upload, _validate
from lookalike.usecases import banks
from lookalike.workflow.banks import MIN_QUALITY
from lookalike.workflow.matcher import Match, Verdict

router = APIRouter(tags=["matching"])
PdqHash = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$", description="A PDQ hash: 64 hex digits.")]
BankNames = Annotated[
    list[Annotated[str, Field(max_length=64)]] | None,
    Query(alias="bank", max_length=100, description="Only these banks (repeatable)."),
]
PICTURE_FIELDS = ("photo", "image", "file")  # HMA names the field by content type; lookalike's /search, image


class HashOut(BaseModel):
    pdq: str
    quality: int = Field(
        description="0-100; below 50 the hash describes too little of the picture to match on."
    )


class MatchOut(BaseModel):
    bank: str
    kind: str
    action: str
    entry: int
    distance: int


class LookupOut(BaseModel):
    signal_type: str = "pdq"
    signal: str
    banks: list[str] = Field(description="The block banks matched (HMA's lookup answer).")
    matches: list[MatchOut]
    allowed_by: list[MatchOut] = Field(description="Allow-bank entries that suppressed the block matches.")
    quality: int | None = None  # a picture's: its hash's quality
    warnings: list[str] = []


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal_type: Literal["pdq"] = "pdq"
    signals: list[PdqHash] = Field(min_length=1, max_length=1000)
    banks: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=100)


class LookupsOut(BaseModel):
    results: list[LookupOut]
    took_ms: float


def _match(m: Match) -> dict[str, Any]:
    return {
        "bank": m.bank.name,
        "kind": m.bank.kind.value,
        "action": m.bank.action.value,
        "entry": m.entry,
        "distance": m.distance,
    }


def _verdict(signal: str, verdict: Verdict, **extra: Any) -> dict[str, Any]:
    return {
        "signal_type": "pdq",
        "signal": signal,
        "banks": list(dict.fromkeys(m.bank.name for m in verdict.matches)),
        "matches": [_match(m) for m in verdict.matches],
        "allowed_by": [_match(m) for m in verdict.allowed_by],
        **extra,
    }


async def _picture(request: Request) -> bytes:
    """The one picture of a multipart form (field photo, image or file)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, "send the picture as multipart/form-data (field photo, image or file)")
    form = await request.form(max_part_size=request.app.state.max_upload)
    uploads = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
    if len(uploads) != 1 or uploads[0][0] not in PICTURE_FIELDS:
        raise HTTPException(422, "upload exactly one picture, in the form field photo, image or file")
    return await _upload(request, uploads[0][1])


async def _hashed(request: Request, data: bytes) -> dict[str, Any]:
    value, quality = await blocking(banks.hash_bytes, context_of(request), data)
    return {"pdq": value, "quality": quality}


@router.get("/h/hash", response_model=HashOut)
async def hash_url(
    request: Request,
    url: Annotated[
        str, Query(max_length=4096, pattern=r"^[hH][tT][tT][pP][sS]?://", description="The picture's URL.")
    ],
) -> dict[str, Any]:
    """The PDQ hash and quality of the picture at ``url`` (fetched under the server's URL policy)."""
    return await _hashed(request, await _download(request, url))


@router.post(
    "/h/hash",
    response_model=HashOut,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"photo": {"type": "string", "format": "binary"}},
                    }
                }
            },
            "required": True,
        }
    },
)
async def hash_upload(request: Request) -> dict[str, Any]:
    """The PDQ hash and quality of an uploaded picture."""
    return await _hashed(request, await _picture(request))


@router.get("/m/lookup", response_model=LookupOut)
async def lookup(
    request: Request,
    signal: Annotated[str, Query(pattern=r"^[0-9a-fA-F]{64}$", description="A PDQ hash: 64 hex digits.")],
    signal_type: Annotated[Literal["pdq"], Query()] = "pdq",
    bank: BankNames = None,
) -> dict[str, Any]:
    """Which enabled banks a PDQ hash matches, each at its own maximum distance."""
    [verdict] = await blocking(banks.lookup, context_of(request), [signal], banks=bank)
    return _verdict(signal.lower(), verdict)


@router.post(
    "/m/lookup",
    response_model=LookupOut | LookupsOut,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": LookupRequest.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"photo": {"type": "string", "format": "binary"}},
                    }
                },
            },
            "required": True,
        }
    },
)
async def lookup_post(request: Request) -> dict[str, Any]:
    """Look up an uploaded picture (multipart), or up to 1,000 PDQ hashes (JSON ``{"signals": [...]}``)."""
    ctx = context_of(request)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        data = await _picture(request)
        value, quality = await blocking(banks.hash_bytes, ctx, data)
        if quality < MIN_QUALITY:
            warning = f"PDQ quality {quality} is below {MIN_QUALITY}: the hash is not matched"
            return _verdict(value, Verdict(), quality=quality, warnings=[warning])
        [verdict] = await blocking(banks.lookup, ctx, [value])
        return _verdict(value, verdict, quality=quality)
    body = _validate(LookupRequest, await _json(request))
    started = time.perf_counter()
    verdicts = await blocking(banks.lookup, ctx, body.signals, banks=body.banks)
    results = [_verdict(s.lower(), v) for s, v in zip(body.signals, verdicts, strict=True)]
    return {"results": results, "took_ms": round((time.perf_counter() - started) * 1000, 3)}


@router.get("/banks")
async def list_banks(request: Request) -> list[dict[str, Any]]:
    """The hash banks: kind, action, on or off, maximum distance, labels, entries and entries paused by a flood."""
    found = await blocking(banks.listed, context_of(request))
    return [
        {
            "name": b.bank.name,
            "kind": b.bank.kind.value,
            "action": b.bank.action.value,
            "enabled": b.bank.enabled,
            "max_distance": b.bank.max_distance,
            "labels": list(b.bank.labels),
            "entries": b.entries,
            "paused": b.paused,
        }
        for b in found
    ]
