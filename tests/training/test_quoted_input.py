"""Messages that quote the staff's own input files (a column's name, a JSON key, a sheet's name, a
cell) quote it masked: a header that is really the first ticket, or a key an export named by the
caller's number, must not print a citizen's phone or ID number (SECURITY.md, "What is masked")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.text import quoted
from model.tickets import ColumnMap, TicketFileError, read_tickets
from training.label_io import file_columns

PHONE, ID_NUMBER = "13812345678", "11010119900307123X"
WIDE_PHONE = "１３８１２３４５６７８"  # as a Chinese keyboard in full-width mode types it


def assert_masked(message: str) -> None:
    for secret in (PHONE, ID_NUMBER, WIDE_PHONE):
        assert secret not in message, f"{secret} quoted unmasked in {message!r}"


def test_quoted_masks_keeps_other_names_and_cuts_long_ones() -> None:
    assert quoted("诉求内容") == repr("诉求内容")
    assert quoted(f"张三{PHONE}") == repr("张三[手机号]")
    assert quoted(f"张三{WIDE_PHONE}") == repr("张三[手机号]")
    # A name with nothing to mask is quoted whole (a form's question as its header), up to a cap.
    assert quoted("很" * 100) == repr("很" * 100)
    assert quoted("很" * 1000) == repr("很" * 300 + "…")
    # A name that masking changed (a header row that is really a ticket), or a cell, is cut to 40.
    assert quoted(f"来电{PHONE}" + "很" * 100) == repr("来电[手机号]" + "很" * 33 + "…")
    assert quoted("很" * 100, cell=True) == repr("很" * 40 + "…")


# A form export (问卷星) names its text column by the question, longer than 40 characters.
QUESTION = (
    "1、请详细描述您要反映的问题（包括事件发生的时间、地点、具体经过以及您希望得到的处理结果）"
)


def test_a_long_column_name_is_listed_whole_so_it_can_be_mapped(tmp_path: Path) -> None:
    path = tmp_path / "wjx.csv"
    path.write_text(f"序号,{QUESTION},所属区县\n1,小区路灯不亮已经一周,岳麓区\n", encoding="utf-8")
    message = _refused(path)
    assert f"'序号', {QUESTION!r}, '所属区县'" in message
    assert len(read_tickets([path], ColumnMap(text=QUESTION))) == 1  # mapped as it is listed


def test_long_names_that_differ_by_a_trailing_space_read_apart(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"text,{QUESTION},{QUESTION} \n路灯不亮,1,2\n", encoding="utf-8")
    message = _refused(path)
    assert f"{QUESTION!r} and {QUESTION + ' '!r}" in message


def _refused(path: Path, columns: ColumnMap = ColumnMap()) -> str:
    with pytest.raises(TicketFileError) as e:
        read_tickets([path], columns)
    return str(e.value)


def test_a_missing_text_column_lists_the_columns_masked(tmp_path: Path) -> None:
    # No header row: the first ticket is read as the header, and listed as the file's columns.
    path = tmp_path / "t.csv"
    path.write_text(f"A1,张三来电{PHONE}反映路灯不亮,身份证{ID_NUMBER}\n", encoding="utf-8")
    message = _refused(path)
    assert_masked(message)
    assert "[手机号]" in message and "[身份证号]" in message and "'A1'" in message


def test_a_mapped_column_that_is_missing_is_named_masked(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text\n路灯不亮\n", encoding="utf-8")
    message = _refused(path, ColumnMap(text=f"张三{PHONE}"))
    assert_masked(message)
    assert "'text'" in message


def test_a_header_name_written_twice_is_named_masked(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"text,{PHONE},{PHONE}\n路灯不亮,1,2\n", encoding="utf-8")
    message = _refused(path)
    assert_masked(message)
    assert "[手机号]" in message


def test_names_that_differ_by_spaces_are_named_masked(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"text,{ID_NUMBER},{ID_NUMBER} \n路灯不亮,1,2\n", encoding="utf-8")
    message = _refused(path)
    assert_masked(message)
    assert "[身份证号]" in message


def test_a_json_key_written_twice_is_named_masked(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        f'{{"text": "路灯不亮", "{ID_NUMBER}": 1, "{ID_NUMBER}": 2}}\n', encoding="utf-8"
    )
    message = _refused(path)
    assert_masked(message)
    assert "line 1" in message and "[身份证号]" in message
    with pytest.raises(TicketFileError) as e:
        file_columns(path)
    assert_masked(str(e.value))


def test_a_json_object_holding_the_tickets_under_a_key_is_named_masked(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    key = f"来电{PHONE}"
    path.write_text(json.dumps({"total": 1, key: [{"text": "路灯不亮"}]}), encoding="utf-8")
    message = _refused(path)
    assert_masked(message)
    # The jq command still picks the array: by its place, not by the key it cannot quote.
    assert "jq '.[keys_unsorted[1]]' t.json" in message


def test_a_json_object_key_with_nothing_to_mask_is_picked_by_name(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"total": 1, "data": [{"text": "路灯不亮"}]}), encoding="utf-8")
    message = _refused(path)
    assert "'data'" in message and "jq '.data' t.json" in message


def test_a_later_sheet_of_tickets_is_named_masked(tmp_path: Path) -> None:
    import openpyxl

    path = tmp_path / "t.xlsx"
    workbook = openpyxl.Workbook()
    first = workbook.active
    first.title = f"张三{PHONE}"
    first.append(["text", "department"])
    first.append(["路灯不亮", "城管局"])
    later = workbook.create_sheet(f"李四{ID_NUMBER}")
    later.append(["text", "department"])
    later.append(["噪音扰民", "环保局"])
    workbook.save(path)
    message = _refused(path)
    assert_masked(message)
    assert "'张三[手机号]'" in message and "'李四[身份证号]'" in message


def test_a_sheet_whose_header_lies_lower_is_named_masked(tmp_path: Path) -> None:
    import openpyxl

    path = tmp_path / "t.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = f"张三{PHONE}"
    sheet.append(["某区12345工单明细"])
    sheet.append(["text", "department"])
    sheet.append(["路灯不亮", "城管局"])
    workbook.save(path)
    message = _refused(path)
    assert_masked(message)
    assert "row 2 names 'text'" in message


def test_a_formula_saved_without_its_value_is_quoted_masked(tmp_path: Path) -> None:
    import openpyxl

    path = tmp_path / "t.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["text", "department"])
    sheet.append([f'="来电{PHONE}反映路灯不亮"', "城管局"])  # openpyxl saves no value
    workbook.save(path)
    message = _refused(path)
    assert_masked(message)
    assert "row 2" in message and "column 'text'" in message and "[手机号]" in message


def test_a_long_formula_is_cut_to_40_characters_as_the_readme_says() -> None:
    import re

    from model.tickets import unsaved_formula

    message = unsaved_formula("text", '="' + "路灯不亮" * 30 + '"')
    shown = re.search(r"the formula '([^']*)…'", message)
    assert shown is not None, message
    assert len(shown.group(1)) == 40


# -- paidan label: the error column and the summary ------------------------------------------


def _label_errors(src: Path, model_dir: Path, out: Path) -> tuple[list[str], str]:
    from typer.testing import CliRunner

    from paidan.cli import app

    res = CliRunner().invoke(
        app, ["label", str(src), "--model", str(model_dir), "--out", str(out), "--jobs", "1"]
    )
    assert res.exit_code == 0, res.output
    if out.suffix == ".xlsx":
        import openpyxl

        sheet = openpyxl.load_workbook(out).active
        header = [c.value for c in sheet[1]]
        column = header.index("error")
        errors = [r[column] or "" for r in sheet.iter_rows(min_row=2, values_only=True)]
    else:
        import pandas as pd

        errors = pd.read_csv(out, dtype=str, keep_default_na=False)["error"].tolist()
    return errors, res.output


def test_a_field_cut_in_a_workbook_is_named_masked(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    rows = [{"id": "L1", "text": "路灯不亮，晚上走路看不清", PHONE: "附件" * 20_000}]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    errors, output = _label_errors(src, tiny_model_dir, tmp_path / "out.xlsx")
    assert errors[0].startswith("cut in this workbook: '[手机号]' has 40,000 characters")
    assert_masked(errors[0])
    assert "[手机号]" in output and "sheet row 2" in output
    assert_masked(output)


def test_an_unpaired_surrogate_is_named_by_its_key_masked(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        f'{{"id": "S1", "text": "路灯不亮，晚上走路看不清", "{ID_NUMBER}": "a\\ud800"}}\n', "utf-8"
    )
    errors, output = _label_errors(src, tiny_model_dir, tmp_path / "out.csv")
    assert "field '[身份证号]' has an unpaired surrogate escape" in errors[0]
    assert_masked(errors[0] + output)


def test_a_parquet_column_that_is_not_utf8_is_named_masked(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    table = {
        "id": ["B1"],
        "text": ["路灯不亮，晚上走路看不清"],
        PHONE: pa.array(["油烟".encode("gb18030")], pa.binary()),
    }
    pq.write_table(pa.table(table), src)
    errors, output = _label_errors(src, tiny_model_dir, tmp_path / "out.csv")
    assert errors[0] == "unreadable: row 1 of in.parquet: column '[手机号]' is not UTF-8"
    assert_masked(output)
    with pytest.raises(TicketFileError) as e:  # train and evaluate read it so
        read_tickets([src])
    assert "column '[手机号]' is not UTF-8 text" in str(e.value)
    assert_masked(str(e.value))


def test_a_csv_field_too_long_is_named_masked(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(
        f"id,text,{PHONE}\nC1,路灯不亮，晚上走路看不清,{'x' * (1 << 21)}\n", encoding="utf-8"
    )
    errors, output = _label_errors(src, tiny_model_dir, tmp_path / "out.csv")
    assert errors[0].startswith("field too long: '[手机号]' has")
    assert_masked(errors[0] + output)


def test_a_resumed_part_of_other_columns_names_them_masked(tmp_path: Path) -> None:
    import pyarrow as pa

    from training.label_io import read_part, write_part_atomic

    part = tmp_path / "part-00000.arrow"
    write_part_atomic(pa.table({"text": ["a"], PHONE: ["b"]}), part)
    with pytest.raises(TicketFileError) as e:
        read_part(part, pa.schema([("text", pa.string()), (ID_NUMBER, pa.string())]))
    assert "'[手机号]'" in str(e.value) and "'[身份证号]'" in str(e.value)
    assert_masked(str(e.value))


# -- paidan train and evaluate: a label column not found --------------------------------------


def _export(path: Path, columns: list[str]) -> Path:
    """TINY_TICKETS under ``columns`` (id, title, text, department, category), a city's export."""
    import csv

    from tests.conftest import TINY_TICKETS

    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows([f"T{i}", *row] for i, row in enumerate(TINY_TICKETS))
    return path


def test_train_lists_the_files_columns_masked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app

    # A column named by a number (a staff member's export kept the caller's number as a name).
    data = _export(tmp_path / "export.csv", ["id", "title", "text", "department", PHONE])
    args = ["train", str(data), "--min-examples", "3"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "no column 'category' in export.csv" in said and "'[手机号]'" in said
    assert_masked(r.output)
    r = CliRunner().invoke(
        app, [*args, "--department-col", ID_NUMBER, "--out", str(tmp_path / "m2")]
    )
    assert r.exit_code == 2
    said = " ".join(r.output.split())
    assert "no column '[身份证号]' for the ticket department" in said
    assert_masked(r.output)
    data = _export(tmp_path / "export2.csv", ["id", "title", "text", ID_NUMBER, PHONE])
    r = CliRunner().invoke(app, ["train", str(data), "--out", str(tmp_path / "m3")])
    assert r.exit_code == 2
    said = " ".join(r.output.split())
    assert "export2.csv has columns 'id', 'title', 'text', '[身份证号]', '[手机号]'" in said
    assert_masked(r.output)


def test_evaluate_lists_the_files_columns_masked(tiny_model_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app

    data = _export(tmp_path / "export.csv", ["id", "title", "text", "department", PHONE])
    report = tmp_path / "report.json"
    r = CliRunner().invoke(
        app, ["evaluate", str(tiny_model_dir), str(data), "--report", str(report)]
    )
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "category head not scored: the data has no 'category' column" in said
    assert "'[手机号]'" in said
    assert_masked(r.output)
    assert_masked(report.read_text(encoding="utf-8"))


def test_since_names_the_time_column_masked(tmp_path: Path) -> None:
    import csv

    from typer.testing import CliRunner

    from paidan.cli import app
    from tests.conftest import TINY_TICKETS

    data = tmp_path / "export.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "department", "category", PHONE])
        w.writerows([f"T{i}", *row, "昨天"] for i, row in enumerate(TINY_TICKETS))
    args = ["train", str(data), "--out", str(tmp_path / "m"), "--since", "2026-01-01"]
    r = CliRunner().invoke(app, [*args, "--time-col", PHONE])
    assert r.exit_code == 2
    said = " ".join(r.output.split())
    assert "no readable time in column '[手机号]'" in said and "export.csv data row 1" in said
    assert_masked(r.output)


# -- paidan retrain: the mapping file and the renames it prints --------------------------------


def test_a_mapping_file_without_its_header_is_refused_masked(tmp_path: Path) -> None:
    from training.retrain import MappingFileError, read_mapping

    path = tmp_path / "m.csv"
    path.write_text(f"网格员张三{PHONE},城管局\n", encoding="utf-8")  # the header forgotten
    with pytest.raises(MappingFileError) as e:
        read_mapping(path)
    assert "found '网格员张三[手机号]', '城管局'" in str(e.value)
    assert_masked(str(e.value))
    path.write_text(f"old,new,head\n执法,城管执法,{ID_NUMBER}\n", encoding="utf-8")
    with pytest.raises(MappingFileError) as e:
        read_mapping(path)
    assert "line 2: head must be department, category or empty (got '[身份证号]')" in str(e.value)
    assert_masked(str(e.value))


@pytest.mark.slow
def test_retrain_prints_the_labels_it_mapped_masked(tmp_path: Path, tiny_config) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from model import registry
    from paidan.cli import app
    from tests.conftest import write_tiny_csv
    from training.train import train

    # A dispatcher typed a grid worker's number into the department: the mapping renames it.
    root = tmp_path / "models"
    df = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    typed = f"执法{PHONE}"
    df.loc[df["department"] == "执法", "department"] = typed
    history = tmp_path / "history.csv"
    df.to_csv(history, index=False)
    result = train([history], None, config=tiny_config, model_root=root)
    registry.promote(root, result.router.version)
    mapping = tmp_path / "m.csv"
    mapping.write_text(f"old,new\n{typed},城管执法\n", encoding="utf-8")
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    args = ["retrain", "--history", str(history), "--mapping", str(mapping)]
    r = CliRunner().invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    assert "department row(s) 执法[手机号] → 城管执法" in r.output
    assert_masked(r.output)
