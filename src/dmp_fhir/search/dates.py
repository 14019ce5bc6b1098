"""FHIR date/dateTime/instant values as UTC ranges, shared by extraction and filters.

FHIR compares dates as *ranges*: ``2024`` is the whole year, ``2024-03-05T10:00`` a whole minute.
Every value becomes ``(lo, hi)``: the first and the last millisecond of its range, both inclusive,
as timezone-aware UTC datetimes. Milliseconds because BSON dates have millisecond precision: what we
compute is exactly what the database stores and compares, with no rounding surprise at the edges.
A value without a timezone is taken as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

DATETIME_MIN = datetime(1, 1, 1, tzinfo=UTC)
DATETIME_MAX = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

_PATTERN = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)

DateRange = tuple[datetime, datetime]


@lru_cache(maxsize=4096)  # a resource repeats its dates (period, period-start...)
def parse_range(text: str) -> DateRange | None:
    """``(lo, hi)`` of a FHIR date, dateTime or instant at its own precision; None when malformed.

    Accepts year, year-month, date, and date + ``Thh:mm`` (a search-only precision), ``:ss``, a
    fraction of any length, and ``Z`` or ``±hh:mm``.
    """
    match = _PATTERN.fullmatch(text)
    if match is None:
        return None
    g = match.groupdict()
    try:
        year = int(g["y"])
        if g["m"] is None:
            lo = datetime(year, 1, 1, tzinfo=UTC)
            end = _add_months(lo, 12)
        elif g["d"] is None:
            lo = datetime(year, int(g["m"]), 1, tzinfo=UTC)
            end = _add_months(lo, 1)
        elif g["H"] is None:
            lo = datetime(year, int(g["m"]), int(g["d"]), tzinfo=UTC)
            end = _plus(lo, timedelta(days=1))
        else:
            lo, end = _time_range(year, g)
    except (ValueError, OverflowError):
        return None
    return lo, DATETIME_MAX if end is None else max(lo, end - _MS)


def _time_range(year: int, g: dict[str, str | None]) -> tuple[datetime, datetime | None]:
    """Range of a value with a time part: minute, second or fraction precision, shifted to UTC."""
    hour, minute = int(g["H"] or 0), int(g["M"] or 0)
    if hour > 23:
        raise ValueError("hour out of range")
    second, micros, width = 0, 0, timedelta(minutes=1)
    if g["S"] is not None:
        second, width = int(g["S"]), timedelta(seconds=1)
        fraction = g["f"]
        if fraction is not None:
            digits = len(fraction)
            micros = int((fraction + "000000")[:6])
            width = timedelta(microseconds=10 ** (6 - digits)) if digits < 6 else timedelta(0)
    start = datetime(year, int(g["m"] or 1), int(g["d"] or 1), hour, minute, second, micros,
                     tzinfo=UTC)  # fmt: skip
    start -= _offset(g["tz"])
    lo = start.replace(microsecond=start.microsecond // 1000 * 1000)  # floor to the millisecond
    end = _plus(start, width)
    # ceil the exclusive end to a millisecond (an instant at full precision covers its millisecond)
    if end is not None and (end.microsecond % 1000 or width == timedelta(0)):
        end = _plus(end.replace(microsecond=end.microsecond // 1000 * 1000), _MS)
    return lo, end


def _offset(tz: str | None) -> timedelta:
    if tz is None or tz == "Z":
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError("timezone offset out of range")
    return sign * timedelta(hours=hours, minutes=minutes)


def _add_months(start: datetime, months: int) -> datetime | None:
    """``start`` (the first of a month) plus ``months``; None past year 9999 (an open end)."""
    index = start.year * 12 + start.month - 1 + months
    year, month = divmod(index, 12)
    if year > 9999:
        return None
    return start.replace(year=year, month=month + 1)


def _plus(start: datetime, delta: timedelta) -> datetime | None:
    """``start + delta``, None past the last representable instant (an open end)."""
    try:
        return start + delta
    except OverflowError:
        return None


def period_range(period: dict[str, object]) -> DateRange | None:
    """``(lo, hi)`` of a Period: from its start's lo to its end's hi, open ends unbounded."""
    start, end = period.get("start"), period.get("end")
    if start is None and end is None:
        return None
    lo, hi = DATETIME_MIN, DATETIME_MAX
    if isinstance(start, str):
        parsed = parse_range(start)
        if parsed is None:
            return None
        lo = parsed[0]
    if isinstance(end, str):
        parsed = parse_range(end)
        if parsed is None:
            return None
        hi = parsed[1]
    return lo, hi
