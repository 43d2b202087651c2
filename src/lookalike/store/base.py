"""What Lite and server stores share: the pymilvus client, the collection's schema and metadata,
partitions, and the reads and writes that go to Milvus itself."""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.durable import crash_point
from lookalike.errors import (
    CollectionNotFoundError,
    ConfigError,
    DimensionMismatchError,
    StoreError,
    UnsupportedIndexError,
)
from lookalike.store.fields import FIELDS, SCHEMA_PROPERTY, SCHEMA_VERSION, Kind
from lookalike.store.filters import build_filter, expression
from lookalike.store.models import (
    CROP_FIELDS,
    SCALAR_FIELDS,
    CollectionInfo,
    Hit,
    IndexType,
    Item,
    PartitionStats,
)
from lookalike.store.partitions import month_start, next_month, partition_for
from lookalike.store.rows import from_row, normalise, to_row
from lookalike.store.window import EVERYTHING, Window

log = logging.getLogger(__name__)

from lookalike.store.milvus import (  # noqa: E402
    DEFAULT_BUILD_PARAMS,
    INDEX_PROPERTY,
    LITE_INDEXES,
    MODEL_PROPERTY,
    SERVER_INDEXES,
    check_collection_name,
    check_k,
    check_per_item,
    milvus_errors,
    quiet_pymilvus,
)

ID_BATCH = 1000
"""Ids per filter expression: keeps each expression (and each reply) small."""


def group_by_partition(items: Sequence[Item]) -> dict[str, list[Item]]:
    by_partition: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_partition[partition_for(item.created_at)].append(item)
    return by_partition


class BaseStore:
    """One Milvus collection: the client, schema, metadata, partitions and direct Milvus I/O."""

    is_lite = False

    def __init__(self, uri: str, collection: str, *, timeout_s: float = 30.0) -> None:
        check_collection_name(collection)
        self.uri = uri
        self.collection = collection
        self.timeout_s = timeout_s
        self._client: Any = None
        self._connecting = threading.Lock()  # one client per store, however many threads first use it
        self._loaded = False
        self._partitions: set[str] | None = None
        # The schema and index do not change under a running process; describing them once
        # saves a round trip on every call.
        self._description: dict[str, Any] | None = None
        self._index: tuple[str, dict[str, Any]] | None = None
        self._schema_checked = False  # the collection's schema version, checked once per process

    # -- connection ---------------------------------------------------------------------------

    @property
    def supported_indexes(self) -> tuple[IndexType, ...]:
        return LITE_INDEXES if self.is_lite else SERVER_INDEXES

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._connecting:
                if self._client is None:
                    quiet_pymilvus()
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- collection lifecycle ----------------------------------------------------------------------

    def exists(self) -> bool:
        with milvus_errors("list collections"):
            if self.client.has_collection(self.collection):
                return True
        from lookalike.store import upgrade

        return upgrade.finish(self)  # an upgrade stopped between dropping the old and renaming the new

    def require(self) -> None:
        if not (self._loaded or self._description is not None) and not self.exists():
            raise CollectionNotFoundError(
                f"The collection '{self.collection}' does not exist in {self.uri}. "
                "Index some images first: `lookalike index PATH`."
            )
        self._upgrade()

    def _upgrade(self) -> None:
        """Upgrade a collection of an older schema version, once per process, where Milvus is open (a
        Lite store reading Milvus Lite's files reads the old layout as it is until it opens Milvus)."""
        if self._schema_checked or not self._opens_milvus():
            return
        self._schema_checked = True  # first: the upgrade itself reads through this store
        from lookalike.store import upgrade

        try:
            if upgrade.upgrade(self) is not None:
                self._upgraded()
        except BaseException:
            self._schema_checked = False  # tried again by the next call (a kill is finished on the next open)
            raise

    def _opens_milvus(self) -> bool:
        """Whether this store talks to Milvus itself now (a Lite store may be reading its files)."""
        return True

    def _upgraded(self) -> None:
        """What a store forgets once its collection was replaced by its upgraded copy."""
        self._forget()

    def _before_iterating(self) -> None:
        """What a store does before a query iterator starts (nothing here; a server syncs)."""

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self.require()
        with milvus_errors("load the collection"):
            self.client.load_collection(self.collection)
        self._loaded = True

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

    def _schema(self, dim: int) -> Any:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        types = {Kind.INT64: DataType.INT64, Kind.INT32: DataType.INT32, Kind.FLOAT: DataType.FLOAT}
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for spec in FIELDS[1:]:
            if spec.kind is Kind.TEXT:
                schema.add_field(spec.name, DataType.VARCHAR, max_length=spec.max_bytes)
            elif spec.kind is Kind.TEXTS:
                schema.add_field(
                    spec.name,
                    DataType.ARRAY,
                    element_type=DataType.VARCHAR,
                    max_capacity=spec.max_items,
                    max_length=spec.max_bytes,
                )
            else:
                schema.add_field(spec.name, types[spec.kind])
        return schema

    def create(
        self,
        dim: int,
        *,
        index: str = IndexType.HNSW,
        index_params: dict[str, Any] | None = None,
        model: str = "",
    ) -> None:
        """Create the collection with its schema and vector index."""
        index_type = self.validate_index(index)
        params = {**DEFAULT_BUILD_PARAMS[index_type], **(index_params or {})}
        properties = {SCHEMA_PROPERTY: str(SCHEMA_VERSION)} | ({MODEL_PROPERTY: model} if model else {})
        self._create(dim, index_type, params, properties)
        self._forget()
        self._schema_checked = True

    def _create(self, dim: int, index: IndexType, params: dict[str, Any], properties: dict[str, str]) -> None:
        index_spec = self.client.prepare_index_params()
        index_spec.add_index(field_name="vector", index_type=index.value, metric_type="IP", params=params)
        schema = self._schema(dim)
        self._add_search_fields(schema, index_spec)
        with milvus_errors("create the collection"):
            self.client.create_collection(self.collection, schema=schema, index_params=index_spec)
            if properties:
                self.client.alter_collection_properties(self.collection, properties)

    def _add_search_fields(self, schema: Any, index_spec: Any) -> None:
        """Fields a backend adds for its own searches (a server's BM25 keyword field); none here."""

    def _forget(self) -> None:
        self._loaded = False
        self._partitions = None
        self._description = None
        self._index = None

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
            with milvus_errors("describe the collection"):
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
        with milvus_errors("describe the index"):
            info = dict(self.client.describe_index(self.collection, "vector"))
        index_type = str(info.pop("index_type", IndexType.FLAT))
        skip = {"metric_type", "field_name", "index_name", "total_rows", "indexed_rows"}
        skip |= {"pending_index_rows", "state"}
        self._index = (index_type, {k: v for k, v in info.items() if k not in skip})
        return self._index

    def drop(self) -> None:
        with milvus_errors("drop the collection"):
            self.client.drop_collection(self.collection)
        self._forget()

    # -- partitions ----------------------------------------------------------------------------------

    def partitions(self) -> list[str]:
        if self._partitions is None:
            with milvus_errors("list partitions"):
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
        with milvus_errors(f"create partition {name}"):
            if not self.client.has_partition(self.collection, name):
                self.client.create_partition(self.collection, name)
            if self._loaded:
                # A partition made after the load must be loaded too; Milvus Lite only loads
                # whole collections, and a server treats a repeated load as a refresh.
                self.client.load_collection(self.collection)
        if self._partitions is not None:  # (a Lite store reading Milvus Lite's files has not listed them)
            self._partitions.add(name)

    def _drop_milvus_partition(self, name: str) -> None:
        if name == "_default":
            raise ConfigError("The _default partition cannot be dropped.")
        with milvus_errors(f"drop partition {name}"):
            if self.client.has_partition(self.collection, name):
                if not self.is_lite:  # a server only drops released partitions
                    self.client.release_partitions(self.collection, [name])
                crash_point("milvus.drop_partition")
                self.client.drop_partition(self.collection, name)
                crash_point("milvus.partition_dropped")
        if self._partitions is not None:
            self._partitions.discard(name)

    def partition_stats(self) -> list[PartitionStats]:
        """Rows per partition, with the month each monthly partition covers."""
        self.require()
        stats = []
        for name in self.partitions():
            start = month_start(name)
            stats.append(
                PartitionStats(
                    name, self._partition_rows(name), start, next_month(start) if start is not None else None
                )
            )
        return stats

    def _queries(self, vectors: Any, k: int) -> npt.NDArray[np.float32]:
        """Query vectors as float32 rows of the collection's size, and k in range (ConfigError otherwise)."""
        check_k(k)
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[0] == 0:
            raise ConfigError("search needs at least one query vector.")
        self.check_dim(int(queries.shape[1]))
        return queries

    def search(
        self,
        vectors: npt.NDArray[np.float32],
        *,
        k: int = 10,
        window: Window = EVERYTHING,
        params: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        raise NotImplementedError

    def search_products(
        self,
        vector: npt.NDArray[np.float32],
        *,
        k: int = 10,
        per_item: int = 1,
        window: Window = EVERYTHING,
        params: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """The k best products (catalog items) for one query vector, best first, each ranked by its
        best picture and given as its up to ``per_item`` best hits (``grouping.per_product``)."""
        from lookalike.store.grouping import per_product

        check_k(k)
        check_per_item(per_item)
        query = self._queries(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)

        def pictures(n: int, asked: Window) -> list[Hit]:
            return self.search(query, k=n, window=asked, params=params)[0]

        return per_product(pictures, k=k, per_item=per_item, window=window)

    def _partition_rows(self, name: str) -> int:
        with milvus_errors("read partition stats"):
            return int(self.client.get_partition_stats(self.collection, name)["row_count"])

    def sources(self) -> dict[str, int]:
        raise NotImplementedError

    def info(self) -> CollectionInfo:
        """Counts per partition and per source."""
        self._ensure_loaded()
        return self._info()

    def _info(self) -> CollectionInfo:
        parts = self.partition_stats()
        index_type, params = self.index()
        return CollectionInfo(
            name=self.collection,
            dim=self.dim(),
            index_type=index_type,
            index_params=params,
            model=self.model(),
            rows=sum(p.rows for p in parts),
            partitions=[p for p in parts if p.rows or p.name != "_default"],
            sources=self.sources(),
        )

    # -- direct Milvus I/O ---------------------------------------------------------------------------

    def _consistency(self) -> dict[str, Any]:
        return {}

    def _prepare(self, items: Sequence[Item]) -> list[Item]:
        """Items as both copies hold them (normalised), refused whole if any cannot be stored."""
        if any(item.box or item.label for item in items):
            self.require_crop_fields()
        for item in items:
            if item.vector is None:
                raise StoreError(f"Item {item.id} has no vector.")
        return [normalise(item) for item in items]

    def _write_rows(self, partition: str, items: Sequence[Item], *, upsert: bool) -> None:
        self._ensure_partition(partition)
        fields = self.fields()
        rows = [self._row(item, fields) for item in items]
        crash_point("milvus.insert")
        with milvus_errors("insert"):
            if upsert:
                self.client.upsert(self.collection, rows, partition_name=partition)
            else:
                self.client.insert(self.collection, rows, partition_name=partition)

    def _row(self, item: Item, fields: Sequence[str]) -> dict[str, Any]:
        return to_row(item, fields)

    def _delete_rows(self, ids: Sequence[int], partition: str | None = None) -> None:
        where = {"partition_name": partition} if partition else {}
        for start in range(0, len(ids), ID_BATCH):
            crash_point("milvus.delete")
            with milvus_errors("delete"):
                self.client.delete(self.collection, ids=list(ids[start : start + ID_BATCH]), **where)

    def _milvus_get(self, ids: Sequence[int], *, with_vector: bool) -> dict[int, Item]:
        self._ensure_loaded()
        fields = [*self.fields(), "vector"] if with_vector else self.fields()
        found: dict[int, Item] = {}
        unique = list(dict.fromkeys(int(i) for i in ids))
        for start in range(0, len(unique), ID_BATCH):
            with milvus_errors("get items"):
                rows = self.client.query(
                    self.collection,
                    filter=build_filter(ids=unique[start : start + ID_BATCH]),
                    output_fields=fields,
                    **self._consistency(),
                )
            found.update((int(row["id"]), from_row(row, with_vector)) for row in rows)
        return found

    def _window(self, window: Window) -> tuple[str, list[str] | None]:
        """The filter expression and the partitions (None: all) a read of the window needs."""
        return expression(window), window.partitions(self.partitions())

    def _milvus_items(
        self,
        *,
        batch_size: int,
        with_vector: bool,
        window: Window = EVERYTHING,
        partitions: Sequence[str] | None = None,
    ) -> Iterator[tuple[str, list[Item]]]:
        """(partition, batch) for every item in the window, read from Milvus one partition at a time.

        Each page of an iterator filters its whole scope, so smaller scopes keep a full pass
        close to linear in the collection size.
        """
        self._ensure_loaded()
        if window.nothing:
            return
        self._before_iterating()
        expr, chosen = self._window(window)
        names = chosen if chosen is not None else self.partitions()
        fields = [*self.fields(), "vector"] if with_vector else self.fields()
        for partition in names if partitions is None else [p for p in names if p in partitions]:
            with milvus_errors("iterate the collection"):
                iterator = self.client.query_iterator(
                    self.collection,
                    batch_size=batch_size,
                    output_fields=fields,
                    filter=expr,
                    partition_names=[partition],
                    **self._consistency(),
                )
            try:
                while True:
                    with milvus_errors("iterate the collection"):
                        rows = iterator.next()
                    if not rows:
                        break
                    yield partition, [from_row(row, with_vector) for row in rows]
            finally:
                iterator.close()


def lite_path(uri: str) -> Path:
    return Path(uri).expanduser().resolve()
