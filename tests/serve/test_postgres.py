"""Feedback on a real PostgreSQL server (``.ci/run`` installs Debian's ``postgresql`` and starts it).

The server's URL comes from ``PAIDAN_TEST_POSTGRES_URL``; each test gets its own schema (through
``search_path``), dropped afterwards.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from serve.db import Database

pytestmark = pytest.mark.postgres
URL_ENV = "PAIDAN_TEST_POSTGRES_URL"


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = os.environ.get(URL_ENV)
    if not url:
        pytest.skip(f"{URL_ENV} is not set (.ci/run starts a local PostgreSQL and sets it)")
    schema = f"paidan_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_migrations_create_the_schema(pg_url: str) -> None:
    db = Database(pg_url)
    try:
        assert db.backend == "postgresql"
        db.ensure_schema()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
            columns = {
                row[0]
                for row in conn.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = 'feedback' AND table_schema = current_schema()"
                    )
                )
            }
        assert {
            "ticket_id",
            "title",
            "text",
            "suggestion",
            "department",
            "category",
            "dispatcher_id",
            "model_version",
            "created_at",
        } <= columns
        Database(pg_url).ensure_schema()  # a second process migrating again changes nothing
    finally:
        db.dispose()


def test_feedback_round_trip_through_the_api(
    make_client: Callable[..., TestClient], pg_url: str
) -> None:
    client = make_client(database_url=pg_url)
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["database"] == {"ok": True, "backend": "postgresql"}
    shown = client.post("/v1/route", json={"id": "PG-1", "text": "公司拖欠工资三个月"}).json()
    r = client.post(
        "/v1/feedback",
        json={
            "ticket_id": "PG-1",
            "text": "公司拖欠工资三个月，电话13812345678",
            "suggestion": shown,
            "department": "住建",
            "category": "城建",
            "dispatcher_id": "op-1",
        },
    )
    assert r.status_code == 201, r.text
    first = r.json()
    r2 = client.post("/v1/feedback", json={"text": "油烟扰民", "department": "执法"})
    assert r2.status_code == 201

    lines = [json.loads(x) for x in client.get("/v1/feedback").text.splitlines()]
    assert [x["id"] for x in lines] == [first["id"], r2.json()["id"]]
    row = lines[0]
    assert row["text"] == "公司拖欠工资三个月,电话[手机号]"
    assert row["suggestion"]["department"]["label"] == shown["department"]["label"]
    assert row["department"] == "住建" and row["dispatcher_id"] == "op-1"
    assert row["model_version"] == shown["model_version"]
    created = datetime.fromisoformat(row["created_at"])
    assert created.utcoffset() == timedelta(0)

    since = client.get("/v1/feedback", params={"since": r2.json()["created_at"]}).text
    assert [json.loads(x)["id"] for x in since.splitlines()] == [r2.json()["id"]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/v1/feedback", params={"since": future}).text == ""


def test_nul_characters_never_reach_postgresql(
    make_client: Callable[..., TestClient], pg_url: str
) -> None:
    # PostgreSQL refuses U+0000 in text columns: a NUL in an id or a label is a 422 naming the
    # field (as in the suggestion's model_version, the row's default one); the texts and the
    # suggestion's strings have it replaced by a space.
    client = make_client(database_url=pg_url)
    refused = client.post(
        "/v1/feedback", json={"text": "油烟扰民", "department": "执法", "ticket_id": "P\x00"}
    )
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "body.ticket_id"
    for suggestion in ({"model_version": "v\x00x"}, {"a": {"score": float("nan")}, "x": 1e999}):
        # Were 503 "database unavailable, retry later": retried for ever.
        body = {"text": "油烟", "department": "执法", "suggestion": suggestion}
        refused = client.post(
            "/v1/feedback", content=json.dumps(body), headers={"content-type": "application/json"}
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["field"] == "body.suggestion"
    r = client.post(
        "/v1/feedback",
        json={
            "text": "油烟\x00扰民",
            "title": "油\x00烟",
            "department": "执法",
            "suggestion": {"note": "a\x00b", "k\x00": ["\x00"]},
        },
    )
    assert r.status_code == 201, r.text
    [row] = [json.loads(x) for x in client.get("/v1/feedback").text.splitlines()]
    assert row["text"] == "油烟 扰民" and row["title"] == "油 烟"
    assert row["suggestion"] == {"note": "a b", "k ": [" "]}


def test_a_statement_that_the_database_does_not_answer_in_time_is_a_503_reason(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the connect had a timeout: a database that stopped answering held feedback requests
    # without limit (and committed their rows after the clients had given up).
    import threading

    import serve.db
    from serve.db import DatabaseUnavailable

    db = Database(pg_url)
    db.ensure_schema()
    with db.engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "10s"
        assert conn.execute(text("SHOW search_path")).scalar().startswith("paidan_test_")
        params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        assert params["keepalives_idle"] == "5" and params["tcp_user_timeout"] == "10000"
    db.dispose()
    monkeypatch.setattr(serve.db, "STATEMENT_TIMEOUT_S", 0.2)
    db = Database(pg_url)
    holder = create_engine(pg_url)
    outcome: list[BaseException | str] = []
    try:
        with holder.connect() as lock:
            lock.execute(text("LOCK TABLE feedback IN ACCESS EXCLUSIVE MODE"))  # a hung database

            def save() -> None:
                try:
                    db.add_feedback(text="某投诉", department="人社")
                    outcome.append("stored")
                except DatabaseUnavailable as e:
                    outcome.append(e)

            saver = threading.Thread(target=save, daemon=True)
            saver.start()
            saver.join(30)  # a guard against a hang, not a timing assertion
            assert not saver.is_alive(), "the INSERT waited for as long as the database did"
            lock.rollback()
        [error] = outcome
        assert isinstance(error, DatabaseUnavailable) and "statement timeout" in str(error)
    finally:
        holder.dispose()
        db.dispose()


def test_a_second_process_migrating_at_once_waits_for_the_first(pg_url: str) -> None:
    # Two processes migrating an empty database at once: the loser failed with UniqueViolation
    # on pg_type_typname_nsp_index and said feedback would not work.
    import threading
    import time

    from serve.db import MIGRATION_LOCK_KEY

    holder = create_engine(pg_url)
    db = Database(pg_url)
    outcome: list[BaseException | str] = []

    def migrate() -> None:
        try:
            db.ensure_schema()
            outcome.append("ok")
        except BaseException as e:
            outcome.append(e)

    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND (classid::bigint << 32) + objid::bigint = :key"
    )
    try:
        with holder.connect() as first:  # another process, in the middle of its migration
            first.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            second = threading.Thread(target=migrate, daemon=True)
            second.start()
            with holder.connect() as probe:
                for _ in range(300):  # a guard against a hang, not a timing assertion
                    if probe.execute(waiting, {"key": MIGRATION_LOCK_KEY}).scalar():
                        break
                    assert second.is_alive(), f"migrated without waiting: {outcome}"
                    time.sleep(0.1)
                else:
                    raise AssertionError("the second migration never waited for the first")
            assert not outcome
            first.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            second.join(30)
        assert outcome == ["ok"]
    finally:
        holder.dispose()
        db.dispose()


class FreezingProxy:
    """A TCP proxy to the test server that can stop forwarding while keeping its sockets open: a
    database process that is stopped while its host's kernel still answers TCP."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.target = (host, port)
        self.frozen = threading.Event()
        self.thawed = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: Any, dst: Any) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.frozen.is_set():
                self.thawed.wait()
            try:
                dst.sendall(data)
            except OSError:
                return


def test_a_database_that_stops_answering_on_an_open_connection_is_a_503(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # statement_timeout and TCP keepalives cannot end a wait on a stopped database process whose
    # kernel still answers TCP: the request waited as long as the database did.
    import threading

    from serve.db import WATCHDOG, DatabaseUnavailable

    given = make_url(pg_url)
    proxy = FreezingProxy(given.host or "127.0.0.1", given.port or 5432)
    url = given.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    monkeypatch.setattr(WATCHDOG, "limit", 1.0)
    db = Database(url)
    outcome: list[Any] = []
    try:
        db.add_feedback(text="某投诉", department="人社")  # a pooled connection, then the freeze
        proxy.frozen.set()

        def save() -> None:
            try:
                outcome.append(db.add_feedback(text="某投诉", department="人社"))
            except DatabaseUnavailable as e:
                outcome.append(e)

        saver = threading.Thread(target=save, daemon=True)
        saver.start()
        saver.join(60)  # a guard against a hang, not a timing assertion
        assert not saver.is_alive(), "the request waited for as long as the database did"
        [error] = outcome
        assert isinstance(error, DatabaseUnavailable)
    finally:
        proxy.thawed.set()
        proxy.server.close()
        db.dispose()


def test_the_users_own_options_are_kept_and_their_statement_timeout_wins(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # paidan sent `options=-c statement_timeout=…` as a startup parameter: libpq then ignored
    # PGOPTIONS (and a service file's options), so an install keeping its tables in a schema that
    # way migrated a second, empty public.feedback and every stored row looked gone; PgBouncer
    # refused the parameter, and no feedback was stored at all.
    from serve.db import _postgres_timeouts

    given = make_url(pg_url)
    schema = given.query["options"].removeprefix("-csearch_path=")
    bare = given.difference_update_query(["options"])
    assert "options" not in _postgres_timeouts(bare)  # nothing a connection pooler refuses
    monkeypatch.setenv("PGOPTIONS", f"-c search_path={schema}")
    db = Database(bare.render_as_string(hide_password=False))
    try:
        with db.engine.connect() as conn:  # checked before migrating: never touch public
            assert conn.execute(text("SHOW search_path")).scalar() == schema
        db.ensure_schema()
        db.add_feedback(text="某投诉", department="人社")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT current_schema()")).scalar() == schema
            assert conn.execute(text("SELECT count(*) FROM feedback")).scalar() == 1
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "10s"
    finally:
        db.dispose()
    monkeypatch.setenv("PGOPTIONS", f"-c search_path={schema} -c statement_timeout=30s")
    db = Database(bare.render_as_string(hide_password=False))
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "30s"
    finally:
        db.dispose()


def test_a_page_of_feedback_seeks_its_key_on_the_index(pg_url: str) -> None:
    # `created_at > :at OR (created_at = :at AND id > :id)` was a filter over the whole index from
    # its start (or from `since`): a full read (retrain, drift, export) grew with the square of
    # the table (1 M rows: 500k->600k in 21 s).
    from sqlalchemy import select

    from serve.db import Feedback, _page

    db = Database(pg_url)
    try:
        db.ensure_schema()
        at = datetime(2026, 1, 1, tzinfo=UTC)
        for since in (None, at - timedelta(days=1)):
            query = _page(select(Feedback.id), since, (at, 13), 500).compile(db.engine)
            with db.engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # an empty test table
                conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
                plan = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {query}", query.params)]
            assert "Index Cond: (ROW(created_at, id) > ROW(" in "\n".join(plan), plan
            assert not any("Filter" in step or "Sort" in step for step in plan), plan
    finally:
        db.dispose()


def test_a_migration_lock_held_too_long_is_an_error_naming_its_holder(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Another process holding the migration lock (a `db upgrade` stopped with Ctrl-Z, or cut off
    # mid-way): `paidan db upgrade`, the server's start-up, retrain and drift waited for ever
    # without a word.
    import threading

    import serve.db
    from serve.db import MIGRATION_LOCK_KEY, DatabaseUnavailable

    monkeypatch.setattr(serve.db, "MIGRATION_LOCK_WAIT_S", 0.5)
    holder = create_engine(pg_url)
    db = Database(pg_url)
    outcome: list[BaseException | str] = []

    def migrate() -> None:
        try:
            db.ensure_schema()
            outcome.append("migrated")
        except BaseException as e:
            outcome.append(e)

    try:
        with holder.connect() as first:
            first.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            pid = first.execute(text("SELECT pg_backend_pid()")).scalar()
            second = threading.Thread(target=migrate, daemon=True)
            with caplog.at_level("WARNING", logger="serve.db"):
                second.start()
                second.join(30)  # a guard against a hang, not a timing assertion
            assert not second.is_alive(), "waited for the migration lock without limit"
            [error] = outcome
            assert isinstance(error, DatabaseUnavailable), error
            said = str(error)
            assert "paidan's migration lock (pg_locks: advisory" in said
            assert f"still held after 0 s by PostgreSQL process {pid} " in said
            assert f"pg_terminate_backend({pid})" in said
            [waiting] = [r.getMessage() for r in caplog.records if "waiting up to" in r.message]
            shown = make_url(pg_url).render_as_string(hide_password=True)
            assert shown in waiting and f"held by PostgreSQL process {pid}" in waiting
            first.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        db.ensure_schema()  # released: the next attempt migrates
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    finally:
        holder.dispose()
        db.dispose()


def test_a_migration_lock_let_go_at_once_is_waited_for_without_a_warning(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # `paidan serve --workers 2` on PostgreSQL: both workers migrate at start, and the second
    # found the first holding the lock for milliseconds, logging at every start a WARNING that
    # "another paidan migrating it, or one stopped or cut off mid-way" holds it.
    import serve.db
    from serve.db import MIGRATION_LOCK_KEY

    # Generous, so the release below falls inside it on a loaded machine too.
    monkeypatch.setattr(serve.db, "MIGRATION_LOCK_QUIET_S", 30.0, raising=False)
    key = {"key": MIGRATION_LOCK_KEY}
    holder = create_engine(pg_url)
    db = Database(pg_url)
    outcome: list[BaseException | str] = []

    def migrate() -> None:
        try:
            db.ensure_schema()
            outcome.append("migrated")
        except BaseException as e:
            outcome.append(e)

    try:
        with holder.connect() as first, caplog.at_level("WARNING", logger="serve.db"):
            first.execute(text("SELECT pg_advisory_lock(:key)"), key)
            second = threading.Thread(target=migrate, daemon=True)
            second.start()
            waiting = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND (classid::bigint << 32) + objid::bigint = :key"
            )
            for _ in range(3000):  # until the other thread waits for the lock (a guard of 30 s)
                if first.execute(text(waiting), key).scalar():
                    break
                second.join(0.01)
            first.execute(text("SELECT pg_advisory_unlock(:key)"), key)
            second.join(30)  # a guard against a hang, not a timing assertion
        assert outcome == ["migrated"]
        assert not [r.getMessage() for r in caplog.records if "migration lock" in r.message]
    finally:
        holder.dispose()
        db.dispose()


def test_a_feedback_table_without_its_revision_is_adopted(pg_url: str) -> None:
    # A table left without its revision (an earlier paidan's half-done first migration, a restore
    # of the table alone) failed every start with "relation feedback already exists".
    db = Database(pg_url)
    try:
        db.ensure_schema()
        db.add_feedback(text="某投诉", department="人社")
        with db.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_feedback_created_at"))
            conn.execute(text("DELETE FROM alembic_version"))
    finally:
        db.dispose()
    db = Database(pg_url)
    try:
        db.ensure_schema()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
            assert (
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_feedback_created_at' "
                        "AND schemaname = current_schema()"
                    )
                ).scalar()
                == 1
            )
        assert [row.text for row in db.iter_feedback()] == ["某投诉"]
    finally:
        db.dispose()


def test_readyz_says_a_read_only_database_is_not_ok(pg_url: str) -> None:
    # A PostgreSQL that turned read-only (a standby after a failover, default_transaction_read_only):
    # every save answered 503 while /readyz said `database: ok`.
    from serve.db import DatabaseUnavailable

    Database(pg_url).ensure_schema()
    given = make_url(pg_url)
    options = f"{given.query['options']} -cdefault_transaction_read_only=on"
    url = given.update_query_dict({"options": options}).render_as_string(hide_password=False)
    db = Database(url)
    try:
        with pytest.raises(DatabaseUnavailable, match="read-only transaction"):
            db.add_feedback(text="某投诉", department="人社")
        state = db.check()
        assert state["ok"] is False, state
        assert state["reason"].startswith("the database is read-only (transaction_read_only is on")
    finally:
        db.dispose()
    writable = Database(pg_url)
    try:
        assert writable.check() == {"ok": True, "backend": "postgresql"}
    finally:
        writable.dispose()


def test_after_a_connection_is_lost_callers_get_the_failure_at_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database that stopped answering after start-up: each /readyz waited for the watchdog and
    # the connect timeout (~18 s), probes queued on their two threads, and a load balancer took
    # the server out though routing worked; each save held a shared thread as long.
    import threading

    from sqlalchemy import event

    from serve.db import WATCHDOG, DatabaseUnavailable

    given = make_url(pg_url)
    proxy = FreezingProxy(given.host or "127.0.0.1", given.port or 5432)
    url = given.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    monkeypatch.setattr(WATCHDOG, "limit", 1.0)
    db = Database(url, retry_interval=0.05)
    here: list[str] = []  # connections the test's own thread takes or tries to open
    caller = threading.current_thread()
    for name in ("checkout", "do_connect"):
        event.listen(
            db.engine,
            name,
            lambda *_, name=name: (
                here.append(name) if threading.current_thread() is caller else None
            ),
        )
    try:
        db.add_feedback(text="某投诉", department="人社")
        proxy.frozen.set()
        with pytest.raises(DatabaseUnavailable):  # this one waits for the watchdog
            db.add_feedback(text="某投诉", department="人社")
        here.clear()
        state = db.check()
        assert state["ok"] is False and state["reason"], state
        with pytest.raises(DatabaseUnavailable):
            db.add_feedback(text="某投诉", department="人社")
        assert here == [], "a caller waited on the database again"
        proxy.thawed.set()  # it answers again: the background thread finds it
        for _ in range(3000):  # a guard against a hang, not a timing assertion
            if db.check()["ok"]:
                break
            threading.Event().wait(0.01)
        assert db.check() == {"ok": True, "backend": "postgresql"}
        db.add_feedback(text="某投诉", department="人社")
    finally:
        proxy.thawed.set()
        proxy.server.close()
        db.dispose()


def test_a_database_that_stalls_after_start_up_is_a_503_in_seconds_not_after_the_watchdog(
    pg_url: str,
) -> None:
    # A database process stopped (or stalled) after start-up: the first save's pooled connection
    # was pinged under the watchdog's 15 s for a whole operation, and then the pool opened a new
    # connection, which waited out the 3 s connect timeout: the dispatcher's save answered 503
    # after ~18 s. The ping is as light as a connect and gets the connect timeout; one that does
    # not answer in it says the database does not, and no new connection is tried for it.
    import threading

    from sqlalchemy import event

    from serve.db import OPERATION_TIMEOUT_S, DatabaseUnavailable

    given = make_url(pg_url)
    proxy = FreezingProxy(given.host or "127.0.0.1", given.port or 5432)
    url = given.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    db = Database(url, retry_interval=60.0)
    connects: list[str] = []
    event.listen(db.engine, "do_connect", lambda *_: connects.append("connect"))
    outcome: list[Any] = []
    try:
        db.add_feedback(text="某投诉", department="人社")  # a pooled connection, then the stall
        connects.clear()
        proxy.frozen.set()

        def save() -> None:
            try:
                outcome.append(db.add_feedback(text="某投诉", department="人社"))
            except DatabaseUnavailable as e:
                outcome.append(e)

        saver = threading.Thread(target=save, daemon=True)
        saver.start()
        # A guard well below the watchdog's limit (the defect took it plus a connect timeout).
        saver.join(OPERATION_TIMEOUT_S - 5)
        assert not saver.is_alive(), "the save waited for the watchdog, not the ping's own bound"
        [error] = outcome
        assert isinstance(error, DatabaseUnavailable), error
        assert connects == [], "a new connection was tried after the database did not answer"
    finally:
        proxy.thawed.set()
        proxy.server.close()
        db.dispose()


def test_a_revision_0001_database_gets_the_request_id_and_a_repeated_save_is_stored_once(
    pg_url: str,
) -> None:
    # Revision 0002: the save's idempotency key. A save sent again after a 503 at the commit (the
    # watchdog cut a stalled COMMIT that the database then carried out) stored the decision twice.
    import serve.db

    serve.db.upgrade(pg_url, "0001")
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO feedback (text, department, created_at) "
                    "VALUES ('旧投诉', '人社', now())"
                )
            )
    finally:
        engine.dispose()
    db = Database(pg_url)
    try:
        db.ensure_schema()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
            assert (
                conn.execute(
                    text(
                        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_feedback_request_id' "
                        "AND schemaname = current_schema()"
                    )
                )
                .scalar()
                .startswith("CREATE UNIQUE INDEX")
            )
        assert [(r.text, r.request_id) for r in db.iter_feedback()] == [("旧投诉", None)]
        first = db.add_feedback(text="新投诉", department="人社", request_id="pg-1")
        assert db.add_feedback(text="新投诉", department="人社", request_id="pg-1").id == first.id
        # Two saves that both found none stored: the unique index refuses the second insert,
        # which answers the first's row.
        real = db.feedback_by_request_id
        calls: list[str] = []

        def none_first(request_id: str) -> Any:
            calls.append(request_id)
            return None if len(calls) == 1 else real(request_id)

        db.feedback_by_request_id = none_first  # type: ignore[method-assign]
        assert db.add_feedback(text="新投诉", department="人社", request_id="pg-1").id == first.id
        db.feedback_by_request_id = real  # type: ignore[method-assign]
        db.add_feedback(text="又一条", department="人社")  # NULLs never collide
        assert len(list(db.iter_feedback())) == 3
    finally:
        db.dispose()


def test_saves_survive_a_transaction_pooler_that_moves_them_between_server_connections(
    pg_url: str,
) -> None:
    # psycopg prepared paidan's per-transaction set_config (then the INSERT) after five runs on a
    # connection; behind PgBouncer in transaction mode the next transaction ran on another server
    # connection, where the statement did not exist, and a few per cent of saves answered 503.
    # A pooler is simulated by forgetting the server's prepared statements between transactions.
    from sqlalchemy import event

    db = Database(pg_url)
    try:
        db.ensure_schema()

        def another_server_connection(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("DEALLOCATE ALL")
            dbapi_connection.commit()

        event.listen(db.engine, "checkin", another_server_connection)
        for i in range(12):
            db.add_feedback(text=f"第{i}条投诉", department="人社")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM feedback")).scalar() == 12
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("given", "expected"), [(None, None), ("none", None), ("", None), ("0", 0), ("5", 5)]
)
def test_a_prepare_threshold_in_the_url_reaches_psycopg_as_it_wants_it(
    given: str | None, expected: int | None
) -> None:
    from serve.db import _postgres_timeouts

    url = make_url("postgresql+psycopg://u:p@db.example/feedback")
    if given is not None:
        url = url.update_query_dict({"prepare_threshold": given})
    assert _postgres_timeouts(url)["prepare_threshold"] == expected
    assert "prepare_threshold" not in _postgres_timeouts(
        make_url("postgresql+psycopg2://u:p@db.example/feedback")
    )


def test_a_downgrade_gives_back_revision_0001_and_keeps_the_rows(pg_url: str) -> None:
    import serve.db

    db = Database(pg_url)
    try:
        db.add_feedback(text="新投诉", department="住建", request_id="pg-1")
    finally:
        db.dispose()
    # force: other tests' sessions (the fixture's own) share this database.
    assert serve.db.downgrade(pg_url, "0001", force=True) == "0003"
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
            assert conn.execute(text("SELECT text FROM feedback")).scalars().all() == ["新投诉"]
            indexes = conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
            )
            assert "ix_feedback_request_id" not in set(indexes.scalars())
    finally:
        engine.dispose()
    with pytest.raises(ValueError, match="below 0002"):
        serve.db.downgrade(pg_url, "0002")
    serve.db.upgrade(pg_url)
    assert serve.db.current_revision(pg_url) == "0003"


def test_a_joint_dispatch_longer_than_one_name_is_saved_and_kept_through_a_downgrade(
    make_client: Callable[..., TestClient], pg_url: str
) -> None:
    # The department column was VARCHAR(100): PostgreSQL refused a joint dispatch naming a dozen
    # departments. Revision 0003 widens it; going back below it is refused while such a row
    # exists (cut, it would lose co-departments), nothing changed, and allowed once none does.
    import serve.db

    serve.db.upgrade(pg_url, "0002")
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO feedback (text, department, created_at) "
                    "VALUES ('旧投诉', '人社', now())"
                )
            )
    finally:
        engine.dispose()
    long_joint = "；".join(f"市第{n}部门办公室" for n in range(12))
    assert len(long_joint) > 100
    client = make_client(database_url=pg_url)  # its start migrates to 0003
    r = client.post("/v1/feedback", json={"text": "某投诉", "department": long_joint})
    assert r.status_code == 201, r.text
    exported = [json.loads(x) for x in client.get("/v1/feedback").text.splitlines()]
    assert [row["department"] for row in exported] == ["人社", long_joint]
    with pytest.raises(ValueError, match=r"1 feedback row \(id 2\) names a department longer"):
        serve.db.downgrade(pg_url, "0002", force=True)
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
            width = (
                "SELECT character_maximum_length FROM information_schema.columns WHERE "
                "table_name = 'feedback' AND column_name = 'department' "
                "AND table_schema = current_schema()"
            )
            assert conn.execute(text(width)).scalar() == serve.db.MAX_DEPARTMENTS_CHARS
            conn.execute(text("DELETE FROM feedback WHERE id = 2"))
        assert serve.db.downgrade(pg_url, "0002", force=True) == "0003"
        with engine.connect() as conn:
            assert conn.execute(text(width)).scalar() == 100
            assert conn.execute(text("SELECT department FROM feedback")).scalars().all() == ["人社"]
    finally:
        engine.dispose()


def test_a_downgrade_with_other_sessions_connected_is_refused_naming_them(pg_url: str) -> None:
    # `paidan db downgrade` took the schema back under a running server (and any other session)
    # without a word: the server's saves all answered 503 afterwards, and its next start migrated
    # the database up again. `db upgrade` takes paidan's migration lock only, as it must (a server
    # starting beside running ones migrates too); going back is refused until they are stopped,
    # naming each session, unless --force says they are not paidan's.
    from typer.testing import CliRunner

    import serve.db
    from paidan.cli import app

    db = Database(pg_url, retry_interval=5.0)  # a running server's
    try:
        db.add_feedback(text="某投诉", department="人社", request_id="pg-1")
        with db.engine.connect() as conn:  # back in the pool after: the server's idle session
            server_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with pytest.raises(ValueError) as refused:
            serve.db.downgrade(pg_url, "0001")
        said = str(refused.value)
        assert f"pid {server_pid}" in said and "--force" in said and "\n" not in said, said
        assert serve.db.current_revision(pg_url) == "0003"  # nothing done
        assert db.check() == {"ok": True, "backend": "postgresql"}

        result = CliRunner().invoke(
            app, ["db", "downgrade", "0001"], env={"PAIDAN_DATABASE_URL": pg_url}
        )
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("error: cannot downgrade postgresql+psycopg://paidan:***@")
        assert f"pid {server_pid}" in lines[0] and "--force" in lines[0]
        assert serve.db.current_revision(pg_url) == "0003"

        forced = CliRunner().invoke(
            app, ["db", "downgrade", "0001", "--force"], env={"PAIDAN_DATABASE_URL": pg_url}
        )
        assert forced.exit_code == 0, forced.output
        assert "went back from schema revision 0003 to 0001" in forced.output
        assert serve.db.current_revision(pg_url) == "0001"
    finally:
        db.dispose()


class IdleHolder:
    """A session left idle in a transaction that has read feedback (psql's ``BEGIN; SELECT … FROM
    feedback;``), holding the table's lock until :meth:`let_go`. :meth:`hold` also ends it from
    another session after 60 s, so that a caller waiting for it without a limit goes through in
    the end and its test fails rather than hangs."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.admin = create_engine(url)  # the session that ends the holder; the tests' own too
        self.conn = self.engine.connect()
        self._ender: threading.Timer | None = None

    def hold(self) -> int:
        """Take the lock; the holding session's pid."""
        pid = self.conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        self.conn.execute(text("SELECT count(*) FROM feedback")).scalar()  # idle in transaction
        self._ender = threading.Timer(
            60, lambda: self.admin.connect().execute(text(f"SELECT pg_terminate_backend({pid})"))
        )
        self._ender.start()
        return int(pid)

    def let_go(self) -> None:
        if self._ender is not None:
            self._ender.cancel()
            self._ender = None
        self.conn.rollback()

    def close(self) -> None:
        self.let_go()
        self.conn.close()
        self.engine.dispose()
        self.admin.dispose()


def test_a_downgrade_waits_a_bounded_time_for_a_held_table_lock_and_names_the_holder(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With --force, a session left idle in a transaction that had read feedback (psql's BEGIN;
    # SELECT … FROM feedback;) held its lock: the downgrade's ALTER TABLE waited with no limit,
    # and every save queued behind it until its statement timeout. (The holder is ended after a
    # while here, so that, unbounded, the downgrade goes through and the test fails.)
    import threading

    from typer.testing import CliRunner

    import serve.db
    from paidan.cli import app
    from serve.db import DatabaseInUse

    monkeypatch.setattr(serve.db, "TABLE_LOCK_WAIT_S", 1.0)
    db = Database(pg_url)  # a server's
    db.add_feedback(text="某投诉", department="人社")
    holder = IdleHolder(pg_url)
    admin = holder.admin
    saved: list[object] = []

    def save_while_it_waits() -> None:  # queued behind the downgrade; not to be named
        with admin.connect() as conn:
            for _ in range(300):
                if conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'LOCK TABLE feedback%'"
                    )
                ).scalar():
                    saved.append(db.add_feedback(text="又一投诉", department="人社"))
                    return
                conn.rollback()
                threading.Event().wait(0.1)

    try:
        holder_pid = holder.hold()
        saver = threading.Thread(target=save_while_it_waits)
        saver.start()
        with pytest.raises(DatabaseInUse) as refused:
            serve.db.downgrade(pg_url, "0001", force=True)
        saver.join()
        said = str(refused.value)
        assert "\n" not in said and said.endswith("nothing was changed"), said
        assert f"by 1 other session (pid {holder_pid}, " in said, said
        assert "idle in transaction" in said and "still held after 1 s" in said, said
        assert len(saved) == 1  # the save waited, then went through
        assert serve.db.current_revision(pg_url) == "0003"

        result = CliRunner().invoke(
            app, ["db", "downgrade", "0001", "--force"], env={"PAIDAN_DATABASE_URL": pg_url}
        )
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("error: cannot downgrade postgresql+psycopg://paidan:***@")
        assert f"pid {holder_pid}" in lines[0] and lines[0].endswith("nothing was changed")
        assert serve.db.current_revision(pg_url) == "0003"
    finally:
        holder.let_go()
        holder.conn.close()
    try:
        assert serve.db.downgrade(pg_url, "0001", force=True) == "0003"  # once it has let go
    finally:
        db.dispose()
        holder.close()


def test_an_upgrade_waits_a_bounded_time_for_a_held_table_lock_and_names_the_holder(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Any]
) -> None:
    # The database at an older revision and a session left idle in a transaction that had read
    # feedback (psql's BEGIN; SELECT … FROM feedback;): `paidan db upgrade` (and `paidan serve`'s
    # migration before its workers start, the same code) waited for its ALTER TABLE with no
    # limit. (The holder is ended after a while here, so that, unbounded, it goes through and the
    # test fails.)

    from typer.testing import CliRunner

    import serve.db
    from paidan.cli import app
    from serve.db import DatabaseUnavailable

    monkeypatch.setattr(serve.db, "TABLE_LOCK_WAIT_S", 1.0)
    serve.db.upgrade(pg_url, "0001")
    holder = IdleHolder(pg_url)
    try:
        holder_pid = holder.hold()
        with pytest.raises(DatabaseUnavailable) as refused:
            serve.db.upgrade(pg_url)
        said = str(refused.value)
        assert "\n" not in said and said.endswith("run it again; nothing was changed"), said
        assert f"by 1 other session (pid {holder_pid}, " in said, said
        assert "idle in transaction" in said and "still held after 1 s" in said, said
        assert serve.db.current_revision(pg_url) == "0001"

        result = CliRunner().invoke(app, ["db", "upgrade"], env={"PAIDAN_DATABASE_URL": pg_url})
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("error: cannot migrate postgresql+psycopg://paidan:***@")
        assert f"pid {holder_pid}" in lines[0] and lines[0].endswith("nothing was changed")
        assert serve.db.current_revision(pg_url) == "0001"

        # `paidan serve`'s migration before its workers start waits as long as the server's own
        # attempts (SERVER_TABLE_LOCK_WAIT_S), not `db upgrade`'s: it put off serving by as much.
        from serve.server import prepare_database

        reason = prepare_database(make_settings(database_url=pg_url))
        assert reason is not None and f"pid {holder_pid}" in reason, reason
        assert "still held after 0.5 s" in reason, reason
        assert serve.db.current_revision(pg_url) == "0001"
    finally:
        holder.let_go()
    try:
        serve.db.upgrade(pg_url)  # once it has let go
        assert serve.db.current_revision(pg_url) == "0003"
        # At the latest revision there is nothing to take: a session holding the same lock
        # stops neither `db upgrade` nor a server's start-up.
        holder.conn.execute(text("SELECT count(*) FROM feedback")).scalar()
        serve.db.upgrade(pg_url)
    finally:
        holder.close()


def test_a_server_starting_behind_a_held_table_lock_routes_and_migrates_once_it_is_let_go(
    make_client: Callable[..., TestClient],
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A server starting on a database at an older revision, beside a session idle in a
    # transaction that had read feedback: its start-up migration waited with no limit, so it
    # never served, routing included. Now it serves routing, says who holds the lock, answers
    # feedback 503 and migrates in the background once the lock is let go, as with a database
    # that is down at start-up. (The holder is ended after a while, as above.)
    # It waits SERVER_TABLE_LOCK_WAIT_S for the lock, not `db upgrade`'s TABLE_LOCK_WAIT_S: its
    # waits, one per worker and again every SCHEMA_RETRY_S, each kept every other server's saves
    # queued behind its ALTER TABLE for 5 s, and its start waited as long before serving.
    import threading

    import serve.app
    import serve.db

    assert serve.db.TABLE_LOCK_WAIT_S == 5
    monkeypatch.setattr(serve.app, "SCHEMA_RETRY_S", 0.1)
    serve.db.upgrade(pg_url, "0001")
    holder = IdleHolder(pg_url)
    try:
        holder_pid = holder.hold()
        with caplog.at_level("WARNING", logger="serve"):
            client = make_client(database_url=pg_url)
        [started] = [
            r.getMessage() for r in caplog.records if "feedback database unavailable" in r.message
        ]
        assert f"pid {holder_pid}" in started and "tried again every" in started, started
        assert "still held after 0.5 s" in started, started
        assert "run it again" not in started, started  # the server does, by itself
        ready = client.get("/readyz").json()
        assert ready["database"]["ok"] is False, ready
        assert f"pid {holder_pid}" in ready["database"]["reason"], ready
        assert (
            client.post("/v1/route", json={"id": "PG-1", "text": "公司拖欠工资三个月"}).status_code
            == 200
        )
        r = client.post("/v1/feedback", json={"text": "油烟扰民", "department": "执法"})
        assert r.status_code == 503 and f"pid {holder_pid}" in r.json()["error"]["message"], r.text
        assert serve.db.current_revision(pg_url) == "0001"
    finally:
        holder.let_go()
        holder.conn.close()
    try:
        for _ in range(3000):  # a guard against a hang, not a timing assertion
            if client.get("/readyz").json()["database"]["ok"]:
                break
            threading.Event().wait(0.01)
        assert client.get("/readyz").json()["database"] == {"ok": True, "backend": "postgresql"}
        assert serve.db.current_revision(pg_url) == "0003"
        r = client.post("/v1/feedback", json={"text": "油烟扰民", "department": "执法"})
        assert r.status_code == 201, r.text
    finally:
        holder.close()


def test_a_downgrade_refused_a_login_or_a_database_says_it_in_one_line(pg_url: str) -> None:
    # `paidan db downgrade` ended in a traceback when the password or the database name was wrong.
    import serve.db
    from serve.db import DatabaseUnavailable

    given = make_url(pg_url)
    for wrong in (given.set(password="not-the-password"), given.set(database="no_such_db")):
        url = wrong.render_as_string(hide_password=False)
        for command in (
            lambda u: serve.db.downgrade(u, "0001"),
            serve.db.upgrade,
            serve.db.current_revision,
        ):
            with pytest.raises(DatabaseUnavailable) as failed:
                command(url)
            said = str(failed.value)
            assert said.startswith("OperationalError: connection failed") and "\n" not in said


def test_a_downgrade_under_a_running_server_is_said_by_saves_and_readyz(pg_url: str) -> None:
    # Every save answered 503 "(UndefinedColumn: column feedback.request_id does not exist)" and
    # /readyz said ready, database ok, until the server was restarted.
    import serve.db
    from serve.db import SchemaMismatch

    db = Database(pg_url, retry_interval=5.0)  # the server's
    try:
        db.add_feedback(text="某投诉", department="人社", request_id="pg-1")
        assert db.check() == {"ok": True, "backend": "postgresql"}
        # force: the server is left running on purpose (an administrator's --force).
        assert serve.db.downgrade(pg_url, "0001", force=True) == "0003"
        for use in (
            lambda: db.add_feedback(text="某投诉", department="人社"),
            lambda: db.add_feedback(text="某投诉", department="人社", request_id="pg-2"),
            lambda: db.feedback_page(None, None, 10),
        ):
            with pytest.raises(SchemaMismatch, match="schema is at revision 0001, older than"):
                use()
        state = db.check()
        assert state["ok"] is False and "`paidan db upgrade`" in state["reason"], state
        engine = create_engine(pg_url)
        try:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE alembic_version RENAME TO alembic_version_kept"))
            assert "no paidan schema revision any more" in db.check()["reason"]
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE alembic_version_kept RENAME TO alembic_version"))
        finally:
            engine.dispose()
        serve.db.upgrade(pg_url)
        assert db.check() == {"ok": True, "backend": "postgresql"}
        db.add_feedback(text="另一投诉", department="人社", request_id="pg-2")
        assert len(db.feedback_page(None, None, 10)) == 2
    finally:
        db.dispose()


def test_a_newer_revision_is_ready_unless_it_took_away_a_column_this_server_writes(
    pg_url: str,
) -> None:
    # /readyz said ready for any revision a newer paidan wrote, also when it had renamed a
    # column this server writes and every save answered 503 (advising to restore a backup).
    # The columns are checked at each probe, also behind a transaction pooler (simulated as in
    # the test above: nothing prepared may be relied on from one transaction to the next).
    from sqlalchemy import event

    from serve.db import SchemaMismatch

    db = Database(pg_url, retry_interval=5.0)  # the server's
    engine = create_engine(pg_url)
    try:
        db.add_feedback(text="某投诉", department="人社")

        def another_server_connection(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("DEALLOCATE ALL")
            dbapi_connection.commit()

        event.listen(db.engine, "checkin", another_server_connection)
        with engine.begin() as conn:  # a newer paidan's additive 0004
            conn.execute(text("ALTER TABLE feedback ADD COLUMN channel TEXT"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
        for _ in range(8):
            state = db.check()
            assert state["ok"] is True and "'0004'" in state["note"], state
        with engine.begin() as conn:  # one that renames a column this paidan writes
            conn.execute(text("ALTER TABLE feedback RENAME COLUMN request_id TO client_key"))
        for _ in range(8):
            state = db.check()
            assert state["ok"] is False, state
            assert "(UndefinedColumn: column feedback.request_id does not exist" in state["reason"]
            assert state["reason"].endswith("upgrade this server to the newer paidan"), state
        with pytest.raises(SchemaMismatch, match=r"upgrade this server to the newer paidan$"):
            db.add_feedback(text="某投诉", department="人社")
    finally:
        engine.dispose()
        db.dispose()


def test_a_newer_revisions_required_column_makes_saves_and_readyz_say_to_upgrade(
    pg_url: str,
) -> None:
    # A newer paidan's column that every insert must fill (NOT NULL, no default): this server's
    # saves broke the constraint, answered "unavailable (NotNullViolation)", to be retried, and
    # /readyz said ready.
    from serve.db import SchemaMismatch

    db = Database(pg_url, retry_interval=5.0)
    engine = create_engine(pg_url)
    try:
        db.add_feedback(text="某投诉", department="人社")
        with engine.begin() as conn:  # a newer paidan's 0004
            conn.execute(text("ALTER TABLE feedback ADD COLUMN channel TEXT DEFAULT 'web'"))
            conn.execute(text("ALTER TABLE feedback ALTER COLUMN channel SET NOT NULL"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
        assert db.check()["ok"] is True  # a default fills it: saves work
        db.add_feedback(text="某投诉", department="人社")
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE feedback ALTER COLUMN channel DROP DEFAULT"))
        state = db.check()
        assert state["ok"] is False, state
        assert "'channel'" in state["reason"], state
        assert state["reason"].endswith("upgrade this server to the newer paidan"), state
        with pytest.raises(SchemaMismatch, match=r"'channel'.*upgrade this server to the newer"):
            db.add_feedback(text="某投诉", department="人社")
        assert len(db.feedback_page(None, None, 10)) == 2  # the export still reads its columns
    finally:
        engine.dispose()
        db.dispose()


def test_saves_failing_at_once_on_a_schema_taken_back_do_not_exhaust_the_pool(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each failing save kept its session's connection (in an aborted transaction) while it
    # checked out a second one to read the revision: 30 saves at once on the pool of 5+10 got
    # 3-4 answers a second after 10-20 s, some saying "QueuePool limit ... reached", and /readyz
    # took 7-10 s.
    import threading

    from sqlalchemy import event

    import serve.db
    from serve.db import SchemaMismatch

    make = serve.db.create_engine
    monkeypatch.setattr(  # a small pool, so that 6 saves at once are more than it has
        serve.db,
        "create_engine",
        lambda url, **kw: make(
            url, **{**kw, "pool_size": 2, "max_overflow": 0, "pool_timeout": 30}
        ),
    )
    monkeypatch.setattr(serve.db, "SCHEMA_VERDICT_S", 60.0, raising=False)
    db = Database(pg_url, retry_interval=5.0)  # the server's
    held: dict[int, int] = {}  # connections each thread has checked out now
    most = [0]
    lock = threading.Lock()

    def checkout(*_: Any) -> None:
        with lock:
            held[threading.get_ident()] = held.get(threading.get_ident(), 0) + 1
            most[0] = max(most[0], held[threading.get_ident()])

    def checkin(*_: Any) -> None:
        with lock:
            held[threading.get_ident()] -= 1

    try:
        db.add_feedback(text="某投诉", department="人社")
        assert serve.db.downgrade(pg_url, "0001", force=True) == "0003"  # under the server
        event.listen(db.engine, "checkout", checkout)
        event.listen(db.engine, "checkin", checkin)
        start = threading.Barrier(6)
        answers: list[BaseException | None] = []

        def save() -> None:
            start.wait(30)
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
            thread.join(90)
        assert len(answers) == 6
        for answer in answers:
            assert isinstance(answer, SchemaMismatch), repr(answer)
            assert "QueuePool" not in str(answer)
        assert most[0] == 1  # a failing save holds one connection at a time
        assert db.check()["reason"].startswith("the feedback database's schema is at revision 0001")
        serve.db.upgrade(pg_url)
        assert db.check() == {"ok": True, "backend": "postgresql"}
        db.add_feedback(text="另一投诉", department="人社")
    finally:
        db.dispose()


def test_paidans_sessions_are_named_unless_the_url_or_pgappname_names_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A refused `db downgrade` lists the sessions connected to the database; paidan's had no
    # application_name, so they could not be told from anyone else's before using --force.
    from serve.db import _postgres_timeouts

    monkeypatch.delenv("PGAPPNAME", raising=False)
    url = make_url("postgresql+psycopg://u:p@db.example/feedback")
    assert _postgres_timeouts(url)["application_name"] == "paidan"
    own = url.update_query_dict({"application_name": "hotline-a"})
    assert "application_name" not in _postgres_timeouts(own)  # the URL's reaches libpq as given
    monkeypatch.setenv("PGAPPNAME", "hotline-b")
    assert "application_name" not in _postgres_timeouts(url)  # libpq reads PGAPPNAME itself


def test_a_connection_is_seen_as_paidan_in_pg_stat_activity(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGAPPNAME", raising=False)
    db = Database(pg_url)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("SHOW application_name")).scalar() == "paidan"
    finally:
        db.dispose()
