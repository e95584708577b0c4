"""Rows that repeat the header line (files joined with ``copy a.csv+b.csv``) are left out of train
and evaluate; they are counted where an administrator looks afterwards, not only in the log:
evaluate's report (JSON and Markdown) and the model's metadata.json and training summary."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pytest

import training.window as window_module
from model.config import TrainingConfig
from model.tickets import ColumnMap
from tests.conftest import TINY_TICKETS
from training.evaluate import evaluate, report_warnings
from training.retrain import retrain
from training.train import train
from training.window import Window, read_window

HEADER = ["id", "title", "text", "department", "category"]
SAYS = "skipped 2 rows that repeat the header line"


def joined(path: Path, parts: int = 3) -> Path:
    """The tiny tickets as ``parts`` exports joined byte-wise, each with its header: data rows
    that repeat the header line, two of them for three parts."""
    size = -(-len(TINY_TICKETS) // parts)
    with open(path, "w", encoding="utf-8", newline="") as f:
        for start in range(0, len(TINY_TICKETS), size):
            w = csv.writer(f)
            w.writerow(HEADER)
            for i, ticket in enumerate(TINY_TICKETS[start : start + size], start + 1):
                w.writerow([f"T{i:03d}", *ticket])
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig):
    root = tmp_path_factory.mktemp("repeated")
    data = joined(root / "一季度.csv")
    return data, train([data], root / "model", config=tiny_config)


def test_train_records_the_rows_that_repeat_the_header_in_metadata_and_summary(trained) -> None:
    _, result = trained
    assert result.validation.rows_in == len(TINY_TICKETS)
    meta = json.loads((result.model_dir / "metadata.json").read_text(encoding="utf-8"))
    assert meta["training_data"]["validation"]["repeated_header_rows"] == 2
    assert any(w.startswith(SAYS) for w in result.validation.warnings())


def test_train_with_a_window_records_them_too(
    trained, tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    data, _ = trained
    result = train([data], tmp_path / "m", config=tiny_config, window=Window(max_rows=10_000))
    assert result.metadata["training_data"]["validation"]["repeated_header_rows"] == 2


def test_a_file_without_them_records_none(tmp_path: Path, trained) -> None:
    _, result = trained
    whole = joined(tmp_path / "t.csv", parts=1)
    report = evaluate(result.model_dir, [whole])
    assert report["skipped_repeated_header"] == 0
    assert not any("header line" in w for w in report_warnings(report))


@pytest.mark.parametrize("chunk_rows", [4, None])
def test_evaluate_reports_the_rows_that_repeat_the_header(
    trained, tmp_path: Path, chunk_rows: int | None
) -> None:
    data, result = trained
    report = evaluate(result.model_dir, [data], tmp_path / "r.json", chunk_rows=chunk_rows)
    assert report["skipped_repeated_header"] == 2
    # Beside the empty texts' count, which it follows.
    keys = list(report)
    assert keys.index("skipped_repeated_header") == keys.index("skipped_empty_text") + 1
    written = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert written["skipped_repeated_header"] == 2
    assert any(w.startswith(SAYS) for w in report_warnings(report))
    assert SAYS in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_one_row_is_said_as_one() -> None:
    assert (
        "skipped 1 row that repeats the header line"
        in report_warnings({"skipped_repeated_header": 1})[0]
    )


@pytest.mark.parametrize("chunk_rows", [4, None])
def test_a_file_given_twice_counts_its_rows_twice(
    trained, tmp_path: Path, chunk_rows: int | None
) -> None:
    # Each copy's rows are left out, as its empty texts are counted in both: 2 per copy.
    data, result = trained
    report = evaluate(result.model_dir, [data, data], chunk_rows=chunk_rows)
    assert report["skipped_repeated_header"] == 4


def test_train_on_a_file_given_twice_records_both_copies_rows(
    trained, tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    data, _ = trained
    result = train([data, data], tmp_path / "m", config=tiny_config)
    assert result.metadata["training_data"]["validation"]["repeated_header_rows"] == 4


def test_a_window_that_reads_the_files_again_for_day_first_dates_counts_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file of dates that fit either order with the header again inside, given twice, then a
    # file with a date that can only be day first: the window has counted the first file's rows
    # when it reads the files a second time, which must not add to that count.
    header = [*HEADER, "time"]
    either = [f"{m:02d}/{d:02d}/2023" for m in range(1, 13) for d in (1, 5)]

    def write(path: Path, times: list[str | None]) -> Path:
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for i, t in enumerate(times, 1):
                if t is None:
                    w.writerow(header)
                else:
                    w.writerow([f"T{i}", "", f"路灯不亮{i}", "市城管局", "市政设施", t])
        return path

    twice = write(tmp_path / "a.csv", [*either[:12], None, *either[12:]])
    later = write(tmp_path / "b.csv", [*either[:6], "15/01/2023", "03/04/2023"])
    readings: list[bool] = []  # dayfirst of each reading of the files
    first_reading = window_module._read_window

    def spy(*args, dayfirst: bool, **kwargs):
        readings.append(dayfirst)
        return first_reading(*args, dayfirst=dayfirst, **kwargs)

    monkeypatch.setattr(window_module, "_read_window", spy)
    for window in (Window(max_rows=10), Window(since=datetime(2023, 4, 3))):
        readings.clear()
        repeated: dict[str, list[int]] = {}
        read_window([twice, twice, later], ColumnMap(), window, size=8, repeated_headers=repeated)
        assert readings == [False, True]  # read again, day first
        # One row repeats the header in each of the two copies.
        assert sum(map(len, repeated.values())) == 2


def test_retrain_records_them_in_the_challengers_metadata(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # retrain reads its history through the window as train does; its challenger's metadata.json
    # and summary said nothing of the rows it left out.
    history = joined(tmp_path / "history.csv")
    result = retrain([history], [], tmp_path / "models", config=tiny_config)
    assert result.train is not None
    validation = result.train.metadata["training_data"]["validation"]
    assert validation["repeated_header_rows"] == 2
    assert any(w.startswith(SAYS) for w in result.warnings(tiny_config.min_examples))
