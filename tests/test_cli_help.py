"""What ``paidan … --help`` and the global options say and accept, against README."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from paidan.cli import app

runner = CliRunner()


def leaf_commands() -> list[list[str]]:
    """Every command's words: ``["train"]`` … ``["models", "freeze-eval"]``."""
    found = []

    def walk(group: object, words: list[str]) -> None:
        for name, cmd in getattr(group, "commands", {}).items():
            if getattr(cmd, "commands", None):
                walk(cmd, [*words, name])
            else:
                found.append([*words, name])

    walk(typer.main.get_command(app), [])
    return found


@pytest.fixture
def root_level() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.WARNING)
    yield root
    root.setLevel(before)


def test_every_command_is_listed() -> None:
    words = {" ".join(c) for c in leaf_commands()}
    assert {"train", "label", "serve", "retrain", "db upgrade", "models freeze-eval"} <= words


@pytest.mark.parametrize("words", leaf_commands(), ids=" ".join)
def test_verbose_is_accepted_after_every_command(words: list[str]) -> None:
    # README (Dask): "Dask's log shows only its warnings unless --verbose is given"; typed where
    # the other options go, `paidan label … --verbose` was refused: "No such option".
    r = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "--verbose" in r.output and "-v" in r.output


def test_verbose_after_the_command_logs_debug(root_level: logging.Logger, tmp_path: Path) -> None:
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models")}
    r = runner.invoke(app, ["models", "list"], env=env)
    assert r.exit_code == 0, r.output
    assert root_level.level == logging.WARNING
    r = runner.invoke(app, ["models", "list", "-v"], env=env)
    assert r.exit_code == 0, r.output
    assert root_level.level == logging.DEBUG
