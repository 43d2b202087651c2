"""A Milvus standalone or cluster server: upserts by id, strong reads, bulk import."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import StoreError
from lookalike.store import serverkeywords
from lookalike.store.base import BaseStore, group_by_partition
from lookalike.store.distinct import DISTINCT_LIMIT, Distinct, Recent, count_rows, top
from lookalike.store.filters import quote
from lookalike.store.fusion import RRF, Fusion, depth, fuse
from lookalike.store.keywords import tokenize
from lookalike.store.milvus import check_k, check_per_item, milvus_errors
from lookalike.store.models import Hit, IndexType, Item
from lookalike.store.rows import from_row
from lookalike.store.window import EVERYTHING, Window

DISTINCT_FRESH_S = 60.0
DISTINCT_STALE_S = 600.0
"""A server's distinct values are fresh for a minute, then given while a refresh runs for up to ten
(another process's writes show in the pickers a refresh later; this store's own at once)."""
DISTINCT_BATCH = 10_000


def search_params(index_type: str, k: int, override: dict[str, Any] | None = None) -> dict[str, Any]:
    """Query-time knobs: exhaustive enough to keep recall high at the default k, unless overridden."""
    params: dict[str, Any] = {}
    if index_type.startswith("IVF"):
        params = {"nprobe": 32}
    elif index_type == IndexType.HNSW:
        params = {"ef": max(64, k)}
    params.update(override or {})
    if "ef" in params:
        params["ef"] = max(int(params["ef"]), k)  # Milvus refuses ef < k
    return {"params": params} if params else {}


_REFUSALS = (
    "auth", "credential", "password", "permission", "denied",  # wrong or missing credentials
    "handshake", "ssl", "tls", "certificate",  # TLS against a plain server, a bad CA, a missing PEM
    "failed parsing http/2",  # not a gRPC port (Milvus' HTTP port, say)
)  # fmt: skip


def _transient(exc: BaseException) -> bool:
    """Whether a failed connection may succeed later (the server still starting), not a refusal.

    pymilvus reports every connection failure as a MilvusException (code 2) whose cause is the
    gRPC error; UNAVAILABLE covers both "not listening yet" and a failed TLS handshake, so the
    details decide. Authentication, authorisation and TLS errors fail at once.
    """
    import grpc

    cause = exc.__cause__
    details = ""
    status = None
    if isinstance(cause, grpc.RpcError) and hasattr(cause, "code"):
        status, details = cause.code(), str(cause.details() or "")
    text = f"{exc} {details}".lower()
    if any(word in text for word in _REFUSALS) or isinstance(exc, FileNotFoundError):
        return False
    if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return True
    if isinstance(exc, ConnectionError | TimeoutError | grpc.FutureTimeoutError):
        return True
    from pymilvus.exceptions import MilvusUnavailableException

    if isinstance(exc, MilvusUnavailableException):
        return True
    return any(
        word in text for word in ("not ready", "unavailable", "connection refused", "timed out", "timeout")
    )


log = logging.getLogger(__name__)


class ServerStore(BaseStore):
    """One collection on a Milvus server; every read sees every acknowledged write."""

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        token: str = "",
        user: str = "",
        password: str = "",
        timeout_s: float = 30.0,
        tls: dict[str, str] | None = None,
    ) -> None:
        super().__init__(uri, collection, timeout_s=timeout_s)
        self._version: tuple[tuple[int, int, int], str] | None = None
        self._auth = {"token": token or (f"{user}:{password}" if user else "")}
        self._tls: dict[str, Any] = {k: (v == "true") if k == "secure" else v for k, v in (tls or {}).items()}
        self._recent = Recent(DISTINCT_FRESH_S, DISTINCT_STALE_S)

    def _connect(self, client_class: Any = None) -> Any:
        if self.uri.endswith(
            ".db"
        ):  # pymilvus starts Milvus Lite itself, which a hold on its files locks out
            from lookalike.store.base import lite_path
            from lookalike.store.liteprocess import end_file_holds

            end_file_holds(lite_path(self.uri))
        if client_class is None:
            from pymilvus import MilvusClient

            client_class = MilvusClient
        return self._connect_with_retries(
            lambda: client_class(uri=self.uri, timeout=self.timeout_s, **self._auth, **self._tls)
        )

    def _connect_with_retries(self, connect: Any) -> Any:
        """Open the client, retrying with backoff while a server starts, up to ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.5
        while True:
            try:
                return connect()
            except Exception as exc:  # connection failures come as several exception types
                if not _transient(exc) or time.monotonic() + delay > deadline:
                    raise StoreError(f"Cannot open the Milvus database at {self.uri}: {exc}") from exc
                log.info("Milvus at %s is not answering (%s); retrying in %.1f s", self.uri, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _before_iterating(self) -> None:
        # A query iterator started straight after an insert may miss it, Strong or not (its first,
        # timestamp-setting request reads a lagging snapshot: found by the stateful test on a real
        # server). One strong query first makes every acknowledged write visible to it.
        with milvus_errors("read the collection"):
            self.client.query(self.collection, filter="", output_fields=["count(*)"], **self._consistency())

    def _consistency(self) -> dict[str, Any]:
        # A server answers reads from a snapshot that may lag the last writes; counts, gets and
        # the "already stored?" check must see every acknowledged write.
        return {"consistency_level": "Strong"}

    # -- writes ------------------------------------------------------------------------------------

    def insert(self, items: Sequence[Item]) -> int:
        """Write items by id into their monthly partitions (an upsert: a repeated chunk replaces itself)."""
        return self.upsert(items)

    def upsert(self, items: Sequence[Item]) -> int:
        """Write items, replacing stored ones with the same id wherever they are."""
        if not items:
            return 0
        self.require()
        self._forget_distinct()
        prepared = self._prepare(items)
        # An id whose month changed lives in another partition: remove it there first.
        stored = self._milvus_get([item.id for item in prepared], with_vector=False)
        for item in prepared:
            old = stored.get(item.id)
            if old is not None and old.created_at != item.created_at:
                self._delete_rows([item.id])
        for partition, group in group_by_partition(prepared).items():
            self._write_rows(partition, group, upsert=True)
        return len(prepared)

    def delete(self, ids: Sequence[int], *, erase: bool = False) -> int:
        """Delete these ids; returns how many were stored (``erase``: and have the server compact)."""
        if not ids:
            return 0
        self.require()
        self._forget_distinct()
        present = self.existing_ids(ids)
        self._delete_rows(sorted(present))
        if erase and present:
            self.flush()
            self.compact()
        return len(present)

    def drop_partitions(self, names: Sequence[str]) -> None:
        self.require()
        self._forget_distinct()
        for name in names:
            self._drop_milvus_partition(name)

    def flush(self) -> None:
        with milvus_errors("flush"):
            self.client.flush(self.collection)

    def compact(self) -> int:
        """Have the server rewrite its segments without deleted rows, and wait for it."""
        self.require()
        with milvus_errors("compact"):
            job = self.client.compact(self.collection)
            deadline = time.monotonic() + 600
            while self.client.get_compaction_state(job) != "Completed":
                if time.monotonic() > deadline:
                    raise StoreError("The server's compaction did not finish within 10 minutes.")
                time.sleep(1.0)
        return len(self.partitions())

    def bulk_import(self, files: Sequence[str], partition: str, timeout_s: float = 3600.0) -> int:
        """Have the server import Parquet files into a partition itself; returns the rows imported.

        The files must be readable by the server (its local storage, or its object-storage
        bucket). A bulk import does not check primary keys: import into a new collection only.
        """
        self.require()
        self._ensure_partition(partition)
        # MilvusClient has no bulk-import call for Milvus 2.3's Import RPC; its connection does,
        # and talks to the same database as the client (the ORM `utility` helpers may not).
        handler = self.client._get_connection()
        with milvus_errors("start a bulk import"):
            task = handler.do_bulk_insert(self.collection, partition, list(files), timeout=self.timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:
            with milvus_errors("follow a bulk import"):
                state = handler.get_bulk_insert_state(task, timeout=self.timeout_s)
            if state.state_name == "Completed":
                return int(state.row_count)
            if state.state_name == "Failed":
                raise StoreError(f"The bulk import of {', '.join(files)} failed: {state.failed_reason}")
            if time.monotonic() > deadline:
                raise StoreError(
                    f"The bulk import of {', '.join(files)} did not finish in {timeout_s:.0f} s."
                )
            time.sleep(1.0)

    def release(self) -> None:
        """Release the collection from the server's memory; the next read loads it again."""
        self.require()
        with milvus_errors("release the collection"):
            self.client.release_collection(self.collection)
        self._loaded = False

    # -- reads -------------------------------------------------------------------------------------

    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        return set(self._milvus_get(ids, with_vector=False)) if ids else set()

    def get(self, ids: Sequence[int], *, with_vector: bool = False) -> list[Item]:
        found = self._milvus_get(ids, with_vector=with_vector) if ids else {}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def search(
        self,
        vectors: npt.NDArray[np.float32],
        *,
        k: int = 10,
        window: Window = EVERYTHING,
        params: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Top-k by cosine for each query row, inside the monthly partitions the window needs."""
        self._ensure_loaded()
        vectors = self._queries(vectors, k)
        expr, partition_names = self._window(window)
        if partition_names == [] or window.nothing:
            return [[] for _ in range(len(vectors))]
        index_type, _ = self.index()
        with milvus_errors("search"):
            results = self.client.search(
                self.collection,
                data=list(vectors),
                limit=k,
                filter=expr,
                output_fields=self.fields(),
                partition_names=partition_names,
                search_params=search_params(index_type, k, params),
                **self._consistency(),
            )
        return [
            [Hit(score=float(hit["distance"]), item=from_row(dict(hit))) for hit in hits] for hits in results
        ]

    # -- keyword and hybrid search (Milvus 2.5+: ``serverkeywords``) ----------------------------------

    def _server_version(self) -> tuple[tuple[int, int, int], str]:
        if self._version is None:
            with milvus_errors("ask the server's version"):
                text = str(self.client.get_server_version())
            self._version = (serverkeywords.parse_version(text), text)
        return self._version

    def _has_keywords(self) -> bool:
        return any(field["name"] == serverkeywords.SPARSE_FIELD for field in self._describe()["fields"])

    def _keywords_ready(self) -> None:
        """Raise ConfigError, saying what to do, unless the server and the collection have BM25."""
        self.require()
        version, text = self._server_version()
        if not serverkeywords.supports_bm25(version):
            raise serverkeywords.unsupported(self.uri, text)
        if not self._has_keywords():
            raise serverkeywords.no_keyword_field(self.collection)

    def _add_search_fields(self, schema: Any, index_spec: Any) -> None:
        if serverkeywords.supports_bm25(self._server_version()[0]):
            serverkeywords.add_fields(schema, index_spec)

    def _row(self, item: Item, fields: Sequence[str]) -> dict[str, Any]:
        row = super()._row(item, fields)
        if self._has_keywords():
            row[serverkeywords.TEXT_FIELD] = serverkeywords.text_of(item)
        return row

    def keyword_search(self, text: str, *, k: int = 10, window: Window = EVERYTHING) -> list[Hit]:
        """Top-k by the server's BM25 over name, category and tags, inside the window (2.5+)."""
        check_k(k)
        self._keywords_ready()
        self._ensure_loaded()
        expr, partition_names = self._window(window)
        if partition_names == [] or window.nothing or not tokenize(text):
            return []
        with milvus_errors("search by keywords"):
            results = self.client.search(
                self.collection,
                data=[serverkeywords.query_text(text)],
                anns_field=serverkeywords.SPARSE_FIELD,
                limit=k,
                filter=expr,
                output_fields=self.fields(),
                partition_names=partition_names,
                search_params={"metric_type": "BM25"},
                **self._consistency(),
            )
        return [Hit(score=float(hit["distance"]), item=from_row(dict(hit))) for hit in results[0]]

    def hybrid_search(
        self,
        vector: npt.NDArray[np.float32],
        text: str,
        *,
        k: int = 10,
        fusion: Fusion = RRF,
        window: Window = EVERYTHING,
        params: dict[str, Any] | None = None,
    ) -> list[Hit]:
        """The server's ``hybrid_search``: its vector and BM25 hits fused by its RRF or weighted ranker."""
        self._keywords_ready()
        self._ensure_loaded()
        vectors = self._queries(vector, k)
        if not tokenize(text):  # nothing to match by keywords: the vector hits, ranked as fused
            return fuse(self.search(vectors[:1], k=k, window=window, params=params)[0], [], fusion, k)
        expr, partition_names = self._window(window)
        if partition_names == [] or window.nothing:
            return []
        index_type, _ = self.index()
        searches, ranker = serverkeywords.requests(
            vectors[0].tolist(), text, k, expr, search_params(index_type, depth(k), params), fusion
        )
        with milvus_errors("search by keywords and vectors"):
            results = self.client.hybrid_search(
                self.collection,
                searches,
                ranker,
                limit=k,
                output_fields=self.fields(),
                partition_names=partition_names,
                **self._consistency(),
            )
        return [Hit(score=float(hit["distance"]), item=from_row(dict(hit))) for hit in results[0]]

    def search_products(
        self,
        vector: npt.NDArray[np.float32],
        *,
        k: int = 10,
        per_item: int = 1,
        window: Window = EVERYTHING,
        params: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """The k best products for one query vector: by Milvus's grouping search on a server that has
        it (2.4, and 2.5 for more than one hit per product), else grouped here (``grouping``)."""
        if not self._groups(per_item):
            return super().search_products(vector, k=k, per_item=per_item, window=window, params=params)
        check_k(k)
        check_per_item(per_item)
        query = self._queries(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)
        # Milvus groups every item without an item_id into one group: those are searched apart,
        # each a product of its own, and the two answers merged by their best scores.
        named = self._grouped(
            query, k, per_item, replace(window, exclude_item_ids=(*window.exclude_item_ids, "")), params
        )
        alone = self.search(
            query, k=k, window=replace(window, item_ids=_only_empty(window.item_ids)), params=params
        )
        products = named + [[hit] for hit in alone[0]]
        products.sort(key=lambda hits: -hits[0].score)
        return products[:k]

    def _grouped(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        per_item: int,
        window: Window,
        params: dict[str, Any] | None,
    ) -> list[list[Hit]]:
        self._ensure_loaded()
        expr, partition_names = self._window(window)
        if partition_names == [] or window.nothing:
            return []
        index_type, _ = self.index()
        # strict: every group is filled to per_item where it has that many pictures (Milvus 2.5).
        extra: dict[str, Any] = {"group_size": per_item, "strict_group_size": True} if per_item > 1 else {}
        with milvus_errors("search grouped by item_id"):
            results = self.client.search(
                self.collection,
                data=list(query),
                limit=k,
                filter=expr,
                output_fields=self.fields(),
                partition_names=partition_names,
                search_params=search_params(index_type, k, params),
                group_by_field="item_id",
                **extra,
                **self._consistency(),
            )
        by_item: dict[str, list[Hit]] = {}
        for row in results[0]:
            hit = Hit(score=float(row["distance"]), item=from_row(dict(row)))
            by_item.setdefault(hit.item.item_id, []).append(hit)
        products = [sorted(hits, key=lambda h: -h.score)[:per_item] for hits in by_item.values()]
        return sorted(products, key=lambda hits: -hits[0].score)

    def server_version(self) -> tuple[int, int]:
        """The server's (major, minor) version, asked once; (0, 0) when it does not say."""
        major, minor, _ = self._server_version()[0]
        return (major, minor)

    def _groups(self, per_item: int) -> bool:
        """Whether this server groups by a field itself: 2.4 one hit per group, 2.5 several."""
        return self.server_version() >= ((2, 4) if per_item == 1 else (2, 5))

    def iter_items(
        self, *, batch_size: int = 1000, with_vector: bool = True, window: Window = EVERYTHING
    ) -> Iterator[list[Item]]:
        """Every stored item in the window, in batches; a time window reads only its months."""
        for _, batch in self._milvus_items(batch_size=batch_size, with_vector=with_vector, window=window):
            yield batch

    def count(self, window: Window = EVERYTHING) -> int:
        """How many items are in the window (all of them by default)."""
        self._ensure_loaded()
        expr, partition_names = self._window(window)
        if partition_names == [] or window.nothing:
            return 0
        # A server's partition stats count rows an upsert replaced, so count(*) is asked for.
        with milvus_errors("count rows"):
            rows = self.client.query(
                self.collection,
                filter=expr,
                output_fields=["count(*)"],
                partition_names=partition_names,
                **self._consistency(),
            )
        return int(rows[0]["count(*)"]) if rows else 0

    def _partition_rows(self, name: str) -> int:
        with milvus_errors("count rows"):
            rows = self.client.query(
                self.collection,
                filter="",
                output_fields=["count(*)"],
                partition_names=[name],
                **self._consistency(),
            )
        return int(rows[0]["count(*)"]) if rows else 0

    def distinct(self, names: Sequence[str], *, limit: int = DISTINCT_LIMIT) -> dict[str, Distinct]:
        """Each filter field's most frequent values and their counts.

        Milvus 2.3 has no group-by, so this is one pass over those columns (3.5 s at 100K items on a
        busy 2-core machine); a search page asks for it on every load, so the answer is kept
        (``Recent``): fresh for a minute, then given while a refresh runs, dropped at once when this
        store writes.
        """
        names = tuple(names)

        def count() -> dict[str, Distinct]:
            present = [name for name in names if name in self.fields()]
            counts: dict[str, dict[str, int]] = {name: {} for name in names}
            counts |= count_rows(self._column_rows(present), present)
            return {name: top(counts[name], limit) for name in names}

        return self._recent.get(("distinct", names, limit), count)

    def has_text(self, name: str) -> bool:
        def ask() -> bool:
            if name not in self.fields():
                return False
            self._ensure_loaded()
            with milvus_errors("read the collection"):
                rows = self.client.query(
                    self.collection,
                    filter=f"{name} != {quote('')}",
                    output_fields=["id"],
                    limit=1,
                    **self._consistency(),
                )
            return bool(rows)

        return self._recent.get(("has_text", name), ask)

    def _column_rows(self, names: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every row's values of these fields (no vectors), read one partition at a time."""
        self._ensure_loaded()
        if not names:
            return
        self._before_iterating()
        for partition in self.partitions():
            with milvus_errors("iterate the collection"):
                iterator = self.client.query_iterator(
                    self.collection,
                    batch_size=DISTINCT_BATCH,
                    output_fields=list(names),
                    filter="",
                    partition_names=[partition],
                    **self._consistency(),
                )
            try:
                while True:
                    with milvus_errors("iterate the collection"):
                        rows = iterator.next()
                    if not rows:
                        break
                    yield from rows
            finally:
                iterator.close()

    def _forget_distinct(self) -> None:
        self._recent.forget()

    def sources(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for batch in self.iter_items(batch_size=5000, with_vector=False):
            for item in batch:
                counts[item.source] = counts.get(item.source, 0) + 1
        return dict(sorted(counts.items()))


def _only_empty(allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    """The item_ids filter of the items without one, inside a window that may name item ids."""
    return ("",) if allowed is None or "" in allowed else ()
