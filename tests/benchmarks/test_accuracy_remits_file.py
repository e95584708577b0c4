"""``benchmarks/accuracy.py --remits-file FILE``: read as ``paidan train --remits``, refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.scripts import load_benchmark


def test_a_remits_file_is_read_as_paidan_train_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "remits.csv"
    path.write_text(
        "department,title,text\n人社,人社职责,负责劳动合同纠纷和拖欠工资的投诉\n", encoding="utf-8"
    )
    remits = load_benchmark("accuracy").remits_file(path)
    assert remits[["department", "category", "title", "text"]].values.tolist() == [
        ["人社", "", "人社职责", "负责劳动合同纠纷和拖欠工资的投诉"]
    ]


def test_a_bad_remits_file_exits_2_naming_the_file_and_the_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "remits.csv"
    path.write_text("department,text\n人社,负责拖欠工资的投诉\n,没有部门的一行\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        load_benchmark("accuracy").remits_file(path)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("accuracy.py: --remits-file: ")
    assert "remits.csv" in err and "row 2: department: is empty" in err


def test_the_shipped_chinese_remits_name_the_data_s_twenty_departments() -> None:
    path = (
        Path(__file__).resolve().parents[2] / "benchmarks" / "remits" / "tipdm_departments_zh.csv"
    )
    remits = load_benchmark("accuracy").remits_file(path)
    assert len(set(remits["department"])) == 20
    assert (remits["category"] == "").all()
