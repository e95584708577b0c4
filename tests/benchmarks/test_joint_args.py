"""``benchmarks/joint.py``: ``--help`` and a usage error exit before the benchmark, which writes
where ``--out`` says."""

from __future__ import annotations

import subprocess
import sys

from tests.benchmarks.scripts import BENCHMARKS, load_benchmark

BENCHMARK = BENCHMARKS / "joint.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # joint.py ignored its arguments: --help ran the ~3-minute cross-validation and then replaced
    # the committed benchmarks/results/joint.json (so the old script runs into the timeout).
    return subprocess.run(
        [sys.executable, str(BENCHMARK), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_prints_the_usage_and_exits_0() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: joint.py")
    assert "--out" in proc.stdout and "--seeds" in proc.stdout
    assert "benchmarks/results/joint.json" in proc.stdout


def test_an_unknown_argument_is_a_usage_error() -> None:
    proc = _run("--quick")
    assert proc.returncode == 2
    assert "joint.py: error: unrecognized arguments: --quick" in proc.stderr
    assert proc.stdout == ""


def test_out_and_seeds_default_to_the_committed_run() -> None:
    joint = load_benchmark("joint")
    args = joint.parse_args([])
    assert args.out == BENCHMARKS / "results" / "joint.json"
    assert args.seeds == [0, 1]
    args = joint.parse_args(["--out", "trial.json", "--seeds", "3"])
    assert (str(args.out), args.seeds) == ("trial.json", [3])
