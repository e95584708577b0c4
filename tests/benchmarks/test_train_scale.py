"""``benchmarks/train_scale.py``: a row count or variant config it cannot train with is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from model.config import TrainingConfig
from tests.benchmarks.scripts import BENCHMARKS, load_benchmark

BENCHMARK = BENCHMARKS / "train_scale.py"


def test_rows_below_one_exit_2_in_one_line_before_reading_the_tickets() -> None:
    # --every-row trains with select_max_rows = rows + 1: -4 here, a ConfigError in the training
    # process once the history was written ("training failed (exit 1)", or "skipped" without data)
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--rows", "-5", "--every-row"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == "train_scale.py: --rows -5: must be at least 1\n"
    assert proc.stdout == ""


def test_a_variant_config_out_of_range_exits_2_naming_the_variant_and_the_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_benchmark("train_scale").build_config("cv_sample", {"cv_max_rows": 0})
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err == "train_scale.py: cv_sample: cv_max_rows=0 must be at least 1\n"
    )


def test_a_variant_config_is_the_defaults_with_its_overrides() -> None:
    config = load_benchmark("train_scale").build_config("every_row", {"select_max_rows": 30_001})
    assert config == TrainingConfig(select_max_rows=30_001)
