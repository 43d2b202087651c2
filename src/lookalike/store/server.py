"""A Milvus standalone or cluster server: upserts by id, strong reads, bulk import."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import StoreError
from lookalike.store import serverkeywords
from lookalike.store.base import BaseStore, group_by_partition
from lookalike.store.fusion import RRF, Fusion, depth, fuse
from lookalike.store.keywords import tokenize
from lookalike.store.milvus import check_k, milvus_errors
from lookalike.store.models import Hit, IndexType, Item
from lookalike.store.rows import from_row
from lookalike.store.window import EVERYTHING, Window


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
            self.client.query(
                self.collection, filter="", output_fields=["count(*)"], **self._consistency()
            )

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
        present = self.existing_ids(ids)
        self._delete_rows(sorted(present))
        if erase and present:
            self.flush()
            self.compact()
        return len(present)

    def drop_partitions(self, names: Sequence[str]) -> None:
        self.require()
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

    def sources(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for batch in self.iter_items(batch_size=5000, with_vector=False):
            for item in batch:
                counts[item.source] = counts.get(item.source, 0) + 1
        return dict(sorted(counts.items()))
