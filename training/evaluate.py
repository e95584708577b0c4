"""``paidan evaluate``: score a saved model on labelled tickets and write a JSON and Markdown report."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from model.artifact import (
    ModelLoadError,
    OutputPathError,
    check_name_lengths,
    check_not_directory_name,
    check_not_input,
    check_utf8_name,
    load_router,
)
from model.config import OTHER_LABEL
from model.router import (
    MIN_CO_TICKETS,
    SIMILAR_K,
    Ranking,
    Router,
    SimilarTicket,
    co_dispatch,
)
from model.rules import DispatchRule
from model.settings import get_settings
from model.text import counted, mask_label, quoted
from model.tickets import (
    CO_COL,
    JOINT_JOINER,
    LABELS,
    PATH_COL,
    ROW_COL,
    SOURCE_COL,
    ColumnMap,
    expand_paths,
    has_text,
    id_column_note,
    iter_tickets,
    like_hint,
    named_paths,
    require_rows,
    split_comma_listed,
    title_column_note,
)
from training.markdown import md_text, md_url
from training.metrics import (
    format_auto_precision,
    format_f1,
    no_auto_note,
    ranked_report,
    unknown_label_rows,
)
from training.validate import (
    UNLABELLED_LISTED,
    TrainingDataError,
    comma_listed_message,
    duplicates_message,
    find_merged,
    frame_scientific_ids,
    label_columns_advice,
    masked_counts,
    merged_mapping,
    repeated_header_summary,
    row_places,
    rows_of,
    scientific_ids_message,
    ticket_keys,
)
from training.window import row_place

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


# Cosine similarity above which an evaluation ticket counts as one the model was trained on.
SEEN_SIMILARITY = 0.999
# Share of such tickets above which a model's figures on a set are no fair measure of it.
SEEN_SHARE_LIMIT = 0.1
# Rows of a CSV file evaluate reads and scores at a time.
CHUNK_ROWS = 10_000


def seen_rows(
    router: Router, X: sp.csr_matrix, hits: Sequence[Sequence[SimilarTicket]] | None = None
) -> int:
    """How many tickets are (near-)identical to a ticket the router was trained on.

    Each ticket's nearest stored ticket in the router's similar-ticket index (cosine ≥
    :data:`SEEN_SIMILARITY`), found as a dispatcher's similar tickets are: a model scores too well
    on the tickets it saw for those figures to measure it.

    Parameters
    ----------
    router : Router
        A fitted router; one without an index has seen nothing it can tell.
    X : sparse matrix
        The tickets as :meth:`Router.transform` gives them (the caller scores the same matrix).
    hits : sequence of list of SimilarTicket, optional
        The tickets' similar tickets, when the caller has searched already (the first of each
        is its nearest): the search is not run again.

    Returns
    -------
    int
    """
    if hits is None:
        if router.index is None or X.shape[0] == 0 or router.index.matrix.shape[0] == 0:
            return 0
        hits = router.index.query(X, 1)
    return sum(1 for nearest in hits if nearest and nearest[0].similarity >= SEEN_SIMILARITY)


def joint_advice_report(
    co_departments: Sequence[str],
    leads: Sequence[str],
    similar: Sequence[Sequence[SimilarTicket]],
    min_tickets: int = MIN_CO_TICKETS,
    *,
    true_leads: Sequence[str],
) -> dict[str, Any]:
    """How right the joint-dispatch advice (:func:`model.router.co_dispatch`) is on known tickets
    whose suggested lead is right.

    The advice names the departments to involve beside the suggested lead (and the page keeps it
    if the dispatcher changes the lead): on a ticket whose suggested lead is wrong it is advice
    for another matter, right or wrong only by coincidence of names. Such tickets are counted
    (``wrong_lead_rows``), not scored; the lead's own accuracy is the department head's figure.

    Parameters
    ----------
    co_departments : sequence of str
        Each ticket's true co-departments, joined by :data:`~model.tickets.JOINT_JOINER` (``""``:
        a single-department ticket).
    leads : sequence of str
        The department the model suggested for each ticket.
    similar : sequence of list of SimilarTicket
        Each ticket's similar tickets, as a dispatcher sees them.
    min_tickets : int
        As in :func:`~model.router.co_dispatch`.
    true_leads : sequence of str
        Each ticket's true (lead) department.

    Returns
    -------
    dict
        ``rows`` (every ticket) and ``wrong_lead_rows`` (those whose suggested lead is wrong, not
        scored; ``joint_wrong_lead`` of them joint). Of the others: ``joint_rows`` and how many of
        them got at least one of their co-departments (``joint_any``) or exactly theirs
        (``joint_exact``); ``single_rows`` and how many got advice all the same
        (``single_with_advice``); over (ticket, department) pairs ``advised``, ``advised_right``,
        ``true_co_departments``, ``precision`` and ``recall`` (``None`` when there is nothing to
        divide by).
    """
    counts = JointCounts(min_tickets)
    for co, lead, found, truth in zip(co_departments, leads, similar, true_leads, strict=True):
        counts.add(co, lead, found, truth)
    return counts.report()


class JointCounts:
    """:func:`joint_advice_report` a ticket at a time: its counts, not the tickets, are kept."""

    def __init__(self, min_tickets: int = MIN_CO_TICKETS) -> None:
        self.min_tickets = min_tickets
        self.rows = 0
        self.c = dict.fromkeys(
            (
                "wrong_lead_rows",
                "joint_wrong_lead",
                "joint_rows",
                "joint_any",
                "joint_exact",
                "single_rows",
                "single_with_advice",
                "advised",
                "advised_right",
                "true_co_departments",
            ),
            0,
        )

    def add(self, co: str, lead: str, found: Sequence[SimilarTicket], true_lead: str) -> None:
        """Count one ticket: its true co-departments, suggested lead, similar tickets and true
        lead (the advice is scored only when the suggested lead is it)."""
        c = self.c
        self.rows += 1
        truth = {d for d in co.split(JOINT_JOINER) if d}
        if lead != true_lead:
            c["wrong_lead_rows"] += 1
            c["joint_wrong_lead"] += bool(truth)
            return
        advice = {a.label for a in co_dispatch(lead, found, self.min_tickets)}
        c["advised"] += len(advice)
        c["advised_right"] += len(advice & truth)
        c["true_co_departments"] += len(truth)
        if truth:
            c["joint_rows"] += 1
            c["joint_any"] += bool(advice & truth)
            c["joint_exact"] += advice == truth
        else:
            c["single_rows"] += 1
            c["single_with_advice"] += bool(advice)

    def report(self) -> dict[str, Any]:
        c = self.c
        return {
            "min_tickets": self.min_tickets,
            "rows": self.rows,
            **c,
            "precision": c["advised_right"] / c["advised"] if c["advised"] else None,
            "recall": c["advised_right"] / c["true_co_departments"]
            if c["true_co_departments"]
            else None,
        }


def evaluate_router(
    router: Router,
    titles: Sequence[str],
    texts: Sequence[str],
    labels: dict[str, Sequence[str]],
    batch: int = 2_000,
    co_departments: Sequence[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    similar_k: int = SIMILAR_K,
) -> dict[str, Any]:
    """Score a router on tickets whose true labels are known.

    Parameters
    ----------
    router : Router
        A fitted router.
    titles, texts : sequence of str
        The tickets.
    labels : dict
        True labels per head (``"department"``, ``"category"``); empty strings mean unknown. A head
        with no known label, or that the model lacks, is left out of the report.
    batch : int
        Tickets featurised at a time.
    co_departments : sequence of str, optional
        True co-departments per ticket (see :func:`joint_advice_report`). When some ticket has any
        and the model has a department head and similar tickets, the report has ``joint``.
    progress : callable, optional
        Called as ``progress("scoring", done, total)`` after each batch.
    similar_k : int, default SIMILAR_K
        Similar tickets the joint-dispatch advice reads (the server's ``PAIDAN_SIMILAR_K``).

    Returns
    -------
    dict
        ``n`` and, per head, the figures of :func:`training.metrics.head_report`; ``joint``, see
        ``co_departments``.
    """
    scores = Scores(router, batch, similar_k)
    scores.add(titles, texts, labels, co_departments, progress)
    return scores.report()


class _HeadRows:
    """What a report reads of one head's scores on each ticket (:func:`ranked_report`)."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}  # each true label, by the code its rows keep
        self.codes: list[np.ndarray] = []
        self.best: list[np.ndarray] = []
        self.confidence: list[np.ndarray] = []
        self.top3: list[np.ndarray] = []
        self.auto: list[np.ndarray] = []
        self.catch_all: list[np.ndarray] = []  # the department suggested is 其他 (Ranking)
        # Per row, the dispatch rule that gave its label (-1: the model's ranking) and the label
        # the model itself ranked first: what the report's per-rule figures compare.
        self.rule: list[np.ndarray] = []
        self.model_first: list[np.ndarray] = []

    def add(self, given: Sequence[str], ranking: Ranking) -> None:
        """The rows of one batch: their true labels and the head's :class:`Ranking` of them (its
        top 3; whether the router dispatches each without a person, ``Ranking.auto``)."""
        values = self.values
        self.codes.append(
            np.fromiter(
                (values.setdefault(v, len(values)) for v in given), dtype=np.int32, count=len(given)
            )
        )
        self.best.append(ranking.order[:, 0].astype(np.int32))
        self.confidence.append(ranking.scores[:, 0])
        self.top3.append(ranking.order[:, :3].astype(np.int32))
        # A ticket with no known word goes to a person whatever its confidence: counted as auto
        # here, the report's auto coverage and precision were of tickets the service never
        # dispatches without one.
        self.auto.append(ranking.auto)
        self.catch_all.append(
            np.zeros(len(given), dtype=bool) if ranking.catch_all is None else ranking.catch_all
        )
        n = len(given)
        self.rule.append(
            np.full(n, -1, dtype=np.int32)
            if ranking.rule is None
            else ranking.rule.astype(np.int32)
        )
        own = ranking.order[:, 0] if ranking.model_first is None else ranking.model_first
        self.model_first.append(own.astype(np.int32))


class Scores:
    """A router's scores on labelled tickets, added a batch of tickets at a time, and the report
    of :func:`evaluate_router` on all of them.

    Per ticket it keeps a code of each true label, the predicted label's column and probability
    and the top-3 columns: not the tickets, every label's probability or the similar tickets
    (the joint-dispatch advice is counted as each batch is scored), so that a file of hundreds of
    thousands of tickets is scored in the memory of a few thousand.
    """

    def __init__(self, router: Router, batch: int = 2_000, similar_k: int = SIMILAR_K) -> None:
        self.router = router
        self.batch = batch
        self.similar_k = similar_k  # the advice reads as many as the server's does
        self.heads = {name: _HeadRows() for name in router.heads}
        # One search serves both: the nearest ticket tells a seen one, five give the advice.
        self.advise = "department" in router.heads and router.index is not None
        self.joint = JointCounts()
        self.any_joint = False  # whether some ticket has co-departments
        self.n = 0
        self.seen = 0

    def add(
        self,
        titles: Sequence[str],
        texts: Sequence[str],
        labels: dict[str, Sequence[str]],
        co_departments: Sequence[str] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """Score tickets (arguments as :func:`evaluate_router`'s)."""
        router = self.router
        tickets = list(zip(titles, texts, strict=True))
        blank = [""] * len(tickets)
        given = {name: blank if labels.get(name) is None else labels[name] for name in router.heads}
        co = blank if co_departments is None else co_departments
        self.any_joint |= any(co)
        for start in range(0, len(tickets), self.batch):
            end = min(start + self.batch, len(tickets))
            # Once, for every use, and matched with its dispatch rules.
            X, hits = router.features_and_hits(tickets[start:end])
            leads = None
            no_terms = None
            for name, ranking in router.rank(X, 3, hits).items():  # as the router decides
                self.heads[name].add(given[name][start:end], ranking)
                if name == "department":
                    leads = self.heads[name].best[-1]  # the label each ticket is suggested
                    no_terms = ranking.no_terms
            index = router.index if self.advise else None
            # At least the nearest, which tells a seen ticket; the advice reads similar_k.
            found = index.query(X, max(self.similar_k, 1)) if index is not None else None
            self.seen += seen_rows(router, X, found)
            if found is not None:
                assert leads is not None and no_terms is not None
                learnt = router.labels_of("department")
                for i, similar in enumerate(found):
                    if given["department"][start + i] != "":
                        # As Router.predict: no similar ticket, so no advice, without a known word.
                        advised = [] if no_terms[i] else similar[: self.similar_k]
                        self.joint.add(
                            co[start + i], learnt[leads[i]], advised, given["department"][start + i]
                        )
            if progress:
                progress("scoring", end, len(tickets))
        self.n += len(tickets)

    def report(self) -> dict[str, Any]:
        """:func:`evaluate_router`'s report of the tickets added."""
        router = self.router
        report: dict[str, Any] = {
            "n": self.n,
            "model_version": router.version,
            "seen_rows": self.seen,
        }
        for name, head in router.heads.items():
            rows = self.heads[name]
            if not rows.codes:
                continue
            # What the rankings number: the learnt labels, then any a dispatch rule gives alone.
            labels = router.labels_of(name)
            # A label the model cannot suggest is masked like a text (a dispatcher's field may
            # hold a phone number): the report's per-class table and confusion matrix quote it.
            learnt = set(labels)
            shown = [v if not v or v in learnt else mask_label(v) for v in rows.values]
            y = np.asarray(shown, dtype=str)[np.concatenate(rows.codes)]
            known = y != ""
            if not known.any():
                continue
            report[name] = ranked_report(
                y[known],
                np.concatenate(rows.best)[known],
                np.concatenate(rows.confidence)[known],
                np.concatenate(rows.top3)[known],
                labels,
                head.threshold,
                auto=np.concatenate(rows.auto)[known],
                catch_all=np.concatenate(rows.catch_all)[known],
            )
            # True labels the model never learnt: scored wrong (but no class of macro-F1, see
            # ranked_report), and usually a spelling or a taxonomy that differs from the training
            # data's, which the reader must be told of. Most rows first, as the warning lists them.
            report[name]["unknown_labels"] = unknown_label_rows(y[known], labels)
            if router.rules:
                report[name]["rules"] = rule_rows(
                    router.rules,
                    name,
                    y[known],
                    np.concatenate(rows.rule)[known],
                    np.asarray(labels, dtype=str)[np.concatenate(rows.model_first)[known]],
                )
        if self.any_joint and self.advise:
            report["joint"] = {**self.joint.report(), "similar_k": self.similar_k}
        return report


def rule_rows(
    rules: Sequence[DispatchRule],
    head: str,
    truth: np.ndarray,
    rule_of_row: np.ndarray,
    model_label: np.ndarray,
) -> list[dict[str, Any]]:
    """Per dispatch rule that names a label of ``head``, in the rules' order: the scored tickets
    it gave that label to, on how many of them the label was right, and on how many the model's
    own first label would have been (``truth``, ``rule_of_row`` (-1: none) and ``model_label``
    per scored row). A rule right less often than the model it overrules is worth a second look;
    one that decided no ticket may be misspelt, or its matter gone."""
    out = []
    for r, rule in enumerate(rules):
        label = rule.label(head)
        if not label:
            continue
        mine = rule_of_row == r
        out.append(
            {
                "rule": rule.source or f"rule {r + 1}",
                "keywords": list(rule.keywords),
                "label": label,
                "decision": rule.decision,
                "tickets": int(mine.sum()),
                "right": int((truth[mine] == label).sum()),
                "model_right": int((truth[mine] == model_label[mine]).sum()),
            }
        )
    return out


def rules_summary_line(head: str, rules: Sequence[dict[str, Any]]) -> str:
    """One sentence of a head's :func:`rule_rows`."""
    tickets = sum(r["tickets"] for r in rules)
    right = sum(r["right"] for r in rules)
    model = sum(r["model_right"] for r in rules)
    unused = sum(1 for r in rules if not r["tickets"])
    return (
        f"{head}: dispatch rules decided {counted(tickets, 'ticket')}, right on {right} of them "
        f"(the model alone: {model})"
        + (f"; {counted(unused, 'rule')} decided none" if unused else "")
    )


def joint_summary(joint: dict[str, Any]) -> str:
    """One sentence of a :func:`joint_advice_report`."""

    def share(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"

    similar = counted(joint.get("similar_k", SIMILAR_K), "similar ticket")
    joint_rows = counted(joint["joint_rows"], "joint ticket")
    wrong = joint.get("wrong_lead_rows", 0)
    # The advice is beside the suggested lead: tickets whose lead was wrong are not scored.
    scope = ""
    if "wrong_lead_rows" in joint:  # a report written before 2026-12-07 scored them all
        scope = (
            f", on the {counted(joint['rows'] - wrong, 'ticket')} whose suggested lead was right"
        )
        if wrong:
            scope += (
                f"; {counted(wrong, 'ticket')} with a wrong lead "
                f"({joint.get('joint_wrong_lead', 0)} of them joint) not scored"
            )
    return (
        f"Joint-dispatch advice (from {similar}, "
        f"{joint['min_tickets']} of them "
        f"needed{scope}): precision {share(joint['precision'])}, recall "
        f"{share(joint['recall'])}; "
        f"{joint['joint_any']} of {joint_rows} got at least one of their "
        f"co-departments, {joint['joint_exact']} exactly theirs; {joint['single_with_advice']} of "
        f"{counted(joint['single_rows'], 'single-department ticket')} got advice."
    )


def merged_unlearnt(meta: dict[str, Any], router: Router) -> dict[str, set[str]]:
    """Per head of ``router``, the labels its training merged into 其他 (masked, as recorded)
    when 其他 was then too rare to learn (``other_too_rare_to_learn``), so it has no label for
    them (:func:`training.validate.merged_mapping` leaves such a head out)."""
    data = meta.get("training_data")
    validation = data.get("validation") if isinstance(data, dict) else None
    merged = validation.get("merged_into_other") if isinstance(validation, dict) else None
    if not isinstance(merged, dict):
        return {}
    return {
        h: {str(k) for k in labels}
        for h, labels in merged.items()
        if h in router.heads
        and OTHER_LABEL not in router.heads[h].labels
        and isinstance(labels, dict)
        and labels
    }


def report_warnings(report: dict[str, Any]) -> list[str]:
    """What the reader of an evaluation must know besides its figures.

    Parameters
    ----------
    report : dict
        An :func:`evaluate` report.

    Returns
    -------
    list of str
        Tickets the model was trained on (above :data:`SEEN_SHARE_LIMIT` of them), skipped empty
        rows and rows that repeat the header line, rows that repeat an earlier row (scored once),
        and per head an auto threshold that no ticket reaches and the true labels that the model
        never learnt.
    """
    out = []
    seen, n = report.get("seen_rows", 0), report.get("n", 0)
    if seen > SEEN_SHARE_LIMIT * n:
        of_n = f"of the {counted(n, 'ticket')}"
        out.append(
            f"{counted(seen, f'{of_n} is', f'{of_n} are')} (nearly) identical to tickets the model "
            "was trained on, so these figures are inflated; evaluate on tickets it has not seen"
        )
    for head, labels in report.get("merged_into_other", {}).items():
        listed = ", ".join(
            f"{mask_label(str(k))!r} ({rows_of(n)})" for k, n in list(labels.items())[:20]
        )
        more = f" and {len(labels) - 20} more" if len(labels) > 20 else ""
        merged, scored = sum(labels.values()), report.get(head, {}).get("n", 0)
        # Most rows scored 其他 and counted right (accuracy 0.98 for a model of 60 tickets that
        # routes nearly nothing to a department): the figures measure something else.
        mostly = (
            f"; that is {merged} of the {scored} {head} rows scored ({100 * merged // scored} %): "
            f"the figures above mostly measure telling {OTHER_LABEL!r} apart, and "
            f"{OTHER_LABEL!r} sends a ticket to no {head}"
            if scored and 2 * merged > scored
            else ""
        )
        out.append(
            f"scored {counted(merged, f'{head} row')} as {OTHER_LABEL!r}, as the "
            f"model's training merged their rare labels into it: {listed}{more}{mostly}"
        )
    absent = report.get("absent_label_columns") or {}
    for head, column in absent.get("heads", {}).items():
        have = absent.get("columns", [])
        listed = ", ".join(map(quoted, have[:30])) + (
            f" and {len(have) - 30} more" if len(have) > 30 else ""
        )
        like = absent.get("like", {}).get(head)
        out.append(
            f"{head} head not scored: the data has no {quoted(column)} column (it has {listed}); map "
            f"the {head} label column with --{head}-col{f'; {like}' if like else ''}"
        )
    if report.get("title_column_note"):
        out.append(report["title_column_note"])
    if report.get("id_column_note"):
        out.append(report["id_column_note"])
    if report.get("skipped_empty_text"):
        out.append(f"skipped {rows_of(report['skipped_empty_text'])} with empty text")
    if report.get("skipped_repeated_header"):
        out.append(repeated_header_summary(report["skipped_repeated_header"]))
    if rounded := report.get("ids_in_scientific_notation"):
        first = rounded["first"]
        out.append(scientific_ids_message(rounded["rows"], first["id"], first["where"]))
    if report.get("duplicate_rows"):
        out.append(
            duplicates_message(
                report["duplicate_examples"],
                report["duplicate_rows"],
                report.get("files_read_twice"),
            )
        )
    for head, labels in report.get("comma_listed", {}).items():
        out.append(comma_listed_message(head, labels))
    for head in LABELS:
        if n := report.get("unlabelled_rows", {}).get(head):
            places = report.get("unlabelled_examples", {}).get(head, [])
            where = ", ".join(places) + (f" and {n - len(places)} more" if n > len(places) else "")
            scored = report.get(head, {}).get("n", 0)
            out.append(
                f"{rows_of(n)} {'has' if n == 1 else 'have'} no {head} label, so the {head} "
                + (
                    f"figures are over the other {counted(scored, 'ticket')}"
                    if scored
                    else "head is not scored"
                )
                + f": {where}"
            )
        if reason := report.get(head, {}).get("f1_undefined"):
            out.append(f"{head} head: macro- and weighted-F1 are undefined: {reason}")
        auto = report.get(head, {}).get("auto")
        if auto and auto["precision"] is None:
            out.append(f"{head} head: {no_auto_note(auto)}")
        for rule in report.get(head, {}).get("rules", []):
            if rule["right"] < rule["model_right"]:
                out.append(
                    f"{head} head: dispatch rule {rule['rule']} ({' '.join(rule['keywords'])} → "
                    f"{mask_label(rule['label'])}) was right on {rule['right']} of the "
                    f"{counted(rule['tickets'], 'ticket')} it decided, the model alone on "
                    f"{rule['model_right']}"
                )
        unknown = dict(report.get(head, {}).get("unknown_labels", {}))
        if lost := report.get(head, {}).get("merged_unlearnt"):
            ranked = sorted(lost.items(), key=lambda kv: -kv[1])
            listed = ", ".join(f"{mask_label(str(k))!r} ({rows_of(n)})" for k, n in ranked[:20])
            more = f" and {len(lost) - 20} more" if len(lost) > 20 else ""
            rows, one = sum(lost.values()), len(lost) == 1 and sum(lost.values()) == 1
            least = report[head].get("min_examples")
            labels = "a label" if len(lost) == 1 else "labels"
            out.append(
                f"{counted(rows, f'{head} row has {labels}', f'{head} rows have {labels}')} the "
                f"model's training merged into {OTHER_LABEL!r}, itself too rare to learn, so the "
                f"model has no label for {'it' if one else 'them'} (always scored wrong): "
                f"{listed}{more}; label more tickets of {'it' if len(lost) == 1 else 'each'}"
                f"{f' ({least} at least)' if least else ''} to learn "
                f"{'it' if len(lost) == 1 else 'them'}"
            )
            unknown = {k: n for k, n in unknown.items() if k not in lost}
        if unknown:
            # Most rows first (a report from before listed them by name).
            ranked = sorted(unknown.items(), key=lambda kv: -kv[1])
            listed = ", ".join(f"{mask_label(str(k))!r} ({rows_of(n)})" for k, n in ranked[:20])
            more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
            rows, one = sum(unknown.values()), len(unknown) == 1
            # No ticket of the training data had them: a spelling of a known label, or a label
            # new since; which, the figures cannot tell.
            out.append(
                f"{counted(rows, f'{head} row has', f'{head} rows have')} "
                f"{counted(len(unknown), 'label')} the model does not know, always "
                f"scored wrong (in accuracy and top-3; macro- and weighted-F1 are over the labels "
                f"it knows): {listed}{more}; the model was trained on no ticket of "
                f"{'it: if it is' if one else 'them: if one is'} a label the model knows, spelt "
                "otherwise, rename it in the data as the model spells it; if "
                f"{'it is ' if one else ''}new, train a model on tickets of it"
            )
    return out


def evaluate(
    model_dir: str | Path,
    paths: Sequence[str | Path],
    report_path: str | Path | None = None,
    columns: ColumnMap = ColumnMap(),
    model_root: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    chunk_rows: int | None = CHUNK_ROWS,
    similar_k: int | None = None,
) -> dict[str, Any]:
    """Load a model, score it on labelled files and write the report files.

    Parameters
    ----------
    model_dir : str or Path
        A model directory.
    paths : sequence of str or Path
        Labelled ticket files.
    report_path : str or Path, optional
        Where to write the JSON; a Markdown report and PNG plots are written beside it
        (``<stem>.md``, ``<stem>.confusion-<head>.png``, ``<stem>.reliability.png``).
    columns : ColumnMap
        Column mapping and CSV delimiter of the input files.
    model_root : str or Path, optional
        Refuse a model outside this root.
    progress : callable, optional
        Progress callback ``("scoring", rows read, rows estimated)``.
    chunk_rows : int or None
        Rows of a file read and scored at a time (``None``: each file whole), in every format
        (:func:`model.tickets.table_chunks`). Per ticket only what the figures need is kept
        (:class:`Scores`, :class:`Repeats`).
    similar_k : int, optional
        Similar tickets the joint-dispatch advice reads; default the server's
        ``PAIDAN_SIMILAR_K``, so that the ``joint`` figures are of the advice it gives.

    Returns
    -------
    dict
        The report.
    """
    if report_path is not None and Path(report_path).suffix.lower() == ".md":
        # The Markdown report goes to <stem>.md, beside the JSON: here it would overwrite it.
        raise OutputPathError(
            f"--report {report_path} names the Markdown report, which is written beside the JSON "
            f"one; give the JSON path ({Path(report_path).with_suffix('.json')})"
        )
    if report_path is not None:
        check_not_directory_name(report_path, "--report", "report.json")
        check_utf8_name(report_path, "--report")
        check_not_input(report_files(Path(report_path)), paths, "--report")
        check_name_lengths(report_path, report_files(Path(report_path)), "--report")
    from training.retrain import apply_mapping, inherited_mapping  # retrain imports this module

    router, metadata = load_router(model_dir, model_root)
    # The renames the model was trained with (`paidan retrain --mapping`), as `compare` scores it:
    # otherwise a renamed department's tickets read as a label the model does not know. A mapping
    # it cannot read is said after the files' errors, as when they were read whole first.
    mapping_error = None
    try:
        mapping = inherited_mapping(Path(model_dir), metadata)
    except ValueError as e:
        mapping, mapping_error = {}, ModelLoadError(str(e))
    # Then the rare labels its training merged into 其他 (validate): the model answers 其他 for
    # them by design, and scored under their own names each right answer counted as wrong.
    merging = merged_mapping(metadata, {h: list(head.labels) for h, head in router.heads.items()})
    headers: dict[str, list[str]] = {}
    repeated_headers: dict[str, list[int]] = {}  # per file, its rows that repeat the header line
    # Listed once, for the estimate and the reading: listed twice, what a directory skips (a
    # report kept in it) was noted twice.
    named = named_paths(paths)
    total = estimated_rows([path for path, _ in named]) if progress else 0
    if similar_k is None:
        similar_k = get_settings().similar_k
    scores = Scores(router, similar_k=similar_k)
    repeats = Repeats()
    rows = skipped = 0
    mapped: dict[str, dict[str, int]] = {}  # per head, old label -> rows renamed by the mapping
    merged: dict[str, dict[str, int]] = {}  # per head, label -> rows scored as 其他
    comma: dict[str, dict[str, int]] = {}  # per head, label listing departments with 、 -> rows
    labelled = False
    unlabelled: dict[str, int] = {}  # per head, the rows scored without its label
    unlabelled_places: dict[str, list[str]] = {}  # per head, the first of them
    # Ids in scientific notation (Excel's 2.02401E+17): how many, and the first with its place.
    rounded_ids, first_rounded = 0, None
    if progress:
        progress("scoring", 0, max(total, 1))
    # A file is read, and scored, chunk_rows rows at a time, whatever its format.
    for chunk in iter_tickets(named, columns, headers, chunk_rows, repeated_headers):
        read_before, rows = rows, rows + len(chunk)
        if found_ids := frame_scientific_ids(chunk):
            rounded_ids += found_ids[0]
            first_rounded = first_rounded or {"id": found_ids[1], "where": found_ids[2]}
        with_text = has_text(chunk) if len(chunk) else np.ones(0, dtype=bool)
        skipped += int((~with_text).sum())
        df = chunk[with_text]
        # The same ticket read twice (a file given twice, exports that overlap) is scored once,
        # as training keeps it once: it counted twice in every figure.
        df = df[repeats.first_of(df)].copy() if len(df) else df
        del chunk
        if mapping_error is not None or df.empty:
            continue  # read on, for the errors of the files
        _add_counts(mapped, apply_mapping(df, mapping) if mapping else {})
        if "department" in router.heads:
            # 人社、住建 where the model knows both: a joint dispatch, as training reads one.
            listed = split_comma_listed(df, set(router.heads["department"].labels))
            _add_counts(comma, {"department": listed} if listed else {})
        # Recorded masked (a number typed into a label), the merged labels are looked up as the
        # data spells them.
        found = {}
        for h, renames in merging.items():
            spelt = set(df[h])
            if h == "department":  # apply_mapping renames co-departments too
                spelt.update(
                    d for co in df[CO_COL].fillna("") if co for d in co.split(JOINT_JOINER)
                )
            if hit := find_merged(renames, spelt, router.heads[h].labels):
                found[h] = hit
        _add_counts(merged, apply_mapping(df, found))
        labels = {h: df[h].str.strip().tolist() for h in LABELS}
        labelled |= any(any(labels[h]) for h in LABELS if h in router.heads)
        for h in LABELS:
            # Rows this head cannot score (an empty cell, a workbook's merged cell read in its
            # first row alone): counted and the first named, as train names them.
            empty = np.fromiter((not v for v in labels[h]), dtype=bool, count=len(df))
            if h in router.heads and empty.any():
                unlabelled[h] = unlabelled.get(h, 0) + int(empty.sum())
                places = unlabelled_places.setdefault(h, [])
                if len(places) < UNLABELLED_LISTED:
                    shown = df[empty].head(UNLABELLED_LISTED - len(places))
                    places += row_places(shown).tolist()
        # A file read whole is scored a chunk at a time all the same, for the progress shown.
        step = chunk_rows or len(df)
        for start in range(0, len(df), step):
            end = min(start + step, len(df))
            scores.add(
                df["title"].iloc[start:end].tolist(),
                df["text"].iloc[start:end].tolist(),
                {h: v[start:end] for h, v in labels.items()},
                co_departments=df[CO_COL].iloc[start:end].tolist(),
            )
            if progress:
                done = read_before + (rows - read_before) * end // len(df)
                # The estimate (a sheet's declared size, lines) may be reached before the end,
                # or exactly at it: the stage is done when the input is (below), never before.
                if done != total:
                    progress("scoring", done, max(total, done + 1))
    require_rows(rows, paths)
    if rows == skipped:
        # Said as "no row has a label" before, which sent users to the label columns.
        raise TrainingDataError(
            f"{', '.join(map(str, paths))}: no row has any text (every text is empty; a title "
            "alone is no ticket); map the text column with --text-col"
        )
    if mapping_error is not None:
        raise mapping_error
    if not labelled:
        # Nothing could be scored: an empty report would read as a finished evaluation.
        heads = [h for h in LABELS if h in router.heads]
        raise TrainingDataError(
            f"{', '.join(map(str, paths))}: no row has a {' or a '.join(heads)} label to score "
            f"the model on{label_columns_advice(headers, columns, heads)}"
        )
    if progress:
        progress("scoring", rows, rows)
    report = scores.report()
    report["skipped_empty_text"] = skipped
    if rounded_ids:
        report["ids_in_scientific_notation"] = {"rows": rounded_ids, "first": first_rounded}
    # Rows that repeat the header line (files joined with `copy a.csv+b.csv`): not tickets, left
    # out; warned of in the log alone, they were missing from the report an administrator keeps.
    report["skipped_repeated_header"] = sum(map(len, repeated_headers.values()))
    # A head whose label column (by its default name: a mapped one missing is refused) no file
    # has was left out of the report without a word, as if the model had no such head.
    have = list(dict.fromkeys(c for cols in headers.values() for c in cols))
    absent = {
        h: src
        for h in LABELS
        if h in router.heads
        and (src := columns.source_for(h)) is not None
        and not any(n in have for n in columns.names(h))
    }
    if absent:
        # The file's columns, masked: a header that is really a ticket is quoted in the report.
        shown = [mask_label(c) for c in have]
        absent_columns: dict[str, Any] = {"heads": absent, "columns": shown}
        # The column that looks like each (with its option), as the file names it, masked.
        looks = {h: hint for h in absent if (hint := like_hint(h, shown, columns))}
        if looks:
            absent_columns["like"] = looks
        report["absent_label_columns"] = absent_columns
    # A head whose column no file has is said above; rows without a label in one that has it are
    # said here, with the first of them.
    if counts := {h: unlabelled[h] for h in LABELS if h in unlabelled and h not in absent}:
        report["unlabelled_rows"] = counts
        report["unlabelled_examples"] = {h: unlabelled_places[h] for h in counts}
    # Titles left in a column of another name: scored without them, unlike the model's training.
    if note := title_column_note(
        {name: [mask_label(c) for c in cols] for name, cols in headers.items()}, columns, "scored"
    ):
        report["title_column_note"] = note
    # Ids left in a column of another name: a ticket in two exports that overlap counts twice.
    if note := id_column_note(
        {name: [mask_label(c) for c in cols] for name, cols in headers.items()},
        columns,
        "a ticket in two exports that overlap is scored twice",
    ):
        report["id_column_note"] = note
    if repeats.count:
        report["duplicate_rows"] = repeats.count
        report["duplicate_examples"] = [list(p) for p in repeats.examples]
        if repeats.twice:
            report["files_read_twice"] = repeats.twice
    # Most rows first, then as the data first has them; heads in the mappings' order.
    if mapped := {h: _most_first(mapped[h]) for h in mapping if h in mapped}:
        report["mapped"] = mapped  # per head, old label -> rows renamed by the model's mapping
    if merged := {h: masked_counts(_most_first(merged[h])) for h in merging if h in merged}:
        report["merged_into_other"] = merged  # per head, label -> rows scored as 其他
    if comma:
        report["comma_listed"] = {h: masked_counts(_most_first(c)) for h, c in comma.items()}
    # Labels merged into a 其他 itself too rare to learn: the model has no label for them, and
    # "compare their spelling" was the advice for a label spelt right.
    for h, lost in merged_unlearnt(metadata, router).items():
        unknown = report.get(h, {}).get("unknown_labels") or {}
        if hit := {k: n for k, n in unknown.items() if k in lost}:
            report[h]["merged_unlearnt"] = hit
            report[h]["min_examples"] = metadata.get("config", {}).get("min_examples")
    if report_path is not None:
        try:
            write_report(report, Path(report_path))
        except OSError as e:  # a full disk: a traceback, after the scoring
            raise OutputPathError(
                f"--report {report_path}: cannot write {e.filename or report_path}: "
                f"{e.strerror or e}"
            ) from None
    return report


class Repeats:
    """:func:`training.validate.repeated_rows` over tables read one after another: a ticket that
    repeats one of an earlier table counts too. Each ticket seen is kept as a digest of what makes
    it the same ticket (:func:`training.validate.ticket_keys`) and where it was read, not as its
    text: a file of hundreds of thousands of tickets held its texts twice more."""

    def __init__(self, listed: int = UNLABELLED_LISTED) -> None:
        self.first: dict[bytes, tuple[int, int]] = {}  # digest -> (file, row) it was first read at
        self.files: dict[str, int] = {}
        self.paths: dict[str, str | None] = {}  # per file name, the path its JSON lines are in
        self.listed = listed
        self.count = 0  # rows dropped
        # Per file read twice, its rows that repeat themselves (training.validate
        # .files_read_twice): said once for the file, not among the examples.
        self.twice: dict[str, int] = {}
        self.examples: list[tuple[str, str]] = []  # the first ``listed`` (row, row it repeats)

    def first_of(self, df: pd.DataFrame) -> list[bool]:
        """Per row of ``df`` (canonical rows, as :func:`model.tickets.iter_tickets` reads them),
        whether it is the first of its copies so far: the row to keep."""
        kept: list[bool] = []
        sources = df[SOURCE_COL].astype(str).tolist()
        numbers = df[ROW_COL].tolist()
        if PATH_COL in df and len(df):
            for source, path in zip(sources, df[PATH_COL].tolist(), strict=True):
                self.paths.setdefault(source, path if isinstance(path, str) and path else None)
        for source, number, key in zip(sources, numbers, ticket_keys(df), strict=True):
            digest = hashlib.blake2b(
                repr(key).encode("utf-8", "surrogatepass"), digest_size=16
            ).digest()
            at = (self.files.setdefault(source, len(self.files)), int(number))
            earlier = self.first.setdefault(digest, at)
            kept.append(earlier is at)
            if earlier is not at:
                self.count += 1
                if earlier == at:  # the same file's same row: the file was read twice
                    self.twice[source] = self.twice.get(source, 0) + 1
                elif len(self.examples) < self.listed:
                    names = list(self.files)
                    first = names[earlier[0]]
                    self.examples.append(
                        (
                            row_place(source, int(number), self.paths.get(source)),
                            row_place(first, earlier[1], self.paths.get(first)),
                        )
                    )
        return kept


def _add_counts(into: dict[str, dict[str, int]], counts: dict[str, dict[str, int]]) -> None:
    for head, labels in counts.items():
        mine = into.setdefault(head, {})
        for label, n in labels.items():
            mine[label] = mine.get(label, 0) + n


def _most_first(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` as ``value_counts`` of all the rows orders them: most first, ties as first
    read (``counts`` is in that order)."""
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def estimated_rows(paths: Sequence[str | Path]) -> int:
    """The files' rows, roughly and cheaply (:func:`training.label_io.estimate_rows`), for the
    progress shown; 0 when they cannot be counted (reading them says why)."""
    from training.label_io import estimate_rows

    try:
        return sum(estimate_rows(p) for p in expand_paths(paths))
    except Exception:  # an estimate: the files' errors are for reading them to say
        return 0


def _confusion_png(json_path: Path, head: str) -> Path:
    return json_path.with_name(f"{json_path.stem}.confusion-{head}.png")


def _reliability_png(json_path: Path) -> Path:
    return json_path.with_name(f"{json_path.stem}.reliability.png")


def report_files(json_path: Path) -> list[Path]:
    """Every file :func:`write_report` may write for ``json_path`` (JSON, Markdown, plots)."""
    return [
        json_path,
        json_path.with_suffix(".md"),
        *(_confusion_png(json_path, h) for h in LABELS),
        _reliability_png(json_path),
    ]


def write_report(report: dict[str, Any], json_path: Path) -> list[Path]:
    """Write the JSON report, the plots and a readable Markdown report beside it."""
    from training import plots

    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    written = [json_path]
    heads = [h for h in LABELS if h in report]
    images: dict[str, Path] = {}
    for head in heads:
        img = _confusion_png(json_path, head)
        plots.confusion_png(report[head]["confusion"], f"{head} confusion (rows: truth)", img)
        images[f"confusion-{head}"] = img
    if heads:
        img = _reliability_png(json_path)
        plots.reliability_png({h: report[h]["reliability"] for h in heads}, img)
        images["reliability"] = img
    md = json_path.with_suffix(".md")
    # Linked by a Markdown-safe name: a report named with a space showed no plots.
    links = {k: md_url(v.name) for k, v in images.items()}
    md.write_text(markdown_report(report, links), encoding="utf-8")
    return [*written, *images.values(), md]


def markdown_report(report: dict[str, Any], images: dict[str, str]) -> str:
    """A one-page readable report of :func:`evaluate_router`'s figures."""
    lines = [
        f"# Evaluation of model {md_text(report.get('model_version', '?'))}",
        "",
        f"Tickets: {report['n']}",
        "",
    ]
    heads = [h for h in LABELS if h in report]
    # Warnings quote labels, which come from the data (and feedback's free-text departments).
    lines += [f"**Warning:** {md_text(w)}." for w in report_warnings(report)]
    if heads:
        lines += [
            "",
            "| head | accuracy | macro-F1 | weighted-F1 | top-3 | ECE | auto threshold | auto precision | auto coverage |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for h in heads:
            r = report[h]
            a = r["auto"]
            lines.append(
                f"| {h} | {r['accuracy']:.3f} | {format_f1(r['macro_f1'])} | "
                f"{format_f1(r['weighted_f1'])} | "
                f"{r['top3_accuracy']:.3f} | {r['ece']:.3f} | {a['threshold']:.3f} | "
                f"{format_auto_precision(a['precision'])} | "
                f"{a['coverage']:.3f} |"
            )
    if report.get("joint"):
        lines += ["", "## Joint dispatch (会办)", "", joint_summary(report["joint"])]
    ruled = [h for h in heads if report[h].get("rules")]
    if ruled:
        lines += [
            "",
            "## Dispatch rules (派单规则)",
            "",
            "Each rule's scored tickets: how many it gave its label to, on how many that label "
            "was right, and on how many the model's own first label would have been.",
            "",
            "| head | rule | keywords | label | decision | tickets | right | the model alone |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for h in ruled:
            for r in report[h]["rules"]:
                lines.append(
                    f"| {h} | {md_text(r['rule'])} | {md_text(' '.join(r['keywords']))} | "
                    f"{md_text(r['label'])} | {r['decision']} | {r['tickets']} | {r['right']} | "
                    f"{r['model_right']} |"
                )
    for h in heads:
        lines += [
            "",
            f"## {h}",
            "",
            "| label | precision | recall | F1 | in top 3 | support |",
            "|---|---|---|---|---|---|",
        ]
        for label, m in sorted(report[h]["per_class"].items(), key=lambda kv: -kv[1]["support"]):
            lines.append(
                f"| {md_text(label)} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
                f"{m['top3']:.3f} | {m['support']} |"
            )
        if f"confusion-{h}" in images:
            lines += ["", f"![{h} confusion matrix]({images[f'confusion-{h}']})", ""]
            # Without a CJK font the plot numbers its Chinese labels (plots._labels): the key.
            key = ", ".join(
                f"{i} = {md_text(label)}"
                for i, label in enumerate(report[h]["confusion"]["labels"])
            )
            lines.append(f"Axis numbers (rows: truth, columns: predicted): {key}")
    if "reliability" in images:
        lines += [
            "",
            "## Calibration",
            "",
            "Each point is a confidence bin: a calibrated model's points lie on the diagonal.",
            "",
            f"![reliability plot]({images['reliability']})",
        ]
    return "\n".join(lines) + "\n"
