"""Training on a recent window of the history: ``--since`` and ``--max-rows``."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from model.artifact import read_metadata
from model.config import TrainingConfig
from model.tickets import ColumnMap
from model.times import parse_times
from paidan.cli import app
from tests.conftest import TINY_TICKETS
from training.train import train
from training.validate import TrainingDataError
from training.window import Window, describe, read_window, select_window

runner = CliRunner()


def frame(times: list[str], source: str = "a.csv") -> pd.DataFrame:
    return pd.DataFrame({"id": [f"R{i}" for i in range(1, len(times) + 1)], "time": times}).assign(
        _source=source, _row=range(1, len(times) + 1)
    )


def test_times_in_the_formats_of_real_exports_are_read_and_others_are_not() -> None:
    times = parse_times(
        pd.Series(
            [
                "2019/4/25 9:32:09",  # the TipDM export
                "2020-01-06 12:09:38",
                "2021-03-01T08:00:00+08:00",  # a zone: converted to UTC
                "2022-07-01",
                "",
                "三月初",
            ]
        )
    )
    assert times[:4].dt.strftime("%Y-%m-%d %H:%M:%S").tolist() == [
        "2019-04-25 09:32:09",
        "2020-01-06 12:09:38",
        "2021-03-01 00:00:00",
        "2022-07-01 00:00:00",
    ]
    assert times[4:].isna().all()


def test_dates_written_in_chinese_are_read_and_a_date_without_its_year_is_not() -> None:
    # A CSV export of a workbook whose cells had Chinese Excel's date format holds them as text;
    # docs/training.md listed 2024年1月5日 among the forms read, and the column refused it.
    times = parse_times(
        pd.Series(
            [
                "2024年1月5日",
                "2024年01月05日 08:30",
                "2024年1月5日8时30分15秒",
                "2024 年 1 月 5 日 8点",
                "2024年1月",  # the first of the month, as 2024-01 is read
                "1月5日",  # which year cannot be told
                "2024年1月5日 下午3点",  # nor which hour
                "2024年13月5日",
            ]
        )
    )
    assert times[:5].dt.strftime("%Y-%m-%d %H:%M:%S").tolist() == [
        "2024-01-05 00:00:00",
        "2024-01-05 08:30:00",
        "2024-01-05 08:30:15",
        "2024-01-05 08:00:00",
        "2024-01-01 00:00:00",
    ]
    assert times[5:].isna().all()


def test_numeric_dates_are_read_in_one_order_for_the_whole_column() -> None:
    # The first value fits month first, a later one only day first: the column was read both
    # ways, 04/01 as April 1st and 15/01 as January 15th.
    times = parse_times(pd.Series(["04/01/2023 12:57", "", "15/01/2023 13:31", "2023-02-01"]))
    assert times.dt.strftime("%Y-%m-%d").tolist()[:1] == ["2023-01-04"]
    assert times.dt.strftime("%Y-%m-%d").tolist()[2:] == ["2023-01-15", "2023-02-01"]
    # With no value that says which, month first, as pandas reads them.
    assert parse_times(pd.Series(["04/01/2023"])).dt.month.tolist() == [4]


def test_numeric_dates_with_two_digit_years_are_read_in_one_order_too() -> None:
    times = parse_times(pd.Series(["05/01/23", "20/03/23 08:15", "15/01/2023T09:00"]))
    assert times.dt.strftime("%Y-%m-%d").tolist() == ["2023-01-05", "2023-03-20", "2023-01-15"]
    with pytest.raises(TrainingDataError, match="'01/13/23'"):
        select_window(frame(["15/01/23", "01/13/23"]), Window(since=datetime(2023, 1, 1)))


def test_numeric_dates_in_both_orders_are_refused_with_their_rows() -> None:
    df = frame(["04/01/2023", "15/01/2023", "01/20/2023"])
    with pytest.raises(TrainingDataError) as e:
        select_window(df, Window(since=datetime(2023, 1, 1)))
    msg = str(e.value)
    assert "'15/01/2023' (a.csv data row 2) can only be day first" in msg
    assert "'01/20/2023' (a.csv data row 3) only month first" in msg


def test_an_empty_window_keeps_the_frame_itself() -> None:
    df = frame(["", "garbage"])
    rows, info = select_window(df, Window())
    assert rows is df and info == {}


def test_since_keeps_the_rows_from_then_on_in_their_input_order() -> None:
    df = frame(["2026-03-01", "2025-12-31 23:59:59", "2026-01-01", "2026-02-01 10:00"])
    rows, info = select_window(df, Window(since=datetime(2026, 1, 1)))
    assert rows["id"].tolist() == ["R1", "R3", "R4"]
    assert info["rows_in"] == 4 and info["rows_kept"] == 3 and info["order"] == "time"
    assert info["first"].startswith("2026-01-01") and info["last"].startswith("2026-03-01")


def test_max_rows_keeps_the_newest_by_time_and_the_later_row_of_a_tie() -> None:
    df = frame(["2026-03-01", "2024-01-01", "2026-01-01", "2025-06-01", "2026-01-01"])
    rows, info = select_window(df, Window(max_rows=3))
    # R1 is the newest; R3 and R5 tie at 2026-01-01 and both fit; R4 and R2 are older.
    assert rows["id"].tolist() == ["R1", "R3", "R5"]
    rows, _ = select_window(df, Window(max_rows=2))
    assert rows["id"].tolist() == ["R1", "R5"]
    # Fewer rows than the cap: every row, nothing copied.
    rows, info = select_window(df, Window(max_rows=10))
    assert rows is df and info["rows_kept"] == 5


def test_max_rows_without_any_time_keeps_the_last_rows() -> None:
    df = pd.concat([frame(["", ""], "2026-01.csv"), frame(["", ""], "2026-02.csv")])
    rows, info = select_window(df, Window(max_rows=3))
    assert list(zip(rows["_source"], rows["_row"], strict=True)) == [
        ("2026-01.csv", 2),
        ("2026-02.csv", 1),
        ("2026-02.csv", 2),
    ]
    assert info["order"] == "input" and "first" not in info


def test_max_rows_refuses_times_it_cannot_read_instead_of_keeping_the_last_rows() -> None:
    # A newest-first export whose dates were unreadable (Chinese dates, before they were read; now
    # dates without their year): the last rows (the oldest) were kept and called "the newest 2 in
    # input order"; --since refused the same file.
    df = frame(["10月29日 8:50", "3月1日 9:00", "1月4日 12:57"])
    with pytest.raises(TrainingDataError) as e:
        select_window(df, Window(max_rows=2), column="受理时间")
    msg = str(e.value)
    assert "--max-rows needs every ticket's time, and 3 of 3 rows" in msg
    assert "a.csv data row 1 ('10月29日 8:50')" in msg and "'受理时间'" in msg
    # Written with their years, they are read, and the newest two kept.
    df = frame(["2026年10月29日 8:50", "2025年3月1日 9:00", "2023年1月4日 12:57"])
    assert list(select_window(df, Window(max_rows=2), column="受理时间")[0]["id"]) == ["R1", "R2"]


def test_max_rows_without_times_says_it_keeps_the_last_rows_not_the_newest() -> None:
    _, info = select_window(frame(["", "", ""]), Window(max_rows=2))
    line = describe(info)
    assert "newest 2" not in line
    assert "the last 2 rows of the input, in input order" in line and "--time-col" in line


def test_since_and_max_rows_together_keep_the_newest_of_the_recent_rows() -> None:
    df = frame(["2026-03-01", "2024-01-01", "2026-01-01", "2025-06-01"])
    rows, info = select_window(df, Window(since=datetime(2025, 1, 1), max_rows=2))
    assert rows["id"].tolist() == ["R1", "R3"]
    assert info["since"] == "2025-01-01T00:00:00+00:00" and info["max_rows"] == 2


def test_a_file_without_times_is_named_with_the_column_and_the_option() -> None:
    df = pd.concat([frame(["2026-01-01"], "new.csv"), frame(["", ""], "old.csv")])
    with pytest.raises(TrainingDataError) as e:
        select_window(df, Window(since=datetime(2026, 1, 1)), column="受理时间")
    assert "old.csv has no ticket times in column '受理时间'" in str(e.value)
    assert "--since" in str(e.value) and "--time-col" in str(e.value)
    # --max-rows orders by time as soon as one row has one: the same refusal, naming that option.
    with pytest.raises(TrainingDataError, match="--max-rows needs every ticket's time"):
        select_window(df, Window(max_rows=1))


def test_unreadable_times_are_cited_by_file_row_and_value() -> None:
    times = ["2026-01-01"] + ["三月初"] * 7
    with pytest.raises(TrainingDataError) as e:
        select_window(frame(times, "x.csv"), Window(since=datetime(2025, 1, 1)))
    message = str(e.value)
    assert "7 of 8 rows have no readable time in column 'time'" in message
    assert "x.csv data row 2 ('三月初')" in message and "x.csv data row 6" in message
    assert "x.csv data row 7" not in message and "and 2 more" in message


def test_unreadable_times_are_quoted_masked_and_cut_short() -> None:
    # An operator's note in the time column, and the text column mapped as the time by mistake:
    # the error reaches the nightly retrain's journal, so it quotes no phone or ID number and no
    # whole complaint.
    complaint = "楼下烧烤店每晚营业到凌晨两点，油烟和噪音严重影响休息，多次反映无果，请尽快处理" * 3
    times = [
        "2026-01-01",
        "已回访 来电人13812345678 身份证430102199001011234",
        "回访１３９８７６５４３２１",
        complaint,
    ]
    with pytest.raises(TrainingDataError) as e:
        select_window(frame(times, "t.csv"), Window(since=datetime(2025, 1, 1)))
    message = str(e.value)
    for number in ("13812345678", "430102199001011234", "１３９８７６５４３２１"):
        assert number not in message
    assert "t.csv data row 2 ('已回访 来电人[手机号] 身份证[身份证号]')" in message
    assert "t.csv data row 3 ('回访[手机号]')" in message
    assert f"t.csv data row 4 ('{complaint[:40]}'… ({len(complaint)} characters))" in message
    assert complaint[:41] not in message


def test_a_since_after_every_ticket_names_the_newest_and_one_before_all_keeps_all() -> None:
    df = frame(["2026-01-01", "2026-10-29 08:50:54", "2025-01-01"])
    with pytest.raises(TrainingDataError) as e:
        select_window(df, Window(since=datetime(9999, 12, 31)))
    assert "the newest is 2026-10-29 08:50:54 UTC, a.csv data row 2" in str(e.value)
    rows, _ = select_window(df, Window(since=datetime(1, 1, 1)))
    assert rows["id"].tolist() == ["R1", "R2", "R3"]


def test_a_since_with_an_offset_is_stated_in_utc_in_the_error_and_the_window_line() -> None:
    df = frame(["2026-05-31 21:00:00", "2026-10-29 08:50:54", "2026-06-02 09:00:00"])
    # 05:00 at -05:00 is 10:00 UTC, after the newest ticket: the bound was printed as 05:00:00
    # beside the newest ticket's 08:50:54 UTC, which read as a contradiction.
    with pytest.raises(TrainingDataError) as e:
        select_window(df, Window(since=datetime.fromisoformat("2026-10-29T05:00:00-05:00")))
    assert str(e.value).startswith(
        "no ticket is from 2026-10-29 10:00:00 UTC on (--since 2026-10-29T05:00:00-05:00); "
        "the newest is 2026-10-29 08:50:54 UTC, a.csv data row 2"
    )
    # 06:00 Beijing time on 1 June is 22:00 UTC on 31 May: the line said "from 2026-05-31 on".
    rows, info = select_window(
        df, Window(since=datetime.fromisoformat("2026-06-01T06:00:00+08:00"))
    )
    assert rows["id"].tolist() == ["R2", "R3"]
    assert describe(info) == (
        "window: 2 of 3 rows kept, from 2026-05-31 22:00:00 on (2026-06-02 to 2026-10-29, UTC)"
    )
    # A time of day without an offset is kept too; midnight is the date alone.
    _, info = select_window(df, Window(since=datetime(2026, 6, 1, 12)))
    assert describe(info).startswith("window: 2 of 3 rows kept, from 2026-06-01 12:00:00 on (")
    _, info = select_window(df, Window(since=datetime(2026, 6, 1), max_rows=1))
    assert describe(info) == (
        "window: 1 of 3 rows kept, from 2026-06-01 on and the newest 1 by time "
        "(2026-10-29 to 2026-10-29, UTC)"
    )


def test_a_window_of_no_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="max_rows must be 1 or more"):
        Window(max_rows=0)


def write_history(path: Path) -> Path:
    """The tiny corpus dated 2026, after three 2019 tickets of a department since renamed."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "department", "category", "受理时间"])
        for i, text in enumerate(("路灯坏了没人修", "井盖丢失", "路面塌陷")):
            w.writerow([f"OLD{i}", "", text, "市政局", "城建", f"2019/5/{i + 1} 9:00:00"])
        for i, (title, text, dept, cat) in enumerate(TINY_TICKETS, 1):
            w.writerow([f"T{i:03d}", title, text, dept, cat, f"2026/1/{i} 10:00:00"])
    return path


def test_train_on_a_window_leaves_the_old_department_out_and_records_it(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    from model.tickets import ColumnMap

    data = write_history(tmp_path / "history.csv")
    columns = ColumnMap(time="受理时间")
    whole = train([data], None, columns, tiny_config)
    recent = train([data], None, columns, tiny_config, window=Window(since=datetime(2025, 1, 1)))
    assert "市政局" in whole.router.heads["department"].labels
    assert "市政局" not in recent.router.heads["department"].labels
    meta = recent.metadata["training_data"]
    assert meta["rows"] == len(TINY_TICKETS) and "window" not in whole.metadata["training_data"]
    assert meta["window"]["rows_in"] == len(TINY_TICKETS) + 3
    assert meta["window"]["first"] == "2026-01-01T10:00:00+00:00"
    # The same files under another window are other training data.
    assert meta["sha256"] != whole.metadata["training_data"]["sha256"]
    assert meta["files"] == whole.metadata["training_data"]["files"]


def test_cli_train_says_its_window_before_the_fit_also_when_the_fit_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window line was printed only once the whole fit had succeeded: a run that failed or
    # was killed during a long fit never said which rows it had kept.
    import training.train
    from training.validate import TrainingDataError

    def stop(*args: object, **kwargs: object) -> None:
        raise TrainingDataError("stopped in the fit by this test")

    monkeypatch.setattr(training.train, "fit_router", stop)
    data = write_history(tmp_path / "history.csv")
    args = ["train", str(data), "--out", str(tmp_path / "model"), "--min-examples", "3"]
    r = runner.invoke(app, [*args, "--time-col", "受理时间", "--max-rows", str(len(TINY_TICKETS))])
    said = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    window = f"window: {len(TINY_TICKETS)} of {len(TINY_TICKETS) + 3} rows kept"
    assert window in said and said.index(window) < said.index("stopped in the fit"), said


def test_cli_train_window_options(tmp_path: Path) -> None:
    data = write_history(tmp_path / "history.csv")
    out = tmp_path / "model"
    base = ["train", str(data), "--out", str(out), "--min-examples", "3", "--time-col", "受理时间"]
    r = runner.invoke(app, [*base, "--max-rows", str(len(TINY_TICKETS))])
    assert r.exit_code == 0, r.output
    assert f"window: {len(TINY_TICKETS)} of {len(TINY_TICKETS) + 3} rows kept" in r.output
    assert read_metadata(out)["training_data"]["window"]["order"] == "time"
    # The column is not there without --time-col: refused before any training, naming the file.
    r = runner.invoke(
        app, ["train", str(data), "--out", str(tmp_path / "m2"), "--since", "2025-01-01"]
    )
    assert r.exit_code == 2
    assert "history.csv has no ticket times in column 'time'" in " ".join(r.output.split())
    assert not (tmp_path / "m2" / "metadata.json").exists()
    r = runner.invoke(app, [*base, "--max-rows", "0", "--force"])
    assert r.exit_code == 2 and "--max-rows" in r.output


def test_retrain_freezes_and_trains_on_the_history_window_only(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    from model import registry
    from model.tickets import ColumnMap
    from training.retrain import read_frozen_eval, retrain

    data = write_history(tmp_path / "history.csv")
    root = tmp_path / "models"
    result = retrain(
        [data],
        [],
        root,
        ColumnMap(time="受理时间"),
        config=tiny_config,
        window=Window(since=datetime(2025, 1, 1)),
    )
    assert result.window["rows_kept"] == len(TINY_TICKETS)
    frozen, _ = read_frozen_eval(root)
    assert result.eval_frozen_now and not frozen["id"].str.startswith("OLD").any()
    assert result.rows["history"] + len(frozen) == len(TINY_TICKETS)
    assert result.train is not None and result.version in registry.versions(root)
    assert "市政局" not in result.train.router.heads["department"].labels
    assert result.train.metadata["training_data"]["window"] == result.window


def test_excel_date_cells_are_times(tmp_path: Path) -> None:
    import openpyxl

    from model.tickets import read_tickets

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "text", "department", "time"])
    ws.append(["1", "路灯坏了", "住建", datetime(2025, 3, 1, 9, 30)])
    ws.append(["2", "夜间施工噪音", "执法", "2025/5/1 8:00"])
    wb.save(tmp_path / "t.xlsx")
    rows, info = select_window(read_tickets([tmp_path / "t.xlsx"]), Window(max_rows=1))
    assert rows["id"].tolist() == ["2"]
    assert info["first"] == info["last"] == "2025-05-01T08:00:00+00:00"


def test_excel_time_of_day_cells_are_no_dates(tmp_path: Path) -> None:
    # A 12345 export with 日期 and 时间 columns, --time-col 时间: each time of day was read as that
    # time today, so --since kept every ticket and --max-rows kept the latest hours of any day.
    from datetime import time

    import openpyxl

    from model.tickets import ColumnMap, read_tickets

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "text", "department", "日期", "时间"])
    ws.append(["1", "路灯坏了", "住建", datetime(2023, 3, 1), time(7, 0)])
    ws.append(["2", "夜间施工噪音", "执法", datetime(2023, 5, 1), time(23, 30, 15)])
    wb.save(tmp_path / "t.xlsx")
    df = read_tickets([tmp_path / "t.xlsx"], ColumnMap(time="时间"))
    assert parse_times(df["time"]).isna().all()
    assert parse_times(pd.Series(["8:30", "2023-05-01 08:30"])).isna().tolist() == [True, False]
    with pytest.raises(TrainingDataError) as e:
        select_window(df, Window(since=datetime(2024, 12, 1)), column="时间")
    message = str(e.value)
    assert "2 of 2 rows have no readable time in column '时间'" in message
    assert "t.xlsx data row 1 ('07:00:00')" in message
    assert "a time of day has no date" in message
    dated = read_tickets([tmp_path / "t.xlsx"], ColumnMap(time="日期"))
    rows, _ = select_window(dated, Window(since=datetime(2023, 4, 1)))
    assert rows["id"].tolist() == ["2"]


def test_cli_retrain_window_options_reach_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tmp_path / "models"))
    monkeypatch.setenv("PAIDAN_DATA_DIR", str(tmp_path / "var"))
    data = write_history(tmp_path / "history.csv")
    args = ["retrain", "--history", str(data), "--time-col", "受理时间"]
    r = runner.invoke(app, [*args, "--history-since", "2030-01-01"])
    assert r.exit_code == 2, r.output
    assert "no ticket is from 2030-01-01 00:00:00 UTC on (--history-since)" in " ".join(
        r.output.split()
    )
    r = runner.invoke(app, [*args, "--history-max-rows", "0"])
    assert r.exit_code == 2 and "--history-max-rows" in r.output
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        # A space for the T, with an offset: the option refused it, the T form was taken.
        ("2026-06-01 06:00:00+08:00", "2026-06-01T06:00:00+08:00"),
        ("2026-06-01T06:00:00+08:00", "2026-06-01T06:00:00+08:00"),
        ("2026-06-01", "2026-06-01T00:00:00"),  # no zone: naive, taken as UTC
        ("2026-06-01 06:00", "2026-06-01T06:00:00"),
        # The time column's other forms (parse_times).
        ("2026/6/1 6:00", "2026-06-01T06:00:00"),
        ("2026/06/01 06:00:00 +0800", "2026-06-01T06:00:00+08:00"),
        ("2026.6.1", "2026-06-01T00:00:00"),
        ("15/01/2026", "2026-01-15T00:00:00"),
        ("0001-01-01", "0001-01-01T00:00:00"),  # before every ticket, beyond pandas' years
        (
            "2026年11月1日",
            "2026-11-01T00:00:00+00:00",
        ),  # written in Chinese: UTC, as without a zone
    ],
)
def test_a_since_bound_reads_the_forms_the_time_column_reads(typed: str, read: str) -> None:
    from model.times import parse_bound

    assert parse_bound(typed).isoformat() == read


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("04/01/2026", "can be read day first or month first"),
        ("07:00", "is no date or time"),
        ("1704412980", "is no date or time"),
    ],
)
def test_a_since_bound_that_is_no_time_or_either_date_is_refused(typed: str, said: str) -> None:
    from model.times import parse_bound

    with pytest.raises(ValueError, match=said):
        parse_bound(typed)


def test_cli_since_options_take_a_time_with_a_space_and_an_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tmp_path / "models"))
    monkeypatch.setenv("PAIDAN_DATA_DIR", str(tmp_path / "var"))
    data = write_history(tmp_path / "history.csv")
    args = ["retrain", "--history", str(data), "--time-col", "受理时间"]
    r = runner.invoke(app, [*args, "--history-since", "2030-01-01 06:00:00+08:00"])
    assert r.exit_code == 2, r.output
    said = " ".join(r.output.split())
    assert "no ticket is from 2029-12-31 22:00:00 UTC on (--history-since" in said, said
    r = runner.invoke(app, [*args, "--history-since", "04/01/2026"])
    assert r.exit_code == 2
    said = " ".join(r.output.split())
    assert "Invalid value for '--history-since': '04/01/2026' can be read day first" in said, said


def test_times_without_a_zone_are_read_in_the_centres_zone() -> None:
    # A Chinese centre's export writes Beijing time without a zone: read as UTC, 07:00 on 1 June
    # was kept by a window from midnight UTC, though it was 23:00 UTC the day before.
    cells = ["2026-06-01 07:00:00", "2026/6/1 9:00", "2026-06-01T07:00:00+00:00", ""]
    times = parse_times(pd.Series(cells), zone="Asia/Shanghai")
    assert times[:3].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2026-05-31 23:00",
        "2026-06-01 01:00",
        "2026-06-01 07:00",  # its own zone wins
    ]
    assert pd.isna(times.iat[3])
    df = frame(cells[:3])
    rows, info = select_window(df, Window(since=datetime(2026, 6, 1, 8), zone="Asia/Shanghai"))
    # The bound typed without a zone is Beijing time as well: from 00:00 UTC.
    assert rows["id"].tolist() == ["R2", "R3"] and info["timezone"] == "Asia/Shanghai"
    rows, _ = select_window(df, Window(since=datetime(2026, 6, 1, 7)))  # UTC by default
    assert rows["id"].tolist() == ["R1", "R2", "R3"]


def test_cli_timezone_places_bare_bounds_and_a_bad_zone_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tmp_path / "models"))
    monkeypatch.setenv("PAIDAN_DATA_DIR", str(tmp_path / "var"))
    data = write_history(tmp_path / "history.csv")
    args = ["retrain", "--history", str(data), "--time-col", "受理时间"]
    monkeypatch.setenv("PAIDAN_TIMEZONE", "Asia/Shanghai")
    r = runner.invoke(app, [*args, "--history-since", "2030-01-01"])
    said = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert (
        "no ticket is from 2029-12-31 16:00:00 UTC on (--history-since 2030-01-01T00:00:00+08:00)"
    ) in said, said
    # The option wins over the setting.
    r = runner.invoke(app, [*args, "--history-since", "2030-01-01", "--timezone", "UTC"])
    assert "no ticket is from 2030-01-01 00:00:00 UTC on (--history-since)" in " ".join(
        r.output.split()
    )
    r = runner.invoke(app, [*args, "--history-since", "2030-01-01", "--timezone", "UTC+8"])
    assert r.exit_code == 2 and "'UTC+8' is not an IANA time zone" in r.output
    monkeypatch.setenv("PAIDAN_TIMEZONE", "Beijing")
    r = runner.invoke(app, [*args, "--history-since", "2030-01-01"])
    assert r.exit_code == 2
    assert "PAIDAN_TIMEZONE: 'Beijing' is not an IANA time zone" in " ".join(r.output.split())


@pytest.mark.parametrize("chunked", [False, True])
def test_implausible_years_and_two_digit_years_are_warned_with_their_rows(
    tmp_path: Path, chunked: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # 0019-01-05 (a typo of 2019) was read as year 19, and 19-01-05 as 19 January 2005, silently.
    cells = ["2019-01-04", "0019-01-05", "19-01-05", "2019-01-06", "20-02-28", "1019-3-1"]
    path = tmp_path / "h.csv"
    pd.DataFrame({"id": range(1, 7), "text": "路灯坏了", "time": cells}).to_csv(path, index=False)
    window = Window(max_rows=10)
    with caplog.at_level("WARNING", logger="training.window"):
        if chunked:
            read_window([path], ColumnMap(), window, size=2).select()
        else:
            select_window(frame(cells, "h.csv"), window)
    said = " ".join(caplog.text.split())
    assert (
        "column 'time' has 2 times with a year before 1990 or after "
        f"{datetime.now().year + 1}: h.csv data row 2 ('0019-01-05', read as 0019-01-05); "
        "h.csv data row 6 ('1019-3-1', read as 1019-03-01); a typo"
    ) in said, said
    assert (
        "column 'time' has 2 times with a two-digit year: h.csv data row 3 ('19-01-05', read as "
        "2005-01-19); h.csv data row 5 ('20-02-28', read as 2028-02-20); which part is the year"
    ) in said, said
    caplog.clear()
    with caplog.at_level("WARNING", logger="training.window"):
        select_window(frame(["2019-01-04", "2019/1/5 10:00"]), window)
    assert "year" not in caplog.text


def test_the_window_line_gives_the_bound_in_the_centres_zone_too() -> None:
    # PAIDAN_TIMEZONE=Asia/Shanghai and --since 2026-06-01: the line said only "from 2026-05-31
    # 16:00:00 on", the day before the one typed, where drift and --feedback-since give the bound
    # as the centre reads it too.
    df = frame(["2026-05-31 23:00:00", "2026-10-29 08:50:54", "2026-06-02 09:00:00"])
    rows, info = select_window(df, Window(since=datetime(2026, 6, 1), zone="Asia/Shanghai"))
    assert rows["id"].tolist() == ["R2", "R3"]
    assert describe(info).startswith(
        "window: 2 of 3 rows kept, from 2026-05-31 16:00:00 UTC (2026-06-01 00:00:00 "
        "Asia/Shanghai) on ("
    )


def test_a_window_without_the_time_column_names_the_column_that_looks_like_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A city's export dates its tickets in 受理时间 (or 时间, 日期): the text, title, id and label
    # columns were named with the option to give when unmapped, the time's was not, so --since
    # said only "map yours with --time-col" and --max-rows kept the file's last rows, not its
    # newest, while the note said no ticket had a time.
    import training.train

    def stop(*args: object, **kwargs: object) -> None:
        raise TrainingDataError("stopped in the fit by this test")

    monkeypatch.setattr(training.train, "fit_router", stop)
    data = write_history(tmp_path / "history.csv")
    args = ["train", str(data), "--out", str(tmp_path / "m"), "--min-examples", "3"]
    r = runner.invoke(app, [*args, "--since", "2025-01-01"])
    said = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "history.csv has no ticket times in column 'time'" in said
    assert "'受理时间' looks like the time: --time-col 受理时间" in said, said
    with caplog.at_level("WARNING", logger="training.window"):
        r = runner.invoke(app, [*args, "--max-rows", "5"])
    assert "the last 5 rows of the input, in input order" in " ".join(r.output.split())
    assert (
        "history.csv has no column 'time' for the ticket time, so --max-rows keeps its last rows, "
        "not its newest; it has '受理时间': if it is the time, give --time-col 受理时间"
    ) in " ".join(caplog.text.split()), caplog.text
    caplog.clear()
    # A --time-col naming a column the file lacks is refused naming the one that looks like it.
    r = runner.invoke(app, [*args, "--time-col", "日期", "--since", "2025-01-01"])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "no column '日期' for the ticket time" in said, said
    assert "'受理时间' looks like the time: --time-col 受理时间" in said, said
    # A file without such a column: nothing more is said than before.
    plain = tmp_path / "plain.csv"
    pd.read_csv(data, dtype=str).drop(columns=["受理时间"]).to_csv(plain, index=False)
    r = runner.invoke(app, ["train", str(plain), *args[2:], "--since", "2025-01-01"])
    said = " ".join(r.output.split())
    assert "plain.csv has no ticket times in column 'time' (map yours with --time-col)" in said
    assert "looks like the time" not in said
    with caplog.at_level("WARNING", logger="training.window"):
        r = runner.invoke(app, ["train", str(plain), *args[2:], "--max-rows", "5"])
    assert "the last 5 rows of the input" in " ".join(r.output.split())
    assert "for the ticket time" not in caplog.text
