"""The composition root: builds the embedder and the store once per process and answers every command."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.config import Settings
from lookalike.embed import Embedder, create_embedder
from lookalike.errors import ConfigError, ItemNotFoundError, LookalikeError
from lookalike.ingest import Ingestor, IngestReport, decode_image, fetch, open_listing
from lookalike.store import CollectionInfo, Hit, IndexType, Item, MilvusStore

Progress = Callable[[int], None]
EXPORT_BATCH = 2000


@dataclass(frozen=True)
class Query:
    """One search: exactly one of text, image (path or URL), image_bytes or id."""

    text: str | None = None
    image: str | None = None
    image_bytes: bytes | None = None
    id: int | None = None
    k: int = 10
    sources: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None


@dataclass(frozen=True)
class SearchResult:
    took_ms: float
    hits: list[Hit]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"took_ms": round(self.took_ms, 3), "hits": [hit.to_dict() for hit in self.hits]}


def day_window(since: date | None, until: date | None) -> tuple[int | None, int | None]:
    """Whole UTC days, inclusive → [start, end) in unix seconds."""
    if since and until and since > until:
        raise ConfigError(f"--since {since} is after --until {until}.")

    def midnight(day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())

    return (
        midnight(since) if since else None,
        midnight(until + timedelta(days=1)) if until else None,
    )


def parse_index_params(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--index-params must be a JSON object, e.g. '{{\"nlist\": 1024}}': {exc}") from exc
    if not isinstance(params, dict):
        raise ConfigError("--index-params must be a JSON object, e.g. '{\"nlist\": 1024}'.")
    return params


class Lookalike:
    """Index, search, stats, export and import over one collection.

    Args:
        settings: where the data lives and which model to use.
        embedder: injected in tests; otherwise built from the settings on first use.
        store: injected in tests; otherwise built from the settings.
    """

    def __init__(
        self, settings: Settings, *, embedder: Embedder | None = None, store: MilvusStore | None = None
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self.store = store or MilvusStore(
            settings.db,
            settings.collection,
            token=settings.token,
            user=settings.user,
            password=settings.password,
        )

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(self.settings)
        return self._embedder

    def close(self) -> None:
        self.store.close()

    # -- index ---------------------------------------------------------------------------------

    def index(
        self,
        path: str,
        *,
        source: str | None = None,
        index: str = IndexType.FLAT,
        index_params: dict[str, Any] | None = None,
        on_start: Callable[[int], None] | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Index a folder, an image file or a catalog; returns the report of what was done and skipped."""
        listing = open_listing(path, source)
        self.store.validate_index(index)
        embedder = self.embedder
        if self.store.exists():
            self.store.check_dim(embedder.dim)
        # Load before creating anything: a model that cannot load must not leave behind an
        # empty collection of its dimension.
        embedder.load()
        self.store.ensure(embedder.dim, index=index, index_params=index_params, model=embedder.name)
        if on_start:
            on_start(listing.count())
        ingestor = Ingestor(
            embedder,
            self.store,
            chunk_size=max(embedder.batch_size * 4, 64),
            workers=self.settings.workers,
            max_pixels=self.settings.max_image_pixels,
            max_bytes=int(self.settings.max_download_mb * 1e6),
            timeout_s=self.settings.fetch_timeout_s,
        )
        return ingestor.run(listing, progress)

    # -- search --------------------------------------------------------------------------------

    def _query_vector(self, query: Query) -> tuple[np.ndarray, list[int]]:
        given = [v is not None for v in (query.text, query.image, query.image_bytes, query.id)]
        if sum(given) != 1:
            raise ConfigError("Give exactly one of --text, --image or --id.")
        if query.id is not None:
            found = self.store.get([query.id], with_vector=True)
            if not found or found[0].vector is None:
                raise ItemNotFoundError(f"No stored item has the id {query.id}.")
            return found[0].vector[None, :], [query.id]
        embedder = self.embedder
        if query.text is not None:
            if not query.text.strip():
                raise ConfigError("--text must not be empty.")
            return embedder.embed_texts([query.text]), []
        data = query.image_bytes
        if data is None:
            assert query.image is not None
            location = query.image
            if "://" not in location and not Path(location).expanduser().is_file():
                raise ConfigError(f"Query image not found: {location}")
            if "://" not in location:
                location = str(Path(location).expanduser())
            data = fetch(
                location,
                max_bytes=int(self.settings.max_download_mb * 1e6),
                timeout_s=self.settings.fetch_timeout_s,
            ).data
        decoded = decode_image(data, max_pixels=self.settings.max_image_pixels)
        return embedder.embed_images([decoded.image]), []

    def search(self, query: Query) -> SearchResult:
        """Top-k stored items for a text, an image or a stored id, inside the filters.

        ``took_ms`` counts embedding the query and searching; loading the model once per
        process does not count.
        """
        since, until = day_window(query.since, query.until)
        if any(not s.strip() for s in query.sources):
            raise ConfigError("--source must not be empty.")
        self.store.require()
        if query.id is None:
            self.store.check_dim(self.embedder.dim)
            self.embedder.load()
        started = time.perf_counter()
        vector, exclude = self._query_vector(query)
        hits = self.store.search(
            vector,
            k=query.k,
            sources=query.sources or None,
            since=since,
            until=until,
            exclude_ids=exclude,
        )[0]
        warnings = []
        if query.id is None:
            stored_model = self.store.model()
            if stored_model and stored_model != self.embedder.name:
                warnings.append(
                    f"The collection was indexed with {stored_model}, but this search uses "
                    f"{self.embedder.name}: scores are only meaningful with the same model."
                )
        return SearchResult((time.perf_counter() - started) * 1000, hits, warnings)

    def stats(self) -> CollectionInfo:
        return self.store.info()

    # -- export / import ---------------------------------------------------------------------

    def export(self, path: str, progress: Progress | None = None) -> int:
        """Write every item and its vector to a Parquet file; returns the row count."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = self.store.dim()
        index_type, index_params = self.store.index()
        schema = pa.schema(
            [
                ("id", pa.int64()),
                ("vector", pa.list_(pa.float32(), dim)),
                ("sha256", pa.string()),
                ("item_id", pa.string()),
                ("name", pa.string()),
                ("source", pa.string()),
                ("created_at", pa.int64()),
                ("uri", pa.string()),
                ("width", pa.int32()),
                ("height", pa.int32()),
            ],
            metadata={
                "lookalike.dim": str(dim),
                "lookalike.model": self.store.model(),
                "lookalike.index": json.dumps({"type": index_type, "params": index_params}),
            },
        )
        target = Path(path).expanduser()
        if target.suffix.lower() != ".parquet":
            raise ConfigError(f"Export writes Parquet: give a file name ending in .parquet, not {path}.")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        rows = 0
        try:
            with pq.ParquetWriter(partial, schema) as writer:
                for batch in self.store.iter_items(batch_size=EXPORT_BATCH, with_vector=True):
                    writer.write_table(_items_to_table(batch, schema, dim))
                    rows += len(batch)
                    if progress:
                        progress(len(batch))
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return rows

    def import_(self, path: str, progress: Progress | None = None) -> tuple[int, int]:
        """Restore a Parquet export without re-embedding; returns (imported, already present)."""
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(Path(path).expanduser())
        except FileNotFoundError as exc:
            raise ConfigError(f"No such file: {path}") from exc
        except Exception as exc:  # pyarrow raises several types for unreadable files
            raise ConfigError(f"Cannot read {path} as Parquet: {exc}") from exc
        names = set(parquet.schema_arrow.names)
        missing = {"id", "vector", "created_at"} - names
        if missing:
            raise ConfigError(
                f"{path} is not a lookalike export: missing columns {', '.join(sorted(missing))}."
            )
        meta = {k.decode(): v.decode() for k, v in (parquet.schema_arrow.metadata or {}).items()}
        vector_type = parquet.schema_arrow.field("vector").type
        dim = int(meta.get("lookalike.dim") or getattr(vector_type, "list_size", 0) or 0)
        if dim <= 0:
            raise ConfigError(f"{path}: cannot tell the vector size.")
        index = json.loads(meta.get("lookalike.index", "{}")) or {}
        index_type = str(index.get("type", IndexType.FLAT))
        if index_type not in {i.value for i in self.store.supported_indexes}:
            index_type, index["params"] = IndexType.FLAT, {}
        self.store.ensure(
            dim, index=index_type, index_params=index.get("params"), model=meta.get("lookalike.model", "")
        )
        imported = already = 0
        for batch in parquet.iter_batches(batch_size=EXPORT_BATCH):
            items = _table_to_items(batch.to_pydict(), dim)
            present = self.store.existing_ids([item.id for item in items])
            fresh = [item for item in items if item.id not in present]
            imported += self.store.insert(fresh)
            already += len(items) - len(fresh)
            if progress:
                progress(len(items))
        if imported:
            self.store.flush()
        return imported, already


def _items_to_table(items: Sequence[Item], schema: Any, dim: int) -> Any:
    import pyarrow as pa

    vectors = np.stack([item.vector for item in items if item.vector is not None]).astype(np.float32)
    columns: dict[str, Any] = {
        name: [getattr(item, name) for item in items] for name in schema.names if name != "vector"
    }
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
    return pa.table({name: columns[name] for name in schema.names}, schema=schema)


def _table_to_items(columns: dict[str, list[Any]], dim: int) -> list[Item]:
    items = []
    for i, item_id in enumerate(columns["id"]):
        vector = np.asarray(columns["vector"][i], dtype=np.float32)
        if vector.shape != (dim,):
            raise LookalikeError(f"Row with id {item_id} has a vector of size {vector.size}, expected {dim}.")

        def text(name: str, index: int = i) -> str:
            values = columns.get(name)
            return str(values[index] or "") if values else ""

        def number(name: str, index: int = i) -> int:
            values = columns.get(name)
            return int(values[index] or 0) if values else 0

        items.append(
            Item(
                id=int(item_id),
                sha256=text("sha256"),
                item_id=text("item_id"),
                name=text("name"),
                source=text("source"),
                created_at=number("created_at"),
                uri=text("uri"),
                width=number("width"),
                height=number("height"),
                vector=vector,
            )
        )
    return items
