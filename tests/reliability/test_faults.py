"""Faults: the database dies while serving; the server is killed -9 in the middle of a feedback burst."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient

from serve.db import Database
from tests.reliability.conftest import API_KEY
from tests.reliability.live import LiveServer
from tests.serve.helpers import assert_error
from tests.serve.test_postgres import pg_url

__all__ = ["pg_url"]

AUTH = {"Authorization": f"Bearer {API_KEY}"}
TICKET = {"text": "老板拖欠工资三个月不发"}
DEAD_POSTGRES = "postgresql+psycopg://paidan:secret-pw@127.0.0.1:1/paidan"


def test_database_dying_while_serving(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=[API_KEY])
    feedback = {**TICKET, "department": "人社"}
    assert client.post("/v1/feedback", json=feedback, headers=AUTH).status_code == 201
    app = client.app
    alive: Database = app.state.db  # type: ignore[attr-defined]
    app.state.db = Database(DEAD_POSTGRES, migrate=False)  # type: ignore[attr-defined]
    try:
        assert client.post("/v1/route", json=TICKET).status_code == 200
        assert client.post("/v1/route/batch", json={"items": [TICKET]}).json()["ok"] == 1
        error = assert_error(
            client.post("/v1/feedback", json=feedback, headers=AUTH), 503, "database_unavailable"
        )
        assert "routing still works" in error["message"]
        response = client.get("/v1/feedback", headers=AUTH)
        assert_error(response, 503, "database_unavailable")
        assert response.headers["retry-after"]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["database"]["ok"] is False
        assert "OperationalError" in ready.json()["database"]["reason"]
        assert "secret-pw" not in ready.text and "secret-pw" not in error["message"]
    finally:
        app.state.db.dispose()  # type: ignore[attr-defined]
        app.state.db = alive  # type: ignore[attr-defined]
    # Back: feedback works again without a restart.
    assert client.post("/v1/feedback", json=feedback, headers=AUTH).status_code == 201
    assert client.get("/readyz").json()["status"] == "ready"


# -- kill -9 during a burst of feedback ----------------------------------------------------------------
BURST_THREADS = 8
ACKED_BEFORE_KILL = 150  # the kill comes once this many feedback requests got a 2xx


def burst_then_kill(server: LiveServer) -> tuple[set[str], int]:
    """Feedback from several threads; ``kill -9`` the server mid-burst. Returns the acked ids."""
    acked: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    sent = [0]

    def send(worker: int) -> None:
        with httpx2.Client(base_url=server.url, headers=AUTH, timeout=10) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                ticket_id = f"W{worker}-{n}"
                body = {"ticket_id": ticket_id, "text": f"拖欠工资{n}", "department": "人社"}
                with lock:
                    sent[0] += 1
                try:
                    response = client.post("/v1/feedback", json=body)
                except httpx2.TransportError:
                    return  # the server is gone
                if 200 <= response.status_code < 300:
                    with lock:
                        acked.add(ticket_id)

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(BURST_THREADS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < ACKED_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL to the process group while requests are in flight
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= ACKED_BEFORE_KILL, f"only {len(acked)} feedback got through"
    return acked, sent[0]


def exported_ids(server: LiveServer) -> list[str]:
    response = httpx2.get(server.url + "/v1/feedback", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return [json.loads(line)["ticket_id"] for line in response.text.splitlines()]


def crash_and_restart(
    live_server_factory: Callable[..., LiveServer], model_dir: Path, env: dict[str, str]
) -> tuple[set[str], int, list[str], LiveServer]:
    args = ("--model", str(model_dir), "--no-access-log")
    env = {**env, "PAIDAN_MODEL_ROOT": str(model_dir.parent), "PAIDAN_API_KEYS": API_KEY}
    acked, sent = burst_then_kill(live_server_factory(*args, env=env))
    restarted = live_server_factory(*args, env=env)  # opens the database and migrates again
    ready = httpx2.get(restarted.url + "/readyz", timeout=10).json()
    assert ready["status"] == "ready" and ready["database"]["ok"] is True, ready
    return acked, sent, exported_ids(restarted), restarted


@pytest.mark.slow
def test_acked_feedback_survives_kill_9_sqlite(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    acked, sent, stored, _ = crash_and_restart(
        live_server_factory, tiny_model_dir, {"PAIDAN_DATA_DIR": str(tmp_path / "var")}
    )
    assert acked <= set(stored), f"lost: {sorted(acked - set(stored))[:10]}"
    assert len(stored) == len(set(stored)) and len(stored) <= sent  # nothing stored twice
    with sqlite3.connect(tmp_path / "var" / "paidan.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.slow
@pytest.mark.postgres
def test_acked_feedback_survives_kill_9_postgres(
    live_server_factory: Callable[..., LiveServer],
    tiny_model_dir: Path,
    tmp_path: Path,
    pg_url: str,
) -> None:
    acked, sent, stored, _ = crash_and_restart(
        live_server_factory,
        tiny_model_dir,
        {"PAIDAN_DATA_DIR": str(tmp_path / "var"), "PAIDAN_DATABASE_URL": pg_url},
    )
    assert acked <= set(stored), f"lost: {sorted(acked - set(stored))[:10]}"
    assert len(stored) == len(set(stored)) and len(stored) <= sent
