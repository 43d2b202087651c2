"""Milvus Lite's state read from its own files, without starting it: what a process that only reads needs.

Opening a Milvus Lite collection replays its write-ahead log and reads every segment file into
memory (``milvus_lite/engine/recovery.py``, ``Collection.__init__``): seconds at 100K rows, for a
command that reads the read index only. What the read index has to be checked against is small and
on disk: the next sequence number (the manifest's ``current_seq`` plus one, when the log is empty),
the partitions (the manifest's), and the collection's schema and properties (``schema.json``).

These files are trusted only where they prove the state without Milvus Lite's recovery: the version
of Milvus Lite whose format was checked, the default database, no alias, a manifest in the format
known and readable at the first try, no write-ahead log file at all (a clean close flushes and
deletes it; one left by a crash holds writes the manifest does not count). Anything else answers
None, and the store opens Milvus Lite as before.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = {"3.2.2": (2, 2)}
"""Milvus Lite versions whose files were read and checked: (manifest format, schema format)."""
_WAL = re.compile(r"^wal_(data|delta)_(\d+)\.arrow$")


@dataclass(frozen=True)
class LiteFiles:
    """One collection's state as its files hold it."""

    generation: int
    """The sequence number Milvus Lite gives the next write (``Collection._next_seq`` once opened)."""
    partitions: tuple[str, ...]
    description: dict[str, Any]
    """``fields`` (name, ``params``) and ``properties``, as ``describe_collection`` gives them."""


def _milvus_lite_version() -> str:
    try:
        return importlib.metadata.version("milvus-lite")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _json(path: Path) -> Any:
    if not path.is_file():  # absent, or a FIFO or device put there: reading it could hang
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def read(db: Path, collection: str) -> LiteFiles | None:
    """The collection's state from its files, or None wherever they cannot prove it alone."""
    formats = FORMATS.get(_milvus_lite_version())
    if formats is None:
        return None
    manifest_format, schema_format = formats
    aliases = db / "aliases.json"
    if aliases.exists():
        names = _json(aliases)
        if not isinstance(names, dict) or collection in names:
            return None  # a name that is an alias, or aliases that cannot be read
    folder = db / "collections" / collection
    wal = folder / "wal"
    try:
        if any(_WAL.match(name) for name in os.listdir(wal)):
            return None  # writes the manifest does not count yet
    except FileNotFoundError:
        pass
    except OSError:
        return None
    if (folder / "manifest.json.tmp").exists() or (folder / "schema.json.tmp").exists():
        return None  # a save that stopped half-way: Milvus Lite's own recovery decides
    manifest, schema = _json(folder / "manifest.json"), _json(folder / "schema.json")
    if not isinstance(manifest, dict) or not isinstance(schema, dict):
        return None
    try:
        if manifest["manifest_format_version"] != manifest_format:
            return None
        if schema["schema_format_version"] != schema_format or schema["collection_name"] != collection:
            return None
        seq = manifest["current_seq"]
        partitions = manifest["partitions"]
        properties = schema.get("properties", {})
        fields = [_field(f) for f in schema["fields"]]
    except (KeyError, TypeError, ValueError):
        return None
    if (
        type(seq) is not int
        or seq < 0
        or not isinstance(partitions, dict)
        or not isinstance(properties, dict)
    ):
        return None
    names = sorted(str(name) for name in partitions)
    return LiteFiles(seq + 1, tuple(names), {"fields": fields, "properties": dict(properties)})


def _field(data: Any) -> dict[str, Any]:
    params = {key: data[key] for key in ("dim", "max_length", "max_capacity") if data.get(key) is not None}
    return {"name": str(data["name"]), "params": params}
