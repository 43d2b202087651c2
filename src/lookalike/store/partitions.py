"""Monthly partitions by created_at (UTC): a time window searches only the months it overlaps."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_NAME = re.compile(r"^m(\d{4})_(\d{2})$")


def partition_for(created_at: int) -> str:
    """The partition name for a unix time, e.g. ``m2023_11``."""
    when = datetime.fromtimestamp(created_at, UTC)
    return f"m{when.year:04d}_{when.month:02d}"


def month_start(name: str) -> int | None:
    """Unix time of the first second of a partition's month; None for other partitions."""
    match = _NAME.match(name)
    if not match:
        return None
    return int(datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC).timestamp())


def next_month(start: int) -> int:
    """Unix time of the first second of the month after the one ``start`` falls in."""
    first = datetime.fromtimestamp(start, UTC)
    year, month = (first.year + 1, 1) if first.month == 12 else (first.year, first.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


def partitions_before(existing: list[str], before: int) -> list[str]:
    """Monthly partitions whose whole month ends on or before ``before`` (strictly older)."""
    return [
        name for name in existing if (start := month_start(name)) is not None and next_month(start) <= before
    ]


def partitions_between(existing: list[str], since: int | None, until: int | None) -> list[str]:
    """The existing monthly partitions that can hold items with ``since <= created_at < until``."""
    chosen = []
    for name in existing:
        start = month_start(name)
        if start is None:
            continue
        end = next_month(start)
        if (since is None or end > since) and (until is None or start < until):
            chosen.append(name)
    return chosen
