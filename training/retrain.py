"""``paidan retrain``: a challenger from the history plus the dispatchers' final decisions.

The feedback records come in as plain dicts (the CLI reads them from the feedback database);
this module never touches the database or the web layer.

Steps:

1. read the history files and the feedback records; feedback is deduplicated per ticket (ticket id,
   or the masked text when there is none, a decision without an id on the text of one ticket
   decided with its id being that ticket's) and the latest decision wins; a feedback decision also
   replaces the history row of its ticket: the same id and the same masked text (a live ticket
   numbered as a history ticket of another text is a ticket of its own);
2. freeze an evaluation set the first time (a stratified share of the history, never trained on),
   and drop its tickets from the training rows every time;
3. apply the taxonomy mapping (old label → new label) to history and feedback: the current model's,
   with the one given now on top (see :func:`merge_mappings`);
4. train with the current model's config and tokenizer resources, so the challenger differs from
   the champion only by its data (with the ``--unlabelled`` files given now, as ``paidan train``
   takes them; a champion trained with some that this retrain was not given is warned of);
5. score the challenger on the frozen set, compare it with the champion, and promote it when asked
   and allowed (see :mod:`training.compare`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from model import registry
from model.artifact import (
    REMITS_FILE,
    RULES_FILE,
    STOPWORDS_FILE,
    USERDICT_FILE,
    check_model_root,
    read_metadata,
    sha256_file,
)
from model.config import OTHER_LABEL, ConfigError, TrainingConfig
from model.text import clean, counted, id_key, learnt_label, mask_label, quoted
from model.tickets import (
    CO_COL,
    FEEDBACK_EXPORT_COLUMNS,
    JOINT_JOINER,
    LABELS,
    LINE_COL,
    PATH_COL,
    ROW_COL,
    SOURCE_COL,
    ColumnMap,
    TicketFileError,
    as_paths,
    as_utc,
    csv_delimiter,
    detect_encoding,
    display_name,
    has_text,
    id_column_note,
    json_lines,
    json_problem,
    named_paths,
    read_tickets,
    require_rows,
    split_departments,
    title_column_note,
)
from training.compare import (
    DEFAULT_RULE,
    EVAL_COLUMNS,
    Decision,
    ensure_scores,
    merged_into_other,
    model_heads,
    promote_checked,
    read_frozen_eval,
    sample_default,
)
from training.compare import (
    Mapping as LabelMapping,
)
from training.drift import suggestion_decision
from training.remits import format_remits, read_remits
from training.rules import format_rules, read_rules
from training.train import (
    Progress,
    TrainResult,
    data_fingerprint,
    read_unlabelled,
    train_frame,
    unlabelled_files,
    unlabelled_sample_note,
)
from training.validate import (
    MAX_LISTED,
    RETRAIN_OPTIONS,
    UNLABELLED_LISTED,
    TrainingDataError,
    ValidationReport,
    files_read_twice,
    label_column_notes,
    listing,
    masked_counts,
    repeated_rows,
    row_places,
    rows_of,
    similar_label,
)
from training.window import Window, read_window

logger = logging.getLogger(__name__)

EVAL_FRACTION = 0.2  # share of the history frozen as the evaluation set on the first retrain
HISTORY = "history"
FEEDBACK = "feedback"
SOURCE_KIND = "source"  # column of the training frame: history or feedback


class MappingFileError(ValueError):
    """The taxonomy mapping file cannot be used; the message names the file and the row."""


@dataclass
class FeedbackSummary:
    """What deduplication did to the feedback records."""

    records: int = 0
    tickets: int = 0
    superseded: int = 0
    # Decisions without a ticket id on the text of a ticket decided with its id (one id only):
    # keyed as that ticket, so its latest decision wins rather than both being trained.
    unnumbered_merged: int = 0
    replaced_history: int = 0
    # Feedback ids that name another text than the history or frozen row of that id: other tickets.
    other_tickets: int = 0
    # Feedback ids whose decisions carry different (masked) texts: live ticket numbers that restart
    # (a daily serial) name several tickets. Each text is a ticket of its own, matched by its text.
    ambiguous: set[str] = field(default_factory=set)
    ambiguous_example: str = ""
    # Tickets that two dispatchers (dispatcher_id) decided with different labels: the latest is
    # trained, the disagreement was counted with a dispatcher's own second thoughts as
    # "superseded". How many, and the feedback rows of one.
    disputed: int = 0
    disputed_example: str = ""
    # Decisions on frozen evaluation tickets: never trained, and the frozen set keeps its labels.
    # How many, how many of them name another label than the frozen set's, and one example.
    on_frozen: int = 0
    frozen_disagree: int = 0
    frozen_example: str = ""
    until: str | None = None
    # Decisions made before --feedback-since, left out: the bound, how many, the first and last
    # time, and how many tickets of the history they corrected without a decision since (trained
    # with the history's label). None: no bound was given.
    before_since: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "tickets": self.tickets,
            "superseded_decisions": self.superseded,
            "decisions_without_id_merged": self.unnumbered_merged,
            "tickets_decided_differently_by_two_dispatchers": self.disputed,
            "replaced_history_rows": self.replaced_history,
            "ids_naming_other_tickets": self.other_tickets,
            "ids_naming_several_texts": len(self.ambiguous),
            "decisions_on_frozen_tickets": self.on_frozen,
            "decisions_disagreeing_with_frozen_labels": self.frozen_disagree,
            "until": self.until,
            **({"before_since": self.before_since} if self.before_since is not None else {}),
        }


@dataclass
class RetrainResult:
    """What ``paidan retrain`` did, for its summary and exit code."""

    skipped: bool = False
    message: str = ""
    # Skipped because this version was trained on the same data already (again=False).
    duplicate_of: str | None = None
    version: str | None = None
    model_dir: Path | None = None
    rows: dict[str, int] = field(default_factory=dict)
    feedback: FeedbackSummary = field(default_factory=FeedbackSummary)
    mapped: dict[str, dict[str, int]] = field(default_factory=dict)
    # The mapping trained with (the champion's, with the one given now on top), the renames kept
    # from the champion, and the given rows whose old label occurs nowhere: (heads, old, new).
    mapping: LabelMapping = field(default_factory=dict)
    inherited: LabelMapping = field(default_factory=dict)
    unmatched: list[tuple[str, str, str]] = field(default_factory=list)
    new_labels: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per head, where a new label came from when it is not new to the history: renamed by the
    # mapping, or merged into 其他 by the current model ("renamed from '执法' by --mapping").
    new_label_origins: dict[str, dict[str, str]] = field(default_factory=dict)
    # The current model's labels, per head: a rare new label close to one is likely a misspelling.
    known_labels: dict[str, list[str]] = field(default_factory=dict)
    eval_frozen_now: bool = False
    eval_excluded: int = 0  # rows (history and feedback) of frozen tickets left out of training
    # The frozen tickets those history rows are: fewer when the history repeats a ticket.
    eval_tickets_excluded: int = 0
    # Ids naming tickets of different texts (e.g. a serial-number column that restarts in each
    # monthly export): how many, and one example with where it occurs.
    ambiguous_ids: int = 0
    ambiguous_example: str = ""
    # One feedback id that names another ticket than the history's (count: feedback.other_tickets).
    other_tickets_example: str = ""
    # The history window (training.window.select_window's info; empty: the whole history).
    window: dict[str, Any] = field(default_factory=dict)
    # The current model's unlabelled tickets (training_data.unlabelled_rows) when this retrain was
    # given no --unlabelled files (the challenger's vocabulary and IDF lose them), and its version.
    unlabelled_dropped: int = 0
    champion: str | None = None
    # Its unlabelled files' names (training_data.unlabelled_files), where its metadata has them.
    unlabelled_names: list[str] = field(default_factory=list)
    # Likewise its --fit-only rows (training_data.fit_only) when none were given, and their files.
    fit_only_dropped: int = 0
    fit_only_names: list[str] = field(default_factory=list)
    # A history file's title column left unmapped (model.tickets.title_column_note), if any.
    title_note: str | None = None
    # A history file's id column left unmapped (model.tickets.id_column_note), if any.
    id_note: str | None = None
    train: TrainResult | None = None
    # The training rows' validation, set before the fit (``train.validation`` once it is done).
    validation: ValidationReport | None = None
    scores: dict[str, Any] | None = None
    decision: Decision | None = None

    def warnings(self, min_examples: int) -> list[str]:
        """Lines the operator must see: new labels, rare labels merged into 其他, data problems."""
        out = []
        for heads, old, new in self.unmatched:
            out.append(
                f"--mapping renames {heads} {mask_label(old)!r} to {mask_label(new)!r}, but no history, "
                f"feedback or frozen evaluation row has that {heads}: check its spelling"
            )
        validation = self.train.validation if self.train is not None else self.validation
        unlearnt = validation.unlearnt if validation is not None else {}
        for head, labels in self.new_labels.items():
            # 其他 itself too small to learn: the merged rows are not learnt at all (see validate).
            where = "其他, itself too rare to learn," if head in unlearnt else "其他"
            # Learnt ones first, then merged ones, each most rows first and the first few only:
            # a history with 30,000 misspelt departments put a line each in the nightly log.
            ranked = sorted(labels.items(), key=lambda kv: (kv[1] < min_examples, -kv[1]))
            for rare in (False, True):
                group = [(k, n) for k, n in ranked if (n < min_examples) == rare]
                note = (
                    f"below min_examples ({min_examples}): merged into {where} for this model; "
                    "collect more examples"
                    if rare
                    else "learnt as a new label"
                )
                for label, n in group[:MAX_LISTED]:
                    # A decision typed through the API, 市场监督 for 市场监管: "collect more
                    # examples" was the only advice. Found as train finds them (similar_label).
                    close = similar_label(label, self.known_labels.get(head, [])) if rare else None
                    hint = (
                        f", or, if it is the same {head} as {close!r}, map it to that with "
                        "--mapping"
                        if close
                        else ""
                    )
                    # Masked: a dispatcher may type a phone number into the label field of
                    # feedback, and these lines go to the nightly retrain log.
                    origin = self.new_label_origins.get(head, {}).get(
                        label, "not in the current model"
                    )
                    out.append(
                        f"new {head} {mask_label(label)!r} ({origin}) has "
                        f"{rows_of(n)}: {note}{hint}"
                    )
                if len(group) > MAX_LISTED:
                    rest = group[MAX_LISTED:]
                    out.append(
                        f"… and {counted(len(rest), f'more new {head} label')} (not in the "
                        f"current model, {rows_of(sum(n for _, n in rest))}): {note}"
                    )
        if self.unlabelled_dropped:
            out.append(
                f"the current model {self.champion} was trained with "
                f"{counted(self.unlabelled_dropped, 'unlabelled ticket')} (--unlabelled), which "
                "this retrain was not given: the "
                "challenger's vocabulary and IDF come from the history and feedback alone; pass "
                "the same --unlabelled files to keep them"
                + (f" ({listing(self.unlabelled_names, 5)})" if self.unlabelled_names else "")
            )
        if self.fit_only_dropped:
            out.append(
                f"the current model {self.champion} was trained with "
                f"{counted(self.fit_only_dropped, 'fit-only row')} (--fit-only), which this "
                "retrain was not given: the challenger learns from the history and feedback "
                "alone; pass the same --fit-only files to keep them"
                + (f" ({listing(self.fit_only_names, 5)})" if self.fit_only_names else "")
            )
        if self.title_note:
            out.append(self.title_note)
        if self.id_note:
            out.append(self.id_note)
        if self.ambiguous_ids:
            out.append(
                f"{_ids(self.ambiguous_ids)} more than one ticket text "
                f"({self.ambiguous_example}); such tickets are matched to feedback and to the frozen "
                "set by their text, not their id. Map a unique ticket number with --id-col"
            )
        if self.feedback.ambiguous:
            out.append(
                f"{_ids(len(self.feedback.ambiguous), 'feedback ')} more than one ticket "
                f"text ({self.feedback.ambiguous_example}); such decisions are kept per ticket "
                "text, not per id (the latest decision on each text wins), and matched to the "
                "history and to the frozen set by their text (live ticket numbers that restart, "
                "e.g. each day)"
            )
        if self.feedback.other_tickets:
            out.append(
                f"{_ids(self.feedback.other_tickets, 'feedback ')} another ticket text than "
                f"the history or frozen row of that id ({self.other_tickets_example}); those "
                "decisions are trained as tickets of their own, not as corrections of those rows "
                "(live tickets numbered afresh reuse the history's numbers)"
            )
        if (before := self.feedback.before_since) and before["records"]:
            tickets = before["history_tickets"]
            out.append(
                counted(before["records"], "feedback decision")
                + f" from before --feedback-since ({_day(before['since'])}) left out, made "
                + (
                    f"at {_day(before['oldest'])}"
                    if before["oldest"] == before["newest"]
                    else f"from {_day(before['oldest'])} to {_day(before['newest'])}"
                )
                + (
                    f"; {counted(tickets, 'of them is on a history ticket', 'of them are on history tickets')} "
                    "not decided since, which "
                    + (
                        "trains with its history label"
                        if tickets == 1
                        else "train with their history labels"
                    )
                    if tickets
                    else ""
                )
            )
        if self.feedback.disputed:
            out.append(
                counted(self.feedback.disputed, "ticket was", "tickets were")
                + " decided with different labels by different dispatchers "
                f"({self.feedback.disputed_example}): the latest decision of each is trained; "
                "check them in the feedback export (GET /v1/feedback)"
            )
        if self.feedback.frozen_disagree:
            out.append(
                counted(
                    self.feedback.frozen_disagree,
                    "feedback decision on a frozen evaluation ticket names",
                    "feedback decisions on frozen evaluation tickets name",
                )
                + " another label than the frozen set "
                f"({self.feedback.frozen_example}): decisions on frozen tickets are never "
                "trained, and every version is still scored against the frozen label; if the "
                "dispatchers are right, freeze a corrected set (paidan models freeze-eval DATA "
                "--force)"
            )
        if validation is not None:
            # The rare new labels said above are not said again as merged (same rows).
            said = {
                head: masked_counts({k: n for k, n in labels.items() if n < min_examples})
                for head, labels in self.new_labels.items()
            }
            out += validation.warnings(said)
        return out


def _validated(
    result: RetrainResult,
    report: ValidationReport,
    min_examples: int,
    then: Callable[[list[str]], None] | None,
) -> None:
    """Keep the rows' validation ``report`` in ``result``, then give ``then`` its warnings."""
    result.validation = report
    if then is not None:
        then(result.warnings(min_examples))


def _new_label_origins(
    new: Mapping[str, int],
    renames: Mapping[str, str],
    mapped: Mapping[str, int],
    merged: Mapping[str, str],
) -> dict[str, str]:
    """Where each of one head's ``new`` labels came from, for those not new to the history: the
    labels ``renames`` (the mapping trained with) renamed to it in ``mapped`` rows (old label ->
    rows, most first), or a label the current model merged into 其他 (``merged``)."""
    out = {}
    for label in new:
        olds = sorted(
            (old for old in mapped if renames.get(old) == label), key=lambda o: -mapped[o]
        )
        if olds:
            listed = ", ".join(repr(mask_label(o)) for o in olds[:MAX_LISTED])
            more = f" and {len(olds) - MAX_LISTED} more" if len(olds) > MAX_LISTED else ""
            out[label] = f"renamed from {listed}{more} by --mapping"
        elif label in merged:
            out[label] = f"merged into {OTHER_LABEL!r} by the current model"
    return out


def _day(iso: str) -> str:
    """A recorded UTC time as the summary writes a bound: its date, and its time unless midnight."""
    at = datetime.fromisoformat(iso)
    return f"{at:%Y-%m-%d}{'' if at.time() == datetime.min.time() else f' {at:%H:%M:%S}'} UTC"


def _ids(n: int, kind: str = "") -> str:
    """``n`` ticket ids and their verb: "1 ticket id names", "2 ticket ids name"."""
    return counted(n, f"{kind}ticket id names", f"{kind}ticket ids name")


# -- taxonomy mapping ------------------------------------------------------------------------------


def read_mapping(path: str | Path) -> LabelMapping:
    """Read a taxonomy mapping CSV.

    Columns ``old`` and ``new`` (required) and ``head`` (optional: ``department``, ``category``,
    or empty for both). UTF-8 or GB18030 (detected as for ticket files), tab-separated when named
    ``.tsv``; one rename per row, e.g. ``银保监局,金融监管局``. Chains (A → B, B → C) are
    followed to their end; a label mapped to itself stays as it is.

    Raises
    ------
    MappingFileError
        On an unreadable or empty file, a missing column, an empty label, an unknown head, two
        targets for one label, or a cycle.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        # Encoded like a ticket CSV: UTF-8 (with or without BOM) or GB18030, Excel's "CSV" in China.
        text = data.decode(detect_encoding(data, path)).removeprefix("\ufeff")  # GB18030's BOM
    except OSError as e:
        raise MappingFileError(f"{path}: cannot read the mapping file: {e}") from e
    except TicketFileError as e:
        raise MappingFileError(f"{path}: {e}") from None
    reader = csv.DictReader(text.splitlines(), delimiter=csv_delimiter(path))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if not fields:
        raise MappingFileError(f"{path}: the mapping file is empty; it needs the header old,new")
    if "old" not in fields or "new" not in fields:
        raise MappingFileError(
            f"{path}: a mapping file needs the columns old,new (and optionally head); "
            f"found {', '.join(map(quoted, reader.fieldnames or []))}"
        )
    mapping: LabelMapping = {h: {} for h in LABELS}
    lines: dict[str, dict[str, int]] = {h: {} for h in LABELS}  # where each rename is written
    for line, raw in enumerate(reader, 2):
        # Cells past the header (a trailing comma Excel wrote) come under the key None, as a list.
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if isinstance(k, str)}
        old, new, head = row.get("old", ""), row.get("new", ""), row.get("head", "")
        if not old or not new:
            raise MappingFileError(f"{path} line {line}: old and new must both be non-empty")
        # As the ticket readers and the feedback database give a label: a number in it masked
        # (网格员李四１３９８７６５４３２１ is read as 网格员李四[手机号]).
        old, new = learnt_label(old), learnt_label(new)
        heads = LABELS if not head else (head,)
        if head and head not in LABELS:
            raise MappingFileError(
                f"{path} line {line}: head must be department, category or empty (got {quoted(head, cell=True)})"
            )
        for h in heads:
            if mapping[h].get(old, new) != new:
                raise MappingFileError(
                    f"{path} line {line}: {h} label {mask_label(old)!r} is mapped to both "
                    f"{mask_label(mapping[h][old])!r} and {mask_label(new)!r}"
                )
            mapping[h][old] = new
            lines[h].setdefault(old, line)
    for h, renames in mapping.items():
        # A label mapped to itself is kept as it is: a full table of the taxonomy may list them.
        for old in [o for o, n in renames.items() if o == n]:
            del renames[old]
        for old in list(renames):
            seen = {old}
            target = renames[old]
            while target in renames and target != old:
                if target in seen:
                    raise MappingFileError(_cycle(path, h, old, seen, lines[h]))
                seen.add(target)
                target = renames[target]
            if target == old:
                raise MappingFileError(_cycle(path, h, old, seen, lines[h]))
            renames[old] = target
    return {h: m for h, m in mapping.items() if m}


def _cycle(path: str | Path, head: str, old: str, seen: set[str], lines: dict[str, int]) -> str:
    """A mapping's cycle through ``old``, with the lines that write it: "has a cycle" alone left
    the file to be searched by hand, where every other refusal names its line."""
    where = sorted(lines[label] for label in seen if label in lines)
    said = ", ".join(str(n) for n in where)
    return (
        f"{path} line{'s' if len(where) > 1 else ''} {said}: the {head} mapping has a cycle "
        f"through {mask_label(old)!r}; a label may be renamed, not renamed back"
    )


def merge_mappings(inherited: LabelMapping, given: LabelMapping | None) -> LabelMapping:
    """The champion's mapping with the one given now applied on top.

    A rename given now of the same old label replaces the inherited one, and an inherited rename
    whose new label is renamed now follows it (A → B inherited, B → C given: A → C). The new labels
    given now are final: B → A given after A → B undoes the rename (A stays A, B becomes A).

    Parameters
    ----------
    inherited : dict
        The champion's mapping (``training_data.mapping`` in its metadata; chains resolved).
    given : dict or None
        The mapping given now, from :func:`read_mapping`.

    Returns
    -------
    dict
        Per head, old label → new label; labels mapped to themselves are left out.
    """
    given = given or {}
    merged: LabelMapping = {}
    for head in LABELS:
        now = given.get(head, {})
        renames = {old: now.get(new, new) for old, new in inherited.get(head, {}).items()}
        renames.update(now)
        renames = {old: new for old, new in renames.items() if old != new}
        if renames:
            merged[head] = renames
    return merged


def inherited_mapping(model_dir: Path, meta: Mapping[str, Any]) -> LabelMapping:
    """The mapping a model was trained with (``training_data.mapping`` in its metadata).

    Raises
    ------
    ValueError
        When the recorded mapping is not, per head, a table of label → label.
    """
    data = meta.get("training_data")
    mapping = data.get("mapping") if isinstance(data, dict) else None
    if not mapping:
        return {}
    if not (
        isinstance(mapping, dict)
        and all(
            head in LABELS
            and isinstance(renames, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in renames.items())
            for head, renames in mapping.items()
        )
    ):
        raise ValueError(
            f"{model_dir / 'metadata.json'}: training_data.mapping must map department and/or "
            "category to a table of old label → new label"
        )
    return {head: dict(renames) for head, renames in mapping.items() if renames}


def unmatched_renames(
    given: LabelMapping | None, frames: Sequence[pd.DataFrame], inherited: LabelMapping
) -> list[tuple[str, str, str]]:
    """Rows of ``given`` whose old label occurs in no frame: ``(heads, old, new)`` each.

    A label given for both heads (an empty ``head`` cell) matches when either head has it; a
    department matches as a joint dispatch's co-department too, and a label matches when an
    ``inherited`` rename produces it (B → C given after A → B).
    """
    present: dict[str, set[str]] = {h: set() for h in LABELS}
    for df in frames:
        for head in LABELS:
            if head in df.columns:
                present[head] |= set(df[head].fillna("").astype(str).str.strip())
        if CO_COL in df.columns:
            for co in df[CO_COL].fillna("").astype(str):
                present["department"] |= set(co.split(JOINT_JOINER)) if co else set()
    for head, renames in inherited.items():
        present[head] |= {renames[label] for label in present[head] if label in renames}
    given = given or {}
    out = []
    for old in dict.fromkeys(old for head in LABELS for old in given.get(head, {})):
        heads = [h for h in LABELS if old in given.get(h, {})]
        if not any(old in present[h] for h in heads):
            out.append((" or ".join(heads), old, given[heads[0]][old]))
    return out


def _given_or_inherited(
    given: list[Path],
    inherited: Path | None,
    read: Callable[[list[Path]], pd.DataFrame],
    mapping: LabelMapping,
    hashed: Callable[[bytes], object],
    fmt: Callable[[pd.DataFrame], bytes],
) -> pd.DataFrame | None:
    """The rows of the files ``given`` or, without any, of the champion's file ``inherited`` (if
    it has one), renamed by ``mapping`` and fed to the data hash (``hashed``: its ``update``) as
    ``fmt`` writes them; ``None`` when there is neither."""
    paths = given or ([inherited] if inherited is not None and inherited.is_file() else [])
    if not paths:
        return None
    rows = read(paths)
    apply_mapping(rows, mapping)
    hashed(fmt(rows))
    return rows


def apply_mapping(df: pd.DataFrame, mapping: LabelMapping) -> dict[str, dict[str, int]]:
    """Rename labels in place; returns, per head, how many rows each old label had.

    Department renames apply to a joint dispatch's co-departments too (counted with the leads
    only); one that becomes the lead, or another co-department, is dropped.
    """
    counts: dict[str, dict[str, int]] = {}
    for head, renames in mapping.items():
        if head not in df.columns:
            continue
        hit = df[head].isin(list(renames))
        if hit.any():
            counts[head] = {str(k): int(v) for k, v in df.loc[hit, head].value_counts().items()}
            df.loc[hit, head] = df.loc[hit, head].map(renames)
    renames = mapping.get("department", {})
    if renames and CO_COL in df.columns:
        joint = df[CO_COL].fillna("") != ""
        df.loc[joint, CO_COL] = [
            JOINT_JOINER.join(
                split_departments(JOINT_JOINER.join([lead, *(renames.get(d, d) for d in co)]))[1]
            )
            for lead, co in zip(
                df.loc[joint, "department"],
                df.loc[joint, CO_COL].str.split(JOINT_JOINER),
                strict=True,
            )
        ]
    return counts


# -- feedback -------------------------------------------------------------------------------------


def ticket_key(ticket_id: Any, text: Any) -> str:
    """Deduplication key: the ticket id (:func:`model.text.id_key`), or a digest of the masked
    text when there is none."""
    tid = "" if ticket_id is None else id_key(str(ticket_id))
    if tid:
        return f"id:{tid}"
    return "text:" + hashlib.sha256(clean(str(text or "")).encode()).hexdigest()


def id_keys_of(ids: pd.Series) -> pd.Series:
    """Each id's key (:func:`model.text.id_key`): ``２０２６１２０６００１`` and ``20261206001\u200b`` are
    ``20261206001``; a missing id is ``""``. Ids are compared so everywhere; rows keep theirs as
    written."""
    return ids.fillna("").astype(str).map(id_key)


def feedback_frame(records: Iterable[Mapping[str, Any]]) -> tuple[pd.DataFrame, FeedbackSummary]:
    """Canonical training rows from feedback records, one per ticket, the latest decision winning.

    A ticket is its id, or its masked text when it has none. An id whose decisions carry different
    masked texts names several tickets (live ticket numbers that restart each day): those decisions
    are keyed by id and text, so each ticket keeps its latest decision, and the id is recorded in
    the summary's ``ambiguous`` (matched to the history and the frozen set by text).

    Parameters
    ----------
    records : iterable of mapping
        Feedback rows as stored: ``id``, ``ticket_id``, ``title``, ``text`` (already masked),
        ``department``, ``category``, ``created_at`` (datetime or ISO string).

    Returns
    -------
    (DataFrame, FeedbackSummary)
        Columns ``id, title, text, department, category, time``, ``co_departments`` (a joint
        dispatch's other departments, see :func:`model.tickets.split_departments`), ``source`` =
        ``"feedback"`` and the reader's ``_source``/``_row`` (the feedback row id), oldest decision
        first.
    """
    rows = []
    for r in records:
        created = _as_utc(r.get("created_at"))
        lead, co = split_departments(str(r.get("department") or ""))
        rows.append(
            {
                "key": ticket_key(r.get("ticket_id"), r.get("text")),
                "id": str(r.get("ticket_id") or ""),
                "title": str(r.get("title") or ""),
                "text": str(r.get("text") or ""),
                "department": lead,
                CO_COL: JOINT_JOINER.join(co),
                "category": str(r.get("category") or "").strip(),
                "time": created.isoformat() if created else "",
                "_created": created or datetime.min.replace(tzinfo=UTC),
                "_fid": int(r.get("id") or 0),
                "_dispatcher": str(r.get("dispatcher_id") or "").strip() or None,
                # Where it was read: a line of a --feedback export, or a database row.
                "_where": str(r[EXPORT_FILE]) if EXPORT_FILE in r else "feedback",
                "_at": int(r[EXPORT_LINE]) if EXPORT_FILE in r else int(r.get("id") or 0),
            }
        )
    summary = FeedbackSummary(records=len(rows))
    columns = ["id", "title", "text", "department", "category", "time", CO_COL]
    if not rows:
        empty = pd.DataFrame(columns=[*columns, SOURCE_KIND, SOURCE_COL, ROW_COL, LINE_COL])
        return empty, summary
    df = pd.DataFrame(rows).sort_values(["_created", "_fid"], kind="stable")
    # Keyed by id alone, 3,000 decisions on tickets numbered 1..300 each day trained as 300, the
    # rest called "superseded". Texts are compared only where an id repeats (masking costs).
    ids = id_keys_of(df["id"])
    repeated = (ids != "") & ids.duplicated(keep=False)
    if repeated.any():
        digests = df.loc[repeated, "text"].map(lambda t: ticket_key(None, t))
        distinct = digests.groupby(ids[repeated]).nunique()
        summary.ambiguous = set(distinct.index[distinct > 1])
        several = repeated & ids.isin(summary.ambiguous)
        df.loc[several, "key"] = "id:" + ids[several] + "|" + digests[several]
        where = pd.DataFrame(
            {
                "id": ids,
                SOURCE_COL: df["_where"],
                ROW_COL: df["_at"],
                LINE_COL: df["_where"] != "feedback",
            }
        )
        summary.ambiguous_example = _id_example(where, ids, summary.ambiguous)
    # A decision without an id (a text pasted into the page) on the text of a ticket decided with
    # its id is that ticket: keyed apart, both were trained, with conflicting labels. Only where
    # one id has the text: two citizens may send the same short text.
    unnumbered = df["key"].str.startswith("text:")
    if unnumbered.any() and not unnumbered.all():
        numbered = pd.DataFrame(
            {
                "digest": df.loc[~unnumbered, "text"].map(lambda t: ticket_key(None, t)),
                "key": df.loc[~unnumbered, "key"],
                "id": df.loc[~unnumbered, "id"],
            }
        ).drop_duplicates(["digest", "key"])
        single = numbered.drop_duplicates("digest", keep=False).set_index("digest")
        hit = unnumbered & df["key"].isin(single.index)
        df.loc[hit, "id"] = df.loc[hit, "key"].map(single["id"])
        df.loc[hit, "key"] = df.loc[hit, "key"].map(single["key"])
        summary.unnumbered_merged = int(hit.sum())
    labels = df["department"] + "\x00" + df[CO_COL] + "\x00" + df["category"]
    by_ticket = df.groupby("key", sort=False)
    disputed = (by_ticket["_dispatcher"].nunique() > 1) & (
        labels.groupby(df["key"], sort=False).nunique() > 1
    )
    if disputed.any():
        summary.disputed = int(disputed.sum())
        first = df[df["key"] == disputed.index[disputed][0]][:5]
        summary.disputed_example = "e.g. " + _decision_places(first["_where"], first["_at"])
    latest = df.drop_duplicates("key", keep="last")
    summary.tickets = len(latest)
    summary.superseded = len(df) - len(latest)
    summary.until = df["_created"].max().isoformat()
    out = latest[columns].copy()
    out[SOURCE_KIND] = FEEDBACK
    out[SOURCE_COL] = latest["_where"].to_numpy()
    out[ROW_COL] = latest["_at"].to_numpy()
    out[LINE_COL] = (latest["_where"] != "feedback").to_numpy()
    return out.reset_index(drop=True), summary


def _decision_places(sources: pd.Series, numbers: pd.Series) -> str:
    """Where some decisions were read, each file once: ``feedback data rows 3, 9`` (the
    database's rows), ``feedback.jsonl lines 4, 12`` (an export's lines)."""
    said = []
    for source, group in numbers.groupby(sources.to_numpy(), sort=False):
        unit = "data row" if source == "feedback" else "line"
        said.append(f"{source} {unit}{'s' if len(group) > 1 else ''} " + ", ".join(map(str, group)))
    return ", ".join(said)


def feedback_cutoff(root: str | Path) -> datetime | None:
    """Feedback after this time is new to the current model (its last feedback, else its creation).

    After a rollback, the feedback of the versions rolled back from is not new either: counted
    as new, the nightly ``--if-new-feedback N --promote-if-better`` retrained on it at once and
    promoted the model the administrator had rolled back. Nor is the feedback of a challenger the
    promotion rule refused against the current model (:func:`model.registry.record_refusal`):
    the nightly job trained on the same decisions every night, to be refused every night.
    """
    version = registry.current_version(root)
    if version is None:
        return None
    try:
        meta = read_metadata(Path(root) / version)
    except Exception:  # an unreadable current model: everything counts as new
        return None
    data = meta.get("training_data", {})
    cutoff = _as_utc(data.get("feedback_until") or meta.get("created"))
    try:
        events = registry.read_state(root)["events"]
    except Exception:  # an unreadable registry.json: the current model's cutoff
        events = []
    for event in events:
        left = event.get("previous") if event.get("action") == "rollback" else None
        try:
            if event.get("action") == "refused" and event.get("previous") == version:
                # Recorded in the event: the refused challenger may be collected since.
                until = _as_utc(event.get("feedback_until"))
            else:
                gone = (
                    read_metadata(Path(root) / str(left)).get("training_data", {}) if left else {}
                )
                until = _as_utc(gone.get("feedback_until"))
        except Exception:  # a version collected since, or unreadable: nothing to add
            continue
        if until is not None and (cutoff is None or until > cutoff):
            cutoff = until
    return cutoff


def count_new_feedback(records: Sequence[Mapping[str, Any]], cutoff: datetime | None) -> int:
    """Feedback records created after ``cutoff`` (all of them when it is ``None``)."""
    if cutoff is None:
        return len(records)
    return sum(1 for r in records if (_as_utc(r.get("created_at")) or cutoff) > cutoff)


def split_feedback(
    records: Sequence[Mapping[str, Any]], since: datetime | None
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """``records`` created at or after ``since`` (a record without a time included), and those
    before it: ``paidan retrain --feedback-since``'s, as the feedback database's query bounds
    them."""
    if since is None:
        return list(records), []
    bound = as_utc(since)
    kept: list[Mapping[str, Any]] = []
    before: list[Mapping[str, Any]] = []
    for r in records:
        at = _as_utc(r.get("created_at"))
        (before if at is not None and at < bound else kept).append(r)
    return kept, before


# -- feedback export files (--feedback) -------------------------------------------------------------


class FeedbackFileError(ValueError):
    """A ``--feedback`` export file cannot be used; the message names the file and the line."""


# The fields of a FeedbackRecord line (GET /v1/feedback) retrain reads, besides id and created_at;
# each a string or null. A line with export_error is the ExportIncomplete that ends a cut export.
EXPORT_TEXTS = ("ticket_id", "title", "text", "department", "category", "dispatcher_id")
EXPORT_ERROR_KEY = "export_error"
# Keys of a record read from an export: its file (as given) and line, which warnings name.
EXPORT_FILE = "_file"
EXPORT_LINE = "_line"


@dataclass
class ExportedFeedback:
    """What :func:`read_feedback_exports` read: the records, as the feedback database gives them,
    and the warnings of exports that stopped early but are continued by another file given."""

    records: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Per file, as the challenger's metadata.json records it: ``name`` (as given, as warnings
    # name it), ``path`` (absolute), ``sha256`` and ``records`` (its decisions, read once or not).
    files: list[dict[str, Any]] = field(default_factory=list)


def read_feedback_exports(paths: Sequence[str | Path]) -> ExportedFeedback:
    """``paidan retrain --feedback FILE``: the decisions of saved feedback exports.

    Each line a :class:`serve.schemas.FeedbackRecord` as ``GET /v1/feedback`` writes it, read as
    the feedback database is read for retraining: texts through today's masking
    (:func:`model.text.clean`), labels through :func:`model.text.mask_label`, a missing department
    as an empty one, ``created_at`` in UTC. Records the files repeat (two exports that overlap: the
    same decision ``id`` and ``created_at``, or the same ``request_id``) are kept once.

    An ``ExportIncomplete`` line (``export_error``, ``since``: the export was cut) is refused with
    its place, unless another file given holds decisions from ``since`` or before (the export
    made again with ``since``, as the line says): then it is a warning.

    Raises
    ------
    FeedbackFileError
        On a file that cannot be read, a line that is not a JSON object, a line without ``id``,
        ``text`` or ``created_at``, a field of the wrong type, or a cut export not continued.
    """
    read = ExportedFeedback()
    cut: list[tuple[Path, int, str, datetime]] = []
    earliest: dict[Path, datetime] = {}
    for given in paths:
        path = Path(given)
        held = len(read.records)
        if path.is_dir():
            raise FeedbackFileError(
                f"{path} is a directory; --feedback takes a feedback export file (GET "
                "/v1/feedback, saved as JSON Lines): give each file with a --feedback of its own"
            )
        try:
            with open(path, "rb") as f:
                # The server ends every line: a file that does not end so was cut short.
                unended = False
                if f.seek(0, os.SEEK_END):
                    f.seek(-1, os.SEEK_END)
                    unended = f.read(1) not in (b"\n", b"\r")
                f.seek(0)
                lines = json_lines(f)
                for line, _, value in lines:
                    where = f"{path} line {line}"
                    if isinstance(value, Exception) and unended and next(lines, None) is None:
                        # "not JSON (Unterminated string …)", "can't decode byte 0xe6": a
                        # download that stopped, told as a bad line with nothing to do about it.
                        raise FeedbackFileError(
                            f"{where}: the file ends in the middle of this line, so the export "
                            "was cut short (a download that stopped, a full disk); export it "
                            "again (GET /v1/feedback), or from the created_at of the line "
                            "before with since, and give both files with --feedback"
                        )
                    if isinstance(value, json.JSONDecodeError):
                        raise FeedbackFileError(
                            f"{where}: not JSON ({json_problem(value, f'column {value.colno}')}); "
                            "--feedback takes the feedback export (GET /v1/feedback) as saved"
                        )
                    if isinstance(value, Exception):
                        raise FeedbackFileError(f"{where}: cannot be read as JSON Lines ({value})")
                    if not isinstance(value, dict):
                        raise FeedbackFileError(
                            f"{where}: is {type(value).__name__}, not a JSON object of the feedback "
                            "export (GET /v1/feedback)"
                        )
                    if EXPORT_ERROR_KEY in value:
                        cut.append(
                            (
                                path,
                                line,
                                str(value[EXPORT_ERROR_KEY]),
                                _export_time(value, "since", where),
                            )
                        )
                        continue
                    if cut and cut[-1][0] == path:
                        raise FeedbackFileError(
                            f"{where}: follows the line {cut[-1][1]} that says the export stopped "
                            f"({cut[-1][2]}); an export ends with that line"
                        )
                    record = _export_record(value, where)
                    record[EXPORT_FILE], record[EXPORT_LINE] = str(given), line
                    at = record["created_at"]
                    earliest[path] = min(earliest.get(path, at), at)
                    read.records.append(record)
            read.files.append(
                {
                    "name": str(given),
                    "path": str(path.resolve()),
                    "sha256": sha256_file(path),
                    "records": len(read.records) - held,
                }
            )
        except OSError as e:
            raise FeedbackFileError(f"{path}: cannot read the feedback export: {e}") from e
    for path, line, said, since in cut:
        after = [str(p) for p, at in earliest.items() if p != path and at <= since]
        if not after:
            raise FeedbackFileError(
                f"{path} line {line}: the export is incomplete ({said}): the decisions from "
                f"{since.isoformat()} on are missing, so a ticket's latest decision may be too; "
                "export again with that since and give both files with --feedback (a decision "
                "in both is read once)"
            )
        read.warnings.append(
            f"{path} line {line}: the export stopped there ({said}); the decisions from "
            f"{since.isoformat()} on are read from {', '.join(after)}"
        )
    read.records, _ = merge_feedback([], read.records)
    return read


def foreign_exports(root: str | Path, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Warnings for the ``--feedback`` files none of whose decisions was made on a model this
    registry holds or held (a version's name or model version, or one its pointer history
    names): another deployment's export, or one of decisions on the bundled sample's default
    model, whose labels are another taxonomy's and would be learnt as new ones."""
    by_file: dict[str, Counter[str]] = {}
    for r in records:
        if EXPORT_FILE in r and r.get("model_version"):
            by_file.setdefault(str(r[EXPORT_FILE]), Counter())[str(r["model_version"])] += 1
    if not by_file:
        return []
    root = Path(root)
    known: set[str] = set()
    for version in registry.versions(root):
        known.add(version)
        try:
            known.add(str(read_metadata(root / version).get("version")))
        except Exception:  # an unreadable version: its name alone
            continue
    try:
        state = registry.read_state(root)
        known.update(map(str, state.get("history", [])))
        for event in state.get("events", []):
            known.update(str(event.get(k)) for k in ("version", "previous") if event.get(k))
    except Exception:  # an unreadable registry.json: the versions there are
        pass
    warnings = []
    for name, made_on in by_file.items():
        if known & set(made_on):
            continue
        listed = ", ".join(v for v, _ in made_on.most_common(MAX_LISTED))
        more = f" and {len(made_on) - MAX_LISTED} more" if len(made_on) > MAX_LISTED else ""
        warnings.append(
            f"{name}: its {counted(sum(made_on.values()), 'decision')} with a model version were "
            f"made on suggestions of {'a model' if len(made_on) == 1 else 'models'} this "
            f"registry has never held ({listed}{more}): if it is another deployment's export, "
            "or one of decisions on the bundled sample's default model, its labels may be "
            "another taxonomy's, learnt as new ones (see the new labels warned of): map them "
            "with --mapping, or leave the file out"
        )
    return warnings


def _export_time(value: Mapping[str, Any], key: str, where: str) -> datetime:
    raw = value.get(key)
    try:
        at = _as_utc(raw) if isinstance(raw, str) else None
    except ValueError:
        at = None
    if at is None:
        raise FeedbackFileError(
            f"{where}: {key} must be a time as the export writes it (ISO 8601, e.g. "
            f"2026-12-01T08:30:00Z), got {quoted(str(raw), cell=True) if raw is not None else 'none'}"
        )
    return at


def _export_record(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One FeedbackRecord line as :func:`feedback_frame` reads a database row."""
    missing = [k for k in ("id", "text", "created_at") if value.get(k) is None]
    if missing:
        raise FeedbackFileError(
            f"{where}: has no {', '.join(missing)}; --feedback takes the feedback export "
            "(GET /v1/feedback), whose every line has id, text and created_at"
        )
    fid = value["id"]
    if isinstance(fid, bool) or not isinstance(fid, int) or fid < 1:
        raise FeedbackFileError(
            f"{where}: id must be the decision's number (a positive integer), got {fid!r}"
        )
    record: dict[str, Any] = {"id": fid, "created_at": _export_time(value, "created_at", where)}
    for key in (*EXPORT_TEXTS, "request_id", "model_version"):
        cell = value.get(key)
        if cell is not None and not isinstance(cell, str):
            raise FeedbackFileError(f"{where}: {key} must be a string or null, got {cell!r}")
        record[key] = cell
    if not any(head in value for head in LABELS):
        # The server writes both keys on every line (null when none was chosen): labels under
        # other keys (an export converted by hand) trained nothing, told only as rows without
        # labels.
        raise FeedbackFileError(
            f"{where}: has neither department nor category (its keys: "
            f"{', '.join(map(str, value))}); --feedback takes the feedback export "
            "(GET /v1/feedback) as saved, whose every line has both"
        )
    suggestion = value.get("suggestion")
    if suggestion is not None and not isinstance(suggestion, dict):
        raise FeedbackFileError(
            f"{where}: suggestion must be the /v1/route answer (a JSON object) or null, got "
            f"{type(suggestion).__name__}"
        )
    # As drift reads the database's (paidan.cli._feedback_records): its auto/review decision.
    record["suggestion"] = {"decision": suggestion_decision(suggestion)}
    # As the database's columns are read (serve.db.MaskedText, MaskedLabel): today's masking.
    record["text"] = clean(record["text"])
    if record["title"] is not None:
        record["title"] = clean(record["title"])
    for head in LABELS:
        if record[head] is not None:
            record[head] = mask_label(record[head].replace("\x00", " "))
    record["department"] = record["department"] or ""
    return record


def merge_feedback(
    database: Sequence[Mapping[str, Any]], exported: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """The ``database``'s decisions and those of ``exported`` files it does not hold, and how many
    it held: one decision is its ``id`` with its ``created_at`` (the same row, exported from
    the database read, or twice by overlapping exports; another server's row of the same id was
    made at another time), or its ``request_id`` (a save sent again, stored once per server)."""
    seen: set[tuple[Any, ...]] = set()
    out: list[dict[str, Any]] = []
    repeated = 0
    for record in [*database, *exported]:
        keys: set[tuple[Any, ...]] = {("row", record.get("id"), _as_utc(record.get("created_at")))}
        if request := record.get("request_id"):
            keys.add(("request", request))
        if keys & seen:
            repeated += 1
        else:
            out.append(dict(record))
        seen |= keys
    return out, repeated


# -- frozen evaluation set -------------------------------------------------------------------------


def freeze_eval(
    root: str | Path, eval_df: pd.DataFrame, source: str, force: bool = False
) -> dict[str, Any]:
    """Store ``eval_df`` as the registry's frozen evaluation set.

    Parameters
    ----------
    root : str or Path
        The model root.
    eval_df : DataFrame
        Canonical rows with labels (unmapped: mappings are applied when scoring).
    source : str
        Where the rows came from, for ``eval/frozen.json``.
    force : bool
        Replace an existing frozen set (scores on the old one no longer count).

    Returns
    -------
    dict
        The set's facts: ``sha256``, ``rows``, ``created``, ``source``, ``label_rows``, and
        ``left_out`` (rows without a label, or with a label but no text, and ``repeated``: rows
        that repeat an earlier row, kept once; the first few are in ``repeated_examples``).

    Raises
    ------
    FileExistsError
        When a set is frozen already and ``force`` is false.
    """
    root = Path(root)
    path = registry.frozen_eval_path(root)
    df = pd.DataFrame({c: eval_df[c].fillna("").astype(str) for c in EVAL_COLUMNS})
    if CO_COL in eval_df:
        # A joint dispatch keeps its co-departments, "主办；会办" as a department cell is written:
        # read_frozen_eval scores its lead and the joint-dispatch advice by the rest.
        co = eval_df[CO_COL].fillna("").astype(str)
        df["department"] = [
            JOINT_JOINER.join([lead, c]) if c and lead else lead
            for lead, c in zip(df["department"], co, strict=True)
        ]
    labelled = (df["department"].str.strip() != "") | (df["category"].str.strip() != "")
    with_text = has_text(df)
    # A row without a label or without text scores nothing: it is left out, and counted.
    left_out = {
        "without_label": int((~labelled).sum()),
        "without_text": int((labelled & ~with_text).sum()),
    }
    df, where = df[labelled & with_text], row_places(eval_df)[labelled & with_text]
    # The same ticket read twice (a file given twice, exports that overlap) is kept once, as
    # training keeps it: it counted twice in every version's scores.
    kept, repeats = repeated_rows(df, where)
    left_out["repeated"] = len(repeats)
    twice = (
        files_read_twice(eval_df[SOURCE_COL][labelled & with_text], kept, repeats)
        if SOURCE_COL in eval_df
        else {}
    )
    df = df[kept].reset_index(drop=True)
    if df.empty:
        raise ValueError(
            "the evaluation set has no row with both a text and a label "
            f"({rows_of(len(labelled))}: "
            f"{left_out['without_label']} without a label, {left_out['without_text']} without text)"
        )
    # Checked and written under the registry's lock: two first retrains at once each found no
    # set, and the later one's write replaced the set the earlier one had trained around.
    with registry.locked(root):
        # With --force a frozen set is replaced unread: even one whose frozen.json is corrupt.
        if not force and registry.frozen_eval_info(root) is not None:
            raise FileExistsError(
                f"{path} is frozen already; every version is scored on it. Pass --force to "
                "replace it (versions will be re-scored on the new set)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:  # by Python: pandas gave Arrow the name, to encode as UTF-8
            df.to_parquet(f, index=False)
        tmp.replace(path)
        info = {
            "sha256": sha256_file(path),
            "rows": len(df),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source,
            "label_rows": {h: int((df[h].str.strip() != "").sum()) for h in LABELS},
            "left_out": left_out,
        }
        if repeats:
            # The rows of a file read twice are said once for the file (files_read_twice).
            others = [list(p) for p in repeats if p[0] != p[1]]
            info["repeated_examples"] = others[:UNLABELLED_LISTED]
        if twice:
            info["files_read_twice"] = twice
        registry.write_json_atomic(path.parent / registry.EVAL_META_FILE, info)
    logger.info("froze an evaluation set of %d rows at %s", len(df), path)
    return info


def freeze_eval_files(
    root: str | Path,
    paths: Sequence[str | Path],
    columns: ColumnMap = ColumnMap(),
    force: bool = False,
    headers: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """``paidan models freeze-eval DATA``: read labelled ticket files and freeze them.

    ``headers`` is filled with each file's columns (:func:`model.tickets.read_tickets`), for a
    message about a label column the files lack."""
    named = named_paths(paths)
    df = read_tickets(named, columns, headers)
    return freeze_eval(root, df, ", ".join(display_name(name) for _, name in named), force=force)


def unscorable_heads(root: str | Path, info: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The current model, and those of its heads that the frozen set ``info`` has no label for.

    Promotion cannot compare such a head, so it refuses every challenger (without ``--force``)
    until a set with that label is frozen; a head the current model lacks (a category-only
    deployment) is no concern.
    """
    current = registry.current_version(root)
    if current is None or current not in registry.versions(root):
        return None, []
    rows = info.get("label_rows") or {}
    return current, [h for h in model_heads(root, current) if h in LABELS and not rows.get(h)]


def split_eval(
    df: pd.DataFrame,
    fraction: float = EVAL_FRACTION,
    seed: int = 42,
    columns: ColumnMap = ColumnMap(),
    headers: Mapping[str, Sequence[str]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified share of ``df`` for the frozen set; labels too rare to split stay in
    training. Returns ``(train, eval)``.

    Stratified by the department when the history has department labels, else by the category:
    a category-only history (a deployment without a department head) was stratified by its empty
    department cells and refused as "too small" at any size. A history with no label at all is
    refused as ``train`` refuses it, naming the file's columns (``headers``, as
    :func:`model.tickets.read_tickets` fills them) and ``--department-col``/``--category-col``.
    """
    label_column_notes(df, columns, headers or {})  # raises when no row has a label
    head = next(h for h in LABELS if (df[h].astype(str).str.strip() != "").any())
    labels = df[head].astype(str).str.strip()
    counts = labels.value_counts()
    splittable = labels.map(counts).fillna(0) >= 2
    pool = df[splittable]
    strata = labels[splittable]
    if len(pool) < 2 or strata.nunique() < 2:
        raise ValueError(
            "the history is too small to set aside an evaluation set; freeze one explicitly "
            "with `paidan models freeze-eval DATA`"
        )
    n_eval = max(strata.nunique(), round(fraction * len(pool)))
    rest, held = train_test_split(pool, test_size=n_eval, stratify=strata, random_state=seed)
    train = pd.concat([df[~splittable], rest]).sort_index()
    return train, held.sort_index()


def ambiguous_ids(frames: Sequence[pd.DataFrame]) -> tuple[set[str], str]:
    """Ids that name different ticket texts across ``frames``, and an example with its rows.

    An id that names two different texts (a per-file serial number, a reused number) cannot tell
    which ticket a feedback decision or a frozen ticket is: matched by id, one frozen ticket would
    take every other ticket of its number out of training.
    """
    rows = _id_rows(frames)
    ids = id_keys_of(rows["id"])
    texts = rows["text"].fillna("").astype(str).str.strip()
    keyed = ids != ""
    distinct = texts[keyed].groupby(ids[keyed]).nunique()
    bad = set(distinct.index[distinct > 1])
    return bad, _id_example(rows, ids, bad)


def other_ticket_ids(
    frames: Sequence[pd.DataFrame], fb: pd.DataFrame, unclear: set[str]
) -> tuple[set[str], str]:
    """Feedback ids that name another ticket than the rows of ``frames`` with that id.

    Live tickets may be numbered afresh (1, 2, 3 …) while the history has its own 1, 2, 3: a
    decision on live ticket "7" is not a correction of history ticket "7". The feedback stores its
    texts masked (:func:`model.text.clean`) and the history its texts raw, so both are compared
    cleaned: a correction of a ticket with a phone number in it still names its history row.

    Parameters
    ----------
    frames : sequence of DataFrame
        The history and the frozen set (``id``, ``text`` and the reader's ``_source``/``_row``).
    fb : DataFrame
        The deduplicated feedback (:func:`feedback_frame`).
    unclear : set of str
        Ids that name several texts in ``frames`` (:func:`ambiguous_ids`) or among the feedback's
        decisions (:attr:`FeedbackSummary.ambiguous`) already: matched by text.

    Returns
    -------
    (set of str, str)
        The feedback ids whose cleaned text differs from that of the rows of that id, and an
        example with its rows (empty when there is none).
    """
    rows = _id_rows(frames)
    ids = id_keys_of(rows["id"])
    fb_ids = id_keys_of(fb["id"])
    wanted = ids.isin(set(fb_ids) - unclear - {""})
    # Not unclear: every id of ``frames`` names one text, so its cleaned text is the id's.
    texts = rows.loc[wanted, "text"].fillna("").astype(str).map(clean)
    known = dict(zip(ids[wanted], texts, strict=True))
    bad = {
        i
        for i, t in zip(fb_ids, fb["text"].fillna("").astype(str), strict=True)
        if i in known and clean(t) != known[i]
    }
    both = pd.concat([rows, _id_rows([fb])], ignore_index=True)
    return bad, _id_example(both, id_keys_of(both["id"]), bad)


def _id_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    # With the file each row was read from, where the reader gives it: a JSON row is named by its
    # line or element (model.tickets.row_place), not by its data row.
    return pd.concat(
        [
            f[["id", "text", SOURCE_COL, ROW_COL, *[c for c in (PATH_COL, LINE_COL) if c in f]]]
            for f in frames
        ],
        ignore_index=True,
    )


def _id_example(rows: pd.DataFrame, ids: pd.Series, bad: set[str]) -> str:
    """``e.g. '2': a.csv data row 2, b.csv data row 2`` for the first of ``bad`` (masked)."""
    if not bad:
        return ""
    first = sorted(bad)[0]
    # Named as validation names rows: a JSON row by its line, an export's decision by its line.
    places = ", ".join(row_places(rows[ids == first][:3]))
    return f"e.g. {mask_label(first)!r}: {places}"


def eval_keys(eval_df: pd.DataFrame) -> set[str]:
    """Keys of the frozen tickets: ids and masked-text digests (either matches)."""
    keys = {f"id:{i}" for i in id_keys_of(eval_df["id"]) if i}
    keys |= {ticket_key(None, t) for t in eval_df["text"]}
    return keys


def _frozen_decisions(
    summary: FeedbackSummary,
    decisions: pd.DataFrame,
    eval_df: pd.DataFrame,
    id_keys: Callable[[pd.Series], pd.Series],
    mapping: LabelMapping,
) -> None:
    """Count in ``summary`` the feedback ``decisions`` on frozen tickets, and those that name
    another label than the frozen set's (both read through ``mapping``: a rename is no
    disagreement), with an example. ``id_keys`` keys ids as the retrain matches them."""
    summary.on_frozen = len(decisions)
    if decisions.empty:
        return
    # The frozen labels of each key (an id, or a masked text): the lead department, the category.
    frozen: dict[str, tuple[str, str]] = {}
    for key, text, dept, cat in zip(
        id_keys(eval_df["id"]),
        eval_df["text"].fillna("").astype(str),
        eval_df["department"].fillna("").astype(str),
        eval_df["category"].fillna("").astype(str),
        strict=True,
    ):
        labels = (split_departments(dept)[0], cat.strip())
        for k in (key, ticket_key(None, text)):
            if k:
                frozen.setdefault(k, labels)

    def named(head: str, label: str) -> str:
        return mapping.get(head, {}).get(label, label)

    examples = []
    for key, text, tid, dept, cat in zip(
        id_keys(decisions["id"]),
        decisions["text"],
        decisions["id"],
        decisions["department"],
        decisions["category"],
        strict=True,
    ):
        was = frozen.get(key) or frozen.get(ticket_key(None, text))
        if was is None:
            continue
        differ = [
            (head, old, new)
            for head, old, new in zip(LABELS, was, (dept, cat), strict=True)
            if old and new and named(head, old) != named(head, new)
        ]
        if differ:
            head, old, new = differ[0]
            ticket = f"ticket {mask_label(str(tid).strip())!r}" if str(tid).strip() else "a ticket"
            examples.append(
                f"e.g. {ticket}: frozen {head} {mask_label(old)}, decided {mask_label(new)}"
            )
    summary.frozen_disagree = len(examples)
    summary.frozen_example = examples[0] if examples else ""


# -- the retrain ------------------------------------------------------------------------------------


def refuse_feedback_export(given: Sequence[str | Path], path: Path, decisions: int) -> None:
    """Refuse ``path``, a ``--history`` file that is the feedback export (``GET /v1/feedback``),
    as soon as its columns are read (:func:`model.tickets.read_tickets`'s ``on_export``: the
    reader's own warning about it is not said before this).

    Read as history, each of its rows is a "ticket" numbered by the decision's id (which names no
    ticket, so it replaced no history row, and a ticket decided twice trained with both labels);
    beside the feedback database retrain reads itself, each decision trained twice. Told by its
    columns (:data:`model.tickets.FEEDBACK_EXPORT_COLUMNS`), with the command to run instead:
    the file given with ``--feedback``, which reads it as the database is read.
    """
    direct = {Path(p): str(p) for p in given}
    export = shlex.quote(str(path))
    if path in direct:
        rest = " ".join(f"--history {shlex.quote(v)}" for p, v in direct.items() if p != path)
        advice = (
            f"give it with --feedback instead: paidan retrain {rest} --feedback {export} (with "
            "your other options)"
            if rest
            else f"give it with --feedback instead: paidan retrain --history HISTORY --feedback "
            f"{export}, HISTORY the ticket history"
        )
    else:
        folder = next((v for p, v in direct.items() if p in path.parents), None)
        rest = " ".join(f"--history {shlex.quote(v)}" for v in direct.values())
        advice = (
            f"move it out of {folder or 'the history'} and give it with --feedback: paidan "
            f"retrain {rest} --feedback MOVED (MOVED where you moved it; with your other options)"
        )
    twice = (
        "; retrain reads the dispatchers' decisions from the feedback database itself "
        f"({counted(decisions, 'decision')} now), so each of those would be trained twice"
        if decisions
        else ""
    )
    raise TicketFileError(
        f"{path}: is paidan's feedback export (GET /v1/feedback; it has the columns "
        f"{', '.join(FEEDBACK_EXPORT_COLUMNS)}), not ticket history: read as history, each "
        "decision would be trained as a ticket numbered by the decision's id, a ticket decided "
        f"twice with both labels, and none would replace its ticket's history row{twice}: "
        f"{advice}; --feedback keeps each ticket's latest decision, and a decision the feedback "
        "database holds too is read once"
    )


def retrain(
    history: Sequence[str | Path],
    feedback: Sequence[Mapping[str, Any]],
    model_root: str | Path,
    columns: ColumnMap = ColumnMap(),
    mapping: LabelMapping | None = None,
    if_new_feedback: int | None = None,
    promote_if_better: bool = False,
    force: bool = False,
    config: TrainingConfig | None = None,
    report_dir: str | Path | None = None,
    progress: Progress | None = None,
    n_jobs: int | None = -1,
    window: Window = Window(),
    on_window: Callable[[dict[str, Any]], None] | None = None,
    unlabelled: Sequence[str | Path] = (),
    remits: str | Path | Sequence[str | Path] | None = None,
    rules: str | Path | Sequence[str | Path] | None = None,
    feedback_since: datetime | None = None,
    on_warnings: Callable[[list[str]], None] | None = None,
    again: bool = False,
    fit_only: str | Path | Sequence[str | Path] | None = None,
    rule: str = DEFAULT_RULE,
    feedback_files: Sequence[Mapping[str, Any]] = (),
) -> RetrainResult:
    """Build a challenger from history and feedback, register it, score it, maybe promote it.

    Parameters
    ----------
    history : sequence of str or Path
        Labelled history files or directories.
    feedback : sequence of mapping
        Feedback records (see :func:`feedback_frame`).
    model_root : str or Path
        The registry.
    columns : ColumnMap
        Column mapping and CSV delimiter of the history files.
    mapping : dict, optional
        Taxonomy mapping given now, see :func:`read_mapping`; it goes on top of the current
        model's (:func:`merge_mappings`), and its rows that match no label are warned about.
    if_new_feedback : int, optional
        Do nothing unless at least this many feedback records are newer than the current model.
    promote_if_better : bool
        Promote when the promotion rule allows it.
    force : bool
        With ``promote_if_better``: promote even when the rule refuses.
    rule : str
        The promotion rule, ``"bootstrap"`` (default) or ``"margin"``
        (:func:`training.compare.compare`).
    config : TrainingConfig, optional
        Default: the current model's config (so only the data differ), else the defaults.
    report_dir : str or Path, optional
        Where the comparison report goes (default ``<root>/reports``).
    progress : callable, optional
        Progress callback.
    n_jobs : int or None
        Processes for the classifiers' fits, as in :func:`training.train.train`.
    window : Window
        Keep the recent part of the history only (:func:`training.window.select_window`), before
        anything else: the first retrain freezes its evaluation set from that part. Feedback is
        limited by its own ``--feedback-since``.
    on_window : callable, optional
        Called with the window's description (``RetrainResult.window``) as soon as the history is
        read, when a window was asked for: the log says which rows a run read before its long
        fit, also when that fit fails or is killed.
    unlabelled : sequence of str or Path
        Unlabelled ticket files (or directories) whose texts widen the vocabulary and IDF, read as
        ``paidan train --unlabelled`` reads them (``columns`` applies to them too). When none are
        given and the current model was trained with some, :meth:`RetrainResult.warnings` says so.
    remits : str or Path, or a sequence of them, optional
        Files of remits (:mod:`training.remits`) to teach the challenger; default: the current
        model's (``remits.csv`` in its directory), renamed by the mapping.
    rules : str or Path, or a sequence of them, optional
        Files of dispatch rules (:mod:`training.rules`) for the challenger to apply; default: the
        current model's (``rules.csv`` in its directory), renamed by the mapping.
    feedback_since : datetime, optional
        ``--feedback-since``: only the ``feedback`` records from this time on are used; those
        before it are counted in ``result.feedback.before_since`` (with their first and last time
        and the history tickets they corrected without a decision since), for the warning.
    on_warnings : callable, optional
        Called once with :meth:`RetrainResult.warnings` (new labels, repeated tickets,
        conflicting or blank labels…) when the training rows are validated, before the fit, so
        they are said before the wait, also when the fit fails or is killed.
    again : bool
        Train even when a registered version was trained on the same data, config, frozen set
        and libraries (:func:`model.registry.trained_alike`); without it such a run trains
        nothing and says which version that is (``result.duplicate_of``).

    fit_only : str or Path, or a sequence of them, optional
        Labelled ticket files learnt from but never scored, as ``paidan train --fit-only`` reads
        them (``columns`` applies, and the mapping renames their labels). The current model's are
        not reused: when none are given and it was trained with some,
        :meth:`RetrainResult.warnings` names them.
    feedback_files : sequence of mapping
        The ``--feedback`` export files the ``feedback`` records were partly read from
        (:attr:`ExportedFeedback.files`): recorded in the challenger's ``metadata.json``
        (``training_data.feedback_files``), each with the rows of its decisions the fit used.

    Returns
    -------
    RetrainResult
    """
    root = Path(model_root)
    check_model_root(root)  # before the reading, freezing and fitting it would waste
    result = RetrainResult()
    feedback, before = split_feedback(feedback, feedback_since)
    if if_new_feedback is not None:
        new = count_new_feedback(feedback, feedback_cutoff(root))
        if new < if_new_feedback:
            result.skipped = True
            result.message = (
                f"{new} new feedback record(s) since the current model (or one rolled back "
                "from, or a challenger refused against it) was trained; "
                f"--if-new-feedback asks for {if_new_feedback}: not retraining"
            )
            return result

    champion = registry.current_version(root)
    if champion and not (root / registry.CURRENT_FILE).is_file():
        # The champion is current only because it is the newest version; pin it, or the
        # challenger written below would silently become current.
        registry.set_current(root, champion, record=False, expected=champion)
    # The bundled sample's default holds nothing of the city's to inherit (config, renames,
    # labels to report as new); promote_checked replaces it without a comparison.
    inherit_from = None if champion and sample_default(root, champion) else champion
    champion_meta = read_metadata(root / inherit_from) if inherit_from else {}
    if config is None:
        try:
            config = TrainingConfig.from_dict(champion_meta.get("config", {}))
        except ConfigError as e:
            raise ConfigError(
                f"the config of the current model {champion} (its metadata.json), which retrain "
                f"trains with: {e}"
            ) from None
    given = mapping
    result.inherited = inherited_mapping(root / inherit_from, champion_meta) if inherit_from else {}
    mapping = result.mapping = merge_mappings(result.inherited, given)

    named = named_paths(history)
    files = [p for p, _ in named]
    headers: dict[str, list[str]] = {}
    # Per file, its rows that repeat the header line (left out), counted in the metadata as
    # train counts them.
    repeated_headers: dict[str, list[int]] = {}
    # The window is kept while reading: a history far larger than memory retrains on its window.
    if progress is not None:
        progress("reading", 0, 1)
    read = read_window(
        named,
        columns,
        window,
        headers,
        columns.time or "time",
        RETRAIN_OPTIONS,
        repeated_headers=repeated_headers,
        on_export=lambda path, _: refuse_feedback_export(history, path, len(feedback)),
    )
    require_rows(read.rows_in, files)  # as train says it: a header alone holds no history
    result.title_note = title_column_note(headers, columns, "retrained")
    result.id_note = id_column_note(
        headers,
        columns,
        "a dispatcher's decision on one of {its} tickets replaces no history row (both labels "
        "train)",
    )
    hist, result.window = read.select()
    # Read before anything is frozen or fitted: a bad file is one error, as train gives it.
    extra = (
        read_unlabelled(unlabelled, columns, config.unlabelled_max_rows, config.seed)
        if unlabelled
        else None
    )
    sampled = unlabelled_sample_note(extra, config) if extra is not None else {}
    borrowed, borrowed_files = _read_fit_only(as_paths(fit_only), columns)
    if progress is not None:
        progress("reading", 1, 1)
    if result.window and on_window is not None:
        on_window(result.window)
    hist[SOURCE_KIND] = HISTORY
    fb, result.feedback = feedback_frame(feedback)
    if feedback_since is not None:
        result.feedback.before_since = _before_since(before, as_utc(feedback_since))

    # The frozen set: explicit, or carved out of the history the first time.
    if registry.frozen_eval_info(root) is None:
        rest, held = split_eval(hist, seed=config.seed, columns=columns, headers=headers)
        try:
            freeze_eval(
                root,
                held,
                f"{EVAL_FRACTION:.0%} of {', '.join(display_name(name) for _, name in named)}",
            )
            hist, result.eval_frozen_now = rest, True
            # Counted with the frozen tickets left out below, as every later retrain counts
            # them: the first said "53 left out" (feedback only), the next "279" (history too).
            result.eval_excluded = len(held)
        except FileExistsError:
            # Another retrain froze one meanwhile: use it (its tickets are left out below).
            logger.info("another retrain froze the evaluation set meanwhile; using it")
    eval_df, eval_info = read_frozen_eval(root)
    frozen = eval_keys(eval_df)
    # Ids that name different texts in the history or the frozen set match nothing by id.
    # Rows of the frozen set, numbered within it (not by any file they were first read from).
    eval_where = eval_df.drop(columns=[PATH_COL], errors="ignore").assign(
        **{SOURCE_COL: "frozen set", ROW_COL: range(1, len(eval_df) + 1)}
    )
    unclear, result.ambiguous_example = ambiguous_ids([hist, eval_where])
    result.ambiguous_ids = len(unclear)
    # Feedback ids naming several texts among the decisions are matched by text too: decision "7"
    # on one day's ticket 7 is no correction of the history's (or another day's) ticket 7.
    unclear |= result.feedback.ambiguous
    # A feedback id naming another text than the history's or frozen set's is another ticket: its
    # id matches nothing either (so it replaces no history row and is not taken for a frozen one).
    others, result.other_tickets_example = other_ticket_ids([hist, eval_where], fb, unclear)
    result.feedback.other_tickets = len(others)
    unclear |= others

    def id_keys(ids: pd.Series) -> pd.Series:
        return id_keys_of(ids).map(lambda i: f"id:{i}" if i and i not in unclear else "")

    # A decision on a frozen ticket is left out below, with the ticket: it replaces no history row
    # (the first retrain, whose history lacks the tickets it freezes, counted none; later ones
    # counted such rows as replaced, though neither was trained).
    fb_text_keys = fb["text"].map(lambda t: ticket_key(None, t))
    fb_frozen = id_keys(fb["id"]).isin(frozen) | fb_text_keys.isin(frozen)
    _frozen_decisions(result.feedback, fb[fb_frozen], eval_df, id_keys, mapping)
    # Feedback replaces history rows of the same ticket: by id where the id names one (masked) text
    # everywhere, else by the masked text.
    # Keyed as the history's ids (stripped, as deduplication keyed them): " S0002 " is S0002.
    fb_ids = set(id_keys(fb.loc[~fb_frozen, "id"])) - {""}
    fb_texts = set(fb_text_keys[~fb_frozen])
    replaced = id_keys(hist["id"]).isin(fb_ids)
    if unclear:
        by_text = id_keys_of(hist["id"]).isin(unclear)
        replaced |= by_text & hist["text"].map(lambda t: ticket_key(None, t)).isin(fb_texts)
    # A decision without an id replaces the history row of its (masked) text, where one history
    # ticket has that text, as it is matched to the frozen set by its text: it was trained beside
    # the row it corrects. Two history tickets of one text (two citizens) keep their rows.
    loose = set(fb_text_keys[~fb_frozen & (fb["id"].fillna("").astype(str).str.strip() == "")])
    if loose:
        hist_text_keys = hist["text"].map(lambda t: ticket_key(None, t))
        candidate = hist_text_keys.isin(loose)
        tickets = (
            hist.loc[candidate, "id"]
            .astype(str)
            .str.strip()
            .groupby(hist_text_keys[candidate])
            .nunique()
        )
        replaced |= hist_text_keys.isin(set(tickets.index[tickets == 1]))
    result.feedback.replaced_history = int(replaced.sum())
    if before:
        # Corrections of history tickets left out by the bound: the history's label trains.
        old, _ = feedback_frame(before)
        old_ids, old_texts = id_keys(old["id"]), old["text"].map(lambda t: ticket_key(None, t))
        decided = (set(id_keys(fb["id"])) | set(fb_text_keys)) - {""}
        since = old_ids.isin(decided) | old_texts.isin(decided)
        on_frozen = old_ids.isin(frozen) | old_texts.isin(frozen)
        in_history = old_ids.isin(set(id_keys(hist["id"])) - {""}) | old_texts.isin(
            set(hist["text"].map(lambda t: ticket_key(None, t)))
        )
        assert result.feedback.before_since is not None
        result.feedback.before_since["history_tickets"] = int(
            (in_history & ~since & ~on_frozen).sum()
        )
    hist = hist[~replaced]

    rows = pd.concat([hist, fb], ignore_index=True)
    for col in ("id", "title", "text", "department", "category"):
        rows[col] = rows[col].fillna("").astype(str)
    is_eval = id_keys(rows["id"]).isin(frozen) | rows["text"].map(
        lambda t: ticket_key(None, t)
    ).isin(frozen)
    result.eval_excluded += int(is_eval.sum())
    from_history = rows[SOURCE_KIND] == HISTORY
    if from_history.any() and not (from_history & ~is_eval).any():
        # The file the set was frozen from, given for the history: fitted on the feedback alone
        # (or refused as "no row has any text"), minutes later, the challenger lost every label.
        raise TrainingDataError(
            f"{', '.join(map(str, files))}: every one of "
            f"{'its' if len(named) == 1 else 'their'} {int(from_history.sum())} history rows is a "
            f"ticket of the frozen evaluation set ({eval_info.get('source', 'eval/frozen.parquet')}), "
            "which is never trained on, so no history is left to train: give --history the "
            "ticket history (the set is scored, not trained)"
        )
    left = rows[is_eval & (rows[SOURCE_KIND] == HISTORY)]
    left_keys = set(id_keys(left["id"])) | set(left["text"].map(lambda t: ticket_key(None, t)))
    # The tickets frozen now were taken out of the history before: every one was left out.
    result.eval_tickets_excluded = int(
        (
            result.eval_frozen_now
            | id_keys(eval_df["id"]).isin(left_keys - {""})
            | eval_df["text"].map(lambda t: ticket_key(None, t)).isin(left_keys)
        ).sum()
    )
    rows = rows[~is_eval].reset_index(drop=True)

    # Only the rows given now: an inherited rename whose old label has gone is what it did.
    result.unmatched = unmatched_renames(given, [rows, eval_df], result.inherited)
    result.mapped = apply_mapping(rows, mapping)
    if borrowed is not None:
        apply_mapping(borrowed, mapping)  # learnt under the labels the challenger knows
    result.rows = {
        HISTORY: int((rows[SOURCE_KIND] == HISTORY).sum()),
        FEEDBACK: int((rows[SOURCE_KIND] == FEEDBACK).sum()),
    }
    known = {h: set(v.get("labels", [])) for h, v in champion_meta.get("heads", {}).items()}
    # A label the current model merged into 其他 (too rare in the history) is no new one while it
    # stays too rare: called "new … (not in the current model)" every night, it hid the merge
    # that train names. Once it has enough rows to be learnt, it is new to the model.
    merged = merged_into_other(champion_meta, mapping)
    result.known_labels = {head: sorted(labels) for head, labels in known.items()}
    if known:
        for head in LABELS:
            counts = rows.loc[rows[head].str.strip() != "", head].str.strip().value_counts()
            new_labels = {
                str(k): int(v)
                for k, v in counts.items()
                if k not in known.get(head, ())
                and not (k in merged.get(head, {}) and v < config.min_examples)
            }
            if new_labels:
                result.new_labels[head] = new_labels
                origins = _new_label_origins(
                    new_labels,
                    mapping.get(head, {}),
                    result.mapped.get(head, {}),
                    merged.get(head, {}),
                )
                if origins:
                    result.new_label_origins[head] = origins

    shas = [sha256_file(p) for p in files]
    sha = hashlib.sha256()
    sha.update(data_fingerprint(shas, names=[name for _, name in named]).encode())
    sha.update(pd.util.hash_pandas_object(fb[["id", "text", "department", "category"]]).values)
    sha.update(repr(sorted((h, sorted(m.items())) for h, m in mapping.items())).encode())
    if result.window:
        sha.update(repr(sorted(result.window.items())).encode())
    extra_files = unlabelled_files(unlabelled) if unlabelled else []
    if extra_files:
        sha.update(data_fingerprint([f["sha256"] for f in extra_files]).encode())
    else:
        # The champion's unlabelled tickets are not left out silently: a warning says so, naming
        # its files where its metadata records them (models trained since they are recorded).
        data = champion_meta.get("training_data")
        dropped = data.get("unlabelled_rows") if isinstance(data, dict) else None
        if isinstance(dropped, int) and dropped > 0:
            result.unlabelled_dropped, result.champion = dropped, inherit_from
            recorded = data.get("unlabelled_files") if isinstance(data, dict) else None
            if isinstance(recorded, list):
                result.unlabelled_names = [
                    str(f["name"]) for f in recorded if isinstance(f, dict) and "name" in f
                ]
    if borrowed_files:
        sha.update(b"fit-only")
        sha.update(data_fingerprint([f["sha256"] for f in borrowed_files]).encode())
    else:
        # Not reused (a borrowed file may be gone or replaced), but never dropped silently.
        data = champion_meta.get("training_data")
        lent = data.get("fit_only") if isinstance(data, dict) else None
        if isinstance(lent, dict) and isinstance(lent.get("rows"), int) and lent["rows"] > 0:
            result.fit_only_dropped, result.champion = lent["rows"], inherit_from
            result.fit_only_names = [
                str(f["name"])
                for f in lent.get("files") or []
                if isinstance(f, dict) and "name" in f
            ]
    resources = {USERDICT_FILE: None, STOPWORDS_FILE: None}
    if inherit_from:
        for name in resources:
            if (root / inherit_from / name).is_file():
                resources[name] = root / inherit_from / name  # type: ignore[assignment]
    # The remits given, or the champion's, which teach the challenger too, renamed as its labels
    # are; likewise the dispatch rules (a retrain that dropped them would dispatch otherwise).
    remit_rows, rule_rows = (
        _given_or_inherited(
            given,
            root / inherit_from / name if inherit_from else None,
            read,
            mapping,
            sha.update,
            fmt,
        )
        for given, name, read, fmt in (
            (as_paths(remits), REMITS_FILE, read_remits, format_remits),
            (as_paths(rules), RULES_FILE, read_rules, format_rules),
        )
    )
    data_sha = sha.hexdigest()
    alike = registry.trained_alike(root, data_sha, config.to_dict(), eval_info["sha256"])
    if alike and not again:
        # Run again on unchanged data, it registered the same model under another name each time
        # (three versions ending -e6caa7c5), and nothing said the first existed.
        result.skipped, result.duplicate_of = True, alike[-1]
        current = registry.current_version(root)
        result.message = _duplicate_message(alike[-1], current, promote_if_better)
        if promote_if_better and alike[-1] != current:
            # Compared as the challenger it would have trained: a refusal still exits 3.
            result.version, result.model_dir = alike[-1], root / alike[-1]
            result.scores = ensure_scores(root, alike[-1], eval_set=(eval_df, eval_info))
            result.decision = promote_checked(
                root, alike[-1], force=force, report_dir=report_dir, apply=True, rule=rule
            )
        return result
    min_examples = config.min_examples
    # Which export, as it was, the challenger learnt which decisions from: rows_used once the
    # training rows are validated (a decision kept, not superseded, frozen or before the bound).
    exports = [{**f, "rows_used": 0} for f in feedback_files]

    def validated(report: ValidationReport) -> None:
        for f in exports:
            f["rows_used"] = report.line_rows_used.get(f["name"], 0)
        _validated(result, report, min_examples, on_warnings)

    result.train = train_frame(
        rows.drop(columns=[SOURCE_KIND]),
        None,
        config,
        userdict=resources[USERDICT_FILE],
        stopwords=resources[STOPWORDS_FILE],
        extra_texts=(extra.pairs() if extra is not None else ()),
        model_root=root,
        progress=progress,
        n_jobs=n_jobs,
        options=RETRAIN_OPTIONS,
        data_sha=data_sha,
        remits=remit_rows,
        rules=rule_rows,
        repeated_header_rows=sum(map(len, repeated_headers.values())),
        on_validated=validated,
        fit_only=borrowed,
        fit_only_files=borrowed_files,
        data_files=[
            {"name": display_name(name), "sha256": sha}
            for (_, name), sha in zip(named, shas, strict=True)
        ],
        extra_metadata={
            "columns": columns.recorded(),  # of the history files
            "sources": result.rows,
            "feedback": result.feedback.to_dict(),
            "feedback_until": result.feedback.until,
            "mapping": mapping,
            "mapped_rows": result.mapped,
            "eval_sha256": eval_info["sha256"],
            "eval_rows_excluded": result.eval_excluded,
            "ambiguous_ids": result.ambiguous_ids,
            **({"window": result.window} if result.window else {}),
            **({"unlabelled_files": extra_files} if extra_files else {}),
            **({"feedback_files": exports} if exports else {}),
            **sampled,
            "parent": champion,
        },
    )
    result.version = result.train.router.version
    result.model_dir = result.train.model_dir
    result.scores = ensure_scores(root, result.version, eval_set=(eval_df, eval_info))
    # Always compare (the report is useful either way); move the pointer only when asked.
    result.decision = promote_checked(
        root,
        result.version,
        force=force,
        report_dir=report_dir,
        apply=promote_if_better,
        rule=rule,
    )
    result.message = f"challenger {result.version} written to {result.model_dir}"
    return result


def _read_fit_only(
    files: list[Path], columns: ColumnMap
) -> tuple[pd.DataFrame | None, list[dict[str, str]]]:
    """The ``--fit-only`` files' tickets and names with SHA-256s, read as ``train`` reads them."""
    if not files:
        return None, []
    named = named_paths(files)
    borrowed = read_tickets(named, columns)
    require_rows(len(borrowed), [p for p, _ in named])
    return borrowed, [
        {"name": display_name(name), "sha256": sha256_file(path)} for path, name in named
    ]


def _duplicate_message(version: str, current: str | None, promote_if_better: bool) -> str:
    where = (
        "the current model"
        if version == current
        else "not current: compared with it as the challenger"
        if promote_if_better
        else f"not current; promote it with: paidan models promote {version}"
    )
    return (
        f"the same history, feedback, mapping, config and frozen set are already registered as "
        f"{version} ({where}): nothing trained; --again trains another version of them"
    )


def _before_since(records: Sequence[Mapping[str, Any]], since: datetime) -> dict[str, Any]:
    """:attr:`FeedbackSummary.before_since` of the ``records`` before ``since`` (the history
    tickets among them are counted once the history is read)."""
    times = [t for r in records if (t := _as_utc(r.get("created_at"))) is not None]
    return {
        "since": since.isoformat(),
        "records": len(records),
        "oldest": min(times).isoformat() if times else None,
        "newest": max(times).isoformat() if times else None,
        "history_tickets": 0,
    }


def _as_utc(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    return as_utc(value)
