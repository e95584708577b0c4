"""XLSX, JSON Lines, JSON arrays and Parquet are read a chunk at a time, as CSV is: the tables
joined are the table of the file read whole (names, values, types, ``_row``), and every error is
the one reading it whole raises, with its row, whatever the chunk size."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from model.tickets import (
    ColumnMap,
    TicketFileError,
    iter_tickets,
    read_tickets,
    table_chunks,
)
from tests.training.test_tickets import (
    as_shared_strings,
    east_asian_dates,
    excel_line_ends,
    formula_texts,
    formula_titles_and_labels,
    zero_padded_ids,
)

SIZES = [1, 2, 3, 5, 1000]


def same_as_whole(path: Path, columns: ColumnMap | None = ColumnMap(), sizes=SIZES) -> pd.DataFrame:
    """Read ``path`` whole and in chunks of each size: the chunks are at most that long, and
    join into the whole table; so do the canonical tables, and the headers are the same."""
    (whole,) = list(table_chunks(path, columns, None))
    whole_headers: dict[str, list[str]] = {}
    canonical = list(iter_tickets([path], columns or ColumnMap(), whole_headers)) if columns else []
    for size in sizes:
        chunks = list(table_chunks(path, columns, size))
        assert chunks and all(len(c) <= size for c in chunks)
        assert len(chunks) == max(1, -(-len(whole) // size)), (size, [len(c) for c in chunks])
        for chunk in chunks:
            assert list(chunk.columns) == list(whole.columns)
        joined = pd.concat(chunks, ignore_index=True)
        pd.testing.assert_frame_equal(joined, whole)
        if columns is not None:
            headers: dict[str, list[str]] = {}
            got = list(iter_tickets([path], columns, headers, size))
            assert headers == whole_headers
            pd.testing.assert_frame_equal(
                pd.concat(got, ignore_index=True), pd.concat(canonical, ignore_index=True)
            )
    return whole


def same_error(path: Path, columns: ColumnMap = ColumnMap(), sizes=SIZES) -> str:
    """The error of reading ``path`` (canonical tables, as train and evaluate read it) whole, which
    reading it in chunks of every size raises too, after the tables before it."""
    with pytest.raises(TicketFileError) as whole:
        list(iter_tickets([path], columns))
    for size in sizes:
        with pytest.raises(TicketFileError) as chunked:
            list(iter_tickets([path], columns, None, size))
        assert str(chunked.value) == str(whole.value), size
    return str(whole.value)


# -- XLSX ------------------------------------------------------------------------------------------


def varied_workbook(path: Path) -> Path:
    """A sheet of every kind of cell: numbers whole and not, dates and times, booleans, errors,
    empty cells and rows, Excel's escapes, a joint dispatch as a JSON list, a repeated header, a
    row wider than the header late in the sheet, and formatted empty rows at the end."""
    import openpyxl
    from openpyxl.styles import Font

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text", "department", "category", "time", None, "备注"])
    ws.append(
        [1001, "欠薪", "老板拖欠工资_x000D_\n三个月", "人社", "劳动保障", datetime(2024, 1, 5, 9)]
    )
    ws.append([1002.0, "油烟", "烧烤店油烟扰民", '["执法", "环保"]', "环境", date(2024, 1, 6)])
    ws.append([1.5, "噪音", "工地夜间施工", "执法；住建", "环境", time(9, 30), "x", "NA"])
    ws.append(["A4", None, "路灯坏了", "城管", None, "2024/1/7 10:00"])
    ws.append([])  # a blank row between tickets: a row of empty cells
    ws.append(["A6", True, "#N/A", "#REF!", "nan", 45296.375])
    ws.append(["id", "title", "text", "department", "category", "time"])  # the header again
    ws.append(["A8", "电梯", "电梯困人", "住建", "城建", datetime(2024, 2, 1, 8, 15, 30)])
    ws.append(["A9", "", "   ", "住建", "城建"])
    ws.append(["A10", "物业", "物业不作为", "住建", "城建", None, None, None, None, "late"])
    ws.append(["A11", "漏水", "楼房漏水", "住建", "城建"])
    ws["A4"].number_format = "0.00"
    ws["F7"].number_format = "yyyy-mm-dd hh:mm"
    ws["G7"] = "#DIV/0!"  # an error cell: read as empty
    for row in (14, 15):  # formatted, empty: no rows
        ws.cell(row=row, column=2).font = Font(bold=True)
    wb.save(path)
    return path


def test_a_workbook_read_in_chunks_is_the_workbook_read_whole(tmp_path: Path) -> None:
    whole = same_as_whole(varied_workbook(tmp_path / "v.xlsx"), ColumnMap(time="time"))
    # What the sheet holds, so that each kind of cell is compared: the wide row's columns too.
    assert list(whole.columns)[-3:] == ["备注", "Unnamed: 8", "Unnamed: 9"]
    assert len(whole) == 11
    assert whole["text"].iloc[0] == "老板拖欠工资\r\n三个月"
    assert whole["id"].iloc[:3].tolist() == ["1001", "1002", "1.5"]
    assert whole["time"].iloc[:3].tolist() == [
        "2024-01-05 09:00:00", "2024-01-06 00:00:00", "09:30:00"
    ]  # fmt: skip
    assert whole.iloc[4].tolist() == [""] * len(whole.columns)
    assert whole["Unnamed: 9"].iloc[9] == "late"
    rows = read_tickets([tmp_path / "v.xlsx"])
    assert rows["_row"].tolist() == [1, 2, 3, 4, 5, 6, 8, 9, 10, 11]  # row 7 repeats the header


@pytest.mark.parametrize(
    "make",
    [east_asian_dates, excel_line_ends, zero_padded_ids],
    ids=["chinese-dates", "escapes", "zero-padded"],
)
def test_special_cells_read_in_chunks_are_read_as_whole(tmp_path: Path, make: Any) -> None:
    same_as_whole(make(tmp_path / "s.xlsx"), ColumnMap(time="time"), sizes=[1, 2, 3])


def test_shared_strings_read_in_chunks_are_read_as_whole(tmp_path: Path) -> None:
    path = as_shared_strings(excel_line_ends(tmp_path / "shared.xlsx"))
    whole = same_as_whole(path, sizes=[1, 2])
    assert whole["text"].tolist()[1] == "代码里写着_x000D_字样，老板拖欠工资"


def test_zero_padded_numbers_keep_their_rows_across_chunks(tmp_path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text"])
    for i in range(1, 11):
        ws.append([100 + i, "欠薪", f"老板拖欠工资{i}"])
        ws.cell(row=i + 1, column=1).number_format = "00000" if i % 3 else "0"
    wb.save(tmp_path / "ids.xlsx")
    whole = same_as_whole(tmp_path / "ids.xlsx", sizes=[1, 2, 3, 4])
    assert whole["id"].tolist()[:4] == ["00101", "00102", "103", "00104"]


@pytest.mark.parametrize(
    "rows, columns",
    [
        ([], []),  # an empty sheet: no columns, no rows
        ([["id", "title", "text"]], ["id", "title", "text"]),  # a header alone
        ([["id", "title", "text"], ["1", "欠薪", "拖欠工资"]], ["id", "title", "text"]),
        ([["id", "title", "text"], [], [], ["1", "欠薪", "拖欠"]], ["id", "title", "text"]),
        ([[], ["1", "欠薪", "拖欠"]], ["Unnamed: 0", "Unnamed: 1", "Unnamed: 2"]),
    ],
    ids=["empty", "header-alone", "one-row", "blank-rows-first", "blank-header"],
)
def test_small_and_empty_sheets_read_in_chunks_as_whole(
    tmp_path: Path, rows: list[list[str]], columns: list[str]
) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    for row in rows:
        wb.active.append(row)
    wb.save(tmp_path / "small.xlsx")
    whole = same_as_whole(tmp_path / "small.xlsx", None)
    assert list(whole.columns) == columns


def test_an_empty_sheet_is_refused_as_when_read_whole(tmp_path: Path) -> None:
    import openpyxl

    openpyxl.Workbook().save(tmp_path / "empty.xlsx")
    assert "no column 'text'" in same_error(tmp_path / "empty.xlsx")


def test_unsaved_formulas_are_refused_as_when_read_whole(tmp_path: Path) -> None:
    message = same_error(formula_texts(tmp_path / "f.xlsx"), sizes=[1, 2])
    assert message.startswith(f"{tmp_path / 'f.xlsx'}, row 2: column 'text' holds the formula")
    message = same_error(formula_titles_and_labels(tmp_path / "g.xlsx"), sizes=[1, 2])
    assert "row 2: column 'title' holds the formula" in message


def test_a_later_chunks_empty_cell_finds_the_first_unsaved_formula_of_the_sheet(
    tmp_path: Path,
) -> None:
    # Row 2's title is empty (typed so); the sheet's first unsaved formula is a text, in row 5,
    # and a title's is in row 11. Read whole, the text's is named. Checked a chunk at a time for
    # the columns empty so far, the first chunk (an empty title) found the title's in row 11.
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text", "department"])
    for i in range(2, 14):
        ws.append([f"A{i}", "欠薪" if i > 2 else None, f"老板拖欠工资{i}", "人社"])
    ws["C5"] = '=B5&"。"'
    ws["B11"] = "=LEFT(C11,2)"
    wb.save(tmp_path / "late.xlsx")
    message = same_error(tmp_path / "late.xlsx", sizes=[1, 2, 3])
    assert "row 5: column 'text' holds the formula" in message


def test_a_missing_column_of_a_workbook_lists_its_columns_as_read_whole(tmp_path: Path) -> None:
    message = same_error(varied_workbook(tmp_path / "v.xlsx"), ColumnMap(text="内容"))
    assert "'备注', 'Unnamed: 8', 'Unnamed: 9'" in message  # the late wide row's columns too


def test_a_repeated_header_in_a_later_chunk_keeps_its_row_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    varied_workbook(tmp_path / "v.xlsx")
    for size in (2, 3, None):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rows = pd.concat(list(iter_tickets([tmp_path / "v.xlsx"], ColumnMap(), None, size)))
        assert 7 not in rows["_row"].tolist()
        assert "left out 1 row that repeats the header line, data row 7" in caplog.text


# -- JSON Lines and JSON arrays ----------------------------------------------------------------

OBJECTS: list[dict[str, Any]] = [
    {"id": 1, "title": "欠薪", "text": "老板拖欠工资", "department": "人社"},
    {"id": 2.0, "title": None, "text": "烧烤店油烟扰民", "department": ["执法", "环保"]},
    {},
    {"id": "A4", "text": "工地夜间施工", "department": "执法；住建", "category": "环境"},
    {" text ": "路灯坏了", "id": 5, "extra": {"k": [1, True]}},
    {"id": 6, "title": False, "text": "", "time": "2024-01-05 09:00"},
    {"id": 7, "text": "电梯困人", "department": "住建", "late": "only here"},
]


def write_json(path: Path, objects: list[Any], array: bool) -> Path:
    if array:
        path.write_text(json.dumps(objects, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        path.write_text(
            "\n".join(json.dumps(o, ensure_ascii=False) for o in objects) + "\n", encoding="utf-8"
        )
    return path


@pytest.mark.parametrize("array", [False, True], ids=["jsonl", "array"])
def test_json_read_in_chunks_is_json_read_whole(tmp_path: Path, array: bool) -> None:
    path = write_json(tmp_path / ("t.json" if array else "t.jsonl"), OBJECTS, array)
    whole = same_as_whole(path, ColumnMap(time="time"))
    # A key of the last object alone is a column of every chunk, empty before it.
    assert list(whole.columns) == [
        "id", "title", "text", "department", "category", "extra", "time", "late"
    ]  # fmt: skip
    assert whole["late"].tolist() == [""] * 6 + ["only here"]
    assert whole["department"].iloc[1] == '["执法", "环保"]'
    rows = read_tickets([path])
    assert rows["department"].tolist()[:2] == ["人社", "执法"]
    assert rows["co_departments"].tolist()[1] == "环保"


@pytest.mark.parametrize("array", [False, True], ids=["jsonl", "array"])
def test_a_json_file_shorter_than_a_chunk_or_of_one_object(tmp_path: Path, array: bool) -> None:
    same_as_whole(write_json(tmp_path / ("o.json" if array else "o.jsonl"), OBJECTS[:1], array))


def test_a_jsonl_whose_text_key_first_appears_in_a_later_chunk_is_read(tmp_path: Path) -> None:
    objects = [{"id": i, "title": "欠薪"} for i in range(4)] + [{"id": 9, "text": "拖欠工资"}]
    path = write_json(tmp_path / "t.jsonl", objects, False)
    same_as_whole(path)
    assert read_tickets([path])["text"].tolist() == [""] * 4 + ["拖欠工资"]


@pytest.mark.parametrize(
    "objects, array, says",
    [
        ([*OBJECTS, "a string"], False, "line 8: expected a JSON object per line"),
        ([*OBJECTS, [1]], True, "element 8: expected a JSON object per element, got an array"),
        ([*OBJECTS, {"text": 1, "text ": 2}], False, "line 8: the keys 'text' and 'text '"),
        ([{}, {}, {}, {}], False, "line 1: the JSON objects have no keys"),
        ([{}, {}, {}, {}], True, "element 1: the JSON objects have no keys"),
        ([], True, "the JSON array is empty (no tickets)"),
        (OBJECTS, False, "no column '内容' for the ticket text; the file has columns 'id', "),
    ],
)
def test_json_errors_in_a_later_chunk_are_the_errors_of_the_file_read_whole(
    tmp_path: Path, objects: list[Any], array: bool, says: str
) -> None:
    path = write_json(tmp_path / ("t.json" if array else "t.jsonl"), objects, array)
    columns = ColumnMap(text="内容") if "内容" in says else ColumnMap()
    assert says in same_error(path, columns)


def test_a_broken_line_or_element_late_in_the_file_is_named(tmp_path: Path) -> None:
    lines = write_json(tmp_path / "t.jsonl", OBJECTS, False).read_text(encoding="utf-8")
    (tmp_path / "t.jsonl").write_text(lines + '{"id": 8, "text": "断了\n', encoding="utf-8")
    assert "line 8: not valid JSON" in same_error(tmp_path / "t.jsonl")
    text = write_json(tmp_path / "t.json", OBJECTS, True).read_text(encoding="utf-8")
    (tmp_path / "t.json").write_text(text.rstrip().removesuffix("]") + ", {]", encoding="utf-8")
    assert "the JSON array breaks in element 8" in same_error(tmp_path / "t.json")
    (tmp_path / "e.jsonl").write_text("", encoding="utf-8")
    assert "the file is empty (no JSON objects)" in same_error(tmp_path / "e.jsonl")


# -- Parquet -----------------------------------------------------------------------------------


def varied_parquet(path: Path, row_group_size: int = 2, bad: dict[str, int] | None = None) -> Path:
    """Eleven rows of every kind of value, in row groups of ``row_group_size`` rows; ``bad``: a
    binary column's row (from 1) that is not UTF-8."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 11
    binary = {
        name: [
            b"\xff\xfe" if bad and bad.get(name) == i else f"{name}{i}".encode()
            for i in range(1, n + 1)
        ]
        for name in ("note", "text")
    }
    table = pa.table(
        {
            "id": pa.array([1001 + i if i % 4 else None for i in range(n)], pa.int64()),
            "note": pa.array(binary["note"], pa.binary()),
            "title": [f"标题{i}" if i != 3 else None for i in range(n)],
            "text": pa.array(binary["text"], pa.binary()),
            "department": pa.array(
                [["住建", "残联"] if i == 2 else [f"部门{i % 3}"] for i in range(n)],
                pa.list_(pa.string()),
            ),
            "category": pa.array([f"类{i % 2}" for i in range(n)]).dictionary_encode(),
            "time": pa.array([datetime(2024, 1, 1 + i, 9) for i in range(n)], pa.timestamp("ms")),
            "score": [i / 2 for i in range(n)],
            "flag": [bool(i % 2) for i in range(n)],
            "": [f"blank{i}" for i in range(n)],  # a blank name: Unnamed: 9
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize("row_group_size", [1, 2, 4, 100])
def test_parquet_read_in_chunks_is_parquet_read_whole(tmp_path: Path, row_group_size: int) -> None:
    path = varied_parquet(tmp_path / "t.parquet", row_group_size)
    whole = same_as_whole(path, ColumnMap(time="time"))
    assert list(whole.columns)[-1] == "Unnamed: 9"
    assert whole["id"].tolist()[:5] == ["", "1002", "1003", "1004", ""]
    assert whole["department"].iloc[2] == '["住建", "残联"]'
    assert read_tickets([path])["co_departments"].iloc[2] == "残联"


def test_an_empty_parquet_or_one_shorter_than_a_chunk(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                   tmp_path / "empty.parquet")  # fmt: skip
    assert len(same_as_whole(tmp_path / "empty.parquet")) == 0
    pq.write_table(pa.table({"id": ["1"], "text": ["拖欠工资"]}), tmp_path / "one.parquet")
    same_as_whole(tmp_path / "one.parquet")


def test_a_parquet_value_not_utf8_in_a_later_chunk_keeps_its_row(tmp_path: Path) -> None:
    path = varied_parquet(tmp_path / "t.parquet", bad={"text": 9})
    message = same_error(path)
    assert message.startswith(f"{path}, row 9: column 'text' is not UTF-8 text")


def test_the_first_column_not_utf8_is_named_though_another_one_is_earlier(tmp_path: Path) -> None:
    # Read whole, the columns are converted in order: the note's row 10 is named, not the text's
    # row 2, which a chunked read meets first.
    path = varied_parquet(tmp_path / "t.parquet", bad={"note": 10, "text": 2})
    assert same_error(path).startswith(f"{path}, row 10: column 'note' is not UTF-8 text")


def test_a_parquet_without_the_text_column_is_refused_as_read_whole(tmp_path: Path) -> None:
    path = varied_parquet(tmp_path / "t.parquet")
    message = same_error(path, ColumnMap(text="内容"))
    assert "no column '内容' for the ticket text; the file has columns 'id', 'note'" in message
    # A value that is not UTF-8, anywhere, is said first, as when the file is read whole.
    path = varied_parquet(tmp_path / "bad.parquet", bad={"note": 11})
    assert "row 11: column 'note' is not UTF-8" in same_error(path, ColumnMap(text="内容"))


def test_a_file_that_is_no_parquet_is_refused_in_the_words_of_reading_it_whole(
    tmp_path: Path,
) -> None:
    (tmp_path / "t.parquet").write_text("id,text\n1,路灯\n", encoding="utf-8")
    assert "Parquet magic bytes not found" in same_error(tmp_path / "t.parquet")
    (tmp_path / "e.parquet").write_bytes(b"")
    assert "cannot be read as PARQUET" in same_error(tmp_path / "e.parquet")
