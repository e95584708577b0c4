"""Dispatch rules files (``paidan train --rules``): read, checked, kept with the model.

A rules file is a table (CSV, XLSX, JSON Lines, Parquet) with one rule a row, tried in the file's
order (several files: one after the other):

- ``keywords``: the words a ticket must all hold, separated by spaces, commas or 、; a word may list
  alternatives with ``|`` (``燃气|煤气``), one of which will do;
- ``department`` and/or ``category``: where the rule sends the ticket (a column may be absent; a
  row names at least one);
- ``exclude`` (optional): words none of which the ticket may hold;
- ``decision`` (optional): ``auto`` (the default) or ``review``;
- ``note`` (optional): why the rule exists, shown with each answer it decides;
- ``new_label`` (optional): ``yes`` when the rule's label is one the history does not hold yet (a
  department a 机构改革 has just created); a label the model does not learn is otherwise refused as
  a misspelling.

What a rule does is :mod:`model.rules`'. The model directory keeps the rules it was trained with
(:data:`model.artifact.RULES_FILE`), so that ``paidan retrain`` trains the challenger with them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from model.rules import ALTERNATIVE, RULE_DECISIONS, DispatchRule, rule_terms
from model.text import Script, counted, learnt_label, mask_label, quoted
from model.tickets import TicketFileError, as_paths, read_table

RULE_COLUMNS = ("keywords", "exclude", "department", "category", "decision", "note", "new_label")
RULE_LABELS = ("department", "category")
# Problems listed in one error before "… and N more".
MAX_LISTED = 10
HINT = (
    "a rules file has the columns keywords and department or category (or both), and optionally "
    "exclude, decision (auto or review), note and new_label (yes for a label the history lacks)"
)
# What the new_label column may hold, read case-insensitively; empty is "no". 1.0 and 0.0: a
# column of ones and zeros with a gap, as pandas and some spreadsheets write it.
YES = ("yes", "y", "true", "1", "1.0", "是")
NO = ("no", "n", "false", "0", "0.0", "否", "")


def read_rules(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """The rules of one file or several, in order: the columns :data:`RULE_COLUMNS` (an optional
    column a file lacks is empty; ``decision`` defaults to ``auto``; ``new_label`` is a bool,
    default false) and ``source`` (``rules.csv row 3``, a data row counted from 1).

    Raises
    ------
    TicketFileError
        If a file cannot be read, lacks ``keywords`` or both label columns, holds no rule, or a
        row has no keyword, an excluded word inside a keyword (so it could match nothing), no
        label, another decision than ``auto`` or ``review`` or another ``new_label`` than yes or
        no (each such row named by its number).
    """
    files = as_paths(paths)
    if len(files) != 1:
        return pd.concat([read_rules(p) for p in files], ignore_index=True)
    [path] = files
    name = path.name
    df = read_table(path)
    df.columns = [str(c).strip() for c in df.columns]
    have = list(df.columns)
    if "keywords" not in have or not any(c in have for c in RULE_LABELS):
        shown = ", ".join(quoted(c) for c in have)
        lacking = "keywords" if "keywords" not in have else "department or category"
        raise TicketFileError(
            f"rules file {name}: no column {lacking}; the file has columns {shown} ({HINT})"
        )
    for column in RULE_COLUMNS:
        if column not in df:
            df[column] = ""
    df = df[list(RULE_COLUMNS)].astype(str)
    for column in RULE_LABELS:
        df[column] = df[column].map(learnt_label)
    df["decision"] = df["decision"].str.strip().str.lower().replace("", "auto")
    df["note"] = df["note"].map(lambda s: " ".join(s.split()))
    df["new_label"] = df["new_label"].str.strip().str.lower()
    df["source"] = [f"{name} row {i + 1}" for i in range(len(df))]
    problems = []
    bad_rows = 0
    for row in df.itertuples(index=False):
        where = row.source.removeprefix(f"{name} ")
        found = []
        if not rule_terms(row.keywords):
            found.append("keywords: is empty")
        elif blocked := _never_matches(row.keywords, row.exclude):
            term, word = blocked
            found.append(
                f"exclude: {quoted(word, cell=True)} is in keyword {quoted(term, cell=True)}, so "
                "the rule could match no ticket"
            )
        if not row.department and not row.category:
            found.append("department or category: is empty")
        if row.decision not in RULE_DECISIONS:
            found.append(f"decision: {quoted(row.decision, cell=True)} is not auto or review")
        if row.new_label not in YES + NO:
            found.append(f"new_label: {quoted(row.new_label, cell=True)} is not yes or no")
        problems += [f"{where}: {problem}" for problem in found]
        bad_rows += bool(found)
    if problems:
        more = len(problems) - MAX_LISTED
        listed = "; ".join(problems[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
        raise TicketFileError(
            f"rules file {name}: {counted(bad_rows, 'row')} cannot be used: {listed} ({HINT})"
        )
    if df.empty:
        raise TicketFileError(f"rules file {name} holds no rule (no data row)")
    df["new_label"] = df["new_label"].isin(YES)
    return df.reset_index(drop=True)


def _never_matches(keywords: str, exclude: str) -> tuple[str, str] | None:
    """A keyword every one of whose alternatives holds an excluded word, and that word: a ticket
    that holds the keyword holds the word, so the rule can match none (``燃气泄漏`` excluding
    ``燃气``). ``None`` when the rule can match."""
    # In the cell's order, so that the message names the same word every run.
    excluded = [w for term in rule_terms(exclude) for w in term.split(ALTERNATIVE)]
    for term in rule_terms(keywords):
        hits = [next((w for w in excluded if w in a), None) for a in term.split(ALTERNATIVE)]
        if excluded and all(hits):
            return term, str(hits[0])
    return None


def as_model_labels(rules: pd.DataFrame, labels: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """``rules`` (:func:`read_rules`) naming each head's labels as the model spells them
    (``labels``: each head's labels as trained).

    A rules file's label is read masked (:func:`model.text.learnt_label`), as training now learns
    one; a model trained before that learnt a number typed into a label as written
    (人社网格员１３９…), so a rule naming it, read 人社网格员[手机号], named no label of that model
    and ``paidan models set-rules`` refused it. Such a rule names the model's own label, the one
    whose masked form it is; the rows of a model that learnt its labels masked are returned as
    they are.
    """
    renamed = rules
    for head in RULE_LABELS:
        own = {learnt_label(x): x for x in labels.get(head, ()) if learnt_label(x) != x}
        if own and rules[head].isin(own.keys()).any():
            if renamed is rules:
                renamed = rules.copy()
            renamed[head] = rules[head].replace(own)
    return renamed


def check_rule_labels(rules: pd.DataFrame, labels: Mapping[str, Sequence[str]]) -> None:
    """Refuse a rule whose label its head does not learn (``labels``: each head's labels as
    trained; a head absent from it is not trained): such a rule could never send a ticket there,
    unless it is marked ``new_label`` (a label newer than the history, which the router suggests
    without having learnt it). A head that is not trained is refused even then: no ranking of
    that head exists to put the label in.

    Raises
    ------
    TicketFileError
        Naming each such rule's row and label, and the head's labels.
    """
    problems = []
    for head in RULE_LABELS:
        known = set(labels.get(head, ()))
        for source, label, new in zip(
            rules["source"], rules[head], rules["new_label"], strict=True
        ):
            if label and label not in known and not (new and known):
                problems.append((head, f"{source}: {head} {quoted(label)}"))
    if not problems:
        return
    heads = sorted({head for head, _ in problems})
    learnt = "; ".join(
        f"the {head} head learns "
        + (
            ", ".join(mask_label(x) for x in sorted(labels[head]))
            if labels.get(head)
            else "nothing (no training ticket has two of its labels)"
        )
        for head in heads
    )
    listed = "; ".join(p for _, p in problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    raise TicketFileError(
        f"{counted(len(problems), 'dispatch rule names', 'dispatch rules name')} a label the "
        "model does not learn, so "
        f"they could send no ticket there: {listed}{f'; and {more} more' if more > 0 else ''} "
        f"({learnt}; a label merged into 其他 as too rare is not learnt either: check the "
        "spelling against the data's labels, or mark a label the history does not hold yet "
        "new_label yes)"
    )


def compile_rules(rules: pd.DataFrame, script: Script = "as_written") -> tuple[DispatchRule, ...]:
    """The rules as the router applies them (:class:`model.rules.DispatchRule`), their words read
    in the model's ``script``."""
    return tuple(
        DispatchRule(
            keywords=rule_terms(row.keywords, script),
            department=row.department,
            category=row.category,
            exclude=rule_terms(row.exclude, script),
            decision=row.decision,
            note=mask_label(row.note),
            source=row.source,
            new_label=bool(row.new_label),
        )
        for row in rules.itertuples(index=False)
    )


def format_rules(rules: pd.DataFrame) -> bytes:
    """The rules as the model directory keeps them: UTF-8 CSV of :data:`RULE_COLUMNS`, the words
    as the model reads them (:func:`model.text.clean`, so that a number in a rule is masked as any
    stored text is), one space between two, and the note as written unless it holds a number to
    mask (:func:`model.text.mask_label`), as answers show it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RULE_COLUMNS)
    for row in rules.itertuples(index=False):
        writer.writerow(
            [
                " ".join(rule_terms(row.keywords)),
                " ".join(rule_terms(row.exclude)),
                row.department,
                row.category,
                row.decision,
                mask_label(row.note),
                "yes" if row.new_label else "",
            ]
        )
    return out.getvalue().encode("utf-8")


def rules_summary(rules: pd.DataFrame, learnt: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """What ``metadata["training_data"]["rules"]`` records of a model's rules: how many, how many
    departments and categories they send tickets to, how many leave the decision to a person, and
    per head the labels that only rules give (``new_labels``: those of ``new_label`` rows that
    are not among the head's ``learnt`` labels; only when there are some)."""
    out: dict[str, Any] = {
        "rows": len(rules),
        "departments": int(rules.loc[rules["department"] != "", "department"].nunique()),
        "categories": int(rules.loc[rules["category"] != "", "category"].nunique()),
        "review": int((rules["decision"] == "review").sum()),
    }
    marked = rules[rules["new_label"]]
    only_rules: dict[str, list[str]] = {}
    for head in RULE_LABELS:
        known = set(learnt.get(head, ()))
        labels = list(dict.fromkeys(x for x in marked[head] if x and x not in known))
        if labels:
            only_rules[head] = labels
    if only_rules:
        out["new_labels"] = only_rules
    return out


def with_rules(
    root: str | Path, version: str, rules: str | Path | Sequence[str | Path] | None
) -> Path:
    """Write a new version under ``root``: version ``version``'s model applying the dispatch rules
    of the files ``rules`` (none: no rule), without training it again.

    A rule changes more often than the history, and at once (a notice moves a matter today);
    the fitted model, its figures and its files are the same, so the new version differs from
    ``version`` in its rules alone. ``metadata.json`` says so (``derived_from``). Like any version,
    it serves once promoted (``paidan models promote``), and ``version`` is left as it is.
    Rules that are ``version``'s already (as its ``rules.csv`` keeps them) write nothing, and
    ``version``'s own directory is returned; so do the rules of a version ``version`` was derived
    from (its directory is returned), and those of a version already derived from ``version``.

    Raises
    ------
    TicketFileError
        If a rules file is refused (:func:`read_rules`) or a rule names a label the model does not
        learn (:func:`check_rule_labels`); nothing is written then.
    ModelLoadError
        If ``version`` cannot be loaded.
    """
    import hashlib

    from model.artifact import (
        REMITS_FILE,
        RULES_FILE,
        STOPWORDS_FILE,
        USERDICT_FILE,
        check_model_root,
        load_router,
        save_router,
    )
    from model.registry import keep_current
    from training.train import free_version

    root = Path(root)
    source = root / version
    router, meta = load_router(source, root)
    files = as_paths(rules)
    rows = read_rules(files) if files else None
    learnt = {name: list(head.labels) for name, head in router.heads.items()}
    # The model's own labels (an older model's unmasked), kept masked in its rules.csv.
    applied = as_model_labels(rows, learnt) if rows is not None else None
    if applied is not None:
        check_rule_labels(applied, learnt)
    kept = format_rules(rows) if rows is not None else b""
    if kept == ((source / RULES_FILE).read_bytes() if (source / RULES_FILE).is_file() else b""):
        return source  # the same rules: another version would be a copy of this one
    if (origin := _origin_alike(root, meta, kept)) is not None:
        return origin  # set-rules --clear on a version set-rules wrote: its origin has no rule
    if (copy := _derived_alike(root, meta.get("version", version), kept)) is not None:
        return copy  # written by an earlier set-rules: a second would be an identical copy
    router.rules = compile_rules(applied, router.config.script) if applied is not None else ()
    training = {k: v for k, v in meta["training_data"].items() if k != "rules"}
    if applied is not None:
        training["rules"] = rules_summary(
            applied, {name: head.labels for name, head in router.heads.items()}
        )
    fingerprint = hashlib.sha256(str(training.get("sha256")).encode() + b"\0" + kept).hexdigest()
    router.version = free_version(root, fingerprint, router.config)
    metadata = {**meta, "training_data": training}
    metadata["derived_from"] = {"version": meta.get("version", version), "changed": "rules"}
    resources: dict[str, str | Path | bytes | None] = {
        name: source / name
        for name in (USERDICT_FILE, STOPWORDS_FILE, REMITS_FILE)
        if (source / name).is_file()
    }
    if rows is not None:
        resources[RULES_FILE] = kept
    check_model_root(root)  # named as the root, not as an --out set-rules does not have
    keep_current(root, root / router.version)  # it serves once promoted, not by being newest
    return save_router(router, root / router.version, metadata, resources)


def _origin_alike(root: Path, meta: dict[str, Any], rules: bytes) -> Path | None:
    """The version under ``root`` that the version of metadata ``meta`` was derived from (or that
    one's, and so on), whose dispatch rules are ``rules`` (as its ``rules.csv`` keeps them), or
    ``None``.

    ``models set-rules v2 --clear``, v2 written by ``set-rules v1 --rules r.csv``, wrote a full
    copy of v1's model (94 MB on real data) when v1 applies no rule already."""
    import json

    from model.artifact import METADATA_FILE, RULES_FILE, ModelLoadError
    from model.registry import resolve_version

    seen: set[str] = set()
    while isinstance(derived := meta.get("derived_from"), dict):
        # It records the model version, which is not the directory's name where `train --out
        # models/v1` named it.
        try:
            name = resolve_version(root, str(derived.get("version")))
        except ModelLoadError:
            return None  # deleted by models gc, say: write the copy
        if name in seen:
            return None
        seen.add(name)
        origin = root / name
        try:
            meta = json.loads((origin / METADATA_FILE).read_text(encoding="utf-8"))
            held = (origin / RULES_FILE).read_bytes() if (origin / RULES_FILE).is_file() else b""
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        if held == rules:
            return origin
    return None


def _derived_alike(root: Path, version: str, rules: bytes) -> Path | None:
    """A version under ``root`` already derived from ``version`` with the dispatch rules ``rules``
    (as its ``rules.csv`` keeps them), or ``None``.

    Run twice, ``models set-rules v1 --rules r.csv`` wrote two identical versions, each with its
    own copy of the model's serving file (53 MB for the sample's)."""
    import json

    from model.artifact import METADATA_FILE, RULES_FILE
    from model.registry import versions

    for name in versions(root):
        other = root / name
        try:
            meta = json.loads((other / METADATA_FILE).read_text(encoding="utf-8"))
            held = (other / RULES_FILE).read_bytes() if (other / RULES_FILE).is_file() else b""
        except (OSError, ValueError):
            continue
        derived = meta.get("derived_from") if isinstance(meta, dict) else None
        if isinstance(derived, dict) and derived.get("version") == version and held == rules:
            return other
    return None
