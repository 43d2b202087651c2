"""Ingest: index folders, files, catalogs and URLs into the collection; keep uploads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike import durable
from lookalike.backend import Backend
from lookalike.errors import ConfigError
from lookalike.store.models import IndexType
from lookalike.usecases import embedding, hashes, items, policies, screening
from lookalike.usecases.context import Context

if TYPE_CHECKING:
    from lookalike.ingest import FetchPolicy, IngestPlan, IngestReport
    from lookalike.ingest.objects import ObjectListing
    from lookalike.ingest.pipeline import Sinks
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
    on_ray: OnRay | None = None,
) -> IngestReport:
    """Index a folder, an image file or a catalog (local or ``s3://``); returns what was done and skipped.

    With ``detect``, every object the detector finds also becomes an item of its own. With
    ``sync``, the collection mirrors the listing: items no longer listed are deleted, a new
    image replaces the old one, and changed names or dates are updated without re-embedding.
    With ``on_ray``, the stages run on Ray Data (usecases/ray_runner.py) instead of in this process.
    """
    from lookalike.ingest import open_listing

    ctx.store.validate_index(index)  # before listing (or loading) anything
    listing = open_listing(path, source)
    return ingest(
        ctx,
        listing,
        index=index,
        index_params=index_params,
        on_start=on_start,
        progress=progress,
        detect=detect,
        sync=sync,
        on_ray=on_ray,
    )


@dataclass(frozen=True)
class OnRay:
    """``index --ray``: where the Ray cluster is (None: start a local instance), how many model actors
    (None: one per GPU, else one per four cores), and the batch size asked for (None: chosen per device)."""

    address: str | None = None
    actors: int | None = None
    batch_size: int | None = None
    writers: int = 2  # writer actors into a Milvus server (Milvus Lite: this process writes)
    bulk: str | None = None  # a Milvus server's new collection is loaded from Parquet files written here


WRITERS = OnRay.writers


def check_ray() -> None:
    """Refuse ``--ray`` now, before a model loads, where Ray Data is not installed.

    Raises:
        ConfigError: with the command that installs it.
    """
    from lookalike.usecases.ray_runner import _ray

    _ray()


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
    return ingest(ctx, listing, on_start=on_start, progress=progress, detect=detect, policy=policy)


def plan(
    ctx: Context,
    listing: Listing | ObjectListing | Inputs,
    *,
    detect: bool = False,
    sync: bool = False,
    policy: FetchPolicy | None = None,
) -> IngestPlan:
    """The plan of one ingest by this context's settings (what any runner is handed)."""
    from lookalike.ingest import IngestPlan
    from lookalike.ingest.sync import Scope

    return IngestPlan(
        chunk_size=max(ctx.embedder.batch_size, 16),
        workers=ctx.settings.workers,
        max_pixels=ctx.settings.max_image_pixels,
        fetch=(policy or ctx.policy).read,
        detect=detect,
        scope=Scope.of(listing) if sync else None,
        perceptual_hashes=True,
        keep=ctx.settings.uploads_path(),
    )


def ingest(
    ctx: Context,
    listing: Listing | ObjectListing | Inputs,
    *,
    index: str = IndexType.HNSW,
    index_params: dict[str, Any] | None = None,
    on_start: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    detect: bool = False,
    sync: bool = False,
    policy: FetchPolicy | None = None,
    on_ray: OnRay | None = None,
) -> IngestReport:
    """Index a listing into the context's collection by the local runner, or on Ray with ``on_ray``
    (``index`` and ``index_inputs`` open the listing); the hooks: policies and hash banks at ingest,
    flags of swept items.
    """
    if on_ray is None:
        return _ingest(ctx, listing, index, index_params, on_start, progress, detect, sync, policy, None)
    from lookalike.usecases import ray_runner

    if on_ray.bulk is not None:
        check_bulk(ctx, sync)
    # Ray first: one that cannot start stops the run before a model loads or a collection is made.
    started = ray_runner.connect(on_ray.address)
    try:
        return _ingest(ctx, listing, index, index_params, on_start, progress, detect, sync, policy, on_ray)
    finally:
        if started:
            ray_runner.disconnect()


def check_bulk(ctx: Context, sync: bool) -> None:
    """Refuse ``--bulk`` where a bulk import cannot be right: Milvus Lite, --sync, a collection with rows
    (a bulk import does not check ids: it would store them twice).

    Raises:
        ConfigError: before Ray starts or a model loads.
    """
    if ctx.settings.backend is not Backend.SERVER:
        raise ConfigError(
            "--bulk needs a Milvus server (--db http://host:19530): Milvus Lite has no bulk import."
        )
    if sync:
        raise ConfigError("--bulk loads a new collection; --sync changes one: index with one or the other.")
    if ctx.store.exists() and ctx.store.count() > 0:
        raise ConfigError(
            f"The collection '{ctx.settings.collection}' is not empty, and a bulk import does not check ids: "
            "--bulk loads a new (or empty) collection; index into this one without --bulk."
        )


def _writers(ctx: Context, on_ray: OnRay) -> Any:
    """A Milvus server's writer pool for ``ray_runner`` (None for Milvus Lite: this process writes)."""
    if ctx.settings.backend is not Backend.SERVER:
        return None
    from lookalike.ingest.writers import Connection
    from lookalike.usecases.ray_runner import Writers

    settings = ctx.settings
    options = {
        "token": settings.token,
        "user": settings.user,
        "password": settings.password,
        "timeout_s": settings.store_timeout_s(settings.db),
        "tls": settings.tls(),
    }
    bulk = (
        str(Path(on_ray.bulk).expanduser().resolve()) if on_ray.bulk is not None else None
    )  # as the server sees it
    return Writers(Connection(settings.db, settings.collection, options), on_ray.writers, bulk)


def _ingest(
    ctx: Context,
    listing: Listing | ObjectListing | Inputs,
    index: str,
    index_params: dict[str, Any] | None,
    on_start: Callable[[int], None] | None,
    progress: Progress | None,
    detect: bool,
    sync: bool,
    policy: FetchPolicy | None,
    on_ray: OnRay | None,
) -> IngestReport:
    from lookalike.ingest.pipeline import Sinks
    from lookalike.usecases import local_runner

    store = ctx.store
    store.validate_index(index)
    embedding.bind(ctx)  # the collection's own model, or a clear error for another one
    embedder = ctx.embedder
    # A plan that cannot be made (--sync of a list of inputs) is refused before anything loads or is created.
    the_plan = plan(ctx, listing, detect=detect, sync=sync, policy=policy)
    if store.exists():
        store.check_dim(embedder.dim)
        if detect:
            store.require_crop_fields()
    detector = ctx.detector if detect else None
    if detector is not None:
        detector.load()  # missing weights stop the run here, before anything is written
    # Load before creating anything: a model that cannot load must not leave behind an
    # empty collection of its dimension. Only the image tower (without torch where it was exported
    # before); a policy that scores texts loads the text tower itself. On Ray the actors load it, not
    # this process (its name, dimension and input size come from the model's config): the collection
    # is made once the first actor has loaded its model.
    if on_ray is None:
        embedder.load_image()
    # Policies are scored as each chunk is stored; a policy this model cannot score stops the run here.
    scored = policies.on_stored(ctx)
    # New pictures are screened against the hash banks before they are embedded (take-downs stay down).
    screen = screening.Screen(ctx)

    raised: list[int] = []  # flags raised for stored pictures, a chunk at a time

    def stored(chunk: list[Item], chunk_hashes: dict[int, tuple[str, int]]) -> None:
        raised.append(scored(chunk, chunk_hashes) + screen.stored(chunk))

    def ensure() -> None:
        store.ensure(
            embedder.dim, index=index, index_params=index_params, model=embedding.for_new_collection(ctx)
        )

    if on_ray is None:
        ensure()
    if on_start and on_ray is None:
        on_start(listing.count())  # on Ray the listing tasks count it
    sinks = Sinks(
        on_stored=stored,
        screen=screen.check,
        # The sweep's deleted items close their open flags once the deletion is flushed.
        on_deleted=lambda ids: items.gone(ctx, ids, "deleted by index --sync"),
    )
    if on_ray is not None:
        report = _on_ray(ctx, on_ray, the_plan, listing, sinks, on_start, progress, ensure)
    else:
        report = local_runner.run(
            the_plan, listing, embedder, store, detector=detector, sinks=sinks, progress=progress
        )
    report.alerts += [alert.message for alert in screen.alerts]
    if screen.refused:
        # A refused picture's bytes are not kept: an API upload of it, or a URL's download kept as it
        # was read, goes now (unless a stored item has the same bytes), so that a take-down's erased
        # bytes never come back to disk by being uploaded again.
        items.forget_unreferenced_images(
            ctx, {s.uri for s in screen.refused} | {s.sha256 for s in screen.refused}
        )
    report.flagged += sum(raised)
    if sync:
        # Pictures stored before hashes existed get theirs now (read again, not re-embedded).
        hashes.backfill(ctx, policy=policy)
    return report


def _actor_settings(ctx: Context) -> Any:
    """The settings each Ray actor builds its model from: those this process built its own from."""
    if ctx.embedder_injected:
        raise ConfigError("--ray builds its model on each actor from the settings; this embedder was given.")
    return ctx.embedded_with or ctx.settings


def _on_ray(
    ctx: Context,
    on_ray: OnRay,
    the_plan: IngestPlan,
    listing: Listing | ObjectListing | Inputs,
    sinks: Sinks,
    on_start: Callable[[int], None] | None,
    progress: Progress | None,
    ensure: Callable[[], None],
) -> IngestReport:
    from lookalike.usecases import ray_runner

    return ray_runner.run(
        the_plan,
        listing,
        _actor_settings(ctx),
        ctx.store,
        input_size=ctx.embedder.input_size,
        actors=on_ray.actors,
        batch_size=on_ray.batch_size,
        sinks=sinks,
        on_start=on_start,
        progress=progress,
        ready=ensure,
        writers=_writers(ctx, on_ray),
    )


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
