"""The metrics directory ``paidan serve --workers N`` makes for itself: removed by a later start once
every process that used it has ended, however it ended (``kill -9``, the OOM killer).

A real supervisor killed with SIGKILL: ``tests/reliability/test_workers.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
