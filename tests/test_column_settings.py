"""PAIDAN_TEXT_COL and its siblings: a centre's own column names, set once for every command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model.artifact import read_metadata
from model.settings import unknown_variables
from paidan.cli import app
from tests.conftest import TINY_TICKETS

runner = CliRunner()

# A 12345 platform's export: its own names for every canonical column.
HEADER = ["工单编号", "诉求标题", "诉求内容", "承办单位", "诉求类别"]
CENTRE = {
    "PAIDAN_ID_COL": "工单编号",
    "PAIDAN_TITLE_COL": "诉求标题",
    "PAIDAN_TEXT_COL": "诉求内容",
    "PAIDAN_DEPARTMENT_COL": "承办单位",
    "PAIDAN_CATEGORY_COL": "诉求类别",
}


def write_export(path: Path) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i, (title, text, dept, cat) in enumerate(TINY_TICKETS, 1):
            w.writerow([f"GD{i:04d}", title, text, dept, cat])
    return path


def run(args: list[str], env: dict[str, str]):
    return runner.invoke(app, args, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The export, a model trained on it with the columns named only by the environment, and what
    train said."""
    root = tmp_path_factory.mktemp("centre")
    export = write_export(root / "export.csv")
    env = {**CENTRE, "PAIDAN_MODEL_ROOT": str(root / "models")}
    r = run(["train", str(export), "--out", str(root / "model"), "--min-examples", "3"], env)
    assert r.exit_code == 0, r.output
    return export, root / "model", r.output


def test_train_reads_the_columns_the_environment_names_and_says_so(trained) -> None:
    _, model, said = trained
    meta = read_metadata(model)
    assert meta["training_data"]["rows"] == len(TINY_TICKETS)
    assert set(meta["heads"]) == {"department", "category"}
    assert set(meta["heads"]["department"]["labels"]) == {"人社", "执法", "住建"}
    # Which of the export's columns the model learnt from, after the environment is gone.
    assert meta["training_data"]["columns"] == {
        "id": "工单编号",
        "title": "诉求标题",
        "text": "诉求内容",
        "department": "承办单位",
        "category": "诉求类别",
        "time": "time",
    }
    flat = " ".join(said.split())
    assert (
        "note: reading the text from '诉求内容' (PAIDAN_TEXT_COL), the title from '诉求标题' "
        "(PAIDAN_TITLE_COL), the id from '工单编号' (PAIDAN_ID_COL), the department from "
        "'承办单位' (PAIDAN_DEPARTMENT_COL), the category from '诉求类别' (PAIDAN_CATEGORY_COL)"
    ) in flat


def test_label_evaluate_and_freeze_eval_read_them_too(trained, tmp_path: Path) -> None:
    export, model, _ = trained
    env = {**CENTRE, "PAIDAN_MODEL_ROOT": str(tmp_path / "models")}
    out = tmp_path / "labelled.csv"
    r = run(["label", str(export), "--model", str(model), "--out", str(out)], env)
    assert r.exit_code == 0, r.output
    with open(out, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["工单编号"] for row in rows] == [f"GD{i:04d}" for i in range(1, 19)]
    assert all(row["pred_department"] in {"人社", "执法", "住建"} for row in rows)
    assert "reading the text from '诉求内容' (PAIDAN_TEXT_COL)" in " ".join(r.output.split())

    report = tmp_path / "report.json"
    r = run(["evaluate", str(model), str(export), "--report", str(report)], env)
    assert r.exit_code == 0, r.output
    scored = json.loads(report.read_text(encoding="utf-8"))
    assert scored["n"] == len(TINY_TICKETS) and {"department", "category"} <= set(scored)

    r = run(["models", "freeze-eval", str(export)], env)
    assert r.exit_code == 0, r.output
    assert "froze 18 tickets" in r.output
    # The stored set frozen again (docs/retraining.md): it holds paidan's own column names, and
    # the variables named the export's, so it was refused ("no column '工单编号'").
    stored = tmp_path / "models" / "eval" / "frozen.parquet"
    r = run(["models", "freeze-eval", str(stored), "--force"], env)
    assert r.exit_code == 0, r.output
    assert "froze 18 tickets" in r.output


def test_an_option_given_wins_over_its_variable(trained, tmp_path: Path) -> None:
    export, model, _ = trained
    env = {**CENTRE, "PAIDAN_TEXT_COL": "内容"}  # not a column of the export
    out = tmp_path / "labelled.csv"
    args = ["label", str(export), "--model", str(model), "--out", str(out)]
    r = run([*args, "--text-col", "诉求内容"], env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "PAIDAN_TEXT_COL" not in said  # the option named the text, not the variable
    assert "the title from '诉求标题' (PAIDAN_TITLE_COL)" in said


def test_an_option_is_read_stripped_as_the_files_column_names_are(trained, tmp_path: Path) -> None:
    # `--text-col ' 诉求内容'` (copied with the space after a comma of the header) named no column:
    # the file's names are read stripped, and PAIDAN_TEXT_COL was too, but not the option.
    export, model, _ = trained
    out = tmp_path / "labelled.csv"
    args = ["label", str(export), "--model", str(model), "--out", str(out)]
    r = run([*args, "--text-col", " 诉求内容 ", "--id-col", "工单编号\t"], {})
    assert r.exit_code == 0, r.output
    with open(out, encoding="utf-8-sig", newline="") as f:
        assert sum(1 for row in csv.DictReader(f) if row["pred_department"]) == len(TINY_TICKETS)


def test_a_variable_naming_an_absent_column_is_refused_after_saying_where_it_came_from(
    trained, tmp_path: Path
) -> None:
    export, model, _ = trained
    env = {**CENTRE, "PAIDAN_TEXT_COL": "内容"}
    r = run(["label", str(export), "--model", str(model), "--out", str(tmp_path / "o.csv")], env)
    assert r.exit_code != 0
    said = " ".join(r.output.split())
    note = said.index("note: reading the text from '内容' (PAIDAN_TEXT_COL)")
    error = said.index("error: ")
    assert note < error
    assert "no column '内容' for the ticket text" in said[error:]
    assert "'诉求内容' looks like the text: --text-col 诉求内容" in said[error:]


def test_canonical_columns_need_no_variable_and_get_no_note(tmp_path: Path, tiny_model_dir) -> None:
    from tests.conftest import write_tiny_csv

    data = write_tiny_csv(tmp_path / "tiny.csv")
    r = run(
        ["label", str(data), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o.csv")], {}
    )
    assert r.exit_code == 0, r.output
    assert "note: reading" not in r.output


def test_an_empty_variable_is_the_canonical_name(trained, tmp_path: Path) -> None:
    # `PAIDAN_TITLE_COL=` in an env file: the canonical `title`, not a column named "".
    from tests.conftest import write_tiny_csv

    _, model, _ = trained
    data = write_tiny_csv(tmp_path / "tiny.csv")
    env = {"PAIDAN_TITLE_COL": " ", "PAIDAN_TEXT_COL": ""}
    r = run(["label", str(data), "--model", str(model), "--out", str(tmp_path / "o.csv")], env)
    assert r.exit_code == 0, r.output
    assert "note: reading" not in r.output


def test_a_variable_that_is_not_text_is_refused_naming_it(trained, tmp_path: Path) -> None:
    # 诉求内容 set from a terminal sending GBK on a UTF-8 server: lone surrogates.
    export, model, _ = trained
    gbk = "诉求内容".encode("gbk").decode("utf-8", "surrogateescape")
    env = {**CENTRE, "PAIDAN_TEXT_COL": gbk}
    r = run(["label", str(export), "--model", str(model), "--out", str(tmp_path / "o.csv")], env)
    assert r.exit_code != 0
    said = " ".join(r.output.split())
    assert "PAIDAN_TEXT_COL: not UTF-8 text" in said
    assert not (tmp_path / "o.csv").exists()


def test_the_column_variables_are_settings_not_unknown_names() -> None:
    # `paidan serve` refuses an unknown PAIDAN_* name: the server and the jobs share one env file.
    assert unknown_variables({**CENTRE, "PAIDAN_TIME_COL": "受理时间"}) == []


def test_retrain_reads_them_and_records_them(trained, tmp_path: Path) -> None:
    export, _, _ = trained
    root = tmp_path / "models"
    env = {**CENTRE, "PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = run(["retrain", "--history", str(export)], env)
    assert r.exit_code == 0, r.output
    assert "reading the text from '诉求内容' (PAIDAN_TEXT_COL)" in " ".join(r.output.split())
    (version,) = [p for p in root.iterdir() if (p / "metadata.json").is_file()]
    columns = read_metadata(version)["training_data"]["columns"]
    assert columns["text"] == "诉求内容" and columns["department"] == "承办单位"


def test_a_column_name_holding_a_number_is_recorded_masked() -> None:
    # A header that is a ticket's first line (a file without a header row) mapped as the text.
    from model.tickets import ColumnMap

    recorded = ColumnMap(text="请回电13912345678", title=None).recorded()
    assert recorded["text"] == "请回电[手机号]"
    assert "title" not in recorded


def test_a_column_name_in_brackets_is_said_as_written(trained, tmp_path: Path) -> None:
    # The note is printed with rich, which read "[b]" as markup: the name lost its brackets.
    export, model, _ = trained
    env = {**CENTRE, "PAIDAN_TEXT_COL": "[b]内容"}
    r = run(["label", str(export), "--model", str(model), "--out", str(tmp_path / "o.csv")], env)
    assert r.exit_code != 0
    assert "reading the text from '[b]内容' (PAIDAN_TEXT_COL)" in " ".join(r.output.split())


def test_a_column_option_given_twice_reads_exports_that_name_the_column_two_ways(
    tmp_path: Path,
) -> None:
    # January's export calls the text 留言详情, February's 详情: the error said to rename the
    # column in a copy of one. Each command takes the option once per name and reads each file
    # from the one it has; a file with both is refused naming both and the file.
    history = tmp_path / "history"
    history.mkdir()
    jan, feb = (history / "2026-01.csv", history / "2026-02.csv")
    write_export(jan)
    write_export(feb)
    for path, name in ((jan, "留言详情"), (feb, "详情")):
        text = path.read_text(encoding="utf-8").replace("诉求内容", name, 1)
        path.write_text(text.replace("GD", path.stem), encoding="utf-8")  # its own ids
    env = {
        **{k: v for k, v in CENTRE.items() if k != "PAIDAN_TEXT_COL"},
        "PAIDAN_MODEL_ROOT": str(tmp_path / "models"),
        "PAIDAN_DATA_DIR": str(tmp_path / "var"),
    }
    both = ["--text-col", "留言详情", "--text-col", "详情"]
    model = tmp_path / "model"
    r = run(["train", str(history), "--out", str(model), "--min-examples", "3", *both], env)
    assert r.exit_code == 0, r.output
    meta = read_metadata(model)
    assert meta["training_data"]["rows"] == 2 * len(TINY_TICKETS)
    assert meta["training_data"]["columns"]["text"] == ["留言详情", "详情"]

    report = tmp_path / "report.json"
    r = run(["evaluate", str(model), str(jan), str(feb), "--report", str(report), *both], env)
    assert r.exit_code == 0, r.output
    assert json.loads(report.read_text(encoding="utf-8"))["n"] == 2 * len(TINY_TICKETS)

    out = tmp_path / "labelled.csv"
    r = run(["label", str(jan), str(feb), "--model", str(model), "--out", str(out), *both], env)
    assert r.exit_code == 0, r.output
    with open(out, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(TINY_TICKETS)
    assert all(row["pred_department"] and not row["error"] for row in rows)

    r = run(["retrain", "--history", str(history), *both], env)
    assert r.exit_code == 0, r.output
    versions = [p for p in (tmp_path / "models").iterdir() if (p / "metadata.json").is_file()]
    assert [read_metadata(v)["training_data"]["columns"]["text"] for v in versions] == [
        ["留言详情", "详情"]
    ]

    # One export holding both names: which is the text cannot be told.
    mixed = tmp_path / "mixed.csv"
    with open(jan, encoding="utf-8") as f:
        lines = f.read().splitlines()
    mixed.write_text(
        "\n".join([lines[0] + ",详情", *(line + ",x" for line in lines[1:])]) + "\n",
        encoding="utf-8",
    )
    for args in (
        ["evaluate", str(model), str(mixed), *both],
        ["label", str(mixed), "--model", str(model), "--out", str(tmp_path / "m.csv"), *both],
    ):
        r = run(args, env)
        assert r.exit_code != 0, r.output
        said = " ".join(r.output.split())
        assert "mixed.csv: has columns '留言详情' and '详情'" in said, said
