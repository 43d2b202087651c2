"""The one converter between ``Item`` and what stores hold: Milvus rows and Arrow tables.

Every value is normalised once, on the way in (``normalise``), so Milvus, the read index,
exports and bulk files all hold the same bytes. VARCHAR limits are in UTF-8 bytes (what a Milvus
server enforces). An identity field (``source``, ``item_id``, the hashes) over its limit is refused,
never cut: two sellers whose names share their first 256 bytes must stay two sources. A display
field (``name``, ``uri``, ``label``, ``box``) over its limit is cut on a character boundary, and
the cut is logged. ``created_at`` must lie in the range partitions can name.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import ConfigError
from lookalike.store.fields import (
    BY_NAME,
    DISPLAY_FIELDS,
    FIELDS,
    IDENTITY_FIELDS,
    KEY_FIELDS,
    VARCHAR_BYTES,
    Field,
    Kind,
)
from lookalike.store.models import Item
from lookalike.store.partitions import check_time

log = logging.getLogger(__name__)


def identity_problem(name: str, value: str, label: str | None = None) -> str | None:
    """Why ``value`` cannot be stored whole as the identity field ``name``; None when it can.

    ``label`` is what the caller calls the field (``--source``); the field's name by default.
    """
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{label or name} is not valid UTF-8 text (it holds an undecodable character)"
    if "\x00" in value:  # C strings end there: a filter, a log line or a shop's backend would cut it
        return f"{label or name} holds a NUL character"
    limit = VARCHAR_BYTES[name]
    if size > limit:
        return (
            f"{label or name} is {size} bytes long in UTF-8, over the {limit}-byte limit of a stored {name} "
            "(an identity is never cut)"
        )
    return None


def check_identity(name: str, value: str, label: str | None = None) -> None:
    """Refuse an identity value that cannot be stored whole.

    Raises:
        ConfigError: the value is over its byte limit or not valid UTF-8; the message says which.
    """
    problem = identity_problem(name, value, label)
    if problem is not None:
        raise ConfigError(problem + ".")


def cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def normalise(item: Item) -> Item:
    """The item as every store holds it: identities checked, display VARCHARs cut by bytes, created_at checked.

    Raises:
        ConfigError: created_at outside 1970 .. 2199, or an identity field over its byte limit.
    """
    check_time(item.created_at)
    for name in IDENTITY_FIELDS:
        check_identity(name, getattr(item, name), f"The {name} of item {item.id}")
    changes: dict[str, Any] = {}
    cut: list[str] = []
    left_out: list[str] = []
    for names, fitting, changed in ((DISPLAY_FIELDS, fit, cut), (KEY_FIELDS, keep_whole, left_out)):
        for name in names:
            value = getattr(item, name)
            if isinstance(value, list):  # a list of texts given as a list: held as a tuple
                value = changes[name] = tuple(value)
            fitted = fitting(BY_NAME[name], value)
            if fitted != value:
                changes[name] = fitted
                changed.append(name)
    for changed, what in (
        (cut, "cut to the limit of the stored field"),
        (left_out, "over the limit left out"),
    ):
        if changed:
            log.warning(
                "item %d (%s): %s %s",
                item.id,
                item.item_id,
                ", ".join(f"{name} ({_limit(BY_NAME[name])})" for name in changed),
                what,
            )
    return dataclasses.replace(item, **changes) if changes else item


def keep_whole(spec: Field, value: Any) -> Any:
    """A filter key within its field's limits: a text over its bytes left out (empty), a list's texts over
    their bytes left out and the rest kept to its length. Never cut: two categories that differ only
    past the limit would match each other's filters (a filter value is not cut either: one over the
    limit matches nothing)."""
    if spec.kind is Kind.TEXTS:
        fits = [
            str(text) for text in value if len(str(text).encode("utf-8", "surrogatepass")) <= spec.max_bytes
        ]
        return tuple(dict.fromkeys(fits))[: spec.max_items]
    return value if len(value.encode("utf-8", "surrogatepass")) <= spec.max_bytes else ""


def fit(spec: Field, value: Any) -> Any:
    """A display value cut to its field's limits: a text to its bytes, a list of texts to its length and
    each text to its bytes (a filter value is fitted the same way, so that it finds what was stored)."""
    if spec.kind is Kind.TEXTS:
        return tuple(cut_utf8(str(text), spec.max_bytes) for text in value[: spec.max_items])
    if len(value.encode("utf-8", "surrogatepass")) > spec.max_bytes:
        return cut_utf8(value, spec.max_bytes)
    return value


def _limit(spec: Field) -> str:
    if spec.kind is Kind.TEXTS:
        return f"{spec.max_items} texts of {spec.max_bytes} bytes"
    return f"{spec.max_bytes} bytes"


def to_row(item: Item, fields: Iterable[str]) -> dict[str, Any]:
    """A Milvus row of a normalised item, holding only the collection's ``fields`` and the vector."""
    row = {name: getattr(item, name) for name in fields}
    for name in fields:
        if isinstance(row[name], tuple):  # a list of texts: Milvus takes a list
            row[name] = list(row[name])
    row["vector"] = item.vector
    return row


def from_row(row: Mapping[str, Any], with_vector: bool = False) -> Item:
    """An item from a Milvus query or search row (an older collection may lack the newer fields)."""
    entity = row.get("entity", row)
    vector = None
    if with_vector and entity.get("vector") is not None:
        vector = np.asarray(entity["vector"], dtype=np.float32)
    values = {spec.name: _value(spec, entity.get(spec.name, row.get(spec.name))) for spec in FIELDS}
    return Item(**values, vector=vector)


def _value(spec: Field, value: Any) -> Any:
    """A stored value as ``Item`` holds it; a missing one (None) as the field's empty value."""
    kind = spec.kind
    if kind is Kind.TEXT:
        return str(value or "")
    if kind is Kind.INT64 or kind is Kind.INT32:
        return int(value or 0)
    if kind is Kind.FLOAT:
        return _finite(value)
    return tuple(str(text) for text in value) if value else ()


def _finite(value: Any) -> float:
    # A score that is not a number (a foreign write, an old import) reads as 0: JSON has no NaN.
    number = float(value or 0.0)
    return number if math.isfinite(number) else 0.0


def arrow_schema(vector: Any = None, metadata: dict[str, str] | None = None) -> Any:
    """The Arrow schema of stored items; ``vector`` (an Arrow list type) adds the vector after the id."""
    import pyarrow as pa

    fields = [(spec.name, spec.arrow()) for spec in FIELDS]
    if vector is not None:
        fields.insert(1, ("vector", vector))
    return pa.schema(fields, metadata=metadata)


def to_arrow(items: Sequence[Item], schema: Any) -> Any:
    """An Arrow table of items in ``schema`` (with a vector column if the schema has one)."""
    import pyarrow as pa

    columns: dict[str, Any] = {
        name: [getattr(item, name) for item in items] for name in schema.names if name != "vector"
    }
    if "vector" in schema.names:
        vectors = np.stack([np.asarray(item.vector, dtype=np.float32) for item in items])
        flat = pa.array(vectors.reshape(-1))
        dim = vectors.shape[1]
        if isinstance(schema.field("vector").type, pa.FixedSizeListType):
            columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, dim)
        else:  # Milvus' bulk import reads a plain list column
            offsets = pa.array(np.arange(0, len(flat) + 1, dim, dtype=np.int32))
            columns["vector"] = pa.ListArray.from_arrays(offsets, flat)
    return pa.table({name: columns[name] for name in schema.names}, schema=schema)


def from_arrow(columns: Mapping[str, Sequence[Any]], vectors: Any = None) -> list[Item]:
    """Items from Arrow columns (``to_pydict()``); ``vectors``: a matrix aligned with the rows.

    Columns an older export lacks read as empty; ``vectors`` defaults to a ``vector`` column.
    Each row is built in one expression written out from the field table (``_builder``): a
    search's hits are converted here, and a call per value cost more than the search itself.
    """
    count = len(columns["id"])
    if vectors is None and "vector" in columns:
        vectors = [np.asarray(v, dtype=np.float32) for v in columns["vector"]]
    none = [None] * count
    given = (columns.get(spec.name) for spec in FIELDS)
    rows = zip(
        *(values if values is not None else none for values in given),
        vectors if vectors is not None else none,
        strict=True,
    )
    return _build(rows)


def _builder() -> Callable[[Iterable[tuple[Any, ...]]], list[Item]]:
    """``from_arrow``'s loop, written out from the field table once: one expression per row, each
    value converted inline as ``_value`` converts it (a call per value doubled a search's cost)."""
    inline = {
        Kind.TEXT: 'str({0} or "")',
        Kind.INT64: "int({0} or 0)",
        Kind.INT32: "int({0} or 0)",
        Kind.FLOAT: "_finite({0})",
        Kind.TEXTS: "(tuple({0}) if {0} else ())",  # Arrow's texts are str already
    }
    names = [f"v{position}" for position in range(len(FIELDS))]
    values = ", ".join(
        f"{spec.name!r}: {inline[spec.kind].format(name)}" for spec, name in zip(FIELDS, names, strict=True)
    )
    # Item's __init__ sets each of its 16 attributes through object.__setattr__ (a frozen
    # dataclass): most of a batch's cost. The row's attributes are given whole instead, which is all
    # that __init__ does for Item (no defaults to compute, no __post_init__: checked below).
    assert not hasattr(Item, "__post_init__"), "from_arrow would skip Item.__post_init__"
    source = (
        "def build(rows):\n"
        "    built = []\n"
        "    keep = built.append\n"
        f"    for {', '.join(names)}, vector in rows:\n"
        "        item = _new(Item)\n"
        f"        _set(item, '__dict__', {{{values}, 'vector': vector}})\n"
        "        keep(item)\n"
        "    return built\n"
    )
    scope: dict[str, Any] = {
        "Item": Item,
        "_finite": _finite,
        "_new": object.__new__,
        "_set": object.__setattr__,
    }
    exec(compile(source, "<lookalike.store.rows.from_arrow>", "exec"), scope)  # noqa: S102 - the table's own names
    built: Callable[[Iterable[tuple[Any, ...]]], list[Item]] = scope["build"]
    return built


_build = _builder()


_NUMPY = {
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "float": np.float32,
    "double": np.float64,
}
"""Arrow's names of the number types a ``ColumnReader`` reads from their buffers."""


class ColumnReader:
    """Reads a few rows' values out of an Arrow table's columns without Arrow's take.

    A search turns about ten rows into items; ``table.take(...).to_pydict()`` cost 50-120 µs of that
    (a kernel call per column), more than the graph walk. Here each plain column (one chunk, no
    nulls: what the read index writes) is a zero-copy numpy view of its buffers, and a value is read
    straight from them; any other column goes through Arrow as before.
    """

    def __init__(self, table: Any, names: Sequence[str]) -> None:
        import pyarrow as pa

        self._table = table
        self._strings: dict[str, tuple[npt.NDArray[np.int32], memoryview]] = {}
        self._lists: dict[str, tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], memoryview]] = {}
        self._numbers: dict[str, npt.NDArray[Any]] = {}
        self._other: list[str] = []
        self.names = [name for name in names if name in table.column_names]
        for name in self.names:
            column = table.column(name)
            array = column.chunk(0) if column.num_chunks == 1 else None
            if array is None or array.null_count:
                self._other.append(name)
            elif pa.types.is_string(array.type):
                _, offsets, data = array.buffers()
                start = array.offset
                positions = np.frombuffer(offsets, dtype=np.int32)[start : start + len(array) + 1]
                self._strings[name] = (positions, memoryview(data) if data is not None else memoryview(b""))
            elif pa.types.is_list(array.type) and pa.types.is_string(array.type.value_type):
                texts = array.values  # the texts of every row, whatever the list array's offset
                if texts.null_count:
                    self._other.append(name)
                    continue
                _, lists = array.buffers()[:2]
                positions = np.frombuffer(lists, dtype=np.int32)[array.offset : array.offset + len(array) + 1]
                _, offsets, data = texts.buffers()
                text_positions = np.frombuffer(offsets, dtype=np.int32)[texts.offset :]
                self._lists[name] = (
                    positions,
                    text_positions,
                    memoryview(data) if data is not None else memoryview(b""),
                )
            elif str(array.type) in _NUMPY:
                values = np.frombuffer(array.buffers()[1], dtype=_NUMPY[str(array.type)])
                self._numbers[name] = values[array.offset : array.offset + len(array)]
            else:
                self._other.append(name)

    @property
    def list_names(self) -> list[str]:
        """The list columns read from their buffers (``lists``)."""
        return list(self._lists)

    def lists(self, rows: npt.NDArray[np.int64]) -> dict[str, list[Any]]:
        """These rows' lists of texts, each a tuple (the empty one shared): a batch of many rows makes
        no list per row, as Arrow's ``to_pydict`` does (20K short-lived lists cost a full garbage
        collection, and doubled a pass over the collection)."""
        out: dict[str, list[Any]] = {}
        after = rows + 1
        for name, (positions, text_positions, data) in self._lists.items():
            out[name] = [
                tuple(
                    str(data[text_positions[i] : text_positions[i + 1]], "utf-8") for i in range(start, end)
                )
                if end > start
                else ()
                for start, end in zip(positions[rows].tolist(), positions[after].tolist(), strict=True)
            ]
        return out

    def read(self, rows: npt.NDArray[np.int64]) -> dict[str, list[Any]]:
        """These rows' values per column, as ``table.take(rows).to_pydict()`` gives them."""
        out: dict[str, list[Any]] = {}
        after = rows + 1
        for name, (positions, data) in self._strings.items():
            if not len(data):  # every value of the column is empty (no names, no crops): nothing to read
                out[name] = [""] * len(rows)
                continue
            starts, ends = positions[rows].tolist(), positions[after].tolist()
            out[name] = [str(data[start:end], "utf-8") for start, end in zip(starts, ends, strict=True)]
        for name, values in self._numbers.items():
            out[name] = values[rows].tolist()
        out.update(self.lists(rows))
        if self._other:
            import pyarrow as pa

            taken = self._table.select(self._other).take(pa.array(rows, type=pa.int64()))
            for name, values in taken.to_pydict().items():
                listed = pa.types.is_list(taken.schema.field(name).type)
                out[name] = [tuple(v) if v else () for v in values] if listed else values
        return {name: out[name] for name in self.names}
