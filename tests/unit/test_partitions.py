from __future__ import annotations

from datetime import UTC, datetime

from lookalike.store.partitions import month_start, partition_for
from lookalike.store.window import Window


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())  # type: ignore[misc]


def test_partition_is_the_utc_month() -> None:
    assert partition_for(ts(2023, 11, 19)) == "m2023_11"
    assert partition_for(ts(2023, 11, 30, 23, 59, 59)) == "m2023_11"
    assert partition_for(ts(2023, 12, 1)) == "m2023_12"


def test_month_start_round_trips() -> None:
    assert month_start("m2023_11") == ts(2023, 11, 1)
    assert month_start("_default") is None


def test_window_selects_only_overlapping_months_and_every_partition_that_is_no_month() -> None:
    existing = ["_default", "m2023_10", "m2023_11", "m2023_12", "m2024_01"]

    def months(since: int | None, until: int | None) -> list[str] | None:
        return Window(since=since, until=until).partitions(existing)

    # A partition that is no month (``_default``, one another program made) is read and filtered by row.
    assert months(ts(2023, 11, 19), ts(2023, 11, 24)) == ["_default", "m2023_11"]
    assert months(ts(2023, 11, 30), ts(2023, 12, 2)) == ["_default", "m2023_11", "m2023_12"]
    assert months(None, ts(2023, 11, 1)) == ["_default", "m2023_10"]
    assert months(ts(2023, 12, 1), None) == ["_default", "m2023_12", "m2024_01"]
    assert months(ts(2025, 1, 1), None) == ["_default"]
    assert months(None, None) is None  # no time asked: every partition
