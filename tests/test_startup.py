"""The start-up shared by the CLI and the server: no cyclic collector while it runs, then a freeze."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest

import paidan
from model.startup import startup


class Node:
    """An object the cyclic collector tracks."""


def _tracked(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_the_collector_is_off_inside_and_what_was_built_is_frozen_after() -> None:
    gc.enable()
    with startup():
        assert not gc.isenabled()
        built = Node()
        assert _tracked(built)
    assert gc.isenabled()
    assert not _tracked(built)
    after = Node()
    assert _tracked(after)


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with startup():
        pass
    assert not gc.isenabled()


def test_the_collector_comes_back_when_the_block_raises() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), startup():
        raise RuntimeError("a model that cannot be read")
    assert gc.isenabled()


def test_the_paidan_command_is_paidan_main() -> None:
    (command,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "paidan"]
    assert command.load() is paidan.main
    done = subprocess.run(
        [sys.executable, "-m", "paidan", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout and "train" in done.stdout


class _CtrlCWhileImporting:
    def __enter__(self) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        return None


def _ctrl_c(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("when", ["importing", "building the commands"])
def test_ctrl_c_before_a_command_runs_ends_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], when: str
) -> None:
    # The first seconds of every command import paidan and build its commands (typer reads
    # every option's type): Ctrl-C there, a mistyped `paidan label` stopped at once, ended in
    # a 30-line KeyboardInterrupt traceback, where Ctrl-C a second later says one line, exit 130.
    import paidan.cli

    if when == "importing":
        monkeypatch.setattr(paidan, "startup", _CtrlCWhileImporting)
    else:
        monkeypatch.setattr(paidan.cli, "app", _ctrl_c)
    with pytest.raises(SystemExit) as e:
        paidan.main()
    assert e.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"
