"""Progress of long runs when stderr is not a terminal (cron, nohup, ``2>> log``): a line as each
stage starts and ends, where nothing at all was written until the run ended."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from paidan.cli import _RichProgress, _RowsPerSecond, app, label_pace, progress_bar, rows_per_second

runner = CliRunner()
CLOCK = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def stages(stderr: str) -> list[str]:
    """The progress lines of a run's stderr, without their clock and times taken."""
    return [
        re.sub(r" \(\d+ s\)$", "", line[21:])
        for line in stderr.splitlines()
        if re.match(rf"{CLOCK} \S", line)
    ]


def test_each_stage_of_train_and_evaluate_is_a_line_when_it_starts(
    tmp_path: Path, tiny_csv: Path
) -> None:
    out = tmp_path / "model"
    r = runner.invoke(app, ["train", str(tiny_csv), "--out", str(out), "--min-examples", "3"])
    assert r.exit_code == 0, r.output
    lines = stages(r.stderr)
    # Said before the work, not only when it is done: the reading and validating of a large
    # history, and the vocabularies after tokenizing, were minutes without a word.
    for stage in ("reading", "validating", "tokenizing (18 steps)", "vocabularies"):
        assert f"{stage}…" in lines, lines
    for head in ("department", "category"):
        start, end = lines.index(f"fitting {head}…"), lines.index(f"fitting {head}: done")
        assert start < end
    assert lines.index("reading…") < lines.index("validating…") < lines.index("vocabularies…")

    r = runner.invoke(app, ["evaluate", str(out), str(tiny_csv)])
    assert r.exit_code == 0, r.output
    lines = stages(r.stderr)
    # Read and scored a chunk at a time: one stage, of the rows the file has.
    assert lines == ["scoring (18 steps)…", "scoring: done"], lines


def test_evaluate_estimates_a_csvs_rows_not_its_lines(
    tmp_path: Path, tiny_csv: Path, tiny_model_dir: Path
) -> None:
    # Texts over several lines, blank lines and \r\n line ends were counted as rows, and a run
    # ended "scoring: done, 18/18 (37 estimated at the start)": an estimate off by the file's
    # own shape, where the rows can be counted as the reader reads them.
    import csv

    with open(tiny_csv, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    data = tmp_path / "multiline.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(rows[0])
        text = rows[0].index("text")
        for i, row in enumerate(rows[1:]):
            row[text] = f'{row[text]}\r\n第{i}次反映，"请"尽快处理'
            w.writerow(row)
            f.write("\r\n")  # a blank line: no row
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(data)])
    assert r.exit_code == 0, r.output
    n = len(rows) - 1
    assert stages(r.stderr) == [f"scoring ({n} steps)…", "scoring: done"], stages(r.stderr)


def test_a_stage_of_many_steps_is_a_line_at_each_tenth(capsys: object) -> None:
    with progress_bar() as bar:
        progress = _RichProgress(bar, lines=True)
        assert progress.plain  # not a terminal under pytest
        for done in range(0, 1001):
            progress("labelling", done, 1000)
        progress("labelling", 0, 50)  # the stage again, from the start
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    lines = stages(err)
    assert lines[0] == "labelling (1,000 steps)…"
    assert lines[1:10] == [f"labelling: {n * 100:,}/1,000" for n in range(1, 10)]
    assert lines[10:] == ["labelling: done", "labelling (50 steps)…"]


def test_retrain_says_it_reads_its_history_and_each_line_carries_the_utc_date(
    tmp_path: Path, tiny_csv: Path
) -> None:
    # retrain's log began at "validating…": silent while reading the history, its longest stage
    # once the window was kept while reading; and the clock was local HH:MM:SS without a date.
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "root"), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    args = ["retrain", "--history", str(tiny_csv)]
    r = runner.invoke(app, args, env=env)
    lines = stages(r.stderr)
    assert lines[:2] == ["reading…", "reading: done"], (lines, r.output)
    assert lines.index("reading: done") < lines.index("validating…")
    stamped = [line for line in r.stderr.splitlines() if re.match(rf"{CLOCK} \S", line)]
    today = datetime.now(UTC).date()
    days = {datetime.strptime(line[:20], "%Y-%m-%dT%H:%M:%SZ").date() for line in stamped}
    assert days <= {today, today - timedelta(days=1)}, days


def test_label_says_its_progress_in_lines_and_ends_done_though_lines_overcounted_rows(
    tmp_path: Path, sample_model_dir: Path
) -> None:
    # `paidan label` of a backlog from cron or nohup wrote nothing until it ended. A JSON Lines
    # file's rows are estimated by its lines that are not blank: with lines of full-width spaces
    # (no row, but estimated rows) between them the estimate is never reached, and the stage must
    # still end "done", at the rows found (its last line was 40/120, then a bare "done": a run
    # that looked cut short of its total).
    import json

    data = tmp_path / "backlog.jsonl"
    with open(data, "w", encoding="utf-8", newline="") as f:
        for i in range(40):
            row = {"id": f"T{i}", "title": "", "text": f"公司拖欠工资三个月不发，第{i}次反映"}
            f.write(json.dumps(row, ensure_ascii=False) + "\n\u3000\n\u3000\n")  # 3 lines a row
    out = tmp_path / "out.csv"
    args = ["label", str(data), "--model", str(sample_model_dir), "--out", str(out)]
    r = runner.invoke(app, [*args, "--chunk-size", "8", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    lines = stages(r.stderr)
    assert lines[0] == "labelling (120 steps)…", lines  # 3 lines a row: an estimate of 120
    assert lines[-1] == "labelling: done, 40/40 (120 estimated at the start)", lines
    assert lines[1:-1] == ["labelling: 16/120", "labelling: 24/120"], lines


def test_label_of_a_header_only_backlog_ends_its_stage_done(
    tmp_path: Path, sample_model_dir: Path
) -> None:
    # Nothing to label: the log said "labelling…" and never that it was done, as a hung run.
    data = tmp_path / "empty.csv"
    data.write_text("id,title,text\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    r = runner.invoke(
        app, ["label", str(data), "--model", str(sample_model_dir), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert stages(r.stderr) == ["labelling…", "labelling: done"], r.stderr


def test_label_counts_the_chunks_in_flight_against_the_rows_once_reading_is_over(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The progress counted rows against an estimate of lines to the end: 36,000/44,470 for
    # 40,000 rows, then "done". Once the last chunk is read the rows are known, and the chunks
    # still being labelled (several in flight with several workers) count against them.
    # (Blank lines made the estimate 80 here until it left them out: an estimate of twice the
    # rows now stands for any that is off, as a JSON array's or a stale workbook's can be.)
    import json

    import training.label

    start = training.label._start_engine

    def four_in_flight(*args: Any, **kwargs: Any) -> Any:  # as with two workers, in-process
        submit, _, close, failure = start(*args, **kwargs)
        return submit, 4, close, failure

    monkeypatch.setattr(training.label, "_start_engine", four_in_flight)
    monkeypatch.setattr(training.label, "estimate_rows", lambda path: 80)
    data = tmp_path / "backlog.jsonl"
    with open(data, "w", encoding="utf-8", newline="") as f:
        for i in range(40):
            row = {"id": f"T{i}", "title": "", "text": f"公司拖欠工资三个月不发，第{i}次反映"}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    seen: list[tuple[int, int]] = []
    training.label.label(
        [data],
        tiny_model_dir,
        tmp_path / "out.csv",
        jobs=1,
        chunk_size=8,
        progress=lambda stage, done, total: seen.append((done, total)),
    )
    # 80 estimated for 40 rows; the last chunk read, three were still in flight.
    assert seen == [(8, 80), (16, 40), (24, 40), (32, 40), (40, 40)]


@pytest.mark.parametrize(
    ("rate", "said"),
    [(0.3, "0.3 rows/s"), (0.04, "0.04 rows/s"), (7.26, "7.3 rows/s"), (48213.4, "48,213 rows/s")],
)
def test_a_slow_rate_is_not_said_as_0_rows_per_second(rate: float, said: str) -> None:
    assert rows_per_second(rate) == said
    task: Any = SimpleNamespace(finished_speed=None, speed=rate)
    assert _RowsPerSecond().render(task).plain == said


def test_a_one_row_label_run_says_its_time_not_0_rows_per_second() -> None:
    # One row took 3.6 s, the model's loading: the summary line said "at 0 rows/s".
    assert label_pace({"rows_per_second": 0.3, "seconds": 3.62}) == "in 3.6 s"
    assert label_pace({"rows_per_second": 0.0, "seconds": 41.0}) == "in 41.0 s"
    assert label_pace({"rows_per_second": 2.5, "seconds": 4.0}) == "at 2.5 rows/s"
    assert label_pace({"rows_per_second": 1250.4, "seconds": 8.0}) == "at 1,250 rows/s"
