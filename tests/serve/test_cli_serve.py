"""``paidan serve`` and ``paidan db upgrade``: start-up checks, the default model, a real server."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from model.registry import current_version
from paidan.cli import app
from tests.conftest import write_tiny_csv

runner = CliRunner()
STARTUP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_setting_stops_startup_with_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["serve"], env={"PAIDAN_TOP_K": "many", "PAIDAN_MODEL_ROOT": str(tmp_path)}
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "PAIDAN_TOP_K" in lines[0]


def test_serve_refuses_a_model_outside_the_root(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["serve", "--model", str(tiny_model_dir)],
        env={"PAIDAN_MODEL_ROOT": str(tmp_path / "root"), "PAIDAN_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "outside the model root" in result.output


def test_serve_trains_the_default_model_when_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bundled sample takes a minute to train; the tiny corpus stands in for it here.
    monkeypatch.setattr("model.resources.sample_path", lambda: write_tiny_csv(tmp_path / "s.csv"))
    calls: list[dict[str, Any]] = []

    def fake_run(settings: Any, model_dir: Path, **kwargs: Any) -> None:
        calls.append({"settings": settings, "model_dir": model_dir, **kwargs})

    monkeypatch.setattr("serve.server.run", fake_run)
    root = tmp_path / "models"
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    result = runner.invoke(app, ["serve", "--port", "8123"], env=env)
    assert result.exit_code == 0, result.output
    assert "training the default model from the bundled sample" in " ".join(result.output.split())
    version = current_version(root)
    assert version is not None
    [call] = calls
    assert call["model_dir"] == root / version and call["port"] == 8123
    # The second start finds the model and trains nothing.
    again = runner.invoke(app, ["serve"], env=env)
    assert again.exit_code == 0 and "training" not in again.output
    assert calls[1]["model_dir"].name == version


def test_db_upgrade_creates_the_feedback_table(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"], env={"PAIDAN_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "paidan.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"feedback", "alembic_version"} <= tables


@pytest.mark.slow
def test_real_server_routes_and_a_committed_feedback_survives_kill_9(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
        "PAIDAN_DATA_DIR": str(tmp_path / "var"),
    }
    env.pop("PAIDAN_DATABASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paidan",
            "serve",
            "--model",
            str(tiny_model_dir),
            "--port",
            str(port),
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with httpx.Client(base_url=base, timeout=10) as client:
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.2)
            routed = client.post("/v1/route", json={"text": "老板拖欠工资三个月不发"})
            assert routed.status_code == 200
            assert routed.json()["department"]["label"] == "人社"
            saved = client.post(
                "/v1/feedback",
                json={"text": "老板拖欠工资", "department": "人社", "ticket_id": "K9"},
            )
            assert saved.status_code == 201
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no shutdown, no checkpoint: only what was synced
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
    with sqlite3.connect(tmp_path / "var" / "paidan.db") as conn:
        rows = conn.execute("SELECT ticket_id, department FROM feedback").fetchall()
    assert rows == [("K9", "人社")]
