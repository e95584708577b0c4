"""A real ``paidan serve`` process on 127.0.0.1 for the crash, reload and load tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx2

STARTUP_TIMEOUT_S = 60
KEEP_ALIVE_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
UVICORN_DEFAULT_S = 5  # seconds uvicorn keeps an idle connection unless told otherwise
# Seconds a server has to stop on SIGTERM (its workers drain for at most 5 s) before it is killed.
STOP_GRACE_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    proc: subprocess.Popen[bytes]
    url: str
    log: IO[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group (uvicorn and any worker) at once, without a shutdown."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=15)
        self.log.close()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the server as an operator (or systemd) does: SIGTERM to its process group, then
        SIGKILL if it has not exited within ``grace_s``.

        The fixtures' SIGKILL left each ``--workers`` server's metrics directory in the temporary
        directory, which only a supervisor that exits normally removes.
        """
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        self.kill()

    def logs(self) -> str:
        if not self.log.closed:  # closed once the server is stopped
            self.log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def port_of(server: LiveServer) -> int:
    """The loopback port ``server`` listens on."""
    return int(server.url.rsplit(":", 1)[1])


def start_server(
    args: list[str], env: dict[str, str], tmp_dir: Path, port: int | None = None
) -> LiveServer:
    """``paidan serve --port P ARGS`` with ``env`` on top of ours; returns once ``/readyz`` answers.

    ``tmp_dir`` (made if missing) holds the server's log and is its ``TMPDIR`` unless ``env`` sets
    one, so that what a killed server leaves there (its metrics directory) goes with the test's
    temporary files instead of piling up in ``/tmp`` (a ``paidan-serve-*.log`` per server, when
    it was optional); ``tmp_dir/var`` is its ``PAIDAN_DATA_DIR`` unless ``env`` names a data
    directory or a database: the default, ``var`` in the working directory, was the checkout.
    """
    port = port or free_port()
    full_env = {**os.environ, **env}
    for name in ("PAIDAN_DATABASE_URL", "PAIDAN_API_KEYS", "PAIDAN_ADMIN_KEYS"):
        if name not in env:
            full_env.pop(name, None)
    if "PAIDAN_DATA_DIR" not in env:
        full_env["PAIDAN_DATA_DIR"] = str(tmp_dir / "var")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    full_env["TMPDIR"] = env.get("TMPDIR", str(tmp_dir))
    # Outlives this function: the server writes to it until it is killed.
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115
        prefix="paidan-serve-", suffix=".log", delete=False, dir=tmp_dir
    )
    command = [sys.executable, "-m", "paidan", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(
        command,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: kill -9 reaches every worker
    )
    server = LiveServer(proc, f"http://127.0.0.1:{port}", log_file, Path(log_file.name), command)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx2.Client(base_url=server.url, timeout=5) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"paidan serve exited with {proc.returncode}:\n{server.logs()}")
            try:
                if client.get("/readyz").status_code == 200:
                    return server
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"paidan serve did not become ready:\n{server.logs()}")
            time.sleep(0.1)


@contextlib.contextmanager
def live_servers(tmp_dir: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start ``paidan serve`` subprocesses (their temporary files in ``tmp_dir``); every one still
    running is stopped at the end (:meth:`LiveServer.stop`)."""
    started: list[LiveServer] = []

    def start(*args: str, env: dict[str, str] | None = None) -> LiveServer:
        server = start_server(list(args), env or {}, tmp_dir=tmp_dir)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def answered(sock: socket.socket) -> bytes:
    """Send one request on ``sock`` and read its whole answer (``b""`` if the server closed it)."""
    try:
        sock.sendall(KEEP_ALIVE_REQUEST)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        declared = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        length = int(declared[1]) if declared else 0
        while len(body) < length:
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body
    except (ConnectionResetError, BrokenPipeError):
        return b""
