"""Reading ticket files into the canonical schema: ``id, title, text, department, category[, time]``.

Inputs with other column names, or a CSV file with another delimiter, are read through a
:class:`ColumnMap`, never by editing files. CSV (UTF-8, UTF-8 with BOM, GB18030), XLSX, JSONL, a
JSON array of objects (``.json``) and Parquet are read; a directory is read as the concatenation of
its parts in name order.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import json
import logging
import math
import os
import re
import shlex
import stat
from collections import Counter
from collections.abc import (
    Callable,
    Collection,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

logger = logging.getLogger(__name__)

# pandas is imported by the functions that read tables: the CLI imports this module for its column
# options and errors, and pandas' import (about 0.3 s) would otherwise delay every command,
# `paidan serve` included.

CANONICAL = ("id", "title", "text", "department", "category", "time")
LABELS = ("department", "category")
FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".xlsx": "xlsx",
    # A macro-enabled workbook (common in offices whose exports run a macro) holds its sheets as
    # an .xlsx does; its macros are never read, let alone run.
    ".xlsm": "xlsx",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Bytes read to tell a CSV file's encoding (see encoding_sample).
ENCODING_SAMPLE_BYTES = 1 << 20
_NON_ASCII = re.compile(rb"[\x80-\xff]")
# A line's end in a CSV file, as Python reads one opened with newline="".
CSV_LINE_END = re.compile(rb"\r\n?|\n")

# A CSV field may hold this many characters (the csv module's default is 131,072): far above any
# ticket, and the bound on what an unclosed quote can swallow before the reader reports it.
CSV_FIELD_LIMIT = 1 << 24
# How many malformed CSV lines an error lists.
MAX_BAD_LINES = 5

# A department cell may name several departments of a joint dispatch (会办), the lead (主办) first:
# "住建局；残联；街道办" (or a JSON list). The department head learns the lead; the others are kept
# in CO_COL, joined by JOINT_JOINER, and shown with the ticket when it is a similar past ticket.
JOINT_SEPARATOR = re.compile(r"[;；]")
JOINT_JOINER = "；"
CO_COL = "co_departments"

# Columns the reader adds: which file a row came from, by its name as messages give it (a file named
# directly by its name, one found in a directory by its path relative to it, :func:`named_paths`),
# its 1-based data row number in that file (for CSV, line number = row + 1 because of the header),
# and the file's path as it was opened (to find a JSON line of it).
SOURCE_COL = "_source"
ROW_COL = "_row"
PATH_COL = "_path"
# True on the rows whose ROW_COL is the line of their file, not its data row: the decisions of a
# feedback export (retrain --feedback), named as its reader names a bad line, "feedback.jsonl
# line 7".
LINE_COL = "_line"


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC (a naive one is taken as UTC already).

    A time whose UTC form leaves the calendar (0001-01-01T00:00+08:00, 9999-12-31T23:59-08:00)
    becomes its first or last moment: it is still before, or after, every stored row.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if value.year == datetime.min.year else datetime.max
        return edge.replace(tzinfo=UTC)


class TicketFileError(ValueError):
    """A ticket file cannot be used; the message names the file and, where there is one, the row."""


class MissingColumnError(TicketFileError):
    """A ticket file lacks a column the column options name (:func:`check_columns`).

    ``field`` is the canonical field, ``column`` the name it is read from, ``have`` the file's
    columns and ``like`` the one of them that looks like the field (``None``: none does), so that
    a reader of several files can say that the others have the column (:func:`iter_tickets`).
    """

    def __init__(
        self,
        message: str,
        field: str,
        column: str,
        have: Sequence[str],
        like: str | None,
        names: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.field = field
        self.column = column
        self.have = list(have)
        self.like = like
        # Every name the column options give the field (``column`` and its alternatives).
        self.names = list(names) or [column]

    def beside(self, path: Path, other: str) -> TicketFileError:
        """The error of a file read with ``other``, which has the column: one column option maps
        the column of every file read together, so the option the message gave
        (``--text-col 描述``) alone would refuse ``other`` instead; the option given once more,
        for this file's name, reads both (:attr:`ColumnMap.alternatives`)."""
        option = f"--{self.field}-col"
        if self.like:
            both = " ".join(f"{option} {_shell_word(n)}" for n in [*self.names, self.like])
            advice = (
                f"{option} names the column of every file read together; given once more, it "
                f"reads either name: {both}"
            )
        else:
            advice = (
                f"{option} names the column of every file read together, so give its "
                f"{self.field} column the name {_quoted(self.column)} in a copy of this file, or "
                f"give {option} once more with its name"
            )
        return TicketFileError(
            f"{path}: no column {_names(self.names)} for the ticket {self.field} ({other}, read "
            f"with it, has it); the file has columns {', '.join(map(_quoted, self.have))} "
            f"({advice})"
        )


def _names(names: Sequence[str]) -> str:
    """Column names as a message gives them: ``'内容'``, or ``'留言详情' or '详情'``."""
    return " or ".join(map(_quoted, names))


@dataclass(frozen=True)
class ColumnMap:
    """Which input column holds each canonical field (``None``: the field is absent), and the field
    delimiter of CSV files (``None``: by the file's extension, see :func:`csv_delimiter`)."""

    id: str | None = "id"
    title: str | None = "title"
    text: str = "text"
    department: str | None = "department"
    category: str | None = "category"
    time: str | None = "time"
    delimiter: str | None = None
    # Other names of a field's column, ``(field, name)`` pairs in the order given
    # (``--text-col 留言详情 --text-col 详情``): January's export calls the text 留言详情,
    # February's 详情, and each file is read from the one it has (:meth:`for_header`).
    alternatives: tuple[tuple[str, str], ...] = ()

    def source_for(self, field: str) -> str | None:
        return getattr(self, field)

    def names(self, field: str) -> tuple[str, ...]:
        """Every name ``field``'s column may have, the first the option's (none: not read)."""
        first = self.source_for(field)
        if first is None:
            return ()
        return (first, *(n for f, n in self.alternatives if f == field and n != first))

    def for_header(self, path: Path | str, have: Iterable[Any]) -> ColumnMap:
        """The columns of one file whose columns are ``have``: each field read from the one of
        its names (:meth:`names`) the file has, without alternatives; a field none of whose
        names the file has keeps them all, for :func:`check_columns` to name.

        Raises
        ------
        TicketFileError
            The file has two names of one field (留言详情 and 详情): which one holds the text
            cannot be told, and reading one would drop the other's cells.
        """
        if not self.alternatives:
            return self
        columns = {str(c).strip() for c in have}
        chosen: dict[str, str] = {}
        kept: list[tuple[str, str]] = []
        for field in CANONICAL:
            names = self.names(field)
            found = [n for n in names if n in columns]
            if len(found) > 1:
                raise TicketFileError(
                    f"{path}: has columns {' and '.join(map(_quoted, found))}, both names "
                    f"--{field}-col gives the ticket {field}'s column, so which one to read "
                    "cannot be told; read this file with one of them named, or rename the other "
                    "in a copy of it"
                )
            if found:
                chosen[field] = found[0]
            else:
                kept += [(field, n) for n in names[1:]]
        return replace(self, alternatives=tuple(kept), **chosen)

    def recorded(self) -> dict[str, str | list[str]]:
        """The column each field is read from, as ``metadata.json`` records it
        (``training_data.columns``), a name quoted as a label is (:func:`model.text.mask_label`):
        which of an export's columns a model learnt from, once the options and the
        ``PAIDAN_*_COL`` settings that named them are gone. A field mapped to no column is left
        out."""
        from model.text import mask_label

        recorded: dict[str, str | list[str]] = {}
        for f in CANONICAL:
            names = [mask_label(n) for n in self.names(f)]
            if names:  # a list for a field read from any of several names
                recorded[f] = names if len(names) > 1 else names[0]
        return recorded


def encoding_sample(f: BinaryIO, size: int = ENCODING_SAMPLE_BYTES) -> bytes:
    """Bytes of an open binary file that tell its encoding (:func:`detect_encoding`).

    Its first ``size`` bytes; but while those are plain ASCII, which UTF-8 and GB18030 read alike,
    the ``size`` bytes from the first byte that is not, wherever it is: a GB18030 export that
    begins with a megabyte of numbers and Latin letters was taken for UTF-8, and its first Chinese
    line refused. Leaves the file's position wherever reading stopped. A file that is no text (a
    workbook, a compressed file: :func:`not_text`) is refused, without its name.
    """
    head = f.read(size)
    if what := not_text(head):
        raise TicketFileError(what)
    if len(head) < size or _NON_ASCII.search(head) or utf16_without_bom(head):
        return head  # (UTF-16 text of ASCII letters is ASCII bytes and NULs)
    while chunk := f.read(size):
        found = _NON_ASCII.search(chunk)
        if found:
            # From that byte, which starts a character in both encodings.
            return chunk[found.start() :] + f.read(found.start())
    return head


# Excel's "Unicode 文本 (*.txt)" (tab-separated) and some ticket systems' text exports are UTF-16
# with a byte-order mark. Every byte of their header failed both UTF-8 and GB18030, and train and
# label each said so differently ("byte 0 is invalid", "the header is not valid gb18030").
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
UTF16_ADVICE = (
    'the file is UTF-16 text (what Excel saves as "Unicode 文本 (*.txt)"), which is not read: '
    'save it from Excel as "CSV UTF-8 (逗号分隔) (*.csv)" or as a workbook (.xlsx)'
)


# Bytes of a file's start looked at for UTF-16 without a byte-order mark.
_UTF16_SNIFF_BYTES = 4096


def utf16_without_bom(head: bytes) -> bool:
    """Whether a file's first bytes are UTF-16 text without a byte-order mark (SQL Server's
    ``bcp -w`` and ``sqlcmd -u``, some ticket systems' "Unicode" exports).

    Every ASCII character of such text (digits, Latin letters, commas, tabs, line ends) has a NUL
    byte beside it, at odd offsets (little-endian) or even ones (big-endian), where a UTF-8 or
    GB18030 file has none: NULs that are at least 1 in 100 of the first code units, at least
    twice as many on one side as on the other (a CJK character such as 一, 开 or 最, U+4E00,
    U+5F00, U+6700, has a NUL byte on the other), in bytes that decode as UTF-16 into text with a
    line end, a comma or a tab. NUL is valid UTF-8, so the file was read as UTF-8 with NUL-filled
    names.
    """
    sample = head[:_UTF16_SNIFF_BYTES]
    sample = sample[: len(sample) // 2 * 2]
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    most, fewest = max(odd, even), min(odd, even)
    if most < 2 or most * 100 < len(sample) // 2 or fewest * 2 > most:
        return False
    try:
        text = sample.decode("utf-16-le" if odd > even else "utf-16-be")
    except UnicodeDecodeError as e:
        if e.start < len(sample) - 2:  # (a surrogate pair cut at the end of the sample counts)
            return False
        text = sample[: e.start].decode("utf-16-le" if odd > even else "utf-16-be")
    return any(c in text for c in "\n\r,\t")


def is_utf16(head: bytes) -> bool:
    """Whether a file's first bytes are UTF-16 text: a byte-order mark, or
    :func:`utf16_without_bom`."""
    return head[:2] in UTF16_BOMS or utf16_without_bom(head)


# Big5, traditional Chinese as Taiwan's and Hong Kong's systems (and old exports) write it: Windows'
# code page 950 first (Taiwan, with the euro sign), then Big5-HKSCS (Hong Kong's characters).
# GB18030 decodes any Big5 bytes, into mojibake (路燈不亮 as 隔縊ぃ獹), and GBK text is often valid
# Big5 too (路灯不亮 reads 繚腑祥謠), traditional characters included: GBK holds those. So the
# bytes cannot tell; how Chinese each reading is can (:func:`chinese_likelihood`).
BIG5_ENCODINGS = ("cp950", "big5hkscs")
# Bytes of a sample compared in both readings: enough for hundreds of characters.
_BIG5_SCORED_BYTES = 1 << 16
# Chinese characters each reading needs before Big5 may win: a word or two cannot tell.
_BIG5_MIN_CHARS = 8
# How much more likely, per character (natural log), a Big5 reading must be. Invented tickets of
# 8 characters or more came apart by 8 or more: GBK read as Big5 scored at least 3.8 below its
# GBK reading, Big5 read as Big5 at least 4.8 above its GB18030 reading.
_BIG5_MARGIN = 2.0
# The log-likelihood given to a character jieba's model has never seen (kana, Greek, a private
# use character, a rare ideograph): below any it has.
_UNSEEN = -20.0
_BIG5_NOTED: set[str] = set()
# The name detect_encoding is given for text piped to a command.
STDIN = "standard input"


@functools.cache
def _char_log_probability() -> dict[str, float]:
    """Each character's highest emission log-probability in jieba's HMM (``jieba.finalseg``):
    a character table of everyday Chinese, simplified and traditional, that ships with jieba."""
    from jieba.finalseg.prob_emit import P

    table: dict[str, float] = {}
    for state in P.values():
        for char, logp in state.items():
            table[char] = max(logp, table.get(char, _UNSEEN))
    return table


def chinese_likelihood(text: str) -> tuple[float, int]:
    """How Chinese ``text`` reads: the mean log-probability of its characters other than ASCII,
    punctuation and spaces (:func:`_char_log_probability`), and how many there were."""
    import unicodedata

    table = _char_log_probability()
    scores = [
        table.get(c, _UNSEEN)
        for c in text
        if not c.isascii() and not unicodedata.category(c).startswith(("P", "Z"))
    ]
    return (sum(scores) / len(scores) if scores else 0.0), len(scores)


def big5_encoding(head: bytes) -> str | None:
    """The Big5 codec (:data:`BIG5_ENCODINGS`) to read GB18030-decodable bytes with, or ``None``.

    Each reading is scored on the bytes Big5 decodes (up to its first invalid byte, so a
    character outside Big5 further on does not hide the rest), and Big5 wins only when the
    text reads as Chinese much better so (:data:`_BIG5_MARGIN`) over enough characters
    (:data:`_BIG5_MIN_CHARS`): a short sample stays GB18030.
    """
    head = head[:_BIG5_SCORED_BYTES]
    best, valid = None, 0
    for encoding in BIG5_ENCODINGS:
        try:
            head.decode(encoding)
            end = len(head)
        except UnicodeDecodeError as e:
            end = e.start
        if end > valid:
            best, valid = encoding, end
    prefix = head[:valid]
    if best is None or len(_NON_ASCII.findall(prefix)) < 2 * _BIG5_MIN_CHARS:
        return None  # (without loading the character table, as for most GBK files)
    big5, n_big5 = chinese_likelihood(codecs.getincrementaldecoder(best)().decode(prefix))
    gb, n_gb = chinese_likelihood(codecs.getincrementaldecoder("gb18030")().decode(prefix))
    if min(n_big5, n_gb) >= _BIG5_MIN_CHARS and big5 - gb > _BIG5_MARGIN:
        return best
    return None


# The decoding error handler that reads, in a file read as cp950, a character cp950 does not have
# as Big5-HKSCS does (Hong Kong's characters, in lead bytes 0x87-0xA0 and 0xFA-0xFE: 𠕇 is FA 40):
# the encoding is told from the first megabyte (:data:`ENCODING_SAMPLE_BYTES`), and a Hong Kong
# character after it refused the file ("invalid cp950 bytes") or its row.
BIG5_HKSCS_ERRORS = "paidan-big5hkscs"


def _big5hkscs_character(e: UnicodeError) -> tuple[str, int]:
    """:data:`BIG5_HKSCS_ERRORS`: the two bytes at ``e.start`` as Big5-HKSCS reads them, or
    ``e`` raised again."""
    if isinstance(e, UnicodeDecodeError):
        try:
            return bytes(e.object[e.start : e.start + 2]).decode("big5hkscs"), e.start + 2
        except UnicodeDecodeError:
            pass
    raise e


def decoding_errors(encoding: str) -> str:
    """The ``errors`` argument to decode a CSV file's ``encoding`` with: ``"strict"``, but for
    cp950, :data:`BIG5_HKSCS_ERRORS` (registered on first use)."""
    if encoding != "cp950":
        return "strict"
    codecs.register_error(BIG5_HKSCS_ERRORS, _big5hkscs_character)
    return BIG5_HKSCS_ERRORS


def undecodable_hint(encoding: str, data: bytes, start: int) -> str:
    """What the undecodable bytes at ``data[start]`` of an ``encoding`` file are, when that can be
    told (a Big5 user-defined character), as a clause starting ``": "``; or ``""``."""
    if encoding not in BIG5_ENCODINGS or not 0x81 <= data[start] <= 0xFE:
        return ""
    return (
        f", {data[start : start + 2].hex(' ')}: a Big5 user-defined character (造字) that neither "
        "Big5 nor Big5-HKSCS defines, which only the font of the system that wrote it draws; "
        "replace it there, or export the file as UTF-8"
    )


def big5_note(name: str) -> None:
    """Warn, once for each file, that ``name`` (or :data:`STDIN`) is read as Big5, and how to
    read it as GBK."""
    if name in _BIG5_NOTED:
        return
    _BIG5_NOTED.add(name)
    if name == STDIN:
        convert = "pipe it through iconv -f GB18030 -t UTF-8"
    else:
        path = Path(name)
        converted = path.with_name(f"{path.stem}.utf8{path.suffix}")
        convert = (
            "convert it to UTF-8 and read that: iconv -f GB18030 -t UTF-8 "
            f"{shlex.quote(str(path))} > {shlex.quote(str(converted))}"
        )
    logger.warning(
        "%s: read as Big5 (traditional Chinese): its text reads as Chinese in Big5 and not in "
        "GB18030 (GBK); if it is GBK after all, %s",
        name,
        convert,
    )


def detect_encoding(head: bytes, name: str | Path | None = None) -> str:
    """Pick ``utf-8-sig``, ``gb18030`` or a Big5 codec for CSV bytes (a sample is enough:
    :func:`encoding_sample`).

    UTF-8 is tried first because GB18030 decodes almost any byte string; a sample cut in the middle
    of a character at its end still counts, in either encoding. Bytes GB18030 decodes are Big5
    when they read as Chinese far better so (:func:`big5_encoding`); a warning then says so,
    naming ``name`` (the file, if given), once. UTF-16 (a byte-order mark, or the NUL bytes beside its
    ASCII characters: :func:`utf16_without_bom`) is refused with what to save the file as
    (:data:`UTF16_ADVICE`).
    """
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if is_utf16(head):
        raise TicketFileError(UTF16_ADVICE)
    try:
        head.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 3 and e.reason == "unexpected end of data":
            return "utf-8-sig"
    try:
        head.decode("gb18030")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3 or e.reason != "incomplete multibyte sequence":
            raise TicketFileError(
                "cannot tell the text encoding (tried UTF-8 and GB18030; byte "
                f"{e.start} is invalid in both)"
            ) from None
    big5 = big5_encoding(head)
    if big5 is None:
        return "gb18030"
    if name is not None:
        big5_note(str(name))
    return big5


# Date and time formats that East-Asian Excel and WPS write by id alone, with no <numFmt> element
# (ECMA-376 Part 1, 18.8.30: ids 27-36 and 50-58 are locale-specific; these are zh-CN's codes).
# openpyxl knows ids 0-22 and 37-49 only, so a 时间 cell shown as 2024年1月5日 (id 31) was read as
# its serial number, 45296.375: registered, they are read as dates, as ids 14 and 22 are.
CJK_DATE_FORMATS = {
    27: 'yyyy"年"m"月"',
    28: 'm"月"d"日"',
    29: 'm"月"d"日"',
    30: "m-d-yy",
    31: 'yyyy"年"m"月"d"日"',
    32: 'h"时"mm"分"',
    33: 'h"时"mm"分"ss"秒"',
    34: '上午/下午h"时"mm"分"',
    35: '上午/下午h"时"mm"分"ss"秒"',
    36: 'yyyy"年"m"月"',
    50: 'yyyy"年"m"月"',
    51: 'm"月"d"日"',
    52: 'yyyy"年"m"月"',
    53: 'm"月"d"日"',
    54: 'm"月"d"日"',
    55: '上午/下午h"时"mm"分"',
    56: '上午/下午h"时"mm"分"ss"秒"',
    57: 'yyyy"年"m"月"',
    58: 'm"月"d"日"',
}


def load_workbook(path: Path, **options: Any) -> Any:
    """``openpyxl.load_workbook(path, **options)``, reading East-Asian built-in date formats as
    dates (:data:`CJK_DATE_FORMATS`) and refusing a file that is no workbook by what it is
    (:func:`not_a_workbook`), and its shared strings with their escapes as written
    (:func:`shared_strings`). Every reader of workbooks opens them here (``pandas.read_excel``
    after it, so the formats and the string reader are registered for it too)."""
    import zipfile

    import openpyxl
    import openpyxl.reader.excel
    from openpyxl.styles.numbers import BUILTIN_FORMATS

    for number, code in CJK_DATE_FORMATS.items():
        BUILTIN_FORMATS.setdefault(number, code)
    openpyxl.reader.excel.read_string_table = shared_strings
    why: str | None
    try:
        return openpyxl.load_workbook(path, **options)
    except zipfile.BadZipFile:
        why = broken_workbook(path) or not_a_workbook(path)
    except Exception as e:
        why = broken_workbook(path) or malformed_xml(e, path)
        if why is None:
            raise
    raise TicketFileError(f"{path}: cannot be read as XLSX: {why}") from None


def unreadable_file(path: Path, fmt: str, error: Exception) -> TicketFileError:
    """The error for a ticket file that ``error`` stopped the reading of: a workbook that is a zip
    archive but no workbook, or a damaged one, said as :func:`broken_workbook` says it (a damaged
    sheet fails only while its rows are read); others with ``error``'s words."""
    why = (broken_workbook(path) or malformed_xml(error, path)) if fmt == "xlsx" else None
    return TicketFileError(f"{path}: cannot be read as {fmt.upper()}: {why or error}")


def malformed_xml(error: BaseException, path: Path) -> str | None:
    """What a workbook is whose reading ``error`` stopped as an XML part of it is not well-formed,
    and what to do, with the part (:func:`malformed_part`) and the parser's words and position;
    ``None`` for another error.

    A program that writes workbooks badly, or an edit of the parts inside one, leaves a tag open
    or a part cut off with the zip archive sound (:func:`broken_workbook` finds nothing): it was
    refused in the parser's words alone, "mismatched tag: line 1, column 188324", whose line and
    column are those of a part it did not name.
    """
    # ElementTree's ParseError, and lxml's XMLSyntaxError where openpyxl parses with lxml, are
    # SyntaxErrors; Python's own cannot come of reading a workbook.
    if not isinstance(error, SyntaxError):
        return None
    part = malformed_part(path)
    where = f"of its part {part}" if part else "of a part inside it"
    return (
        f"the workbook is damaged: the XML {where} is malformed ({error}), as a program that "
        "writes workbooks badly leaves it: open it in Excel or WPS, which may repair it, and save "
        "it again, or save the tickets from it as CSV UTF-8"
    )


def malformed_part(path: Path) -> str | None:
    """The first XML part of the workbook at ``path`` that is not well-formed, or ``None``.

    Each part is parsed as a stream, in the archive's order; read only once a reader has failed.
    """
    import zipfile
    from xml.etree.ElementTree import ParseError, iterparse

    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith((".xml", ".rels")):
                    continue
                try:
                    with archive.open(name) as part:
                        for _ in iterparse(part):
                            pass
                except ParseError:
                    return name
    except (OSError, zipfile.BadZipFile):
        return None
    return None


# What a zip archive that is some other Office document holds, by the folder of its main part.
_OFFICE_DOCUMENTS = {
    "word/": "a Word document (.docx)",
    "ppt/": "a PowerPoint presentation (.pptx)",
    "visio/": "a Visio drawing (.vsdx)",
}


def broken_workbook(path: Path) -> str | None:
    """What a file named as a workbook that is a whole zip archive but fails to read is, and what
    to do, or ``None`` when it is no zip archive (:func:`not_a_workbook`) or a sound workbook.

    A zip archive without a workbook in it is a ``.zip`` renamed ``.xlsx`` (its files are named),
    or another Office document under an ``.xlsx`` name; zipfile and openpyxl said "There is no item
    named '[Content_Types].xml' in the archive" or "File contains no valid workbook part". One
    whose compressed data is corrupt (a failing disk, a faulty copy) gave zlib's "Error -3 while
    decompressing data", zipfile's "Bad CRC-32" or the XML parser's "not well-formed": every member
    is checked against its CRC-32 here.
    """
    import zipfile
    import zlib

    try:
        with zipfile.ZipFile(path) as z:
            names = [i.filename for i in z.infolist() if not i.is_dir()]
            if "xl/workbook.xml" not in names and not any(
                n.startswith("xl/") and n.endswith("workbook.xml") for n in names
            ):
                what = next(
                    (
                        d
                        for folder, d in _OFFICE_DOCUMENTS.items()
                        if any(n.startswith(folder) for n in names)
                    ),
                    None,
                )
                if what:
                    return (
                        f"it is {what} under an {path.suffix} name, not an Excel workbook: save "
                        "the tickets from it as an Excel workbook (.xlsx) or as CSV UTF-8"
                    )
                shown = ", ".join(names[:5]) + (
                    f" and {len(names) - 5} more" if len(names) > 5 else ""
                )
                return (
                    f"it is a zip archive under an {path.suffix} name, not an Excel workbook "
                    f"({'it holds ' + shown if names else 'it is empty'}): extract it, and read the "
                    "ticket files it holds"
                )
            bad = z.testzip()
    except zipfile.BadZipFile:
        if not zipfile.is_zipfile(path):
            return None
        bad = "?"
    except (zlib.error, EOFError):
        bad = "?"
    except OSError:
        return None
    if bad is None:
        return None
    return (
        "the workbook is damaged (part of its compressed data is corrupt, as a failing disk or a "
        "faulty copy leaves it): copy it again from where it came from, or open it in Excel or "
        "WPS, which may repair it, and save it again"
    )


def shared_strings(xml_source: Any) -> list[str]:
    """A workbook's shared strings with their ``_xHHHH_`` escapes as written, for :func:`xlsx_text`
    to undo once (openpyxl's own reader, which :func:`load_workbook` replaces with this one).

    Excel stores a cell whose text is literally ``_x000D_`` as ``_x005F_x000D_``; openpyxl's reader
    dropped every ``x005F_``, and :func:`xlsx_text` then read ``_x000D_`` as a carriage return.
    Excel and WPS store all text as shared strings (openpyxl writes inline ones, never unescaped).
    """
    from openpyxl.cell.text import Text
    from openpyxl.xml.constants import SHEET_MAIN_NS
    from openpyxl.xml.functions import iterparse

    strings = []
    tag = f"{{{SHEET_MAIN_NS}}}si"
    for _, node in iterparse(xml_source):
        if node.tag == tag:
            strings.append(Text.from_tree(node).content)
            node.clear()
    return strings


# What every file of Microsoft's compound format starts with: an Excel 97-2003 workbook (.xls), or
# an .xlsx saved with a password (Excel encrypts it inside one).
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def not_text(head: bytes, kind: str = "CSV") -> str | None:
    """What a file named as ``kind`` text (CSV, JSON) is, told by its first bytes, when it is no
    text, and what to do; ``None`` for text.

    A web system's 导出 that writes a workbook under a .csv name, an .xls renamed .csv, a .csv.gz
    whose .gz was dropped: their bytes read as GB18030 (it decodes almost any bytes), so label
    refused the file as "line 1: the header is not valid gb18030" and train as "cannot tell the
    text encoding", naming neither what the file is nor what to do.
    """
    save = "open it in Excel or WPS and save it as an Excel workbook (.xlsx) or as CSV UTF-8"
    if head.startswith(b"PK\x03\x04"):
        return (
            f"it is a zip archive, as an Excel workbook (.xlsx) is, not {kind} text: if it is a "
            "workbook, rename it to .xlsx; if it is a .zip archive, extract it"
        )
    if head.startswith(_OLE2_MAGIC):
        return (
            "it is an Excel 97-2003 workbook (.xls), or a workbook saved with a password, not "
            f"{kind} text: {save}"
        )
    if head.startswith(b"\x1f\x8b"):
        return f"it is gzip-compressed, not {kind} text: decompress it (gunzip)"
    # (A header that begins PAR1 is text: a Parquet file's first page starts with a control byte.)
    if head.startswith(b"PAR1") and head[4:5] < b" " and head[4:5] not in (b"\t", b"\n", b"\r"):
        return f"it is a Parquet file, not {kind} text: rename it to .parquet"
    return None


def not_a_workbook(path: Path) -> str:
    """What a file named as a workbook that is no zip archive is, told by its first bytes, and
    what to do: an ``.xls`` renamed ``.xlsx`` "to convert it", or a web system's 导出Excel that is
    CSV text or an HTML table under an ``.xlsx`` name (zipfile said "File is not a zip file")."""
    with open(path, "rb") as f:
        head = f.read(4096)
    save = "open it in Excel or WPS and save it as an Excel workbook (.xlsx) or as CSV UTF-8"
    if not head:
        return "the file is empty"
    if head.startswith(_OLE2_MAGIC):
        return (
            "it is an Excel 97-2003 workbook (.xls), or a workbook saved with a password, under an "
            f"{path.suffix} name, and renaming does not convert it: {save} (without a password)"
        )
    if head.startswith(b"PK\x03\x04"):
        # A zip archive whose directory, written at its end, is missing: a copy, upload or
        # download that stopped part-way. Saving from Excel is no answer; a whole copy is.
        return (
            "the workbook is damaged or incomplete (its end is missing, as when a copy or download "
            "stops part-way): copy it again from where it came from, or open it in Excel or WPS, "
            "which may repair it, and save it again"
        )
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):  # <html>, <table>, <?xml
        return (
            "it is a web page (an HTML or XML table, as web systems' exports write) under an "
            f"{path.suffix} name, not a workbook: {save}"
        )
    if b"\x00" not in head:
        try:
            detect_encoding(head)
        except TicketFileError:
            pass
        else:
            first = head.splitlines()[0] if head.splitlines() else b""
            tabs = b"\t" in first and b"," not in first
            return (
                f"it is text, not a workbook (a CSV export under an {path.suffix} name?): rename it "
                f"to .csv{' and pass --delimiter tab' if tabs else ''}, or {save}"
            )
    return f"it is not an XLSX workbook (no zip archive): {save}"


def check_one_ticket_sheet(path: Path, workbook: Any, text: str | None = None) -> None:
    """Refuse a workbook whose later sheets hold more tickets: every reader reads the first only.

    A sheet after the first counts as tickets when its first row has the first sheet's text
    column, or the first sheet's columns in any order, or most of them (a workbook of monthly
    sheets, one of which gained a column or had its columns moved), or when one of its first
    ``HEADER_SCAN_ROWS`` rows, under a title row, has the same columns, or two or more of them with
    the text column or most of them among them. One column's name in a lower row, with a note
    beside it, is a line of a field dictionary (字段说明: ``text | 诉求内容``) or of notes, not a
    header; sheets of notes or totals have other rows and are left alone. Reading the first sheet
    alone would drop the others' tickets without a word.

    Parameters
    ----------
    path : Path
        The file, for the message.
    workbook : openpyxl.Workbook
        The open workbook.
    text : str, optional
        The column that holds the ticket text (``--text-col``), when the caller knows it.

    Raises
    ------
    TicketFileError
        Naming the sheets that look like tickets and what they share with the first sheet.
    """
    sheets = workbook.worksheets
    first = _sheet_header(sheets[0]) if sheets else []
    names = {n for n in first if n}
    if not names:
        return
    more = []
    for ws in sheets[1:]:
        # A later sheet under a title row of its own (每月一张表, each headed 某区12345工单明细) is
        # tickets too: its header is looked for among its first rows, as sheet_hint does.
        for rowno, row in enumerate(ws.iter_rows(max_row=HEADER_SCAN_ROWS, values_only=True), 1):
            header = _header_names(row)
            shared = names.intersection(header)
            where = "" if rowno == 1 else f"its row {rowno} has "
            if header == first:
                found = f"{where}the same columns"
            elif {n for n in header if n} == names:
                found = f"{where}the same columns in another order"
            elif (text in shared and (rowno == 1 or len(shared) >= 2)) or (
                len(shared) >= 2 and 2 * len(shared) > len(names)
            ):
                # Below the first row one shared name is not a header: a field dictionary names
                # each column on a row of its own (text | 诉求内容), as notes may (内容 | 见附件).
                has_text = f", the text column {_quoted(text)} among them" if text in shared else ""
                found = f"{where}{len(shared)} of the first sheet's {len(names)} columns{has_text}"
            else:
                continue
            more.append(f"{_quoted(ws.title)} ({found})")
            break
    if more:
        raise TicketFileError(
            f"{path}: sheets {', '.join(more)} look like more tickets beside the first sheet, "
            f"{_quoted(sheets[0].title)}, but only the first sheet of a workbook is read; save each sheet "
            "as a file of its own (a directory of files is read in name order)"
        )


# How far down a sheet a header under title rows is looked for.
HEADER_SCAN_ROWS = 10


def _sheet_header(sheet: Any) -> list[str]:
    row = next(sheet.iter_rows(max_row=1, values_only=True), None) or ()
    return _header_names(row)


def _header_names(row: Sequence[Any]) -> list[str]:
    names = [("" if v is None else str(v)).strip() for v in row]
    while names and not names[-1]:
        names.pop()
    return names


# A number format of zeros alone ("00000"): Excel shows the integer 123 as 00123.
_ZERO_PADDING = re.compile(r"00+")


def pads_numbers(workbook: Any) -> bool:
    """Whether a workbook defines a zero-padding number format (see :func:`xlsx_value`).

    Most do not, and their cells are read as plain values, which is faster.
    """
    formats = getattr(workbook, "_number_formats", None)
    return formats is None or any(_ZERO_PADDING.fullmatch(str(f)) for f in formats)


# OOXML's escape of a character in a cell's text (ECMA-376 Part 1, 22.9.2.19 ST_Xstring): Excel
# writes a carriage return inside a cell as _x000D_ (and a literal "_x000D_" as _x005F_x000D_).
_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def xlsx_text(value: Any) -> Any:
    """A workbook cell's value with OOXML's ``_xHHHH_`` escapes undone in text, as Excel shows it.

    openpyxl keeps them: a text pasted with Windows line ends read ``一周_x000D_\n晚上``, and label
    copied the escape into its CSV, JSON Lines and Parquet output (the model's input drops it
    anyway, :func:`model.text.normalize`). Other values are returned as they are.
    """
    if isinstance(value, str) and "_x" in value:
        text = _OOXML_ESCAPE.sub(lambda m: chr(int(m[1], 16)), value)
        # An emoji (beyond U+FFFF) is escaped as its two UTF-16 halves, _xD83D__xDE21_; decoded one
        # by one they were lone surrogates, which no UTF-8 writer accepts (train refused the
        # workbook, label crashed). Join the pairs; a half left alone becomes U+FFFD.
        if any("\ud800" <= c <= "\udfff" for c in text):
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text
    return value


def xlsx_value(cell: Any) -> Any:
    """A spreadsheet cell's value, an integer as Excel shows it through a zero-padding format, and
    an error value (``#N/A``, ``#VALUE!``: a formula that failed, saved so) as ``None``, an empty
    cell, as ``pandas.read_excel`` reads it for ``train`` and ``evaluate``.

    A ticket number typed as 00123 is stored as the number 123 with the format ``00000``; read as
    123, it no longer matched the sheet it came from. Other formats (dates, decimals, thousands
    separators) are left to :func:`cell_text`.
    """
    if cell.data_type == "e":  # label read the text "#N/A": a row without a text was labelled
        return None
    value = cell.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        fmt = cell.number_format
        if fmt and _ZERO_PADDING.fullmatch(fmt) and float(value).is_integer():
            number = int(value)
            return ("-" if number < 0 else "") + str(abs(number)).zfill(len(fmt))
    return value


# Significant digits Excel keeps of a number: a longer ticket number typed or pasted into a cell of
# the General format (18 digits, shown 1.23457E+17) is stored with its last digits zeros, and was
# read as that number, an id that joins back to no ticket, without a word.
EXCEL_DIGITS = 15


def excel_rounded(value: Any) -> bool:
    """Whether a workbook cell's value (:func:`xlsx_value`) is a number of more digits than Excel
    keeps (:data:`EXCEL_DIGITS`): as an id, its last digits are lost, or may be."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) >= 10**EXCEL_DIGITS
    )


def warn_rounded_ids(path: Path | str, n: int, row: int, value: float) -> None:
    """Warn that ``n`` id cells of ``path`` are :func:`excel_rounded` numbers, the first
    ``value`` on sheet row ``row`` (the header's is row 1); ``train``'s, ``evaluate``'s and
    ``label``'s."""
    from model.text import counted

    many = n > 1
    logger.warning(
        "%s: %s %s of more than %d digits (%d on row %d the first), more than Excel keeps (it "
        "shows such a number as 1.23457E+17): %s last digits are lost, so %s cannot be joined "
        "back to the ticket system; format the id column as text (in the exporting system, or "
        "in Excel before the ids are pasted) and export again",
        path,
        counted(n, "ticket id"),
        "are numbers" if many else "is a number",
        EXCEL_DIGITS,
        int(value),
        row,
        "their" if many else "its",
        "they" if many else "it",
    )


def rounded_id_cells(path: Path, sheet: Any, id_col: str | None) -> None:
    """Warn of the :func:`excel_rounded` cells of a sheet's ``id_col``, named by its first row
    (a pass over its rows: :func:`warn_rounded_ids`)."""
    header = next(sheet.iter_rows(max_row=1, values_only=True), None) or ()
    names = column_names(["" if v is None else str(v) for v in header])
    if id_col is None or id_col not in names:
        return
    col = names.index(id_col) + 1
    n, first = 0, (0, 0.0)
    for row, (cell,) in enumerate(sheet.iter_rows(min_row=2, min_col=col, max_col=col), 2):
        value = xlsx_value(cell)
        if excel_rounded(value):
            n += 1
            first = first if n > 1 else (row, value)
    if n:
        warn_rounded_ids(path, n, *first)


def unsaved_formulas(
    path: Path, columns: Sequence[str]
) -> Generator[tuple[int, str, str], None, None]:
    """Cells of the first sheet in ``columns`` that hold a formula saved without its value.

    Programs that write workbooks without calculating them (openpyxl, pandas, report tools) leave
    a formula's value out; every reader reads such a cell as empty. A formula whose saved result is
    an empty string (Excel marks its type) is not one of them.

    Parameters
    ----------
    path : Path
        An XLSX file.
    columns : sequence of str
        Header names of its first sheet, as :func:`column_names` gives them (others are ignored).

    Yields
    ------
    (int, str, str)
        The sheet row (from 1, the header's), the column and the formula, in row order, and in
        the order of ``columns`` within a row.
    """
    if not has_formulas(path):
        return
    books = [load_workbook(path, read_only=True, data_only=d) for d in (True, False)]
    try:
        sheets = [book.worksheets[0] for book in books]
        for sheet in sheets:
            sheet.reset_dimensions()
        values, formulas = (sheet.iter_rows() for sheet in sheets)
        header = column_names(["" if c.value is None else str(c.value) for c in next(values, ())])
        next(formulas, None)
        at = [(header.index(c), c) for c in dict.fromkeys(columns) if c in header]
        if not at:
            return
        for row, (value, formula) in enumerate(zip(values, formulas, strict=False), 2):
            for i, column in at:
                if i < min(len(value), len(formula)):
                    v, f = value[i], formula[i]
                    if v.value is None and v.data_type == "n" and f.value is not None:
                        yield row, column, str(getattr(f.value, "text", f.value))
    finally:
        for book in books:
            book.close()


# A formula's element in a workbook's XML (<f>, <f t="shared" .../>, or with a prefix: <x:f>).
_FORMULA_TAG = re.compile(rb"<(?:\w+:)?f[\s>/]")


def has_formulas(path: Path) -> bool:
    """Whether any part of a workbook holds a formula, read from its XML without parsing it.

    Most workbooks hold none, and :func:`unsaved_formulas` reads the sheet twice through
    openpyxl: for a file with an empty title here and there, train read it in twice the time.
    Every XML part is searched, wherever the workbook keeps its sheets; text in a cell cannot
    look like the tag (its ``<`` is written ``&lt;``).
    """
    import zipfile

    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not name.endswith(".xml"):
                continue
            with z.open(name) as f:
                tail = b""
                while block := f.read(1 << 20):
                    if _FORMULA_TAG.search(tail + block):
                        return True
                    tail = block[-16:]
    return False


def unsaved_formula(column: str, formula: str) -> str:
    """Why a cell that holds a formula saved without its value reads empty, and what to do."""
    return (
        f"column {_quoted(column)} holds the formula {_quoted(formula, cell=True)} saved without its value (a program that "
        "does not calculate formulas wrote the file); open and save the file in Excel, or export "
        "it with values"
    )


def csv_delimiter(path: Path, delimiter: str | None = None) -> str:
    """``delimiter`` when given (``--delimiter``), else a tab for a ``.tsv`` file and a comma for any
    other CSV (every CSV reader here)."""
    if delimiter is not None:
        return delimiter
    return "\t" if path.suffix.lower() == ".tsv" else ","


def parse_delimiter(value: str) -> str:
    """The delimiter ``--delimiter VALUE`` names: one character, or a tab as ``tab`` or ``\\t``.

    Raises
    ------
    ValueError
        When ``value`` cannot separate CSV fields (several characters, a quote, a line end).
    """
    sep = "\t" if value.lower() in ("tab", "\\t") else value
    if len(sep) != 1 or sep in '"\r\n':
        raise ValueError(
            f"{value!r} cannot separate CSV fields: give one character other than a quote or a "
            "line end, or tab"
        )
    return sep


# Delimiters a CSV header read as one column is split on, to tell what the file meant (and how to
# say it to --delimiter).
_OTHER_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'", ",": "','"}


def delimiter_hint(path: Path, header: Sequence[str], column: str, delimiter: str | None) -> str:
    """What to pass when a CSV header was read as one column that, split on another delimiter,
    names the missing ``column``; ``""`` when there is nothing to say.

    A semicolon- or tab-separated export named ``.csv`` reads as a single column, ``id;title;text``:
    'no column text' alone does not tell why. The delimiter is not guessed (``csv.Sniffer``): on
    Chinese text it took a file of one text column for a file separated by 。 or ）, and reading a
    file with a guessed delimiter would silently make other rows of it.
    """
    if len(header) != 1 or file_format(path) != "csv":
        return ""
    used = csv_delimiter(path, delimiter)
    for sep, arg in _OTHER_DELIMITERS.items():
        names = [name.strip().strip('"').strip() for name in header[0].split(sep)]
        if sep != used and len(names) > 1 and column in names:
            shown = "tab" if sep == "\t" else sep
            return f"the header looks {shown}-separated; pass --delimiter {arg}"
    return ""


def _split_header(above: list[list[str]], row: list[str]) -> str:
    """What to do with the rows ``above`` a sheet row ``row`` that names a column: delete them, or,
    when they name columns over its empty cells (a header of two rows, 多级表头, whose merged
    cells hold their name in the top row alone), first write those names into it."""
    width = max(len(r) for r in [row, *above])  # a row's cells end at its last one written
    names = [
        next((r[i] for r in reversed(above) if i < len(r) and r[i]), "")
        for i in range(width)
        if i >= len(row) or not row[i]
    ]
    names = [name for name in names if name]
    if not names:
        return ": delete the rows above it"
    shown = [_quoted(name) for name in names[:5]]
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
    listed += f" and {len(names) - 5} more" if len(names) > 5 else ""
    rowno = len(above) + 1
    return (
        f", under a header of {rowno} rows whose names above it, {listed}, are over empty cells of "
        f"it (merged cells?): write every column's name into row {rowno}, then delete the rows "
        "above it"
    )


def hidden_sheet_note(sheet: Any) -> str:
    """``", which is hidden (…)"`` for a sheet Excel does not show, else ``""``: a message naming a
    hidden first sheet named one the user could not find."""
    if getattr(sheet, "sheet_state", "visible") == "visible":
        return ""
    if sheet.sheet_state == "veryHidden":  # (set by a macro; Excel's Unhide does not list it)
        return ", which is hidden from Excel's Unhide too (a macro set it to veryHidden)"
    return ", which is hidden (Excel does not show it: right-click a sheet tab, Unhide / 取消隐藏)"


def sheet_hint(path: Path, column: str, field: str) -> str:
    """Where an XLSX file's header is read from, when it lacks ``column`` for the ticket ``field``;
    ``""`` for other files.

    Staff save tickets under a title row, or behind a sheet of totals: the columns listed then are
    the title's or the totals', which no ``--text-col`` can map. Says which sheet is read, and the
    row or the later sheet that does name ``column`` (a row among the first ten).
    """
    if file_format(path) != "xlsx":
        return ""
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception:
        return ""
    try:
        sheets = workbook.worksheets
        for sheet in sheets:
            sheet.reset_dimensions()
        read = (
            f"the header is read from the first row of the first sheet, {_quoted(sheets[0].title)}"
            f"{hidden_sheet_note(sheets[0])}"
        )
        rows = sheets[0].iter_rows(min_row=1, max_row=10, values_only=True)
        above: list[list[str]] = []
        for rowno, row in enumerate(rows, 1):
            cells = [("" if v is None else str(v)).strip() for v in row]
            if rowno > 1 and column in cells:
                return (
                    f"{read}, but row {rowno} names {_quoted(column)}{_split_header(above, cells)}"
                )
            above.append(cells)
        later = [sheet.title for sheet in sheets[1:] if column in _sheet_header(sheet)]
        if later:
            return (
                f"{read}, but sheet {_quoted(later[0])} has a column {_quoted(column)}: move that "
                "sheet first, "
                "or save it as a file of its own"
            )
        return f"{read}; map yours with --{field}-col"
    finally:
        workbook.close()


def _quoted(value: object, *, cell: bool = False) -> str:
    """:func:`model.text.quoted`: a column's, key's or sheet's name or a cell, masked, as a
    message quotes it (imported here, as this module imports nothing heavy at its top)."""
    from model.text import quoted

    return quoted(value, cell=cell)


# A ticket number as Excel writes a long number in a CSV file it saves (2.02401E+17), or a script
# that read it as a float (2.024010509030001e+17): its digits are lost.
SCIENTIFIC_ID = r"^[0-9](\.[0-9]+)?[eE]\+[0-9]{2,}$"


def scientific_ids(ids: pa.Array | pa.ChunkedArray) -> tuple[int, int | None]:
    """How many of ``ids`` (strings) are numbers in scientific notation (:data:`SCIENTIFIC_ID`),
    and the index of the first (None: there is none)."""
    import pyarrow.compute as pc

    hits = pc.fill_null(pc.match_substring_regex(ids, SCIENTIFIC_ID), False)
    n = int(pc.sum(hits).as_py() or 0)
    return (n, int(pc.indices_nonzero(hits)[0].as_py())) if n else (0, None)


def scientific_ids_message(n: int, first: str, where: str) -> str:
    """The warning for ``n`` ids in scientific notation, the first ``first``, read on ``where``
    (``row 3 of out.csv``, ``export.csv data row 3``): ``label``'s, ``train``'s and
    ``evaluate``'s."""
    from model.text import counted

    return (
        f"{counted(n, 'ticket id', thousands=True)} "
        f"{'is a number' if n == 1 else 'are numbers'} in scientific notation "
        f"({_quoted(first, cell=True)} on {where}), as "
        "Excel writes a long number in a CSV file it saves: most of "
        f"{'its' if n == 1 else 'their'} digits are lost, so "
        f"{'it' if n == 1 else 'they'} cannot be joined back to the ticket "
        "system; export the tickets again and give them to paidan without opening "
        "them in Excel (or save them from Excel as .xlsx with the id column "
        "formatted as text)"
    )


def file_format(path: Path) -> str:
    """The format of a ticket file from its extension; an unknown extension is an error."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        # What to do with an .xls export or a .csv.gz, as a directory holding one is told.
        todo = f" ({advice})" if (advice := unreadable_part(path)) else ""
        raise TicketFileError(
            f"{path}: unsupported file type {path.suffix!r}{todo}; use CSV, XLSX, JSONL, JSON or "
            "Parquet"
        )
    return fmt


# Files in a directory of parts that hold tickets in a format no reader reads, by extension, with
# what to do: a directory holding one is refused, since skipping it would lose its tickets without
# a word. Files of other types (README.md, a .docx or .pdf of notes, images, Thumbs.db, Spark's
# _SUCCESS) are not tickets and are left alone.
_CONVERT = {
    **dict.fromkeys(
        (".xls", ".xlsb", ".xltx", ".xltm", ".et", ".ods", ".numbers"),
        "save it as .xlsx or CSV",
    ),
    **dict.fromkeys((".dbf", ".mdb", ".accdb"), "export it as CSV or XLSX"),
    **dict.fromkeys((".zip", ".7z", ".rar", ".tar", ".tgz"), "extract it"),
}
# One compressed file (x.jsonl.gz, x.csv.gz): refused when what it compresses is a ticket file.
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


def unreadable_part(path: Path) -> str | None:
    """What to do with a file of a directory of parts that holds tickets no reader reads (an
    ``.xls`` export, a ``.jsonl.gz`` part), or ``None`` when it is readable or not a ticket file."""
    suffix = path.suffix.lower()
    if suffix not in _COMPRESSED:
        return _CONVERT.get(suffix)
    inner = Path(path.stem).suffix.lower()
    if inner in FORMATS:
        return "decompress it"
    if inner in _CONVERT:
        return f"decompress it, then {_CONVERT[inner]}"
    return None


def display_name(path: str | os.PathLike[str]) -> str:
    """``path`` as text that can be stored and written as UTF-8.

    On Linux a file name is bytes; one that is not UTF-8 (a GBK name, as ``unzip`` leaves the
    files of an archive made on a Chinese Windows) reaches Python with lone surrogates, which
    pyarrow, JSON files and the console refuse. Its bytes are shown as ``\\xNN`` escapes.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def printable(text: str) -> str:
    """``text`` (a message naming a file, say) with the bytes of a non-UTF-8 name escaped.

    See :func:`display_name`; other lone surrogates are escaped too.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


# A ticket file with its name as messages give it (:func:`named_paths`): given in place of a path,
# it is read and named so.
NamedPath = tuple[Path, str]


def expand_paths(paths: Iterable[str | Path | NamedPath]) -> list[Path]:
    """Files named directly, plus the ticket files inside named directories: see
    :func:`named_paths`, which also gives each file's name."""
    return [path for path, _ in named_paths(paths)]


# A directory of ``paidan label``'s chunks (``OUTPUT.parts/``, with its manifest): an interrupted
# run's, no tickets. training.label names them so (PARTS_SUFFIX, MANIFEST_FILE).
_LABEL_PARTS = (".parts", "manifest.json")
# A model version's directory: its metadata beside its router (model.artifact's METADATA_FILE,
# ROUTER_FILE, SERVING_FILE). And what marks a model root besides its versions (model.registry's
# CURRENT_FILE, REGISTRY_FILE, EVAL_DIR/EVAL_META_FILE): neither holds tickets, but its JSON files
# were read as ticket files, and a root's frozen evaluation set (eval/frozen.parquet) as tickets.
_MODEL_VERSION = ("metadata.json", "router.joblib", "serving.joblib")
_MODEL_ROOT = ("current", "registry.json", "eval/frozen.json")


def _model_directory(d: Path) -> bool:
    """Whether ``d`` is a model version (:data:`_MODEL_VERSION`) or a model root
    (:data:`_MODEL_ROOT`), which a directory of tickets may hold (``./models``, the default root,
    under the working directory) but which holds no tickets."""
    if (d / _MODEL_VERSION[0]).is_file() and any((d / f).is_file() for f in _MODEL_VERSION[1:]):
        return True
    return any((d / f).is_file() for f in _MODEL_ROOT)


# paidan's own JSON outputs, by the keys each holds (training.label's summary, training.evaluate's,
# training.drift's and training.compare's reports): a directory of tickets may keep them beside
# the tickets they were made from, but they hold none.
_PAIDAN_OUTPUTS = (
    (
        ("rows", "labelled", "errors", "input", "output", "model_version"),
        "paidan label's summary of a run",
    ),
    (("n", "seen_rows", "model_version"), "paidan evaluate's report"),
    (("model_version", "records", "period", "psi"), "paidan drift's report"),
    (
        ("champion", "challenger", "champion_model_version", "challenger_model_version"),
        "paidan's comparison of two models",
    ),
)
# Larger than any report paidan writes: a JSON file past it is not read to be told.
_PAIDAN_OUTPUT_BYTES = 64 << 20


def paidan_output(path: Path) -> str | None:
    """What ``path`` is when it is one of paidan's own JSON outputs (a ``.json`` file holding one
    object with :data:`_PAIDAN_OUTPUTS`' keys), else ``None``."""
    try:
        if path.suffix.lower() != ".json" or path.stat().st_size > _PAIDAN_OUTPUT_BYTES:
            return None
        with open(path, "rb") as f:
            head = f.read(64)
            if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):  # an array of tickets
                return None
            head += f.readline()
            try:
                value = json.loads(head.decode("utf-8-sig"))
            except ValueError:  # paidan's outputs are indented: the object goes on
                value = json.loads((head + f.read()).decode("utf-8-sig"))
            else:
                # A whole object on its first line: JSON Lines (a ticket a line) when anything
                # follows, which is known without reading the file (whole, it was read twice).
                while rest := f.read(1 << 12):
                    if rest.strip():
                        return None
    except (OSError, ValueError):  # JSON Lines, or broken: the readers tell
        return None
    return _paidan_output_kind(value)


def _paidan_output_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for keys, what in _PAIDAN_OUTPUTS:
            if all(k in value for k in keys):
                return what
    return None


def as_paths(files: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """The files an option names: one, several (``--remits a.csv --remits b.xlsx``) or none."""
    if files is None:
        return []
    if isinstance(files, str | Path):
        return [Path(files)]
    return [Path(p) for p in files]


def named_paths(paths: Iterable[str | Path | NamedPath]) -> list[NamedPath]:
    """Files named directly, plus the supported files inside named directories, each with its
    name: a file named directly by its name, one inside a directory by its path relative to it
    (``2024-03/part-1.csv``, as the model's metadata records it).

    A directory stands for every ticket file under it, in its subdirectories too (March's export
    in parts in ``backlog/2024-03/``, a Spark or Hive ``month=2024-01/`` partition), in order of
    their paths relative to it (a subdirectory's files where its name sorts): only the top level
    was read, and the subdirectories' tickets were left out without a word.

    Inside a directory, hidden files and subdirectories (``.x``) and Excel's owner files
    (``~$x.xlsx``) are skipped: Excel keeps ``~$x.xlsx`` beside a workbook while it is open, macOS
    writes ``._x.xlsx`` on a USB stick or a share, and neither holds tickets, but either refused the
    whole run as a workbook that is not one. So is the ``OUTPUT.parts/`` directory of an
    interrupted ``paidan label`` run, and a model version or model root (``./models``, the default
    root, under a directory of tickets: its JSON files were read as ticket files, its frozen
    evaluation set as tickets), and paidan's own JSON outputs kept beside the tickets they were
    made from (:func:`paidan_output`: a label summary, an evaluate report), noted in the log. A
    subdirectory whose name begins with ``_`` is where Spark
    and Hadoop write a job's unfinished output (``_temporary/``): one holding ticket files is
    refused, as reading it would read tickets twice or half-written.

    A file reached twice (``exports/ exports/2024/``, or a directory and a file in it) keeps the
    name it was first reached by: its rows are numbered alike both times (:func:`to_canonical`),
    and caught as copies, as those of a file given twice are. A file given with its name (a pair
    of this function's own) is kept as it is: a command that lists the files once (for their
    SHA-256) reads them with the names they were listed with.

    Raises
    ------
    TicketFileError
        For a path that does not exist, a directory with no ticket files, or one holding ticket
        files in a format no reader reads (:func:`unreadable_part`) or in a ``_`` subdirectory,
        which are named.
    """
    out: list[NamedPath] = []
    first: dict[Path, str] = {}  # the name each file was first reached by

    def named(path: Path, name: str) -> NamedPath:
        return path, first.setdefault(path.resolve(), name)

    for given in paths:
        if isinstance(given, tuple):
            out.append(given)
            continue
        p = Path(given)
        try:
            is_dir = p.is_dir()
            is_file = not is_dir and p.is_file()
        except OSError as e:  # a directory on the way cannot be entered: it was a traceback
            raise _cannot_look_at(p, e) from None
        if is_dir:
            files, hidden = _directory_files(p)
            unreadable = [f"{rel!r} ({todo})" for q, rel in files if (todo := unreadable_part(q))]
            if unreadable:
                raise TicketFileError(
                    f"{p}: the directory holds {', '.join(unreadable)}, which cannot be read "
                    "(CSV, XLSX, JSONL, JSON and Parquet can); convert them, or move them out of "
                    "the directory"
                )
            if hidden:
                raise TicketFileError(
                    f"{p}: the directory holds ticket files in {', '.join(map(repr, hidden))}: "
                    "Spark and Hadoop keep a job's unfinished output in a directory whose name "
                    "begins with _ (as _temporary/), which is not read; delete it if the job "
                    "finished, or rename it to have its files read"
                )
            parts = [(q, rel) for q, rel in files if q.suffix.lower() in FORMATS]
            for q, rel in list(parts):
                if what := paidan_output(q):  # kept beside the tickets it was made from
                    logger.info("%s: skipped %s, %s (no tickets)", p, display_name(rel), what)
                    parts.remove((q, rel))
            if not parts:
                raise TicketFileError(
                    f"{p}: the directory holds no CSV, XLSX, JSONL, JSON or Parquet files, in "
                    "its subdirectories neither"
                )
            out.extend(named(q, rel) for q, rel in parts)
        elif is_file:
            out.append(named(p, p.name))
        else:
            raise _not_a_file(p)
    return out


def _not_a_file(path: Path) -> TicketFileError:
    """The error for a path given that is neither a file nor a directory: a pipe (bash's
    ``<(cat x.csv)`` names one, ``/dev/fd/63``) or ``-`` for standard input cannot be read, as
    tickets are read more than once (columns, then rows; a resumed run again) and their format is
    told by the file name's extension; anything else does not exist."""
    save = "save it to a file first (… > tickets.csv) and name that file"
    try:
        mode = path.stat().st_mode
    except OSError:
        if str(path) == "-":
            return TicketFileError(f"-: it is standard input, which cannot be read; {save}")
        return TicketFileError(f"{path}: no such file or directory")
    what = "a pipe (as bash's <(…) names)" if stat.S_ISFIFO(mode) else "not a regular file"
    return TicketFileError(
        f"{path}: it is {what}, which cannot be read, as tickets are read more than once and "
        f"their format is told by the file name's extension; {save}"
    )


def _cannot_look_at(path: Path, e: OSError) -> TicketFileError:
    """The error for a path given that cannot be looked at: for a permission, naming the directory
    on its way that cannot be entered (``/data/locked/`` of ``/data/locked/a.csv``)."""
    if not isinstance(e, PermissionError):
        return TicketFileError(f"{path}: it cannot be read ({e.strerror})")
    full = Path(os.path.abspath(path))
    for inner in [*reversed(full.parents), full][1:]:
        try:
            inner.stat()
        except OSError:
            return TicketFileError(
                f"{path}: it cannot be read ({e.strerror}), as the directory {inner.parent} it is "
                "in cannot be entered; make that directory readable"
            )
    return TicketFileError(f"{path}: it cannot be read ({e.strerror}); make it readable")


def _directory_files(top: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """The files under ``top`` that are not skipped (see :func:`named_paths`), with their paths
    relative to it, in order of those paths; and the ``_`` subdirectories holding ticket files
    (relative, ending in ``/``). A directory reached twice (through a symbolic link) is read once,
    where it is first reached.

    A directory that cannot be read, or whose entries cannot be looked at (``r`` but no ``x``), is
    refused, named: what it holds would be left out without a word. A ``_`` one too, as it is
    looked into for a job's unfinished output."""
    files: list[tuple[Path, str]] = []
    hidden: list[str] = []
    seen = {top.resolve()}

    def refused(rel: str, e: OSError) -> TicketFileError:
        what = f"its subdirectory {rel!r}" if rel else "it"
        return TicketFileError(
            f"{top}: {what} cannot be read ({e.strerror}); make it readable, or name the files "
            "and directories to read instead"
        )

    def listing(d: Path, rel: str) -> list[Path]:
        try:
            return sorted(d.iterdir())
        except OSError as e:  # a lost+found of root's at a mount point: read, it was a traceback
            raise refused(rel, e) from None

    def kind(q: Path, rel: str) -> tuple[bool, bool]:
        """Whether ``q``, in the directory ``rel``, is a directory, and whether a file."""
        try:
            return q.is_dir(), q.is_file()
        except OSError as e:  # its directory lists its names, but may not be entered (no x)
            raise refused(rel, e) from None

    def holds_tickets(d: Path, rel: str) -> bool:
        """Whether ``d`` holds ticket files at any depth (hidden files aside; a symbolic link to a
        directory is not followed)."""
        for q in listing(d, rel):
            is_dir, is_file = kind(q, rel)
            if is_dir and not q.is_symlink():
                if holds_tickets(q, f"{rel}{q.name}/"):
                    return True
            elif (
                is_file
                and not q.name.startswith((".", "~$"))
                and (q.suffix.lower() in FORMATS or unreadable_part(q))
            ):
                return True
        return False

    def walk(d: Path, rel: str) -> None:
        for q in listing(d, rel):
            name = q.name
            if name.startswith((".", "~$")):
                continue
            is_dir, is_file = kind(q, rel)
            if is_dir:
                sub = f"{rel}{name}/"
                if name.endswith(_LABEL_PARTS[0]) and kind(q / _LABEL_PARTS[1], sub)[1]:
                    continue
                try:
                    model = _model_directory(q)
                except OSError as e:  # listed, but its entries cannot be looked at (no x)
                    raise refused(sub, e) from None
                if model:
                    continue
                real = q.resolve()
                if real in seen:
                    continue
                seen.add(real)
                if name.startswith("_"):
                    if holds_tickets(q, sub):
                        hidden.append(sub)
                    continue
                walk(q, sub)
            elif is_file:
                files.append((q, f"{rel}{name}"))

    walk(top, "")
    return files, hidden


def cell_text(value: Any) -> str:
    """One JSON, Parquet or spreadsheet value as the text of a ticket field.

    Integers stay integers (ticket number 1001, department code 101), where a pandas column with
    a missing value would have made them floats ("1001.0", "101.0"); so does a whole float, as a
    spreadsheet reader writes it (a file written from such a column holds 1001.0). A missing
    value (None, NaN) is empty; objects and lists are JSON, and so is a boolean alone (``true``,
    as the file writes it and as it reads inside a list; Python's ``True`` was written). Bytes (a
    Parquet BINARY column without the UTF8 annotation, as Hive and Impala write strings) are UTF-8
    text.

    Raises
    ------
    UnicodeDecodeError
        For bytes that are not UTF-8; the caller names the row and column.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value)


def _json_default(value: Any) -> str:
    """A value inside a Parquet list or struct that JSON has no type for, as :func:`cell_text`
    gives it alone: bytes as UTF-8 text, others (a time) as ``str``."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def split_departments(cell: str) -> tuple[str, list[str]]:
    """The lead department of a department cell and its co-departments (see :data:`CO_COL`).

    ``"住建局；残联; 住建局"`` gives ``("住建局", ["残联"])``: names are trimmed, blanks and repeats
    dropped. A JSON list (``["住建局", "残联"]``, as JSON and Parquet write an array) is read the
    same way. A cell naming one department gives it and ``[]``.
    """
    cell = cell.strip()
    names: list[str] = []
    parts: list[Any] = JOINT_SEPARATOR.split(cell)
    if cell.startswith("["):
        try:
            loaded = json.loads(cell)
        except ValueError:
            loaded = None
        if isinstance(loaded, list):
            parts = [cell_text(v) for v in loaded]
    for part in parts:
        name = str(part).strip()
        if name and name not in names:
            names.append(name)
    return (names[0], names[1:]) if names else ("", [])


def joint_departments(cell: str) -> str:
    """A department cell as it is stored: its departments (:func:`split_departments`), the lead
    first, joined by :data:`JOINT_JOINER`.

    ``"市住建局；；市公安局"`` and ``"；市住建局; 市公安局；"`` give ``"市住建局；市公安局"``, as
    training reads them: an empty segment (a separator typed twice) does not survive, nor does a
    repeat. A cell naming one department gives it trimmed, and one naming none ``""``.
    """
    lead, co = split_departments(cell)
    return JOINT_JOINER.join([lead, *co])


# What people write between the items of a list: a joint dispatch written 市人社局、市住建局 rather
# than with JOINT_SEPARATOR (see comma_listed).
LIST_COMMAS = re.compile(r"[、，,]")
# The same, and what else a department cell of history separates names with: a line break (an
# Excel cell's Alt+Enter, 市残联\n市住建局), a space (ideographic too) or a slash. Learnt as written,
# such a cell was a department of its own, suggested `auto`, and one with a line break could not be
# confirmed (POST /v1/feedback refuses a control character).
LIST_SEPARATORS = re.compile(r"[、，,/／]|\s+")
# Those of LIST_SEPARATORS that are no comma: a name may hold a space, and is then split at them
# only when it is no known department itself (税务 一分局、住建 is led by 税务 一分局).
LIST_SPACES = re.compile(r"[/／]|\s+")


def comma_listed(leads: Iterable[str], known: Collection[str]) -> dict[str, list[str]]:
    """The department labels among ``leads`` that list departments of ``known`` separated by 、,
    a comma, a line break, a space or a slash (:data:`LIST_SEPARATORS`), each with those
    departments, the lead first.

    ``"市人社局、市住建局"`` (or ``"市人社局\n市住建局"``, two lines of an Excel cell) is a joint
    dispatch (会办) written as people write a list, when both are departments ``known`` (of the
    data, or of the model); learnt as written it was a department of its own. A label ``known``
    itself, or with a part that is not, is left alone: a department may have a comma or a space in
    its name.
    """
    out: dict[str, list[str]] = {}
    for label in set(leads):
        if label in known or not LIST_SEPARATORS.search(label):
            continue
        parts = list(dict.fromkeys(_listed_names(label, known)))
        if len(parts) > 1 and all(p in known for p in parts):
            out[label] = parts
    return out


def _listed_names(label: str, known: Collection[str]) -> Iterator[str]:
    """The names ``label`` lists (:func:`comma_listed`): split at its commas, and a part that is no
    name ``known`` at its spaces and slashes too."""
    for part in LIST_COMMAS.split(label):
        name = part.strip()
        if name in known:
            yield name
        elif name:
            yield from (q for q in LIST_SPACES.split(name) if q)


def split_comma_listed(df: pd.DataFrame, known: Collection[str] | None = None) -> dict[str, int]:
    """Read the department cells of ``df`` that :func:`comma_listed` finds as joint dispatches,
    in place: the lead in ``department``, the others before any co-departments in :data:`CO_COL`.

    ``known``: the departments a part must be one of; default those of ``df`` itself, the lead
    departments without a list comma and the co-departments, as training reads its data (an
    evaluation passes the model's labels). Returns the rows of each such label, most first.
    """
    if "department" not in df or df.empty:
        return {}
    leads = df["department"].astype(str)
    distinct = leads.unique().tolist()  # a label column holds few distinct values
    if known is None:
        known = {d for d in distinct if d and not LIST_COMMAS.search(d)}
        if CO_COL in df:
            known |= {
                d for co in df[CO_COL].fillna("").unique() if co for d in co.split(JOINT_JOINER)
            }
        # A name with a space or a slash is a department of its own unless its parts all are
        # (市残联 市住建局 is a list, 税务 一分局 a name).
        spaced = {d for d in known if LIST_SPACES.search(d)}
        known -= set(comma_listed(spaced, known - spaced))
    listed = comma_listed(distinct, known)
    if not listed:
        return {}
    rows = leads.isin(listed)
    co = df[CO_COL].fillna("").astype(str) if CO_COL in df else None
    joined = [
        split_departments(JOINT_JOINER.join([*listed[lead], *([c] if c else [])]))
        for lead, c in zip(
            leads[rows], co[rows] if co is not None else [""] * int(rows.sum()), strict=True
        )
    ]
    df.loc[rows, "department"] = [lead for lead, _ in joined]
    df.loc[rows, CO_COL] = [JOINT_JOINER.join(others) for _, others in joined]
    counts = Counter(leads[rows].tolist())  # in the order first met, then most first
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def label_value(head: str, value: Any) -> str:
    """A stored label as a head learns it: trimmed, and a joint dispatch's lead department."""
    text = cell_text(value).strip()
    return split_departments(text)[0] if head == "department" else text


def split_joint(departments: pd.Series) -> tuple[pd.Series, pd.Series]:
    """:func:`split_departments` of a column: ``(leads, co-departments joined)``."""
    import pandas as pd

    leads = departments.astype(str)
    co = pd.Series("", index=departments.index, dtype=object)
    joint = leads.str.contains(JOINT_SEPARATOR) | leads.str.lstrip().str.startswith("[")
    if joint.any():
        parts = leads[joint].map(split_departments)
        leads = leads.copy()
        leads[joint] = parts.map(lambda p: p[0])
        co[joint] = parts.map(lambda p: JOINT_JOINER.join(p[1]))
    return leads, co


def read_table(path: str | Path, columns: ColumnMap | None = None) -> pd.DataFrame:
    """Read one file as a table of strings (missing values become empty strings).

    With ``columns``, a CSV file's fields are separated by its delimiter, and its header is
    checked for the columns (:func:`check_columns`) before its rows, whose errors a header read
    with the wrong delimiter would otherwise cause first.
    """
    import pandas as pd

    path = Path(path)
    fmt = file_format(path)
    try:
        if fmt == "csv":
            df = _read_csv(path, columns)
        elif fmt == "xlsx":
            workbook = load_workbook(path, read_only=True, data_only=True)
            try:
                pads = _checked_workbook(path, workbook, columns)
                padded = _padded_cells(workbook.worksheets[0]) if pads else {}
                rounded_id_cells(path, workbook.worksheets[0], (columns or ColumnMap()).id)
            finally:
                workbook.close()
            df = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
            _xlsx_texts(df)
            for (row, col), text in padded.items():  # pandas reads the value without its format
                if row < len(df) and col < len(df.columns):
                    df.iat[row, col] = text
        elif fmt == "jsonl":
            df = _read_json_array(path) if json_array(path) else _read_jsonl(path)
        else:
            with closing(parquet_frames(path)) as frames:
                df = next(frames)
    except TicketFileError:
        raise
    except Exception as e:
        raise unreadable_file(path, fmt, e) from e
    return _strings(path, df)


def _strings(path: Path, df: pd.DataFrame) -> pd.DataFrame:
    """A table as :func:`read_table` gives it: names stripped, cells strings ("" for missing)."""
    refuse_same_names(f"{path}", [str(c) for c in df.columns])
    df.columns = [str(c).strip() for c in df.columns]
    return df.astype(object).where(df.notna(), "").astype(str)


# Hive's and Spark's directory of one partition of a table: KEY=VALUE, the value's special
# characters (/, =, %, :, …) written as %XX escapes, a missing value as this name.
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def partition_values(name: str) -> dict[str, str]:
    """The partition values in a file's name as :func:`named_paths` gives it, relative to the
    directory given: ``{"department": "住建局", "month": "2024-01"}`` for
    ``department=住建局/month=2024-01/part-0.parquet`` (escapes decoded; a null partition,
    :data:`HIVE_NULL`, is ``""``, as a missing cell is; a name that is not UTF-8 is read as
    GB18030). A file named directly has none."""
    values: dict[str, str] = {}
    for part in PurePosixPath(name).parts[:-1]:
        named = os.fsencode(part)  # a GBK name (unzipped from a Chinese Windows) as GBK
        try:
            part = named.decode("utf-8")
        except UnicodeDecodeError:
            part = named.decode("gb18030", "backslashreplace")
        key, eq, value = part.partition("=")
        key = unquote(key).strip()
        if eq and key:
            value = unquote(value)
            values[key] = "" if value == HIVE_NULL else value
    return values


def from_partitions(columns: ColumnMap, partitions: Mapping[str, str]) -> ColumnMap:
    """``columns`` without the fields a partition gives (:func:`partition_values`): a file of a
    partitioned table need not have them."""
    given = {
        f: None for f in CANONICAL if f != "text" and any(n in partitions for n in columns.names(f))
    }
    return replace(columns, **given) if given else columns  # type: ignore[arg-type]


def with_partitions(raw: pd.DataFrame, partitions: Mapping[str, str]) -> pd.DataFrame:
    """``raw`` with a column for each of ``partitions`` it has none of, holding its value."""
    added = {key: value for key, value in partitions.items() if key not in raw.columns}
    return raw.assign(**added) if added else raw


def table_chunks(
    path: str | Path, columns: ColumnMap | None = None, size: int | None = None
) -> Iterator[pd.DataFrame]:
    """:func:`read_table` of one file as tables of at most ``size`` rows (``None``: one).

    Every format is read a chunk at a time: CSV a line at a time (:func:`csv_chunks`), XLSX a row
    at a time (:func:`xlsx_frames`), JSON Lines and JSON arrays an object at a time
    (:func:`json_frames`), Parquet a batch at a time (:func:`parquet_frames`); a history of
    hundreds of thousands of tickets is not held whole. The tables are those of the file read
    whole cut into pieces, and every error is the one reading it whole raises, with its row, once
    the tables before it are yielded. At least one table (with the columns, maybe no rows) is
    yielded.

    With ``columns``, a workbook lacking a column is refused here (:func:`check_columns`), then
    one whose text, title or label cells hold formulas saved without their values
    (:func:`refuse_unsaved_formulas`), before its first table.
    """
    path = Path(path)
    fmt = file_format(path)
    if fmt != "csv" and size is None:
        df = read_table(path, columns)
        if fmt == "xlsx" and columns is not None:
            check_columns(path, list(df.columns), columns)
            refuse_unsaved_formulas(
                path,
                [c for c in df.columns if (df[c] == "").any()],
                columns.for_header(path, df.columns),
            )
        yield df
        return
    try:
        if fmt == "csv":
            for df in csv_chunks(path, columns, size):
                yield _strings(path, df)
            return
        assert size is not None
        if fmt == "xlsx":
            first = True
            for df, holes in xlsx_frames(path, columns, size):
                df = _strings(path, df)
                if first and columns is not None:
                    check_columns(path, list(df.columns), columns)
                    refuse_unsaved_formulas(
                        path,
                        [df.columns[i] for i in sorted(holes)],
                        columns.for_header(path, df.columns),
                    )
                first = False
                yield df
        elif fmt == "jsonl":
            for df in json_frames(path, size):
                yield _strings(path, df)
        else:
            first = True
            frames = parquet_frames(path, size)
            for df in frames:
                df = _strings(path, df)
                if first and columns is not None:
                    try:
                        check_columns(path, list(df.columns), columns)
                    except TicketFileError:
                        # Read whole, a row that is not UTF-8 text is said first, wherever it is.
                        for _ in frames:
                            pass
                        raise
                first = False
                yield df
    except TicketFileError:
        raise
    except Exception as e:
        raise unreadable_file(path, fmt, e) from e


def refuse_unsaved_formulas(path: Path, empty: Iterable[str], columns: ColumnMap) -> None:
    """Refuse a workbook whose text, title or label column holds a formula saved without its
    value (:func:`unsaved_formulas`), when one of these columns has an empty cell (``empty``:
    the columns of the whole sheet that have one; every row of them is looked at): read as
    empty, the rows were skipped as "empty text" (evaluate: "no row has a label"), or trained
    with an empty title or without their label.

    Raises
    ------
    TicketFileError
        Naming the sheet row and column of the first such cell, and what to do.
    """
    read = [columns.source_for(field) for field in ("text", "title", *LABELS)]
    have = set(empty)
    found_empty = {c for c in read if c is not None and c in have}
    if not found_empty:
        return
    with closing(unsaved_formulas(path, sorted(found_empty, key=read.index))) as found:
        first = next(found, None)
    if first is not None:
        raise TicketFileError(f"{path}, row {first[0]}: {unsaved_formula(*first[1:])}")


def _checked_workbook(path: Path, workbook: Any, columns: ColumnMap | None) -> bool:
    """Refuse a workbook whose later sheets hold tickets (:func:`check_one_ticket_sheet`) or
    whose header names a column twice (:func:`checked_header`); whether it pads numbers
    (:func:`pads_numbers`). ``workbook`` is open read-only, its sheets' dimensions reset."""
    for sheet in workbook.worksheets:
        sheet.reset_dimensions()  # a stale <dimension> would cut the headers compared
    check_one_ticket_sheet(path, workbook, columns.text if columns else None)
    first = workbook.worksheets[0] if workbook.worksheets else None
    row = next(first.iter_rows(max_row=1, values_only=True), None) if first else None
    checked_header(f"{path}", ["" if v is None else str(v) for v in row or ()])
    return bool(pads_numbers(workbook))


def _xlsx_texts(df: pd.DataFrame) -> None:
    """Undo Excel's ``_x000D_`` and kin in the cells of a table read from a workbook
    (:func:`xlsx_text`), in place."""
    for name in df.columns:
        escaped = df[name].str.contains("_x", regex=False, na=False)
        if escaped.any():
            df.loc[escaped, name] = df.loc[escaped, name].map(xlsx_text)


def excel_cell(cell: Any) -> Any:
    """A workbook cell as ``pandas.read_excel`` (openpyxl) hands it to its parser: ``""`` for an
    empty cell, NaN for an error (``#N/A``), a whole number as an ``int``, others as they are."""
    from openpyxl.cell.cell import TYPE_ERROR, TYPE_NUMERIC

    value = cell.value
    if value is None:
        return ""
    if cell.data_type == TYPE_ERROR:
        return math.nan
    if cell.data_type == TYPE_NUMERIC:
        number = int(value)
        return number if number == value else float(value)
    return value


def _excel_row(cells: Iterable[Any]) -> list[Any]:
    """:func:`excel_cell` of a row's cells, without its empty cells at the end (as pandas)."""
    values = [excel_cell(cell) for cell in cells]
    while values and isinstance(values[-1], str) and values[-1] == "":
        values.pop()
    return values


@dataclass
class _SheetExtent:
    """What a first pass over a sheet tells (:func:`xlsx_frames`): its header row (as
    :func:`excel_cell` reads it), the widest row, the last row that holds anything (from 0, the
    header's; -1: none) and the columns (from 0) with an empty cell in some data row."""

    header: list[Any]
    width: int
    last: int
    holes: set[int]


def _sheet_extent(sheet: Any) -> _SheetExtent:
    header: list[Any] = []
    width, last, shortest = 0, -1, 0
    blank = False  # a blank row under the header since the last row that holds anything
    blank_data = False  # a blank row between data rows: each of its cells is empty
    holes: set[int] = set()
    for number, row in enumerate(sheet.rows):
        values = _excel_row(row)
        if number == 0:
            header = values
        if not values:
            blank |= number > 0
            continue
        width = max(width, len(values))
        if number > 0:
            shortest = len(values) if last < 1 else min(shortest, len(values))
            blank_data |= blank
            holes.update(
                i
                for i, v in enumerate(values)
                if (isinstance(v, str) and v == "") or (isinstance(v, float) and math.isnan(v))
            )
        last, blank = number, False
    if last >= 1:
        holes.update(range(0 if blank_data else shortest, width))
    return _SheetExtent(header, width, last, holes)


def xlsx_frames(
    path: Path, columns: ColumnMap | None, size: int
) -> Iterator[tuple[pd.DataFrame, set[int]]]:
    """The first sheet of a workbook as ``pandas.read_excel(path, dtype=str,
    keep_default_na=False)`` reads it, with Excel's escapes undone and zero-padded numbers as
    shown (:func:`read_table`, which checks the workbook first as here, with ``columns``), as
    tables of at most ``size`` rows read a row at a time; each with the columns (from 0) that
    have an empty cell anywhere in the sheet.

    The sheet is read twice: first for its extent (:class:`_SheetExtent`: pandas pads every row
    to the widest, whose columns past the header are ``Unnamed: N``, and drops the blank rows at
    the end), then for its rows, each table parsed as pandas parses the sheet (its
    ``TextParser``), under the header row. openpyxl keeps the workbook's shared strings (in
    effect its text) in memory meanwhile; the rows and their tables are not.
    """
    import pandas as pd
    from pandas.errors import EmptyDataError
    from pandas.io.parsers import TextParser

    workbook = load_workbook(path, read_only=True, data_only=True, keep_links=False)
    try:
        pads = _checked_workbook(path, workbook, columns)
        if not workbook.worksheets:  # as pandas says it
            raise ValueError("Worksheet index 0 is invalid, 0 worksheets found")
        sheet = workbook.worksheets[0]
        extent = _sheet_extent(sheet)
        if extent.last < 0:
            yield pd.DataFrame(), set()
            return
        header = extent.header + [""] * (extent.width - len(extent.header))

        def frame(rows: list[list[Any]], padded: list[tuple[int, int, str]]) -> pd.DataFrame:
            try:
                parser = TextParser(
                    [header, *rows],
                    header=0,
                    dtype=str,
                    keep_default_na=False,
                    skip_blank_lines=False,
                )
                df = parser.read()
            except EmptyDataError:
                return pd.DataFrame()
            _xlsx_texts(df)
            for row, col, text in padded:
                df.iat[row, col] = text
            return df

        rows: list[list[Any]] = []
        padded: list[tuple[int, int, str]] = []
        yielded = False
        cells = iter(sheet.rows)
        next(cells, None)  # the header row
        names = column_names(["" if v is None else str(v) for v in header])
        id_col = (columns or ColumnMap()).id
        id_at = names.index(id_col) if id_col in names else None
        rounded, first_rounded = 0, (0, 0.0)
        for number, row in enumerate(cells, 1):
            if number > extent.last:
                break
            if id_at is not None and id_at < len(row) and excel_rounded(xlsx_value(row[id_at])):
                rounded += 1
                if rounded == 1:
                    first_rounded = (number + 1, xlsx_value(row[id_at]))
            values = _excel_row(row)
            if pads:
                for col, cell in enumerate(row):
                    value = xlsx_value(cell)
                    if isinstance(value, str) and not isinstance(cell.value, str):
                        padded.append((len(rows), col, value))
            rows.append(values + [""] * (extent.width - len(values)))
            if len(rows) >= size:
                yield frame(rows, padded), extent.holes
                rows, padded, yielded = [], [], True
        if rounded:
            warn_rounded_ids(path, rounded, *first_rounded)
        if rows or not yielded:
            yield frame(rows, padded), extent.holes
    finally:
        workbook.close()


def checked_header(where: str, header: Sequence[str]) -> list[str]:
    """A header row's column names (:func:`column_names`), refusing names that are one column.

    Two names that differ only by the spaces around them (:func:`refuse_same_names`), or a name
    written twice: pandas read the second ``text`` as ``text.1``, and train used the first alone
    without a word. Every reader of a header row calls this, so all refuse alike.
    """
    if (pair := same_names(header)) and pair[0] != pair[1]:
        refuse_same_names(where, pair)
    names = column_names(header)
    twice = sorted({h for h in names if names.count(h) > 1})
    if twice:
        raise TicketFileError(
            f"{where}: the header names {', '.join(map(_quoted, twice))} more than once"
        )
    return names


class JsonObject(dict[str, Any]):
    """A JSON object as :func:`load_json_line` reads it; ``repeated``: a key written twice in it."""

    repeated: str | None = None


def _json_object(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject()
    for key, value in pairs:
        if key in obj and obj.repeated is None:
            obj.repeated = key
        obj[key] = value
    return obj


def json_problem(error: json.JSONDecodeError, where: str) -> str:
    """json's message for ``error`` with where it is: the message alone may end mid-sentence
    (``Unterminated string starting at``; the place is in the error's other attributes)."""
    return f"{error.msg}{'' if error.msg.endswith(' at') else ' at'} {where}"


def _long_int(digits: str) -> int | str:
    """A JSON integer, or its digits as text when it has more than Python converts
    (``sys.get_int_max_str_digits()``, 4,300): a column holding one is text, as one holding an
    integer beyond int64 is."""
    try:
        return int(digits)
    except ValueError:
        return digits


_DECODER = json.JSONDecoder(object_pairs_hook=_json_object)
# Tried only after _DECODER failed on an integer too long: a Python call per integer costs.
_LONG_INT_DECODER = json.JSONDecoder(object_pairs_hook=_json_object, parse_int=_long_int)


def raw_decode(text: str, start: int = 0) -> tuple[Any, int]:
    """``json.JSONDecoder.raw_decode`` as every ticket reader decodes JSON: an object remembers a
    key written twice (:class:`JsonObject`), and an integer of more digits than Python converts
    is its digits (:func:`_long_int`), not a ``ValueError`` that stopped the reading of the file
    naming no line.

    Raises
    ------
    json.JSONDecodeError
        Where the text is not JSON.
    """
    try:
        return _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        raise
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        return _LONG_INT_DECODER.raw_decode(text, start)


def load_json_line(line: str) -> Any:
    """One JSON Lines value; an object remembers a key written twice (``json.loads`` keeps the
    last value silently: ``{"text": complaint, "text": note}`` read as the note), and an integer
    of more digits than Python converts is its digits (:func:`raw_decode`)."""
    try:
        return json.loads(line, object_pairs_hook=_json_object)
    except json.JSONDecodeError:
        raise
    except ValueError:  # see raw_decode
        return _LONG_INT_DECODER.decode(line)


def same_names(names: Iterable[str], blanks: bool = False) -> tuple[str, str] | None:
    """The first two of ``names`` that are one column once the spaces around them are removed
    (``"text"`` and ``"text "``), as written; ``None`` when there are none. Blank names are left
    to :func:`column_names`, which numbers them, unless ``blanks`` (JSON keys, which have no
    place to be numbered by: ``""`` and ``" "`` are one key)."""
    seen: dict[str, str] = {}
    for name in names:
        key = name.strip()
        if key in seen:
            return seen[key], name
        if key or blanks:
            seen[key] = name
    return None


def refuse_same_names(where: str, names: Iterable[str], kind: str = "columns") -> None:
    """Refuse two columns (or JSON keys, ``kind="keys"``) that are one once stripped.

    Every reader strips the names: a table with both kept the value of one of them under the
    name silently (label kept the later key's, so the complaint was lost for a note), or pandas
    failed with a traceback (train, evaluate).

    Raises
    ------
    TicketFileError
        Naming ``where`` (the file, and the line of a JSON object) and the two names as written.
    """
    repeated = getattr(names, "repeated", None)  # a JsonObject with a key written twice
    if repeated is not None:
        raise TicketFileError(
            f"{where}: the key {_quoted(repeated)} is written twice (only one value would be read); "
            "rename or drop one of them"
        )
    pair = same_names(names, blanks=kind == "keys")
    if pair:
        raise TicketFileError(
            f"{where}: the {kind} {_quoted(pair[0])} and {_quoted(pair[1])} are both read as "
            f"{_quoted(pair[0].strip())} (spaces around a name do not count); rename or drop one "
            "of them"
        )


def parquet_frames(path: Path, size: int | None = None) -> Generator[pd.DataFrame, None, None]:
    """:func:`read_table` of a Parquet file (before :func:`_strings`) as tables of at most
    ``size`` rows (``None``: one, read whole), read a batch at a time
    (``ParquetFile.iter_batches``). At least one table is yielded.

    Every error is the one reading the file whole raises: a file Arrow cannot open in the words of
    ``pyarrow.parquet.read_table`` (``ParquetFile`` says it otherwise), and of the values that are
    not UTF-8 text the first of the first column that has one, wherever it is (the rest of the
    file is read for it then).
    """
    import pandas as pd
    import pyarrow.parquet as pq

    # Opened by Python, which encodes the name as the file system's (GBK bytes on a zh_CN.GBK
    # server, \xNN escapes given back): Arrow, given the name, encoded it as UTF-8, a file that
    # does not exist there, and refused a name of GBK bytes outright.
    with open(path, "rb") as f:
        parquet = None
        if size is not None:
            try:
                parquet = pq.ParquetFile(f)
            except Exception:
                f.seek(0)  # read whole below, which refuses it in its own words
        tables: Iterator[Any]
        if parquet is None:
            table = pq.read_table(f)
            names, tables = table.column_names, iter([table])
        else:
            names = parquet.schema_arrow.names
            tables = _parquet_tables(parquet, size or 1)
        refuse_same_names(f"{path}", names)
        # A blank name is "Unnamed: 2", as in every other reader (and label's).
        named = column_names(names)
        if not named:  # no columns: no rows either, as pandas makes the table
            yield pd.DataFrame({}, dtype=object)
            return
        row = 1
        yielded = False
        while True:
            try:
                table = next(tables, None)
            except Exception:
                if parquet is None:
                    raise
                f.seek(0)  # a broken page, say: refused as reading the file whole refuses it
                pq.read_table(f)
                raise
            if table is None:
                break
            yield _parquet_frame(path, named, table, row, tables)
            row += table.num_rows
            yielded = True
        if not yielded:
            assert parquet is not None
            yield _parquet_frame(path, named, parquet.schema_arrow.empty_table(), 1, iter(()))


def parquet_batches(parquet: Any, size: int) -> Iterator[Any]:
    """The record batches of a ``pyarrow.parquet.ParquetFile``, of at most ``size`` rows, read one
    row group at a time.

    One ``iter_batches`` over the whole file kept memory for every row group it had read until it
    ended (pyarrow 26, measured on a 600,000-row file of 50,000-row groups: 25 MB more per
    100,000 rows, outside Arrow's memory pool when the file is a Python file object; ``paidan
    label``'s process grew from 414 MB at 300,000 rows to 612 MB at 1,000,000). A reader per
    row group frees each group's memory when the next is read.
    """
    for group in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=size, row_groups=[group])


def _parquet_tables(parquet: Any, size: int) -> Iterator[Any]:
    """The rows of a ``pyarrow.parquet.ParquetFile`` as Arrow tables of ``size`` rows (the last
    may have fewer), whatever its row groups are (a batch does not span one)."""
    import pyarrow as pa

    held: list[Any] = []
    rows = 0
    for batch in parquet_batches(parquet, size):
        held.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(held)
            yield table.slice(0, size)
            rest = table.slice(size)
            held, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(held)


def _parquet_frame(
    path: Path, named: list[str], table: Any, first: int, later: Iterator[Any]
) -> pd.DataFrame:
    """One Arrow table of a Parquet file as Python objects (not pandas' dtypes: an integer column
    with a null stays integers), its rows numbered from ``first``; ``later``: the tables after it,
    read on for an earlier column's value that is not UTF-8 when one of this table is not."""
    import pandas as pd

    data = {}
    for i, (name, column) in enumerate(zip(named, table.columns, strict=True)):
        try:
            data[name] = _parquet_texts(path, name, column.to_pylist(), first)
        except TicketFileError as e:
            raise _earlier_not_utf8(path, named, i, later, first + table.num_rows) or e from None
    return pd.DataFrame(data, dtype=object)


def _earlier_not_utf8(
    path: Path, named: list[str], before: int, tables: Iterator[Any], row: int
) -> TicketFileError | None:
    """The error for the first value that is not UTF-8 of the first of the columns before
    ``before`` that has one in ``tables`` (the rest of a file, from data row ``row``), as reading
    the file whole says it; ``None`` when none has."""
    error = None
    for table in tables:
        for i in range(before):
            try:
                _parquet_texts(path, named[i], table.column(i).to_pylist(), row)
            except TicketFileError as e:
                error, before = e, i
                break
        row += table.num_rows
    return error


def _parquet_texts(path: Path, name: str, values: list[Any], first: int = 1) -> list[str]:
    """:func:`cell_text` of one Parquet column whose first value is data row ``first``; bytes that
    are not UTF-8 are an error naming the row and column (read as ``str(bytes)``, "b'\\xe5…'",
    they were trained on and labelled)."""
    try:
        return [cell_text(v) for v in values]
    except UnicodeDecodeError:
        for row, value in enumerate(values, first):
            try:
                cell_text(value)
            except UnicodeDecodeError as e:
                raise TicketFileError(
                    f"{path}, row {row}: column {_quoted(name)} is not UTF-8 text (byte {e.start} of the "
                    "value); paidan reads a BINARY column as UTF-8"
                ) from None
        raise


def _padded_cells(sheet: Any) -> dict[tuple[int, int], str]:
    """The integers of a sheet shown zero-padded (:func:`xlsx_value`), by (data row, column) from 0.

    A data row is a row under the header in the first row, as ``pandas.read_excel`` reads them.
    """
    out: dict[tuple[int, int], str] = {}
    for row, cells in enumerate(sheet.iter_rows(min_row=2)):
        for col, cell in enumerate(cells):
            value = xlsx_value(cell)
            if isinstance(value, str) and not isinstance(cell.value, str):
                out[row, col] = value
    return out


def read_tickets(
    paths: Sequence[str | Path | NamedPath],
    columns: ColumnMap = ColumnMap(),
    headers: dict[str, list[str]] | None = None,
    repeated_headers: dict[str, list[int]] | None = None,
    on_export: Callable[[Path, str], None] | None = None,
) -> pd.DataFrame:
    """Read ticket files into the canonical schema.

    Parameters
    ----------
    paths : sequence of str or Path
        Files or directories of parts (or files with their names, :func:`named_paths`).
    columns : ColumnMap
        Which input column holds each canonical field, and the delimiter of CSV files.
    headers : dict, optional
        Filled with each file's columns as read, by its name as ``_source`` gives it (a file found
        in a directory by its path relative to it: two months' ``part-1.csv`` are two files), for
        messages about a column the canonical rows cannot show missing.
    repeated_headers : dict, optional
        Filled with the data rows of each file that repeat its header line, left out (see
        :func:`repeats_header`; each file with such rows is warned of in the log too), by its
        name as ``_source`` gives it, for the reports that count them (a file given twice: its
        rows twice, as they were left out twice).
    on_export : callable, optional
        Called with a file that is the feedback export and what to say of it
        (:func:`feedback_export`) as soon as its columns are read; it may raise (``retrain``
        refuses the file). Default: a warning in the log.

    Returns
    -------
    DataFrame
        Columns :data:`CANONICAL` (absent optional fields are empty strings; a missing ``id`` becomes
        ``<file stem>:<row>``, by the file's name as ``_source`` gives it: ``2024/一月:12`` for a
        file found in a directory's ``2024/``), plus ``_source`` and ``_row`` for error messages
        (the file's name as :func:`named_paths` gives it, and the data row), and ``_path``, the
        file as opened.

    Raises
    ------
    TicketFileError
        If a file cannot be read, or lacks the text column or a mapped column. The message lists the
        columns the file does have.
    """
    import pandas as pd

    frames = list(
        iter_tickets(
            paths, columns, headers, repeated_headers=repeated_headers, on_export=on_export
        )
    )
    if not frames:
        raise TicketFileError("no input files were given")
    return pd.concat(frames, ignore_index=True)


def iter_tickets(
    paths: Sequence[str | Path | NamedPath],
    columns: ColumnMap = ColumnMap(),
    headers: dict[str, list[str]] | None = None,
    size: int | None = None,
    repeated_headers: dict[str, list[int]] | None = None,
    on_export: Callable[[Path, str], None] | None = None,
) -> Iterator[pd.DataFrame]:
    """:func:`read_tickets` a chunk at a time: canonical tables of at most ``size`` rows
    (``None``: one per file; each file is read a chunk at a time, see :func:`table_chunks`), at
    least one per file, with ``_row`` counted through each file. An error is raised where reading
    the files whole raises it, after the tables read before it. ``headers`` and
    ``repeated_headers`` are filled as :func:`read_tickets` fills them (a file's repeated header
    rows once it is read through; a file given twice has its rows listed twice, as they were
    left out twice, and a second reading of ``paths`` with the same dict replaces the first's
    lists instead of adding to them)."""
    listed: set[str] = set()  # the names this reading has filled repeated_headers for
    # The files read whole so far, which had every mapped column: a later one lacking a column
    # is told that they have it, not to map its own look-alike (which would refuse them).
    read_before: list[str] = []
    for path, name in named_paths(paths):
        own = columns  # the file's own (ColumnMap.for_header), once its columns are read
        first_row = 1
        repeated: list[int] = []
        totals: list[tuple[int, str, str]] = []  # (data row, column, cell) of each totals row
        # A Spark or Hive table partitioned by department (department=住建局/part-0.parquet)
        # keeps the label in the directory's name: it was left out, and the rows read unlabelled.
        partitions = partition_values(name)
        try:
            for raw in table_chunks(path, from_partitions(columns, partitions), size):
                read = with_partitions(raw, partitions)
                if first_row == 1:  # each file read from the names of its columns it has
                    own = columns.for_header(path, read.columns)
                if first_row == 1 and (said := feedback_export(path, raw.columns, own)):
                    if on_export is None:
                        logger.warning("%s", said)
                    else:  # retrain refuses it: its refusal alone, not this line before it
                        on_export(path, said)
                if first_row == 1 and (said := labelled_output(path, raw.columns)):
                    # Kept beside the tickets it was labelled from (backlog/done/), its tickets
                    # would be read twice.
                    logger.warning(
                        "%s: its own department and category are read as labels, its predictions "
                        "are not; if the tickets it was labelled from are read too, move it out of "
                        "the input directory",
                        said,
                    )
                frame = to_canonical(read, own, path, first_row, name)
                if file_format(path) in HEADER_FORMATS and (again := header_rows(raw, own)):
                    repeated += [first_row + i for i in again]
                    frame = frame.drop(frame.index[again]).reset_index(drop=True)
                if found := _totals_rows(frame, own):
                    totals += [
                        (int(frame[ROW_COL].iat[i]), column, cell) for i, column, cell in found
                    ]
                    frame = frame.drop(frame.index[[i for i, _, _ in found]]).reset_index(drop=True)
                if headers is not None and first_row == 1:
                    headers[display_name(name)] = [str(c) for c in read.columns]
                first_row += len(raw)
                yield frame
        except MissingColumnError as e:
            if not read_before:
                raise
            raise e.beside(path, read_before[0]) from None
        read_before.append(display_name(name))
        if totals:
            logger.warning("%s", totals_message(name, totals))
        if repeated:
            logger.warning("%s", repeated_header_message(path, repeated))
            if repeated_headers is not None:
                # Keyed by name: the same file given twice (or a directory and a file in it) adds
                # its second reading's rows to the first's, which were left out as well; a name
                # first met in this reading replaces what an earlier reading (training.window
                # reads the files again for day-first dates) put there.
                key = display_name(name)
                before = repeated_headers.get(key, []) if key in listed else []
                repeated_headers[key] = before + repeated
                listed.add(key)


# Why each head left a row to a person (the API's ``reason``), since 2026-12-07: an output
# written before lacks them.
LABEL_REASON_COLUMNS = ("department_reason", "category_reason")
# The columns ``paidan label`` adds to its input's (training.label's PRED_COLUMNS, in order): a
# file with all of them but the reasons is its output.
LABEL_OUTPUT_COLUMNS = (
    "pred_department",
    "pred_department_score",
    "pred_category",
    "pred_category_score",
    "decision",
    "top3_departments",
    "co_departments",
    *LABEL_REASON_COLUMNS,
    "error",
)


def labelled_output(path: Path, columns: Iterable[Any]) -> str | None:
    """What to say of a file whose ``columns`` are ``paidan label``'s output's, else ``None``."""
    have = {str(c).strip() for c in columns}
    if not all(c in have for c in LABEL_OUTPUT_COLUMNS if c not in LABEL_REASON_COLUMNS):
        return None
    return (
        f"{path}: is paidan label's output (it has the columns label adds, "
        f"{LABEL_OUTPUT_COLUMNS[0]} to {LABEL_OUTPUT_COLUMNS[-1]})"
    )


# The columns of the feedback export (GET /v1/feedback, serve.schemas.FeedbackRecord) besides a
# ticket's: a file with all of them is that export.
FEEDBACK_EXPORT_COLUMNS = (
    "ticket_id",
    "suggestion",
    "dispatcher_id",
    "model_version",
    "created_at",
)


def feedback_export(path: Path, header: Iterable[Any], columns: ColumnMap) -> str | None:
    """What to say of a file whose ``header`` is the feedback export's, else ``None``.

    Saved and given to ``train`` or ``retrain --history`` as the dispatchers' corrections, each of
    its rows is one decision: read as a ticket, a ticket decided twice trains with both labels,
    and none replaces its ticket's history row, as ``retrain`` makes the database's feedback do.
    """
    have = {str(c).strip() for c in header}
    if not all(c in have for c in FEEDBACK_EXPORT_COLUMNS):
        return None
    numbered = (
        " (its id numbers the decisions; the ticket's is ticket_id)"
        if columns.source_for("id") == "id"
        else ""
    )
    return (
        f"{path}: is paidan's feedback export (GET /v1/feedback; it has the columns "
        f"{', '.join(FEEDBACK_EXPORT_COLUMNS)}): each row is a decision, read as a ticket of its "
        f"own{numbered}, so a ticket decided twice is read with both decisions and none replaces "
        "its ticket's history row; paidan retrain reads the feedback database itself, or this "
        "export given with --feedback FILE, and keeps each ticket's latest decision"
    )


# The formats with a header line, which a file joined from parts may repeat (JSON and Parquet
# name their fields in every record or in the schema).
HEADER_FORMATS = ("csv", "xlsx")
# How many of the rows that repeat the header a warning names.
REPEATED_HEADERS_LISTED = 10


def mapped_columns(header: Sequence[str], columns: ColumnMap) -> list[str]:
    """The columns of ``header`` that ``columns`` reads a ticket field from."""
    sources = {n for f in CANONICAL for n in columns.names(f)}
    return [name for name in header if name in sources]


def repeats_header(cells: Callable[[str], str], names: Sequence[str]) -> bool:
    """Whether a row is the header line again: its cell in each of ``names`` (the mapped columns,
    :func:`mapped_columns`) is that column's name, spaces, a byte-order mark and CSV quotes aside (:func:`repeated_cell`).

    Monthly exports joined with ``copy 1月.csv+2月.csv 一季度.csv`` (or ``cat *.csv``) keep each
    part's header, inside the file, a "CSV UTF-8" part's with its BOM: read as a ticket, each was
    labelled, scored and trained on without a word.
    """
    return bool(names) and all(repeated_cell(cells(name)) == name for name in names)


def header_cell(value: str) -> str:
    """A cell as a header name reads: stripped of spaces and of a byte-order mark."""
    return value.strip().lstrip("\ufeff").strip()


def repeated_cell(value: str) -> str:
    """A cell of a row that may repeat the header, as its name reads (:func:`header_cell`).

    A part whose fields are all quoted (web exports; label's own CSV output) joins into
    ``\ufeff"id","title",…``: the quote is not the field's first character, so the CSV reader keeps
    it, and the cell reads ``"id"``. The quotes are undone here.
    """
    cell = header_cell(value)
    if len(cell) >= 2 and cell[0] == cell[-1] == '"':
        cell = cell[1:-1].replace('""', '"').strip()
    return cell


def _totals_rows(frame: pd.DataFrame, columns: ColumnMap) -> list[tuple[int, str, str]]:
    """The positions of a canonical table's totals rows (:func:`totals_cell` in its id or
    title), each with the input column and the cell that says so."""
    found: dict[int, tuple[str, str]] = {}
    for field in TOTALS_FIELDS:
        source = columns.source_for(field)
        if source is None or field not in frame or frame.empty:
            continue
        cells = frame[field].astype(str)
        hits = cells.str.contains("计", regex=False).to_numpy()
        for i in hits.nonzero()[0]:
            if int(i) not in found and totals_cell(cells.iat[i]):
                found[int(i)] = (source, cells.iat[i])
    return [(i, *found[i]) for i in sorted(found)]


def header_rows(raw: pd.DataFrame, columns: ColumnMap) -> list[int]:
    """The positions of the rows of a table as read (:func:`table_chunks`) that repeat its
    header (:func:`repeats_header`)."""
    names = mapped_columns([str(c) for c in raw.columns], columns)
    if not names or raw.empty:
        return []
    again = raw[names[0]].map(repeated_cell) == names[0]
    for name in names[1:]:
        if not again.any():
            break
        again &= raw[name].map(repeated_cell) == name
    return [int(i) for i in again.to_numpy(dtype=bool).nonzero()[0]]


# A spreadsheet's totals line, in its id or title cell: 合计, 总计, 小计 or 共计, perhaps with a
# colon and a count (合计：1,234 件, 总计(共56条)). Such a row sums the tickets above it.
_TOTALS_CELL = re.compile(
    r"^[\s\u3000]*(?:合|总|小|共)[\s\u3000]*计[\s\u3000]*[:：]?[\s\u3000]*"
    r"(?:[(（]?[\s\u3000]*(?:共[\s\u3000]*)?\d[\d,，]*[\s\u3000]*[件条个项宗单]?[\s\u3000]*[)）]?)?"
    r"[\s\u3000]*$"
)
# The fields whose cell says a row is a totals line.
TOTALS_FIELDS = ("id", "title")


def totals_cell(value: Any) -> bool:
    """Whether a cell reads as a spreadsheet's totals line (:data:`_TOTALS_CELL`): 合计, 总计 …"""
    return isinstance(value, str) and len(value) <= 40 and bool(_TOTALS_CELL.match(value))


def totals_field(cells: Callable[[str], Any], names: Sequence[str]) -> str | None:
    """Of a row's cells in ``names`` (the id and title columns it has, in that order), the first
    column whose cell reads as a totals line (:func:`totals_cell`), else ``None``."""
    return next((name for name in names if totals_cell(cells(name))), None)


def totals_message(name: str, rows: Sequence[tuple[int, str, str]]) -> str:
    """The warning for the totals rows of a file, left out: (data row, column, cell) of each."""
    shown = ", ".join(
        f"{row} ({_quoted(cell.strip(), cell=True)} in {_quoted(column)})"
        for row, column, cell in rows[:REPEATED_HEADERS_LISTED]
    )
    more = (
        f" and {len(rows) - REPEATED_HEADERS_LISTED} more"
        if len(rows) > REPEATED_HEADERS_LISTED
        else ""
    )
    from model.text import counted

    data_rows = "data row" if len(rows) == 1 else "data rows"
    return (
        f"{display_name(name)}: left out {counted(len(rows), 'totals row')}, {data_rows} "
        f"{shown}{more} (a spreadsheet's 合计/总计/小计 line sums the tickets above it; it is not "
        "a ticket)"
    )


def repeated_header_message(path: Path, rows: Sequence[int]) -> str:
    """The warning for the data rows of ``path`` that repeat its header, left out."""
    shown = ", ".join(map(str, rows[:REPEATED_HEADERS_LISTED]))
    more = (
        f" and {len(rows) - REPEATED_HEADERS_LISTED} more"
        if len(rows) > REPEATED_HEADERS_LISTED
        else ""
    )
    from model.text import counted

    left_out = counted(len(rows), "row that repeats", "rows that repeat")
    data_rows = "data row" if len(rows) == 1 else "data rows"  # numbered after it, not counted
    return (
        f"{display_name(path)}: left out {left_out} the header line, {data_rows} "
        f"{shown}{more} (files joined with `copy a.csv+b.csv` or `cat` keep each part's header; "
        "they are not tickets)"
    )


def column_names(header: Sequence[str]) -> list[str]:
    """A header's names, stripped; a blank one named as pandas names it (``Unnamed: 3``, from 0).

    Excel leaves a header cell blank that is merely formatted, or above a column of notes; every
    reader names it the same way, so such a file reads alike in ``train`` and ``label``. A
    byte-order mark before a name goes too: GB18030 has one of its own (84 31 95 33, which editors
    and scripts offer as "GB18030 with BOM"), which decodes to U+FEFF, and the first column was
    named ``\ufefftext``, which no ``--text-col`` can be typed as.
    """
    return [header_cell(str(h)) or f"Unnamed: {i}" for i, h in enumerate(header)]


def require_rows(df: pd.DataFrame | int, paths: Sequence[str | Path | NamedPath]) -> None:
    """Refuse what :func:`read_tickets` read when it holds no rows at all (a header alone);
    ``df`` may be the number of rows read."""
    if df == 0 if isinstance(df, int) else df.empty:
        shown = (str(p[0] if isinstance(p, tuple) else p) for p in paths)
        raise TicketFileError(f"{', '.join(shown)}: no rows to read (a header but no tickets)")


def has_text(df: pd.DataFrame) -> pd.Series:
    """Which canonical rows hold a text that is not blank (:func:`model.text.is_blank`).

    A text of whitespace, invisible characters or Excel's ``_x000D_`` alone is as empty as none:
    it would train or score an empty document. A title does not make up for it: batch labelling,
    ``paidan predict`` and the HTTP API refuse a ticket without a text, so training on one, or
    scoring it, described tickets that no routing path answers.
    """
    from model.text import is_blank

    return ~df["text"].map(is_blank).astype(bool)


# Words of a column's name in the exports of hotline centres (诉求标题, 留言主题; 诉求内容, 留言详情,
# 问题描述; 承办单位, 处理部门; 诉求类别, 问题分类), and whole names in English ones, by the field that
# such a column holds.
_LOOKS_LIKE = {
    "title": (("标题", "主题", "题目"), ("title", "subject", "topic")),
    "text": (
        ("内容", "正文", "描述", "详情"),
        ("text", "content", "contents", "body", "description", "message", "detail", "details"),
    ),
    "department": (("部门", "单位", "承办"), ("department", "dept", "agency")),
    "category": (("类别", "分类", "类型"), ("category", "type", "class", "classification")),
    # 序号 is left out: a row counter, restarting in each export, is no ticket's id.
    "id": (("编号", "工单号", "单号"), ("ticket_id", "ticket id", "ticket_no", "case_id")),
    # 受理时间, 来电时间, 登记日期: what a window (--since, --max-rows) orders the tickets by.
    "time": (("时间", "日期"), ("date", "datetime", "timestamp", "created", "created_at")),
}


def looks_like(field: str, name: str) -> bool:
    """Whether a column or key called ``name`` looks like it holds ``field`` (``title``,
    ``text``, ``department``, ``category``, ``id`` or ``time``; no other field looks like
    anything)."""
    words, names = _LOOKS_LIKE.get(field, ((), ()))
    return any(w in name for w in words) or name.strip().lower() in names


def like_columns(field: str, have: Sequence[str], columns: ColumnMap) -> list[str]:
    """A file's columns that look like they hold ``field`` (:func:`looks_like`): not one mapped
    to another field, nor a header that is a whole line of another separator's CSV."""
    taken = {n for f in CANONICAL for n in columns.names(f)}
    return [
        c
        for c in have
        if c not in taken and not any(sep in c for sep in ",;\t|") and looks_like(field, c)
    ]


def title_like_columns(have: Sequence[str], columns: ColumnMap) -> list[str]:
    """A file's columns that look like a ticket title, when it has none of the title's name.

    ``--title-col`` forgotten on an export with the centre's own names (诉求标题) left its
    tickets read without titles and not a word said (34 of 296 departments changed in label's
    output); a column mapped to another field is none. Empty when the file has the title column
    or ``columns`` maps no title.
    """
    if columns.title is None or any(n in have for n in columns.names("title")):
        return []
    return like_columns("title", have, columns)


def like_hint(field: str, have: Sequence[str], columns: ColumnMap) -> str | None:
    """The column of ``have`` that looks like ``field`` (:func:`like_columns`) with the option
    that maps it, for a message about the field's missing column; ``None`` when none does."""
    like = like_columns(field, have, columns)
    if not like:
        return None
    others = f" (or {', '.join(map(_quoted, like[1:]))})" if len(like) > 1 else ""
    return (
        f"{_quoted(like[0])} looks like the {field}: --{field}-col {_shell_word(like[0])}{others}"
    )


def _shell_word(name: str) -> str:
    """A column's name as a shell takes it in an option: 诉求标题 as it is, a name with a space
    or a quote quoted."""
    plain = re.fullmatch(r"[^\s'\"\\$`;&|<>()*?!#~{}\[\]]+", name)
    return name if plain else shlex.quote(name)


def title_column_note(
    headers: Mapping[str, Sequence[str]], columns: ColumnMap, done: str
) -> str | None:
    """A warning for a title column left unmapped (:func:`title_like_columns`):
    the first file without the title's column that has columns looking like one, naming them
    and the ``--title-col`` to give; ``None`` when no file has such columns (a file may truly
    have no title). ``done``: what happens to the tickets (``labelled``, ``trained``)."""
    found = [
        (name, like)
        for name, have in headers.items()
        if (like := title_like_columns(have, columns))
    ]
    if not found:
        return None
    name, like = found[0]
    option = _shell_word(like[0])
    who = name if len(found) == 1 else f"{name} and {_counted(len(found) - 1, 'other file')}"
    return (
        f"{who} {'has' if len(found) == 1 else 'have'} no column {_quoted(columns.title or '')} "
        f"for the ticket title, so {'its' if len(found) == 1 else 'their'} tickets are {done} "
        f"without titles; {'it' if len(found) == 1 else name} has {', '.join(map(_quoted, like))}: if "
        f"{'it is' if len(like) == 1 else 'one is'} the title, give --title-col {option}"
    )


def _first_unmapped(
    headers: Mapping[str, Sequence[str]], columns: ColumnMap, field: str
) -> tuple[str, list[str], int] | None:
    """The first file (by ``headers``) without any of ``field``'s column names but with columns
    that look like one (:func:`like_columns`): its name, those columns and how many files are
    so; ``None`` when none is, or ``field`` has no names to look for."""
    names = columns.names(field)
    if not names:
        return None
    found = [
        (name, like)
        for name, have in headers.items()
        if not any(n in have for n in names) and (like := like_columns(field, have, columns))
    ]
    if not found:
        return None
    name, like = found[0]
    return name, like, len(found)


def id_column_note(
    headers: Mapping[str, Sequence[str]], columns: ColumnMap, why: str
) -> str | None:
    """A warning for an id column left unmapped: the first file without the id's column that has
    columns looking like one (工单编号), naming them and the ``--id-col`` to give; ``None`` when
    no file has such columns. ``why``: what goes wrong without the ids, a clause after "so" in
    which ``{its}`` stands for the files' ("its" or "their").

    Read without ids, tickets are numbered by row (``export:3``): retraining matches them to no
    dispatcher's decision, training and evaluating count a ticket in two exports that overlap
    twice, labelling counts no id on more than one row. When another file has the id's
    column, the name is to be given beside it (each file is read from the name it has).
    """
    if (first := _first_unmapped(headers, columns, "id")) is None:
        return None
    name, like, files = first
    one = files == 1
    who = name if one else f"{name} and {_counted(files - 1, 'other file')}"
    names = columns.names("id")
    option = f"--id-col {_shell_word(like[0])}"
    if any(n in have for have in headers.values() for n in names):
        # --id-col 工单编号 alone would refuse the files that have the id's own column.
        option = " ".join(f"--id-col {_shell_word(n)}" for n in names) + f" {option}"
    return (
        f"{who} {'has' if one else 'have'} no column {_quoted(columns.id or '')} for the ticket "
        f"id, so {why.format(its='its' if one else 'their')}; {'it' if one else name} has "
        f"{', '.join(map(_quoted, like))}: if {'it is' if len(like) == 1 else 'one is'} the id, "
        f"give {option}"
    )


def time_column_note(
    headers: Mapping[str, Sequence[str]], columns: ColumnMap, option: str
) -> str | None:
    """A warning for a time column left unmapped while ``option`` (``--max-rows``) keeps the
    newest rows: the first file without the time's column that has columns looking like one
    (受理时间), naming them and the ``--time-col`` to give; ``None`` when no file has such
    columns.

    Without times the window keeps the input's last rows, which in a newest-first export are its
    oldest, and said only "map the time column with --time-col", not which column that is.
    """
    if (first := _first_unmapped(headers, columns, "time")) is None:
        return None
    name, like, files = first
    one = files == 1
    who = name if one else f"{name} and {_counted(files - 1, 'other file')}"
    its = "its" if one else "their"
    return (
        f"{who} {'has' if one else 'have'} no column {_quoted(columns.time or '')} for the ticket "
        f"time, so {option} keeps {its} last rows, not {its} newest; {'it' if one else name} has "
        f"{', '.join(map(_quoted, like))}: if {'it is' if len(like) == 1 else 'one is'} the time, "
        f"give --time-col {_shell_word(like[0])}"
    )


def _counted(n: int, noun: str) -> str:
    from model.text import counted

    return counted(n, noun)


def check_columns(path: Path, have: Sequence[str], columns: ColumnMap) -> None:
    """Refuse a file that lacks the text column, or another column the user named explicitly.

    Raises
    ------
    TicketFileError
        Listing the columns the file has, and the option that maps the missing one; or, for a
        CSV header read as one column, the ``--delimiter`` to pass (:func:`delimiter_hint`).
    """
    columns = columns.for_header(path, have)
    for field in CANONICAL:
        src = columns.source_for(field)
        if src is None or src in have:
            continue
        if field == "text" or src != ColumnMap().source_for(field) or columns.names(field)[1:]:
            hint = delimiter_hint(path, have, src, columns.delimiter) or sheet_hint(
                path, src, field
            )
            names = columns.names(field)
            message = (
                f"{path}: no column {_names(names)} for the ticket {field}; the file has columns "
            )
            message += f"{', '.join(map(_quoted, have))} "
            if hint:
                raise TicketFileError(f"{message}({hint})")
            like = like_hint(field, have, columns)
            hint = f"map yours with --{field}-col" + (f"; {like}" if like else "")
            looks = like_columns(field, have, columns)
            raise MissingColumnError(
                f"{message}({hint})", field, src, have, looks[0] if looks else None, names
            )


# How database and scripting exports write a missing value as text, compared without case and
# the spaces around it: NULL (SQL Server, DBeaver, Navicat), \N (MySQL's SELECT … INTO OUTFILE),
# (null) and <null> (some clients), None and nan (a column that went through Python or pandas).
NULL_MARKERS = frozenset({"null", "\\n", "(null)", "<null>", "none", "nan"})


def without_excel_errors(labels: pd.Series) -> pd.Series:
    """``labels`` with Excel's error values (``#N/A``, ``#VALUE!`` …, as text) and a database's
    missing-value markers (:data:`NULL_MARKERS`: ``NULL``, ``\\N``, ``nan`` …) made empty.

    A workbook's error cell is read as an empty cell (:func:`xlsx_value`, :func:`excel_cell`), but
    exported to CSV, JSON or Parquet the error is its text: a department column of failed lookups
    trained ``#N/A`` as a department of its own, and one exported from a database trained
    ``NULL``, the largest of all where many tickets had none. An empty label is an unlabelled
    row, counted and named as the workbook's are. The error values are openpyxl's, which marks a
    workbook's error cells by them. Only labels: a text cell is read as written.
    """
    from openpyxl.cell.cell import ERROR_CODES

    missing = [
        v
        for v in labels.unique()  # a label column holds few distinct values
        if (t := str(v).strip()) in ERROR_CODES or t.lower() in NULL_MARKERS
    ]
    return labels.mask(labels.isin(missing), "") if missing else labels


def without_format_characters(labels: pd.Series) -> pd.Series:
    """``labels`` as training learns them (:func:`model.text.learnt_label`): trimmed, without
    invisible format characters and with their personal data masked, as ``POST /v1/feedback``
    stores a label: a zero-width space or a BOM pasted into a department cell trained a second
    市住建局 that looks like the first, and a phone number typed into one (网格员李四１３９８７６５４３２１)
    was learnt as written, so every answer, ``metadata.json`` and ``/metrics`` showed it, and a
    dispatcher's correction, stored as 网格员李四[手机号], was another label. Trimmed here, once: a
    label with nothing to mask was read with its spaces (" 执法 "), which a ``--mapping`` of 执法
    did not rename, though training learnt it trimmed. Otherwise a label keeps its spelling.
    Looked at once per distinct label."""
    from model.text import learnt_label

    odd = {v: c for v in labels.unique() if isinstance(v, str) and (c := learnt_label(v)) != v}
    return labels.replace(odd) if odd else labels


# Keys that name a thing in an exported object ({"id": 12, "name": "市城管局"}), the likeliest
# first: the one a message suggests flattening a label column to.
NAME_KEYS = ("name", "名称", "label", "title", "value", "text")
# Keys that hold a ticket's text in an exported object ({"content": "路灯坏了", "attachments": []}).
TEXT_KEYS = ("text", "content", "body", "message", "内容", "正文", "详情", "描述", "value")


def json_object(cell: str) -> dict[str, Any] | None:
    """The JSON object a cell is (as the reader writes a nested value of JSON or Parquet), else
    ``None``: a name or a text in braces is none."""
    text = cell.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def first_object(labels: pd.Series) -> tuple[int, dict[str, Any]] | None:
    """The position and value of the first of ``labels`` that is a JSON object (as the reader
    writes a nested value of JSON or Parquet), or ``None``."""
    import numpy as np

    found = None
    for label in labels.unique():  # a label column holds few distinct values
        if (value := json_object(str(label))) is not None:
            i = int(np.flatnonzero((labels == label).to_numpy())[0])
            if found is None or i < found[0]:
                found = i, value
    return found


def refuse_object_labels(
    head: str,
    source: str,
    found: tuple[int, dict[str, Any]],
    path: Path,
    name: str,
    rows: range,
) -> None:
    """Refuse a label column holding JSON objects (an API export nesting the department, ``{"id":
    12, "name": "市城管局"}``): learnt as written, each object's text was a department of its own.
    Names the first such row and the ``jq`` command that keeps the name."""
    i, value = found
    text = head in ("text", "title")  # a ticket's text or title, not a label's name
    keys = TEXT_KEYS if text else NAME_KEYS
    key = next((k for k in keys if isinstance(value.get(k), str)), None)
    key = key or next((k for k, v in value.items() if isinstance(v, str)), keys[0])
    field = json.dumps([source], ensure_ascii=False)[1:-1]
    flat = path.with_name(f"{path.stem}.flat{path.suffix}")
    what = "text" if text else "name"
    raise TicketFileError(
        f"the {head} column holds JSON objects, not {'text' if text else 'names'}: "
        f"{_quoted(json.dumps(value, ensure_ascii=False), cell=True)} at "
        f"{row_place(display_name(name), rows[i], display_name(path))}; flatten it to the {what} "
        f"first, e.g. jq -c '.[{field}] |= .{key}' {shlex.quote(display_name(path.name))} > "
        f"{shlex.quote(display_name(flat.name))}"
    )


def to_canonical(
    raw: pd.DataFrame, columns: ColumnMap, path: Path, first_row: int = 1, name: str | None = None
) -> pd.DataFrame:
    """Map one table's columns to the canonical schema (see :func:`read_tickets`). ``name``: the
    file's name as messages give it (:func:`named_paths`; default: its name)."""
    import pandas as pd

    from model.text import id_key

    check_columns(path, list(raw.columns), columns)
    columns = columns.for_header(path, raw.columns)
    out = pd.DataFrame(index=raw.index)
    for field in CANONICAL:
        src = columns.source_for(field)
        out[field] = raw[src].astype(str) if src is not None and src in raw.columns else ""
    rows = range(first_row, first_row + len(raw))
    name = path.name if name is None else name
    for head in LABELS:
        out[head] = without_format_characters(without_excel_errors(out[head]))
        if (found := first_object(out[head])) is not None:
            refuse_object_labels(head, columns.source_for(head) or head, found, path, name, rows)
    # A text or title that is a JSON object (an API export nesting it): its keys were learnt as
    # words.
    for field in ("text", "title"):
        if (src := columns.source_for(field)) and (found := first_object(out[field])):
            refuse_object_labels(field, src, found, path, name, rows)
    out["department"], out[CO_COL] = split_joint(out["department"])
    # An id of invisible characters only (a zero-width space, a BOM) is as missing as a blank one.
    missing_id = out["id"].map(id_key) == ""
    if missing_id.any():
        # By the file's name without its extension: 一月:12, and 2024/一月:12 for one found in a
        # directory's 2024/ (a 2025/一月.csv beside it gave one id to two tickets).
        stem = name.removesuffix(PurePosixPath(name).suffix)
        out.loc[missing_id, "id"] = [
            f"{stem}:{r}" for r, m in zip(rows, missing_id, strict=True) if m
        ]
    # A GBK name (unzipped on Linux) is no valid str: shown with \xNN escapes.
    out[SOURCE_COL] = display_name(name)
    out[ROW_COL] = list(rows)
    out[PATH_COL] = display_name(path)
    return out


def _read_csv(path: Path, columns: ColumnMap | None) -> pd.DataFrame:
    """A CSV file's records, each checked against the header (:func:`csv_chunks`, as one table)."""
    import pandas as pd

    return pd.concat(list(csv_chunks(path, columns)), ignore_index=True)


def _decoding_error(path: Path, encoding: str) -> TicketFileError | None:
    """The error for bytes of ``path`` that are not ``encoding``, naming their line; ``None`` when
    the whole file decodes. Read a block at a time; only a file that fails is read whole, for the
    line (as the csv module counts lines: each ends at "\n", "\r\n" or a lone "\r")."""
    errors = decoding_errors(encoding)
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        return None
    except UnicodeDecodeError:
        pass
    data = path.read_bytes()
    try:
        data.decode(encoding, errors)
    except UnicodeDecodeError as e:
        line = len(CSV_LINE_END.findall(data, 0, e.start)) + 1
        hint = undecodable_hint(encoding, data, e.start)
        return TicketFileError(
            f"{path}, line {line}: invalid {encoding} bytes (byte {e.start:,} of the file{hint})"
        )
    return None


# The end-of-file mark (Ctrl-Z) that cmd's `copy a.csv+b.csv` (ASCII mode, the default when it
# joins files) appends: Excel and Notepad ignore it; read as a last line, it was a record of one
# field, and train refused the file as malformed at a line no one could see.
EOF_MARK = "\x1a"


def csv_chunks(
    path: Path, columns: ColumnMap | None, size: int | None = None
) -> Iterator[pd.DataFrame]:
    """A CSV file's records, each checked against the header, as tables of at most ``size``
    records (``None``: one table), read a line at a time: a history of millions of tickets is
    not held whole (its text took some 6 bytes of memory per byte of the file) while a window of
    it is kept (:func:`training.window.read_window`). At least one table (the header's columns,
    no rows) is yielded unless the file is refused.

    Read with :mod:`csv` rather than pandas, whose parser accepts a record with a quote that is
    never closed: it runs on over the following lines, which become one field of that record,
    and those tickets are lost without a word. Here such a record is an error that names its
    line whenever it ends with another number of fields than the header has, as it does unless
    the swallowed text happens to hold exactly the missing delimiters, and a record of several
    lines that a strict reader refuses, with text after a closing quote (the same rules as
    :mod:`training.label_io`, which skips such rows and reports them; a training set is refused
    until they are fixed). A short row, which pandas fills with empty values, is an error too.

    Every error is raised as reading the file whole raised it: bytes that are not in the file's
    encoding anywhere in it before any other error, the malformed lines of the whole file in one
    error; so it may come after tables were yielded.
    """
    import pandas as pd

    with open(path, "rb") as f:
        try:
            encoding = detect_encoding(encoding_sample(f), path)
        except TicketFileError as e:
            raise TicketFileError(f"{path}: {e}") from None
    sep = csv_delimiter(path, columns.delimiter if columns else None)
    # Bounds what an unclosed quote can swallow before the parser stops; far above any ticket.
    csv.field_size_limit(max(CSV_FIELD_LIMIT, csv.field_size_limit()))
    try:
        with open(path, "rb") as binary:
            stream = io.TextIOWrapper(
                binary, encoding=encoding, errors=decoding_errors(encoding), newline=""
            )
            read: list[str] = []  # the lines read since the last record ended

            def lines() -> Iterator[str]:
                for line in stream:
                    if line.endswith(EOF_MARK):  # no line end after it: the file's last line
                        line = line[: -len(EOF_MARK)]
                        if not line:
                            break
                    read.append(line)
                    yield line

            reader = csv.reader(lines(), delimiter=sep)
            header = next(reader, None)
            if header is None:
                raise TicketFileError(f"{path}: the file is empty (no header row)")
            header = checked_header(f"{path}, line 1", header)
            if columns is not None:
                check_columns(path, header, columns)
            read.clear()
            rows: list[list[str]] = []
            yielded = False
            bad: list[str] = []
            start = reader.line_num + 1  # the line the next record starts on
            record: list[str] = []  # the lines of the record read last
            last_start = start
            try:
                for fields in reader:
                    record, last_start = read[:], start
                    read.clear()
                    end = reader.line_num
                    if fields and len(fields) != len(header):
                        if end > start:
                            bad.append(
                                f"line {start}: a quote opened on it is not closed where the "
                                f"record should end (it ran on to line {end})"
                            )
                            break  # what follows an unclosed quote cannot be trusted
                        from model.text import counted

                        bad.append(
                            f"line {start}: it has {counted(len(fields), 'field')}, the header "
                            f"has {len(header)}"
                        )
                    elif (
                        fields and end > start and _strict_end("".join(record), sep) == "malformed"
                    ):
                        # A record of several lines is read as a strict reader reads it, as paidan
                        # label reads it: text after a closing quote there is a quote not doubled,
                        # or a stray quote that a later one closed, which joined the rows between
                        # into one field.
                        bad.append(
                            f"line {start}: text follows a closing quote (lines {start}-{end}: a "
                            "quote that is not doubled?)"
                        )
                    elif fields and not bad:  # a blank line is not a record (as in pandas)
                        rows.append(fields)
                        if size is not None and len(rows) >= size:
                            yield pd.DataFrame(rows, columns=header, dtype=object)
                            rows, yielded = [], True
                    start = end + 1
            except csv.Error as e:
                bad.append(f"line {start}: {e}")
            else:
                # A quote still open at the end of the file makes the rest of the file one field,
                # which passes the field count when the text is the last column.
                if not bad and _strict_end("".join(record + read), sep) == "eof in quotes":
                    bad.append(
                        f"line {last_start}: a quote opened on it is never closed (it runs on to "
                        f"the end of the file, line {reader.line_num})"
                    )
            if bad:
                more = f"; and {len(bad) - MAX_BAD_LINES} more" if len(bad) > MAX_BAD_LINES else ""
                raise TicketFileError(
                    f"{path}: malformed CSV: {'; '.join(bad[:MAX_BAD_LINES])}{more} (fix these "
                    "lines; paidan label skips such rows and reports them, but a training set "
                    "must be whole)"
                )
    except (TicketFileError, UnicodeDecodeError):
        # Bytes that are not the file's encoding are said first, wherever they are.
        undecodable = _decoding_error(path, encoding)
        if undecodable is not None:
            raise undecodable from None
        raise
    if rows or not yielded:
        yield pd.DataFrame(rows, columns=header, dtype=object)


def _strict_end(records: str, sep: str) -> str:
    """How ``csv.reader(strict=True)`` reads this CSV text to its end, as
    :func:`training.label_io._scan_record` tells it: ``"record"``, ``"eof in quotes"`` (a quote
    still open at the end) or ``"malformed"`` (text after a closing quote)."""
    try:
        for _ in csv.reader(io.StringIO(records, newline=""), delimiter=sep, strict=True):
            pass
    except csv.Error as e:
        return "eof in quotes" if "unexpected end of data" in str(e) else "malformed"
    return "record"


def jsonl_lines(f: BinaryIO) -> Iterator[bytes]:
    """The lines of a JSON Lines file open in binary, each without its line end.

    A line ends at ``\n``, ``\r\n`` or a lone ``\r``, as in a CSV file (:data:`CSV_LINE_END`):
    JSON text holds neither byte raw, and a file of lone ``\r`` ends read as one line, its
    tickets as one broken row. Read a block at a time, so such a file is not read whole.

    A Ctrl-Z (:data:`EOF_MARK`) with no line end after it is the end of the file, as in a CSV
    file (:func:`csv_chunks`): cmd's `copy a.jsonl+b.jsonl` appends it, and read as a line it was
    "not valid JSON" at a line that looks empty.
    """

    def split(data: bytes) -> list[bytes]:
        # As CSV_LINE_END.split(data), ten times faster.
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return data.split(b"\n")

    rest = b""
    while block := f.read(1 << 16):
        data = rest + block
        # A "\r" at the end may be the first half of a "\r\n": the next block tells.
        held = data.endswith(b"\r")
        lines = split(data[:-1] if held else data)
        rest = lines.pop() + (b"\r" if held else b"")
        yield from lines
    lines = split(rest)
    mark = EOF_MARK.encode()
    if lines[-1].endswith(mark):  # no line end after it: the file's last line
        lines[-1] = lines[-1][: -len(mark)]
    if not lines[-1]:
        lines.pop()
    yield from lines


# Most lines read on from a line that starts a JSON object for the line that ends it.
PRETTY_MAX_LINES = 1_000


class PrettyObject(ValueError):
    """A JSON object pretty-printed over lines ``first`` to ``last`` (``jq .`` without ``-c``),
    which a JSON Lines reader cannot read: in the place of a value of :func:`json_lines`."""

    def __init__(self, first: int, last: int) -> None:
        super().__init__(f"a JSON object pretty-printed over lines {first}-{last}")
        self.first, self.last = first, last


def json_lines(f: BinaryIO, blank: set[int] | None = None) -> Iterator[tuple[int, bytes, Any]]:
    """Each line of a JSON Lines file open in binary that is not blank (:func:`jsonl_lines`): its
    number from 1, its bytes, and its value (:func:`load_json_line`), or in the value's place the
    :class:`UnicodeDecodeError` or :class:`json.JSONDecodeError` that tells why it has none. The
    numbers of the blank lines are added to ``blank``, when given.

    A line that starts an object (:func:`object_start`) which the lines after it end, is
    one :class:`PrettyObject` for all of them (a file joined from a JSON Lines export and a
    ``jq .`` one): the lines would be as many errors, none saying why. When they do not end it
    (within :data:`PRETTY_MAX_LINES`), the line is an error of its own and those after it are
    read as lines of their own.

    Every reader of JSON Lines reads its lines here and says what is wrong with one in its own
    way: ``train`` refuses the file, ``label`` makes the line an error row.
    """
    numbered = enumerate(jsonl_lines(f), 1)
    back: list[tuple[int, bytes]] = []  # lines read ahead, to be read again (the next last)

    def next_line() -> tuple[int, bytes] | None:
        return back.pop() if back else next(numbered, None)

    while (item := next_line()) is not None:
        lineno, raw = item
        try:
            # The BOM can only open the file; later lines are plain UTF-8.
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as e:
            yield lineno, raw, e
            continue
        if not line.strip():
            if blank is not None:
                blank.add(lineno)
            continue
        try:
            value: Any = load_json_line(line)
        except json.JSONDecodeError as e:
            value = e
            if object_start(line, e):
                last, ahead = _object_end(line, next_line)
                if last is None:
                    back.extend(reversed(ahead))
                else:
                    value = PrettyObject(lineno, last)
        yield lineno, raw, value


def _object_end(
    first: str, next_line: Callable[[], tuple[int, bytes] | None]
) -> tuple[int | None, list[tuple[int, bytes]]]:
    """The number of the line that ends the object a line starts (``first``), or ``None`` when
    the lines after it do not end it (one breaks it or is not UTF-8, the file or
    :data:`PRETTY_MAX_LINES` end first); and the lines read."""
    text = first
    ahead: list[tuple[int, bytes]] = []
    while len(ahead) < PRETTY_MAX_LINES and (item := next_line()) is not None:
        ahead.append(item)
        try:
            text += "\n" + item[1].decode("utf-8")
            load_json_line(text)
        except UnicodeDecodeError:
            break
        except json.JSONDecodeError as e:
            if object_start(text, e):
                continue
            break
        return item[0], ahead
    return None, ahead


def json_line_problem(path: Path, value: Any) -> str:
    """Why a value of :func:`json_lines` in ``path`` is not a ticket, as ``train`` and ``label``'s
    column scan say it (after the file and line)."""
    if isinstance(value, UnicodeDecodeError):
        return "not valid UTF-8 (JSON Lines files are UTF-8)"
    if isinstance(value, PrettyObject):
        return pretty_object(path, value)
    if isinstance(value, json.JSONDecodeError):
        return f"not valid JSON ({json_problem(value, f'column {value.colno}')})"
    return "expected a JSON object per line"


def pretty_object(path: Path, error: PrettyObject) -> str:
    """What every reader says of a :class:`PrettyObject` of ``path``, and what to do."""
    return f"{error} (as jq . writes it); {jsonl_conversion(path)}"


def jsonl_conversion(path: Path) -> str:
    """What to do with a JSON file whose objects are pretty-printed over several lines."""
    return (
        "paidan reads JSON Lines, one ticket object per line (convert it with: "
        f"{_jq_command('.', path, 'compact.jsonl', '-c')})"
    )


def _jq_command(jq_filter: str, path: Path, suffix: str, option: str = "") -> str:
    """The jq command that writes ``jq_filter`` of ``path`` to ``STEM.suffix`` beside it, as a
    POSIX shell reads it pasted: the file names shell-quoted (an export named 工单 导出.json), the
    filter in single quotes (:func:`refuse_json_object` writes a quote in a key as ``\\u0027``,
    which reads better than a quote shell-quoted). A name that starts with ``-`` is written
    ``./-name``: jq took ``-hotline.json`` for its options (``-h``) and wrote its usage text into
    the output, exit 0."""
    out = _shell_name(f"{path.stem}.{suffix}")
    if jq_filter == "." or "'" in jq_filter:
        filter_word = shlex.quote(jq_filter)
    else:
        filter_word = f"'{jq_filter}'"
    return " ".join(
        part for part in ("jq", option, filter_word, _shell_name(path.name), ">", out) if part
    )


def _shell_name(name: str) -> str:
    """File ``name`` in the current directory, as a shell and the command it runs read it."""
    return shlex.quote(f"./{name}" if name.startswith("-") else name)


def object_start(line: str, error: json.JSONDecodeError) -> bool:
    """Whether a JSON line that does not parse (``error``) holds the start of an object that its
    line end cuts short: ``{`` alone, or ``{"id": "A1",``, as ``jq .`` writes an object over
    several lines. A line broken inside (a quote never closed, a stray comma) is not one."""
    text = line.rstrip()
    return text.lstrip().startswith("{") and error.pos >= len(text)


def refuse_json_array(path: Path) -> None:
    """Refuse a file read as JSON Lines that is not: one JSON array of tickets in a ``.jsonl`` or
    ``.ndjson`` file (a ``.json`` one is read as an array, see :func:`json_array`), one JSON
    object alone in a ``.json`` file (:func:`refuse_json_object`), or objects pretty-printed over
    several lines (``jq .`` without ``-c``).

    Such a file's lines are not objects one by one, so without this every reader would report a
    broken line per line (or find no columns) instead of the file's real shape. A first line that
    is ``{`` alone, or an object that its line end cuts short, is taken for pretty-printing.
    """
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    # A gzip-compressed or workbook file read as text: "line 1: not valid UTF-8".
    if what := not_text(head, "JSON"):
        raise TicketFileError(f"{path}: {what}")
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"["):
        raise TicketFileError(
            f"{path}: holds a JSON array, but a {path.suffix} file is read as JSON Lines, one "
            f"ticket object per line; name it {path.stem}.json to read it as a JSON array"
        )
    if head.startswith(b"{") and path.suffix.lower() == ".json":
        refuse_json_object(path)
    end = CSV_LINE_END.search(head)
    if not head.startswith(b"{") or end is None:
        return
    try:
        first = head[: end.start()].decode("utf-8")
        json.loads(first)
    except UnicodeDecodeError:
        return  # reported as not UTF-8 where the lines are read
    except json.JSONDecodeError as e:
        if not object_start(first, e):
            return  # a broken line, reported where the lines are read
        raise TicketFileError(
            f"{path}: the first line holds the start of a JSON object, not a whole one: the "
            f"objects are pretty-printed over several lines; {jsonl_conversion(path)}"
        ) from None


def refuse_json_object(path: Path) -> None:
    """Refuse a ``.json`` file that holds one JSON object alone, not an array of tickets: one that
    keeps them in an array under a key (``{"total": 2, "data": [{…}, {…}]}``, as many APIs and
    exports write them), or one written over several lines. One object on one line is a JSON
    Lines file of one ticket, and read as one."""
    try:
        with open(path, "rb") as f:
            s = _JsonText(f, path)
            s.next_char()
            value, text = s.value()
            if s.next_char():  # more follows: JSON Lines, or broken; the line reader tells
                return
    except (json.JSONDecodeError, TicketFileError):
        return  # a broken first line, or bytes that are not UTF-8: the line reader names them
    if not isinstance(value, dict):
        return
    if what := _paidan_output_kind(value):
        raise TicketFileError(
            f"{path}: is {what}, not tickets: leave it out of the files to read (a directory of "
            "tickets skips it)"
        )
    for i, (key, inner) in enumerate(value.items()):
        if isinstance(inner, list) and inner and all(isinstance(v, dict) for v in inner):
            if _quoted(key) != repr(key):  # a key that masking changes: picked by its place
                pick = f".[keys_unsorted[{i}]]"
            elif key.isascii() and key.isidentifier():
                pick = f".{key}"
            else:  # a quote in the key would end the shell's quotes around the filter
                pick = f".[{json.dumps(key)}]".replace("'", "\\u0027")
            from model.text import counted

            ask = "is it" if len(inner) == 1 else "are they"  # the objects the number counts
            raise TicketFileError(
                f"{path}: holds one JSON object, not an array of tickets; {ask} the "
                f"{counted(len(inner), 'object')} under its key {_quoted(key)}? "
                "(extract them with: "
                f"{_jq_command(pick, path, 'tickets.json')})"
            )
    if "\n" in text or "\r" in text:
        raise TicketFileError(
            f"{path}: holds one JSON object over several lines, not an array of tickets; write "
            "the tickets as a JSON array ([{...}, {...}]) or one object per line "
            f"({_jq_command('.', path, 'compact.jsonl', '-c')})"
        )


def json_frames(path: Path, size: int) -> Iterator[pd.DataFrame]:
    """:func:`read_table` of a JSON Lines file or a ``.json`` file holding a JSON array (before
    :func:`_strings`) as tables of at most ``size`` rows, an object at a time.

    The file is read twice: first to check every object as reading it whole does
    (:func:`_objects_frame`), raising the same error, before any table, and for the columns (every
    key of every object, in the order they first appear: a key that only a later object has is a
    column of every table, empty before it); then for the tables.
    """
    import pandas as pd

    array = json_array(path)
    if not array:
        refuse_json_array(path)

    def objects() -> Iterator[tuple[int, Any]]:
        with open(path, "rb") as f:
            if array:
                yield from ((n, obj) for n, obj, _ in json_array_elements(f, path))
            else:
                yield from ((n, obj) for n, _, obj in json_lines(f))

    keys = _object_keys(path, objects(), *_json_units(path, array))
    records = []
    yielded = False
    for _, obj in objects():
        records.append({k.strip(): cell_text(v) for k, v in obj.items()})
        if len(records) >= size:
            yield pd.DataFrame.from_records(records, columns=keys)
            records, yielded = [], True
    if records or not yielded:
        yield pd.DataFrame.from_records(records, columns=keys)


def _json_units(path: Path, array: bool) -> tuple[str, Callable[[Any], str], str]:
    """What a JSON Lines file's (``array``: a JSON array's) objects are numbered by, what a value
    that is no object is said to be, and what an empty file is (:func:`_objects_frame`)."""
    if array:
        return (
            "element",
            lambda obj: f"expected a JSON object per element, got {json_type(obj)}",
            "the JSON array is empty (no tickets)",
        )
    return (
        "line",
        lambda obj: json_line_problem(path, obj),
        "the file is empty (no JSON objects)",
    )


def _read_jsonl(path: Path) -> pd.DataFrame:
    refuse_json_array(path)
    with open(path, "rb") as f:
        lines = ((n, obj) for n, _, obj in json_lines(f))
        return _objects_frame(path, lines, *_json_units(path, False))


def _read_json_array(path: Path) -> pd.DataFrame:
    """A ``.json`` file holding one JSON array of ticket objects (:func:`json_array`), read as
    :func:`_read_jsonl` reads JSON Lines, element ``N`` for line ``N``."""
    with open(path, "rb") as f:
        elements = ((n, obj) for n, obj, _ in json_array_elements(f, path))
        return _objects_frame(path, elements, *_json_units(path, True))


def _objects_frame(
    path: Path,
    objects: Iterable[tuple[int, Any]],
    unit: str,
    problem: Callable[[Any], str],
    empty: str,
) -> pd.DataFrame:
    """The rows of JSON objects numbered by ``unit`` (line, element), each one's keys stripped as
    ``paidan label`` reads them; a value that is not an object, a key written twice, no object
    or objects without keys refuse the file (:func:`_checked_object`)."""
    import pandas as pd

    records = []
    first = 0  # the number of the first object
    for n, obj in objects:
        _checked_object(path, n, obj, unit, problem)
        records.append({k.strip(): cell_text(v) for k, v in obj.items()})
        first = first or n
    if not records:
        raise TicketFileError(f"{path}: {empty}")
    if not any(records):
        raise objects_without_keys(path, first, unit)
    return pd.DataFrame.from_records(records)


def _checked_object(path: Path, n: int, obj: Any, unit: str, problem: Callable[[Any], str]) -> None:
    """Refuse JSON value ``n`` of a file when it is not an object, or has a key written twice."""
    if not isinstance(obj, dict):
        raise TicketFileError(f"{path}, {unit} {n}: {problem(obj)}")
    refuse_same_names(f"{path}, {unit} {n}", obj, "keys")
    # Half of a surrogate pair escaped alone ("\udfff"): no character, and pandas' strings cannot
    # hold it (refused as "'utf-8' codec can't encode …", without the line). Said as label says it.
    if bad := unpaired_surrogate_key(obj) or _unpaired_surrogate_value(obj):
        raise TicketFileError(f"{path}, {unit} {n}: {bad}")


def _unpaired_surrogate_value(obj: dict[Any, Any]) -> str | None:
    """:func:`unpaired_surrogate` of an object's values, as cells (a string looked at as it is)."""
    for key, value in obj.items():
        text = value if isinstance(value, str) else cell_text(value)
        if _SURROGATE.search(text):
            return unpaired_surrogate({json_key(key): text})
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_key(key: Any) -> str:
    """A JSON object's key as the column it names: stripped, and each unpaired surrogate escape
    (``"note\\udfff"``, no character) replaced by U+FFFD, since no output can hold it in a
    column name (every format ended in a traceback); the object's row says so
    (:func:`unpaired_surrogate_key`)."""
    name = str(key).strip()
    if _SURROGATE.search(name):
        name = name.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return name


def unpaired_surrogate_key(obj: dict[Any, Any]) -> str | None:
    """What is wrong with the first key of ``obj`` holding an unpaired surrogate, or ``None``."""
    for key in obj:
        if found := _SURROGATE.search(str(key)):
            return (
                f"key {_quoted(json_key(key))} has an unpaired surrogate escape "
                f"\\u{ord(found.group()):04x}, which is not a Unicode character"
            )
    return None


def unpaired_surrogate(values: dict[str, str]) -> str | None:
    """What is wrong with the first field holding an unpaired surrogate, or ``None``."""
    for key, value in values.items():
        if found := _SURROGATE.search(value):
            return (
                f"field {_quoted(key)} has an unpaired surrogate escape \\u{ord(found.group()):04x}, "
                "which is not a Unicode character"
            )
    return None


def _object_keys(
    path: Path,
    objects: Iterable[tuple[int, Any]],
    unit: str,
    problem: Callable[[Any], str],
    empty: str,
) -> list[str]:
    """The columns of the table :func:`_objects_frame` makes of ``objects``, the objects checked
    as it checks them, raising what it raises, but without holding them."""
    keys: dict[str, None] = {}
    first = 0
    for n, obj in objects:
        _checked_object(path, n, obj, unit, problem)
        for key in obj:
            keys.setdefault(key.strip(), None)
        first = first or n
    if not first:
        raise TicketFileError(f"{path}: {empty}")
    if not keys:
        raise objects_without_keys(path, first, unit)
    return list(keys)


def objects_without_keys(path: Path, first: int, unit: str = "line") -> TicketFileError:
    """The error for a JSON Lines file (or JSON array, ``unit="element"``) whose objects have no
    keys, from line (element) ``first``, the first (``{}``): it has no columns, which no
    ``--text-col`` can map."""
    every = "on every line" if unit == "line" else "in every element"
    return TicketFileError(
        f"{path}, {unit} {first}: the JSON objects have no keys ({{}} {every}), so the file "
        "has no column for the ticket text"
    )


# -- JSON arrays ---------------------------------------------------------------------------------

# Characters read at a time from a JSON array, and the least read ahead of the element parsed.
_JSON_BLOCK = 1 << 16
# A value that ends, or a parse error found, this close to the end of what was read may be cut
# short by it (a number "12|34", "tru|e", "\u12|34"): it is parsed again with more read.
_JSON_SLACK = 16
_JSON_SPACE = " \t\n\r"


def row_place(name: str, row: int, path: str | None = None) -> str:
    """Where data row ``row`` of the file ``name`` is, as a message names it: ``a.csv data row
    3``, and by its line in a JSON Lines file (``a.jsonl line 6``, as the reader's and ``label``'s
    messages name a JSON line; its data row is another number once the file has blank lines), by
    its element in a JSON array (``a.json element 3``, as the reader names one). ``name``: the
    file's name as the reader gives it (``2024/一月.jsonl``); ``path``: the file, to find the line
    in (without it, a JSON file's row is named by its data row)."""
    if path is None:
        return f"{name} data row {row}"
    try:
        file = Path(path)
        if file_format(file) == "jsonl" and file.is_file():  # .jsonl, .ndjson, .json
            if json_array(file):
                return f"{name} element {row}"
            line = jsonl_line_of(file, row)
            if line is not None:
                return f"{name} line {line}"
    except (OSError, TicketFileError):
        pass  # a name the file system does not have (shown with \xNN escapes): by its row
    return f"{name} data row {row}"


def jsonl_object_lines(path: Path) -> Iterator[int]:
    """The line of each data row of a JSON Lines file in turn (its objects counted from 1, as the
    reader counts rows: a blank line is none; a line that is not UTF-8 is a row of its own, the
    reader's error)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(jsonl_lines(f), 1):
            try:
                # As json_lines decodes it: a BOM opens the file only.
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                line = "x"  # a row of its own there (an error the reader reports)
            if line.strip():
                yield lineno


def jsonl_line_of(path: Path, row: int) -> int | None:
    """The line of a JSON Lines file holding its data row ``row`` (:func:`jsonl_object_lines`),
    or ``None`` when the file has fewer.

    A message naming a row by its number sent staff to line 3 for the object on line 6 of a file
    with blank lines; other messages about a JSON Lines file name its lines. Read up to the row.
    """
    if row < 1:
        return None
    return next(itertools.islice(jsonl_object_lines(path), row - 1, None), None)


def json_array(path: Path) -> bool:
    """Whether ``path`` is a ``.json`` file holding one JSON array (its first character, after a
    BOM and blanks, is ``[``): read element by element (:func:`json_array_elements`), where other
    ``.json`` files are read as JSON Lines. A ``.jsonl`` or ``.ndjson`` file is JSON Lines by its
    name (:func:`refuse_json_array`)."""
    if path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        head = f.read(_JSON_BLOCK).removeprefix(b"\xef\xbb\xbf")
        while head and not head.strip(b" \t\r\n"):  # blanks alone so far: read on
            head = f.read(_JSON_BLOCK)
    return head.lstrip(b" \t\r\n").startswith(b"[")


def json_type(value: Any) -> str:
    """What a JSON value is, as an error says it: ``a number``, ``an array``, …"""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    return "null" if value is None else "a number"


class _JsonText:
    """A UTF-8 JSON file read as text a block at a time, to parse values one after another
    without holding the file: what is parsed is dropped, and only the value being parsed (with
    :data:`_JSON_BLOCK` read ahead) is held. Objects keep a key written twice
    (:class:`JsonObject`), as :func:`load_json_line` reads a line."""

    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f, self.path = f, path
        self.text = codecs.getincrementaldecoder("utf-8")()
        self.parse = raw_decode
        self.buf, self.pos, self.eof = "", 0, False
        self.read_bytes = 0  # bytes of the file read
        # What was dropped from the front of buf: its bytes (with a BOM), its line ends, and the
        # characters since its last line end.
        self.dropped_bytes, self.dropped_lines, self.dropped_column = 0, 0, 0
        head = f.read(3)
        self.read_bytes = len(head)
        if head == b"\xef\xbb\xbf":
            self.dropped_bytes = 3
        else:
            self._decode(head)

    def _decode(self, data: bytes, final: bool = False) -> None:
        pending = len(self.text.getstate()[0])
        try:
            self.buf += self.text.decode(data, final)
        except UnicodeDecodeError as e:
            byte = self.read_bytes - len(data) - pending + e.start
            raise TicketFileError(
                f"{self.path}: not valid UTF-8 at byte {byte} (JSON files are UTF-8)"
            ) from None

    def _read(self, chars: int) -> None:
        """Read until ``chars`` characters follow ``pos``, or the file ends."""
        while not self.eof and len(self.buf) - self.pos < chars:
            data = self.f.read(max(_JSON_BLOCK, chars - (len(self.buf) - self.pos)))
            self.read_bytes += len(data)
            self._decode(data, final=not data)
            self.eof = not data

    def _drop(self) -> None:
        """Drop what was parsed, once it is a block."""
        if self.pos < _JSON_BLOCK:
            return
        done = self.buf[: self.pos]
        self.dropped_bytes += len(done.encode())
        lines = done.count("\n")
        self.dropped_lines += lines
        self.dropped_column = (
            len(done) - done.rfind("\n") - 1 if lines else self.dropped_column + len(done)
        )
        self.buf, self.pos = self.buf[self.pos :], 0

    def where(self, at: int) -> str:
        """Where the character at ``at`` of buf is: ``line L column C (byte B)``, from 1 and 0."""
        lines = self.buf.count("\n", 0, at)
        column = at - self.buf.rfind("\n", 0, at) if lines else self.dropped_column + at + 1
        byte = self.dropped_bytes + len(self.buf[:at].encode())
        return f"line {self.dropped_lines + lines + 1} column {column} (byte {byte})"

    def next_char(self) -> str:
        """The next character that is not JSON whitespace (``""`` at the end of the file), which
        becomes ``pos``."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _JSON_SPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self._drop()
            self._read(1)

    def value(self) -> tuple[Any, str]:
        """The JSON value at ``pos`` (after :meth:`next_char`) and its text; ``pos`` goes past it.

        Raises
        ------
        json.JSONDecodeError
            Where the value is broken, its ``pos`` in buf (:meth:`where` names it).
        """
        self._drop()
        start = self.pos
        self._read(_JSON_BLOCK)
        while True:
            try:
                value, end = self.parse(self.buf, start)
            except json.JSONDecodeError as e:
                cut = e.pos >= len(self.buf) - _JSON_SLACK or e.msg.startswith("Unterminated")
                if self.eof or not cut:
                    raise
            else:
                if self.eof or end < len(self.buf) - _JSON_SLACK:
                    self.pos = end
                    return value, self.buf[start:end]
            # Cut short by the end of what was read, perhaps: read as much again.
            self._read(2 * (len(self.buf) - start))

    def cut_short(self, error: json.JSONDecodeError) -> bool:
        """Whether ``error`` is the end of the file inside a value."""
        end = len(self.buf.rstrip(_JSON_SPACE))
        return self.eof and (error.pos >= end or error.msg.startswith("Unterminated"))


def json_array_elements(f: BinaryIO, path: Path) -> Iterator[tuple[int, Any, str]]:
    """The elements of the JSON array a file open in binary holds, read a block at a time: each
    one's number from 1, its value (an object as :func:`load_json_line` reads a line) and its
    text.

    Every reader of a JSON array reads it here, and says what is wrong with an element that is
    not a ticket object in its own way: ``train`` refuses the file, ``label`` makes it an error
    row.

    Raises
    ------
    TicketFileError
        When the file is not one JSON array, an element is broken (its end, and so the elements
        after it, cannot be found), the array is cut short, or text follows it: naming the line,
        column and byte, and what was expected there. Raised when reached, after the elements
        before it; ``paidan label`` reads the file through before labelling (``file_columns``).
    """
    s = _JsonText(f, path)
    if s.next_char() != "[":
        raise TicketFileError(f"{path}: expected a JSON array ('[') at {s.where(s.pos)}")
    s.pos += 1
    n = 0
    after = "after '['"
    if s.next_char() == "]":
        s.pos += 1
    else:
        while True:
            n += 1
            if (char := s.next_char()) in ("", "]"):  # ']' after ',': no trailing comma in JSON
                found = "the end of the file (is it truncated?)" if not char else "']'"
                raise TicketFileError(
                    f"{path}: the JSON array breaks at {s.where(s.pos)}: expected element {n} "
                    f"{after}, found {found}"
                )
            try:
                value, text = s.value()
            except json.JSONDecodeError as e:
                problem = json_problem(e, s.where(e.pos))
                if s.cut_short(e):
                    raise TicketFileError(
                        f"{path}: the JSON array is cut short: the file ends inside element {n} "
                        f"(from {s.where(s.pos)}): {problem}; is the file truncated?"
                    ) from None
                raise TicketFileError(
                    f"{path}: the JSON array breaks in element {n}: {problem}; the elements "
                    "after it cannot be found"
                ) from None
            yield n, value, text
            char = s.next_char()
            if char == ",":
                s.pos += 1
                after = f"after element {n} and ','"
                continue
            if char == "]":
                s.pos += 1
                break
            found = "the end of the file (is it truncated?)" if not char else repr(char)
            raise TicketFileError(
                f"{path}: the JSON array breaks at {s.where(s.pos)}: expected ',' or ']' after "
                f"element {n}, found {found}"
            )
    if s.next_char() == EOF_MARK:  # cmd's `copy`, or an editor that ends files so, as for CSV
        s.pos += 1
        if s.next_char():  # text after the mark: it was no end of the file
            s.pos -= 1  # the error names the mark, or the last space before that text
    if s.next_char():
        raise TicketFileError(
            f"{path}: text follows the end of the JSON array, at {s.where(s.pos)}: expected the "
            "end of the file (one array of tickets)"
        )
