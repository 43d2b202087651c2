"""Liked and unliked examples of a search, resolved to vectors: stored ones before any model loads, images
once it has (the formula that combines them is ``lookalike.examples.combine``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lookalike.errors import ExampleError, ItemNotFoundError
from lookalike.examples import Example, ExampleKind, stored_id
from lookalike.queries import Query
from lookalike.store import Item
from lookalike.usecases.context import Context
from lookalike.usecases.items import by_item_id


@dataclass
class Resolved:
    """The examples' vectors (None: an image, embedded once the model has loaded) and the stored ids
    they name, which a search leaves out of its hits."""

    liked: list[npt.NDArray[np.float32] | None] = field(default_factory=list)
    unliked: list[npt.NDArray[np.float32] | None] = field(default_factory=list)
    stored_ids: list[int] = field(default_factory=list)


def mean_direction(items: list[Item]) -> npt.NDArray[np.float32]:
    """A catalog item's direction: the normalised mean of its pictures' (and crops') vectors."""
    vectors = np.stack([i.vector for i in items if i.vector is not None])
    mean = vectors.mean(axis=0)
    mean /= max(float(np.linalg.norm(mean)), 1e-12)
    return mean.astype(np.float32)


def resolve_stored(ctx: Context, query: Query) -> Resolved:
    """The vectors of every stored example (ids, items, bare values), from the store alone.

    Raises:
        ConfigError: an example that names nothing stored, or a bare value that names both a
            stored id and a catalog item; the message quotes it as the caller wrote it.
    """
    resolved = Resolved()
    for examples, label, into in (
        (query.like, query.names.like, resolved.liked),
        (query.unlike, query.names.unlike, resolved.unliked),
    ):
        for example in examples:
            if example.is_image:
                into.append(None)
                continue
            items = _stored(ctx, example, label)
            into.append(mean_direction(items))
            resolved.stored_ids += [item.id for item in items]
    return resolved


def _stored(ctx: Context, example: Example, label: str) -> list[Item]:
    shown = f"{label} {example.text!r}"
    by_id: list[Item] = []
    number = stored_id(example.value)
    if number is not None and example.kind in (ExampleKind.ID, ExampleKind.GUESS):
        by_id = [i for i in ctx.store.get([number], with_vector=True) if i.vector is not None]
        if example.kind is ExampleKind.ID:
            if not by_id:
                raise ExampleError(f"{shown}: no stored item has the id {example.value}.")
            return by_id
    try:
        by_item = [i for i in by_item_id(ctx, example.value, with_vector=True) if i.vector is not None]
    except ItemNotFoundError:
        by_item = []
    if example.kind is ExampleKind.ITEM:
        if not by_item:
            raise ExampleError(f"{shown}: no stored item has the item id {example.value!r}.")
        return by_item
    if by_id and by_item:
        raise ExampleError(
            f"{shown} is both a stored id and a catalog item id: write id:{example.value} or "
            f"item:{example.value}."
        )
    if not (by_id or by_item):
        what = (
            "no file, no stored id and no catalog item"
            if number is not None
            else "no file and no catalog item"
        )
        raise ExampleError(f"{shown} names {what}.")
    return by_id or by_item


def embed_images(
    ctx: Context, query: Query, resolved: Resolved
) -> tuple[list[npt.NDArray[np.float32]], list[npt.NDArray[np.float32]]]:
    """The liked and unliked vectors, the image examples embedded in one batch (the model is loaded)."""
    from lookalike.ingest import decode_image
    from lookalike.usecases.search import read_image

    images = []
    for example in (*query.like, *query.unlike):
        if example.is_image:
            data = example.data
            if data is None:
                data = read_image(ctx, example.value, public_only=query.public_only)
            draft = ctx.embedder.input_size  # a large JPEG decodes at a reduced scale
            images.append(decode_image(data, max_pixels=ctx.settings.max_image_pixels, draft=draft).image)
    embedded = iter(list(ctx.embedder.embed_images(images)) if images else [])
    liked = [v if v is not None else next(embedded) for v in resolved.liked]
    unliked = [v if v is not None else next(embedded) for v in resolved.unliked]
    return liked, unliked
