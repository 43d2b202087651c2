"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator

from lookalike.store.rows import identity_problem


def _whole(name: str) -> AfterValidator:
    """A value that names stored items: over its limit in UTF-8 bytes it is refused (422), never cut."""

    def check(value: str) -> str:
        problem = identity_problem(name, value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


SourceName = Annotated[str, Field(min_length=1), _whole("source")]
SourceFilter = Annotated[str, _whole("source")]
ItemIdText = Annotated[str, Field(min_length=1), _whole("item_id")]
FilterText = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^[^\x00-\x1f]*$")]
"""A category or a tag to filter by (one longer than the field holds is cut as a stored one was)."""


def _example(text: str) -> str:
    from lookalike.errors import ConfigError
    from lookalike.examples import parse_example

    try:
        parse_example(text, "example", paths=False)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return text


ExampleText = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_example)]
"""A liked or unliked example: id:N, item:ITEM_ID or an http(s) image URL."""


class SearchFields(BaseModel):
    """One of ``text``, ``image_url``, ``id`` or ``item_id``, with optional filters and paging (the
    filter fields of the field table are added to it as ``SearchRequest``)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=2000)
    image_url: str | None = Field(default=None, max_length=4096, pattern=r"^[hH][tT][tT][pP][sS]?://")
    id: int | None = Field(default=None, ge=0, lt=2**63, description="A stored item's id (63-bit).")
    item_id: ItemIdText | None = Field(
        default=None, description="A catalog item id: lookalikes of its picture."
    )
    k: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=10000, description="Skip this many of the best hits (paging).")
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0, description="Only hits with this cosine.")
    sources: list[SourceFilter] | None = Field(default=None, max_length=100)
    since: date | None = None
    until: date | None = None
    detect: bool = Field(default=False, description="Image queries: embed the largest detected object.")
    box: str | None = Field(
        default=None, max_length=80, description="Image queries: embed this part, 'x0,y0,x1,y1' in pixels."
    )
    per_item: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="At most this many hits per catalog item_id, each product ranked by its best picture "
        "(k and offset then count products; an item without an item_id is a product of its own).",
    )
    like: list[ExampleText] | None = Field(
        default=None,
        max_length=20,
        description="More like these: id:N (a stored id), item:ITEM_ID (a catalog item) or an http(s) "
        "image URL. Alone they are the query, or they refine text, image_url, id or item_id.",
    )
    unlike: list[ExampleText] | None = Field(
        default=None,
        max_length=20,
        description="Less like these, written as like: "
        "query = normalise(mean(liked and the query) - 0.5 * mean(unliked)).",
    )
    hybrid: bool = Field(
        default=False,
        description="Text queries: fuse keyword hits (BM25 over name, category and tags) with the vector "
        "hits, by reciprocal rank fusion or keyword_weight; each hit then has its ranks.",
    )
    keywords: bool = Field(
        default=False, description="Text queries: keyword hits alone (BM25 over name, category and tags)."
    )
    keyword_weight: float | None = Field(
        default=None, ge=0.0, le=1.0, description="With hybrid: weighted fusion, this weight on keywords."
    )
    rrf_k: int | None = Field(
        default=None, ge=1, le=100_000, description="With hybrid: reciprocal rank fusion's k (default 60)."
    )

    @model_validator(mode="after")
    def exactly_one_query(self) -> SearchFields:
        given = [v for v in (self.text, self.image_url, self.id, self.item_id) if v is not None]
        if len(given) > 1 or (not given and not self.like):
            raise ValueError(
                "give exactly one of text, image_url, id or item_id (or upload an image as multipart form data), "
                "or like"
            )
        return self


def _filter_fields() -> dict[str, Any]:
    """A list field per filter field of the field table (``categories``, ``tags``)."""
    from lookalike.store.fields import FILTERS

    return {
        spec.param: (
            list[FilterText] | None,
            Field(default=None, max_length=100, description=f"Only items {spec.help}: any of these."),
        )
        for spec in FILTERS.values()
    }


if TYPE_CHECKING:
    SearchRequest = SearchFields
else:
    SearchRequest = create_model(
        "SearchRequest", __base__=SearchFields, __doc__=SearchFields.__doc__, **_filter_fields()
    )


def _item_fields(*, hit: bool) -> dict[str, Any]:
    """The field table's fields as pydantic field definitions: an item's (``ItemOut``), or a hit's
    (``HitOut``: the fields shown in a hit, a crop's box as four numbers, empty crop fields null)."""
    from lookalike.store.fields import FIELDS, Kind

    shown: dict[str, Any] = {}
    for spec in FIELDS:
        if hit and not spec.in_hit:
            continue
        kind: Any = list[str] if spec.kind is Kind.TEXTS else spec.python
        if hit and (spec.hit_value is not None or spec.name == "det_score"):
            kind = kind | None
        default: Any = ... if spec.name == "id" else spec.empty()
        if isinstance(default, tuple):
            default = []
        shown[spec.name] = (kind, default)
        if hit and spec.name == "id":
            shown["score"] = (float, ...)
    if hit:
        shown["box"] = (list[int] | None, Field(default=None, description="A detected crop: x0, y0, x1, y1."))
        shown["det_score"] = (float | None, None)
        shown["ranks"] = (
            dict[str, int | None] | None,
            Field(
                default=None,
                description="A hybrid search's hit: its rank (from 1) among the vector and the keyword hits "
                '(null: not among them), e.g. {"vector": 3, "keyword": 1}.',
            ),
        )
    return shown


if TYPE_CHECKING:
    HitOut = BaseModel
    ItemOut = BaseModel
else:
    HitOut = create_model("HitOut", **_item_fields(hit=True))
    ItemOut = create_model(
        "ItemOut",
        **_item_fields(hit=False),
        pdq=(str | None, Field(default=None, description="The picture's PDQ hash (hex), if it was hashed.")),
        pdq_quality=(int | None, Field(default=None, description="The PDQ hash's quality (0-100).")),
    )


class SearchResponse(BaseModel):
    took_ms: float
    hits: list[HitOut]
    warnings: list[str] = []
    query_box: list[int] | None = None  # the part of the query image that was embedded


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(
        min_length=1, max_length=10_000, description="Server paths, folders, catalogs or URLs."
    )
    source: SourceName | None = None
    detect: bool = Field(default=False, description="Also store each detected object as its own item.")


class SkippedOut(BaseModel):
    uri: str
    reason: str


class JobOut(BaseModel):
    id: str
    kind: str  # index | scan | duplicates
    status: str  # queued | running | done | failed
    total: int | None
    done: int
    indexed: int
    already_indexed: int
    crops: int = 0
    blocked: int = (
        0  # refused by a hash bank (a take-down's block list); among the skipped with their reasons
    )
    flagged: int = 0  # flags raised for stored pictures by policies and hash banks
    alerts: list[str] = []  # hash banks' floods noticed by this run
    skipped: list[SkippedOut]
    error: str | None
    elapsed_s: float
    result: dict[str, Any] | None = None
    report_url: str | None = None


ReportFormat = Literal["json", "csv", "html"]


class ScanRequest(BaseModel):
    """A compliance scan: label tables as TOML text, a window, and the report format."""

    model_config = ConfigDict(extra="forbid")

    labels: str = Field(
        min_length=1,
        max_length=100_000,
        description="TOML: [labels.NAME] with prompts = [...], optional threshold and negative_prompts.",
    )
    since: date | None = None
    until: date | None = None
    sources: list[SourceFilter] | None = Field(default=None, max_length=100)
    min_score: float | None = Field(default=None, ge=-1, le=1)
    format: ReportFormat = "json"


class DuplicatesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(default=0.95, ge=-1, le=1)
    by: Literal["vector", "pdq"] = Field(default="vector", description="CLIP cosine, or PDQ hash distance.")
    max_distance: int = Field(
        default=31, ge=0, le=256, description="With by=pdq: the largest Hamming distance."
    )
    sources: list[SourceFilter] | None = Field(default=None, max_length=100)
    format: ReportFormat = "json"


class PartitionOut(BaseModel):
    name: str
    rows: int
    first_day: date | None
    last_day: date | None


class ErrorOut(BaseModel):
    detail: Any
