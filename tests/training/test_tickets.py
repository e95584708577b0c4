import csv
import gzip
import json
import os
import shlex
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from model.tickets import (
    ColumnMap,
    TicketFileError,
    has_text,
    iter_tickets,
    read_table,
    read_tickets,
)
from tests.conftest import write_frame

ROWS = [
    {"编号": "A1", "标题": "欠薪", "内容": "老板拖欠工资", "部门": "人社", "类别": "劳动保障"},
    {"编号": "A2", "标题": "油烟", "内容": "烧烤店油烟扰民", "部门": "执法", "类别": "环境"},
]
MAP = ColumnMap(id="编号", title="标题", text="内容", department="部门", category="类别")


@pytest.mark.parametrize("fmt", ["utf-8", "utf-8-sig", "gb18030", "xlsx", "jsonl", "parquet"])
def test_every_format_reads_the_same(tmp_path, fmt):
    df = pd.DataFrame(ROWS)
    if fmt in ("utf-8", "utf-8-sig", "gb18030"):
        path = tmp_path / "t.csv"
        df.to_csv(path, index=False, encoding=fmt)
    elif fmt == "xlsx":
        path = tmp_path / "t.xlsx"
        df.to_excel(path, index=False)
    elif fmt == "jsonl":
        path = tmp_path / "t.jsonl"
        path.write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8"
        )
    else:
        path = tmp_path / "t.parquet"
        df.to_parquet(path)
    got = read_tickets([path], MAP)
    assert got["id"].tolist() == ["A1", "A2"]
    assert got["text"].tolist() == ["老板拖欠工资", "烧烤店油烟扰民"]
    assert got["department"].tolist() == ["人社", "执法"]
    assert got["_row"].tolist() == [1, 2]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".xlsx"])
def test_excel_error_values_in_a_label_column_are_empty_labels_in_every_format(tmp_path, suffix):
    # A CSV exported from a workbook of failed lookups trained "#N/A" as a department (12 rows
    # in metadata.json), where the workbook itself reads such a cell as empty.
    from openpyxl.cell.cell import ERROR_CODES

    from training.validate import validate

    codes = list(ERROR_CODES)
    rows = [
        {"id": f"E{i}", "text": f"路灯不亮{i}", "department": f" {code} ", "category": code}
        for i, code in enumerate(codes)
    ]
    rows += [
        {"id": "T", "text": "#N/A", "department": "市住建局", "category": "城建"},
        {"id": "L", "text": "井盖缺失", "department": "市住建局", "category": "城建"},
    ]
    path = tmp_path / f"t{suffix}"
    if suffix == ".xlsx":  # openpyxl writes an error value as an error cell, as Excel does
        pd.DataFrame(rows).to_excel(path, index=False)
    else:
        write_frame(path, pd.DataFrame(rows))
    got = read_tickets([path])
    assert got["department"].tolist() == [""] * len(codes) + ["市住建局"] * 2
    assert got["category"].tolist() == [""] * len(codes) + ["城建"] * 2
    # A text is read as written (a workbook's error cell is an empty one).
    assert got["text"].iloc[-2] == ("" if suffix == ".xlsx" else "#N/A")
    # Reported as any empty label cell is, not learnt.
    _, report = validate(got, min_examples=1)
    assert len(report.unlabelled["department"]) == len(codes), report.unlabelled
    assert report.unlabelled["department"][0].startswith(f"t{suffix} "), report.unlabelled


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_database_null_marker_in_a_label_column_is_an_empty_label(tmp_path, suffix):
    # A database export writes a missing department as NULL (SQL Server, DBeaver, Navicat), \N
    # (MySQL's SELECT … INTO OUTFILE) or (null); a script that went through pandas, as nan or
    # None. Each trained a department of its own, the largest where many rows had none.
    from training.validate import validate

    markers = ["NULL", "null", " NULL ", "\\N", "(null)", "<NULL>", "None", "nan", "NaN"]
    rows = [
        {"id": f"N{i}", "text": f"路灯不亮{i}", "department": m, "category": m}
        for i, m in enumerate(markers)
    ]
    rows += [
        {"id": "T", "text": "NULL", "department": "市住建局", "category": "城建"},
        {"id": "L", "text": "井盖缺失", "department": "NULL局", "category": "城建"},
    ]
    path = tmp_path / f"t{suffix}"
    if suffix == ".xlsx":
        pd.DataFrame(rows).to_excel(path, index=False)
    else:
        write_frame(path, pd.DataFrame(rows))
    got = read_tickets([path])
    assert got["department"].tolist() == [""] * len(markers) + ["市住建局", "NULL局"]
    assert got["category"].tolist() == [""] * len(markers) + ["城建"] * 2
    assert got["text"].iloc[-2] == "NULL"  # a text is read as written
    _, report = validate(got, min_examples=1)
    assert len(report.unlabelled["department"]) == len(markers), report.unlabelled


def test_invisible_format_characters_in_a_label_make_no_label_of_their_own(tmp_path):
    # A zero-width space or a BOM pasted into a department cell (from a web page or a Word
    # table) trained a second 市住建局 that looks the same, offered beside the first, where
    # POST /v1/feedback stores the label without them (model.text.normalize_label).
    rows = [
        {"text": "路灯不亮", "department": "市住建局\u200b", "category": "\ufeff城建"},
        {"text": "井盖缺失", "department": "\u2060市住建局；\u200b市公安局", "category": "城建"},
        {"text": "油烟扰民", "department": "市住建局", "category": "城\u200d建"},
    ]
    path = tmp_path / "t.csv"
    write_frame(path, pd.DataFrame(rows))
    got = read_tickets([path])
    assert got["department"].tolist() == ["市住建局"] * 3
    assert got["co_departments"].tolist() == ["", "市公安局", ""]
    assert got["category"].tolist() == ["城建"] * 3
    assert got["text"].tolist() == [r["text"] for r in rows]


def test_directory_of_parts_in_name_order(tmp_path):
    d = tmp_path / "parts"
    d.mkdir()
    pd.DataFrame(ROWS[1:]).to_csv(d / "b.csv", index=False)
    pd.DataFrame(ROWS[:1]).to_csv(d / "a.csv", index=False)
    assert read_tickets([d], MAP)["id"].tolist() == ["A1", "A2"]


def test_a_directory_holding_tickets_in_a_format_no_reader_reads_is_refused_naming_them(tmp_path):
    # An old .xls export, a binary workbook or a compressed part beside the readable parts was
    # skipped without a word, and its tickets lost; named directly, the same file is refused.
    import gzip

    d = tmp_path / "parts"
    d.mkdir()
    pd.DataFrame(ROWS).to_excel(d / "2025-10.xlsx", index=False)
    (d / "2025-09.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504)
    (d / "2025-11.xlsb").write_bytes(b"PK\x03\x04" + b"\0" * 60)
    (d / "2025-12.jsonl.gz").write_bytes(gzip.compress('{"内容": "x"}\n'.encode()))
    (d / "README.md").write_text("导出说明")
    with pytest.raises(TicketFileError) as e:
        read_tickets([d], MAP)
    msg = str(e.value)
    assert "'2025-09.xls' (save it as .xlsx or CSV)" in msg
    assert "'2025-11.xlsb' (save it as .xlsx or CSV)" in msg
    assert "'2025-12.jsonl.gz' (decompress it)" in msg
    assert "README" not in msg and "'2025-10.xlsx'" not in msg and "\n" not in msg
    # Files that are no tickets (notes, images, Spark's markers) are still left alone.
    for name in ("2025-09.xls", "2025-11.xlsb", "2025-12.jsonl.gz"):
        (d / name).unlink()
    for name in ("说明.docx", "截图.png", "Thumbs.db", "_SUCCESS", "report.pdf.gz"):
        (d / name).write_bytes(b"\0")
    assert read_tickets([d], MAP)["id"].tolist() == ["A1", "A2"]


def test_a_directory_skips_the_files_excel_and_macos_leave_beside_a_workbook(tmp_path):
    # Excel's owner file (present while the workbook is open) or macOS's AppleDouble file was
    # read as a workbook, and refused the whole run: "File is not a zip file".
    d = tmp_path / "parts"
    d.mkdir()
    pd.DataFrame(ROWS[:1]).to_excel(d / "2025-11.xlsx", index=False)
    pd.DataFrame(ROWS[1:]).to_excel(d / "2025-12.xlsx", index=False)
    (d / "~$2025-12.xlsx").write_bytes(b"\x05Alice" + b" " * 49 + b"\0" * 110)
    (d / "._2025-11.xlsx").write_bytes(b"\x00\x05\x16\x07Mac OS X" + b"\0" * 64)
    (d / "~$old.xls").write_bytes(b"\x05Alice")  # not taken for an .xls export either
    (d / ".~lock.2025-12.xlsx#").write_text(",Alice,pc,04.12.2026 09:30,")  # LibreOffice's
    got = read_tickets([d], MAP)
    assert got["id"].tolist() == ["A1", "A2"]
    assert [Path(s).name for s in got["_source"]] == ["2025-11.xlsx", "2025-12.xlsx"]


def test_missing_column_lists_the_columns_the_file_has(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])  # canonical names: there is no "text" column
    msg = str(e.value)
    assert "'text'" in msg and "'内容'" in msg and "'部门'" in msg and "--text-col" in msg
    # The column that looks like the text is named with the option to give (exports name it
    # 内容, 诉求内容, 留言详情, 问题描述 …); one mapped to another field is not.
    assert msg.endswith("(map yours with --text-col; '内容' looks like the text: --text-col 内容)")
    export = pd.DataFrame(
        [{"工单号": "A1", "诉求标题": "欠薪", "来电 内容": "拖欠工资", "Description": "无"}]
    )
    export.to_csv(path, index=False)
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert str(e.value).endswith(
        "(map yours with --text-col; '来电 内容' looks like the text: --text-col '来电 内容' "
        "(or 'Description'))"
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], ColumnMap(text="正文", title="来电 内容"))
    assert str(e.value).endswith(
        "(map yours with --text-col; 'Description' looks like the text: --text-col Description)"
    )
    pd.DataFrame([{"编号": "A1", "部门": "人社"}]).to_csv(path, index=False)
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert str(e.value).endswith("(map yours with --text-col)")


@pytest.mark.parametrize(
    ("sep", "says"),
    [
        (";", "the header looks ;-separated; pass --delimiter ';'"),
        ("\t", "the header looks tab-separated; pass --delimiter tab"),
        ("|", "the header looks |-separated; pass --delimiter '|'"),
    ],
)
def test_a_csv_of_another_delimiter_is_named_and_read_with_the_option(tmp_path, sep, says):
    # A ;-separated export named .csv read as one column: "no column 编号" did not say why, and a
    # text with a comma made its row's field count the first error.
    path = tmp_path / "t.csv"
    rows = [list(ROWS[0]), *(list(r.values()) for r in ROWS)]
    rows[1][2] = "老板拖欠工资, 三个月"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=sep).writerows(rows)
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], MAP)
    assert "no column '编号' for the ticket id" in str(e.value)
    assert str(e.value).endswith(f"({says})")
    got = read_tickets([path], replace(MAP, delimiter=sep))
    assert got["text"].tolist() == ["老板拖欠工资, 三个月", "烧烤店油烟扰民"]


def test_tsv_and_txt_keep_their_delimiters_and_the_option_wins(tmp_path):
    df = pd.DataFrame(ROWS)
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    df.to_csv(tmp_path / "t.txt", index=False)
    for name in ("t.tsv", "t.txt"):
        assert read_tickets([tmp_path / name], MAP)["id"].tolist() == ["A1", "A2"]
    df.to_csv(tmp_path / "comma.tsv", index=False)
    with pytest.raises(TicketFileError, match="the header looks ,-separated; pass --delimiter ','"):
        read_tickets([tmp_path / "comma.tsv"], MAP)
    got = read_tickets([tmp_path / "comma.tsv"], replace(MAP, delimiter=","))
    assert got["id"].tolist() == ["A1", "A2"]
    # A one-column header that names no such column split on anything: map the column.
    one = tmp_path / "one.csv"
    one.write_text("正文;备注\n好;无\n", encoding="utf-8")
    with pytest.raises(TicketFileError, match=r"'正文;备注' \(map yours with --text-col\)"):
        read_tickets([one])


@pytest.mark.parametrize("value", ["tab", "TAB", "\\t", "\t", ";", "|", " "])
def test_parse_delimiter_takes_one_character_or_a_tab(value):
    from model.tickets import parse_delimiter

    assert parse_delimiter(value) == ("\t" if value.lower() in ("tab", "\\t") else value)


@pytest.mark.parametrize("value", ["", ";;", '"', "\n", "\r", "comma"])
def test_parse_delimiter_refuses_what_cannot_separate_fields(value):
    from model.tickets import parse_delimiter

    with pytest.raises(ValueError, match="cannot separate CSV fields"):
        parse_delimiter(value)


def test_a_named_label_column_must_exist(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    with pytest.raises(TicketFileError, match="'科室'"):
        read_tickets([path], ColumnMap(text="内容", department="科室"))


def test_optional_columns_default_and_ids_are_made(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text\n只有正文\n", encoding="utf-8")
    got = read_tickets([path])
    assert got.loc[0, "title"] == "" and got.loc[0, "department"] == ""
    assert got.loc[0, "id"] == "t:1"


@pytest.mark.parametrize(
    "name, says",
    [
        ("工单.xls", "工单.xls: unsupported file type '.xls' (save it as .xlsx or CSV); use CSV,"),
        ("工单.csv.gz", "工单.csv.gz: unsupported file type '.gz' (decompress it); use CSV,"),
        ("工单.doc", "工单.doc: unsupported file type '.doc'; use CSV,"),
    ],
)
def test_a_file_of_a_type_no_reader_reads_is_refused_saying_what_to_do(tmp_path, name, says):
    # Given alone, an .xls export was refused naming the types read, not the one step (save it
    # as .xlsx) that a directory holding it is told.
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert str(e.value).startswith(f"{tmp_path}/{says}")


def test_bad_inputs_say_what_and_where(tmp_path):
    bad_json = tmp_path / "t.jsonl"
    bad_json.write_text('{"text": "好"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(TicketFileError, match="line 2"):
        read_tickets([bad_json])
    gb_json = tmp_path / "gb.jsonl"
    gb_json.write_bytes('{"text": "好"}\n{"text": "油烟"}\n'.encode("gb18030"))
    with pytest.raises(TicketFileError, match="line 1: not valid UTF-8"):
        read_tickets([gb_json])
    with pytest.raises(TicketFileError, match="unsupported file type"):
        (tmp_path / "t.doc").write_text("x")
        read_tickets([tmp_path / "t.doc"])
    with pytest.raises(TicketFileError, match="no such file"):
        read_tickets([tmp_path / "missing.csv"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TicketFileError, match="empty"):
        read_tickets([empty])


def test_an_unclosed_quote_in_a_csv_is_an_error_that_names_its_line(tmp_path):
    # The quote opened on line 4 runs on to the next quote, on line 7, swallowing three tickets.
    # pandas read what it swallowed into one field and lost those tickets without a word.
    path = tmp_path / "t.csv"
    path.write_text(
        "id,text,department\n"
        'A1,"多行的\n正文",人社\n'
        'A2,"没有闭合的引号,执法\n'
        "A3,第三张,住建\n"
        "A4,第四张,人社\n"
        'A5,"逗号,引号在这里才闭合",住建\n',
        encoding="utf-8",
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert "line 4: a quote opened on it is not closed" in str(e.value)


def test_a_quote_open_to_the_end_of_a_csv_is_an_error_that_names_its_line(tmp_path):
    # The text is the last column, so the field count holds: the rest of the file became one text.
    path = tmp_path / "t.csv"
    path.write_text(
        "id,department,text\n"
        "A1,人社,老板拖欠工资\n"
        'A2,执法,"没有闭合的引号\n'
        "A3,住建,第三张\n"
        "A4,人社,第四张\n",
        encoding="utf-8",
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert str(path) in str(e.value)
    assert "line 3: a quote opened on it is never closed" in str(e.value)


def test_a_csv_row_with_too_few_or_too_many_fields_is_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,text,department\nA1,好\nA2,好,人社\nA3,好,人社,多余\n", encoding="utf-8")
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    msg = str(e.value)
    assert "line 2: it has 2 fields, the header has 3" in msg
    assert "line 4: it has 4 fields, the header has 3" in msg


def test_a_csv_row_of_one_field_is_counted_as_one(tmp_path):
    # A line without a comma (a note pasted into the export) read "it has 1 fields".
    path = tmp_path / "t.csv"
    path.write_text("id,text,department\nA1,好,人社\n见附件\n", encoding="utf-8")
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert "line 3: it has 1 field, the header has 3" in str(e.value)


def test_csv_quoted_newlines_blank_lines_and_a_repeated_header_name(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,text\nA1,"第一\n第二"\n\nA2,再一张\n', encoding="utf-8")
    got = read_tickets([path])
    assert got["text"].tolist() == ["第一\n第二", "再一张"]
    assert got["_row"].tolist() == [1, 2]  # data rows: the blank line is not one
    twice = tmp_path / "twice.csv"
    twice.write_text("id,text,text\nA1,好,好\n", encoding="utf-8")
    with pytest.raises(TicketFileError, match="line 1: the header names 'text' more than once"):
        read_tickets([twice])


@pytest.mark.parametrize("ends", [["\n"], ["\r\n"], ["\r"], ["\r\n", "\n", "\r"]])
def test_every_line_end_is_read_and_counted(tmp_path, ends):
    # "\r" alone (old Mac Excel) and mixed line ends read as Python's csv reads them, with a line
    # break kept inside a quoted text; the lines an error names are counted the same way.
    lines = ["id,text", "A1,路灯坏了", 'A2,"楼上装修', '噪音太大"', "A3,烧烤油烟"]
    path = tmp_path / "t.csv"
    path.write_bytes("".join(f"{x}{ends[i % len(ends)]}" for i, x in enumerate(lines)).encode())
    got = read_tickets([path])
    assert got["id"].tolist() == ["A1", "A2", "A3"]
    assert got["text"][1] == f"楼上装修{ends[2 % len(ends)]}噪音太大"
    # An invalid byte past the sample that tells the encoding, on line 20,003.
    bad = tmp_path / "bad.csv"
    rows = [
        "id,text",
        "A0,路灯坏了",
        *(f"A{i},plain complaint {i} {'x' * 60}" for i in range(20_000)),
    ]
    data = "".join(f"{x}{ends[i % len(ends)]}" for i, x in enumerate(rows)).encode()
    bad.write_bytes(data + b"Z9,\xff\xfe\n")
    assert len(data) > 1 << 20
    with pytest.raises(TicketFileError, match=r"bad.csv, line 20003: invalid utf-8-sig bytes"):
        read_tickets([bad])


def test_a_utf16_unicode_text_export_is_refused_naming_utf16_and_what_to_save(tmp_path):
    # Excel's "Unicode 文本": UTF-16 LE with a BOM, tab-separated. Refused as "cannot tell the
    # text encoding (… byte 0 is invalid in both)", which said neither what it was nor the fix.
    path = tmp_path / "工单导出.txt"
    path.write_bytes("id\ttext\r\nA1\t小区楼下烧烤油烟很大\r\n".encode("utf-16"))
    assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], ColumnMap(delimiter="\t"))
    msg = str(e.value)
    assert msg.startswith(f"{path}: the file is UTF-16 text") and "CSV UTF-8" in msg


UTF16_EXPORTS = {
    # SQL Server `bcp -w` / `sqlcmd -u`: UTF-16 LE, no byte-order mark.
    "ascii header": "id,title,text\r\nA1,油烟,小区楼下烧烤油烟很大\r\n",
    # A header of Chinese names: only the commas and line ends carry a NUL (上 is U+4E0A: a
    # "\n" byte of its own).
    "chinese header": "上报编号,标题,text\r\n一1,一,一二三上\r\n",
    # Over a megabyte of ASCII, then Chinese: the encoding sample skipped to the Chinese.
    "megabyte of ascii": "id,title,text\n"
    + "".join(f"A{i},t,plain {i}\n" for i in range(70_000))
    + "Z1,油烟,小区楼下烧烤油烟很大\n",
}


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("text", list(UTF16_EXPORTS.values()), ids=list(UTF16_EXPORTS))
def test_utf16_without_a_bom_is_refused_as_utf16_with_one_is(tmp_path, encoding, text):
    # It was read as UTF-8 (NUL is valid UTF-8): "cannot tell the text encoding" from train, and
    # from label columns named 'i\x00d\x00'.
    path = tmp_path / "bcp.csv"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    msg = str(e.value)
    assert msg.startswith(f"{path}: the file is UTF-16 text") and "CSV UTF-8" in msg


def test_a_utf8_file_with_a_few_nul_bytes_is_not_taken_for_utf16(tmp_path):
    path = tmp_path / "nul.csv"
    path.write_bytes("id,text\nA1,小区楼下\x00烧烤油烟\x00很大\nA2,路灯不亮\n".encode())
    df = read_tickets([path])
    assert df["id"].tolist() == ["A1", "A2"]


def test_gb18030_whose_first_megabyte_is_ascii_is_read(tmp_path):
    path = tmp_path / "late.csv"
    lines = ["id,text"] + [f"A{i},plain complaint {i} {'x' * 40}" for i in range(20_000)]
    path.write_bytes(("\n".join([*lines, "Z1,小区楼下烧烤油烟很大"]) + "\n").encode("gb18030"))
    assert path.stat().st_size > 1 << 20
    got = read_tickets([path])
    assert len(got) == 20_001 and got["text"].iloc[-1] == "小区楼下烧烤油烟很大"


def write_workbook(path, sheets):
    with pd.ExcelWriter(path) as w:
        for name, frame in sheets.items():
            frame.to_excel(w, sheet_name=name, index=False)
    return path


def test_a_workbook_with_tickets_on_several_sheets_is_refused_naming_them(tmp_path):
    # Only the first sheet is read; monthly sheets after it were dropped without a word.
    df = pd.DataFrame(ROWS)
    notes = pd.DataFrame({"说明": ["导出说明"]})
    path = write_workbook(tmp_path / "m.xlsx", {"1月": df, "说明": notes, "2月": df, "3月": df})
    with pytest.raises(
        TicketFileError, match=r"sheets '2月' \(the same columns\), '3月' \(the same columns\)"
    ):
        read_tickets([path], MAP)
    # A sheet of notes beside one sheet of tickets is no reason to refuse.
    one = write_workbook(tmp_path / "one.xlsx", {"工单": df, "说明": notes})
    assert read_tickets([one], MAP)["id"].tolist() == ["A1", "A2"]


def test_monthly_sheets_whose_columns_differ_a_little_are_refused_too(tmp_path):
    # Only an exact repeat of the first header was refused: a month that gained a column, or
    # had its columns moved, was taken for a sheet of notes and its tickets silently not read.
    df = pd.DataFrame(ROWS)
    months = {
        "10月": df,
        "11月": df.assign(回访结果="满意"),
        "12月": df[["编号", "部门", "类别", "标题", "内容"]],
        "1月": df[["内容", "部门"]],  # few of the columns, but the ticket text (--text-col 内容)
        "汇总": pd.DataFrame({"部门": ["人社"], "件数": [1]}),  # totals share one column: kept
    }
    path = write_workbook(tmp_path / "months.xlsx", months)
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], MAP)
    msg = str(e.value)
    assert "'11月' (5 of the first sheet's 5 columns, the text column '内容' among them)" in msg
    assert "'12月' (the same columns in another order)" in msg
    assert "'1月' (2 of the first sheet's 5 columns, the text column '内容' among them)" in msg
    assert "汇总" not in msg and "'10月', but only the first sheet" in msg and "\n" not in msg
    # Totals and notes with their own columns are still no reason to refuse.
    kept = write_workbook(tmp_path / "kept.xlsx", {k: months[k] for k in ("10月", "汇总")})
    assert read_tickets([kept], MAP)["id"].tolist() == ["A1", "A2"]


def test_later_monthly_sheets_under_a_title_row_are_refused_naming_the_row(tmp_path):
    # Government exports head each sheet with a merged title row. Once the first sheet's title was
    # deleted (as the missing-column error advises), the later sheets were not read, silently.
    df = pd.DataFrame(ROWS)
    path = tmp_path / "titled.xlsx"
    with pd.ExcelWriter(path) as w:
        df.to_excel(w, sheet_name="1月", index=False)
        for month in ("2月", "3月"):
            df.to_excel(w, sheet_name=month, index=False, startrow=1)
            w.sheets[month]["A1"] = f"城南区12345工单明细（2026年{month}）"
        pd.DataFrame({"说明": ["导出说明"]}).to_excel(w, sheet_name="说明", index=False)
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], MAP)
    msg = str(e.value)
    assert "'2月' (its row 2 has the same columns), '3月' (its row 2 has the same columns)" in msg
    assert "说明" not in msg


def test_a_field_dictionary_sheet_is_left_alone_but_a_month_under_a_title_is_not(tmp_path):
    # A 字段说明 sheet names one column a row (内容 | 诉求内容): its row with the text column's
    # name was taken for a header under a title row, and the workbook refused.
    df = pd.DataFrame(ROWS)
    fields = pd.DataFrame(
        {"字段": list(df.columns), "含义": ["工单编号", "标题", "诉求内容", "承办部门", "分类"]}
    )
    notes = pd.DataFrame({"说明": ["导出说明", "内容"], "备注": ["", "见附件"]})
    path = write_workbook(tmp_path / "dict.xlsx", {"工单": df, "字段说明": fields, "说明": notes})
    assert read_tickets([path], MAP)["id"].tolist() == ["A1", "A2"]
    # A month under a title row with the text column and one more of the first sheet's is tickets.
    with pd.ExcelWriter(path := tmp_path / "titled.xlsx") as w:
        df.to_excel(w, sheet_name="1月", index=False)
        fields.to_excel(w, sheet_name="字段说明", index=False)
        df[["部门", "内容"]].assign(回访="满意").to_excel(
            w, sheet_name="2月", index=False, startrow=1
        )
        w.sheets["2月"]["A1"] = "城南区12345工单明细（2026年2月）"
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], MAP)
    msg = str(e.value)
    assert "'2月' (its row 2 has 2 of the first sheet's 5 columns, the text column '内容'" in msg
    assert "字段说明" not in msg


def test_as_utc_converts_and_keeps_times_beyond_the_calendar_in_order() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from model.tickets import as_utc

    east = timezone(timedelta(hours=8))
    assert as_utc(datetime(2026, 1, 1, 8, tzinfo=east)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert as_utc(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)  # naive is UTC
    assert as_utc(datetime(1, 1, 1, tzinfo=east)) == datetime.min.replace(tzinfo=UTC)
    west = timezone(timedelta(hours=-8))
    assert as_utc(datetime.max.replace(tzinfo=west)) == datetime.max.replace(tzinfo=UTC)


def test_numeric_ids_and_codes_keep_their_integer_form_in_every_format(tmp_path: Path) -> None:
    # Ticket numbers and department codes are integers; a missing value made pandas turn the
    # column into floats, so training learnt "101.0" while feedback and labelling said "101".
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.label_io import iter_records

    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        '{"id": 1001, "text": "拖欠工资", "department": 101}\n'
        '{"id": null, "text": "油烟", "department": null}\n'
        '{"id": 1003, "text": "噪音", "department": 102.5}\n',
        encoding="utf-8",
    )
    arrow = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "id": pa.array([1001, None, 1003], pa.int64()),
                "text": ["拖欠工资", "油烟", "噪音"],
                "department": pa.array(
                    [101.0, None, 102.5]
                ),  # as pandas writes an int column with a gap
            }
        ),
        arrow,
    )
    for path in (jsonl, arrow):
        df = read_tickets([path])
        assert df["id"].tolist() == ["1001", f"{path.stem}:2", "1003"], path
        assert df["department"].tolist() == ["101", "", "102.5"], path
        labelled = [r.values for r in iter_records(path, ["id", "department"], 1 << 20)]
        assert [r["department"] for r in labelled] == ["101", "", "102.5"], path


def test_an_id_of_invisible_characters_only_is_numbered_as_a_missing_one(tmp_path):
    # A zero-width space, a BOM or a word joiner pasted into an id cell holds nothing visible
    # (model.text.id_key gives ""): it was kept as the id, and two such rows became one ticket.
    path = tmp_path / "t.csv"
    path.write_text(
        "id,text\n1001,拖欠工资\n\u200b,油烟\n\ufeff,噪音\n\u2060\u200d ,占道\n",
        encoding="utf-8",
    )
    df = read_tickets([path])
    assert df["id"].tolist() == ["1001", "t:2", "t:3", "t:4"]


def test_has_text_of_no_rows_is_an_empty_mask():
    # On empty string columns (pandas 3) the blank tests come back as strings, and "&" failed.
    df = pd.DataFrame({"title": pd.Series([], dtype=str), "text": pd.Series([], dtype=str)})
    assert has_text(df).tolist() == []


def test_a_csv_in_neither_encoding_is_named(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("text\n好\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text\n\xff\xff\xff\xff\n")  # (UTF-16 is named as such: see above)
    with pytest.raises(TicketFileError) as e:
        read_tickets([good, bad])
    assert str(e.value).startswith(f"{bad}: cannot tell the text encoding")


def test_blank_csv_header_names_are_named_as_pandas_names_them(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,,text,\nA1,备注,老板拖欠工资,\n", encoding="utf-8")
    assert read_tickets([path])["text"].tolist() == ["老板拖欠工资"]  # refused: '' twice
    assert list(read_table(path).columns) == list(pd.read_csv(path, dtype=str).columns)


# Tickets as an export writes them: a numeric id, a joint dispatch as a list, a nested value,
# a key missing from one object.
JSON_ROWS = [
    {**ROWS[0], "编号": 1001, "部门": ["人社", "市总工会"], "附件": {"图片": 2}},
    {"内容": ROWS[1]["内容"], "标题": ROWS[1]["标题"], "部门": "执法", "类别": "环境"},
]


@pytest.mark.parametrize(
    "dump",
    [
        lambda rows: json.dumps(rows, ensure_ascii=False),  # json.dump(list_of_dicts)
        lambda rows: "\ufeff\n  " + json.dumps(rows, ensure_ascii=False, indent=2) + "\n",
        lambda rows: json.dumps(rows).replace("}, {", "},\r\n{"),  # \uXXXX escapes, CRLF
    ],
)
def test_a_json_array_reads_as_its_json_lines_read(tmp_path: Path, dump) -> None:
    # What many exports and json.dump(list_of_dicts) write was refused ("holds a JSON array;
    # ... convert it with: jq -c '.[]'"): train, evaluate, retrain and freeze-eval could not
    # read it. Its elements read as JSON Lines' lines do, through the same column mapping.
    from training.label_io import estimate_rows, file_columns

    src = tmp_path / "export.json"
    src.write_text(dump(JSON_ROWS), encoding="utf-8")
    lines = tmp_path / "export.jsonl"
    lines.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in JSON_ROWS), "utf-8")
    got, want = read_tickets([src], MAP), read_tickets([lines], MAP)
    where = ["_source", "_path"]  # the files differ
    pd.testing.assert_frame_equal(got.drop(columns=where), want.drop(columns=where))
    assert got["id"].tolist() == ["1001", "export:2"]
    assert got["department"].tolist() == ["人社", "执法"]
    assert got["co_departments"].tolist() == ["市总工会", ""]
    assert got["_row"].tolist() == [1, 2]
    assert read_table(src)["附件"].tolist() == ['{"图片": 2}', ""]
    assert file_columns(src) == file_columns(lines) == [*ROWS[0], "附件"]
    assert estimate_rows(src) == 2


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("last_end", [True, False])
def test_a_csvs_rows_are_estimated_as_the_reader_reads_them(
    tmp_path: Path, encoding: str, end: str, last_end: bool
) -> None:
    # Estimated by its lines, a CSV file of texts over several lines (and blank lines) counted
    # three times its rows: evaluate ended "scoring: done, 152/152 (166 estimated at the start)".
    from training.label_io import estimate_rows

    cells = ['油烟"很大"', f"电梯坏了{end}第二行{end}{end}第四行", "拖欠工资", f'a""b{end}"c"']
    src = tmp_path / "tickets.csv"
    with open(src, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f, lineterminator=end)
        w.writerow(["id", "内容", "部门"])
        for i, text in enumerate(cells):
            w.writerow([f"T{i}", text, "城管"])
            if i == 1:
                f.write(end * 2)  # blank lines: no rows
    if not last_end:
        src.write_bytes(src.read_bytes()[: -len(end)])
    assert len(read_table(src)) == len(cells)
    assert estimate_rows(src) == len(cells)


def test_json_array_elements_are_read_a_block_at_a_time(tmp_path: Path) -> None:
    # Elements, strings and numbers across the reader's 64 KiB blocks read whole.
    from model.tickets import json_array_elements

    rows: list = [{"内容": "长" * 70_000, "编号": i} for i in range(3)]
    rows += [123456789, {"内容": "\\u4e2d" * 20_000}, 0.5]
    for pad in range(65_530, 65_540):  # a number ending at a block's end
        data = b"[" + b" " * pad + json.dumps(rows).encode()[1:]
        with open(tmp_path / "a.json", "wb") as f:
            f.write(data)
        with open(tmp_path / "a.json", "rb") as f:
            got = [(n, value) for n, value, _ in json_array_elements(f, tmp_path / "a.json")]
        assert got == list(enumerate(rows, 1))


def test_a_json_array_element_that_is_not_a_ticket_is_named(tmp_path: Path) -> None:
    # As a JSON Lines line is named: the element (from 1, as rows are), and what is wrong.
    from training.label_io import file_columns

    path = tmp_path / "export.json"
    path.write_text('[{"内容": "欠薪"}, 1001]', encoding="utf-8")
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], MAP)
    assert str(e.value) == f"{path}, element 2: expected a JSON object per element, got a number"
    cases = {
        '[{"内容": "欠薪"},\n {"内容": "油烟", "内容": "已回访"}]': (
            ", element 2: the key '内容' is written twice (only one value would be read)"
        ),
        '[{"内容": "欠薪", "内容 ": "已回访"}]': (
            ", element 1: the keys '内容' and '内容 ' are both read as '内容'"
        ),
        "[{}, { }]": (
            ", element 1: the JSON objects have no keys ({} in every element), so the file has "
            "no column for the ticket text"
        ),
        "[ ]": ": the JSON array is empty (no tickets)",
    }
    for data, says in cases.items():
        path.write_text(data, encoding="utf-8")
        for read in (lambda p: read_tickets([p], MAP), file_columns):
            with pytest.raises(TicketFileError) as e:
                read(path)
            assert str(e.value).startswith(f"{path}{says}"), (data, str(e.value))
    # label makes an element that is not an object an error row, unless none is one.
    path.write_text('[[1], {"内容": "欠薪"}, 1001]', encoding="utf-8")
    assert file_columns(path) == ["内容"]
    path.write_text('[[1], "欠薪"]', encoding="utf-8")
    with pytest.raises(TicketFileError, match=r"element 1: expected a JSON object per element"):
        file_columns(path)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (
            '[{"内容": "欠薪"},\n {"内容": "油烟"}\n {"内容": "噪音"}]',
            "the JSON array breaks at line 3 column 2 (byte 46): expected ',' or ']' after "
            "element 2, found '{'",
        ),
        (
            '[{"内容": "欠薪"},\n {"内容": "油烟",, "编号": 1}]',
            "the JSON array breaks in element 2: Expecting property name enclosed in double "
            "quotes at line 2 column 14 (byte 44); the elements after it cannot be found",
        ),
        (
            '[{"内容": "欠薪"}, {"内容": "油',
            "the JSON array is cut short: the file ends inside element 2 (from line 1 column 16 "
            "(byte 23)): Unterminated string starting at line 1 column 23 (byte 34); is the file "
            "truncated?",
        ),
        (
            '[{"内容": "欠薪"},\n',
            "the JSON array breaks at line 2 column 1 (byte 23): expected element 2 after "
            "element 1 and ',', found the end of the file (is it truncated?)",
        ),
        (
            '[{"内容": "欠薪"},]',
            "the JSON array breaks at line 1 column 15 (byte 22): expected element 2 after "
            "element 1 and ',', found ']'",
        ),
        (
            '[{"内容": "欠薪"}]\n[{"内容": "油烟"}]\n',
            "text follows the end of the JSON array, at line 2 column 1 (byte 23): expected the "
            "end of the file (one array of tickets)",
        ),
        ('[{"内容": "欠\xff"}]', "not valid UTF-8 at byte 16 (JSON files are UTF-8)"),
    ],
)
def test_a_broken_json_array_is_refused_naming_where(tmp_path: Path, data: str, says: str) -> None:
    # Its elements after the break cannot be found: train refuses the file, and label refuses it
    # before labelling a row (its column scan reads the array through), one line each.
    from training.label_io import file_columns

    path = tmp_path / "export.json"
    path.write_bytes(data.encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff"))
    for read in (lambda p: read_tickets([p], MAP), file_columns):
        with pytest.raises(TicketFileError) as e:
            read(path)
        assert str(e.value) == f"{path}: {says}"


def test_the_jq_commands_printed_work_when_pasted_into_a_shell(tmp_path: Path) -> None:
    # 工单 导出.json (a Windows export's name) split into two words, and a key holding a quote
    # ended the filter's quotes: the command printed failed when pasted.
    import re
    import shlex
    import shutil
    import subprocess

    under_key = {"total": 2, "it's data": ROWS}
    pretty = json.dumps(ROWS[0], ensure_ascii=False, indent=2)
    cases = [
        ("工单 导出.json", json.dumps({"total": 2, "data": ROWS}), "tickets.json", ROWS),
        ("t.json", json.dumps(under_key, ensure_ascii=False), "tickets.json", ROWS),
        ("工单 导出.json", pretty, "compact.jsonl", ROWS[0]),
        ("it's.jsonl", pretty, "compact.jsonl", ROWS[0]),
        # jq read a name starting with "-" as options: -hotline.json as -h, its usage written.
        ("-hotline.json", json.dumps({"total": 2, "data": ROWS}), "tickets.json", ROWS),
        ("-c.jsonl", pretty, "compact.jsonl", ROWS[0]),
    ]
    for name, data, suffix, extracted in cases:
        path = tmp_path / name
        path.write_text(data, encoding="utf-8")
        with pytest.raises(TicketFileError) as e:
            read_tickets([path], MAP)
        found = re.search(r"(jq .*?)\)$", str(e.value))
        assert found is not None, str(e.value)
        command = found.group(1)
        # As a POSIX shell splits it: the file names whole, not to be taken for options.
        out = f"{path.stem}.{suffix}"
        if name.startswith("-"):
            name, out = f"./{name}", f"./{out}"
        assert shlex.split(command)[-3:] == [name, ">", out], command
        if shutil.which("jq"):
            subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True)
            written = (tmp_path / f"{path.stem}.{suffix}").read_text(encoding="utf-8")
            assert json.loads(written) == extracted
        path.unlink()


def test_a_json_object_alone_is_refused_saying_so(tmp_path: Path) -> None:
    # {"total": 2, "data": [...]} (an API's export) was read as one ticket with columns 'total'
    # and 'data', refused as having no column '内容'; one object over several lines was taken
    # for JSON Lines objects pretty-printed.
    from training.label_io import file_columns

    path = tmp_path / "export.json"
    cases = {
        json.dumps({"total": 2, "data": ROWS}, ensure_ascii=False): (
            "holds one JSON object, not an array of tickets; are they the 2 objects under its "
            "key 'data'? (extract them with: jq '.data' export.json > export.tickets.json)"
        ),
        # "are they the 1 objects": an export of one ticket.
        json.dumps({"total": 1, "data": ROWS[:1]}, ensure_ascii=False): (
            "holds one JSON object, not an array of tickets; is it the 1 object under its "
            "key 'data'? (extract them with: jq '.data' export.json > export.tickets.json)"
        ),
        json.dumps({"总数": 2, "工单": ROWS}, ensure_ascii=False, indent=2): (
            "holds one JSON object, not an array of tickets; are they the 2 objects under its "
            """key '工单'? (extract them with: jq '.["\\u5de5\\u5355"]' export.json > """
            "export.tickets.json)"
        ),
        json.dumps(ROWS[0], ensure_ascii=False, indent=2): (
            "holds one JSON object over several lines, not an array of tickets; write the "
            "tickets as a JSON array ([{...}, {...}]) or one object per line (jq -c . "
            "export.json > export.compact.jsonl)"
        ),
    }
    for data, says in cases.items():
        path.write_text(data + "\n", encoding="utf-8")
        for read in (lambda p: read_tickets([p], MAP), file_columns):
            with pytest.raises(TicketFileError) as e:
                read(path)
            assert str(e.value) == f"{path}: {says}"
    # One object on one line is a JSON Lines file of one ticket, read as before.
    path.write_text(json.dumps(ROWS[0], ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_tickets([path], MAP)["text"].tolist() == ["老板拖欠工资"]


def test_a_json_array_in_a_json_lines_file_is_refused_naming_the_json_suffix(tmp_path):
    # A .jsonl or .ndjson file is JSON Lines by its name; the jq command the refusal gave wrote
    # over the file itself (jq -c '.[]' t.jsonl > t.jsonl empties it before jq reads it).
    for name in ("export.jsonl", "export.ndjson"):
        src = tmp_path / name
        rows = [{"id": "1", "text": "路灯坏了", "department": "住建", "category": "城建"}]
        src.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
        with pytest.raises(TicketFileError) as e:
            read_tickets([src])
        assert str(e.value) == (
            f"{src}: holds a JSON array, but a {src.suffix} file is read as JSON Lines, one ticket "
            "object per line; name it export.json to read it as a JSON array"
        )


def test_parquet_binary_strings_are_read_as_utf8_text(tmp_path: Path) -> None:
    # Hive, Impala and some exporters write strings as BINARY without the UTF8 annotation: each
    # value became the text "b'\xe8\x80\x81…'", which train learnt as labels and label labelled.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.label_io import iter_records

    def binary(values: list[str]) -> pa.Array:
        return pa.array([v.encode() for v in values], pa.binary())

    good = tmp_path / "bin.parquet"
    pq.write_table(
        pa.table(
            {
                "id": binary(["A1", "A2"]),
                "text": binary(["老板拖欠工资", "烧烤店油烟扰民"]),
                "department": binary(["人社", "执法"]),
            }
        ),
        good,
    )
    df = read_tickets([good])
    assert df["text"].tolist() == ["老板拖欠工资", "烧烤店油烟扰民"]
    assert df["department"].tolist() == ["人社", "执法"] and df["id"].tolist() == ["A1", "A2"]
    records = list(iter_records(good, ["id", "text"], 1 << 20))
    assert [r.values["text"] for r in records] == ["老板拖欠工资", "烧烤店油烟扰民"]
    assert [r.error for r in records] == [None, None]

    bad = tmp_path / "gbk.parquet"
    pq.write_table(
        pa.table(
            {
                "id": binary(["A1", "A2"]),
                "text": pa.array(["老板拖欠工资".encode(), "油烟".encode("gb18030")], pa.binary()),
            }
        ),
        bad,
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([bad])
    assert str(e.value).startswith(f"{bad}, row 2: column 'text' is not UTF-8 text")
    records = list(iter_records(bad, ["id", "text"], 1 << 20))
    assert records[0].error is None and records[0].values["text"] == "老板拖欠工资"
    assert records[1].error == "unreadable: row 2 of gbk.parquet: column 'text' is not UTF-8"
    assert records[1].values["id"] == "A2"


def test_a_name_written_twice_is_refused_in_every_format(tmp_path: Path) -> None:
    # {"text": complaint, "text": note}: json.loads kept the note, in train and label alike; an
    # XLSX header with "text" twice was read by pandas as "text" and "text.1" (train and evaluate
    # used the first, label refused the file).
    import openpyxl

    from training.label_io import file_columns, iter_records

    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        '{"id": "A1", "text": "老板拖欠工资"}\n{"id": "A2", "text": "油烟扰民", "text": "已回访"}\n',
        encoding="utf-8",
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([jsonl])
    assert str(e.value) == (
        f"{jsonl}, line 2: the key 'text' is written twice (only one value would be read); "
        "rename or drop one of them"
    )
    with pytest.raises(TicketFileError, match="line 2: the key 'text' is written twice"):
        file_columns(jsonl)
    with pytest.raises(TicketFileError, match="line 2: the key 'text' is written twice"):
        list(iter_records(jsonl, ["id", "text"], 1 << 20))
    # A key written twice inside a nested value is the value's business, not a column.
    jsonl.write_text('{"text": "油烟扰民", "extra": {"a": 1, "a": 2}}\n', encoding="utf-8")
    assert read_tickets([jsonl])["text"].tolist() == ["油烟扰民"]

    xlsx = tmp_path / "t.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["id", "text", "text"])
    wb.active.append(["A1", "油烟扰民", "已回访"])
    wb.save(xlsx)
    with pytest.raises(TicketFileError) as e:
        read_tickets([xlsx])
    assert str(e.value) == f"{xlsx}: the header names 'text' more than once"
    with pytest.raises(TicketFileError, match="the header names 'text' more than once"):
        file_columns(xlsx)  # label refused it already, in its own words


def test_names_that_differ_only_by_spaces_are_refused_in_every_format(tmp_path: Path) -> None:
    # "text" and "text " (a stray space in a spreadsheet header, kept by a JSON export): label kept
    # the later key's value as the text, a note instead of the complaint; train and evaluate
    # failed with a pandas traceback ("Cannot set a DataFrame with multiple columns").
    import openpyxl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.label_io import file_columns, iter_records

    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        '{"id": "A1", "text": "老板拖欠工资"}\n{"id": "A2", "text": "油烟扰民", "text ": "已回访"}\n',
        encoding="utf-8",
    )
    arrow = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["油烟扰民"], " text": ["已回访"]}), arrow)
    xlsx = tmp_path / "t.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["text", "text "])
    wb.active.append(["油烟扰民", "已回访"])
    wb.save(xlsx)
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("text,text \n油烟扰民,已回访\n", encoding="utf-8")
    said = "are both read as 'text' (spaces around a name do not count); rename or drop one of them"
    cases = [
        (jsonl, ", line 2", "the keys 'text' and 'text '"),
        (arrow, "", "the columns 'text' and ' text'"),
        (xlsx, "", "the columns 'text' and 'text '"),
        (csv_file, ", line 1", "the columns 'text' and 'text '"),
    ]
    for path, line, names in cases:
        with pytest.raises(TicketFileError) as e:
            read_tickets([path])  # train, evaluate
        assert str(e.value) == f"{path}{line}: {names} {said}", path
        with pytest.raises(TicketFileError) as e:
            file_columns(path)  # label, before it reads any row
        assert str(e.value).startswith(str(path)) and str(e.value).endswith(f"{names} {said}")
    with pytest.raises(TicketFileError, match="line 2: the keys 'text' and 'text '"):
        list(iter_records(jsonl, ["id", "text"], 1 << 20))
    # A key with spaces alone is the same column on every line: each line is read.
    jsonl.write_text('{"text": "老板拖欠工资"}\n{" text ": "油烟扰民"}\n', encoding="utf-8")
    assert read_tickets([jsonl])["text"].tolist() == ["老板拖欠工资", "油烟扰民"]
    assert [r.values["text"] for r in iter_records(jsonl, ["text"], 1 << 20)] == [
        "老板拖欠工资",
        "油烟扰民",
    ]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r", "\r\r\n"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_a_jsonl_files_row_estimate_leaves_its_blank_lines_out(
    tmp_path: Path, end: str, bom: bytes
) -> None:
    # The progress estimate counted every line, blank ones too, which are no rows: a file
    # written with "\r\r\n" ends (one blank line after every row) was estimated at twice its rows.
    from training.label_io import estimate_rows, iter_records

    rows = [json.dumps(r, ensure_ascii=False) for r in ROWS]
    lines = ["", rows[0], "", "  \t", rows[1], '{"编号": "A4", "内容": ', "", " "]
    path = tmp_path / "t.jsonl"
    path.write_bytes(bom + end.join(lines).encode("utf-8"))
    records = list(iter_records(path, ["编号", "内容"], 1 << 20))
    assert len(records) == 3
    assert estimate_rows(path) == len(records)
    path.write_bytes(bom + "".join(line + end for line in lines).encode("utf-8"))
    assert estimate_rows(path) == len(list(iter_records(path, ["编号", "内容"], 1 << 20))) == 3


@pytest.mark.parametrize("ends", [["\n"], ["\r\n"], ["\r"], ["\r\n", "\n", "\r"]])
def test_jsonl_lines_end_at_any_line_end_in_every_reader(tmp_path: Path, ends: list[str]) -> None:
    # A lone "\r" (old Mac tools, or ends an editor mixed) made label read five tickets as one
    # broken row: it split lines at "\n" alone, where the column scan split at every line end.
    from training.label_io import estimate_rows, file_columns, iter_records

    lines = [json.dumps(r, ensure_ascii=False) for r in ROWS] + ["", '{"编号": "A4", "内容": ']
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        "".join(line + ends[i % len(ends)] for i, line in enumerate(lines)).encode("utf-8")
    )
    records = list(iter_records(path, ["编号", "内容"], 1 << 20))
    assert [r.values["内容"] for r in records] == ["老板拖欠工资", "烧烤店油烟扰民", ""]
    assert records[2].error is not None and records[2].where == "line 4 of t.jsonl"
    assert file_columns(path) == list(ROWS[0])
    assert estimate_rows(path) == len(records)  # the blank line is no row
    with pytest.raises(TicketFileError, match=r"t\.jsonl, line 4: not valid JSON"):
        read_tickets([path], MAP)
    path.write_bytes(path.read_bytes().rsplit(b"{", 1)[0])  # without the broken line
    got = read_tickets([path], MAP)
    assert got["text"].tolist() == ["老板拖欠工资", "烧烤店油烟扰民"] and got["_row"].tolist() == [
        1,
        2,
    ]


def test_a_crlf_split_between_two_blocks_ends_one_line(tmp_path: Path) -> None:
    from model.tickets import jsonl_lines

    first = '{"text": "' + "长" * 21_000 + '"}'
    first += " " * (65_535 - len(first.encode()))  # its "\r" ends the first block, its "\n" not
    assert len(first.encode()) == 65_535
    path = tmp_path / "t.jsonl"
    path.write_bytes(f'{first}\r\n{{"text": "油烟"}}\r{{"text": "噪音"}}'.encode())
    with open(path, "rb") as f:
        got = list(jsonl_lines(f))
    assert [json.loads(line)["text"][:2] for line in got] == ["长长", "油烟", "噪音"]


def test_pretty_printed_json_lines_are_refused_with_the_conversion(tmp_path: Path) -> None:
    # `jq .` (without -c) writes each object over several lines; the error was "not valid JSON"
    # (train) or "no column 'text'; the file has columns  (map yours with --text-col)" (label).
    from training.label_io import file_columns

    pretty = tmp_path / "pretty.jsonl"
    pretty.write_text(
        "".join(json.dumps(r, ensure_ascii=False, indent=2) + "\n" for r in ROWS), encoding="utf-8"
    )
    spaced = tmp_path / "spaced.jsonl"  # the first key on the object's first line
    spaced.write_text('{ "内容": "老板拖欠工资",\n  "编号": "A1" }\n', encoding="utf-8")
    for path in (pretty, spaced):
        for read in (lambda p: read_tickets([p], MAP), file_columns):
            with pytest.raises(TicketFileError) as e:
                read(path)
            assert str(e.value).startswith(f"{path}: the first line holds the start of a JSON")
            assert "pretty-printed over several lines; paidan reads JSON Lines" in str(e.value)
            assert f"jq -c . {path.name} > {path.stem}.compact.jsonl" in str(e.value)
    # A first line cut short inside a value is a broken line, reported as such.
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"内容": "老板拖\n{"内容": "油烟"}\n', encoding="utf-8")
    with pytest.raises(TicketFileError, match=r"cut\.jsonl, line 1: not valid JSON"):
        read_tickets([cut], MAP)
    assert file_columns(cut) == ["内容"]


def test_an_object_pretty_printed_after_the_first_line_is_named_with_its_lines(
    tmp_path: Path,
) -> None:
    # A file joined from a JSON Lines export and a `jq .` one: only the first line was checked
    # for that shape, so train said "line 2: not valid JSON (Expecting property name enclosed in
    # double quotes)", which does not say what to do.
    from training.label_io import file_columns

    path = tmp_path / "joined.jsonl"
    path.write_text(
        json.dumps(ROWS[0], ensure_ascii=False)
        + "\n"
        + json.dumps(ROWS[1], ensure_ascii=False, indent=2)
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], MAP)
    assert str(e.value) == (
        f"{path}, line 2: a JSON object pretty-printed over lines 2-8 (as jq . writes it); "
        "paidan reads JSON Lines, one ticket object per line (convert it with: "
        "jq -c . joined.jsonl > joined.compact.jsonl)"
    )
    assert file_columns(path) == list(ROWS[0])  # label makes the object an error row
    # An object cut short that the lines after it do not end is a broken line, and they are
    # lines of their own: the next one is whole, the one after it broken.
    path.write_text(
        '{"内容": "欠薪"}\n{"内容": "油烟",\n{"内容": "噪音"}\n{"内容\n', encoding="utf-8"
    )
    with pytest.raises(TicketFileError, match=r"line 2: not valid JSON \(Expecting property"):
        read_tickets([path], MAP)
    path.write_text('{"内容": "欠薪"}\n{"内容": "油烟",\n{"内容": "噪音"}\n', encoding="utf-8")
    assert file_columns(path) == ["内容"]


def test_an_empty_or_not_utf8_jsonl_says_so_in_every_reader(tmp_path: Path) -> None:
    # Label said "no column 'text' ...; the file has columns  (map yours with --text-col)", with
    # no columns or mojibake ones listed; train said so too for an empty file.
    from training.label_io import file_columns

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS)
    cases = {
        "empty.jsonl": (b"", ": the file is empty (no JSON objects)"),
        "blank.jsonl": (b"\n \r\n", ": the file is empty (no JSON objects)"),
        "gb.jsonl": (text.encode("gb18030"), ", line 1: not valid UTF-8"),
        "u16.jsonl": (text.replace("\n", "\r\n").encode("utf-16"), ", line 1: not valid UTF-8"),
    }
    for name, (data, says) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        for read in (lambda p: read_tickets([p], MAP), file_columns):
            with pytest.raises(TicketFileError) as e:
                read(path)
            assert str(e.value).startswith(f"{path}{says}"), (name, str(e.value))
    # Other lines that are not objects are left to the rows (error rows in label).
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"1001\n" + '{"内容": "油烟"}\n'.encode("gb18030") + b'{"id": "1"}\n')
    assert file_columns(mixed) == ["id"]
    mixed.write_bytes(b"\n1001\n")
    with pytest.raises(TicketFileError, match=r"mixed\.jsonl, line 2: expected a JSON object"):
        file_columns(mixed)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ('"note\\udfff": "x"', "key 'note\ufffd' has an unpaired surrogate escape \\udfff"),
        ('"note": "x\\ud800"', "field 'note' has an unpaired surrogate escape \\ud800"),
    ],
)
def test_an_unpaired_surrogate_escape_is_named_by_its_line_and_key_in_every_reader(
    tmp_path: Path, suffix: str, bad: str, says: str
) -> None:
    # train and evaluate refused the file in Python's words, "cannot be read as JSONL: 'utf-8'
    # codec can't encode character '\udfff' …", naming neither the line nor the key; label says
    # both (an error row): the same words here.
    objects = [
        '{"内容": "楼下烧烤店油烟很大", "部门": "城管"}',
        '{"内容": "电梯坏了", "部门": "住建", ' + bad + "}",
        '{"内容": "老板拖欠工资", "部门": "人社"}',
    ]
    path = tmp_path / f"in{suffix}"
    text = "\n".join(objects) if suffix == ".jsonl" else "[" + ",\n".join(objects) + "]"
    path.write_text(text + "\n", encoding="utf-8")
    where = "line 2" if suffix == ".jsonl" else "element 2"
    readers = {
        "read_tickets": lambda: read_tickets([path], MAP),
        "iter_tickets": lambda: list(iter_tickets([path], MAP, size=1)),
    }
    for name, read in readers.items():
        with pytest.raises(TicketFileError) as e:
            read()
        assert str(e.value) == (f"{path}, {where}: {says}, which is not a Unicode character"), name


def test_json_objects_without_keys_are_named_as_such_in_every_reader(tmp_path: Path) -> None:
    # Label's column scan called a file of {} lines "empty (no JSON objects)", and train said
    # "no column '内容' ...; the file has columns  (map yours with --text-col)", listing none.
    from training.label_io import file_columns

    path = tmp_path / "keyless.jsonl"
    path.write_text("\n{}\n{ }\n", encoding="utf-8")
    for read in (lambda p: read_tickets([p], MAP), file_columns):
        with pytest.raises(TicketFileError) as e:
            read(path)
        assert str(e.value) == (
            f"{path}, line 2: the JSON objects have no keys ({{}} on every line), so the file has "
            "no column for the ticket text"
        )
    # A line that is not an object is named first, as before.
    path.write_text("{}\n1001\n", encoding="utf-8")
    for read in (lambda p: read_tickets([p], MAP), file_columns):
        with pytest.raises(TicketFileError, match=r"line 2: expected a JSON object per line"):
            read(path)


def test_parquet_lists_of_binary_strings_are_json_of_text(tmp_path: Path) -> None:
    # list<binary>: json.dumps failed on the bytes, a traceback in label.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.label_io import iter_records

    path = tmp_path / "t.parquet"
    tags = pa.array([["欠薪".encode()], ["油烟".encode("gb18030")]], pa.list_(pa.binary()))
    pq.write_table(pa.table({"text": ["老板拖欠工资", "烧烤店油烟扰民"], "tags": tags}), path)
    records = list(iter_records(path, ["text", "tags"], 1 << 20))
    assert records[0].values["tags"] == '["欠薪"]' and records[0].error is None
    assert records[1].error == "unreadable: row 2 of t.parquet: column 'tags' is not UTF-8"
    assert records[1].values["text"] == "烧烤店油烟扰民"
    with pytest.raises(TicketFileError, match=r"t\.parquet, row 2: column 'tags' is not UTF-8"):
        read_tickets([path])
    pq.write_table(pa.table({"text": ["老板拖欠工资"], "tags": tags[:1]}), path)
    assert read_table(path)["tags"].tolist() == ['["欠薪"]']


def with_dimension(path: Path, ref: str) -> Path:
    """Rewrite the first sheet's declared size (``<dimension ref=...>``), as stale exporters leave it."""
    import re
    import zipfile

    src = path.with_name("fresh-" + path.name)
    path.rename(src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data, n = re.subn(
                    rb'<dimension ref="[^"]*"\s*/>', f'<dimension ref="{ref}"/>'.encode(), data
                )
                assert n == 1
            zout.writestr(item, data)
    src.unlink()
    return path


def test_a_stale_sheet_dimension_does_not_hide_the_later_monthly_sheets(tmp_path):
    # Read-only openpyxl trusts the declared size: with "A1" the first sheet's header read as
    # 'id' alone, unlike the later sheets', and the workbook of months passed as one sheet.
    df = pd.DataFrame(ROWS)
    path = with_dimension(write_workbook(tmp_path / "m.xlsx", {"1月": df, "2月": df}), "A1")
    with pytest.raises(TicketFileError, match=r"sheets '2月' \(the same columns\)"):
        read_tickets([path], MAP)


def macro_enabled(path: Path) -> Path:
    """The workbook at ``path`` (an .xlsx) as Excel saves it macro-enabled: ``path`` with .xlsm."""
    import zipfile

    xlsx = b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
    xlsm = b"application/vnd.ms-excel.sheet.macroEnabled.main+xml"
    out = path.with_suffix(".xlsm")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "[Content_Types].xml":
                data, n = data.replace(xlsx, xlsm), data.count(xlsx)
                assert n == 1
            zout.writestr(item, data)
    path.unlink()
    return out


def test_a_macro_enabled_workbook_is_read_as_a_workbook(tmp_path):
    # Refused as "unsupported file type '.xlsm'", though its sheets are an .xlsx's: offices whose
    # export runs a macro had to re-save every month's file before training or labelling.
    pd.DataFrame(ROWS).to_excel(tmp_path / "2025-10.xlsx", index=False)
    path = macro_enabled(tmp_path / "2025-10.xlsx")
    assert read_tickets([path], MAP)["id"].tolist() == ["A1", "A2"]
    parts = tmp_path / "parts"
    parts.mkdir()
    path.rename(parts / path.name)
    pd.DataFrame(ROWS).assign(编号=["B1", "B2"]).to_csv(parts / "2025-11.csv", index=False)
    assert read_tickets([parts], MAP)["id"].tolist() == ["A1", "A2", "B1", "B2"]


def zero_padded_ids(path: Path) -> Path:
    """Ids 123, 124 shown as 00123, 00124 by the format "00000"; 125 plain; "00126" typed as text."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text"])
    for ticket in [123, 124, 125, "00126"]:
        ws.append([ticket, "欠薪", "老板拖欠工资三个月不发"])
    ws["A2"].number_format = ws["A3"].number_format = "00000"
    ws["A4"].number_format = "0"
    wb.save(path)
    return path


def test_an_id_shown_zero_padded_by_its_number_format_is_read_as_shown(tmp_path):
    # Read as 123, the ticket shown and typed as 00123 no longer matched its sheet.
    got = read_tickets([zero_padded_ids(tmp_path / "ids.xlsx")])
    assert got["id"].tolist() == ["00123", "00124", "125", "00126"]


def formula_texts(path: Path) -> Path:
    """Texts joined by formulas saved without their values, as openpyxl and pandas write them.

    Row 3's text is typed; row 4's formula has an empty result that Excel saved (``t="str"``).
    """
    import re
    import zipfile

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "诉求标题", "诉求内容", "text", "department"])
    ws.append(["F1", "欠薪", "老板拖欠工资", '=B2&"。"&C2', "人社"])
    ws.append(["F2", "油烟", "烧烤店油烟扰民", "烧烤店油烟扰民", "执法"])
    ws.append(["F3", "噪音", "工地夜间施工", '=IF(A4="","","")', "执法"])
    wb.save(path)
    with zipfile.ZipFile(path) as z:
        parts = {i.filename: z.read(i.filename) for i in z.infolist()}
    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet], n = re.subn(rb'<c r="D4"', b'<c r="D4" t="str"', parts[sheet])
    assert n == 1
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return path


def test_a_text_formula_saved_without_its_value_is_refused_naming_row_and_column(tmp_path):
    # Read as empty, the rows were skipped as "empty text" (evaluate: "no row has a label").
    path = formula_texts(tmp_path / "f.xlsx")
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert str(e.value) == (
        f"{path}, row 2: column 'text' holds the formula '=B2&\"。\"&C2' saved without its value "
        "(a program that does not calculate formulas wrote the file); open and save the file in "
        "Excel, or export it with values"
    )


def formula_titles_and_labels(path: Path, title: str = "=LEFT(C2,2)") -> Path:
    """A title (row 2) and a department (row 3) that are formulas saved without their values."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text", "department", "category"])
    ws.append(["F1", title, "老板拖欠工资", "人社", "劳动保障"])
    ws.append(["F2", "油烟", "烧烤店油烟扰民", '=IF(C3="","","执法")', "环境"])
    ws.append(["F3", "噪音", "工地夜间施工", "执法", "环境"])
    wb.save(path)
    return path


def test_a_title_or_label_formula_saved_without_its_value_is_refused_as_a_text_one_is(tmp_path):
    # Only the text column was checked: the title was read as empty and the department as
    # missing, and the tickets trained so without a word.
    path = formula_titles_and_labels(tmp_path / "f.xlsx")
    saved = "saved without its value (a program that does not calculate formulas wrote the file)"
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert str(e.value) == (
        f"{path}, row 2: column 'title' holds the formula '=LEFT(C2,2)' {saved}; open and save "
        "the file in Excel, or export it with values"
    )
    formula_titles_and_labels(path, title="欠薪")
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert str(e.value).startswith(
        f'{path}, row 3: column \'department\' holds the formula \'=IF(C3="","","执法")\' {saved}'
    )
    # The label column of the category head, mapped to it, is checked as well.
    with pytest.raises(TicketFileError, match=r"row 3: column 'department' holds the formula"):
        read_tickets([path], ColumnMap(category="department", department=None))


def test_has_formulas_finds_the_formula_tag_not_text_that_looks_like_it(tmp_path):
    # A workbook without formulas is not read twice more for unsaved ones.
    import openpyxl

    from model.tickets import has_formulas

    assert has_formulas(formula_titles_and_labels(tmp_path / "f.xlsx"))
    wb = openpyxl.Workbook()
    wb.active.append(["text", "title"])
    wb.active.append(["<f>=1</f> <x:f t='shared'/>", ""])
    wb.save(tmp_path / "plain.xlsx")
    assert not has_formulas(tmp_path / "plain.xlsx")


def tickets_below_a_title(path: Path) -> Path:
    """Tickets under a merged title row, as staff save them."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["2025年12月12345工单明细"])
    ws.merge_cells("A1:E1")
    ws.append(list(ROWS[0]))
    for row in ROWS:
        ws.append(list(row.values()))
    wb.save(path)
    return path


def test_a_header_of_two_rows_is_said_to_need_its_names_in_one(tmp_path):
    # A header of two rows (多级表头: 诉求 merged over 标题 and 内容, 编号 and 部门 merged down
    # both rows) was met with "row 2 names '标题': delete the rows above it", which deleted the
    # names 编号 and 部门 with row 1, and the next run could find no id column.
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["编号", "诉求", None, "部门", "类别"])
    ws.append([None, "标题", "内容", None, None])
    for merged in ("A1:A2", "B1:C1", "D1:D2", "E1:E2"):
        ws.merge_cells(merged)
    for row in ROWS:
        ws.append(list(row.values()))
    wb.save(tmp_path / "two.xlsx")
    with pytest.raises(TicketFileError) as e:
        read_tickets([tmp_path / "two.xlsx"], MAP)
    assert str(e.value).endswith(
        "(the header is read from the first row of the first sheet, 'Sheet', but row 2 names "
        "'标题', under a header of 2 rows whose names above it, '编号', '部门' and '类别', are "
        "over empty cells of it (merged cells?): write every column's name into row 2, then "
        "delete the rows above it)"
    ), str(e.value)


def test_a_hidden_first_sheet_is_said_to_be_hidden(tmp_path):
    # A workbook whose first sheet (a lookup table, 配置) is hidden: the message named a sheet
    # the user could not see in Excel, and "move that sheet first" when it already looked first.
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "配置"
    wb.active.append(["部门", "代码"])
    wb.active.sheet_state = "hidden"
    tickets = wb.create_sheet("明细")
    tickets.append(list(ROWS[0]))
    for row in ROWS:
        tickets.append(list(row.values()))
    wb.active = 1
    wb.save(tmp_path / "hidden.xlsx")
    with pytest.raises(TicketFileError) as e:
        read_tickets([tmp_path / "hidden.xlsx"], MAP)
    assert str(e.value).endswith(
        "(the header is read from the first row of the first sheet, '配置', which is hidden (Excel "
        "does not show it: right-click a sheet tab, Unhide / 取消隐藏), but sheet '明细' has a "
        "column '编号': move that sheet first, or save it as a file of its own)"
    )


def test_a_header_below_a_title_row_or_on_a_later_sheet_is_pointed_at(tmp_path):
    # The message listed 'Unnamed: 1'... or the totals' columns and suggested --text-col.
    titled = tickets_below_a_title(tmp_path / "titled.xlsx")
    with pytest.raises(TicketFileError) as e:
        read_tickets([titled], MAP)
    assert str(e.value).endswith(
        "(the header is read from the first row of the first sheet, 'Sheet', but row 2 names "
        "'编号': delete the rows above it)"
    )
    totals = pd.DataFrame({"承办部门": ["人社"], "件数": [2]})
    later = write_workbook(tmp_path / "later.xlsx", {"汇总": totals, "明细": pd.DataFrame(ROWS)})
    with pytest.raises(TicketFileError) as e:
        read_tickets([later], MAP)
    assert str(e.value).endswith(
        "(the header is read from the first row of the first sheet, '汇总', but sheet '明细' has "
        "a column '编号': move that sheet first, or save it as a file of its own)"
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([later], ColumnMap(text="正文"))
    assert str(e.value).endswith(
        "(the header is read from the first row of the first sheet, '汇总'; map yours with "
        "--text-col)"
    )


def east_asian_dates(path: Path) -> Path:
    """Times shown as Chinese Excel's built-in 2024年1月5日 (id 31) and 1月6日 (id 58) formats,
    written as Excel writes them: by id alone, with no ``<numFmt>`` element."""
    import re
    import zipfile
    from datetime import datetime

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text", "time"])
    ws.append(["1", "欠薪", "老板拖欠工资三个月不发", datetime(2024, 1, 5, 9)])
    ws.append(["2", "路灯", "小区门口路灯坏了", datetime(2024, 1, 6, 10, 30)])
    ws["D2"].number_format = 'yyyy"年"m"月"d"日"'
    ws["D3"].number_format = 'm"月"d"日"'
    fresh = path.with_name("fresh-" + path.name)
    wb.save(fresh)
    with zipfile.ZipFile(fresh) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "xl/styles.xml":
                styles = data.decode()
                ids = dict(re.findall(r'<numFmt numFmtId="(\d+)" formatCode="([^"]*)"', styles))
                styles = re.sub(r"<numFmts.*?</numFmts>", "", styles, flags=re.S)
                for custom, code in ids.items():  # (openpyxl's default date format is unused)
                    builtin = "31" if "年" in code else "58" if "月" in code else "22"
                    styles = styles.replace(f'numFmtId="{custom}"', f'numFmtId="{builtin}"')
                assert 'numFmtId="31"' in styles and 'numFmtId="58"' in styles
                data = styles.encode()
            zout.writestr(item, data)
    fresh.unlink()
    return path


def test_east_asian_built_in_date_formats_are_read_as_dates(tmp_path):
    # Read as the serial numbers 45296.375 and 45297.4375: train --since refused every row as
    # "no readable time", and label wrote the number where Excel showed 2024年1月5日.
    got = read_tickets([east_asian_dates(tmp_path / "dates.xlsx")])
    assert got["time"].tolist() == ["2024-01-05 09:00:00", "2024-01-06 10:30:00"]


def joined_with_copy(path: Path) -> Path:
    """Two monthly exports joined byte-wise (``copy 1月.csv+2月.csv``): the second part's header,
    with its BOM, is a line inside the file (data row 3)."""
    part = "\ufeff工单编号,标题,诉求内容,处理部门\r\n"
    first = part + "A1,欠薪,老板拖欠工资三个月不发,人社局\r\nA2,路灯,小区门口路灯坏了,城管局\r\n"
    second = part + "B1,噪音,夜间施工噪音扰民,执法局\r\n"
    path.write_bytes(first.encode("utf-8") + second.encode("utf-8"))
    return path


@pytest.mark.parametrize("end", ["\r\n\x1a", "\x1a"])
def test_the_ctrl_z_that_copy_appends_is_not_a_row(tmp_path, end):
    # cmd's `copy a.csv+b.csv` ends the file with Ctrl-Z: read as a last record of one field, train
    # refused the file ("malformed CSV: line 6: it has 1 fields").
    path = joined_with_copy(tmp_path / "一季度.csv")
    path.write_bytes(path.read_bytes().removesuffix(b"\r\n") + end.encode())
    columns = ColumnMap(id="工单编号", title="标题", text="诉求内容", department="处理部门")
    got = read_tickets([path], columns)
    assert got["id"].tolist() == ["A1", "A2", "B1"]
    assert got["department"].tolist() == ["人社局", "城管局", "执法局"]


def joined_jsonl_with_copy(path: Path, end: bytes) -> Path:
    """Two JSON Lines parts joined with ``copy 1月.jsonl+2月.jsonl`` (ASCII mode): Ctrl-Z at the
    end, after ``end``'s line end (or none)."""
    rows = [
        {"工单编号": "A1", "诉求内容": "老板拖欠工资三个月不发", "处理部门": "人社局"},
        {"工单编号": "B1", "诉求内容": "夜间施工噪音扰民", "处理部门": "执法局"},
    ]
    body = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    path.write_bytes(body.encode("utf-8") + end)
    return path


@pytest.mark.parametrize("end", [b"\r\n\x1a", b"\x1a"])
def test_the_ctrl_z_that_copy_appends_to_json_lines_is_not_a_line(tmp_path, end):
    # As for CSV: train and evaluate refused the file ("line 3: not valid JSON"), at a line that
    # looks empty in an editor.
    path = joined_jsonl_with_copy(tmp_path / "一季度.jsonl", end)
    columns = ColumnMap(id="工单编号", text="诉求内容", department="处理部门")
    got = read_tickets([path], columns)
    assert got["id"].tolist() == ["A1", "B1"]
    assert got["department"].tolist() == ["人社局", "执法局"]


def test_a_ctrl_z_line_inside_json_lines_is_still_refused(tmp_path):
    # Only at the end of the file is it the end-of-file mark; a line of it before others is an
    # error, as in a CSV file.
    path = joined_jsonl_with_copy(tmp_path / "t.jsonl", b"\r\n\x1a\r\n")
    path.write_bytes(
        path.read_bytes() + b'{"\xe5\xb7\xa5\xe5\x8d\x95\xe7\xbc\x96\xe5\x8f\xb7": "C1"}\r\n'
    )
    columns = ColumnMap(id="工单编号", text="诉求内容", department="处理部门")
    with pytest.raises(TicketFileError, match="line 3"):
        read_tickets([path], columns)


def joined_quoted(path: Path) -> Path:
    """Two exports whose every field is quoted, joined byte-wise: the inner header reads
    ``\ufeff"工单编号",…``, and the CSV reader keeps the quotes of a field not starting with one."""
    part = '\ufeff"工单编号","标题","诉求内容","处理部门"\r\n'
    first = part + '"A1","欠薪","老板拖欠工资三个月不发","人社局"\r\n'
    second = part + '"B1","噪音","夜间施工噪音扰民","执法局"\r\n'
    path.write_bytes(first.encode("utf-8") + second.encode("utf-8"))
    return path


def test_a_quoted_header_repeated_after_a_bom_is_left_out(tmp_path, caplog):
    # Read as a ticket whose department is 处理部门, it was trained on without a word.
    columns = ColumnMap(id="工单编号", title="标题", text="诉求内容", department="处理部门")
    got = read_tickets([joined_quoted(tmp_path / "一季度.csv")], columns)
    assert got["id"].tolist() == ["A1", "B1"]
    assert got["_row"].tolist() == [1, 3]
    assert "一季度.csv: left out 1 row that repeats the header line, data row 2" in caplog.text


def test_a_header_repeated_inside_a_joined_csv_is_left_out_and_named(tmp_path, caplog):
    # Read as a ticket whose text is 诉求内容 and department 处理部门, it was trained on and scored.
    columns = ColumnMap(id="工单编号", title="标题", text="诉求内容", department="处理部门")
    got = read_tickets([joined_with_copy(tmp_path / "一季度.csv")], columns)
    assert got["id"].tolist() == ["A1", "A2", "B1"]
    assert got["_row"].tolist() == [1, 2, 4]
    assert "一季度.csv: left out 1 row that repeats the header line, data row 3" in caplog.text
    # A ticket that merely mentions a column's name is a ticket.
    (tmp_path / "t.csv").write_text("text,department\ntext,人社局\n", encoding="utf-8")
    assert read_tickets([tmp_path / "t.csv"])["text"].tolist() == ["text"]


@pytest.mark.parametrize(
    "data, says",
    [
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096),
            "it is an Excel 97-2003 workbook (.xls), or a workbook saved with a password, under "
            "an .xlsx name, and renaming does not convert it: open it in Excel or WPS and save it "
            "as an Excel workbook (.xlsx) or as CSV UTF-8",
        ),
        (
            "id,text\r\n1,路灯不亮\r\n".encode("gbk"),
            "it is text, not a workbook (a CSV export under an .xlsx name?): rename it to .csv, or",
        ),
        ("id\ttext\n1\t路灯不亮\n".encode(), "rename it to .csv and pass --delimiter tab, or"),
        (
            "\ufeff<html><table><tr><td>id</td></tr></table></html>".encode(),
            "it is a web page (an HTML or XML table, as web systems' exports write) under an "
            ".xlsx name, not a workbook",
        ),
        (b"", "the file is empty"),
    ],
)
def test_a_file_named_xlsx_that_is_no_workbook_is_refused_saying_what_it_is(tmp_path, data, says):
    # Refused in zipfile's words, "File is not a zip file", by train, evaluate and label alike.
    from training.label_io import file_columns

    path = tmp_path / "工单.xlsx"
    path.write_bytes(data)
    for read in (read_table, file_columns):
        with pytest.raises(TicketFileError) as e:
            read(path)
        assert str(e.value).startswith(f"{path}: cannot be read as XLSX: ")
        assert says in str(e.value)
        assert "zip file" not in str(e.value)


def parquet_bytes() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"id": ["1"], "text": ["路灯不亮"]}), sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    "data, says",
    [
        (
            None,  # a workbook saved or renamed with a .csv name
            "it is a zip archive, as an Excel workbook (.xlsx) is, not CSV text: if it is a "
            "workbook, rename it to .xlsx; if it is a .zip archive, extract it",
        ),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096),
            "it is an Excel 97-2003 workbook (.xls), or a workbook saved with a password, not CSV "
            "text: open it in Excel or WPS and save it as an Excel workbook (.xlsx) or as CSV UTF-8",
        ),
        (
            gzip.compress("id,text\n1,路灯不亮\n".encode()),
            "it is gzip-compressed, not CSV text: decompress it (gunzip)",
        ),
        (parquet_bytes(), "it is a Parquet file, not CSV text: rename it to .parquet"),
    ],
    ids=["xlsx", "xls", "gzip", "parquet"],
)
def test_a_file_named_csv_that_is_no_text_is_refused_saying_what_it_is(tmp_path, data, says):
    # A workbook exported under a .csv name was refused as "line 1: the header is not valid
    # gb18030" by label and as a text of undecodable bytes by train: its bytes read as GB18030.
    from training.label_io import file_columns

    path = tmp_path / "工单.csv"
    if data is None:
        pd.DataFrame({"id": ["1"], "text": ["路灯不亮"]}).to_excel(tmp_path / "w.xlsx", index=False)
        data = (tmp_path / "w.xlsx").read_bytes()
    path.write_bytes(data)
    for read in (read_table, file_columns):
        with pytest.raises(TicketFileError) as e:
            read(path)
        assert str(e.value) == f"{path}: {says}"


@pytest.mark.parametrize("name", ["工单.jsonl", "工单.json"])
def test_a_file_named_json_that_is_no_text_is_refused_saying_what_it_is(tmp_path, name):
    # Refused as "line 1: not valid UTF-8 (JSON Lines files are UTF-8)", as if it were text.
    from training.label_io import file_columns

    path = tmp_path / name
    path.write_bytes(gzip.compress('{"id": "1", "text": "路灯不亮"}\n'.encode()))
    for read in (read_table, file_columns):
        with pytest.raises(TicketFileError) as e:
            read(path)
        assert str(e.value) == (
            f"{path}: it is gzip-compressed, not JSON text: decompress it (gunzip)"
        )


def test_a_workbook_cut_short_is_said_to_be_incomplete(tmp_path):
    # A copy or download that stopped half-way: a zip archive without its end. It was refused as
    # "not an XLSX workbook (no zip archive)" and told to be saved from Excel as a workbook, which
    # it is; it must be copied again.
    from training.label_io import file_columns

    whole = tmp_path / "whole.xlsx"
    pd.DataFrame({"id": ["1"], "text": ["路灯不亮" * 200]}).to_excel(whole, index=False)
    path = tmp_path / "工单.xlsx"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for read in (read_table, file_columns):
        with pytest.raises(TicketFileError) as e:
            read(path)
        assert str(e.value).startswith(f"{path}: cannot be read as XLSX: ")
        assert "damaged or incomplete" in str(e.value)
        assert "copy it again" in str(e.value)
        assert "no zip archive" not in str(e.value)


def _damaged(whole: Path, path: Path, at: float) -> Path:
    """``whole`` with bytes of its sheet's compressed data flipped, ``at`` (0 to 1) along it."""
    import zipfile

    raw = bytearray(whole.read_bytes())
    with zipfile.ZipFile(whole) as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    spot = start + int(info.compress_size * at)
    for i in range(spot, spot + 40):
        raw[i] ^= 0x55
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("at", [0.0, 0.1, 0.9])
def test_a_damaged_workbook_is_said_to_be_damaged(tmp_path, at):
    # Part of a workbook's compressed data corrupt (a failing disk, a faulty copy): it was refused
    # with zlib's or zipfile's words ("Error -3 while decompressing data: invalid distance too far
    # back", "Bad CRC-32 for file 'xl/worksheets/sheet1.xml'"), and label, which meets it only
    # while reading the rows, stopped with a traceback. (The header, all label reads first, is
    # damaged only at 0.0.)
    from model.tickets import table_chunks
    from training.label_io import file_columns, iter_records

    whole = tmp_path / "whole.xlsx"
    pd.DataFrame(
        {"id": [f"S{i}" for i in range(3000)], "text": [f"路灯不亮第{i}号" for i in range(3000)]}
    ).to_excel(whole, index=False)
    path = _damaged(whole, tmp_path / "工单.xlsx", at)
    readers = {
        "read_table": read_table,
        "table_chunks": lambda p: list(table_chunks(p, size=100)),
        "file_columns": file_columns,
        "iter_records": lambda p: list(iter_records(p, ["id", "text"], 1 << 20, text_col="text")),
    }
    if at:
        del readers["file_columns"]
    for name, read in readers.items():
        with pytest.raises(TicketFileError) as e:
            read(path)
        message = str(e.value)
        assert message.startswith(f"{path}: cannot be read as XLSX: "), name
        assert "the workbook is damaged" in message, (name, message)
        assert "copy it again" in message, name
        for raw in ("Error -3", "CRC", "decompressing", "its end is missing"):
            assert raw not in message, (name, message)


def _remade(whole: Path, path: Path, member: str, edit) -> Path:
    """``whole`` zipped again with its part ``member`` edited by ``edit`` (sound checksums)."""
    import zipfile

    with zipfile.ZipFile(whole) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            out.writestr(info, edit(data) if info.filename == member else data)
    return path


SHEET = "xl/worksheets/sheet1.xml"


@pytest.mark.parametrize(
    "member, edit, header",
    [
        # A tag left open in a row, a sheet cut off within a row, a byte XML forbids.
        (SHEET, lambda d: d.replace(b'<row r="1500"', b'<row r="1500"><c r="A1"><v>1', 1), False),
        (SHEET, lambda d: d[: d.index(b'<row r="1500"') + 20], False),
        (SHEET, lambda d: d.replace(b'<row r="1500"', b'<row r="1500" \x01', 1), False),
        (SHEET, lambda d: d.replace(b'<row r="1"', b'<row r="1"><c', 1), True),
        ("xl/workbook.xml", lambda d: d[: len(d) // 2], True),
        ("xl/styles.xml", lambda d: d[: len(d) // 2], True),
    ],
    ids=["tag-left-open", "cut-in-a-row", "invalid-byte", "header-row", "workbook", "styles"],
)
def test_a_workbook_whose_xml_is_malformed_is_said_to_be_damaged(tmp_path, member, edit, header):
    # A workbook whose zip archive is sound (its checksums too) but one of whose XML parts is not
    # well-formed, as a program that writes workbooks badly leaves it: refused in the XML parser's
    # words alone ("mismatched tag: line 1, column 188324"), and label's row reader raised the
    # ParseError itself where the workbook's or its styles' XML was malformed.
    import re

    from model.tickets import table_chunks
    from training.label_io import file_columns, iter_records

    whole = tmp_path / "whole.xlsx"
    pd.DataFrame(
        {"id": [f"S{i}" for i in range(3000)], "text": [f"路灯不亮第{i}号" for i in range(3000)]}
    ).to_excel(whole, index=False)
    path = _remade(whole, tmp_path / "工单.xlsx", member, edit)
    readers = {
        "read_table": read_table,
        "table_chunks": lambda p: list(table_chunks(p, size=100)),
        "file_columns": file_columns,
        "iter_records": lambda p: list(iter_records(p, ["id", "text"], 1 << 20, text_col="text")),
    }
    if not header:
        del readers["file_columns"]  # it reads the sheet's first row only
    for name, read in readers.items():
        with pytest.raises(TicketFileError) as e:
            read(path)
        message = str(e.value)
        assert message.startswith(f"{path}: cannot be read as XLSX: the workbook is damaged"), (
            name,
            message,
        )
        assert "Excel or WPS" in message and "CSV" in message, (name, message)
        # Which part: the sheet, or the workbook's own parts, which no row names.
        assert f"the XML of its part {member} is malformed" in message, (name, message)
        # The parser's words and position, as a detail.
        assert re.search(
            r"\((mismatched tag|unclosed token|not well-formed \(invalid token\)|"
            r"no element found): line \d+, column \d+\)",
            message,
        ), (name, message)


def test_a_zip_archive_that_is_no_workbook_is_refused_saying_what_it_is(tmp_path):
    # A .zip of CSV files renamed .xlsx, or a Word document saved as .xlsx: "There is no item
    # named '[Content_Types].xml' in the archive" and "File contains no valid workbook part".
    import zipfile

    from model.tickets import table_chunks
    from training.label_io import file_columns, iter_records

    csvs = tmp_path / "工单.xlsx"
    with zipfile.ZipFile(csvs, "w") as z:
        z.writestr("一月.csv", "id,text\n1,路灯不亮\n")
        z.writestr("二月.csv", "id,text\n2,噪音扰民\n")
    docx = tmp_path / "说明.xlsx"
    with zipfile.ZipFile(docx, "w") as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        z.writestr("word/document.xml", "<w:document/>")
    readers = {
        "read_table": read_table,
        "table_chunks": lambda p: list(table_chunks(p, size=100)),
        "file_columns": file_columns,
        "iter_records": lambda p: list(iter_records(p, ["id", "text"], 1 << 20, text_col="text")),
    }
    for name, read in readers.items():
        for path, what in ((csvs, "一月.csv, 二月.csv"), (docx, "Word document")):
            with pytest.raises(TicketFileError) as e:
                read(path)
            message = str(e.value)
            assert message.startswith(f"{path}: cannot be read as XLSX: "), name
            assert "not an Excel workbook" in message, (name, message)
            assert what in message, (name, message)
            for raw in ("[Content_Types].xml", "no valid workbook part"):
                assert raw not in message, (name, message)


def gb18030_with_bom(path: Path) -> Path:
    """A GB18030 CSV that starts with GB18030's byte-order mark, 84 31 95 33."""
    text = "id,title,text\nG1,欠薪,老板拖欠工资三个月不发\n"
    path.write_bytes(b"\x84\x31\x95\x33" + text.encode("gb18030"))
    return path


def test_gb18030s_byte_order_mark_is_no_part_of_the_first_column_name(tmp_path):
    # The first column was '\ufeffid': the ids silently not found (numbered <file>:<row>), and a
    # file starting with its text column refused as having no column 'text'.
    got = read_tickets([gb18030_with_bom(tmp_path / "gb.csv")])
    assert got["id"].tolist() == ["G1"]
    assert list(read_table(tmp_path / "gb.csv").columns) == ["id", "title", "text"]


def excel_line_ends(path: Path) -> Path:
    """Texts with line ends as Excel stores a CR LF typed or pasted into a cell: ``_x000D_\\n``; and
    a literal ``_x000D_`` as Excel escapes it, ``_x005F_x000D_``."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text"])
    ws.append(["1", "路灯_x000D_\n坏了", "小区门口路灯坏了一周_x000D_\n晚上出行很不方便"])
    ws.append(["2", "欠薪", "代码里写着_x005F_x000D_字样，老板拖欠工资"])
    wb.save(path)
    return path


def test_excels_escaped_carriage_returns_are_read_as_excel_shows_them(tmp_path):
    # Read as the text "…一周_x000D_\n晚上…", which label copied into its output.
    got = read_tickets([excel_line_ends(tmp_path / "crlf.xlsx")])
    assert got["text"].tolist() == [
        "小区门口路灯坏了一周\r\n晚上出行很不方便",
        "代码里写着_x000D_字样，老板拖欠工资",
    ]
    assert got["title"].tolist() == ["路灯\r\n坏了", "欠薪"]


def as_shared_strings(path: Path) -> Path:
    """A workbook openpyxl wrote (its text inline) rewritten with its text as shared strings, as
    Excel and WPS store it."""
    import re
    import zipfile

    with zipfile.ZipFile(path) as z:
        parts = {name: z.read(name).decode("utf-8") for name in z.namelist()}
    strings: list[str] = []

    def shared(m: re.Match[str]) -> str:
        strings.append(m[2])
        return f'<c r="{m[1]}" t="s"><v>{len(strings) - 1}</v></c>'

    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet] = re.sub(r'<c r="(\w+)" t="inlineStr"><is>(.*?)</is></c>', shared, parts[sheet])
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    parts["xl/sharedStrings.xml"] = (
        f'<sst xmlns="{main}">' + "".join(f"<si>{t}</si>" for t in strings) + "</sst>"
    )
    kind = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(
        "</Types>", f'<Override PartName="/xl/sharedStrings.xml" ContentType="{kind}"/></Types>'
    )
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"
    rels = "xl/_rels/workbook.xml.rels"
    parts[rels] = parts[rels].replace(
        "</Relationships>",
        f'<Relationship Id="rIdS" Type="{rel}" Target="sharedStrings.xml"/></Relationships>',
    )
    with zipfile.ZipFile(path, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return path


def test_a_literal_escape_in_shared_strings_is_read_as_excel_shows_it(tmp_path):
    # openpyxl dropped the x005F_ of Excel's _x005F_x000D_ and xlsx_text then decoded the rest
    # again: a cell Excel shows as "…_x000D_…" was read with a carriage return.
    path = as_shared_strings(excel_line_ends(tmp_path / "shared.xlsx"))
    got = read_tickets([path])
    assert got["text"].tolist() == [
        "小区门口路灯坏了一周\r\n晚上出行很不方便",
        "代码里写着_x000D_字样，老板拖欠工资",
    ]
    assert got["title"].tolist() == ["路灯\r\n坏了", "欠薪"]


def test_an_emoji_escaped_as_its_utf16_halves_is_read_as_the_emoji(tmp_path):
    # Each half was decoded alone into a lone surrogate: train refused the whole workbook ("surrogates
    # not allowed") and label crashed writing its output.
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text"])
    ws.append(["1", "噪音_xD83D__xDE21_", "楼下装修太吵了_xD83D__xDE21__xD83D__xDE21_"])
    ws.append(["2", "欠薪", "老板拖欠工资_xD83D_"])
    wb.save(tmp_path / "emoji.xlsx")
    got = read_tickets([tmp_path / "emoji.xlsx"])
    assert got["title"].tolist() == ["噪音\U0001f621", "欠薪"]
    assert got["text"].tolist() == ["楼下装修太吵了\U0001f621\U0001f621", "老板拖欠工资\ufffd"]
    for value in got["text"]:
        value.encode("utf-8")


def test_a_directory_reads_its_subdirectories_in_order_of_their_paths(tmp_path):
    # March's export in parts in backlog/2024-03/ (or a Spark/Hive month=… partition) was left
    # out without a word: label labelled, evaluate scored and train trained on the top level only.
    from model.tickets import expand_paths, named_paths

    d = tmp_path / "backlog"
    rows = [{**ROWS[i % 2], "编号": f"A{i}"} for i in range(6)]
    (d / "2024-03").mkdir(parents=True)
    (d / "month=2024-04" / "day=1").mkdir(parents=True)
    pd.DataFrame(rows[0:1]).to_csv(d / "2024-01.csv", index=False)
    pd.DataFrame(rows[1:2]).to_csv(d / "2024-02.csv", index=False)
    pd.DataFrame(rows[3:4]).to_csv(d / "2024-03" / "part-2.csv", index=False)
    pd.DataFrame(rows[2:3]).to_csv(d / "2024-03" / "part-1.csv", index=False)
    pd.DataFrame(rows[4:5]).to_parquet(d / "month=2024-04" / "day=1" / "part-0.parquet")
    pd.DataFrame(rows[5:6]).to_csv(d / "z.csv", index=False)
    # Spark's markers and checksums, hidden folders, an interrupted label run's chunks: no tickets.
    for name in ("_SUCCESS", "_committed_1234", "month=2024-04/day=1/.part-0.parquet.crc"):
        (d / name).write_bytes(b"\0")
    (d / ".ipynb_checkpoints").mkdir()
    pd.DataFrame(rows).to_csv(d / ".ipynb_checkpoints" / "a.csv", index=False)
    (d / "out.csv.parts").mkdir()
    (d / "out.csv.parts" / "manifest.json").write_text('{"format": 5}')
    got = read_tickets([d], MAP)
    assert got["id"].tolist() == [f"A{i}" for i in range(6)]
    assert [p.relative_to(d).as_posix() for p in expand_paths([d])] == [
        "2024-01.csv",
        "2024-02.csv",
        "2024-03/part-1.csv",
        "2024-03/part-2.csv",
        "month=2024-04/day=1/part-0.parquet",
        "z.csv",
    ]
    # Named by their paths relative to the directory (two months' part-1.csv are told apart).
    assert [name for _, name in named_paths([d, d / "z.csv"])][2:] == [
        "2024-03/part-1.csv",
        "2024-03/part-2.csv",
        "month=2024-04/day=1/part-0.parquet",
        "z.csv",
        "z.csv",
    ]


def test_a_partitioned_tables_directory_names_are_read_as_its_columns(tmp_path):
    # Spark's and Hive's partitionBy("部门") keep the department in the directory's name
    # (部门=住建局/part-0.parquet), not in the files: the rows were read without their labels.
    d = tmp_path / "history"
    unlabelled = {"编号": "A3", "标题": "电梯", "内容": "电梯坏了没人修", "类别": "城建"}
    own = {**ROWS[0], "编号": "A4"}  # a file that keeps the column keeps its own value
    parts = {
        "部门=人社/year=2024/part-0.parquet": [ROWS[0]],
        # Hive's escape of a / in a value, and its name for a missing one.
        "部门=城管%2F执法/year=2024/part-0.csv": [ROWS[1]],
        "部门=__HIVE_DEFAULT_PARTITION__/year=2025/part-0.jsonl": [unlabelled],
        "部门=住建/year=2025/part-1.csv": [own],
    }
    for name, rows in parts.items():
        frame = pd.DataFrame(rows)
        keep = name.endswith("part-1.csv")
        write_frame(d / name, frame if keep else frame.drop(columns="部门", errors="ignore"))
    headers: dict[str, list[str]] = {}
    got = read_tickets([d], MAP, headers)
    assert got["id"].tolist() == ["A3", "A1", "A4", "A2"]  # in order of their paths
    assert got["department"].tolist() == ["", "人社", "人社", "城管/执法"]
    assert got["_source"].tolist() == sorted(parts)
    assert headers["部门=人社/year=2024/part-0.parquet"] == [
        "编号",
        "标题",
        "内容",
        "类别",
        "部门",
        "year",
    ]
    # Only inside the directory given: a file named directly is read as it is, and lacks 部门.
    alone = d / "部门=人社" / "year=2024" / "part-0.parquet"
    with pytest.raises(TicketFileError, match="no column '部门' for the ticket department"):
        read_tickets([alone], MAP)


def test_a_partitioned_csvs_repeated_header_is_still_left_out(tmp_path):
    # The partition's column is not in the file: a header line joined into it (`cat` of two
    # exports) repeats the file's own columns, and is left out by them.
    d = tmp_path / "history" / "部门=人社"
    d.mkdir(parents=True)
    rows = [{k: v for k, v in row.items() if k != "部门"} for row in ROWS]
    text = pd.DataFrame(rows[:1]).to_csv(index=False) + pd.DataFrame(rows[1:]).to_csv(index=False)
    (d / "part-0.csv").write_text(text, encoding="utf-8")
    repeated: dict[str, list[int]] = {}
    got = read_tickets([tmp_path / "history"], MAP, repeated_headers=repeated)
    assert got["id"].tolist() == ["A1", "A2"]
    assert got["department"].tolist() == ["人社", "人社"]
    assert repeated == {"部门=人社/part-0.csv": [2]}


def test_a_partition_directory_named_in_gbk_is_read_as_gbk(tmp_path):
    d = tmp_path / "history"
    part = d / os.fsdecode("部门=人社".encode("gbk"))
    try:
        part.mkdir(parents=True)
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses a name that is not UTF-8")
    pd.DataFrame([{k: v for k, v in ROWS[0].items() if k != "部门"}]).to_csv(
        part / "part-0.csv", index=False
    )
    assert read_tickets([d], MAP)["department"].tolist() == ["人社"]


def test_a_subdirectory_applies_the_refusals_of_the_top_level(tmp_path):
    d = tmp_path / "backlog"
    (d / "2024-03").mkdir(parents=True)
    pd.DataFrame(ROWS).to_csv(d / "2024-01.csv", index=False)
    (d / "2024-03" / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504)
    with pytest.raises(TicketFileError, match=r"holds '2024-03/old.xls' \(save it as .xlsx"):
        read_tickets([d], MAP)
    (d / "2024-03" / "old.xls").unlink()
    # Spark/Hadoop's unfinished output: read, it would give tickets twice or half-written.
    (d / "_temporary" / "0").mkdir(parents=True)
    pd.DataFrame(ROWS).to_csv(d / "_temporary" / "0" / "part-0.csv", index=False)
    with pytest.raises(TicketFileError, match=r"ticket files in '_temporary/'"):
        read_tickets([d], MAP)
    (d / "_temporary" / "0" / "part-0.csv").unlink()
    assert read_tickets([d], MAP)["id"].tolist() == ["A1", "A2"]


def test_a_directory_with_no_ticket_files_says_its_subdirectories_hold_none_either(tmp_path):
    d = tmp_path / "empty"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "notes.md").write_text("x")
    with pytest.raises(TicketFileError, match="in its subdirectories neither"):
        read_tickets([d], MAP)


def test_a_directory_linked_into_itself_is_read_once(tmp_path):
    d = tmp_path / "backlog"
    (d / "a").mkdir(parents=True)
    pd.DataFrame(ROWS).to_csv(d / "a" / "t.csv", index=False)
    (d / "a" / "loop").symlink_to(d, target_is_directory=True)
    (d / "b").symlink_to(d / "a", target_is_directory=True)
    got = read_tickets([d], MAP)
    assert got["id"].tolist() == ["A1", "A2"]


def test_a_subdirectory_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    # A lost+found of root's at a mount point was never looked into; read now, it is named, not a
    # PermissionError traceback (the tests run as root, so the error is made).
    d = tmp_path / "backlog"
    (d / "lost+found").mkdir(parents=True)
    pd.DataFrame(ROWS).to_csv(d / "a.csv", index=False)
    iterdir = Path.iterdir

    def denied(self):
        if self.name == "lost+found":
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(TicketFileError) as e:
        read_tickets([d], MAP)
    assert str(e.value) == (
        f"{d}: its subdirectory 'lost+found/' cannot be read (Permission denied); make it "
        "readable, or name the files and directories to read instead"
    )


def test_a_directory_skips_a_model_root_and_model_versions_inside_it(tmp_path):
    # The default model root is ./models under the working directory: `paidan evaluate models/v1 .`
    # or `paidan label . …` read models/v1/metadata.json as a ticket file and stopped ("holds one
    # JSON object over several lines … jq -c . metadata.json"); the root's frozen evaluation set
    # (eval/frozen.parquet) would have been read as tickets, training on the held-out set.
    from model.tickets import expand_paths

    d = tmp_path / "work"
    d.mkdir()
    pd.DataFrame(ROWS).to_csv(d / "tickets.csv", index=False)
    root = d / "models"
    for version in ("v1", "20261205T072304Z-bf90f80f"):
        (root / version).mkdir(parents=True)
        (root / version / "metadata.json").write_text('{\n  "version": "v1"\n}\n')
        (root / version / "router.joblib").write_bytes(b"\x80\x04")
    (root / "current").write_text("v1\n")
    (root / "registry.json").write_text('{\n  "previous": null\n}\n')
    (root / "scores").mkdir()
    (root / "scores" / "v1.json").write_text('{\n  "department": {}\n}\n')
    (root / "eval").mkdir()
    pd.DataFrame(ROWS).assign(编号=["E1", "E2"]).to_parquet(root / "eval" / "frozen.parquet")
    (root / "eval" / "frozen.json").write_text('{\n  "rows": 2\n}\n')
    # A model written beside the data (train tickets.csv --out proj/v2), in a subdirectory.
    (d / "proj" / "v2").mkdir(parents=True)
    (d / "proj" / "v2" / "metadata.json").write_text('{\n  "version": "v2"\n}\n')
    (d / "proj" / "v2" / "serving.joblib").write_bytes(b"\x80\x04")
    pd.DataFrame(ROWS).assign(编号=["P1", "P2"]).to_csv(d / "proj" / "more.csv", index=False)
    assert [p.relative_to(d).as_posix() for p in expand_paths([d])] == [
        "proj/more.csv",
        "tickets.csv",
    ]
    assert read_tickets([d], MAP)["id"].tolist() == ["P1", "P2", "A1", "A2"]


def test_the_model_files_a_directory_skips_are_named_as_the_registry_names_them():
    from model import artifact, registry, tickets

    assert tickets._MODEL_VERSION == (
        artifact.METADATA_FILE,
        artifact.ROUTER_FILE,
        artifact.SERVING_FILE,
    )
    assert (
        registry.CURRENT_FILE,
        registry.REGISTRY_FILE,
        f"{registry.EVAL_DIR}/{registry.EVAL_META_FILE}",
    ) == tickets._MODEL_ROOT


def test_the_files_of_subdirectories_are_named_by_their_path_in_the_directory(tmp_path):
    # exports/2024/一月.csv and exports/2025/一月.csv were both "一月.csv data row 2" in every
    # message: which one was not said. A file named directly keeps its name.
    from training.validate import label_column_notes, row_places

    d = tmp_path / "exports"
    columns = replace(MAP, category="category")
    for year in ("2024", "2025"):
        (d / year).mkdir(parents=True)
    # One 一月.csv has the category column (empty) and the other has not: two files, not one.
    pd.DataFrame(ROWS).assign(category="").to_csv(d / "2024" / "一月.csv", index=False)
    pd.DataFrame(ROWS).to_csv(d / "2025" / "一月.csv", index=False)
    pd.DataFrame(ROWS).to_csv(tmp_path / "二月.csv", index=False)
    headers: dict[str, list[str]] = {}
    got = read_tickets([d, tmp_path / "二月.csv"], columns, headers)
    assert row_places(got).tolist() == [
        "2024/一月.csv data row 1",
        "2024/一月.csv data row 2",
        "2025/一月.csv data row 1",
        "2025/一月.csv data row 2",
        "二月.csv data row 1",
        "二月.csv data row 2",
    ]
    assert list(headers) == ["2024/一月.csv", "2025/一月.csv", "二月.csv"]
    # Told apart, 2024/一月.csv is not said to lack the column (2025's columns were its).
    assert label_column_notes(["department"], columns, headers) == []


def test_a_json_line_of_a_subdirectory_is_named_by_its_path_in_the_directory(tmp_path):
    # As a JSON Lines row is named by its line: the file is found by its path, named by its name.
    from training.validate import TrainingDataError
    from training.window import Window, read_window

    d = tmp_path / "exports"
    (d / "2024").mkdir(parents=True)
    rows = [{**ROWS[0], "time": "2024-01-05"}, {**ROWS[1], "time": ""}]
    lines = "\n" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (d / "2024" / "一月.jsonl").write_text(lines, encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"2024/一月\.jsonl line 3 \(''\)"):
        read_window([d], MAP, Window(max_rows=1)).select()


def test_a_row_without_an_id_in_a_subdirectory_is_numbered_by_its_path_in_the_directory(tmp_path):
    # exports/2024/一月.csv and exports/2025/一月.csv numbered their rows 一月:1, 一月:2 alike: one
    # id for two tickets, which retrain could not match feedback or a frozen ticket by. A file
    # given directly or at the top of the directory keeps its ids.
    from training.retrain import ambiguous_ids

    d = tmp_path / "exports"
    for year, rows in (("2024", ROWS), ("2025", ROWS[::-1])):
        (d / year).mkdir(parents=True)
        pd.DataFrame(rows).assign(编号="").to_csv(d / year / "一月.csv", index=False)
    pd.DataFrame(ROWS).assign(编号="").to_csv(d / "二月.csv", index=False)
    pd.DataFrame(ROWS).assign(编号="").to_csv(tmp_path / "三月.csv", index=False)
    got = read_tickets([d, tmp_path / "三月.csv"], MAP)
    assert got["id"].tolist() == [
        "2024/一月:1",
        "2024/一月:2",
        "2025/一月:1",
        "2025/一月:2",
        "二月:1",
        "二月:2",
        "三月:1",
        "三月:2",
    ]
    assert ambiguous_ids([got])[0] == set()


def test_a_file_reached_twice_keeps_its_first_name_so_its_rows_are_caught_as_copies(tmp_path):
    # `exports/ exports/2024/`: 2024/一月.csv is read twice, as 2024/一月.csv and as 一月.csv.
    # Numbered 2024/一月:1 and 一月:1, its rows would not be caught as copies of themselves (a file
    # given twice is): the name it was first reached by is kept.
    from training.validate import repeated_rows

    d = tmp_path / "exports"
    (d / "2024").mkdir(parents=True)
    pd.DataFrame(ROWS).assign(编号="").to_csv(d / "2024" / "一月.csv", index=False)
    got = read_tickets([d, d / "2024", d / "2024" / "一月.csv"], MAP)
    assert got["id"].tolist() == ["2024/一月:1", "2024/一月:2"] * 3
    kept, repeats = repeated_rows(got)
    assert kept == [True, True] + [False] * 4 and len(repeats) == 4


def _denied(monkeypatch, names: set[str], stat: bool = False) -> None:
    """Make the directories ``names`` unreadable, as they are to a user other than root (the
    tests run as root, whom chmod does not stop): listed, or with ``stat`` entered (a directory
    with r but no x: its names are listed, but nothing in it can be looked at)."""
    import os

    if stat:
        real_stat = Path.stat

        def denied_stat(self, *args, **kwargs):
            if self.parent.name in names:
                raise PermissionError(13, "Permission denied", str(self))
            return real_stat(self, *args, **kwargs)

        monkeypatch.setattr(Path, "stat", denied_stat)
        return
    real_listdir, real_scandir = os.listdir, os.scandir

    def check(path) -> None:
        if Path(path).name in names:
            raise PermissionError(13, "Permission denied", str(path))

    def listdir(path="."):
        check(path)
        return real_listdir(path)

    def scandir(path="."):
        check(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "scandir", scandir)


def test_a_spark_temporary_directory_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    # _temporary/ is looked into for unfinished output, refused when it holds ticket files; one
    # that could not be read was taken for one without them, and left out without a word.
    d = tmp_path / "backlog"
    (d / "_temporary" / "0").mkdir(parents=True)
    pd.DataFrame(ROWS).to_csv(d / "a.csv", index=False)
    pd.DataFrame(ROWS).to_csv(d / "_temporary" / "0" / "part-0.csv", index=False)
    _denied(monkeypatch, {"_temporary"})
    with pytest.raises(TicketFileError) as e:
        read_tickets([d], MAP)
    assert str(e.value) == (
        f"{d}: its subdirectory '_temporary/' cannot be read (Permission denied); make it "
        "readable, or name the files and directories to read instead"
    )
    # So is one deeper in it (Spark's _temporary/0/_temporary/attempt_…/).
    monkeypatch.undo()
    _denied(monkeypatch, {"0"})
    with pytest.raises(TicketFileError, match=r"its subdirectory '_temporary/0/' cannot be read"):
        read_tickets([d], MAP)


def test_a_file_named_in_a_directory_that_cannot_be_entered_is_named(tmp_path, monkeypatch):
    # `paidan train /data/locked/a.csv`, where the directory cannot be entered: looking at the file
    # raised a PermissionError traceback, where `paidan train /data/locked` said it in one line.
    d = tmp_path / "locked"
    (d / "2024").mkdir(parents=True)
    pd.DataFrame(ROWS).to_csv(d / "a.csv", index=False)
    pd.DataFrame(ROWS).to_csv(d / "2024" / "一月.csv", index=False)
    real_stat = Path.stat

    def denied_stat(self, *args, **kwargs):  # nothing under locked/ can be looked at
        if d in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", denied_stat)
    for given in (d / "a.csv", d / "2024" / "一月.csv", d / "2024"):
        with pytest.raises(TicketFileError) as e:
            read_tickets([given], MAP)
        assert str(e.value) == (
            f"{given}: it cannot be read (Permission denied), as the directory {d} it is in "
            "cannot be entered; make that directory readable"
        )


def test_a_subdirectory_that_can_be_listed_but_not_entered_is_named(tmp_path, monkeypatch):
    # A directory with r but not x (chmod 644): its names were listed, and looking at them raised
    # a PermissionError traceback.
    d = tmp_path / "backlog"
    (d / "2024").mkdir(parents=True)
    pd.DataFrame(ROWS).to_csv(d / "a.csv", index=False)
    pd.DataFrame(ROWS).to_csv(d / "2024" / "一月.csv", index=False)
    _denied(monkeypatch, {"2024"}, stat=True)
    with pytest.raises(TicketFileError) as e:
        read_tickets([d], MAP)
    assert str(e.value) == (
        f"{d}: its subdirectory '2024/' cannot be read (Permission denied); make it readable, or "
        "name the files and directories to read instead"
    )


@pytest.mark.parametrize("end", [b"\x1a", b"\r\n\x1a", b"\r\n\x1a\r\n"])
def test_the_ctrl_z_that_ends_a_json_array_file_is_not_text_after_it(tmp_path, end):
    # A JSON array saved by a DOS-era tool or joined by cmd's `copy` ends with Ctrl-Z, as CSV and
    # JSON Lines files do: it was refused ("text follows the end of the JSON array").
    rows = [{"id": "A1", "text": "老板拖欠工资三个月不发", "department": "人社局"}]
    path = tmp_path / "一季度.json"
    path.write_bytes(json.dumps(rows, ensure_ascii=False).encode("utf-8") + end)
    got = read_tickets([path])
    assert got["id"].tolist() == ["A1"] and got["department"].tolist() == ["人社局"]


def test_text_after_the_ctrl_z_of_a_json_array_is_still_refused_at_the_mark(tmp_path):
    path = tmp_path / "t.json"
    path.write_bytes(b'[{"id": "A1", "text": "x"}]\x1a{"id": "A2"}')
    with pytest.raises(
        TicketFileError, match=r"text follows the end of the JSON array, at line 1 column 28"
    ):
        read_tickets([path])


# Traditional Chinese tickets as a Taiwanese or Hong Kong system (or an old export) writes them in
# Big5, and GBK files of simplified and of traditional text whose bytes are valid Big5 too: GBK
# holds traditional characters, so only how Chinese each reading is tells them apart.
BIG5_TICKETS = (
    "id,title,text,department\n"
    "1,路燈不亮,小區門口的路燈壞了三個月，晚上很黑，老人出門不安全,市城管局\n"
    "2,噪音擾民,樓下燒烤店每天營業到凌晨兩點，油煙和噪音嚴重影響休息,市生態環境局\n"
)
GBK_SIMPLIFIED_AS_BIG5 = (
    "id,title,text,department\n"
    "1,路灯不亮,工地夜间施工，渣土车来回跑，扬尘很大,市城管局\n"
    "2,投诉,自来水发黄有异味，已经持续一周,市住建局\n"
    "3,反映,医保报销手续复杂，窗口态度不好,街道办事处\n"
)
GBK_TRADITIONAL_AS_BIG5 = (
    "id,title,text,department\n"
    "1,路燈不亮,反映路燈不亮,市城管局\n"
    "2,噪音擾民,投訴噪音擾民,市住建局\n"
    "3,樓上漏水,垃圾清運不及時,市城管局\n"
)


def test_a_big5_csv_is_read_as_big5_and_said_so(tmp_path, caplog):
    # It was read as GB18030, which decodes any Big5 bytes: 路燈不亮 trained as 隔縊ぃ獹, silently.
    path = tmp_path / "臺北匯出.csv"
    path.write_bytes(BIG5_TICKETS.encode("cp950"))
    with caplog.at_level("WARNING", logger="model.tickets"):
        got = read_tickets([path])
    assert got["title"].tolist() == ["路燈不亮", "噪音擾民"]
    assert got["department"].tolist() == ["市城管局", "市生態環境局"]
    said = [r.getMessage() for r in caplog.records if "Big5" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"{path}: read as Big5")
    converted = shlex.quote(str(tmp_path / "臺北匯出.utf8.csv"))
    assert said[0].endswith(f"iconv -f GB18030 -t UTF-8 {shlex.quote(str(path))} > {converted}")


@pytest.mark.parametrize(
    "text", [GBK_SIMPLIFIED_AS_BIG5, GBK_TRADITIONAL_AS_BIG5], ids=["simplified", "traditional"]
)
def test_a_gbk_csv_whose_bytes_are_also_big5_stays_gbk(tmp_path, caplog, text):
    path = tmp_path / "gbk.csv"
    path.write_bytes(text.encode("gbk"))
    assert path.read_bytes().decode("big5hkscs")  # the hard case: Big5 reads it too
    with caplog.at_level("WARNING", logger="model.tickets"):
        got = read_tickets([path])
    assert got["text"].tolist() == [line.split(",")[2] for line in text.splitlines()[1:]]
    assert not [r for r in caplog.records if "Big5" in r.getMessage()]


def big5_file_with_a_late_line(path, line: bytes) -> int:
    """A Big5 CSV whose first megabyte (all the encoding is told from) is plain Big5, then ``line``
    and one more row; the line number of ``line``."""
    rows = BIG5_TICKETS.encode("cp950").splitlines(keepends=True)
    body = rows[1:] * ((1 << 20) // len(b"".join(rows[1:])) + 1)
    path.write_bytes(rows[0] + b"".join(body) + line + rows[1])
    return 1 + len(body) + 1


def test_a_big5_csv_with_a_hong_kong_character_past_its_first_megabyte_reads_it(tmp_path):
    # Read as Windows' Big5 (cp950), told from the first megabyte, the file was refused at its
    # first HKSCS character further on (𠕇, FA 40), "line 20803: invalid cp950 bytes".
    path = tmp_path / "hk.csv"
    text = "屯門𠕇村路燈不亮，晚上很暗"
    big5_file_with_a_late_line(path, f"9,路燈,{text},市城管局\n".encode("big5hkscs"))
    got = read_tickets([path])
    assert got["text"].iloc[-2] == text
    assert got["title"].iloc[-1] == "路燈不亮"


def test_big5_user_defined_characters_are_refused_naming_the_line_the_byte_and_why(tmp_path):
    # Bytes in Big5's user-defined area that Big5-HKSCS does not define either (81 40): a
    # character made for one office's font (造字). The file was refused with "line N: invalid
    # cp950 bytes" and no more.
    path = tmp_path / "tw.csv"
    line = "9,路燈,林".encode("cp950") + b"\x81\x40" + "村路燈不亮,市城管局\n".encode("cp950")
    n = big5_file_with_a_late_line(path, line)
    byte = path.read_bytes().index(b"\x81\x40")
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert str(e.value) == (
        f"{path}, line {n}: invalid cp950 bytes (byte {byte:,} of the file, 81 40: a Big5 "
        "user-defined character (造字) that neither Big5 nor Big5-HKSCS defines, which only the "
        "font of the system that wrote it draws; replace it there, or export the file as UTF-8)"
    )


def rounded_id_workbook(path):
    """A workbook whose 18-digit ticket number is stored as Excel stores one typed into a General
    cell (a number, 123456789012345678 as 1.23456789012346E+17), between two whole ids."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "title", "text", "department"])
    ws.append([1001, "路灯不亮", "小区门口路灯坏了", "市城管局"])
    ws.append([123456789012346000, "噪音扰民", "楼下烧烤店营业到凌晨", "市生态环境局"])
    ws.append([1234567890123456.0, "噪音扰民", "工地夜间施工", "市生态环境局"])
    ws.append(["123456789012345678", "路灯不亮", "路灯坏了三个月", "市城管局"])  # text: whole
    wb.save(path)
    return path


ROUNDED_ID_WARNING = (
    "{path}: 2 ticket ids are numbers of more than 15 digits (123456789012346000 on row 3 the "
    "first), more than Excel keeps (it shows such a number as 1.23457E+17): their last digits "
    "are lost, so they cannot be joined back to the ticket system; format the id column as text "
    "(in the exporting system, or in Excel before the ids are pasted) and export again"
)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_xlsx_ids_longer_than_excel_keeps_are_warned_of_with_their_row(tmp_path, caplog, streamed):
    # Read as 123456789012346000, an id whose last digits Excel had replaced by zeros joined back
    # to no ticket, and nothing said so (the scientific-notation warning sees only text ids).
    path = rounded_id_workbook(tmp_path / "export.xlsx")
    with caplog.at_level("WARNING", logger="model.tickets"):
        if streamed:
            from model.tickets import table_chunks

            got = pd.concat(list(table_chunks(path, ColumnMap(), 2)))
        else:
            got = read_tickets([path])
    assert got["id"].tolist()[1:] == [
        "123456789012346000",
        "1234567890123456",
        "123456789012345678",
    ]
    said = [r.getMessage() for r in caplog.records if "Excel keeps" in r.getMessage()]
    assert said == [ROUNDED_ID_WARNING.format(path=path)]


def test_a_joint_department_cell_is_stored_as_training_reads_it():
    from model.tickets import joint_departments, split_departments

    for cell, stored in [
        ("市住建局；；市公安局", "市住建局；市公安局"),
        (" ；市住建局 ; ；市公安局；市住建局", "市住建局；市公安局"),
        ('["市住建局", "", "市公安局"]', "市住建局；市公安局"),
        ("市住建局", "市住建局"),
        ("；；", ""),
    ]:
        assert joint_departments(cell) == stored
        assert split_departments(stored) == split_departments(cell)


def test_a_label_column_of_json_objects_is_refused_naming_the_row_and_how_to_flatten_it(tmp_path):
    # An API export nesting the department ({"id": 12, "name": "市城管局"}) trained the object's
    # JSON text as a department, one per spelling of the object, without a word.
    path = tmp_path / "export.jsonl"
    path.write_text(
        '{"text": "路灯坏了", "部门": {"id": 12, "name": "市城管局"}, "category": "城建"}\n'
        '{"text": "油烟扰民", "部门": "市生态环境局", "category": "环境"}\n',
        encoding="utf-8",
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], ColumnMap(department="部门"))
    assert str(e.value) == (
        "the department column holds JSON objects, not names: "
        '\'{"id": 12, "name": "市城管局"}\' at export.jsonl line 1; flatten it to the name first, '
        "e.g. jq -c '.[\"部门\"] |= .name' export.jsonl > export.flat.jsonl"
    )


def test_a_spreadsheets_totals_row_is_left_out_and_named(tmp_path, caplog):
    # 合计 in the title with a count in the text column was read as a ticket and trained on.
    path = tmp_path / "一月.xlsx"
    pd.DataFrame(
        {
            "id": ["A1", "A2", "", "A3", "小计"],
            "title": ["欠薪", "合计金额不对", " 合 计：", "噪音", ""],
            "text": ["老板拖欠工资三个月不发", "账单合计金额算错了", "2 件", "夜间施工噪音", "1"],
        }
    ).to_excel(path, index=False)
    got = read_tickets([path])
    assert got["id"].tolist() == ["A1", "A2", "A3"]  # a title that merely begins so stays
    assert got["_row"].tolist() == [1, 2, 4]
    said = " ".join(caplog.text.split())
    assert (
        "一月.xlsx: left out 2 totals rows, data rows 3 ('合 计：' in 'title'), 5 ('小计' in 'id') "
        "(a spreadsheet's 合计/总计/小计 line sums the tickets above it; it is not a ticket)"
    ) in said, said


def test_a_column_renamed_in_one_export_of_a_directory_is_not_fixed_by_an_option(tmp_path):
    # A history directory of monthly exports where December's renamed 内容 to 描述: the error
    # advised "--text-col 描述", which then refuses November's export for lacking 描述. It names
    # the file that has the column and says one option maps the column of every file read.
    history = tmp_path / "history"
    history.mkdir()
    pd.DataFrame(ROWS).to_csv(history / "2026-11.csv", index=False)
    pd.DataFrame(ROWS).rename(columns={"内容": "描述"}).to_csv(
        history / "2026-12.csv", index=False, encoding="gb18030"
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([history], MAP)
    message = str(e.value)
    assert "2026-12.csv: no column '内容' for the ticket text" in message
    assert "(2026-11.csv, read with it, has it)" in message
    assert "--text-col names the column of every file read together" in message
    assert "given once more, it reads either name: --text-col 内容 --text-col 描述" in message


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "jsonl", "parquet"])
def test_a_column_option_given_twice_reads_each_file_from_the_name_it_has(tmp_path, fmt):
    # January's export calls the text 留言详情 and the department 承办单位, February's 详情 and
    # 部门: one option per name (--text-col 留言详情 --text-col 详情) reads both months.
    history = tmp_path / "history"
    history.mkdir()
    jan = pd.DataFrame(ROWS).rename(columns={"内容": "留言详情", "部门": "承办单位"})
    feb = pd.DataFrame(ROWS).rename(columns={"内容": "详情"})
    for frame, month in ((jan, "01"), (feb, "02")):
        if fmt == "xlsx":
            frame.to_excel(history / f"2026-{month}.xlsx", index=False)
        else:
            write_frame(history / f"2026-{month}.{fmt}", frame)
    columns = replace(
        MAP,
        text="留言详情",
        department="承办单位",
        alternatives=(("text", "详情"), ("department", "部门")),
    )
    df = read_tickets([history], columns)
    assert df["text"].tolist() == ["老板拖欠工资", "烧烤店油烟扰民"] * 2
    assert df["department"].tolist() == ["人社", "执法"] * 2
    assert df["_source"].tolist() == [f"2026-0{m}.{fmt}" for m in (1, 1, 2, 2)]
    # A file lacking every name is refused naming them all.
    other = write_frame(
        tmp_path / "2026-03.csv", pd.DataFrame(ROWS).rename(columns={"内容": "描述"})
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([other], columns)
    assert "no column '留言详情' or '详情' for the ticket text" in str(e.value)


def test_a_file_with_two_names_of_one_column_is_refused_naming_both(tmp_path):
    # Which of 留言详情 and 详情 holds the ticket cannot be told; reading one would drop the other.
    both = pd.DataFrame(ROWS).assign(留言详情="另一段")
    both.to_csv(tmp_path / "both.csv", index=False)
    columns = replace(MAP, alternatives=(("text", "留言详情"),))
    with pytest.raises(TicketFileError) as e:
        read_tickets([tmp_path / "both.csv"], columns)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'both.csv'}: has columns '内容' and '留言详情'")
    assert "--text-col" in message


def test_the_metadata_records_every_name_of_a_column():
    columns = replace(MAP, alternatives=(("text", "详情"),))
    assert columns.recorded()["text"] == ["内容", "详情"]
    assert columns.recorded()["title"] == "标题"


def test_a_text_column_of_json_objects_is_refused_naming_the_row_and_how_to_flatten_it(tmp_path):
    # An API export nesting the text ({"content": "路灯坏了", "attachments": []}) trained the
    # object's JSON, its keys among the words, as the ticket's text, without a word.
    path = tmp_path / "export.jsonl"
    path.write_text(
        '{"留言": "油烟扰民", "department": "市生态环境局"}\n'
        '{"留言": {"content": "路灯坏了", "attachments": []}, "department": "市城管局"}\n',
        encoding="utf-8",
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], ColumnMap(text="留言"))
    assert str(e.value) == (
        "the text column holds JSON objects, not text: "
        '\'{"content": "路灯坏了", "attachments": []}\' at export.jsonl line 2; flatten it to the '
        "text first, e.g. jq -c '.[\"留言\"] |= .content' export.jsonl > export.flat.jsonl"
    )


def test_a_title_read_from_another_of_its_names_is_not_said_to_be_missing():
    from model.tickets import title_column_note

    columns = replace(MAP, alternatives=(("title", "诉求标题"),))
    headers = {"2026-02.csv": ["编号", "诉求标题", "内容", "部门", "类别", "标题说明"]}
    assert title_column_note(headers, columns, "trained") is None
    assert title_column_note(headers, MAP, "trained") is not None  # given once, it is


def test_an_id_column_left_unmapped_beside_a_file_with_the_id_is_given_as_a_further_name():
    # One export with 'id', another with 工单编号: "give --id-col 工单编号" alone refused the first.
    from model.tickets import id_column_note

    headers = {"a.csv": ["id", "text"], "b.csv": ["工单编号", "text"]}
    note = id_column_note(headers, ColumnMap(), "{its} tickets are read without ids")
    assert note == (
        "b.csv has no column 'id' for the ticket id, so its tickets are read without ids; it has "
        "'工单编号': if it is the id, give --id-col id --id-col 工单编号"
    )
    given = ColumnMap(alternatives=(("id", "工单编号"),))
    assert id_column_note(headers, given, "{its} tickets are read without ids") is None
    assert id_column_note({"a.csv": ["序号", "text"]}, ColumnMap(), "…") is None  # a row counter


def test_a_title_column_of_json_objects_is_refused_too(tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text(
        '{"title": {"zh": "欠薪", "en": "wages"}, "text": "老板拖欠工资", "department": "人社"}\n',
        encoding="utf-8",
    )
    with pytest.raises(TicketFileError) as e:
        read_tickets([path])
    assert str(e.value).startswith("the title column holds JSON objects, not text: ")
    assert "jq -c '.[\"title\"] |= .zh' export.jsonl > export.flat.jsonl" in str(e.value)
