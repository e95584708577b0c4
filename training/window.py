"""A recent window of a labelled history: the tickets since a date, or the newest N of them.

A city's history outgrows what one training run can read (two million tickets would take a day
and more memory than a small server has), and its oldest tickets name departments that have since
been merged or renamed. ``paidan train --since`` / ``--max-rows`` and ``paidan retrain
--history-since`` / ``--history-max-rows`` train on the recent part only; the window is recorded
in the model's metadata, so the model can be rebuilt from the same files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.text import counted, mask_label, quoted
from model.tickets import (
    PATH_COL,
    ROW_COL,
    SOURCE_COL,
    ColumnMap,
    NamedPath,
    TicketFileError,
    as_utc,
    like_hint,
    row_place,
    time_column_note,
)
from model.times import (
    TIME_OF_DAY,
    ZONED,
    MixedDateOrder,
    date_orders,
    in_zone,
    parse_times,
    time_text,
)
from training.validate import TRAIN_OPTIONS, Options, TrainingDataError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

# How many rows without a readable time an error lists.
MAX_CITED = 5
# How much of an unreadable time cell an error quotes: a time is shorter; a longer cell is text (a
# note, or a text column mapped as the time by mistake).
MAX_QUOTED = 40


@dataclass(frozen=True)
class Window:
    """Which part of the history to train on; an empty window keeps every row."""

    since: datetime | None = None
    max_rows: int | None = None
    # The IANA zone of times written without one, the cells' and ``since``'s (PAIDAN_TIMEZONE).
    zone: str = "UTC"

    def __post_init__(self) -> None:
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be 1 or more, not {self.max_rows}")
        if self.since is not None:
            # A bound typed without a zone is a wall-clock time there, as the cells are.
            object.__setattr__(self, "since", in_zone(self.since, self.zone))

    def __bool__(self) -> bool:
        return self.since is not None or self.max_rows is not None


# Excel's serial day number (days since 1899-12-30; 43470.583 is 2019-01-05 14:00), as a date
# column formatted "General" (常规) holds it, and its CSV export writes it: five digits are
# 1927-05-18 to 2173-10-14.
_EXCEL_SERIAL = re.compile(r"^\d{5}(?:\.\d+)?$")
# A Unix time, seconds (ten digits: 2001-09-09 to 2286-11-20) or milliseconds since 1970, as JSON
# exports write times; not read as one: 20190105 is a date, and a number's unit cannot be told.
_UNIX_TIME = re.compile(r"^\d{10}(?:\d{3})?(?:\.\d+)?$")


# A date whose year is written with two digits (19-01-05, 05/01/19, 190105): which part is the
# year cannot be told, and pandas reads 19-01-05 as 19 January 2005.
_TWO_DIGIT_YEAR = re.compile(r"^(?:\d{1,2}[/.-]\d{1,2}[/.-]\d{2}|\d{6})(?:[\sT]|$)")
# The first year a 12345 ticket can plausibly have: 0019-01-05 (a typo of 2019) is read as year 19.
FIRST_YEAR = 1990


def _quoted(value: str) -> str:
    """A cell's value as an error quotes it: masked (it may be an operator's note holding the
    caller's phone number, or a complaint when the text column was mapped as the time) and cut to
    ``MAX_QUOTED`` characters, the row number being what finds it."""
    shown = mask_label(value)
    if len(shown) > MAX_QUOTED:
        return f"{shown[:MAX_QUOTED]!r}… ({len(value):,} characters)"
    return repr(shown)


def _place(df: pd.DataFrame, i: int) -> tuple[str, int, str | None]:
    """Row ``i`` of ``df`` as :func:`model.tickets.row_place` takes it: file, data row, path."""
    path = str(df[PATH_COL].iat[i]) if PATH_COL in df else None
    return str(df[SOURCE_COL].iat[i]), int(df[ROW_COL].iat[i]), path


def _where(df: pd.DataFrame, i: int) -> str:
    return row_place(*_place(df, i))


def _mixed_order_message(column: str, day: tuple[str, str], month: tuple[str, str]) -> str:
    """Dates written in both orders: ``day`` and ``month`` are the first (value, where) of each."""
    return (
        f"the dates in column {quoted(column)} are written in both orders: "
        f"{_quoted(day[0])} ({day[1]}) can only be day first, "
        f"{_quoted(month[0])} ({month[1]}) only month first; "
        "write them as 2026-01-31"
    )


def _blank_files_message(
    option: str, column: str, blank_files: Sequence[str], hint: str | None = None
) -> str:
    """A window needs times, and these files have none written; ``hint``: the column of theirs
    that looks like the time, with the option that maps it (:func:`model.tickets.like_hint`)."""
    names = ", ".join(blank_files[:MAX_CITED])
    like = f"; {hint}" if hint else ""
    return (
        f"{option} needs every ticket's time, and {names} has no ticket times in column "
        f"{quoted(column)} (map yours with --time-col{like})"
    )


def _time_hint(
    headers: dict[str, list[str]] | None, files: Sequence[str], columns: ColumnMap
) -> str | None:
    """The column of the first of ``files`` that looks like the time (受理时间), with the option
    that maps it (:func:`model.tickets.like_hint`); ``None`` when none of them has one.

    The text's, title's, id's and labels' columns were named so when left unmapped, the time's
    was not: a window said "map yours with --time-col" of an export dated in 受理时间.
    """
    for name in files:
        if hint := like_hint("time", (headers or {}).get(name, []), columns):
            return hint
    return None


def _missing_times_message(
    option: str,
    column: str,
    missing: int,
    rows_in: int,
    cited: Sequence[str],
    clock: bool,
    serial: bool = False,
    unix: bool = False,
) -> str:
    """A window needs times, and ``missing`` rows have none readable (the first few ``cited``);
    ``clock``: some is a time of day alone, ``serial``: some is an Excel serial day number,
    ``unix``: some is a Unix time."""
    more = f" and {missing - MAX_CITED:,} more" if missing > MAX_CITED else ""
    hint = (
        " (a time of day has no date: map the column that holds the dates with --time-col)"
        if clock
        else ""
    )
    if serial:
        hint += (
            " (a number such as 43470.583 is Excel's serial day number, what a date column "
            "formatted as General holds: format the column as a date in Excel and save again)"
        )
    if unix:
        hint += (
            " (a number such as 1704412980 is a Unix time, seconds or milliseconds since 1970, "
            "which is not read as a time: export the times as dates)"
        )
    of_rows = counted(rows_in, "row", thousands=True)
    return (
        f"{option} needs every ticket's time, and "
        f"{counted(missing, f'of {of_rows} has', f'of {of_rows} have', thousands=True)} no "
        f"readable time in column {quoted(column)}: {'; '.join(cited)}{more}{hint}. Write "
        "their times as 2026-01-31 or 2026-01-31 08:30:00, or leave those rows out"
    )


def _nothing_since_message(window: Window, since_opt: str, newest: Any, where: str) -> str:
    """No ticket is from ``window.since`` on; ``newest`` (UTC) is the newest, at ``where``."""
    assert window.since is not None
    since = as_utc(window.since)
    # Both in UTC (the bound as typed, with its offset, beside the ticket's UTC time read as a
    # contradiction), and the bound as typed when it had an offset.
    offset = window.since.utcoffset()
    typed = f" {window.since.isoformat()}" if offset is not None and offset != timedelta(0) else ""
    return (
        f"no ticket is from {since:%Y-%m-%d %H:%M:%S} UTC on ({since_opt}{typed}); the "
        f"newest is {newest:%Y-%m-%d %H:%M:%S} UTC, {where}"
    )


def _require_times(df: pd.DataFrame, times: pd.Series, option: str, column: str) -> None:
    """Refuse rows without a readable time, citing the first few (file, row, value)."""
    missing = times.isna().to_numpy()
    if not missing.any():
        return
    raw = df["time"].fillna("").astype(str).str.strip()
    blank_files = [
        str(src) for src, group in raw.groupby(df[SOURCE_COL], sort=False) if (group == "").all()
    ]
    if blank_files:
        raise TrainingDataError(_blank_files_message(option, column, blank_files))
    rows = missing.nonzero()[0]
    cited = [f"{_where(df, i)} ({_quoted(raw.iat[i])})" for i in rows[:MAX_CITED]]
    clock = bool(raw.iloc[rows].str.match(TIME_OF_DAY).any())
    serial = bool(raw.iloc[rows].str.match(_EXCEL_SERIAL).any())
    unix = bool(raw.iloc[rows].str.match(_UNIX_TIME).any())
    raise TrainingDataError(
        _missing_times_message(option, column, len(rows), len(df), cited, clock, serial, unix)
    )


def _zones(text: pd.Series, times: pd.Series) -> tuple[int | None, int | None]:
    """Of readable ``times`` (their cells ``text``, :func:`time_text`): the position of the
    first written with its zone (:data:`ZONED`) and of the first without, ``None`` for none."""
    readable = times.notna().to_numpy()
    zoned = text.str.contains(ZONED).to_numpy()
    with_zone = (readable & zoned).nonzero()[0]
    without = (readable & ~zoned).nonzero()[0]
    return (
        int(with_zone[0]) if len(with_zone) else None,
        int(without[0]) if len(without) else None,
    )


# What each kind of odd date is called in its warning, and what to do about it.
_ODD_DATES = {
    "year": (
        "a year before {first} or after {last}",
        "a typo (0019 for 2019)? the window places them there; correct the year",
    ),
    "two_digit": (
        "a two-digit year",
        "which part is the year cannot be told; write the year in four digits (2019-01-05)",
    ),
}


def _odd_dates(text: pd.Series, times: pd.Series) -> dict[str, Any]:
    """Of readable ``times`` (their cells ``text``, :func:`time_text`): the positions of those
    with an implausible year (before :data:`FIRST_YEAR`, after next year) and of those whose year
    is written with two digits (:data:`_TWO_DIGIT_YEAR`), by kind (:data:`_ODD_DATES`)."""
    readable = times.notna().to_numpy()
    years = times.dt.year.to_numpy()
    last = datetime.now().year + 1
    two_digit = readable & text.str.match(_TWO_DIGIT_YEAR).to_numpy()
    # A two-digit year is said as such only: its century is pandas' guess.
    with_year = readable & ~two_digit & ((years < FIRST_YEAR) | (years > last))
    return {"year": with_year.nonzero()[0], "two_digit": two_digit.nonzero()[0]}


def _warn_odd_dates(column: str, kind: str, count: int, cited: Sequence[str]) -> None:
    """``count`` readable times of ``kind`` (:data:`_ODD_DATES`), the first few ``cited``."""
    what, advice = _ODD_DATES[kind]
    what = what.format(first=FIRST_YEAR, last=datetime.now().year + 1)
    more = f" and {count - len(cited):,} more" if count > len(cited) else ""
    logger.warning(
        "column %s has %s with %s: %s%s; %s",
        quoted(column),
        counted(count, "time", thousands=True),
        what,
        "; ".join(cited),
        more,
        advice,
    )


def _read_as(value: str, time: Any, zone: str) -> str:
    """A cell's value and the date it was read as (in ``zone``, as it was written), for a
    warning."""
    # isoformat, not %Y: strftime writes year 19 as "19".
    return f"{_quoted(value)}, read as {time.tz_convert(zone).isoformat()[:10]}"


def _warn_mixed_zones(
    column: str, zoned: tuple[str, str], naive: tuple[str, str], zone: str = "UTC"
) -> None:
    """Times with a zone and times without in one column: ``zoned`` and ``naive`` are the first
    (value, where) of each."""
    logger.warning(
        "column %s has times with a zone, %s (%s), and times without one, %s (%s), which are "
        "taken as %s (PAIDAN_TIMEZONE or --timezone): if they are in another zone, the window "
        "places them that many hours off; write every time with its zone, or none",
        quoted(column),
        _quoted(zoned[0]),
        zoned[1],
        _quoted(naive[0]),
        naive[1],
        zone,
    )


def select_window(
    df: pd.DataFrame,
    window: Window,
    column: str = "time",
    options: Options = TRAIN_OPTIONS,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of ``df`` inside ``window``, in their input order, and what was done.

    Parameters
    ----------
    df : DataFrame
        Canonical rows (:func:`model.tickets.read_tickets`), with ``time``.
    window : Window
        ``since``: rows from that moment on (every row needs a readable time). ``max_rows``: the
        newest that many: by time when any row has a time (then every row needs a readable one),
        by input order (the last rows of the last file) when no row has one.
    column : str
        The input column the times came from, for messages.
    options : Options, default TRAIN_OPTIONS
        The command's names of ``since`` and ``max_rows``, for messages (``RETRAIN_OPTIONS``
        for retrain).

    Returns
    -------
    rows : DataFrame
        The rows kept (a copy when any was left out).
    info : dict
        ``{}`` for an empty window, else ``since``, ``max_rows``, ``order`` (``"time"`` or
        ``"input"``), ``rows_in``, ``rows_kept`` and, when ordered by time, the ``first`` and
        ``last`` times kept (ISO 8601, UTC).

    Raises
    ------
    TrainingDataError
        If a row the window needs a time of has none that can be read, or no row is left.
    """
    import numpy as np
    import pandas as pd

    if not window:
        return df, {}
    since_opt, max_opt = options.since, options.max_rows
    try:
        times = parse_times(df["time"], zone=window.zone)
    except MixedDateOrder as e:
        raw = df["time"].astype(str).str.strip()
        raise TrainingDataError(
            _mixed_order_message(
                column,
                (raw.iat[e.day_first], _where(df, e.day_first)),
                (raw.iat[e.month_first], _where(df, e.month_first)),
            )
        ) from None
    # Any time written counts, readable or not: a column of times that cannot be read
    # (2023年1月4日) is refused as for --since, not taken for no times and cut in input order,
    # which kept the oldest rows of a newest-first export.
    any_time = bool(df["time"].fillna("").astype(str).str.strip().ne("").any())
    by_time = window.since is not None or any_time
    if by_time:
        _require_times(df, times, since_opt if window.since is not None else max_opt, column)
        zoned, naive = _zones(time_text(df["time"]), times)
        if zoned is not None and naive is not None:
            raw = df["time"].astype(str).str.strip()
            _warn_mixed_zones(
                column,
                (raw.iat[zoned], _where(df, zoned)),
                (raw.iat[naive], _where(df, naive)),
                window.zone,
            )
        raw = df["time"].astype(str).str.strip()
        for kind, rows in _odd_dates(time_text(df["time"]), times).items():
            if len(rows):
                cited = [
                    f"{_where(df, i)} ({_read_as(raw.iat[i], times.iat[i], window.zone)})"
                    for i in rows[:MAX_CITED]
                ]
                _warn_odd_dates(column, kind, len(rows), cited)
    # datetime64 in UTC: an array of a zone-aware Series would be one Timestamp object per row.
    stamps = times.dt.tz_convert(None).to_numpy()
    keep = np.ones(len(df), dtype=bool)
    if window.since is not None:
        since = as_utc(window.since)
        # Compared as Python times first: a bound before or after every ticket (year 1, year
        # 9999) may not fit in the tickets' timestamp type.
        if since > times.max().to_pydatetime():
            keep[:] = False
        elif since > times.min().to_pydatetime():
            keep &= stamps >= pd.Timestamp(since).tz_convert(None).to_datetime64()
        if not keep.any():
            newest = int(stamps.argmax())
            raise TrainingDataError(
                _nothing_since_message(window, since_opt, times.iat[newest], _where(df, newest))
            )
    if window.max_rows is not None and keep.sum() > window.max_rows:
        candidates = keep.nonzero()[0]
        if by_time:
            # The newest by time; among equal times the later rows, as in input order.
            order = np.lexsort((candidates, stamps[candidates]))
            chosen = candidates[order[-window.max_rows :]]
        else:
            chosen = candidates[-window.max_rows :]
        keep = np.zeros(len(df), dtype=bool)
        keep[chosen] = True
    info: dict[str, Any] = {
        "since": as_utc(window.since).isoformat() if window.since is not None else None,
        "max_rows": window.max_rows,
        "order": "time" if by_time else "input",
        "timezone": window.zone,
        "rows_in": len(df),
        "rows_kept": int(keep.sum()),
    }
    if by_time:
        kept = times[keep]
        info["first"] = kept.min().isoformat()
        info["last"] = kept.max().isoformat()
    rows = df if keep.all() else df[keep].copy()
    return rows, info


def describe(info: dict[str, Any]) -> str:
    """One line for the CLI: which rows the window kept, its bound and span in UTC.

    The bound keeps its time of day unless it is midnight: ``--since 2026-06-01T06:00:00+08:00``
    is "from 2026-05-31 22:00:00 on", not "from 2026-05-31 on". In a zone other than UTC
    (``PAIDAN_TIMEZONE``) it is given there too: ``--since 2026-06-01`` in Asia/Shanghai is "from
    2026-05-31 16:00:00 UTC (2026-06-01 00:00:00 Asia/Shanghai) on", not a day before the one typed
    alone.
    """
    from zoneinfo import ZoneInfo

    if not info:
        return ""
    parts = []
    if info["since"] is not None:
        since = datetime.fromisoformat(info["since"])
        clock = "" if since.time() == datetime.min.time() else f" {since:%H:%M:%S}"
        zone = info.get("timezone") or "UTC"
        there = (
            f" UTC ({since.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M:%S} {zone})"
            if zone != "UTC"
            else ""
        )
        parts.append(f"from {since.date().isoformat()}{clock}{there} on")
    if info["max_rows"] is not None:
        parts.append(
            f"the newest {info['max_rows']:,} by time"
            if info["order"] == "time"
            # Not "the newest": a newest-first export's last rows are its oldest.
            else f"the last {counted(info['max_rows'], 'row', thousands=True)} of the input, in "
            "input order (no ticket "
            "has a time, so which are the newest is not known: map the time column with "
            "--time-col)"
        )
    span = f" ({info['first'][:10]} to {info['last'][:10]}, UTC)" if "first" in info else ""
    return (
        f"window: {info['rows_kept']:,} of {counted(info['rows_in'], 'row', thousands=True)} kept, "
        f"{' and '.join(parts)}{span}"
    )


# Rows of a CSV history read at a time by read_window: what it holds besides the rows it keeps.
CHUNK_ROWS = 5_000


class _Restart(Exception):
    """Numeric dates read month first in an earlier chunk turned out to be day first."""


@dataclass
class WindowedRead:
    """What :func:`read_window` read: how many rows, which labels they have, and the window.

    ``select()`` gives what :func:`select_window` gives for all the rows read, or raises its
    error: kept apart so that a caller says first what it says of the rows read (none, no labels).
    """

    rows_in: int
    labelled: list[str]
    _rows: pd.DataFrame | None = None
    _info: dict[str, Any] | None = None
    _error: TrainingDataError | None = None

    def select(self) -> tuple[pd.DataFrame, dict[str, Any]]:
        if self._error is not None:
            raise self._error
        assert self._rows is not None and self._info is not None
        return self._rows, self._info


def labelled_heads(df: pd.DataFrame) -> list[str]:
    """The label heads (department, category) that some row of ``df`` has a label for."""
    from model.tickets import LABELS

    return [head for head in LABELS if (df[head].astype(str).str.strip() != "").any()]


def read_window(
    paths: Sequence[str | Path | NamedPath],
    columns: ColumnMap,
    window: Window,
    headers: dict[str, list[str]] | None = None,
    column: str = "time",
    options: Options = TRAIN_OPTIONS,
    size: int = CHUNK_ROWS,
    repeated_headers: dict[str, list[int]] | None = None,
    on_export: Callable[[Path, str], None] | None = None,
) -> WindowedRead:
    """:func:`model.tickets.read_tickets` and then :func:`select_window`, holding the window only.

    The files are read ``size`` rows at a time, in every format (:func:`model.tickets.table_chunks`),
    and each chunk's rows outside the window are dropped at once; for
    ``max_rows`` the newest so far are kept, never more than twice that many. The rows kept, their
    order and index, the window's info and every error are those of reading everything first:
    a history of millions of tickets trains on its window in the memory of the window.
    ``headers`` and ``repeated_headers`` are filled as :func:`model.tickets.read_tickets` fills
    them; ``on_export`` is called with a file that is the feedback export, as
    :func:`model.tickets.read_tickets` calls it.
    """
    from model.tickets import read_tickets

    if not window:
        df = read_tickets(paths, columns, headers, repeated_headers, on_export)
        return WindowedRead(len(df), labelled_heads(df), df, {})
    args = (paths, columns, window, headers, column, options, size)
    try:
        return _read_window(
            *args, dayfirst=False, repeated_headers=repeated_headers, on_export=on_export
        )
    except _Restart:
        return _read_window(
            *args, dayfirst=True, repeated_headers=repeated_headers, on_export=on_export
        )


def _newest(pool: pd.DataFrame, max_rows: int) -> tuple[list[pd.DataFrame], Any]:
    """The ``max_rows`` newest rows of ``pool`` by time (``_t``), among equal times the later ones
    (``_pos``, as in input order; all times missing: the last rows), in input order; and the
    oldest time among them once there are that many (an older row can't get in; NaT drops
    nothing)."""
    import numpy as np

    if len(pool) > max_rows:
        order = np.lexsort((pool["_pos"].to_numpy(), pool["_t"].dt.tz_convert(None).to_numpy()))
        pool = pool.iloc[np.sort(order[-max_rows:])]
    floor = pool["_t"].dt.tz_convert(None).to_numpy().min() if len(pool) >= max_rows else None
    return [pool], floor


def _read_window(
    paths: Sequence[str | Path | NamedPath],
    columns: ColumnMap,
    window: Window,
    headers: dict[str, list[str]] | None,
    column: str,
    options: Options,
    size: int,
    dayfirst: bool,
    repeated_headers: dict[str, list[int]] | None = None,
    on_export: Callable[[Path, str], None] | None = None,
) -> WindowedRead:
    import numpy as np
    import pandas as pd

    from model.tickets import LABELS, iter_tickets, require_rows

    since_opt, max_opt = options.since, options.max_rows
    since = as_utc(window.since) if window.since is not None else None
    chunks = 0
    rows_in = 0
    labelled: set[str] = set()
    any_time = False
    month_first_either = False  # numeric dates that could be either read month first
    only_day: tuple[str, str] | None = None  # (where, value) of the first that can only be ...
    only_month: tuple[str, str] | None = None
    missing = 0
    cited: list[str] = []
    clock = False
    serial = False
    unix = False
    # The first readable time written with its zone and the first without: (value, file, data
    # row, path), named (row_place) only for the warning, as ``newest`` is.
    zoned: tuple[str, str, int, str | None] | None = None
    naive: tuple[str, str, int, str | None] | None = None
    # By kind (_ODD_DATES): how many times are odd, and the first few (value read as, file, data
    # row, path), named only for the warning.
    odd: dict[str, int] = {kind: 0 for kind in _ODD_DATES}
    odd_cited: dict[str, list[tuple[str, str, int, str | None]]] = {k: [] for k in _ODD_DATES}
    written: dict[str, bool] = {}  # by file: whether any of its rows has a time written
    # (time, file, data row): named (row_place) only for the refusal that shows it; named at every
    # chunk with a newer time, a JSON Lines history read oldest first was read again from its
    # start (for the row's line) once a chunk.
    newest: tuple[Any, str, int, str | None] | None = None  # and its file's path, for the line
    kept: list[pd.DataFrame] = []
    floor: Any = None  # the oldest kept time once max_rows are kept: an older row can't get in
    held = 0  # rows in kept
    for chunk in iter_tickets(paths, columns, headers, size, repeated_headers, on_export):
        chunks += 1
        n = len(chunk)
        positions = np.arange(rows_in, rows_in + n)
        rows_in += n
        labelled |= {head for head in LABELS if (chunk[head].astype(str).str.strip() != "").any()}
        raw = chunk["time"].fillna("").astype(str).str.strip()
        has = raw.ne("")
        any_time |= bool(has.any())
        for src, group in has.groupby(chunk[SOURCE_COL], sort=False):
            written[str(src)] = written.get(str(src), False) or bool(group.any())
        text = time_text(chunk["time"])
        _, day, month, either = date_orders(text)
        if len(day) and only_day is None:
            only_day = (_where(chunk, int(day[0])), raw.iat[int(day[0])])
        if len(month) and only_month is None:
            only_month = (_where(chunk, int(month[0])), raw.iat[int(month[0])])
        mixed = only_day is not None and only_month is not None
        if mixed:
            continue  # refused below; read on for the errors of the files
        if len(day) and not dayfirst:
            if month_first_either:
                raise _Restart
            dayfirst = True
        month_first_either |= not dayfirst and bool(either.any())
        times = parse_times(chunk["time"], dayfirst, window.zone)
        na = times.isna().to_numpy()
        if na.any():
            rows = na.nonzero()[0]
            missing += len(rows)
            cited += [
                f"{_where(chunk, i)} ({_quoted(raw.iat[i])})"
                for i in rows[: MAX_CITED - len(cited)]
            ]
            clock |= bool(raw.iloc[rows].str.match(TIME_OF_DAY).any())
            serial |= bool(raw.iloc[rows].str.match(_EXCEL_SERIAL).any())
            unix |= bool(raw.iloc[rows].str.match(_UNIX_TIME).any())
        for kind, rows in _odd_dates(text, times).items():
            odd[kind] += len(rows)
            odd_cited[kind] += [
                (_read_as(raw.iat[i], times.iat[i], window.zone), *_place(chunk, int(i)))
                for i in rows[: MAX_CITED - len(odd_cited[kind])]
            ]
        if zoned is None or naive is None:
            z, u = _zones(text, times)
            if zoned is None and z is not None:
                zoned = (raw.iat[z], *_place(chunk, z))
            if naive is None and u is not None:
                naive = (raw.iat[u], *_place(chunk, u))
        keep = np.ones(n, dtype=bool)
        if not na.all():
            top = int(times.reset_index(drop=True).idxmax())  # the first of the newest
            if newest is None or times.iat[top] > newest[0]:
                newest = (
                    times.iat[top],
                    str(chunk[SOURCE_COL].iat[top]),
                    int(chunk[ROW_COL].iat[top]),
                    str(chunk[PATH_COL].iat[top]) if PATH_COL in chunk else None,
                )
        if since is not None:
            if na.all() or since > times.max().to_pydatetime():
                keep[:] = False
            elif since > times.min().to_pydatetime():
                stamps = times.dt.tz_convert(None).to_numpy()
                keep &= stamps >= pd.Timestamp(since).tz_convert(None).to_datetime64()
        part = chunk[keep].assign(_pos=positions[keep], _t=times[keep])
        if window.max_rows is None:
            kept.append(part)
            continue
        if floor is not None:
            # A row older than every kept one is never among the newest; one as old as the
            # oldest kept is later in the input, so it stays a candidate (later rows win ties).
            # Dropping them first keeps each chunk's merge and sort to the rows that may get in.
            part = part[~(part["_t"].dt.tz_convert(None).to_numpy() < floor)]
            if part.empty:
                continue
        kept.append(part)
        held += len(part)
        # Cut back to the newest max_rows only once twice as many are held: cut at every chunk,
        # a history read oldest first (each chunk newer than all kept) merged and sorted the
        # whole window once a chunk, quadratic in the history.
        if held > 2 * window.max_rows:
            kept, floor = _newest(pd.concat(kept), window.max_rows)
            held = len(kept[0])
    if window.max_rows is not None and held > window.max_rows:
        kept, floor = _newest(pd.concat(kept), window.max_rows)
    if not chunks:
        raise TicketFileError("no input files were given")
    labels = [head for head in LABELS if head in labelled]

    def refused(message: str) -> WindowedRead:
        return WindowedRead(rows_in, labels, _error=TrainingDataError(message))

    if only_day is not None and only_month is not None:
        return refused(
            _mixed_order_message(column, (only_day[1], only_day[0]), (only_month[1], only_month[0]))
        )
    by_time = since is not None or any_time
    if by_time and missing:
        option = since_opt if since is not None else max_opt
        blank_files = [src for src, any_written in written.items() if not any_written]
        if blank_files:
            hint = _time_hint(headers, blank_files, columns)
            return refused(_blank_files_message(option, column, blank_files, hint))
        return refused(
            _missing_times_message(option, column, missing, rows_in, cited, clock, serial, unix)
        )
    rows = pd.concat(kept) if kept else None
    if rows_in == 0:  # a header alone: the callers say so first (require_rows), in its words
        try:
            require_rows(0, paths)
        except TicketFileError as e:
            return refused(str(e))
    if since is not None and (rows is None or rows.empty):
        assert newest is not None
        where = row_place(newest[1], newest[2], newest[3])
        return refused(_nothing_since_message(window, since_opt, newest[0], where))
    assert rows is not None
    time_note = time_column_note(headers or {}, columns, max_opt) if not by_time else None
    if window.max_rows is not None and time_note:
        logger.warning("%s", time_note)
    if by_time and zoned is not None and naive is not None:
        _warn_mixed_zones(
            column,
            (zoned[0], row_place(*zoned[1:])),
            (naive[0], row_place(*naive[1:])),
            window.zone,
        )
    if by_time:
        for kind, count in odd.items():
            if count:
                cited = [f"{row_place(*c[1:])} ({c[0]})" for c in odd_cited[kind]]
                _warn_odd_dates(column, kind, count, cited)
    rows = rows.set_index(rows["_pos"].to_numpy()).rename_axis(None)
    times = rows["_t"]
    rows = rows.drop(columns=["_pos", "_t"])
    info: dict[str, Any] = {
        "since": since.isoformat() if since is not None else None,
        "max_rows": window.max_rows,
        "order": "time" if by_time else "input",
        "timezone": window.zone,
        "rows_in": rows_in,
        "rows_kept": len(rows),
    }
    if by_time:
        info["first"] = times.min().isoformat()
        info["last"] = times.max().isoformat()
    return WindowedRead(rows_in, labels, rows, info)
