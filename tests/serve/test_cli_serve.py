"""``paidan serve`` and ``paidan db upgrade``: start-up checks and the default model.

A real ``paidan serve`` process (routing, feedback surviving ``kill -9``) is tested in
``tests/reliability`` (``live.py``, ``test_faults.py``, ``test_load.py``).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from model.registry import current_version
from model.settings import Settings, SettingsError, load_settings
from paidan.cli import app
from tests.conftest import write_tiny_csv

runner = CliRunner()


def free_port() -> str:
    """A port nothing listens on, for a test whose ``paidan serve`` really binds (one worker binds
    before it checks the model): the default 8000 may be taken, e.g. by the README's own ``paidan
    serve`` running while the tests run."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_bad_setting_stops_startup_with_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["serve"], env={"PAIDAN_TOP_K": "many", "PAIDAN_MODEL_ROOT": str(tmp_path)}
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "PAIDAN_TOP_K" in lines[0]


def test_a_model_root_that_is_a_file_stops_startup_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("started"))
    a_file = tmp_path / "root"
    a_file.write_text("x", encoding="utf-8")
    result = runner.invoke(app, ["serve"], env={"PAIDAN_MODEL_ROOT": str(a_file)})
    assert result.exit_code == 2
    assert "PAIDAN_MODEL_ROOT" in result.output and "is a file, not a directory" in result.output
    assert not list(tmp_path.glob("**/metadata.json"))  # refused before any training


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("PAIDAN_API_KEY", "PAIDAN_API_KEYS"),
        ("PAIDAN_DATABASE_URI", "PAIDAN_DATABASE_URL"),
        ("PAIDAN_MAX_TEXT_CHAR", "PAIDAN_MAX_TEXT_CHARS"),
    ],
)
def test_a_misspelt_setting_stops_serve_naming_it_and_the_setting_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, meant: str
) -> None:
    # PAIDAN_API_KEY (singular) was ignored: a loopback server behind nginx served the feedback
    # export and admin reload without a key, and nothing said so.
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("started"))
    env = {name: "k" * 32, "PAIDAN_MODEL_ROOT": str(tmp_path / "models")}
    result = runner.invoke(app, ["serve", "--port", free_port()], env=env)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert f"{name} is not a paidan setting (did you mean {meant}?)" in lines[0]
    assert not (tmp_path / "models").exists()  # refused before the default model is trained


def test_other_commands_warn_of_a_misspelt_setting_and_go_on(tmp_path: Path) -> None:
    env = {"PAIDAN_RELOAD_INTERVALL": "5", "PAIDAN_MODEL_ROOT": str(tmp_path / "models")}
    result = runner.invoke(app, ["models", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert (
        "warning: PAIDAN_RELOAD_INTERVALL is not a paidan setting (did you mean "
        "PAIDAN_RELOAD_INTERVAL?)" in result.output
    )
    assert "no model versions under" in result.output


@pytest.mark.parametrize(
    ("name", "option"),
    [("PAIDAN_WORKERS", "--workers"), ("PAIDAN_PORT", "--port"), ("PAIDAN_HOST", "--host")],
)
def test_a_serve_option_set_as_a_variable_is_named_as_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, option: str
) -> None:
    # PAIDAN_WORKERS=4 (as gunicorn reads WEB_CONCURRENCY) was refused as "not a paidan setting",
    # with no word of where the worker count is set.
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("started"))
    env = {name: "two", "PAIDAN_MODEL_ROOT": str(tmp_path / "models")}
    result = runner.invoke(app, ["serve", "--port", free_port()], env=env)
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert f"{name} is not a paidan setting (it is paidan serve's {option} option)" in line


def test_settings_and_paidans_other_variables_are_not_reported_as_unknown() -> None:
    from model.settings import OTHER_VARIABLES, setting_variables, unknown_variables

    environ = {name: "1" for name in [*setting_variables(), *OTHER_VARIABLES]}
    environ |= {"paidan_model_root": "x", "PATH": "/bin", "PAIDANX": "1"}  # case as settings read
    assert unknown_variables(environ) == []
    assert unknown_variables({**environ, "PAIDAN_ZZZQQ": "1"}) == [
        "PAIDAN_ZZZQQ is not a paidan setting"
    ]


def test_empty_directory_settings_mean_their_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model.settings import Settings

    monkeypatch.setenv("PAIDAN_MODEL_ROOT", "")
    monkeypatch.setenv("PAIDAN_DATA_DIR", " ")
    monkeypatch.setenv("PAIDAN_MODEL_DIR", "")
    settings = Settings()
    assert settings.model_root == Path("models") and settings.data_dir == Path("var")
    assert settings.model_dir is None


def test_settings_from_an_env_file_with_windows_line_ends_lose_the_carriage_return(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `set -a && . /etc/paidan.env` keeps the CR of a CRLF file: the model root named another,
    # empty directory and `false` was refused as no boolean.
    from model.settings import Settings

    monkeypatch.setenv("PAIDAN_MODEL_ROOT", f"{tmp_path / 'models'}\r")
    monkeypatch.setenv("PAIDAN_DATA_DIR", f"{tmp_path / 'var'}\r")
    monkeypatch.setenv("PAIDAN_FOLLOW_CURRENT", "false\r")
    monkeypatch.setenv("PAIDAN_TOP_K", "5\r")
    monkeypatch.setenv("PAIDAN_RELOAD_INTERVAL", " 1.5\r")
    settings = Settings()
    assert settings.model_root == tmp_path / "models" and settings.data_dir == tmp_path / "var"
    assert settings.follow_current is False and settings.top_k == 5
    assert settings.reload_interval == 1.5


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-inf"])
def test_a_reload_interval_that_is_no_finite_number_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # `inf` (or 1e400, which reads as inf) was accepted: the server logged "following
    # models/current every inf s" and never looked at the pointer again, and the admin reload
    # answer said it "switches within inf s"; `nan` was refused as not ">= 0".
    monkeypatch.setenv("PAIDAN_RELOAD_INTERVAL", value)
    with pytest.raises(SettingsError) as e:
        load_settings()
    # Said in paidan's words, as the API says a number's problem (serve.errors), not pydantic's
    # English ("Input should be a finite number").
    assert str(e.value) == (
        f"invalid settings: PAIDAN_RELOAD_INTERVAL: is {value}; must be a finite number"
    )


@pytest.mark.parametrize("value", ["0.001", "1e-9", "0.09"])
def test_a_reload_interval_below_the_minimum_is_refused_naming_the_setting_and_the_limit(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # 0.001 was accepted: every worker polled the model root's `current` a thousand times a
    # second, a core busy doing nothing.
    monkeypatch.setenv("PAIDAN_RELOAD_INTERVAL", value)
    with pytest.raises(SettingsError) as e:
        load_settings()
    assert str(e.value) == (
        f"invalid settings: PAIDAN_RELOAD_INTERVAL: is {float(value):g} s; give 0 to turn the "
        "polling off or at least 0.1 s"
    )


@pytest.mark.parametrize("value", ["0", "0.0", "0.1", "2"])
def test_a_reload_interval_of_0_or_at_least_the_minimum_is_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PAIDAN_RELOAD_INTERVAL", value)
    assert load_settings().reload_interval == float(value)


LENGTH_LIMITS = (
    "max_text_chars",
    "max_title_chars",
    "max_batch",
    "max_body_bytes",
    "max_header_bytes",
)


@pytest.mark.parametrize("name", LENGTH_LIMITS)
def test_a_length_limit_beyond_any_length_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # PAIDAN_MAX_TEXT_CHARS=99999999999999999999999 (zeros too many) was accepted; `paidan serve`
    # announced "serving … on http://…" and then died with a 60-line SchemaError traceback
    # ("int too big to convert") while building the request models.
    import sys

    monkeypatch.setenv(f"PAIDAN_{name.upper()}", str(sys.maxsize + 1))
    with pytest.raises(SettingsError) as e:
        load_settings()
    assert str(e.value) == (
        f"invalid settings: PAIDAN_{name.upper()}: is {sys.maxsize + 1}; must be at most "
        f"{sys.maxsize:,}"
    )


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("top_k", "0", "is 0; must be at least 1"),
        ("top_k", "21", "is 21; must be at most 20"),
        ("max_text_chars", "99", "is 99; must be at least 100"),
        ("reload_interval", "-1", "is -1; must be at least 0"),
        # Text that is not of the setting's type is quoted too ("three" was not: the line named
        # neither the value nor, for a setting set in two env files, which one was read).
        ("top_k", "three", "is 'three'; must be a whole number"),
        ("max_batch", "1,000", "is '1,000'; must be a whole number"),
        ("max_body_bytes", "8MiB", "is '8MiB'; must be a whole number"),
        ("reload_interval", "2s", "is '2s'; must be a number"),
        ("follow_current", "sometimes", "is 'sometimes'; must be true or false"),
        ("access_log", "开", "is '开'; must be true or false"),
        ("keep_alive_s", "", "is empty; must be a whole number"),
        # A value as long as an API key may be one, set under the wrong name: never quoted.
        (
            "top_k",
            "k" * 16,
            "is 16 characters long (not quoted: it may be a secret); must be a whole number",
        ),
    ],
)
def test_a_setting_out_of_its_bounds_or_of_another_type_is_said_as_the_api_says_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str
) -> None:
    # "PAIDAN_TOP_K: Input should be greater than or equal to 1" was pydantic's English, where the
    # API says "body.top_k: must be at least 1": one wording for both (model.text.value_problem).
    monkeypatch.setenv(f"PAIDAN_{name.upper()}", value)
    with pytest.raises(SettingsError) as e:
        load_settings()
    assert str(e.value) == f"invalid settings: PAIDAN_{name.upper()}: {said}"


def test_the_largest_length_limits_build_the_request_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from serve.schemas import make_request_models

    for name in LENGTH_LIMITS:
        monkeypatch.setenv(f"PAIDAN_{name.upper()}", str(sys.maxsize))
    models = make_request_models(load_settings())
    assert (
        models.route.model_validate({"text": "小区楼下烧烤店油烟很大"}).text
        == "小区楼下烧烤店油烟很大"
    )


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_serve_refuses_a_model_root_it_cannot_write_before_training_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PAIDAN_MODEL_ROOT that holds no model and cannot be made (a mistyped mount point, a path
    # under a file) was found out only once the default model was trained, two minutes later:
    # "--out …/20261207T121056Z-7a513df8 cannot be written", an option the operator never gave.
    import subprocess

    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("trained the default"))
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("started"))
    # Under /proc no directory can be made, even by root (whom permission bits never stop).
    root = Path("/proc/paidan-no-such-dir/models")
    result = runner.invoke(
        app,
        ["serve", "--port", free_port()],
        env={"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")},
    )
    assert result.exit_code == 2, result.output
    assert f"error: PAIDAN_MODEL_ROOT {root} cannot be written" in " ".join(result.output.split())
    assert "training the default model" not in result.output


@pytest.mark.parametrize("value", ["gone", "{tmp}/models/gone"], ids=["version", "path"])
def test_a_paidan_model_dir_that_cannot_be_served_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # "error: /srv/paidan/models/v7 is not a directory" named no setting: a model set in a systemd
    # unit's Environment= line, not on the command line, left the operator to guess where it came
    # from.
    (tmp_path / "models").mkdir()
    value = value.format(tmp=tmp_path)
    env = {"PAIDAN_MODEL_DIR": value, "PAIDAN_MODEL_ROOT": str(tmp_path / "models")}
    result = runner.invoke(app, ["serve", "--port", free_port()], env=env)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: PAIDAN_MODEL_DIR={value}: "), result.output
    # Given as --model, it is the option the operator just typed: said as before.
    result = runner.invoke(
        app,
        ["serve", "--port", free_port(), "--model", value],
        env={"PAIDAN_MODEL_ROOT": str(tmp_path / "models")},
    )
    assert result.exit_code == 2, result.output
    assert "PAIDAN_MODEL_DIR" not in result.output and value in result.output


def test_serve_refuses_a_model_outside_the_root(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["serve", "--model", str(tiny_model_dir), "--port", free_port()],
        env={"PAIDAN_MODEL_ROOT": str(tmp_path / "root"), "PAIDAN_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "outside the model root" in result.output
    assert "serving" not in result.output  # announced first, then refused


def test_paidan_model_dir_may_name_a_version_under_the_root_as_model_does(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PAIDAN_MODEL_DIR=<version> was read against the working directory and refused as "outside
    # the model root", though the version was under it and `--model <version>` served it.
    import shutil

    root = tmp_path / "root"
    shutil.copytree(tiny_model_dir, root / "v1")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    calls: list[Any] = []
    monkeypatch.setattr(
        "serve.server.run", lambda settings, model_dir, **k: calls.append((settings, model_dir))
    )
    env = {
        "PAIDAN_MODEL_ROOT": str(root),
        "PAIDAN_DATA_DIR": str(tmp_path),
        "PAIDAN_MODEL_DIR": "v1",
    }
    result = runner.invoke(app, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    [(settings, model_dir)] = calls
    assert model_dir == root / "v1" and settings.model_dir == root / "v1"


def test_the_app_factory_takes_a_version_name_in_paidan_model_dir(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `uvicorn serve.app:create_app --factory` (and each --workers process) reads.
    from model.settings import Settings
    from serve.app import resolve_model_dir

    monkeypatch.chdir(tmp_path)
    root = tiny_model_dir.parent
    settings = Settings(model_root=root, model_dir=Path(tiny_model_dir.name))
    assert resolve_model_dir(settings) == root / tiny_model_dir.name
    # A path that exists from here, or of several parts, is taken as it is.
    (tmp_path / "local").mkdir()
    assert resolve_model_dir(Settings(model_root=root, model_dir=Path("local"))) == Path("local")
    assert resolve_model_dir(Settings(model_root=root, model_dir=Path("a/b"))) == Path("a/b")


def test_serve_model_current_follows_the_pointer_and_is_not_pinned(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--model current` and PAIDAN_MODEL_DIR=current were refused ("'current' does not exist");
    # meaning the current model, they must not pin the server to the version current names at
    # start, or a promotion would never reach it.
    import shutil

    from serve.app import resolve_model_dir

    root = tmp_path / "root"
    shutil.copytree(tiny_model_dir, root / "v1")
    monkeypatch.chdir(tmp_path)
    calls: list[Any] = []
    monkeypatch.setattr(
        "serve.server.run", lambda settings, model_dir, **k: calls.append((settings, model_dir))
    )
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    result = runner.invoke(app, ["serve", "--model", "current"], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["serve"], env={**env, "PAIDAN_MODEL_DIR": "current"})
    assert result.exit_code == 0, result.output
    for settings, model_dir in calls:
        assert model_dir == root / "v1" and settings.model_dir is None
    assert resolve_model_dir(Settings(model_root=root, model_dir=Path("current"))) == root / "v1"


def test_serve_takes_the_model_version_answers_report_and_says_an_unknown_one_does_not_exist(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `train --out ROOT/v1` writes a model whose answers and feedback rows report its own version
    # (metadata.json), not v1: `serve --model <that version>` said "…/<that version> is outside
    # the model root", as it said for any name no version has.
    import shutil

    from model.artifact import read_metadata

    root = tmp_path / "root"
    shutil.copytree(tiny_model_dir, root / "v1")
    reported = read_metadata(root / "v1")["version"]
    assert reported != "v1"
    monkeypatch.chdir(tmp_path)
    calls: list[Any] = []
    monkeypatch.setattr(
        "serve.server.run", lambda settings, model_dir, **k: calls.append((settings, model_dir))
    )
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    result = runner.invoke(app, ["serve", "--model", reported], env=env)
    assert result.exit_code == 0, result.output
    [(settings, model_dir)] = calls
    assert model_dir == root / "v1" and settings.model_dir == root / "v1"
    # The app factory (each --workers process, uvicorn --factory) reads PAIDAN_MODEL_DIR the same.
    from serve.app import resolve_model_dir

    assert resolve_model_dir(Settings(model_root=root, model_dir=Path(reported))) == root / "v1"

    result = runner.invoke(app, ["serve", "--model", "v9", "--port", free_port()], env=env)
    assert result.exit_code == 2
    assert "outside the model root" not in result.output
    assert "'v9' does not exist" in result.output
    assert f"registered versions: v1 (model version {reported})" in result.output
    assert len(calls) == 1


def test_serve_trains_the_default_model_when_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bundled sample takes a minute to train; the tiny corpus stands in for it here.
    monkeypatch.setattr("model.resources.sample_path", lambda: write_tiny_csv(tmp_path / "s.csv"))
    calls: list[dict[str, Any]] = []

    def fake_run(settings: Any, model_dir: Path, **kwargs: Any) -> None:
        calls.append({"settings": settings, "model_dir": model_dir, **kwargs})

    monkeypatch.setattr("serve.server.run", fake_run)
    root = tmp_path / "models"
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    result = runner.invoke(app, ["serve", "--port", "8123"], env=env)
    assert result.exit_code == 0, result.output
    assert "training the default model from the bundled sample" in " ".join(result.output.split())
    version = current_version(root)
    assert version is not None
    [call] = calls
    assert call["model_dir"] == root / version and call["port"] == 8123
    # The second start finds the model and trains nothing.
    again = runner.invoke(app, ["serve"], env=env)
    assert again.exit_code == 0 and "training" not in again.output
    assert calls[1]["model_dir"].name == version


def test_serve_holds_no_training_process_once_the_default_model_is_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # joblib kept the training's worker processes (about 200 MB each) idle for 5 minutes beside
    # the server, and left them behind when the server was stopped meanwhile; and what training
    # took stayed in the server's own process (458 MB against 248 restarted). The default is now
    # trained in a process of its own, gone with its workers before the server starts.
    import psutil

    monkeypatch.setattr("model.resources.sample_path", lambda: write_tiny_csv(tmp_path / "s.csv"))
    # Not in this process: here training fails the test (the trainer is an interpreter of its own).
    monkeypatch.setattr("training.train.train", lambda *a, **k: pytest.fail("trained in-process"))

    def children() -> set[int]:  # this test process's; earlier tests may have left some
        return {p.pid for p in psutil.Process().children(recursive=True)}

    at_start: list[set[int]] = []
    monkeypatch.setattr("serve.server.run", lambda *a, **k: at_start.append(children()))
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path)}
    before = children()
    result = runner.invoke(app, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    [started] = at_start
    assert started - before == set()  # nothing of the training left when the server starts
    from model.registry import current_dir

    trained = current_dir(tmp_path / "models")
    assert trained is not None and (trained / "metadata.json").is_file()


def test_serve_says_in_one_line_why_the_default_model_could_not_be_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trainer's exception comes back to the server's process and is said as before.
    monkeypatch.setattr("model.resources.sample_path", lambda: tmp_path / "missing.csv")
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("served"))
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path)}
    result = runner.invoke(app, ["serve"], env=env)
    assert result.exit_code == 2, result.output
    assert f"error: {tmp_path / 'missing.csv'}: no such file or directory" in result.output


@pytest.mark.parametrize("port", ["0", "99999"])
def test_serve_refuses_a_port_outside_1_to_65535(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    # 99999 used to be passed on: the log said "running on http://127.0.0.1:99999", and nothing
    # listened.
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("started"))
    result = runner.invoke(app, ["serve", "--port", port], env={"PAIDAN_MODEL_ROOT": str(tmp_path)})
    assert result.exit_code == 2 and "--port" in result.output


def test_db_upgrade_creates_the_feedback_table(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"], env={"PAIDAN_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "paidan.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"feedback", "alembic_version"} <= tables


def _db_upgrade_refusal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> str:
    """The one line ``paidan db upgrade`` prints for the database under ``tmp_path``."""
    result = runner.invoke(app, ["db", "upgrade"], env={"PAIDAN_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    # The server's start-up warning ("routing will work, feedback will not") repeated the error,
    # about a server that db upgrade does not run.
    assert not [r for r in caplog.records if r.name == "serve.server"], caplog.text
    assert lines[0].startswith(f"error: cannot migrate sqlite:///{tmp_path}")
    return lines[0]


# Nothing tells the two apart (both are free-form names in Alembic's default table), so either
# refusal names the revision and both causes, and neither says only "a newer paidan migrated it".
BOTH_CAUSES = "a newer paidan migrated it, or it belongs to another application"


def test_a_database_a_newer_paidan_migrated_is_one_clear_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"PAIDAN_DATA_DIR": str(tmp_path)}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    with sqlite3.connect(tmp_path / "paidan.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_future'")
    line = _db_upgrade_refusal(tmp_path, caplog)
    assert "schema revision '0099_future', which this paidan does not know" in line
    assert "(its latest is '0003')" in line and BOTH_CAUSES in line
    assert "run the paidan that migrated it" in line


def test_another_applications_database_is_not_blamed_on_a_newer_paidan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Was "a newer paidan migrated it: run that version, or restore the database from a backup":
    # no such paidan exists, and the backup would be restored over another application's data.
    with sqlite3.connect(tmp_path / "paidan.db") as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('3f2a9c1d7e')")
        conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    line = _db_upgrade_refusal(tmp_path, caplog)
    assert "schema revision '3f2a9c1d7e', which this paidan does not know" in line
    assert BOTH_CAUSES in line and "paidan's own database" in line
    with sqlite3.connect(tmp_path / "paidan.db") as conn:  # left as it was
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"alembic_version", "users"}


def test_a_file_that_is_not_a_database_is_refused_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "paidan.db").write_text("hello\n", encoding="utf-8")
    assert _db_upgrade_refusal(tmp_path, caplog).endswith("DatabaseError: file is not a database")


def test_serve_refuses_a_tampered_model_before_starting(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    root = tmp_path / "root"
    model = root / "m1"
    shutil.copytree(tiny_model_dir, model)
    pickled = model / "router.joblib"
    pickled.chmod(0o644)
    with open(pickled, "r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 8)
    result = runner.invoke(
        app,
        ["serve", "--model", str(model), "--port", free_port()],
        env={"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "router.joblib" in result.output and "Traceback" not in result.output


def test_the_model_loaded_by_the_cli_is_served_once_then_reloads_read_disk(
    tiny_model_dir: Path,
) -> None:
    from serve.server import _first_load_from

    first = (object(), {"version": "preloaded"})
    loader = _first_load_from(tiny_model_dir.resolve(), first)  # type: ignore[arg-type]
    assert loader(tiny_model_dir, None) is first
    router, meta = loader(tiny_model_dir, None)  # a reload: the real loader, its checks
    assert meta["version"] != "preloaded" and router.heads


def test_serve_serves_paidan_model_dir_and_stays_on_it(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PAIDAN_MODEL_DIR used to be ignored by `paidan serve`: it served the root's current model.
    import shutil

    from model.registry import set_current

    root = tmp_path / "root"
    for name in ("v1", "v2"):
        shutil.copytree(tiny_model_dir, root / name)
    set_current(root, "v2")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "serve.server.run",
        lambda settings, model_dir, **k: calls.append({"settings": settings, "dir": model_dir}),
    )
    env = {
        "PAIDAN_MODEL_ROOT": str(root),
        "PAIDAN_DATA_DIR": str(tmp_path),
        "PAIDAN_MODEL_DIR": str(root / "v1"),
    }
    result = runner.invoke(app, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    [call] = calls
    assert call["dir"] == root / "v1"
    assert call["settings"].model_dir == root / "v1"  # a chosen model stays put, as with --model


SECRET_PW = "S3cretPW"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://paidan@db.internal/paidan?password={SECRET_PW}&sslmode=require",
        f"postgresql+psycopg:///paidan?host=/var/run/postgresql&password={SECRET_PW}",
        f"postgresql+psycopg://paidan:{SECRET_PW}@db.internal/paidan?sslpassword={SECRET_PW}",
        f"postgresql+psycopg://paidan@db.internal/paidan?PASSWORD={SECRET_PW}&password=other",
    ],
    ids=["query", "unix-socket", "userinfo-and-sslpassword", "upper-case-and-repeated"],
)
def test_describe_database_hides_a_password_in_the_query(url: str) -> None:
    # `?password=` is handed to psycopg as the password; only USER:PASSWORD@ used to be hidden.
    from sqlalchemy import make_url

    from model.settings import Settings
    from serve.server import describe_database

    shown = describe_database(Settings(database_url=url))
    assert SECRET_PW not in shown and "other" not in shown
    given, parsed = make_url(url), make_url(shown)
    assert parsed.host == given.host and parsed.database == given.database
    assert set(parsed.query) == set(given.query)  # every parameter is still named
    for key, value in given.query.items():
        if key.lower() in ("password", "sslpassword"):
            masked = parsed.query[key]
            assert set((masked,) if isinstance(masked, str) else masked) == {"***"}
        else:
            assert parsed.query[key] == value  # sslmode, host: readable as before


def test_db_upgrade_and_serve_never_print_a_password_in_the_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Port 1 refuses at once: the migration fails, and its error names the database.
    url = f"postgresql+psycopg://paidan@127.0.0.1:1/paidan?password={SECRET_PW}"
    result = runner.invoke(app, ["db", "upgrade"], env={"PAIDAN_DATABASE_URL": url})
    assert result.exit_code == 2
    assert "cannot migrate postgresql+psycopg://paidan@127.0.0.1:1/paidan?password=***" in (
        " ".join(result.output.split())
    )
    monkeypatch.setattr("paidan.cli.ensure_model", lambda settings, model, **_: tmp_path)
    # The server announces itself once the model is verified (and the address bound).
    monkeypatch.setattr("serve.server.run", lambda *a, announce, **k: announce())
    started = runner.invoke(
        app, ["serve"], env={"PAIDAN_DATABASE_URL": url, "PAIDAN_MODEL_ROOT": str(tmp_path)}
    )
    assert started.exit_code == 0, started.output
    assert "(feedback: postgresql+psycopg://paidan@127.0.0.1:1/paidan?password=***)" in (
        "".join(started.output.split("\n"))
    )
    for text in (result.output, started.output, caplog.text):
        assert SECRET_PW not in text


def test_a_database_url_without_its_host_never_quotes_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without "@HOST" SQLAlchemy reads the password as the port, and its error quoted it.
    from model.settings import SettingsError, load_settings

    monkeypatch.setenv("PAIDAN_DATABASE_URL", f"postgresql+psycopg://paidan:{SECRET_PW}/paidan")
    with pytest.raises(SettingsError) as e:
        load_settings()
    message = str(e.value)
    assert message.startswith("invalid settings: PAIDAN_DATABASE_URL: is not a database URL")
    assert SECRET_PW not in message and "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://paidan:Xk9@TAIL@db.internal:5432/paidan",  # the host
        "postgresql+psycopg://paidan:Xk9@TAIL@/paidan?host=/var/run/postgresql",
        "postgresql+psycopg://paidan:Xk9@TAIL/x@db.internal/paidan",  # the database
        "postgresql+psycopg://paidan:Xk9@TAIL?x@db.internal/paidan",  # a query parameter
        "postgresql+psycopg://paidan:Xk9@TAIL:x@db.internal/paidan",  # the port
    ],
)
def test_a_raw_at_sign_in_the_password_is_refused_without_quoting_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLAlchemy ends the password at its first "@": the rest was printed as the host in the
    # banner, the logs, every 503 and the unauthenticated /readyz.
    from model.settings import SettingsError, load_settings

    monkeypatch.setenv("PAIDAN_DATABASE_URL", url.replace("TAIL", SECRET_PW))
    with pytest.raises(SettingsError) as e:
        load_settings()
    message = str(e.value)
    assert "percent-encode the password" in message and "%40" in message
    assert SECRET_PW not in message and "Xk9" not in message and "\n" not in message
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2 and SECRET_PW not in result.output


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://paidan%40srv:p%40ss@db.internal/paidan",
        "postgresql+psycopg://paidan@srv:pw@db.internal/paidan",  # an "@" in the user name parses
        "postgresql+psycopg://paidan@db.internal/paidan?password=p@ss&sslmode=require",
    ],
)
def test_an_encoded_password_or_an_at_sign_elsewhere_is_accepted(url: str) -> None:
    from model.settings import Settings

    assert Settings(database_url=url).database_url == url


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite+pysqlite://",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:paidan?mode=memory&cache=shared&uri=true",
    ],
)
def test_an_in_memory_sqlite_database_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    # It passed every check, and then each feedback request answered 503 "no such table" for as
    # long as the server ran: the migration had run on a throw-away engine.
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("started"))
    env = {"PAIDAN_DATABASE_URL": url, "PAIDAN_MODEL_ROOT": str(tmp_path)}
    for command in (["db", "upgrade"], ["serve"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, result.output
        assert lines[0].startswith("error: invalid settings: PAIDAN_DATABASE_URL: an in-memory")
        assert "sqlite:////PATH/paidan.db" in lines[0]


@pytest.mark.parametrize("value", ["off", "FALSE", "no", "none", "null", "never", "", "7", "0"])
def test_prepare_threshold_never_is_spelt_any_usual_way(value: str) -> None:
    from sqlalchemy import make_url

    from model.settings import Settings
    from serve.db import _postgres_timeouts

    url = f"postgresql+psycopg://paidan@db.internal/paidan?prepare_threshold={value}"
    assert Settings(database_url=url).database_url == url
    expected = int(value) if value.isdigit() else None
    assert _postgres_timeouts(make_url(url))["prepare_threshold"] == expected


@pytest.mark.parametrize("value", ["offf", "5x", "1.5", "13812345678a"])
def test_a_bad_prepare_threshold_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # It stopped `paidan serve` and `paidan db upgrade` with a Python traceback, from the engine.
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("started"))
    url = f"postgresql+psycopg://paidan@127.0.0.1:1/paidan?prepare_threshold={value}"
    env = {"PAIDAN_DATABASE_URL": url, "PAIDAN_MODEL_ROOT": str(tmp_path)}
    for command in (["db", "upgrade"], ["serve"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, result.output
        assert lines[0].startswith(
            "error: invalid settings: PAIDAN_DATABASE_URL: prepare_threshold"
        )
        assert "prepare_threshold=none" in lines[0]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{dir}/paidan.db",
        "sqlite:///file:{dir}/paidan.db?mode=rwc&uri=true",
        "sqlite:///file://localhost{dir}/paidan.db?uri=1",
    ],
    ids=["path", "uri", "uri-with-host"],
)
def test_a_sqlite_file_is_still_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    # The URI form's directory was made under the working directory (./file:/.../var), not at
    # /.../var, and the database could not be opened: "unable to open database file".
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    var = tmp_path / "var"  # not there yet
    env = {"PAIDAN_DATABASE_URL": url.format(dir=var)}
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert (var / "paidan.db").is_file()
    assert list(cwd.iterdir()) == []
    # Named as written: the colon of file: was shown as file%3A.
    assert f"created {url.format(dir=var)} at schema revision" in "".join(result.output.split("\n"))
    again = runner.invoke(app, ["db", "upgrade"], env=env)
    assert f"{url.format(dir=var)} is at the latest schema revision" in (
        "".join(again.output.split("\n"))
    )


def test_retrain_and_drift_read_the_feedback_of_a_sqlite_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The URI was taken as a path (./file:/.../paidan.db), which did not exist: retrain and drift
    # read no feedback at all, and drift --out could overwrite the database.
    from model.settings import Settings
    from paidan.cli import _drift_inputs, _feedback_records
    from serve.db import Database

    monkeypatch.chdir(tmp_path)
    settings = Settings(database_url=f"sqlite:///file:{tmp_path}/paidan.db?mode=rwc&uri=true")
    db = Database(settings.resolved_database_url)
    db.add_feedback(text="t0", department="人社", suggestion={"decision": "auto"})
    db.dispose()
    assert [r["department"] for r in _feedback_records(settings, None)] == ["人社"]
    assert tmp_path / "paidan.db" in _drift_inputs(settings, tmp_path / "model")


@pytest.mark.parametrize(
    ("env", "args", "logged"),
    [
        pytest.param({}, [], True, id="default"),
        pytest.param({"PAIDAN_ACCESS_LOG": "false"}, [], False, id="env-off"),
        pytest.param({"PAIDAN_ACCESS_LOG": "false"}, ["--access-log"], True, id="option-wins"),
        pytest.param({"PAIDAN_ACCESS_LOG": "true"}, ["--no-access-log"], False, id="option-off"),
    ],
)
def test_serve_logs_requests_as_paidan_access_log_says_unless_the_option_is_given(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    args: list[str],
    logged: bool,
) -> None:
    # --access-log defaulted to True and overwrote PAIDAN_ACCESS_LOG=false: every request was
    # still logged.
    import shutil

    root = tmp_path / "root"
    shutil.copytree(tiny_model_dir, root / "v1")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("serve.server.run", lambda settings, model_dir, **k: calls.append(k))
    env = {**env, "PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path)}
    result = runner.invoke(app, ["serve", "--model", "v1", *args], env=env)
    assert result.exit_code == 0, result.output
    [call] = calls
    assert call["access_log"] is logged


def test_serve_help_describes_paidans_own_access_log() -> None:
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "PAIDAN_ACCESS_LOG" in text and "uvicorn" not in text


@pytest.mark.parametrize("chosen", [False, True])
def test_serve_pins_a_chosen_model_and_not_one_it_only_stops_polling_for(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chosen: bool
) -> None:
    # --model was carried to the server as follow_current=False, which also meant "pinned": a
    # server started with PAIDAN_FOLLOW_CURRENT=false was pinned to its start-up model too.
    import shutil

    from model.registry import set_current

    root = tmp_path / "root"
    shutil.copytree(tiny_model_dir, root / "v1")
    set_current(root, "v1")
    calls: list[Any] = []
    monkeypatch.setattr("serve.server.run", lambda settings, model_dir, **k: calls.append(settings))
    env = {
        "PAIDAN_MODEL_ROOT": str(root),
        "PAIDAN_DATA_DIR": str(tmp_path),
        "PAIDAN_FOLLOW_CURRENT": "false",
    }
    result = runner.invoke(app, ["serve", *(["--model", "v1"] if chosen else [])], env=env)
    assert result.exit_code == 0, result.output
    [settings] = calls
    assert settings.model_dir == (root / "v1" if chosen else None)
    assert settings.follow_current is False


@pytest.mark.parametrize(
    ("host", "workers", "code"),
    [
        ("127.0.0.1", "1", errno.EADDRINUSE),
        ("127.0.0.1", "2", errno.EADDRINUSE),
        ("192.0.2.1", "1", errno.EADDRNOTAVAIL),
    ],
    ids=["port-in-use", "port-in-use-2-workers", "not-an-address-here"],
)
def test_serve_says_in_one_line_which_address_it_cannot_listen_on_before_loading_the_model(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    workers: str,
    code: int,
) -> None:
    # With one worker uvicorn bound after the app's start-up (the model loaded, "Application
    # startup complete"), logged "[Errno -2] Name or service not known" or "address already in
    # use" without the address, and exited with 3; --workers 2 said it in one line, exit 2.
    # Then both printed "error: [Errno 98] cannot listen on …", not the README's line.
    import shutil
    import socket
    import tempfile

    from serve import server

    monkeypatch.delenv("PAIDAN_MODEL_DIR", raising=False)
    # The metrics directories of other servers killed in /tmp are none of this start's business
    # (their removal is logged): this one's temporary directory is the test's own.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = tmp_path / "root"
    shutil.copytree(tiny_model_dir, root / "v1")
    loads: list[Any] = []
    real = server.load_serving_router
    monkeypatch.setattr(
        server, "load_serving_router", lambda *a, **k: loads.append(a) or real(*a, **k)
    )
    env = {
        "PAIDAN_MODEL_ROOT": str(root),
        "PAIDAN_DATA_DIR": str(tmp_path),
        "PAIDAN_API_KEYS": "key-for-tests-0123456789",  # a host other than loopback needs keys
        "PAIDAN_RELOAD_INTERVAL": "0",
    }
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["serve", "--model", "v1", "--host", host, "--port", str(port)]
        result = runner.invoke(app, [*args, "--workers", workers], env=env)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert " ".join(result.output.split()) == (
        f"error: cannot listen on {host}:{port}: {os.strerror(code)}"
    )
    assert loads == []  # refused before the model was loaded
    # Nor is its --model left in the environment, pinning the next server started in-process.
    assert "PAIDAN_MODEL_DIR" not in os.environ


@pytest.mark.parametrize(
    ("value", "says"),
    [("a-file", "is not a directory"), ("", "is set but empty")],
    ids=["a-file", "empty"],
)
def test_a_prometheus_multiproc_dir_that_cannot_work_stops_startup_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("started"))
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    env = {"PROMETHEUS_MULTIPROC_DIR": value, "PAIDAN_MODEL_ROOT": str(tmp_path / "root")}
    result = runner.invoke(app, ["serve"], env=env)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: PROMETHEUS_MULTIPROC_DIR") and says in lines[0]
    assert not (tmp_path / "root").exists()  # refused before the default model was trained


def test_a_missing_prometheus_multiproc_dir_is_made_and_an_earlier_runs_files_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from serve.server import check_metrics_dir

    missing = tmp_path / "run" / "paidan-metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(missing))
    check_metrics_dir()
    assert missing.is_dir()
    assert not caplog.records
    # prometheus_client sums every file there: an earlier run's counts would be added to this one's.
    for name in ("counter_4242.db", "histogram_4242.db"):
        (missing / name).write_bytes(b"")
    check_metrics_dir()
    [record] = caplog.records
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert f"PROMETHEUS_MULTIPROC_DIR={missing} already holds 2 metric files" in message
    assert "counter_4242.db, histogram_4242.db" in message
    assert sorted(p.name for p in missing.iterdir()) == ["counter_4242.db", "histogram_4242.db"]


def test_the_deprecated_lower_case_prometheus_multiproc_dir_is_checked_as_the_upper_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # prometheus_client still reads `prometheus_multiproc_dir` (an older gunicorn set-up's, left in
    # the environment) and writes its files there; paidan looked at the upper-case name only. One
    # worker then stopped at its first metric with "error: [Errno 2] No such file or directory:
    # '…/gauge_livemax_PID.db'" (the directory missing), naming neither directory nor variable,
    # and an earlier run's files there were added to this one's without a word.
    from serve.metrics import MetricsDirError, multiproc_dir
    from serve.server import check_metrics_dir

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # recorded, so put back as found after
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    missing = tmp_path / "run" / "paidan-metrics"
    monkeypatch.setenv("prometheus_multiproc_dir", str(missing))
    check_metrics_dir()
    assert missing.is_dir()
    assert multiproc_dir() == missing  # so the app reads every process's files there
    (missing / "counter_4242.db").write_bytes(b"")
    check_metrics_dir()
    [record] = caplog.records
    assert f"prometheus_multiproc_dir={missing} already holds 1 metric files" in record.getMessage()
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    monkeypatch.setenv("prometheus_multiproc_dir", str(tmp_path / "a-file"))
    with pytest.raises(MetricsDirError, match=r"^prometheus_multiproc_dir=.* is not a directory$"):
        multiproc_dir()


def test_a_sighup_while_serve_starts_does_not_end_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    # SIGHUP, the reload signal, killed a server still loading its model (exit 129): the handlers
    # came only at the end of start-up. Here it arrives as the server starts (in a process of its
    # own: the default action would end pytest).
    import subprocess
    import sys

    script = (
        "import os, signal, sys\n"
        "import serve.server\n"
        "from paidan.cli import app\n"
        "def run(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGHUP)\n"
        "    print('still running')\n"
        "serve.server.run = run\n"
        "app(['serve', '--model', sys.argv[1]])\n"
    )
    env = {
        **os.environ,
        "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
        "PAIDAN_DATA_DIR": str(tmp_path / "var"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tiny_model_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "still running" in proc.stdout, (proc.returncode, proc.stderr[-2000:])
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("env", "args", "root_path"),
    [
        pytest.param({}, [], "", id="none"),
        pytest.param({}, ["--root-path", "/paidan/"], "/paidan", id="option"),
        pytest.param({"PAIDAN_ROOT_PATH": "paidan"}, [], "/paidan", id="setting"),
        pytest.param({"PAIDAN_ROOT_PATH": "/a"}, ["--root-path", "/b/c"], "/b/c", id="option-wins"),
        pytest.param({}, ["--root-path", "/派单/"], "/%E6%B4%BE%E5%8D%95", id="beyond-ascii"),
        pytest.param(
            {"PAIDAN_ROOT_PATH": "/%e6%b4%be%e5%8d%95"}, [], "/%E6%B4%BE%E5%8D%95", id="encoded"
        ),
    ],
)
def test_serve_takes_the_proxys_sub_path(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    args: list[str],
    root_path: str,
) -> None:
    # Behind a proxy under https://gw/paidan/ there was no way to tell `paidan serve` its prefix
    # (/docs then fetched /openapi.json outside it).
    import shutil

    root = tmp_path / "root"
    shutil.copytree(tiny_model_dir, root / "v1")
    calls: list[Settings] = []
    monkeypatch.setattr("serve.server.run", lambda settings, model_dir, **k: calls.append(settings))
    env = {**env, "PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path)}
    result = runner.invoke(app, ["serve", "--model", "v1", *args], env=env)
    assert result.exit_code == 0, result.output
    assert [s.root_path for s in calls] == [root_path]


def test_serve_refuses_a_root_path_that_is_not_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models")}
    result = runner.invoke(app, ["serve", "--root-path", "https://gw/paidan"], env=env)
    assert result.exit_code == 2
    output = " ".join(result.output.replace("│", " ").split())
    assert "--root-path" in output and "e.g. /paidan" in output, output
    for value in ("/pai dan", "/a%2Fb", "/%70aidan", "/%E6%B4"):
        # %2F: one segment to the proxy, two once uvicorn has decoded the path
        monkeypatch.setenv("PAIDAN_ROOT_PATH", value)
        with pytest.raises(SettingsError, match=r"PAIDAN_ROOT_PATH: .*e\.g\. /paidan"):
            load_settings()


def test_the_server_hands_uvicorn_the_root_path_and_the_header_limit(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serve import server
    from serve.protocol import CLIENT_TIMEOUT_S, HeaderLimitedProtocol

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "_serve_one", lambda *a, **k: seen.append(a[3]))
    settings = Settings(
        model_root=tiny_model_dir.parent,
        data_dir=tmp_path,
        root_path="/paidan",
        max_header_bytes=8192,
    )
    server.run(settings, tiny_model_dir, port=0)
    [options] = seen
    assert options["root_path"] == "/paidan"
    protocol = options["http"]
    assert protocol.func is HeaderLimitedProtocol
    assert protocol.keywords == {"max_header_bytes": 8192, "client_timeout": CLIENT_TIMEOUT_S}


def test_the_start_up_warning_about_a_database_that_is_down_says_it_is_tried_again_once(
    make_settings: Any, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # It said "routing will work, feedback will not", which read as permanent, while the app
    # retries in the background and feedback works once the database is up, without a restart.
    # `paidan serve` then logged a second warning for the same failure, from the app's start-up,
    # in the old words ("routing still works"): the operator read two failures.
    from serve.server import prepare_database

    url = "postgresql+psycopg://u:p@127.0.0.1:1/none?connect_timeout=1"
    with caplog.at_level("WARNING"):
        assert prepare_database(make_settings(database_url=url)) is not None
        make_client(database_url=url)  # the app paidan serve starts next
    said = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(said) == 1, said
    assert "feedback will not" not in said[0] and "still works" not in said[0]
    assert "tried again every 5 s" in said[0] and "no restart needed" in said[0]


def test_db_downgrade_takes_the_database_back_and_says_what_it_removed(tmp_path: Path) -> None:
    env = {"PAIDAN_DATA_DIR": str(tmp_path)}
    missing = runner.invoke(app, ["db", "current"], env=env)
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert not (tmp_path / "paidan.db").exists()  # not created just to be looked at
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    current = runner.invoke(app, ["db", "current"], env=env)
    assert current.exit_code == 0 and "at schema revision 0003, the latest" in current.output
    result = runner.invoke(app, ["db", "downgrade", "0001"], env=env)
    assert result.exit_code == 0, result.output
    assert "went back from schema revision 0003 to 0001, rows kept" in result.output
    assert "the request_id column and its values (revision 0002)" in result.output
    with sqlite3.connect(tmp_path / "paidan.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
    current = runner.invoke(app, ["db", "current"], env=env)
    assert "at schema revision 0001; the latest is 0003" in current.output
    again = runner.invoke(app, ["db", "downgrade", "0001"], env=env)
    assert again.exit_code == 0 and "already: nothing done" in again.output
    # Back up: said as done. It said "is at the latest schema revision", as for nothing done.
    up = runner.invoke(app, ["db", "upgrade"], env=env)
    assert up.exit_code == 0 and "from schema revision 0001 to 0003" in up.output, up.output
    runner.invoke(app, ["db", "downgrade", "0001"], env=env)
    for revision, said in (("0002", "below 0002"), ("0007", "no schema revision '0007'")):
        refused = runner.invoke(app, ["db", "downgrade", revision], env=env)
        lines = [line for line in refused.output.splitlines() if line.strip()]
        assert refused.exit_code == 2 and len(lines) == 1 and said in lines[0], refused.output
        assert lines[0].startswith("error: ")


def test_db_downgrade_refuses_in_one_line_a_joint_dispatch_the_old_column_cannot_hold(
    tmp_path: Path,
) -> None:
    # Revision 0003 widened the department column for joint dispatches; going back below it
    # would cut a long one, losing co-departments, so it is refused naming the row.
    env = {"PAIDAN_DATA_DIR": str(tmp_path)}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    long_joint = "；".join(f"市第{n}部门办公室" for n in range(12))
    with sqlite3.connect(tmp_path / "paidan.db") as conn:
        conn.execute(
            "INSERT INTO feedback (text, department, created_at) VALUES (?, ?, ?)",
            ("某投诉", long_joint, "2026-12-07 00:00:00"),
        )
    refused = runner.invoke(app, ["db", "downgrade", "0002"], env=env)
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert refused.exit_code == 2 and len(lines) == 1, refused.output
    assert lines[0].startswith("error: 1 feedback row (id 1) names a department longer than 100")
    assert lines[0].endswith("nothing was changed"), lines[0]
    with sqlite3.connect(tmp_path / "paidan.db") as conn:
        assert conn.execute("SELECT department FROM feedback").fetchall() == [(long_joint,)]
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]


def test_the_db_commands_say_in_one_line_that_the_database_cannot_be_reached() -> None:
    # `paidan db downgrade`, the README's rollback step, ended in a 146-line traceback (exit 1) on
    # a PostgreSQL that does not answer, refuses the password or has no such database, where
    # `db upgrade` and `db current` said it in one line.
    url = "postgresql+psycopg://paidan:s3cret@127.0.0.1:1/paidan?connect_timeout=1"
    for command, doing in (
        (["db", "upgrade"], "migrate"),
        (["db", "current"], "read"),
        (["db", "downgrade", "0001"], "downgrade"),
    ):
        result = runner.invoke(app, command, env={"PAIDAN_DATABASE_URL": url})
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, (command, result.output)
        assert lines[0].startswith(
            f"error: cannot {doing} postgresql+psycopg://paidan:***@127.0.0.1:1/paidan"
            "?connect_timeout=1: OperationalError: connection failed"
        ), lines[0]
        assert "s3cret" not in result.output


def test_serves_logging_set_up_made_in_a_test_is_undone_for_the_next(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What tests/conftest.py does after every test: `paidan serve` run in-process leaves handlers
    # on a stderr CliRunner closes, and a later test's refused-reload line failed on it.
    import io
    import logging
    import logging.config
    from contextlib import redirect_stderr

    from serve.server import log_config
    from tests.conftest import kept_loggers

    before = {name: list(logging.getLogger(name).handlers) for name in ("", "serve")}
    stream = io.StringIO()
    with kept_loggers():
        with redirect_stderr(stream):
            logging.config.dictConfig(log_config("info"))
        logging.getLogger("serve.reload").error("model reload refused (v3)")
        assert "model reload refused (v3)" in stream.getvalue()  # the set-up took
        stream.close()
    assert {name: logging.getLogger(name).handlers for name in before} == before
    logging.getLogger("serve.reload").error("model reload refused (v4)")
    assert "Logging error" not in capsys.readouterr().err


@pytest.fixture
def shanghai_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone 8 hours from UTC, as a city's server often keeps it."""
    import time

    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_log_lines_begin_with_the_utc_time_and_under_workers_the_pid(
    shanghai_time: None, workers: int
) -> None:
    # uvicorn's "LEVEL:    message": a `model reload refused` ERROR in a nohup or >> log could not
    # be placed in time, nor, under --workers N, a failing worker told from the others.
    import logging
    import pydoc
    from datetime import UTC, datetime

    from serve.server import log_config

    config = log_config("info", workers)

    def formatter(name: str) -> logging.Formatter:
        entry = dict(config["formatters"][name])
        factory = pydoc.locate(entry.pop("()"))
        assert callable(factory)
        made = factory(**{**entry, "use_colors": False})
        assert isinstance(made, logging.Formatter)
        return made

    def line(name: str, logger: str, level: int, msg: str, *args: Any) -> str:
        record = logging.LogRecord(logger, level, __file__, 1, msg, args or None, None)
        record.created = datetime(2026, 12, 5, 2, 30, 14, tzinfo=UTC).timestamp()
        record.process = 4321
        return formatter(name).format(record)

    start = "2026-12-05T02:30:14Z " + ("[4321] " if workers > 1 else "")  # as train's lines
    # The app's loggers (the access log among them) and uvicorn's write through "default".
    for logger in ("serve", "model", "uvicorn"):
        assert config["loggers"][logger]["handlers"] == ["default"]
    assert config["handlers"]["default"]["formatter"] == "default"
    said = line("default", "serve.reload", logging.ERROR, "model reload refused (%s)", "v3")
    assert said == start + "ERROR:    model reload refused (v3)"
    access = line("default", "serve.access", logging.INFO, '%s - "%s"', "127.0.0.1:5", "GET /")
    assert access == start + 'INFO:     127.0.0.1:5 - "GET /"'
    # uvicorn's own access log (paidan serve turns it off) and other libraries' lines alike.
    uvicorn_access = line(
        "access",
        "uvicorn.access",
        logging.INFO,
        "%s %s %s %s %d",
        "1.2.3.4:5",
        "GET",
        "/",
        "1.1",
        200,
    )
    assert uvicorn_access.startswith(start + "INFO:     1.2.3.4:5 - ")
    assert config["root"] == {"handlers": ["named"]}  # no level: --verbose keeps its own
    assert config["handlers"]["named"]["formatter"] == "named"
    other = line("named", "sqlalchemy.pool", logging.WARNING, "pool reset failed")
    assert other == start + "WARNING:  sqlalchemy.pool: pool reset failed"


@pytest.mark.parametrize("workers", [1, 2])
def test_the_start_up_lines_are_dated_as_the_servers_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    # README ("Logs"): every line paidan serve logs begins with its UTC time, under --workers N
    # with the pid. "serving MODEL on http://…" and the bundled sample's note, which the CLI
    # printed itself, were the only lines without them.
    import re

    monkeypatch.setattr("paidan.cli.ensure_model", lambda settings, model, **_: tmp_path)
    monkeypatch.setattr(
        "paidan.cli.sample_default_note", lambda model_dir, root: "note: model x is the sample"
    )
    monkeypatch.setattr("serve.server.run", lambda *a, announce, **k: announce())
    started = runner.invoke(
        app,
        ["serve", "--workers", str(workers), "--port", "8123"],
        env={"PAIDAN_MODEL_ROOT": str(tmp_path), "PAIDAN_DATA_DIR": str(tmp_path / "var")},
    )
    assert started.exit_code == 0, started.output
    pid = f"\\[{os.getpid()}\\] " if workers > 1 else ""
    dated = re.compile(rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ {pid}INFO: +(.*)$")
    lines = [line for line in started.output.splitlines() if line.strip()]
    said = [m.group(1) if (m := dated.match(line)) else line for line in lines]
    assert [m is not None for m in map(dated.match, lines)] == [True, True], lines
    assert said[0].startswith(f"serving {tmp_path} on http://127.0.0.1:8123 (feedback: "), said
    assert said[1] == "note: model x is the sample", said


def test_an_earlier_runs_behind_current_is_dropped_at_start_and_a_running_servers_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that said `paidan_model_behind_current 1` and then stopped (a single worker never
    # drops its value; kill -9 or the OOM killer leaves any worker's) left its file in a
    # PROMETHEUS_MULTIPROC_DIR that is set: after a restart that serves `current` again, /readyz
    # said ready while /metrics said 1, the largest of the files' values, until the directory was
    # emptied by hand, and the alert on it never cleared.
    import subprocess
    import sys

    from serve import metrics
    from serve.server import check_metrics_dir

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(metrics_dir))
    code = (
        "import os, sys; from serve.metrics import Metrics; "
        "m = Metrics(); m.behind_current.set(1); m.decisions.labels('review').inc(); "
        "print(os.getpid(), flush=True); sys.stdin.read()"
    )
    env = {**os.environ, metrics.MULTIPROC_ENV: str(metrics_dir)}

    def behind() -> bool:
        return f"{metrics.BEHIND_CURRENT} 1.0" in metrics.Metrics().exposition()[0].decode()

    def server_behind() -> subprocess.Popen[str]:
        """A process that says it is behind and runs until its standard input is closed."""
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == str(proc.pid)
        return proc

    earlier = server_behind()
    assert earlier.stdin is not None
    earlier.stdin.close()
    earlier.wait(timeout=60)
    assert behind()
    check_metrics_dir()
    assert not behind()
    # Its counts are kept, as prometheus_client sums them (reported, not removed).
    reviewed = 'paidan_route_decisions_total{decision="review"} 1.0'
    assert reviewed in metrics.Metrics().exposition()[0].decode()
    # Another server still running on the directory keeps its value.
    running = server_behind()
    try:
        check_metrics_dir()
        assert behind()
    finally:
        assert running.stdin is not None
        running.stdin.close()
        running.wait(timeout=60)


# A real `paidan serve` start-up, in a process of its own (it sets up logging, and a multiprocess
# metrics directory is read at import), up to the serving loop: the bundled sample is the tiny
# corpus, and uvicorn's Server.run returns as started.
REAL_START = """
import sys
from pathlib import Path

import uvicorn

import model.resources
from paidan.cli import app

model.resources.sample_path = lambda: Path(sys.argv[1])


def started(self, sockets=None):
    self.started = True


uvicorn.Server.run = started
app(sys.argv[2:], prog_name="paidan")
"""


def test_every_line_a_start_up_writes_is_dated_before_uvicorn_sets_up_its_log_too(
    tmp_path: Path,
) -> None:
    # docs/operations.md ("Logs"): every line paidan serve logs begins with its UTC time. Those
    # written before uvicorn set up its log were the console's, undated: "no model under …:
    # training the default…" (on stdout), "warning: PROMETHEUS_MULTIPROC_DIR=… already holds…",
    # "warning: cannot create the directory of the SQLite database" (now said by the app's
    # start-up only, which is dated too: see the test below), and --verbose's alembic lines.
    import re
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    sample = write_tiny_csv(tmp_path / "s.csv")
    stale = tmp_path / "metrics"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"")  # an earlier run's
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "PAIDAN_MODEL_ROOT": str(tmp_path / "models"),
        "PAIDAN_DATA_DIR": str(tmp_path / "a-file" / "var"),  # no directory can be made there
        "PROMETHEUS_MULTIPROC_DIR": str(stale),
        "TZ": "Asia/Shanghai",
    }
    dated = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR): +(.*)$")

    def start(*args: str, **settings: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", REAL_START, str(sample), *args, "--port", free_port()],
            env={**env, **settings},
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""  # the log is stderr, as docs/operations.md says
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert [line for line in lines if not dated.match(line)] == [], lines
        return [m.group(2) for line in lines if (m := dated.match(line))]

    said = start("serve")
    assert any(s.startswith("no model under ") and "training the default model" in s for s in said)
    assert any(s.startswith("trained model ") for s in said), said
    assert any(f"PROMETHEUS_MULTIPROC_DIR={stale} already holds 1 metric files" in s for s in said)
    assert any(s.startswith("serving ") for s in said), said
    # --verbose: alembic's lines, as the database is migrated before uvicorn starts.
    verbose = start("--verbose", "serve", PAIDAN_DATA_DIR=str(tmp_path / "var"))
    assert any(s.startswith("alembic.runtime.migration: Running upgrade") for s in verbose), verbose


def test_a_start_up_says_once_that_the_sqlite_directory_cannot_be_made(tmp_path: Path) -> None:
    # The database prepared before the app's start-up and the app's own start-up each said it:
    # two warnings for one start, which read as two failures. The app's start-up (its lifespan)
    # runs here, which REAL_START's stub leaves out.
    import re
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    script = REAL_START.replace(
        "    self.started = True",
        "    from fastapi.testclient import TestClient\n\n"
        "    with TestClient(self.config.app):  # the lifespan, as uvicorn runs it\n"
        "        pass\n"
        "    self.started = True",
    )
    assert script != REAL_START
    unmakeable = Path("/proc/paidan-no-such-directory")  # /proc refuses even root
    sample = write_tiny_csv(tmp_path / "s.csv")
    done = subprocess.run(
        [sys.executable, "-c", script, str(sample), "serve", "--port", free_port()],
        env={
            **os.environ,
            "PYTHONPATH": str(repo),
            "PAIDAN_MODEL_ROOT": str(tmp_path / "models"),
            "PAIDAN_DATABASE_URL": f"sqlite:///{unmakeable / 'paidan.db'}",
        },
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    said = done.stderr.splitlines()
    assert any("feedback database unavailable" in line for line in said), said  # lifespan ran
    warned = [line for line in said if "cannot create the directory of the SQLite database" in line]
    assert len(warned) == 1, said
    assert str(unmakeable) in warned[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ WARNING: ", warned[0]), warned


def test_the_supervisor_of_workers_does_not_import_the_tokenizer_they_load(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The supervisor serves nothing, but its check of the model imported the model's tokenizer:
    # rjieba builds jieba's whole dictionary as it is imported (32 MiB of the supervisor's
    # 155 MiB), which each worker builds again for itself; and the command line's imports brought
    # numpy and SciPy (through the router) and joblib, 35 MiB more.
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import serve.workers\n"
        "from paidan.cli import app\n"
        "def run(self):\n"
        "    heavy = ('rjieba', 'jieba', 'sklearn', 'numpy', 'scipy', 'joblib', 'pandas')\n"
        "    print('imported:', *[m for m in heavy if m in sys.modules])\n"
        "serve.workers.Supervisor.run = run\n"
        "app(['serve', '--workers', '2', '--port', sys.argv[2], '--model', sys.argv[1]])\n"
    )
    env = {
        **os.environ,
        "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
        "PAIDAN_DATA_DIR": str(tmp_path / "var"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tiny_model_dir), free_port()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "imported:" in proc.stdout, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split("imported:")[1].split() == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--workers", "two"], "Invalid value for '--workers': is 'two'; must be a whole number"),
        (["--workers", "0"], "Invalid value for '--workers': is 0; must be at least 1"),
        (["--port", "80a"], "Invalid value for '--port': is '80a'; must be a whole number"),
        (["--port", "70000"], "Invalid value for '--port': is 70000; must be at most 65,535"),
    ],
)
def test_an_option_of_another_type_or_out_of_its_bounds_says_what_was_given(
    monkeypatch: pytest.MonkeyPatch, args: list[str], said: str
) -> None:
    # "Invalid value for '--port': Input should be a valid integer, unable to parse string as an
    # integer" said neither what was given nor in paidan's words what is allowed, as the same
    # mistake in a PAIDAN_* setting says it.
    monkeypatch.setattr("serve.server.run", lambda *a, **k: pytest.fail("started"))
    result = runner.invoke(app, ["serve", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.replace("│", " ").split()), result.output
