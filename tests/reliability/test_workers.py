"""``paidan serve --workers 2``: connections reach every worker; dead and SIGHUP'd workers are replaced.

uvicorn's own workers shared one socket, and the first to wake accepted every waiting connection:
32 connections opened together mostly all went to one worker (serve/workers.py).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
import uvicorn

from serve.workers import Supervisor
from tests.reliability.live import UVICORN_DEFAULT_S, LiveServer, answered, port_of

CONNECTIONS = 32
WAIT_S = 60


def worker_pids(server: LiveServer, port: int) -> set[int]:
    """The supervisor's children that listen on ``port``."""
    pids = set()
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            conns = child.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            pids.add(child.pid)
    return pids


def wait_until(condition: Callable[[], bool], what: str, server: LiveServer) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen:\n{server.logs()[-3000:]}"
        time.sleep(0.1)


def start(live_server_factory: Callable[..., LiveServer], model_dir: Path) -> LiveServer:
    server = live_server_factory(
        "--model",
        str(model_dir),
        "--workers",
        "2",
        "--no-access-log",
        env={"PAIDAN_MODEL_ROOT": str(model_dir.parent), "PAIDAN_RELOAD_INTERVAL": "0"},
    )
    wait_until(lambda: "2 workers serving" in server.logs(), "start-up of both workers", server)
    return server


@pytest.mark.slow
def test_connections_opened_together_reach_both_workers(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    server = start(live_server_factory, tiny_model_dir)
    port = port_of(server)
    workers = worker_pids(server, port)
    assert len(workers) == 2, workers
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(CONNECTIONS)]
    try:
        for s in socks:  # one keep-alive request each, so every connection has been accepted
            assert answered(s).startswith(b"HTTP/1.1 200"), "no answer on a connection"
        mine = {s.getsockname()[1] for s in socks}
        per_worker: Counter[int] = Counter()
        for pid in workers:
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port in mine:
                    per_worker[pid] += 1
        # Idle for longer than uvicorn's default keep-alive (5 s): the workers keep the connections
        # too (PAIDAN_KEEP_ALIVE_S, tests/reliability/test_keep_alive.py).
        time.sleep(UVICORN_DEFAULT_S + 1.5)
        for s in socks:
            assert answered(s).startswith(b"HTTP/1.1 200"), "an idle connection was closed"
    finally:
        for s in socks:
            s.close()
    assert sum(per_worker.values()) == CONNECTIONS, per_worker
    # A fair coin gives each worker fewer than 4 of 32 with probability 3e-6.
    assert len(per_worker) == 2 and min(per_worker.values()) >= 4, per_worker


@pytest.mark.slow
def test_dead_worker_is_replaced_and_sighup_replaces_all_without_a_failed_request(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    server = start(live_server_factory, tiny_model_dir)
    port = port_of(server)
    first = worker_pids(server, port)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(worker_pids(server, port) - {victim}) == 2, "a replacement worker", server
    )
    wait_until(
        lambda: server.logs().count("Application startup complete") >= 3,
        "the replacement's start-up",
        server,
    )
    before = worker_pids(server, port)

    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def load() -> None:
        # A new connection per request: no keep-alive connection can be closed under a request.
        while not stop.is_set():
            try:
                r = httpx.post(
                    server.url + "/v1/route",
                    json={"text": "楼下烧烤店油烟扰民"},
                    headers={"Connection": "close"},
                    timeout=30,
                )
                if r.status_code == 200:
                    answered[0] += 1
                else:
                    failures.append(f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as e:
                failures.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_until(
            lambda: (
                not (worker_pids(server, port) & before) and len(worker_pids(server, port)) == 2
            ),
            "replacement of both workers",
            server,
        )
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert "replacing 2 workers one at a time" in server.logs()
    assert failures == [], failures[:5]
    assert answered[0] > 20
    after = worker_pids(server, port)
    assert server.proc.poll() is None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    assert running(first | before | after) == set()


def running(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (an exited child may linger as a zombie)."""
    out = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
        except psutil.NoSuchProcess:
            continue
    return out


def test_a_port_in_use_is_refused_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = uvicorn.Config("serve.app:create_app", factory=True, host="127.0.0.1", port=port)
        with pytest.raises(
            OSError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"
        ):
            Supervisor(config, 2)
