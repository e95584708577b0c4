"""What a real ``paidan serve`` writes to its log (stderr, as ``nohup`` or ``>> file`` keeps it)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2

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
