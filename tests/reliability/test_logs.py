"""What a real ``paidan serve`` writes to its log (stderr, as ``nohup`` or ``>> file`` keeps it)."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

from model.settings import Settings
from serve.app import create_app
from tests.reliability.live import LiveServer, port_of

# As train's progress lines: the time in UTC, with its date.
DATED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (INFO|WARNING|ERROR): ")


def test_every_line_the_server_logs_begins_with_its_utc_time(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    # uvicorn wrote "LEVEL:    message": a refused reload, a database warning or a 431 in a log
    # kept for weeks could not be placed in time. A server in another time zone logs UTC too.
    began = datetime.now(UTC).replace(microsecond=0)
    env = {
        "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
        "PAIDAN_RELOAD_INTERVAL": "0",
        "TZ": "Asia/Shanghai",
    }
    server = live_server_factory("--model", str(tiny_model_dir), "--access-log", env=env)
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        refused = client.post("/v1/admin/reload", json={"model_dir": "20990101T000000Z-nosuch"})
        assert refused.status_code == 422, refused.text
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 431 ")
    wanted = (
        "Application startup complete",
        '"GET /healthz HTTP/1.1" 200',
        "model reload refused",
        "refused with 431",
    )
    deadline = time.monotonic() + 10  # an access line is written once its answer is sent
    while not all(w in server.logs() for w in wanted):
        assert time.monotonic() < deadline, (wanted, server.logs())
        time.sleep(0.05)
    # Every line, not only uvicorn's "LEVEL:" ones: the start-up line naming the model, the
    # address and the feedback store, which the CLI printed itself, had no date.
    logged = [line for line in server.logs().splitlines() if line.strip()]
    assert any(
        "serving " in line and f"on http://127.0.0.1:{port_of(server)}" in line for line in logged
    ), logged
    ended = datetime.now(UTC)
    for line in logged:
        dated = DATED.match(line)
        assert dated, line  # one worker: no process id
        when = datetime.strptime(dated.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert began <= when <= ended + timedelta(seconds=1), line


def test_an_export_the_database_cuts_logs_its_warning_and_no_bare_error(
    make_settings: Callable[..., Settings],
    cached_loader: Callable[[Path, Path | None], Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A PostgreSQL restarted during `curl …/v1/feedback`: beside the export's own WARNING, uvicorn
    # logged "ERROR: ASGI callable returned without completing response." for the connection
    # closed on purpose, an ERROR naming no request that an operator alerting on ERROR is paged
    # for. Run under a real uvicorn, which writes that line.
    import serve.routes
    from serve.db import DatabaseUnavailable

    monkeypatch.setattr(serve.routes, "EXPORT_PAGE", 2)
    app = create_app(make_settings(reload_interval=0), router_loader=cached_loader)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's loggers keep propagating to the root, where caplog listens.
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="info"))
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)  # even if an earlier test stopped its propagation
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    try:
        with caplog.at_level(logging.INFO):
            thread.start()
            deadline = time.monotonic() + 60
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.05)
            db = app.state.db
            for i in range(3):
                db.add_feedback(text=f"t{i}", department="人社")
            real = db.feedback_page

            def dies_after_the_first_page(since: Any, after: Any, limit: int) -> Any:
                if after is not None:
                    raise DatabaseUnavailable("OperationalError: connection refused")
                return real(since, after, limit)

            monkeypatch.setattr(db, "feedback_page", dies_after_the_first_page)
            with pytest.raises(httpx2.RemoteProtocolError):  # the transfer is cut, as documented
                httpx2.get(f"http://127.0.0.1:{port}/v1/feedback", timeout=30)
            server.should_exit = True
            thread.join(timeout=30)
    finally:
        server.should_exit = True
        uvicorn_log.removeHandler(caplog.handler)
        sock.close()
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("uvicorn") for r in records), "uvicorn's log was not captured"
    assert any("feedback export stopped after 2 rows" in r.getMessage() for r in records)
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_one_worker_server_says_last_that_it_stopped_and_exits_0(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, sig: signal.Signals
) -> None:
    # The default server (no --workers) ended with uvicorn's "Finished server process" and, on
    # SIGTERM, died of the signal uvicorn raised again (exit status 143), where `--workers N`
    # says "stopped on SIGTERM: …; exit status 0": one service, two endings to tell apart.
    server = live_server_factory(
        "--model",
        str(tiny_model_dir),
        env={"PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent), "PAIDAN_RELOAD_INTERVAL": "0"},
    )
    os.killpg(server.proc.pid, sig)
    assert server.proc.wait(timeout=60) == 0, server.logs()[-2000:]
    last = server.logs().strip().splitlines()[-1]
    assert re.fullmatch(rf"\S+ INFO: +stopped on {sig.name}; exit status 0", last), last


def test_a_server_that_stops_says_the_feedback_failures_it_had_not_said(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    # The summary of a feedback outage waited for the next feedback request: a server stopped
    # before one came (at night, a deploy) never said how many had failed after the first.
    unmakeable = Path("/proc/paidan-no-such-directory")  # /proc refuses even root
    server = live_server_factory(
        "--model",
        str(tiny_model_dir),
        env={
            "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
            "PAIDAN_RELOAD_INTERVAL": "0",
            "PAIDAN_DATABASE_URL": f"sqlite:///{unmakeable / 'paidan.db'}",
        },
    )
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            answer = client.post("/v1/feedback", json={"text": "油烟扰民", "department": "执法"})
            assert answer.status_code == 503, answer.text
    os.killpg(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0, server.logs()[-2000:]
    said = [line for line in server.logs().splitlines() if "feedback request" in line]
    assert len(said) == 1 and re.search(
        r" WARNING: +2 more feedback requests failed in the last \d+ s: feedback database "
        r"unavailable \(",
        said[0],
    ), server.logs()[-3000:]
