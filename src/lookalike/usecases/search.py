"""Search: the top-k stored items for a text, an image, a stored id or a catalog item, inside filters."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from lookalike.embed.weights import MULTILINGUAL_HINT
from lookalike.errors import ConfigError, ItemNotFoundError
from lookalike.queries import Query, SearchResult, day_window, mostly_non_latin
from lookalike.store.grouping import per_product
from lookalike.store.models import Box, Hit
from lookalike.store.rows import identity_problem
from lookalike.store.window import Window
from lookalike.usecases import hybrid
from lookalike.usecases.context import Context
from lookalike.usecases.embedding import bind, label_of
from lookalike.usecases.examples import Resolved, embed_images, resolve_stored
from lookalike.usecases.items import by_item_id


def collection_text_problem(ctx: Context) -> str | None:
    """Why a text search of this collection cannot work whatever the model (it holds image-only vectors)."""
    from lookalike.embed import is_image_only

    stored = label_of(ctx.store.model())
    if stored and is_image_only(stored):
        return (
            f"The collection '{ctx.store.collection}' was indexed with {stored}, which embeds images "
            "only: search it by --image or --id, or index it again with a CLIP model for text search."
        )
    return None


def text_search_problem(ctx: Context) -> str | None:
    """Why a text search of this collection with this model cannot work, or None."""
    problem = collection_text_problem(ctx)
    if problem:
        return problem
    if not ctx.embedder.supports_text:
        return (
            f"The model {ctx.embedder.name} embeds images only: search by --image or --id, "
            "or use a CLIP model for text search."
        )
    return None


def read_image(ctx: Context, location: str, *, public_only: bool) -> bytes:
    """A query image's bytes: a public URL only for untrusted callers, else a local file or URL."""
    from lookalike.ingest import FetchPolicy

    if public_only:
        return FetchPolicy.from_settings(ctx.settings, server=True).read(location).data
    if "://" not in location:
        location = str(Path(location).expanduser())
        check_image_file(location)
    return ctx.fetch(location)


def check_image_file(location: str, label: str = "--image") -> None:
    """Refuse a query image path that is no regular readable file, saying what it is instead.

    Raises:
        ConfigError: missing, a folder, a FIFO, a device, a socket, a symbolic link loop, unreadable.
    """
    from lookalike.ingest.policy import file_problem, printable_path

    problem = file_problem(str(Path(location).expanduser()))
    if problem is not None:
        raise ConfigError(f"{label} {printable_path(location)} cannot be read: {problem}.")


def filter_problem(values: tuple[str, ...], label: str) -> str | None:
    """Why values of a filter field (a category, a tag) cannot name a stored one, or None."""
    if any(not value.strip() for value in values):
        return f"{label} must not be empty."
    if any(ord(ch) < 0x20 for value in values for ch in value):
        return f"{label} must not hold control characters."
    return None


def validate(query: Query) -> None:
    """Every check a query can fail without a model or a database: raised before either loads."""
    given = [v is not None for v in (query.text, query.image, query.image_bytes, query.id, query.item_id)]
    if sum(given) > 1 or (sum(given) == 0 and not query.like):
        examples = f" (with any {query.names.like} and {query.names.unlike})" if query.unlike else ""
        raise ConfigError(f"Give exactly one of {query.names.one_of}{examples}, or {query.names.like}.")
    if query.text is not None and not query.text.strip():
        raise ConfigError(f"{query.names.text} must not be empty.")
    if query.item_id is not None and not query.item_id.strip():
        raise ConfigError(f"{query.names.item_id} must not be empty.")
    if any(not value.strip() for value in query.sources):
        raise ConfigError(f"{query.names.source} must not be empty.")
    for name, values in query.keys:
        key_problem = filter_problem(values, query.names.key(name))
        if key_problem:
            raise ConfigError(key_problem)
    wanted = [("source", s, query.names.source) for s in query.sources]
    wanted += [("item_id", query.item_id, query.names.item_id)] if query.item_id is not None else []
    for name, value, label in wanted:
        problem = identity_problem(name, value, label)
        if problem is not None:  # nothing stored can hold it: an empty answer would mislead
            raise ConfigError(f"{problem}: no stored item can match it.")
    if query.k < 1:
        raise ConfigError(f"{query.names.k} must be at least 1, got {query.k}.")
    if query.offset < 0:
        raise ConfigError(f"{query.names.offset} must be 0 or more, got {query.offset}.")
    if query.min_score is not None and not -1.0 <= query.min_score <= 1.0:
        raise ConfigError(
            f"{query.names.min_score} must be a cosine between -1 and 1, got {query.min_score}."
        )
    if query.box is not None and query.image is None and query.image_bytes is None:
        raise ConfigError(query.names.box_needs_image)
    day_window(query.since, query.until, query.names)
    hybrid.validate(query)
    if query.image is not None and not query.public_only and "://" not in query.image:
        check_image_file(query.image, query.names.image)  # a local file: before a model loads
    _validate_examples(query)


def _validate_examples(query: Query) -> None:
    from lookalike.examples import MAX_EXAMPLES
    from lookalike.store.milvus import MAX_PER_ITEM

    if query.per_item is not None and not 1 <= query.per_item <= MAX_PER_ITEM:
        raise ConfigError(
            f"{query.names.per_item} must be between 1 and {MAX_PER_ITEM}, got {query.per_item}."
        )
    for examples, label in ((query.like, query.names.like), (query.unlike, query.names.unlike)):
        if len(examples) > MAX_EXAMPLES:
            raise ConfigError(f"{label} can be given at most {MAX_EXAMPLES} times, got {len(examples)}.")
        for example in examples:
            if example.is_image and example.data is None and "://" not in example.value:
                check_image_file(example.value, f"{label} {example.text!r}:")


def stored_vector(ctx: Context, query: Query) -> tuple[np.ndarray, list[int]]:
    """The vector of the stored item a query names (by id or catalog item id) and the ids to leave out."""
    if query.id is not None:
        found = ctx.store.get([query.id], with_vector=True)
        if not found or found[0].vector is None:
            raise ItemNotFoundError(f"No stored item has the id {query.id}.")
        return found[0].vector[None, :], [query.id]
    assert query.item_id is not None
    items = [i for i in by_item_id(ctx, query.item_id, with_vector=True) if i.vector is not None]
    # A catalog item with several pictures (or crops) is searched by their mean direction.
    vectors = np.stack([i.vector for i in items if i.vector is not None])
    mean = vectors.mean(axis=0)
    mean /= max(float(np.linalg.norm(mean)), 1e-12)
    return mean[None, :].astype(np.float32), [i.id for i in items]


def query_vector(ctx: Context, query: Query) -> tuple[np.ndarray, list[int], Box | None]:
    if query.id is not None or query.item_id is not None:
        vector, exclude = stored_vector(ctx, query)
        return vector, exclude, None
    if query.text is not None:
        return ctx.embedder.embed_texts([query.text]), [], None
    from lookalike.embed.detect import crop, largest
    from lookalike.ingest import decode_image

    data = query.image_bytes
    if data is None:
        assert query.image is not None
        data = read_image(ctx, query.image, public_only=query.public_only)
    whole = query.box is not None or query.detect  # a box is in the stored picture's pixels
    draft = None if whole else ctx.embedder.input_size  # else a large JPEG decodes at a reduced scale
    image = decode_image(data, max_pixels=ctx.settings.max_image_pixels, draft=draft).image
    box = query.box
    if box is None and query.detect:
        found_box = largest(ctx.detector.detect(image))
        box = found_box.box if found_box else None
    if box is not None:
        image = crop(image, box)
    return ctx.embedder.embed_images([image]), [], box


def _prepare(ctx: Context, query: Query) -> None:
    """Open what the query needs before its clock starts: the collection, the model, the detector."""
    ctx.store.require()
    by_text = query.text is not None and not query.keywords  # a keyword search needs no model
    problem = collection_text_problem(ctx) if by_text else None
    if problem:  # before any model: no model can search image-only vectors by text
        raise ConfigError(problem + hybrid.keywords_hint(query))
    if query.by_text_or_image:
        bind(ctx)  # the collection's own model, or a clear error for another one
    problem = text_search_problem(ctx) if by_text else None
    if problem:
        raise ConfigError(problem)
    if query.by_text_or_image:
        ctx.store.check_dim(ctx.embedder.dim)
        # Only the towers the query needs (a text query: the text tower alone, without torch where
        # it was exported before).
        if query.text is not None:
            ctx.embedder.load_text()
        if query.text is None or any(example.is_image for example in (*query.like, *query.unlike)):
            ctx.embedder.load_image()
    if query.detect and query.box is None:
        ctx.detector.load()  # like the model: loading once per process is not the query's time


def search(ctx: Context, query: Query) -> SearchResult:
    """Top-k stored items for a text, an image, a stored id or a catalog item id, inside the filters.

    ``took_ms`` counts embedding the query and searching; loading the model once per
    process does not count. ``offset`` skips the first hits (paging); ``min_score`` drops
    hits below a cosine.
    """
    validate(query)
    since, until = day_window(query.since, query.until, query.names)
    resolved = None
    if query.like or query.unlike:
        ctx.store.require()
        resolved = resolve_stored(ctx, query)  # an unknown example fails before a model loads
    _prepare(ctx, query)
    started = time.perf_counter()
    if query.keywords:  # words alone: no vector
        vector, exclude, query_box = None, [], None
    else:
        vector, exclude, query_box = query_vector(ctx, query) if query.has_base else (None, [], None)
        if resolved is not None:
            vector = _with_examples(ctx, query, vector, resolved)
            exclude = [*exclude, *resolved.stored_ids]  # the examples are not hits
        assert vector is not None
    window = Window.of(
        sources=query.sources or None,
        since=since,
        until=until,
        exclude_ids=exclude,
        **{param: values or None for param, values in query.key_params().items()},
    )
    params = dict(query.search_params) or None

    def ranked(k: int, within: Window) -> list[Hit]:
        """The k best pictures (or crops) in a window, by the query's ranking."""
        if hybrid.by_keywords(query):
            return hybrid.hits(ctx, query, vector, within, k)
        assert vector is not None
        return ctx.store.search(vector, k=k, window=within, params=params)[0]

    if query.per_item is None:
        hits = ranked(query.k + query.offset, window)[query.offset :]
    else:  # k and offset count products
        if hybrid.by_keywords(query):
            products = per_product(ranked, k=query.k + query.offset, per_item=query.per_item, window=window)
        else:  # the store's own grouping (Milvus's grouping search on a server that has it)
            assert vector is not None
            products = ctx.store.search_products(
                vector[0], k=query.k + query.offset, per_item=query.per_item, window=window, params=params
            )
        hits = [hit for group in products[query.offset :] for hit in group]
    # A stored vector that is not finite (written before imports were checked, or by another
    # program) scores NaN: such a hit has no rank, and JSON cannot carry its score.
    scored = [hit for hit in hits if math.isfinite(hit.score)]
    if query.min_score is not None:
        scored = [hit for hit in scored if hit.score >= query.min_score]
    took_ms = (time.perf_counter() - started) * 1000
    warnings = _warnings(ctx, query, query_box) + hybrid.warnings(query)
    unscored = sum(1 for hit in hits if not math.isfinite(hit.score))
    if unscored:
        warnings.append(
            f"{unscored} hits had no valid score (their stored vector, or the query's, is not finite) and "
            "were left out: export, check and re-import or re-index those items."
        )
    return SearchResult(took_ms, scored, warnings, query_box)


def _with_examples(ctx: Context, query: Query, vector: np.ndarray | None, resolved: Resolved) -> np.ndarray:
    """The query moved by its examples: ``lookalike.examples.combine`` of the query's own vector and the
    liked ones against the unliked ones."""
    from lookalike.examples import combine

    liked, unliked = embed_images(ctx, query, resolved)
    positives = [*([vector[0]] if vector is not None else []), *liked]
    dim = len(positives[0]) if positives else ctx.store.dim()
    return combine(
        np.stack(positives) if positives else np.zeros((0, dim), np.float32),
        np.stack(unliked) if unliked else np.zeros((0, dim), np.float32),
    )


def _warnings(ctx: Context, query: Query, query_box: Box | None) -> list[str]:
    warnings = []
    text = query.text if query.by_text_or_image else None  # a keyword search has no model
    if text and not ctx.embedder.multilingual and mostly_non_latin(text):
        warnings.append(
            f"The query is mostly in a non-Latin script, but {ctx.embedder.name} was trained on English "
            f"text, so the results will be poor. Use a multilingual model: {MULTILINGUAL_HINT} "
            "(pip install 'lookalike[multilingual]')."
        )
    if query.by_text_or_image:
        stored_model = label_of(ctx.store.model())
        if stored_model and stored_model != ctx.embedder.name:
            warnings.append(
                f"The collection was indexed with {stored_model}, but this search uses "
                f"{ctx.embedder.name}: scores are only meaningful with the same model."
            )
    if query.detect and query.box is None and query_box is None:
        warnings.append(
            "The detector found no object above the minimum score and size in the query image, "
            "so the whole image was searched."
        )
    return warnings


def write_grid(result: SearchResult, path: str, title: str) -> None:
    """Draw the hits as a PNG grid: thumbnail, name and score, under a title with the query and its time."""
    from lookalike.scan.thumbs import write_grid as draw

    cells = [
        (hit.item.uri, hit.item.name or hit.item.item_id, f"{hit.score:.3f}  ·  {hit.item.source}")
        for hit in result.hits
    ]
    draw(path, f"{title}  ·  {len(result.hits)} hits in {result.took_ms:.1f} ms", cells)
