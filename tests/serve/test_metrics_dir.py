"""The metrics directory ``paidan serve --workers N`` makes for itself: removed by a later start once
every process that used it has ended, however it ended (``kill -9``, the OOM killer).

A real supervisor killed with SIGKILL: ``tests/reliability/test_workers.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from serve.metrics import MULTIPROC_ENV, OWNER_LOCK, make_own_multiproc_dir

REPO = Path(__file__).resolve().parents[2]
# A supervisor's part: make the directory, say where, and run until killed.
SUPERVISOR = (
    "import time; from serve.metrics import make_own_multiproc_dir as make; "
    "print(make().path, flush=True); time.sleep(600)"
)
# A worker's part: hold the directory PROMETHEUS_MULTIPROC_DIR names, and run until killed.
WORKER = (
    "import time; from serve.metrics import hold_multiproc_dir as hold; "
    "hold(); print('held', flush=True); time.sleep(600)"
)


@contextmanager
def process(code: str, tmp: Path, env: dict[str, str] | None = None) -> Iterator[tuple[Any, str]]:
    """Run ``code`` in a Python process with ``TMPDIR=tmp``; yields it and its first line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmp), **(env or {})},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc, proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def killed(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops its lock
    proc.wait(timeout=30)


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's temporary directory (TMPDIR), as a fresh ``paidan serve`` would read it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    return tmp_path


def test_a_start_removes_the_directories_of_killed_servers_only(tmp: Path) -> None:
    # Removed only by a supervisor that exited normally: `kill -9` left one in /tmp for ever.
    older = tmp / "paidan-metrics-q1w2e3r4"  # an older paidan's: nothing proves its server ended
    older.mkdir()
    (older / "counter_7.db").write_bytes(b"")
    operator = tmp / "paidan-metrics-ops"  # named in PROMETHEUS_MULTIPROC_DIR by an operator
    operator.mkdir()
    with (
        process(SUPERVISOR, tmp) as (alive, alive_dir),
        process(SUPERVISOR, tmp) as (dead, dead_dir),
        process(SUPERVISOR, tmp) as (crashed, draining_dir),
        process(WORKER, tmp, {MULTIPROC_ENV: draining_dir}) as (worker, held),
    ):
        assert held == "held"
        assert Path(dead_dir).name.startswith(f"paidan-metrics-{dead.pid}-")
        (Path(dead_dir) / "counter_123.db").write_bytes(b"")
        killed(dead)
        killed(crashed)  # its worker still runs (draining): the directory is in use
        own = make_own_multiproc_dir()
        try:
            assert not Path(dead_dir).exists()
            assert Path(alive_dir).is_dir() and (Path(alive_dir) / OWNER_LOCK).is_file()
            assert Path(draining_dir).is_dir()
            assert older.is_dir() and (older / "counter_7.db").is_file() and operator.is_dir()
            assert own.path.parent == tmp and own.path.name.startswith(
                f"paidan-metrics-{os.getpid()}-"
            )
            killed(worker)
            killed(alive)
            # The next start: the directories of both servers are free now, this one's is not.
            again = make_own_multiproc_dir()
            again.remove()
            assert not Path(draining_dir).exists() and not Path(alive_dir).exists()
            assert own.path.is_dir() and older.is_dir() and operator.is_dir()
        finally:
            own.remove()
    assert not own.path.exists()
    assert sorted(p.name for p in tmp.iterdir()) == sorted([older.name, operator.name])


def test_a_directory_of_another_user_is_left_alone(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with process(SUPERVISOR, tmp) as (dead, dead_dir):
        killed(dead)
    other_uid = os.geteuid() + 1
    monkeypatch.setattr(os, "geteuid", lambda: other_uid)
    make_own_multiproc_dir().remove()
    assert Path(dead_dir).is_dir()


# One app in a process of its own (prometheus_client picks its multiprocess mode at import): route a
# ticket and print the names of the samples /metrics answers.
SCRAPE = """
import json, sys
from pathlib import Path

from fastapi.testclient import TestClient

from model.settings import Settings
from serve.app import create_app

model = Path(sys.argv[1])
settings = Settings(
    model_root=model.parent, model_dir=model, data_dir=sys.argv[2], reload_interval=0
)
with TestClient(create_app(settings)) as client:
    assert client.post("/v1/route", json={"text": "楼下烧烤店油烟很大"}).status_code == 200
    text = client.get("/metrics").text
lines = [line for line in text.splitlines() if line and not line.startswith("#")]
print(json.dumps(sorted({line.split("{")[0].split(" ")[0] for line in lines})))
"""


def test_one_worker_and_several_answer_the_same_metrics(tiny_model_dir: Path, tmp: Path) -> None:
    # One worker's /metrics also had a `*_created` series per counter and histogram, which the
    # multiprocess files of --workers N cannot give: a dashboard or alert built on one worker lost
    # them when the server was scaled out.
    def names(env: dict[str, str]) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", SCRAPE, str(tiny_model_dir), str(tmp / "var")],
            cwd=REPO,
            env={**os.environ, "TMPDIR": str(tmp), **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return cast(list[str], json.loads(done.stdout))

    (tmp / "metrics").mkdir()
    several = names({MULTIPROC_ENV: str(tmp / "metrics")})
    assert any(p.name.startswith("counter_") for p in (tmp / "metrics").iterdir())  # files used
    one = names({})
    assert "paidan_http_requests_total" in one
    assert one == several
