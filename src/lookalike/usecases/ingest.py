"""Ingest: index folders, files, catalogs and URLs into the collection; keep uploads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike import durable
from lookalike.store.models import IndexType
from lookalike.usecases import embedding, hashes, items, policies, screening
from lookalike.usecases.context import Context

if TYPE_CHECKING:
    from lookalike.ingest import FetchPolicy, IngestReport
    from lookalike.ingest.objects import ObjectListing
    from lookalike.ingest.sources import Inputs, Listing
    from lookalike.store import Item

Progress = Callable[[int], None]


def index(
    ctx: Context,
    path: str,
    *,
    source: str | None = None,
    index: str = IndexType.HNSW,
    index_params: dict[str, Any] | None = None,
    on_start: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    detect: bool = False,
    sync: bool = False,
) -> IngestReport:
    """Index a folder, an image file or a catalog (local or ``s3://``); returns what was done and skipped.

    With ``detect``, every object the detector finds also becomes an item of its own. With
    ``sync``, the collection mirrors the listing: items no longer listed are deleted, a new
    image replaces the old one, and changed names or dates are updated without re-embedding.
    """
    from lookalike.ingest import open_listing

    ctx.store.validate_index(index)  # before listing (or loading) anything
    listing = open_listing(path, source)
    return ingest(ctx, listing, index, index_params, on_start, progress, detect, sync)


def check_source(source: str | None, label: str = "--source") -> None:
    """Refuse now a source that cannot name items whole (empty, not UTF-8, over its byte limit).

    Raises:
        ConfigError: before a model or a database opens; the message names ``label``.
    """
    from lookalike.ingest.sources import check_source as check

    if source is not None:
        check(source, label)


def check_path(path: str, source: str | None = None) -> None:
    """Refuse now a path that cannot be listed: missing, an empty catalog, a catalog without its columns,
    a catalog none of whose rows can be indexed.

    Raises:
        ConfigError: before a model or a database opens.
    """
    from lookalike.ingest import open_listing

    open_listing(path, source).check_indexable()


def check_inputs(
    ctx: Context, inputs: Sequence[str], source: str | None = None, policy: FetchPolicy | None = None
) -> None:
    """Refuse now inputs the policy forbids (PathRefusedError) or that do not exist (ConfigError)."""
    from lookalike.ingest.sources import Inputs

    (policy or ctx.policy).check_inputs(inputs)
    Inputs(inputs, source).check_indexable()


def index_inputs(
    ctx: Context,
    inputs: Sequence[str],
    *,
    source: str | None = None,
    on_start: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    detect: bool = False,
    policy: FetchPolicy | None = None,
) -> IngestReport:
    """Index several paths and URLs in one run (the API's POST /index, with its policy)."""
    from lookalike.ingest.sources import Inputs

    listing = Inputs(inputs, source)
    return ingest(ctx, listing, IndexType.HNSW, None, on_start, progress, detect, policy=policy)


def ingest(
    ctx: Context,
    listing: Listing | ObjectListing | Inputs,
    index: str,
    index_params: dict[str, Any] | None,
    on_start: Callable[[int], None] | None,
    progress: Progress | None,
    detect: bool = False,
    sync: bool = False,
    policy: FetchPolicy | None = None,
) -> IngestReport:
    from lookalike.ingest import Ingestor
    from lookalike.ingest.kept import keep
    from lookalike.ingest.sync import Scope

    store = ctx.store
    store.validate_index(index)
    embedding.bind(ctx)  # the collection's own model, or a clear error for another one
    embedder = ctx.embedder
    if store.exists():
        store.check_dim(embedder.dim)
        if detect:
            store.require_crop_fields()
    detector = ctx.detector if detect else None
    if detector is not None:
        detector.load()  # missing weights stop the run here, before anything is written
    # Load before creating anything: a model that cannot load must not leave behind an
    # empty collection of its dimension. Only the image tower (without torch where it was exported
    # before); a policy that scores texts loads the text tower itself.
    embedder.load_image()
    # Policies are scored as each chunk is stored; a policy this model cannot score stops the run here.
    scored = policies.on_stored(ctx)
    # New pictures are screened against the hash banks before they are embedded (take-downs stay down).
    screen = screening.Screen(ctx)

    def stored(chunk: list[Item], chunk_hashes: dict[int, tuple[str, int]]) -> None:
        scored(chunk, chunk_hashes)
        screen.stored(chunk)

    store.ensure(
        embedder.dim, index=index, index_params=index_params, model=embedding.for_new_collection(ctx)
    )
    if on_start:
        on_start(listing.count())
    ingestor = Ingestor(
        embedder,
        store,
        chunk_size=max(embedder.batch_size, 16),
        workers=ctx.settings.workers,
        max_pixels=ctx.settings.max_image_pixels,
        max_bytes=ctx.max_bytes,
        timeout_s=ctx.settings.fetch_timeout_s,
        detector=detector,
        scope=Scope.of(listing) if sync else None,
        fetcher=(policy or ctx.policy).read,
        keep=lambda sha, data: keep(ctx.settings.uploads_path(), sha, data),
        on_stored=stored,
        screen=screen.check,
        perceptual_hashes=True,
        # The sweep's deleted items close their open flags once the deletion is flushed.
        on_deleted=lambda ids: items.gone(ctx, ids, "deleted by index --sync"),
    )
    report = ingestor.run(listing, progress)
    report.alerts += [alert.message for alert in screen.alerts]
    if sync:
        # Pictures stored before hashes existed get theirs now (read again, not re-embedded).
        hashes.backfill(ctx, policy=policy)
    return report


def save_upload(ctx: Context, data: bytes) -> str:
    """Keep an uploaded image under the upload folder, named by its content; returns the path."""
    from lookalike.ingest import content_hash, decode_image, image_media_type

    decode_image(data, max_pixels=ctx.settings.max_image_pixels)  # refuse non-images before keeping them
    folder = Path(ctx.settings.uploads_path())
    folder.mkdir(parents=True, exist_ok=True)
    suffix = {"image/png": ".png", "image/gif": ".gif", "image/webp": ".webp"}.get(
        image_media_type(data), ".jpg"
    )
    path = folder / f"{content_hash(data)}{suffix}"
    if not path.exists():
        durable.write_bytes(path, data, step="upload")  # a torn upload would be kept as the item's image
    return str(path.resolve())
