"""The HTTP API of a `lookalike serve`, answering in the types the use cases answer in.

A command that goes through the server gets back what it would have computed itself (a
``SearchResult``, ``Item``s, an ``IngestReport``, the API's rows for stats and flags), so that it
prints the same output. Errors come back as the domain errors the command would have raised
itself: the API names the error's class beside its message (``{"detail", "error"}``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike import durable, errors
from lookalike.errors import ConfigError, ItemNotFoundError, LookalikeError, PathRefusedError, StoreError

if TYPE_CHECKING:
    import httpx

    from lookalike.examples import Example
    from lookalike.ingest import IngestReport
    from lookalike.queries import Query, SearchResult
    from lookalike.store.models import Item

FLAGS_PAGE = 1000  # the most flags GET /flags answers at once
JOB_POLL_S = 0.2


class Client:
    """The API of the `lookalike serve` at ``url`` (with ``api_key`` as X-API-Key when given)."""

    def __init__(self, url: str, *, api_key: str = "", timeout_s: float = 60.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        # No proxy: the server is on this machine (or where its record says), never behind HTTP_PROXY.
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------

    def search(self, query: Query, image_bytes: bytes | None = None) -> SearchResult:
        """POST /search: by text, a stored id or item id (JSON), or an image's bytes (multipart)."""
        from lookalike.queries import SearchResult
        from lookalike.store.models import Hit, box_text

        if query.search_params:
            raise ConfigError(
                f"--search-params is not offered by the API of `lookalike serve` at {self.url}, which holds "
                "this database: search without it, or stop the server and search again."
            )
        fields: dict[str, Any] = {
            "k": query.k,
            "offset": query.offset,
            "min_score": query.min_score,
            "sources": list(query.sources) or None,
            "since": query.since.isoformat() if query.since else None,
            "until": query.until.isoformat() if query.until else None,
            "detect": query.detect or None,
            "box": box_text(query.box) or None,
            "per_item": query.per_item,
            "like": [self._example(e, query.names.like) for e in query.like] or None,
            "unlike": [self._example(e, query.names.unlike) for e in query.unlike] or None,
            **{param: list(values) or None for param, values in query.key_params().items()},
            "hybrid": query.hybrid or None,
            "keywords": query.keywords or None,
            "keyword_weight": query.keyword_weight,
            "rrf_k": query.rrf_k,
        }
        if image_bytes is None:
            body = {"text": query.text, "id": query.id, "item_id": query.item_id, **fields}
            data = self._json("POST", "/search", json={k: v for k, v in body.items() if v is not None})
        else:
            form = {key: _form_value(value) for key, value in fields.items() if value is not None}
            files = {"image": ("query", image_bytes, "application/octet-stream")}
            data = self._json("POST", "/search", data=form, files=files)
        box = data.get("query_box")
        return SearchResult(
            took_ms=float(data["took_ms"]),
            hits=[Hit(float(hit["score"]), item_of(hit), ranks=_ranks(hit)) for hit in data["hits"]],
            warnings=list(data.get("warnings") or []),
            query_box=(box[0], box[1], box[2], box[3]) if box else None,
        )

    def _example(self, example: Example, label: str) -> str:
        """An example as the API writes it: id:N, item:ITEM_ID or an http(s) URL (a bare value is
        asked of the server: a stored id if it is a number and one, else an item id)."""
        from lookalike.examples import ExampleKind, stored_id

        if example.kind is ExampleKind.ID:
            return f"id:{example.value}"
        if example.kind is ExampleKind.ITEM:
            return f"item:{example.value}"
        if example.is_image:
            if "://" in example.value:
                return example.value
            raise ConfigError(
                f"{label} {example.text!r}: `lookalike serve` at {self.url} holds this database, and its API "
                "takes example images by http(s) URL only: give a URL, id:N or item:ITEM_ID, or stop the server."
            )
        found_id = found_item = False
        number = stored_id(example.value)
        if number is not None:
            with contextlib.suppress(ItemNotFoundError):
                found_id = bool(self.item(number))
        with contextlib.suppress(ItemNotFoundError):
            found_item = bool(self.by_item_id(example.value))
        if found_id and found_item:
            raise ConfigError(
                f"{label} {example.text!r} is both a stored id and a catalog item id: write id:{example.value} "
                f"or item:{example.value}."
            )
        if found_id:
            return f"id:{example.value}"
        return f"item:{example.value}"  # an unknown one is named by the server's answer

    def item(self, item_id: int) -> Item:
        """GET /items/{id}."""
        return item_of(self._json("GET", f"/items/{item_id}"))

    def shown(self, item_id: int | None, catalog_id: str | None) -> list[dict[str, Any]]:
        """GET /items/{id} or GET /items?item_id=…, as answered (the PDQ hash included)."""
        if item_id is not None:
            return [self._json("GET", f"/items/{item_id}")]
        return list(self._json("GET", "/items", params={"item_id": catalog_id or ""}))

    def by_item_id(self, item_id: str) -> list[Item]:
        """GET /items?item_id=…: every stored picture (and crop) of a catalog item."""
        return [item_of(found) for found in self._json("GET", "/items", params={"item_id": item_id})]

    def select(
        self,
        *,
        ids: Sequence[int] = (),
        item_ids: Sequence[str] = (),
        sources: Sequence[str] = (),
        since: date | None = None,
        until: date | None = None,
    ) -> list[Item]:
        """The stored items with these ids and catalog item ids (both given: both must match), as
        ``items.select`` finds them. The API selects by neither source nor day."""
        if sources or since or until:
            raise ConfigError(
                f"`lookalike serve` at {self.url} holds this database, and its API deletes by id: select "
                "with --id and --item-id, or stop the server to delete by --source, --since or --until."
            )
        if not (ids or item_ids):
            raise ConfigError("Say what to delete: ids, item ids, sources or a date window.")
        by_key: dict[int, Item] = {}
        for key in dict.fromkeys(item_ids):
            with contextlib.suppress(ItemNotFoundError):  # matching nothing is no error here
                by_key.update((item.id, item) for item in self.by_item_id(key))
        if item_ids and not ids:
            return list(by_key.values())
        found: list[Item] = []
        for wanted in dict.fromkeys(ids):
            if item_ids:
                if wanted in by_key:
                    found.append(by_key[wanted])
                continue
            with contextlib.suppress(ItemNotFoundError):
                found.append(self.item(wanted))
        return found

    def stats(self) -> dict[str, Any]:
        """GET /stats."""
        data: dict[str, Any] = self._json("GET", "/stats")
        return data

    def flags(
        self,
        *,
        policy: str | None,
        status: str | None,
        since: date | None,
        until: date | None,
        limit: int,
        offset: int,
    ) -> dict[str, Any]:
        """GET /flags, page after page up to ``limit`` (the API answers at most 1,000 at once)."""
        params: dict[str, Any] = {"policy": policy, "status": status, "since": since, "until": until}
        params = {key: str(value) for key, value in params.items() if value is not None}
        total, rows = 0, list[dict[str, Any]]()
        while True:
            want = min(FLAGS_PAGE, limit - len(rows))
            page = self._json("GET", "/flags", params={**params, "limit": want, "offset": offset + len(rows)})
            total = int(page["total"])
            rows += page["flags"]
            if len(page["flags"]) < want or len(rows) >= limit:
                return {"total": total, "flags": rows}

    def audit(self, path: Path, *, since: date | None, until: date | None) -> int:
        """GET /audit into ``path`` (.csv or .json, written durably); returns how many decisions."""
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in ("csv", "json"):
            raise ConfigError(f"The audit export is .csv or .json, not {path.name!r}.")
        window = {name: day.isoformat() for name, day in (("since", since), ("until", until)) if day}
        self._download("/audit", path, {"format": fmt, **window})
        if fmt == "json":
            return len(json.loads(path.read_text(encoding="utf-8"))["decisions"])
        import csv

        with path.open(encoding="utf-8", newline="") as handle:
            return sum(1 for _ in csv.DictReader(handle))

    def export(self, path: Path) -> int:
        """GET /export into ``path`` (Parquet, written durably); returns its row count."""
        import pyarrow.parquet as pq

        self._download("/export", path, {})
        return int(pq.ParquetFile(path).metadata.num_rows)

    # -- writes ------------------------------------------------------------------------------

    def delete(self, ids: Sequence[int], *, purge: bool) -> int:
        """DELETE /items/{id} for each; returns how many were deleted (one already gone is not)."""
        deleted = 0
        for item_id in ids:
            with contextlib.suppress(ItemNotFoundError):
                answer = self._json("DELETE", f"/items/{item_id}", params={"purge": str(purge).lower()})
                deleted += int(answer["deleted"])
        return deleted

    def review(
        self, flag_id: int, *, decision: str, by: str, note: str, take_down: bool
    ) -> list[dict[str, Any]]:
        """POST /flags/{id}/review; returns the audit records written, as the API answers them."""
        body = {"decision": decision, "by": by, "note": note, "take_down": take_down}
        decisions: list[dict[str, Any]] = self._json("POST", f"/flags/{flag_id}/review", json=body)[
            "decisions"
        ]
        return decisions

    def claim(self, flag_id: int | None, *, by: str, policy: str | None, lease_s: float | None) -> Any:
        """POST /flags/{id}/claim, or GET /flags/next without an id; the flag as the API shows it, or
        None when no open flag is left that nobody holds."""
        if flag_id is not None:
            return self._json("POST", f"/flags/{flag_id}/claim", json={"by": by, "lease_s": lease_s})
        params = {
            key: str(value) for key, value in (("policy", policy), ("lease_s", lease_s)) if value is not None
        }
        return self._json("GET", "/flags/next", params={"by": by, **params})["flag"]

    def waves(
        self,
        *,
        since: str,
        until: str | None,
        min_sellers: int,
        threshold: float,
        sources: Sequence[str],
        dry_run: bool,
        on_start: Callable[[int], None],
        progress: Callable[[int], None],
    ) -> dict[str, Any]:
        """POST /waves, followed to its end; what the check found, as the job answers it."""
        body = {
            "since": since,
            "until": until,
            "min_sellers": min_sellers,
            "threshold": threshold,
            "sources": list(sources) or None,
            "dry_run": dry_run,
        }
        job_id = self._json("POST", "/waves", json=body)["job_id"]
        job = self._follow(job_id, on_start, progress)
        if job["status"] != "done":
            raise StoreError(
                f"The waves job of `lookalike serve` at {self.url} ended {job['status']}: {job['error']}"
            )
        result: dict[str, Any] = job["result"]
        return result

    def release(self, flag_id: int, *, by: str) -> bool:
        """DELETE /flags/{id}/claim; whether a claim was held."""
        return bool(self._json("DELETE", f"/flags/{flag_id}/claim", params={"by": by})["released"])

    def index(
        self,
        inputs: list[str],
        *,
        source: str | None,
        detect: bool,
        on_start: Callable[[int], None],
        progress: Callable[[int], None],
    ) -> IngestReport:
        """POST /index of server paths (under the server's LOOKALIKE_INDEX_ROOTS) or URLs, then its
        job until it ends; Ctrl-C cancels the job."""
        body: dict[str, Any] = {"inputs": inputs, "detect": detect}
        if source is not None:
            body["source"] = source
        try:
            job_id = self._json("POST", "/index", json=body)["job_id"]
        except PathRefusedError as exc:
            raise PathRefusedError(
                f"{', '.join(inputs)} cannot be indexed through `lookalike serve` at {self.url}, which holds "
                f"this database: {exc}. Put the files under one of the server's LOOKALIKE_INDEX_ROOTS, or "
                "stop the server and index again."
            ) from None
        try:
            job = self._follow(job_id, on_start, progress)
        except KeyboardInterrupt:
            with contextlib.suppress(LookalikeError):
                self._json("POST", f"/jobs/{job_id}/cancel")
            raise
        if job["status"] != "done":
            raise StoreError(
                f"The index job of `lookalike serve` at {self.url} ended {job['status']}: {job['error']}"
            )
        return _report(job)

    def _follow(
        self, job_id: str, on_start: Callable[[int], None], progress: Callable[[int], None]
    ) -> dict[str, Any]:
        started, done = False, 0
        while True:
            job: dict[str, Any] = self._json("GET", f"/jobs/{job_id}")
            if job["total"] is not None and not started:
                started = True
                on_start(int(job["total"]))
            if job["done"] > done:
                progress(int(job["done"]) - done)
                done = int(job["done"])
            if job["status"] not in ("queued", "running"):
                return job
            time.sleep(JOB_POLL_S)

    # -- transport ---------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._request(method, path, **kwargs) as response:
            response.read()
            return response.json()

    def _download(self, path: str, target: Path, params: Mapping[str, Any]) -> None:
        with (
            self._request("GET", path, params=params) as response,
            durable.replacing_file(target, "wb", step="download") as handle,
        ):
            for chunk in response.iter_bytes():
                handle.write(chunk)

    @contextlib.contextmanager
    def _request(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        import httpx

        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield response
        except httpx.HTTPError as exc:
            raise StoreError(
                f"`lookalike serve` at {self.url} did not answer {method} {path}: {exc}"
            ) from exc

    def _error(self, response: httpx.Response) -> LookalikeError:
        """The domain error the server raised (named in its answer), else one for its status."""
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:500]}
        detail = body.get("detail") if isinstance(body, dict) else body
        message = str(detail)
        if isinstance(detail, list):  # a validation error: where and what
            message = f"`lookalike serve` at {self.url} refused the request: " + "; ".join(
                map(_where_what, detail)
            )
        if response.status_code == 401:
            return ConfigError(
                f"`lookalike serve` at {self.url} holds this database and refused the API key: set "
                "LOOKALIKE_API_KEY to its key."
            )
        named = getattr(errors, str(body.get("error", "")) if isinstance(body, dict) else "", None)
        if isinstance(named, type) and issubclass(named, LookalikeError):
            return named(message)
        return _by_status(response.status_code, message, self.url)


def _by_status(status: int, message: str, url: str) -> LookalikeError:
    if status == 404:
        return ItemNotFoundError(message)
    if status == 403:
        return PathRefusedError(message)
    if status in (400, 409, 413, 422):
        return ConfigError(message)
    return StoreError(f"`lookalike serve` at {url} answered {status}: {message}")


def _where_what(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", ""))


def _form_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def _report(job: Mapping[str, Any]) -> IngestReport:
    from lookalike.ingest import IngestReport, Skipped

    skipped = [Skipped(s["uri"], s["reason"]) for s in job["skipped"]]
    return IngestReport(
        seen=int(job["indexed"]) + int(job["already_indexed"]) + len(skipped),
        indexed=int(job["indexed"]),
        already_indexed=int(job["already_indexed"]),
        crops=int(job.get("crops") or 0),
        blocked=int(job.get("blocked") or 0),
        flagged=int(job.get("flagged") or 0),
        skipped=skipped,
        alerts=[str(a) for a in job.get("alerts") or []],
        elapsed_s=float(job["elapsed_s"]),
    )


def item_of(data: Mapping[str, Any]) -> Item:
    """An item from the API's ItemOut or HitOut (a hit's box is a list, its empty fields null)."""
    from lookalike.store.models import box_text
    from lookalike.store.rows import from_row

    values = dict(data)
    if isinstance(values.get("box"), list):
        values["box"] = box_text(tuple(int(v) for v in values["box"]))  # type: ignore[arg-type]
    return from_row(values)


def _ranks(hit: dict[str, Any]) -> tuple[int | None, int | None] | None:
    """A hybrid hit's ranks in the vector and the keyword hits, as the API answers them."""
    ranks = hit.get("ranks")
    return (ranks.get("vector"), ranks.get("keyword")) if isinstance(ranks, dict) else None
