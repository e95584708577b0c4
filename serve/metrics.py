"""Prometheus metrics: requests and latency per route, predictions per department, share to review,
and whether the served model is behind the registry's ``current``.

Requests are counted and timed by :class:`serve.telemetry.TelemetryMiddleware`. Each app owns its
registry (tests build many apps in one process). With several uvicorn workers
``PROMETHEUS_MULTIPROC_DIR`` is set by the CLI and ``/metrics`` aggregates all workers' files.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from model.settings import SettingsError
from model.text import counted

if TYPE_CHECKING:  # model.router imports numpy and SciPy, which the --workers supervisor needs not
    from model.router import RouteResult

# Seconds; prediction takes milliseconds, so the buckets are dense below 100 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
DECISIONS = "paidan_route_decisions"
BEHIND_CURRENT = "paidan_model_behind_current"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Its deprecated name, which prometheus_client still reads when MULTIPROC_ENV is unset.
LEGACY_MULTIPROC_ENV = "prometheus_multiproc_dir"
# prometheus_client's file of a "live" gauge (livemax, livesum …): one per process, by its id.
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")
# The directory `paidan serve --workers N` makes for itself when PROMETHEUS_MULTIPROC_DIR is unset
# (in TMPDIR, named by the supervisor's pid), and the file in it that the supervisor and each of
# its workers hold a shared lock on while they run: the kernel drops a lock when its process ends,
# however it ends, so a directory whose lock can be taken exclusively has no process left.
OWN_DIR_PREFIX = "paidan-metrics-"
OWNER_LOCK = "paidan-owner.lock"

logger = logging.getLogger(__name__)
# This worker's hold on its paidan-made PROMETHEUS_MULTIPROC_DIR (hold_multiproc_dir), for as long
# as the process runs.
_holds: list[int] = []


class MetricsDirError(SettingsError):
    """``PROMETHEUS_MULTIPROC_DIR`` names no usable directory (a settings problem: one line)."""


def multiproc_setting() -> tuple[str, str] | None:
    """``(variable, value)`` of the metrics directory prometheus_client writes to, or ``None``.

    ``PROMETHEUS_MULTIPROC_DIR``, else its deprecated lower-case name, which prometheus_client
    still obeys: left in the environment by an older set-up, it put a one-worker server in
    multiprocess mode unchecked (a missing directory stopped it at its first metric with a bare
    ``[Errno 2]``, an earlier run's files were summed without a word).
    """
    for name in (MULTIPROC_ENV, LEGACY_MULTIPROC_ENV):
        value = os.environ.get(name)
        if value is not None:
            return name, value
    return None


def multiproc_dir() -> Path | None:
    """The directory ``PROMETHEUS_MULTIPROC_DIR`` (:func:`multiproc_setting`) names, made if it is
    missing; ``None`` if unset.

    prometheus_client opens its files there lazily, on each label set's first use: a missing
    directory (a ``/run`` or ``/tmp`` path a reboot emptied) made every ``POST /v1/route`` and
    ``GET /metrics`` a 500 whose log named neither the directory nor the variable, while
    ``/healthz`` and ``/readyz`` said ready. Raises :class:`MetricsDirError` for a value that
    cannot work: empty, a file, or a directory that cannot be made or written.
    """
    setting = multiproc_setting()
    if setting is None:
        return None
    name, value = setting
    where = f"{name}={value}"
    if not value.strip():
        raise MetricsDirError(f"{name} is set but empty: name a directory, or unset it")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise MetricsDirError(f"{where} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MetricsDirError(f"{where}: cannot make the directory ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise MetricsDirError(f"{where}: the directory is not writable")
    return path


@dataclass
class OwnMetricsDir:
    """A metrics directory ``paidan serve`` made for itself, held (``fd``) until :meth:`remove`."""

    path: Path
    fd: int | None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.fd is not None:
            os.close(self.fd)  # after the removal: no other start may take the directory meanwhile
            self.fd = None


def make_own_multiproc_dir() -> OwnMetricsDir:
    """A new metrics directory for this supervisor, after removing those of supervisors killed
    before they could remove theirs (:func:`remove_abandoned_dirs`).

    The directory was removed only when the supervisor exited normally: ``kill -9`` or the OOM
    killer left it in ``/tmp`` for ever, one per start (hundreds a day under a test suite).
    """
    remove_abandoned_dirs()
    path = Path(tempfile.mkdtemp(prefix=f"{OWN_DIR_PREFIX}{os.getpid()}-"))
    # Locked under another name, then renamed: a start cleaning up at this moment never finds the
    # lock file unlocked.
    fd, staging = tempfile.mkstemp(prefix=".paidan-owner-", dir=path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError as e:  # a file system without locks: kept after a crash, as before
        logger.warning("cannot lock %s (%s): removed only if this server stops normally", path, e)
        os.close(fd)
        os.unlink(staging)
        return OwnMetricsDir(path, None)
    os.rename(staging, path / OWNER_LOCK)
    return OwnMetricsDir(path, fd)


def remove_abandoned_dirs() -> list[Path]:
    """Remove the metrics directories ``paidan serve`` made in the temporary directory whose
    supervisor and workers have all ended; returns them.

    Only a directory of this user's with paidan's lock file (:data:`OWNER_LOCK`) that no process
    holds is removed: never one a server still uses, one named in ``PROMETHEUS_MULTIPROC_DIR`` by
    an operator (it has no lock file), nor one an older paidan made (no lock file either, so no
    proof that its server has ended).
    """
    removed = []
    for path in sorted(Path(tempfile.gettempdir()).glob(OWN_DIR_PREFIX + "*")):
        try:
            info = path.lstat()
            if not path.is_dir() or path.is_symlink() or info.st_uid != os.geteuid():
                continue
            fd = os.open(path / OWNER_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its server runs (or a file system without locks)
            os.close(fd)
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
        if not path.exists():
            removed.append(path)
    if removed:
        logger.info(
            "removed %s left by paidan serve runs that were killed (%s%s)",
            counted(len(removed), "metrics directory", "metrics directories"),
            ", ".join(str(p) for p in removed[:3]),
            ", …" if len(removed) > 3 else "",
        )
    return removed


def hold_multiproc_dir() -> None:
    """Keep this process's ``PROMETHEUS_MULTIPROC_DIR``, if ``paidan serve`` made it, from being
    removed while the process runs (a worker outlives a killed supervisor while it drains)."""
    value = os.environ.get(MULTIPROC_ENV)
    if not value:
        return
    try:
        fd = os.open(Path(value) / OWNER_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # not paidan's own directory
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return
    _holds.append(fd)


class Metrics:
    """The app's metric objects and the registry ``/metrics`` reads."""

    def __init__(self) -> None:
        self.multiprocess = multiproc_dir() is not None
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "paidan_http_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "paidan_http_request_duration_seconds",
            "HTTP request latency by route template and method, in seconds",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "paidan_predictions",
            "Tickets routed, by suggested department",
            ["department"],
            registry=self.registry,
        )
        self.decisions = Counter(
            DECISIONS,
            "Tickets routed, by overall decision (auto or review)",
            ["decision"],
            registry=self.registry,
        )
        # Set by each worker's pointer follower (serve.reload); with several workers the highest
        # value of the live ones, so one worker left behind shows. "live": the supervisor removes
        # a dead worker's value (forget_process), or a worker replaced after it refused a model
        # said 1 until the next restart.
        self.behind_current = Gauge(
            BEHIND_CURRENT,
            "1 while this server serves another model than the one the model root's `current` "
            "names, because it cannot load that model or cannot read `current` (/readyz says "
            "why); 0 otherwise, and on a server pinned to a model",
            multiprocess_mode="livemax",
            registry=self.registry,
        )

    def observe_results(self, results: Iterable[RouteResult]) -> None:
        for r in results:
            self.predictions.labels(r.department.label if r.department else "").inc()
            self.decisions.labels(r.decision).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format of all metrics, plus the computed review share."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            source = CollectorRegistry()
            multiprocess.MultiProcessCollector(source)
        else:
            source = self.registry
        scrape = CollectorRegistry(auto_describe=True)
        scrape.register(_Forward(source))
        scrape.register(_ReviewShare(source))
        return generate_latest(scrape), CONTENT_TYPE_LATEST


def forget_process(pid: int | None) -> None:
    """Drop the live gauges of the worker process ``pid``, which has exited (multiprocess mode
    only): the supervisor calls it for each worker it has reaped (``None``: never started)."""
    setting = multiproc_setting()
    if pid is not None and setting is not None and setting[1]:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def forget_stopped_processes(path: Path) -> list[int]:
    """Drop the live gauges that processes no longer running left in ``path`` (and this process's
    own, which nothing has written yet at start-up); returns their ids.

    A server that stops without its supervisor reaping it (one worker, which nothing reaps;
    ``kill -9`` or the OOM killer) leaves its value: ``paidan_model_behind_current`` said 1 after
    a restart that served ``current`` again, as the largest of every file's value, while
    ``/readyz`` said ready. A process still running (another server on the directory) is kept.
    """
    from prometheus_client import multiprocess

    gone = set()
    for file in path.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.match(file.name)
        if match and (int(match.group(1)) == os.getpid() or not _running(int(match.group(1)))):
            gone.add(int(match.group(1)))
    for pid in gone:
        multiprocess.mark_process_dead(pid, str(path))
    return sorted(gone)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


class _Forward(Collector):
    """The source's metrics without their ``*_created`` samples.

    One process's registry gives a ``*_created`` series per counter and histogram, which the
    multiprocess files of ``--workers N`` cannot: a dashboard built on one worker lost them when
    the server was scaled out. Every mode answers the same series.
    """

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        for metric in self.source.collect():  # new objects on each collection: changed freely
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class _ReviewShare(Collector):
    """``paidan_review_share``: routed tickets sent to a person, as a fraction of all routed."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        counts = {"auto": 0.0, "review": 0.0}
        for metric in self.source.collect():
            if metric.name != DECISIONS:
                continue
            for sample in metric.samples:
                if sample.name == DECISIONS + "_total":
                    key = sample.labels.get("decision", "")
                    counts[key] = counts.get(key, 0.0) + sample.value
        total = counts["auto"] + counts["review"]
        yield GaugeMetricFamily(
            "paidan_review_share",
            "Fraction of routed tickets whose decision was review (0 before any ticket)",
            value=counts["review"] / total if total else 0.0,
        )
