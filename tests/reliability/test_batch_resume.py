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


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_bytes(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = write_backlog(tmp_path / "backlog.csv")
    reference = tmp_path / "reference.csv"
    label([src], tiny_model_dir, reference, chunk_size=CHUNK, jobs=1)

    out = tmp_path / "out.csv"
    parts = tmp_path / "out.csv.parts"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A session of its own, so the pool workers left behind by the kill can be cleaned up after.
    proc = subprocess.Popen(
        label_command(src, tiny_model_dir, out),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while chunks_done(parts) < 2:
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr}"
            assert time.monotonic() < deadline, "no chunk was checkpointed within 120 s"
            time.sleep(0.005)
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
