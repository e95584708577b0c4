"""A server as a child process on a free loopback port: start it, wait for ``/readyz``, stop it.

Shared by ``load.py`` and ``serve.py``, which put ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def paidan_serve(model_dir: Path, port: int, *args: str) -> list[str]:
    """``paidan serve --model DIR`` on 127.0.0.1:``port`` without the access log, plus ``args``."""
    return [sys.executable, "-m", "paidan", "serve", "--model", str(model_dir),
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *args]  # fmt: skip


def server_env(model_root: Path, data_dir: Path) -> dict[str, str]:
    """This process's environment with the model root and data directory set, on SQLite."""
    env = {**os.environ, "PAIDAN_MODEL_ROOT": str(model_root), "PAIDAN_DATA_DIR": str(data_dir)}
    env.pop("PAIDAN_DATABASE_URL", None)
    return env


def start_server(
    cmd: list[str], env: dict[str, str], port: int
) -> tuple[subprocess.Popen[bytes], float]:
    """Run ``cmd`` in its own process group and wait until ``/readyz`` on ``port`` answers 200.

    Returns the process and the seconds it took to become ready. Raises ``RuntimeError`` (with the
    end of its stderr) if it exits first, or stops it and raises if it is not ready within
    :data:`STARTUP_TIMEOUT_S`.
    """
    import httpx2

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{shlex.join(cmd)} exited with {proc.returncode}: "
                + (proc.stderr.read().decode()[-2000:] if proc.stderr else "")
            )
        try:
            if httpx2.get(base_url(port) + "/readyz", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"{shlex.join(cmd)} not ready after {STARTUP_TIMEOUT_S} s")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (every worker), SIGKILL if it has not gone in 15 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    if proc.stderr:
        proc.stderr.close()
