"""``paidan retrain --feedback FILE``: the decisions of a saved feedback export (GET /v1/feedback),
for a training machine that cannot reach the serving database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from model import registry
from model.config import TrainingConfig
from tests.conftest import TINY_TICKETS, write_tiny_csv
from training.retrain import (
    FeedbackFileError,
    feedback_frame,
    merge_feedback,
    read_feedback_exports,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def tiny_root(tmp_path: Path, tiny_config: TrainingConfig) -> tuple[Path, Path]:
    """A registry whose current model was trained on the tiny corpus, and that corpus."""
    from training.train import train

    root = tmp_path / "models"
    history = write_tiny_csv(tmp_path / "tiny.csv")
    result = train([history], None, config=tiny_config, model_root=root)
    registry.promote(root, result.router.version)
    return root, history


def server_db(path: Path) -> None:
    """A server's feedback database: a ticket decided twice (the later a joint dispatch), one
    decided once, and a text without an id carrying a phone number."""
    from serve.db import Database

    db = Database(f"sqlite:///{path}")
    db.add_feedback(
        ticket_id="T002", text=TINY_TICKETS[1][1], department="执法", category="城建",
        dispatcher_id="d1", created_at=T0,
    )  # fmt: skip
    db.add_feedback(
        ticket_id="T002", text=TINY_TICKETS[1][1], department="住建；执法", category="城建",
        dispatcher_id="d1", created_at=T0 + timedelta(days=2), request_id="r-2",
    )  # fmt: skip
    db.add_feedback(
        ticket_id="T003", text=TINY_TICKETS[2][1], department="人社", category="劳动保障",
        created_at=T0 + timedelta(days=3),
    )  # fmt: skip
    db.add_feedback(
        text="楼下饭店油烟很大，请联系13812345678", department="城管", category="环境",
        created_at=T0 + timedelta(days=4),
    )  # fmt: skip
    db.dispose()


def server_and_export(tmp_path: Path) -> tuple[Path, Path]:
    """A server's feedback database (:func:`server_db`) under ``tmp_path/server`` and its export
    as ``tmp_path/feedback.jsonl`` (:func:`export`)."""
    db = tmp_path / "server" / "paidan.db"
    db.parent.mkdir()
    server_db(db)
    return db, export(db, tmp_path / "feedback.jsonl")


def export(db_path: Path, out: Path, since: datetime | None = None) -> Path:
    """The database's export, each line written as GET /v1/feedback writes it."""
    from serve.db import Database
    from serve.schemas import FeedbackRecord

    db = Database(f"sqlite:///{db_path}")
    try:
        lines = [
            FeedbackRecord.model_validate(row, from_attributes=True).model_dump_json() + "\n"
            for row in db.iter_feedback(since)
        ]
    finally:
        db.dispose()
    out.write_text("".join(lines), encoding="utf-8")
    return out


def database_records(db_path: Path) -> list[dict]:
    """What retrain reads of the database itself (paidan.cli._feedback_records)."""
    from model.settings import Settings
    from paidan.cli import _feedback_records

    return _feedback_records(Settings(data_dir=db_path.parent), None)


def test_an_export_is_read_as_retrain_reads_the_database(tmp_path: Path) -> None:
    db = tmp_path / "server" / "paidan.db"
    db.parent.mkdir()
    server_db(db)
    read = read_feedback_exports([export(db, tmp_path / "feedback.jsonl")])
    assert read.warnings == []
    from_file, summary = feedback_frame(read.records)
    from_db, expected = feedback_frame(database_records(db))
    # The same rows, each named where it was read: the export's line, the database's row.
    places = ["_source", "_row", "_line"]
    trained = from_file.drop(columns=places).to_dict("records")
    assert trained == from_db.drop(columns=places).to_dict("records")
    assert summary == expected
    assert from_db["_source"].eq("feedback").all() and not from_db["_line"].any()
    assert from_file["_source"].eq(str(tmp_path / "feedback.jsonl")).all()
    assert from_file["_line"].all()
    # Latest decision wins, a joint dispatch is split, the text is masked.
    assert (summary.records, summary.tickets, summary.superseded) == (4, 3, 1)
    t002 = from_file[from_file["id"] == "T002"].iloc[0]
    assert (t002["department"], t002["co_departments"]) == ("住建", "执法")
    assert "13812345678" not in "".join(from_file["text"])


def test_an_export_line_typed_unmasked_is_masked_as_the_database_reads_it(
    tmp_path: Path,
) -> None:
    line = {
        "id": 1,
        "ticket_id": None,
        "title": "电话13812345678",
        "text": "请回电13812345678",
        "department": "网格员13812345678",
        "category": None,
        "created_at": "2026-03-01T08:00:00Z",
    }
    path = tmp_path / "feedback.jsonl"
    path.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    (record,) = read_feedback_exports([path]).records
    assert "13812345678" not in f"{record['title']}{record['text']}{record['department']}"
    assert record["created_at"] == T0


def test_decisions_in_the_database_and_an_export_are_read_once(tmp_path: Path) -> None:
    db = tmp_path / "server" / "paidan.db"
    db.parent.mkdir()
    server_db(db)
    mine = database_records(db)
    saved = read_feedback_exports([export(db, tmp_path / "feedback.jsonl")]).records
    # Another server's decision numbered 1 too, made at another time: a decision of its own.
    other = {**saved[0], "created_at": T0 + timedelta(days=5), "request_id": None}
    # A save sent again to another server with the same request_id: the same decision.
    resent = {**saved[1], "id": 99, "created_at": T0 + timedelta(days=6)}
    merged, repeated = merge_feedback(mine, [*saved, other, resent])
    assert repeated == len(saved) + 1
    assert len(merged) == len(mine) + 1 and merged[-1]["created_at"] == other["created_at"]
    # Two overlapping exports (the second made again from a time): each decision once.
    again = export(db, tmp_path / "again.jsonl", since=T0 + timedelta(days=2))
    assert len(read_feedback_exports([tmp_path / "feedback.jsonl", again]).records) == 4


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("{not json", "line 2: not JSON"),
        ("[1, 2]", "line 2: is list, not a JSON object"),
        ('{"id": 2, "text": "x"}', "line 2: has no created_at"),
        ('{"id": 2, "text": "x", "created_at": "yesterday"}', "line 2: created_at must be a time"),
        ('{"id": "2", "text": "x", "created_at": "2026-03-01"}', "line 2: id must be"),
        (
            '{"id": 2, "text": "x", "created_at": "2026-03-01", "department": 7}',
            "line 2: department must",
        ),
        # Labels under other keys (an export converted by hand): 196 decisions trained nothing,
        # told only as "196 rows have no department label".
        (
            '{"id": 2, "text": "x", "created_at": "2026-03-01", "承办单位": "城管"}',
            "line 2: has neither department nor category (its keys: id, text, created_at, "
            "承办单位)",
        ),
    ],
)
def test_a_bad_export_line_is_refused_naming_the_file_and_line(
    tmp_path: Path, line: str, said: str
) -> None:
    path = tmp_path / "feedback.jsonl"
    first = '{"id": 1, "text": "油烟", "created_at": "2026-03-01T08:00:00Z", "department": "城管"}'
    path.write_text(f"{first}\n{line}\n", encoding="utf-8")
    with pytest.raises(FeedbackFileError) as e:
        read_feedback_exports([path])
    assert str(e.value).startswith(f"{path} {said}"), str(e.value)


def test_a_cut_export_is_refused_unless_the_export_made_again_is_given_too(
    tmp_path: Path,
) -> None:
    db = tmp_path / "server" / "paidan.db"
    db.parent.mkdir()
    server_db(db)
    full = export(db, tmp_path / "full.jsonl").read_text(encoding="utf-8").splitlines()
    last = json.loads(full[1])["created_at"]
    cut = tmp_path / "cut.jsonl"
    note = {"export_error": "export incomplete: … after 2 rows", "since": last}
    cut.write_text("\n".join([*full[:2], json.dumps(note)]) + "\n", encoding="utf-8")
    with pytest.raises(FeedbackFileError) as e:
        read_feedback_exports([cut])
    said = str(e.value)
    assert said.startswith(f"{cut} line 3: the export is incomplete (export incomplete"), said
    assert "export again with that since and give both files with --feedback" in said, said
    rest = export(db, tmp_path / "rest.jsonl", since=datetime.fromisoformat(last))
    read = read_feedback_exports([cut, rest])
    assert len(read.records) == 4
    (warning,) = read.warnings
    assert warning.startswith(f"{cut} line 3: the export stopped there"), warning
    assert str(rest) in warning
    # A line after the note: not an export as the server writes it.
    cut.write_text("\n".join([*full[:2], json.dumps(note), full[2]]) + "\n", encoding="utf-8")
    with pytest.raises(FeedbackFileError, match=r"cut\.jsonl line 4: follows the line 3"):
        read_feedback_exports([cut, rest])


def test_retrain_trains_an_export_where_the_database_is_out_of_reach(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # An air-gapped training machine: the server's database is not there, its export is.
    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    db, saved = server_and_export(tmp_path)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    args = ["retrain", "--history", str(history), "--feedback", str(saved)]
    r = CliRunner().invoke(app, [*args, "--feedback-since", "2026-03-02"], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert f"feedback: 4 record(s) read from {saved}" in said, said
    assert "no feedback read" not in said, said
    assert "(1 older left out)" in said, said
    assert "(3 feedback records for 3 tickets, 0 superseded by a later decision" in said, said
    (challenger,) = [v for v in registry.versions(root) if v != registry.current_version(root)]
    meta = json.loads((root / challenger / "metadata.json").read_text(encoding="utf-8"))
    assert meta["training_data"]["sources"]["feedback"] == 3
    # Where the database is there too, its decisions are read once.
    env["PAIDAN_DATA_DIR"] = str(db.parent)
    r = CliRunner().invoke(app, [*args, "--again"], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert f"feedback: 0 record(s) (4 already read) read from {saved}" in said, said
    assert "(4 feedback records for 3 tickets, 1 superseded by a later decision" in said, said


def test_retrain_with_an_export_does_not_need_a_database_it_cannot_reach(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # The training machine keeps the server's settings file, whose PostgreSQL it cannot reach:
    # the retrain stopped at "cannot read feedback", the export it was given unread.
    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    _, saved = server_and_export(tmp_path)
    url = "postgresql+psycopg://paidan:secret-pw@127.0.0.1:1/paidan"  # port 1 refuses at once
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATABASE_URL": url}
    args = ["retrain", "--history", str(history), "--feedback", str(saved)]
    r = CliRunner().invoke(app, args, env=env)
    said = " ".join(r.output.split())
    assert r.exit_code == 0, said
    assert "secret-pw" not in said
    assert (
        "warning: cannot read feedback from postgresql+psycopg://paidan:***@127.0.0.1:1/paidan "
        "(PAIDAN_DATABASE_URL): OperationalError" in said
    ), said
    assert "the decisions of the --feedback files alone are read" in said, said
    assert "(feedback database not reached)" in said, said
    assert f"feedback: 4 record(s) read from {saved}" in said, said
    assert "(4 feedback records for 3 tickets, 1 superseded by a later decision" in said, said
    # Without an export, the database is the only feedback: still an error.
    r = CliRunner().invoke(app, args[:3], env=env)
    assert r.exit_code == 2, r.output
    assert "cannot read feedback from" in " ".join(r.output.split())


def test_drift_reads_an_export_as_it_reads_the_database(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A training machine without the server's database checked drift on nothing: drift had no
    # --feedback, and read an empty (absent) database, "0 feedback records".
    from typer.testing import CliRunner

    from paidan.cli import app
    from serve.db import Database

    db = tmp_path / "server" / "paidan.db"
    db.parent.mkdir()
    server_db(db)
    with_suggestion = Database(f"sqlite:///{db}")
    with_suggestion.add_feedback(
        ticket_id="T009", text=TINY_TICKETS[3][1], department="人社", category="劳动保障",
        suggestion={"department": {"decision": "review"}, "category": {"decision": "auto"}},
        created_at=T0 + timedelta(days=5),
    )  # fmt: skip
    with_suggestion.dispose()
    saved = export(db, tmp_path / "feedback.jsonl")
    args = ["drift", "--since", "2026-03-02", "--model", str(tiny_model_dir)]
    reports = []
    for data_dir, given in ((db.parent, []), (tmp_path / "var", ["--feedback", str(saved)])):
        out = tmp_path / f"drift-{len(reports)}.json"
        env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(data_dir)}
        r = CliRunner().invoke(app, [*args, *given, "--out", str(out)], env=env)
        assert r.exit_code == 0, r.output
        reports.append(json.loads(out.read_text(encoding="utf-8")))
    said = " ".join(r.output.split())
    assert f"feedback: 4 record(s) read from {saved}" in said, said
    assert "no feedback read" not in said, said
    from_db, from_file = reports
    assert from_file == from_db
    assert from_file["records"] == 4  # the decision before --since is left out
    assert from_file["review_share"]["with_suggestion"] == 1
    # Nor does it need a database it cannot reach, when it is given the export.
    url = "postgresql+psycopg://paidan:secret-pw@127.0.0.1:1/paidan"  # port 1 refuses at once
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATABASE_URL": url}
    out = tmp_path / "drift-unreached.json"
    r = CliRunner().invoke(app, [*args, "--feedback", str(saved), "--out", str(out)], env=env)
    said = " ".join(r.output.split())
    assert r.exit_code == 0, said
    assert "the decisions of the --feedback files alone are read" in said, said
    assert json.loads(out.read_text(encoding="utf-8")) == from_db


def test_warnings_on_an_exports_decisions_name_its_file_and_line(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # They named "feedback data row 7", the decision's id: no row of any file the administrator
    # has, while the reader's own errors name "feedback.jsonl line 8".
    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root

    def line(fid: int, tid: str, text: str, dept: str | None, who: str, day: int) -> str:
        at = (T0 + timedelta(days=day)).isoformat()
        return json.dumps(
            {"id": fid, "ticket_id": tid, "text": text, "department": dept, "category": "城建",
             "dispatcher_id": who, "created_at": at},
            ensure_ascii=False,
        )  # fmt: skip

    saved = tmp_path / "feedback.jsonl"
    lines = [
        line(1, "T002", TINY_TICKETS[1][1], "执法", "d1", 0),
        "",  # a blank line: the lines are not the decisions' numbers
        line(2, "T002", TINY_TICKETS[1][1], "住建", "d2", 1),  # another dispatcher's label
        line(3, "77", "楼下垃圾站臭味很大", "城管", "d1", 2),
        line(4, "77", "公交站牌被撞坏了", "交通", "d1", 3),  # 77 names two tickets
        line(5, "T900", "邻居家的狗每天晚上叫", None, "d1", 4),  # no department
    ]
    saved.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(
        app, ["retrain", "--history", str(history), "--feedback", str(saved)], env=env
    )
    said = " ".join(r.output.split())
    assert r.exit_code == 0, said
    assert "feedback data row" not in said, said
    assert f"(e.g. '77': {saved} line 4, {saved} line 5)" in said, said
    assert f"different dispatchers (e.g. {saved} lines 1, 3)" in said, said
    assert f"no department label, so it trains no department head: {saved} line 6" in said, said


def test_the_challenger_records_the_exports_it_was_trained_on(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # Its metadata.json said "feedback: 3 rows" and nothing of where they came from: which
    # export, as it was then, a model was trained on could not be told afterwards.
    import hashlib

    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    _, saved = server_and_export(tmp_path)
    extra = tmp_path / "other-server.jsonl"  # another server's decision, and one repeated
    lines = saved.read_text(encoding="utf-8").splitlines()
    other = {**json.loads(lines[2]), "id": 7, "ticket_id": "X7", "request_id": None}
    other["created_at"] = (T0 + timedelta(days=9)).isoformat()
    extra.write_text(f"{lines[3]}\n{json.dumps(other, ensure_ascii=False)}\n", encoding="utf-8")
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    args = ["retrain", "--history", str(history), "--feedback", str(saved)]
    r = CliRunner().invoke(
        app, [*args, "--feedback", str(extra), "--feedback-since", "2026-03-02"], env=env
    )
    assert r.exit_code == 0, r.output
    (challenger,) = [v for v in registry.versions(root) if v != registry.current_version(root)]
    meta = json.loads((root / challenger / "metadata.json").read_text(encoding="utf-8"))
    files = meta["training_data"]["feedback_files"]
    assert files == [
        {
            "name": str(path),
            "path": str(path.resolve()),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "records": records,
            "rows_used": used,
        }
        # feedback.jsonl: 4 decisions, the first before --feedback-since (and superseded);
        # the other file's first decision is feedback.jsonl's last, read once from there.
        for path, records, used in ((saved, 4, 3), (extra, 2, 1))
    ]
    assert sum(f["rows_used"] for f in files) == meta["training_data"]["sources"]["feedback"]


@pytest.mark.parametrize("cut", [12, 20], ids=["in-ascii", "in-a-character"])
def test_an_export_cut_in_the_middle_of_a_line_is_refused_as_cut_short(
    tmp_path: Path, cut: int
) -> None:
    # A download that stopped (curl killed, a full disk) leaves the last line half written: it
    # was refused as "not JSON (Unterminated string …)" or "'utf-8' codec can't decode byte",
    # which told the administrator nothing of what had happened or what to do.
    first = '{"id": 1, "text": "油烟", "created_at": "2026-03-01T08:00:00Z", "department": "城管"}'
    second = (
        '{"id": 2, "text": "楼下饭店油烟很大很大很大很大", "created_at": "2026-03-02T08:00:00Z"}'
    )
    start = len(first.encode()) + 1  # the second line's first byte
    data = f"{first}\n{second}\n".encode()
    path = tmp_path / "feedback.jsonl"
    path.write_bytes(data[: start + cut])  # 20: within 楼, the text's first character
    with pytest.raises(FeedbackFileError) as e:
        read_feedback_exports([path])
    said = str(e.value)
    assert said.startswith(f"{path} line 2: the file ends in the middle of this line"), said
    assert "cut short" in said and "export it again" in said, said
    # The same broken line with a line after it is a bad line, not a cut.
    path.write_bytes(data[: start + cut] + b"\n" + first.encode() + b"\n")
    with pytest.raises(FeedbackFileError) as e:
        read_feedback_exports([path])
    assert "cut short" not in str(e.value)


def test_an_export_from_models_this_registry_never_held_is_warned_of(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # Another deployment's export (or one of decisions on the bundled sample's default) trains
    # its labels as new ones: 20 "new department" lines, nothing naming the file they came from.
    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    current = registry.current_version(root)

    def decision(fid: int, version: str | None) -> str:
        return json.dumps(
            {"id": fid, "ticket_id": f"X{fid}", "text": f"第{fid}号投诉：路灯坏了没人修",
             "department": "市住建局", "category": "城乡建设", "model_version": version,
             "created_at": (T0 + timedelta(hours=fid)).isoformat()},
            ensure_ascii=False,
        )  # fmt: skip

    foreign = tmp_path / "other.jsonl"
    foreign.write_text(
        "\n".join(decision(i, "20261201T000000Z-7a513df8") for i in range(1, 4))
        + f"\n{decision(4, None)}\n",
        encoding="utf-8",
    )
    ours = tmp_path / "ours.jsonl"
    ours.write_text(f"{decision(5, current)}\n{decision(6, None)}\n", encoding="utf-8")
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    args = ["retrain", "--history", str(history), "--feedback", str(foreign)]
    r = CliRunner().invoke(app, [*args, "--feedback", str(ours)], env=env)
    said = " ".join(r.output.split())
    assert r.exit_code == 0, said
    assert (
        f"warning: {foreign}: its 3 decisions with a model version were made on suggestions of "
        "a model this registry has never held (20261201T000000Z-7a513df8)"
    ) in said, said
    assert "another deployment's" in said, said
    assert f"warning: {ours}" not in said, said


def test_a_directory_given_as_an_export_is_refused_as_one(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # drift said "--out drift.json is inside the input exports" (an option rightly given), and
    # retrain "[Errno 21] Is a directory": neither that --feedback takes one file per option.
    from typer.testing import CliRunner

    from paidan.cli import app

    exports = tmp_path / "exports"
    exports.mkdir()
    with pytest.raises(FeedbackFileError) as e:
        read_feedback_exports([exports])
    assert str(e.value).startswith(f"{exports} is a directory; --feedback takes"), str(e.value)
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    args = ["drift", "--since", "2026-01-01", "--model", str(tiny_model_dir)]
    r = CliRunner().invoke(
        app, [*args, "--feedback", str(exports), "--out", str(exports / "d.json")], env=env
    )
    said = " ".join(r.output.split())
    assert r.exit_code == 2, said
    assert said.startswith(f"error: {exports} is a directory; --feedback takes"), said
