"""Backup: export to Parquet, import it back, and migrate a collection to another Milvus."""

from __future__ import annotations

from collections.abc import Callable

from lookalike.errors import ConfigError
from lookalike.usecases.context import Context

Progress = Callable[[int], None]


def export(ctx: Context, path: str, progress: Progress | None = None) -> int:
    """Write every item and its vector to a Parquet file; returns the row count."""
    from lookalike.store.backup import export_parquet

    return export_parquet(ctx.store, path, progress)


def import_(ctx: Context, path: str, progress: Progress | None = None) -> tuple[int, int]:
    """Restore a Parquet export without re-embedding; returns (imported, already present).

    Raises:
        ConfigError: the file is not a lookalike export (nothing written), or some of its rows
            could not be stored as they are (the others are imported; the message counts them by reason).
    """
    from lookalike.store.backup import import_parquet

    return import_parquet(ctx.store, path, progress)


def migrate(
    ctx: Context,
    target_uri: str,
    target_collection: str | None = None,
    progress: Progress | None = None,
    *,
    bulk_dir: str | None = None,
) -> tuple[int, int]:
    """Copy this collection to another Milvus (e.g. Lite → a server); returns (copied, already there).

    With ``bulk_dir`` the copy goes through Parquet files there and the server's bulk import
    (a new collection only; the server must be able to read the folder).
    """
    from lookalike.store.backup import bulk_copy, copy_collection

    target = ctx.open_store(target_uri, target_collection or ctx.settings.collection)
    source = ctx.store
    if target.uri == source.uri and target.collection == source.collection:
        raise ConfigError("migrate needs a different target: another --to database or --to-collection.")
    try:
        if bulk_dir is not None:
            return bulk_copy(source, target, bulk_dir, progress), 0
        return copy_collection(source, target, progress)
    finally:
        target.close()
