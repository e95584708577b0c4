"""What ``paidan … --help`` and the global options say and accept, against README."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from rich.cells import cell_len
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


def help_text(words: list[str]) -> str:
    r = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return " ".join(r.output.replace("│", " ").split())


# Which settings each command reads: the model root, the feedback database, or both.
USES_ROOT = {"train", "evaluate", "predict", "label", "serve", "retrain", "drift", "models"}
USES_FEEDBACK = {"serve", "retrain", "drift", "db"}


@pytest.mark.parametrize("words", [[], *leaf_commands()], ids=lambda w: " ".join(w) or "paidan")
def test_help_names_the_model_root_and_the_feedback_database_a_command_uses(
    words: list[str],
) -> None:
    # No help page named PAIDAN_MODEL_ROOT, PAIDAN_DATA_DIR or PAIDAN_DATABASE_URL: a cron job run
    # from another directory silently read ./models and ./var/paidan.db.
    from model.settings import Settings

    said = help_text(words)
    first = words[0] if words else None
    if first is None or first in USES_ROOT:
        root = Settings.model_fields["model_root"].default
        assert f"PAIDAN_MODEL_ROOT, default ./{root}, relative to the working directory" in said
    if first is None or first in USES_FEEDBACK:
        data = Settings.model_fields["data_dir"].default
        assert "PAIDAN_DATABASE_URL, default SQLite at PAIDAN_DATA_DIR/paidan.db" in said
        assert f"PAIDAN_DATA_DIR default ./{data}" in said


def test_label_help_names_the_files_it_writes_beside_the_output() -> None:
    said = help_text(["label"])
    for name in ("summary.json", "departments.png", "confidence.png", "parts/"):
        assert f"OUTPUT.{name}" in said


def test_evaluate_help_says_that_without_report_nothing_is_written() -> None:
    assert "Without --report nothing is written." in help_text(["evaluate"])


@pytest.mark.parametrize("words", [["retrain"], ["models", "promote"]])
def test_promotion_rule_help_says_within_noise_is_promoted(words: list[str]) -> None:
    # 4e78ad6 promotes a challenger within noise on every head; the option's help still asked
    # for "one is better", the rule fix-promote had and took back.
    said = help_text(words)
    assert "one is better" not in said
    assert "within noise on every head is promoted" in said


def test_each_command_is_summed_up_on_its_own_row_of_the_command_list() -> None:
    # `paidan --help` listed evaluate as "… write the report with --report   ..." on a wide
    # terminal, and with "(without it nothing is written)." on a row of its own under it on an
    # 80-column one: the first paragraph of its docstring ran over two lines.
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    group = typer.main.get_command(app)
    for name, cmd in getattr(group, "commands", {}).items():
        summary = " ".join((cmd.help or "").split("\n\n")[0].split())
        rows = [line for line in r.output.splitlines() if f" {name} " in line]
        assert any(summary.rstrip(".") in " ".join(line.split()) for line in rows), (name, rows)


@pytest.mark.parametrize("words", leaf_commands(), ids=" ".join)
def test_an_option_given_once_per_file_says_to_repeat_it(words: list[str]) -> None:
    # `paidan train tickets.csv --unlabelled a.csv b.csv` (training.md wrote `--unlabelled FILE…`)
    # trained on b.csv as labelled tickets without labels: an option takes one file, and its help
    # did not say to repeat it, as the help of --remits and --rules does.
    command = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]  # type: ignore[attr-defined]
    for param in command.params:
        if getattr(param, "multiple", False):
            assert "repeat" in (getattr(param, "help", "") or "").lower(), (words, param.name)


def test_the_rules_help_names_every_column_of_a_rules_file() -> None:
    # train --help listed keywords … decision and note, but not new_label, which a rules file
    # may hold (a department newer than the history) and a refused row's message names.
    from training.rules import RULE_COLUMNS

    said = help_text(["train"])
    assert [c for c in RULE_COLUMNS if c not in said] == []


@pytest.mark.parametrize("words", [["evaluate"], ["models", "freeze-eval"]], ids=" ".join)
def test_every_command_reading_tickets_says_it_reads_directories(words: list[str]) -> None:
    # evaluate and freeze-eval read a directory of parts as train does, but their help said
    # "Labelled ticket files" alone, where train's names the formats and directories.
    said = help_text(words)
    assert "(CSV, XLSX, JSONL, JSON, Parquet) or directories" in said


@pytest.mark.parametrize("words", leaf_commands(), ids=" ".join)
def test_verbose_mentions_the_dask_engine_only_where_there_is_one(words: list[str]) -> None:
    # Every command's --verbose said "with --engine dask Dask's INFO log", label's alone has one.
    command: object = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]  # type: ignore[attr-defined]
    engine = any(p.name == "engine" for p in command.params)  # type: ignore[attr-defined]
    r = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert ("--engine" in r.output) == engine
    assert ("Dask's INFO log" in r.output) == engine


def test_serve_model_help_says_what_current_does() -> None:
    # It ended "…, followed; so is current", which read as nothing.
    r = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.replace("│", " ").split())
    assert "so is current" not in text
    assert "--model current follows it too" in text


def command_groups() -> list[list[str]]:
    """The words of ``paidan`` and of each of its groups: ``[]``, ``["db"]``, ``["models"]`` …"""
    groups = [[]]
    for words in leaf_commands():
        if len(words) > 1 and words[:-1] not in groups:
            groups.append(words[:-1])
    return groups


@pytest.mark.parametrize("words", command_groups(), ids=lambda w: " ".join(["paidan", *w]))
def test_each_command_of_a_group_is_summed_up_in_one_row(words: list[str]) -> None:
    # Typer lists a command by its docstring's first paragraph, line breaks kept: `paidan db
    # --help` broke downgrade's summary after "before starting an earlier", however wide the
    # terminal.
    r = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    panel = r.output.split("─ Commands ─", 1)[1].split("╰", 1)[0]
    rows = [line.strip("│ \n") for line in panel.splitlines()[1:] if line.strip("│ \n")]
    group: object = typer.main.get_command(app)
    for word in words:
        group = group.commands[word]  # type: ignore[attr-defined]
    names = set(group.commands)  # type: ignore[attr-defined]
    assert rows and all(row.split()[0] in names for row in rows), rows


def option_names(words: list[str]) -> list[str]:
    """Every name of every option ``paidan WORDS --help`` lists, read from click's command."""
    command = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]  # type: ignore[attr-defined]
    params = command.get_params(command.context_class(command))  # --help is added here
    return [
        name
        for param in params
        if not getattr(param, "hidden", False)
        for name in (*param.opts, *param.secondary_opts)
    ]


def whole(name: str) -> re.Pattern[str]:
    """*name* as a word of its own: not the start of "--feedback-sin…" nor part of a longer name."""
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize(
    "words", [*command_groups(), *leaf_commands()], ids=lambda w: " ".join(["paidan", *w])
)
def test_every_option_name_is_whole_on_a_narrow_terminal(words: list[str], columns: int) -> None:
    # Admins run paidan over SSH in 80 columns: Rich's option table cut the names to fit
    # (`--feedback-sin…`, `--promote-if-b…`, `--no-promote-i…`), a name no one could type.
    # COLUMNS sizes Rich's console; click's plain help is sized by the terminal, which CliRunner
    # pins at 80 unless told.
    env = {"COLUMNS": str(columns)}
    r = runner.invoke(app, [*words, "--help"], env=env, terminal_width=columns)
    assert r.exit_code == 0, r.output
    names = option_names(words)
    assert "--help" in names
    assert [n for n in names if not whole(n).search(r.output)] == []
    assert re.findall(r"(?<![\w-])--?[\w-]*…", r.output) == []  # nor one cut where help names it
    # In terminal cells: a Chinese character takes two (住房公积金 is 10 cells, 5 characters).
    assert max(cell_len(line) for line in r.output.splitlines()) <= columns


@pytest.mark.parametrize(
    "words", [*command_groups(), *leaf_commands()], ids=lambda w: " ".join(["paidan", *w])
)
def test_a_wide_terminal_keeps_the_rich_option_panel(words: list[str]) -> None:
    # The narrow terminal's plain help must not take over where Rich's table has room: at 120
    # columns every command's help is still Typer's panels.
    r = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert "─ Options ─" in r.output
