"""Several uvicorn worker processes, each accepting connections on a listening socket of its own.

uvicorn's own ``--workers`` shares one listening socket among its workers, and a worker that wakes
up accepts every connection waiting on it (asyncio and uvloop both accept in a loop until the queue
is empty). A client that opens its keep-alive connections together (a load balancer's upstream pool,
a load generator) then talks to one worker while the others idle: measured with 2 workers and 32
connections, all 32 went to one worker in most runs, at half the throughput and twice the latency
of an even split. Here every worker slot has its own socket, bound with ``SO_REUSEPORT``, and the
kernel spreads new connections over them by a hash of the addresses.

The sockets belong to the supervisor (this process), not to the workers. A worker that is replaced,
after a crash or on SIGHUP, hands its slot's socket to its successor, and connections queued on it
are neither lost nor reset.

Signals to the supervisor: SIGINT or SIGTERM stops every worker gracefully (each finishes the
requests it has); SIGHUP replaces the workers one at a time, each successor serving before its
predecessor is stopped, so new workers load the current model without a moment with fewer workers
(and starts one at once in a slot waiting to start again after failed starts).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from model.artifact import ModelLoadError
from model.registry import Lease, lease
from model.startup import signal_on_parent_death, startup
from serve.metrics import forget_process, hold_multiproc_dir

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 120  # a worker loads and warms the model before it serves
STOP_TIMEOUT_S = 30  # graceful shutdown of one worker, then SIGKILL
POLL_S = 0.5  # how often dead workers are looked for
RESTART_MAX_S = 60.0  # the longest pause before another start of a worker that died before serving
SERVED_MAX = 4096  # bytes of the model directory a worker reports to the supervisor
PARENT_POLL_S = 1.0  # how often a worker looks for its supervisor where prctl is missing
DRAIN_S = 0.5  # a stopping worker stops accepting at least this long before it shuts down
DRAIN_MAX_S = 5.0  # ... and at most this long, while its clients still hold connections open
DRAIN_POLL_S = 0.05
BIND_LOCK_S = 5.0  # another paidan binding the same port holds its lock for milliseconds
# "<supervisor pid> <workers>", in the environment of every worker: a worker's admin reload would
# switch that one process only (serve/admin.py).
SUPERVISOR_ENV = "PAIDAN_SUPERVISOR"


# In a worker process: its slot of the supervisor's shared memory, where it reports the model
# directory it serves, and the directory it was told to start from (a replacement worker).
_served_slot: Any = None
_start_from: str | None = None
# Its slot's number under the supervisor (None: not a worker of one).
_slot: int | None = None


def report_served(model_dir: str | Path) -> None:
    """Tell the supervisor, if this process is one of its workers, which model it serves now."""
    if _served_slot is None:
        return
    value = os.fsencode(os.path.abspath(model_dir))
    _served_slot.value = value if len(value) < SERVED_MAX else b""


def replacement_start() -> Path | None:
    """The model directory this worker starts from when it replaces a dead one: the model the
    other workers serve, which it then leaves for ``current`` as they do (``None``: ``current``).

    A worker that cannot load it (deleted, unreadable) starts from ``current`` instead
    (serve/app.py); a pinned server's workers load the pinned model and never this one.
    """
    return Path(_start_from) if _start_from else None


def speaks_for_the_workers() -> bool:
    """Whether this process logs what every worker of the server finds alike: a one-worker server
    and, under ``--workers N``, the worker of the first slot (its successors too), not the others.

    Each worker's start-up said that the feedback database was unavailable, and each said it was
    reachable again: ``--workers 8`` wrote eight identical WARNING lines about one database, which
    read as eight failures. The workers share the database, its URL and its retry interval.
    """
    return _slot is None or _slot == 0


def supervisor_of_this_process() -> tuple[int, int] | None:
    """``(pid, workers)`` of the supervisor this worker runs under, or ``None`` (one worker)."""
    value = os.environ.get(SUPERVISOR_ENV, "").split()
    if len(value) != 2 or not all(v.isdigit() for v in value):
        return None
    return int(value[0]), int(value[1])


class WorkerStartError(RuntimeError):
    """A worker exited before it started serving (at start-up: nothing would serve)."""


class ListenError(OSError):
    """An address that cannot be listened on, with its ``errno``; ``str()`` is the message alone.

    A two-argument ``OSError`` reads ``[Errno 98] cannot listen on …``, so ``paidan serve``
    printed ``error: [Errno 98] cannot listen on HOST:PORT: Address already in use`` where the
    docs/operations.md documents (and operators grep for) the line without ``[Errno 98]``.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def listening_socket(
    host: str, port: int, backlog: int, reuseport: bool = False, listen: bool = True
) -> socket.socket:
    """A listening TCP socket on ``host:port`` (with ``reuseport``, one that other
    ``SO_REUSEPORT`` sockets may share; without ``listen``, bound only: the server that is handed
    it listens once it serves).

    Raises
    ------
    ListenError
        When the address cannot be bound (in use, no such address), with the address in the
        message.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise ListenError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from e
    sock.set_inheritable(True)
    return sock


def reuseport_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other ``SO_REUSEPORT`` sockets may share.

    Raises
    ------
    OSError
        When the address cannot be bound, with the address in the message.
    """
    return listening_socket(host, port, backlog, reuseport=True)


def reuseport_sockets(host: str, port: int, backlog: int, count: int) -> list[socket.socket]:
    """``count`` listening ``SO_REUSEPORT`` sockets on ``host:port``, or an error if it is in use.

    Any process of the same user may bind ``SO_REUSEPORT`` sockets beside these, and the kernel
    then hands it part of the connections: a second ``paidan serve --workers N`` on the same port
    started, answered some of the clients (their feedback in its own database, their routes from
    its own model) and said nothing. So the address is first bound without ``SO_REUSEPORT``, which
    fails while anything listens on it, as a one-worker server's bind does; the supervisors of
    this machine that start at the same moment take their turns (:func:`_binding_turn`), so the
    second's check runs once the first listens.

    Raises
    ------
    OSError
        When the address cannot be bound or is in use, with the address in the message.
    """
    with _binding_turn(host, port):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
            except OSError as e:
                raise ListenError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from e
        sockets: list[socket.socket] = []
        try:
            for _ in range(count):
                sockets.append(reuseport_socket(host, port, backlog))
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        return sockets


@contextmanager
def _binding_turn(host: str, port: int) -> Iterator[None]:
    """Hold this machine's turn to bind ``port``, among paidan supervisors, for the block.

    Between the check and the ``SO_REUSEPORT`` binds nothing listens yet: two supervisors starting
    together could both pass the check. The turn is an abstract Unix socket (Linux; it vanishes
    with the process, no file is left behind), per network namespace as the port is.
    """
    if not sys.platform.startswith("linux"):
        yield
        return
    turn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        deadline = time.monotonic() + BIND_LOCK_S
        while True:
            try:
                turn.bind(f"\0paidan-listen-{port}")
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                if time.monotonic() > deadline:
                    raise ListenError(
                        errno.EADDRINUSE,
                        f"cannot listen on {host}:{port}: another paidan server is starting on "
                        "that port",
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        turn.close()


class _DrainingServer(uvicorn.Server):
    """A uvicorn server that, when told to stop, drains its connections before it shuts down.

    uvicorn's shutdown closes its listeners and then, at once, every connection with no request in
    progress. A connection it accepted a moment before (its request bytes not read yet) counts as
    idle and is closed unanswered: a SIGHUP replacement under load lost one request this way in
    CI. So does a keep-alive connection whose client is sending its next request as the server
    closes it (1 request in about 3,000 at 16 keep-alive clients, in 3 of 4 SIGHUPs). Here the
    first SIGTERM or SIGINT only closes this worker's listeners (the slot's socket stays open in the
    supervisor, and its successor is already accepting on it), and every response from then on
    carries ``Connection: close`` (:class:`_CloseWhenDraining`), so a busy client's connection ends
    cleanly after its next answer and the client reconnects to the successor. The shutdown follows
    once no connection is left, after at least :data:`DRAIN_S` and at most :data:`DRAIN_MAX_S`
    (a client that holds an idle connection that long is closed on as before).

    A SIGTERM that arrives while it drains changes nothing: systemd's default stop
    (``KillMode=control-group``) and a terminal's Ctrl-C signal every process of the group, and
    the supervisor then sends each worker SIGTERM too, which ended the drain at once and closed
    the connections it was for. A second SIGINT (an operator's second Ctrl-C) shuts down at once,
    as uvicorn's own would.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    draining = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.draining and sig == signal.SIGTERM:
            return
        if self.draining or self._loop is None or not self.started:
            super().handle_exit(sig, frame)
            return
        self.draining = True
        # The handler runs between two bytecodes of the event loop: hand the work to the loop.
        self._loop.call_soon_threadsafe(self._stop_accepting, sig, frame)

    def _stop_accepting(self, sig: int, frame: FrameType | None) -> None:
        for server in self.servers:
            server.close()
        assert self._loop is not None
        self._loop.create_task(self._drain(sig, frame))

    async def _drain(self, sig: int, frame: FrameType | None) -> None:
        assert self._loop is not None
        deadline = self._loop.time() + DRAIN_MAX_S
        await asyncio.sleep(DRAIN_S)
        while self.server_state.connections and self._loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        super().handle_exit(sig, frame)


class _CloseWhenDraining:
    """ASGI wrapper: once ``server`` drains, every HTTP response asks its client to close."""

    def __init__(self, app: Any, server: _DrainingServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Any) -> None:
            # Decided when the answer starts, so a request that began before the drain counts too.
            if message["type"] == "http.response.start" and self.server.draining:
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


def _end_with_supervisor(supervisor: int) -> None:
    """Have this worker drain and exit (SIGTERM) when its supervisor dies.

    After a ``kill -9`` of the supervisor the workers served on unsupervised, holding the port, so
    that the next ``paidan serve`` was refused "Address already in use". On Linux the kernel sends
    the signal (:func:`model.startup.signal_on_parent_death`, as for ``paidan label``'s workers,
    whose own handler is not used: it ends the process at once, where SIGTERM lets a worker finish
    its requests); elsewhere a daemon thread looks.
    """
    if signal_on_parent_death(signal.SIGTERM):
        if os.getppid() != supervisor:  # it died before the signal was asked for
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="paidan-supervisor-watch", daemon=True).start()


def _worker_main(
    config: uvicorn.Config,
    sock: socket.socket,
    ready: Event,
    served: Any = None,
    start_from: str | None = None,
    supervisor: int | None = None,
    slot: int | None = None,
) -> None:
    """A worker process: serve the app on ``sock``; set ``ready`` once the app has started.

    ``served`` is the shared memory where it reports the model it serves (:func:`report_served`);
    ``start_from`` the model directory to start from instead of ``current``; ``supervisor`` the
    pid of the supervisor, whose death ends the worker; ``slot`` its slot's number
    (:func:`speaks_for_the_workers`).
    """
    if supervisor is not None:
        _end_with_supervisor(supervisor)
    hold_multiproc_dir()  # a later start removes it only once this worker has ended too
    global _served_slot, _start_from, _slot
    _served_slot, _start_from, _slot = served, start_from, slot
    config.configure_logging()
    with startup():
        config.load()  # imports the app (serve.app) and builds it; the model loads at start-up
    server = _DrainingServer(config)
    config.loaded_app = _CloseWhenDraining(config.loaded_app, server)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            ready.set()

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])


@dataclass
class _Worker:
    process: SpawnProcess
    ready: Event


class Supervisor:
    """Start ``workers`` uvicorn workers for ``config``, keep them running, stop them on a signal.

    With ``model_root``, it leases the models its workers serve (:meth:`_lease_served`).
    """

    def __init__(
        self, config: uvicorn.Config, workers: int, model_root: str | Path | None = None
    ) -> None:
        self.config = config
        self._model_root = model_root
        # The supervisor's leases, by the model directory a worker reported.
        self._leases: dict[str, Lease] = {}
        self.sockets = reuseport_sockets(config.host, config.port, config.backlog, workers)
        self._ctx: SpawnContext = multiprocessing.get_context("spawn")
        self._slots: list[_Worker] = []
        self._stop = threading.Event()
        self._reload = threading.Event()
        # The signal that stopped it (for the last line of the log, serve.server.run), and the
        # workers that stopping had to kill.
        self.stopped_by: signal.Signals | None = None
        self.killed = 0
        # What each slot's worker serves (serve.reload reports every swap), for its successor.
        self._served: list[Any] = [self._ctx.Array("c", SERVED_MAX) for _ in range(workers)]
        self._failures = [0] * workers  # starts in a row that ended before serving, per slot
        self._restart_at: list[float | None] = [None] * workers
        self._host, self._port = self.sockets[0].getsockname()[:2]

    def _start(self, slot: int, start_from: str | None = None) -> _Worker:
        if self.sockets[slot].fileno() == -1:  # closed while the slot waited for another start
            # Not listening yet: the worker's server listens once it serves, so no connection
            # waits on the slot while its worker starts, or if it fails again.
            self.sockets[slot] = listening_socket(
                self._host, self._port, self.config.backlog, reuseport=True, listen=False
            )
        ready = self._ctx.Event()
        process = self._ctx.Process(
            target=_worker_main,
            args=(
                self.config,
                self.sockets[slot],
                ready,
                self._served[slot],
                start_from,
                os.getpid(),
                slot,
            ),
            name=f"paidan-worker-{slot}",
        )
        process.start()
        logger.info("started worker process [%d]", process.pid)
        return _Worker(process, ready)

    def _wait_ready(self, worker: _Worker) -> bool:
        """Whether ``worker`` starts serving (False: it exited first, or took too long)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and not self._stop.is_set():
            if worker.ready.wait(0.1):
                return True
            if not worker.process.is_alive():
                return False
        return False

    def _served_by_others(self, slot: int) -> str | None:
        """The model directory the live workers other than ``slot``'s serve, else the one ``slot``'s
        worker served last (``None``: not known, a successor starts from ``current``)."""
        for other, worker in enumerate(self._slots):
            if other != slot and worker.process.is_alive() and self._served[other].value:
                return os.fsdecode(self._served[other].value)
        return os.fsdecode(self._served[slot].value) or None

    def _lease_served(self) -> None:
        """Lease each model a worker serves or, dead, served last, and release the others'.

        A successor starts from those (:meth:`_served_by_others`), and nothing else leased them
        between a worker's death and its successor's own lease: two workers killed together (the
        OOM killer), a `paidan models gc` at that moment deleted the model they had served (not
        `current`, which they had refused), and every successor failed on it. Called every poll,
        so a lease follows the workers to a new model within :data:`POLL_S`; until then their own
        leases hold both. A pinned server's model is leased by serve/server.py as well, from
        before the first worker starts.
        """
        if self._model_root is None:
            return
        served = {os.fsdecode(value) for value in (s.value for s in self._served) if value}
        for path in self._leases.keys() - served:
            self._leases.pop(path).release()
        for path in served - self._leases.keys():
            try:
                self._leases[path] = lease(self._model_root, path)
            except ModelLoadError as e:  # deleted meanwhile: its successors start from `current`
                logger.warning("cannot lease %s for the next workers: %s", path, e)
                self._leases[path] = Lease()  # said once, not every poll

    def _replace_dead(self) -> None:
        """Start a successor for each dead worker: at once for one that had been serving, after a
        pause that doubles up to :data:`RESTART_MAX_S` for one that died before serving.

        The successor starts from the model the other workers serve, not from ``current``: a
        ``current`` the workers had refused (a version copied in part) failed every successor's
        start, every half second for ever, while the dead slot's socket took connections nobody
        accepted. That model is leased here (:meth:`_lease_served`); a successor that cannot load
        it all the same starts from ``current`` (serve/app.py). While a slot waits, its socket is closed: the kernel gives new connections to the
        other workers' sockets instead, and those waiting on it are reset rather than left hanging.
        """
        now = time.monotonic()
        for slot, worker in enumerate(self._slots):
            if worker.process.is_alive() or self._stop.is_set():
                self._restart_at[slot] = None
                continue
            if self._restart_at[slot] is None:
                served = worker.ready.is_set()
                self._failures[slot] = 0 if served else self._failures[slot] + 1
                delay = 0.0 if served else min(RESTART_MAX_S, POLL_S * 2 ** self._failures[slot])
                logger.warning(
                    "worker [%d] exited with code %s%s; starting another%s",
                    worker.process.pid,
                    worker.process.exitcode,
                    "" if served else " before serving",
                    f" in {delay:.0f} s" if delay >= 1 else "",
                )
                forget_process(worker.process.pid)
                self._restart_at[slot] = now + delay
                if delay > 0:
                    self.sockets[slot].close()
            restart_at = self._restart_at[slot]
            if restart_at is not None and now >= restart_at:
                try:
                    self._slots[slot] = self._start(slot, self._served_by_others(slot))
                except OSError as e:  # the slot's socket could not be made again
                    logger.error("cannot listen for another worker (%s); trying again", e)
                    self._restart_at[slot] = now + RESTART_MAX_S
                    continue
                self._restart_at[slot] = None

    def _stop_worker(self, worker: _Worker) -> bool:
        """Stop ``worker``; whether it exited by itself (False: killed after :data:`STOP_TIMEOUT_S`)."""
        if worker.process.is_alive():
            worker.process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        worker.process.join(STOP_TIMEOUT_S)
        exited = not worker.process.is_alive()
        if not exited:
            logger.warning("worker [%d] did not stop in time; killed", worker.process.pid)
            worker.process.kill()
            worker.process.join()
        forget_process(worker.process.pid)
        return exited

    def _replace_all(self) -> None:
        """SIGHUP: a successor per slot, serving before its predecessor stops.

        A slot waiting to start another worker (its successors died before serving) gets one now,
        from ``current`` as the others do: it was skipped, so after a model had been deleted, or
        ``current`` repaired, the operator's SIGHUP did nothing and the slot waited out its pause
        (up to :data:`RESTART_MAX_S`) to fail again on the model it had been waiting with.
        """
        waiting = sum(at is not None for at in self._restart_at)
        logger.info(
            "SIGHUP: replacing %d workers one at a time%s",
            len(self._slots),
            f" ({waiting} of them waiting to start again)" if waiting else "",
        )
        for slot, old in enumerate(self._slots):
            waits = self._restart_at[slot] is not None
            try:
                new = self._start(slot)
            except OSError as e:  # a waiting slot's socket could not be made again
                logger.error("cannot listen for another worker (%s); trying again later", e)
                continue
            if not self._wait_ready(new):
                if not self._stop.is_set():  # else: shutting down, not a failed start
                    logger.error(
                        "replacement worker [%d] did not start; %s",
                        new.process.pid,
                        "its slot waits to start another"
                        if waits
                        else f"keeping [{old.process.pid}]",
                    )
                self._stop_worker(new)
                if waits:  # closed again while the slot waits, as _replace_dead leaves it
                    self.sockets[slot].close()
                continue
            self._slots[slot] = new
            self._restart_at[slot] = None
            self._stop_worker(old)

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM (:attr:`stopped_by`; :attr:`killed`: the workers that did
        not stop in time).

        Raises
        ------
        WorkerStartError
            When a worker exits before serving at start-up.
        """

        def stop(sig: int, _frame: FrameType | None) -> None:
            if self.stopped_by is None:
                self.stopped_by = signal.Signals(sig)
            self._stop.set()

        handlers = {
            signal.SIGINT: stop,
            signal.SIGTERM: stop,
            signal.SIGHUP: lambda *_: self._reload.set(),
        }
        previous: dict[int, Any] = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
        os.environ[SUPERVISOR_ENV] = f"{os.getpid()} {len(self.sockets)}"  # inherited by workers
        try:
            self._slots = [self._start(slot) for slot in range(len(self.sockets))]
            for worker in self._slots:
                if not self._wait_ready(worker) and not self._stop.is_set():
                    code = worker.process.exitcode
                    raise WorkerStartError(
                        f"worker [{worker.process.pid}] "
                        + (
                            f"was not serving after {READY_TIMEOUT_S} s"
                            if code is None
                            else f"exited with code {code} before serving"
                        )
                        + "; see its log above"
                    )
            host, port = self.sockets[0].getsockname()[:2]
            if not self._stop.is_set():  # a signal during start-up: they never all served
                logger.info(
                    "%d workers serving on http://%s:%d, each on its own SO_REUSEPORT socket",
                    len(self._slots),
                    host,
                    port,
                )
            while not self._stop.wait(POLL_S):
                self._lease_served()
                if self._reload.is_set():
                    self._reload.clear()
                    self._replace_all()
                self._replace_dead()
        finally:
            for worker in self._slots:
                if worker.process.is_alive():
                    worker.process.terminate()
            # Closed now, not once the workers have drained: no successor will accept on them, and
            # a new connection queued there meanwhile was reset after its request was sent, which
            # its client cannot tell from a request that failed in the server. Now it is refused
            # (a worker still listening takes it first), which a client or a proxy retries.
            for sock in self.sockets:
                sock.close()
            self.killed = sum(not self._stop_worker(worker) for worker in self._slots)
            for held in self._leases.values():
                held.release()
            self._leases.clear()
            os.environ.pop(SUPERVISOR_ENV, None)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
