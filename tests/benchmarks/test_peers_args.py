"""``benchmarks/peers.py speed --peers``: a peer it cannot train is one line, exit 2, before training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"


@pytest.mark.parametrize(
    ("peer", "message"),
    [
        ("paidan-foo", "--peers paidan-foo: tokenizer='foo' must be one of 'jieba', 'rjieba'"),
        ("paidan", "--peers paidan: expected baseline, fasttext or paidan-<tokenizer>"),
        ("svm", "--peers svm: expected baseline, fasttext or paidan-<tokenizer>"),
    ],
)
def test_a_peer_it_cannot_train_exits_2_in_one_line(peer: str, message: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "speed", "--peers", "baseline", peer],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"peers.py: {message}\n"
    assert proc.stdout == ""
