"""Parquet backups of a collection: every field and the vector, restored without re-embedding.

An import checks what it restores as the store's own writes are checked: a file that is not a
lookalike export is refused before anything is written; a row that cannot be stored as it is (a
vector that is not a finite, non-zero embedding of the collection's size, an id outside the
63-bit range, a date out of range, an identity over its byte limit) is left out and counted with
its reason while the others are imported; a vector that is not unit length is normalised.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike import durable
from lookalike.errors import ConfigError, LookalikeError
from lookalike.store.models import IndexType, Item
from lookalike.store.partitions import MAX_TIME, MIN_TIME
from lookalike.store.protocol import Store
from lookalike.store.rows import (
    IDENTITY_FIELDS,
    VARCHAR_BYTES,
    arrow_schema,
    from_arrow,
    identity_problem,
    to_arrow,
)
from lookalike.store.server import ServerStore
from lookalike.store.window import Window

MAX_DIM = 32_768  # Milvus' largest FLOAT_VECTOR dimension

Progress = Callable[[int], None]
EXPORT_BATCH = 2000
MAX_ID = 2**63 - 1
NORM_RANGE = (1e-6, 1e6)
"""Lengths a vector may have to be normalised on import: outside it, it is no embedding (1e30 is
an overflow or a unit error, 1e-30 is noise) and the row is left out."""
UNIT_TOLERANCE = 1e-5
"""A vector this close to unit length is kept bit for bit (an export round-trips exactly)."""
SHOWN_IDS = 5


def export_parquet(store: Store, path: str, progress: Progress | None = None) -> int:
    """Write every item and its vector to a Parquet file; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = store.dim()
    index_type, index_params = store.index()
    schema = arrow_schema(
        pa.list_(pa.float32(), dim),
        metadata={
            "lookalike.dim": str(dim),
            "lookalike.model": store.model(),
            "lookalike.index": json.dumps({"type": index_type, "params": index_params}),
        },
    )
    target = Path(path).expanduser()
    if target.suffix.lower() != ".parquet":
        raise ConfigError(f"Export writes Parquet: give a file name ending in .parquet, not {path}.")
    rows = 0
    with durable.replacing(target, step="export") as partial, pq.ParquetWriter(partial, schema) as writer:
        for batch in store.iter_items(batch_size=EXPORT_BATCH, with_vector=True):
            writer.write_table(_items_to_table(batch, schema, dim))
            rows += len(batch)
            if progress:
                progress(len(batch))
    return rows


def import_parquet(store: Store, path: str, progress: Progress | None = None) -> tuple[int, int]:
    """Restore a Parquet export without re-embedding; returns (imported, already present)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(Path(path).expanduser())
    except FileNotFoundError as exc:
        raise ConfigError(f"No such file: {path}") from exc
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise ConfigError(f"Cannot read {path} as Parquet: {exc}") from exc
    dim, meta = _export_layout(parquet.schema_arrow, path)
    index = _json_object(meta.get("lookalike.index"))
    index_type = str(index.get("type", IndexType.FLAT))
    if index_type not in {i.value for i in store.supported_indexes}:
        index_type, index["params"] = IndexType.FLAT, {}
    if store.exists() and store.dim() != dim:
        raise ConfigError(
            f"{path} holds {dim}-dimensional vectors, but the collection '{store.collection}' holds "
            f"{store.dim()}-dimensional ones: import it into another --collection."
        )
    store.ensure(
        dim, index=index_type, index_params=index.get("params"), model=meta.get("lookalike.model", "")
    )
    imported = already = 0
    left_out: Counter[str] = Counter()
    examples: defaultdict[str, list[str]] = defaultdict(list)
    for batch in parquet.iter_batches(batch_size=EXPORT_BATCH):
        items, refused = _table_to_items(batch.to_pydict(), dim)
        for reason, shown in refused:
            left_out[reason] += 1
            if len(examples[reason]) < SHOWN_IDS:
                examples[reason].append(shown)
        present = store.existing_ids([item.id for item in items])
        fresh = [item for item in items if item.id not in present]
        imported += store.insert(fresh)
        already += len(items) - len(fresh)
        if progress:
            progress(batch.num_rows)
    if imported:
        store.flush()
    if left_out:
        reasons = "; ".join(
            f"{count} {reason} (ids {', '.join(examples[reason])}{' …' if count > SHOWN_IDS else ''})"
            for reason, count in left_out.most_common()
        )
        raise ConfigError(
            f"Imported {imported} items ({already} were already stored), but {left_out.total()} rows of "
            f"{path} were left out: {reasons}."
        )
    return imported, already


def _export_layout(schema: Any, path: str) -> tuple[int, dict[str, str]]:
    """The vector size and metadata of an export, or a ConfigError when the file is not one."""
    import pyarrow as pa

    missing = {"id", "vector", "created_at"} - set(schema.names)
    if missing:
        raise ConfigError(f"{path} is not a lookalike export: missing columns {', '.join(sorted(missing))}.")
    meta = {
        k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in (schema.metadata or {}).items()
    }
    if not pa.types.is_integer(schema.field("id").type):
        raise ConfigError(
            f"{path} is not a lookalike export: its id column holds {schema.field('id').type}, not integers."
        )
    vector_type = schema.field("vector").type
    listed = pa.types.is_list(vector_type) or pa.types.is_large_list(vector_type)
    if not (listed or pa.types.is_fixed_size_list(vector_type)) or not (
        pa.types.is_floating(vector_type.value_type) or pa.types.is_integer(vector_type.value_type)
    ):
        raise ConfigError(
            f"{path} is not a lookalike export: its vector column holds {vector_type}, not lists of numbers."
        )
    size = getattr(vector_type, "list_size", 0) or 0
    declared = meta.get("lookalike.dim", "").strip()
    if declared and not declared.isdigit():
        raise ConfigError(f"{path}: its lookalike.dim ({declared[:40]!r}) is not a vector size.")
    dim = int(declared or size)
    if dim <= 0:
        raise ConfigError(f"{path}: cannot tell the vector size.")
    if dim > MAX_DIM:
        raise ConfigError(f"{path}: {dim}-dimensional vectors are over Milvus' limit of {MAX_DIM}.")
    if size and size != dim:
        raise ConfigError(f"{path}: its vectors have {size} values but the file says lookalike.dim {dim}.")
    # Every other column lookalike reads must have its export's type: checked before anything is
    # created, so a file of dates as text (or binary uris) is refused whole, with its column named.
    expected = arrow_schema()
    for name in set(schema.names) & set(expected.names) - {"id"}:
        wanted, found = expected.field(name).type, schema.field(name).type
        same_kind = (
            (pa.types.is_integer(wanted) and pa.types.is_integer(found))
            or (pa.types.is_floating(wanted) and (pa.types.is_floating(found) or pa.types.is_integer(found)))
            or (pa.types.is_string(wanted) and _texts(found))
            or (pa.types.is_list(wanted) and _listed(found) and _texts(found.value_type))
            or pa.types.is_null(found)
        )
        if not same_kind:
            raise ConfigError(
                f"{path} is not a lookalike export: its {name} column holds {found}, not {wanted}."
            )
    return dim, meta


def _texts(arrow_type: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _listed(arrow_type: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type))


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}  # an index choice that does not parse: the collection gets the default
    return value if isinstance(value, dict) else {}


def _items_to_table(items: Sequence[Item], schema: Any, dim: int) -> Any:
    return to_arrow(items, schema)


def _table_to_items(columns: dict[str, list[Any]], dim: int) -> tuple[list[Item], list[tuple[str, str]]]:
    """The rows that can be stored (vectors unit length), and (reason, id shown) for each that cannot."""
    refused: list[tuple[str, str]] = []
    sized: list[int] = []
    for row, (raw_id, vector) in enumerate(zip(columns["id"], columns["vector"], strict=True)):
        if raw_id is None or not 0 <= raw_id <= MAX_ID:
            refused.append(("with an id outside 0 .. 2^63-1", "null" if raw_id is None else str(raw_id)))
        elif vector is None or len(vector) != dim:
            refused.append((f"with a vector of the wrong size (not {dim} values)", str(raw_id)))
        else:
            sized.append(row)
    matrix = np.asarray([columns["vector"][row] for row in sized], dtype=np.float64).reshape(len(sized), dim)
    vectors, problems = unit_vectors(matrix)
    kept: list[int] = []  # positions in sized
    for position, (row, problem) in enumerate(zip(sized, problems, strict=True)):
        if problem is None:
            kept.append(position)
        else:
            refused.append((problem, str(columns["id"][row])))
    picked = {
        name: [values[sized[position]] for position in kept]
        for name, values in columns.items()
        if name != "vector"
    }
    items = []
    for item in from_arrow(picked, vectors[kept]):
        problem = _row_problem(item)
        if problem is None:
            items.append(item)
        else:
            refused.append((problem, str(item.id)))
    return items, refused


def unit_vectors(matrix: Any) -> tuple[Any, list[str | None]]:
    """Rows of ``matrix`` scaled to unit length (float32), and why each row that cannot be is not an embedding.

    A row near unit length is kept as it is; NaN, infinity, all zeros and lengths outside
    ``NORM_RANGE`` are problems (their rows of the result are meaningless).
    """
    finite = np.isfinite(matrix).all(axis=1)
    clean = np.where(finite[:, None], matrix, 0.0)
    norms = np.linalg.norm(clean, axis=1)
    problems: list[str | None] = []
    for ok, norm, row in zip(finite, norms, clean, strict=True):
        if not ok:
            problems.append("with NaN or infinite values in the vector")
        elif not row.any():
            problems.append("with an all-zero vector")
        elif not NORM_RANGE[0] <= norm <= NORM_RANGE[1]:
            problems.append(f"with a vector whose length is outside {NORM_RANGE[0]:g} .. {NORM_RANGE[1]:g}")
        else:
            problems.append(None)
    off_unit = np.abs(norms - 1.0) > UNIT_TOLERANCE
    scale = np.where(off_unit & (norms > 0), norms, 1.0)
    return (clean / scale[:, None]).astype(np.float32), problems


def _row_problem(item: Item) -> str | None:
    if not MIN_TIME <= item.created_at < MAX_TIME:
        return "dated outside 1970-01-01 .. 2199-12-31"
    for name in IDENTITY_FIELDS:
        if identity_problem(name, getattr(item, name)) is not None:
            limit = VARCHAR_BYTES[name]
            return f"with a {name} over {limit} bytes, not UTF-8 or holding NUL (an identity is never cut)"
    return None


def copy_collection(source: Store, target: Store, progress: Progress | None = None) -> tuple[int, int]:
    """Copy a collection with its vectors, partitions, index choice and model to another Milvus.

    Resumable: items the target already holds are skipped, so an interrupted copy can be run
    again. Reading the next batch overlaps writing the previous one. Returns (copied, already
    present).
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    source.require()
    dim = source.dim()
    index_type, index_params = source.index()
    if index_type not in {i.value for i in target.supported_indexes}:
        raise ConfigError(
            f"The source collection uses a {index_type} index, which {target.uri} does not support."
        )
    target.ensure(dim, index=index_type, index_params=index_params, model=source.model())
    target.ensure_partitions([name for name in source.partitions() if name != "_default"])
    copied = already = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-copy") as writer:
        writing: Future[int] | None = None
        for batch in source.iter_items(batch_size=EXPORT_BATCH, with_vector=True):
            present = target.existing_ids([item.id for item in batch])
            fresh = [item for item in batch if item.id not in present]
            already += len(batch) - len(fresh)
            if writing is not None:
                copied += writing.result()
            writing = writer.submit(target.insert, fresh)
            if progress:
                progress(len(batch))
        if writing is not None:
            copied += writing.result()
    target.flush()
    return copied, already


def bulk_copy(
    source: Store,
    target: Store,
    folder: str,
    progress: Progress | None = None,
    wait_s: float = 600.0,
) -> int:
    """Copy a collection into a new collection on a server through Parquet files and bulk import.

    One Parquet file per monthly partition is written into ``folder`` (which the server must
    be able to read), and the server imports each itself: no row-by-row inserts. Returns the
    rows imported once they are all visible.
    """
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    source.require()
    if not isinstance(target, ServerStore):
        raise ConfigError("--bulk-dir needs a Milvus server as the target (--to http://host:19530).")
    if target.exists() and target.count() > 0:
        raise ConfigError(
            f"The collection '{target.collection}' on {target.uri} is not empty, and a bulk import does "
            "not check ids: bulk-copy into a new collection, or migrate without --bulk-dir."
        )
    dim = source.dim()
    index_type, index_params = source.index()
    target.ensure(dim, index=index_type, index_params=index_params, model=source.model())
    out = Path(folder).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    schema = arrow_schema(pa.list_(pa.float32()))  # a plain list column, as bulk import reads it
    expected = 0
    for partition in source.partition_stats():
        if not partition.rows or partition.start is None:
            continue
        path = out / f"{target.collection}-{partition.name}.parquet"
        rows = 0
        with pq.ParquetWriter(path, schema) as writer:
            month = Window(since=partition.start, until=partition.end)
            for batch in source.iter_items(batch_size=EXPORT_BATCH, with_vector=True, window=month):
                writer.write_table(_items_to_table(batch, schema, dim))
                rows += len(batch)
                if progress:
                    progress(len(batch))
        if rows:
            expected += target.bulk_import([str(path)], partition.name)
    deadline = time.monotonic() + wait_s
    while target.count() < expected:  # imported segments become searchable once indexed
        if time.monotonic() > deadline:
            raise LookalikeError(f"{expected} rows were imported but only {target.count()} are visible yet.")
        time.sleep(1.0)
    return expected
