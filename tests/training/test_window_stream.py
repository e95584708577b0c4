"""A window of the history kept while reading it: the rows of reading everything first, in the
memory of the window (``paidan train --since / --max-rows`` on a history larger than memory)."""

from __future__ import annotations

import csv
import json
import random
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from model.resources import sample_path
from model.tickets import ColumnMap, TicketFileError, csv_chunks, read_tickets
from training.validate import TrainingDataError
from training.window import Window, read_window, select_window

HEADER = ["id", "title", "text", "department", "category", "time"]


def write(path: Path, times: list[str], text: str = "路灯不亮，晚上出行不便") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i, t in enumerate(times, 1):
            w.writerow([f"T{i}", "", f"{text}{i}", "市城管局", "市政设施", t])
    return path


def whole(paths: list[Path], window: Window) -> tuple[pd.DataFrame, dict] | str:
    """What reading everything and then keeping the window gives (or its error)."""
    try:
        return select_window(read_tickets(paths), window)
    except TrainingDataError as e:
        return str(e)


def chunked(paths: list[Path], window: Window, size: int) -> tuple[pd.DataFrame, dict] | str:
    try:
        return read_window(paths, ColumnMap(), window, size=size).select()
    except TrainingDataError as e:
        return str(e)


def same(a: tuple[pd.DataFrame, dict] | str, b: tuple[pd.DataFrame, dict] | str) -> None:
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    pd.testing.assert_frame_equal(a[0], b[0])
    assert a[1] == b[1]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two files of times in several formats, with ties across the chunks and the files."""
    rnd = random.Random(7)
    root = tmp_path_factory.mktemp("history")
    formats = [
        "2019/4/25 9:32:09",
        "2020-01-06 12:09:38",
        "2021-03-01T08:00:00+08:00",  # the same moment as the next in UTC
        "2021-03-01",
        "2022-07-01 10:00:00.123456",
    ]
    return [
        write(root / "a.csv", [rnd.choice(formats) for _ in range(400)]),
        write(root / "b.csv", [rnd.choice(formats) for _ in range(150)]),
    ]


WINDOWS = [
    Window(max_rows=1),
    Window(max_rows=37),
    Window(max_rows=10_000),
    Window(since=datetime(2021, 3, 1)),
    Window(since=datetime(2021, 1, 1), max_rows=20),
    Window(since=datetime(2021, 3, 1, 8, tzinfo=timezone(timedelta(hours=8))), max_rows=5),
    Window(since=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=8)))),  # before every ticket
    Window(),
]


@pytest.mark.parametrize("window", WINDOWS, ids=repr)
@pytest.mark.parametrize("size", [7, 1000])
def test_a_window_kept_while_reading_is_the_window_of_everything_read(
    history: list[Path], window: Window, size: int
) -> None:
    same(chunked(history, window, size), whole(history, window))
    # The sample's 952 rows in chunks of 61 or more: 16 chunks cross its boundaries as well, where
    # chunks of 7 (each read with pandas' fixed cost per chunk) took 2-5 s for each window.
    sample = max(size, 61)
    same(chunked([sample_path()], window, sample), whole([sample_path()], window))


def test_numeric_dates_read_in_one_order_for_the_whole_history(tmp_path: Path) -> None:
    # Dates that fit either order come first, chunks before the one that can only be day first:
    # the whole column is day first, so 03/04/2023 is the 3rd of April in every chunk.
    rnd = random.Random(1)
    either = [f"{rnd.randint(1, 12):02d}/{rnd.randint(1, 12):02d}/2023" for _ in range(60)]
    path = write(tmp_path / "d.csv", [*either, "15/01/2023", "03/04/2023", *either[:20]])
    for window in (Window(max_rows=10), Window(since=datetime(2023, 4, 3))):
        same(chunked([path], window, 8), whole([path], window))
    rows, _ = read_window([path], ColumnMap(), Window(since=datetime(2023, 4, 3)), size=8).select()
    assert "03/04/2023" in set(rows["time"])  # April 3rd, not March 4th


def test_errors_name_the_rows_of_the_whole_history(tmp_path: Path) -> None:
    good = [f"2023-01-{d:02d}" for d in range(1, 29)] * 3
    missing = write(tmp_path / "m.csv", [*good, "", "10:30", *good, "三月初", *good])
    both = write(tmp_path / "o.csv", [*good, "15/01/2023", *good, "01/15/2023", "02/02/2023"])
    blank = write(tmp_path / "blank.csv", [""] * 30)
    cases = [
        ([missing], Window(max_rows=5)),
        ([missing], Window(since=datetime(2023, 1, 2))),
        ([both], Window(max_rows=5)),
        ([missing, blank], Window(since=datetime(2023, 1, 2))),
        ([blank], Window(max_rows=5)),  # no times at all: the last rows
        ([write(tmp_path / "g.csv", good)], Window(since=datetime(2099, 1, 1))),
    ]
    for paths, window in cases:
        expected = whole(paths, window)
        same(chunked(paths, window, 10), expected)
    assert "m.csv data row 85 ('')" in str(whole([missing], Window(max_rows=5)))
    assert "o.csv data row 85" in str(whole([both], Window(max_rows=5)))


def test_a_malformed_or_undecodable_line_after_the_first_chunks_is_said_as_before(
    tmp_path: Path,
) -> None:
    long = "路灯不亮" * 100  # 1,000 rows of them fill more than the encoding sample (1 MB)
    rows = "".join(f"T{i},,{long}{i},市城管局,市政设施,2023-01-01\n" for i in range(1, 1001))
    head = ",".join(HEADER) + "\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(head + rows + "T60,,短行\n" + rows, encoding="utf-8")
    with pytest.raises(TicketFileError, match=r"malformed CSV: line 1002: it has 3 fields"):
        list(csv_chunks(bad, ColumnMap(), 10))
    # Bytes that are not UTF-8 anywhere are said before the malformed line, as when the file
    # was decoded whole first; and before a header that lacks the text column.
    undecodable = tmp_path / "undecodable.csv"
    undecodable.write_bytes((head + rows + "T60,,短行\n" + rows).encode() + b"T9,,\xff,a,b,c\n")
    for columns in (ColumnMap(), ColumnMap(text="正文")):
        with pytest.raises(TicketFileError, match=r"line 2003: invalid utf-8-sig bytes"):
            read_window([undecodable], columns, Window(max_rows=3), size=10)


def test_a_window_holds_its_rows_not_the_history(tmp_path: Path) -> None:
    """Memory follows the window, not the file: ``--max-rows 50`` of 20,000 tickets."""
    text = "小区门口的路灯已经坏了两个多月，晚上出行很不方便，老人孩子摔倒过好几次，" * 4
    start = datetime(2020, 1, 1, tzinfo=UTC)
    times = [(start + timedelta(minutes=7 * i)).isoformat() for i in range(20_000)]
    path = write(tmp_path / "big.csv", random.Random(2).sample(times, len(times)), text)

    def peak(read: object) -> int:
        tracemalloc.start()
        try:
            read()  # type: ignore[operator]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    everything = peak(lambda: read_tickets([path]))
    window = peak(lambda: read_window([path], ColumnMap(), Window(max_rows=50), size=1000))
    # Reading everything holds every row (some 30 MB here); the window, a chunk and 50 rows.
    assert window * 5 < everything, (window, everything)
    rows, info = read_window([path], ColumnMap(), Window(max_rows=50), size=1000).select()
    assert info["rows_in"] == 20_000 and len(rows) == 50
    assert sorted(rows["time"]) == sorted(times)[-50:]


@pytest.mark.parametrize(
    "window", [Window(since=datetime(2023, 1, 1, tzinfo=UTC)), Window(max_rows=5)]
)
def test_a_header_alone_is_refused_in_words_not_an_assertion(
    tmp_path: Path, window: Window
) -> None:
    # retrain --history <a header alone> --history-since 2023-01-01 stopped on an AssertionError
    # (a traceback) once the window was kept while reading.
    path = tmp_path / "history.csv"
    path.write_text("id,text,department,category,time\n", encoding="utf-8")
    read = read_window([path], ColumnMap(), window)
    assert read.rows_in == 0
    with pytest.raises(TrainingDataError, match="no rows to read"):
        read.select()


def test_max_rows_over_a_history_read_oldest_first_sorts_the_window_seldom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each chunk newer than all kept: the window was merged and sorted once a chunk (quadratic in
    # the history); now once each time twice the window is held. Same rows as reading everything.
    import numpy as np

    start = datetime(2024, 1, 1)
    times = [(start + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(1300)]
    path = write(tmp_path / "oldest_first.csv", times)
    window = Window(max_rows=100)
    sorts = 0
    lexsort = np.lexsort

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal sorts
        sorts += 1
        return lexsort(*args, **kwargs)

    monkeypatch.setattr(np, "lexsort", counted)
    got = chunked([path], window, 13)
    assert sorts <= 1300 // 100, sorts  # 100 chunks, of which about 92 came after the window filled
    monkeypatch.setattr(np, "lexsort", lexsort)
    same(whole([path], window), got)


def test_errors_name_a_json_lines_row_by_its_line(tmp_path: Path) -> None:
    # "data row 3" for the object on line 6 of a file with blank lines: every other message
    # about a JSON Lines file (the reader's, label's error rows) names its line.
    import json

    def obj(i: int, t: str) -> str:
        row = dict(
            zip(HEADER, [f"T{i}", "", f"路灯不亮{i}", "市城管局", "市政设施", t], strict=True)
        )
        return json.dumps(row, ensure_ascii=False)

    path = tmp_path / "h.jsonl"
    lines = [obj(1, "2023-01-01"), "", obj(2, "2023-01-02"), "  ", "", obj(3, "三月初")]
    path.write_text("\n".join(lines) + "\n\n" + obj(4, "2023-01-04") + "\n", encoding="utf-8")
    window = Window(since=datetime(2023, 1, 2))
    said = whole([path], window)
    assert isinstance(said, str) and "h.jsonl line 6 ('三月初')" in said, said
    assert chunked([path], window, 2) == said  # read a chunk at a time, the same
    # A bound after every ticket: the newest is named by its line too.
    good = tmp_path / "g.jsonl"
    good.write_text("\n\n".join([obj(1, "2023-01-01"), obj(2, "2023-01-03")]), encoding="utf-8")
    said = whole([good], Window(since=datetime(2099, 1, 1)))
    assert isinstance(said, str) and "g.jsonl line 3" in said, said
    # A JSON array by its element, as the reader names one.
    array = tmp_path / "h.json"
    objects = [json.loads(line) for line in lines if line.strip()]
    array.write_text(json.dumps(objects, ensure_ascii=False, indent=2), encoding="utf-8")
    said = whole([array], window)
    assert isinstance(said, str) and "h.json element 3 ('三月初')" in said, said


def test_a_json_lines_row_is_looked_up_by_its_line_only_for_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The newest row so far was named (its line found by reading the file from its start) at
    # every chunk that held a newer time, though only the "no ticket since" refusal shows it: a
    # history exported oldest first was read again from its start once a chunk (300,000 rows:
    # 60 readings, 9.7 of 18 s).
    import json

    import model.tickets as tickets_module  # where row_place looks a JSON line up

    path = tmp_path / "h.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(12):
            row = [f"T{i}", "", f"路灯不亮{i}", "市城管局", "市政设施", f"2023-01-{i + 1:02d}"]
            f.write(json.dumps(dict(zip(HEADER, row, strict=True)), ensure_ascii=False) + "\n\n")
    looked: list[int] = []
    real = tickets_module.jsonl_line_of

    def counted(p: Path, row: int) -> int | None:
        looked.append(row)
        return real(p, row)

    monkeypatch.setattr(tickets_module, "jsonl_line_of", counted)
    for window in (Window(since=datetime(2023, 1, 3)), Window(max_rows=5)):
        read = read_window([path], ColumnMap(), window, size=2)
        df, _ = read.select()
        assert len(df) in (10, 5)
    assert looked == []
    # The refusal still names the newest ticket by its line.
    said = chunked([path], Window(since=datetime(2099, 1, 1)), 2)
    assert isinstance(said, str) and "h.jsonl line 23" in said, said
    assert looked == [12]


@pytest.mark.parametrize("read", ["whole", "chunked"])
def test_times_with_and_without_a_zone_in_one_history_are_warned_of(
    tmp_path: Path, read: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A history merged from two systems: one writes its times with their offset (+08:00), the
    # other without. Those without are taken as UTC, eight hours from the others at a centre in
    # UTC+8, so --max-rows and --since placed them wrongly without a word.
    times = [f"2023-01-{d:02d} 09:00:00" for d in range(1, 21)]
    times[12] = "2023-01-13T09:00:00+08:00"
    path = write(tmp_path / "z.csv", times)
    window = Window(max_rows=5)
    with caplog.at_level("WARNING", logger="training.window"):
        got = whole([path], window) if read == "whole" else chunked([path], window, 4)
    assert not isinstance(got, str)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "'2023-01-13T09:00:00+08:00' (z.csv data row 13)" in said
    assert "'2023-01-01 09:00:00' (z.csv data row 1)" in said
    assert "taken as UTC" in said


@pytest.mark.parametrize("times", [["2023-01-01 09:00:00+08:00"] * 3, ["2023-01-01 09:00"] * 3])
def test_times_all_with_a_zone_or_all_without_are_not_warned_of(
    tmp_path: Path, times: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "z.csv", times)
    with caplog.at_level("WARNING", logger="training.window"):
        chunked([path], Window(max_rows=2), 2)
        whole([path], Window(max_rows=2))
    assert [r.getMessage() for r in caplog.records] == []


@pytest.mark.parametrize("read", ["whole", "chunked"])
def test_an_excel_serial_number_for_a_time_is_named_as_one(tmp_path: Path, read: str) -> None:
    # A workbook's date column formatted as "General" (常规), or its CSV export, holds Excel's
    # serial day numbers (43470.583 is 2019-01-05 14:00): refused as "no readable time" with
    # advice to write 2026-01-31, which did not say why the cells were numbers.
    path = write(tmp_path / "s.csv", ["2019-01-04 10:00:00", "43470.583", "2019-01-06 10:00:00"])
    window = Window(since=datetime(2019, 1, 1))
    said = whole([path], window) if read == "whole" else chunked([path], window, 2)
    assert isinstance(said, str)
    assert "s.csv data row 2 ('43470.583')" in said
    assert "Excel's serial day number" in said


@pytest.mark.parametrize("stamp", ["1546668000", "1546668000000"])
def test_a_unix_time_for_a_time_is_named_as_one(tmp_path: Path, stamp: str) -> None:
    # A JSON export's time as a number of seconds (or milliseconds) since 1970, as docs/labelling.md
    # shows one (1704412980): refused as "no readable time", with no word of why.
    path = tmp_path / "e.jsonl"
    row = {"id": "1", "title": "", "text": "路灯不亮", "department": "市城管局", "time": int(stamp)}
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    said = chunked([path], Window(max_rows=1), 2)
    assert isinstance(said, str)
    assert f"e.jsonl line 1 ('{stamp}')" in said
    assert "Unix time" in said
