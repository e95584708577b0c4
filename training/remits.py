"""Department remits: what each department has authority over, in words, taught to the department head.

A city's 权责清单 (or its departments' 三定方案) says which matters each department owns. A remit is
one row of such a list: a department's name (``department``), a heading (``title``, optional) and
the matters in words (``text``), read from any ticket file format (CSV, XLSX, JSON Lines, Parquet).
Each joins the department head's training as a pseudo-ticket of weight
:attr:`~model.config.TrainingConfig.remit_weight`: in the training part of every cross-validation
fold, never held out and scored, never among the similar tickets a suggestion shows. A department
with few tickets is then still recognised by the matters its remit names.

The model directory keeps the remits it was trained with (:data:`model.artifact.REMITS_FILE`), so that ``paidan
retrain`` trains the challenger with them too.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import pandas as pd

from model.text import clean, counted, mask_label, normalize, normalize_label, quoted
from model.tickets import TicketFileError, read_tickets

logger = logging.getLogger(__name__)

REMIT_COLUMNS = ("department", "title", "text")
# A remit's id in the training rows (never shown: remits are not indexed as similar tickets).
REMIT_ID_PREFIX = "remit:"
# Problems listed in one error before "… and N more".
MAX_LISTED = 10


def read_remits(path: str | Path) -> pd.DataFrame:
    """The remits of a file: columns ``department``, ``title`` and ``text``, one row each.

    Raises
    ------
    TicketFileError
        If the file cannot be read, lacks the ``text`` or ``department`` column, holds no remit,
        or a row has an empty department or text (each such row named by its number).
    """
    headers: dict[str, list[str]] = {}
    df = read_tickets([path], headers=headers)
    name = Path(path).name
    have = next(iter(headers.values()), [])
    if "department" not in have:
        shown = ", ".join(quoted(c) for c in have)
        raise TicketFileError(
            f"remits file {name}: no column 'department' for the department's name; the file has "
            f"columns {shown} (a remits file has the columns department, text and, optionally, title)"
        )
    df = df.assign(department=df["department"].map(normalize_label))
    problems = []
    for row, department, text in zip(df["_row"], df["department"], df["text"], strict=True):
        if not department:
            problems.append(f"row {row}: department: is empty")
        elif not normalize(text):
            problems.append(f"row {row} ({mask_label(department)}): text: is empty")
    if problems:
        more = len(problems) - MAX_LISTED
        listed = "; ".join(problems[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
        raise TicketFileError(
            f"remits file {name}: {counted(len(problems), 'row')} cannot be used: {listed} "
            "(each remit names its department and says in words what it has authority over)"
        )
    if df.empty:
        raise TicketFileError(f"remits file {name} holds no remit (no data row)")
    return df[list(REMIT_COLUMNS)].reset_index(drop=True)


def usable_remits(remits: pd.DataFrame, departments: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The remits of the department head's labels, and the departments of the others (sorted).

    A remit of a department that no training ticket has (or that was merged into 其他 as too
    rare) is left out with a warning: the head cannot learn a department from a remit alone.
    """
    known = remits["department"].isin(departments)
    unknown = sorted(set(remits.loc[~known, "department"]))
    if unknown:
        logger.warning(
            "%s left out: no training ticket has %s (a remit teaches the words of a department "
            "the head learns from its tickets; check the spelling against the data's labels): %s",
            counted(int((~known).sum()), "remit"),
            "these departments" if len(unknown) > 1 else "this department",
            ", ".join(mask_label(d) for d in unknown),
        )
    return remits[known].reset_index(drop=True), unknown


def remit_frame(remits: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Remits as training rows of ``columns`` (a validated frame's): no category, ids
    ``remit:<n>``."""
    rows = pd.DataFrame(
        {
            "id": [f"{REMIT_ID_PREFIX}{i}" for i in range(len(remits))],
            "title": remits["title"].to_numpy(),
            "text": remits["text"].to_numpy(),
            "department": remits["department"].to_numpy(),
            "category": "",
        }
    )
    for column in columns:
        if column not in rows:
            rows[column] = ""
    return rows[columns]


def format_remits(remits: pd.DataFrame) -> bytes:
    """The remits as the model directory keeps them: UTF-8 CSV of :data:`REMIT_COLUMNS`, title
    and text as features read them (:func:`model.text.clean`: a number in a remit, a hotline's
    or an official's, is masked as any stored text is; cleaning again changes nothing)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REMIT_COLUMNS)
    for department, title, text in remits[list(REMIT_COLUMNS)].itertuples(index=False, name=None):
        writer.writerow([department, clean(title), clean(text)])
    return out.getvalue().encode("utf-8")
