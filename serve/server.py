"""Running the app under uvicorn: what ``paidan serve`` calls once it knows which model to serve."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import logging.config
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from model.artifact import load_serving_router, verify
from model.registry import Lease, lease
from model.settings import Settings
from model.startup import startup
from serve.db import SERVER_TABLE_LOCK_WAIT_S, Database, DatabaseUnavailable, describe_url
from serve.metrics import (
    MULTIPROC_ENV,
    OwnMetricsDir,
    forget_stopped_processes,
    make_own_multiproc_dir,
    multiproc_dir,
    multiproc_setting,
)
from serve.workers import STOP_TIMEOUT_S, Supervisor, listening_socket

if TYPE_CHECKING:  # model.router imports numpy and SciPy, which the --workers supervisor needs not
    from model.router import Router
    from serve.app import RouterLoader

logger = logging.getLogger(__name__)

MODEL_DIR_ENV = "PAIDAN_MODEL_DIR"
ACCESS_LOG_ENV = "PAIDAN_ACCESS_LOG"
BACKLOG = 2048  # uvicorn's default
STARTUP_FAILURE = 3  # uvicorn's exit status when the app's start-up fails
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # a server stops gracefully on either


def prepare_database(settings: Settings, say_directory: bool = False) -> str | None:
    """Apply the migrations once before any worker starts; returns why not, if the database is down.

    It says nothing: the app's start-up, right after, tries again and says once, in its words,
    that feedback waits for the database (a second warning here read as a second failure), and
    that the SQLite file's directory cannot be made; ``paidan db upgrade``, which serves nothing,
    prints the reason as its own error, after that warning (``say_directory``), and so does the
    supervisor of ``--workers N``, whose workers leave it out (N workers said it N times).
    """
    # A server's wait for a held table lock (the app's start-up and background attempts wait as
    # long, and say who holds it): this one waiting TABLE_LOCK_WAIT_S put off serving by as much.
    db = Database(
        settings.resolved_database_url,
        lock_wait=SERVER_TABLE_LOCK_WAIT_S,
        warn_directory=say_directory,
    )
    try:
        db.ensure_schema()
    except DatabaseUnavailable as e:
        return str(e)
    finally:
        db.dispose()
    return None


def describe_database(settings: Settings) -> str:
    """The database URL with any password hidden (in ``USER:PASSWORD@`` or the query)."""
    return describe_url(settings.resolved_database_url)


def log_config(level: str = "info", workers: int = 1) -> dict[str, Any]:
    """uvicorn's logging set-up plus paidan's loggers (``serve.*``, ``model.*``, ``paidan.*``) on
    stderr, each line beginning with its time in UTC and, with several ``workers``, its process id
    (:mod:`serve.logs`)."""
    from uvicorn.config import LOGGING_CONFIG

    from serve.logs import dated

    config = dated(copy.deepcopy(LOGGING_CONFIG), workers)
    for name in ("serve", "model", "paidan"):
        config["loggers"][name] = {
            "handlers": ["default"],
            "level": level.upper(),
            "propagate": False,
        }
    return config


@contextlib.contextmanager
def server_log(level: str = "info", workers: int = 1) -> Iterator[None]:
    """The server's log (:func:`log_config`) from the start of ``paidan serve``, not only once
    uvicorn sets it up: the lines before (the default model's training, a stale metrics directory,
    a SQLite directory that cannot be made, alembic's under ``--verbose``) were the console's,
    undated. The loggers it sets are put back as they were when it ends (a test, a program that
    runs the CLI in its own process)."""
    config = log_config(level, workers)
    names = ["", "py.warnings", *config["loggers"]]
    saved = [
        (logger, logger.handlers[:], logger.level, logger.propagate, logger.disabled)
        for logger in map(logging.getLogger, names)
    ]
    logging.config.dictConfig(config)
    logging.captureWarnings(True)  # a library's warning, through the root logger's dated lines
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for logger, handlers, level_was, propagate, disabled in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level_was)
            logger.propagate = propagate
            logger.disabled = disabled


def check_metrics_dir() -> None:
    """Refuse a ``PROMETHEUS_MULTIPROC_DIR`` that cannot work, make it if missing, and warn when it
    holds metric files already.

    prometheus_client requires the directory to be emptied between runs: the files of an earlier
    run's processes are summed with this run's, so ``/metrics`` counts requests this server never
    answered. A directory ``paidan serve`` makes itself is new each run and removed at its end (or, if
    it was killed, at a later start: :func:`serve.metrics.remove_abandoned_dirs`);
    one set in the environment is the user's (it may be shared, or watched), so it is not emptied
    here, only reported; but the live gauges of processes no longer running are dropped
    (:func:`serve.metrics.forget_stopped_processes`), as the supervisor drops a reaped worker's.
    Called before any worker starts, when every file found is stale.
    """
    path = multiproc_dir()
    setting = multiproc_setting()
    if path is None or setting is None:
        return
    forget_stopped_processes(path)
    stale = sorted(f.name for f in path.glob("*.db"))
    if stale:
        logger.warning(
            "%s=%s already holds %d metric files (%s%s): their counts are added to this run's; "
            "empty it before each start, as prometheus_client requires, or unset it for a new "
            "directory of paidan's own each run",
            setting[0],
            path,
            len(stale),
            ", ".join(stale[:3]),
            ", …" if len(stale) > 3 else "",
        )


# What run() puts in its process's environment for the app or the worker processes it starts.
KEY_ENV = {"PAIDAN_API_KEYS": "api_keys", "PAIDAN_ADMIN_KEYS": "admin_keys"}
RUN_ENV = (
    MODEL_DIR_ENV,
    ACCESS_LOG_ENV,
    "PAIDAN_FOLLOW_CURRENT",
    "PAIDAN_ALLOWED_HOSTS",
    *KEY_ENV,
)


def _restores_environment(func: Callable[..., None]) -> Callable[..., None]:
    """Run ``func`` and then put :data:`RUN_ENV` back as it was: a server run in a process that
    goes on (a test, a program embedding paidan) left a refused ``--model`` pinned for the next
    server it started, which then loaded a model outside its own root."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        saved = {key: os.environ.get(key) for key in RUN_ENV}
        try:
            func(*args, **kwargs)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    return wrapper


def hide_raw_keys(settings: Settings) -> None:
    """Put the keys' hashes in place of raw keys in ``PAIDAN_API_KEYS`` / ``PAIDAN_ADMIN_KEYS``.

    The settings keep only hashes, but ``os.environ`` kept the raw keys: in every ``--workers``
    process's environment (``/proc/PID/environ``, core dumps, crash reporters that collect the
    environment). The workers read their settings from the environment and accept the hashes, so
    they authorise the same keys. This process's own ``/proc/PID/environ`` is the block it was
    started with, which no change to ``os.environ`` reaches: configure hashes to keep raw keys
    out of it too (SECURITY.md).
    """
    for name, field in KEY_ENV.items():
        hashes: tuple[str, ...] = getattr(settings, field)
        if hashes or name in os.environ:
            os.environ[name] = ",".join(hashes)


@_restores_environment
def run(
    settings: Settings,
    model_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    access_log: bool | None = None,
    log_level: str = "info",
    announce: Callable[[], None] | None = None,
) -> None:
    """Serve ``model_dir`` with uvicorn; blocks until the server stops.

    With one worker the app is built here; with several, each worker process builds its own from
    the environment (``serve.app:create_app`` as a uvicorn factory, under
    :class:`serve.workers.Supervisor`, each worker on its own ``SO_REUSEPORT`` socket), so the
    model directory travels in ``PAIDAN_MODEL_DIR`` and Prometheus metrics are shared through
    ``PROMETHEUS_MULTIPROC_DIR``.

    ``settings.model_dir`` says whether the model was chosen (``--model``, ``PAIDAN_MODEL_DIR``),
    which pins the server to it; else ``model_dir`` is the root's current model, and the server
    switches to whatever ``current`` names (by polling, unless ``follow_current`` is off, and on
    SIGHUP or a reload naming no model).

    ``announce`` is called once the model is verified, just before the server starts.
    """
    with startup():
        import uvicorn

        if workers <= 1:  # the app is built here; under --workers N each worker builds its own
            import serve.app  # noqa: F401 (the app's modules, imported with the collector off)
        from serve.auth import check_bind_allowed
        from serve.hosts import ALLOWED_HOSTS_ENV, served_hosts
        from serve.protocol import header_limit_options

    check_bind_allowed(settings, host)  # no keys: loopback only (SECURITY.md)
    check_metrics_dir()
    # uvicorn's access log prints query strings verbatim (PII); serve.telemetry logs masked lines.
    if access_log is None:
        access_log = settings.access_log
    # On loopback the Host header must name this machine (DNS rebinding; serve/hosts.py).
    allowed_hosts = served_hosts(settings, host)
    settings = settings.model_copy(
        update={"access_log": access_log, "allowed_hosts": allowed_hosts}
    )
    os.environ[ACCESS_LOG_ENV] = "true" if access_log else "false"
    os.environ[ALLOWED_HOSTS_ENV] = ",".join(allowed_hosts)
    hide_raw_keys(settings)
    model_dir = Path(model_dir).resolve()
    pinned = settings.model_dir is not None
    # uvicorn's options for either path below, in one place so that none reaches only one of them.
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_level": log_level,
        "log_config": log_config(log_level, workers),
        "timeout_keep_alive": settings.keep_alive_s,
        "backlog": BACKLOG,
        # Behind a proxy that publishes the server under a sub-path: /docs and its OpenAPI URL
        # (the page's own URLs are relative and need nothing).
        "root_path": settings.root_path,
        # httptools had no limit: one request with a 64 MB header stalled the worker for seconds.
        **header_limit_options(settings.max_header_bytes),
    }
    if workers <= 1:
        # Bound first, as the supervisor binds its sockets: uvicorn bound only after the app's
        # start-up (the model loaded, "Application startup complete"), then logged an error that
        # named neither host nor port ("[Errno -2] Name or service not known") and exited with 3,
        # where --workers N said "cannot listen on HOST:PORT: …" in one line and exited with 2.
        sock = listening_socket(host, port, BACKLOG)
        try:
            stopped_by = _serve_one(settings, model_dir, pinned, options, sock, announce)
        finally:
            sock.close()
        # The last line, as --workers N's supervisor writes it (stopped_line).
        logger.info("stopped%s; exit status 0", f" on {stopped_by.name}" if stopped_by else "")
        return
    # A chosen model (--model, PAIDAN_MODEL_DIR) is what every worker the supervisor starts, now or
    # to replace one, loads: lease it for as long as the supervisor runs, from before the check. A
    # server that follows `current` starts its workers from `current` (at start-up and on SIGHUP)
    # and a dead one's successor from the model the others serve, which the supervisor leases
    # (serve/workers.py); each worker also leases the model it serves.
    held = lease(settings.model_root, model_dir) if pinned else None
    own_multiproc: OwnMetricsDir | None = None
    try:
        # Fail fast, with the loader's one-line message; the tokenizer is not imported here
        # (rjieba builds its dictionary as it is imported): the supervisor cuts no text.
        verify(model_dir, settings.model_root, import_tokenizer=False)
        # Each worker says whether its database is reachable; the SQLite directory that cannot be
        # made is said here, once, as the stale metrics files are.
        prepare_database(settings, say_directory=True)
        # Worker processes build their settings from the environment: hand them what the CLI
        # decided.
        if pinned:
            os.environ[MODEL_DIR_ENV] = str(model_dir)
        else:
            # Pinning model_dir here made every later worker load the start-up model and stop
            # following `current`: a SIGHUP after a promotion put the old model back.
            os.environ.pop(MODEL_DIR_ENV, None)
        os.environ["PAIDAN_FOLLOW_CURRENT"] = "true" if settings.follow_current else "false"
        if multiproc_setting() is None:
            own_multiproc = make_own_multiproc_dir()
            os.environ[MULTIPROC_ENV] = str(own_multiproc.path)
        config = uvicorn.Config("serve.app:create_app", factory=True, **options)
        # Not uvicorn's own --workers: its workers share one socket, and the first to wake takes
        # every waiting connection (serve/workers.py).
        supervisor = Supervisor(config, workers, settings.model_root)
        if announce is not None:
            announce()
        supervisor.run()
    finally:
        if held is not None:
            held.release()
        if own_multiproc is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            own_multiproc.remove()
    logger.info("%s", stopped_line(supervisor, workers))


def stopped_line(supervisor: Supervisor, workers: int) -> str:
    """The last line of ``paidan serve --workers N``'s log once it has stopped on a signal.

    Its last lines were the workers' own ("Finished server process [PID]"): a log did not tell a
    stop by the operator (``systemctl stop``, Ctrl-C) from a supervisor that died (``kill -9``, the
    OOM killer), which writes nothing, nor say the status the command exits with.
    """
    how = f" on {supervisor.stopped_by.name}" if supervisor.stopped_by is not None else ""
    exited = workers - supervisor.killed
    said = f"{exited} worker{'s' * (exited != 1)} exited"
    if supervisor.killed:
        said += f", {supervisor.killed} killed after {STOP_TIMEOUT_S} s"
    return f"stopped{how}: {said}; exit status 0"


def _serve_one(
    settings: Settings,
    model_dir: Path,
    pinned: bool,
    options: dict[str, Any],
    sock: socket.socket,
    announce: Callable[[], None] | None,
) -> signal.Signals | None:
    """One worker: load the model here, then serve the app in this process on ``sock``; returns the
    signal that stopped it."""
    import uvicorn

    from serve.app import create_app

    # Load (and so verify) the model here, to fail fast with the loader's one-line message, and
    # hand it to the app's start-up instead of hashing and unpickling it a second time. Leased
    # before the load, as serve.reload does: the app's own lease came only once uvicorn had
    # started, and `paidan models gc` meanwhile could delete the model being served.
    first = lease(settings.model_root, model_dir)
    try:
        with startup():
            loaded = load_serving_router(model_dir, settings.model_root)
        migrated = prepare_database(settings) is None
        if announce is not None:
            announce()
        app = create_app(
            settings.model_copy(update={"model_dir": model_dir if pinned else None}),
            model_dir=model_dir,
            router_loader=_first_load_from(model_dir, loaded, first),
            migrate=not migrated,  # the app's start-up retries if the database was down
            pinned=pinned,
        )
        # Handed over: the app keeps the model while it serves it. This frame lasts as long as the
        # server, and the local kept the start-up model loaded after a reload had replaced it.
        del loaded
        server = uvicorn.Server(uvicorn.Config(app, **options))
        stopped: list[signal.Signals] = []

        def stop(sig: int, _frame: FrameType | None) -> None:
            # uvicorn raises the signal that stopped it again once it has shut down, to the
            # handler it found: SIGTERM's default one ended the process there (exit status 143,
            # no line of ours), where `--workers N` says it stopped and exits with 0. Before
            # uvicorn's own handlers are in place, a signal stops the server as theirs would.
            stopped.append(signal.Signals(sig))
            server.should_exit = True

        main = threading.current_thread() is threading.main_thread()  # else: no handlers
        previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS} if main else {}
        try:
            with contextlib.suppress(KeyboardInterrupt):
                server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not server.started:
            raise SystemExit(STARTUP_FAILURE)  # as uvicorn.run; the reason is in the log
        return stopped[0] if stopped else None
    finally:
        first.release()


def _first_load_from(
    model_dir: Path, loaded: tuple[Router, dict[str, Any]], held: Lease | None = None
) -> RouterLoader:
    """A router loader that returns ``loaded`` for the first load of ``model_dir``, then reads disk.

    Reloads (``POST /v1/admin/reload``, SIGHUP, a moved ``current`` pointer) go through the real
    loader and its checks, even for the same directory. ``held``, the lease taken before
    ``loaded`` was read, is released on that first load: the app leases its model before it
    loads it, so the lease passes to the app, which moves it with reloads.
    """
    pending: list[tuple[Router, dict[str, Any]]] = [loaded]

    def loader(path: Path, root: Path | None = None) -> tuple[Router, dict[str, Any]]:
        if pending and Path(path).resolve() == model_dir:
            if held is not None:
                held.release()
            return pending.pop()
        return load_serving_router(path, root)

    return loader
