"""The ``paidan`` command line: parses options and calls plain functions in ``training`` and ``serve``.

This is the only module that sees both :mod:`training` and :mod:`serve`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import re
import shlex
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from model.artifact import (
    METADATA_FILE,
    ModelLoadError,
    ModelWriteError,
    OutputPathError,
    check_name_lengths,
    check_not_directory_name,
    check_not_in_model_dir,
    check_not_input,
    check_utf8_name,
    check_writable,
    load_router,
)
from model.config import (
    HEADS,
    MAX_TOP_K,
    MIN_LABEL_ROWS,
    OTHER_LABEL,
    UNLABELLED_MAX_ROWS,
    TrainingConfig,
)
from model.settings import (
    Settings,
    SettingsError,
    check_unknown_variables,
    given_problem,
    load_settings,
    unknown_variables,
)
from model.text import Script, counted, mask_label, quoted
from model.tickets import (
    LABELS,
    ColumnMap,
    TicketFileError,
    as_utc,
    like_hint,
    parse_delimiter,
    printable,
)
from model.tokenizer import Backend, BackendMissingError, ResourceFileError, WordCut

if TYPE_CHECKING:
    from model.registry import VersionInfo
from training.validate import TrainingDataError, ValidationReport

logger = logging.getLogger(__name__)

# Where the commands find the registry and the feedback database: no help page said so, and a cron
# job run from another directory silently used ./models and ./var/paidan.db. Built from the
# settings' defaults, so it cannot drift from them.
_SETTINGS = Settings.model_fields
ROOT_EPILOG = (
    f"The model root (the registry: versions, current, frozen set, reports) is PAIDAN_MODEL_ROOT, "
    f"default ./{_SETTINGS['model_root'].default}, relative to the working directory."
)
FEEDBACK_EPILOG = (
    "Feedback is stored in PAIDAN_DATABASE_URL, default SQLite at PAIDAN_DATA_DIR/paidan.db "
    f"(PAIDAN_DATA_DIR default ./{_SETTINGS['data_dir'].default}, relative to the working "
    "directory)."
)
BOTH_EPILOG = f"{ROOT_EPILOG}\n\n{FEEDBACK_EPILOG}"


def _whole(name: str) -> re.Pattern[str]:
    """*name* as a word of its own: neither ``--feedback-sin…`` nor part of ``--no-force``."""
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")


HelpFormat = Callable[[Any, Any], None]  # (click context, click help formatter)


def _format_help_whole(
    command: Any, ctx: Any, formatter: Any, rich: HelpFormat, plain: HelpFormat
) -> None:
    """``--help`` as Typer's Rich panels where they have room, else click's plain help.

    Typer puts an option's name, its ``--no-`` name, type and help side by side, and Rich cuts
    every column to fit the terminal: at 80 columns ``retrain --help`` listed ``--feedback-sin…``
    and ``--no-promote-i…``; train's names need 114. No Typer or Rich setting lets the name columns
    keep their width, so the Rich help is rendered first into a buffer: if every option name is
    there whole, as often as in the plain help, it is printed; if not, click's plain help is,
    which writes a long name on a line of its own and its help under it, never cutting it.
    """
    probe = io.StringIO()
    with contextlib.redirect_stdout(probe):  # Typer's Rich console writes to sys.stdout
        rich(ctx, formatter)
    wide = type(formatter)(width=sys.maxsize, max_width=sys.maxsize)
    plain(ctx, wide)
    names = [
        name
        for param in command.get_params(ctx)
        if not getattr(param, "hidden", False)
        for name in (*param.opts, *param.secondary_opts)
    ]
    fits = all(
        len(_whole(n).findall(probe.getvalue())) >= len(_whole(n).findall(wide.getvalue()))
        for n in names
    )
    if fits:
        rich(ctx, formatter)
        return
    with _wrapped_in_cells(formatter):
        plain(ctx, formatter)


def _cell_wrapper(base: type[textwrap.TextWrapper]) -> type[textwrap.TextWrapper]:
    """click's text wrapper ``base``, measuring in terminal cells as Rich does, not characters:
    a Chinese character takes two, and at 80 columns the plain help's lines that named 住房公积金
    or 分类目录 ran a few cells past the edge, the terminal folding them."""

    class CellWrapper(base):  # type: ignore[valid-type, misc]
        def _wrap_chunks(self, chunks: list[str]) -> list[str]:
            # textwrap's own, with cell_len for len (click sets neither max_lines nor a
            # placeholder).
            lines: list[str] = []
            chunks.reverse()
            while chunks:
                line: list[str] = []
                used = 0
                indent = self.subsequent_indent if lines else self.initial_indent
                width = self.width - cell_len(indent)
                if self.drop_whitespace and lines and not chunks[-1].strip():
                    del chunks[-1]
                while chunks and used + cell_len(chunks[-1]) <= width:
                    used += cell_len(chunks[-1])
                    line.append(chunks.pop())
                if chunks and cell_len(chunks[-1]) > width:
                    self._handle_long_word(chunks, line, used, width)
                if self.drop_whitespace and line and not line[-1].strip():
                    del line[-1]
                if line:
                    lines.append(indent + "".join(line))
            return lines

        def _handle_long_word(
            self, reversed_chunks: list[str], cur_line: list[str], cur_len: int, width: int
        ) -> None:
            word, room, cut = reversed_chunks[-1], max(width - cur_len, 1), 0
            # As many characters as fit; one at least on an empty line, or it never would.
            while cut < len(word) and (
                cell_len(word[: cut + 1]) <= room or (cut == 0 and not cur_line)
            ):
                cut += 1
            cur_line.append(word[:cut])
            reversed_chunks[-1] = word[cut:]

    return CellWrapper


@contextlib.contextmanager
def _wrapped_in_cells(formatter: Any) -> Iterator[None]:
    """While click's plain help is written, its text wrapper counts terminal cells
    (:func:`_cell_wrapper`). click's ``wrap_text`` makes its wrapper from the ``_textwrap``
    module beside the formatter's, named when called, and offers no other way in."""
    package = type(formatter).__module__.rpartition(".")[0]
    try:
        module: Any = importlib.import_module(f"{package}._textwrap")
        base = module.TextWrapper
    except (ImportError, AttributeError):  # another click: its help, unchanged
        yield
        return
    module.TextWrapper = _cell_wrapper(base)
    try:
        yield
    finally:
        module.TextWrapper = base


class OptionWords:
    """An option's value that Typer refuses is said as a setting's is: "Invalid value for
    '--port': is '80a'; must be a whole number", not pydantic's "Input should be a valid
    integer, unable to parse string as an integer", which did not say what was given."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc]
        except typer.BadParameter as e:
            cause = e.__cause__
            if isinstance(cause, ValidationError) and cause.errors():
                e.message = given_problem(cause.errors()[0])
            raise


class WholeNamesCommand(OptionWords, typer.core.TyperCommand):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        plain = super(typer.core.TyperCommand, self).format_help  # click's, without Rich
        _format_help_whole(self, ctx, formatter, super().format_help, plain)


class WholeNamesGroup(OptionWords, typer.core.TyperGroup):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        plain = super(typer.core.TyperGroup, self).format_help  # click's, without Rich
        _format_help_whole(self, ctx, formatter, super().format_help, plain)


class Typer(typer.Typer):
    """A ``typer.Typer`` whose commands and groups keep option names whole in ``--help``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", WholeNamesGroup)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", WholeNamesCommand)
        return super().command(*args, **kwargs)


app = Typer(
    name="paidan",
    help="派单: route citizen complaints to the responsible department and a category.",
    epilog=f"{BOTH_EPILOG}\n\nRun the commands (cron jobs too) with the server's settings: "
    "the same environment, or the same working directory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


class StdoutConsole(Console):
    """stdout, whose reader may go away (``paidan label … | head -1``): the rest is not printed,
    the command finishes (its warnings on stderr said), and :func:`paidan.main` exits 141,
    128 + SIGPIPE, as a Unix tool killed by SIGPIPE does. rich's default exited 1 at once, with
    nothing said and the stderr lines after the summary lost."""

    closed = False
    # Writing failed otherwise (a full disk: ENOSPC, a terminal gone: EIO): the command finishes
    # as for a reader gone, and :func:`paidan.main` says this in one line and exits 1. It ended
    # in a 30-line traceback from inside rich, and label's warnings after its summary were lost.
    failed: OSError | None = None

    def on_broken_pipe(self) -> None:
        self.quiet = True
        self.closed = True
        # What is left in stdout's buffer is flushed at exit: into the null device, or it
        # printed "Exception ignored … BrokenPipeError".
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)

    def on_write_error(self, error: OSError) -> None:
        if self.failed is None:
            self.failed = error
        self.on_broken_pipe()

    def _check_buffer(self) -> None:
        try:
            super()._check_buffer()  # BrokenPipeError: on_broken_pipe
        except OSError as e:
            del self._buffer[:]
            self.on_write_error(e)


def write_json(value: Any) -> None:
    """Write ``value`` to stdout as indented JSON: Chinese as is where stdout can encode it; where
    it cannot (a GBK stdout and a label holding 㮾, a title holding an emoji), every character
    beyond ASCII as a ``\\uXXXX`` escape, the same JSON to a parser. Written as is, it ended in a
    UnicodeEncodeError traceback, with nothing printed."""
    text = json.dumps(value, ensure_ascii=False, indent=2) + "\n"
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(value, ensure_ascii=True, indent=2) + "\n"
    write_stdout(text)


def write_stdout(text: str) -> None:
    """Write ``text`` (JSON) to stdout as is; a reader gone is taken as :data:`out` takes it."""
    if out.closed:
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        out.on_broken_pipe()
    except OSError as e:
        out.on_write_error(e)


# Output that is not a terminal (a pipe, a log, cron's mail) is not cut at rich's default of 80
# columns, where a table's version or figures came out as "2026…" and "1.0…". COLUMNS still decides.
out = StdoutConsole(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)

# Errors a user can fix: printed as one line, exit code 2, no traceback.
USER_ERRORS = (
    TicketFileError,
    TrainingDataError,
    ModelLoadError,
    ModelWriteError,  # a full disk while a model directory was written: said with its path
    SettingsError,
    FileExistsError,
    OutputPathError,
    ResourceFileError,
    BackendMissingError,
)


def _locale_encoding() -> str | None:
    """The encoding this server's locale gives arguments when it is not UTF-8 (``gbk`` under
    ``LANG=zh_CN.GBK``), else ``None``."""
    import codecs

    name = codecs.lookup(sys.getfilesystemencoding()).name
    return None if name == "utf-8" else name


def _plausibly_typed_utf8(text: str) -> bool:
    """Whether ``text``, bytes of a locale's encoding that also read as UTF-8, is what a UTF-8
    terminal sends for Chinese: every character beyond ASCII one of three bytes (the CJK range,
    full-width punctuation). GBK-typed words that read as UTF-8 read as Cyrillic, Greek or Latin
    letters (一些 -> 'һЩ') or as supplementary-plane characters instead (1 in 350,000 of jieba's
    Chinese words otherwise)."""
    return any(c > "\x7f" for c in text) and all(
        c <= "\x7f" or "\u0800" <= c <= "\uffff" for c in text
    )


def typed_text(value: str) -> str:
    """``value``, an argument as typed, as the text the terminal sent.

    Python reads arguments in the locale's encoding. Where that is not UTF-8 (a ``zh_CN.GBK``
    server) and the terminal sends UTF-8 (Windows Terminal, macOS, Xshell set to UTF-8), the
    bytes are UTF-8: read in GBK they were mojibake, or lone surrogates that :func:`not_utf8`
    refused as "not UTF-8". They are read as UTF-8 when they are valid UTF-8 and either GBK cannot
    read them or they read as Chinese in UTF-8 (what a GBK terminal sends rarely does).
    """
    encoding = _locale_encoding()
    if encoding is None or value.isascii():
        return value
    raw = os.fsencode(value)  # the bytes typed
    try:
        utf8 = raw.decode("utf-8")
    except UnicodeDecodeError:
        return value
    unread = any("\udc80" <= c <= "\udcff" for c in value)
    return utf8 if unread or _plausibly_typed_utf8(utf8) else value


def not_utf8(value: str) -> str | None:
    """Why ``value``, an argument as :func:`typed_text` reads it, is not text: ``None`` when it is.

    A terminal emulator left at a Chinese Windows' default (Xshell, SecureCRT, PuTTY: GBK) sends
    what is typed as GBK bytes, and on a UTF-8 server Python hands them over as lone surrogates:
    ``predict`` answered the mojibake quietly, and ``--text-col 诉求内容`` was "no column
    '\\udccb\\udcdf…'" beside a list naming 诉求内容. On a server whose locale is GBK, GBK and
    UTF-8 are both read; what is left is neither.
    """
    if not any("\udc80" <= c <= "\udcff" for c in value):
        return None
    raw = os.fsencode(value)  # the bytes typed
    shown = " ".join(f"{b:02x}" for b in raw[:12]) + (" …" if len(raw) > 12 else "")
    encoding = _locale_encoding()
    what = "UTF-8 text" if encoding is None else f"UTF-8 or {encoding.upper()} text"
    advice = (
        "set the terminal's encoding to UTF-8 (Xshell: 文件 → 属性 → 终端 → 编码; PuTTY: Window → "
        "Translation) and type it again"
    )
    try:
        reading = raw.decode("gb18030")
    except UnicodeDecodeError:
        return f"not {what} (bytes {shown}): the terminal does not send UTF-8; {advice}"
    # Under a GBK locale, GBK itself was read: what only GB18030 reads has its 4-byte characters.
    sends = "GBK" if encoding is None else "GB18030"
    return (
        f"not {what} (bytes {shown}); read as GB18030 (GBK) it is {reading!r}: the terminal "
        f"sends {sends}; {advice}"
    )


def _typed_text(value: Any) -> Any:
    """A callback reading a text argument as typed (:func:`typed_text`) and refusing one that is
    not text (:func:`not_utf8`); each of a repeated option's values so."""
    if isinstance(value, list | tuple):
        return [_typed_text(v) for v in value] or None
    if isinstance(value, str):
        value = typed_text(value)
        if why := not_utf8(value):
            raise typer.BadParameter(why)
    return value


def _column_option(field: str, what: str) -> Any:
    """The ``--FIELD-col`` option: the input column holding ``what``; not given, the setting
    ``PAIDAN_FIELD_COL`` names it (:func:`input_columns`)."""
    variable = f"PAIDAN_{field.upper()}_COL"
    default = Settings.model_fields[f"{field}_col"].default
    return typer.Option(
        f"--{field}-col",
        help=f"Input column holding {what} (default: {variable}, else {default}); repeated, "
        "other names it has in other files, each file read from the one it has",
        callback=_typed_text,
        show_default=False,
    )


# A column option's values: repeated (--text-col 留言详情 --text-col 详情), the names one column
# has in the files read together, the first the one a message names.
ColumnNames = list[str] | None
TextCol = Annotated[ColumnNames, _column_option("text", "the ticket text")]
TitleCol = Annotated[ColumnNames, _column_option("title", "the title")]
IdCol = Annotated[ColumnNames, _column_option("id", "the ticket id")]
DeptCol = Annotated[ColumnNames, _column_option("department", "the department label")]
CatCol = Annotated[ColumnNames, _column_option("category", "the category label")]
TrainJobs = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        min=1,
        help="Worker processes for the classifiers' fits (default: the number of cores); "
        "the model is the same for any value",
    ),
]

TimeCol = Annotated[ColumnNames, _column_option("time", "the ticket's time (for a window)")]


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_delimiter(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


Delimiter = Annotated[
    str | None,
    typer.Option(
        "--delimiter",
        callback=_delimiter,
        help="Field separator of CSV input files: one character, or tab "
        "(default: a tab for .tsv, a comma otherwise)",
    ),
]


def _zone(value: str | None) -> str | None:
    from model.settings import check_zone

    if value is None:
        return None
    try:
        return check_zone(value.strip())
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


Timezone = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        callback=_zone,
        metavar="ZONE",
        help="IANA time zone of the times written without one, the time column's and the "
        "options' (Asia/Shanghai; default: PAIDAN_TIMEZONE, else UTC)",
    ),
]


def zone_of(timezone: str | None) -> str:
    """``--timezone`` if given, else ``PAIDAN_TIMEZONE``."""
    return timezone if timezone is not None else load_settings().timezone


def in_zone(value: datetime | None, zone: str) -> datetime | None:
    """A ``--since`` bound typed without a zone as a wall-clock time in ``zone``."""
    from model.times import in_zone as placed

    return None if value is None else placed(value, zone)


def time_bound(value: str) -> datetime:
    """A ``--since`` bound, read as the ``time`` column's cells are
    (:func:`model.times.parse_bound`): four ``strptime`` formats refused ``2026-06-01
    06:00:00+08:00`` while taking ``2026-06-01T06:00:00+08:00``."""
    from model.times import parse_bound

    try:
        return parse_bound(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


# A field a command has no option for: ColumnMap's canonical name, not the setting.
_NO_OPTION = "\0no option"


Names = str | Sequence[str] | None


def input_columns(
    delimiter: str | None,
    text: Names,
    title: Names,
    id_: Names,
    department: Names = _NO_OPTION,
    category: Names = _NO_OPTION,
    time: Names = _NO_OPTION,
) -> ColumnMap:
    """The input columns the ``--*-col`` options name, each option not given (``None``) read
    from its setting (``PAIDAN_TEXT_COL`` …, the canonical name by default); a field the command
    has no option for keeps :class:`ColumnMap`'s canonical name. An option given several times
    names the column's other names (:attr:`ColumnMap.alternatives`): exports of two months that
    call the text 留言详情 and 详情 are read together, each from the one it has.

    A centre whose exports always name their columns alike (诉求内容, 诉求标题) sets them once
    in the environment (the env file the server and the cron job read) instead of repeating the
    options on every command. The columns a setting renamed are said on stderr first, so that a
    message about a missing column names where its name came from. A setting's value is read as
    a typed argument is (:func:`typed_text`), and one that is no text refused naming it.

    Raises
    ------
    SettingsError
        A setting is invalid, or not text.
    """
    from rich.markup import escape

    given = dict(
        text=text, title=title, id=id_, department=department, category=category, time=time
    )
    settings = load_settings()
    columns: dict[str, str] = {}
    alternatives: list[tuple[str, str]] = []
    renamed = []
    for field, value in given.items():  # in the order the note says them
        if value == _NO_OPTION:
            continue
        if not isinstance(value, str) and value is not None:
            # A file's column names are read stripped, as the settings are (below).
            names = list(dict.fromkeys(v.strip() for v in value))
            value = names[0] if names else None
            alternatives += [(field, n) for n in names[1:]]
        if value is None:
            name = f"{field}_col"
            value = getattr(settings, name)
            if value != Settings.model_fields[name].default:
                variable = f"PAIDAN_{name.upper()}"
                value = typed_text(value)
                if why := not_utf8(value):
                    raise SettingsError(f"{variable}: {why}")
                renamed.append(f"{field} from {escape(quoted(value))} ({variable})")
        # A file's column names are read stripped, as the settings are: `--text-col ' 内容'`
        # (copied with the space after a comma of the header) named no column of the file.
        columns[field] = value.strip() if isinstance(value, str) else value
    if renamed:
        err.print(
            f"[yellow]note:[/yellow] reading the {', the '.join(renamed)}",
            highlight=False,
            soft_wrap=True,
        )
    return ColumnMap(**columns, delimiter=delimiter, alternatives=tuple(alternatives))


# What every command that reads ticket files takes (model/tickets.py).
READS = "(CSV, XLSX, JSONL, JSON, Parquet) or directories"

RULES_HELP = (
    "Dispatch rules (派单规则) the model applies before its own ranking: a file with the columns "
    "keywords (all must occur in the ticket; 燃气|煤气: one of them) and department or category "
    "(or both), and optionally "
    "exclude (words none of which may occur), decision (auto or review), note and new_label (yes "
    "for a label the history lacks); the first rule that matches decides. Repeat it for several "
    "files"
)


def labels_named(info: dict[str, Any]) -> str:
    """The departments and categories a model's remits or rules name, as counted in its metadata
    (``departments``, ``categories``): "2 departments and 1 category"."""
    return " and ".join(
        counted(info[k], one, many)
        for k, one, many in (
            ("departments", "department", "departments"),
            ("categories", "category", "categories"),
        )
        if info.get(k)
    )


def rules_line(rules: dict[str, Any], merged: dict[str, Any] | None = None) -> str:
    """What ``train`` and ``retrain`` say of the dispatch rules a model keeps
    (``metadata["training_data"]["rules"]``); ``merged``: the labels its training merged into
    其他 (``training_data.validation.merged_into_other``, masked), which tickets do name."""
    review = f", {rules['review']} of them for a person to confirm" if rules.get("review") else ""
    few: list[str] = []
    new: list[str] = []
    for head, labels in rules.get("new_labels", {}).items():
        rare = (merged or {}).get(head) or {}
        for label in labels:
            (few if mask_label(label) in rare else new).append(mask_label(label))
    unlearnt = "".join(
        f"; {', '.join(labels)}, {why}, {'comes' if len(labels) == 1 else 'come'} from rules alone"
        for labels, why in (
            # A county's townships of 2 or 3 tickets each were said to be named by none.
            (few, f"whose training tickets were too few to learn (merged into {OTHER_LABEL!r})"),
            (new, "which no training ticket names"),
        )
        if labels
    )
    return (
        f"applies {counted(rules['rows'], 'dispatch rule')} before its own ranking, sending "
        f"tickets to {labels_named(rules)}{review}{unlearnt}"
    )


def merged_of(metadata: dict[str, Any]) -> dict[str, Any]:
    """The labels a model's training merged into 其他 (``training_data.validation``)."""
    validation = metadata.get("training_data", {}).get("validation") or {}
    return validation.get("merged_into_other") or {}


VERBOSE_HELP = (
    "Log more: DEBUG lines on stderr, and with label --engine dask Dask's INFO log (before or "
    "after the command: paidan -v label … or paidan label … -v)"
)
# A command's own --verbose: only label has an --engine (every command's said "with --engine
# dask Dask's INFO log").
COMMAND_VERBOSE_HELP = "Log more: DEBUG lines on stderr (also before the command: paidan -v …)"
LABEL_VERBOSE_HELP = (
    "Log more: DEBUG lines on stderr, and with --engine dask Dask's INFO log (also before the "
    "command: paidan -v label …)"
)


def _verbose(value: bool) -> bool:
    """``--verbose`` given after the command: the callback of :func:`main` set the level already.

    It was an option of ``paidan`` alone: ``paidan label … --verbose``, as the Dask section of
    docs/labelling.md reads, was refused ("No such option").
    """
    if value:
        logging.getLogger().setLevel(logging.DEBUG)
    return value


# An option of every command too, which the command ignores: its callback sets the level.


class PromotionRuleName(StrEnum):
    """``--promotion-rule``: how a challenger is judged against the champion (training.compare)."""

    bootstrap = "bootstrap"
    margin = "margin"


PromotionRule = Annotated[
    PromotionRuleName,
    typer.Option(
        "--promotion-rule",
        help="bootstrap: refuse when a head is worse beyond noise (paired bootstrap on the "
        "frozen set); a challenger within noise on every head is promoted, and said to be; "
        "margin: at most 1 macro-F1 point lost per head (the rule before 2026-12-07)",
    ),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", callback=_verbose, help=COMMAND_VERBOSE_HELP)
]
LabelVerbose = Annotated[
    bool, typer.Option("--verbose", "-v", callback=_verbose, help=LABEL_VERBOSE_HELP)
]


class _ConsoleLog(logging.Handler):
    """The log on the CLI's stderr console: a warning as the CLI says its own, ``warning: …`` (a
    note of the readers, such as on a file that is ``paidan label``'s output, read ``WARNING
    model.tickets: …`` among them), other records (``--verbose``'s) with their level and logger.
    Through the console, a line logged while the progress bar is drawn goes above it."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        try:
            if record.levelno == logging.WARNING and not record.exc_info:
                line = f"[yellow]warning:[/yellow] {escape(record.getMessage())}"
                err.print(line, highlight=False, soft_wrap=True)
            else:
                err.print(self.format(record), highlight=False, soft_wrap=True, markup=False)
        except Exception:
            self.handleError(record)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        handlers=[_ConsoleLog()],
    )
    # A misspelt PAIDAN_* name was ignored without a word. `serve` refuses it (a misspelt key
    # setting served the export without a key); the other commands, which serve nothing, warn.
    if ctx.invoked_subcommand != "serve":
        for line in unknown_variables():
            err.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)


class _RichProgress:
    """Adapts rich's progress bar to training's ``(stage, done, total)`` callback.

    When stderr is not a terminal (cron, nohup, ``2>> log``) the bar is not drawn, and a long
    training wrote nothing until it ended, a stuck one looking the same: there, with ``lines``,
    each stage is one line when it starts and one when it ends (with its time), and a stage of
    many steps a line at each further tenth of them.
    """

    def __init__(self, progress: Progress, lines: bool = False) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.plain = lines and progress.disable
        self.started: dict[str, float] = {}
        self.tenths: dict[str, int] = {}
        self.announced: dict[str, int] = {}  # the steps a stage's first line said

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.plain:
            self._line(stage, done, total)
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)

    def _line(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        # In UTC with its date, as every other time paidan prints: a nightly log appended to keeps
        # its days apart, and a model's version (…T024738Z) reads against it.
        clock = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if stage not in self.started or (self.tenths[stage] >= 10 and done < total):  # again
            self.started[stage] = now
            self.tenths[stage] = 0
            self.announced[stage] = total
            steps = f" ({total:,} steps)" if total > 1 else ""
            err.print(f"{clock} {stage}{steps}…", highlight=False, soft_wrap=True, markup=False)
        tenth = 10 * done // total if total > 0 else 10  # (0, 0): nothing to do, so done
        if tenth <= self.tenths[stage]:
            return
        self.tenths[stage] = tenth
        took = now - self.started[stage]
        if done >= total:
            # A total that was an estimate (label's rows, counted by lines) and turned out
            # otherwise: the stage ends at the total it found, said beside the estimate, where
            # its last line was 36,000/44,470 and then "done".
            announced = self.announced[stage]
            found = (
                f", {done:,}/{total:,} ({announced:,} estimated at the start)"
                if announced > 1 and total != announced
                else ""
            )
            err.print(
                f"{clock} {stage}: done{found} ({took:.0f} s)",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        else:
            err.print(
                f"{clock} {stage}: {done:,}/{total:,} ({took:.0f} s)",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


def print_during(bar: Progress, text: str) -> None:
    """Print a line of stdout while ``bar`` runs.

    On a terminal the bar is redrawn on stderr: a line written to the same terminal through stdout
    was glued to the end of the bar's line. There, it goes through the bar's console, above the
    bar; elsewhere (a log, a pipe) to stdout as any other line.
    """
    if out.is_terminal and not bar.disable:
        bar.console.print(text, soft_wrap=True)
    else:
        out.print(text, soft_wrap=True)


def say_warnings(report: ValidationReport) -> None:
    """The validation's warnings on stderr (above a running progress bar, which is drawn there)."""
    say_all(report.warnings())


def say_all(warnings: Iterable[str]) -> None:
    """``warnings`` on stderr, each a line starting ``warning:``."""
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)


def frozen_left_out(tickets: int, rows: int) -> str:
    """The frozen tickets retrain left out, and their history rows where the history repeats one:
    "131 frozen evaluation tickets" was said of a set of 130 with one ticket written twice."""
    said = counted(tickets, "frozen evaluation ticket")
    return said if rows == tickets else f"{said} ({counted(rows, 'history row')})"


def model_path(path: Path) -> Path:
    """``path``, or the version of that name under the model root (as `models list` names it)."""
    from model.registry import CURRENT_FILE, named_model

    if path.exists() and path.name != CURRENT_FILE:  # ROOT/current is the pointer file
        return path
    try:
        root = load_settings().model_root
    except SettingsError:
        return path  # the command reports the setting itself
    return named_model(root, path)


def _names_a_model(path: Path) -> bool:
    """Whether ``path`` is a model directory, ``current`` or a version under the model root."""
    try:
        return (model_path(path) / METADATA_FILE).is_file()
    except (ModelLoadError, OSError, ValueError):
        return False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises :class:`KeyboardInterrupt`, to stop a run the same way."""


def stopped_by(e: KeyboardInterrupt) -> tuple[str, int]:
    """How a run stopped by Ctrl-C or SIGTERM (:class:`Terminated`) begins its last line, and the
    exit status it ends with (128 + the signal's number, as the shell reports a signal)."""
    if isinstance(e, Terminated):
        return "stopped by SIGTERM", 128 + signal.SIGTERM
    return "interrupted", 128 + signal.SIGINT


def stop_on_sigterm() -> Callable[[], None]:
    """Make the first SIGTERM raise :class:`Terminated` in the main thread; return the undo.

    Python's default SIGTERM action ends the process without unwinding, so no ``finally`` ran:
    ``paidan label`` stopped by systemd, ``docker stop``, ``timeout`` or a batch scheduler left its
    pool of workers running. A second SIGTERM ends the process at once, as before.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a program embedding the CLI): keep its handler
        return lambda: None

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def fail(e: Exception) -> typer.Exit:
    # printable: a file name that is not UTF-8 (GBK) shows its bytes, not lone surrogates.
    err.print(f"[red]error:[/red] {printable(str(e))}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command(epilog=ROOT_EPILOG)
def train(
    data: Annotated[
        list[Path],
        typer.Argument(help=f"Labelled ticket files {READS}"),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Model directory to write (default: <model root>/<version>)"),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace an earlier model directory at --out (any other non-empty directory is "
            "refused)"
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Refuse rare labels instead of merging them into 其他")
    ] = False,
    min_examples: Annotated[
        int, typer.Option(min=MIN_LABEL_ROWS, help="Labels with fewer rows are merged into 其他")
    ] = 5,
    target_precision: Annotated[
        float,
        typer.Option(
            min=0.5, max=1.0, help="Precision that auto decisions must reach on held-out folds"
        ),
    ] = 0.95,
    seed: Annotated[
        int, typer.Option(min=0, max=2**32 - 1, help="Seed of the cross-validation folds")
    ] = 42,
    tokenizer: Annotated[
        Backend,
        typer.Option(help="Word segmenter, recorded in the model and used whenever it is served"),
    ] = TrainingConfig.tokenizer,
    word_cut: Annotated[
        WordCut,
        typer.Option(
            help="search: each long word and the dictionary words inside it (住房公积金: also 住房, "
            "公积金); precise: the longest words only (jieba's default mode)"
        ),
    ] = TrainingConfig.word_cut,
    script: Annotated[
        Script,
        typer.Option(
            help="simplified: a ticket typed in traditional characters is read in simplified ones "
            "(社區 as 社区); as_written: every character as written"
        ),
    ] = TrainingConfig.script,
    unlabelled: Annotated[
        list[Path] | None,
        typer.Option(
            help="Unlabelled ticket files that widen the vocabulary; repeat it for several files"
        ),
    ] = None,
    fit_only: Annotated[
        list[Path] | None,
        typer.Option(
            "--fit-only",
            help="Labelled ticket files learnt from but never scored: tickets borrowed from "
            "elsewhere (another city's, a vendor's), read like DATA, that train every fit but "
            "are left out of the cross-validated figures, the auto threshold, the prior shift "
            "and the label counts, which say what the model does on DATA's tickets; their "
            "labels DATA lacks are left out. Repeat it for several files",
        ),
    ] = None,
    userdict: Annotated[
        Path | None, typer.Option(help="jieba user dictionary (default: the bundled one)")
    ] = None,
    stopwords: Annotated[
        Path | None, typer.Option(help="Stopword list (default: the bundled one)")
    ] = None,
    remits: Annotated[
        list[Path] | None,
        typer.Option(
            help="Remits: what each department has authority over (权责清单) or each category "
            "covers (分类目录), in words; a file with the columns department or category (or "
            "both), text and, optionally, title; each teaches the head of its label that label's "
            "words. Repeat it for several files",
        ),
    ] = None,
    remit_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of each --remits row in its head's training, where a ticket weighs 1",
        ),
    ] = TrainingConfig.remit_weight,
    rules: Annotated[list[Path] | None, typer.Option(help=RULES_HELP)] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            parser=time_bound,
            metavar="TIME",
            help="Train on the tickets from this time on (without a zone: in --timezone; every "
            "row needs a time)",
        ),
    ] = None,
    max_rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Train on the newest this many rows (by time, or the last rows when there are "
            "no times)",
        ),
    ] = None,
    text_col: TextCol = None,
    title_col: TitleCol = None,
    id_col: IdCol = None,
    department_col: DeptCol = None,
    category_col: CatCol = None,
    time_col: TimeCol = None,
    timezone: Timezone = None,
    delimiter: Delimiter = None,
    jobs: TrainJobs = None,
    prior_alpha: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Shift of each head's label prior (0 = none; default: chosen by cross-validation)",
        ),
    ] = None,
    calibrate_confidence: Annotated[
        bool,
        typer.Option(
            help="Show each suggestion's probability as how often such suggestions were right "
            "on the held-out folds (decisions are the same either way)",
        ),
    ] = True,
    multinomial_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of a multinomial logistic regression in the department head's "
            "probabilities, beside the calibrated linear SVM (0 = none)",
        ),
    ] = TrainingConfig.multinomial_weight,
    category_shares: Annotated[
        bool,
        typer.Option(
            help="Order the department candidates after the suggestion with the category "
            "head's help (the suggestion, the probabilities and the decisions stay)",
        ),
    ] = TrainingConfig.category_shares_in_ranking,
    cv_max_rows: Annotated[
        int | None,
        typer.Option(
            min=100,
            help="Cross-validate each head on a sample of this many rows (faster on a large "
            "history; the auto threshold, chosen on the sample, may dispatch less or nothing); it "
            "is still fitted on every row",
        ),
    ] = None,
    unlabelled_max_rows: Annotated[
        int,
        typer.Option(
            min=1,
            help="Most --unlabelled tickets to fit the vocabulary on; with more, a random sample "
            "of this many (each costs memory while training and size in the model)",
        ),
    ] = UNLABELLED_MAX_ROWS,
    verbose: Verbose = False,
) -> None:
    """Train a model on labelled tickets, cross-validate it and write its directory."""
    from model.registry import RegistryWriteError
    from training.metrics import format_auto_precision, format_f1, no_auto_note
    from training.train import cv_summary, in_head_order
    from training.train import train as run_train
    from training.window import Window, describe

    config = TrainingConfig(
        min_examples=min_examples,
        target_precision=target_precision,
        seed=seed,
        tokenizer=tokenizer,
        word_cut=word_cut,
        script=script,
        prior_alpha=prior_alpha,
        calibrate_confidence=calibrate_confidence,
        multinomial_weight=multinomial_weight,
        category_shares_in_ranking=category_shares,
        cv_max_rows=cv_max_rows,
        unlabelled_max_rows=unlabelled_max_rows,
        remit_weight=remit_weight,
    )
    written_before = _written_at(out_dir)
    root_before = None if out_dir is not None else _root_versions()
    restore_sigterm = stop_on_sigterm()  # a SIGTERM stops it as Ctrl-C does, and is said
    try:
        columns = input_columns(
            delimiter, text_col, title_col, id_col, department_col, category_col, time_col
        )
        with progress_bar() as bar:
            result = run_train(
                data,
                out_dir,
                columns,
                config,
                strict=strict,
                force=force,
                userdict=userdict,
                stopwords=stopwords,
                unlabelled=unlabelled or [],
                model_root=load_settings().model_root,
                progress=_RichProgress(bar, lines=True),
                n_jobs=jobs or -1,
                window=Window(since, max_rows, zone_of(timezone)),
                on_window=lambda info: print_during(bar, describe(info)),
                remits=remits,
                rules=rules,
                fit_only=fit_only,
                # Said before the fit, which takes minutes on a large history: the repeated
                # tickets or conflicting labels they name are fixed before the wait, not after.
                on_validated=say_warnings,
            )
    # RegistryWriteError: `current` pinned before a second version is written, on a full disk
    except (*USER_ERRORS, RegistryWriteError) as e:
        raise fail(e) from None
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        # It ended with an empty stderr, exit 130 (killed outright by SIGTERM): was a model, or
        # half of one, written to --out?
        said, status = stopped_by(e)
        if out_dir is not None and _written_at(out_dir) != written_before:
            said += f" after the model was written to {out_dir}"
        elif out_dir is not None:
            said += (
                f" before the model was written: nothing was written to {out_dir}; run the same "
                "command again to train it"
            )
        elif (root_now := _root_versions()) is not None and root_before is not None:
            root, versions_now = root_now
            if new := [v for v in versions_now if v not in root_before[1]]:
                said += f" after the model was written to {root / new[-1]}"
            else:
                said += (
                    f" before the model was written: no model was added to {root}; run the same "
                    "command again to train it"
                )
        err.print(printable(said), highlight=False, soft_wrap=True)
        raise typer.Exit(status) from None
    finally:
        restore_sigterm()
    table = Table(title=f"model {result.router.version}")
    for col in (
        "head",
        "rows",
        "labels",
        "macro-F1",
        "accuracy",
        "top-3",
        "ECE",
        "auto thr.",
        "auto prec.",
        "auto cov.",
    ):
        table.add_column(col)
    for name, cv in in_head_order(result.cv):
        r = cv.report
        table.add_row(
            name,
            str(r["n"]),
            str(len(cv.labels)),
            format_f1(r["macro_f1"]),
            f"{r['accuracy']:.3f}",
            f"{r['top3_accuracy']:.3f}",
            f"{r['ece']:.3f}",
            f"{cv.threshold:.3f}",
            format_auto_precision(r["auto"]["precision"]),
            f"{r['auto']['coverage']:.3f}",
        )
    out.print(table)
    out.print(
        cv_summary(result.cv, config, result.validation.rows_used, result.validation.rows_in),
        soft_wrap=True,
        markup=False,
    )
    for name, cv in in_head_order(result.cv):
        if cv.report["auto"]["precision"] is None:
            out.print(f"{name} head: {no_auto_note(cv.report['auto'])}", soft_wrap=True)
        if cv.report.get("rows"):
            out.print(
                f"{name} head cross-validated on a sample of {cv.report['n']:,} of its "
                f"{cv.report['rows']:,} rows (cv_max_rows), then fitted on all of them",
                soft_wrap=True,
            )
    remits_read = result.metadata["training_data"].get("remits")
    if remits_read:
        out.print(
            f"learnt {counted(remits_read['rows'], 'remit')} of "
            f"{labels_named(remits_read) or 'no label'} (weight {remits_read['weight']:g} each)",
            soft_wrap=True,
        )
    if rules_read := result.metadata["training_data"].get("rules"):
        out.print(rules_line(rules_read, merged_of(result.metadata)), soft_wrap=True)
    if borrowed := result.metadata["training_data"].get("fit_only"):
        out.print(fit_only_line(borrowed, result.metadata["heads"]), soft_wrap=True)
    if result.validation.joint_rows:
        out.print(
            f"{counted(result.validation.joint_rows, 'joint dispatch', 'joint dispatches')} (会办, "
            "several departments in one cell): the department head learnt their lead (first) "
            "department",
            soft_wrap=True,
        )
    for name, cv in in_head_order(result.cv):
        tried = cv.report.get("input_selection")
        if tried:
            scores = ", ".join(f"{'+'.join(t['inputs'])} {t['macro_f1']:.3f}" for t in tried)
            chosen = "+".join(result.router.head_inputs(name))
            rows = cv.report.get("input_selection_rows")
            on = f" on a sample of {rows:,} rows" if rows else ""
            out.print(f"{name} head reads {chosen} (cross-validated macro-F1{on}: {scores})")
        priors = cv.report.get("prior_selection")
        if priors:
            scores = ", ".join(f"{t['alpha']:g} {t['macro_f1']:.3f}" for t in priors)
            out.print(
                f"{name} head shifts its label prior by alpha {cv.prior_alpha:g} "
                f"(cross-validated macro-F1 by alpha: {scores})"
            )
        shares = cv.report.get("category_share_selection")
        if shares:
            scores = ", ".join(f"{t['weight']:g} {t['top3_accuracy']:.3f}" for t in shares)
            out.print(
                f"{name} head orders its candidates after the first with the category head's "
                f"shares at weight {cv.category_share_weight:g} (cross-validated top-3 by "
                f"weight: {scores})"
            )
    if result.model_dir:
        out.print(f"written to {printable(str(result.model_dir))}")
        try:
            _after_train_under_root(result.model_dir)
        except RegistryWriteError as e:  # written, but the pointer making it current was not
            err.print(
                f"[red]error:[/red] {printable(str(e))}; {result.model_dir.name} was written but "
                f"is not current: once there is space, paidan models promote "
                f"{result.model_dir.name}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None


def _root_versions() -> tuple[Path, list[str]] | None:
    """The model root and its versions, or ``None`` when they cannot be read."""
    from model.registry import versions

    try:
        root = load_settings().model_root
        return root, versions(root)
    except (*USER_ERRORS, OSError):
        return None


def _written_at(model_dir: Path | None) -> int | None:
    """When ``model_dir``'s metadata was written (ns), or ``None``: whether a stopped ``train``
    wrote its model is whether this changed."""
    try:
        return (model_dir / METADATA_FILE).stat().st_mtime_ns if model_dir is not None else None
    except OSError:
        return None


def fit_only_line(borrowed: dict[str, Any], heads: dict[str, dict[str, Any]]) -> str:
    """The training summary's line on the ``--fit-only`` rows: how many each head learnt from,
    and that the figures above are the training files' tickets only."""
    per_head = ", ".join(
        f"{name} {heads[name]['fit_only_rows']:,}"
        for name in HEADS
        if heads.get(name, {}).get("fit_only_rows")
    )
    said = f"learnt from {counted(borrowed['rows'], 'fit-only row', thousands=True)}"
    said += f" ({per_head})" if per_head else " (no head learnt from them)"
    said += "; not scored: the figures above are the training files' tickets only"
    if same := borrowed.get("same_text_rows"):
        said += f"; {counted(same, 'row')} left out as a training ticket's text"
    if left := borrowed.get("left_out_labels"):
        rows = sum(sum(c.values()) for c in left.values())
        said += f"; {counted(rows, 'label')} left out as the training files do not teach them"
    return said


def _after_train_under_root(model_dir: Path) -> None:
    """Say which model is current after ``train`` wrote ``model_dir``, if it is under the root.

    The bundled sample's default (``paidan serve`` on an empty root) is replaced: it was only a
    placeholder until the city had a model of its own.
    """
    from model.registry import current_version
    from training.compare import replace_sample_default

    root = load_settings().model_root
    if model_dir.resolve().parent != root.resolve():
        _outside_root(model_dir, root)
        return
    if not root.is_dir():
        return
    version = model_dir.name
    try:
        replaced = replace_sample_default(root, version)
    except ModelLoadError as e:  # another command moved `current` meanwhile
        err.print(f"[yellow]warning:[/yellow] {e}", highlight=False, soft_wrap=True)
        return
    if replaced:
        out.print(
            f"{version} is now the current model (it replaces {replaced}, the default trained "
            "from the bundled sample)",
            soft_wrap=True,
        )
        return
    current = current_version(root)
    if current == version:  # the registry's first model is current without a promotion
        out.print(f"{version} is the current model (the first in the registry)")
    elif current:
        out.print(_how_to_promote(root, version, current), soft_wrap=True)


def _how_to_promote(root: Path, version: str, current: str) -> str:
    """The line that says how to make ``version`` current in place of ``current``.

    ``models promote`` compares the two on the frozen evaluation set and is refused without
    one: with none frozen yet, the plain command this line gave failed at once, so it names
    ``freeze-eval`` first, and ``--force`` for a promotion without a comparison.
    """
    from model.registry import frozen_eval_info

    head = f"{version} is not the current model ({current} is): "
    try:
        frozen = frozen_eval_info(root) is not None
    except ModelLoadError:  # promote says what is wrong with the set, and how to freeze it again
        frozen = True
    if frozen:
        return f"{head}make it current with paidan models promote {version}"
    return (
        f"{head}paidan models promote {version} compares it with {current} on a frozen "
        "evaluation set, and none is frozen yet: freeze labelled tickets that neither model "
        f"trained on with paidan models freeze-eval DATA, then promote it; or make it current "
        f"without a comparison with paidan models promote {version} --force"
    )


def _outside_root(model_dir: Path, root: Path) -> None:
    """Say that ``model_dir`` is no version of the registry at ``root``, and how to use it.

    The sample default's note said ``--out models/NAME``: from any directory but the root's
    parent that wrote beside the root, ``train`` said nothing, and ``models promote NAME`` could
    not find the model.
    """
    from model.registry import current_version

    where = root.resolve()
    try:
        current = current_version(root) if root.is_dir() else None
    except (ModelLoadError, OSError):  # `models list` says what is wrong with the pointer
        current = None
    now = f" (the current model there is {current})" if current else ""
    target = where / model_dir.name
    move = shlex.quote(str(target if not target.exists() else where / "NAME"))
    # The version is quoted as the paths are (`--out "x/my model"` printed `promote my model`), and
    # a name beginning with "-" follows "--", which ends the options, as "./" does for mv's source.
    name = shlex.quote(target.name) if not target.exists() else "NAME"
    if name.startswith("-"):
        name = f"-- {name}"
    source = str(model_dir) if not str(model_dir).startswith("-") else f"./{model_dir}"
    mkdir = "" if root.is_dir() else f"mkdir -p {shlex.quote(str(where))} && "
    # A directory deeper inside the root (models/sub/v9) is under it, but no version: its
    # versions are the root's own subdirectories.
    inside = model_dir.resolve().is_relative_to(where)
    place = (
        f"is inside the model root {printable(str(where))} (PAIDAN_MODEL_ROOT) but not directly "
        "in it, where its versions are"
        if inside
        else f"is not under the model root {printable(str(where))} (PAIDAN_MODEL_ROOT)"
    )
    out.print(
        f"{printable(str(model_dir))} {place}, so it is not in the registry{now}: paidan serve, paidan label "
        "without --model and paidan models promote do not use it (paidan label --model, predict "
        f"and evaluate take its path). To serve it, move it there and promote it: {printable(mkdir)}mv "
        f"{printable(shlex.quote(source))} {printable(move)} && paidan models promote "
        f"{printable(name)}; or train with --out {printable(shlex.quote(str(where)))}/NAME",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


@app.command(epilog=ROOT_EPILOG)
def evaluate(
    model_dir: Annotated[
        Path,
        typer.Argument(
            help="Model directory, or a version under the model root (current: the current one)"
        ),
    ],
    data: Annotated[list[Path], typer.Argument(help=f"Labelled ticket files {READS}")],
    report: Annotated[
        # A string: Path drops the trailing slash of `reports/`, which names a directory.
        str | None,
        typer.Option(
            metavar="PATH",
            help="Write the JSON report to this file (Markdown and PNGs beside it; not one of "
            "the DATA files)",
        ),
    ] = None,
    text_col: TextCol = None,
    title_col: TitleCol = None,
    id_col: IdCol = None,
    department_col: DeptCol = None,
    category_col: CatCol = None,
    delimiter: Delimiter = None,
    verbose: Verbose = False,
) -> None:
    """Score a model on labelled tickets: print the summary, and with --report write the report.

    Without --report nothing is written.
    """
    from training.evaluate import evaluate as run_evaluate
    from training.evaluate import joint_summary, report_warnings, rules_summary_line
    from training.metrics import format_auto_precision, format_f1

    try:
        if report is not None:
            check_not_directory_name(report, "--report", "report.json")
            check_utf8_name(report, "--report")
            check_writable(report, "--report")  # before the scoring it would waste
            check_not_in_model_dir(report, "--report")
        columns = input_columns(
            delimiter, text_col, title_col, id_col, department_col, category_col
        )
        with progress_bar() as bar:
            result = run_evaluate(
                model_path(model_dir),
                data,
                report,
                columns,
                progress=_RichProgress(bar, lines=True),
            )
    except USER_ERRORS as e:
        raise fail(e) from None
    table = Table(
        title=f"evaluation of {result['model_version']} on {counted(result['n'], 'ticket')}"
    )
    for col in ("head", "macro-F1", "accuracy", "top-3", "ECE", "auto prec.", "auto cov."):
        table.add_column(col)
    for head in ("department", "category"):
        if head in result:
            r = result[head]
            table.add_row(
                head,
                format_f1(r["macro_f1"]),
                f"{r['accuracy']:.3f}",
                f"{r['top3_accuracy']:.3f}",
                f"{r['ece']:.3f}",
                format_auto_precision(r["auto"]["precision"]),
                f"{r['auto']['coverage']:.3f}",
            )
    out.print(table)
    for head in ("department", "category"):
        if result.get(head, {}).get("rules"):
            out.print(rules_summary_line(head, result[head]["rules"]), soft_wrap=True)
    if "joint" in result:
        out.print(joint_summary(result["joint"]), soft_wrap=True)
    for warning in report_warnings(result):
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if report:
        md = Path(report).with_suffix(".md")
        out.print(f"report written to {printable(report)} and {printable(str(md))}")


def _stdin_text(max_chars: int) -> str:
    """The text piped to ``paidan predict MODEL -``, decoded as a CSV file is (UTF-8, with or
    without a byte-order mark, or GB18030) and without the line break that ends it (``echo``'s);
    no more than the bytes of ``max_chars`` characters are read, and more than that is refused
    as the over-long text it is."""
    from model.tickets import STDIN, detect_encoding, is_utf16

    limit = 4 * max_chars + 5  # UTF-8's widest characters, a byte-order mark and a line break
    raw = typer.get_binary_stream("stdin").read(limit + 1)
    if len(raw) > limit:
        raise TicketFileError(
            f"standard input: the text is over the limit of {max_chars:,} characters "
            f"(PAIDAN_MAX_TEXT_CHARS); more than {limit:,} bytes were piped"
        )
    if is_utf16(raw):
        raise TicketFileError("standard input is UTF-16 text, which is not read: pipe UTF-8")
    try:
        return raw.decode(detect_encoding(raw, STDIN)).removesuffix("\n").removesuffix("\r")
    except TicketFileError as e:
        raise TicketFileError(f"standard input: {e}") from None
    except UnicodeDecodeError as e:  # detect_encoding reads a cut sample as whole
        raise TicketFileError(
            f"standard input: not UTF-8 or GB18030 text (byte {e.start} is invalid)"
        ) from None


@app.command(epilog=ROOT_EPILOG)
def predict(
    model_dir: Annotated[
        Path,
        typer.Argument(
            help="Model directory, or a version under the model root (current: the current one)"
        ),
    ],
    text: Annotated[
        str | None,
        typer.Argument(
            help="Complaint text (required); - reads it from standard input",
            metavar="{text}",
            callback=_typed_text,
            show_default=False,
        ),
    ] = None,
    title: Annotated[str, typer.Option(help="Ticket title", callback=_typed_text)] = "",
    top_k: Annotated[int, typer.Option(min=1, max=MAX_TOP_K, help="Candidates per head")] = 3,
    verbose: Verbose = False,
) -> None:
    """Print one routing suggestion as JSON."""
    from training.label import check_text, check_title

    if text is None:
        # Only one argument: click said "Missing argument 'text'", though a text was given, and
        # taken for the model; or the argument is a model and the text was forgotten.
        given = shlex.quote(str(model_dir))
        if _names_a_model(model_dir):
            raise fail(
                ValueError(
                    f"missing argument TEXT: the complaint to route with {given}: paidan predict "
                    f"{given} TEXT, or paidan predict {given} - to read it from standard input"
                )
            )
        # A complaint, most likely: quoted with its personal data masked (routing it masked
        # gives the same answer, since the model masks what it reads).
        given = shlex.quote(mask_label(str(model_dir)))
        raise fail(
            ValueError(
                f"missing argument TEXT: paidan predict MODEL TEXT takes the model first, and "
                f"{given} was read as the model; to route it with the current model under the "
                f"model root: paidan predict current {given}"
            )
        )
    # The checks of the HTTP API and of batch labelling: a blank or over-long text is refused, and
    # an over-long title.
    try:
        settings = load_settings()
    except SettingsError as e:
        raise fail(e) from None
    given = "TEXT"
    if text == "-":
        given = "standard input"
        try:
            text = _stdin_text(settings.max_text_chars)
        except TicketFileError as e:
            raise fail(e) from None
    problem = check_text(text, settings.max_text_chars) or check_title(
        title, settings.max_title_chars
    )
    if problem:
        raise fail(ValueError(problem.replace("the text column is empty", f"{given} is empty")))
    from model.registry import lease

    try:
        path = model_path(model_dir)
        held = lease(settings.model_root, path)  # `paidan models gc` keeps it while it is read
        try:
            router, _ = load_router(path, serving=True)
        finally:
            held.release()
    except USER_ERRORS as e:
        raise fail(e) from None
    result = router.predict(
        [(title, text)],
        top_k=top_k,
        similar_k=settings.similar_k,
        masked=True,
        snippets=settings.similar_snippets,
    )[0]
    # The answer of POST /v1/route (serve/routes.py `_response`) without its id and timing, in its
    # order: the overall decision too, a property that model_dump() leaves out (predict printed
    # only each head's, where the API answers it and label writes it); and the ticket as given,
    # personal data masked as the model read it masked, as the API answers a request that asks
    # (`masked`).
    suggestion = {**result.model_dump(), "decision": result.decision}
    order = (
        "department",
        "category",
        "decision",
        "similar",
        "co_departments",
        "model_version",
        "masked",
    )
    from model.text import ticket_simplified

    read_as = ticket_simplified(title, text, router.config.script)
    write_json({**{k: suggestion[k] for k in order}, "simplified": read_as})


def rows_per_second(rate: float) -> str:
    """A rate as the CLI says it: in whole rows from 10 a second, else to two significant digits
    (a slow start, 0.3 rows/s, was said as "0 rows/s")."""
    return f"{rate:,.0f} rows/s" if rate >= 10 else f"{rate:.2g} rows/s"


def label_pace(summary: dict[str, Any]) -> str:
    """How fast a ``paidan label`` run went, for its last line: ``at 1,250 rows/s``, or for a run
    under a row a second (one row, whose time is the model's loading) ``in 3.6 s``, where its
    rate read "at 0 rows/s"."""
    rate = summary["rows_per_second"]
    return f"at {rows_per_second(rate)}" if rate >= 1 else f"in {summary['seconds']:,.1f} s"


class _RowsPerSecond(ProgressColumn):
    """Rows per second of a running task."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(rows_per_second(speed) if speed else "– rows/s")


@app.command(epilog=ROOT_EPILOG)
def label(
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Ticket files (CSV, XLSX, JSONL, JSON, Parquet) or directories of parts"
        ),
    ],
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Labelled file; .csv, .jsonl, .parquet or .xlsx sets the format. Also written "
            "beside it: OUTPUT.summary.json, OUTPUT.departments.png, OUTPUT.confidence.png and, "
            "while it runs, the chunks in OUTPUT.parts/",
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model directory or version (default: the current model under the model root)"
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes (default: the number of cores; with --engine dask the "
            "LocalCluster's workers, default 2; refused with --scheduler)",
        ),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Rows per chunk (the unit of work and of resuming)")
    ] = 2_000,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run from its last finished chunk")
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Replace OUTPUT and discard the parts of an interrupted run")
    ] = False,
    engine: Annotated[
        str, typer.Option(help="'local' (a process pool) or 'dask' (a Dask cluster)")
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="With --engine dask: the scheduler's address, e.g. tcp://host:8786 (default: "
            "a LocalCluster)"
        ),
    ] = None,
    upload_model: Annotated[
        bool,
        typer.Option(
            help="With --engine dask: send the model files to the workers instead of sharing "
            "the path"
        ),
    ] = False,
    joint: Annotated[
        bool,
        typer.Option(
            help="Advise joint dispatches (co_departments) as the API does: a similar-ticket "
            "search per ticket when the model stored any; --no-joint leaves the column empty"
        ),
    ] = True,
    evidence: Annotated[
        bool,
        typer.Option(
            help="Add why each department and category was suggested, as the API explains it: "
            "the words that drove it with their weights (department_evidence, "
            "category_evidence: JSON), the clause of its remit that names them "
            "(department_remit, category_remit, with a model trained with --remits) and the "
            "dispatch rule that gave it (department_rule, category_rule: JSON, with a model "
            "trained with --rules); slower"
        ),
    ] = False,
    escape_formulas: Annotated[
        bool,
        typer.Option(
            help="CSV output: write a text that begins with = + - @ (or a tab, …), which Excel "
            "would run as a formula, with a leading ' (shown as text); --no-escape-formulas "
            "writes every cell as read, for programs that read the file"
        ),
    ] = True,
    text_col: TextCol = None,
    title_col: TitleCol = None,
    id_col: IdCol = None,
    delimiter: Delimiter = None,
    verbose: LabelVerbose = False,
) -> None:
    """Label a backlog of tickets: every row comes back, labelled or with its error."""
    from model.registry import current_dir, lease
    from training.label import LabelError, kept_chunks
    from training.label import label as run_label

    held = None
    restore_sigterm = stop_on_sigterm()  # stops the run as Ctrl-C does: the pool is shut down
    try:
        settings = load_settings()
        model_dir = model_path(model) if model else current_dir(settings.model_root)
        if model_dir is None:
            raise ModelLoadError(
                f"no model under {settings.model_root}; train one or pass --model DIR"
            )
        # For the whole run: its worker processes (and Dask workers) read the model from disk
        # when they start, and `paidan models gc` deleted a version a long run was using.
        held = lease(settings.model_root, model_dir)
        columns = input_columns(delimiter, text_col, title_col, id_col)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RowsPerSecond(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not err.is_terminal,
        ) as bar:
            result = run_label(
                data,
                model_dir,
                out_path,
                columns,
                jobs=jobs,
                chunk_size=chunk_size,
                resume=resume,
                force=force,
                engine=engine,  # type: ignore[arg-type]
                scheduler=scheduler,
                upload_model=upload_model,
                progress=_RichProgress(bar, lines=True),
                joint=joint,
                escape_formulas=escape_formulas,
                evidence=evidence,
            )
    except (*USER_ERRORS, LabelError) as e:
        raise fail(e) from None
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        # It ended with an empty stderr, exit 130, leaving staff to guess what was kept.
        said, status = stopped_by(e)
        kept = kept_chunks(out_path)
        if kept:
            chunks = counted(kept, "finished chunk is", "finished chunks are", thousands=True)
            said += (
                f": the {chunks} kept in {out_path}.parts; rerun the same command with --resume "
                "to continue from there"
            )
        else:
            said += " before a chunk was finished; nothing is kept"
        err.print(printable(said), highlight=False, soft_wrap=True)
        raise typer.Exit(status) from None
    finally:
        restore_sigterm()
        if held is not None:
            held.release()
    s = result.summary
    table = Table(title="summary")
    table.add_column("")
    table.add_column("rows", justify="right")
    for name, n in (
        ("labelled", s["labelled"]),
        ("  auto", s["auto"]),
        ("  review", s["review"]),
        ("errors", s["errors"]),
        *((f"  {kind}", n) for kind, n in s["errors_by_kind"].items()),
    ):
        table.add_row(name, f"{n:,}")
    depts = Table(title="predicted departments")
    depts.add_column("department")
    depts.add_column("rows", justify="right")
    shown = list(s["departments"].items())
    for name, n in shown[:15]:
        depts.add_row(name, f"{n:,}")
    if len(shown) > 15:
        depts.add_row(f"… {len(shown) - 15} more", f"{sum(n for _, n in shown[15:]):,}")
    out.print(table)
    out.print(depts)
    if s["joint_advice"]:
        co = ", ".join(f"{d} {n:,}" for d, n in s["co_departments"].items())
        out.print(
            f"joint dispatch (会办) advised for {counted(s['joint_advice'], 'row', thousands=True)}; "
            f"beside the lead: {co}",
            soft_wrap=True,
        )
    if s["blank_lines"]:  # so that a file's line count and the rows written back add up
        files = list(s["blank_lines"].items())
        said = "; ".join(
            f"{printable(name)} has {b['count']:,} ({'lines' if b['count'] > 1 else 'line'} "
            f"{', '.join(map(str, b['first']))}{', …' if b['count'] > len(b['first']) else ''})"
            for name, b in files[:3]
        )
        more = f"; {counted(len(files) - 3, 'more file')} too" if len(files) > 3 else ""
        out.print(f"blank lines are no rows (as pandas reads them): {said}{more}", soft_wrap=True)
    resumed = ""
    if result.resumed_chunks:  # the rate is over the rows labelled now
        now = s["rows"] - s["resumed_rows"]
        chunks = counted(result.resumed_chunks, "chunk", thousands=True)
        resumed = (
            f" over the {counted(now, 'row', thousands=True)} labelled now (resumed after {chunks})"
        )
    out.print(
        f"{counted(s['rows'], 'row', thousands=True)} ({s['labelled']:,} labelled, "
        f"{s['errors']:,} with an error) done by model {s['model_version']} "
        f"{label_pace(s)}{resumed}; written to "
        f"{printable(str(result.output))}, summary in {printable(str(result.summary_path))}",
        soft_wrap=True,
    )
    from rich.markup import escape

    for warning in result.warnings:  # escaped: a file name may hold "[...]"
        err.print(
            f"[yellow]warning:[/yellow] {escape(printable(warning))}",
            highlight=False,
            soft_wrap=True,
        )
    note = sample_default_note(model_dir, settings.model_root)
    if note:
        err.print(printable(note), highlight=False, soft_wrap=True)


def sample_default_note(model_dir: Path, root: Path) -> str | None:
    """One line when ``model_dir`` is the default trained from the bundled sample: its labels are
    invented, and staff read its answers as the city's own.

    The command it suggests writes under the model ``root``, named absolutely: ``--out
    models/NAME`` wrote wherever staff happened to be, outside the root, where nothing served it.
    """
    from model.artifact import read_metadata
    from model.resources import is_sample_default

    try:
        if not is_sample_default(read_metadata(model_dir)):
            return None
    except (ModelLoadError, OSError, ValueError, AttributeError):
        return None  # the label or serve run itself says what is wrong with the model
    where = shlex.quote(str(root.resolve()))
    return (
        f"note: model {model_dir.name} is the bundled sample's default, trained on invented "
        f"tickets; train the city's own with paidan train FILE --out {where}/NAME (the model "
        "root, PAIDAN_MODEL_ROOT)"
    )


def ensure_model(settings: Settings, model: Path | None, workers: int = 1) -> Path:
    """The model to serve: ``model``, the root's current one, or a default trained from the sample
    (its process logs as the server does with ``workers``: :func:`serve.server.log_config`)."""
    from model.registry import current_dir, set_current

    if model is not None:
        return model
    current = current_dir(settings.model_root)
    if current is not None:
        return current
    import pickle
    import subprocess
    import tempfile

    from model.resources import sample_path, sample_remits_path

    root = settings.model_root
    # Before the training (a minute or two), which found out only when it wrote the model, naming
    # an --out the operator never gave.
    check_model_root_writable(root)
    sample = sample_path()
    # Lines of the server's log (serve.server.server_log), dated as the others: on stdout, undated,
    # they were the only lines of the log that could not be placed in time.
    logger.info(
        "no model under %s: training the default model from the bundled sample %s first (once)",
        printable(str(root.resolve())),
        sample.name,
    )
    # Trained in a process of its own: in the server's, what training took stayed for the life of
    # the server (458 MB against 248 for the same server restarted, with two of joblib's helper
    # processes beside it), and under --workers N in the supervisor, which serves nothing. A new
    # interpreter, not a fork (a fork of a process with threads can hang on a lock one of them
    # held) nor multiprocessing's spawn (whose resource tracker outlives the child).
    remits = sample_remits_path()
    with tempfile.TemporaryDirectory(prefix="paidan-default-") as tmp:
        outcome_file = Path(tmp) / "outcome.pickle"
        code = subprocess.call(
            [
                sys.executable,
                "-c",
                "import sys; from paidan.cli import _train_default; _train_default(*sys.argv[1:])",
                str(root),
                str(sample),
                "" if remits is None else str(remits),
                str(outcome_file),
                str(workers),
            ]
        )
        if not outcome_file.is_file():  # it died without a word (killed, out of memory)
            raise OSError(
                f"training the default model stopped: its process ended with exit code {code}"
            )
        outcome = pickle.loads(outcome_file.read_bytes())  # written by the child just above
    if isinstance(outcome, BaseException):
        raise outcome
    version, model_dir = outcome
    set_current(root, version)
    logger.info("trained model %s, now the current model under %s", version, printable(str(root)))
    return Path(model_dir)


def check_model_root_writable(root: Path) -> None:
    """Refuse a model root in which no model can be written, naming ``PAIDAN_MODEL_ROOT``.

    Tried with a probe file (:func:`model.artifact.probe_writable`), as
    :func:`model.artifact.check_writable` does.

    Raises
    ------
    OutputPathError
        Naming the variable, the directory and the reason.
    """
    from model.artifact import probe_writable

    try:
        probe_writable(root)
    except OSError as e:
        raise OutputPathError(
            f"PAIDAN_MODEL_ROOT {printable(str(root))} cannot be written: {e.strerror or e}; it "
            "holds no model, so the default model would be trained and written there: name a "
            "directory this user can write, or one holding a model"
        ) from None


def _train_default(
    root: str, sample: str, remits: str, outcome_file: str, workers: str = "1"
) -> None:
    """Train the default model from the bundled sample under ``root``, in a process of its own
    (see :func:`ensure_model`), and write its version and directory, or the exception, to
    ``outcome_file`` as a pickle. It logs as the server it trains for (``workers``)."""
    import logging.config
    import pickle

    from serve.server import log_config

    # Its warnings (a remit of a label no ticket has) are lines of the server's log: Python wrote
    # them bare, in a process whose logging nothing had set up.
    logging.config.dictConfig(log_config(workers=int(workers)))
    logging.captureWarnings(True)

    from model.resources import SAMPLE_MARKER
    from training.train import stop_workers
    from training.train import train as run_train

    outcome: Any
    try:
        with progress_bar() as bar:
            result = run_train(
                [Path(sample)],
                None,
                model_root=Path(root),
                progress=_RichProgress(bar),
                extra_metadata={SAMPLE_MARKER: True},  # a placeholder: see replace_sample_default
                remits=Path(remits) if remits else None,
            )
        outcome = (result.router.version, str(result.model_dir))
    except Exception as e:  # said by the server's process, as it said it before
        outcome = e
    finally:
        stop_workers()  # joblib's, which would outlive the process by a moment
    try:
        data = pickle.dumps(outcome)
    except Exception:  # an exception that does not pickle: its words
        data = pickle.dumps(RuntimeError(str(outcome)))
    Path(outcome_file).write_bytes(data)


def _root_path_option(value: str | None) -> str | None:
    """``--root-path`` as ``PAIDAN_ROOT_PATH`` reads it, refused before anything starts."""
    from model.settings import url_root_path

    try:
        return None if value is None else url_root_path(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command(epilog=BOTH_EPILOG)
def serve(
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model directory under the model root, or a version's name or reported model "
            "version: served pinned, not following current (default: PAIDAN_MODEL_DIR, else the "
            "registry's current model, followed as it changes; --model current follows it too)"
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65_535, help="TCP port")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each loads the model once)")
    ] = 1,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log one line per request: method, PII-masked path, status (default: "
            "PAIDAN_ACCESS_LOG, else on)",
            show_default=False,
        ),
    ] = None,
    root_path: Annotated[
        str | None,
        typer.Option(
            help="Sub-path a reverse proxy publishes the server under and strips, e.g. /paidan "
            "(default: PAIDAN_ROOT_PATH, else none)",
            show_default=False,
            callback=_root_path_option,
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Serve the HTTP API and the dispatcher's page; trains the default model first if there is none."""
    # SIGHUP (reload) before the server's own handlers are installed, at the end of start-up, ended
    # the process (exit 129): a `systemctl reload` during a start took the service down. Ignored
    # until then: the model being loaded is the current one.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from model.registry import names_current
    from serve.auth import check_bind_allowed
    from serve.logs import log_line
    from serve.metrics import multiproc_dir
    from serve.server import describe_database, run, server_log
    from serve.workers import WorkerStartError

    from_env = False  # the model to serve is PAIDAN_MODEL_DIR's
    # Every line from here is the server's log, dated (docs/operations.md, "Logs"); only an
    # `error: …` that stops the start (exit 2) is the command's answer, as every command says one.
    with server_log(workers=workers):
        try:
            settings = load_settings()
            check_unknown_variables()
            # Before the default model is trained (a minute) and the address is announced.
            check_bind_allowed(settings, host)
            multiproc_dir()  # PROMETHEUS_MULTIPROC_DIR: made if missing, refused if it cannot work
            # PAIDAN_MODEL_DIR may name a version under the root too, as --model may: it was read
            # against the working directory and refused as "outside the model root".
            chosen = model if model is not None else settings.model_dir
            from_env = model is None and chosen is not None
            if names_current(chosen):
                chosen = None  # `current`: the root's current model, followed, not pinned
            model = model_path(chosen) if chosen is not None else None
            model_dir = ensure_model(settings, model, workers=workers)
            # An explicitly chosen model stays put (serve.server.run pins it, in --workers
            # processes too); the root's current model follows the pointer.
            settings = settings.model_copy(update={"model_dir": model})
            if root_path is not None:  # checked by _root_path_option
                settings = settings.model_copy(update={"root_path": root_path})

            def announce() -> None:
                # Once the model is verified and the address bound: announced first, the server
                # then said, a line later, that it was not serving. Dated as every line of the
                # server's log (docs/operations.md, "Logs"); not markup (a path may hold "[...]").
                lines = [
                    f"serving {printable(str(model_dir))} on http://{host}:{port} "
                    f"(feedback: {describe_database(settings)})"
                ]
                if note := sample_default_note(model_dir, settings.model_root):
                    lines.append(printable(note))
                for line in lines:
                    err.print(
                        log_line(line, workers),
                        markup=False,
                        emoji=False,
                        highlight=False,
                        soft_wrap=True,
                    )

            # The option, when given, wins over PAIDAN_ACCESS_LOG; its default was a fixed True,
            # which overrode PAIDAN_ACCESS_LOG=false.
            if access_log is None:
                access_log = settings.access_log
            run(
                settings,
                model_dir,
                host=host,
                port=port,
                workers=workers,
                access_log=access_log,
                announce=announce,
            )
        except ModelLoadError as e:
            # Set in a unit file's Environment= line, not typed with the command: "error: …/v7 is
            # not a directory" left the operator to guess where the path came from.
            raise fail(
                ModelLoadError(f"PAIDAN_MODEL_DIR={chosen}: {e}") if from_env else e
            ) from None
        except (*USER_ERRORS, OSError, WorkerStartError) as e:  # OSError: the port cannot be bound
            raise fail(e) from None


db_app = Typer(help="The feedback database.", epilog=FEEDBACK_EPILOG, no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade", epilog=FEEDBACK_EPILOG)
def db_upgrade(verbose: Verbose = False) -> None:
    """Apply the feedback database's migrations (start-up does this too)."""
    from sqlalchemy.engine import make_url

    from serve.db import DatabaseUnavailable, current_revision, revisions, sqlite_path
    from serve.server import describe_database, prepare_database

    try:
        settings = load_settings()
    except USER_ERRORS as e:
        raise fail(e) from None
    url = settings.resolved_database_url
    # What it was before, so that the line says what was done: it said "is at the latest schema
    # revision" after upgrading from 0001, and after creating a new file at a mistyped path.
    file = sqlite_path(make_url(url))
    existed = file is None or file.exists()
    before: str | None = None
    if existed:
        with contextlib.suppress(DatabaseUnavailable):  # prepare_database below says why
            before = current_revision(url)
    problem = prepare_database(settings, say_directory=True)  # the error below says it
    if problem is not None:
        raise _database_failure("migrate", url, problem)
    latest = revisions()[-1]
    where = describe_database(settings)
    if before == latest:
        out.print(f"{where} is at the latest schema revision, {latest}; nothing to do")
    elif not existed:
        out.print(f"created {where} at schema revision {latest}")
    elif before is None:
        out.print(f"{where} had no paidan schema revision; now at {latest}")
    else:
        out.print(f"upgraded {where} from schema revision {before} to {latest}")


def _database_failure(doing: str, url: str, reason: object) -> typer.Exit:
    """The one line the `paidan db` commands print when the database cannot be reached, logged
    into or locked, or is in use (``reason``: :class:`serve.db.DatabaseUnavailable`'s or
    :class:`serve.db.DatabaseInUse`'s, safe to show)."""
    from serve.db import describe_url

    return fail(RuntimeError(f"cannot {doing} {describe_url(url)}: {reason}"))


def _existing_database(settings: Settings) -> str:
    """The feedback database's URL; a SQLite file that does not exist is refused (it is not
    created just to be looked at)."""
    from sqlalchemy.engine import make_url

    from serve.db import describe_url, sqlite_path

    url = settings.resolved_database_url
    file = sqlite_path(make_url(url))
    if file is not None and not file.exists():
        setting = "PAIDAN_DATABASE_URL" if settings.database_url else "PAIDAN_DATA_DIR"
        raise fail(
            RuntimeError(f"the feedback database {describe_url(url)} does not exist ({setting})")
        )
    return url


@db_app.command("downgrade", epilog=FEEDBACK_EPILOG)
def db_downgrade(
    revision: Annotated[
        str, typer.Argument(help="The schema revision to go back to, e.g. 0001", show_default=False)
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Go back though other sessions are connected to the PostgreSQL database "
            "(refused otherwise, naming them): sessions that are not paidan's",
        ),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Take the feedback database back to an earlier schema revision, for an earlier paidan.

    Stop every newer paidan first: its start migrates the database up again.
    """
    from serve.db import DatabaseInUse, DatabaseUnavailable, describe_url, downgrade, lost_below

    try:
        url = _existing_database(load_settings())
        before = downgrade(url, revision, force=force)
    except DatabaseInUse as e:
        raise _database_failure("downgrade", url, e) from None
    except (*USER_ERRORS, ValueError) as e:
        raise fail(e) from None
    except DatabaseUnavailable as e:
        raise _database_failure("downgrade", url, e) from None
    where = describe_url(url)
    if before == revision:
        out.print(f"{where} is at schema revision {revision} already: nothing done", soft_wrap=True)
        return
    out.print(
        f"{where} went back from schema revision {before} to {revision}, rows kept; removed: "
        + "; ".join(lost_below(before, revision)),
        soft_wrap=True,
    )


@db_app.command("current", epilog=FEEDBACK_EPILOG)
def db_current(verbose: Verbose = False) -> None:
    """Print the feedback database's schema revision and the latest this paidan knows."""
    from serve.db import DatabaseUnavailable, current_revision, describe_url, revisions

    try:
        url = _existing_database(load_settings())
        stored = current_revision(url)
    except USER_ERRORS as e:
        raise fail(e) from None
    except DatabaseUnavailable as e:
        raise _database_failure("read", url, e) from None
    known = revisions()
    where = describe_url(url)
    if stored is None:
        out.print(f"{where} has no paidan schema revision yet", soft_wrap=True)
    elif stored == known[-1]:
        out.print(f"{where} is at schema revision {stored}, the latest", soft_wrap=True)
    elif stored in known:
        out.print(
            f"{where} is at schema revision {stored}; the latest is {known[-1]} "
            "(`paidan db upgrade` or the server's start applies it)",
            soft_wrap=True,
        )
    else:
        raise fail(
            RuntimeError(
                f"{where} is at schema revision {stored}, which this paidan does not know "
                f"(its latest is {known[-1]}): a newer paidan migrated it"
            )
        )


# -- registry, retraining and drift (issue 6) ------------------------------------------------------

models_app = Typer(
    help="The model registry: list versions, promote, roll back, delete old ones.",
    epilog=ROOT_EPILOG,
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

# Exit code of a promotion the champion/challenger rule refused (2 is a user error).
EXIT_REFUSED = 3


def _model_root() -> Path:
    return load_settings().model_root


def _feedback_file(settings: Settings) -> list[Path]:
    """The feedback database, when it is a file (SQLite), as a list of zero or one path."""
    from sqlalchemy.engine import make_url

    from serve.db import sqlite_path

    file = sqlite_path(make_url(settings.resolved_database_url))
    return [file] if file is not None else []


def _drift_inputs(settings: Settings, model_dir: Path) -> list[Path]:
    """What ``drift`` reads: the model directory, and the feedback database when it is a file."""
    return [model_dir, *_feedback_file(settings)]


# How check_not_input ends for the directory of a comparison report (retrain, promote).
REPORT_DIR_ADVICE = "name another directory (the report would become part of that input)"


def _version_dirs(root: Path) -> list[Path]:
    """The model directories under ``root``: immutable, so no report may be written into one."""
    from model.registry import versions

    return [root / v for v in versions(root)]


# What retraining reads of a feedback row (training.retrain.feedback_frame); drift reads the
# stored suggestion too, reduced to its auto/review decision as each page is read.
# request_id: a decision also given in a --feedback export is read once (merge_feedback).
RETRAIN_COLUMNS = (
    "ticket_id",
    "title",
    "text",
    "department",
    "category",
    "dispatcher_id",
    "request_id",
)


def _feedback_records(
    settings: Settings, since: datetime | None, with_decision: bool = False
) -> list[dict[str, Any]]:
    """Feedback rows as plain dicts of what retraining reads, oldest first (texts are stored
    PII-masked); with ``with_decision``, ``suggestion`` too, as ``{"decision": auto|review|None}``.

    A SQLite database that does not exist yet holds no feedback: it is not created (with its
    directory and an empty schema) just to be read, as ``retrain`` and ``drift`` used to.
    """
    from sqlalchemy.engine import make_url

    from serve.db import Database, DatabaseUnavailable, describe_url, sqlite_path
    from training.drift import suggestion_decision

    file = sqlite_path(make_url(settings.resolved_database_url))
    if file is not None and not file.exists():
        return []
    columns = (*RETRAIN_COLUMNS, "suggestion") if with_decision else RETRAIN_COLUMNS
    db = Database(settings.resolved_database_url)
    try:
        records = []
        for row in db.iter_columns(columns, _utc(since)):
            if with_decision:
                row["suggestion"] = {"decision": suggestion_decision(row["suggestion"])}
            records.append(row)
        return records
    except DatabaseUnavailable as e:
        # A bare "OperationalError: connection failed ..." named neither the feedback database
        # nor the variable; the job also reads history files and the model registry.
        setting = "PAIDAN_DATABASE_URL" if settings.database_url else "PAIDAN_DATA_DIR"
        raise DatabaseUnavailable(
            f"cannot read feedback from {describe_url(settings.resolved_database_url)} "
            f"({setting}): {e}"
        ) from None
    finally:
        db.dispose()


def _trained_alone(unreadable: str) -> str:
    """The warning of a ``retrain``/``drift`` given ``--feedback`` files whose feedback database
    could not be read (``unreadable``: :func:`_feedback_records`' error): the files are read
    alone."""
    return (
        f"{unreadable}: the decisions of the --feedback files alone are read (any the database "
        "holds that they lack are not); on a machine that never reaches it, leave "
        "PAIDAN_DATABASE_URL unset"
    )


def _print_feedback_source(
    settings: Settings,
    records: int,
    since: datetime | None = None,
    before: int = 0,
    files: tuple[Sequence[Path], int, int] = ((), 0, 0),
    unreached: bool = False,
) -> None:
    """Say which feedback store ``retrain``/``drift`` read (password hidden), and warn when it is a
    SQLite file that does not exist: the documented nightly job (docs/retraining.md) once set only
    PAIDAN_MODEL_ROOT, so on a PostgreSQL install it read the absent default file and said "0 new
    feedback record(s)" every night, exit 0, with nothing naming where it had looked.

    ``files``: the ``--feedback`` export files, how many of their decisions were added, and how
    many the database (or an earlier file) held already; with them, a database file that does
    not exist is no warning (a training machine without the server's database), nor is one
    that could not be read (``unreached``, warned of by :func:`_trained_alone` already)."""
    from sqlalchemy.engine import make_url

    from serve.db import describe_url, sqlite_path

    url = settings.resolved_database_url
    file = sqlite_path(make_url(url))
    paths, added, repeated = files
    if paths:
        held = f" ({repeated} already read)" if repeated else ""
        out.print(
            f"feedback: {added} record(s){held} read from "
            + ", ".join(printable(str(p)) for p in paths),
            soft_wrap=True,
        )
        if unreached or (file is not None and not file.exists()):
            older = f" ({before} older left out)" if before else ""
            window = f" from {window_start(since)} on{older}" if since is not None else ""
            none = "feedback database not reached" if unreached else "no feedback database"
            out.print(f"feedback: {records} record(s){window} in all ({none})")
            return
    if file is not None and not file.exists():
        where = (
            "PAIDAN_DATABASE_URL"
            if settings.database_url
            else "the default, PAIDAN_DATA_DIR/paidan.db; if the server stores feedback elsewhere "
            "(PostgreSQL), give this command the server's PAIDAN_DATABASE_URL or PAIDAN_DATA_DIR"
        )
        err.print(
            f"[yellow]warning:[/yellow] no feedback read: the feedback database "
            f"{printable(str(file))} does not exist ({where})",
            highlight=False,
            soft_wrap=True,
        )
        return
    # The bound as compared, in UTC and as given (window_start), and how many decisions before
    # it were left out: both once went unsaid.
    older = f" ({before} older left out)" if before else ""
    window = f" from {window_start(since)} on{older}," if since is not None else ""
    also = " and the --feedback files" if paths else ""
    out.print(
        f"feedback: {records} record(s){window} read from {describe_url(url)}{also}",
        soft_wrap=True,
    )


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _print_decision(decision: Any, applied: bool = True) -> None:
    from training.compare import interval_cell
    from training.metrics import format_f1

    if decision.comparison is not None:
        table = Table(title=f"challenger {decision.version} vs champion {decision.champion}")
        for col in ("head", "champion macro-F1", "challenger macro-F1", "Δ points", "95% interval"):
            table.add_column(col)
        for head, h in decision.comparison["heads"].items():
            a = h["champion"]
            table.add_row(
                head,
                format_f1(a["macro_f1"]) if a else "–",
                format_f1(h["challenger"]["macro_f1"]),
                # None: no champion head, or a macro-F1 that is undefined.
                "–" if (d := h.get("macro_f1_delta_points")) is None else f"{d:+.1f}",
                # The paired bootstrap's interval of the difference, and what it says of it.
                interval_cell(h.get("macro_f1_delta_interval")),
            )
        out.print(table)
        for note in decision.comparison.get("notes", []):
            err.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
    for reason in decision.reasons if decision.refused else []:
        verdict = "refused" if applied else "would be refused"
        err.print(f"[red]{verdict}:[/red] {reason}", highlight=False, soft_wrap=True)
    if decision.report_paths:
        out.print(
            "comparison report: " + ", ".join(printable(str(p)) for p in decision.report_paths),
            soft_wrap=True,
        )
    # One line, in the order it happened: "promoted v2 to current" followed by "the current
    # model v1 is the default …" read as if v1 were still current.
    if decision.promoted and decision.sample_champion:
        out.print(
            f"promoted {decision.version} to current, replacing {decision.champion}, the default "
            "model trained from the bundled sample, without a comparison",
            soft_wrap=True,
        )
    elif decision.promoted:
        forced = " (forced past the rule)" if decision.forced else ""
        out.print(f"promoted {decision.version} to current{forced}")
    elif decision.sample_champion:  # retrain without --promote-if-better: nothing moved
        out.print(
            f"the current model {decision.champion} is the default trained from the bundled "
            f"sample: {decision.version} would replace it without a comparison (paidan models "
            f"promote {decision.version})",
            soft_wrap=True,
        )


# What `models list` gives up, one step after another, until its table fits the terminal: the
# box, the F1 headers' "F1" (the note under the table says what they are), a column of its own
# for the model version (it goes beside the version's name), the created time's hours, then whole
# columns, the least needed first (a version paidan names is its creation time).
_NARROWER = ("box", "short", "merge", "date", "created", "used", "feedback", "history")
_DROPPED = ("created", "used", "feedback", "history")
_FIGURES = ("history", "feedback", "used", "dept. F1", "cat. F1", "rules")


def _versions_table(title: str, rows: list[dict[str, str]]) -> tuple[Table, bool, list[str]]:
    """The `models list` table of ``rows`` (column → cell), as wide as the terminal lets it be.

    Every version reads on one line with its figures whole: at 80 columns the table folded every
    column but the version's ("creat/ed", "curren/t", a created time over four lines).
    Returns the table, whether the F1 headers lost their "F1", and the columns left out.
    """
    from rich import box
    from rich.measure import Measurement

    for step in range(len(_NARROWER) + 1):
        done = _NARROWER[:step]
        left_out = [c for c in _DROPPED if c in done]
        cells = [{c: v for c, v in row.items() if c not in left_out} for row in rows]
        if "merge" in done:
            for row in cells:
                if (reported := row.pop("model version", None)) is not None:
                    row["version"] += f" ({reported})" if reported else ""
        if "date" in done:
            for row in cells:
                if "created" in row:
                    row["created"] = row["created"][:10]
        if "box" in done:
            table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
            table.padding = (0, 1, 0, 0)  # the box's blank separator and this: two spaces
        else:
            table = Table(title=title)
        columns = list(cells[0])
        for col in columns:
            header = col
            if col == "version" and "model version" in rows[0] and "merge" in done:
                header = "version (model version)"
            elif col in ("dept. F1", "cat. F1") and "short" in done:
                header = col.removesuffix(" F1")
            elif col == "created":
                header = "UTC date" if "date" in done else "created (UTC)"
            justify: JustifyMethod = "right" if col in _FIGURES else "left"
            table.add_column(header, overflow="fold", justify=justify)
        for row in cells:
            table.add_row(*row.values())
        # Its natural width (measured against the terminal's, rich gives what it would fold to).
        natural = out.options.update_width(sys.maxsize)
        if Measurement.get(out, natural, table).maximum <= out.width:
            break
    # Versions are copied into other commands: whole on one line. The rest fold only when even
    # the narrowest table is too wide (rather than lose digits, or "current").
    for column in table.columns:
        column.no_wrap = "version" in str(column.header)
    return table, "short" in done, left_out


def _created_utc(created: str | None) -> str:
    """A version's creation time in UTC, to the minute (which tells versions apart): unlabelled,
    a centre in UTC+8 read the nightly retrain of 02:30 as created the evening before."""
    try:
        return f"{as_utc(datetime.fromisoformat(str(created))):%Y-%m-%d %H:%M}"
    except ValueError:  # not a time (a hand-edited metadata.json): as it is written
        return (created or "?")[:16].replace("T", " ")


@models_app.command("list", epilog=ROOT_EPILOG)
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list")] = False,
    rescore: Annotated[
        bool,
        typer.Option(
            help="First score on the frozen set the versions not scored on it, or scored by an "
            "older paidan's rule (stale)"
        ),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """List versions: created, training rows per source, frozen-set macro-F1, which is current."""
    from model.registry import frozen_eval_info, list_versions
    from training.compare import (
        PromotionError,
        ensure_scores,
        interval_text,
        read_frozen_eval,
        same_truth_scores,
        sample_default,
    )
    from training.metrics import format_f1

    # With --rescore: per version, its difference from the current model with its interval.
    versus: dict[str, dict[str, Any]] = {}

    def same_truth(versions: list[str]) -> dict[str, dict[str, Any]]:
        # The comparison's figures (one scoring for both): each taxonomy's versions on the same
        # true labels. A version that cannot be loaded for it keeps its own scores' figure.
        try:
            return same_truth_scores(root, versions)
        except (ModelLoadError, PromotionError) as e:  # PromotionError: a frozen set changed
            err.print(f"[yellow]warning:[/yellow] {e}", highlight=False, soft_wrap=True)
            return {}

    try:
        root = _model_root()
        infos = list_versions(root, same_truth)
        if rescore and infos:
            eval_set = read_frozen_eval(root)
            for i in infos:
                if i.stale or not i.metrics:
                    try:
                        ensure_scores(root, i.version, eval_set=eval_set)
                    except ModelLoadError as e:  # a damaged version: list the others
                        err.print(f"[yellow]warning:[/yellow] {e}", highlight=False, soft_wrap=True)
            infos = list_versions(root, same_truth)
            versus = _versus_current(root, infos, eval_set)
    except (*USER_ERRORS, PromotionError, OSError) as e:  # OSError: a file that cannot be read
        raise fail(e) from None
    samples = {i.version for i in infos if sample_default(root, i.version)}
    if as_json:
        rows = [
            {
                **i.to_dict(),
                "bundled_sample": i.version in samples,
                **({"vs_current": versus[i.version]} if i.version in versus else {}),
            }
            for i in infos
        ]
        write_json(rows)
        return
    if not infos:
        # Whole commands: "paidan train --out" runs as written nowhere, and train writes under
        # the root without --out.
        out.print(
            f"no model versions under {printable(str(root))} yet: train the first with paidan "
            "train FILE (FILE: your labelled tickets; it becomes the current model), or paidan "
            "retrain --history FILE",
            soft_wrap=True,
        )
        return
    frozen = frozen_eval_info(root)
    # The version answers, feedback rows and the page report, where it is not the directory's name
    # (`train --out ROOT/v1`): listed as v1 only, a feedback row's version could not be found here.
    renamed = any(i.model_version not in (None, i.version) for i in infos)
    rows = []
    for i in infos:
        # Scored by an older paidan's rule: not listed beside this one's figures.
        none = "stale" if i.stale else "–"
        metrics = i.metrics
        rows.append(
            {
                "version": i.version,
                "model version": i.model_version
                if i.model_version not in (None, i.version)
                else "",
                "created": _created_utc(i.created),
                "history": str(i.rows.get("history", 0)),
                "feedback": str(i.rows.get("feedback", 0)),
                # The rows the fit used: "history 606" of a history with 6 repeated tickets
                # read as 606 trained.
                "used": str(i.rows_used) if i.rows_used is not None else "?",
                "dept. F1": format_f1(metrics["department_macro_f1"])
                if "department_macro_f1" in metrics
                else none,
                "cat. F1": format_f1(metrics["category_macro_f1"])
                if "category_macro_f1" in metrics
                else none,
                # How many dispatch rules: versions written by `models set-rules` differ in their
                # rules alone (--json names the version each was written from).
                "rules": str(i.rules) if i.rules else "–",
                "": " ".join(
                    mark
                    for mark, shown in (
                        ("current", i.current),
                        ("previous", i.previous and not i.current),
                        ("(bundled sample)", i.version in samples),
                    )
                    if shown
                ),
            }
        )
    if not renamed:
        for row in rows:
            del row["model version"]
    if not any(i.rules or i.derived_from for i in infos):
        for row in rows:
            del row["rules"]
    if all(i.rows_used in (None, sum(i.rows.values())) for i in infos):
        for row in rows:
            del row["used"]  # every version used all its rows (or does not say)
    table, short, left_out = _versions_table(f"models under {printable(str(root))}", rows)
    out.print(table)
    if left_out:
        out.print(
            f"not shown at this width: {', '.join(left_out)} (a wider terminal, or --json, "
            "shows every column)",
            soft_wrap=True,
        )
    if frozen:
        rows_frozen = frozen.get("rows")
        frozen_rows = (
            counted(rows_frozen, "ticket") if isinstance(rows_frozen, int) else "? tickets"
        )
        note = (
            f"macro-F1 on the frozen evaluation set ({frozen_rows}, "
            f"{frozen.get('source', '?')}), over the same labels for every version"
        )
    else:
        note = "no frozen evaluation set yet (paidan models freeze-eval DATA, or paidan retrain)"
    if short:  # the F1 headers read "dept." and "cat."
        note = f"dept., cat.: {note}" if frozen else f"dept., cat.: macro-F1; {note}"
    out.print(note, soft_wrap=True)
    if renamed:
        out.print(
            "model version: the version the answers, feedback rows and the page report, where it "
            "is not the directory's name; commands take either",
            soft_wrap=True,
        )
    _trained_on_frozen(infos)
    unscored = [i.version for i in infos if i.seen_eval_rows is None and not i.stale]
    if frozen and unscored:
        # Its seen_eval_rows read 0 (in --json): as if it had seen none of the frozen tickets.
        them = "it" if len(unscored) == 1 else "them"
        out.print(
            f"not scored on the frozen set yet: {', '.join(map(printable, unscored))} (F1 –, "
            "and how many frozen tickets "
            f"{'it was' if them == 'it' else 'they were'} trained on is not known); "
            f"`paidan models list --rescore` scores {them}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
    current = next((i.version for i in infos if i.current), None)
    for version, heads in versus.items():
        said = "; ".join(f"{head} {interval_text(v)}, {v['verdict']}" for head, v in heads.items())
        out.print(f"{version} vs current {current}: {said}", soft_wrap=True, highlight=False)
    for i in infos:
        if i.missing_files:
            err.print(
                f"[yellow]warning:[/yellow] {printable(i.version)} lacks "
                f"{', '.join(i.missing_files)} (a copy cut short, or still running?): it cannot "
                f"be served or promoted until {'it is' if len(i.missing_files) == 1 else 'they are'} "
                "there",
                highlight=False,
                soft_wrap=True,
            )
    stale = [i.version for i in infos if i.stale]
    if stale:
        out.print(
            f"stale: {counted(len(stale), 'of the versions was', 'of the versions were')} "
            "scored by an older paidan, whose macro-F1 is not comparable; "
            "`paidan models list --rescore` scores them again",
            soft_wrap=True,
        )


def _versus_current(
    root: Path, infos: list[VersionInfo], eval_set: Any
) -> dict[str, dict[str, Any]]:
    """Per scored version other than the current one, each head's macro-F1 difference from the
    current model with its paired bootstrap interval (training.compare.paired_intervals)."""
    from training.compare import paired_intervals

    current = next((i.version for i in infos if i.current and i.metrics), None)
    found: dict[str, dict[str, Any]] = {}
    for i in infos if current else []:
        if i.version == current or not i.metrics or i.stale:
            continue
        try:
            if heads := paired_intervals(root, str(current), i.version, eval_set):
                found[i.version] = heads
        except ModelLoadError as e:  # a damaged version: the others still get theirs
            err.print(f"[yellow]warning:[/yellow] {e}", highlight=False, soft_wrap=True)
    return found


def _trained_on_frozen(infos: list[VersionInfo]) -> None:
    """Name the listed versions trained on more than a few of the frozen tickets.

    Their figures are inflated (the first ``train`` on the whole history, the set frozen from it
    by the first ``retrain``): promote's comparison says so, and the list beside it says so too.
    """
    from training.evaluate import SEEN_SHARE_LIMIT

    for i in infos:
        seen = i.seen_eval_rows
        if i.metrics and seen is not None and seen > SEEN_SHARE_LIMIT * max(1, i.eval_rows):
            out.print(
                f"{i.version} was trained on {seen} of the "
                f"{counted(i.eval_rows, 'frozen evaluation ticket')}, so its figures are inflated",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )


@models_app.command("promote", epilog=ROOT_EPILOG)
def models_promote(
    version: Annotated[
        str,
        typer.Argument(
            help="The version to make current, as `models list` lists it, or the model version "
            "its answers report"
        ),
    ],
    force: Annotated[
        bool, typer.Option(help="Promote even when the challenger is worse than the champion")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(help="Directory for the comparison report (default: <root>/reports)"),
    ] = None,
    promotion_rule: PromotionRule = PromotionRuleName.bootstrap,
    verbose: Verbose = False,
) -> None:
    """Make VERSION current unless it is worse than the current model on the frozen set."""
    from model.registry import resolve_version
    from training.compare import PromotionError, promote_checked

    try:
        root = _model_root()
        # As `models list` lists it, or the model version the answers and feedback rows report.
        named, version = version, resolve_version(root, version)
        if version != named and len(Path(named).parts) == 1:  # not a path to it
            err.print(
                f"model version {printable(named)} is version {printable(version)}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        if report is not None:
            check_writable(report, "--report", directory=True)  # as retrain checks it
            # Written into a version, the report changed a model directory meant to be immutable.
            check_not_input([report], _version_dirs(root), "--report", REPORT_DIR_ADVICE)
        decision = promote_checked(
            root, version, force=force, report_dir=report, rule=promotion_rule.value
        )
    except (*USER_ERRORS, PromotionError, OSError) as e:  # OSError: a full disk, a permission
        raise fail(e) from None
    _print_decision(decision)
    if not decision.promoted and decision.reasons == ["already current"]:
        out.print(f"{version} is already current")
    elif not decision.promoted:
        err.print("promotion refused; pass --force to promote anyway")
        raise typer.Exit(EXIT_REFUSED)


@models_app.command("set-rules", epilog=ROOT_EPILOG)
def models_set_rules(
    version: Annotated[
        str,
        typer.Argument(
            help="The version whose model the new one applies, as `models list` lists it, or "
            "current"
        ),
    ],
    rules: Annotated[
        list[Path] | None,
        typer.Option(
            help="Dispatch rules for the new version, as for train, repeated for several files"
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Write the new version without any dispatch rule")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Write a new version of VERSION's model with other dispatch rules, without training again.

    Promote it to serve it; VERSION is left as it is."""
    from model.registry import current_version, reported_version, resolve_version, versions
    from training.rules import with_rules

    if bool(rules) == clear:
        raise fail(
            ValueError(
                "give the new rules with --rules FILE (repeated for several files), or --clear "
                "for a version without rules, not both"
                if rules
                else "give the new rules with --rules FILE (repeated for several files), or "
                "--clear for a version without rules"
            )
        )
    try:
        root = _model_root()
        if version == "current":
            named = current_version(root)
            if named is None:
                raise ModelLoadError(f"no model under {root}; train one first")
            version = named
        else:
            version = resolve_version(root, version)
        before = set(versions(root))
        written = with_rules(root, version, rules)
    except (*USER_ERRORS, OSError) as e:
        raise fail(e) from None
    if written.name == version:
        out.print(
            f"{version} applies "
            + ("these dispatch rules" if rules else "no dispatch rule")
            + " already: nothing written",
            soft_wrap=True,
        )
        return
    meta = json.loads((written / "metadata.json").read_text(encoding="utf-8"))
    derived = meta.get("derived_from")
    # derived_from records the model version, which `train --out models/v1` does not name v1.
    names = {version, reported_version(root / version)}
    if written.name in before and not (
        isinstance(derived, dict) and derived.get("version") in names
    ):
        # An earlier version that set-rules derived VERSION from: it serves these rules as it is.
        promote = (
            f"{written.name} is the current model"
            if current_version(root) == written.name
            else f"promote it with: paidan models promote {written.name}"
        )
        out.print(
            f"{version} was derived from {written.name}, which applies "
            + ("these dispatch rules" if rules else "no dispatch rule")
            + f" already: nothing written; {promote}",
            soft_wrap=True,
        )
        return
    if written.name in before:
        out.print(
            f"{written.name} is the model of {version} with "
            + ("these dispatch rules" if rules else "no dispatch rule")
            + f" already: nothing written; promote it with: paidan models promote {written.name}",
            soft_wrap=True,
        )
        return
    said = meta["training_data"].get("rules")
    out.print(
        f"wrote {written.name}: the model of {version}, which "
        + (rules_line(said, merged_of(meta)) if said else "applies no dispatch rule"),
        soft_wrap=True,
    )
    out.print(f"promote it with: paidan models promote {written.name}", soft_wrap=True)


@models_app.command("rollback", epilog=ROOT_EPILOG)
def models_rollback(
    to_bundled_sample: Annotated[
        bool,
        typer.Option(
            help="Roll back even when the version before is the default model trained from the "
            "bundled sample (invented tickets)"
        ),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Point current back at the version that was current before it."""
    from model.registry import rollback
    from training.compare import sample_default

    try:
        root = _model_root()
        was, now = rollback(root, to_sample=to_bundled_sample)
    except (*USER_ERRORS, OSError) as e:  # OSError: a full disk, a permission
        raise fail(e) from None
    sample = (
        ", the default model trained from the bundled sample (invented tickets)"
        if sample_default(root, now)
        else ""
    )
    out.print(f"rolled back: current is {now} again (was {was}){sample}", soft_wrap=True)


@models_app.command("gc", epilog=ROOT_EPILOG)
def models_gc(
    keep: Annotated[
        int,
        typer.Option(
            min=1,
            help="How many of the newest versions to keep (of those the registry wrote: a "
            "directory it did not write is never deleted, nor counted)",
        ),
    ],
    verbose: Verbose = False,
) -> None:
    """Delete old versions; current, the one before it and those being served are always kept."""
    from model.registry import gc, leftovers, named_models

    try:
        root = _model_root()
        removed, in_use = gc(root, keep)
        kept = named_models(root)
    except (*USER_ERRORS, OSError) as e:  # OSError: a full disk, a permission
        raise fail(e) from None
    out.print(f"deleted {len(removed)} version(s)" + (": " + ", ".join(removed) if removed else ""))
    if kept:
        # Named one by one in a warning with its reason on every run, they were noise that hid
        # the real leftovers (a copy cut short), which gc still warns of.
        out.print(
            f"left alone {counted(len(kept), 'model')} that train --out or a copy wrote: "
            f"{', '.join(printable(v) for v in kept)} (gc never deletes one; rm -r "
            f"{shlex.quote(printable(str(root)))}/NAME does)",
            highlight=False,
            soft_wrap=True,
        )
    if in_use:
        out.print(
            f"kept {len(in_use)} version(s) in use by a running paidan serve, label or predict: "
            f"{', '.join(in_use)}",
            soft_wrap=True,
        )
    if left := leftovers(root):
        # A killed write's staging directory is a whole model's size, which gc is run to free.
        named = ", ".join(
            printable(str(path)) + (f" ({size / 1e6:,.0f} MB)" if size >= 1e6 else "")
            for path, size in left
        )
        err.print(
            f"[yellow]warning:[/yellow] {counted(len(left), 'leftover')} of a model or registry "
            f"write that was killed (kill -9, out of memory, a power cut): {named}; once no paidan "
            f"train, retrain or models command is running, delete {'it' if len(left) == 1 else 'them'}: "
            f"rm -r {' '.join(shlex.quote(printable(str(path))) for path, _ in left)}",
            highlight=False,
            soft_wrap=True,
        )


@models_app.command("freeze-eval", epilog=ROOT_EPILOG)
def models_freeze_eval(
    data: Annotated[list[Path], typer.Argument(help=f"Labelled ticket files to freeze {READS}")],
    force: Annotated[bool, typer.Option(help="Replace an existing frozen set")] = False,
    text_col: TextCol = None,
    title_col: TitleCol = None,
    id_col: IdCol = None,
    department_col: DeptCol = None,
    category_col: CatCol = None,
    delimiter: Delimiter = None,
    verbose: Verbose = False,
) -> None:
    """Store a fixed evaluation set in the registry; every version is scored on it."""
    from model.registry import EVAL_DATA_FILE, EVAL_DIR
    from training.retrain import freeze_eval_files, unscorable_heads
    from training.validate import duplicates_message

    try:
        root = _model_root()
        stored = (root / EVAL_DIR / EVAL_DATA_FILE).resolve()
        if data and all(path.resolve() == stored for path in data):
            # The stored set itself (docs/retraining.md: freezing it again under this paidan's
            # rules) holds paidan's own column names: PAIDAN_TEXT_COL and its siblings, set for
            # the centre's exports, named columns it does not have. An option given still wins.
            columns = input_columns(
                delimiter,
                text_col or "text",
                title_col or "title",
                id_col or "id",
                department_col or "department",
                category_col or "category",
            )
        else:
            columns = input_columns(
                delimiter, text_col, title_col, id_col, department_col, category_col
            )
        headers: dict[str, list[str]] = {}
        info = freeze_eval_files(root, data, columns, force=force, headers=headers)
    except (*USER_ERRORS, ValueError, OSError) as e:  # OSError: a full disk, a permission
        raise fail(e) from None
    out.print(
        f"froze {counted(info['rows'], 'ticket')} (SHA-256 {info['sha256'][:12]}…) "
        f"from {info['source']}"
    )
    skipped = info["left_out"]
    if skipped["without_label"] or skipped["without_text"]:
        err.print(
            f"left out {counted(skipped['without_label'], 'row')} without a label and "
            f"{skipped['without_text']} without text"
        )
    if skipped.get("repeated"):
        err.print(
            "[yellow]warning:[/yellow] "
            + duplicates_message(
                info.get("repeated_examples", []),
                skipped["repeated"],
                info.get("files_read_twice"),
            ),
            highlight=False,
            soft_wrap=True,
        )
    current, missing = unscorable_heads(root, info)
    if current is None:
        err.print(
            f"[yellow]note:[/yellow] no model under {root} yet; versions trained there will be "
            "scored on this set",
            highlight=False,
            soft_wrap=True,
        )
        # No model to tell which heads the set must score: a set without a head's labels (its
        # column under another name) was frozen with the note alone, and every challenger with
        # that head trained here later was refused.
        rows = info.get("label_rows") or {}
        missing = [head for head in LABELS if not rows.get(head)]
    for head in missing:
        # The file's own columns, when the head's is not among them (as train says it).
        src = columns.source_for(head)
        lacking = [
            (n, cols)
            for n, cols in headers.items()
            if src is not None and not any(c in cols for c in columns.names(head))
        ]
        why = ""
        if lacking and len(lacking) == len(headers):
            name, cols = lacking[0]
            like = like_hint(head, cols, columns)
            why = (
                f": no column {quoted(src or head)} in {name}, which has columns "
                f"{', '.join(map(quoted, cols))}" + (f" ({like})" if like else "")
            )
        # Accepted without a word, such a set let promotion compare the other head alone.
        whose = (
            f", but the current model {current} has a {head} head: `paidan models promote` and "
            "`retrain --promote-if-better` will refuse every challenger"
            if current is not None
            else f"; a model with a {head} head trained under this root will have every "
            "challenger refused"
        )
        err.print(
            f"[yellow]warning:[/yellow] the set has no {head} labels{why}{whose} (unless "
            f"--force) until a set with {head} labels is frozen (`paidan models freeze-eval DATA "
            "--force`)",
            highlight=False,
            soft_wrap=True,
        )


@app.command(epilog=BOTH_EPILOG)
def retrain(
    history: Annotated[
        list[Path],
        typer.Option(
            "--history",
            help="Labelled history files or directories; repeat it for several",
        ),
    ],
    feedback_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--feedback",
            metavar="FILE",
            help="A saved feedback export (GET /v1/feedback, JSON Lines) whose decisions to "
            "train, beside the feedback database's, each read once; repeat it for several",
        ),
    ] = None,
    feedback_since: Annotated[
        datetime | None,
        typer.Option(
            parser=time_bound,
            metavar="TIME",
            help="Use feedback from this date on (without a zone: in --timezone)",
        ),
    ] = None,
    history_since: Annotated[
        datetime | None,
        typer.Option(
            parser=time_bound,
            metavar="TIME",
            help="Use the history from this time on (without a zone: in --timezone; every "
            "history row needs a time)",
        ),
    ] = None,
    history_max_rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Use the newest this many history rows (by time, or the last rows when there "
            "are no times)",
        ),
    ] = None,
    if_new_feedback: Annotated[
        int | None,
        typer.Option(
            min=0, help="Do nothing unless this many feedback rows are newer than current"
        ),
    ] = None,
    promote_if_better: Annotated[
        bool, typer.Option(help="Promote the challenger when the promotion rule allows it")
    ] = False,
    mapping: Annotated[
        Path | None,
        typer.Option(help="CSV with columns old,new[,head]: labels renamed at training time"),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="With --promote-if-better: promote even when refused")
    ] = False,
    promotion_rule: PromotionRule = PromotionRuleName.bootstrap,
    again: Annotated[
        bool,
        typer.Option(
            help="Train even when a registered version was trained on the same data and config"
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(help="Directory for the comparison report (default: <root>/reports)"),
    ] = None,
    unlabelled: Annotated[
        list[Path] | None,
        typer.Option(
            help="Unlabelled ticket files that widen the vocabulary (as for train, repeated for "
            "several files; the current model's are not reused)"
        ),
    ] = None,
    fit_only: Annotated[
        list[Path] | None,
        typer.Option(
            "--fit-only",
            help="Labelled ticket files learnt from but never scored, as for train, repeated "
            "for several files (the current model's are not reused)",
        ),
    ] = None,
    remits: Annotated[
        list[Path] | None,
        typer.Option(
            help="Remits to teach the challenger, as for train, repeated for several files "
            "(default: the current model's)"
        ),
    ] = None,
    rules: Annotated[
        list[Path] | None,
        typer.Option(
            help="Dispatch rules for the challenger to apply, as for train, repeated for several "
            "files (default: the current model's)"
        ),
    ] = None,
    text_col: TextCol = None,
    title_col: TitleCol = None,
    id_col: IdCol = None,
    department_col: DeptCol = None,
    category_col: CatCol = None,
    time_col: TimeCol = None,
    timezone: Timezone = None,
    delimiter: Delimiter = None,
    jobs: TrainJobs = None,
    verbose: Verbose = False,
) -> None:
    """Train a challenger on history plus dispatchers' corrections and register it."""
    from rich.markup import escape

    from model.registry import RetrainRunningError, retrain_lock
    from serve.db import DatabaseUnavailable
    from training.compare import PromotionError
    from training.retrain import (
        FeedbackFileError,
        MappingFileError,
        foreign_exports,
        merge_feedback,
        read_feedback_exports,
        read_mapping,
        split_feedback,
    )
    from training.retrain import retrain as run_retrain
    from training.window import Window, describe

    restore_sigterm: Callable[[], None] | None = None
    try:
        settings = load_settings()
        if report is not None:
            check_writable(report, "--report", directory=True)  # before the training it would waste
            # Written into a --history directory, the report's JSON was read as a ticket file by
            # the next retrain, which stopped; a version directory is meant to be immutable.
            check_not_input(
                [report],
                [
                    *history,
                    *(feedback_files or []),
                    *(unlabelled or []),
                    *(fit_only or []),
                    *([mapping] if mapping else []),
                    *(remits or []),
                    *(rules or []),
                    *_feedback_file(settings),
                    *_version_dirs(settings.model_root),
                ],
                "--report",
                REPORT_DIR_ADVICE,
            )
        renames = read_mapping(mapping) if mapping else None
        zone = zone_of(timezone)
        feedback_since = in_zone(feedback_since, zone)
        # All of them: the decisions before --feedback-since are counted and dated in a warning,
        # with the history tickets they corrected (dropped by the query, they went unsaid).
        # The exports first: a bad line is refused before the database is read.
        exported = read_feedback_exports(feedback_files or [])
        try:
            records, unreached = _feedback_records(settings, None), False
        except DatabaseUnavailable as e:
            # A training machine that cannot reach the server's database (its settings file
            # copied, the database behind a firewall) stopped here, the export it was given for
            # that very case unread: the exports are trained alone, and that is said.
            if not feedback_files:
                raise
            records, unreached = [], True
            say_all([escape(printable(_trained_alone(str(e))))])
        # Where the server's database is out of reach (another host, an air gap): its export.
        records, repeated = merge_feedback(records, exported.records)
        recent, older = split_feedback(records, feedback_since)
        # Said before the long fit: a run that fails or is killed during it named nothing it read.
        _print_feedback_source(
            settings,
            len(recent),
            feedback_since,
            len(older),
            files=(feedback_files or [], len(exported.records) - repeated, repeated),
            unreached=unreached,
        )
        say_all(exported.warnings)
        # Said before the fit, beside the new labels it would explain.
        say_all(escape(printable(w)) for w in foreign_exports(settings.model_root, records))
        columns = input_columns(
            delimiter, text_col, title_col, id_col, department_col, category_col, time_col
        )
        registry_before = _registry_state(settings.model_root)
        restore_sigterm = stop_on_sigterm()  # a SIGTERM stops it as Ctrl-C does, and is said
        with retrain_lock(settings.model_root), progress_bar() as bar:
            result = run_retrain(
                history,
                records,
                settings.model_root,
                columns,
                mapping=renames,
                if_new_feedback=if_new_feedback,
                promote_if_better=promote_if_better,
                force=force,
                report_dir=report,
                progress=_RichProgress(bar, lines=True),
                n_jobs=jobs or -1,
                window=Window(history_since, history_max_rows, zone),
                on_window=lambda info: print_during(bar, f"history {describe(info)}"),
                unlabelled=unlabelled or [],
                remits=remits,
                rules=rules,
                feedback_since=feedback_since,
                # Said before the fit, as train says them: a nightly run killed during it
                # named none of the repeated tickets or conflicting labels it had found.
                on_warnings=say_all,
                again=again,
                fit_only=fit_only,
                rule=promotion_rule.value,
                feedback_files=exported.files,
            )
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        # It ended with an empty stderr, exit 130 (killed outright by SIGTERM), leaving the
        # administrator to guess whether a challenger was written or current moved.
        said, status = stopped_by(e)
        err.print(
            printable(_retrain_stopped(settings.model_root, registry_before, said)),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(status) from None
    except (
        *USER_ERRORS,
        MappingFileError,
        FeedbackFileError,
        DatabaseUnavailable,
        PromotionError,
        RetrainRunningError,
        ValueError,
        OSError,  # a registry file that cannot be written (a full disk), as `models promote` says
    ) as e:
        raise fail(e) from None  # PromotionError: a frozen set changed since it was frozen
    finally:
        if restore_sigterm is not None:
            restore_sigterm()
    if result.skipped:
        out.print(result.message, soft_wrap=True)  # one line in the nightly job's log
        if result.decision is not None:  # a version of the same data, compared as a challenger
            _print_decision(result.decision, applied=True)
            if not result.decision.promoted:
                err.print(f"{result.version} stays registered but not current")
                raise typer.Exit(EXIT_REFUSED)
        return
    assert result.train is not None
    # Labels as the history files and the mapping file write them: quoted masked, as every label
    # retrain quotes (a department typed with a grid worker's phone number).
    for head, kept in result.inherited.items():
        for old, new in kept.items():
            now = result.mapping.get(head, {}).get(old, old)
            note = (
                ""
                if now == new
                else f" (now {mask_label(old)} → {mask_label(now)})"
                if now != old
                else " (undone now)"
            )
            out.print(
                "inherited rename from the current model: "
                f"{head} {mask_label(old)} → {mask_label(new)}{note}"
            )
    for head, labels in result.mapped.items():
        for old, n in labels.items():
            new = result.mapping[head][old]
            out.print(f"mapped {n} {head} row(s) {mask_label(old)} → {mask_label(new)}")
    fb = result.feedback
    out.print(
        f"training rows: {result.rows.get('history', 0)} history + {result.rows.get('feedback', 0)} "
        f"feedback{used_of(result.rows, result.train.validation.rows_used)} ({counted(fb.records, 'feedback record')} for {counted(fb.tickets, 'ticket')}, "
        f"{fb.superseded} superseded by a later decision, "
        # Said only when it happened: most stores carry every decision's ticket id.
        + (
            counted(
                fb.unnumbered_merged,
                "decision without a ticket id merged into its ticket (same text)",
                "decisions without a ticket id merged into their tickets (same text)",
            )
            + ", "
            if fb.unnumbered_merged
            else ""
        )
        + f"{counted(fb.replaced_history, 'history row')} replaced); "
        + frozen_left_out(result.eval_tickets_excluded, result.eval_excluded - fb.on_frozen)
        # A decision on a frozen ticket is left out with it, counted apart: "161 frozen tickets"
        # of a set of 159 read as a miscount.
        + (f" and {counted(fb.on_frozen, 'feedback decision')} on them" if fb.on_frozen else "")
        + " left out",
        soft_wrap=True,
    )
    if rules_read := result.train.metadata["training_data"].get("rules"):
        out.print(rules_line(rules_read, merged_of(result.train.metadata)), soft_wrap=True)
    if borrowed := result.train.metadata["training_data"].get("fit_only"):
        out.print(fit_only_line(borrowed, result.train.metadata["heads"]), soft_wrap=True)
    if result.eval_frozen_now:
        out.print("froze the evaluation set from the history (first retrain)")
    out.print(printable(result.message), soft_wrap=True)
    if result.decision is not None:
        _print_decision(result.decision, applied=promote_if_better)
        # The registry's first model is current without a promotion, with --promote-if-better
        # too: nothing was refused.
        first = result.decision.champion == result.version
        if promote_if_better and not result.decision.promoted and not first:
            err.print("the challenger stays registered but not current")
            raise typer.Exit(EXIT_REFUSED)
        if first:  # a hint to promote it would mislead
            out.print(f"{result.version} is current: it is the only model in the registry")
        elif result.decision.refused and not result.decision.promoted:
            # `models promote` would refuse it for the same reasons and exit 3. Forced past the
            # refusal (--promote-if-better --force) it is current, as the line above says.
            out.print(
                f"{result.version} stays registered but not current; to serve it despite the "
                f"refusal: paidan models promote {result.version} --force",
                soft_wrap=True,
            )
        elif not promote_if_better:
            out.print(f"promote it with: paidan models promote {result.version}")


def _registry_state(root: Path) -> tuple[list[str], str | None, bool] | None:
    """The versions, the current one and whether a frozen set exists, before a retrain; ``None``
    when the registry cannot be read (the retrain then says why)."""
    from model.registry import current_version, frozen_eval_info, versions

    try:
        return versions(root), current_version(root), frozen_eval_info(root) is not None
    except (ModelLoadError, OSError):
        return None


def _retrain_stopped(
    root: Path, before: tuple[list[str], str | None, bool] | None, said: str
) -> str:
    """The line a stopped retrain ends with: whether it wrote a challenger, where current is,
    whether the evaluation set it froze stays, and what to run next."""
    from model.registry import current_version, frozen_eval_info, versions

    try:
        now, current, frozen = versions(root), current_version(root), frozen_eval_info(root)
    except (ModelLoadError, OSError):
        return f"{said}; see paidan models list for what it left in the registry"
    if before is None:
        return f"{said}; see paidan models list for what it left in the registry"
    old, old_current, was_frozen = before
    where = (
        f"current is still {current}"
        if current == old_current and current is not None
        else "there is still no current model"
        if current is None
        else f"current is now {current} (was {old_current})"
    )
    new = [v for v in now if v not in old]
    if not new:
        line = (
            f"{said} before a challenger was written: no model was added to the registry; {where}"
        )
    elif current in new:
        line = f"{said} after the challenger {current} was written and made current ({where})"
    else:
        line = (
            f"{said} after the challenger {new[-1]} was written, before it was compared with the "
            f"current model; {where}; compare and promote it with: paidan models promote {new[-1]}"
        )
    if frozen is not None and not was_frozen:
        line += (
            f"; the evaluation set it froze ({frozen.get('source', 'eval/frozen.parquet')}) stays: "
            "the next retrain is scored on it"
        )
    return line


def used_of(rows: dict[str, int], used: int) -> str:
    """The text ", N used" when the fit used fewer than the ``rows`` given (repeated tickets,
    rows without text dropped by validation), else nothing."""
    return f", {used} used" if used != sum(rows.values()) else ""


def window_start(since: datetime) -> str:
    """``--since`` as the bound the records are compared with: in UTC, with its time unless it is
    midnight, and as given when it had another offset.

    The title showed ``{since:%Y-%m-%d}``, the date as typed: ``2026-06-01T06:00:00+08:00`` (from
    2026-05-31 22:00 UTC) and ``2026-06-01 18:00`` both read "drift since 2026-06-01".
    """
    utc = as_utc(since)
    clock = "" if utc.time() == datetime.min.time() else f" {utc:%H:%M:%S}"
    given = (
        f" ({since.isoformat()})"
        if since.tzinfo is not None and since.utcoffset() != timedelta(0)
        else ""
    )
    return f"{utc:%Y-%m-%d}{clock} UTC{given}"


@app.command(epilog=BOTH_EPILOG)
def drift(
    since: Annotated[
        datetime,
        typer.Option(
            parser=time_bound,
            metavar="TIME",
            help="Recent traffic starts here (without a zone: in --timezone)",
        ),
    ],
    out_arg: Annotated[
        # A string: Path drops the trailing slash of `drifts/`, which names a directory.
        str,
        typer.Option("--out", metavar="PATH", help="JSON report file; a PNG is written beside it"),
    ] = "drift.json",
    model: Annotated[
        Path | None, typer.Option(help="Model to compare with (default: the current model)")
    ] = None,
    feedback_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--feedback",
            metavar="FILE",
            help="A saved feedback export (GET /v1/feedback, JSON Lines) whose decisions to "
            "compare, beside the feedback database's, each read once; repeat it for several",
        ),
    ] = None,
    timezone: Timezone = None,
    verbose: Verbose = False,
) -> None:
    """Compare recent traffic (feedback records) with the current model's training data."""
    from rich.markup import escape

    from model.registry import current_dir
    from model.times import in_zone as placed_in_zone
    from serve.db import DatabaseUnavailable
    from training.drift import drift as run_drift
    from training.drift import write_drift
    from training.retrain import (
        FeedbackFileError,
        merge_feedback,
        read_feedback_exports,
        split_feedback,
    )

    out_path = Path(out_arg)
    try:
        settings = load_settings()
        check_not_directory_name(out_arg, "--out", "drift.json")
        check_utf8_name(out_arg, "--out")
        if out_path.suffix.lower() == ".png":
            # The plot goes to <stem>.png, beside the JSON: here it would overwrite it.
            raise OutputPathError(
                f"--out {out_path} names the plot, which is written beside the JSON report; give "
                f"the JSON path ({out_path.with_suffix('.json')})"
            )
        check_name_lengths(out_arg, [out_path, out_path.with_suffix(".png")], "--out")
        check_writable(out_path, "--out")
        # Read first: a directory given for one was named only as the input --out is inside.
        exported = read_feedback_exports(feedback_files or [])
        model_dir = model_path(model) if model else current_dir(settings.model_root)
        if model_dir is None:
            raise ModelLoadError(f"no model under {settings.model_root}; pass --model DIR")
        # The model directory is an immutable version and the SQLite file holds the feedback.
        check_not_input(
            [out_path, out_path.with_suffix(".png")],
            [*_drift_inputs(settings, model_dir), *(feedback_files or [])],
            "--out",
            inside_advice="name a file outside it (a model directory is not changed after training)",
        )
        check_not_in_model_dir(out_path, "--out")  # nor another's
        router, metadata = load_router(model_dir)
        since = placed_in_zone(since, zone_of(timezone))
        try:
            records, unreached = _feedback_records(settings, since, with_decision=True), False
        except DatabaseUnavailable as e:
            if not feedback_files:  # the database is the only traffic there is
                raise
            records, unreached = [], True
            say_all([escape(printable(_trained_alone(str(e))))])
        # The window the database's query bounds, and each decision once (merge_feedback).
        windowed = split_feedback(exported.records, since)[0]
        records, repeated = merge_feedback(records, windowed)
        say_all(exported.warnings)
        report = run_drift(router, metadata, records, _utc(since))
        paths = write_drift(report, out_path)
    except (*USER_ERRORS, DatabaseUnavailable, FeedbackFileError) as e:
        raise fail(e) from None
    _print_feedback_source(
        settings,
        len(records),
        files=(feedback_files or [], len(windowed) - repeated, repeated),
        unreached=unreached,
    )
    table = Table(
        title=f"drift since {window_start(since)}: {counted(report['records'], 'feedback record')}"
    )
    table.add_column("figure")
    table.add_column("value")
    for head, p in report["psi"].items():
        value = (
            "–"
            if p["psi"] is None
            else f"{p['psi']:.3f} ({p['band']}; "
            f"{counted(p['records'], 'record reaches', 'records reach')} "
            f"{p['noise']:.3f} by chance)"
        )
        table.add_row(f"{head} PSI", value)
    rate = report["oov"]["rate"]
    table.add_row("out-of-vocabulary tokens", "–" if rate is None else f"{rate:.1%}")
    share = report["review_share"]["share"]
    table.add_row("sent to review", "–" if share is None else f"{share:.1%}")
    terms = ", ".join(t["term"] for t in report["new_terms"][:10])
    table.add_row("new frequent terms", terms or "–")
    out.print(table)
    out.print("written: " + ", ".join(printable(str(p)) for p in paths), soft_wrap=True)


if __name__ == "__main__":
    app()
