"""Examples as queries (``--like`` / ``--unlike``): what each example names, and how they make one query.

An example is a stored id (``id:N``), a catalog item (``item:ITEM_ID``), or an image (an http(s)
URL; on the command line also a file path). On the command line a bare value is read as a user
means it: an existing file is an image, else a number is a stored id, else an item id (a value
that could be both is refused as ambiguous when the store is asked).

The query they make is Rocchio's relevance feedback in the form Qdrant's recommend API calls its
``average_vector`` strategy::

    q = normalise(mean(positives) - BETA * mean(negatives))

where the positives are the liked examples and the query's own text, image or item, and the
negatives the unliked examples. Qdrant's ``avg_pos + (avg_pos - avg_neg)`` is this with
``BETA = 0.5``, and Rocchio's classic weights (1 for the query and the relevant ones, 0.15-0.5
for the non-relevant ones) say the same: a "not like this" should turn the query away from a
look without pointing it at the look's opposite, whose neighbours are as arbitrary as the
look's are specific. CLIP vectors of one catalog lie in a narrow cone, so even 0.5 moves the
ranking a lot: an unliked picture's near copies fall down the list, and what the liked ones
share rises.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import ConfigError
from lookalike.store.rows import identity_problem

if TYPE_CHECKING:  # building a query imports nothing heavy
    import numpy as np
    import numpy.typing as npt

BETA = 0.5
"""The weight of the unliked examples' mean against the liked ones' (Qdrant's average_vector)."""
MAX_EXAMPLES = 20
"""Liked, and separately unliked, examples a query may give."""


class ExampleKind(StrEnum):
    ID = "id"  # a stored item's id
    ITEM = "item"  # a catalog item id: the mean direction of its pictures
    IMAGE = "image"  # an image path or URL (or bytes read at the edge)
    GUESS = "guess"  # a bare value from the command line: a stored id or an item id, asked of the store


@dataclass(frozen=True)
class Example:
    """One example as the caller wrote it (``text``) and what it names (``kind``, ``value``)."""

    text: str
    kind: ExampleKind
    value: str
    data: bytes | None = None  # an image example's bytes, where the edge read them (the API's downloads)

    @property
    def is_image(self) -> bool:
        return self.kind is ExampleKind.IMAGE


def stored_id(text: str) -> int | None:
    """The stored id a text writes (ASCII digits, 63 bits), else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) >= 2**63:
        return None
    return int(text)


def parse_example(text: str, label: str, *, paths: bool) -> Example:
    """What an example names. ``paths``: a bare value may be a file (the command line), else only
    ``id:N``, ``item:ITEM_ID`` and http(s) URLs are examples (the API).

    Raises:
        ConfigError: an example that names nothing an example can be; the message quotes it.
    """
    shown = f"{label} {text!r}"
    if not text.strip():
        raise ConfigError(f"{label} must not be empty.")
    head, colon, rest = text.partition(":")
    scheme = head.lower()
    if colon and scheme == "id":
        number = stored_id(rest)
        if number is None:
            raise ConfigError(f"{shown}: id: must be followed by a stored id (a whole number from 0).")
        return Example(text, ExampleKind.ID, str(number))
    if colon and scheme == "item":
        if not rest:
            raise ConfigError(f"{shown}: item: must be followed by a catalog item id.")
        problem = identity_problem("item_id", rest, f"{shown}'s item id")
        if problem is not None:
            raise ConfigError(f"{problem}: no stored item can match it.")
        return Example(text, ExampleKind.ITEM, rest)
    if colon and rest.startswith("//"):
        if scheme not in ("http", "https"):
            raise ConfigError(f"{shown}: an image URL must be http(s).")
        return Example(text, ExampleKind.IMAGE, text)
    if not paths:
        raise ConfigError(f"{shown} is none of id:N (a stored id), item:ITEM_ID or an http(s) image URL.")
    path = Path(text).expanduser()
    if path.is_file() or (path.exists() and not path.is_dir()) or path.is_symlink():
        return Example(text, ExampleKind.IMAGE, text)  # a FIFO or a device is refused when it is read
    if identity_problem("item_id", text) is not None:
        raise ConfigError(f"{shown} is no file, and no stored id or catalog item id can be written so.")
    return Example(text, ExampleKind.GUESS, text)


def parse_examples(texts: list[str] | tuple[str, ...], label: str, *, paths: bool) -> tuple[Example, ...]:
    """Every example of one option, at most ``MAX_EXAMPLES`` of them."""
    if len(texts) > MAX_EXAMPLES:
        raise ConfigError(f"{label} can be given at most {MAX_EXAMPLES} times, got {len(texts)}.")
    return tuple(parse_example(text, label, paths=paths) for text in texts)


def combine(
    positives: npt.NDArray[np.float32], negatives: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """The query of liked and unliked vectors (rows): normalise(mean(positives) - BETA * mean(negatives)).

    Raises:
        ConfigError: no positive vector, or examples that cancel out.
    """
    import numpy as np

    if len(positives) == 0:
        raise ConfigError("Unliked examples need something to search for: a liked example or a query.")
    query = positives.mean(axis=0)
    if len(negatives):
        query = query - BETA * negatives.mean(axis=0)
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm < 1e-6:
        raise ConfigError("The liked and unliked examples cancel out: there is no direction left to search.")
    return (query / norm).astype(np.float32)[None, :]
