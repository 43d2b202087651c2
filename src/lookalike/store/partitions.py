"""Monthly partitions by created_at (UTC): a time window searches only the months it overlaps.

Month arithmetic is done on integers, not ``datetime``: a partition name that some older
version or a foreign program created for year 9999 must still list, count and drop
(``datetime`` cannot represent the month after December 9999).
"""

from __future__ import annotations

import re

from lookalike.errors import ConfigError

_NAME = re.compile(r"^m(\d{4})_(\d{2})$")

MIN_TIME = 0
"""1970-01-01T00:00:00Z: the earliest created_at lookalike stores."""
MAX_TIME = 7_258_118_400
"""2200-01-01T00:00:00Z (exclusive): the latest; a later date is a typo, a unit error or an attack."""
DAY = 86_400


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _civil_from_days(days: int) -> tuple[int, int]:
    """(year, month) of a day count since 1970-01-01."""
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month


def check_time(created_at: int) -> int:
    """``created_at`` itself when lookalike can store it (1970 ≤ t < 2200, an integer).

    Raises:
        ConfigError: outside that range, with the date in words.
    """
    if isinstance(created_at, bool) or not isinstance(created_at, int):
        raise ConfigError(f"created_at must be whole unix seconds, got {created_at!r}")
    if not MIN_TIME <= created_at < MAX_TIME:
        hint = (
            " (it looks like milliseconds; give seconds)" if MAX_TIME <= created_at < MAX_TIME * 1000 else ""
        )
        raise ConfigError(
            f"created_at {created_at} is outside 1970-01-01 .. 2199-12-31{hint}; lookalike stores "
            "dates in that range only."
        )
    return created_at


def month_name(created_at: int) -> str:
    """The partition name for any unix time, unchecked: for rows already stored (say, in 9999)."""
    year, month = _civil_from_days(int(created_at) // DAY)
    return f"m{year:04d}_{month:02d}"


def partition_for(created_at: int) -> str:
    """The partition name for a unix time, e.g. ``m2023_11``.

    Raises:
        ConfigError: the time is outside what lookalike stores (see ``check_time``).
    """
    return month_name(check_time(created_at))


def month_start(name: str) -> int | None:
    """Unix time of the first second of a partition's month; None for other partitions."""
    match = _NAME.match(name)
    if not match or not 1 <= int(match[2]) <= 12:
        return None
    return _days_from_civil(int(match[1]), int(match[2]), 1) * DAY


def next_month(start: int) -> int:
    """Unix time of the first second of the month after the one ``start`` falls in (any year)."""
    year, month = _civil_from_days(start // DAY)
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return _days_from_civil(year, month, 1) * DAY


def partitions_before(existing: list[str], before: int) -> list[str]:
    """Monthly partitions whose whole month ends on or before ``before`` (strictly older)."""
    return [
        name for name in existing if (start := month_start(name)) is not None and next_month(start) <= before
    ]
