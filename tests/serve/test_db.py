"""The feedback store's own behaviour: schema attempts, migrations, engines (SQLite; PostgreSQL's
counterparts are in test_postgres.py)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

import serve.db
from serve.db import Database, DatabaseUnavailable, without_where
from tests.docs_text import documentation

WAIT_S = 30  # a guard against a hang, not a timing assertion


def test_no_caller_waits_for_another_callers_attempt_to_reach_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database that does not answer at start-up: requests queued on the migration lock, each
    # waiting out its own connect timeout, until they held every thread routing needs too.
    attempts: list[str] = []
    entered, release = threading.Event(), threading.Event()

    migrate = serve.db.upgrade

    def upgrade(engine: Any, **options: Any) -> None:
        attempts.append("attempt")
        if len(attempts) == 1:
            raise OperationalError("SELECT 1", {}, Exception("connection timeout expired"))
        entered.set()
        assert release.wait(WAIT_S)  # a database that does not answer, until the test lets it
        # Then it answers: the schema is made (/readyz reads its revision).
        migrate(engine, **options)

    monkeypatch.setattr(serve.db, "upgrade", upgrade)
    db = Database(f"sqlite:///{tmp_path / 'paidan.db'}", retry_interval=0.01)
    try:
        state = db.check()  # start-up's attempt
        assert state["ok"] is False and "connection timeout expired" in state["reason"]
        assert entered.wait(WAIT_S)  # the background retry is now stuck on the database
        outcomes: list[Any] = []

        def request() -> None:
            try:
                db.add_feedback(text="某投诉", department="人社")
                outcomes.append("stored")
            except DatabaseUnavailable as e:
                outcomes.append(e)
            outcomes.append(db.check())

        callers = [threading.Thread(target=request) for _ in range(5)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(WAIT_S)
        assert not any(t.is_alive() for t in callers), "a request waited for the retry's attempt"
        failures = [o for o in outcomes if isinstance(o, DatabaseUnavailable)]
        assert len(failures) == 5 and all("connection timeout" in str(f) for f in failures)
        assert all(o["ok"] is False for o in outcomes if isinstance(o, dict))
        assert len(attempts) == 2  # the requests did not try themselves
        release.set()  # the database answers: the background attempt succeeds
        for _ in range(WAIT_S * 100):
            if db.check()["ok"]:
                break
            threading.Event().wait(0.01)
        assert db.check() == {"ok": True, "backend": "sqlite"}
    finally:
        release.set()
        db.dispose()


def test_a_sqlite_migration_that_fails_part_way_is_rolled_back_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pysqlite committed each CREATE TABLE / CREATE INDEX on its own: a migration that failed after
    # the table (disk full at the first start) left it without its alembic_version row, and every
    # later start failed with "table feedback already exists", feedback off for good.
    from alembic.operations import Operations
    from sqlalchemy import inspect, text

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    real = Operations.create_index

    def disk_full(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ix_feedback_ticket_id":
            raise OperationalError("CREATE INDEX", {}, Exception("database or disk is full"))
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(Operations, "create_index", disk_full)
    with pytest.raises(DatabaseUnavailable, match="disk is full"):
        Database(url).ensure_schema()
    db = Database(url)
    try:
        assert inspect(db.engine).get_table_names() == []  # nothing of it was kept
        monkeypatch.setattr(Operations, "create_index", real)
        db.ensure_schema()  # the disk has room again
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
        assert db.add_feedback(text="某投诉", department="人社").id == 1
    finally:
        db.dispose()


def test_retrain_reads_no_stored_suggestion_and_drift_only_its_decision(tmp_path: Path) -> None:
    # Every row was read whole, each stored suggestion (the full /v1/route answer, ~12 KB in
    # memory) parsed, though retraining never uses it: +620 MB per 50,000 rows, OOM over time.
    from sqlalchemy import Engine, event

    from model.settings import Settings
    from paidan.cli import _feedback_records

    settings = Settings(data_dir=tmp_path)
    db = Database(settings.resolved_database_url)
    big = {"department": {"label": "人社", "decision": "auto"}, "note": "建议" * 1000}
    db.add_feedback(ticket_id="T1", text="拖欠工资", department="人社", suggestion=big)
    db.dispose()
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        [record] = _feedback_records(settings, None)
        reads = [s for s in statements if "FROM feedback" in s]
        assert reads and not any("suggestion" in s for s in reads)
        assert "suggestion" not in record
        assert (record["ticket_id"], record["text"], record["department"]) == (
            "T1",
            "拖欠工资",
            "人社",
        )
        assert record["id"] == 1 and record["created_at"].tzinfo is not None
        [record] = _feedback_records(settings, None, with_decision=True)
        assert record["suggestion"] == {"decision": "auto"}
    finally:
        event.remove(Engine, "before_cursor_execute", seen)


def test_retrain_and_drift_say_the_feedback_database_failed(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # They printed a bare "OperationalError: connection failed ...", naming neither the feedback
    # database nor PAIDAN_DATABASE_URL (serve and db upgrade did).
    from typer.testing import CliRunner

    from paidan.cli import app

    url = "postgresql+psycopg://paidan:secret-pw@127.0.0.1:1/paidan"  # port 1 refuses at once
    env = {"PAIDAN_DATABASE_URL": url, "PAIDAN_MODEL_ROOT": str(tmp_path / "models")}
    history = tmp_path / "h.csv"
    history.write_text("text,department\n拖欠工资,人社\n", encoding="utf-8")
    for args in (["retrain", "--history", str(history)], ["drift", "--since", "2026-01-01"]):
        if args[0] == "drift":
            args += ["--model", str(tiny_model_dir), "--out", str(tmp_path / "d.json")]
        result = CliRunner().invoke(app, args, env=env)
        said = " ".join(result.output.split())
        assert result.exit_code == 2, said
        assert (
            "cannot read feedback from postgresql+psycopg://paidan:***@127.0.0.1:1/paidan "
            "(PAIDAN_DATABASE_URL): OperationalError" in said
        ), said
        assert "secret-pw" not in said


def test_a_page_of_feedback_seeks_its_key_on_the_index(tmp_path: Path) -> None:
    # The key was `created_at > :at OR (created_at = :at AND id > :id)`, which no index answers:
    # each page read every row after it (with `since`, every row after that), and a full read
    # (retrain, drift, export) grew with the square of the table (1 M rows: 600k->700k in 25 s).
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, select

    from serve.db import Feedback, _page

    db = Database(f"sqlite:///{tmp_path / 'paidan.db'}")
    try:
        db.ensure_schema()
        start = datetime(2026, 1, 1, tzinfo=UTC)
        with db.engine.begin() as conn:  # three rows per second: keys that share a time
            conn.execute(
                insert(Feedback),
                [
                    {
                        "text": "某投诉",
                        "department": "人社",
                        "created_at": start + timedelta(seconds=i // 3),
                    }
                    for i in range(30)
                ],
            )
        at = start + timedelta(seconds=4)

        def plan(since: datetime | None) -> list[str]:
            compiled = _page(select(Feedback.id), since, (at, 13), 5).compile(db.engine)
            params = compiled.construct_params()
            args = [
                str(v.replace(tzinfo=None)) if isinstance(v, datetime) else v
                for v in (params[name] for name in compiled.positiontup or ())
            ]
            with db.engine.connect() as conn:
                found = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(args))
                return [row[3] for row in found]

        for since in (None, start - timedelta(days=1)):
            [step] = plan(since)  # a seek on the index, no sort, read from the key on
            assert step.startswith("SEARCH") and "INDEX ix_feedback_created_at (" in step, since
            # The key implies `since`; beside it SQLite seeks on `since` and reads from there.
            assert "created_at >=" not in str(_page(select(Feedback.id), since, (at, 13), 5))
        page = db.feedback_page(start + timedelta(seconds=5), (at, 13), 5)
        assert [row.id for row in page] == [16, 17, 18, 19, 20]  # `since` after the key: kept
        later = start + timedelta(seconds=7)
        assert [row.id for row in db.feedback_page(later, (at, 13), 5)] == [22, 23, 24, 25, 26]
        assert [row["id"] for row in db.iter_columns(["department"], start, page=4)] == list(
            range(1, 31)
        )
        assert [row.id for row in db.iter_feedback(at, page=4)] == list(range(13, 31))
    finally:
        db.dispose()


def test_a_feedback_table_left_without_its_revision_is_adopted_or_refused_saying_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # paidan before 495f6e5 committed each CREATE of a SQLite migration on its own: a first start
    # that failed part-way (a full disk) left the table and no revision, and every later start and
    # `paidan db upgrade` failed with "table feedback already exists", with no way out.
    from sqlalchemy import inspect, text

    for n, left in enumerate(("DELETE FROM alembic_version", "DROP TABLE alembic_version")):
        url = f"sqlite:///{tmp_path / f'half{n}.db'}"
        db = Database(url)
        db.ensure_schema()
        db.add_feedback(text="某投诉", department="人社")
        with db.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_feedback_ticket_id"))  # the step the disk stopped
            conn.execute(text(left))
        db.dispose()
        db = Database(url)
        try:
            with caplog.at_level("WARNING", logger="serve.db"):
                db.ensure_schema()
            assert "marked at 0002 and its rows are kept" in caplog.text
            with db.engine.connect() as conn:
                assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
                    "0003"
                )
            indexes = {i["name"] for i in inspect(db.engine).get_indexes("feedback")}
            assert indexes == {
                "ix_feedback_created_at",
                "ix_feedback_ticket_id",
                "ix_feedback_request_id",
            }
            assert [row.text for row in db.iter_feedback()] == ["某投诉"]
        finally:
            db.dispose()

    url = f"sqlite:///{tmp_path / 'other.db'}"
    db = Database(url)
    try:
        with db.engine.begin() as conn:  # another application's table of that name
            conn.execute(text("CREATE TABLE feedback (id INTEGER PRIMARY KEY, body TEXT)"))
        with pytest.raises(DatabaseUnavailable) as refused:
            db.ensure_schema()
        said = str(refused.value)
        assert "a table feedback but no paidan schema revision, and its columns (body, id)" in said
        assert "ALTER TABLE feedback RENAME TO feedback_old" in said
        assert inspect(db.engine).get_table_names() == ["feedback"]  # left as it was
    finally:
        db.dispose()


def test_readyz_says_a_database_that_cannot_be_written_is_not_ok(tmp_path: Path) -> None:
    # A store that can be read but not written (a SQLite file or filesystem turned read-only):
    # every save answered 503 while /readyz said `database: ok`, and no alert fired.
    path = tmp_path / "paidan.db"
    db = Database(f"sqlite:///{path}")
    read_only = Database(f"sqlite:///file:{path}?mode=ro&uri=true", migrate=False)
    try:
        db.add_feedback(text="某投诉", department="人社")
        wal = path.with_name("paidan.db-wal").read_bytes()
        assert db.check() == {"ok": True, "backend": "sqlite"}
        assert path.with_name("paidan.db-wal").read_bytes() == wal  # the probe wrote nothing
        with pytest.raises(DatabaseUnavailable, match="readonly"):
            read_only.add_feedback(text="某投诉", department="人社")
        state = read_only.check()
        assert state["ok"] is False, state
        assert state["reason"] == (
            "the database cannot be written (OperationalError: attempt to write a readonly "
            "database): feedback cannot be saved"
        )
        assert [row.text for row in read_only.iter_feedback()] == ["某投诉"]  # still read
    finally:
        read_only.dispose()
        db.dispose()


def test_a_save_that_fails_at_the_commit_says_the_row_may_be_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database that stalls at the COMMIT (the watchdog then cuts the connection) carries it out
    # when it resumes: the 503 said only "unavailable", the client saved again, stored twice.
    import sqlite3

    db = Database(f"sqlite:///{tmp_path / 'paidan.db'}")
    try:
        db.ensure_schema()

        def cut(_dbapi_connection: Any) -> None:
            raise sqlite3.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(db.engine.dialect, "do_commit", cut)
        with pytest.raises(DatabaseUnavailable) as failed:
            db.add_feedback(text="某投诉", department="人社")
        assert str(failed.value) == (
            "OperationalError: server closed the connection unexpectedly; this happened at the "
            "commit, so the row may have been stored: look for it in the export (GET "
            "/v1/feedback, its ticket_id) before saving it again"
        )
        monkeypatch.undo()
        with pytest.raises(DatabaseUnavailable) as refused:  # before the commit: not stored
            db.add_feedback(text=None, department="人社")
        assert "may have been stored" not in str(refused.value)
    finally:
        db.dispose()


def test_readyz_does_not_wait_for_another_connections_write_and_call_it_read_only(
    tmp_path: Path,
) -> None:
    # The writability probe took the write lock: while another connection held a write transaction
    # (another worker's save, `paidan db upgrade`, an sqlite3 session, VACUUM) it waited busy_timeout
    # and then said "cannot be written (database is locked)", taking a healthy instance out of a
    # load balancer. Busy is not read-only.
    path = tmp_path / "paidan.db"
    db = Database(f"sqlite:///{path}")
    writer = sqlite3.connect(path, isolation_level=None, timeout=WAIT_S)
    try:
        db.add_feedback(text="某投诉", department="人社")
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM feedback")
        assert db.check() == {"ok": True, "backend": "sqlite"}
        with db.engine.connect() as conn:  # saves still wait for the lock as long as before
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
        writer.execute("ROLLBACK")
        db.add_feedback(text="另一投诉", department="人社")
        assert [row.text for row in db.iter_feedback()] == ["某投诉", "另一投诉"]
    finally:
        writer.close()
        db.dispose()


def test_a_database_at_revision_0001_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    # Revision 0002 adds the request_id column (the save's idempotency key) and its unique index.
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import IntegrityError

    url = f"sqlite:///{tmp_path / 'old.db'}"
    serve.db.upgrade(url, "0001")
    with serve.db.make_engine(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feedback (text, department, created_at) "
                "VALUES ('旧投诉', '人社', '2026-01-01 00:00:00')"
            )
        )
    db = Database(url)
    try:
        db.ensure_schema()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
        [unique] = [
            i
            for i in inspect(db.engine).get_indexes("feedback")
            if i["name"] == "ix_feedback_request_id"
        ]
        assert unique["unique"] and unique["column_names"] == ["request_id"]
        assert [(r.text, r.request_id) for r in db.iter_feedback()] == [("旧投诉", None)]
        first = db.add_feedback(text="新投诉", department="人社", request_id="r-1")
        again = db.add_feedback(text="新投诉", department="人社", request_id="r-1")
        assert again.id == first.id
        db.add_feedback(text="又一条", department="人社")  # NULLs never collide
        assert len(list(db.iter_feedback())) == 3
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO feedback (text, department, created_at, request_id) "
                    "VALUES ('x', '人社', '2026-01-01 00:00:00', 'r-1')"
                )
            )
    finally:
        db.dispose()


def test_an_insert_refused_by_the_unique_request_id_returns_the_row_stored_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two saves with one request_id at once: both find none stored, the second INSERT is refused
    # by the unique index, and it answers the first's row instead of a 503.
    db = Database(f"sqlite:///{tmp_path / 'race.db'}")
    try:
        first = db.add_feedback(text="某投诉", department="人社", request_id="same")
        monkeypatch.setattr(db, "feedback_by_request_id", _none_then(db.feedback_by_request_id))
        assert db.add_feedback(text="某投诉", department="人社", request_id="same").id == first.id
        assert len(list(db.iter_feedback())) == 1
    finally:
        db.dispose()


def _none_then(lookup: Any) -> Any:
    calls = []

    def wrapped(request_id: str) -> Any:
        calls.append(request_id)
        return None if len(calls) == 1 else lookup(request_id)

    return wrapped


def test_a_revision_0001_table_left_without_its_revision_is_adopted_then_upgraded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A 0001 table restored without alembic_version is marked at 0001, then migration 0002 runs.
    from sqlalchemy import inspect, text

    url = f"sqlite:///{tmp_path / 'restored.db'}"
    serve.db.upgrade(url, "0001")
    engine = serve.db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    db = Database(url)
    try:
        with caplog.at_level("WARNING", logger="serve.db"):
            db.ensure_schema()
        assert "marked at 0001 and its rows are kept" in caplog.text
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
        assert "request_id" in {c["name"] for c in inspect(db.engine).get_columns("feedback")}
    finally:
        db.dispose()


def _schema(engine: Any) -> tuple[set[str], dict[str, tuple[tuple[str, ...], bool]]]:
    from sqlalchemy import inspect

    inspector = inspect(engine)
    columns = {c["name"] for c in inspector.get_columns("feedback")}
    indexes = {
        i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
        for i in inspector.get_indexes("feedback")
    }
    return columns, indexes


def test_a_downgrade_gives_back_the_schema_an_earlier_paidan_reads_and_keeps_the_rows(
    tmp_path: Path,
) -> None:
    # Once revision 0002 was applied, the paidan before it refused the database at every start
    # (alembic: "Can't locate revision identified by '0002'"), routing down with it, and nothing
    # took the database back.
    from sqlalchemy import text

    old = f"sqlite:///{tmp_path / 'old.db'}"
    serve.db.upgrade(old, "0001")
    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    db = Database(url)
    try:
        db.add_feedback(text="旧投诉", department="人社")
        db.add_feedback(text="新投诉", department="住建", request_id="r-1")
    finally:
        db.dispose()
    assert serve.db.downgrade(url, "0001") == "0003"
    engine = serve.db.make_engine(url)
    reference = serve.db.make_engine(old)
    try:
        assert _schema(engine) == _schema(reference)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
            assert conn.execute(
                text("SELECT text, department FROM feedback ORDER BY id")
            ).all() == [
                ("旧投诉", "人社"),
                ("新投诉", "住建"),
            ]
    finally:
        engine.dispose()
        reference.dispose()
    assert serve.db.downgrade(url, "0001") == "0001"  # there already: nothing done
    assert serve.db.current_revision(url) == "0001"
    serve.db.upgrade(url)  # and forward again, as the newer paidan's start does
    assert serve.db.current_revision(url) == "0003"


def _department_width(engine: Any) -> int | None:
    from sqlalchemy import inspect

    [column] = [c for c in inspect(engine).get_columns("feedback") if c["name"] == "department"]
    return column["type"].length


def test_revision_0003_widens_the_department_column_for_joint_dispatches(tmp_path: Path) -> None:
    # The department column was 100 characters wide, one name's width: a joint dispatch naming
    # several departments did not fit (PostgreSQL refuses a longer value).
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    serve.db.upgrade(url, "0002")
    with serve.db.make_engine(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feedback (text, department, created_at, request_id) "
                "VALUES ('旧投诉', '人社', '2026-01-01 00:00:00', 'r-1')"
            )
        )
    serve.db.upgrade(url)
    engine = serve.db.make_engine(url)
    fresh = serve.db.make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        serve.db.upgrade(fresh)
        assert serve.db.current_revision(url) == "0003"
        assert _department_width(engine) == serve.db.MAX_DEPARTMENTS_CHARS
        assert _schema(engine) == _schema(fresh)  # indexes kept through SQLite's table copy
        with engine.connect() as conn:
            assert conn.execute(
                text("SELECT text, department, request_id FROM feedback")
            ).all() == [("旧投诉", "人社", "r-1")]
    finally:
        engine.dispose()
        fresh.dispose()


def test_a_downgrade_below_0003_refuses_joint_dispatches_too_long_for_the_old_column(
    tmp_path: Path,
) -> None:
    # Cut to 100 characters, a joint dispatch would lose co-departments without a word (and
    # PostgreSQL refuses the narrower column with a bare "value too long"): the downgrade is
    # refused, naming the rows, and nothing is changed.
    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    long_joint = "；".join(f"市第{n}部门办公室" for n in range(12))
    assert len(long_joint) > 100
    db = Database(url)
    try:
        db.add_feedback(text="投诉一", department="人社")
        db.add_feedback(text="投诉二", department=long_joint)
    finally:
        db.dispose()
    with pytest.raises(ValueError) as refused:
        serve.db.downgrade(url, "0002")
    message = str(refused.value)
    assert "1 feedback row" in message and "id 2" in message, message
    assert "longer than 100 characters" in message and "nothing was changed" in message, message
    assert serve.db.current_revision(url) == "0003"
    engine = serve.db.make_engine(url)
    try:
        assert _department_width(engine) == serve.db.MAX_DEPARTMENTS_CHARS
    finally:
        engine.dispose()
    # Once no row is too long, it goes back, every row kept.
    with serve.db.make_engine(url).begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE feedback SET department = '人社；住建' WHERE id = 2"))
    assert serve.db.downgrade(url, "0002") == "0003"
    engine = serve.db.make_engine(url)
    try:
        assert _department_width(engine) == 100
        with engine.connect() as conn:
            assert conn.execute(text("SELECT department FROM feedback ORDER BY id")).all() == [
                ("人社",),
                ("人社；住建",),
            ]
    finally:
        engine.dispose()


def test_a_downgrade_to_an_unknown_or_a_later_revision_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    for revision in ("base", "0004", "-1"):  # base would drop the feedback table
        with pytest.raises(ValueError, match=f"no schema revision '{revision}'.*0001, 0002, 0003"):
            serve.db.downgrade(url, revision)
    with pytest.raises(ValueError, match="no paidan schema revision"):
        serve.db.downgrade(url, "0001")
    serve.db.upgrade(url, "0001")
    with pytest.raises(ValueError, match="at schema revision 0001, below 0002"):
        serve.db.downgrade(url, "0002")
    assert serve.db.current_revision(url) == "0001"


def test_a_migration_that_finds_the_write_lock_held_says_so_in_one_line(tmp_path: Path) -> None:
    # `paidan db downgrade` while another connection held the write lock (a server's save, an
    # sqlite3 session, the README's `.backup`) ended in an 85-line traceback ("database is
    # locked"); `db upgrade` said it in one line, without saying who holds the lock.
    from sqlalchemy import event

    path = tmp_path / "paidan.db"
    serve.db.upgrade(f"sqlite:///{path}")
    engine = serve.db.make_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _short_wait(dbapi_connection: Any, _record: Any) -> None:  # after paidan's 10 s
        dbapi_connection.execute("PRAGMA busy_timeout = 50")

    writer = sqlite3.connect(path, isolation_level=None, timeout=WAIT_S)
    try:
        writer.execute("BEGIN IMMEDIATE")
        for migrate in (
            lambda: serve.db.downgrade(engine, "0001"),
            lambda: serve.db.upgrade(engine),
        ):
            with pytest.raises(DatabaseUnavailable) as failed:
                migrate()
            said = str(failed.value)
            assert said.startswith("OperationalError: database is locked: another connection is")
            assert "\n" not in said and "stop it, or try again" in said
        writer.execute("ROLLBACK")
    finally:
        writer.close()
        engine.dispose()
    assert serve.db.current_revision(f"sqlite:///{path}") == "0003"  # nothing done
    with pytest.raises(DatabaseUnavailable, match="OperationalError: unable to open database"):
        serve.db.current_revision(f"sqlite:///{tmp_path}/no/such/dir/paidan.db")


def test_a_database_whose_revision_changed_under_a_running_server_is_not_ok(
    tmp_path: Path,
) -> None:
    # A downgrade while a server ran on the database made every save fail, while /readyz (this
    # check) said ok; a revision table dropped meanwhile is said too.
    from sqlalchemy import text

    from serve.db import SchemaMismatch

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    db = Database(url, retry_interval=5.0)  # the server's
    try:
        db.add_feedback(text="某投诉", department="人社")
        assert db.check() == {"ok": True, "backend": "sqlite"}
        serve.db.downgrade(url, "0001")
        for use in (
            lambda: db.add_feedback(text="某投诉", department="人社"),
            lambda: db.add_feedback(text="某投诉", department="人社", request_id="r-1"),
            lambda: list(db.iter_feedback()),
            lambda: list(db.iter_columns(["request_id"])),
        ):
            with pytest.raises(SchemaMismatch, match="schema is at revision 0001, older than"):
                use()
        state = db.check()
        assert state["ok"] is False and "`paidan db upgrade`" in state["reason"], state
        engine = serve.db.make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("DROP TABLE alembic_version"))
            assert "no paidan schema revision any more" in db.check()["reason"]
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
                conn.execute(text("INSERT INTO alembic_version VALUES ('0001')"))
        finally:
            engine.dispose()
        serve.db.upgrade(url)
        assert db.check() == {"ok": True, "backend": "sqlite"}
        db.add_feedback(text="另一投诉", department="人社", request_id="r-1")
        assert [row.text for row in db.iter_feedback()] == ["某投诉", "另一投诉"]
    finally:
        db.dispose()


def test_a_revision_a_newer_paidan_wrote_under_a_running_server_leaves_it_ok_with_a_note(
    tmp_path: Path,
) -> None:
    # A rolling upgrade: a newer paidan applies its additive revision 0004 while this server
    # runs. Its saves and export kept working, but /readyz (this check) said not ok, advising
    # to restore a backup, so a load balancer took working servers out.
    from sqlalchemy import text

    from serve.db import SchemaMismatch

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    db = Database(url, retry_interval=5.0)  # the server's
    engine = serve.db.make_engine(url)
    try:
        db.add_feedback(text="某投诉", department="人社")
        with engine.begin() as conn:  # what a newer paidan's additive 0004 would do
            conn.execute(text("ALTER TABLE feedback ADD COLUMN channel TEXT"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
        state = db.check()
        assert state["ok"] is True and "reason" not in state, state
        assert state["note"].startswith(
            "the database is at schema revision '0004', which this paidan does not know (its "
            "latest is '0003'): a newer paidan migrated it"
        ), state
        assert "backup" not in state["note"]
        db.add_feedback(text="另一投诉", department="人社", request_id="r-1")
        assert [row.text for row in db.iter_feedback()] == ["某投诉", "另一投诉"]
        # A newer revision that took away a column this paidan writes: every save fails, so
        # /readyz says not ok (it said ok with the note, and a load balancer kept sending saves),
        # and both say to upgrade this server, not to restore a backup (the newer paidan's
        # servers work on that database).
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_feedback_request_id"))
            conn.execute(text("ALTER TABLE feedback RENAME COLUMN request_id TO client_key"))
        state = db.check()
        assert state["ok"] is False and "note" not in state, state
        assert state["reason"].startswith(
            "the database is at schema revision '0004', which this paidan does not know (its "
            "latest is '0003'): a newer paidan migrated it while this server ran and changed the "
            "feedback table this server writes (OperationalError: no such column: "
            "feedback.request_id), so this server cannot save or export feedback; upgrade this "
            "server to the newer paidan"
        ), state
        with pytest.raises(SchemaMismatch) as refused:
            db.add_feedback(text="某投诉", department="人社")
        said = str(refused.value)
        assert "'0004', which this paidan does not know" in said
        assert "upgrade this server to the newer paidan" in said and "backup" not in said
        # The table itself renamed away: the same.
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE feedback RENAME COLUMN client_key TO request_id"))
        assert db.check()["ok"] is True
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE feedback RENAME TO feedback_v3"))
        state = db.check()
        assert state["ok"] is False and "no such table: feedback" in state["reason"], state
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE feedback_v3 RENAME TO feedback"))
        # An older revision stays a problem.
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        state = db.check()
        assert state["ok"] is False and "older than the 0003" in state["reason"], state
    finally:
        engine.dispose()
        db.dispose()


def test_a_missing_column_at_this_paidans_revision_keeps_the_databases_own_reason(
    tmp_path: Path,
) -> None:
    # Only a revision that is not this paidan's is called a schema mismatch.
    from sqlalchemy import text

    from serve.db import SchemaMismatch

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    db = Database(url)
    try:
        db.ensure_schema()
        with db.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_feedback_request_id"))
            conn.execute(text("ALTER TABLE feedback DROP COLUMN request_id"))
        with pytest.raises(DatabaseUnavailable) as failed:
            db.add_feedback(text="某投诉", department="人社")
        assert not isinstance(failed.value, SchemaMismatch)
        assert "has no column named request_id" in str(failed.value)
        assert db.check() == {"ok": True, "backend": "sqlite"}
    finally:
        db.dispose()


def test_saves_failing_at_once_on_a_schema_taken_back_do_not_exhaust_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a downgrade under a running server, each failing save kept its session's connection
    # while it checked out a second one to read the revision: with more saves at once than the
    # pool could give two connections each, the pool ran dry, saves and /readyz waited out the
    # pool timeout, and answers said "QueuePool limit ... reached" instead of the schema message.
    from sqlalchemy import event

    from serve.db import SchemaMismatch

    make = serve.db.create_engine
    monkeypatch.setattr(  # a small pool, so that 6 saves at once are more than it has
        serve.db,
        "create_engine",
        lambda url, **kw: make(
            url, **{**kw, "pool_size": 2, "max_overflow": 0, "pool_timeout": WAIT_S}
        ),
    )
    monkeypatch.setattr(serve.db, "SCHEMA_VERDICT_S", 60.0, raising=False)
    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    db = Database(url, retry_interval=5.0)  # the server's
    held: dict[int, int] = {}  # connections each thread has checked out now
    most: list[int] = [0]
    revision_reads: list[str] = []
    lock = threading.Lock()

    def checkout(*_: Any) -> None:
        with lock:
            me = threading.get_ident()
            held[me] = held.get(me, 0) + 1
            most[0] = max(most[0], held[me])

    def checkin(*_: Any) -> None:
        with lock:
            held[threading.get_ident()] -= 1

    def executed(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "alembic_version" in statement:
            with lock:
                revision_reads.append(statement)

    try:
        db.add_feedback(text="某投诉", department="人社")
        serve.db.downgrade(url, "0001")
        event.listen(db.engine, "checkout", checkout)
        event.listen(db.engine, "checkin", checkin)
        event.listen(db.engine, "before_cursor_execute", executed)
        start = threading.Barrier(6)
        answers: list[BaseException | None] = []

        def save() -> None:
            start.wait(WAIT_S)
            try:
                db.add_feedback(text="某投诉", department="人社")
            except BaseException as e:  # the answer, whichever it is
                answers.append(e)
            else:
                answers.append(None)

        threads = [threading.Thread(target=save) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S * 3)
        assert len(answers) == 6
        for answer in answers:
            assert isinstance(answer, SchemaMismatch), repr(answer)
            assert "QueuePool" not in str(answer)
            assert str(answer).startswith("the feedback database's schema is at revision 0001")
        assert most[0] == 1  # a failing save holds one connection at a time
        assert len(revision_reads) == 1, revision_reads  # one of them read it; the rest reused it
        # The export and a save with a request_id fail the same way, each holding one at a time.
        for use in (
            lambda: list(db.iter_feedback()),
            lambda: db.add_feedback(text="某投诉", department="人社", request_id="r-1"),
        ):
            with pytest.raises(SchemaMismatch, match="schema is at revision 0001, older than"):
                use()
        assert most[0] == 1 and len(revision_reads) == 1
        serve.db.upgrade(url)
        assert db.check() == {"ok": True, "backend": "sqlite"}
        db.add_feedback(text="另一投诉", department="人社", request_id="r-1")
    finally:
        db.dispose()


def test_every_revision_after_the_first_says_what_its_downgrade_removes() -> None:
    # `paidan db downgrade` prints it, and "Going back to an earlier paidan" (docs/operations.md)
    # names it.
    assert sorted(serve.db.DOWNGRADE_LOSES) == serve.db.revisions()[1:]
    assert "paidan db downgrade" in documentation()


@pytest.mark.parametrize(
    ("query", "seconds"),
    [
        ("", 3.0),
        ("?connect_timeout=7", 7.0),
        ("?connect_timeout=1", 2.0),
        ("?connect_timeout=0", 15.0),
    ],
)
def test_a_pooled_connections_ping_is_bounded_by_the_connect_timeout(
    query: str, seconds: float
) -> None:
    # The ping at checkout had a whole operation's 15 s: a database that stalled after start-up
    # held the first save ~18 s. The URL's own connect_timeout wins, read as libpq reads it.
    from sqlalchemy import make_url

    url = make_url(f"postgresql+psycopg://paidan@db.internal/paidan{query}")
    assert serve.db._ping_limit(url) == seconds


def test_saves_waiting_for_sqlites_write_lock_wait_for_it_alone_and_say_who_may_hold_it(
    tmp_path: Path,
) -> None:
    # While another connection held SQLite's write lock (another process's save or migration, an
    # sqlite3 session, a .backup), a burst of saves took the pool's 15 connections, each waiting
    # busy_timeout (10 s) for the lock; the rest waited for a connection first (the pool's default
    # 30 s), then for the lock: the last answered after ~40 s, saying only "database is locked".
    # A save waits for the lock alone, as many at once as the server has threads.
    from sqlalchemy import event

    from serve.routes import PROBE_THREADS

    saves = 40 + PROBE_THREADS + 2  # the threadpool's 40 threads, the probes', the retrier's
    path = tmp_path / "paidan.db"
    db = Database(f"sqlite:///{path}", retry_interval=60.0)
    writer = sqlite3.connect(path, isolation_level=None, timeout=WAIT_S)
    outcome: list[Any] = []
    try:
        db.add_feedback(text="某投诉", department="人社")
        writer.execute("BEGIN IMMEDIATE")

        def save() -> None:
            try:
                outcome.append(db.add_feedback(text="某投诉", department="人社"))
            except DatabaseUnavailable as e:
                outcome.append(e)

        threads = [threading.Thread(target=save, daemon=True) for _ in range(saves)]
        for thread in threads:
            thread.start()
        most = 0  # the most saves that held a connection at once (all waiting for the lock)
        while most < saves and any(t.is_alive() for t in threads):
            most = max(most, db.engine.pool.checkedout())  # type: ignore[attr-defined]
            threading.Event().wait(0.01)
        writer.execute("ROLLBACK")
        for thread in threads:
            thread.join(WAIT_S)
        assert most == saves, "saves waited for a pooled connection before waiting for the lock"
        assert all(not isinstance(o, Exception) for o in outcome), outcome
        assert len(outcome) == saves
    finally:
        writer.close()
        db.dispose()

    db = Database(f"sqlite:///{path}", retry_interval=60.0)

    @event.listens_for(db.engine, "connect")
    def _short_wait(dbapi_connection: Any, _record: Any) -> None:  # after paidan's 10 s
        dbapi_connection.execute("PRAGMA busy_timeout = 50")

    writer = sqlite3.connect(path, isolation_level=None, timeout=WAIT_S)
    try:
        db.check()
        writer.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailable) as failed:
            db.add_feedback(text="某投诉", department="人社")
        said = str(failed.value)
        assert said.startswith("OperationalError: database is locked: another connection is")
        assert "an sqlite3 session" in said and "\n" not in said
        writer.execute("ROLLBACK")
    finally:
        writer.close()
        db.dispose()


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        (
            'OperationalError: connection failed: connection to server at "10.1.2.3", port 6432 '
            'failed: FATAL:  password authentication failed for user "paidan_rw"',
            "OperationalError: connection failed: connection to the database server failed: "
            "FATAL:  password authentication failed for the user",
        ),
        (
            'OperationalError: connection failed: connection to server at "10.1.2.3", port 6432 '
            'failed: FATAL:  no pg_hba.conf entry for host "10.9.8.7", user "paidan_rw", database '
            '"paidan_fb", no encryption',
            "OperationalError: connection failed: connection to the database server failed: "
            "FATAL:  no pg_hba.conf entry for the host, the user, the database, no encryption",
        ),
        (
            "OperationalError: failed to resolve host 'pg.internal.example': [Errno -2] Name or "
            "service not known",
            "OperationalError: failed to resolve the host: [Errno -2] Name or service not known",
        ),
        (
            "waiting for a lock on feedback held by pid 4242, paidan_rw@10.9.8.7, application "
            "'psql', idle in transaction",
            "waiting for a lock on feedback held by pid 4242, a user, application 'psql', idle in "
            "transaction",
        ),
    ],
)
def test_a_reason_anyone_may_read_names_no_host_port_or_user(reason: str, said: str) -> None:
    # /readyz is open to load balancers without a key, and said the driver's words as they were.
    assert (
        without_where(reason)
        == f"{said} (the server's log names the host, port, user and database)"
    )


@pytest.mark.parametrize(
    "reason",
    [
        "OperationalError: unable to open database file",
        "the database is at schema revision '0003', which this paidan does not know",
    ],
)
def test_a_reason_naming_no_host_is_said_as_it_is(reason: str) -> None:
    assert without_where(reason) == reason


def test_readyz_says_a_full_disk_under_a_sqlite_database_is_not_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every save answered 503 "database or disk is full" while /readyz said `database: ok`: the
    # write probe rolls back, so it needs no room, and a full disk passed it.
    import os
    from types import SimpleNamespace

    db = Database(f"sqlite:///{tmp_path / 'paidan.db'}")
    try:
        assert db.check() == {"ok": True, "backend": "sqlite"}
        free = SimpleNamespace(f_frsize=4096, f_bfree=3, f_bavail=2)  # 12 KiB (root), 8 KiB
        monkeypatch.setattr(os, "statvfs", lambda _path: free)
        state = db.check()
        assert state["ok"] is False, state
        kib = 12 if os.geteuid() == 0 else 8  # root may write into the blocks kept for it
        assert state["reason"] == (
            f"the disk that holds the database is full ({kib} KiB free, less than 1 MiB): "
            "feedback cannot be saved until space is freed"
        )
        monkeypatch.undo()
        assert db.check() == {"ok": True, "backend": "sqlite"}  # without a restart
    finally:
        db.dispose()


def test_an_outage_logs_its_first_failed_feedback_at_once_then_a_summary_a_minute(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Every feedback request that met the database down wrote its own WARNING: a few minutes'
    # outage at a busy centre filled the log with identical lines.
    import logging

    import serve.app
    import serve.errors

    down = threading.Event()
    down.set()
    migrate = serve.db.upgrade

    def upgrade(engine: Any, **options: Any) -> None:
        if down.is_set():  # as a closed port answers
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        migrate(engine, **options)

    monkeypatch.setattr(serve.db, "upgrade", upgrade)
    monkeypatch.setattr(serve.app, "SCHEMA_RETRY_S", 0.05)
    # The summaries here are said by requests; the check when one is due (tested below) would
    # race the test's clock.
    monkeypatch.setattr(serve.errors, "SUMMARY_CHECK_S", 3600.0)
    client = make_client()
    now = [1000.0]
    client.app.state.feedback_failures.clock = lambda: now[0]  # type: ignore[attr-defined]
    feedback = {"text": "油烟扰民", "department": "执法"}

    def said(level: int) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "serve.errors" and r.levelno == level
        ]

    with caplog.at_level(logging.DEBUG, logger="serve.errors"):
        for _ in range(20):
            now[0] += 1
            assert client.post("/v1/feedback", json=feedback).status_code == 503
        [first] = said(logging.WARNING)
        assert first == "feedback database unavailable: Exception: connection refused", first
        assert len(said(logging.DEBUG)) == 19  # each one's detail is kept below
        now[0] += 45  # 64 s after the first line
        assert client.post("/v1/feedback", json=feedback).status_code == 503
        assert said(logging.WARNING)[1:] == [
            "20 more feedback requests failed in the last 64 s: "
            "feedback database unavailable (Exception: connection refused)"
        ]
        for _ in range(3):
            now[0] += 1
            assert client.post("/v1/feedback", json=feedback).status_code == 503
        assert len(said(logging.WARNING)) == 2  # at most one line a minute
        down.clear()
        for _ in range(WAIT_S * 100):
            if client.get("/readyz").json()["database"]["ok"]:
                break
            threading.Event().wait(0.01)
        now[0] += 10
        assert client.post("/v1/feedback", json=feedback).status_code == 201
        # Nothing is left unsaid: the failures since the last line, then the recovery.
        assert said(logging.WARNING)[2:] == [
            "3 more feedback requests failed in the last 13 s: "
            "feedback database unavailable (Exception: connection refused)"
        ]
        assert said(logging.INFO) == [
            "feedback requests succeed again: 24 failed in the 77 s before"
        ]
        assert client.post("/v1/feedback", json=feedback).status_code == 201
        assert len(said(logging.INFO)) == 1
        # A later outage is said at once again.
        broken = DatabaseUnavailable("disk I/O error")
        monkeypatch.setattr(
            client.app.state.db,  # type: ignore[attr-defined]
            "add_feedback",
            lambda **_: (_ for _ in ()).throw(broken),
        )
        now[0] += 1
        assert client.post("/v1/feedback", json=feedback).status_code == 503
        assert said(logging.WARNING)[3:] == ["feedback database unavailable: disk I/O error"]


def test_a_failure_after_a_quiet_minute_or_of_another_kind_is_said_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from serve.errors import FeedbackFailures

    failures = FeedbackFailures()
    now = [0.0]
    failures.clock = lambda: now[0]
    with caplog.at_level(logging.INFO, logger="serve.errors"):
        failures.failed("feedback database unavailable", "connection refused")
        now[0] = 5.0
        failures.failed("feedback database unavailable", "connection refused")
        now[0] = 70.0  # a minute without one: what was counted is said, and this one in full
        failures.failed("feedback database unavailable", "timeout expired")
        now[0] = 71.0  # another kind of failure is news
        failures.failed("feedback database unusable", "the schema is at revision 0001")
        failures.succeeded()
    assert [r.getMessage() for r in caplog.records] == [
        "feedback database unavailable: connection refused",
        "1 more feedback request failed in the last 70 s: "
        "feedback database unavailable (connection refused)",
        "feedback database unavailable: timeout expired",
        "feedback database unusable: the schema is at revision 0001",
        "feedback requests succeed again: 4 failed in the 71 s before",
    ]


def test_an_outage_summary_is_said_when_due_without_another_request_and_at_shutdown(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The summary of a burst was written only when the next feedback request came: at night it
    # came hours later, and never if the database was back before anyone sent feedback.
    import logging

    import serve.errors

    monkeypatch.setattr(serve.errors, "SUMMARY_CHECK_S", 0.01, raising=False)
    client = make_client()
    failures = client.app.state.feedback_failures  # type: ignore[attr-defined]
    now = [1000.0]
    failures.clock = lambda: now[0]
    broken = DatabaseUnavailable("connection refused")
    monkeypatch.setattr(
        client.app.state.db,  # type: ignore[attr-defined]
        "add_feedback",
        lambda **_: (_ for _ in ()).throw(broken),
    )
    feedback = {"text": "油烟扰民", "department": "执法"}

    def said() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "serve.errors" and r.levelno == logging.WARNING
        ]

    summary = "feedback database unavailable (connection refused)"
    with caplog.at_level(logging.INFO, logger="serve.errors"):
        for _ in range(3):
            now[0] += 1
            assert client.post("/v1/feedback", json=feedback).status_code == 503
        threading.Event().wait(0.2)  # the summary is not due before a minute has passed
        assert said() == ["feedback database unavailable: connection refused"]
        now[0] += 58  # a minute after the first line, and no request since
        for _ in range(300):  # 3 s: the check runs every SUMMARY_CHECK_S
            if len(said()) > 1:
                break
            threading.Event().wait(0.01)
        assert said()[1:] == [f"2 more feedback requests failed in the last 60 s: {summary}"]
        # Counted since, then the server stops before the next summary is due: said at shutdown.
        now[0] += 1
        assert client.post("/v1/feedback", json=feedback).status_code == 503
        threading.Event().wait(0.2)
        assert len(said()) == 2
        now[0] += 5
        client.__exit__(None, None, None)
        assert said()[2:] == [f"1 more feedback request failed in the last 6 s: {summary}"]


def test_the_summary_check_goes_on_after_a_tick_that_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A log handler that raised once used to end the task silently: no summary ever again.
    import asyncio

    import serve.errors

    monkeypatch.setattr(serve.errors, "SUMMARY_CHECK_S", 0.001)

    class Flaky:
        ticks = 0

        def tick(self) -> None:
            self.ticks += 1
            if self.ticks == 1:
                raise OSError("log disk full")

    flaky = Flaky()

    async def run() -> None:
        task = asyncio.create_task(serve.errors.summarise_when_due(flaky))  # type: ignore[arg-type]
        for _ in range(500):
            await asyncio.sleep(0.002)
            if flaky.ticks >= 3:
                break
        assert not task.done()
        task.cancel()

    asyncio.run(run())
    assert flaky.ticks >= 3
    assert "could not say the feedback failures' summary" in caplog.text


def test_the_summary_check_does_not_hold_the_event_loop_while_another_thread_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tick() runs on the event loop and waited on the lock that a feedback request's thread held
    # while its line went out: a slow log destination (a full pipe, a remote syslog) stopped the
    # whole worker, /healthz included, for as long as that one line took.
    import asyncio
    import logging
    import time

    import serve.errors

    monkeypatch.setattr(serve.errors, "SUMMARY_CHECK_S", 0.001)
    failures = serve.errors.FeedbackFailures()
    now = [1000.0]
    failures.clock = lambda: now[0]
    failures.failed("feedback database unavailable", "connection refused")
    failures.failed("feedback database unavailable", "connection refused")  # counted
    now[0] += 61  # its summary is due

    writing, release = threading.Event(), threading.Event()

    class SlowDestination(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if threading.current_thread() is not threading.main_thread():
                writing.set()
                release.wait(10)

    handler = SlowDestination()
    logging.getLogger("serve.errors").addHandler(handler)
    # A feedback request that succeeds, in the threadpool: it says the summary under the lock.
    request = threading.Thread(target=failures.succeeded)
    try:
        request.start()
        assert writing.wait(10)

        async def longest_stall() -> float:
            task = asyncio.create_task(serve.errors.summarise_when_due(failures))
            worst, before = 0.0, time.monotonic()
            for _ in range(20):
                await asyncio.sleep(0.01)
                worst, before = max(worst, time.monotonic() - before), time.monotonic()
            task.cancel()
            return worst

        stall = asyncio.run(asyncio.wait_for(longest_stall(), 30))
    finally:
        release.set()
        request.join(10)
        logging.getLogger("serve.errors").removeHandler(handler)
    assert stall < 1.0, f"the event loop stood still {stall:.1f} s"


def test_a_failed_feedback_is_counted_off_the_event_loop(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 503's handler counted the failure on the event loop, under the lock another request's
    # thread held while its line went out: every request of the worker waited for that line.
    import time

    client = make_client()
    broken = DatabaseUnavailable("connection refused")
    monkeypatch.setattr(
        client.app.state.db,  # type: ignore[attr-defined]
        "add_feedback",
        lambda **_: (_ for _ in ()).throw(broken),
    )
    lock = client.app.state.feedback_failures._lock  # type: ignore[attr-defined]
    held, done = threading.Event(), threading.Event()

    def writing_slowly() -> None:  # another request's thread, its line going out for 10 s
        with lock:
            held.set()
            done.wait(10)

    answers: list[int] = []

    def send_feedback() -> None:
        body = {"text": "油烟扰民", "department": "执法"}
        answers.append(client.post("/v1/feedback", json=body).status_code)

    holder = threading.Thread(target=writing_slowly)
    feedback = threading.Thread(target=send_feedback)
    try:
        holder.start()
        assert held.wait(10)
        feedback.start()
        time.sleep(0.5)  # the feedback request has failed and waits for the lock
        start = time.monotonic()
        assert client.get("/healthz").status_code == 200
        took = time.monotonic() - start
    finally:
        done.set()
        holder.join(10)
        feedback.join(10)
    assert answers == [503]
    assert took < 2, f"/healthz waited {took:.1f} s"
