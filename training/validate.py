"""Checks on training data that end in a clear message rather than a bad model."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.config import OTHER_LABEL
from model.text import PLACEHOLDERS, clean, counted, id_key, mask_label, mask_pii, normalize, quoted
from model.tickets import (
    CO_COL,
    LABELS,
    LINE_COL,
    LIST_COMMAS,
    LIST_SEPARATORS,
    PATH_COL,
    ROW_COL,
    SOURCE_COL,
    ColumnMap,
    TicketFileError,
    file_format,
    has_text,
    json_array,
    jsonl_object_lines,
    like_hint,
    scientific_ids,
    scientific_ids_message,
    split_comma_listed,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

# How many row numbers a message lists before it says "and N more".
MAX_LISTED = 20
# Rows without a label are listed more briefly: the first few tell where to look.
UNLABELLED_LISTED = 5
# What makes two rows the same ticket read twice (see validate()).
SAME_TICKET = ("id", "title", "text", *LABELS, CO_COL)
# Column of validate()'s rows holding their text as cleaned (model.text.clean), which validation
# computes anyway: training's text_groups reads it rather than cleaning every text again.
CLEAN_TEXT_COL = "_clean_text"
# The administrative parts of a department's name (see label_likeness): its level, which a county's
# labels share, and its kind of body, longest first.
ADMIN_PREFIXES = ("街道", "省", "市", "县", "区", "镇", "乡")
ADMIN_SUFFIXES = ("委员会", "办公室", "中心", "局", "委", "办")
# The least SequenceMatcher ratio of two names, once those parts are set aside, to call them alike:
# two characters of three alike (市场监督, 市场监管); one of two is another department (城管, 城建).
LIKENESS = 0.6
# Characters of those parts alone, which say nothing of which department a label is.
ADMIN_CHARS = frozenset("".join(ADMIN_PREFIXES + ADMIN_SUFFIXES))
# A department's place, a name and its level (海淀区, K8县, 某某街道), which two bodies of one kind
# in two places (海淀区城管局, 朝阳区城管局) differ in alone.
PLACE = re.compile(r".{1,4}?(?:街道|区|县|市|镇|乡)")


class TrainingDataError(ValueError):
    """The training data cannot train a model; the message says what and where."""


@dataclass(frozen=True)
class Options:
    """The command-line names :func:`validate`'s messages suggest: ``paidan train``'s, or
    ``paidan retrain``'s, which has its own window options and takes ``min_examples`` from the
    current model's config (its error said "a wider --since or --max-rows) or lower
    --min-examples", three options retrain does not have)."""

    since: str = "--since"
    max_rows: str = "--max-rows"
    # None: not an option of the command (retrain's min_examples is the current model's).
    min_examples: str | None = "--min-examples"
    # The option that renames labels (retrain's), for a label that may be another's spelling;
    # None: the command has none, so the advice is to label the rows alike.
    mapping: str | None = None


TRAIN_OPTIONS = Options()
RETRAIN_OPTIONS = Options("--history-since", "--history-max-rows", None, "--mapping")


@dataclass
class ValidationReport:
    """What validation found and did, for the summary and ``metadata.json``."""

    rows_in: int = 0
    rows_used: int = 0
    empty_text: list[str] = field(default_factory=list)
    # Rows left out by the reader as repeating their file's header line (model.tickets
    # .repeats_header, warned of in the log as they are read); None: not counted (rows given
    # to train_frame without the reader's count).
    repeated_header_rows: int | None = None
    # Rows dropped as the same ticket read twice, each with the earlier row it repeats.
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    # Per file read twice (given twice, or given and in a directory given), how many of its rows
    # repeat themselves: among ``duplicates``, said once for the file (files_read_twice).
    read_twice: dict[str, int] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    merged: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per head, the rows of 其他 when even after the merge it had fewer than min_examples rows:
    # those rows lost that head's label (a label too rare to learn, see validate()).
    unlearnt: dict[str, int] = field(default_factory=dict)
    label_rows: dict[str, int] = field(default_factory=dict)
    # Per head that some rows do have a label for, the rows with text whose label cell is empty
    # (merged cells in Excel, #N/A): they train no such head, which the user should know of.
    unlabelled: dict[str, list[str]] = field(default_factory=dict)
    # Rows whose department cell named several departments (a joint dispatch, 会办): the head
    # learns their lead department (model.tickets.split_departments).
    joint_rows: int = 0
    # Per head, the labels that listed departments with 、 or a comma, read as joint dispatches
    # (model.tickets.comma_listed), with their rows.
    comma_listed: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per head whose every labelled row has the same label, that label: the head is left out and
    # the other head trained alone (a bureau's own tickets, all 市住建局, several categories).
    single_label: dict[str, str] = field(default_factory=dict)
    # Heads without a column in the input (the default name absent, nothing mapped), each with
    # the warning that names the file's columns and the option (see label_column_notes).
    absent_columns: list[str] = field(default_factory=list)
    # Per head, each merged label (masked, as in merged) that is inside a learnt label or holds
    # one (住建局 beside 县住建局), with that label: the same department written another way.
    near: dict[str, dict[str, str]] = field(default_factory=dict)
    # The advice for near labels: how the command renames a label.
    rename_advice: str = "then label its rows so"
    # Warnings on learnt labels one inside the other, and on heads mostly of merged rare labels.
    label_notes: list[str] = field(default_factory=list)
    # Ids that are numbers in scientific notation (:func:`frame_scientific_ids`): how many, and
    # the first with where it was read.
    scientific_ids: tuple[int, str, str] | None = None
    # Per file whose rows are numbered by line (LINE_COL: a feedback export's decisions, by the
    # name it was given as), the rows used: retrain records them with the file.
    line_rows_used: dict[str, int] = field(default_factory=dict)

    def warnings(self, said: Mapping[str, Mapping[str, int]] | None = None) -> list[str]:
        """Lines the user must see. ``said``: per head, the rare labels merged into 其他 that
        the caller has warned of already (as :func:`model.text.mask_label` quotes them, with
        their rows), left out here (``retrain`` says of a new label that it was merged)."""
        said = said or {}
        out = []
        if self.empty_text:
            out.append(
                f"skipped {rows_of(len(self.empty_text))} with empty text: "
                f"{listing(self.empty_text)}"
            )
        if self.repeated_header_rows:
            out.append(repeated_header_summary(self.repeated_header_rows))
        if self.scientific_ids:
            out.append(scientific_ids_message(*self.scientific_ids))
        if self.duplicates:
            out.append(duplicates_message(self.duplicates, twice=self.read_twice))
        for c in self.conflicts[:MAX_LISTED]:
            out.append(
                f"same text with conflicting {c['head']} labels {c['labels']} at {listing(c['rows'])}"
            )
        if len(self.conflicts) > MAX_LISTED:
            more = counted(len(self.conflicts) - MAX_LISTED, "more conflicting duplicate")
            out.append(f"… and {more}")
        for head, labels in self.merged.items():
            told = said.get(head, {})
            rest = {k: n for k, n in labels.items() if told.get(k) != n}
            if rest:
                out.extend(merged_messages(head, rest, self.near.get(head, {}), self.rename_advice))
        for head, n in self.unlearnt.items():
            out.append(unlearnt_message(head, n))
        out.extend(self.label_notes)
        for head, rows in self.unlabelled.items():
            out.append(
                f"{rows_of(len(rows))} {'has' if len(rows) == 1 else 'have'} no {head} label, so "
                f"{'it trains' if len(rows) == 1 else 'they train'} no {head} head: "
                f"{listing(rows, UNLABELLED_LISTED)}"
            )
        for head, labels in self.comma_listed.items():
            out.append(comma_listed_message(head, labels))
        for head, label in self.single_label.items():
            out.append(single_label_message(head, label) + f", so the model has no {head} head")
        out.extend(self.absent_columns)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_used": self.rows_used,
            "empty_text_rows": len(self.empty_text),
            **(
                {"repeated_header_rows": self.repeated_header_rows}
                if self.repeated_header_rows is not None
                else {}
            ),
            "ids_in_scientific_notation": self.scientific_ids[0] if self.scientific_ids else 0,
            "duplicate_rows": len(self.duplicates),
            **({"files_read_twice": self.read_twice} if self.read_twice else {}),
            "conflicting_duplicates": len(self.conflicts),
            "merged_into_other": self.merged,
            "other_too_rare_to_learn": self.unlearnt,
            "label_rows": self.label_rows,
            "unlabelled_rows": {head: len(rows) for head, rows in self.unlabelled.items()},
            "joint_rows": self.joint_rows,
            "comma_listed": self.comma_listed,
            "single_label": self.single_label,
        }


def frame_scientific_ids(df: pd.DataFrame) -> tuple[int, str, str] | None:
    """:func:`scientific_ids` of the reader's rows ``df``: how many, the first id and where it
    was read (:func:`row_places`); None when no id is one, or the rows have no id column."""
    import pyarrow as pa

    if "id" not in df or df.empty:
        return None
    ids = pa.array(df["id"].fillna("").astype(str).to_numpy(dtype=object), type=pa.large_string())
    n, first = scientific_ids(ids)
    if first is None:
        return None
    row = df.iloc[[first]]
    return n, str(row["id"].iloc[0]), str(row_places(row).iloc[0])


def comma_listed_message(head: str, labels: Mapping[str, int]) -> str:
    """The warning for ``head`` cells that listed departments with 、, a comma, a line break, a
    space or a slash (read as joint dispatches, :func:`model.tickets.comma_listed`): how many,
    and the first of them."""
    n = sum(labels.values())
    listed = listing([f"{k!r} ({rows_of(v)})" for k, v in labels.items()])
    commas_only = not any(LIST_SEPARATORS.search(LIST_COMMAS.sub("", k)) for k in labels)
    separated = "、 or a comma" if commas_only else "、, a comma, a line break, a space or a slash"
    return (
        f"{n} {head} cell{'' if n == 1 else 's'} list{'s' if n == 1 else ''} departments "
        f"separated by {separated} ({listed}): read as joint dispatches (会办), the first the "
        "lead, as if separated by ；, which is how to write them"
    )


def rows_of(n: int) -> str:
    """``n`` rows as a message counts them: "1 row", "2 rows" ("skipped 1 rows" read as a slip)."""
    return counted(n, "row")


def repeated_header_summary(rows: int) -> str:
    """The summary's line for the rows left out as repeating their file's header line, which the
    log named as they were read (:func:`model.tickets.repeated_header_message`)."""
    return (
        f"skipped {counted(rows, 'row that repeats', 'rows that repeat')} the header line "
        "(files joined with `copy a.csv+b.csv` or `cat` keep each part's header; the log names "
        "their rows)"
    )


def merged_mapping(
    meta: Mapping[str, Any], learnt: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, str]]:
    """The rare labels a model's training merged into 其他, as renames to 其他 per head.

    Read from ``training_data.validation.merged_into_other`` in its metadata; evaluation and
    drift apply them to true labels, since the model answers 其他 for such tickets by design. A
    head is left out when 其他 is not among its ``learnt`` labels (itself too rare to learn), and
    so is a label the head did learn.
    """
    data = meta.get("training_data")
    validation = data.get("validation") if isinstance(data, dict) else None
    merged = validation.get("merged_into_other") if isinstance(validation, dict) else None
    out: dict[str, dict[str, str]] = {}
    if not isinstance(merged, dict):
        return out
    for head, labels in merged.items():
        known = set(learnt.get(head, ()))
        if head in LABELS and OTHER_LABEL in known and isinstance(labels, dict):
            renames = {str(k): OTHER_LABEL for k in labels if str(k) not in known}
            if renames:
                out[head] = renames
    return out


def find_merged(
    renames: Mapping[str, str], labels: Iterable[str], learnt: Iterable[str] = ()
) -> dict[str, str]:
    """The renames of :func:`merged_mapping` for ``labels`` as the data spells them.

    Training records a merged label as :func:`model.text.mask_label` quotes it, so a label that
    held a number (网格员李四１３９８７６５４３２１) is in the metadata as 网格员李四[手机号] and
    is found by its masked form; models trained before that recorded it as written, or masked as
    written (:func:`model.text.mask_pii`, half-width digits only), and are found by those forms.
    A label the model learnt (``learnt``) is never renamed.

    Returns
    -------
    dict
        Each of ``labels`` to rename, as written, → its new label (其他).
    """
    out: dict[str, str] = {}
    if not renames:
        return out
    known = set(learnt)
    # The ticket readers give a label masked as mask_label writes it (A区网格员13912345678 as
    # a区网格员[手机号]), which a key masked as written (A区网格员[手机号]) or recorded as written
    # in full-width digits no longer spells: those are found by their masked normalised form.
    by_masked = {
        m: new
        for k, new in renames.items()
        if any(p in (m := mask_pii(normalize(k))) for p in PLACEHOLDERS)
    }
    for label in set(labels):
        if not label or label in known:
            continue
        for key in (label, mask_label(label), mask_pii(label)):
            if key in renames:
                out[label] = renames[key]
                break
        else:
            if (masked := mask_pii(normalize(label))) in by_masked:
                out[label] = by_masked[masked]
    return out


def masked_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """``counts`` per label as :func:`model.text.mask_label` quotes it (labels masked alike add)."""
    out: dict[str, int] = {}
    for label, n in counts.items():
        key = mask_label(label)
        out[key] = out.get(key, 0) + n
    return out


def row_places(df: pd.DataFrame) -> pd.Series:
    """Where each row was read, as messages name it (``"<file> data row <n>"``): the file by its
    name as the reader gives it (``2024/一月.csv`` for one found in ``exports/2024/``), a row of a
    JSON Lines file by its line (``a.jsonl line 6``: its data row is another number once the file
    has blank lines, and the reader's errors, ``label``'s error rows and the window's messages name
    its lines) and one of a JSON array by its element (``a.json element 3``), as
    :func:`model.tickets.row_place` names one row.

    Rows without the reader's source columns (a frame built otherwise) are ``"row <n>"``.
    """
    import numpy as np
    import pandas as pd

    if SOURCE_COL not in df or ROW_COL not in df:
        return pd.Series([f"row {i}" for i in range(1, len(df) + 1)], index=df.index, dtype=object)
    names = df[SOURCE_COL].astype(str).fillna("?").to_numpy(dtype=object)
    rows = df[ROW_COL].astype(str).fillna("?").to_numpy(dtype=object)
    places = names + " data row " + rows
    if LINE_COL in df:  # a feedback export's decisions, numbered by their line
        at = np.flatnonzero(df[LINE_COL].eq(True).to_numpy())
        places[at] = names[at] + " line " + rows[at]
    # As numbers for the JSON rows' lines: a row number that is none (a frame put together
    # otherwise) is -1, named by its data row as before.
    numbers = pd.to_numeric(df[ROW_COL], errors="coerce").fillna(-1).astype(np.int64).to_numpy()
    if PATH_COL in df:
        # Rows read otherwise (retrain's feedback beside a history file) have no path.
        paths = df[PATH_COL].fillna("").astype(str).to_numpy(dtype=object)
        for path in pd.unique(paths):
            if not path:
                continue
            file = Path(path)
            try:
                if file_format(file) != "jsonl" or not file.is_file():
                    continue
                at = np.flatnonzero(paths == path)
                if json_array(file):
                    at = at[numbers[at] >= 1]
                    places[at] = names[at] + " element " + rows[at]
                    continue
                # One reading of the file for all its rows: the line of each object, in order.
                lines = np.fromiter(jsonl_object_lines(file), dtype=np.int64)
            except (OSError, TicketFileError):
                continue  # a name the file system does not have: by its data row
            at = at[(numbers[at] >= 1) & (numbers[at] <= len(lines))]
            found = lines[numbers[at] - 1].astype(str).astype(object)
            places[at] = names[at] + " line " + found
    return pd.Series(places, index=df.index, dtype=object)


def ticket_keys(df: pd.DataFrame, text: pd.Series | None = None) -> Iterator[tuple[str, ...]]:
    """Per row, what makes it the same ticket as another (:func:`repeated_rows`): its id (as ids
    are compared, :func:`model.text.id_key`), title and text (as cleaned) and labels, stripped.
    ``text``: ``df["text"]`` cleaned already."""
    text = df["text"].fillna("").astype(str).map(clean) if text is None else text
    same = df[[c for c in SAME_TICKET if c in df]].fillna("").astype(str).map(str.strip)
    same["title"], same["text"] = same["title"].map(clean), text
    if "id" in same:
        same["id"] = same["id"].map(id_key)
    return same.itertuples(index=False, name=None)


def repeated_rows(
    df: pd.DataFrame, where: pd.Series | None = None, text: pd.Series | None = None
) -> tuple[list[bool], list[tuple[str, str]]]:
    """The same ticket read twice: rows alike in id, title and text (as cleaned) and labels.

    A file given twice, or monthly exports that overlap, would otherwise count each such ticket
    twice (in training, in an evaluation, in the frozen set). Only rows alike in id as well count:
    different citizens do send the same short text.

    Parameters
    ----------
    df : DataFrame
        Canonical rows.
    where : Series of str, optional
        Each row's place for the message (default :func:`row_places`).
    text : Series of str, optional
        ``df["text"]`` already cleaned (:func:`model.text.clean`), when the caller has it.

    Returns
    -------
    (list of bool, list of (str, str))
        Per row, whether to keep it (the first of its copies), and each dropped row's place with
        that of the earlier row it repeats (see :func:`duplicates_message`).
    """
    where = row_places(df) if where is None else where
    first: dict[tuple[str, ...], str] = {}
    kept: list[bool] = []
    pairs: list[tuple[str, str]] = []
    for at, row in zip(where, ticket_keys(df, text), strict=True):
        kept.append(row not in first)
        if kept[-1]:
            first[row] = at
        else:
            pairs.append((at, first[row]))
    return kept, pairs


def validate(
    df: pd.DataFrame,
    min_examples: int = 5,
    strict: bool = False,
    options: Options = TRAIN_OPTIONS,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Clean up canonical training rows and say what was done.

    Parameters
    ----------
    df : DataFrame
        Rows from :func:`model.tickets.read_tickets`.
    min_examples : int, default 5
        Labels with fewer rows are merged into ``其他`` (``OTHER_LABEL``). If ``其他`` still has
        fewer rows after that, those rows lose that head's label: too few to learn, they would
        fail cross-validation (one row) or cut the head's to as many folds as they have rows.
    strict : bool, default False
        Refuse rare labels instead of merging them.
    options : Options, default TRAIN_OPTIONS
        The command's option names, for messages (:data:`RETRAIN_OPTIONS` for retrain).

    Returns
    -------
    (DataFrame, ValidationReport)
        The rows to train on (labels stripped, empty-text rows and tickets read twice removed, rare
        labels merged; their texts as cleaned in :data:`CLEAN_TEXT_COL`) and the report, whose
        :meth:`~ValidationReport.warnings` the caller shows (they are logged at INFO only, so
        that a command line does not print each twice).

    Raises
    ------
    TrainingDataError
        In strict mode when a label is rare; when no row has text; when no row has any label.
    """
    report = ValidationReport(rows_in=len(df))
    advice = (
        f"then map it to that with {options.mapping}" if options.mapping else report.rename_advice
    )
    report.rename_advice = advice
    df = df.copy()
    for head in LABELS:
        df[head] = df[head].astype(str).str.strip()
    # A joint dispatch written 人社、住建, where both are departments of the data: read as one
    # written 人社；住建 (model.tickets.comma_listed).
    if listed := split_comma_listed(df):
        report.comma_listed = {"department": masked_counts(listed)}
    where = row_places(df)
    report.scientific_ids = frame_scientific_ids(df)

    with_text = has_text(df)
    report.empty_text = where[~with_text].tolist()
    df, where = df[with_text], where[with_text]
    if df.empty:
        raise TrainingDataError(
            "no row has any text (every text is empty; a title alone is no ticket)"
        )

    # The same ticket read twice (a file given twice, monthly exports that overlap) is kept once:
    # trained twice, it weighed double, and cross-validation scored it with its copy in the
    # training folds. Only rows alike in id as well count: different citizens do send the same
    # short text. A row without an id has "<file stem>:<row>" from the reader, so a file given
    # twice is caught, the same text in two such files is not (the folds keep those together,
    # see training.train.text_groups).
    key = df["text"].map(clean)  # as featurised: a line end \r\n is the same text as \n
    kept, report.duplicates = repeated_rows(df, where, key)
    if report.duplicates:
        if SOURCE_COL in df:
            report.read_twice = files_read_twice(df[SOURCE_COL], kept, report.duplicates)
        logger.info("%s", duplicates_message(report.duplicates, twice=report.read_twice))
        df, where, key = df[kept], where[kept], key[kept]

    for head in LABELS:
        empty = df[head] == ""
        if empty.any() and not empty.all():  # a head no row has a label for is simply absent
            report.unlabelled[head] = where[empty].tolist()

    # Duplicate texts with different labels: reported, kept (dispatchers disagree in real life too).
    for head in LABELS:
        report.conflicts += conflicting_duplicates(head, key, df[head], where)

    for head in LABELS:
        counts = df.loc[df[head] != "", head].value_counts()
        rare = counts[counts < min_examples]
        if len(rare) and strict:  # only train has --strict
            # The first few, most rows first: all 30,000 spellings of a freehand column made
            # one line of 745 KB.
            raise TrainingDataError(
                f"{counted(len(rare), f'{head} label')} with fewer than {min_examples} rows "
                "(--min-examples): "
                + listing([f"{mask_label(str(label))!r} ({n})" for label, n in rare.items()])
                + "; add examples, lower --min-examples, or drop --strict to merge them into "
                + repr(OTHER_LABEL)
            )
        learnt = {str(k): int(v) for k, v in counts[counts >= min_examples].items()}
        learnt.pop(OTHER_LABEL, None)
        report.label_notes += twin_messages(head, learnt)
        if len(rare):
            # Masked (metadata.json is not to hold a number typed into a label), so two labels
            # that differ only in their number add up; find_merged finds them again by this.
            report.merged[head] = masked_counts({str(k): int(v) for k, v in rare.items()})
            df.loc[df[head].isin(rare.index), head] = OTHER_LABEL
            top = sorted(report.merged[head].items(), key=lambda kv: -kv[1])[:MAX_LISTED]
            near = {k: found for k, _ in top if (found := similar_label(k, learnt))}
            if near:
                report.near[head] = near
            for message in merged_messages(head, report.merged[head], near, advice):
                logger.info("%s", message)
            if (merged_rows := int(rare.sum())) * 2 > int((df[head] != "").sum()):
                report.label_notes.append(
                    mostly_other_message(
                        head,
                        merged_rows,
                        int((df[head] != "").sum()),
                        len(rare),
                        min_examples,
                        options,
                    )
                )
        other = df[head] == OTHER_LABEL
        if 0 < other.sum() < min_examples:
            report.unlearnt[head] = int(other.sum())
            df.loc[other, head] = ""
            logger.info("%s", unlearnt_message(head, int(other.sum())))
        report.label_rows[head] = int((df[head] != "").sum())
    if not any(report.label_rows.values()):
        if report.unlearnt:
            # The labels are there, each too rare to learn: the column mapping is not the problem.
            wider = f"a wider {options.since} or {options.max_rows}"
            if options.min_examples:
                setting = options.min_examples
                advice = f"train on more tickets ({wider}) or lower {options.min_examples}"
            else:
                setting = "min_examples of the current model's training config"
                advice = (
                    f"retrain on more history (more --history files, {wider}); to lower "
                    "min_examples, train a model with paidan train --min-examples N and promote "
                    "it (retrain reuses the current model's config)"
                )
            raise TrainingDataError(
                f"every label has fewer than {min_examples} rows ({setting}), so nothing is "
                f"left to learn from {rows_of(len(df))}: "
                + "; ".join(
                    f"{head}: "
                    + listing(
                        [f"{k!r} ({v})" for k, v in report.merged.get(head, {}).items()]
                        or [f"{OTHER_LABEL!r} ({n})"]
                    )
                    for head, n in report.unlearnt.items()
                )
                + f"; {advice}"
            )
        raise TrainingDataError(
            "no row has a department or a category label; map the label columns with "
            "--department-col / --category-col"
        )
    if CO_COL in df:
        report.joint_rows = int((df[CO_COL].fillna("") != "").sum())
    report.rows_used = len(df)
    if LINE_COL in df and SOURCE_COL in df:
        lines = df[LINE_COL].eq(True)
        report.line_rows_used = {
            str(k): int(v) for k, v in df.loc[lines, SOURCE_COL].value_counts().items()
        }
    df = df.assign(**{CLEAN_TEXT_COL: key})
    return df.reset_index(drop=True), report


def usable_fit_only(
    raw: pd.DataFrame, own: pd.DataFrame, options: Options = TRAIN_OPTIONS
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The fit-only rows (``paidan train --fit-only``) a fit can learn from, and what was left out.

    ``raw`` is read as training files are (:func:`validate`: labels trimmed, rows without text
    and tickets read twice left out), but no label is merged for being rare among them: each
    head's label is kept only where ``own``, the validated own rows, has that head learn it, so
    fit-only rows never add a label, nor a head, of their own (a borrowed 市残联 the own rows lack,
    or merged into 其他, is left out like a remit of an unknown department). A row whose text an
    own row has is left out too: the own row is the one scored. Rows left with no label are
    dropped.

    Returns
    -------
    (DataFrame, dict)
        The rows, and ``rows_in``, ``rows`` and, where any, ``same_text_rows`` (left out as an
        own row's text) and ``left_out_labels`` (per head, masked label → rows), as
        ``metadata.json`` records them in ``training_data.fit_only``.

    Raises
    ------
    TrainingDataError
        When no fit-only row has text or a label (naming ``--fit-only``).
    """
    try:
        rows, _ = validate(raw, 1, options=options)
    except TrainingDataError as e:
        raise TrainingDataError(f"--fit-only: {e}") from e
    info: dict[str, Any] = {"rows_in": len(raw)}
    own_texts = set(own[CLEAN_TEXT_COL] if CLEAN_TEXT_COL in own else own["text"].map(clean))
    same = rows[CLEAN_TEXT_COL].isin(own_texts).to_numpy()
    if same.any():
        info["same_text_rows"] = int(same.sum())
        rows = rows[~same]
    left_out: dict[str, dict[str, int]] = {}
    rows = rows.copy()
    for head in LABELS:
        learnt = set(own[head]) - {""} if head in own else set()
        unknown = (rows[head] != "") & ~rows[head].isin(learnt)
        if unknown.any():
            counts = rows.loc[unknown, head].value_counts()
            left_out[head] = masked_counts({str(k): int(v) for k, v in counts.items()})
            rows.loc[unknown, head] = ""
    labelled = (rows[list(LABELS)] != "").any(axis=1)
    rows = rows[labelled].reset_index(drop=True)
    info["rows"] = len(rows)
    if left_out:
        info["left_out_labels"] = left_out
    return rows, info


def conflicting_duplicates(
    head: str, key: pd.Series, labels: pd.Series, where: pd.Series
) -> list[dict[str, Any]]:
    """The texts that have more than one ``head`` label, each with its labels and rows.

    Parameters
    ----------
    head : str
        The head, for the entries.
    key, labels, where : Series of str
        Per row, aligned: its text as compared (cleaned), its label (``""``: none) and its place.

    Returns
    -------
    list of dict
        ``head``, ``labels`` (sorted, masked) and ``rows`` (their places, in row order) per text,
        in the order of the texts.

    In one pass over the rows: a comparison of the whole column per conflicting text took time
    rows × conflicts (20 s at 220,000 rows with 17,702 conflicting texts, ~30 min at 2 M rows).
    """
    labelled = (labels != "").to_numpy()
    texts, given = key[labelled], labels[labelled]
    counts = given.groupby(texts.to_numpy()).nunique()
    conflicting = counts.index[counts.to_numpy() > 1]
    if not len(conflicting):
        return []
    rows = labelled.copy()
    rows[labelled] = texts.isin(conflicting).to_numpy()
    found: dict[str, tuple[set[str], list[str]]] = {t: (set(), []) for t in conflicting}
    for text, label, at in zip(
        key.to_numpy()[rows], labels.to_numpy()[rows], where.to_numpy()[rows], strict=True
    ):
        found[text][0].add(label)
        found[text][1].append(at)
    # Masked: a text column mapped as the label by mistake puts phone numbers here, and these
    # reach the log and the model's metadata.
    return [
        {"head": head, "labels": [mask_label(str(v)) for v in sorted(seen)], "rows": places}
        for seen, places in found.values()
    ]


def drop_single_label_heads(df: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Leave out a head whose every labelled row of :func:`validate`'s ``df`` has the same label.

    A head needs two labels. One with a single label (a bureau's own tickets, all 市住建局,
    several categories) is left out and the other trained alone, as for a file without that
    column (:attr:`ValidationReport.single_label` warns of it); checked before the features are
    built, rather than at the cross-validation minutes later.

    Raises
    ------
    TrainingDataError
        When no head with two or more labels is left.
    """
    single = {
        head: str(df.loc[df[head] != "", head].iloc[0])
        for head in LABELS
        if report.label_rows.get(head) and df.loc[df[head] != "", head].nunique() == 1
    }
    if not single:
        return df
    if all(head in single for head in LABELS if report.label_rows.get(head)):
        head, label = next(iter(single.items()))
        raise TrainingDataError(
            single_label_message(head, label)
            + (", and so has every row with a category label" if len(single) == 2 else "")
            + ": a model needs a head with two or more labels"
        )
    df = df.copy()
    for head, label in single.items():
        report.single_label[head] = mask_label(label)
        df[head] = ""
        report.label_rows[head] = 0
        report.unlabelled.pop(head, None)
        logger.info("%s", single_label_message(head, label))
    if "department" in single:
        report.joint_rows = 0  # no department head learns their lead department
    return df


def label_columns_advice(
    headers: Mapping[str, Sequence[str]], columns: ColumnMap, heads: Sequence[str] = LABELS
) -> str:
    """What a refusal of data without labels adds: the first file's columns, the options that map
    the label columns, and the column that looks like each of ``heads``' (:func:`like_hint`)."""
    first = next(iter(headers.items()), None)
    if first is None:
        return "; map the label columns with --department-col / --category-col"
    name, have = first
    likes = "".join(f"; {like}" for h in heads if (like := like_hint(h, have, columns)))
    return (
        f"; {name} has columns {', '.join(map(quoted, have))}; map the label columns with "
        f"--department-col / --category-col{likes}"
    )


def label_column_notes(
    df: pd.DataFrame | Sequence[str], columns: ColumnMap, headers: Mapping[str, Sequence[str]]
) -> list[str]:
    """Warnings for a label head whose column no file has; an error when no row has a label.

    A label column left at its default name (``category``) and absent from the files is read as
    no labels: the model came out with one head and not a word, while the file's own column
    (问题分类) went unread. Said with the file's columns and the option that maps them.

    Raises
    ------
    TrainingDataError
        When no row has a department or a category label, listing the file's columns.
    """

    def listed(names: Sequence[str]) -> str:
        return ", ".join(map(quoted, names))

    if isinstance(df, Sequence):  # the heads labelled, as read_window tells them
        labelled = [head for head in LABELS if head in df]
    else:
        labelled = [head for head in LABELS if (df[head].astype(str).str.strip() != "").any()]
    if not labelled:
        raise TrainingDataError(
            f"no row has a department or a category label{label_columns_advice(headers, columns)}"
        )
    notes = []
    for head in LABELS:
        src = columns.source_for(head)
        if head in labelled or src is None:
            continue
        lacking = [
            (name, cols)
            for name, cols in headers.items()
            if not any(n in cols for n in columns.names(head))
        ]
        if len(lacking) == len(headers) and lacking:
            name, cols = lacking[0]
            like = like_hint(head, cols, columns)
            notes.append(
                f"no column {quoted(src)} in {name}, so the model has no {head} head; it has columns "
                f"{listed(cols)} (map yours with --{head}-col{f'; {like}' if like else ''})"
            )
    return notes


def files_read_twice(
    sources: Iterable[Any], kept: Sequence[bool], pairs: Sequence[Sequence[str]]
) -> dict[str, int]:
    """Per file read twice, how many of its rows repeat themselves (``a.csv data row 1 repeats
    a.csv data row 1``): the rows that :func:`repeated_rows` dropped (``kept`` false, ``pairs``)
    whose place is that of the row they repeat. ``sources``: each row's file name, as
    :data:`model.tickets.SOURCE_COL` holds it. A file reached twice is named alike both times
    (:func:`model.tickets.named_paths`), so its rows repeat their own places."""
    dropped = (str(s) for s, k in zip(sources, kept, strict=True) if not k)
    out: dict[str, int] = {}
    for name, (row, earlier) in zip(dropped, pairs, strict=True):
        if row == earlier:
            out[name] = out.get(name, 0) + 1
    return out


def duplicates_message(
    pairs: Sequence[Sequence[str]],
    total: int | None = None,
    twice: Mapping[str, int] | None = None,
) -> str:
    """The warning for :attr:`ValidationReport.duplicates` (see :func:`repeated_rows`).

    ``pairs`` may be the first few only, of ``total`` (default: as many as ``pairs``).
    ``twice``: per file read twice, its rows among them (:func:`files_read_twice`), said once
    for the file, as a file given twice warned "a.csv data row 1 repeats a.csv data row 1" for
    each of its rows.
    """
    total = len(pairs) if total is None else total
    twice = twice or {}
    out = []
    if twice:
        files = list(twice)[:UNLABELLED_LISTED]
        unlisted = len(twice) - len(files)
        if len(twice) == 1:
            [(name, n)] = twice.items()
            said = f"{name} was read twice"
            rows = f"its {counted(n, 'row')} {'was' if n == 1 else 'were'} kept once"
        else:
            said = ", ".join(f"{name} ({counted(twice[name], 'row')})" for name in files) + (
                f" and {unlisted} more" if unlisted else ""
            )
            said += " were read twice"
            rows = "each of their rows was kept once"
        out.append(f"{said} (given twice, or given and in a directory given too): {rows}")
        pairs = [(row, earlier) for row, earlier in pairs if row != earlier]
        total -= sum(twice.values())
    if total > 0:
        listed = [f"{row} repeats {earlier}" for row, earlier in pairs[:UNLABELLED_LISTED]]
        more = f" and {total - len(listed)} more" if total > len(listed) else ""
        # None listed: the first few the caller kept were all of files read twice.
        tail = f": {', '.join(listed)}{more}" if listed else ""
        out.append(
            f"dropped {counted(total, 'row that repeats', 'rows that repeat')} an earlier row "
            f"(same id, title, text and labels: a file given twice, or exports that overlap){tail}"
        )
    return "; ".join(out)


def merged_messages(
    head: str,
    labels: Mapping[str, int],
    near: Mapping[str, str] | None = None,
    advice: str = "then label its rows so",
) -> list[str]:
    """The warnings for :attr:`ValidationReport.merged` of one head: a line per label, most rows
    first, for the first :data:`MAX_LISTED`, then one for the rest.

    A department column typed freehand has a spelling per few rows: a line each printed 29,500
    lines for 30,000 such rows. ``metadata.json`` keeps them all (``merged_into_other``).
    ``near``: a listed label's learnt label that it may be another spelling of (see
    :func:`similar_label`), named with ``advice``.
    """
    near = near or {}
    ranked = sorted(labels.items(), key=lambda kv: -kv[1])
    out = [
        f"{head} label {label!r} has only {rows_of(n)}; merged into {OTHER_LABEL!r}"
        + (
            f" (the same department as {near[label]!r}? {advice})"
            if head == "department" and label in near
            else f" (the same category as {near[label]!r}? {advice})"
            if label in near
            else ""
        )
        for label, n in ranked[:MAX_LISTED]
    ]
    rest = ranked[MAX_LISTED:]
    if rest:
        out.append(
            f"… and {counted(len(rest), f'more rare {head} label')} "
            f"({rows_of(sum(n for _, n in rest))}) merged "
            f"into {OTHER_LABEL!r}, {sum(labels.values())} rows of {len(labels)} labels in all; "
            "the model's metadata.json lists every one (training_data.validation."
            "merged_into_other): check the column's spelling"
        )
    return out


def _admin_core(label: str, other: str) -> tuple[str, str] | None:
    """``label`` and ``other`` without the administrative parts that say nothing of which
    department they are: their level (县 of 县医保局 and 县卫健局, or of 县人社局 beside 人社局)
    and their kind of body (局, 委, 办 …). ``None`` when they name two levels (市住建局, 区住建局)
    or two places (海淀区城管局, 朝阳区城管局: a city's districts, each with its own bureau)."""
    places = [PLACE.match(label), PLACE.match(other)]
    if all(places) and places[0].group() != places[1].group():  # type: ignore[union-attr]
        return None  # two places' bodies: 海淀区城管局 and 朝阳区城管局
    pa = next((p for p in ADMIN_PREFIXES if label.startswith(p)), "")
    pb = next((p for p in ADMIN_PREFIXES if other.startswith(p)), "")
    if pa and pb and pa != pb:
        return None
    a, b = label[len(pa) :], other[len(pb) :]
    for suffix in ADMIN_SUFFIXES:
        if len(a) > len(suffix) and a.endswith(suffix):
            a = a[: -len(suffix)]
            break
    for suffix in ADMIN_SUFFIXES:
        if len(b) > len(suffix) and b.endswith(suffix):
            b = b[: -len(suffix)]
            break
    return a, b


def _abbreviates(short: str, long: str) -> bool:
    """Whether ``short`` is ``long`` shortened as Chinese names are: its first character, then
    the rest in order (住建 of 住房和城乡建设, 城管 of 城市管理, 人社 of 人力资源和社会保障)."""
    if len(short) < 2 or len(short) >= len(long) or short[0] != long[0]:
        return False
    rest = iter(long[1:])
    return all(c in rest for c in short[1:])


def label_likeness(label: str, other: str) -> float:
    """How likely ``label`` and ``other`` name the same department (or category), 0 for not.

    3: one inside the other, as written or without their administrative parts (住建局 in
    县住建局, 公安局 and 公安分局); 2: one an abbreviation of the other (市住建局 and
    市住房和城乡建设局, 区城管局 and 区城市管理局); else :class:`difflib.SequenceMatcher`'s ratio
    of what is left once the parts they share as a county's labels are set aside, when at least
    :data:`LIKENESS` (市场监督 and 市场监管). Compared whole, 县医保局 and 县卫健局 read alike (0.5)
    for their 县 and 局 alone; set aside, 医保 and 卫健 share nothing.
    """
    if len(label) < 2 or len(other) < 2 or label == other:
        return 0.0
    if label in other or other in label:
        return 3.0
    cores = _admin_core(label, other)
    if cores is None:
        return 0.0
    a, b = cores
    if len(a) < 2 or len(b) < 2:
        return 0.0
    if a in b or b in a:
        return 3.0
    if _abbreviates(a, b) or _abbreviates(b, a):
        return 2.0
    ratio = SequenceMatcher(None, a, b, autojunk=False).ratio()
    return ratio if ratio >= LIKENESS else 0.0


def similar_label(label: str, known: Mapping[str, int] | Iterable[str]) -> str | None:
    """The known label (masked) that ``label`` may be another way of writing, if any.

    ``train`` names it in the warning of a rare label merged into 其他, ``retrain`` in that of a
    rare new label, so both find the same pairs (see :func:`label_likeness`): the likeliest one,
    then the one with most rows (``known``: label -> rows, or labels alone).
    """
    counts = known if isinstance(known, Mapping) else dict.fromkeys(known, 0)
    best: tuple[float, str] | None = None
    for other, _ in sorted(counts.items(), key=lambda kv: -kv[1]):
        masked = mask_label(str(other))
        if masked == OTHER_LABEL:
            continue
        score = label_likeness(label, masked)
        if score and (best is None or score > best[0]):
            best = (score, masked)
    return best[1] if best else None


def twin_messages(head: str, learnt: Mapping[str, int]) -> list[str]:
    """Warnings for learnt labels that may be one written two ways (:func:`label_likeness`, as
    :func:`similar_label` finds a rare label's: 住建局 and 县住建局, 市住建局 and
    市住房和城乡建设局, 市场监督 and 市场监管): one department learnt as two, its tickets split
    between them. The first :data:`MAX_LISTED` pairs, those of the most rows first, each with its
    shorter label first."""
    out = []
    ranked = sorted(learnt, key=lambda k: (-learnt[k], k))
    masked = {label: mask_label(label) for label in ranked}
    # Compared are the pairs that share a character besides the administrative parts', or one
    # inside the other: 1,000 learnt labels made 500,000 pairs, 22 s compared every one.
    by_char: dict[str, set[str]] = {}
    for label in ranked:
        for c in set(masked[label]) - ADMIN_CHARS:
            by_char.setdefault(c, set()).add(label)
    by_masked = {m: label for label, m in masked.items()}
    for i, one in enumerate(ranked):
        m = masked[one]
        near = set().union(*(by_char[c] for c in set(m) - ADMIN_CHARS))
        near |= {
            by_masked[m[a:b]]
            for a in range(len(m))
            for b in range(a + 2, len(m) + 1)
            if b - a < len(m) and m[a:b] in by_masked
        }
        for other in ranked[i + 1 :]:
            if other in near and label_likeness(m, masked[other]):
                a, b = sorted((one, other), key=lambda k: (len(k), k))
                out.append(
                    f"{head} labels {masked[a]!r} ({rows_of(learnt[a])}) and "
                    f"{masked[b]!r} ({rows_of(learnt[b])}) are learnt apart: if they "
                    f"name the same {head}, label their rows alike"
                )
                if len(out) == MAX_LISTED:
                    return out
    return out


def mostly_other_message(
    head: str, merged: int, rows: int, labels: int, min_examples: int, options: Options
) -> str:
    """The warning for a head most of whose rows were merged into 其他: a county with 60 tickets
    for 25 departments trained a head that says 其他 for nearly every ticket, its figures (macro-F1
    0.78, accuracy 0.93) mostly of telling 其他 apart."""
    lower = (
        f", or lower {options.min_examples} (3 at least)"
        if options.min_examples and min_examples > 3
        else ""
    )
    return (
        f"{head} head: {merged} of {rows} rows ({100 * merged // rows} %) are {OTHER_LABEL!r}, "
        f"merged from {counted(labels, 'label')} with fewer than {min_examples} rows each (most "
        f"of its rows): it suggests {OTHER_LABEL!r}, no {head}, for most tickets, and its "
        f"figures mostly measure telling {OTHER_LABEL!r} apart; label more tickets of each "
        f"{head} (at least {min_examples} each){lower}"
    )


def single_label_message(head: str, label: str) -> str:
    """Why a head is left out: every row labelled for it has ``label``."""
    return f"every row with a {head} label has the same one, {mask_label(label)!r}"


def unlearnt_message(head: str, rows: int) -> str:
    """The warning for :attr:`ValidationReport.unlearnt`."""
    return (
        f"{head} label {OTHER_LABEL!r} has only {rows_of(rows)}, rare labels merged in included: "
        f"too few to learn, so those rows train no {head} head"
    )


def listing(items: list[str], limit: int = MAX_LISTED) -> str:
    """The first ``limit`` items, comma-separated, then how many more."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
