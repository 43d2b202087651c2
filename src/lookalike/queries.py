"""What a request to the service says and what it gets back: queries, results, date windows, index options."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lookalike.errors import ConfigError
from lookalike.scan import Scores
from lookalike.store import Hit
from lookalike.store.models import Box


@dataclass(frozen=True)
class Query:
    """One search: exactly one of text, image (path or URL), image_bytes or id."""

    text: str | None = None
    image: str | None = None
    image_bytes: bytes | None = None
    id: int | None = None
    k: int = 10
    sources: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None
    public_only: bool = False  # image is a URL from an untrusted caller: public http(s) addresses only
    search_params: tuple[tuple[str, Any], ...] = ()  # index knobs, e.g. (("ef", 128),) or (("nprobe", 16),)
    detect: bool = False  # image queries: embed the largest object the detector finds
    box: Box | None = None  # image queries: embed this part (x0, y0, x1, y1), clipped to the image


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


def day_window(since: date | None, until: date | None) -> tuple[int | None, int | None]:
    """Whole UTC days, inclusive → [start, end) in unix seconds."""
    if since and until and since > until:
        raise ConfigError(f"--since {since} is after --until {until}.")

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
