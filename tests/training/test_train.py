import csv
import dataclasses
import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.model_selection import StratifiedKFold
from typer.testing import CliRunner

from model import resources
from model.artifact import load_router, read_metadata
from model.config import TrainingConfig
from model.pipeline import BlendedClassifier
from model.router import recalibrate_suggestion
from paidan.cli import app
from tests.conftest import TINY_TICKETS, three_versions, without_progress, write_tiny_csv
from training.train import train
from training.validate import TrainingDataError

runner = CliRunner()


def cli_train(data, out, *options: str):
    """``paidan train DATA --out OUT --min-examples 3 OPTIONS…`` (the tiny corpus has 4-row labels)."""
    return runner.invoke(
        app, ["train", str(data), "--out", str(out), "--min-examples", "3", *options]
    )


def test_a_file_with_only_categories_trains_only_the_category_head(
    tmp_path, tiny_config, monkeypatch
):
    from model.pipeline import LatentView

    def not_needed(*args, **kwargs):
        raise AssertionError("the latent view was fitted, but only a department head reads it")

    monkeypatch.setattr(LatentView, "fit", not_needed)
    path = tmp_path / "cats.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["内容", "类别"])
        for _, text, _, cat in TINY_TICKETS:
            w.writerow([text, cat])
    from model.tickets import ColumnMap

    result = train([path], tmp_path / "m", ColumnMap(text="内容", category="类别"), tiny_config)
    assert set(result.router.heads) == {"category"}
    assert result.router.latent is None
    [pred] = result.router.predict(["老板拖欠工资"])
    assert pred.department is None and pred.category is not None


def test_cv_metrics_and_thresholds_are_stored(tiny_model_dir):
    meta = read_metadata(tiny_model_dir)
    for head in ("department", "category"):
        m = meta["cv_metrics"][head]
        assert 0 <= m["macro_f1"] <= 1 and m["n"] == 18 and m["folds"] == 3
        assert meta["heads"][head]["threshold"] == m["auto"]["threshold"]
        # The threshold is chosen so that held-out auto rows reach the target, unless none can.
        assert m["auto"]["threshold"] == 1.0 or m["auto"]["precision"] >= 0.95


def test_a_head_that_dispatches_nothing_has_no_auto_precision(tmp_path, tiny_csv):
    # No held-out row of the tiny corpus reaches 95 % precision: threshold 1.0, coverage 0. Its
    # auto precision was shown as 1.000 by train, evaluate, metadata.json and report.md, and
    # averaged as a perfect fold by the benchmarks, for a head that never dispatches anything.
    out = tmp_path / "model"
    r = cli_train(tiny_csv, out)
    assert r.exit_code == 0, r.output
    meta = read_metadata(out)
    for head in ("department", "category"):
        auto = meta["cv_metrics"][head]["auto"]
        assert auto == {"threshold": 1.0, "precision": None, "coverage": 0.0}
        row = next(line for line in r.output.splitlines() if line.startswith(f"│ {head} "))
        assert [c.strip() for c in row.split("│")[-4:-1]] == ["1.000", "–", "0.000"]
        assert (
            f"{head} head: no ticket reaches the auto threshold 1.000, so every ticket goes to a "
            "person and auto precision is undefined (–)"
        ) in " ".join(r.output.split())

    report = tmp_path / "report.json"
    r = runner.invoke(app, ["evaluate", str(out), str(tiny_csv), "--report", str(report)])
    assert r.exit_code == 0, r.output
    data = json.loads(report.read_text(encoding="utf-8"))
    md = report.with_suffix(".md").read_text(encoding="utf-8")
    for head in ("department", "category"):
        assert data[head]["auto"] == {"threshold": 1.0, "precision": None, "coverage": 0.0}
        row = next(line for line in r.output.splitlines() if line.startswith(f"│ {head} "))
        assert [c.strip() for c in row.split("│")[-3:-1]] == ["–", "0.000"]
        note = f"{head} head: no ticket reaches the auto threshold 1.000"
        assert note in " ".join(r.output.split()) and f"**Warning:** {note}" in md
        assert "| 1.000 | – | 0.000 |" in next(
            line for line in md.splitlines() if line.startswith(f"| {head} |")
        )


def test_cli_train_evaluate_predict(tmp_path, tiny_csv):
    out = tmp_path / "model"
    r = runner.invoke(app, ["train", str(tiny_csv), "--out", str(out), "--min-examples", "3"])
    assert r.exit_code == 0, r.output
    assert "written to" in r.output and (out / "metadata.json").is_file()
    assert "category head shifts its label prior by alpha" in r.output

    again = runner.invoke(app, ["train", str(tiny_csv), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    (out / "metadata.json").chmod(0o600)  # mark the earlier model, to see it replaced
    (out / "metadata.json").write_text(
        json.dumps({**read_metadata(out), "created": "earlier"}), encoding="utf-8"
    )
    again = cli_train(tiny_csv, out, "--force")  # an earlier model directory: replaced
    assert again.exit_code == 0, again.output
    assert read_metadata(out)["created"] != "earlier"

    report = tmp_path / "report.json"
    r = runner.invoke(app, ["evaluate", str(out), str(tiny_csv), "--report", str(report)])
    assert r.exit_code == 0, r.output
    data = json.loads(report.read_text())
    assert data["n"] == len(TINY_TICKETS)
    for head in ("department", "category"):
        h = data[head]
        assert {
            "accuracy",
            "macro_f1",
            "weighted_f1",
            "top3_accuracy",
            "auto",
            "per_class",
            "confusion",
        } <= set(h)
        assert set(h["auto"]) == {"threshold", "precision", "coverage"}
        assert sum(map(sum, h["confusion"]["matrix"])) == len(TINY_TICKETS)
    md = report.with_suffix(".md").read_text()
    assert "macro-F1" in md and "report.confusion-department.png" in md
    assert (tmp_path / "report.reliability.png").stat().st_size > 1000

    r = runner.invoke(
        app, ["predict", str(out), "烧烤店油烟很大，晚上十二点还在营业", "--title", "油烟扰民"]
    )
    assert r.exit_code == 0, r.output
    suggestion = json.loads(r.stdout)
    assert suggestion["department"]["label"] == "执法"
    assert suggestion["model_version"] == read_metadata(out)["version"]


def test_cli_trains_and_evaluates_a_table_partitioned_by_department(tmp_path):
    # A data platform's export partitioned by department (Spark's partitionBy("承办单位"): the
    # label is in each directory's name, not in its Parquet files). It was trained on as a
    # history without departments: a category-only model.
    import pandas as pd

    data = tmp_path / "export"
    for i, (title, text, dept, cat) in enumerate(TINY_TICKETS, 1):
        part = data / f"承办单位={dept}" / f"part-{i:03d}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([{"id": f"T{i}", "title": title, "text": text, "category": cat}]).to_parquet(
            part
        )
    r = cli_train(data, tmp_path / "model", "--department-col", "承办单位")
    assert r.exit_code == 0, r.output
    meta = read_metadata(tmp_path / "model")
    assert meta["cv_metrics"]["department"]["n"] == len(TINY_TICKETS)
    assert sorted(meta["heads"]["department"]["labels"]) == ["人社", "住建", "执法"]
    report = tmp_path / "report.json"
    options = ["--report", str(report), "--department-col", "承办单位"]
    r = runner.invoke(app, ["evaluate", str(tmp_path / "model"), str(data), *options])
    assert r.exit_code == 0, r.output
    assert json.loads(report.read_text())["department"]["n"] == len(TINY_TICKETS)


def test_cli_trains_and_evaluates_a_json_array_with_the_column_options(tmp_path):
    # A .json file holding a JSON array (json.dump(list_of_dicts), most exports) was refused:
    # "holds a JSON array; paidan reads JSON Lines ... (convert it with: jq -c '.[]' ...)".
    rows = [
        {"工单号": i, "标题": title, "诉求内容": text, "承办单位": [dept, "街道办"], "类别": cat}
        for i, (title, text, dept, cat) in enumerate(TINY_TICKETS, 1)
    ]
    data = tmp_path / "export.json"
    data.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    cols = ["--text-col", "诉求内容", "--id-col", "工单号", "--department-col", "承办单位"]
    cols += ["--category-col", "类别"]
    r = cli_train(data, tmp_path / "model", *cols)
    assert r.exit_code == 0, r.output
    meta = read_metadata(tmp_path / "model")
    assert meta["cv_metrics"]["department"]["n"] == len(TINY_TICKETS)
    assert sorted(meta["heads"]["department"]["labels"]) == ["人社", "住建", "执法"]
    report = tmp_path / "report.json"
    r = runner.invoke(
        app, ["evaluate", str(tmp_path / "model"), str(data), "--report", str(report), *cols]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(report.read_text())["n"] == len(TINY_TICKETS)
    # A broken array is one line naming where, no traceback.
    data.write_text(json.dumps(rows, ensure_ascii=False)[:-40], encoding="utf-8")
    r = cli_train(data, tmp_path / "model2", *cols)
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "the JSON array is cut short: the file ends inside element 18" in r.output


def test_cli_bad_input_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("标题,内容\n欠薪,拖欠工资\n", encoding="utf-8")
    r = runner.invoke(app, ["train", str(bad), "--out", str(tmp_path / "m")])
    assert r.exit_code == 2
    assert "no column 'text'" in r.output and "'内容'" in r.output
    assert "Traceback" not in r.output


def test_cli_delimiter_reaches_every_reader_of_ticket_files(tmp_path, tiny_model_dir, monkeypatch):
    import training.train

    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tmp_path / "models"))
    monkeypatch.setenv("PAIDAN_DATA_DIR", str(tmp_path / "var"))
    data = tmp_path / "semi.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["id", "title", "text", "department", "category", "time"])
        for i, (title, text, dept, cat) in enumerate(TINY_TICKETS, 1):
            w.writerow([f"T{i:03d}", title, f"{text}, 请处理", dept, cat, f"2025-01-{i:02d}"])
    read: dict[str, int] = {}

    def stop_before_fitting(raw, *args, extra_texts=(), **kwargs):
        read.update(rows=len(raw), unlabelled=len(extra_texts))
        raise TrainingDataError("read; not fitted in this test")

    monkeypatch.setattr(training.train, "train_frame", stop_before_fitting)
    commands = {
        "train": ["train", str(data), "--unlabelled", str(data), "--out", str(tmp_path / "m")],
        "evaluate": ["evaluate", str(tiny_model_dir), str(data)],
        "label": [
            "label",
            str(data),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "l.csv"),
        ],
        "retrain": ["retrain", "--history", str(data), "--history-since", "2030-01-01"],
        "freeze-eval": ["models", "freeze-eval", str(data)],
    }
    for name, args in commands.items():
        r = runner.invoke(app, args)
        out = " ".join(r.output.split())
        assert r.exit_code == 2, (name, r.output)
        assert "the header looks ;-separated; pass --delimiter ';'" in out, (name, out)
        r = runner.invoke(app, [*args, "--delimiter", ";"])
        out = " ".join(r.output.split())
        assert "no column" not in out and "malformed" not in out, (name, out)
        if name == "train":
            assert "read; not fitted" in out and read == {"rows": 18, "unlabelled": 18}
        elif name == "retrain":
            assert "no ticket is from 2030-01-01 00:00:00 UTC on" in out
        else:
            assert r.exit_code == 0, (name, out)
    bad = runner.invoke(
        app, ["label", str(data), "--out", str(tmp_path / "x.csv"), "--delimiter", ";;"]
    )
    assert bad.exit_code == 2 and "cannot separate CSV fields" in bad.output


def test_cli_a_header_without_rows_is_one_clear_line(tmp_path, tiny_model_dir):
    # pandas 3 read the empty columns as strings, and has_text's "&" on them was a TypeError.
    empty = tmp_path / "empty.csv"
    empty.write_text("id,title,text,department,category\n", encoding="utf-8")
    for args in (
        ["train", str(empty), "--out", str(tmp_path / "m")],
        ["evaluate", str(tiny_model_dir), str(empty)],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert f"{empty}: no rows to read (a header but no tickets)" in " ".join(r.output.split())
        assert "Traceback" not in r.output


def test_cli_a_file_in_a_directory_that_cannot_be_entered_is_one_line(
    tmp_path, tiny_model_dir, monkeypatch
):
    # `paidan train /data/locked/a.csv` with /data/locked not enterable by the user: a
    # PermissionError traceback (the tests run as root, whom chmod does not stop: the error is made).
    import os

    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tmp_path / "models"))
    monkeypatch.setenv("PAIDAN_DATA_DIR", str(tmp_path / "var"))
    locked = tmp_path / "locked"
    locked.mkdir()
    data = write_tiny_csv(locked / "a.csv")
    real_stat, real_lstat = os.stat, os.lstat

    def denied(real):
        def stat(path, *args, **kwargs):
            if not isinstance(path, int) and Path(os.fsdecode(path)).parent == locked:
                raise PermissionError(13, "Permission denied", os.fsdecode(path))
            return real(path, *args, **kwargs)

        return stat

    monkeypatch.setattr(os, "stat", denied(real_stat))
    monkeypatch.setattr(os, "lstat", denied(real_lstat))
    commands = {
        "train": ["train", str(data), "--out", str(tmp_path / "m")],
        "evaluate": ["evaluate", str(tiny_model_dir), str(data)],
        "label": [
            "label",
            str(data),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "l.csv"),
        ],
        "freeze-eval": ["models", "freeze-eval", str(data)],
    }
    for name, args in commands.items():
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (name, r.output)
        assert "Traceback" not in r.output
        assert without_progress(r.output).splitlines() == [
            f"error: {data}: it cannot be read (Permission denied), as the directory {locked} it "
            "is in cannot be entered; make that directory readable"
        ], (name, r.output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["   "], "blank text"),
        ([""], "TEXT is empty"),
        (["欠薪" * 10_001], "over the limit of 20,000"),
        (["拖欠工资", "--title", "欠" * 201], "title too long: 201 characters"),
        (["拖欠工资", "--top-k", "0"], "--top-k"),
        (["拖欠工资", "--top-k", "21"], "--top-k"),
    ],
)
def test_cli_predict_refuses_what_the_http_api_refuses(tiny_model_dir, args, message):
    r = runner.invoke(app, ["predict", str(tiny_model_dir), *args])
    assert r.exit_code == 2
    assert message in r.output and '"department"' not in r.output


def test_cli_predict_prints_the_http_answer_with_its_overall_decision(tiny_model_dir):
    # predict printed each head's decision but not the overall one (a property model_dump()
    # left out), which POST /v1/route answers and label writes.
    from model.artifact import load_router
    from serve.schemas import RouteResponse

    text = "烧烤店油烟很大，晚上十二点还在营业"
    r = runner.invoke(app, ["predict", str(tiny_model_dir), text])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    assert list(printed) == [k for k in RouteResponse.model_fields if k not in {"id", "elapsed_ms"}]
    router, _ = load_router(tiny_model_dir, serving=True)
    result = router.predict([("", text)])[0]
    assert printed["decision"] == result.decision
    # The ticket as read, as the API answers a request that asks for it.
    assert printed["masked"] == {
        "title": None,
        "text": router.predict([("", text)], masked=True)[0].masked.text,
    }  # type: ignore[union-attr]
    assert {printed["department"]["decision"], printed["category"]["decision"]} == {
        result.department.decision,  # type: ignore[union-attr]
        result.category.decision,  # type: ignore[union-attr]
    }


def test_cli_predict_reads_the_text_piped_to_it_after_a_dash(tiny_model_dir):
    # `-` was routed as the text "-" (a suggestion of nothing, for review): a ticket of several
    # lines, or one from another program, could only be given by shell quoting.
    text = "烧烤店油烟很大，\n晚上十二点还在营业"
    as_argument = runner.invoke(app, ["predict", str(tiny_model_dir), text])
    assert as_argument.exit_code == 0, as_argument.output
    for piped in [f"{text}\n".encode(), f"\ufeff{text}\r\n".encode(), text.encode("gb18030")]:
        r = runner.invoke(app, ["predict", str(tiny_model_dir), "-"], input=piped)
        assert r.exit_code == 0, (piped, r.output)
        assert json.loads(r.stdout) == json.loads(as_argument.stdout), piped


def test_cli_predict_reads_big5_piped_to_it_and_says_how_to_read_it_as_gbk(tiny_model_dir, caplog):
    # Read as GB18030, it was routed as mojibake; said as a file is, its advice named a file
    # 'standard input' to convert.
    text = "樓下燒烤店每天營業到凌晨兩點，油煙和噪音嚴重影響休息"
    as_argument = runner.invoke(app, ["predict", str(tiny_model_dir), text])
    with caplog.at_level("WARNING", logger="model.tickets"):
        r = runner.invoke(app, ["predict", str(tiny_model_dir), "-"], input=text.encode("big5"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == json.loads(as_argument.stdout)
    said = [m.getMessage() for m in caplog.records if "Big5" in m.getMessage()]
    assert said == [
        "standard input: read as Big5 (traditional Chinese): its text reads as Chinese in Big5 "
        "and not in GB18030 (GBK); if it is GBK after all, pipe it through iconv -f GB18030 -t "
        "UTF-8"
    ]


@pytest.mark.parametrize(
    ("piped", "message"),
    [
        (b"", "error: empty text: standard input is empty"),
        (b" \n", "error: blank text"),
        ("欠薪".encode("utf-16"), "error: standard input is UTF-16 text, which is not read"),
        (b"\x80\x80\xff\xff", "error: standard input: cannot tell the text encoding"),
        ("欠" * 101, "error: text too long: 101 characters, over the limit of 100"),
        ("欠" * 200, "error: standard input: the text is over the limit of 100 characters"),
    ],
)
def test_cli_predict_refuses_bad_piped_text_in_one_line(
    tiny_model_dir, monkeypatch, piped, message
):
    monkeypatch.setenv("PAIDAN_MAX_TEXT_CHARS", "100")  # its least
    r = runner.invoke(app, ["predict", str(tiny_model_dir), "-"], input=piped)
    assert r.exit_code == 2, r.output
    lines = without_progress(r.output).splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.output
    assert '"department"' not in r.output


def test_cli_predict_takes_current_and_says_how_when_the_model_is_left_out(
    tiny_model_dir, tmp_path, monkeypatch
):
    # `paidan predict current "…"` said "'current' does not exist", and `paidan predict "…"`
    # (no model) said only "Missing argument 'text'", though the text was given.
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(root))
    text = "烧烤店油烟很大，晚上十二点还在营业"
    by_name = runner.invoke(app, ["predict", "v1", text])
    by_current = runner.invoke(app, ["predict", "current", text])
    assert by_current.exit_code == 0, by_current.output
    assert json.loads(by_current.stdout) == json.loads(by_name.stdout)

    r = runner.invoke(app, ["predict", text])
    assert r.exit_code == 2
    assert without_progress(r.output).splitlines() == [
        "error: missing argument TEXT: paidan predict MODEL TEXT takes the model first, and "
        f"'{text}' was read as the model; to route it with the current model under the model "
        f"root: paidan predict current '{text}'"
    ]
    assert '"department"' not in r.output


def test_cli_predict_quotes_a_text_read_as_the_model_masked(tmp_path, monkeypatch):
    # The error (to a terminal, a cron job's mail or a script's log) repeated the complaint as
    # typed: the caller's phone and ID number with it.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tmp_path / "models"))
    text = "补贴没发 联系电话１３８１２３４５６７８ 身份证43010219900101123X"
    r = runner.invoke(app, ["predict", text])
    assert r.exit_code == 2
    shown = "补贴没发 联系电话[手机号] 身份证[身份证号]"
    assert f"and '{shown}' was read as the model" in r.output, r.output
    assert f"paidan predict current '{shown}'" in r.output, r.output
    for number in ("１３８", "13812345678", "430102"):
        assert number not in r.output, number


@pytest.mark.parametrize("name", ["dir", "v1", "current"])
def test_cli_predict_with_a_model_and_no_text_asks_for_the_text(
    tiny_model_dir, tmp_path, monkeypatch, name
):
    # `paidan predict models/v1` (the text forgotten) said the model had been read as the model
    # and advised `paidan predict current models/v1`, routing the model's path as a complaint.
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(root))
    model = "models/v1" if name == "dir" else name
    r = runner.invoke(app, ["predict", model])
    assert r.exit_code == 2
    assert without_progress(r.output).splitlines() == [
        f"error: missing argument TEXT: the complaint to route with {model}: paidan predict "
        f"{model} TEXT, or paidan predict {model} - to read it from standard input"
    ]


def test_cli_predict_with_a_bad_setting_is_one_line_naming_it(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("PAIDAN_MAX_TEXT_CHARS", "abc")
    r = runner.invoke(app, ["predict", str(tiny_model_dir), "拖欠工资"])
    assert r.exit_code == 2, r.output
    assert "PAIDAN_MAX_TEXT_CHARS" in r.output and "Traceback" not in r.output


def test_cli_outputs_that_cannot_be_written_are_refused_before_the_work(
    tmp_path, tiny_csv, tiny_model_dir, monkeypatch
):
    # Each was a traceback (IsADirectoryError, NotADirectoryError, FileNotFoundError), most after
    # the training, scoring or labelling it wasted.
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tmp_path / "models"))
    a_dir = tmp_path / "a.json"
    a_dir.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    under_file = a_file / "sub" / "out.json"  # no directory can be made under a file
    model = str(tiny_model_dir)
    # A version to promote: an unknown one is refused as such first (c2f9882), before its report.
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "v1")
    cases = [
        (["evaluate", model, str(tiny_csv), "--report", str(a_dir)], "is a directory"),
        (["evaluate", model, str(tiny_csv), "--report", str(under_file)], "cannot be written"),
        (["drift", "--since", "2026-01-01", "--model", model, "--out", str(a_dir)], "directory"),
        (
            ["drift", "--since", "2026-01-01", "--model", model, "--out", str(tmp_path / "d.png")],
            "names the plot",
        ),
        (
            [
                "label",
                str(tiny_csv),
                "--model",
                model,
                "--out",
                str(under_file.with_suffix(".csv")),
            ],
            "cannot be written",
        ),
        (["retrain", "--history", str(tiny_csv), "--report", str(a_file)], "is a file"),
        (["models", "promote", "v1", "--report", str(a_file)], "is a file"),
        (["train", str(tiny_csv), "--out", str(a_file)], "is a file, not a directory"),
        (["train", str(tiny_csv), "--out", str(under_file)], "cannot be written"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
    # Nothing was trained: the copied v1 is the only model.
    assert list(tmp_path.glob("**/metadata.json")) == [tmp_path / "models" / "v1" / "metadata.json"]


def test_cli_train_states_the_folds_each_head_had(tmp_path, tiny_csv):
    # Category 环境 has 4 rows, so that head has 4 folds, not the configured 5; departments 6 each.
    r = cli_train(tiny_csv, tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert (
        "cross-validated (stratified folds, seed 42) on 18 of 18 rows: department 5 folds, "
        "category 4 folds (its rarest label, '环境', has 4 rows)\n"
    ) in r.output
    assert "5 stratified folds" not in r.output
    meta = read_metadata(tmp_path / "m")
    assert {h: m["folds"] for h, m in meta["cv_metrics"].items()} == {
        "category": 4,
        "department": 5,
    }


def test_cli_trains_when_a_rare_label_leaves_too_few_rows_for_other(tmp_path, tiny_csv):
    # One row of a label never seen again: merged into 其他, which then has one row. Training used
    # to stop in cross-validation with scikit-learn's "less than 2 examples" traceback.
    with open(tiny_csv, "a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow(["T999", "信访件", "反映问题一直没人处理", "信访", "劳动保障"])
    r = cli_train(tiny_csv, tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert "'信访' has only 1 row;" in r.output and "'其他' has only 1 row," in r.output
    router, _ = load_router(tmp_path / "m")
    assert "其他" not in router.heads["department"].labels
    assert "信访" not in router.heads["department"].labels


def test_cli_names_a_label_column_left_unmapped_with_the_files_columns(tmp_path):
    # A city's export with Chinese names: without --category-col the model had no category head
    # and nothing said so; without both mappings the error did not list the file's columns.
    data = tmp_path / "export.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["工单编号", "标题", "诉求内容", "承办单位", "问题分类"])
        w.writerows([f"T{i}", *row] for i, row in enumerate(TINY_TICKETS))
    mapped = ["--text-col", "诉求内容", "--title-col", "标题", "--id-col", "工单编号"]
    r = cli_train(data, tmp_path / "m", *mapped, "--department-col", "承办单位")
    assert r.exit_code == 0, r.output
    assert (
        "no column 'category' in export.csv, so the model has no category head; it has columns "
        "'工单编号', '标题', '诉求内容', '承办单位', '问题分类' (map yours with --category-col; "
        "'问题分类' looks like the category: --category-col 问题分类)"
    ) in " ".join(r.output.split())
    r = cli_train(data, tmp_path / "m2", *mapped)
    assert r.exit_code == 2
    assert (
        "no row has a department or a category label; export.csv has columns '工单编号', '标题', "
        "'诉求内容', '承办单位', '问题分类'; map the label columns with --department-col / "
        "--category-col; '承办单位' looks like the department: --department-col 承办单位; "
        "'问题分类' looks like the category: --category-col 问题分类"
    ) in " ".join(r.output.split())


def test_cli_names_a_title_column_left_unmapped(tmp_path):
    # --title-col forgotten on an export with 诉求标题: the model trained without titles, silently.
    data = tmp_path / "export.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["工单编号", "诉求标题", "诉求内容", "承办单位", "问题分类"])
        w.writerows([f"T{i}", *row] for i, row in enumerate(TINY_TICKETS))
    mapped = [
        "--text-col",
        "诉求内容",
        "--department-col",
        "承办单位",
        "--category-col",
        "问题分类",
    ]
    r = cli_train(data, tmp_path / "m", *mapped)
    assert r.exit_code == 0, r.output
    assert (
        "export.csv has no column 'title' for the ticket title, so its tickets are trained "
        "without titles; it has '诉求标题': if it is the title, give --title-col 诉求标题"
    ) in " ".join(r.output.split())
    r = cli_train(data, tmp_path / "m2", *mapped, "--title-col", "诉求标题")
    assert r.exit_code == 0, r.output
    assert "for the ticket title" not in r.output


def test_cli_names_an_id_column_left_unmapped_as_retrain_does(tmp_path):
    # --id-col forgotten on two monthly exports that overlap, ids in 工单编号: each ticket was
    # numbered by row, so the overlap trained twice and similar tickets showed row numbers, and
    # nothing said so (retrain did).
    rows = [[f"T{i}", *row] for i, row in enumerate(TINY_TICKETS)]
    for name, part in (("jan.csv", rows[:12]), ("feb.csv", rows[6:])):
        with open(tmp_path / name, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["工单编号", "title", "text", "department", "category"])
            w.writerows(part)
    data = [str(tmp_path / "jan.csv"), str(tmp_path / "feb.csv")]
    args = ["train", *data, "--min-examples", "3"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert (
        "jan.csv and 1 other file have no column 'id' for the ticket id, so a ticket in two "
        "exports that overlap trains twice, and the similar tickets the dispatcher page shows "
        "are numbered by row, not by their ids; jan.csv has '工单编号': if it is the id, give "
        "--id-col 工单编号"
    ) in " ".join(r.output.split())
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "m2"), "--id-col", "工单编号"])
    assert r.exit_code == 0, r.output
    assert "for the ticket id" not in r.output
    assert "dropped 6 rows that repeat an earlier row" in " ".join(r.output.split())


def test_cli_one_department_for_every_row_trains_the_category_head_alone(tmp_path, tiny_csv):
    # A bureau's own tickets (every one 人社, several categories) were refused whole after the
    # features were built, with no way to leave the department head out but editing the file.
    with open(tiny_csv, encoding="utf-8", newline="") as f:
        header, *rows = csv.reader(f)
    one = tmp_path / "one.csv"
    with open(one, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *([*r[:3], "人社", *r[4:]] for r in rows)])
    r = cli_train(one, tmp_path / "m")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert (
        "every row with a department label has the same one, '人社', so the model has no "
        "department head" in text
    )
    router, meta = load_router(tmp_path / "m")
    assert list(router.heads) == ["category"]
    assert meta["training_data"]["validation"]["single_label"] == {"department": "人社"}
    # With one category too, no head is left: one clear line, before any featurising.
    same = tmp_path / "same.csv"
    with open(same, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *([*r[:3], "人社", "劳动保障"] for r in rows)])
    r = cli_train(same, tmp_path / "m2")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert (
        "every row with a department label has the same one, '人社', and so has every row "
        "with a category label: a model needs a head with two or more labels"
        in " ".join(r.output.split())
    )


@pytest.mark.parametrize(
    "option", [["--seed", "-1"], ["--target-precision", "1.5"], ["--target-precision", "0.2"]]
)
def test_cli_train_refuses_a_seed_or_target_precision_out_of_range(tmp_path, tiny_csv, option):
    # A negative seed stopped in scikit-learn's parameter check with a traceback; a target
    # precision of 1.5 trained a model that could never dispatch anything.
    r = runner.invoke(app, ["train", str(tiny_csv), "--out", str(tmp_path / "m"), *option])
    assert r.exit_code == 2 and option[0] in r.output
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("n", ["1", "2"])
def test_cli_refuses_fewer_than_three_min_examples(tmp_path, tiny_csv, n):
    # With two rows, a label has one in each training fold, and the calibration inside cannot
    # split one row in two: training stopped there with scikit-learn's traceback.
    r = runner.invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "m"), "--min-examples", n]
    )
    assert r.exit_code == 2
    assert "--min-examples" in r.output and not (tmp_path / "m").exists()


def test_a_label_with_two_rows_is_a_clear_error_in_the_python_api(tiny_config):
    from model.config import ConfigError
    from training.train import cross_validate_heads

    # A config that keeps such labels is refused where it is built, before any data are read;
    with pytest.raises(ConfigError, match=r"^min_examples=2 must be at least 3$"):
        dataclasses.replace(tiny_config, min_examples=2)
    # cross-validation itself still names the label.
    X = sp.csr_matrix(np.random.default_rng(0).random((14, 8)))
    y = np.array(["人社"] * 6 + ["执法"] * 6 + ["信访"] * 2)
    with pytest.raises(TrainingDataError, match=r"'信访' has 2 row\(s\).*--min-examples 3"):
        cross_validate_heads([("department", X, y)], tiny_config, n_jobs=None, head="department")


def test_an_occupied_out_dir_is_refused_before_any_training(
    tmp_path, tiny_csv, tiny_model_dir, monkeypatch
):
    import training.train as training_train

    def not_reached(*args, **kwargs):
        raise AssertionError("trained, then refused the directory")

    monkeypatch.setattr(training_train, "fit_router", not_reached)
    earlier = shutil.copytree(tiny_model_dir, tmp_path / "earlier")
    r = cli_train(tiny_csv, earlier)
    assert r.exit_code == 2 and "already exists and is not empty" in r.output
    assert "--force" in r.output  # an earlier model directory: --force replaces it
    assert sorted(p.name for p in earlier.iterdir()) == sorted(
        p.name for p in tiny_model_dir.iterdir()
    )
    # Not a model directory: --force deleted it whole after the training, and was advised.
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    for force in ([], ["--force"]):
        r = cli_train(tiny_csv, out, *force)
        assert r.exit_code == 2, r.output
        message = " ".join(r.output.split())
        assert f"--out {out} already exists and is not a model directory" in message
        assert "it holds notes.txt, which no model directory holds" in message
        assert "--force" not in message
        assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"


def _tree(path: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(path)): None if p.is_dir() else p.read_bytes() for p in path.rglob("*")
    }


def test_cli_train_refuses_an_out_that_is_the_model_root_a_version_or_an_input(
    tmp_path, tiny_csv, tiny_model_dir, monkeypatch
):
    # With --force (which the refusal advised), `--out models` deleted the model root with every
    # version and the registry, `--out history` the training data it had just read, `--out
    # models/v1` replaced a registered, served version; an empty `models/scores` became a version.
    import training.train as training_train

    def not_reached(*args, **kwargs):
        raise AssertionError("trained, then refused the directory")

    monkeypatch.setattr(training_train, "fit_router", not_reached)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    (root / "current").write_text("v1\n", encoding="utf-8")
    (root / "registry.json").write_text("{}", encoding="utf-8")
    (root / "scores").mkdir()  # empty, as are reports/ and eval/ until first used
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(root))
    (tmp_path / "history").mkdir()
    shutil.copyfile(tiny_csv, tmp_path / "history" / "2026-11.csv")
    (tmp_path / "dict").mkdir()
    (tmp_path / "dict" / "words.txt").write_text("油烟扰民\n", encoding="utf-8")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "feedback.db").write_bytes(b"SQLite format 3\x00")
    data = "history/2026-11.csv"
    in_history = "; name a directory outside it (a model is kept apart from the data it reads)"
    cases = [
        ([data], "models", f"is the model root {root} (PAIDAN_MODEL_ROOT), which holds every"),
        ([data], ".", f"holds the model root {root} (PAIDAN_MODEL_ROOT)"),
        ([data], str(tmp_path), f"holds the model root {root}"),
        ([data], "models/v1", f"is the registered version v1 under the model root {root}"),
        ([data], "models/v1/new", "is inside the registered version v1 under the model root"),
        ([data], "models/scores", f"is the registry's scores under the model root {root}"),
        ([data], "models/reports/m", "is inside the registry's reports under the model root"),
        (["history"], "history", f"is the input history{in_history}"),
        (["history"], "history/m", f"is inside the input history{in_history}"),
        ([data], "history", f"holds the input {data}; replacing it would delete the input"),
        (
            [data],
            data,
            f"is the input {data}; name a new directory for the model (replacing it would "
            "delete the input)",
        ),
        (
            [data, "--userdict", "dict/words.txt"],
            "dict",
            "holds the input dict/words.txt; replacing it would delete the input",
        ),
        (
            [data, "--unlabelled", "history"],
            "history",
            f"is the input history{in_history}",
        ),
        ([data], "var", "already exists and is not a model directory (it holds feedback.db,"),
    ]
    before = _tree(tmp_path)
    for args, out, message in cases:
        for force in ([], ["--force"]):
            r = runner.invoke(app, ["train", *args, "--out", out, "--min-examples", "3", *force])
            assert r.exit_code == 2, (out, force, r.output)
            text = " ".join(r.output.split())
            assert f"--out {out} {message}" in text, (out, text)
            assert "--force" not in text and "Traceback" not in text, (out, text)
            assert _tree(tmp_path) == before, (out, force)
    # A new directory under the root is still a model directory to write.
    r = runner.invoke(app, ["train", data, "--out", "models/v2", "--min-examples", "3"])
    assert isinstance(r.exception, AssertionError) and "trained" in str(r.exception)


def test_cli_train_refuses_an_out_in_another_model_root(
    tmp_path, tiny_csv, tiny_model_dir, monkeypatch
):
    # With PAIDAN_MODEL_ROOT=models, `--out root2/v1 --force` replaced root2's current version:
    # only the versions of PAIDAN_MODEL_ROOT were guarded.
    import training.train as training_train

    def not_reached(*args, **kwargs):
        raise AssertionError("trained, then refused the directory")

    monkeypatch.setattr(training_train, "fit_router", not_reached)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tmp_path / "models"))
    root2 = (tmp_path / "root2").resolve()
    shutil.copytree(tiny_model_dir, root2 / "v1")
    (root2 / "current").write_text("v1\n", encoding="utf-8")
    # A root only ever served from holds the servers' leases, and no pointer.
    root3 = (tmp_path / "root3").resolve()
    shutil.copytree(tiny_model_dir, root3 / "v1")
    (root3 / ".leases").mkdir()
    (root3 / ".leases" / "v1").touch()
    advice = "train so, or name a directory outside it"
    cases = [
        ("root2/v1", f"is the version v1 of the model root {root2} (it holds current)"),
        ("root2/v9", f"is in the model root {root2} (it holds current)"),
        ("root2/v1/x", f"is inside {root2 / 'v1'} in the model root {root2}"),
        ("root2", f"is the model root {root2} (it holds current)"),
        ("root3/v1", f"is the version v1 of the model root {root3} (it holds .leases)"),
    ]
    before = _tree(tmp_path)
    for out, message in cases:
        for force in ([], ["--force"]):
            r = runner.invoke(
                app, ["train", "tiny.csv", "--out", out, "--min-examples", "3", *force]
            )
            assert r.exit_code == 2, (out, force, r.output)
            text = " ".join(r.output.split())
            assert f"--out {out} {message}" in text, (out, text)
            assert f"not PAIDAN_MODEL_ROOT ({tmp_path / 'models'})" in text, text
            assert text.endswith(advice), text
            assert _tree(tmp_path) == before, (out, force)
    # A directory of models written with --out is no registry: --force still replaces one of them,
    # as does a directory called current among them (a model, not the pointer).
    shutil.copytree(tiny_model_dir, tmp_path / "plain" / "v1")
    shutil.copytree(tiny_model_dir, tmp_path / "plain" / "current")
    r = runner.invoke(
        app, ["train", "tiny.csv", "--out", "plain/v1", "--min-examples", "3", "--force"]
    )
    assert isinstance(r.exception, AssertionError) and "trained" in str(r.exception)


def test_evaluate_omits_heads_whose_label_is_absent(tmp_path, tiny_model_dir):
    path = tmp_path / "cats.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        for _, text, _, cat in TINY_TICKETS:
            w.writerow([text, cat])
    from training.evaluate import evaluate

    report = evaluate(tiny_model_dir, [path])
    assert "category" in report and "department" not in report


def test_cli_evaluate_says_macro_f1_is_undefined_when_no_label_is_one_the_model_knows(
    tmp_path, tiny_model_dir
):
    # Tickets of another city's departments: macro-F1 read 0.000, in the table, the Markdown
    # report and the JSON, where no class of the model's is in the data to average over.
    path = tmp_path / "other.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "department", "category"])
        w.writerows([text, f"外市{dept}", cat] for _, text, dept, cat in TINY_TICKETS)
    report = tmp_path / "r.json"
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(path), "--report", str(report)])
    assert r.exit_code == 0, r.output
    got = json.loads(report.read_text(encoding="utf-8"))
    dept, cat = got["department"], got["category"]
    assert dept["macro_f1"] is None and dept["weighted_f1"] is None
    assert dept["f1_undefined"] == "no row's true label is one the model knows"
    assert isinstance(cat["macro_f1"], float) and "f1_undefined" not in cat
    out = " ".join(r.output.split())
    assert "│ department │ undefined │" in r.output
    assert (
        "department head: macro- and weighted-F1 are undefined: no row's true label is one the "
        "model knows" in out
    )
    md = report.with_suffix(".md").read_text(encoding="utf-8")
    assert "| department | 0.000 | undefined | undefined |" in md


def test_cli_evaluate_says_which_rows_have_no_label_and_are_not_scored(tmp_path, tiny_model_dir):
    # A department merged over several rows in a workbook (read in its first row alone), or left
    # empty: those rows were left out of the department's figures without a word, under a title
    # that counts every ticket ("on 6 tickets"), where train names them.
    path = tmp_path / "test.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "department", "category"])
        for i, (_, text, dept, cat) in enumerate(TINY_TICKETS[:6]):
            w.writerow([text, "" if i in (1, 2) else dept, cat])
    report = tmp_path / "r.json"
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(path), "--report", str(report)])
    assert r.exit_code == 0, r.output
    got = json.loads(report.read_text(encoding="utf-8"))
    assert got["department"]["n"] == 4 and got["category"]["n"] == 6
    assert got["unlabelled_rows"] == {"department": 2}
    out = " ".join(r.output.split())
    assert (
        "2 rows have no department label, so the department figures are over the other 4 "
        "tickets: test.csv data row 2, test.csv data row 3"
    ) in out
    assert "no category label" not in out


def test_evaluate_reads_departments_listed_with_a_comma_as_a_joint_dispatch(
    tmp_path, tiny_model_dir
):
    # "人社、住建" was a label the model does not know, scored wrong, where training reads it as
    # a joint dispatch led by 人社 (training.validate), as "人社；住建" is read.
    from training.evaluate import evaluate

    path = tmp_path / "test.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "department"])
        for _, text, dept, _ in TINY_TICKETS:
            w.writerow([text, f"{dept}、住建" if dept == "人社" else dept])
    report = evaluate(tiny_model_dir, [path])
    assert report["department"]["unknown_labels"] == {}
    assert report["department"]["accuracy"] == evaluate(tiny_model_dir, [write_tiny_csv(
        tmp_path / "plain.csv")])["department"]["accuracy"]  # fmt: skip
    assert report["comma_listed"] == {"department": {"人社、住建": 6}}
    assert report["joint"]["joint_rows"] == 6
    from training.evaluate import report_warnings

    assert any(w.startswith("6 department cells list departments") for w in report_warnings(report))


def test_cli_evaluate_without_any_label_column_is_an_error(tmp_path, tiny_model_dir):
    # The text column mapped, the department column forgotten: an empty table and exit 0 before.
    path = tmp_path / "test.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["内容", "部门"])
        w.writerows([text, dept] for _, text, dept, _ in TINY_TICKETS)
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(path), "--text-col", "内容"])
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())
    assert "no row has a department or a category label to score the model on" in out
    assert "--department-col" in out and "Traceback" not in r.output
    # With the file's columns, and the one that looks like the department with its option.
    assert out.endswith(
        "to score the model on; test.csv has columns '内容', '部门'; map the label columns with "
        "--department-col / --category-col; '部门' looks like the department: --department-col 部门"
    )


def test_cli_evaluate_of_tickets_without_text_says_so_not_that_labels_are_missing(
    tmp_path, tiny_model_dir
):
    # Every row dropped as empty text, evaluate said "no row has a department or a category label".
    path = tmp_path / "test.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "department"])
        w.writerows(["", dept] for _, _, dept, _ in TINY_TICKETS)
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(path)])
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())
    assert "no row has any text (every text is empty; a title alone is no ticket)" in out
    assert "label" not in out and "Traceback" not in r.output


def test_cli_evaluate_skips_a_ticket_with_a_title_but_no_text(tmp_path, tiny_model_dir):
    # Scored (a title was enough), although label, predict and the API refuse such a ticket: the
    # figures counted tickets no routing path answers.
    path = tmp_path / "test.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["title", "text", "department"])
        w.writerows([title, text, dept] for title, text, dept, _ in TINY_TICKETS)
        w.writerow(["拖欠工资", "", "人社"])
        w.writerow(["油烟扰民", " ", "执法"])
    report = tmp_path / "r.json"
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(path), "--report", str(report)])
    assert r.exit_code == 0, r.output
    assert "skipped 2 rows with empty text" in r.output
    scored = json.loads(report.read_text(encoding="utf-8"))
    assert scored["n"] == len(TINY_TICKETS) and scored["skipped_empty_text"] == 2


def test_cli_evaluate_refuses_a_markdown_report_path(tmp_path, tiny_model_dir, tiny_csv):
    # The JSON was written to r.md and then overwritten by the Markdown report of the same name.
    md = tmp_path / "r.md"
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(tiny_csv), "--report", str(md)])
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())
    assert f"--report {md} names the Markdown report" in out and str(md.with_suffix(".json")) in out
    assert not md.exists()


def test_cli_evaluate_refuses_a_report_that_would_replace_an_input(
    tmp_path, tiny_model_dir, tiny_csv, monkeypatch
):
    # `--report eval.csv` read the labelled set, then replaced it with the JSON report (exit 0).
    monkeypatch.chdir(tmp_path)
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "a.csv").write_bytes(tiny_csv.read_bytes())
    (tmp_path / "r.md").write_bytes(tiny_csv.read_bytes())
    model = str(tiny_model_dir)
    replaced = "; name another file (the input would be replaced)"
    cases = [
        ([str(tiny_csv)], str(tiny_csv), f"is the input {tiny_csv}{replaced}"),
        (
            [str(tiny_csv)],
            "../" + tmp_path.name + "/" + tiny_csv.name,
            f"is the input {tiny_csv}{replaced}",
        ),
        (  # the Markdown report written beside it
            [str(tmp_path / "r.md")],
            str(tmp_path / "r.json"),
            f"would write {tmp_path / 'r.md'}, which is the input {tmp_path / 'r.md'}{replaced}",
        ),
        (  # replaces nothing: the next `paidan evaluate MODEL parts` read it as a labelled file
            [str(parts)],
            str(parts / "report.json"),
            f"is inside the input {parts}; name a file outside it (the next run would read it as "
            "input)",
        ),
    ]
    for data, report, message in cases:
        before = {p: p.read_bytes() for p in (tiny_csv, parts / "a.csv", tmp_path / "r.md")}
        r = runner.invoke(app, ["evaluate", model, *data, "--report", report])
        assert r.exit_code == 2, (report, r.output)
        out = " ".join(r.output.split())
        assert f"--report {report} {message}" in out and "Traceback" not in r.output
        assert {p: p.read_bytes() for p in before} == before
        assert sorted(p.name for p in parts.iterdir()) == ["a.csv"]


def test_drift_refuses_an_out_inside_the_model_directory(tmp_path, tiny_model_dir):
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    before = sorted(p.name for p in tiny_model_dir.iterdir())
    out_path = tiny_model_dir / "drift.json"
    args = ["drift", "--since", "2026-01-01", "--model", str(tiny_model_dir), "--out"]
    r = runner.invoke(app, [*args, str(out_path)], env=env)
    assert r.exit_code == 2, r.output
    assert (
        f"--out {out_path} is inside the input {tiny_model_dir}; name a file outside it (a model "
        "directory is not changed after training)"
    ) in " ".join(r.output.split())
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == before


def test_cli_report_paths_with_a_trailing_slash_are_refused(tmp_path, tiny_model_dir, tiny_csv):
    # Path() dropped the slash: `--report reports/` wrote a JSON file named `reports`, plus
    # reports.md and the plots, where the user meant a directory.
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    reports = str(tmp_path / "reports") + "/"
    drifts = str(tmp_path / "drifts") + "/"
    model = str(tiny_model_dir)
    cases = [
        (["evaluate", model, str(tiny_csv), "--report", reports], "--report", reports, "report"),
        (
            ["drift", "--since", "2026-01-01", "--model", model, "--out", drifts],
            "--out",
            drifts,
            "drift",
        ),
    ]
    for args, option, given, stem in cases:
        r = runner.invoke(app, args, env=env)
        assert r.exit_code == 2, r.output
        out = " ".join(r.output.split())
        assert f"{option} {given} names a directory" in out, out
        assert f"{given}{stem}.json" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.csv"]


def test_evaluate_scores_labels_merged_into_other_at_training_as_other(tmp_path, merged_model_dir):
    # The model answers 其他 for the rare departments its training merged into 其他; scored under
    # their own names, every such answer counted wrong and the warning blamed their spelling.
    from tests.conftest import RARE_TICKETS, write_tickets_csv

    model_dir, _ = merged_model_dir
    meta = read_metadata(model_dir)
    assert meta["training_data"]["validation"]["merged_into_other"]["department"] == {
        "档案馆": 2,
        "气象局": 2,
    }
    data = write_tickets_csv(tmp_path / "rare.csv", RARE_TICKETS)
    report_path = tmp_path / "r.json"
    r = runner.invoke(app, ["evaluate", str(model_dir), str(data), "--report", str(report_path)])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "does not know" not in out
    assert (
        "scored 4 department rows as '其他', as the model's training merged their rare labels "
        "into it: '档案馆' (2 rows), '气象局' (2 rows)"
    ) in out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["merged_into_other"] == {"department": {"档案馆": 2, "气象局": 2}}
    dept = report["department"]
    assert dept["unknown_labels"] == {}
    assert set(dept["per_class"]) <= set(load_router(model_dir)[0].heads["department"].labels)
    assert dept["per_class"]["其他"]["support"] == 4
    assert "merged their rare labels" in report_path.with_suffix(".md").read_text(encoding="utf-8")


@pytest.mark.parametrize("recorded", ["masked", "masked as written", "as written"])
def test_evaluate_scores_merged_labels_holding_a_number_as_other(
    tmp_path, phone_merged_model_dir, recorded
):
    # Training records a merged label masked (网格员李四[手机号]); evaluate looked up the label as
    # the data spells it, missed it, and scored its rows as a label the model does not know,
    # always wrong. Models trained before recorded it as written or masked as written.
    from tests.conftest import OLD_MERGED_KEYS, with_merged_keys

    trained, data = phone_merged_model_dir
    masked = {"网格员李四[手机号]": 2, "a区网格员[手机号]": 2}
    assert read_metadata(trained)["training_data"]["validation"]["merged_into_other"] == {
        "department": masked
    }
    model_dir = with_merged_keys(trained, tmp_path / "m", OLD_MERGED_KEYS.get(recorded))
    report_path = tmp_path / "r.json"
    r = runner.invoke(app, ["evaluate", str(model_dir), str(data), "--report", str(report_path)])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "does not know" not in out
    assert "scored 4 department rows as '其他'" in out
    assert "13987654321" not in out and "１３９" not in out and "13912345678" not in out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["merged_into_other"] == {"department": masked}
    assert report["department"]["unknown_labels"] == {}
    assert report["department"]["per_class"]["其他"]["support"] == 4


def gbk_named(directory, stem: bytes, suffix: str):
    """A path in ``directory`` whose name is GBK bytes (as unzip leaves a Chinese Windows zip's)."""
    import os

    name = os.fsdecode(stem + suffix.encode())  # lone surrogates for the undecodable bytes
    return directory / name


def test_files_whose_names_are_not_utf8_are_read_and_named_escaped(
    tmp_path, tiny_csv, tiny_model_dir, monkeypatch
):
    # 测试.csv in GBK: evaluate and train crashed with a pyarrow traceback (the source column
    # cannot hold lone surrogates), freeze-eval said only "'utf-8' codec can't encode …".
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tmp_path / "models"))
    data = gbk_named(tmp_path, b"\xb2\xe2\xca\xd4", ".csv")
    try:
        data.write_bytes(tiny_csv.read_bytes())
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses a name that is not UTF-8")
    shown = "\\xb2\\xe2\\xca\\xd4.csv"
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(data)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["models", "freeze-eval", str(data)])
    assert r.exit_code == 0, r.output
    assert f"from {shown}" in " ".join(r.output.split())
    frozen = json.loads((tmp_path / "models" / "eval" / "frozen.json").read_text("utf-8"))
    assert frozen["source"] == shown
    r = cli_train(data, tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert read_metadata(tmp_path / "m")["training_data"]["files"][0]["name"] == shown
    missing = gbk_named(tmp_path, b"\xb2\xe2", ".csv")
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(missing)])
    assert r.exit_code == 2 and "\\xb2\\xe2.csv: no such file" in r.output, r.output


def test_a_parquet_file_whose_name_is_not_utf8_is_read_as_a_csv_one_is(
    tmp_path, tiny_csv, tiny_model_dir
):
    # 工单.parquet in GBK (a Windows zip unzipped here): refused by train, evaluate and label
    # ("cannot be read as PARQUET: 'utf-8' codec can't encode characters … surrogates not
    # allowed"), while a CSV of such a name was read: Arrow was given the name to encode.
    import pandas as pd

    data = gbk_named(tmp_path, b"\xb9\xa4\xb5\xa5", ".parquet")
    try:
        with open(data, "wb") as f:
            pd.read_csv(tiny_csv, dtype=str).to_parquet(f, index=False)
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses a name that is not UTF-8")
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    r = cli_train(data, tmp_path / "m")
    assert r.exit_code == 0, r.output
    shown = "\\xb9\\xa4\\xb5\\xa5.parquet"
    assert read_metadata(tmp_path / "m")["training_data"]["files"][0]["name"] == shown
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(data)], env=env)
    assert r.exit_code == 0, r.output
    out = tmp_path / "out.parquet"
    args = ["label", str(data), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(out)) == len(TINY_TICKETS)


def test_success_lines_show_file_names_that_are_not_utf8_escaped(
    tmp_path, tiny_csv, tiny_model_dir
):
    # 测试 and 报告 in GBK: the lines naming what was written printed the name raw, which a
    # UTF-8 console refuses (a UnicodeEncodeError traceback, exit 1, after the work was done)
    # or shows garbled; errors and freeze-eval's source show it with \xNN escapes.
    from model import registry

    model_out = gbk_named(tmp_path, b"\xb2\xe2\xca\xd4", "")
    try:
        model_out.mkdir()
        model_out.rmdir()
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses a name that is not UTF-8")
    r = cli_train(tiny_csv, model_out)
    assert r.exit_code == 0, r.output
    assert f"written to {tmp_path}/\\xb2\\xe2\\xca\\xd4" in r.output, r.output

    root = three_versions(tiny_model_dir, tmp_path)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    assert runner.invoke(app, ["models", "freeze-eval", str(tiny_csv)], env=env).exit_code == 0
    registry.set_current(root, "v1", record=False)
    reports = gbk_named(tmp_path, b"\xb1\xa8\xb8\xe6", "")
    # --force: the copies were trained on the frozen tickets, which the rule refuses.
    args = ["models", "promote", "v2", "--report", str(reports), "--force"]
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    shown = f"{tmp_path}/\\xb1\\xa8\\xb8\\xe6"
    assert f"comparison report: {shown}/v2-vs-v1.json, {shown}/v2-vs-v1.md" in out, out
    assert sorted(p.name for p in reports.iterdir()) == ["v2-vs-v1.json", "v2-vs-v1.md"]


def test_cli_a_report_name_whose_plots_are_too_long_a_name_is_refused_before_scoring(
    tmp_path, tiny_csv, tiny_model_dir
):
    # 80 Chinese characters + .json, 245 bytes, is a valid name, but REPORT.confusion-
    # department.png is 265: the model was scored, the JSON written, then a PIL traceback.
    import os

    if os.pathconf(tmp_path, "PC_NAME_MAX") != 255:
        pytest.skip("a file system whose names are not at most 255 bytes")
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    model = str(tiny_model_dir)
    cases = {
        "评" * 80 + ".confusion-department.png, written beside it, is 265 bytes": [
            "evaluate", model, str(tiny_csv), "--report", str(reports / ("评" * 80 + ".json")),
        ],
        # drift.json's plot is drift.png: longer only for a name without a suffix.
        "评" * 84 + ".png, written beside it, is 256 bytes": [
            "drift", "--since", "2026-01-01", "--model", model, "--out", str(reports / ("评" * 84)),
        ],
    }  # fmt: skip
    for said, args in cases.items():
        r = runner.invoke(app, args, env=env)
        assert r.exit_code == 2, r.output
        out = " ".join(r.output.split())
        assert f"{said}, over the 255 bytes a file name may have here" in out, out
        assert "Traceback" not in r.output
    assert list(reports.iterdir()) == []
    fits = reports / ("评" * 76 + ".json")  # its .confusion-department.png: 253 bytes
    r = runner.invoke(app, ["evaluate", model, str(tiny_csv), "--report", str(fits)], env=env)
    assert r.exit_code == 0, r.output
    assert fits.with_name(f"{fits.stem}.confusion-department.png").is_file()


def test_cli_a_report_name_that_is_not_utf8_is_refused_before_writing(
    tmp_path, tiny_csv, tiny_model_dir
):
    # The JSON and the plots were written, then the Markdown (which links the plots by name)
    # failed with a traceback: a half-written report.
    reports = tmp_path / "reports"
    reports.mkdir()
    report = gbk_named(reports, b"\xb1\xa8\xb8\xe6", ".json")
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    model = str(tiny_model_dir)
    labelled = report.with_suffix(".csv")
    cases = [
        ["evaluate", model, str(tiny_csv), "--report", str(report)],
        ["drift", "--since", "2026-01-01", "--model", model, "--out", str(report)],
        # label stopped at its first chunk with a traceback: its Arrow parts cannot be so named.
        ["label", str(tiny_csv), "--model", model, "--out", str(labelled)],
    ]
    for args in cases:
        r = runner.invoke(app, args, env=env)
        assert r.exit_code == 2, r.output
        out = " ".join(r.output.split())
        name = "\\xb1\\xa8\\xb8\\xe6" + Path(args[-1]).suffix
        assert f"{name}: the file name is not UTF-8" in out, out
        assert "Traceback" not in r.output
    assert list(reports.iterdir()) == []


def test_the_markdown_report_keys_the_numbered_axes_of_the_confusion_plots(
    tmp_path, tiny_csv, tiny_model_dir, monkeypatch
):
    # Without a CJK font the confusion plots number their labels 0..N, and the Markdown, said to
    # list them, had no number → label key: the figure could not be read on a headless server.
    from training import plots

    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    report_path = tmp_path / "r.json"
    r = runner.invoke(
        app, ["evaluate", str(tiny_model_dir), str(tiny_csv), "--report", str(report_path)]
    )
    assert r.exit_code == 0, r.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    md = report_path.with_suffix(".md").read_text(encoding="utf-8")
    for head in ("department", "category"):
        labels = report[head]["confusion"]["labels"]
        assert len(labels) == 3 and not any(label.isascii() for label in labels)
        key = ", ".join(f"{i} = {label}" for i, label in enumerate(labels))
        figure = f"![{head} confusion matrix](r.confusion-{head}.png)"
        assert figure in md and f"Axis numbers (rows: truth, columns: predicted): {key}" in md
        assert md.index(figure) < md.index(key)


def test_the_markdown_report_shows_its_plots_whatever_the_report_is_called(
    tmp_path, tiny_csv, tiny_model_dir
):
    # `--report "评估 12月.json"` linked ![…](评估 12月.confusion-department.png): a destination
    # ends at a space, so no renderer showed a plot. Parentheses and a % broke it too.
    from urllib.parse import unquote

    from markdown_it import MarkdownIt

    report_path = tmp_path / "评估 (12月) 100%.json"
    r = runner.invoke(
        app, ["evaluate", str(tiny_model_dir), str(tiny_csv), "--report", str(report_path)]
    )
    assert r.exit_code == 0, r.output
    md = report_path.with_suffix(".md").read_text(encoding="utf-8")
    html = MarkdownIt("commonmark").render(md)
    sources = re.findall(r'<img src="([^"]*)"', html)
    names = [f"{report_path.stem}.confusion-{h}.png" for h in ("department", "category")]
    assert [unquote(s) for s in sources] == [*names, f"{report_path.stem}.reliability.png"]
    assert all((tmp_path / unquote(s)).is_file() for s in sources)


def test_evaluate_counts_a_ticket_read_twice_once(tmp_path, tiny_model_dir):
    # Training keeps a ticket read twice (a file given twice, exports that overlap) once, with a
    # warning; evaluate and freeze-eval counted it twice in every figure, without a word.
    data = write_tiny_csv(tmp_path / "tiny.csv")
    n = len(TINY_TICKETS)
    reports = {}
    for name, files in (("once", [data]), ("twice", [data, data])):
        path = tmp_path / f"{name}.json"
        r = runner.invoke(
            app, ["evaluate", str(tiny_model_dir), *map(str, files), "--report", str(path)]
        )
        assert r.exit_code == 0, r.output
        reports[name] = (" ".join(r.output.split()), json.loads(path.read_text(encoding="utf-8")))
    out, twice = reports["twice"]
    assert "twice" not in reports["once"][0]
    # Said once for the file: it said "tiny.csv data row 1 repeats tiny.csv data row 1" a row.
    assert (
        "warning: tiny.csv was read twice (given twice, or given and in a directory given too): "
        f"its {n} rows were kept once"
    ) in out
    assert "repeats" not in out
    once = reports["once"][1]
    assert twice["n"] == once["n"] == n
    assert twice["duplicate_rows"] == n and "duplicate_rows" not in once
    for head in ("department", "category"):
        assert twice[head]["per_class"] == once[head]["per_class"]
    assert twice["files_read_twice"] == {"tiny.csv": n} and "files_read_twice" not in once
    assert "tiny.csv was read twice" in (tmp_path / "twice.md").read_text(encoding="utf-8")


def test_freeze_eval_keeps_a_ticket_read_twice_once(tmp_path):
    # Every version was scored on the frozen set with such a ticket counted twice.
    data = write_tiny_csv(tmp_path / "tiny.csv")
    n = len(TINY_TICKETS)
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    r = runner.invoke(app, ["models", "freeze-eval", str(data), str(data)], env=env)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert f"froze {n} tickets" in out
    assert (
        f"warning: tiny.csv was read twice (given twice, or given and in a directory given too): its {n} rows were kept once"
        in out
    )
    assert "repeats" not in out
    frozen = json.loads((tmp_path / "models" / "eval" / "frozen.json").read_text(encoding="utf-8"))
    assert frozen["rows"] == n and frozen["left_out"]["repeated"] == n


def test_cli_evaluate_warns_of_labels_the_model_never_learnt(tmp_path, tiny_model_dir):
    path = tmp_path / "test.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "department"])
        for i, (_, text, dept, _) in enumerate(TINY_TICKETS):
            w.writerow([text, "人社局" if dept == "人社" else dept])  # another spelling
            if i == 0:
                w.writerow(["", dept])  # no text: skipped
                # A dispatcher's field in the label column: quoted unmasked by the report before,
                # and with full-width digits (a Chinese keyboard's) until later.
                w.writerow([text, "网格员张三13812345678"])
                w.writerow([text, "网格员李四１３９８７６５４３２１"])
    report_path = tmp_path / "r.json"
    r = runner.invoke(
        app, ["evaluate", str(tiny_model_dir), str(path), "--report", str(report_path)]
    )
    assert r.exit_code == 0, r.output
    renamed = sum(dept == "人社" for _, _, dept, _ in TINY_TICKETS)
    said = " ".join(r.output.split())  # as wrapped to the terminal
    assert (
        f"{renamed + 2} department rows have 3 labels the model does not know, always scored wrong "
        "(in accuracy and top-3; macro- and weighted-F1 are over the labels it knows): "
        f"'人社局' ({renamed} rows), '网格员张三[手机号]' (1 row)"
    ) in said
    assert "skipped 1 row with empty text" in r.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    dept = report["department"]
    assert dept["unknown_labels"] == {
        "人社局": renamed,
        "网格员张三[手机号]": 1,
        "网格员李四[手机号]": 1,
    }
    # They are no classes of macro-F1 (each was one, of F1 0), nor rows of the per-class table or
    # the confusion matrix; their rows are wrong in accuracy.
    learnt = json.loads((tiny_model_dir / "metadata.json").read_text(encoding="utf-8"))
    labels = learnt["heads"]["department"]["labels"]
    assert sorted(dept["per_class"]) == dept["confusion"]["labels"] == sorted(labels)
    scored = [m["f1"] for m in dept["per_class"].values() if m["support"]]
    assert dept["macro_f1"] == pytest.approx(sum(scored) / len(scored))
    assert dept["accuracy"] <= 1 - (renamed + 2) / dept["n"]
    md = report_path.with_suffix(".md").read_text(encoding="utf-8")
    assert "'人社局'" in md
    for number in ("13812345678", "１３９８７６５４３２１"):
        assert number not in md and number not in report_path.read_text(encoding="utf-8")
        assert number not in r.output


# Labels as the data may write them: a joint dispatch typed with a bar, Markdown and HTML.
ODD_LABELS = ["市住建局|城管", "![t](http://evil.example/p.png)", "<img src=x onerror=alert(1)>"]


def rendered_cells(markdown: str) -> tuple[list[list[str]], str]:
    """The table rows (cells' text) and the HTML of a Markdown page, as GitLab/Gitea render it."""
    from html.parser import HTMLParser

    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.in_cell = False

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.rows[-1].append("")
                self.in_cell = True

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.in_cell = False

        def handle_data(self, data):
            if self.in_cell:
                self.rows[-1][-1] += data

    parser = Cells()
    parser.feed(html)
    return parser.rows, html


def test_the_markdown_report_writes_labels_as_text(tmp_path):
    # A label with a bar gave its per-class row a cell too many (its figures shifted a column);
    # one holding Markdown or HTML was rendered as an image (a web beacon) or a tag.
    from training.evaluate import markdown_report
    from training.metrics import head_report

    labels = sorted([*ODD_LABELS, "人社"])
    y = np.array(labels * 3)
    proba = np.full((len(y), len(labels)), 0.1)
    proba[np.arange(len(y)), [labels.index(v) for v in y]] = 0.7
    report = {"n": len(y), "model_version": "v_1", "department": head_report(y, proba, labels, 0.5)}
    report["department"]["unknown_labels"] = {"<b>x</b>|y": 2}
    markdown = markdown_report(report, {"confusion-department": "r.png"})
    rows, html = rendered_cells(markdown)
    per_class = [r for r in rows if r and r[0] in labels]
    assert sorted(r[0] for r in per_class) == labels
    assert all(len(r) == 6 for r in per_class), per_class
    assert "<img" not in html.replace('<img src="r.png"', "") and "<b>" not in html
    assert "evil.example" not in html.replace("![t](http://evil.example/p.png)", "")
    assert "Evaluation of model v_1" in html
    key = html.split("Axis numbers")[1]
    assert all(label.replace("<", "&lt;").replace(">", "&gt;") in key for label in labels)
    assert "&lt;b&gt;x&lt;/b&gt;|y" in html  # the warning quoting the unknown label


def test_evaluating_on_the_training_tickets_is_flagged(tmp_path, tiny_csv, tiny_model_dir):
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(tiny_csv)])
    assert r.exit_code == 0, r.output
    n = len(TINY_TICKETS)
    assert (
        f"{n} of the {n} tickets are (nearly) identical to tickets the model was trained"
        in r.output
    )
    unseen = tmp_path / "unseen.csv"
    with open(unseen, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "department"])
        w.writerow(["装修工人的工资被包工头卷走了，人社局能不能帮忙追讨", "人社"])
        w.writerow(["夜市大排档的油烟和噪音让整栋楼没法睡觉", "执法"])
    from training.evaluate import evaluate

    report = evaluate(tiny_model_dir, [unseen])
    assert report["seen_rows"] == 0
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(unseen)])
    assert "identical to tickets the model was trained" not in r.output


def test_evaluate_counts_one_seen_ticket_and_one_unknown_label_as_one(tmp_path, tiny_model_dir):
    # "1 of the 5 tickets are (nearly) identical", "1 department rows have 1 labels the model
    # does not know": in the command's output and in the Markdown report beside it.
    data = tmp_path / "one.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["title", "text", "department"])
        w.writerow([*TINY_TICKETS[0][:2], "人社局"])  # trained on, under a label the model lacks
        for i in range(4):
            w.writerow(["", f"第{i}号：装修工人的工资被包工头卷走了，人社局能不能帮忙追讨", "人社"])
    report_path = tmp_path / "r.json"
    r = runner.invoke(
        app, ["evaluate", str(tiny_model_dir), str(data), "--report", str(report_path)]
    )
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    seen = "1 of the 5 tickets is (nearly) identical to tickets the model was trained on"
    unknown = "1 department row has 1 label the model does not know, always scored wrong"
    markdown = " ".join(report_path.with_suffix(".md").read_text(encoding="utf-8").split())
    for text in (said, markdown):
        assert seen in text and unknown in text, text


def test_cli_refuses_a_tampered_model(tmp_path, tiny_model_dir):
    import shutil
    import stat

    m = tmp_path / "m"
    shutil.copytree(tiny_model_dir, m)
    pkl = m / "router.joblib"
    pkl.chmod(stat.S_IRUSR | stat.S_IWUSR)
    pkl.write_bytes(pkl.read_bytes()[:-10])
    r = runner.invoke(app, ["predict", str(m), "欠薪"])
    assert r.exit_code == 2 and "checksum" in r.output and "Traceback" not in r.output
    with pytest.raises(Exception, match="checksum"):
        load_router(m)


def test_cli_train_records_the_tokenizer_backend_it_was_asked_for(tmp_path, tiny_csv):
    for backend in ("jieba", "rjieba"):
        out = tmp_path / backend
        r = cli_train(tiny_csv, out, "--tokenizer", backend)
        assert r.exit_code == 0, r.output
        assert read_metadata(out)["config"]["tokenizer"] == backend
        router, _ = load_router(out)
        assert router.features.named_steps["tokenize"].backend_ == backend
    r = runner.invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "x"), "--tokenizer", "hanlp"]
    )
    assert r.exit_code != 0 and "hanlp" in r.output


@pytest.mark.slow
def test_the_model_is_the_same_for_any_number_of_worker_processes():
    # The bundled sample with a cheap configuration: big enough that liblinear iterates, so fits
    # sharing one random generator (threads) would already differ in the sixth decimal here.
    config = dataclasses.replace(
        TrainingConfig(),
        cv_folds=3,
        calibration_cv=2,
        char_ngram_max=0,
        lsa_components=20,
        lsa_min_df=2,
    )
    here = train([resources.sample_path()], None, config=config, n_jobs=1)
    pool = train([resources.sample_path()], None, config=config, n_jobs=2)
    assert here.metadata == pool.metadata  # metrics, thresholds, the chosen inputs
    assert len(here.metadata["cv_metrics"]["department"]["input_selection"]) == 4
    for head in here.cv:
        np.testing.assert_array_equal(here.cv[head].proba, pool.cv[head].proba)
    tickets = [(title, text) for title, text, _, _ in TINY_TICKETS]
    a, b = here.router.predict_proba(tickets), pool.router.predict_proba(tickets)
    assert a.keys() == b.keys() == {"department", "category"}
    for head in a:
        np.testing.assert_array_equal(a[head], b[head])


def test_cli_train_takes_a_number_of_worker_processes(tmp_path, tiny_csv):
    out = tmp_path / "model"
    args = ["train", str(tiny_csv), "--out", str(out), "--min-examples", "3"]
    r = runner.invoke(app, [*args, "--jobs", "0"])
    assert r.exit_code == 2 and "--jobs" in r.output
    r = runner.invoke(app, [*args, "--jobs", "1"])
    assert r.exit_code == 0, r.output


def test_each_heads_prior_shift_is_chosen_out_of_fold_and_stored(tiny_model_dir):
    from model.config import PRIOR_ALPHAS

    router, meta = load_router(tiny_model_dir)
    for name, head in router.heads.items():
        m = meta["cv_metrics"][name]
        tried = m["prior_selection"]
        assert [t["alpha"] for t in tried] == list(PRIOR_ALPHAS)
        best = max(t["macro_f1"] for t in tried)
        chosen = next(t for t in tried if t["macro_f1"] == best)  # the smallest of the best
        assert m["prior_alpha"] == chosen["alpha"] == meta["heads"][name]["prior_alpha"]
        assert head.prior_alpha == chosen["alpha"]
        assert m["macro_f1"] == best  # the reported metrics are those of the shifted probabilities


def test_a_fixed_prior_alpha_is_used_as_given(tmp_path, tiny_csv, tiny_config):
    config = dataclasses.replace(tiny_config, prior_alpha=0.5)
    result = train([tiny_csv], None, config=config)
    for name, head in result.router.heads.items():
        assert head.prior_alpha == 0.5
        assert "prior_selection" not in result.cv[name].report
        [raw] = result.router._all_proba(result.router.transform(["老板拖欠工资三个月"]))[name]
        [proba] = result.router.predict_proba(["老板拖欠工资三个月"])[name]
        [pred] = result.router.predict(["老板拖欠工资三个月"], top_k=len(head.labels))
        shown = getattr(pred, name)
        rank = head.shift(raw[np.newaxis])[0]
        # Suggested in the order of the classifier's shifted probabilities, each label shown with
        # its probability as shown (Head.scores).
        assert [c.label for c in shown.candidates] == [head.labels[i] for i in np.argsort(-rank)]
        assert [c.score for c in shown.candidates] == [
            round(float(proba[i]), 4) for i in np.argsort(-rank)
        ]


def test_cli_prior_alpha_option_fixes_the_shift(tmp_path, tiny_csv):
    out = tmp_path / "model"
    r = cli_train(tiny_csv, out, "--prior-alpha", "0")
    assert r.exit_code == 0, r.output
    assert "shifts its label prior" not in r.output
    meta = read_metadata(out)
    assert {h["prior_alpha"] for h in meta["heads"].values()} == {0.0}
    bad = runner.invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "m2"), "--prior-alpha", "2"]
    )
    assert bad.exit_code == 2 and "--prior-alpha" in bad.output


def test_cli_multinomial_weight_option_sets_the_department_blend(tmp_path, tiny_csv):
    out = tmp_path / "model"
    r = cli_train(tiny_csv, out)  # by default there is no blend
    assert r.exit_code == 0, r.output
    assert read_metadata(out)["config"]["multinomial_weight"] == 0.0
    router, _ = load_router(out)
    assert not any(isinstance(h.classifier, BlendedClassifier) for h in router.heads.values())
    assert router.compiled()[1].multinomials == {}
    r = cli_train(tiny_csv, tmp_path / "m2", "--multinomial-weight", "0.25")
    assert r.exit_code == 0, r.output
    router, _ = load_router(tmp_path / "m2")
    assert router.heads["department"].classifier.multinomial_weight == 0.25
    assert router.compiled()[1].multinomials["department"].weight == 0.25
    bad = runner.invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "m3"), "--multinomial-weight", "2"]
    )
    assert bad.exit_code == 2 and "--multinomial-weight" in bad.output


def _under_confident(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Suggestions' probabilities and whether each was right, drawn as if right with p ** 0.5."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.2, 0.95, size=rows)
    return confidence, rng.uniform(size=rows) < confidence**0.5


def _shown(confidence: np.ndarray, mapping: tuple[float, float]) -> np.ndarray:
    """The shown probability of suggestions made with ``confidence`` (two labels, the first suggested)."""
    proba = np.c_[confidence, 1 - confidence]
    return recalibrate_suggestion(proba, np.zeros(len(proba), dtype=int), mapping)[:, 0]


def test_the_confidence_map_calibrates_held_out_suggestions():
    from training.metrics import expected_calibration_error
    from training.train import fit_confidence_map

    confidence, correct = _under_confident(4_000, seed=0)
    slope, intercept = fit_confidence_map(confidence[:2_000], correct[:2_000])
    assert slope > 0
    shown = _shown(confidence[2_000:], (slope, intercept))
    before = expected_calibration_error(confidence[2_000:], correct[2_000:])
    after = expected_calibration_error(shown, correct[2_000:])
    assert after < before / 2, (before, after)


def test_the_confidence_map_is_the_identity_when_it_cannot_be_increasing():
    from model.router import IDENTITY_MAP
    from training.train import fit_confidence_map

    confidence = np.array([0.3, 0.5, 0.7, 0.9])
    assert fit_confidence_map(confidence, np.ones(4, dtype=bool)) == IDENTITY_MAP  # all right
    assert fit_confidence_map(confidence, np.zeros(4, dtype=bool)) == IDENTITY_MAP  # all wrong
    # Less probable suggestions were the right ones: an increasing map cannot say so.
    backwards = np.array([True, True, False, False] * 5)
    assert fit_confidence_map(np.tile(confidence, 5), backwards) == IDENTITY_MAP


def test_recalibrated_confidence_changes_what_is_shown_but_no_decision(
    tmp_path, tiny_csv, tiny_config
):
    raw = train(
        [tiny_csv], None, config=dataclasses.replace(tiny_config, calibrate_confidence=False)
    )
    cal = train([tiny_csv], None, config=tiny_config)
    assert tiny_config.calibrate_confidence
    tickets = [(t, x) for t, x, _, _ in TINY_TICKETS] + ["老板拖欠工资三个月", "楼下烧烤油烟"]
    changed = 0
    for a, b in zip(raw.router.predict(tickets), cal.router.predict(tickets), strict=True):
        for name in ("department", "category"):
            ha, hb = getattr(a, name), getattr(b, name)
            assert [c.label for c in ha.candidates] == [c.label for c in hb.candidates]
            assert ha.decision == hb.decision and ha.reason == hb.reason
            changed += ha.score != hb.score
    assert changed  # the map did move the shown scores
    for name, head in cal.router.heads.items():
        meta = cal.metadata["heads"][name]["confidence_map"]
        assert (meta["slope"], meta["intercept"]) == head.confidence_map
        assert cal.cv[name].report["confidence_map"] == meta
        assert raw.router.heads[name].confidence_map == (1.0, 0.0)


def test_cli_can_show_the_classifiers_own_probabilities(tmp_path, tiny_csv):
    out = tmp_path / "model"
    r = cli_train(tiny_csv, out, "--no-calibrate-confidence")
    assert r.exit_code == 0, r.output
    meta = read_metadata(out)
    assert meta["config"]["calibrate_confidence"] is False
    assert {
        (h["confidence_map"]["slope"], h["confidence_map"]["intercept"])
        for h in meta["heads"].values()
    } == {(1.0, 0.0)}


def test_a_threshold_on_recalibrated_confidence_passes_the_same_tickets():
    from model.router import IDENTITY_MAP
    from training.metrics import choose_threshold
    from training.train import fit_confidence_map

    confidence, correct = _under_confident(1_000, seed=1)
    mapping = fit_confidence_map(confidence, correct)
    assert mapping != IDENTITY_MAP

    before = choose_threshold(confidence, correct, 0.9)
    after = choose_threshold(_shown(confidence, mapping), correct, 0.9)
    assert 0 < (confidence >= before).mean() < 1  # some tickets pass, some do not
    np.testing.assert_array_equal(confidence >= before, _shown(confidence, mapping) >= after)
    new, _ = _under_confident(1_000, seed=2)  # and so on tickets it was not chosen on
    np.testing.assert_array_equal(new >= before, _shown(new, mapping) >= after)


@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("--userdict", "路灯 5.0\n".encode(), "line 1: frequency '5.0' is not a number"),
        ("--userdict", "路灯 ²\n".encode(), "line 1: frequency '²' is not a number"),
        (
            "--stopwords",
            "市住建局\n".encode("utf-16-le"),
            "line 1: the stopword list holds the control",
        ),
        ("--userdict", None, "cannot read the user dictionary"),
        ("--stopwords", b"\xff\xfe\x00\xd8", "neither UTF-8 nor GB18030"),
    ],
)
def test_cli_train_bad_resource_files_are_one_line(tmp_path, tiny_csv, option, content, message):
    path = tmp_path / "words.txt"
    if content is not None:
        path.write_bytes(content)
    r = runner.invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "m"), option, str(path)]
    )
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split()) and "Traceback" not in r.output
    assert not (tmp_path / "m").exists()


def test_model_directory_keeps_resource_words_as_the_tokenizer_holds_them(
    tmp_path, tiny_csv, caplog
):
    # The entries are normalised as texts are (ETC卡 could never match the text's etc卡), and the
    # model directory's copies say what the model cuts with, not what the administrator wrote.
    ud = tmp_path / "dict.txt"
    ud.write_text("ETC卡 20000 n\n油烟扰民 100\n", encoding="utf-8")
    sw = tmp_path / "stop.txt"
    sw.write_text("ＡＰＰ\n的\napp\n", encoding="utf-8")
    r = cli_train(tiny_csv, tmp_path / "m", "--userdict", str(ud), "--stopwords", str(sw))
    assert r.exit_code == 0, r.output
    assert (
        "1 word(s) of the user dictionary normalised" in caplog.text
        and "ETC卡 → etc卡" in caplog.text
    )
    assert "ＡＰＰ → app" in caplog.text
    model = tmp_path / "m"
    assert (model / "userdict.txt").read_text(encoding="utf-8") == "etc卡 20000 n\n油烟扰民 100\n"
    assert (model / "stopwords.txt").read_text(encoding="utf-8") == "app\n的\n"
    tokenizer = load_router(model)[0].features.named_steps["tokenize"]
    assert tokenizer.tokenize("手机app办理etc卡") == ("手机", "办理", "etc卡")


def test_cli_train_reads_a_gb18030_user_dictionary(tmp_path, tiny_csv):
    path = tmp_path / "dict.txt"
    path.write_bytes("油烟扰民 100\n".encode("gb18030"))
    r = runner.invoke(
        app,
        [
            "train",
            str(tiny_csv),
            "--out",
            str(tmp_path / "m"),
            "--userdict",
            str(path),
            "--min-examples",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output


def test_gc_keeps_the_model_predict_is_loading(tiny_model_dir, tmp_path, monkeypatch):
    # `paidan models gc` could delete the version `paidan predict` was reading.

    from model import registry
    from paidan import cli

    root = three_versions(tiny_model_dir, tmp_path, registered=True)  # gc deletes such only
    registry.set_current(root, "v3", record=False)
    collected = []

    def gc_then_load(*args, **kwargs):
        collected.append(registry.gc(root, keep=1))  # while the command runs
        return load_router(*args, **kwargs)

    monkeypatch.setattr(cli, "load_router", gc_then_load)
    r = runner.invoke(app, ["predict", "v1", "拖欠工资"], env={"PAIDAN_MODEL_ROOT": str(root)})
    assert r.exit_code == 0, r.output
    assert '"department"' in r.output
    assert collected == [(["v2"], ["v1"])]
    assert registry.gc(root, keep=1) == (["v1"], [])  # the command is over: no lease left


def test_cli_takes_a_version_name_as_models_list_prints_it(
    tiny_model_dir, tiny_csv, tmp_path, monkeypatch
):
    # `predict 20261122T…` used to fail with "… is not a directory" unless run from the model root.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(tiny_model_dir.parent))
    r = runner.invoke(app, ["predict", tiny_model_dir.name, "拖欠工资"])
    assert r.exit_code == 0, r.output
    assert '"department"' in r.output
    r = runner.invoke(app, ["evaluate", tiny_model_dir.name, str(tiny_csv)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["predict", "no-such-version", "拖欠工资"])
    assert r.exit_code == 2 and "no-such-version" in r.output


def test_a_file_given_twice_trains_once_and_cross_validates_as_the_file_once(
    tmp_path, tiny_config, tiny_model_dir
):
    # Given twice, every ticket was trained twice and cross-validation scored each with its copy
    # in the training folds: the figures and auto thresholds were chosen in hindsight (on real
    # tickets: macro-F1 0.70 -> 0.96, and 97 % dispatched automatically at 72 % precision).
    path = write_tiny_csv(tmp_path / "tiny.csv")
    result = train([path, path], tmp_path / "m", config=tiny_config)
    assert result.model_dir is not None
    meta, once = read_metadata(result.model_dir), read_metadata(tiny_model_dir)
    validation = meta["training_data"]["validation"]
    assert validation["rows_in"] == 36 and validation["rows_used"] == 18
    assert validation["duplicate_rows"] == 18 and validation["conflicting_duplicates"] == 0
    assert meta["cv_metrics"] == once["cv_metrics"]
    for head in ("department", "category"):
        assert meta["heads"][head]["threshold"] == once["heads"][head]["threshold"]
        assert meta["heads"][head]["counts"] == once["heads"][head]["counts"]
    [warning] = [w for w in result.validation.warnings() if "twice" in w]
    assert warning == (
        "tiny.csv was read twice (given twice, or given and in a directory given too): its 18 "
        "rows were kept once"
    )


def test_folds_hold_out_the_rows_of_one_text_together():
    from training.train import fold_splits

    y = np.array([t[2] for t in TINY_TICKETS] * 2)
    groups = np.array(list(range(len(TINY_TICKETS))) * 2)  # each text twice, under another id
    folds, splits = fold_splits(y, groups, 3, seed=42)
    assert folds == len(splits) == 3
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested) == list(range(len(y)))
    for train_rows, test_rows in splits:
        assert not set(groups[train_rows]) & set(groups[test_rows])
        # Still stratified: each department in every held-out fold.
        assert set(y[test_rows]) == set(y)
    # Without repeated texts, the folds are StratifiedKFold's, as before.
    unique = np.arange(len(y))
    _, plain = fold_splits(y, unique, 3, seed=42)
    expected = StratifiedKFold(n_splits=3, shuffle=True, random_state=42).split(y, y)
    for (a, b), (c, d) in zip(plain, expected, strict=True):
        assert a.tolist() == c.tolist() and b.tolist() == d.tolist()


def test_the_summary_states_one_fold_count_when_every_head_had_the_configured_one():
    from training.train import HeadCV, cv_summary

    def head(folds, reason=None):
        report = {"folds": folds} | ({"folds_reason": reason} if reason else {})
        return HeadCV(["a", "b"], 0.5, report, proba=np.zeros((0, 2)), y=np.array([]))

    config = TrainingConfig(seed=7)
    same = {"category": head(5), "department": head(5)}
    assert cv_summary(same, config, 90, 100) == (
        "cross-validated (5 stratified folds, seed 7) on 90 of 100 rows"
    )
    fewer = {"category": head(5), "department": head(3, "its rarest label, '市残联', has 3 rows")}
    assert cv_summary(fewer, config, 90, 100) == (
        "cross-validated (stratified folds, seed 7) on 90 of 100 rows: department 3 folds (its "
        "rarest label, '市残联', has 3 rows), category 5 folds"
    )


def test_the_training_summary_lists_the_department_head_first_as_evaluate_and_the_api_do(tmp_path):
    # The category head is fitted first (the department head may read its probabilities), and
    # train's table and head lines followed that order, while evaluate's summary and the API
    # answer list the department first: the two summaries of one model read in opposite orders.
    r = cli_train(write_tiny_csv(tmp_path / "tiny.csv"), tmp_path / "m")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    rows = [line.split()[1] for line in lines if line.startswith("│ ") and "head" not in line]
    assert rows == ["department", "category"], r.output
    said = [line.split()[0] for line in lines if re.match(r"(department|category) head ", line)]
    assert said and said == sorted(said, key=["department", "category"].index), r.output


def test_a_head_with_fewer_folds_than_cv_folds_records_why(tiny_config):
    from training.train import cross_validate_heads

    X = sp.csr_matrix(np.random.default_rng(0).random((18, 8)))
    y = np.array(["a", "b", "c"] * 6)
    config = dataclasses.replace(tiny_config, cv_folds=5)
    [cv] = cross_validate_heads([("t", X, y)], config, n_jobs=None, groups=np.arange(18) % 4)
    assert cv.report["folds"] == 4
    assert cv.report["folds_reason"] == "its 18 rows are only 4 distinct texts"
    [cv] = cross_validate_heads([("t", X[:15], y[:15])], config, n_jobs=None)
    assert cv.report["folds"] == 5 and "folds_reason" not in cv.report


def test_evaluate_counts_as_auto_only_what_the_router_dispatches_without_a_person(
    tiny_model_dir,
):
    # A ticket with no known word goes to a person whatever its confidence (predict, the API and
    # label say review); evaluate counted it as auto when its confidence reached the threshold.
    from model.artifact import load_router
    from training.evaluate import evaluate_router

    router, _ = load_router(tiny_model_dir, serving=True)
    for head in router.heads.values():
        head.threshold = 0.0  # every suggestion passes: only the known-word rule can say review
    tickets = [(t, x) for t, x, _, _ in TINY_TICKETS] + [("", "abc 123")]
    labels = {
        "department": [d for _, _, d, _ in TINY_TICKETS] + ["人社"],
        "category": [c for _, _, _, c in TINY_TICKETS] + ["劳动保障"],
    }
    results = router.predict(tickets)
    assert [r.decision for r in results].count("review") == 1  # the last
    report = evaluate_router(router, *map(list, zip(*tickets, strict=True)), labels, 7)
    for name in ("department", "category"):
        routed = [getattr(r, name).decision == "auto" for r in results]
        assert report[name]["auto"]["coverage"] == np.mean(routed) < 1.0


def test_cross_validated_auto_figures_leave_out_tickets_without_a_known_word(tiny_config):
    # The router sends a ticket with no known word to a person whatever its confidence; the
    # cross-validated auto precision and coverage (and the threshold) counted it as auto.
    from training.train import cross_validate_heads

    rng = np.random.default_rng(0)
    y = np.array(["a", "b"] * 12)
    # Features that tell the labels apart: every held-out row is confident and right.
    X = sp.csr_matrix(np.c_[(y == "a") * 1.0, (y == "b") * 1.0, rng.random((24, 2)) * 0.01])
    config = dataclasses.replace(tiny_config, target_precision=0.5)
    [plain] = cross_validate_heads([("t", X, y)], config, n_jobs=None)
    assert plain.report["auto"]["coverage"] == 1.0
    no_terms = np.arange(24) % 4 == 0
    [cv] = cross_validate_heads([("t", X, y)], config, n_jobs=None, no_terms=no_terms)
    assert cv.report["auto"]["coverage"] == 0.75 and cv.report["auto"]["precision"] == 1.0
    [cv] = cross_validate_heads([("t", X, y)], config, n_jobs=None, no_terms=np.ones(24, bool))
    assert cv.report["auto"] == {"threshold": 1.0, "precision": None, "coverage": 0.0}


def test_training_reads_the_rows_without_a_known_word_as_the_router_does(tmp_path, tiny_config):
    # fit_router counts them from its own feature matrix, before any head is fitted: the word
    # view's width must be the compiled one, and asking for it must not compile the router.
    from model.router import build_router, without_known_terms
    from model.tickets import read_tickets
    from training.train import fit_router
    from training.validate import validate

    df, _ = validate(read_tickets([write_tiny_csv(tmp_path / "t.csv")]), min_examples=3)
    tickets = list(zip(df["title"], df["text"], strict=True))
    router = build_router(tiny_config)
    X = router.fit_features(tickets)
    width = router.word_view_width()
    assert router._compiled is None
    trained, _ = fit_router(df, tiny_config, None, None, n_jobs=None)
    assert 0 < width == trained.word_view_width()
    served = trained._without_known_terms(trained.transform(tickets))
    assert without_known_terms(X, width).tolist() == served.tolist()
    assert trained._without_known_terms(trained.transform([("", "abc 123")])).tolist() == [True]


def test_the_reason_for_fewer_folds_masks_a_phone_number_in_the_rarest_label():
    # A text or handler column mapped as the label: its rarest "label" holds a mobile number, in
    # half-width or full-width digits, and the reason reaches the log and metadata.json.
    from training.train import fewer_folds_reason

    counts = np.array([3, 9])
    for label in ("网格员张三13812345678", "网格员张三１３８１２３４５６７８"):
        reason = fewer_folds_reason(np.array([label, "人社"]), counts, None, 3, 5)
        assert reason == "its rarest label, '网格员张三[手机号]', has 3 rows"
    reason = fewer_folds_reason(np.array(["市残联（人防办）", "人社"]), counts, None, 3, 5)
    assert reason == "its rarest label, '市残联（人防办）', has 3 rows"


def test_a_label_of_few_texts_cross_validates_with_its_copies_in_one_fold(tiny_config):
    # Label c: three rows, two of them one text. The fold that holds that text out trains on a
    # single c row, which the calibration cannot split in two: that fold learns no c.
    from training.train import cross_validate_heads

    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.random((15, 8)))
    X[13] = X[12]
    y = np.array(["a"] * 6 + ["b"] * 6 + ["c"] * 3)
    groups = np.array([*range(13), 12, 13])
    [cv] = cross_validate_heads([("t", X, y)], tiny_config, n_jobs=None, groups=groups)
    assert cv.labels == ["a", "b", "c"] and cv.report["n"] == 15 and cv.report["folds"] == 3
    assert np.allclose(cv.proba.sum(axis=1), 1)


def test_evaluate_names_a_head_whose_label_column_the_data_lacks(
    tiny_model_dir: Path, tiny_csv: Path, tmp_path: Path
) -> None:
    # Scored on the department alone without a word: the category head seemed not to exist.
    from model.tickets import ColumnMap
    from training.evaluate import evaluate, report_warnings

    data = tmp_path / "no-category.csv"
    with open(tiny_csv, encoding="utf-8", newline="") as f:
        rows = [[r["id"], r["title"], r["text"], r["department"]] for r in csv.DictReader(f)]
    with open(data, "w", encoding="utf-8", newline="") as g:
        csv.writer(g).writerows([["编号", "title", "text", "部门"], *rows])
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(data), "--department-col", "部门"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.stderr.split())
    assert (
        "category head not scored: the data has no 'category' column (it has '编号', 'title', "
        "'text', '部门'); map the category label column with --category-col" in said
    )
    # A column that looks like the label's is named, with its option.
    g = data.read_text(encoding="utf-8").replace("编号,", "问题分类,", 1)
    data.write_text(g, encoding="utf-8")
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(data), "--department-col", "部门"])
    assert r.exit_code == 0, r.output
    assert (
        "--category-col; '问题分类' looks like the category: --category-col 问题分类"
        in " ".join(r.stderr.split())
    )
    assert "department head not scored" not in said
    # Both columns there: no note.
    report = evaluate(tiny_model_dir, [tiny_csv], columns=ColumnMap())
    assert "category" in report and "absent_label_columns" not in report
    assert not any("not scored" in w for w in report_warnings(report))


def test_evaluate_warns_of_a_title_column_left_unmapped_as_train_does(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A model trained with titles, scored on an export whose titles sit in 诉求标题 without
    # --title-col: its figures were for tickets without titles, and nothing said so.
    from model.tickets import ColumnMap
    from training.evaluate import evaluate, report_warnings

    data = tmp_path / "export.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["工单编号", "诉求标题", "text", "department", "category"])
        w.writerows([f"T{i}", *row] for i, row in enumerate(TINY_TICKETS))
    note = (
        "export.csv has no column 'title' for the ticket title, so its tickets are scored "
        "without titles; it has '诉求标题': if it is the title, give --title-col 诉求标题"
    )
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(data)])
    assert r.exit_code == 0, r.output
    assert note in " ".join(r.stderr.split())
    report = evaluate(tiny_model_dir, [data], columns=ColumnMap())
    assert note in report_warnings(report)
    mapped = evaluate(tiny_model_dir, [data], columns=ColumnMap(title="诉求标题"))
    assert not any("--title-col" in w for w in report_warnings(mapped))


def test_evaluate_warns_of_an_id_column_left_unmapped_as_train_does(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Ids in 工单编号 without --id-col: each ticket numbered by row, so one in two exports that
    # overlap was scored twice, and nothing said why.
    from model.tickets import ColumnMap
    from training.evaluate import evaluate, report_warnings

    data = tmp_path / "export.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["工单编号", "title", "text", "department", "category"])
        w.writerows([f"T{i}", *row] for i, row in enumerate(TINY_TICKETS))
    note = (
        "export.csv has no column 'id' for the ticket id, so a ticket in two exports that "
        "overlap is scored twice; it has '工单编号': if it is the id, give --id-col 工单编号"
    )
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(data)])
    assert r.exit_code == 0, r.output
    assert note in " ".join(r.stderr.split())
    mapped = evaluate(tiny_model_dir, [data], columns=ColumnMap(id="工单编号"))
    assert not any("--id-col" in w for w in report_warnings(mapped))


def test_train_reads_a_directory_with_subdirectories_and_records_each_file(tmp_path, tiny_config):
    # Parts in backlog/2024-03/ were left out of training without a word; two months' part-1.csv
    # must be told apart in the metadata's record of the files.
    from tests.conftest import write_tickets_csv

    d = tmp_path / "history"
    (d / "2024-03").mkdir(parents=True)
    (d / "2024-04").mkdir()
    write_tickets_csv(d / "2024-01.csv", TINY_TICKETS[0::3])
    write_tickets_csv(d / "2024-03" / "part-1.csv", TINY_TICKETS[1::3])
    write_tickets_csv(d / "2024-04" / "part-1.csv", TINY_TICKETS[2::3])
    for path in (d / "2024-03" / "part-1.csv", d / "2024-04" / "part-1.csv"):
        # ids of their own, so that no row is taken for another's copy
        path.write_text(path.read_text(encoding="utf-8").replace("\nT", f"\n{path.parent.name}-T"))
    result = train([d], tmp_path / "m", config=tiny_config)
    assert result.validation.rows_in == len(TINY_TICKETS)
    files = read_metadata(tmp_path / "m")["training_data"]["files"]
    assert [f["name"] for f in files] == ["2024-01.csv", "2024-03/part-1.csv", "2024-04/part-1.csv"]


def test_train_names_a_row_of_a_subdirectory_by_its_path_in_the_directory(tmp_path, tiny_config):
    # "skipped 2 rows with empty text: part-1.csv data row 2, part-1.csv data row 2": which?
    from tests.conftest import write_tickets_csv

    d = tmp_path / "history"
    for month, tickets in (("2024-03", TINY_TICKETS[0::2]), ("2024-04", TINY_TICKETS[1::2])):
        (d / month).mkdir(parents=True)
        *_, dept, cat = tickets[1]
        write_tickets_csv(d / month / "part-1.csv", [tickets[0], ("", "", dept, cat), *tickets[2:]])
    result = train([d], tmp_path / "m", config=tiny_config)
    assert result.validation.empty_text == [
        "2024-03/part-1.csv data row 2",
        "2024-04/part-1.csv data row 2",
    ]


def _export_names(path: Path) -> Path:
    """TINY_TICKETS with a ticket system's own column names (标题, 诉求内容, 处理部门, 问题分类)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["工单编号", "标题", "诉求内容", "处理部门", "问题分类"])
        for i, row in enumerate(TINY_TICKETS, 1):
            w.writerow([f"T{i:03d}", *row])
    return path


EXPORT_COLUMNS = [
    "--id-col",
    "工单编号",
    "--title-col",
    "标题",
    "--text-col",
    "诉求内容",
    "--department-col",
    "处理部门",
    "--category-col",
    "问题分类",
]


def _unlabelled(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _read_only(monkeypatch) -> dict[str, list]:
    """Stop train before the fit, keeping the unlabelled (title, text) pairs it read."""
    import training.train

    read: dict[str, list] = {}

    def stop_before_fitting(raw, *args, extra_texts=(), **kwargs):
        read["extra"] = list(extra_texts)
        raise TrainingDataError("read; not fitted in this test")

    monkeypatch.setattr(training.train, "train_frame", stop_before_fitting)
    return read


def test_unlabelled_files_in_the_canonical_names_train_beside_an_export_in_its_own(
    tmp_path, monkeypatch
):
    # One set of column options serves every input: a labelled export in its system's names and
    # an unlabelled dump in the canonical id,title,text could not be trained together
    # ("no column '标题' … (map yours with --title-col)", with --title-col given).
    read = _read_only(monkeypatch)
    data = _export_names(tmp_path / "hist.csv")
    canonical = _unlabelled(
        tmp_path / "unlabelled.csv", ["id", "title", "text"], [["U1", "路灯不亮", "小区路灯坏了"]]
    )
    r = cli_train(data, tmp_path / "m", *EXPORT_COLUMNS, "--unlabelled", str(canonical))
    assert "read; not fitted" in r.output, r.output
    assert read["extra"] == [("路灯不亮", "小区路灯坏了")]
    # Each field by itself: the mapped text and the canonical title.
    mixed = _unlabelled(
        tmp_path / "mixed.csv", ["title", "诉求内容"], [["噪音", "夜里工地施工噪音太大"]]
    )
    r = cli_train(data, tmp_path / "m", *EXPORT_COLUMNS, "--unlabelled", str(mixed))
    assert read["extra"] == [("噪音", "夜里工地施工噪音太大")], r.output


def test_an_unlabelled_file_without_a_text_column_says_the_options_apply_to_it(
    tmp_path, monkeypatch
):
    read = _read_only(monkeypatch)
    data = _export_names(tmp_path / "hist.csv")
    other = _unlabelled(tmp_path / "dump.csv", ["编号", "内容"], [["U1", "小区路灯坏了"]])
    r = cli_train(data, tmp_path / "m", *EXPORT_COLUMNS, "--unlabelled", str(other))
    out = " ".join(r.output.split())
    assert r.exit_code == 2, out
    assert str(other) in out and "'编号', '内容'" in out
    assert "no column '诉求内容' or 'text'" in out
    assert "--unlabelled" in out and "--text-col" in out
    assert "extra" not in read


def test_an_unlabelled_file_without_a_title_column_is_read_for_its_texts(
    tmp_path, monkeypatch, caplog
):
    # Unlabelled files need a text alone; a title is read where there is one.
    read = _read_only(monkeypatch)
    data = _export_names(tmp_path / "hist.csv")
    texts = _unlabelled(tmp_path / "texts.csv", ["诉求内容"], [["小区路灯坏了"]])
    with caplog.at_level("WARNING"):
        r = cli_train(data, tmp_path / "m", *EXPORT_COLUMNS, "--unlabelled", str(texts))
    assert read["extra"] == [("", "小区路灯坏了")], r.output
    assert f"{texts}: no column '标题' or 'title'" in caplog.text


def test_an_unlabelled_file_with_another_separator_is_told_the_delimiter(tmp_path, monkeypatch):
    _read_only(monkeypatch)
    data = write_tiny_csv(tmp_path / "hist.csv")
    semi = tmp_path / "semi.csv"
    semi.write_text("id;title;text\nU1;路灯;小区路灯坏了\n", encoding="utf-8")
    r = cli_train(data, tmp_path / "m", "--unlabelled", str(semi))
    out = " ".join(r.output.split())
    assert r.exit_code == 2, out
    assert "the header looks ;-separated; pass --delimiter ';'" in out


def test_a_partitioned_tables_labels_count_in_the_data_fingerprint(tmp_path, monkeypatch):
    # A part moved from 承办单位=人社/ to 承办单位=住建/ holds the same bytes with another label:
    # the data fingerprint (training_data.sha256, and the hash in the version name) was the same.
    import pandas as pd

    import training.train
    from model.artifact import sha256_file
    from model.tickets import ColumnMap
    from training.train import data_fingerprint, train

    seen: list[str] = []

    def stop_before_fitting(raw, *args, data_sha=None, **kwargs):
        seen.append(data_sha)
        raise TrainingDataError("read; not fitted in this test")

    monkeypatch.setattr(training.train, "train_frame", stop_before_fitting)
    frame = pd.DataFrame(
        [{"id": "T1", "title": "欠薪", "text": "老板拖欠工资", "category": "劳动"}]
    )
    for dept in ("人社", "住建"):
        part = tmp_path / dept / f"承办单位={dept}" / "part-0.parquet"
        part.parent.mkdir(parents=True)
        frame.to_parquet(part)
    flat = tmp_path / "flat" / "part-0.parquet"
    flat.parent.mkdir()
    frame.to_parquet(flat)
    by_dir = ColumnMap(department="承办单位")
    for data, columns in [
        ("人社", by_dir),
        ("住建", by_dir),
        ("人社", by_dir),
        ("flat", ColumnMap()),
    ]:
        with pytest.raises(TrainingDataError):
            train([tmp_path / data], None, columns)
    first, moved, again, unpartitioned = seen
    assert first != moved and first == again
    # Without partitions, the fingerprint is what it was before they were read.
    assert unpartitioned == data_fingerprint([sha256_file(flat)])


def test_unlabelled_files_count_in_the_data_fingerprint_and_are_named_in_the_metadata(
    tmp_path, monkeypatch
):
    # A model trained with --unlabelled and one trained without had the same
    # training_data.sha256 (and so the same hash in their version names) though their vocabulary
    # and IDF differ, and metadata.json counted the unlabelled tickets without naming their files:
    # a retrain could not say which files the current model was trained with.
    import training.train
    from model.artifact import sha256_file
    from model.tickets import ColumnMap
    from training.train import train

    seen: list[dict] = []

    def stop_before_fitting(raw, *args, data_sha=None, extra_metadata=None, **kwargs):
        seen.append({"sha": data_sha, "meta": extra_metadata or {}})
        raise TrainingDataError("read; not fitted in this test")

    monkeypatch.setattr(training.train, "train_frame", stop_before_fitting)
    data = _export_names(tmp_path / "hist.csv")
    dump = _unlabelled(tmp_path / "dump.csv", ["id", "title", "text"], [["U1", "路灯", "路灯坏了"]])
    other = _unlabelled(
        tmp_path / "other.csv", ["id", "title", "text"], [["U2", "噪音", "工地噪音"]]
    )
    columns = ColumnMap(
        text="诉求内容", title="标题", id="工单编号", department="处理部门", category="问题分类"
    )
    for unlabelled in ([], [dump], [dump], [other]):
        with pytest.raises(TrainingDataError):
            train([data], None, columns, unlabelled=unlabelled)
    without, with_dump, again, with_other = seen
    assert "unlabelled_files" not in without["meta"]
    assert with_dump["meta"]["unlabelled_files"] == [
        {"name": "dump.csv", "sha256": sha256_file(dump)}
    ]
    assert with_dump["sha"] != without["sha"]
    assert with_dump["sha"] != with_other["sha"]
    assert again["sha"] == with_dump["sha"]  # the same data, the same fingerprint


def _numbered_unlabelled(path: Path, n: int, start: int = 0) -> Path:
    return _unlabelled(
        path,
        ["id", "title", "text"],
        [[f"U{i}", f"标题{i}", f"第{i}号工单的诉求内容"] for i in range(start, start + n)],
    )


def test_unlabelled_tickets_beyond_the_limit_are_a_seeded_sample_read_a_chunk_at_a_time(
    tmp_path, monkeypatch
):
    # A city's archive of millions given as --unlabelled was read whole and fitted whole: memory
    # and model size grew with every ticket (1.0 GB and 171 MB at 6,000, 2.9 GB and 380 MB at
    # 60,000 on the shared tickets' sentences), with no limit and nothing said.
    import training.train
    from model.tickets import ColumnMap
    from training.train import read_unlabelled

    files = [
        _numbered_unlabelled(tmp_path / "a.csv", 13),
        _numbered_unlabelled(tmp_path / "b.csv", 12, start=13),
    ]
    everything = read_unlabelled(files, ColumnMap())
    assert everything.rows_read == 25 and len(everything.texts) == 25
    monkeypatch.setattr(training.train, "UNLABELLED_CHUNK", 4)
    sample = read_unlabelled(files, ColumnMap(), max_rows=7, seed=3)
    assert sample.rows_read == 25 and len(sample.texts) == 7
    kept = [int(t.removeprefix("第").removesuffix("号工单的诉求内容")) for t in sample.texts]
    assert kept == sorted(kept) and len(set(kept)) == 7  # in input order, each once
    assert sample.titles == [f"标题{i}" for i in kept]  # each title with its text
    # The same files and seed give the same sample, read in chunks of any size.
    monkeypatch.setattr(training.train, "UNLABELLED_CHUNK", 10_000)
    assert read_unlabelled(files, ColumnMap(), max_rows=7, seed=3).texts == sample.texts
    other = {tuple(read_unlabelled(files, ColumnMap(), 7, seed).texts) for seed in range(5)}
    assert len(other) > 1  # the seed draws it
    assert read_unlabelled(files, ColumnMap(), max_rows=25).texts == everything.texts


def test_train_says_when_it_samples_the_unlabelled_tickets_and_records_how_many(
    tmp_path, monkeypatch, caplog
):
    import training.train

    seen: list[dict] = []

    def stop_before_fitting(raw, *args, extra_texts=(), extra_metadata=None, **kwargs):
        seen.append({"extra": list(extra_texts), "meta": extra_metadata or {}})
        raise TrainingDataError("read; not fitted in this test")

    monkeypatch.setattr(training.train, "train_frame", stop_before_fitting)
    data = _export_names(tmp_path / "hist.csv")
    dump = _numbered_unlabelled(tmp_path / "dump.csv", 30)
    r = cli_train(
        data,
        tmp_path / "m",
        *EXPORT_COLUMNS,
        "--unlabelled",
        str(dump),
        "--unlabelled-max-rows",
        "10",
    )
    said = " ".join(x.getMessage() for x in caplog.records if "unlabelled" in x.getMessage())
    assert "the unlabelled files hold 30 tickets; a random 10 of them (seed 42)" in said, said
    assert "--unlabelled-max-rows, default 50,000" in said, said
    [run] = seen
    assert len(run["extra"]) == 10
    assert run["meta"]["unlabelled_rows_read"] == 30
    # Under the limit: every ticket, nothing said or recorded of a sample.
    caplog.clear()
    r = cli_train(data, tmp_path / "m", *EXPORT_COLUMNS, "--unlabelled", str(dump))
    assert not [x for x in caplog.records if "a random" in x.getMessage()], r.output
    assert len(seen[1]["extra"]) == 30 and "unlabelled_rows_read" not in seen[1]["meta"]


def test_the_same_data_trained_twice_in_one_second_under_the_root_get_two_versions(
    tiny_csv: Path, tiny_config: TrainingConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A version is named by the second and a digest of data and config: the same files trained
    # twice within one second (retrain given the same files again at once, as a test did on a
    # fast machine) got the same name, and the second was refused as "already exists".
    import training.train as train_module

    frozen = datetime(2026, 12, 6, 8, 54, 26, tzinfo=UTC)

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return frozen

    monkeypatch.setattr(train_module, "datetime", Clock)
    root = tmp_path / "models"
    first = train([tiny_csv], None, config=tiny_config, model_root=root)
    second = train([tiny_csv], None, config=tiny_config, model_root=root)
    assert first.router.version == "20261206T085426Z-" + first.router.version.split("-")[1]
    assert second.router.version == "20261206T085427Z-" + first.router.version.split("-")[1]
    assert first.model_dir is not None and second.model_dir is not None
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("2026")) == [
        first.router.version,
        second.router.version,
    ]


def test_evaluate_says_when_most_scored_rows_were_merged_into_other():
    # A model trained on 60 tickets for 25 departments merged 24 into 其他: evaluated on 200
    # tickets it read department accuracy 0.98 and macro-F1 0.88, 189 of them scored as 其他, and
    # only the list of merged labels hinted that the head routes nearly nothing to a department.
    from training.evaluate import report_warnings

    merged = {"县农业农村局": 100, "县民政局": 89}
    report = {"n": 200, "department": {"n": 200}, "merged_into_other": {"department": merged}}
    [said] = [w for w in report_warnings(report) if "scored 189" in w]
    assert said.endswith(
        "; that is 189 of the 200 department rows scored (94 %): the figures above mostly "
        "measure telling '其他' apart, and '其他' sends a ticket to no department"
    )
    report["department"]["n"] = 400
    [said] = [w for w in report_warnings(report) if "scored 189" in w]
    assert "figures above" not in said


def test_evaluate_names_labels_merged_into_an_other_too_rare_to_learn(tmp_path, tiny_config):
    # One rare category made a one-row 其他, too rare to learn: evaluate called that category
    # "a label the model does not know" and said to compare its spelling, which was right.
    from tests.conftest import TINY_TICKETS, write_tickets_csv
    from training.evaluate import evaluate, report_warnings
    from training.train import train

    rare = ("档案查询", "想查询父亲当年的人事档案，档案馆说要单位介绍信", "人社", "档案")
    data = write_tickets_csv(tmp_path / "t.csv", [*TINY_TICKETS, rare])
    result = train([data], tmp_path / "m", config=tiny_config)
    assert result.validation.unlearnt == {"category": 1}
    test = write_tickets_csv(tmp_path / "test.csv", [*TINY_TICKETS[:3], rare, (*rare[:3], "档案x")])
    report = evaluate(result.model_dir, [test])
    assert report["category"]["unknown_labels"] == {"档案": 1, "档案x": 1}
    assert report["category"]["merged_unlearnt"] == {"档案": 1}
    said = report_warnings(report)
    assert (
        "1 category row has a label the model's training merged into '其他', itself too rare to "
        "learn, so the model has no label for it (always scored wrong): '档案' (1 row); label "
        f"more tickets of it ({tiny_config.min_examples} at least) to learn it"
    ) in said
    [typo] = [w for w in said if "does not know" in w]
    assert typo.startswith("1 category row has 1 label the model does not know")
    assert "'档案x' (1 row); the model was trained on no ticket of it: if it is a label" in typo


def test_the_cross_validated_threshold_never_counts_the_catch_all_as_auto(tiny_config):
    # The router sends a ticket whose department is 其他 to a person (Ranking.auto), so the
    # threshold is chosen, and auto precision and coverage counted, without those rows.
    from training.train import cross_validate_heads

    rng = np.random.default_rng(0)
    y = np.array(["人社", "执法", "其他"] * 30)
    X = sp.csr_matrix(np.eye(3)[[0, 1, 2] * 30] * 5 + rng.random((90, 3)) * 0.1)  # separable
    [department] = cross_validate_heads(
        [("department", X, y)], tiny_config, n_jobs=None, head="department"
    )
    [category] = cross_validate_heads(
        [("category", X, y)], tiny_config, n_jobs=None, head="category"
    )
    assert category.report["auto"]["coverage"] == 1.0  # a category of 其他 is still a category
    assert department.report["auto"]["coverage"] == pytest.approx(2 / 3)
    assert department.report["auto"]["catch_all"] == 30
    assert "without_known_terms" not in department.report["auto"]


def test_train_and_evaluate_warn_of_ids_excel_wrote_in_scientific_notation_as_label_does(
    tmp_path, tiny_model_dir
):
    # Only `paidan label` said that 2.02401E+17 is an id whose digits Excel lost; train and
    # evaluate read such an export without a word.
    data = tmp_path / "export.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "department", "category"])
        for i, row in enumerate(TINY_TICKETS):
            w.writerow(["2.02401E+17" if i in (1, 4) else f"T{i}", *row])
    said = (
        "2 ticket ids are numbers in scientific notation ('2.02401E+17' on export.csv data row "
        "2), as Excel writes a long number in a CSV file it saves: most of their digits are lost"
    )
    r = cli_train(data, tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert said in " ".join(r.output.split()), r.output
    validation = read_metadata(tmp_path / "m")["training_data"]["validation"]
    assert validation["ids_in_scientific_notation"] == 2
    report_path = tmp_path / "r.json"
    r = runner.invoke(
        app, ["evaluate", str(tiny_model_dir), str(data), "--report", str(report_path)]
    )
    assert r.exit_code == 0, r.output
    assert said in " ".join(r.output.split()), r.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["ids_in_scientific_notation"] == {
        "rows": 2,
        "first": {"id": "2.02401E+17", "where": "export.csv data row 2"},
    }


def test_evaluate_does_not_call_a_label_no_training_ticket_had_a_misspelling():
    # A department the model had no ticket of (new since, or never in the history) was met with
    # "compare their spelling with the model's labels": evaluate cannot know the spelling is wrong.
    from training.evaluate import report_warnings

    report = {"n": 30, "department": {"n": 30, "unknown_labels": {"市无线电管理局": 3}}}
    [said] = [w for w in report_warnings(report) if "does not know" in w]
    assert "spelling" not in said
    assert said.endswith(
        "'市无线电管理局' (3 rows); the model was trained on no ticket of it: if it is a label the "
        "model knows, spelt otherwise, rename it in the data as the model spells it; if it is "
        "new, train a model on tickets of it"
    )
    report["department"]["unknown_labels"] = {"市无线电管理局": 3, "人社局": 2}
    [said] = [w for w in report_warnings(report) if "does not know" in w]
    assert said.endswith(
        "; the model was trained on no ticket of them: if one is a label the model knows, spelt "
        "otherwise, rename it in the data as the model spells it; if new, train a model on "
        "tickets of it"
    )


def test_paidan_train_says_its_data_warnings_before_the_fit(tmp_path, monkeypatch):
    # The warnings (repeated tickets, conflicting or blank labels) came after the fit, half a
    # minute on a real history: an administrator who saw them would have fixed the file first.
    import training.train as training_train

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the run stopped during the fit

    data = write_tiny_csv(tmp_path / "tiny.csv")
    monkeypatch.setattr(training_train, "fit_router", killed)
    r = runner.invoke(app, ["train", str(data), str(data), "--out", str(tmp_path / "m")])
    assert r.exit_code != 0
    assert "warning: tiny.csv was read twice" in " ".join(r.output.split())
    monkeypatch.undo()
    r = runner.invoke(
        app, ["train", str(data), str(data), "--out", str(tmp_path / "m"), "--min-examples", "3"]
    )
    assert r.exit_code == 0, r.output
    assert " ".join(r.output.split()).count("tiny.csv was read twice") == 1  # said once, not again


def test_evaluate_finds_merged_labels_and_other_in_cells_with_spaces(tmp_path, merged_model_dir):
    # An export pads its cells (" 档案馆 ", " 其他 "): the merged label is found under its trimmed
    # name, and a row labelled " 其他 " is the model's 其他, not a label it does not know.
    from tests.conftest import RARE_TICKETS, write_tickets_csv

    model_dir, _ = merged_model_dir
    padded = [(t, x, f" {d} ", c) for t, x, d, c in RARE_TICKETS]
    padded += [(t, x, " 其他 ", c) for t, x, d, c in RARE_TICKETS[:1]]
    data = write_tickets_csv(tmp_path / "padded.csv", padded)
    report_path = tmp_path / "r.json"
    r = runner.invoke(app, ["evaluate", str(model_dir), str(data), "--report", str(report_path)])
    assert r.exit_code == 0, r.output
    assert "does not know" not in " ".join(r.output.split())
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["merged_into_other"] == {"department": {"档案馆": 2, "气象局": 2}}
    dept = report["department"]
    assert dept["unknown_labels"] == {}
    assert dept["per_class"]["其他"]["support"] == 5


def test_paidan_train_on_a_full_disk_names_the_model_directory_it_could_not_write(
    tmp_path, monkeypatch
):
    # A full disk while the model was written ended `paidan train` in a traceback (and `retrain`
    # in "error: [Errno 28] No space left on device"), naming no directory: which disk to free?
    import errno

    import joblib

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    data = write_tiny_csv(tmp_path / "tiny.csv")
    out = tmp_path / "models" / "v1"
    monkeypatch.setattr(joblib, "dump", full)  # model.artifact imports it where it writes
    r = cli_train(data, out)
    assert r.exit_code == 2, r.output
    said = " ".join(r.output.split())
    assert said.endswith(
        f"error: cannot write the model {out}: No space left on device (nothing of it was kept; "
        "free space on that disk and run the command again)"
    ), r.output
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".v1.")]


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [("ctrl-c", 130, "interrupted"), ("sigterm", 143, "stopped by SIGTERM")],
)
def test_paidan_train_stopped_during_the_fit_says_nothing_was_written(
    tmp_path, monkeypatch, stop, code, said
):
    # Ctrl-C ended `paidan train` with an empty stderr (exit 130), and a SIGTERM (timeout,
    # systemctl stop) killed it without unwinding: was a model written to --out, or half of one?
    import signal

    import training.train as training_train

    def stopped(*args, **kwargs):
        if stop == "ctrl-c":
            raise KeyboardInterrupt
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "SIGTERM would kill it"
        signal.raise_signal(signal.SIGTERM)

    data = write_tiny_csv(tmp_path / "tiny.csv")
    out = tmp_path / "models" / "v1"
    monkeypatch.setattr(training_train, "fit_router", stopped)
    r = cli_train(data, out)
    assert r.exit_code == code, r.output
    assert " ".join(r.output.split()).endswith(
        f"{said} before the model was written: nothing was written to {out}; run the same "
        "command again to train it"
    ), r.output
    assert not out.exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    root = tmp_path / "root"  # without --out: a version under the model root
    r = runner.invoke(
        app, ["train", str(data), "--min-examples", "3"], env={"PAIDAN_MODEL_ROOT": str(root)}
    )
    assert r.exit_code == code, r.output
    assert " ".join(r.output.split()).endswith(
        f"{said} before the model was written: no model was added to {root}; run the same "
        "command again to train it"
    ), r.output


def test_paidan_train_that_cannot_write_the_registry_pointer_says_so_in_one_line(
    tmp_path, monkeypatch, tiny_model_dir
):
    # Before writing a second version under the root, train pins the current one in `current`: a
    # full disk there ended `paidan train` in a traceback, where `models promote` and `retrain`
    # say "error: cannot write …/current: No space left on device".
    import errno

    from model import registry

    def full(root, version):
        raise registry.RegistryWriteError(
            errno.ENOSPC, "No space left on device", str(root / registry.CURRENT_FILE)
        )

    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")  # a version, and no pointer yet
    data = write_tiny_csv(tmp_path / "tiny.csv")
    monkeypatch.setattr(registry, "_write_pointer", full)
    r = runner.invoke(
        app,
        ["train", str(data), "--out", str(root / "v2"), "--min-examples", "3"],
        env={"PAIDAN_MODEL_ROOT": str(root)},
    )
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = r.output.strip().splitlines()
    assert lines[-1] == f"error: cannot write {root / 'current'}: No space left on device", r.output
    assert registry.versions(root) == ["v1"]


def test_paidan_train_replacing_the_sample_default_on_a_full_disk_says_the_model_is_not_current(
    tmp_path, monkeypatch, tiny_model_dir
):
    # The first model of the city's replaces the bundled sample's default as current: a full disk
    # there ended in a traceback after "written to …", leaving unsaid that it is not current.
    import errno

    from model import registry

    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "sample")
    meta_path = root / "sample" / "metadata.json"
    meta_path.chmod(0o644)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["training_data"]["bundled_sample"] = True
    meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    (root / registry.CURRENT_FILE).write_text("sample\n", encoding="utf-8")

    def full(root, version):
        raise registry.RegistryWriteError(
            errno.ENOSPC, "No space left on device", str(root / registry.CURRENT_FILE)
        )

    data = write_tiny_csv(tmp_path / "tiny.csv")
    monkeypatch.setattr(registry, "_write_pointer", full)
    r = runner.invoke(
        app,
        ["train", str(data), "--out", str(root / "city"), "--min-examples", "3"],
        env={"PAIDAN_MODEL_ROOT": str(root)},
    )
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert " ".join(r.output.split()).endswith(
        f"error: cannot write {root / 'current'}: No space left on device; city was written but "
        "is not current: once there is space, paidan models promote city"
    ), r.output
    assert registry.current_version(root) == "sample"
