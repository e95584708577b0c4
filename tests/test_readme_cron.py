"""The documented nightly cron line (docs/retraining.md), run with a stand-in for a refused promotion."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.docs_text import documentation


def test_the_cron_line_prints_something_when_a_promotion_is_refused(tmp_path: Path) -> None:
    # README: "--promote-if-better … exits 3 when it refuses (so cron mails you)"; its cron line
    # sent all output to a log, and cron mails output, never the exit status: nothing was mailed.
    line = next(x for x in documentation().splitlines() if x.startswith("30 2 * * * "))
    command = line.removeprefix("30 2 * * * ")
    assert ".venv/bin/paidan retrain " in command
    log = tmp_path / "retrain.log"
    refused = "echo 'promotion refused: department macro-F1 2.1 points worse'; exit 3"
    start, rest = command.split("flock -n /tmp/paidan-retrain.lock ", 1)
    stand_in = start.replace("cd /srv/paidan", f"cd {tmp_path}")
    stand_in = stand_in.replace(". /etc/paidan.env", ": /etc/paidan.env")
    rest = 'sh -c "' + refused + '"' + rest[rest.index(" >>") :]
    rest = rest.replace("/var/log/paidan-retrain.log", str(log))
    mailed = subprocess.run(
        ["sh", "-c", stand_in + rest], capture_output=True, text=True, timeout=30
    )
    assert "promotion refused" in log.read_text(encoding="utf-8")
    said = mailed.stdout + mailed.stderr  # what cron mails
    assert "exited 3" in said and str(log) in said
