"""``paidan serve --workers 2``: connections reach every worker; dead and SIGHUP'd workers are replaced.

uvicorn's own workers shared one socket, and the first to wake accepted every waiting connection:
32 connections opened together mostly all went to one worker (serve/workers.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx2
import psutil
import pytest
import uvicorn

from serve import workers
from serve.metrics import OWNER_LOCK
from serve.workers import Supervisor, _CloseWhenDraining, _DrainingServer
from tests.conftest import three_versions
from tests.reliability.live import (
    UVICORN_DEFAULT_S,
    LiveServer,
    answered,
    free_port,
    live_servers,
    port_of,
)

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


def start(
    live_server_factory: Callable[..., LiveServer],
    model_dir: Path,
    env: dict[str, str] | None = None,
) -> LiveServer:
    server = live_server_factory(
        "--model",
        str(model_dir),
        "--workers",
        "2",
        "--no-access-log",
        env={
            "PAIDAN_MODEL_ROOT": str(model_dir.parent),
            "PAIDAN_RELOAD_INTERVAL": "0",
            **(env or {}),
        },
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
def test_each_log_line_names_the_process_that_wrote_it(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    # Under --workers N the lines did not say which worker wrote them (nor when).
    import re

    server = start(live_server_factory, tiny_model_dir)
    workers = worker_pids(server, port_of(server))
    wait_until(
        lambda: server.logs().count("Application startup complete") == 2, "both start-ups", server
    )
    dated = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[(\d+)\] (INFO|WARNING|ERROR): ")
    # Every line: the CLI's own start-up line ("serving MODEL on http://…") had neither.
    logged = [line for line in server.logs().splitlines() if line.strip()]
    pids: Counter[int] = Counter()
    for line in logged:
        match = dated.match(line)
        assert match, line
        pids[int(match.group(1))] += 1
    # The supervisor's lines and each worker's.
    assert set(pids) == workers | {server.proc.pid}, (pids, workers, server.proc.pid)
    serving = next(line for line in logged if "2 workers serving" in line)
    assert f"[{server.proc.pid}] " in serving
    announced = next(line for line in logged if f"on http://127.0.0.1:{port_of(server)}" in line)
    assert f"[{server.proc.pid}] INFO:" in announced, announced


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

    def load(keep_alive: bool) -> None:
        # Half the clients open a connection per request, half keep theirs open: a retiring worker
        # must neither drop a connection it just accepted nor close one under a client's request.
        client = httpx2.Client(timeout=30)
        headers = {} if keep_alive else {"Connection": "close"}
        while not stop.is_set():
            try:
                r = client.post(
                    server.url + "/v1/route", json={"text": "楼下烧烤店油烟扰民"}, headers=headers
                )
                if r.status_code == 200:
                    answered[0] += 1
                else:
                    failures.append(f"{r.status_code} {r.text[:200]}")
            except httpx2.HTTPError as e:
                failures.append(repr(e))
        client.close()

    threads = [threading.Thread(target=load, args=(i % 2 == 0,)) for i in range(4)]
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


@pytest.mark.slow
def test_gc_keeps_the_version_the_workers_start_from_while_the_server_runs(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Every worker the supervisor starts (a replacement too) loads the directory it was told to
    # serve, which is neither current nor the one before it: gc deleted it.
    import subprocess
    import sys

    from model import registry

    root = three_versions(tiny_model_dir, tmp_path, registered=True)  # gc deletes such only
    registry.set_current(root, "v2", record=False)
    registry.promote(root, "v3")  # current v3, previous v2: v1 is neither
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    server = live_server_factory(
        "--model", str(root / "v1"), "--workers", "2", "--no-access-log", env=env
    )
    wait_until(lambda: "2 workers serving" in server.logs(), "start-up of both workers", server)
    pids = worker_pids(server, port_of(server))

    def gc() -> str:
        cmd = [sys.executable, "-m", "paidan", "models", "gc", "--keep", "1"]
        env_all = {**os.environ, **env}
        proc = subprocess.run(cmd, env=env_all, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "kept 1 version(s) in use by a running paidan serve, label or predict: v1" in gc()
    assert (root / "v1").is_dir()
    server.kill()
    wait_until(lambda: not running(pids), "the workers' exit", server)
    assert "deleted 1 version(s): v1" in gc()


@pytest.mark.slow
def test_workers_started_after_a_promotion_load_the_current_model_and_follow_it(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The supervisor handed every worker the start-up model in PAIDAN_MODEL_DIR: after a
    # promotion, a SIGHUP (or a crashed worker's replacement) served the start-up model again,
    # and the new workers no longer followed `current`.
    from model import registry

    root = three_versions(tiny_model_dir, tmp_path)
    registry.set_current(root, "v1", record=False)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    server = live_server_factory(
        "--workers", "2", "--no-access-log", env=env | {"PAIDAN_RELOAD_INTERVAL": "0.2"}
    )
    wait_until(lambda: "2 workers serving" in server.logs(), "start-up of both workers", server)
    port = port_of(server)

    def loaded(version: str) -> int:
        return server.logs().count(f"loaded from {root / version}")

    registry.promote(root, "v2")
    wait_until(lambda: loaded("v2") == 2, "both workers on v2", server)
    before = worker_pids(server, port)
    os.kill(server.proc.pid, signal.SIGHUP)
    wait_until(
        lambda: not (worker_pids(server, port) & before) and len(worker_pids(server, port)) == 2,
        "replacement of both workers",
        server,
    )
    wait_until(lambda: loaded("v2") == 4, "the new workers' start on v2", server)
    assert loaded("v1") == 2  # the first two workers' start only
    wait_until(lambda: not running(before), "the retired workers' exit", server)
    registry.promote(root, "v3")
    wait_until(lambda: loaded("v3") == 2, "the new workers following current to v3", server)


def two_workers_on_v1_beside_a_damaged_v3(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> tuple[Path, LiveServer, int]:
    """A root of three versions, v3's model file damaged, and two workers serving v1 (current),
    following `current` every 0.2 s: the root, the server and its port."""
    from model import registry
    from model.artifact import ROUTER_FILE

    root = three_versions(tiny_model_dir, tmp_path, registered=True)
    registry.set_current(root, "v1", record=False)
    (root / "v3" / ROUTER_FILE).chmod(0o644)
    with open(root / "v3" / ROUTER_FILE, "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    server = live_server_factory(
        "--workers", "2", "--no-access-log", env=env | {"PAIDAN_RELOAD_INTERVAL": "0.2"}
    )
    wait_until(lambda: "2 workers serving" in server.logs(), "start-up of both workers", server)
    port = port_of(server)
    return root, server, port


@pytest.mark.slow
def test_a_dead_worker_is_replaced_on_the_served_model_when_current_is_refused(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    # `current` named a version both workers refused (copied in part): every replacement of a dead
    # worker loaded it, failed, and was started again every half second, for ever, while the dead
    # slot's socket took connections nobody accepted.
    from model import registry

    root, server, port = two_workers_on_v1_beside_a_damaged_v3(
        live_server_factory, tiny_model_dir, tmp_path
    )
    registry.promote(root, "v3")
    wait_until(
        lambda: server.logs().count("cannot switch to model v3") == 2, "both refusals", server
    )
    victim = min(worker_pids(server, port))
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: server.logs().count("Application startup complete") == 3,
        "the replacement's start-up",
        server,
    )
    assert server.logs().count(f"loaded from {root / 'v1'}") == 3
    wait_until(
        lambda: server.logs().count("cannot switch to model v3") == 3,
        "the replacement following current (and refusing it)",
        server,
    )
    assert "Application startup failed" not in server.logs()
    with httpx2.Client(base_url=server.url, timeout=10) as client:
        for _ in range(10):  # a new connection each: both sockets are served
            r = client.get("/readyz", headers={"Connection": "close"})
            assert r.status_code == 200, r.text


@pytest.mark.slow
def test_the_workers_exit_when_the_supervisor_is_killed(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    # They served on unsupervised and kept the port: the next `paidan serve` was refused.
    server = start(live_server_factory, tiny_model_dir)
    pids = worker_pids(server, port_of(server))
    assert len(pids) == 2
    os.kill(server.proc.pid, signal.SIGKILL)  # the supervisor alone, not its process group
    server.proc.wait(timeout=15)
    try:
        wait_until(lambda: not running(pids), "the workers' exit", server)
    finally:
        for pid in running(pids):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_servers_metrics_directory_is_removed_by_the_next_start(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The supervisor removed the directory it made for itself only when it exited normally: each
    # `kill -9` (the OOM killer, the test fixtures) left one in /tmp, 576 in 18 hours.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    older = tmp / "paidan-metrics-q1w2e3r4"  # an older paidan's: nothing proves its server ended
    older.mkdir()
    env = {"TMPDIR": str(tmp)}

    def made() -> set[Path]:
        return set(tmp.glob("paidan-metrics-*")) - {older}

    live = start(live_server_factory, tiny_model_dir, env)
    (live_dir,) = made()
    # Each worker holds it too: a killed supervisor's workers still drain into it.
    lock = os.path.realpath(live_dir / OWNER_LOCK)
    for pid in worker_pids(live, port_of(live)):
        assert lock in {f.path for f in psutil.Process(pid).open_files()}, pid
    victim = start(live_server_factory, tiny_model_dir, env)
    (victim_dir,) = made() - {live_dir}
    victim.kill()  # SIGKILL to its process group: the supervisor and its workers, no clean-up
    assert victim_dir.is_dir()
    start(live_server_factory, tiny_model_dir, env)
    assert not victim_dir.exists()
    assert live_dir.is_dir() and older.is_dir()
    assert len(made()) == 2
    with httpx2.Client(base_url=live.url, timeout=10) as client:
        r = client.get("/metrics")
    assert r.status_code == 200 and "paidan_http_requests_total" in r.text, r.text[:500]


@pytest.mark.slow
def test_the_fixtures_stop_a_server_as_an_operator_does_and_leave_nothing_in_tmp(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # They sent SIGKILL: every test's `--workers` server left its metrics directory in /tmp.
    with live_servers(tmp_path) as factory:
        server = start(factory, tiny_model_dir)
        (made,) = tmp_path.glob("paidan-metrics-*")  # in the test's TMPDIR, not /tmp
    assert server.proc.returncode == 0, server.logs()[-3000:]
    assert not made.exists()


@pytest.mark.slow
def test_workers_say_once_per_start_that_the_sqlite_directory_cannot_be_made(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    # Each worker's start-up said it: --workers 2 logged the same warning twice, --workers 8
    # eight times, and read as that many failures.
    unmakeable = Path("/proc/paidan-no-such-directory")  # /proc refuses even root
    server = start(
        live_server_factory,
        tiny_model_dir,
        {"PAIDAN_DATABASE_URL": f"sqlite:///{unmakeable / 'paidan.db'}"},
    )
    said = server.logs().splitlines()
    # Both workers started and tried the database; one says it is unavailable, for both.
    assert sum("feedback database unavailable" in line for line in said) == 1, said
    warned = [line for line in said if "cannot create the directory of the SQLite database" in line]
    assert len(warned) == 1, said
    assert str(unmakeable) in warned[0]


@pytest.mark.slow
def test_workers_say_once_that_the_feedback_database_is_unavailable(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    # Each worker said it at start-up, and again at its first /readyz: --workers 4 wrote eight
    # identical WARNING lines about one database, which read as eight failures.
    closed = free_port()  # nothing listens there: connection refused at once
    server = start(
        live_server_factory,
        tiny_model_dir,
        {"PAIDAN_DATABASE_URL": f"postgresql+psycopg://paidan:pw@127.0.0.1:{closed}/paidan"},
    )
    wait_until(
        lambda: server.logs().count("Application startup complete") == 2, "both start-ups", server
    )
    for _ in range(8):  # new connections, spread over both workers by the kernel
        with httpx2.Client(base_url=server.url, timeout=10) as client:
            answer = client.get("/readyz")
        assert answer.json()["status"] == "degraded", answer.text
    said = [line for line in server.logs().splitlines() if "feedback database" in line]
    (warned,) = [line for line in said if "feedback database unavailable" in line]
    assert f"port {closed} failed: Connection refused" in warned, said
    assert "routing works" in warned


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_supervisor_says_last_that_it_stopped_and_its_exit_status(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, sig: signal.Signals
) -> None:
    # Its last lines were the workers' "Finished server process": a log did not tell a stop by
    # the operator (systemctl stop, Ctrl-C) from a supervisor that died, nor with which status.
    server = start(live_server_factory, tiny_model_dir)
    os.killpg(server.proc.pid, sig)  # as systemd and a terminal's Ctrl-C do: the whole group
    assert server.proc.wait(timeout=60) == 0
    last = server.logs().strip().splitlines()[-1]
    assert re.fullmatch(
        rf"\S+ \[{server.proc.pid}\] INFO: +stopped on {sig.name}: 2 workers exited;"
        r" exit status 0",
        last,
    ), server.logs()[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "to_group"),
    [(signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["SIGTERM-to-group", "SIGINT-to-group", "SIGTERM-to-supervisor"],
)
def test_stopped_workers_answer_the_next_request_on_a_kept_alive_connection(
    live_server_factory: Callable[..., LiveServer],
    tiny_model_dir: Path,
    sig: signal.Signals,
    to_group: bool,
) -> None:
    # systemd's default stop (KillMode=control-group) and a terminal's Ctrl-C signal every
    # process of the group, and the supervisor then sent each worker SIGTERM as well: a second
    # signal, on which a draining worker shut down at once, closing a kept-alive connection
    # whose client was sending its next request (the drain exists for that request).
    server = start(live_server_factory, tiny_model_dir)
    conns = [socket.create_connection(("127.0.0.1", port_of(server))) for _ in range(8)]
    try:
        for conn in conns:  # accepted, and now idle between two requests
            assert answered(conn).startswith(b"HTTP/1.1 200")
        if to_group:
            os.killpg(server.proc.pid, sig)
        else:
            os.kill(server.proc.pid, sig)
        time.sleep(0.3)  # the supervisor has signalled its workers by now
        for conn in conns:
            head = answered(conn).split(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 200"), server.logs()[-2000:]
            assert b"connection: close" in head
    finally:
        for conn in conns:
            conn.close()
    assert server.proc.wait(timeout=60) == 0


@pytest.mark.slow
def test_a_stopping_supervisor_refuses_new_connections_rather_than_reset_them(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    # The workers stopped accepting at SIGTERM, but the supervisor kept the slots' sockets open
    # until they had drained: a client's new connection was accepted by the kernel into a queue no
    # one read, its request sent, and then reset (16 of 16 keep-alive clients under load), which
    # a client cannot tell from a request that failed in the server. Refused, it retries safely.
    server = start(live_server_factory, tiny_model_dir)
    port = port_of(server)
    held = socket.create_connection(("127.0.0.1", port))  # keeps a worker draining a while
    try:
        assert answered(held).startswith(b"HTTP/1.1 200")
        os.kill(server.proc.pid, signal.SIGTERM)
        time.sleep(1.0)  # the workers have closed their listeners; one still drains
        assert server.proc.poll() is None, server.logs()[-2000:]
        try:
            late = socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            pass
        else:
            with late:
                late.settimeout(10)
                try:
                    said = answered(late)
                except OSError as e:  # reset, or no answer at all
                    said = repr(e).encode()
                assert said.startswith(b"HTTP/1.1 "), said
    finally:
        held.close()
    assert server.proc.wait(timeout=60) == 0


def test_a_test_server_keeps_its_database_and_log_in_the_tests_directory(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A server started without PAIDAN_DATA_DIR (most tests give none) kept its feedback in the
    # working directory, the checkout: var/paidan.db, shared by every test run and left behind.
    with live_servers(tmp_path) as factory:
        server = factory(
            "--model",
            str(tiny_model_dir),
            "--no-access-log",
            env={"PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent), "PAIDAN_RELOAD_INTERVAL": "0"},
        )
        said = server.logs()
    assert server.log_path.parent == tmp_path
    (banner,) = [line for line in said.splitlines() if "(feedback: " in line]
    assert f"(feedback: sqlite:///{tmp_path.resolve()}/" in banner, banner


def test_a_worker_that_dies_before_serving_is_started_again_after_a_growing_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was started again every half second, for ever, a traceback each time, and its slot's
    # socket meanwhile took connections nobody accepted.
    clock = [100.0]
    monkeypatch.setattr(workers, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    port = a_free_port()
    config = uvicorn.Config("serve.app:create_app", factory=True, port=port)
    supervisor = Supervisor(config, 1)
    started: list[float] = []

    class Dead:  # a worker process that exits before serving
        pid, exitcode = 1, 3

        def __init__(self, target: Any, args: tuple[Any, ...], name: str) -> None:
            assert args[1].getsockname()[1] == port  # a listening socket again, on the port
            started.append(clock[0])

        def start(self) -> None:
            pass

        def is_alive(self) -> bool:
            return False

    monkeypatch.setattr(supervisor, "_ctx", SimpleNamespace(Event=threading.Event, Process=Dead))
    supervisor._slots = [supervisor._start(0)]
    waiting_open = 0
    try:
        for _ in range(60):  # 30 s of polls
            clock[0] += workers.POLL_S
            supervisor._replace_dead()
            if supervisor._restart_at[0] is not None and supervisor.sockets[0].fileno() != -1:
                waiting_open += 1
    finally:
        for sock in supervisor.sockets:
            sock.close()
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert 4 <= len(started) <= 7 and gaps == sorted(gaps) and gaps[0] >= 1, started
    assert waiting_open == 0  # closed while the slot waits: the kernel sends no one there


def test_the_supervisor_leases_the_model_its_next_workers_start_from(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Only the workers leased the model they served: both killed at once (the OOM killer), a gc
    # in the gap before their successors' leases deleted it, though it was what they load.
    from model import registry

    root = three_versions(tiny_model_dir, tmp_path, registered=True)
    registry.set_current(root, "v3", record=False)  # v1 and v2: neither current nor previous
    config = uvicorn.Config("serve.app:create_app", factory=True, port=a_free_port())
    supervisor = Supervisor(config, 2, model_root=root)
    try:
        for slot in supervisor._served:  # both workers reported v1, then died: no worker runs
            slot.value = os.fsencode(root / "v1")
        supervisor._lease_served()
        assert registry.gc(root, keep=1) == (["v2"], ["v1"])
        for slot in supervisor._served:  # the next workers followed `current` to v3
            slot.value = os.fsencode(root / "v3")
        supervisor._lease_served()
        assert registry.gc(root, keep=1) == (["v1"], [])  # released once no worker names it
    finally:
        for sock in supervisor.sockets:
            sock.close()
        for held in supervisor._leases.values():
            held.release()


@pytest.mark.slow
def test_workers_killed_together_come_back_after_a_gc_and_a_sighup_after_a_repair(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The exploratory tester's run: workers on v1, `current` written by hand to a damaged v3 (both
    # refuse it), both workers killed, gc at once deleted v1, and every successor failed on it,
    # for ever; repairing `current` did not help, and SIGHUP did nothing.
    from model import registry
    from model.artifact import ROUTER_FILE

    root, server, port = two_workers_on_v1_beside_a_damaged_v3(
        live_server_factory, tiny_model_dir, tmp_path
    )
    registry.set_current(root, "v3", record=False)  # by hand: not recorded, v1 is not previous
    wait_until(
        lambda: server.logs().count("cannot switch to model v3") == 2, "both refusals", server
    )
    time.sleep(2 * workers.POLL_S)  # the supervisor's lease follows within a poll

    def kill_both() -> None:
        pids = worker_pids(server, port)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not running(pids), "the workers' death", server)

    kill_both()
    assert registry.gc(root, keep=1) == (["v2"], ["v1"])  # before the successors' leases
    wait_until(
        lambda: server.logs().count(f"loaded from {root / 'v1'}") == 4,
        "both successors serving v1",
        server,
    )
    # v1 deleted by hand (gc could not): the successors fall back to `current`, still damaged.
    kill_both()
    shutil.rmtree(root / "v1")
    wait_until(
        lambda: server.logs().count("the model the other workers serve") >= 2,
        "both successors' fallback to current",
        server,
    )
    wait_until(lambda: "starting another in" in server.logs(), "a slot waiting", server)
    (root / "v3" / ROUTER_FILE).unlink()
    shutil.copyfile(tiny_model_dir / ROUTER_FILE, root / "v3" / ROUTER_FILE)  # current repaired
    os.kill(server.proc.pid, signal.SIGHUP)
    wait_until(
        lambda: server.logs().count(f"loaded from {root / 'v3'}") == 2,
        "both workers serving v3",
        server,
    )
    with httpx2.Client(base_url=server.url, timeout=10) as client:
        for _ in range(10):  # a new connection each: both sockets are served
            r = client.get("/readyz", headers={"Connection": "close"})
            assert r.status_code == 200, r.text


def test_sighup_starts_a_worker_at_once_in_a_slot_waiting_to_start_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SIGHUP skipped the slots waiting out their pause after failed starts: with every worker
    # failing on a deleted model, the operator's SIGHUP after repairing `current` logged
    # "SIGHUP: replacing 2 workers one at a time" and did nothing; the port refused every
    # connection, /readyz included, until a restart.
    clock = [100.0]
    monkeypatch.setattr(workers, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    config = uvicorn.Config("serve.app:create_app", factory=True, port=a_free_port())
    supervisor = Supervisor(config, 2)
    loads = [True]  # whether a worker started now loads its model and serves

    class Fake:  # a worker process that serves, or exits before serving
        pid = exitcode = 0

        def __init__(self, target: Any, args: tuple[Any, ...], name: str) -> None:
            self.ready, self.start_from, self.alive = args[2], args[4], True

        def start(self) -> None:
            if loads[0]:
                self.ready.set()
            else:
                self.alive = False

        def is_alive(self) -> bool:
            return self.alive

        def terminate(self) -> None:
            self.alive = False

        def join(self, timeout: float | None = None) -> None:
            pass

    monkeypatch.setattr(supervisor, "_ctx", SimpleNamespace(Event=threading.Event, Process=Fake))
    try:
        supervisor._slots = [supervisor._start(slot) for slot in range(2)]
        loads[0] = False
        for worker in supervisor._slots:
            worker.process.terminate()  # kill -9, and the model they served is gone
        supervisor._replace_dead()  # at once: they had served
        supervisor._replace_dead()  # those died before serving: both slots wait
        assert all(at is not None for at in supervisor._restart_at)
        supervisor._replace_all()  # nothing repaired yet: they go on waiting, sockets closed
        assert all(at is not None for at in supervisor._restart_at)
        assert all(sock.fileno() == -1 for sock in supervisor.sockets)
        loads[0] = True  # `current` repaired
        supervisor._replace_all()
        assert supervisor._restart_at == [None, None]
        assert all(w.process.is_alive() and w.ready.is_set() for w in supervisor._slots)
        assert all(cast(Fake, w.process).start_from is None for w in supervisor._slots)  # current
        assert all(sock.fileno() != -1 for sock in supervisor.sockets)
    finally:
        for sock in supervisor.sockets:
            sock.close()


def test_a_successor_whose_start_model_is_gone_starts_from_current_unless_pinned(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The model the other workers had served was deleted (gc ran between a crash and the
    # successors' leases): every successor failed on it ("ModelLoadError: …/v1 is not a
    # directory"), starting again after up to a minute, for ever, whatever `current` named.
    from fastapi.testclient import TestClient

    from model import registry
    from model.artifact import ModelLoadError
    from model.settings import Settings
    from serve.app import create_app

    root = three_versions(tiny_model_dir, tmp_path)
    registry.set_current(root, "v2", record=False)
    shutil.rmtree(root / "v1")
    monkeypatch.setattr(workers, "_start_from", str(root / "v1"))  # what the supervisor hands it
    settings = Settings(model_root=root, data_dir=tmp_path / "var", reload_interval=0)
    app: Any = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="serve.app"), TestClient(app) as client:
        assert app.state.model_dir == root / "v2"
        assert client.get("/readyz").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "serve.app"]
    assert len(warnings) == 1, warnings
    assert f"cannot load {root / 'v1'}, the model the other workers serve" in warnings[0]
    assert f"starting from {root / 'v2'}, which {root / 'current'} names" in warnings[0]
    # Pinned: a successor loads the pinned model or nothing, never `current` (nor start_from).
    with pytest.raises(ModelLoadError), TestClient(create_app(settings, model_dir=root / "v1")):
        pass


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


def test_a_draining_worker_asks_each_client_to_close_its_connection() -> None:
    server = _DrainingServer(uvicorn.Config(app=None))
    sent: list[dict] = []

    async def app(scope: dict, receive: object, send: Callable) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"connection", b"keep")]}
        )
        await send({"type": "http.response.body", "body": b"{}"})

    async def collect(message: dict) -> None:
        sent.append(message)

    wrapped = _CloseWhenDraining(app, server)
    asyncio.run(wrapped({"type": "http"}, None, collect))
    assert sent[0]["headers"] == [(b"connection", b"keep")]
    server.draining = True
    asyncio.run(wrapped({"type": "http"}, None, collect))
    assert sent[2]["headers"] == [(b"connection", b"close")]
    assert sent[3] == {"type": "http.response.body", "body": b"{}"}


def test_a_draining_worker_keeps_draining_on_sigterm_and_hurries_on_a_second_sigint() -> None:
    server = _DrainingServer(uvicorn.Config(app=None))
    server.draining = True
    server.handle_exit(signal.SIGTERM, None)  # systemd's, then the supervisor's: one stop
    assert not server.should_exit
    server.handle_exit(signal.SIGINT, None)  # an operator's second Ctrl-C
    assert server.should_exit


def test_a_draining_worker_shuts_down_when_its_last_connection_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "DRAIN_S", 0.01)
    monkeypatch.setattr(workers, "DRAIN_MAX_S", 30.0)

    async def drain() -> None:
        server = _DrainingServer(uvicorn.Config(app=None))
        server._loop = asyncio.get_running_loop()
        client = object()
        server.server_state.connections.add(client)  # type: ignore[arg-type]
        task = asyncio.create_task(server._drain(signal.SIGTERM, None))
        await asyncio.sleep(0.3)
        assert not server.should_exit  # a client still holds a connection
        server.server_state.connections.discard(client)  # type: ignore[arg-type]
        await asyncio.wait_for(task, 5)
        assert server.should_exit

    asyncio.run(drain())


def test_a_draining_worker_shuts_down_at_the_limit_when_a_client_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "DRAIN_S", 0.01)
    monkeypatch.setattr(workers, "DRAIN_MAX_S", 0.2)

    async def drain() -> None:
        server = _DrainingServer(uvicorn.Config(app=None))
        server._loop = asyncio.get_running_loop()
        server.server_state.connections.add(object())  # type: ignore[arg-type]
        await asyncio.wait_for(server._drain(signal.SIGTERM, None), 5)
        assert server.should_exit

    asyncio.run(drain())


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


def a_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_port_another_supervisor_serves_is_refused() -> None:
    # Every worker socket has SO_REUSEPORT, and a second `paidan serve --workers 2` on the same
    # port joined the first: the kernel gave it part of the clients, and nobody was told.
    port = a_free_port()
    config = uvicorn.Config("serve.app:create_app", factory=True, host="127.0.0.1", port=port)
    first = Supervisor(config, 2)
    try:
        with pytest.raises(
            OSError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"
        ):
            Supervisor(config, 2)
        wildcard = uvicorn.Config("serve.app:create_app", factory=True, host="0.0.0.0", port=port)
        with pytest.raises(OSError, match="Address already in use"):
            Supervisor(wildcard, 2)
    finally:
        for sock in first.sockets:
            sock.close()
    # Once the first has stopped, the port is free again.
    again = Supervisor(config, 2)
    assert len(again.sockets) == 2
    for sock in again.sockets:
        sock.close()


def test_of_two_supervisors_starting_together_on_one_port_one_is_refused() -> None:
    # Between the in-use check and the SO_REUSEPORT binds nothing listens yet: without taking
    # turns, both supervisors passed the check in most rounds of 20.
    def race(config: uvicorn.Config) -> tuple[list[Supervisor], list[OSError]]:
        barrier = threading.Barrier(2)
        started: list[Supervisor] = []
        refused: list[OSError] = []

        def start() -> None:
            barrier.wait()
            try:
                started.append(Supervisor(config, 2))
            except OSError as e:
                refused.append(e)

        threads = [threading.Thread(target=start) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for supervisor in started:
            for sock in supervisor.sockets:
                sock.close()
        return started, refused

    for _ in range(20):
        port = a_free_port()
        config = uvicorn.Config("serve.app:create_app", factory=True, host="127.0.0.1", port=port)
        started, refused = race(config)
        assert len(started) == 1 and len(refused) == 1, (started, refused)


@pytest.mark.slow
def test_an_admin_reload_is_refused_by_every_worker(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    # It answered 200 and switched only the worker that took the request.
    server = start(live_server_factory, tiny_model_dir)
    body = {"model_dir": tiny_model_dir.name}
    for _ in range(8):  # a new connection each: the kernel spreads them over both workers
        r = httpx2.post(server.url + "/v1/admin/reload", json=body, timeout=10)
        assert r.status_code == 409, r.text
        message = r.json()["error"]["message"]
        assert (
            "runs 2 worker processes" in message and f"pinned to {tiny_model_dir.name}" in message
        )


@pytest.mark.slow
def test_a_missing_prometheus_multiproc_dir_is_made_and_routing_and_metrics_work(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A PROMETHEUS_MULTIPROC_DIR a reboot emptied: the server started, /readyz said ready, and
    # every /v1/route and /metrics was a 500 (prometheus_client's FileNotFoundError).
    metrics_dir = tmp_path / "run" / "paidan-metrics"
    server = live_server_factory(
        "--model",
        str(tiny_model_dir),
        "--workers",
        "2",
        "--no-access-log",
        env={
            "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
            "PAIDAN_RELOAD_INTERVAL": "0",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
    )
    wait_until(lambda: "2 workers serving" in server.logs(), "start-up of both workers", server)
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        for _ in range(6):
            r = client.post("/v1/route", json={"text": "楼下烧烤店油烟扰民"})
            assert r.status_code == 200, r.text
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    counted = 'paidan_http_requests_total{method="POST",route="/v1/route",status="200"} 6.0'
    assert counted in metrics.text
    assert list(metrics_dir.glob("*.db"))  # the workers' files, in the directory named
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    assert metrics_dir.is_dir()  # the user's directory: not removed, as paidan's own one is


def test_a_supervisor_stopped_while_its_workers_start_does_not_say_they_serve(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # SIGTERM while the workers loaded their model: the log said "2 workers serving on …" and
    # then that it stopped, though no worker had served.
    config = uvicorn.Config("serve.app:create_app", factory=True, port=a_free_port())
    supervisor = Supervisor(config, 1)

    class Loading:  # a worker process still loading its model when the signal comes
        pid, exitcode = 1, None

        def __init__(self, target: Any, args: tuple[Any, ...], name: str) -> None:
            self.alive = True

        def start(self) -> None:
            signal.raise_signal(signal.SIGTERM)  # to the supervisor's own handler

        def is_alive(self) -> bool:
            return self.alive

        def terminate(self) -> None:
            self.alive = False

        def join(self, timeout: float | None = None) -> None:
            pass

    monkeypatch.setattr(supervisor, "_ctx", SimpleNamespace(Event=threading.Event, Process=Loading))
    with caplog.at_level(logging.INFO, logger="serve.workers"):
        supervisor.run()
    assert supervisor.stopped_by == signal.SIGTERM
    assert supervisor.killed == 0
    assert not [r for r in caplog.records if "serving on" in r.getMessage()], caplog.text
