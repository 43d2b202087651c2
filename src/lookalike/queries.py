"""What a request to the service says and what it gets back: queries, results, date windows, index options."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lookalike.errors import ConfigError

if TYPE_CHECKING:  # annotations only: building a query imports nothing heavy
    from lookalike.examples import Example
    from lookalike.scan import Scores
    from lookalike.store import Hit
    from lookalike.store.models import Box


@dataclass(frozen=True)
class FieldNames:
    """What the caller calls each part of a query, so that a message names the caller's own field."""

    text: str = "--text"
    image: str = "--image"
    id: str = "--id"
    item_id: str = "--item-id"
    source: str = "--source"
    k: str = "--k"
    offset: str = "--offset"
    min_score: str = "--min-score"
    since: str = "--since"
    until: str = "--until"
    per_item: str = "--per-item"
    like: str = "--like"
    unlike: str = "--unlike"
    hybrid: str = "--hybrid"
    keywords: str = "--keywords"
    keyword_weight: str = "--keyword-weight"
    rrf_k: str = "--rrf-k"
    box_needs_image: str = "--box and --detect choose a part of a query image: give --image too."

    api: bool = False
    """Whether the caller is the API, which names a filter field by its parameter (``categories``),
    not by its option (``--category``)."""

    @property
    def one_of(self) -> str:
        return f"{self.text}, {self.image}, {self.id} or {self.item_id}"

    def key(self, name: str) -> str:
        """What the caller calls the filter of a field (``category``: ``--category`` or ``categories``)."""
        from lookalike.store.fields import FILTERS

        return FILTERS[name].param if self.api else FILTERS[name].option


CLI_NAMES = FieldNames()
API_NAMES = FieldNames(
    text="text",
    image="image_url (or an uploaded image)",
    id="id",
    item_id="item_id",
    source="sources",
    k="k",
    offset="offset",
    min_score="min_score",
    since="since",
    until="until",
    per_item="per_item",
    like="like",
    unlike="unlike",
    hybrid="hybrid",
    keywords="keywords",
    keyword_weight="keyword_weight",
    rrf_k="rrf_k",
    box_needs_image="box and detect choose a part of a query image: give image_url or upload an image too.",
    api=True,
)


@dataclass(frozen=True)
class Query:
    """One search: exactly one of text, image (path or URL), image_bytes, id or item_id, with any liked
    and unliked examples (``like``, ``unlike``: ``lookalike.examples``), or liked examples alone;
    ``per_item``: at most this many hits per catalog item (``k`` and ``offset`` then count products)."""

    text: str | None = None
    image: str | None = None
    image_bytes: bytes | None = None
    id: int | None = None
    item_id: str | None = None  # a catalog item: lookalikes of its stored picture(s)
    k: int = 10
    offset: int = 0  # paging: skip this many of the best hits
    min_score: float | None = None  # drop hits whose cosine is below this
    sources: tuple[str, ...] = ()
    keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(field, values) for the filter fields asked for (``store.fields.FILTER_FIELDS``): only items of
    one of these categories, holding one of these tags at least."""
    since: date | None = None
    until: date | None = None
    public_only: bool = False  # image is a URL from an untrusted caller: public http(s) addresses only
    search_params: tuple[tuple[str, Any], ...] = ()  # index knobs, e.g. (("ef", 128),) or (("nprobe", 16),)
    detect: bool = False  # image queries: embed the largest object the detector finds
    box: Box | None = None  # image queries: embed this part (x0, y0, x1, y1), clipped to the image
    per_item: int | None = None  # group hits per catalog item: at most this many each
    like: tuple[Example, ...] = ()  # more like these (lookalike.examples)
    unlike: tuple[Example, ...] = ()  # and less like these
    hybrid: bool = False  # text queries: fuse keyword (BM25 over name, category, tags) and vector hits
    keywords: bool = False  # text queries: keyword hits alone (BM25), no model
    keyword_weight: float | None = None  # hybrid: weighted fusion, this weight on the keyword side (0..1)
    rrf_k: int | None = None  # hybrid: reciprocal rank fusion's k (default 60)
    names: FieldNames = CLI_NAMES

    def key_params(self) -> dict[str, tuple[str, ...]]:
        """The filter fields asked for by their parameter's name (``categories``), as ``Window.of`` and
        the API take them."""
        from lookalike.store.fields import FILTERS

        return {FILTERS[name].param: values for name, values in self.keys}

    @property
    def has_base(self) -> bool:
        """Whether the query has its own text, image, id or item id (examples alone need none)."""
        given = (self.text, self.image, self.image_bytes, self.id, self.item_id)
        return any(value is not None for value in given)

    @property
    def by_text_or_image(self) -> bool:
        """Whether the query needs the model (a stored id or item id, stored examples and a keyword
        search do not)."""
        base = self.text is not None or self.image is not None or self.image_bytes is not None
        return (base and not self.keywords) or any(example.is_image for example in (*self.like, *self.unlike))


@dataclass(frozen=True)
class Classified:
    """One classified image: its label scores (one row), or why it could not be read."""

    uri: str
    scores: Scores | None
    error: str | None


@dataclass(frozen=True)
class SearchResult:
    took_ms: float
    hits: list[Hit]
    warnings: list[str] = field(default_factory=list)
    query_box: Box | None = None  # the part of the query image that was embedded (--detect, --box)

    def to_dict(self) -> dict[str, Any]:
        return {
            "took_ms": round(self.took_ms, 3),
            "hits": [hit.to_dict() for hit in self.hits],
            "warnings": list(self.warnings),
            "query_box": list(self.query_box) if self.query_box else None,
        }


def mostly_non_latin(text: str) -> bool:
    """Whether most letters of a text are in a script other than Latin (e.g. 萨摩耶, собака)."""
    letters = [ch for ch in text if unicodedata.category(ch).startswith("L")]
    foreign = sum(1 for ch in letters if not unicodedata.name(ch, "").startswith("LATIN"))
    return bool(letters) and foreign * 2 > len(letters)


def day_window(
    since: date | None, until: date | None, names: FieldNames = CLI_NAMES
) -> tuple[int | None, int | None]:
    """Whole UTC days, inclusive → [start, end) in unix seconds."""
    if since and until and since > until:
        raise ConfigError(f"{names.since} {since} is after {names.until} {until}.")

    def midnight(day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())

    # The last day a date can name has no day after it: that window simply has no end.
    end = midnight(until + timedelta(days=1)) if until and until < date.max else None
    return (midnight(since) if since else None, end)


def parse_index_params(text: str | None, flag: str = "--index-params") -> dict[str, Any] | None:
    if not text:
        return None
    example = '{"nlist": 1024}' if flag == "--index-params" else '{"ef": 128}'
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} must be a JSON object, e.g. '{example}': {exc}") from exc
    if not isinstance(params, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in params.values()
    ):
        raise ConfigError(f"{flag} must be a JSON object of numbers, e.g. '{example}'.")
    return params
