"""HTTP routes. Blocking work (models, Milvus, files) runs in the thread pool through ``blocking``."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from prometheus_client import generate_latest
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.datastructures import FormData, UploadFile

from lookalike.api.deps import STATIC, blocking, context_of
from lookalike.api.jobs import Jobs
from lookalike.api.schemas import IndexRequest, ItemOut, JobOut, SearchRequest, SearchResponse, SkippedOut
from lookalike.errors import ConfigError, ImageError
from lookalike.examples import Example, parse_examples
from lookalike.ingest import FetchPolicy, IngestReport
from lookalike.ingest.sources import Skipped
from lookalike.queries import API_NAMES
from lookalike.queries import Query as SearchQuery
from lookalike.store.fields import BY_PARAM
from lookalike.store.models import parse_box
from lookalike.store.rows import identity_problem
from lookalike.usecases import backup, embedding, ingest, items
from lookalike.usecases import search as searching

router = APIRouter()
M = TypeVar("M", bound=BaseModel)
ItemId = Path(description="A stored item's id (a 63-bit integer).", max_length=40)


_DIGITS = re.compile(r"[0-9]{1,19}")


def _item_id(value: str) -> int:
    """Only a stored integer id names an item; anything else (a path, ../.., ², 2^63) is simply not found."""
    if not _DIGITS.fullmatch(value) or int(value) >= 2**63:
        raise HTTPException(404, f"no stored item has the id {value[:40]!r}")
    return int(value)


def _body_doc(model: type[BaseModel], form: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a route that reads a JSON body or multipart form data itself."""
    return {
        "requestBody": {
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                "multipart/form-data": {"schema": {"type": "object", "properties": form}},
            },
            "required": True,
        }
    }


_BODY_DOC = _body_doc(
    SearchRequest,
    {
        "image": {"type": "string", "format": "binary"},
        "k": {"type": "integer"},
        "offset": {"type": "integer", "description": "skip this many of the best hits (paging)"},
        "min_score": {"type": "number", "description": "only hits whose cosine reaches this"},
        "sources": {"type": "array", "items": {"type": "string"}},
        "since": {"type": "string", "format": "date"},
        "until": {"type": "string", "format": "date"},
        "detect": {"type": "boolean", "description": "embed the largest object the detector finds"},
        "box": {"type": "string", "description": "embed this part of the image: x0,y0,x1,y1"},
        "per_item": {"type": "integer", "description": "at most this many hits per catalog item_id"},
        "like": {"type": "array", "items": {"type": "string"}, "description": "id:N, item:ITEM_ID or a URL"},
        "unlike": {
            "type": "array",
            "items": {"type": "string"},
            "description": "id:N, item:ITEM_ID or a URL",
        },
        "hybrid": {"type": "boolean", "description": "text: fuse keyword (BM25) and vector hits"},
        "keywords": {"type": "boolean", "description": "text: keyword (BM25) hits alone"},
        "keyword_weight": {"type": "number", "description": "hybrid: weighted fusion, keywords' weight 0..1"},
        "rrf_k": {"type": "integer", "description": "hybrid: reciprocal rank fusion's k (default 60)"},
    },
)
_INDEX_DOC = _body_doc(
    IndexRequest,
    {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "source": {"type": "string"},
        "detect": {"type": "boolean", "description": "also store each detected object as its own item"},
    },
)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# No number the API takes needs more characters than this (an id has 19 digits); a longer one is
# refused before it is converted: int() of 5,000 digits raises, of millions it costs seconds.
MAX_NUMBER_CHARS = 40


class _NumberTooLong(ValueError):
    pass


class _NotJson(ValueError):
    pass


def _number(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def bounded(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise _NumberTooLong(
                f"a number in the body has {len(text)} characters (at most {MAX_NUMBER_CHARS})"
            )
        return convert(text)

    return bounded


def _not_json(constant: str) -> Any:
    raise _NotJson(f"{constant} is not a JSON number")


async def _json(request: Request) -> Any:
    body = await request.body()
    try:
        value = json.loads(
            body or b"null", parse_int=_number(int), parse_float=_number(float), parse_constant=_not_json
        )
        if _SURROGATE_ESCAPE.search(body):  # \ud800 alone decodes to a string no UTF-8 can hold
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except _NumberTooLong as exc:
        raise HTTPException(422, str(exc)) from exc
    except (json.JSONDecodeError, UnicodeError, _NotJson) as exc:
        raise HTTPException(400, f"the body is not valid JSON or not UTF-8: {str(exc)[:200]}") from exc
    except RecursionError as exc:
        raise HTTPException(400, "the body is nested too deeply") from exc
    return value


def _validate(model: type[M], value: Any) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    except RecursionError as exc:
        raise HTTPException(422, "the body is nested too deeply") from exc


async def _download(request: Request, url: str) -> bytes:
    """An image_url's bytes, fetched under the API's policy in the download pool (not the search threads)."""
    slots: asyncio.Semaphore = request.app.state.download_slots
    if slots.locked():
        raise HTTPException(
            503, "too many image downloads at once; try again shortly", headers={"Retry-After": "5"}
        )
    policy: FetchPolicy = request.app.state.policy
    async with slots:
        loop = asyncio.get_running_loop()
        fetched = await loop.run_in_executor(request.app.state.downloads, policy.read, url)
    return fetched.data


def _invalid(exc: ValidationError) -> HTTPException:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return HTTPException(422, errors)


async def _upload(request: Request, file: UploadFile) -> bytes:
    limit: int = request.app.state.max_upload
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload over the {limit / 1024 / 1024:g} MB limit")
    if not data:
        raise HTTPException(422, f"the uploaded file {file.filename!r} is empty")
    return data


def _form_values(form: FormData, name: str) -> list[str]:
    # One value per field: a source named "acme, inc" is one source; several come repeated.
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


@router.get("/health", tags=["service"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


# Unset fields stay out: a hit carries ``ranks`` only from a hybrid search, as ``search --json`` shows it.
@router.post(
    "/search",
    response_model=SearchResponse,
    response_model_exclude_unset=True,
    tags=["search"],
    openapi_extra=_BODY_DOC,
)
async def search(request: Request) -> dict[str, Any]:
    """Search by `text`, `image_url` or `id` (JSON), or by an uploaded `image` (multipart form data)."""
    content_type = request.headers.get("content-type", "")
    image_bytes = None
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_part_size=request.app.state.max_upload)
        upload = form.get("image")
        if isinstance(upload, UploadFile):
            image_bytes = await _upload(request, upload)
        fields: dict[str, Any] = {
            k: v for k, v in form.items() if isinstance(v, str) and k != "sources" and v != ""
        }
        for name in ("sources", *BY_PARAM, "like", "unlike"):  # the lists: repeated form fields
            if form.getlist(name):
                fields[name] = _form_values(form, name)
        if image_bytes is not None:
            fields.pop("image", None)
            if any(fields.get(key) for key in ("text", "image_url", "id", "item_id")):
                raise HTTPException(
                    422, "give either an uploaded image or one of text, image_url, id, item_id"
                )
            fields["text"] = "placeholder"  # satisfies "exactly one"; replaced by the image below
    else:
        fields = await _json(request)
        if not isinstance(fields, dict):
            raise HTTPException(422, 'the body must be a JSON object like {"text": "floral top", "k": 10}')
    body = _validate(SearchRequest, fields)
    if body.image_url is not None:
        image_bytes = await _download(request, body.image_url)
    like = await _examples(request, body.like or [], "like")
    unlike = await _examples(request, body.unlike or [], "unlike")
    query = SearchQuery(
        text=None if image_bytes is not None else body.text,
        image_bytes=image_bytes,
        id=body.id,
        k=body.k,
        sources=tuple(body.sources or ()),
        keys=tuple(
            (field.name, tuple(getattr(body, p))) for p, field in BY_PARAM.items() if getattr(body, p)
        ),
        since=body.since,
        until=body.until,
        detect=body.detect,
        box=_box(body.box),
        item_id=body.item_id,
        offset=body.offset,
        min_score=body.min_score,
        per_item=body.per_item,
        like=like,
        unlike=unlike,
        hybrid=body.hybrid,
        keywords=body.keywords,
        keyword_weight=body.keyword_weight,
        rrf_k=body.rrf_k,
        names=API_NAMES,
    )
    result = await blocking(searching.search, context_of(request), query)
    return result.to_dict()


async def _examples(request: Request, texts: list[str], label: str) -> tuple[Example, ...]:
    """The examples of a request, their images downloaded under the API's policy (as image_url's)."""
    found = []
    for example in parse_examples(texts, label, paths=False):
        if example.is_image:
            example = replace(example, data=await _download(request, example.value))
        found.append(example)
    return tuple(found)


def _box(text: str | None) -> tuple[int, int, int, int] | None:
    try:
        return parse_box(text) if text else None
    except ValueError as exc:
        raise HTTPException(422, f"box: {exc}") from exc


@router.get("/items/{item_id}", response_model=ItemOut, tags=["items"])
async def item(request: Request, item_id: str = ItemId) -> dict[str, Any]:
    found = await blocking(items.item, context_of(request), _item_id(item_id))
    (shown,) = await blocking(items.shown, context_of(request), [found])
    return shown


@router.get("/items", response_model=list[ItemOut], tags=["items"])
async def items_of(
    request: Request,
    item_id: str = Query(min_length=1, max_length=1024, description="A catalog item id (SKU, user id)."),
) -> list[dict[str, Any]]:
    """Every stored picture (and detected crop) of a catalog item id."""
    problem = identity_problem("item_id", item_id)
    if problem is not None:
        raise HTTPException(422, problem)
    found = await blocking(items.by_item_id, context_of(request), item_id)
    return await blocking(items.shown, context_of(request), found)


@router.get(
    "/export",
    tags=["items"],
    response_class=FileResponse,
    responses={200: {"content": {"application/vnd.apache.parquet": {}}}},
)
async def export(request: Request) -> FileResponse:
    """The whole collection, vectors included, as the Parquet file `lookalike export` writes."""
    path = request.app.state.reports / f"export-{uuid.uuid4().hex}.parquet"
    try:
        await blocking(backup.export, context_of(request), str(path))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type="application/vnd.apache.parquet",
        filename="lookalike-export.parquet",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.delete("/items/{item_id}", tags=["items"])
async def delete_item(
    request: Request,
    item_id: str = ItemId,
    purge: bool = Query(default=False, description="Also erase the item's bytes from the database files."),
) -> dict[str, Any]:
    """Delete a stored item: it is gone from every search, get and scan at once."""
    deleted = await blocking(items.delete, context_of(request), [_item_id(item_id)], purge=purge)
    if not deleted:
        raise HTTPException(404, f"no stored item has the id {item_id!r}")
    return {"deleted": deleted, "id": int(item_id), "purged": purge}


@router.post("/compact", tags=["items"])
async def compact(request: Request) -> dict[str, Any]:
    """Rewrite storage so that deleted items' bytes leave every file (`lookalike compact`).

    Searches go on while it runs; it returns how many monthly partitions were rewritten.
    """
    rewritten = await blocking(items.compact, context_of(request))
    return {"partitions_rewritten": rewritten}


@router.get(
    "/items/{item_id}/image",
    tags=["items"],
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
    response_class=Response,
)
async def item_image(
    request: Request,
    item_id: str = ItemId,
    size: int | None = Query(default=None, ge=16, le=4096, description="Longest side of a thumbnail."),
) -> Response:
    """The stored item's image, or a JPEG thumbnail. Only a stored item's own uri is ever read."""
    try:
        data, media_type = await blocking(items.item_image, context_of(request), _item_id(item_id), size)
    except ImageError as exc:
        raise HTTPException(404, f"the image of item {item_id} cannot be read: {exc}") from exc
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


@router.post("/index", status_code=202, tags=["index"], openapi_extra=_INDEX_DOC)
async def index(request: Request) -> dict[str, str]:
    """Index server paths or URLs (JSON `{"inputs": [...], "source"}`) or uploaded `files` (multipart).

    Answers a job id at once; `GET /jobs/{id}` reports progress and every skipped file.
    """
    ctx = context_of(request)
    # A collection embedded with another model is refused now (409), before an upload is kept.
    await blocking(embedding.bind, ctx)
    policy: FetchPolicy = request.app.state.policy
    skipped: list[Skipped] = []
    inputs: list[str] = []
    source: str | None = None
    detect = False
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_part_size=request.app.state.max_upload)
        value = form.get("source")
        source = value.strip() if isinstance(value, str) and value.strip() else None
        problem = identity_problem("source", source) if source is not None else None
        if problem is not None:  # before any upload is kept
            raise HTTPException(422, problem)
        for upload in form.getlist("files"):
            if isinstance(upload, UploadFile):
                data = await _upload(request, upload)
                try:
                    inputs.append(await blocking(ingest.save_upload, ctx, data))
                except ImageError as exc:
                    skipped.append(Skipped(upload.filename or "upload", str(exc)))
        if not inputs and not skipped:
            raise HTTPException(422, "upload one or more images in the form field 'files'")
        policy = policy.only_under(ctx.settings.uploads_path())  # the job reads the kept uploads only
        flag = form.get("detect")
        detect = isinstance(flag, str) and flag.strip().lower() in {"1", "true", "on", "yes"}
    else:
        body = _validate(IndexRequest, await _json(request))
        inputs, source, detect = body.inputs, body.source, body.detect
        # Refused now (403 outside LOOKALIKE_INDEX_ROOTS, whether or not the path exists; 400 missing
        # under them), not in a failed job later.
        try:
            await blocking(ingest.check_inputs, ctx, inputs, source, policy)
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from exc

    def work(on_start: Callable[[int], None], progress: Callable[[int], None]) -> IngestReport:
        if not inputs:  # every upload was refused: the job only carries the reasons
            return IngestReport()
        report = ingest.index_inputs(
            ctx, inputs, source=source, on_start=on_start, progress=progress, detect=detect, policy=policy
        )
        request.app.state.metrics.indexed.inc(report.indexed)
        return report

    jobs: Jobs = request.app.state.jobs
    job = jobs.submit(work, skipped)
    return {"job_id": job.id, "status": job.status}


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["index"])
async def job(request: Request, job_id: str) -> dict[str, Any]:
    found = request.app.state.jobs.get(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id[:40]!r}")
    return {
        "id": found.id,
        "kind": found.kind,
        "status": found.status,
        "total": found.total,
        "done": found.done,
        "indexed": found.indexed,
        "already_indexed": found.already_indexed,
        "crops": found.crops,
        "blocked": found.blocked,
        "flagged": found.flagged,
        "alerts": found.alerts,
        "skipped": [SkippedOut(uri=s.uri, reason=s.reason) for s in found.skipped],
        "error": found.error,
        "elapsed_s": round(found.elapsed_s, 3),
        "result": found.result,
        "report_url": f"/jobs/{found.id}/report" if found.report and found.status == "done" else None,
    }


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["index"])
async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    """Stop a queued or running job (the queue moves on at once); a finished job is left as it is."""
    jobs: Jobs = request.app.state.jobs
    if jobs.cancel(job_id) is None:
        raise HTTPException(404, f"no job {job_id[:40]!r}")
    return await job(request, job_id)


@router.get("/stats", tags=["service"])
async def stats(request: Request) -> dict[str, Any]:
    info = await blocking(items.stats, context_of(request))
    request.app.state.metrics.items.set(info.rows)
    return items.stats_row(info)


@router.get("/metrics", response_class=PlainTextResponse, tags=["service"])
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")
