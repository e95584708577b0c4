"""No file of the repository holds text of the real tickets in ``../shared`` (a rule of the project:
they are personal data without a licence to redistribute).

The sample tickets, the remits, the docs' examples and the notebooks' stored outputs are written
by hand or from the bundled sample; a run of shared tickets pasted into any of them, or a notebook
saved after it printed a shared ticket, would be a leak. Whitespace aside, no run of
:data:`WINDOW` characters with a Chinese character in it may occur both in a tracked file and in a
shared ticket's title or text. (Runs of 12 occur by chance, in stock phrases such as
国家企业信用信息公示系统; none of 15 did when this test was written.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 16
TICKET_FILES = ("department_train.csv", "category_train.csv", "unlabelled.csv")
BINARY = {".png", ".jpg", ".ico", ".woff", ".woff2", ".gz", ".zip", ".parquet", ".xlsx", ".joblib"}
HAN = re.compile(r"[\u3400-\u9fff]")
SPACE = re.compile(r"\s+")


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the files of the repository are not known")
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listed.decode("utf-8").split("\0") if name]


def windows(text: str) -> dict[str, int]:
    """Each run of WINDOW characters (whitespace removed) holding a Chinese character, with its offset."""
    text = SPACE.sub("", text)
    return {
        text[i : i + WINDOW]: i
        for i in range(len(text) - WINDOW + 1)
        if HAN.search(text, i, i + WINDOW)
    }


def test_no_tracked_file_holds_a_run_of_a_shared_tickets_text() -> None:
    sources = [shared_file(name) for name in TICKET_FILES]
    ours: dict[str, str] = {}
    for path in tracked_files():
        if path.suffix.lower() in BINARY or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for run in windows(text):
            ours.setdefault(run, str(path.relative_to(ROOT)))
    assert len(ours) > 100_000  # the sample tickets alone give more: the files were read
    found: dict[str, str] = {}
    for source in sources:
        tickets = pd.read_csv(source, dtype=str, keep_default_na=False)
        for column in ("title", "text"):
            for value in tickets[column]:
                for run in windows(value):
                    if run in ours:
                        found.setdefault(ours[run], source.name)
    # Only the files are named: the run itself, personal data, is not printed (nor kept to be
    # shown by pytest's report of the assertion).
    leaks = [
        f"{path} (a run of {WINDOW} characters of {src})" for path, src in sorted(found.items())
    ]
    assert not leaks, "text of the shared tickets in: " + ", ".join(leaks)
