"""Ordered upgrades of a collection made by an older lookalike to the current schema version.

Neither a Milvus 2.3 server nor Milvus Lite 3.2 can add a field to a collection, so an upgrade
copies it, inside the same database: a collection ``<name>_upgrading`` is made with the current
schema and the old one's properties, index and partitions; every row is copied into it by id, the
steps of ``STEPS`` from the old version on filling what the old layout lacked; the copy is marked
copied; the old collection is dropped and the copy renamed in its place. A kill at any instant is
finished on the next open: before the mark the copy is made again (writing a row again by its id
changes nothing), after it the drop and the rename are done. One log line says what was upgraded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lookalike.durable import crash_point
from lookalike.errors import ConfigError
from lookalike.store.fields import (
    SCALAR_FIELDS,
    SCHEMA_PROPERTY,
    SCHEMA_VERSION,
    VERSIONS,
    added_in,
    version_of,
)
from lookalike.store.milvus import INDEX_PROPERTY, milvus_errors
from lookalike.store.models import Item
from lookalike.store.rows import to_row

if TYPE_CHECKING:
    from lookalike.store.base import BaseStore

log = logging.getLogger(__name__)

UPGRADING = "lookalike.upgrading"
"""On the copy: "copying" while rows are copied, "copied" once they all are; "" once it is in place."""
COPY_BATCH = 2000


@dataclass(frozen=True)
class Step:
    """What schema version ``version`` added, and how an item read from the version before becomes
    one of it (None: its new fields read as empty, which is what they hold)."""

    version: int
    what: str
    item: Callable[[Item], Item] | None = None


CHANGES: dict[int, Callable[[Item], Item]] = {}
"""How an item read from the version before becomes one of this version, where its new fields must not
read as empty (none so far: every added field's empty value is what an older item holds)."""

STEPS: tuple[Step, ...] = tuple(
    Step(version, f"{what}: {', '.join(added_in(version))}", CHANGES.get(version))
    for version, what in sorted(VERSIONS.items())
)
"""In version order, one per version after the first (``fields.VERSIONS``); the last is ``SCHEMA_VERSION``."""
assert [step.version for step in STEPS] == list(range(2, SCHEMA_VERSION + 1)), "a step per schema version"


def temporary(collection: str) -> str:
    return f"{collection}_upgrading"


def schema_version(store: BaseStore) -> int:
    """The collection's schema version (recorded, else told by its fields)."""
    description = store._describe()
    names = {str(field["name"]) for field in description["fields"]}
    return version_of(names, description.get("properties", {}).get(SCHEMA_PROPERTY))


def finish(store: BaseStore) -> bool:
    """Put in place an upgraded copy whose old collection is already dropped (a kill between the two
    steps); True when the collection exists now."""
    client, copy = store.client, temporary(store.collection)
    with milvus_errors("list collections"):
        if not client.has_collection(copy):
            return False
        properties = dict(client.describe_collection(copy).get("properties", {}))
    if properties.get(UPGRADING) != "copied":
        return False
    _put_in_place(store, copy)
    log.warning("collection %s: finished an upgrade that was stopped after its copy", store.collection)
    return True


def upgrade(store: BaseStore) -> int | None:
    """Bring the collection to ``SCHEMA_VERSION``; returns the version it had (None: it was current).

    Raises:
        ConfigError: the collection was made by a newer lookalike (a later schema version).
    """
    version = schema_version(store)
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"The collection '{store.collection}' has schema version {version}, made by a newer lookalike "
            f"than this one (which knows up to {SCHEMA_VERSION}): upgrade lookalike to use it."
        )
    if version == SCHEMA_VERSION:
        if store._describe().get("properties", {}).get(UPGRADING):  # killed before the mark was cleared
            with milvus_errors("record the upgrade"):
                store.client.alter_collection_properties(store.collection, {UPGRADING: ""})
            store._forget()
        return None
    copy = temporary(store.collection)
    client = store.client
    with milvus_errors("describe the upgrade's copy"):
        exists = client.has_collection(copy)
        marked = (
            dict(client.describe_collection(copy).get("properties", {})).get(UPGRADING) if exists else None
        )
        # A collection of that name that no upgrade is making (no mark, or "" once put in place) and
        # that holds rows is the user's own: an upgrade that dropped it, or copied into it, lost it.
        foreign = exists and marked not in ("copying", "copied") and _rows(client, copy) > 0
    if foreign:
        raise ConfigError(
            f"The collection '{store.collection}' needs an upgrade to schema version {SCHEMA_VERSION}, "
            f"made in a copy named '{copy}'; a collection of that name exists, holds items and is no "
            f"upgrade's copy, so it is left alone: rename or drop it, then open '{store.collection}' again."
        )
    copied = 0
    if marked != "copied":
        copied = _copy(store, copy, version, fresh=not exists)
    crash_point("upgrade.copied")
    with milvus_errors("drop the collection"):
        client.drop_collection(store.collection)
    crash_point("upgrade.dropped")
    _put_in_place(store, copy)
    steps = "; ".join(step.what for step in STEPS if step.version > version)
    log.warning(
        "collection %s: upgraded from schema version %d to %d (%s): %d items copied into the new layout",
        store.collection,
        version,
        SCHEMA_VERSION,
        steps,
        copied,
    )
    return version


def _rows(client: Any, collection: str) -> int:
    return int(client.get_collection_stats(collection).get("row_count", 0) or 0)


def _copy(store: BaseStore, copy: str, version: int, *, fresh: bool) -> int:
    """Make the copy (unless a stopped upgrade made it) and write every row into it; returns the rows."""
    client = store.client
    dim = store.dim()
    properties = {
        str(k): str(v) for k, v in store._describe().get("properties", {}).items() if k != UPGRADING
    }
    index_type, params = store.index()
    if store.is_lite:  # the read index builds the index asked for; Milvus Lite keeps none
        properties[INDEX_PROPERTY] = json.dumps({"type": index_type, "params": params})
    properties |= {SCHEMA_PROPERTY: str(SCHEMA_VERSION), UPGRADING: "copying"}
    with milvus_errors("create the upgrade's copy"):
        if not fresh:
            client.drop_collection(copy)  # a copy that stopped half-way: made again from the start
        if store.is_lite:
            client.create_collection(copy, schema=store._schema(dim))
        else:
            spec = client.prepare_index_params()
            spec.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=params)
            client.create_collection(copy, schema=store._schema(dim), index_params=spec)
        client.alter_collection_properties(copy, properties)
    steps = [step.item for step in STEPS if step.version > version and step.item is not None]
    rows = 0
    for partition in store.partitions():
        with milvus_errors("create a partition of the upgrade's copy"):
            if partition != "_default" and not client.has_partition(copy, partition):
                client.create_partition(copy, partition)
        for _, batch in store._milvus_items(batch_size=COPY_BATCH, with_vector=True, partitions=[partition]):
            for step in steps:
                batch = [step(item) for item in batch]
            crash_point("upgrade.copy")
            with milvus_errors("copy rows into the upgrade's copy"):
                client.insert(copy, [to_row(item, SCALAR_FIELDS) for item in batch], partition_name=partition)
            rows += len(batch)
    with milvus_errors("flush the upgrade's copy"):
        client.flush(copy)
        client.alter_collection_properties(copy, {UPGRADING: "copied"})
    return rows


def _put_in_place(store: BaseStore, copy: str) -> None:
    client = store.client
    with milvus_errors("rename the upgraded collection"):
        client.rename_collection(copy, store.collection)
        crash_point("upgrade.renamed")
        client.alter_collection_properties(store.collection, {UPGRADING: ""})
    store._forget()
