"""The whole retraining loop, for real: train, serve, feedback, retrain, promote, rollback.

The running server is a ``paidan serve`` subprocess; the registry commands are the CLI. The data are
the tiny corpus of ``tests/conftest.py`` (the loop is the same as with the bundled sample, only
faster): 15 tickets train the first model and three are frozen as the evaluation set.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from model import registry
from tests.conftest import TINY_TICKETS

pytestmark = pytest.mark.slow

EVAL_ROWS = (0, 6, 12)  # one ticket per department
ROTATE = {"人社": "执法", "执法": "住建", "住建": "人社"}
STARTUP_S = 90
SWITCH_S = 60
PAIDAN = [sys.executable, "-m", "paidan"]


def write_rows(path: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "department", "category"])
        w.writerows(rows)
    return path


def tiny_rows() -> list[tuple[str, str, str, str, str]]:
    return [(f"T{i:03d}", *t) for i, t in enumerate(TINY_TICKETS, 1)]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PAIDAN_MODEL_ROOT": str(tmp_path / "models"),
        "PAIDAN_DATA_DIR": str(tmp_path / "var"),
        "PAIDAN_RELOAD_INTERVAL": "0.5",
        "COLUMNS": "200",
    }


def paidan(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*PAIDAN, *args], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"paidan {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def models(env: dict[str, str]) -> list[dict]:
    return json.loads(paidan(env, "models", "list", "--json").stdout)


def paidan_here(env: dict[str, str], *args: str) -> str:
    """``paidan ARGS`` run in this process (CliRunner), for the set-up the tests are not about:
    each subprocess costs a second or more of imports. Its output; exit code 0 is asserted."""
    from typer.testing import CliRunner

    from paidan.cli import app

    r = CliRunner().invoke(app, list(args), env=env)
    assert r.exit_code == 0, f"paidan {' '.join(args)} exited {r.exit_code}\n{r.output}"
    return r.output


@pytest.fixture
def registry_with_champion(tmp_path: Path, env: dict[str, str]) -> tuple[Path, str]:
    """Freeze three tickets, train the first model on the other fifteen, promote it."""
    rows = tiny_rows()
    frozen = write_rows(tmp_path / "eval.csv", [rows[i] for i in EVAL_ROWS])
    history = write_rows(
        tmp_path / "history.csv", [r for i, r in enumerate(rows) if i not in EVAL_ROWS]
    )
    paidan_here(env, "models", "freeze-eval", str(frozen))
    paidan_here(env, "train", str(history), "--min-examples", "3")
    (first,) = registry.versions(Path(env["PAIDAN_MODEL_ROOT"]))
    paidan_here(env, "models", "promote", first)
    return history, first


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(
    registry_with_champion: tuple[Path, str], env: dict[str, str], tmp_path: Path
) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115  # closed below
    proc = subprocess.Popen(
        [*PAIDAN, "serve", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx2.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "paidan serve did not start"
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def route(url: str, text: str) -> dict:
    r = httpx2.post(f"{url}/v1/route", json={"text": text}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_version(url: str, version: str) -> int:
    """Route until the server answers with ``version``; every answer on the way must be a 200."""
    deadline = time.monotonic() + SWITCH_S
    answered = 0
    while True:
        body = route(url, "楼下烧烤店油烟扰民")
        answered += 1
        if body["model_version"] == version:
            return answered
        assert time.monotonic() < deadline, f"still serving {body['model_version']}"
        time.sleep(0.1)


def test_feedback_retrain_promote_rollback_against_a_running_server(
    server: str, registry_with_champion: tuple[Path, str], env: dict[str, str], tmp_path: Path
) -> None:
    history, first = registry_with_champion
    assert route(server, "工地老板拖欠农民工工资")["model_version"] == first

    # Dispatchers correct and confirm suggestions; the same ticket corrected twice, last one wins.
    corrections = [
        ("F1", "物业费", "物业公司乱收物业费，电梯坏了也不修", "住建", "城建"),
        ("F2", "夜市噪音", "夜市摊贩噪音扰民到凌晨", "执法", "环境"),
        ("F3", "欠薪", "公司欠薪两个月，劳动监察投诉无果", "执法", "劳动保障"),
        ("F3", "欠薪", "公司欠薪两个月，劳动监察投诉无果", "人社", "劳动保障"),
    ]
    for ticket, title, text, dept, cat in corrections:
        suggestion = httpx2.post(
            f"{server}/v1/route", json={"title": title, "text": text}, timeout=30
        ).json()
        r = httpx2.post(
            f"{server}/v1/feedback",
            json={
                "ticket_id": ticket,
                "title": title,
                "text": text,
                "suggestion": suggestion,
                "department": dept,
                "category": cat,
                "dispatcher_id": "op-1",
            },
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text

    # Three decisions on a tiny set move nothing beyond noise: the fixed margin lets the loop go on.
    retrained = paidan(env, "retrain", "--history", str(history), "--promotion-rule", "margin")
    assert "15 history + 3 feedback" in retrained.stdout, retrained.stdout
    listed = {m["version"]: m for m in models(env)}
    (second,) = set(listed) - {first}
    assert f"promote it with: paidan models promote {second}" in retrained.stdout
    assert listed[second]["rows"] == {"history": 15, "feedback": 3}
    assert listed[first]["current"] and not listed[second]["current"]
    assert set(listed[second]["metrics"]) == {"department_macro_f1", "category_macro_f1"}
    # Not current yet: the server still answers with the first model.
    assert route(server, "油烟扰民")["model_version"] == first

    paidan(env, "models", "promote", second, "--promotion-rule", "margin")
    wait_for_version(server, second)

    out = paidan(env, "models", "rollback").stdout
    assert first in out
    wait_for_version(server, first)
    assert registry.current_version(Path(env["PAIDAN_MODEL_ROOT"])) == first


def test_worse_challenger_is_refused_and_the_report_names_the_drop(
    registry_with_champion: tuple[Path, str], env: dict[str, str], tmp_path: Path
) -> None:
    _, first = registry_with_champion
    rows = [r for i, r in enumerate(tiny_rows()) if i not in EVAL_ROWS]
    # Every department label moved to the next department: a model that learns this is wrong.
    rotated = write_rows(
        tmp_path / "rotated.csv", [(i, t, x, ROTATE[d], c) for i, t, x, d, c in rows]
    )
    proc = paidan(env, "retrain", "--history", str(rotated), "--promote-if-better", check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "department macro-F1 is worse beyond noise" in proc.stderr, proc.stderr
    root = Path(env["PAIDAN_MODEL_ROOT"])
    assert registry.current_version(root) == first
    (challenger,) = set(registry.versions(root)) - {first}
    report_md = root / registry.REPORTS_DIR / f"{challenger}-vs-{first}.md"
    text = report_md.read_text(encoding="utf-8")
    assert "Promotion REFUSED" in text and "department macro-F1 is worse beyond noise" in text
    report = json.loads(report_md.with_suffix(".json").read_text(encoding="utf-8"))
    assert report["refused"] and report["heads"]["department"]["macro_f1_delta_points"] < -1

    # The explicit promote is refused the same way; --force overrides.
    refused = paidan(env, "models", "promote", challenger, check=False)
    assert refused.returncode == 3
    assert registry.current_version(root) == first
    paidan(env, "models", "promote", challenger, "--force")
    assert registry.current_version(root) == challenger


def test_a_retrain_whose_challenger_would_be_refused_does_not_say_promote_it(
    registry_with_champion: tuple[Path, str], env: dict[str, str], tmp_path: Path
) -> None:
    # Without --promote-if-better, a challenger the rule refuses ended with "promote it with:
    # paidan models promote X", a command that then exits 3 with the same refusal.
    _, first = registry_with_champion
    rows = [r for i, r in enumerate(tiny_rows()) if i not in EVAL_ROWS]
    rotated = write_rows(
        tmp_path / "rotated.csv", [(i, t, x, ROTATE[d], c) for i, t, x, d, c in rows]
    )
    proc = paidan(env, "retrain", "--history", str(rotated))
    assert "would be refused" in proc.stderr
    root = Path(env["PAIDAN_MODEL_ROOT"])
    (challenger,) = set(registry.versions(root)) - {first}
    out = " ".join(proc.stdout.split())
    assert "promote it with" not in out
    assert f"paidan models promote {challenger} --force" in out


def test_a_challenger_forced_past_the_rule_is_not_said_to_stay_not_current(
    registry_with_champion: tuple[Path, str], env: dict[str, str], tmp_path: Path
) -> None:
    # `retrain --promote-if-better --force` printed "promoted X to current (forced past the rule)"
    # and then "X stays registered but not current; to serve it despite the refusal: …".
    _, first = registry_with_champion
    rows = [r for i, r in enumerate(tiny_rows()) if i not in EVAL_ROWS]
    rotated = write_rows(
        tmp_path / "rotated.csv", [(i, t, x, ROTATE[d], c) for i, t, x, d, c in rows]
    )
    proc = paidan(env, "retrain", "--history", str(rotated), "--promote-if-better", "--force")
    root = Path(env["PAIDAN_MODEL_ROOT"])
    (challenger,) = set(registry.versions(root)) - {first}
    assert registry.current_version(root) == challenger
    assert "refused" in proc.stderr  # the rule did refuse it
    out = " ".join(proc.stdout.split())
    assert f"promoted {challenger} to current (forced past the rule)" in out
    assert "stays registered but not current" not in out + proc.stderr
    assert "paidan models promote" not in out


def test_first_retrain_on_an_empty_registry_says_it_is_current(
    env: dict[str, str], tmp_path: Path
) -> None:
    history = write_rows(tmp_path / "history.csv", tiny_rows())
    retrained = paidan(env, "retrain", "--history", str(history))
    (only,) = models(env)
    assert only["current"]
    out = " ".join(retrained.stdout.split())
    assert f"{only['version']} is current: it is the only model in the registry" in out
    assert "promote it with" not in out


def test_first_retrain_promoting_if_better_on_an_empty_registry_succeeds(
    env: dict[str, str], tmp_path: Path
) -> None:
    # The nightly job's command on a new root: the challenger became current, but retrain said
    # "the challenger stays registered but not current" and exited 3 (a refused promotion), so
    # the cron line mailed a refusal that never happened.
    history = write_rows(tmp_path / "history.csv", tiny_rows())
    retrained = paidan(
        env, "retrain", "--history", str(history), "--promote-if-better", check=False
    )
    assert retrained.returncode == 0, retrained.stdout + retrained.stderr
    (only,) = models(env)
    assert only["current"]
    out = " ".join(retrained.stdout.split())
    assert f"{only['version']} is current: it is the only model in the registry" in out
    assert "not current" not in out + retrained.stderr
