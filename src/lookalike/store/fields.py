"""The one table of the item's fields, and the schema versions of a collection.

Each row says what a field is everywhere it appears: its Python value, its Milvus and Arrow types,
its limit in UTF-8 bytes, whether it is an identity (refused whole when over its limit) or shown to
people (cut to its limit), whether a catalog column fills it (and ``--sync`` updates it), and the
schema version that added it. The Milvus schema (``store.base``), the Arrow schema and the row
converters (``store.rows``), the API models (``api.schemas``) and a hit's JSON (``Hit.to_dict``) are
derived from it; ``Item`` is checked against it when its module loads. A new field is a row here,
with ``SCHEMA_VERSION`` raised and a step in ``store.upgrade`` naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """How a field is stored."""

    INT64 = "int64"
    INT32 = "int32"
    FLOAT = "float"
    TEXT = "text"
    """VARCHAR in Milvus, string in Arrow."""
    TEXTS = "texts"
    """ARRAY of VARCHAR in Milvus, list of strings in Arrow: each text limited to ``max_bytes``."""


class Role(StrEnum):
    IDENTITY = "identity"
    """Names an item or a picture: refused whole when it does not fit, never cut."""
    DISPLAY = "display"
    """Shown to people: cut to its limit on a character boundary, with a warning."""
    KEY = "key"
    """Named by filters (a category, a tag): never cut, since two values that differ only past the limit
    would then match each other's filters; a value over its limit is left out, with a warning."""
    NUMBER = "number"


@dataclass(frozen=True)
class Filter:
    """How searches filter by a field: ``--FLAG`` on the command line (repeatable: any of the values),
    ``PARAM`` in the API and the page's address, a picker on the search page."""

    flag: str
    """The command line's word: ``category`` gives ``--category``."""
    param: str
    """The API's list field and the page's parameter: ``categories``."""
    help: str
    """Completes "Only items ...": ``of this category``."""

    @property
    def option(self) -> str:
        return f"--{self.flag}"


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    role: Role = Role.NUMBER
    max_bytes: int = 0
    """A text's limit in UTF-8 bytes (each text of a list's)."""
    max_items: int = 0
    """A list's most texts (more are left out, with a warning)."""
    since: int = 1
    """The schema version that added the field (an older collection lacks it until upgraded)."""
    catalog: bool = False
    """Filled from the catalog column of its name, and updated from it by ``index --sync``."""
    in_hit: bool = True
    """Part of a search hit's JSON (``Hit.to_dict``, the API's ``HitOut``)."""
    hit_value: Callable[[Any], Any] | None = None
    """How a hit shows the value (None: as it is)."""
    filter: Filter | None = None
    """Searches can keep the items with one of some values (a text), or holding one of them (a list of
    texts): the command line, the API, the page and both stores' filters are derived from this."""

    @property
    def python(self) -> type:
        return {
            Kind.INT64: int,
            Kind.INT32: int,
            Kind.FLOAT: float,
            Kind.TEXT: str,
            Kind.TEXTS: list,
        }[self.kind]

    def empty(self) -> Any:
        """The value a row without this field reads as (an older collection, an older export)."""
        return {Kind.INT64: 0, Kind.INT32: 0, Kind.FLOAT: 0.0, Kind.TEXT: "", Kind.TEXTS: ()}[self.kind]

    def arrow(self) -> Any:
        import pyarrow as pa

        return {
            Kind.INT64: pa.int64(),
            Kind.INT32: pa.int32(),
            Kind.FLOAT: pa.float32(),
            Kind.TEXT: pa.string(),
            Kind.TEXTS: pa.list_(pa.string()),
        }[self.kind]


def _or_none(value: Any) -> Any:
    return value or None


FIELDS: tuple[Field, ...] = (
    Field("id", Kind.INT64),
    Field("sha256", Kind.TEXT, Role.IDENTITY, 64, in_hit=False),
    Field("item_id", Kind.TEXT, Role.IDENTITY, 1024),
    Field("name", Kind.TEXT, Role.DISPLAY, 2048, catalog=True),
    Field("source", Kind.TEXT, Role.IDENTITY, 256),
    Field("created_at", Kind.INT64),
    Field("uri", Kind.TEXT, Role.DISPLAY, 4096),
    Field("width", Kind.INT32),
    Field("height", Kind.INT32),
    Field("parent_sha256", Kind.TEXT, Role.IDENTITY, 64, since=2, hit_value=_or_none),
    Field("box", Kind.TEXT, Role.DISPLAY, 64, since=2),
    Field("label", Kind.TEXT, Role.DISPLAY, 256, since=2, hit_value=_or_none),
    Field("det_score", Kind.FLOAT, since=2),
    Field(
        "category",
        Kind.TEXT,
        Role.KEY,
        256,
        since=3,
        catalog=True,
        filter=Filter("category", "categories", "of this category"),
    ),
    Field(
        "tags",
        Kind.TEXTS,
        Role.KEY,
        128,
        max_items=32,
        since=3,
        catalog=True,
        filter=Filter("tag", "tags", "with this tag"),
    ),
)
"""Every scalar field of an item, in the order collections and exports hold them (the vector
comes after ``id``)."""

VERSIONS = {2: "detected crops", 3: "catalog fields"}
"""What each schema version after the first added (its fields are the rows whose ``since`` it is)."""
SCHEMA_VERSION = max(VERSIONS)
"""1: the first layout; 2: detected crops (parent_sha256, box, label, det_score); 3: category, tags."""
SCHEMA_PROPERTY = "lookalike.schema"
"""The collection property that records its schema version (absent before version 3: told by its fields)."""

BY_NAME = {field.name: field for field in FIELDS}
SCALAR_FIELDS = tuple(field.name for field in FIELDS)
TEXT_FIELDS = tuple(field for field in FIELDS if field.kind in (Kind.TEXT, Kind.TEXTS))
VARCHAR_BYTES = {field.name: field.max_bytes for field in TEXT_FIELDS}
"""The text fields and their limits in UTF-8 bytes (each text of a list's)."""
IDENTITY_FIELDS = tuple(field.name for field in FIELDS if field.role is Role.IDENTITY)
DISPLAY_FIELDS = tuple(field.name for field in FIELDS if field.role is Role.DISPLAY)
KEY_FIELDS = tuple(field.name for field in FIELDS if field.role is Role.KEY)
FILTER_FIELDS = tuple(field for field in FIELDS if field.filter is not None)
"""The fields searches filter by value, in the table's order (besides source, item id and the date,
which every read takes)."""
FILTERS = {field.name: field.filter for field in FILTER_FIELDS if field.filter is not None}
"""Each filter field's filter, by the field's name."""
BY_PARAM = {spec.param: BY_NAME[name] for name, spec in FILTERS.items()}
"""The filter fields by their parameter's name (``categories``: the category field)."""
CATALOG_FIELDS = tuple(field.name for field in FIELDS if field.catalog)
"""Fields a catalog column fills, besides the identities and the date, which ingest reads itself."""


def cell_text(raw: Any) -> str:
    """A catalog cell as text: empty when missing (None, a float NaN), a number as written (0 is "0",
    never empty), bytes as UTF-8."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return ""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


_CONTROLS = re.compile(r"[\x00-\x1f]+")


def _filterable(text: str) -> str:
    """A catalog text as a filter can name it: stripped, control characters (a line break, a tab, NUL)
    made one space each run, since ``--category``/``--tag`` and the API refuse them in a filter."""
    return _CONTROLS.sub(" ", text).strip()


def catalog_value(spec: Field, raw: Any) -> Any:
    """A catalog cell as the field holds it: a text stripped, its control characters made spaces; a
    list of texts from a list (Parquet) or a text separated by vertical bars (``red|summer``), each
    cleaned so, empty and repeated ones left out.
    """
    if spec.kind is Kind.TEXTS:
        parts = raw if isinstance(raw, list | tuple) else cell_text(raw).split("|")
        return tuple(dict.fromkeys(text for text in (_filterable(cell_text(p)) for p in parts) if text))
    if spec.kind is Kind.TEXT:
        return _filterable(cell_text(raw))
    raise ValueError(f"the catalog does not fill the {spec.kind} field {spec.name}")


def added_in(version: int) -> tuple[str, ...]:
    """The fields that schema version added."""
    return tuple(field.name for field in FIELDS if field.since == version)


def version_of(field_names: set[str], recorded: str | None) -> int:
    """A collection's schema version: the one it records, else the latest whose fields it all has (a
    collection made before versions were recorded, or one read between its creation and the property
    that records its version)."""
    if recorded and recorded.strip().isdigit():
        return int(recorded)
    version = 1
    while version < SCHEMA_VERSION and set(added_in(version + 1)) <= field_names:
        version += 1
    return version


def _check_filters() -> None:
    for field in FILTER_FIELDS:
        # A filtered value must be stored whole (two values differing past a limit would match each
        # other's filter) and be texts, which both stores' filters compare.
        if field.role is not Role.KEY or field.kind not in (Kind.TEXT, Kind.TEXTS):
            raise TypeError(f"the filter field {field.name} must be a KEY field of texts")


_check_filters()
