"""Times as the history's ``time`` column and the options' bounds (``--since``, a feedback
export's ``since=``) write them: read once here, so the command line and the API read a bound
alike, and ``serve/`` needs nothing from ``training/`` to read one."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# A date written with numbers alone, day and month in either order, the year last (four digits or
# two): 04/01/2023, 4.1.2023, 04-01-23.
NUMERIC_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](?:\d{4}|\d{2})(?:[\sT]|$)")
# A time of day alone (Excel's time cells, a 时间 column beside a 日期 one): pandas reads it as that
# time today, which put every ticket inside any --since window.
TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?$")


# A time of day written with its zone: an offset (+08:00, +0800, -05), Z, or UTC/GMT after it.
ZONED = re.compile(
    r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|UTC|GMT|(?:UTC|GMT)?[+-]\d{2}(?::?\d{2})?)$",
    re.IGNORECASE,
)


class MixedDateOrder(ValueError):
    """A column of numeric dates some of which can only be day first and some only month first."""

    def __init__(self, day_first: int, month_first: int) -> None:
        super().__init__("numeric dates in both orders")
        self.day_first = day_first  # the position of a value that can only be day first
        self.month_first = month_first  # and of one that can only be month first


# A date written in Chinese as text (2024年1月5日, 2024年01月05日 08:30, 2024年1月5日8时30分): a CSV
# export of a workbook whose cells had Chinese Excel's date format, read as "is no date or time".
# Without its year (1月5日) it stays unread: which year cannot be told.
CHINESE_DATE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月(?:\s*(\d{1,2})\s*[日号])?")
CHINESE_TIME = re.compile(
    r"(?<!\d)(\d{1,2})\s*[时點点]\s*(?:(\d{1,2})\s*分\s*(?:(\d{1,2})\s*秒)?)?"
)


def _chinese_date(found: re.Match[str]) -> str:
    year, month, day = found.groups()
    return f"{year}-{int(month):02d}-{int(day or 1):02d} "  # apart from a time written after it


def _chinese_time(found: re.Match[str]) -> str:
    hour, minute, second = found.groups()
    return f" {int(hour):02d}:{int(minute or 0):02d}:{int(second or 0):02d}"


def time_text(values: pd.Series) -> pd.Series:
    """Time cells as :func:`parse_times` reads them: stripped text, a time of day alone blank, a
    date written in Chinese (:data:`CHINESE_DATE`) in ISO 8601's order."""
    text = values.fillna("").astype(str).str.strip().reset_index(drop=True)
    chinese = text.str.contains("年", regex=False)
    if chinese.any():
        text[chinese] = (
            text[chinese]
            .str.replace(CHINESE_DATE, _chinese_date, regex=True)
            .str.replace(CHINESE_TIME, _chinese_time, regex=True)
            .str.replace(r"\s+", " ", regex=True)
            .str.strip()
        )
    return text.mask(text.str.match(TIME_OF_DAY), "")  # no date: unreadable, not today


def date_orders(text: pd.Series) -> tuple[Any, Any, Any, Any]:
    """Of :func:`time_text`: which are numeric dates (:data:`NUMERIC_DATE`), the positions of
    those that can only be day first and only month first, and which could be either."""
    import numpy as np

    parts = text.str.extract(NUMERIC_DATE)
    numeric = parts[0].notna().to_numpy()
    if not numeric.any():
        none = np.zeros(0, dtype=int)
        return numeric, none, none, numeric
    first, second = parts[0].astype(float).to_numpy(), parts[1].astype(float).to_numpy()
    only_day_first = (numeric & (first > 12) & (second <= 12)).nonzero()[0]
    only_month_first = (numeric & (second > 12) & (first <= 12)).nonzero()[0]
    either = numeric & (first <= 12) & (second <= 12)
    return numeric, only_day_first, only_month_first, either


def in_zone(value: datetime, zone: str) -> datetime:
    """``value`` with its offset, or, without one, as a wall-clock time in the IANA ``zone``."""
    from zoneinfo import ZoneInfo

    return value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(zone))


def parse_times(values: pd.Series, dayfirst: bool | None = None, zone: str = "UTC") -> pd.Series:
    """Ticket times as UTC timestamps; ``NaT`` where a value is blank or cannot be read.

    Times without a zone are wall-clock times in the IANA ``zone`` (``PAIDAN_TIMEZONE``; a
    local time that a clock change skips is moved past it, one it repeats is the first). The
    common case, one format
    for the whole column (``2019/4/25 9:32:09``, ISO 8601, Excel's cells), is parsed at once;
    values in another format are then parsed one by one. Dates of numbers alone (``04/01/2023``)
    are read in one order for the whole column: day first when some value can only be read so
    (``15/01/2023``), else month first, as pandas reads them; or in the order ``dayfirst`` says,
    when given (a column read a chunk at a time, whose order the whole column tells).

    Raises
    ------
    MixedDateOrder
        When some numeric dates can only be day first and others only month first (unless
        ``dayfirst`` is given).
    """
    import warnings

    import pandas as pd

    text = time_text(values)
    numeric, only_day_first, only_month_first, _ = date_orders(text)
    if dayfirst is None:
        if len(only_day_first) and len(only_month_first):
            raise MixedDateOrder(int(only_day_first[0]), int(only_month_first[0]))
        dayfirst = bool(len(only_day_first))
    blank = text[text == ""]
    pieces = [pd.to_datetime(blank.where(blank != ""), utc=True)]  # NaT
    with warnings.catch_warnings():
        # pandas warns when it has to guess a format per element; that is what the second pass is for.
        warnings.simplefilter("ignore", UserWarning)
        # Numeric dates and the rest apart: the format pandas infers from a group's first value
        # is used for the whole group, and the retry reads in the same order.
        for group, order in ((numeric, dayfirst), (~numeric & (text != "").to_numpy(), False)):
            if not group.any():
                continue
            some = text[group]
            parsed = pd.to_datetime(some, errors="coerce", utc=True, dayfirst=order)
            retry = parsed.isna()
            if retry.any():
                parsed[retry] = pd.to_datetime(
                    some[retry], errors="coerce", utc=True, format="mixed", dayfirst=order
                )
            pieces.append(parsed)
    times = pd.concat(pieces).sort_index()
    if zone != "UTC":
        import numpy as np

        naive = times.notna().to_numpy() & ~text.str.contains(ZONED).to_numpy()
        if naive.any():
            wall = (
                times[naive]
                .dt.tz_convert(None)
                .dt.tz_localize(
                    zone,
                    ambiguous=np.ones(int(naive.sum()), dtype=bool),
                    nonexistent="shift_forward",
                )
            )
            times[naive] = wall.dt.tz_convert("UTC")
    times.index = values.index
    return times


def parse_bound(text: str, zone: str = "PAIDAN_TIMEZONE or --timezone") -> datetime:
    """A time typed as an option's bound (``--since``, ``--history-since``, ``--feedback-since``),
    read as a ``time`` cell is (:func:`parse_times`): without a zone it is naive (the caller
    places it in ``PAIDAN_TIMEZONE``, :func:`in_zone`), with an offset it keeps it (a naive or an
    offset-bearing :class:`~datetime.datetime`).

    The option took four ``strptime`` formats, fewer than the column reads: ``2026-06-01
    06:00:00+08:00`` (a space and an offset) was refused, the ``T`` form of it taken. ISO 8601 is
    read first as Python reads it (any year: ``0001-01-01`` is before every ticket, where pandas
    holds 1677 to 2262 only), any other form as the column's cells. A date of numbers alone that
    reads either way (``04/01/2026``) is refused: a column's other dates tell its order, one bound
    has none.

    ``zone`` says, in the error, where a time without a zone takes its zone from: the command
    line's words by default, the server's setting for the HTTP export.

    Raises
    ------
    ValueError
        For a value that is no time, saying which forms are read.
    """
    import pandas as pd

    value = text.strip()
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    cells = time_text(pd.Series([value]))
    _, _, _, either = date_orders(cells)
    if either.any():
        raise ValueError(
            f"{value!r} can be read day first or month first; write the date year first, "
            "year-month-day (2026-04-01 for 1 April 2026)"
        )
    utc = parse_times(pd.Series([value])).iat[0]
    if pd.isna(utc):
        raise ValueError(
            f"{value!r} is no date or time; write e.g. 2026-06-01, 2026-06-01 06:00:00, "
            f"2026-06-01 06:00:00+08:00 or 2026/6/1 6:00 (a time without a zone is in {zone}, "
            "UTC by default)"
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            typed = pd.to_datetime(value, format="mixed")
        except (ValueError, OverflowError):
            typed = None
    if typed is not None and typed.tzinfo is not None and typed == utc:
        return typed.to_pydatetime()  # as given, with its offset
    if typed is not None and typed.tzinfo is None:
        return utc.tz_localize(None).to_pydatetime()  # no zone: UTC, naive as typed
    return utc.to_pydatetime()
