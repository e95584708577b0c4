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
    start, rest = command.split("/tmp/paidan-retrain.lock ", 1)
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


def _cron_run(tmp_path: Path, stand_in: str, lock: Path) -> str:
    """What cron mails for the documented line, paidan replaced by ``stand_in``."""
    line = next(x for x in documentation().splitlines() if x.startswith("30 2 * * * "))
    command = line.removeprefix("30 2 * * * ").replace("cd /srv/paidan", f"cd {tmp_path}")
    command = command.replace(". /etc/paidan.env", ": /etc/paidan.env")
    command = command.replace("/tmp/paidan-retrain.lock", str(lock))
    command = command.replace("/var/log/paidan-retrain.log", str(tmp_path / "retrain.log"))
    paidan = command[command.index(".venv/bin/paidan retrain") : command.index(" >>")]
    command = command.replace(paidan, f'sh -c "{stand_in}"')
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def test_the_cron_line_tells_a_crash_from_a_run_still_holding_the_lock(tmp_path: Path) -> None:
    # flock -n exits 1 when the last run still holds the lock, and so does a Python traceback
    # (an unexpected error in paidan): the mail said "1: the last run still holds the lock" for
    # a crash, and the administrator waited for a run that was not there.
    lock = tmp_path / "retrain.lock"
    crashed = _cron_run(tmp_path, "echo Traceback; exit 1", lock)
    assert "exited 1" in crashed and "1: the last run still holds the lock" not in crashed, crashed
    with subprocess.Popen(["flock", str(lock), "sleep", "30"]) as holder:
        try:
            for _ in range(100):  # until the holder has the lock
                if subprocess.run(["flock", "-n", str(lock), "true"]).returncode != 0:
                    break
                subprocess.run(["sleep", "0.05"])
            held = _cron_run(tmp_path, "echo ran; exit 0", lock)
        finally:
            holder.kill()
    assert "ran" not in (tmp_path / "retrain.log").read_text(encoding="utf-8")
    code = held.split("exited ")[1].split(" ")[0]
    assert code != "1" and f"{code}: the last run still holds the lock" in held, held


def test_the_rolling_feedback_window_cron_line_gives_retrain_the_date_90_days_ago(
    tmp_path: Path,
) -> None:
    # cron ends a command at a bare % (the rest goes to its input): `+%F` in a crontab ran
    # `date -d '90 days ago' +` and lost the rest of the line. Run as cron runs it: `\%` is `%`.
    import re
    from datetime import date, timedelta

    line = next(
        x
        for x in documentation().splitlines()
        if x.startswith("30 2 * * * ") and "--feedback-since" in x
    )
    command = line.removeprefix("30 2 * * * ")
    assert not re.search(r"(?<!\\)%", command), "a bare % in a crontab line ends its command"
    command = command.replace("\\%", "%")
    command = command.replace("cd /srv/paidan", f"cd {tmp_path}")
    command = command.replace(". /etc/paidan.env", ": /etc/paidan.env")
    command = command.replace("/tmp/paidan-retrain.lock", str(tmp_path / "retrain.lock"))
    command = command.replace("/var/log/paidan-retrain.log", str(tmp_path / "retrain.log"))
    stand_in = tmp_path / ".venv" / "bin" / "paidan"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path / 'args'}\n")
    stand_in.chmod(0o755)
    before = date.today()
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not done.stdout + done.stderr, done
    args = (tmp_path / "args").read_text(encoding="utf-8").splitlines()
    given = args[args.index("--feedback-since") + 1]
    assert given in {(d - timedelta(days=90)).isoformat() for d in (before, date.today())}, args
    assert args[0] == "retrain" and "--history" in args, args
