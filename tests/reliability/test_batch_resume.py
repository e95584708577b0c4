"""Batch labelling survives ``kill -9``: a resumed run gives the same bytes as an uninterrupted one."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_TICKETS
from training.label import label

ROWS = 5_000
CHUNK = 100
REPO = Path(__file__).resolve().parents[2]


def write_backlog(path: Path) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text"])
        for i in range(ROWS):
            title, text, _, _ = TINY_TICKETS[i % len(TINY_TICKETS)]
            # Every 97th text is empty: error rows must survive the kill too.
            w.writerow([f"K{i:05d}", title, "" if i % 97 == 0 else f"{text}，第{i}号"])
    return path


def label_command(src: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "paidan",
        "label",
        str(src),
        "--model",
        str(model),
        "--out",
        str(out),
        "--chunk-size",
        str(CHUNK),
        "--jobs",
        "2",
        *extra,
    ]


def chunks_done(parts: Path) -> int:
    try:
        return int(json.loads((parts / "manifest.json").read_text(encoding="utf-8"))["done"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def start_run(src: Path, model: Path, out: Path, cwd: Path) -> subprocess.Popen[str]:
    """``paidan label`` in a process and a session of its own, so that a signal goes to it alone
    and the pool workers a kill leaves behind can be cleaned up after."""
    return subprocess.Popen(
        label_command(src, model, out),
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_chunks(proc: subprocess.Popen[str], parts: Path, n: int) -> None:
    """Wait until the run has checkpointed ``n`` chunks, while it runs."""
    deadline = time.monotonic() + 120
    while chunks_done(parts) < n:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no chunk was checkpointed within 120 s"
        time.sleep(0.005)


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_bytes(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = write_backlog(tmp_path / "backlog.csv")
    reference = tmp_path / "reference.csv"
    label([src], tiny_model_dir, reference, chunk_size=CHUNK, jobs=1)

    out = tmp_path / "out.csv"
    parts = tmp_path / "out.csv.parts"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = start_run(src, tiny_model_dir, out, tmp_path)
    try:
        wait_for_chunks(proc, parts, 2)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9, mid-run
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # orphaned pool workers of that run only
        proc.stderr.close()

    done = chunks_done(parts)
    total_chunks = ROWS // CHUNK
    assert 2 <= done < total_chunks, f"killed after {done} of {total_chunks} chunks"
    assert not out.exists()  # the half-done run does not look finished

    # Without --resume the interrupted run is not silently thrown away.
    refused = subprocess.run(
        label_command(src, tiny_model_dir, out),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run(
        label_command(src, tiny_model_dir, out, "--resume"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after {done} chunks" in resumed.stdout.replace("\n", " ")
    assert out.read_bytes() == reference.read_bytes()
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == ROWS == summary["labelled"] + summary["errors"]
    assert summary["errors"] == len(range(0, ROWS, 97))
    assert not parts.exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_the_pool_workers_end_with_a_killed_run(
    tiny_model_dir: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    # Killed with SIGTERM (systemd, docker stop, timeout) or kill -9, `paidan label --jobs 2`
    # left its workers running for good, re-parented to PID 1, each holding the model's lease.
    import psutil

    src = write_backlog(tmp_path / "backlog.csv")
    out = tmp_path / "out.csv"
    parts = tmp_path / "out.csv.parts"
    proc = start_run(src, tiny_model_dir, out, tmp_path)  # the signal goes to the parent alone
    workers: list[psutil.Process] = []
    try:
        wait_for_chunks(proc, parts, 1)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert len(workers) >= 2  # the pool's processes
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=60)
        still = running(workers)
        deadline = time.monotonic() + 15
        while still and time.monotonic() < deadline:
            time.sleep(0.1)
            still = running(workers)
        assert still == [], f"workers left running after SIG{sig.name[3:]}: {still}"
        if sig == signal.SIGTERM:  # stopped as Ctrl-C stops it: the chunks are kept
            stderr = proc.stderr.read() if proc.stderr else ""
            assert code == 128 + signal.SIGTERM, stderr
            assert chunks_done(parts) >= 1 and not out.exists()
            assert f"kept in {out}.parts; rerun the same command with --resume" in stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for w in workers:  # what the old code left behind
            with contextlib.suppress(psutil.NoSuchProcess):
                w.kill()
        if proc.stderr:
            proc.stderr.close()


def running(procs: list[Any]) -> list[Any]:
    """Those of ``procs`` (psutil processes) still running; an orphan may linger as a zombie."""
    import psutil

    out = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


WATCHED_WORKER = """
import os, sys, time
import training.label as label
sys.platform = "darwin"  # no prctl: the fallback, a thread looking at the parent
label.PARENT_POLL_SECONDS = 0.05
if os.fork() == 0:
    label._die_with_parent(os.getppid())
    print(os.getpid(), flush=True)
    os.close(1)  # the test reads its pid to the end of the pipe
    time.sleep(120)
    os._exit(0)
time.sleep(0.5)
os._exit(0)  # the parent dies without shutting anything down
"""


def test_a_worker_without_prctl_still_ends_with_its_parent() -> None:
    import psutil

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", WATCHED_WORKER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=60,
    )
    worker = psutil.Process(int(done.stdout.split()[0]))
    try:
        deadline = time.monotonic() + 15
        while running([worker]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running([worker]) == []
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()
