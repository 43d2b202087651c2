"""A thin store over pymilvus' MilvusClient: validated inputs, typed results, one collection."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import (
    CollectionNotFoundError,
    ConfigError,
    DimensionMismatchError,
    StoreError,
    UnsupportedIndexError,
)
from lookalike.store.filters import build_filter
from lookalike.store.local import LocalIndex
from lookalike.store.models import (
    CROP_FIELDS,
    SCALAR_FIELDS,
    CollectionInfo,
    Hit,
    IndexType,
    Item,
    PartitionStats,
)
from lookalike.store.partitions import month_start, next_month, partition_for, partitions_between

log = logging.getLogger(__name__)

MODEL_PROPERTY = "lookalike.model"
INDEX_PROPERTY = "lookalike.index"
"""On Milvus Lite with the local copy, the index asked for (the copy builds it; Milvus keeps FLAT)."""
MAX_K = 16384
_VARCHAR = {
    "sha256": 64,
    "item_id": 1024,
    "name": 2048,
    "source": 256,
    "uri": 4096,
    "parent_sha256": 64,
    "box": 64,
    "label": 256,
}

LITE_INDEXES = (IndexType.FLAT, IndexType.IVF_FLAT, IndexType.IVF_SQ8, IndexType.HNSW)
SERVER_INDEXES = tuple(IndexType)

DEFAULT_BUILD_PARAMS: dict[IndexType, dict[str, Any]] = {
    IndexType.FLAT: {},
    IndexType.IVF_FLAT: {"nlist": 1024},
    IndexType.IVF_SQ8: {"nlist": 1024},
    IndexType.IVF_PQ: {"nlist": 1024, "m": 16},
    IndexType.HNSW: {"M": 16, "efConstruction": 100},
}


def is_server_uri(uri: str) -> bool:
    return "://" in uri


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


def _row_to_item(row: dict[str, Any], with_vector: bool) -> Item:
    entity = row.get("entity", row)
    vector = None
    if with_vector and entity.get("vector") is not None:
        vector = np.asarray(entity["vector"], dtype=np.float32)
    return Item(
        id=int(row.get("id", entity.get("id"))),
        sha256=str(entity.get("sha256", "")),
        item_id=str(entity.get("item_id", "")),
        name=str(entity.get("name", "")),
        source=str(entity.get("source", "")),
        created_at=int(entity.get("created_at", 0)),
        uri=str(entity.get("uri", "")),
        width=int(entity.get("width", 0)),
        height=int(entity.get("height", 0)),
        parent_sha256=str(entity.get("parent_sha256") or ""),
        box=str(entity.get("box") or ""),
        label=str(entity.get("label") or ""),
        det_score=float(entity.get("det_score") or 0.0),
        vector=vector,
    )


@contextmanager
def _milvus_errors(action: str) -> Iterator[None]:
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise StoreError(f"Milvus could not {action}: {getattr(exc, 'message', exc)}") from exc


class MilvusStore:
    """One Milvus collection of images: a file path means Milvus Lite, a URI means a server."""

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        token: str = "",
        user: str = "",
        password: str = "",
        local_index: bool = True,
        timeout_s: float = 30.0,
        tls: dict[str, str] | None = None,
    ) -> None:
        if not collection or not collection.replace("_", "a").isalnum() or collection[0].isdigit():
            raise ConfigError(
                f"Invalid collection name {collection!r}: use letters, digits and underscores, "
                "starting with a letter."
            )
        if not is_server_uri(uri) and not uri.endswith(".db"):
            raise ConfigError(
                f"--db {uri!r} is neither a Milvus Lite file (a path ending in .db, e.g. ./lookalike.db) "
                "nor a Milvus server URI (http://host:19530)."
            )
        self.uri = uri
        self.collection = collection
        self._auth = {"token": token or (f"{user}:{password}" if user else "")}
        self._tls: dict[str, Any] = {k: (v == "true") if k == "secure" else v for k, v in (tls or {}).items()}
        self.timeout_s = timeout_s
        self._client: Any = None
        self._loaded = False
        self._partitions: set[str] | None = None
        # The schema and index do not change under a running process; describing them
        # once saves a round trip on every search.
        self._description: dict[str, Any] | None = None
        self._index: tuple[str, dict[str, Any]] | None = None
        # Milvus Lite answers reads slowly (see store/local.py); a local copy serves them.
        self.use_local_index = local_index and not is_server_uri(uri)
        self._local: LocalIndex | None = None
        self._local_lock = threading.Lock()

    @property
    def is_lite(self) -> bool:
        return not is_server_uri(self.uri)

    @property
    def supported_indexes(self) -> tuple[IndexType, ...]:
        return LITE_INDEXES if self.is_lite else SERVER_INDEXES

    @property
    def client(self) -> Any:
        if self._client is None:
            # gRPC's C core logs keepalive renegotiations with Milvus Lite's in-process server
            # straight to stderr; they are not errors.
            os.environ.setdefault("GRPC_VERBOSITY", "NONE")
            from pymilvus import MilvusClient

            # pymilvus sets up its own stderr loggers on import and logs every failed RPC with
            # a traceback; the store raises one clear error instead.
            # Milvus Lite's in-process gRPC server logs unimplemented calls the client retries.
            for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "grpc._server"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            uri = self.uri
            if self.is_lite:
                path = Path(uri).expanduser().resolve()
                path.parent.mkdir(parents=True, exist_ok=True)
                uri = str(path)
            self._client = self._connect(MilvusClient, uri)
        return self._client

    def _connect(self, client_class: Any, uri: str) -> Any:
        """Open the client, retrying with backoff while a server starts, up to ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.5
        while True:
            try:
                return client_class(uri=uri, timeout=self.timeout_s, **self._auth, **self._tls)
            except Exception as exc:  # connection failures come as several exception types
                if self.is_lite or time.monotonic() + delay > deadline:
                    raise StoreError(f"Cannot open the Milvus database at {self.uri}: {exc}") from exc
                log.info("Milvus at %s is not answering (%s); retrying in %.1f s", self.uri, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        self._save_local()
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- collection lifecycle -------------------------------------------------------------

    def exists(self) -> bool:
        with _milvus_errors("list collections"):
            return bool(self.client.has_collection(self.collection))

    def require(self) -> None:
        if self._loaded or self._description is not None:
            return  # known to exist in this process
        if not self.exists():
            raise CollectionNotFoundError(
                f"The collection '{self.collection}' does not exist in {self.uri}. "
                "Index some images first: `lookalike index PATH`."
            )

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self.require()
        with _milvus_errors("load the collection"):
            self.client.load_collection(self.collection)
        self._loaded = True

    def bulk_import(self, files: Sequence[str], partition: str, timeout_s: float = 3600.0) -> int:
        """Have a server import Parquet files into a partition itself; returns the rows it imported.

        The files must be readable by the server (its local storage, or its object-storage
        bucket). A bulk import does not check primary keys: import into a new collection only.
        """
        if self.is_lite:
            raise ConfigError("Bulk import needs a Milvus server; Milvus Lite inserts rows.")
        self.require()
        self._ensure_partition(partition)
        # MilvusClient has no bulk-import call for Milvus 2.3's Import RPC; its connection does,
        # and talks to the same database as the client (the ORM `utility` helpers may not).
        handler = self.client._get_connection()
        with _milvus_errors("start a bulk import"):
            task = handler.do_bulk_insert(self.collection, partition, list(files), timeout=self.timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:
            with _milvus_errors("follow a bulk import"):
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
        """Release the collection from a server's memory; the next read loads it again."""
        self.require()
        with _milvus_errors("release the collection"):
            self.client.release_collection(self.collection)
        self._loaded = False

    def _consistency(self) -> dict[str, Any]:
        # A server answers reads from a snapshot that may lag the last writes; counts and the
        # "already stored?" check must see every acknowledged write.
        return {} if self.is_lite else {"consistency_level": "Strong"}

    def create(
        self,
        dim: int,
        *,
        index: str = IndexType.HNSW,
        index_params: dict[str, Any] | None = None,
        model: str = "",
    ) -> None:
        """Create the collection with its schema and vector index."""
        from pymilvus import DataType, MilvusClient

        index_type = self.validate_index(index)
        params = {**DEFAULT_BUILD_PARAMS[index_type], **(index_params or {})}
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for name in ("sha256", "item_id", "name", "source"):
            schema.add_field(name, DataType.VARCHAR, max_length=_VARCHAR[name])
        schema.add_field("created_at", DataType.INT64)
        schema.add_field("uri", DataType.VARCHAR, max_length=_VARCHAR["uri"])
        schema.add_field("width", DataType.INT32)
        schema.add_field("height", DataType.INT32)
        for name in ("parent_sha256", "box", "label"):
            schema.add_field(name, DataType.VARCHAR, max_length=_VARCHAR[name])
        schema.add_field("det_score", DataType.FLOAT)
        properties = {MODEL_PROPERTY: model} if model else {}
        milvus_index, milvus_params = index_type, params
        if self.use_local_index:
            # Searches are answered by the local copy, which builds the index asked for; an
            # index inside Milvus Lite would only burn CPU in its background builds.
            properties[INDEX_PROPERTY] = json.dumps({"type": index_type.value, "params": params})
            milvus_index, milvus_params = IndexType.FLAT, {}
        index_spec = self.client.prepare_index_params()
        index_spec.add_index(
            field_name="vector", index_type=milvus_index.value, metric_type="IP", params=milvus_params
        )
        with _milvus_errors("create the collection"):
            self.client.create_collection(self.collection, schema=schema, index_params=index_spec)
            if properties:
                self.client.alter_collection_properties(self.collection, properties)
        self._forget()
        shutil.rmtree(self._local_folder(), ignore_errors=True)

    def _forget(self) -> None:
        self._local = None
        self._loaded = False
        self._partitions = None
        self._description = None
        self._index = None

    def validate_index(self, index: str) -> IndexType:
        try:
            index_type = IndexType(index.upper())
        except ValueError:
            index_type = None
        if index_type is None or index_type not in self.supported_indexes:
            engine = "Milvus Lite" if self.is_lite else "this Milvus server"
            names = ", ".join(i.value for i in self.supported_indexes)
            raise UnsupportedIndexError(
                f"Index type '{index}' is not supported by {engine}. Supported: {names}."
                + (" IVF_PQ needs a Milvus server (--db http://host:19530)." if self.is_lite else "")
            )
        return index_type

    def ensure(
        self,
        dim: int,
        *,
        index: str = IndexType.HNSW,
        index_params: dict[str, Any] | None = None,
        model: str = "",
    ) -> bool:
        """Create the collection if needed; True when it was created.

        An existing collection is checked, never changed: a different vector size raises
        DimensionMismatchError before anything is written.
        """
        if not self.exists():
            self.create(dim, index=index, index_params=index_params, model=model)
            return True
        self.check_dim(dim)
        return False

    def check_dim(self, dim: int) -> None:
        stored = self.dim()
        if stored != dim:
            raise DimensionMismatchError(
                f"The collection '{self.collection}' holds {stored}-dimensional vectors "
                f"(model {self.model() or 'unknown'}), but this model makes {dim}-dimensional ones. "
                "Use the model the collection was built with, or another --collection."
            )

    def _describe(self) -> dict[str, Any]:
        if self._description is None:
            self.require()
            with _milvus_errors("describe the collection"):
                self._description = dict(self.client.describe_collection(self.collection))
        return self._description

    def dim(self) -> int:
        for field in self._describe()["fields"]:
            if field["name"] == "vector":
                return int(field["params"]["dim"])
        raise StoreError(
            f"The collection '{self.collection}' has no vector field; it was not made by lookalike."
        )

    def model(self) -> str:
        return str(self._describe().get("properties", {}).get(MODEL_PROPERTY, ""))

    def fields(self) -> list[str]:
        """The scalar fields this collection has: one made before crops existed lacks CROP_FIELDS."""
        present = {field["name"] for field in self._describe()["fields"]}
        return [name for name in SCALAR_FIELDS if name in present]

    def holds_crops(self) -> bool:
        return set(CROP_FIELDS) <= set(self.fields())

    def require_crop_fields(self) -> None:
        """Raise ConfigError when this collection predates crops and cannot store them."""
        if not self.holds_crops():
            raise ConfigError(
                f"The collection '{self.collection}' was made before lookalike stored detected crops, so it "
                "has no fields for them. Index with --detect into a new --collection (or export, drop and "
                "import this one: the import creates the new fields)."
            )

    def index(self) -> tuple[str, dict[str, Any]]:
        """The vector index type and its build parameters, as the collection was created with."""
        if self._index is not None:
            return self._index
        asked = self._describe().get("properties", {}).get(INDEX_PROPERTY)
        if asked:
            spec = json.loads(asked)
            self._index = (str(spec["type"]), dict(spec["params"]))
            return self._index
        with _milvus_errors("describe the index"):
            info = dict(self.client.describe_index(self.collection, "vector"))
        index_type = str(info.pop("index_type", IndexType.FLAT))
        skip = {
            "metric_type",
            "field_name",
            "index_name",
            "total_rows",
            "indexed_rows",
            "pending_index_rows",
            "state",
        }
        self._index = (index_type, {k: v for k, v in info.items() if k not in skip})
        return self._index

    def drop(self) -> None:
        with _milvus_errors("drop the collection"):
            self.client.drop_collection(self.collection)
        self._forget()
        shutil.rmtree(self._local_folder(), ignore_errors=True)

    # -- the local read path (Milvus Lite) -------------------------------------------------

    def _local_folder(self) -> Path:
        return Path(self.uri).expanduser().resolve() / "lookalike-index" / self.collection

    def _fingerprint(self) -> dict[str, int]:
        return {p.name: p.rows for p in self.partition_stats()}

    def local_index(self) -> LocalIndex | None:
        """The local copy that serves reads, opened (or rebuilt) on first use; None on a server."""
        if not self.use_local_index:
            return None
        with self._local_lock:
            if self._local is None:
                self._ensure_loaded()
                index_type, params = self.index()
                self._local = LocalIndex.open(
                    self._local_folder(),
                    dim=self.dim(),
                    index_type=index_type,
                    params=params,
                    fingerprint=self._fingerprint(),
                    rebuild=lambda: self._milvus_items(batch_size=5000, with_vector=True),
                )
            return self._local

    def _save_local(self) -> None:
        if self._local is not None and self._local.dirty and self._client is not None:
            self._local.save(self._fingerprint())

    # -- partitions ----------------------------------------------------------------------------

    def partitions(self) -> list[str]:
        if self._partitions is None:
            with _milvus_errors("list partitions"):
                self._partitions = set(self.client.list_partitions(self.collection))
        return sorted(self._partitions)

    def ensure_partitions(self, names: Sequence[str]) -> None:
        """Create these partitions where missing (a copy keeps the source's empty months too)."""
        self.require()
        for name in names:
            self._ensure_partition(name)

    def _ensure_partition(self, name: str) -> None:
        if name in self.partitions():
            return
        with _milvus_errors(f"create partition {name}"):
            if not self.client.has_partition(self.collection, name):
                self.client.create_partition(self.collection, name)
            if self._loaded:
                # A partition made after the load must be loaded too; Milvus Lite only loads
                # whole collections, and a server treats a repeated load as a refresh.
                self.client.load_collection(self.collection)
        assert self._partitions is not None
        self._partitions.add(name)

    # -- writes ----------------------------------------------------------------------------------

    def insert(self, items: Sequence[Item]) -> int:
        """Insert items into their monthly partitions; returns how many were written."""
        if not items:
            return 0
        self.require()
        # Opened before the write, so that a copy saved earlier still matches Milvus' counts.
        local = self.local_index()
        by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
        fields = self.fields()
        if any(item.box or item.label for item in items):
            self.require_crop_fields()
        for item in items:
            if item.vector is None:
                raise StoreError(f"Item {item.id} has no vector.")
            row = {name: value for name, value in item.metadata().items() if name in fields}
            for name, size in _VARCHAR.items():
                if name in row:
                    row[name] = row[name][:size]
            row["vector"] = item.vector
            by_partition[partition_for(item.created_at)].append(row)
        for partition, rows in by_partition.items():
            self._ensure_partition(partition)
            with _milvus_errors("insert"):
                if self.is_lite:
                    self.client.insert(self.collection, rows, partition_name=partition)
                else:
                    # An upsert by primary key: a chunk written again after a lost reply (a
                    # server restart, a resumed ingest) replaces itself instead of doubling.
                    self.client.upsert(self.collection, rows, partition_name=partition)
        if local is not None:
            local.add(items)
        return len(items)

    def flush(self) -> None:
        with _milvus_errors("flush"):
            self.client.flush(self.collection)
        self._save_local()

    # -- reads -----------------------------------------------------------------------------------

    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        if not ids:
            return set()
        local = self.local_index()
        if local is not None:
            return {int(i) for i in local.table().column("id").take(local.rows_of(ids)).to_pylist()}
        self._ensure_loaded()
        with _milvus_errors("look up ids"):
            rows = self.client.query(
                self.collection, filter=build_filter(ids=ids), output_fields=["id"], **self._consistency()
            )
        return {int(row["id"]) for row in rows}

    def get(self, ids: Sequence[int], *, with_vector: bool = False) -> list[Item]:
        if not ids:
            return []
        local = self.local_index()
        if local is not None:
            return local.items(local.rows_of(ids), with_vector=with_vector)
        self._ensure_loaded()
        fields = [*self.fields(), "vector"] if with_vector else self.fields()
        with _milvus_errors("get items"):
            rows = self.client.query(self.collection, filter=build_filter(ids=ids), output_fields=fields)
        found = {int(row["id"]): _row_to_item(row, with_vector) for row in rows}
        return [found[i] for i in ids if i in found]

    def search(
        self,
        vectors: npt.NDArray[np.float32],
        *,
        k: int = 10,
        sources: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
        exclude_ids: Sequence[int] | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Top-k by cosine for each query row, inside the monthly partitions the window needs.

        ``params`` tunes the index at query time: ``ef`` for HNSW, ``nprobe`` for IVF types.
        """
        if not 1 <= k <= MAX_K:
            raise ConfigError(f"k must be between 1 and {MAX_K}, got {k}.")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ConfigError("search needs at least one query vector.")
        self._ensure_loaded()
        self.check_dim(int(vectors.shape[1]))
        local = self.local_index()
        if local is not None:
            keep = local.mask(sources=sources, since=since, until=until, exclude_ids=exclude_ids)
            return local.search(vectors, k, keep, ef=int((params or {}).get("ef", 0)) or None)
        expr, partition_names = self._window(sources, since, until, exclude_ids)
        if partition_names == []:
            return [[] for _ in range(len(vectors))]
        index_type, _ = self.index()
        with _milvus_errors("search"):
            results = self.client.search(
                self.collection,
                data=list(vectors),
                limit=k,
                filter=expr,
                output_fields=self.fields(),
                partition_names=partition_names,
                search_params=search_params(index_type, k, params),
            )
        return [
            [Hit(score=float(hit["distance"]), item=_row_to_item(dict(hit), False)) for hit in hits]
            for hits in results
        ]

    def _window(
        self,
        sources: Sequence[str] | None,
        since: int | None,
        until: int | None,
        exclude_ids: Sequence[int] | None = None,
    ) -> tuple[str, list[str] | None]:
        """The filter expression and the partitions (None: all) for a source / time window."""
        partition_names = None
        if since is not None or until is not None:
            partition_names = partitions_between(self.partitions(), since, until)
        expr = build_filter(
            sources=list(sources) if sources else None, since=since, until=until, exclude_ids=exclude_ids
        )
        return expr, partition_names

    def iter_items(
        self,
        *,
        batch_size: int = 1000,
        with_vector: bool = True,
        sources: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> Iterator[list[Item]]:
        """Every stored item in the window, in batches; memory stays bounded by the batch size.

        On Milvus Lite the local copy serves the pass; on a server, a time window reads only
        the monthly partitions it overlaps.
        """
        local = self.local_index()
        if local is not None:
            keep = local.mask(sources=sources, since=since, until=until)
            for rows in local.iter_rows(keep, batch_size):
                yield local.items(rows, with_vector=with_vector)
            return
        yield from self._milvus_items(
            batch_size=batch_size, with_vector=with_vector, sources=sources, since=since, until=until
        )

    def _milvus_items(
        self,
        *,
        batch_size: int,
        with_vector: bool,
        sources: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> Iterator[list[Item]]:
        # Partitions are read one at a time: each page of an iterator filters its whole
        # scope, so smaller scopes keep a full pass close to linear in the collection size.
        self._ensure_loaded()
        expr, partition_names = self._window(sources, since, until)
        fields = [*self.fields(), "vector"] if with_vector else self.fields()
        for partition in partition_names if partition_names is not None else self.partitions():
            with _milvus_errors("iterate the collection"):
                iterator = self.client.query_iterator(
                    self.collection,
                    batch_size=batch_size,
                    output_fields=fields,
                    filter=expr,
                    partition_names=[partition],
                )
            try:
                while True:
                    with _milvus_errors("iterate the collection"):
                        rows = iterator.next()
                    if not rows:
                        break
                    yield [_row_to_item(row, with_vector) for row in rows]
            finally:
                iterator.close()

    def count(
        self,
        *,
        sources: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> int:
        """How many items are in the window (all of them by default)."""
        self._ensure_loaded()
        expr, partition_names = self._window(sources, since, until)
        if partition_names == []:
            return 0
        if not expr and self.is_lite:
            # Milvus Lite answers count(*) without a filter from its totals, ignoring partitions.
            # (A server's partition stats count rows an upsert replaced, so it is asked instead.)
            names = partition_names or self.partitions()
            return sum(row.rows for row in self.partition_stats() if row.name in names)
        with _milvus_errors("count rows"):
            rows = self.client.query(
                self.collection,
                filter=expr,
                output_fields=["count(*)"],
                partition_names=partition_names,
                **self._consistency(),
            )
        return int(rows[0]["count(*)"]) if rows else 0

    def partition_stats(self) -> list[PartitionStats]:
        """Rows per partition, with the month each monthly partition covers."""
        self.require()
        stats = []
        with _milvus_errors("read partition stats"):
            for name in self.partitions():
                rows = int(self.client.get_partition_stats(self.collection, name)["row_count"])
                start = month_start(name)
                stats.append(
                    PartitionStats(name, rows, start, next_month(start) if start is not None else None)
                )
        return stats

    def drop_partitions(self, names: Sequence[str]) -> None:
        """Drop whole partitions and the items in them."""
        self.require()
        local = self.local_index()
        for name in names:
            if name == "_default":
                raise ConfigError("The _default partition cannot be dropped.")
            with _milvus_errors(f"drop partition {name}"):
                if self.client.has_partition(self.collection, name):
                    # A server only drops released partitions; Milvus Lite has no partition-level
                    # release and drops loaded ones.
                    if not self.is_lite:
                        self.client.release_partitions(self.collection, [name])
                    self.client.drop_partition(self.collection, name)
            if self._partitions is not None:
                self._partitions.discard(name)
        if local is not None:
            local.drop_partitions(names)
            self._save_local()

    def info(self) -> CollectionInfo:
        """Counts per partition and per source (the source counts read the source column)."""
        self._ensure_loaded()
        parts = self.partition_stats()
        sources: dict[str, int] = defaultdict(int)
        for batch in self.iter_items(batch_size=5000, with_vector=False):
            for item in batch:
                sources[item.source] += 1
        index_type, params = self.index()
        return CollectionInfo(
            name=self.collection,
            dim=self.dim(),
            index_type=index_type,
            index_params=params,
            model=self.model(),
            rows=sum(p.rows for p in parts),
            partitions=[p for p in parts if p.rows or p.name != "_default"],
            sources=dict(sorted(sources.items())),
        )
