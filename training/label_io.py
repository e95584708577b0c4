"""Streaming readers and writers for batch labelling.

Every reader yields one :class:`Record` per input row, in file order, and never drops a row: a
malformed CSV record or an undecodable line comes back as a record with an ``error`` and its line
number (an element of a JSON array that is not an object, with its element number). Files are
read a row at a time (CSV, JSONL), a block at a time (a JSON array), a sheet row at a time (XLSX,
openpyxl's read-only mode) or a record batch at a time (Parquet), so memory does not grow with the
file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import itertools
import json
import os
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.ipc
import pyarrow.parquet as pq

from model.text import counted, quoted
from model.tickets import (
    CSV_LINE_END,
    PrettyObject,
    TicketFileError,
    cell_text,
    check_one_ticket_sheet,
    checked_header,
    column_names,
    csv_delimiter,
    decoding_errors,
    detect_encoding,
    encoding_sample,
    excel_rounded,
    file_format,
    hidden_sheet_note,
    is_utf16,
    json_array,
    json_array_elements,
    json_key,
    json_line_problem,
    json_lines,
    json_problem,
    json_type,
    load_workbook,
    objects_without_keys,
    parquet_batches,
    pretty_object,
    refuse_json_array,
    refuse_same_names,
    undecodable_hint,
    unpaired_surrogate,
    unpaired_surrogate_key,
    unreadable_file,
    unsaved_formula,
    unsaved_formulas,
    warn_rounded_ids,
    xlsx_text,
    xlsx_value,
)

# Excel's sheet size: header plus 1,048,575 data rows.
XLSX_MAX_ROWS = 1_048_576
# The most characters an Excel cell holds (UTF-16 code units: an emoji counts as two); openpyxl
# cuts a longer string to this many without a word.
XLSX_MAX_CELL_CHARS = 32_767


@dataclass
class Record:
    """One input row: its values by column, a read error if it could not be parsed, and where it is."""

    values: dict[str, str]
    error: str | None
    where: str
    # Fields too long to read (CSV only): their length; their value is left empty.
    cut: dict[str, int] = field(default_factory=dict)
    # JSON and Parquet rows: the values as read, by column (a key the object lacks is not in it;
    # ``{}`` for a line that could not be read), which JSON Lines and Parquet output write back
    # with their types and nulls (:func:`column_types`). ``None`` for CSV and XLSX rows (text).
    typed: dict[str, Any] | None = None
    # CSV only: refused for one field more than the header, an empty one at the end (a trailing
    # separator, which an export that ends every line with it gives every row).
    extra_empty_field: bool = False


# -- columns ------------------------------------------------------------------------------------


def file_columns(
    path: Path,
    delimiter: str | None = None,
    text: str | None = None,
    kinds: dict[str, set[str]] | None = None,
) -> list[str]:
    """Column names of one input file, without reading its rows (JSONL: keys in first-seen order).

    ``kinds``, when given, collects the JSON kinds (:func:`json_kind`) of every value of each key
    of a JSON Lines file or a JSON array, which are read through for their keys anyway.

    A CSV file's fields are separated by ``delimiter`` (default: by its extension,
    :func:`model.tickets.csv_delimiter`); a workbook whose later sheets look like more tickets,
    their ``text`` column for one, is refused (:func:`model.tickets.check_one_ticket_sheet`).
    """
    fmt = file_format(path)
    try:
        if fmt == "csv":
            with open(path, "rb") as f:
                encoding = csv_encoding(_encoding_sample(f, path), path)
                f.seek(0)
                lines = _Lines(f, encoding)
                try:
                    header = next(csv.reader(lines, delimiter=csv_delimiter(path, delimiter)))
                except StopIteration:
                    raise TicketFileError(f"{path}: the file is empty (no header row)") from None
                if lines.take()[0][2]:
                    raise TicketFileError(f"{path}, line 1: the header is not valid {encoding}")
            return checked_header(f"{path}", header)
        if fmt == "xlsx":
            wb, width = _open_workbook(path)
            try:
                first = next(wb.worksheets[0].iter_rows(max_row=1, values_only=True), None)
                if first is None:
                    raise TicketFileError(_empty_first_sheet(path, wb, text))
                check_one_ticket_sheet(path, wb, text)
            finally:
                wb.close()
            return checked_header(f"{path}", _header(first, width))
        if fmt == "parquet":
            with open(path, "rb") as f:  # by Python: see model.tickets.read_table
                names = list(pq.ParquetFile(f).schema_arrow.names)
            return checked_header(f"{path}", names)
        if json_array(path):
            return _json_array_columns(path, kinds)
        refuse_json_array(path)
        seen: dict[str, None] = {}
        # Lines that are not objects are error rows when the rows are read; but when no line is
        # one, the first such line says why (the columns found would be none, or mojibake).
        first_bad = ""
        first_object = 0  # its line: when no object has a key, they are all {}
        with open(path, "rb") as f:
            for lineno, _, obj in json_lines(f):
                if isinstance(obj, dict):
                    refuse_same_names(f"{path}, line {lineno}", obj, "keys")
                    seen.update(dict.fromkeys(json_key(k) for k in obj))
                    if kinds is not None:
                        _add_kinds(kinds, obj)
                    first_object = first_object or lineno
                else:
                    first_bad = first_bad or f"line {lineno}: {json_line_problem(path, obj)}"
        if not seen:
            if first_bad:
                raise TicketFileError(f"{path}, {first_bad}")
            if first_object:
                raise objects_without_keys(path, first_object)
            raise TicketFileError(f"{path}: the file is empty (no JSON objects)")
        return list(seen)
    except TicketFileError:
        raise
    except Exception as e:
        raise unreadable_file(path, fmt, e) from e


def _json_array_columns(path: Path, kinds: dict[str, set[str]] | None = None) -> list[str]:
    """The keys of the objects of a JSON array file, in first-seen order, as :func:`file_columns`
    reads JSON Lines: the whole array is read, so a broken one is refused before a row is
    labelled, and a key written twice in any element."""
    seen: dict[str, None] = {}
    first_bad = ""  # elements that are not objects are error rows, unless none is one
    first_object = 0
    with open(path, "rb") as f:
        for n, obj, _ in json_array_elements(f, path):
            if isinstance(obj, dict):
                refuse_same_names(f"{path}, element {n}", obj, "keys")
                seen.update(dict.fromkeys(json_key(k) for k in obj))
                if kinds is not None:
                    _add_kinds(kinds, obj)
                first_object = first_object or n
            else:
                first_bad = first_bad or (
                    f"element {n}: expected a JSON object per element, got {json_type(obj)}"
                )
    if not seen:
        if first_bad:
            raise TicketFileError(f"{path}, {first_bad}")
        if first_object:
            raise objects_without_keys(path, first_object, "element")
        raise TicketFileError(f"{path}: the JSON array is empty (no tickets)")
    return list(seen)


# -- column types (JSON Lines and Parquet output) -------------------------------------------------

# The largest integer a float64 holds exactly: a column of integers and fractions is float64 only
# when its integers are within it.
_EXACT_FLOAT_INT = 2**53


def json_kind(value: Any) -> str:
    """What a JSON value is, for :func:`json_column_type`: ``null``, ``bool``, ``int`` (within
    :data:`_EXACT_FLOAT_INT`), ``int64`` (an int64 beyond it), ``float``, ``str`` or ``other``
    (an object, a list, an integer over int64)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if -_EXACT_FLOAT_INT <= value <= _EXACT_FLOAT_INT:
            return "int"
        return "int64" if -(2**63) <= value < 2**63 else "other"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "other"


def _add_kinds(kinds: dict[str, set[str]], obj: dict[Any, Any]) -> None:
    for k, v in obj.items():
        key = json_key(k)
        found = kinds.get(key)
        if found is None:
            found = kinds[key] = set()
        found.add(json_kind(v))


def json_column_type(kinds: set[str]) -> pa.DataType | None:
    """The Arrow type of a JSON column whose values are of ``kinds`` (:func:`json_kind`), or
    ``None`` when every value is null. One type for a column: integers int64, fractions (and
    integers with them, when a float64 holds them exactly) float64, booleans bool, texts string;
    a column of mixed kinds (a number in one record, a text in another), of objects or lists, or
    of integers over int64 is string, each value as the text ``train`` reads."""
    kinds = kinds - {"null"}
    if not kinds:
        return None
    if kinds <= {"int", "int64"}:
        return pa.int64()
    if kinds <= {"int", "float"}:
        return pa.float64()
    if kinds == {"bool"}:
        return pa.bool_()
    return pa.string()


def parquet_types(path: Path) -> dict[str, pa.DataType]:
    """The Arrow type of each column of a Parquet file, named as :func:`file_columns` names them."""
    with open(path, "rb") as f:  # by Python: see model.tickets.read_table
        schema = pq.ParquetFile(f).schema_arrow
    return dict(zip(column_names(schema.names), schema.types, strict=True))


# Elements of a JSON array read to estimate how many it holds, at most.
_ESTIMATE_ELEMENTS = 10_000


def declared_rows(path: Path) -> int | None:
    """The data rows a workbook's first sheet declares (its ``<dimension>``, under the header), or
    ``None`` when it declares none or only ``A1``: openpyxl's write-only mode writes no
    ``<dimension>``, and other exporters write ``A1`` whatever the sheet holds, so its size is
    unknown, not zero."""
    wb = load_workbook(path, read_only=True)
    try:
        declared = wb.worksheets[0].max_row
    finally:
        wb.close()
    return declared - 1 if declared and declared > 1 else None


def estimate_rows(path: Path) -> int:
    """Rows in a file, cheaply: exact for Parquet, lines that are not blank for JSONL, and for a
    JSON array its size over the size of its first elements (:data:`_ESTIMATE_ELEMENTS`); for CSV
    its records
    (:func:`_csv_records`), not its lines: texts over several lines made an estimate of three
    times the rows.

    A line ends at ``\n``, ``\r\n`` or a lone ``\r``, as :class:`_Lines` and
    :func:`model.tickets.jsonl_lines` read them.
    """
    fmt = file_format(path)
    if fmt == "parquet":
        with open(path, "rb") as f:
            return int(pq.ParquetFile(f).metadata.num_rows)
    if fmt == "xlsx":
        # The sheet's declared size, unreset: a progress estimate, which a stale one only makes low.
        return declared_rows(path) or 0
    if fmt == "jsonl" and json_array(path):
        with open(path, "rb") as f:
            n = 0
            try:
                for n, _, _ in json_array_elements(f, path):
                    if n == _ESTIMATE_ELEMENTS:
                        return round(n * path.stat().st_size / max(f.tell(), 1))
            except TicketFileError:
                pass  # refused by file_columns first
            return n
    if fmt == "csv":
        return max(0, _csv_records(path) - 1)
    return _jsonl_lines_not_blank(path)


# The bytes of a blank JSON Lines line (no row, :func:`model.tickets.json_lines`) besides its
# line ends: ASCII whitespace as str.strip takes it (a line of other whitespace, U+3000 for one,
# is estimated a row).
_BLANK_BYTES = b" \t\x0b\x0c\x1c\x1d\x1e\x1f"


def _jsonl_lines_not_blank(path: Path) -> int:
    """A JSON Lines file's lines that are not blank, cheaply: its rows, as :func:`estimate_rows`
    counts them (a blank line, ``\r\r\n`` ends make one after every row, is no row)."""
    rows = 0
    seen = False  # whether the line the next block goes on with holds more than whitespace
    with open(path, "rb") as f:
        first = True
        while block := f.read(1 << 20):
            if first and block.startswith(codecs.BOM_UTF8):
                block = block[len(codecs.BOM_UTF8) :]
            first = False
            lines = block.splitlines()  # at \n, \r\n and \r alone, as jsonl_lines; "" for b""
            tail = b"" if block.endswith((b"\n", b"\r")) else lines.pop()
            if lines:  # the first ends the line before (a "\r\n" cut in two ends a blank one)
                rows += seen or bool(lines[0].strip(_BLANK_BYTES))
                rows += sum(
                    1 for line in itertools.islice(lines, 1, None) if line.strip(_BLANK_BYTES)
                )
                seen = False
            seen = seen or bool(tail.strip(_BLANK_BYTES))
    return rows + seen  # a last line without its line end


def _csv_records(path: Path) -> int:
    """A CSV file's records, header included, cheaply: its line ends outside quotes, blank lines
    left out (pandas and the label reader read them as no row). Outside quotes is where as many
    ``"`` came before as an even number (a quote inside a quoted field is doubled), which holds
    in UTF-8 and GB18030, whose multi-byte characters hold no ``"``, ``\r`` or ``\n`` byte. A
    quote left open in an unquoted field makes it low: an estimate, which the rows read correct.
    """
    import numpy as np

    records = 0
    odd = 0  # how many quotes came before the block, odd (1) or even (0)
    last = 0x0A  # the byte before the block: a line end, so a blank first line is blank
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            b = np.frombuffer(block, dtype=np.uint8)
            quotes = np.flatnonzero(b == 0x22)
            breaks = np.flatnonzero((b == 0x0A) | (b == 0x0D))
            if len(breaks):
                before = np.where(breaks > 0, b[np.maximum(breaks - 1, 0)], last)
                # A line ends at \r, or at \n not after \r; it is blank after another line end.
                ends = (b[breaks] == 0x0D) | (before != 0x0D)
                blank = (before == 0x0A) | (before == 0x0D)
                outside = (np.searchsorted(quotes, breaks) + odd) % 2 == 0
                records += int((ends & outside & ~blank).sum())
            odd = (odd + len(quotes)) % 2
            last = int(b[-1])
    return records + (last not in (0x0A, 0x0D))  # a last record without its line end


# -- readers -------------------------------------------------------------------------------------


def iter_records(
    path: Path,
    columns: Sequence[str],
    csv_field_limit: int,
    delimiter: str | None = None,
    text_col: str | None = None,
    title_col: str | None = None,
    name: str | None = None,
    blank_lines: set[int] | None = None,
    id_col: str | None = None,
) -> Iterator[Record]:
    """Every row of one file as a :class:`Record` with a value for each of ``columns``.

    Columns the file lacks are empty strings. Rows that cannot be parsed come back with ``error``
    set and, where nothing could be parsed, empty values. A CSV file's fields are separated by
    ``delimiter`` (default: by its extension). An XLSX row whose ``text_col`` or ``title_col``
    cell holds a formula saved without its value comes back with an ``error`` that says so
    (:func:`model.tickets.unsaved_formulas`): it reads empty. A row's ``where`` names the file by
    ``name`` (default: its name; one found in a directory by its path relative to it,
    :func:`model.tickets.named_paths`). A blank line of a CSV or JSON Lines file is no row (as in
    pandas): its number is added to ``blank_lines``, when given. A JSON Lines line that is not
    valid JSON (cut short) keeps its ``id_col`` value where the line holds it once, whole.
    """
    fmt = file_format(path)
    name = path.name if name is None else name
    if fmt == "csv":
        sep = csv_delimiter(path, delimiter)
        texts = [c for c in (text_col, title_col) if c]
        yield from _iter_csv(path, columns, csv_field_limit, sep, name, texts, blank_lines)
    elif fmt == "jsonl" and json_array(path):
        yield from _iter_json_array(path, columns, name)
    elif fmt == "jsonl":
        yield from _iter_jsonl(path, columns, name, blank_lines, id_col)
    elif fmt == "xlsx":
        yield from _iter_xlsx(path, columns, [c for c in (text_col, title_col) if c], name, id_col)
    else:
        yield from _iter_parquet(path, columns, name)


def _encoding_sample(f: BinaryIO, path: Path) -> bytes:
    """:func:`model.tickets.encoding_sample` of ``path``, whose refusal names it."""
    try:
        return encoding_sample(f)
    except TicketFileError as e:
        raise TicketFileError(f"{path}: {e}") from None


def csv_encoding(head: bytes, path: Path | None = None) -> str:
    """The encoding of a CSV file from its first bytes.

    :func:`model.tickets.detect_encoding` decides whenever the head decodes cleanly in UTF-8 or
    GB18030. When it decodes in neither (a damaged line), the encoding in which fewer lines fail
    wins, so one bad line does not turn a UTF-8 file into GB18030 mojibake. A UTF-16 file is
    refused as :func:`model.tickets.detect_encoding` refuses it (naming ``path``).
    """
    try:
        return detect_encoding(head, path)
    except TicketFileError as e:
        if is_utf16(head):
            raise TicketFileError(f"{path}: {e}" if path else str(e)) from None
    lines = CSV_LINE_END.split(head)[:-1] or [head]

    def failures(encoding: str) -> int:
        bad = 0
        for line in lines:
            try:
                line.decode(encoding)
            except UnicodeDecodeError:
                bad += 1
        return bad

    return "utf-8-sig" if failures("utf-8") <= failures("gb18030") else "gb18030"


# A physical line: its number, its text, where its first undecodable bytes are (``None``: none;
# else "at byte offset N of the file" and what they are, :func:`_undecodable_at`), its byte offset.
_Line = tuple[int, str, str | None, int]


# Most bytes read at a time: a file of "\r" line ends, which readline() would read whole, is
# read a line at a time too.
_BLOCK = 1 << 16


def _undecodable_at(encoding: str, raw: bytes, start: int, offset: int) -> str:
    """Where the undecodable bytes at ``raw[start]`` are, ``raw`` being the line at byte
    ``offset`` of the file, and what they are when that can be told (a Big5 user-defined
    character, :func:`model.tickets.undecodable_hint`)."""
    return f"at byte offset {offset + start:,} of the file" + (
        undecodable_hint(encoding, raw, start) or f", {raw[start : start + 2].hex(' ')}"
    )


class _Lines:
    """Physical lines of a CSV file, decoded one by one, numbered, and able to go back.

    ``csv.reader`` pulls lines from this iterator only as it needs them, so the lines consumed
    since the last :meth:`take` are exactly the lines of the record it just returned. Each line
    is ``(number, text, undecodable bytes' place or None, byte offset)``; :meth:`rewind` reads again from one of them.
    A line ends at ``\n``, ``\r\n`` or a lone ``\r`` (old Mac Excel, or line ends an editor
    mixed), as in a file opened with ``newline=""``: as ``paidan train`` reads it
    (:func:`model.tickets.read_table`). Neither byte occurs inside a UTF-8 or GB18030 character.
    """

    def __init__(self, f: BinaryIO, encoding: str) -> None:
        self.f = f
        self.encoding = encoding
        self.lineno = 0
        self.offset = 0
        self.consumed: list[_Line] = []
        self.block = b""  # bytes read from f, not yet returned from self.at on
        self.at = 0
        # Lines undecodable in a GB18030 file that are UTF-8: two exports joined, one of each.
        self.utf8_lines: set[int] = set()

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        item = self.read()
        if item is None:
            raise StopIteration
        self.consumed.append(item)
        return item[1]

    def _raw(self) -> bytes:
        """The next line's bytes, its line end included (empty at the end of the file)."""
        if self.at == len(self.block):
            # Most lines: readline() stopped at their "\n", and no lone "\r" is inside.
            block = self.f.readline(_BLOCK)
            if block.endswith(b"\n") and block.find(b"\r", 0, len(block) - 2) < 0:
                return block
            self.block, self.at = block, 0
        parts: list[bytes] = []
        while True:
            if self.at == len(self.block):
                self.block, self.at = self.f.readline(_BLOCK), 0
                if parts and parts[-1].endswith(b"\r"):
                    # The line ended at the last block's last byte: a "\n" here belongs to it.
                    if self.block.startswith(b"\n"):
                        parts.append(b"\n")
                        self.at = 1
                    return b"".join(parts)
                if not self.block:
                    return b"".join(parts)
            found = CSV_LINE_END.search(self.block, self.at)
            end = found.end() if found else len(self.block)
            parts.append(self.block[self.at : end])
            self.at = end
            # A "\r" that ends the block may be the first half of a "\r\n": read on to see.
            if found and (end < len(self.block) or self.block.endswith(b"\n")):
                return b"".join(parts)

    def read(self) -> _Line | None:
        """The next line, not remembered by :meth:`take` (``None`` at the end of the file)."""
        raw = self._raw()
        if raw.endswith(b"\x1a"):
            # Ctrl-Z, no line end after it: the end-of-file mark of cmd's `copy a.csv+b.csv`
            # (model.tickets.EOF_MARK), not a row.
            raw = raw[:-1]
        if not raw:
            return None
        self.lineno += 1
        offset, self.offset = self.offset, self.offset + len(raw)
        # The BOM can only open the file; later lines are plain UTF-8.
        encoding = "utf-8" if self.encoding == "utf-8-sig" and self.lineno > 1 else self.encoding
        try:
            return (self.lineno, raw.decode(encoding, decoding_errors(encoding)), None, offset)
        except UnicodeDecodeError as e:
            if encoding == "gb18030":
                try:
                    raw.decode("utf-8")
                    self.utf8_lines.add(self.lineno)
                except UnicodeDecodeError:
                    pass
            place = _undecodable_at(encoding, raw, e.start, offset)
            return (self.lineno, raw.decode(encoding, errors="replace"), place, offset)

    def take(self) -> list[_Line]:
        out, self.consumed = self.consumed, []
        return out

    def rewind(self, item: _Line) -> None:
        """Read again from the line ``item`` (one returned before)."""
        self.consumed = []
        self.f.seek(item[3])
        self.block, self.at = b"", 0
        self.offset = item[3]
        self.lineno = item[0] - 1


@dataclass
class _Scanned:
    """One CSV record read by :func:`_scan_record`."""

    fields: list[str]  # each cut to the kept length
    lengths: list[int]  # each field's full length
    end: str  # "record", "eof in quotes" or "malformed"
    quote_line: int  # the line where the last quoted field opened (0: none)
    undecodable: str | None  # where the first undecodable bytes are (_Line), or None


def _scan_record(read: Callable[[], _Line | None], sep: str, keep: int) -> _Scanned:
    """Read one record as ``csv.reader(strict=True)`` does, keeping at most ``keep`` characters of
    each field, so a field of any length costs no more memory than ``keep`` characters.

    Used where the csv module gives up on a field over its limit: the record may be one over-long
    field in quotes that ends further down (one row), or a quote that is never closed.
    """
    fields: list[str] = []
    lengths: list[int] = []
    buf: list[str] = []
    kept = length = 0
    state = "start"  # start of a field, "plain" field, "quoted" field, "quote" seen in quotes
    quote_line = 0
    undecodable: str | None = None

    def add(piece: str) -> None:
        nonlocal kept, length
        length += len(piece)
        if kept < keep:
            buf.append(piece[: keep - kept])
            kept += len(buf[-1])

    def save() -> None:
        nonlocal kept, length
        fields.append("".join(buf))
        lengths.append(length)
        buf.clear()
        kept = length = 0

    def done(end: str) -> _Scanned:
        return _Scanned(fields, lengths, end, quote_line, undecodable)

    while (item := read()) is not None:
        lineno, line, bad, _ = item
        undecodable = undecodable or bad
        i, n = 0, len(line)
        while i < n:
            if state == "quoted":
                j = line.find('"', i)
                if j < 0:
                    add(line[i:])
                    break
                add(line[i:j])
                i, state = j + 1, "quote"
                continue
            c = line[i]
            if state == "quote":
                if c == '"':  # a doubled quote inside quotes
                    add('"')
                    i, state = i + 1, "quoted"
                    continue
                if c not in (sep, "\r", "\n"):
                    return done("malformed")  # csv (strict): a separator expected after '"'
            elif state == "start" and c == '"':
                i, state, quote_line = i + 1, "quoted", lineno
                continue
            if c == sep:
                save()
                i, state = i + 1, "start"
            elif c in "\r\n":
                save()
                return done("record")
            else:
                j = i + 1
                while j < n and line[j] not in (sep, "\r", "\n"):
                    j += 1
                add(line[i:j])
                i, state = j, "plain"
    if state == "quoted":
        return done("eof in quotes")
    save()
    return done("record")


def _iter_csv(
    path: Path,
    columns: Sequence[str],
    field_limit: int,
    sep: str,
    name: str,
    texts: Sequence[str] = (),
    blank_lines: set[int] | None = None,
) -> Iterator[Record]:
    # Read as pandas and `paidan train` read (csv's default, lenient dialect), so both see the same
    # records. Where a record is broken, its first line gets the error and the lines after it are
    # read again (one stray quote must not take the rows behind it down with it); but a record read
    # again from inside the broken one may be a piece of a text, so it comes back with an error and
    # its values, never labelled (see _BrokenSpan).
    # The field limit bounds the memory an unclosed quote takes, which would otherwise read the
    # rest of the file into one field; a record with a field over it is read again by
    # _scan_record, which keeps only the start of each field. Set, not raised: other modules raise
    # it for their own files (scipy's ARFF reader to 2**63).
    # A record with the wrong number of fields keeps the cells that can be trusted (_trusted_cells),
    # its id above all, so that its error row joins back to the ticket system: ``texts`` are the
    # text and title columns, where a stray separator or quote is.
    csv.field_size_limit(field_limit)
    blank = dict.fromkeys(columns, "")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        encoding = csv_encoding(_encoding_sample(f, path), path)
        f.seek(0)
        lines = _Lines(f, encoding)
        reader = csv.reader(lines, delimiter=sep)
        try:
            header = column_names(next(reader))
        except csv.Error as e:
            raise TicketFileError(
                f"{path}, line 1: the header cannot be read as CSV ({e})"
            ) from None
        lines.take()
        span = _BrokenSpan()
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                consumed = lines.take()
                reader = csv.reader(lines, delimiter=sep)
                yield from _broken_record(
                    lines, consumed, e, name, sep, header, blank, field_limit, span, texts
                )
                continue
            consumed = lines.take()
            if not fields:  # a blank line is not a row (as in pandas)
                if blank_lines is not None:
                    blank_lines.add(consumed[0][0])
                continue
            first, last = consumed[0][0], consumed[-1][0]
            where = f"line {first} of {name}"
            if first <= span.last:
                yield span.record(fields, header, blank, where, name)
                if len(consumed) > 1 and not _well_formed(consumed, sep, len(header)):
                    # Its own lines may be rows a quote joined: read them again. A record a strict
                    # reader reads whole, with the header's fields (a text quoted over several
                    # lines), is one row: its lines read again came back a second time, as rows
                    # of their own (one stray quote gave 40,010 rows for 40,000 tickets).
                    if lines.offset != size:  # (to the end of the file: a quote never closed)
                        span.last = max(span.last, last)
                    lines.rewind(consumed[1])
                continue
            problem = None
            # A record of several lines is checked as a strict reader would read it: text after a
            # closing quote there means a stray quote that a later one closed, which would join
            # the rows in between into one field (50 such quotes hid 100,000 of 200,000 rows). The
            # last record is scanned for a quote open to the end of the file; a record of one line
            # is read leniently wherever it is, as train reads it.
            scanned = (
                _scan_record(partial(next, iter(consumed), None), sep, 0)
                if len(consumed) > 1 or lines.offset == size
                else None
            )
            strict = scanned.end if scanned else "record"
            if scanned and strict == "eof in quotes":
                # The lenient reader ends a quote left open at the end of the file silently: the
                # rest of the file would be one field of this row. The lines after it are rows.
                problem = f"a quote opened on line {scanned.quote_line or first} is never closed"
            elif len(fields) != len(header) or (strict == "malformed" and len(consumed) > 1):
                span.first, span.last = first, last
                detail = (
                    f"it has {counted(len(fields), 'field')}, the header has {len(header)}"
                    if len(fields) != len(header)
                    else "text follows a closing quote"
                )
                if len(consumed) > 1:
                    problem = f"{detail} (lines {first}-{last}: a quote that is not doubled?)"
                else:
                    problem = detail
            if problem is not None:
                values = dict(blank)
                if len(fields) != len(header) or len(consumed) > 1:
                    short = len(consumed) == 1 and strict != "eof in quotes"
                    values.update(_trusted_cells(fields, header, texts, short))
                extra = len(fields) == len(header) + 1 and fields[-1] == ""
                yield Record(
                    values, f"malformed CSV: {where}: {problem}", where, extra_empty_field=extra
                )
                if len(consumed) > 1:
                    lines.rewind(consumed[1])
                continue
            values = dict(blank)
            values.update(zip(header, fields, strict=True))
            bad = [n for n, _, b, _ in consumed if b]
            first_bad = next((b for _, _, b, _ in consumed if b), None)
            error = (
                f"unreadable: {where} is not valid {encoding.removesuffix('-sig').upper()} "
                f"(undecodable bytes {first_bad})"
                if bad
                else None
            )
            if bad and all(n in lines.utf8_lines for n in bad):
                # Said where it is found: the file's first lines decided GB18030, and these are
                # UTF-8, so the file joins two exports (and a UTF-8 line that also reads as
                # GB18030 was labelled as mojibake).
                error = (
                    f"{error}; it is UTF-8: the file mixes GB18030 and UTF-8 (two exports joined?): "
                    "convert its GB18030 part to UTF-8 (iconv -f GB18030 -t UTF-8) before joining"
                )
            yield Record(values, error, where)


def _well_formed(consumed: list[_Line], sep: str, fields: int) -> bool:
    """Whether the lines ``consumed`` are one record as a strict reader reads it, with ``fields``
    fields, ending where they end."""
    scanned = _scan_record(partial(next, iter(consumed), None), sep, 0)
    return scanned.end == "record" and len(scanned.fields) == fields


@dataclass
class _BrokenSpan:
    """The lines of the last broken record whose later lines are being read again."""

    first: int = 0
    last: int = 0

    def record(
        self, fields: list[str], header: list[str], blank: dict[str, str], where: str, name: str
    ) -> Record:
        """A record that starts inside the span: its values (when they fit the header; one that
        does not is most likely a piece of a text, none of its cells an id), no labels."""
        values = dict(blank)
        if len(fields) == len(header):
            values.update(zip(header, fields, strict=True))
        return Record(
            values,
            f"malformed CSV: {where}: read again after the broken record of lines "
            f"{self.first}-{self.last} of {name}; it may be part of that record's text, so it "
            "is not labelled (fix the quotes there)",
            where,
        )


def _trusted_cells(
    fields: list[str], header: list[str], texts: Sequence[str], short_line: bool
) -> dict[str, str]:
    """The cells of a record with the wrong number of fields that can be trusted, by column.

    A line of one record with too few fields (``short_line``) is read as pandas reads a short
    row: its cells as read, the columns it lacks empty. Otherwise (too many fields, or a record
    that a quote spread over several lines) a separator or a quote inside a text shifted the cells
    after it, and which text holds it cannot be told: the cells of the columns before the first of
    ``texts`` (the text and title columns) are kept, as read from the record's first line (the id,
    in an export's usual layout), and the rest are left empty.
    """
    if short_line and len(fields) < len(header):
        return dict(zip(header, fields, strict=False))
    stop = min((header.index(c) for c in texts if c in header), default=0)
    kept: dict[str, str] = {}
    for column, value in zip(header[:stop], fields, strict=False):
        if "\n" in value or "\r" in value:  # a quote opened in it: what follows is suspect
            break
        kept[column] = value
    return kept


def _broken_record(
    lines: _Lines,
    consumed: list[_Line],
    error: csv.Error,
    name: str,
    sep: str,
    header: list[str],
    blank: dict[str, str],
    field_limit: int,
    span: _BrokenSpan,
    texts: Sequence[str],
) -> Iterator[Record]:
    """The row of a record the csv module gave up on, leaving ``lines`` where reading goes on."""
    first = consumed[0] if consumed else None
    firstno = first[0] if first else lines.lineno
    where = f"line {firstno} of {name}"
    problem = str(error)
    if first is not None and "field larger than field limit" in problem:
        # An over-long field, which may end further down (one row), or a quote never closed.
        lines.rewind(first)
        scanned = _scan_record(lines.read, sep=sep, keep=field_limit)
        if scanned.end == "record":
            yield _long_record(scanned, header, blank, where, field_limit, texts)
            return
        if scanned.end == "eof in quotes":
            problem = f"a quote opened on line {scanned.quote_line or firstno} is never closed"
        else:
            # Read again below, the lines this record took are suspect.
            span.first, span.last = firstno, lines.lineno
            problem = (
                f"a field over {field_limit:,} characters is followed by text after its closing "
                'quote (a quote inside a quoted field must be doubled: "")'
            )
    yield Record(dict(blank), f"malformed CSV: {where}: {problem}", where)
    # Re-read everything after the record's first line: one broken line must not take the rows
    # behind it down with it.
    if len(consumed) > 1:
        lines.rewind(consumed[1])
    elif first is not None:
        lines.rewind(first)
        lines.read()


def _long_record(
    scanned: _Scanned,
    header: list[str],
    blank: dict[str, str],
    where: str,
    limit: int,
    texts: Sequence[str],
) -> Record:
    """The row of a record with a field over the reader's limit: that field is left empty.

    A record that also has the wrong number of fields keeps the cells that can be trusted
    (:func:`_trusted_cells`), as a record of normal length does, so that its error row still
    carries its id."""
    fields = [v if n <= limit else "" for v, n in zip(scanned.fields, scanned.lengths, strict=True)]
    if len(fields) != len(header):
        detail = f"it has {counted(len(fields), 'field')}, the header has {len(header)}"
        values = dict(blank) | _trusted_cells(fields, header, texts, short_line=False)
        return Record(values, f"malformed CSV: {where}: {detail}", where)
    values = dict(blank) | dict(zip(header, fields, strict=True))
    if scanned.undecodable:
        return Record(
            values, f"unreadable: {where} has undecodable bytes {scanned.undecodable}", where
        )
    cut = {c: n for c, n in zip(header, scanned.lengths, strict=True) if n > limit}
    return Record(values, None, where, cut)


def _iter_jsonl(
    path: Path,
    columns: Sequence[str],
    name: str,
    blank_lines: set[int] | None = None,
    id_col: str | None = None,
) -> Iterator[Record]:
    blank = dict.fromkeys(columns, "")
    with open(path, "rb") as f:
        for lineno, raw, obj in json_lines(f, blank_lines):
            where = f"line {lineno} of {name}"
            # A line without an object has no values: null in JSON Lines and Parquet output.
            if isinstance(obj, UnicodeDecodeError):
                yield Record(
                    dict(blank), f"unreadable: {where} is not valid UTF-8", where, typed={}
                )
                continue
            if isinstance(obj, PrettyObject):  # one row for the object's lines
                problem = f"malformed JSON: {where}: {pretty_object(path, obj)}"
                yield Record(dict(blank), problem, where, typed={})
                continue
            if isinstance(obj, json.JSONDecodeError):
                problem = json_problem(obj, f"column {obj.colno}")
                values, typed = dict(blank), {}
                # A line cut short (a full disk, a copy stopped) keeps its id, to join it back.
                if id_col is not None and (found := _cut_line_id(raw, id_col)) is not None:
                    values[id_col], typed[id_col] = cell_text(found), found
                yield Record(values, f"malformed JSON: {where}: {problem}", where, typed=typed)
                continue
            if not isinstance(obj, dict):
                problem = f"malformed JSON: {where}: not a JSON object"
                yield Record(dict(blank), problem, where, typed={})
                continue
            refuse_same_names(f"{path}, line {lineno}", obj, "keys")  # as file_columns does
            yield _object_record(obj, b"\\ud" in raw or b"\\uD" in raw, blank, where)


# A JSON string; and after a key, its colon and a string or number value that ends there (not
# cut: 2024 of 20240105).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_COLON = re.compile(rb"\s*:")
_JSON_SCALAR = re.compile(
    rb'\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?=\s*[,}])'
)


def _cut_line_id(raw: bytes, key: str) -> str | int | float | None:
    """The value of ``key`` in a JSON line that does not parse (cut short), when the line's
    object holds that key once, itself and not an object inside it (``{"meta": {"id": …}}``),
    with a whole string or number after it; otherwise None."""
    found: list[Any] = []
    depth, i = 0, 0
    while i < len(raw):
        c = raw[i]
        if c == 0x22:  # "
            string = _JSON_STRING.match(raw, i)
            if string is None:  # the line ends inside a string
                break
            i = string.end()
            if depth != 1 or not _JSON_COLON.match(raw, i):
                continue  # a value, or a key of an object inside
            try:
                if json.loads(string.group()) != key:
                    continue
                value = _JSON_SCALAR.match(raw, i)
                found.append(json.loads(value.group(1)) if value else None)
            except ValueError:  # an escape that is none, or not UTF-8
                found.append(None)
            continue
        depth += (c in b"{[") - (c in b"}]")
        i += 1
    return found[0] if len(found) == 1 else None


def _iter_json_array(path: Path, columns: Sequence[str], name: str) -> Iterator[Record]:
    """The elements of a JSON array file (:func:`model.tickets.json_array`), read a block at a
    time, as :func:`_iter_jsonl` reads lines: an element that is not an object is an error row.
    A broken array raises where it breaks; :func:`file_columns` has refused it before."""
    blank = dict.fromkeys(columns, "")
    with open(path, "rb") as f:
        for n, obj, text in json_array_elements(f, path):
            where = f"element {n} of {name}"
            if not isinstance(obj, dict):
                problem = f"not a JSON object ({json_type(obj)})"
                yield Record(dict(blank), f"malformed JSON: {where}: {problem}", where, typed={})
                continue
            refuse_same_names(f"{path}, element {n}", obj, "keys")  # as file_columns does
            yield _object_record(obj, "\\ud" in text or "\\uD" in text, blank, where)


def _object_record(obj: dict[str, Any], escapes: bool, blank: dict[str, str], where: str) -> Record:
    """The row of one JSON object; ``escapes``: whether its text holds a ``\\uD…`` escape."""
    values = dict(blank)
    typed = {json_key(k): v for k, v in obj.items()}
    values.update((k, cell_text(v)) for k, v in typed.items())
    # JSON may escape half of a surrogate pair ("\ud800") on its own: not a character, and not
    # writable as UTF-8 into the output. (Only an object with a \uD8xx–\uDFxx escape can.)
    if escapes and (bad := unpaired_surrogate_key(obj) or unpaired_surrogate(values)):
        values = _without_surrogates(values)
        # Its texts (and objects, lists) as replaced; its numbers, booleans and nulls as read.
        typed = {
            k: v if v is None or isinstance(v, (bool, int, float)) else values[k]
            for k, v in typed.items()
        }
        return Record(values, f"unreadable: {where}: {bad}", where, typed=typed)
    return Record(values, None, where, typed=typed)


def _without_surrogates(values: dict[str, str]) -> dict[str, str]:
    """The values with each unpaired surrogate replaced by U+FFFD, so the row can be written."""
    return {
        k: v.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        for k, v in values.items()
    }


def _open_workbook(path: Path) -> tuple[Any, int]:
    """The workbook in read-only mode, its sheets read to their real end, and the first sheet's
    declared width: its header's cells are at least that many (:func:`_header`).

    Read-only mode trusts a sheet's declared size (its ``<dimension>`` record), which exporters
    leave stale or write as ``A1``: rows and columns past it were dropped without a word, where
    pandas (``train``) resets it and reads them all.
    """
    wb = load_workbook(path, read_only=True, data_only=True)
    width = (wb.worksheets[0].max_column or 0) if wb.worksheets else 0
    for ws in wb.worksheets:
        ws.reset_dimensions()
    return wb, width


def _header(row: Sequence[Any], width: int) -> list[str]:
    """A sheet's header row as text, padded with blanks to the sheet's declared width.

    Reset, read-only mode ends a row at its last written cell: a column of notes under a blank
    header cell would have had no name, and its values no place (pandas names it ``Unnamed: n``).
    """
    return ["" if v is None else str(v) for v in row] + [""] * (width - len(row))


# How far down a later sheet its rows are looked for when the first sheet is empty.
_SHEET_SCAN_ROWS = 10


def _empty_first_sheet(path: Path, wb: Any, text: str | None) -> str:
    """Why a workbook whose first sheet is empty cannot be read, naming the sheets that hold
    rows (among their first ``_SHEET_SCAN_ROWS``): those whose first row names the ``text``
    column, when any does (a field dictionary names it lower down).

    A blank ``Sheet1`` left before the tickets' sheet (工单) was refused with "the first sheet is
    empty (no header row)" alone, where a first sheet without the text column named the sheet
    that has it (:func:`model.tickets.sheet_hint`): neither the sheet nor the way out was said.
    """
    first = wb.worksheets[0]
    said = (
        f"{path}: the first sheet, {quoted(first.title)}{hidden_sheet_note(first)}, is empty (no "
        "header row)"
    )
    with_rows: list[str] = []
    with_text: list[str] = []
    for ws in wb.worksheets[1:]:
        rows = [
            [str(v).strip() for v in row if v is not None]
            for row in ws.iter_rows(max_row=_SHEET_SCAN_ROWS, values_only=True)
        ]
        if any(any(row) for row in rows):
            with_rows.append(quoted(ws.title))
            if text is not None and text in rows[0]:
                with_text.append(quoted(ws.title))
    if not with_rows:
        return f"{said}, and so is every other sheet"
    named, what = (with_text, f"a column {quoted(text)}") if with_text else (with_rows, "rows")
    sheets = f"sheet {named[0]} has" if len(named) == 1 else f"sheets {', '.join(named)} have"
    return (
        f"{said}, and only the first sheet of a workbook is read, but {sheets} {what}: move "
        f"{'that sheet' if len(named) == 1 else 'the one holding the tickets'} first, or save it "
        "as a file of its own"
    )


def _iter_xlsx(
    path: Path, columns: Sequence[str], ticket_cols: list[str], name: str, id_col: str | None = None
) -> Iterator[Record]:
    """The rows of a workbook's first sheet; a cell of ``ticket_cols`` (the text and the title)
    that holds a formula saved without its value makes its row an error. Numbers in ``id_col``
    longer than Excel keeps are warned of (:func:`model.tickets.warn_rounded_ids`)."""
    blank = dict.fromkeys(columns, "")
    wb, width = _open_workbook(path)
    # The cells of a text or title that are a formula without its value, read only once one of
    # them reads empty.
    unsaved: Generator[tuple[int, str, str], None, None] | None = None
    pending: tuple[int, str, str] | None = None
    try:
        # Cells with their types, each read as train reads it (xlsx_value): an error value is
        # empty, a zero-padded number keeps its zeros. The header as file_columns reads it.
        cells = wb.worksheets[0].iter_rows()
        header = column_names(_header([c.value for c in next(cells)], width))
        checked = [c for c in ticket_cols if c in header]
        id_at = header.index(id_col) if id_col in header else None
        rounded, first_rounded = 0, (0, 0.0)
        blanks = 0  # blank rows since the last row that holds anything
        for rowno, sheet_row in enumerate(cells, 2):
            # Blank by its cells, not by their values: a row of failed lookups (#N/A throughout)
            # reads empty, and was left out of the output without a word (train names it as a
            # row with an empty text); it comes back as one.
            if all(c.value is None or c.value == "" for c in sheet_row):
                blanks += 1
                continue
            # A blank row between rows (cleared by hand, a report's spacing) is a row with an
            # empty text, as train reads it: left out, 104 rows in Excel came back as 102. Blank
            # rows after the last one are none (a formatted, empty range), for pandas too.
            for blankno in range(rowno - blanks, rowno):
                at = f"row {blankno} of {name}"
                yield Record(dict(blank), f"empty text: the row is blank ({at})", at)
            blanks = 0
            row = tuple(xlsx_value(c) for c in sheet_row)
            if id_at is not None and id_at < len(row) and excel_rounded(row[id_at]):
                rounded += 1
                if rounded == 1:
                    first_rounded = (rowno, row[id_at])
            values = dict(blank)
            values.update(
                (h, _sheet_text(v)) for h, v in zip(header, row, strict=False) if h in values
            )
            where = f"row {rowno} of {name}"
            error = None
            if any(values.get(c) == "" for c in checked):
                if unsaved is None:
                    unsaved = unsaved_formulas(path, checked)
                    pending = next(unsaved, None)
                while pending is not None and pending[0] < rowno:
                    pending = next(unsaved, None)
                if pending is not None and pending[0] == rowno:  # the text's before the title's
                    error = f"unsaved formula: {where}: {unsaved_formula(*pending[1:])}"
            yield Record(values, error, where)
        if rounded:
            warn_rounded_ids(name, rounded, *first_rounded)
    except TicketFileError:
        raise
    except Exception as e:  # a damaged sheet fails only where its rows are read
        raise unreadable_file(path, "xlsx", e) from e
    finally:
        wb.close()
        if unsaved is not None:
            unsaved.close()


def _sheet_text(value: Any) -> str:
    """A sheet's cell as text, as ``train`` reads it (pandas): a TRUE cell is ``True``, Excel's
    ``_x000D_`` a carriage return (:func:`model.tickets.xlsx_text`)."""
    return str(value) if isinstance(value, bool) else cell_text(xlsx_text(value))


def _iter_parquet(path: Path, columns: Sequence[str], name: str) -> Iterator[Record]:
    with open(path, "rb") as f:  # by Python: see model.tickets.read_table
        yield from _parquet_records(name, pq.ParquetFile(f), columns)


def _parquet_records(name: str, pf: pq.ParquetFile, columns: Sequence[str]) -> Iterator[Record]:
    blank = dict.fromkeys(columns, "")
    # The file's columns by position, named as file_columns names them: a blank name is
    # "Unnamed: 2" there, and keyed by its stripped name ("") its values went nowhere.
    names = column_names(pf.schema_arrow.names)
    rowno = 0
    for batch in parquet_batches(pf, 2_048):  # a row group at a time: memory stays flat
        for cells in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            rowno += 1
            where = f"row {rowno} of {name}"
            values = dict(blank)
            typed = dict(zip(names, cells, strict=True))
            try:
                values.update((k, cell_text(v)) for k, v in typed.items())
            except UnicodeDecodeError:
                # A BINARY column holds bytes, which cell_text reads as UTF-8: the row is kept,
                # not labelled, with U+FFFD in place of what is not UTF-8.
                bad = ""
                for k, v in zip(names, cells, strict=True):
                    try:
                        values[k] = cell_text(v)
                    except UnicodeDecodeError:
                        bad = bad or k
                        values[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else ""
                yield Record(
                    values,
                    f"unreadable: {where}: column {quoted(bad)} is not UTF-8",
                    where,
                    typed=typed,
                )
                continue
            yield Record(values, None, where, typed=typed)


# -- writers -------------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on this platform
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_part_atomic(table: pa.Table, path: Path) -> None:
    """Write one part of a run as an Arrow IPC file: temporary name, fsync, rename into place.

    Parts are read back only by this program, to resume a run: uncompressed Arrow takes a sixth
    of Parquet's time to write and a fiftieth to read (measured on 2,000 labelled tickets).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    # Opened by Python, which encodes the name as the file system's: Arrow, given the name,
    # encoded it as UTF-8, and on a zh_CN.GBK server could not open a part of `--out 结果.csv`,
    # whose directory Python had made with GBK bytes.
    try:
        with open(tmp, "wb") as f:
            with pa.ipc.new_file(f, table.schema) as out:
                out.write_table(table)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)  # half written (a full disk, Ctrl-C): space a resume needs
        raise


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def read_part(path: Path, schema: pa.Schema) -> pa.Table:
    """A part written by :func:`write_part_atomic`, checked against the run's output schema."""
    with open(path, "rb") as source:  # by Python: see write_part_atomic
        table = pa.ipc.open_file(source).read_all()
    if not table.schema.equals(schema):
        raise TicketFileError(
            f"{path}: this part's columns ({', '.join(map(quoted, table.schema.names))}) are not "
            f"the run's ({', '.join(map(quoted, schema.names))}); rerun with --force to start over"
        )
    return table


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON under a temporary name, fsync it, rename it into place and fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_dir(path.parent)


# A spreadsheet opening a CSV file runs a cell that begins with one of these as a formula (OWASP's
# "CSV injection": = + - @, a tab, a carriage return), or may (a line feed, a NUL, and the
# full-width forms a Chinese keyboard types). An RE2 pattern, as pyarrow.compute takes it.
FORMULA_START = r"^[=+\-@\t\r\n\x00＝＋－＠]"
# A plain number ("-5", "+3.5", "-1e3"), which a spreadsheet reads as the number: no formula.
_PLAIN_NUMBER = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"


def escape_formulas(table: pa.Table) -> tuple[pa.Table, int]:
    """``table`` with every text cell that a spreadsheet would run as a formula prefixed with a
    single quote, as OWASP recommends (``=HYPERLINK(…)`` becomes ``'=HYPERLINK(…)``, which Excel
    shows as the text it is, without the quote), and how many cells were; a plain number
    (``-5``) is left as it is."""
    columns = []
    escaped = 0
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            starts = pc.match_substring_regex(column, FORMULA_START)
            if pc.any(starts).as_py():
                formula = pc.and_(
                    starts, pc.invert(pc.match_substring_regex(column, _PLAIN_NUMBER))
                )
                escaped += pc.sum(formula).as_py() or 0
                quoted = pc.binary_join_element_wise("'", column, "")
                column = pc.if_else(formula, quoted, column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema), escaped


def _finite(table: pa.Table) -> pa.Table:
    """``table`` with each NaN or infinite float (a Parquet input's) null: JSON has no value for
    them, and Python's ``NaN`` literal is refused by other JSON readers."""
    for i, f in enumerate(table.schema):
        if pa.types.is_floating(f.type):
            column = table.column(i)
            bad = pc.invert(pc.is_finite(column))
            if pc.any(bad).as_py():
                table = table.set_column(i, f, pc.if_else(bad, pa.scalar(None, f.type), column))
    return table


def _utf16_units(text: str) -> int:
    """The length of ``text`` as Excel counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _too_long(value: str) -> bool:
    """Whether ``value`` is longer than an Excel cell holds."""
    return len(value) > XLSX_MAX_CELL_CHARS // 2 and _utf16_units(value) > XLSX_MAX_CELL_CHARS


def _cut_note(cut: list[tuple[str, int]]) -> str:
    """What a row's ``error`` says of its fields cut in an XLSX file (name, length in characters)."""
    fields = ", ".join(f"{quoted(k)} has {n:,} characters" for k, n in cut)
    emoji = all(n <= XLSX_MAX_CELL_CHARS for _, n in cut)  # over only once emoji count as two
    return (
        f"cut in this workbook: {fields}, over the {XLSX_MAX_CELL_CHARS:,} an Excel cell holds"
        + (" (an emoji counts as two)" if emoji else "")
        + f"; only the first {XLSX_MAX_CELL_CHARS:,} are here: write .csv, .jsonl or .parquet "
        "to keep every character"
    )


class OutputWriter:
    """Streams rows into the final file format; the same rows always give the same bytes (except
    XLSX, whose zip entries carry the time of writing).

    A CSV file's text cells that a spreadsheet would run as a formula are written with a leading
    single quote (:func:`escape_formulas`), unless ``formulas_escaped`` is false (a file for
    programs, not people); an XLSX file's texts are text cells, never formulas, either way.
    """

    def __init__(
        self, path: Path, fmt: str, schema: pa.Schema, formulas_escaped: bool = True
    ) -> None:
        self.path = path
        self.fmt = fmt
        self.schema = schema
        self.formulas_escaped = formulas_escaped
        self.escaped = 0  # cells written with a leading quote
        self.names = schema.names
        self.rows = 0
        # XLSX: cells longer than an Excel cell holds, cut (each row's error says so), the rows
        # holding them, and where the first is.
        self.cells_cut = 0
        self.rows_cut = 0
        self.first_cut = ""
        # XLSX: cells whose control characters XML cannot hold were removed, and where the first is.
        self.cells_stripped = 0
        self.first_stripped = ""
        self._f: Any = None
        self._writer: Any = None
        if fmt == "csv":
            # UTF-8 with a BOM, so Excel shows the Chinese text instead of mojibake. Arrow's writer
            # (C++) quotes every string, which any CSV reader accepts. The csv module, quoting only
            # where needed, took 0.95 s of the main process's CPU per 100,000 rows (Arrow: 0.10 s),
            # CPU that the workers labelling on the same cores then lacked.
            self._f = open(path, "wb")  # noqa: SIM115 (closed in close())
            self._f.write(codecs.BOM_UTF8)
            # The header is a row a spreadsheet runs as it runs the cells: an export's column
            # named "=HYPERLINK(…)" is escaped as such a cell is.
            self._csv_names = self.names
            if formulas_escaped:
                names, self.escaped = escape_formulas(pa.table({"name": pa.array(self.names)}))
                self._csv_names = names.column(0).to_pylist()
            self._writer = pa_csv.CSVWriter(
                self._f,
                pa.schema([f.with_name(n) for f, n in zip(schema, self._csv_names, strict=True)]),
                write_options=pa_csv.WriteOptions(quoting_style="needed"),
            )
        elif fmt == "jsonl":
            self._f = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        elif fmt == "parquet":
            # Opened by Python: see write_part_atomic.
            self._f = open(path, "wb")  # noqa: SIM115 (closed in close())
            self._writer = pq.ParquetWriter(self._f, schema)
        else:
            import openpyxl
            from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

            self._illegal = ILLEGAL_CHARACTERS_RE
            self._writer = openpyxl.Workbook(write_only=True)
            self._sheet = self._writer.create_sheet("labels")
            # The column names as the cells are written: text cells without the characters XML
            # cannot hold (a JSON key with a \x01 stopped the run with openpyxl's traceback).
            self._sheet.append([self._text_cell(self._xml_safe(k, 1, k)) for k in self.names])

    def write(self, table: pa.Table) -> None:
        """Append one part (a table with the output schema).

        An XLSX cell longer than Excel holds (:data:`XLSX_MAX_CELL_CHARS`) keeps its first
        characters, and its row's ``error`` says which field was cut, from how many characters,
        and which formats keep it whole (counted in :attr:`cells_cut` and :attr:`rows_cut`).
        """
        first_row = self.rows + 2  # on the sheet, under the header
        self.rows += table.num_rows
        if self.fmt == "csv" and self.formulas_escaped:
            # Here, as the file is written: the parts that --resume reads back hold the values
            # as read, so a resumed run escapes each cell once, as an uninterrupted one does.
            table, escaped = escape_formulas(table)
            self.escaped += escaped
        if self.fmt in ("parquet", "csv"):
            if self.fmt == "csv" and self._csv_names != self.names:
                table = table.rename_columns(self._csv_names)
            self._writer.write_table(table)
            return
        if self.fmt == "jsonl":
            table = _finite(table)
        rows = table.to_pylist()
        if self.fmt == "jsonl":
            self._f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        else:
            if self.rows + 1 > XLSX_MAX_ROWS:
                raise TicketFileError(
                    f"{self.path}: {self.rows:,} rows do not fit in one Excel sheet "
                    f"(limit {XLSX_MAX_ROWS - 1:,}); write .csv, .jsonl or .parquet instead"
                )
            for n, row in enumerate(rows, first_row):
                row = {k: self._xml_safe(v, n, k) for k, v in row.items()}
                cut = [(k, len(v)) for k, v in row.items() if isinstance(v, str) and _too_long(v)]
                if cut:
                    note = _cut_note(cut)
                    row["error"] = f"{row['error']}; {note}" if row["error"] else note
                    self.cells_cut += len(cut)
                    self.rows_cut += 1
                    if not self.first_cut:
                        k, length = cut[0]
                        self.first_cut = (
                            f"sheet row {n:,}, column {quoted(k)}: {length:,} characters"
                        )
                self._sheet.append([self._text_cell(v) for v in row.values()])

    def _xml_safe(self, value: Any, n: int, column: str) -> Any:
        """``value`` (sheet row ``n``, ``column``) without the characters XML cannot carry,
        counted: the text is otherwise written as read, and a NUL or a \x1c vanished without a
        word."""
        if not isinstance(value, str):
            return value
        stripped = self._illegal.sub("", value)
        if stripped != value:
            self.cells_stripped += 1
            if not self.first_stripped:
                self.first_stripped = f"sheet row {n:,}, column {quoted(column)}"
        return stripped

    def _text_cell(self, value: Any) -> Any:
        """Text kept as text, cut to what a cell holds (as openpyxl would cut it, but not inside
        an emoji)."""
        if not isinstance(value, str):
            return value
        if _too_long(value):
            value = value.encode("utf-16-le", "surrogatepass")[: 2 * XLSX_MAX_CELL_CHARS].decode(
                "utf-16-le", "ignore"
            )
        if not value.startswith("="):
            return value
        from openpyxl.cell import WriteOnlyCell

        # openpyxl stores a string that begins with "=" as a formula, which Excel then runs (a
        # citizen's "=HYPERLINK(…)" would become a live link). Typed as a string, it stays text.
        cell = WriteOnlyCell(self._sheet, value=value)
        cell.data_type = "s"
        return cell

    def close(self) -> None:
        """Finish the file and fsync it."""
        if self.fmt == "xlsx":
            self._writer.save(self.path)
        else:
            if self.fmt in ("csv", "parquet"):
                self._writer.close()  # flushes Arrow's buffer; the file stays open
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            return
        with open(self.path, "rb") as f:
            os.fsync(f.fileno())

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        try:
            if self.fmt == "parquet":
                with contextlib.suppress(Exception):
                    self._writer.close()
            if self._f is not None:
                self._f.close()
            elif self.fmt == "xlsx":
                # The sheet's rows go to a temporary file of openpyxl's own: finished and removed
                # now, or its writer, collected at exit, printed "Exception ignored … I/O
                # operation on closed file" under the run's one-line error.
                self._sheet.close()
                if self._sheet._writer is not None:
                    self._sheet._writer.cleanup()
        except Exception:
            pass
