"""A benchmark without its data is reported as skipped, and accuracy.py's documented run works."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.benchmarks.scripts import load_benchmark


def test_a_step_that_skips_for_want_of_data_is_skipped_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a fresh clone (no ../shared) accuracy.py exits 1 with "skipped: …", which run_all
    # reported as "failed (exit 1)".
    run_all = load_benchmark("run_all")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "absent.py").write_text(
        "import sys\nsys.exit('skipped: the real tickets are not here (x is absent)')\n"
    )
    (bench / "broken.py").write_text("import sys\nprint('skipped: no'); sys.exit('boom')\n")
    monkeypatch.setattr(run_all, "BENCH", bench)
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    got = run_all.run_step("acc", "absent.py", [], tmp_path / "acc.json", tmp_path)
    assert got["status"] == "skipped"
    assert got["note"] == "skipped: the real tickets are not here (x is absent)"
    # A step that fails otherwise is still a failure.
    got = run_all.run_step("b", "broken.py", [], tmp_path / "b.json", tmp_path)
    assert got["status"] == "failed (exit 1)"


def test_accuracy_accepts_the_options_its_docstring_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The docstring (also --help) showed [--quick], which accuracy.py refuses.
    accuracy = load_benchmark("accuracy")
    [run] = [line for line in accuracy.__doc__.splitlines() if "benchmarks/accuracy.py" in line]
    options = [o for group in re.findall(r"\[(--[^\]]+)\]", run) for o in group.split()]
    assert options
    monkeypatch.setattr(accuracy, "SHARED", tmp_path / "absent")
    monkeypatch.setattr(sys, "argv", ["accuracy.py", *options])
    with pytest.raises(SystemExit) as e:
        accuracy.main()
    assert str(e.value.code).startswith("skipped: ")  # parsed; not argparse's exit 2
