"""Remits: what each department has authority over, or what each category covers, in words.

A city's 权责清单 (or its departments' 三定方案) says which matters each department owns; a hotline
centre's 分类目录 names the matters under each complaint category. A remit is one row of such a
list: a department's name (``department``) or a category's (``category``), or both, a heading
(``title``, optional) and the matters in words (``text``), read from any ticket file format (CSV,
XLSX, JSON Lines, Parquet). Each joins the training of the head whose label it names as a
pseudo-ticket of weight :attr:`~model.config.TrainingConfig.remit_weight`: in the training part of
every cross-validation fold, never held out and scored, never among the similar tickets a suggestion
shows. A department or category with few tickets is then still recognised by the matters its remit
names.

The model directory keeps the remits it was trained with (:data:`model.artifact.REMITS_FILE`), so that ``paidan
retrain`` trains the challenger with them too.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from model.text import Script, clean, counted, learnt_label, mask_label, normalize, quoted
from model.tickets import (
    ColumnMap,
    TicketFileError,
    as_paths,
    like_columns,
    named_paths,
    read_tickets,
)

logger = logging.getLogger(__name__)

REMIT_COLUMNS = ("department", "category", "title", "text")
# The columns that name a remit's label, one of which a remits file must have.
REMIT_LABELS = ("department", "category")
# A remit's id in the training rows (never shown: remits are not indexed as similar tickets).
REMIT_ID_PREFIX = "remit:"
# Problems listed in one error before "… and N more".
MAX_LISTED = 10


def read_remits(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """The remits of one file or several, in order: columns ``department``, ``category``,
    ``title`` and ``text``, one row each (a label column a file lacks is empty).

    Raises
    ------
    TicketFileError
        If the file cannot be read, lacks the ``text`` column or both label columns, holds no
        remit, or a row has no label or an empty text (each such row named by its number).
    """
    files = as_paths(paths)
    if len(files) != 1:
        return pd.concat([read_remits(p) for p in files], ignore_index=True)
    from training.label_io import file_columns

    [path] = files
    name = path.name
    # Checked before the rows are read: the tickets' reader refused a file without a text column
    # in the tickets' words, advising --text-col, which maps the tickets' columns, not these.
    have: list[str] = []
    for part, _ in named_paths([path]):
        have = file_columns(part)
        check_remit_columns(name, have)
    df = read_tickets([path])
    df = df.assign(**{c: df[c].map(learnt_label) for c in REMIT_LABELS})
    given = " or ".join(c for c in REMIT_LABELS if c in have)
    problems = []
    for row, department, category, text in zip(
        df["_row"], df["department"], df["category"], df["text"], strict=True
    ):
        if not department and not category:
            problems.append(f"row {row}: {given}: is empty")
        elif not normalize(text):
            problems.append(f"row {row} ({mask_label(department or category)}): text: is empty")
    if problems:
        more = len(problems) - MAX_LISTED
        listed = "; ".join(problems[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
        raise TicketFileError(
            f"remits file {name}: {counted(len(problems), 'row')} cannot be used: {listed} "
            "(each remit names its department or category and says in words what it covers)"
        )
    if df.empty:
        raise TicketFileError(f"remits file {name} holds no remit (no data row)")
    return df[list(REMIT_COLUMNS)].reset_index(drop=True)


def check_remit_columns(name: str, have: Sequence[str]) -> None:
    """Refuse a remits file (``name``) whose columns ``have`` lack the text or both labels.

    A remits file's columns are read by these names only: the column options (``--text-col`` …)
    map the tickets' columns.

    Raises
    ------
    TicketFileError
        Naming the missing column, the file's columns and the ones a remits file has; a column
        that looks like the one missing is named, to be renamed.
    """
    shown = ", ".join(quoted(c) for c in have)
    if not any(c in have for c in REMIT_LABELS):
        missing, what, field = "'department' or 'category'", "the label a remit describes", None
    elif "text" not in have:
        missing, what, field = "'text'", "the matters a remit covers, in words", "text"
    else:
        return
    # The column that looks like the missing one, to be renamed (a label column: either label's).
    rename = ""
    for wanted in (field,) if field else REMIT_LABELS:
        like = like_columns(wanted, have, ColumnMap())
        if like:
            rename = f"; rename {quoted(like[0])} to {wanted}"
            break
    raise TicketFileError(
        f"remits file {name}: no column {missing} for {what}; the file has columns {shown} (a "
        "remits file has the columns department or category, or both, text and, optionally, "
        f"title, by these names{rename})"
    )


def usable_remits(
    remits: pd.DataFrame, labels: dict[str, list[str]]
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The remits of the heads' labels (``labels``: each head's training labels), and per head the
    labels of the others (sorted; a head without any left out).

    A remit's label that no training ticket has (or that was merged into 其他 as too rare) is left
    out with a warning: a head cannot learn a label from a remit alone. A remit left with no label
    is dropped.
    """
    remits = remits.copy()
    skipped: dict[str, list[str]] = {}
    for head in REMIT_LABELS:
        named = remits[head] != ""
        unknown_rows = named & ~remits[head].isin(labels.get(head, []))
        if not unknown_rows.any():
            continue
        unknown = sorted(set(remits.loc[unknown_rows, head]))
        skipped[head] = unknown
        logger.warning(
            "%s of %s left out: no training ticket has %s (a remit teaches the words of a label "
            "the head learns from its tickets; check the spelling against the data's labels): %s",
            counted(int(unknown_rows.sum()), "remit"),
            "departments" if head == "department" else "categories",
            "these labels" if len(unknown) > 1 else "this label",
            ", ".join(mask_label(d) for d in unknown),
        )
        remits.loc[unknown_rows, head] = ""
    kept = (remits["department"] != "") | (remits["category"] != "")
    return remits[kept].reset_index(drop=True), skipped


def remit_frame(remits: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Remits as training rows of ``columns`` (a validated frame's), ids ``remit:<n>``."""
    rows = pd.DataFrame(
        {
            "id": [f"{REMIT_ID_PREFIX}{i}" for i in range(len(remits))],
            "title": remits["title"].to_numpy(),
            "text": remits["text"].to_numpy(),
            "department": remits["department"].to_numpy(),
            "category": remits["category"].to_numpy(),
        }
    )
    for column in columns:
        if column not in rows:
            rows[column] = ""
    return rows[columns]


# Where a remit's text is cut into the clauses a suggestion cites: a 权责清单 paragraph lists
# matters in clauses ended by 。 or ；(; once cleaned), each a few matters joined by ，.
CLAUSE_END = re.compile(r"[。;；!！?？\n]+")


def remit_clauses(
    remits: pd.DataFrame, script: Script = "as_written"
) -> dict[str, dict[str, list[str]]]:
    """Per head (``department``, ``category``), per label, the clauses of its remits' texts as
    the model reads them (:func:`model.text.clean` in the model's ``script``: masked, and in the
    script of the evidence terms they are matched with), in order, each once: what
    :attr:`model.router.HeadResult.remit` cites."""
    out: dict[str, dict[str, list[str]]] = {}
    for row in remits[list(REMIT_COLUMNS)].itertuples(index=False):
        clauses = [c.strip(" ,，、") for c in CLAUSE_END.split(clean(row.text, script))]
        for head in REMIT_LABELS:
            label = getattr(row, head)
            if label:
                kept = out.setdefault(head, {}).setdefault(label, [])
                kept.extend(c for c in clauses if c and c not in kept)
    return out


def format_remits(remits: pd.DataFrame) -> bytes:
    """The remits as the model directory keeps them: UTF-8 CSV of :data:`REMIT_COLUMNS`, title
    and text as features read them (:func:`model.text.clean`: a number in a remit, a hotline's
    or an official's, is masked as any stored text is; cleaning again changes nothing)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REMIT_COLUMNS)
    for department, category, title, text in remits[list(REMIT_COLUMNS)].itertuples(
        index=False, name=None
    ):
        writer.writerow([department, category, clean(title), clean(text)])
    return out.getvalue().encode("utf-8")
