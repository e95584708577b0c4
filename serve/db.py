"""Feedback storage through SQLAlchemy: embedded SQLite by default, PostgreSQL when configured.

The schema is versioned with Alembic (``serve/migrations``); :func:`upgrade` applies it and runs at
start-up and as ``paidan db upgrade``. Texts are PII-masked before they reach this module's tables,
and again, with today's masking, whenever they are read from them (see :class:`MaskedText`).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote, urlsplit

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    false,
    make_url,
    select,
    text,
    tuple_,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import (
    DisconnectionError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import Select
from sqlalchemy.util import asbool

from model.settings import prepare_threshold
from model.text import clean, mask_label, mask_pii, normalize
from model.tickets import as_utc

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
EXPORT_PAGE = 500  # rows fetched per query while streaming an export
# What paidan's PostgreSQL sessions are called (pg_stat_activity.application_name), unless the URL
# or PGAPPNAME names them.
APPLICATION_NAME = "paidan"
CONNECT_TIMEOUT_S = 3  # a dead PostgreSQL must not hold a request for long
# Once connected, no statement may run longer than this (PostgreSQL's statement_timeout; lock
# waits included) and a connection whose peer stops answering is dropped after about as long
# (TCP keepalives and tcp_user_timeout): a frozen database or a lost network path held feedback
# requests with no limit, and committed rows whose clients had long given up. Migrations are exempt.
STATEMENT_TIMEOUT_S = 10.0
POOL_TIMEOUT_S = 10.0  # longest wait for a free pooled connection
# Connections to a SQLite file one process may hold at once: more than the threads that may use
# it (the threadpool's 40, /readyz's 2, the background retry), so none waits for a connection.
SQLITE_MAX_CONNECTIONS = 64
# Longest a PostgreSQL connection may stay checked out by one operation before it is cut (see
# _Watchdog): a database that no longer answers at all, where statement_timeout cannot help.
OPERATION_TIMEOUT_S = STATEMENT_TIMEOUT_S + 5
# PostgreSQL advisory lock held while migrating: int.from_bytes(b"paidanmg") (any fixed 64-bit key).
MIGRATION_LOCK_KEY = 0x70616964616E6D67
# Longest wait for that lock, which another process holds while it migrates. A migrator that was
# stopped (Ctrl-Z) or cut off mid-way holds it until PostgreSQL notices (hours): `db upgrade`, the
# server's start-up, retrain and drift waited for ever, with nothing printed.
MIGRATION_LOCK_WAIT_S = 60.0
# How long of that wait passes before a line says whose lock it is. The workers of `paidan serve
# --workers N` all migrate at start, each holding the lock for milliseconds when there is nothing
# to do: every multi-worker start on PostgreSQL logged a WARNING naming "another paidan migrating
# it, or one stopped or cut off mid-way".
MIGRATION_LOCK_QUIET_S = 5.0
# Longest a migration (`db upgrade`, a server's start-up, `db downgrade`) waits on PostgreSQL for a
# lock on paidan's tables (its lock_timeout). A session left idle in a transaction that had read
# feedback (psql's BEGIN; SELECT …) held it with no limit, and every save queued behind its ALTER
# TABLE until the save's statement timeout: so below STATEMENT_TIMEOUT_S, for the saves queued
# meanwhile to go through once it gives up.
TABLE_LOCK_WAIT_S = 5.0
# The same wait for a server's migrations (its start-up's and its background retries'), which it
# tries again every SCHEMA_RETRY_S by itself. Waiting TABLE_LOCK_WAIT_S, a server kept every other
# server's saves queued behind its ALTER TABLE for up to 5 s in every 10 (one per worker), for as
# long as a session held the lock; and its start, `paidan serve`'s migration before it, paid the
# wait twice before serving. Long enough for the transactions of saves, which take milliseconds.
SERVER_TABLE_LOCK_WAIT_S = 0.5
# Less room than this on a SQLite database's disk is full: a save with a long suggestion
# writes a few hundred KiB of WAL frames.
SQLITE_MIN_FREE_BYTES = 2**20
# Seconds between the server's background attempts to reach (and migrate) a feedback database that
# was unavailable at start-up; meanwhile every caller is answered at once with the last failure.
SCHEMA_RETRY_S = 5.0
MAX_REQUEST_ID_CHARS = 64  # the request_id column (revision 0002)
# The department column (revision 0003): a joint dispatch names its lead and co-departments in
# it (市残联；市住建局；…), so it is ten names' width, where 0001 gave it one name's (100).
MAX_DEPARTMENTS_CHARS = 1000
# Seconds for which an operation that failed on a missing table or column reuses what the previous
# one found about the schema revision (see Database._schema_problem).
SCHEMA_VERDICT_S = 2.0


class DatabaseUnavailable(RuntimeError):
    """The feedback database cannot be reached or written; the message is safe to show (no SQL,
    no parameters, no password)."""


class SchemaMismatch(DatabaseUnavailable):
    """The feedback database is reached, but its schema is not the revision this paidan writes
    (taken back with ``paidan db downgrade``, or migrated by a newer paidan in a way this one's
    statements no longer fit, while it ran)."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone, so it is re-attached)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Stored feedback is read through today's masking, whichever paidan stored it. Masking learns
# (phone numbers written with 。 or U+2010 hyphens, 15-digit ID numbers in 6-6-3 groups, since
# 2026-12-04): rows an earlier paidan had stored with such numbers as written kept them after the
# upgrade, and the export (GET /v1/feedback), retrain and drift read them so. The masking is
# applied here, where a stored value becomes a Python one (ORM rows and the column reads of
# Database.iter_columns alike), so no read can miss it; it is idempotent (clean(clean(x)) ==
# clean(x)), so rows stored masked come back unchanged. The rows themselves are not rewritten.


class MaskedText(TypeDecorator[str]):
    """A ticket's text or title: :func:`model.text.clean` on every read."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else clean(value)


class MaskedLabel(TypeDecorator[str]):
    """A department or category as chosen: :func:`model.text.mask_label` on every read."""

    impl = String
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else masked_label(value)


# The key of the note that replaces a stored suggestion nested too deeply to be masked (the
# export's EXPORT_ERROR_KEY).
UNREADABLE_KEY = "export_error"


class MaskedJSON(TypeDecorator[Any]):
    """The suggestion a client sent back: :func:`mask_json` on every read."""

    impl = JSON
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        try:
            return mask_json(value)
        except RecursionError:  # one stored before such suggestions were refused
            return {UNREADABLE_KEY: "the stored suggestion is nested too deeply to be read"}


def mask_json(value: Any) -> Any:
    """Mask PII in every string of a JSON value (the client sends the suggestion back to us); a
    U+0000, which PostgreSQL cannot store, becomes a space as in a cleaned text."""
    if isinstance(value, str):
        return _mask_short_string(value) if len(value) <= _CACHED_CHARS else _mask_string(value)
    if isinstance(value, dict):
        # Keys too: a client may key a map by phone number ({"13812345678": …}). Two keys that
        # mask alike ("13812345678" and "13912345678" both "[手机号]") must not lose a value to
        # each other: the later one is stored as "[手机号] (2)", and so on.
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = masked_label(str(k))
            if key in out:
                key = next(f"{key} ({n})" for n in itertools.count(2) if f"{key} ({n})" not in out)
            out[key] = mask_json(v)
        return out
    if isinstance(value, list):
        return [mask_json(v) for v in value]
    return value


def _mask_string(value: str) -> str:
    # PII that shows only once the string is normalised ("138  1234  5678" with two spaces, a
    # tab, a newline or a zero-width space inside) was stored as sent: such a string is kept as
    # clean() writes a ticket's text. Others keep their case (model_version is read back).
    normalised = normalize(value)
    cleaned = mask_pii(normalised)  # clean(value), without normalising it twice
    if cleaned != normalised:
        return cleaned
    return mask_pii(unicodedata.normalize("NFKC", value)).replace("\x00", " ")


# A suggestion read back repeats its keys, labels and decisions in every row: masking each anew
# made reading stored suggestions (the export, drift) three to four times slower. Short strings
# are masked once per process (a pure function of the string).
_CACHED_CHARS = 64
_mask_short_string = lru_cache(maxsize=8192)(_mask_string)


_mask_short_label = lru_cache(maxsize=8192)(mask_label)


def masked_label(value: str) -> str:
    """A label or a key as stored and quoted: :func:`model.text.mask_label`, a U+0000 made a space
    (PostgreSQL cannot store it). Short ones are cached like short strings; a long one is not
    (the keys of a suggestion are the client's: a megabyte key must not stay in memory)."""
    value = value.replace("\x00", " ")
    return _mask_short_label(value) if len(value) <= _CACHED_CHARS else mask_label(value)


class Base(DeclarativeBase):
    pass


class Feedback(Base):
    """One decision of a dispatcher: the suggestion shown and what was finally chosen."""

    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_created_at", "created_at", "id"),
        Index("ix_feedback_request_id", "request_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str | None] = mapped_column(String(100), index=True)
    title: Mapped[str | None] = mapped_column(MaskedText())
    text: Mapped[str] = mapped_column(MaskedText())
    suggestion: Mapped[dict[str, Any] | None] = mapped_column(MaskedJSON())
    department: Mapped[str] = mapped_column(MaskedLabel(MAX_DEPARTMENTS_CHARS))
    category: Mapped[str | None] = mapped_column(MaskedLabel(100))
    dispatcher_id: Mapped[str | None] = mapped_column(String(100))
    model_version: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The client's idempotency key (revision 0002): a save sent again with it is not stored again.
    request_id: Mapped[str | None] = mapped_column(String(MAX_REQUEST_ID_CHARS))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ticket_id": self.ticket_id,
            "title": self.title,
            "text": self.text,
            "suggestion": self.suggestion,
            "department": self.department,
            "category": self.category,
            "dispatcher_id": self.dispatcher_id,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "request_id": self.request_id,
        }


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL and ``synchronous=FULL`` so a commit survives a
    crash, PostgreSQL a short connect timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pool: dict[str, Any] = {}
        dialect: Any = parsed.get_dialect()  # pysqlite's, whose get_pool_class typing lacks
        if issubclass(dialect.get_pool_class(parsed), QueuePool):  # a file, not :memory:
            # SQLite's write lock is what saves wait for (busy_timeout), not a connection: with
            # the default pool (15 connections, 30 s) a burst of saves while another connection
            # held the lock waited for a connection first, then for the lock, up to ~40 s.
            pool = {
                "pool_size": 5,
                "max_overflow": SQLITE_MAX_CONNECTIONS - 5,
                "pool_timeout": POOL_TIMEOUT_S,
            }
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_pre_ping=False,
            **pool,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() != "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_timeout=POOL_TIMEOUT_S)
    # The ping is done at checkout, under the watchdog (pool_pre_ping pings before it is armed).
    engine = create_engine(
        url,
        connect_args=_postgres_timeouts(parsed),
        pool_pre_ping=False,
        pool_timeout=POOL_TIMEOUT_S,
    )
    dialect = engine.dialect
    ping_limit = _ping_limit(parsed)

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # The ping is one round trip, as light as a connect, and gets the connect timeout, not a
        # whole operation's: a database that stalled after start-up (its process stopped, its
        # host still answering TCP) held the first save for the watchdog's 15 s, and then for the
        # connect timeout of a new connection, ~18 s before its 503.
        WATCHDOG.arm(record, dbapi_connection, ping_limit)
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as e:
            if WATCHDOG.disarm(record):
                # Cut unanswered: the database does not answer, and a new connection would wait
                # out the connect timeout too. The request fails now (and the pool drops this one).
                raise dialect.loaded_dbapi.OperationalError(
                    f"the database did not answer within {ping_limit:g} s (connect_timeout)"
                ) from e
            raise DisconnectionError(safe_reason(e)) from e  # dropped; a new connection is tried
        WATCHDOG.arm(record, dbapi_connection)  # the operation's own limit from here

    event.listen(engine, "checkout", checkout)
    for name in ("checkin", "invalidate", "close"):
        event.listen(engine, name, lambda _conn, record, *_: WATCHDOG.disarm(record))
    event.listen(engine, "begin", _statement_timeout(int(STATEMENT_TIMEOUT_S * 1000)))
    return engine


class _Watchdog:
    """Cuts the socket of a PostgreSQL connection checked out for longer than ``limit`` seconds.

    statement_timeout and TCP keepalives cannot end a wait on a database process that is stopped
    or stalled (a SIGSTOP, storage that does not answer) while its host's kernel still answers
    TCP: the request waited as long as the database did. Shutting the socket down makes the
    driver's wait end with "server closed the connection" (a 503), and the pool drops the
    connection. Every operation of :class:`Database` checks a connection out for milliseconds;
    migrations, which may take long, disarm theirs.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._armed: dict[Any, tuple[float, Any, float]] = {}
        self._cut: set[Any] = set()  # records cut since they were last armed
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, record: Any, dbapi_connection: Any, limit: float | None = None) -> None:
        """Cut ``record``'s connection unless disarmed within ``limit`` seconds (at most, and by
        default, the watchdog's own ``limit``); arming it again starts a new count."""
        limit = self.limit if limit is None else min(limit, self.limit)
        with self._lock:
            self._cut.discard(record)
            self._armed[record] = (time.monotonic() + limit, dbapi_connection, limit)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="paidan-db-watchdog")
                self._thread.daemon = True
                self._thread.start()

    def disarm(self, record: Any) -> bool:
        """Stop watching ``record``; whether its connection had been cut."""
        with self._lock:
            self._armed.pop(record, None)
            if record in self._cut:
                self._cut.discard(record)
                return True
            return False

    def _run(self) -> None:
        while True:
            time.sleep(min(0.5, self.limit / 4))
            now = time.monotonic()
            # Under the lock: a connection is disarmed (checkin, invalidate, close) before the
            # pool closes it, so its descriptor is still its own when it is cut here.
            with self._lock:
                for record, (deadline, conn, limit) in list(self._armed.items()):
                    if now >= deadline:
                        del self._armed[record]
                        self._cut.add(record)
                        _cut(conn, limit)


def _cut(dbapi_connection: Any, limit: float) -> None:
    try:
        if dbapi_connection.closed:
            return
        with socket.socket(fileno=os.dup(dbapi_connection.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception as e:  # already gone: nothing left to cut
        logger.debug("cannot cut a hung database connection: %s", e)
        return
    logger.warning(
        "a feedback database operation took longer than %g s: its connection was closed", limit
    )


def _ping_limit(url: URL) -> float:
    """Seconds a pooled connection's ping at checkout may take: the connect timeout, the URL's
    ``connect_timeout`` when it gives one (libpq: at least 2; 0 or less, no limit but the
    watchdog's)."""
    given = url.query.get("connect_timeout")
    try:
        seconds = float(given) if isinstance(given, str) else float(CONNECT_TIMEOUT_S)
    except ValueError:
        seconds = float(CONNECT_TIMEOUT_S)
    if seconds <= 0:
        return OPERATION_TIMEOUT_S
    return min(max(seconds, 2.0), OPERATION_TIMEOUT_S)


WATCHDOG = _Watchdog(OPERATION_TIMEOUT_S)


def _postgres_timeouts(url: URL) -> dict[str, Any]:
    """libpq connection parameters that bound every operation, not only the connect; one the
    URL's query sets itself is left as given. No ``options``: see :func:`_statement_timeout`."""
    wanted: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": int(STATEMENT_TIMEOUT_S * 1000),  # unacknowledged data (Linux)
    }
    if not os.environ.get("PGAPPNAME"):
        # Named in pg_stat_activity, where `paidan db downgrade` lists the sessions it refuses
        # to run beside: without a name, paidan's own could not be told from anyone else's.
        wanted["application_name"] = APPLICATION_NAME
    given = {key: value for key, value in wanted.items() if key not in url.query}
    if url.get_driver_name() == "psycopg":
        # psycopg 3 prepares a statement on the server once a connection has run it five times.
        # Behind PgBouncer in transaction mode (before 1.21's max_prepared_statements) the next
        # transaction may run on another server connection, where that statement does not exist:
        # a few per cent of feedback saves failed with 503 ('prepared statement "_pg3_0" does not
        # exist'). paidan's statements are small; preparing them saves nothing worth that. A
        # ``prepare_threshold`` in the URL arrives as a string, which psycopg cannot use.
        given["prepare_threshold"] = prepare_threshold(url.query.get("prepare_threshold"))
    return given


def _statement_timeout(timeout_ms: int) -> Any:
    """A ``begin`` listener that bounds each transaction's statements to ``timeout_ms``, unless a
    statement_timeout is set elsewhere (the URL's ``options``, ``PGOPTIONS``, a service file,
    ``ALTER ROLE``/``ALTER DATABASE … SET``, postgresql.conf): that one is kept.

    It was a startup parameter (``options=-c statement_timeout=…``), which replaced the user's own
    ``PGOPTIONS`` and service-file ``options`` (a ``search_path`` lost: a second, empty
    ``public.feedback`` received the decisions and every stored row looked gone) and which
    PgBouncer refuses ("unsupported startup parameter: options"): no feedback was stored. A
    ``SET LOCAL`` in each transaction reaches the server through PgBouncer in every pooling mode
    (a session ``SET`` on connect would land on whichever server connection transaction pooling
    gave, and stay there for other clients).
    """
    statement = (
        f"SELECT set_config('statement_timeout', '{int(timeout_ms)}', true) "
        "FROM pg_settings WHERE name = 'statement_timeout' AND source = 'default'"
    )

    def begin(conn: Any) -> None:
        conn.exec_driver_sql(statement)

    return begin


SQLITE_BEGIN = "paidan_sqlite_begin"  # execution option: the BEGIN a transaction starts with


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun by _sqlite_begin, not by the driver: pysqlite (in its default, legacy
    # mode) began one only before INSERT/UPDATE/DELETE and committed each CREATE TABLE on its own,
    # so a migration that failed part-way (disk full at the first start) kept the feedback table
    # without its alembic_version row, and every later start failed: "table feedback already
    # exists". SQLAlchemy's recipe for transactional DDL on SQLite.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers (the export) run beside the writer; FULL syncs the WAL on every commit,
        # so a 2xx answer means the row is on disk even if the process is killed right after.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")  # ms
    finally:
        cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # DEFERRED (SQLite's default) for reads and feedback; IMMEDIATE for a migration, which takes
    # the write lock before reading alembic_version, so a second process migrating at the same
    # moment waits and then finds the schema current.
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(SQLITE_BEGIN, 'DEFERRED')}")


def _scripts() -> tuple[Any, Any]:
    """Alembic's configuration and paidan's migration scripts (``serve/migrations``)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config, ScriptDirectory.from_config(config)


def revisions() -> list[str]:
    """paidan's schema revisions, oldest first."""
    _config, script = _scripts()
    return [s.revision for s in reversed(list(script.walk_revisions()))]


@lru_cache(maxsize=1)
def _known_revisions() -> tuple[str, ...]:
    """:func:`revisions`, read once per process (it parses the migration scripts)."""
    return tuple(revisions())


def schema_mismatch(stored: Sequence[str]) -> str | None:
    """Why a server of this paidan cannot use a database whose ``alembic_version`` holds
    ``stored``, or None when it is this paidan's latest revision. Safe to show (no SQL)."""
    known = _known_revisions()
    head = known[-1]
    if tuple(stored) == (head,):
        return None
    if not stored:
        return (
            "the feedback database has no paidan schema revision any more (its tables dropped or "
            "replaced while this server ran?): feedback cannot be saved or exported until "
            "`paidan db upgrade`, or a restart of this server, migrates it"
        )
    unknown = [r for r in stored if r not in known]
    if unknown:
        return _unknown_revision(list(stored), head)
    return (
        f"the feedback database's schema is at revision {', '.join(stored)}, older than the "
        f"{head} this paidan needs (taken back with `paidan db downgrade` while this server "
        f"ran?): feedback cannot be saved or exported until it is brought forward with `paidan "
        f"db upgrade` or by restarting this server; to go back to the earlier paidan, stop this "
        f"server and start that one instead"
    )


def _newer_revision(stored: Sequence[str]) -> bool:
    """Whether ``alembic_version`` holds a revision this paidan does not know (a newer paidan's)."""
    known = _known_revisions()
    return any(r not in known for r in stored)


def _newer_note(stored: Sequence[str]) -> str:
    """``/readyz``'s note on a database a newer paidan migrated while this server ran."""
    named = ", ".join(repr(r) for r in stored)
    return (
        f"the database is at schema revision {named}, which this paidan does not know (its "
        f"latest is {_known_revisions()[-1]!r}): a newer paidan migrated it while this server "
        "ran, as in a rolling upgrade; every column this server's saves and export use is still "
        "there, so they keep working; replace this server with the newer paidan"
    )


def _newer_mismatch(
    stored: Sequence[str], said: str | None = None, *, export_works: bool = False
) -> str:
    """Why saves and the export fail on a database a newer paidan migrated while this server ran,
    taking away (renaming, dropping) a column or table they use; ``said`` is the database's own
    words. Not "restore a backup": the newer paidan's servers work on it; this one is the one to
    replace. ``export_works``: only the saves fail (a column the newer paidan added that every
    insert must fill), and the message must not send an administrator to stop a working export."""
    named = ", ".join(repr(r) for r in stored)
    fails = (
        "cannot save feedback (its export still works)"
        if export_works
        else "cannot save or export feedback"
    )
    return (
        f"the database is at schema revision {named}, which this paidan does not know (its "
        f"latest is {_known_revisions()[-1]!r}): a newer paidan migrated it while this server "
        f"ran and changed the feedback table this server writes{f' ({said})' if said else ''}, "
        f"so this server {fails}; upgrade this server to the newer paidan"
    )


def _columns_missing(conn: Any, stored: Sequence[str]) -> str | None:
    """Why this paidan's statements do not fit the feedback table any more, or None when every
    column they name is there: one ``SELECT <those columns> FROM feedback WHERE false``, which
    reads no row, has no parameters and runs in the probe's own transaction (so a transaction
    pooler such as PgBouncer is fine with it). For a revision this paidan does not know only; on
    PostgreSQL a failure ends ``conn``'s transaction."""
    try:
        conn.execute(select(*Feedback.__table__.c).where(false()))
    except SQLAlchemyError as e:
        if _schema_error(e):
            return _newer_mismatch(stored, safe_reason(e))
        raise
    # A column the newer paidan added that every insert must fill (NOT NULL, no default): this
    # server's saves, which do not know it, all break the constraint. Its export still works.
    required = _required_new_columns(conn)
    if required:
        named = ", ".join(repr(c) for c in required)
        return _newer_mismatch(
            stored,
            f"it added {named}, which every saved row must fill and this server does not know",
            export_works=True,
        )
    return None


def _required_new_columns(conn: Any) -> list[str]:
    """The feedback table's columns this paidan does not know that an insert must give a value
    (NOT NULL, no default, not generated), read from the database's catalogue."""
    from sqlalchemy import inspect

    ours = set(Feedback.__table__.c.keys())
    return [
        c["name"]
        for c in inspect(conn).get_columns(Feedback.__tablename__)
        if c["name"] not in ours
        and not c.get("nullable", True)
        and c.get("default") is None
        and c.get("autoincrement") is not True
        and not c.get("computed")
        and not c.get("identity")
    ]


def _not_null_of_unknown_column(exc: SQLAlchemyError) -> bool:
    """Whether ``exc`` is an insert that left a column this paidan does not know empty, though
    the table requires it (a newer paidan's NOT NULL column)."""
    if not isinstance(exc, IntegrityError):
        return False
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code is not None:
        if code != "23502":  # not_null_violation
            return False
        column = getattr(getattr(orig, "diag", None), "column_name", None)
    else:
        said = str(orig)
        prefix = f"NOT NULL constraint failed: {Feedback.__tablename__}."
        if not said.startswith(prefix):
            return False
        column = said.removeprefix(prefix)
    return column is not None and column not in Feedback.__table__.c


@contextmanager
def _migrating(url_or_engine: str | Engine) -> Iterator[tuple[Any, Any, Any, tuple[str, ...]]]:
    """A connection in a transaction that holds paidan's migration lock, with Alembic's
    configuration bound to it, paidan's scripts and the revisions stored in the database (one
    this paidan does not know is refused). Committed at the end."""
    from alembic.runtime.migration import MigrationContext
    from alembic.util.exc import CommandError

    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    config, script = _scripts()
    try:
        with (
            engine.connect() as conn,
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin(),
        ):
            if conn.dialect.name == "postgresql":
                # A migration may copy the table (render_as_batch): not bound by the timeouts.
                WATCHDOG.disarm(conn.connection._connection_record)
                conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
                # One process migrates at a time; the next waits here, then finds the schema
                # current. Two servers (or `db upgrade` beside a starting one) migrating an empty
                # database at once failed with a catalogue error (UniqueViolation on
                # pg_type_typname_nsp_index) and said "feedback will not work". Released at commit.
                _migration_lock(conn)
            stored = tuple(MigrationContext.configure(conn).get_current_heads())
            known = {s.revision for s in script.walk_revisions()}
            unknown = [r for r in stored if r not in known]
            if unknown:
                # Unavailable to this version, not a crash of every command.
                raise DatabaseUnavailable(_unknown_revision(unknown, script.get_current_head()))
            config.attributes["connection"] = conn
            yield conn, config, script, stored
    except CommandError as e:
        raise DatabaseUnavailable(f"paidan's migrations cannot be applied to it ({e})") from e
    except SQLAlchemyError as e:
        # The database not reached, refusing the login, or its lock held: one line for `db
        # upgrade`, `db downgrade` and the server alike (`db downgrade` ended in a traceback).
        raise unavailable(e) from e
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def upgrade(
    url_or_engine: str | Engine,
    revision: str = "head",
    *,
    retried: bool = False,
    lock_wait: float | None = None,
) -> None:
    """Apply the Alembic migrations up to ``revision`` (idempotent).

    On PostgreSQL, a lock on paidan's tables it waited ``lock_wait`` seconds for (default
    TABLE_LOCK_WAIT_S) is refused, naming the sessions holding one (:class:`TableLocked`, nothing
    changed; with ``retried``, for a caller that tries again by itself, as the server does,
    without saying to run it again). At ``revision`` already, it takes no lock on them.
    """
    from alembic import command

    with _migrating(url_or_engine) as (conn, config, script, stored):
        # At the revision already: nothing to lock, so an idle reader stops no server's start.
        bounded = conn.dialect.name == "postgresql" and stored != (
            script.get_revision(revision).revision,
        )
        locks = _table_locks_bounded(conn, retried=retried, wait=lock_wait)
        with locks if bounded else nullcontext():
            if not stored:
                _adopt_unversioned_feedback(conn, script)
            command.upgrade(config, revision)


# What going back below a revision takes away (its migration's downgrade()); the rows are kept.
DOWNGRADE_LOSES = {
    "0002": "the request_id column and its values",
    # Refused while a row needs the room (see the migration): no value is cut.
    "0003": "the department column's room for joint dispatches longer than 100 characters",
}


class DatabaseInUse(ValueError):
    """Other sessions are connected to the PostgreSQL database a downgrade would take back."""


class TableLocked(DatabaseInUse, DatabaseUnavailable):
    """Another session held a lock a migration needs on paidan's tables for TABLE_LOCK_WAIT_S:
    in use, for `db downgrade`, and unavailable until it lets go, for `db upgrade` and a server
    migrating at start-up (which tries again in the background)."""


def downgrade(url_or_engine: str | Engine, revision: str, *, force: bool = False) -> str:
    """Take the database back to ``revision`` with the migrations' ``downgrade()``, under the
    same migration lock as :func:`upgrade`; returns the revision it was at (``revision`` itself
    when it was there already, and nothing was done).

    For going back to an earlier paidan, which refuses a revision it does not know. Only
    paidan's own revisions are accepted (not Alembic's ``base``, which would drop the feedback
    table), and none above the database's: :class:`ValueError` says why in one line. On
    PostgreSQL, other sessions connected to the database (a newer paidan's server or job still
    running) are refused too, naming them (:class:`DatabaseInUse`), unless ``force``; and,
    ``force`` or not, a lock on paidan's tables it waited TABLE_LOCK_WAIT_S for, naming the
    sessions holding one (:class:`TableLocked`, nothing changed).
    """
    from alembic import command

    known = revisions()
    if revision not in known:
        raise ValueError(
            f"no schema revision {revision!r} in this paidan (its revisions are {', '.join(known)})"
        )
    with _migrating(url_or_engine) as (conn, config, _script, stored):
        if not stored:
            raise ValueError(
                "the database has no paidan schema revision (no feedback table made by "
                "paidan): there is nothing to take back"
            )
        [current] = stored
        if known.index(revision) > known.index(current):
            raise ValueError(
                f"the database is at schema revision {current}, below {revision}: a downgrade "
                f"only goes back (`paidan db upgrade` goes forward)"
            )
        if revision != current:
            if conn.dialect.name != "postgresql":
                command.downgrade(config, revision)
                return current
            if not force:
                _refuse_other_sessions(conn)
            with _table_locks_bounded(conn):
                command.downgrade(config, revision)
        return current


@contextmanager
def _table_locks_bounded(
    conn: Any, *, retried: bool = False, wait: float | None = None
) -> Iterator[None]:
    """A migration on PostgreSQL (the body), waiting at most ``wait`` seconds (default
    TABLE_LOCK_WAIT_S) for each lock it takes, and first for the feedback table's ACCESS EXCLUSIVE lock (ALTER TABLE's, which every
    reader of the table holds against it); :class:`TableLocked` naming the sessions that hold
    one if a wait ran out (:func:`_locked_out`), the body undone. For `db upgrade`, a server's
    start-up and `db downgrade` alike."""
    wait = TABLE_LOCK_WAIT_S if wait is None else wait
    conn.execute(
        text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": str(int(wait * 1000))}
    )
    waiting_since = conn.execute(text("SELECT clock_timestamp()")).scalar()
    table = Feedback.__tablename__
    try:
        with conn.begin_nested():  # to name the holders in the same transaction after
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None:
                conn.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield
    except OperationalError as e:
        code = getattr(e.orig, "sqlstate", None) or getattr(e.orig, "pgcode", None)
        if code != "55P03":  # lock_not_available
            raise
        raise _locked_out(conn, waiting_since, wait, retried=retried) from None


SESSIONS_NAMED = 10  # other sessions a refused downgrade lists; the rest are counted


def _refuse_other_sessions(conn: Any) -> None:
    """:class:`DatabaseInUse` naming the other client sessions connected to ``conn``'s database.

    A server of the newer paidan running through a downgrade answers every save 503, and its
    next start (or a retrain or drift timer's run) migrates the database up again; `db upgrade`
    cannot refuse them (a server starting beside running ones migrates too), `db downgrade` can.
    The database is the unit: a session's search_path, which may point elsewhere, is not shown.
    """
    rows = conn.execute(
        text(
            "SELECT pid, usename, client_addr::text, application_name, state, backend_start "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "ORDER BY backend_start, pid"
        )
    ).all()
    if not rows:
        return
    named = [_session(*row) for row in rows[:SESSIONS_NAMED]]
    if len(rows) > SESSIONS_NAMED:
        named.append(f"{len(rows) - SESSIONS_NAMED} more")
    count = f"{len(rows)} other session{'s are' if len(rows) > 1 else ' is'}"
    raise DatabaseInUse(
        f"{count} connected to the database ({'; '.join(named)}): a newer paidan still using "
        "it (a server, a retrain or drift run) would fail on the older schema, a server "
        "answering every save 503, and would migrate it up again when it next starts; stop "
        "them first (SELECT * FROM pg_stat_activity WHERE pid = … shows more), or, if these "
        "sessions are not paidan's, run it again with --force; nothing was changed"
    )


def _locked_out(
    conn: Any, waiting_since: datetime, waited: float, *, retried: bool = False
) -> TableLocked:
    """:class:`TableLocked` for a migration that waited ``waited`` seconds for a lock on
    paidan's tables, naming the other sessions that hold one (``conn``'s transaction is usable:
    the wait was inside a savepoint). Readers of alembic_version are left out: a migration
    only updates its row, which they do not stop. So are transactions begun after
    ``waiting_since``: a save queued behind the migration has its lock once it gives up, and was
    named as holding it. Not "run it again" when the caller does (``retried``: the server)."""
    rows = conn.execute(
        text(
            "SELECT a.pid, a.usename, a.client_addr::text, a.application_name, a.state, "
            "a.backend_start, a.xact_start, array_agg(DISTINCT c.relname ORDER BY c.relname) "
            "FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.granted AND l.pid <> pg_backend_pid() AND a.xact_start < :since "
            "AND (l.relation = to_regclass(:feedback) OR l.relation = "
            "to_regclass('alembic_version') AND l.mode <> 'AccessShareLock') "
            "GROUP BY a.pid, a.usename, a.client_addr, a.application_name, a.state, "
            "a.backend_start, a.xact_start ORDER BY a.xact_start, a.pid"
        ),
        {"feedback": Feedback.__tablename__, "since": waiting_since},
    ).all()
    wait = f"{waited:g} s"
    if not rows:
        return TableLocked(
            f"a lock it needs on paidan's tables was still held after {wait} by another "
            f"session, which has let go of it since{'' if retried else '; run it again'}; "
            "nothing was changed"
        )
    again = "" if retried else ", and run it again"
    tables = sorted({t for row in rows for t in row[-1]})
    named = [_session(*row[:-1]) for row in rows[:SESSIONS_NAMED]]
    if len(rows) > SESSIONS_NAMED:
        named.append(f"{len(rows) - SESSIONS_NAMED} more")
    one = len(rows) == 1
    count = f"{len(rows)} other session{'' if one else 's'}"
    pids = ", ".join(str(row[0]) for row in rows[:SESSIONS_NAMED])
    end = f"pg_terminate_backend({pids})" if one else f"pg_terminate_backend(pid) for pid {pids}"
    return TableLocked(
        f"a lock it needs on the {' and '.join(tables)} table{'' if len(tables) == 1 else 's'} "
        f"was still held after {wait} by {count} ({'; '.join(named)}); it waits no longer, as "
        "every save waits behind it meanwhile: end "
        f"{'its transaction' if one else 'their transactions'} (COMMIT or ROLLBACK where it was "
        f"left open, as in a psql session after BEGIN) or {'the session' if one else 'the sessions'}"
        f" (SELECT {end}){again}; nothing was changed"
    )


def _session(
    pid: int,
    user: str | None,
    address: str | None,
    application: str | None,
    state: str | None,
    since: datetime | None,
    transaction_since: datetime | None = None,
) -> str:
    """One session of pg_stat_activity, as :func:`_refuse_other_sessions` and
    :func:`_locked_out` name it; the columns PostgreSQL hides from a role without
    pg_read_all_stats are left out."""
    parts = [f"pid {pid}"]
    if user:
        parts.append(f"{user}@{address.split('/')[0] if address else 'local socket'}")
    if application:
        parts.append(f"application {application!r}")
    if state:
        parts.append(state)
    if since is not None:
        parts.append(f"connected since {as_utc(since):%Y-%m-%d %H:%M:%S} UTC")
    if transaction_since is not None:
        parts.append(f"in a transaction since {as_utc(transaction_since):%Y-%m-%d %H:%M:%S} UTC")
    return ", ".join(parts)


def current_revision(url: str) -> str | None:
    """The schema revision stored in the database (read only, no lock, nothing migrated), or
    None if it has none; :class:`DatabaseUnavailable` if it cannot be read."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
    except SQLAlchemyError as e:
        raise unavailable(e) from e
    finally:
        engine.dispose()
    return ", ".join(heads) if heads else None


def lost_below(current: str, revision: str) -> list[str]:
    """What a downgrade from ``current`` to ``revision`` takes away, newest revision first."""
    known = revisions()
    gone = known[known.index(revision) + 1 : known.index(current) + 1]
    return [f"{DOWNGRADE_LOSES[r]} (revision {r})" for r in reversed(gone) if r in DOWNGRADE_LOSES]


def _migration_lock(conn: Any) -> None:
    """Take paidan's migration lock for this transaction, waiting at most MIGRATION_LOCK_WAIT_S:
    after MIGRATION_LOCK_QUIET_S a line says whose it is, and the error after it names the
    holder and how to end it."""
    key = {"key": MIGRATION_LOCK_KEY}
    if conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), key).scalar():
        return
    previous = conn.execute(text("SELECT current_setting('lock_timeout')")).scalar()
    quiet = min(MIGRATION_LOCK_QUIET_S, MIGRATION_LOCK_WAIT_S / 2)
    try:
        # A savepoint: the lock_timeout error would otherwise abort the migration's transaction.
        with conn.begin_nested():
            conn.execute(
                text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": str(int(quiet * 1000))}
            )
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), key)
            conn.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": previous})
        return
    except OperationalError as e:
        code = getattr(e.orig, "sqlstate", None) or getattr(e.orig, "pgcode", None)
        if code != "55P03":  # lock_not_available (psycopg; psycopg2 calls it pgcode)
            raise
    holder = conn.execute(
        text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND (classid::bigint << 32) + objid::bigint = :key AND objsubid = 1"
        ),
        key,
    ).scalar()
    # pg_locks shows the key as classid (its high 32 bits) and objid (its low 32 bits).
    lock = (
        f"paidan's migration lock (pg_locks: advisory, classid {MIGRATION_LOCK_KEY >> 32}, "
        f"objid {MIGRATION_LOCK_KEY & 0xFFFFFFFF})"
    )
    who = (
        f"PostgreSQL process {holder} (another paidan migrating it, or one stopped or cut off "
        f"mid-way; see it with SELECT pid, usename, application_name, client_addr, state, "
        f"xact_start FROM pg_stat_activity WHERE pid = {holder})"
        if holder is not None
        else "another process (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
    )
    logger.warning(
        "waiting up to %.0f s more (%.0f s in all) for %s on %s, held by %s",
        MIGRATION_LOCK_WAIT_S - quiet,
        MIGRATION_LOCK_WAIT_S,
        lock,
        describe_url(conn.engine.url),
        who,
    )
    conn.execute(
        text("SELECT set_config('lock_timeout', :ms, true)"),
        {"ms": str(int((MIGRATION_LOCK_WAIT_S - quiet) * 1000))},
    )
    try:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), key)
    except OperationalError as e:
        code = getattr(e.orig, "sqlstate", None) or getattr(e.orig, "pgcode", None)
        if code != "55P03":  # lock_not_available (psycopg; psycopg2 calls it pgcode)
            raise
        end = f"; if it is stuck, end it: SELECT pg_terminate_backend({holder})" if holder else ""
        raise DatabaseUnavailable(
            f"{lock} was still held after {MIGRATION_LOCK_WAIT_S:.0f} s by {who}{end}"
        ) from e
    # The migration itself is not bound by it (nor by statement_timeout).
    conn.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": previous})


# What revision 0001 (serve/migrations/versions/0001_feedback.py) creates.
REVISION_0001_COLUMNS = frozenset(
    {
        "id",
        "ticket_id",
        "title",
        "text",
        "suggestion",
        "department",
        "category",
        "dispatcher_id",
        "model_version",
        "created_at",
    }
)
REVISION_0001_INDEXES = {
    "ix_feedback_created_at": "CREATE INDEX ix_feedback_created_at ON feedback (created_at, id)",
    "ix_feedback_ticket_id": "CREATE INDEX ix_feedback_ticket_id ON feedback (ticket_id)",
}
# What revision 0002 adds: the request_id column and its unique index.
REVISION_0002_COLUMNS = REVISION_0001_COLUMNS | {"request_id"}
REVISION_0002_INDEXES = {
    **REVISION_0001_INDEXES,
    "ix_feedback_request_id": "CREATE UNIQUE INDEX ix_feedback_request_id ON feedback (request_id)",
}


def _adopt_unversioned_feedback(conn: Any, script: Any) -> None:
    """A ``feedback`` table in a database with no revision stored: revision 0001's or 0002's
    (a restore of the table alone) is completed (its missing indexes) and stamped; any other is
    refused, saying what to do.

    paidan before 495f6e5 committed each CREATE of revision 0001 on its own on SQLite, so a first
    start that failed part-way (a full disk) left the table without its alembic_version row, and
    every later start and `paidan db upgrade` failed with "table feedback already exists", with no
    way out but SQL written by hand.
    """
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    inspector = inspect(conn)
    if not inspector.has_table("feedback"):
        return
    columns = frozenset(column["name"] for column in inspector.get_columns("feedback"))
    known = {
        REVISION_0001_COLUMNS: ("0001", REVISION_0001_INDEXES),
        REVISION_0002_COLUMNS: ("0002", REVISION_0002_INDEXES),
    }
    if columns not in known:
        raise DatabaseUnavailable(
            "the database has a table feedback but no paidan schema revision, and its columns "
            f"({', '.join(sorted(columns))}) are not the ones paidan creates: it belongs to "
            "another application or was changed by hand; point PAIDAN_DATABASE_URL (or "
            "PAIDAN_DATA_DIR) "
            "at paidan's own database, or keep its rows elsewhere and rename it "
            "(ALTER TABLE feedback RENAME TO feedback_old), then run `paidan db upgrade`"
        )
    revision, wanted = known[columns]
    indexes = {index["name"] for index in inspector.get_indexes("feedback")}
    for name, create in wanted.items():
        if name not in indexes:
            conn.exec_driver_sql(create)
    MigrationContext.configure(conn).stamp(script, revision)
    logger.warning(
        "the feedback table had no schema revision (a first migration that stopped part-way): "
        "its columns are revision %s's, so it is marked at %s and its rows are kept",
        revision,
        revision,
    )


def _unknown_revision(revisions: list[str] | tuple[str, ...], head: str | None) -> str:
    """Why a database at ``revisions`` (from its ``alembic_version``) is refused.

    Nothing tells a revision a newer paidan wrote from another Alembic application's (both are
    free-form names in the same default table), so the message gives both causes and both remedies.
    """
    named = ", ".join(repr(r) for r in revisions)
    return (
        f"the database is at schema revision {named}, which this paidan does not know (its latest "
        f"is {head!r}): a newer paidan migrated it, or it belongs to another application; run the "
        "paidan that migrated it (or restore the database from a backup taken before that "
        "upgrade), or point PAIDAN_DATABASE_URL (or PAIDAN_DATA_DIR) at paidan's own database"
    )


# Query parameters whose value is a secret. SQLAlchemy hands a PostgreSQL URL's query to the driver
# as connection parameters, so `?password=...` is the password (the usual form with a unix socket:
# postgresql+psycopg:///paidan?host=/var/run/postgresql&password=...); libpq keeps password,
# sslpassword and oauth_client_secret secret; other drivers spell the password passwd or pwd.
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword", "oauth_client_secret"})
_SECRET_QUERY_WORDS = ("password", "secret", "token")


def describe_url(url: str | URL) -> str:
    """``url`` as text to print or log, with the password hidden wherever it sits.

    ``render_as_string(hide_password=True)`` hides only the ``USER:PASSWORD@`` part; the value of a
    password-like query parameter is hidden here too. Every other query parameter stays readable.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":  # no user or host; the path as written, not escaped
        base = f"{parsed.drivername}://" + (f"/{parsed.database}" if parsed.database else "")
    else:
        base = parsed.set(query={}).render_as_string(hide_password=True)
    pairs = []
    for key, values in sorted(parsed.query.items()):  # in the order SQLAlchemy renders them
        for value in (values,) if isinstance(values, str) else values:
            shown = "***" if _is_secret(key) else quote_plus(value)
            pairs.append(f"{quote_plus(key)}={shown}")
    return f"{base}?{'&'.join(pairs)}" if pairs else base


def _is_secret(key: str) -> bool:
    key = key.lower()
    return key in SECRET_QUERY_KEYS or any(word in key for word in _SECRET_QUERY_WORDS)


def sqlite_path(url: URL) -> Path | None:
    """The file a SQLite URL opens, or None (not SQLite, in memory, or on another host).

    With ``uri=true`` the database is a SQLite URI (``file:/srv/paidan/var/paidan.db``,
    ``file:///...``, ``file://localhost/...``), percent-encoded; taken as a path it named a
    directory ``file:`` under the working directory.
    """
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    # SQLite reads a URI only after a lower-case "file:".
    if asbool(url.query.get("uri", False)) and database.startswith("file:"):
        parts = urlsplit(database)
        if parts.netloc not in ("", "localhost") or parts.path in ("", ":memory:"):
            return None
        return Path(unquote(parts.path))
    return Path(database)


def safe_reason(exc: BaseException) -> str:
    """One line about a database error without SQL, parameters (ticket text) or passwords."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {first[:200]}" if first else type(orig).__name__


# Where the database is and who connects to it, as the driver's messages name them: psycopg's
# 'connection to server at "10.0.0.5", port 5432 failed', 'for user "paidan"', 'failed to resolve
# host 'db.internal''. /readyz, open to load balancers without a key, says the failure without them.
_SERVER_AT = re.compile(r'connection to server (?:at "[^"]*"(?:, port \d+)?|on socket "[^"]*")')
_NAMED = re.compile(r"""\b(host name|hostaddr|host|user|role|database) (?:"[^"]*"|'[^']*')""")
_SESSION = re.compile(r"[^\s,()@]+@[^\s,()]+")  # another session's user@address (_session)
_PORT = re.compile(r"\bport \d+")
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
LOG_NAMES_WHERE = "the server's log names the host, port, user and database"


def without_where(reason: str) -> str:
    """``reason`` (a database error in one line, :func:`safe_reason`) without the database's host,
    port, socket, user or name, saying that the server's log has them; unchanged if it names none."""
    shown = _SERVER_AT.sub("connection to the database server", reason)
    shown = _SESSION.sub("a user", _NAMED.sub(r"the \1", shown))
    shown = _ADDRESS.sub("an address", _PORT.sub("the port", shown))
    return shown if shown == reason else f"{shown} ({LOG_NAMES_WHERE})"


def _read_only(conn: Any) -> str | None:
    """Why nothing can be written through ``conn`` (not in a transaction), or None; writes
    nothing."""
    if conn.dialect.name == "postgresql":
        if conn.execute(text("SHOW transaction_read_only")).scalar() == "on":
            return (
                "the database is read-only (transaction_read_only is on: a standby, as after a "
                "failover, or default_transaction_read_only): feedback cannot be saved"
            )
        return None
    if conn.dialect.name != "sqlite":
        conn.execute(text("SELECT 1"))
        return None
    # A write of page 1 that is rolled back: a file or filesystem turned read-only refuses it (with
    # its -wal and -shm left, BEGIN IMMEDIATE and reads still work). Nothing reaches the disk.
    # Without waiting for the write lock: another connection's write transaction (a save by another
    # worker, `paidan db upgrade`, an sqlite3 session, VACUUM) held the probe for busy_timeout (10 s)
    # and it then said "cannot be written (database is locked)". Busy is not read-only: a store
    # someone else is writing to is writable.
    raw = conn.connection.driver_connection
    busy_timeout = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        transaction = conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin()
        try:
            version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
            conn.exec_driver_sql(f"PRAGMA user_version = {version}")
        finally:
            transaction.rollback()
    except SQLAlchemyError as e:
        if _sqlite_busy(e):
            return None
        return f"the database cannot be written ({safe_reason(e)}): feedback cannot be saved"
    finally:
        try:
            raw.execute(f"PRAGMA busy_timeout = {busy_timeout}")
        except sqlite3.Error:
            conn.invalidate()  # never back in the pool, where saves would not wait for the lock
    return _sqlite_disk_full(raw)


def _sqlite_disk_full(raw: sqlite3.Connection) -> str | None:
    """Why a SQLite database's disk has no room for a save, or None.

    The probe above rolls back and needs no room: with the disk full every save answered 503
    ("database or disk is full") while /readyz said ``database: ok``. Said without the directory
    (/readyz answers anyone).
    """
    row = raw.execute("PRAGMA database_list").fetchone()
    if not row or not row[2]:  # in memory
        return None
    try:
        disk = os.statvfs(os.path.dirname(row[2]))
    except OSError:
        return None
    # The blocks a filesystem keeps for root are free to a server that runs as root.
    blocks = disk.f_bfree if os.geteuid() == 0 else disk.f_bavail
    free = blocks * disk.f_frsize
    if free >= SQLITE_MIN_FREE_BYTES:
        return None
    return (
        f"the disk that holds the database is full ({free // 1024:,} KiB free, less than "
        f"{SQLITE_MIN_FREE_BYTES // 2**20} MiB): feedback cannot be saved until space is freed"
    )


def unavailable(exc: SQLAlchemyError) -> DatabaseUnavailable:
    """``exc`` as :class:`DatabaseUnavailable`, in one line (:func:`safe_reason`); SQLite's
    "database is locked" says who may hold the lock and what to do."""
    reason = safe_reason(exc)
    if _sqlite_busy(exc):
        reason += (
            ": another connection is writing to it (a paidan server saving feedback, another "
            "`paidan db` command, an sqlite3 session or backup); stop it, or try again once it "
            "is done"
        )
    return DatabaseUnavailable(reason)


def _schema_error(exc: SQLAlchemyError) -> bool:
    """Whether ``exc`` says a table or column the statement names does not exist."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code is not None:
        return code in ("42703", "42P01")  # undefined_column, undefined_table
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    said = str(orig)
    return said.startswith(("no such column", "no such table")) or "has no column named" in said


def _stored_revisions(conn: Any) -> tuple[str, ...]:
    """The revisions in ``alembic_version`` (none if it has no such table); on PostgreSQL a
    missing table ends ``conn``'s transaction."""
    try:
        return tuple(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except SQLAlchemyError as e:
        if _schema_error(e):
            return ()
        raise


def _sqlite_busy(exc: SQLAlchemyError) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (another connection holds the lock)."""
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _page(
    query: Select[Any], since: datetime | None, after: tuple[datetime, int] | None, limit: int
) -> Select[Any]:
    """``query`` limited to one page: rows at or after ``since``, after the key ``after``."""
    query = query.order_by(Feedback.created_at, Feedback.id).limit(limit)
    if since is not None and (after is None or as_utc(after[0]) < as_utc(since)):
        # Not beside a key at or after it, which implies it: SQLite seeks on one lower bound only.
        query = query.where(Feedback.created_at >= since)
    if after is not None:
        # A row value, which SQLite (3.15+) and PostgreSQL seek on ix_feedback_created_at: the
        # same key spelt `created_at > :at OR (created_at = :at AND id > :id)` could not use the
        # index, and each page read every row after the key (a full read grew with the square of
        # the table: 1 M rows, 600k->700k took 25 s).
        query = query.where(tuple_(Feedback.created_at, Feedback.id) > after)
    return query


class Database:
    """The feedback store: an engine, its session factory and the schema's state.

    ``retry_interval`` (the server's): once an attempt to reach and migrate the database has
    failed, a background thread tries again every this many seconds, and every caller meanwhile
    gets :class:`DatabaseUnavailable` with the last failure at once. Without it (the commands),
    each call that finds the schema not ready tries itself, one caller at a time.

    ``lock_wait``: how long a migration waits on PostgreSQL for a lock on paidan's tables;
    default SERVER_TABLE_LOCK_WAIT_S with ``retry_interval``, else TABLE_LOCK_WAIT_S.
    """

    def __init__(
        self,
        url: str,
        migrate: bool = True,
        retry_interval: float | None = None,
        lock_wait: float | None = None,
        warn_directory: bool = True,
        speak: bool = True,
    ) -> None:
        self.url = make_url(url)
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._migrate = migrate
        self._schema_ready = False
        self._lock = threading.Lock()
        self._retry_interval = retry_interval
        self._lock_wait = lock_wait
        self._failure: str | None = None  # why the last attempt failed (server mode)
        self._told: str | None = None  # the last failure /readyz said without where (logged)
        # Whether its state's changes are WARNING and INFO lines; else DEBUG: under --workers N
        # one worker says them for all (serve.workers.speaks_for_the_workers).
        self._speak = speak
        self._stopped = threading.Event()
        self._retrier: threading.Thread | None = None
        self._retrier_lock = threading.Lock()  # _failure set by _lost and the retrier's start/end
        # What _schema_problem found last, and until when (monotonic) it is reused.
        self._verdict: tuple[float, str | None] | None = None
        self._verdict_lock = threading.Lock()
        self._prepare_sqlite_dir(warn_directory)

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    def _prepare_sqlite_dir(self, warn: bool) -> None:
        path = sqlite_path(self.url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                if warn:
                    logger.warning("cannot create the directory of the SQLite database: %s", e)

    def ensure_schema(self) -> None:
        """Migrate once per process; retried if the database was unreachable.

        Server mode (``retry_interval``): no caller ever waits for another's attempt. Every request
        used to take the lock in turn and wait out its own connect timeout, so with a database that
        did not answer the tenth waited 30 s, /readyz queued behind them, and the waiting requests
        took every threadpool thread that routing needs too. So after a connection to a reached
        PostgreSQL failed (:meth:`_lost`), until the background thread reaches it again.
        """
        if self._schema_ready and self._failure is None:
            return
        if self._retry_interval is None:
            with self._lock:
                self._attempt()
            return
        failure = self._failure
        if failure is not None:
            raise DatabaseUnavailable(failure)  # the background thread is trying again
        if not self._lock.acquire(blocking=False):
            raise DatabaseUnavailable(
                "the feedback database is still being reached; retry in a few seconds"
            )
        try:
            self._attempt()
        except DatabaseUnavailable as e:
            self._failure = str(e)
            self._start_retrying()
            raise
        finally:
            self._lock.release()

    def _attempt(self) -> None:
        """One attempt to reach the database and apply the migrations; the caller holds the lock."""
        if self._schema_ready:
            return
        try:
            if self._migrate:
                # The server's background thread tries again: its refusal does not say to.
                server = self._retry_interval is not None
                wait = self._lock_wait
                if wait is None:
                    wait = SERVER_TABLE_LOCK_WAIT_S if server else TABLE_LOCK_WAIT_S
                upgrade(self.engine, retried=server, lock_wait=wait)
            else:
                with self.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(safe_reason(e)) from e
        self._schema_ready = True

    def _start_retrying(self) -> None:
        with self._retrier_lock:
            if self._retrier is None and not self._stopped.is_set():
                self._retrier = threading.Thread(
                    target=self._retry, name="paidan-db-retry", daemon=True
                )
                self._retrier.start()

    def _lost(self, e: SQLAlchemyError) -> None:
        """Server mode, PostgreSQL: a connection that failed (no error the server reported, such
        as a statement timeout) makes every caller get the failure at once until the background
        thread reaches the database again. A database that stopped answering after start-up made
        each /readyz wait ~18 s (the watchdog, then the connect timeout), probes queued on their
        two threads and a load balancer took the server out, though routing worked."""
        if self._retry_interval is None or self.backend == "sqlite":
            return
        if not isinstance(e, OperationalError) or getattr(e.orig, "sqlstate", None):
            return
        with self._retrier_lock:
            self._failure = safe_reason(e)
        self._start_retrying()

    def _probe(self) -> None:
        """The retrier's attempt once the schema is ready: is the database answering again?"""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(safe_reason(e)) from e

    def _retry(self) -> None:
        assert self._retry_interval is not None
        while not self._stopped.wait(self._retry_interval):
            with self._lock:
                try:
                    self._probe() if self._schema_ready else self._attempt()
                except DatabaseUnavailable as e:
                    if str(e) != self._failure:
                        self._log(logging.WARNING, "feedback database still unavailable: %s", e)
                    self._failure = str(e)
                    continue
                except Exception as e:  # keep trying; say why
                    self._log(
                        logging.WARNING, "feedback database still unavailable: %s", safe_reason(e)
                    )
                    self._failure = safe_reason(e)
                    continue
                with self._retrier_lock:
                    self._failure = None
                    self._retrier = None  # a later loss starts another
            self._log(logging.INFO, "feedback database reachable again: feedback works")
            return

    def _log(self, level: int, message: str, *args: object) -> None:
        """Log a change of the database's state at ``level``, or at DEBUG if another process of
        the server says it (``speak``)."""
        logger.log(level if self._speak else logging.DEBUG, message, *args)

    def told(self, reason: str) -> None:
        """Record that ``reason`` was logged with where (the server's start-up line): /readyz, which
        says it without where, does not log it again."""
        self._told = reason

    def check(self, public: bool = False) -> dict[str, Any]:
        """The database's state for ``/readyz``: ``ok`` and, when not, why (``reason``).

        ``public``: for an answer to anyone (``/readyz`` needs no key), the reason of a failure to
        reach the database does not name its host, port, user or name (:func:`without_where`);
        they are logged, once per reason.

        A schema revision older than this paidan's, or none, is not ok; one this paidan does not
        know (a newer paidan migrated the database while this server ran) is ok, with a ``note``,
        as long as every column this paidan's statements name is still there (one more query,
        for such a revision only), and not ok, saying to upgrade this server, when it is not.

        Whether it can be written too, writing nothing: a store that could be read but not written
        (a SQLite file or filesystem turned read-only, a PostgreSQL standby after a failover or
        with default_transaction_read_only) answered every save 503 while this said ``ok``.
        """
        try:
            self.ensure_schema()
            with self.engine.connect() as conn:
                problem = _read_only(conn)
                stored = _stored_revisions(conn) if problem is None else ()
                newer = problem is None and _newer_revision(stored)
                if newer:
                    problem = _columns_missing(conn, stored)
        except DatabaseUnavailable as e:
            return {"ok": False, "backend": self.backend, "reason": self._said(str(e), public)}
        except SQLAlchemyError as e:
            self._lost(e)
            reason = self._said(safe_reason(e), public)
            return {"ok": False, "backend": self.backend, "reason": reason}
        if newer and problem is None:
            # A newer paidan migrated it while this server ran (the server refuses such a
            # database at start-up), as in a rolling upgrade: saves and the export go on working,
            # as they name only this paidan's columns, all still there (_columns_missing).
            # Calling it degraded, with advice to restore a backup, took working servers out of
            # a load balancer; calling it ready when that migration had renamed or dropped a
            # column they use kept in one that answered every save 503.
            return {"ok": True, "backend": self.backend, "note": _newer_note(stored)}
        if problem is None:
            problem = schema_mismatch(stored)
        if problem is not None:
            return {"ok": False, "backend": self.backend, "reason": problem}
        return {"ok": True, "backend": self.backend}

    def _said(self, reason: str, public: bool) -> str:
        """``reason`` as :meth:`check` says it; one said without where is logged with it, once."""
        if not public:
            return reason
        shown = without_where(reason)
        if shown != reason and reason != self._told:
            self._told = reason
            self._log(logging.WARNING, "feedback database unavailable: %s", reason)
        return shown

    def _failed(self, e: SQLAlchemyError) -> DatabaseUnavailable:
        """What a failed operation raises. A missing table or column (and only then: no cost on
        the way of a save that works) is looked into: if the database is no longer at this
        paidan's revision, :class:`SchemaMismatch` says so and what to do."""
        self._lost(e)
        if _schema_error(e) or _not_null_of_unknown_column(e):
            problem = self._schema_problem()
            if problem is not None:
                return SchemaMismatch(problem)
        return unavailable(e)  # SQLite's "database is locked" says who may hold the lock

    def _schema_problem(self) -> str | None:
        """:func:`schema_mismatch` for the revision stored now (None when it cannot be read),
        for :meth:`_failed`. The caller must hold no connection of this engine.

        Read by one caller at a time and reused for ``SCHEMA_VERDICT_S``: once the schema was
        taken back, every save fails, and each reading the revision for itself cost a burst of
        saves a connection each (and the pool's other users, /readyz, their wait).
        """
        with self._verdict_lock:
            if self._verdict is not None and time.monotonic() < self._verdict[0]:
                return self._verdict[1]
            problem: str | None
            try:
                with self.engine.connect() as conn:
                    stored = _stored_revisions(conn)
                    # This server reached it at its own revision, so one it does not know is a
                    # newer paidan's (another application's only at start-up, refused there).
                    if _newer_revision(stored):
                        problem = _columns_missing(conn, stored) or _newer_mismatch(stored)
                    else:
                        problem = schema_mismatch(stored)
            except SQLAlchemyError as again:
                logger.debug("cannot read the schema revision: %s", safe_reason(again))
                problem = None
            self._verdict = (time.monotonic() + SCHEMA_VERDICT_S, problem)
            return problem

    def add_feedback(self, **values: Any) -> Feedback:
        """Insert one feedback row and commit; ``created_at`` defaults to now (UTC).

        With a ``request_id`` already stored, nothing is inserted: the stored row is returned, so
        a save the client sends again (its first answer was lost, or a 503 at the commit, whose
        outcome is unknown) is stored once. Two saves with one request_id at the same moment: the
        unique index refuses the second insert, which then returns the first's row.
        """
        self.ensure_schema()
        request_id = values.get("request_id")
        if request_id is not None:
            stored = self.feedback_by_request_id(request_id)
            if stored is not None:
                return stored
        values.setdefault("created_at", datetime.now(UTC))
        row = Feedback(**values)
        refused: IntegrityError | None = None  # by the unique request_id, or a check
        failed: SQLAlchemyError | None = None  # the INSERT, which stored nothing
        try:
            with self.sessions() as session:  # closed with a rollback if not committed
                try:
                    session.add(row)
                    session.flush()  # the INSERT: a failure until here stores nothing
                except IntegrityError as e:
                    refused = e
                except SQLAlchemyError as e:
                    failed = e
                else:
                    try:
                        session.commit()
                    except IntegrityError as e:  # a deferred check (not paidan's schema)
                        refused = e
                    except SQLAlchemyError as e:
                        # A COMMIT the database received before the connection failed (it
                        # stalled at the commit and the watchdog cut it) is carried out when it
                        # resumes: saying only "unavailable" made the client save it again,
                        # stored twice.
                        self._lost(e)
                        again = (
                            "send it again with the same request_id, which stores it once"
                            if request_id is not None
                            else "look for it in the export (GET /v1/feedback, its ticket_id) "
                            "before saving it again"
                        )
                        raise DatabaseUnavailable(
                            f"{safe_reason(e)}; this happened at the commit, so the row may "
                            f"have been stored: {again}"
                        ) from e
        except SQLAlchemyError as e:  # the close's rollback
            self._lost(e)
            raise DatabaseUnavailable(safe_reason(e)) from e
        # Looked into once the session is closed: what follows checks a connection out of its own.
        # With the session's still held, a burst of saves failing at once (a schema taken back
        # under the server) held a connection each while waiting for a second, the pool ran dry,
        # and saves and /readyz waited out the pool timeout, some answering "QueuePool limit".
        if refused is not None:
            stored = self._raced(request_id, refused)
            if stored is not None:
                return stored
            raise self._failed(refused) from refused
        if failed is not None:
            raise self._failed(failed) from failed
        return row

    def _raced(self, request_id: str | None, e: IntegrityError) -> Feedback | None:
        """The row another save with ``request_id`` stored first, after an insert the unique
        index refused; None if the refusal was another one."""
        if request_id is None:
            return None
        logger.info("feedback request_id stored by another request meanwhile: %s", safe_reason(e))
        return self.feedback_by_request_id(request_id)

    def feedback_by_request_id(self, request_id: str) -> Feedback | None:
        """The row stored with ``request_id``, or None."""
        self.ensure_schema()
        try:
            with self.sessions() as session:
                return session.scalars(
                    select(Feedback).where(Feedback.request_id == request_id)
                ).first()
        except SQLAlchemyError as e:
            raise self._failed(e) from e

    def feedback_page(
        self, since: datetime | None, after: tuple[datetime, int] | None, limit: int
    ) -> list[Feedback]:
        """Up to ``limit`` rows created at or after ``since``, oldest first, after the key ``after``."""
        self.ensure_schema()
        query = _page(select(Feedback), since, after, limit)
        try:
            with self.sessions() as session:
                return list(session.scalars(query))
        except SQLAlchemyError as e:
            raise self._failed(e) from e

    def iter_feedback(
        self, since: datetime | None = None, page: int = EXPORT_PAGE
    ) -> Iterator[Feedback]:
        """All rows created at or after ``since``, oldest first, read in pages (keyset pagination)."""
        after: tuple[datetime, int] | None = None
        while True:
            rows = self.feedback_page(since, after, page)
            yield from rows
            if len(rows) < page:
                return
            after = (rows[-1].created_at, rows[-1].id)

    def iter_columns(
        self, columns: Sequence[str], since: datetime | None = None, page: int = EXPORT_PAGE
    ) -> Iterator[dict[str, Any]]:
        """Rows created at or after ``since`` as dicts of ``columns`` only (``id`` and
        ``created_at`` too, the keys of the pages), oldest first.

        ``retrain`` and ``drift`` read this way: loading whole rows parsed every stored
        suggestion (the full /v1/route answer, ~12 KB in memory per row), which retraining never
        uses: 620 MB more per 50,000 rows, even for a run that then decided not to retrain.
        """
        self.ensure_schema()
        names = list(dict.fromkeys(["id", "created_at", *columns]))
        wanted = [Feedback.__table__.c[name] for name in names]
        after: tuple[datetime, int] | None = None
        while True:
            query = _page(select(*wanted), since, after, page)
            try:
                with self.engine.connect() as conn:
                    rows = [dict(row._mapping) for row in conn.execute(query)]
            except SQLAlchemyError as e:
                raise self._failed(e) from e
            yield from rows
            if len(rows) < page:
                return
            after = (rows[-1]["created_at"], rows[-1]["id"])

    def dispose(self) -> None:
        self._stopped.set()
        if self._retrier is not None:
            # An attempt in progress ends within the connect timeout; the engine is disposed after.
            self._retrier.join(timeout=CONNECT_TIMEOUT_S + 2)
        self.engine.dispose()
