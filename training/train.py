"""Train a router from labelled tickets: validate, cross-validate each head, fit, save."""

from __future__ import annotations

import hashlib
import logging
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import Parallel, delayed, parallel_config
from scipy.special import logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from model import resources
from model.artifact import (
    METADATA_FILE,
    REMITS_FILE,
    RULES_FILE,
    STOPWORDS_FILE,
    USERDICT_FILE,
    OutputPathError,
    check_model_root,
    check_not_input,
    check_out_dir,
    save_router,
    sha256_file,
)
from model.config import (
    CATEGORY_SHARE_WEIGHTS,
    MIN_LABEL_ROWS,
    PRIOR_ALPHAS,
    UNLABELLED_MAX_ROWS,
    TrainingConfig,
)
from model.pipeline import build_classifier
from model.registry import (
    CURRENT_FILE,
    EVAL_DIR,
    LEASES_DIR,
    LOCK_FILE,
    REGISTRY_FILE,
    REPORTS_DIR,
    SCORES_DIR,
    keep_current,
    registry_marker,
    versions,
)
from model.router import (
    HEADS,
    IDENTITY_MAP,
    LOGIT_EPS,
    Router,
    build_router,
    catch_all_rows,
    recalibrate_suggestion,
    share_ranking,
    shift_prior,
)
from model.text import clean, counted, mask_label, quoted
from model.tickets import (
    CO_COL,
    ColumnMap,
    TicketFileError,
    as_paths,
    delimiter_hint,
    display_name,
    id_column_note,
    iter_tickets,
    named_paths,
    partition_values,
    read_tickets,
    require_rows,
    title_column_note,
)
from model.tokenizer import (
    BACKENDS,
    BackendMissingError,
    changed_by_normalizing,
    format_stopwords,
    format_userdict,
    import_backend,
    read_stopword_list,
    read_userdict,
)
from training.metrics import choose_threshold, head_report, top_hits_accuracy, top_k
from training.remits import (
    format_remits,
    read_remits,
    remit_clauses,
    remit_frame,
    usable_remits,
)
from training.rules import (
    check_rule_labels,
    compile_rules,
    format_rules,
    read_rules,
    rules_summary,
)
from training.validate import (
    CLEAN_TEXT_COL,
    TRAIN_OPTIONS,
    Options,
    TrainingDataError,
    ValidationReport,
    drop_single_label_heads,
    label_column_notes,
    listing,
    rows_of,
    usable_fit_only,
    validate,
)
from training.window import Window, read_window

logger = logging.getLogger(__name__)

# Progress callback: (stage, done, total).
Progress = Callable[[str, int, int], None]

# Below this many labelled rows a head's fits are quick, and starting worker processes (each imports
# scikit-learn) costs about what it saves: on 2 cores, 150 rows of the bundled sample trained in
# 6.5 s in-process and 6.4 s with two workers, 300 rows in 14.3 s and 12.2 s, all 900 in 34.8 s
# and 23.7 s; the 18-ticket test corpus in 1.9 s and 4.0 s.
PROCESS_MIN_ROWS = 200
# How many held-out suggestions the confidence map's prior is worth (fit_confidence_map):
# pseudo-rows right exactly as often as the classifier says, so the map moves from the classifier's
# own probabilities only as far as the real held-out rows outweigh them. The folds' classifiers see
# fewer rows than the shipped one, which is more confident than they were; on a small history a
# map fitted on their suggestions alone over-claims (60 bundled tickets, seeds 0–5: held-out
# department suggestions shown at 0.54 on average, right 37 times in 100; docs/accuracy.md,
# "A small history").
CONFIDENCE_PRIOR_ROWS = 100


def worker_jobs(rows: int, n_jobs: int | None) -> int | None:
    """``n_jobs`` for fits on ``rows`` labelled rows: none below :data:`PROCESS_MIN_ROWS`."""
    return n_jobs if rows >= PROCESS_MIN_ROWS else None


def stop_workers() -> None:
    """Stop the worker processes the fits ran in, now; nothing to do when none were started.

    joblib keeps them (about 200 MB each) for the next fits and ends them after 5 idle minutes:
    a server that trained its first model would hold them that long, and leave them behind if
    stopped meanwhile. ``get_reusable_executor().shutdown`` is what joblib's maintainers advise;
    it is called only when an executor exists, as calling it otherwise starts a helper process.
    """
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)


@dataclass
class HeadCV:
    """Out-of-fold results of one head."""

    labels: list[str]
    threshold: float
    report: dict[str, Any]
    # The classifier's own, unshifted and not recalibrated: what a head stacked on this one reads.
    proba: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    prior_alpha: float = 0.0
    confidence_map: tuple[float, float] = IDENTITY_MAP
    # TrainingConfig.category_shares_in_ranking: the weight chosen (choose_share_weight), 0 for none.
    category_share_weight: float = 0.0


@dataclass
class TrainResult:
    """What ``paidan train`` reports: the model, where it went, and how good cross-validation says it is."""

    router: Router
    model_dir: Path | None
    metadata: dict[str, Any]
    validation: ValidationReport
    cv: dict[str, HeadCV]


def data_fingerprint(
    file_shas: Sequence[str],
    window: dict[str, Any] | None = None,
    unlabelled_shas: Sequence[str] = (),
    names: Sequence[str] = (),
    fit_only_shas: Sequence[str] = (),
) -> str:
    """SHA-256 over the training files' SHA-256s (:func:`model.artifact.sha256_file`), in order:
    changes when any byte of any file does, and with the window of their rows trained on
    (:func:`training.window.select_window`), if any, and with the ``--unlabelled`` files' SHA-256s
    (which widen the vocabulary and IDF; without any, the fingerprint is what it was before they
    counted), and with the partition values in the files' ``names``
    (:func:`model.tickets.partition_values`: a part moved from 部门=人社/ to 部门=住建/ is the same
    bytes with other labels; without any, the fingerprint is what it was before they were read),
    and with the ``--fit-only`` files' SHA-256s (learnt from: a model trained with them is other
    data's; without any, the fingerprint is what it was before they were).
    The callers hash each file once and record the same hashes per file (``data_files``): a
    history of gigabytes is not read twice more."""
    h = hashlib.sha256()
    for sha in file_shas:
        h.update(sha.encode())
    partitions = [sorted(partition_values(name).items()) for name in names]
    if any(partitions):
        h.update(b"partitions" + repr(partitions).encode())
    if window:
        h.update(repr(sorted(window.items())).encode())
    if unlabelled_shas:
        h.update(b"unlabelled")
        for sha in unlabelled_shas:
            h.update(sha.encode())
    if fit_only_shas:
        h.update(b"fit-only")
        for sha in fit_only_shas:
            h.update(sha.encode())
    return h.hexdigest()


def unlabelled_files(paths: Sequence[str | Path]) -> list[dict[str, str]]:
    """The ``--unlabelled`` files (directories expanded) as ``metadata.json`` records them in
    ``training_data.unlabelled_files``: ``{"name", "sha256"}`` each, as ``files`` records the
    labelled ones, so that a retrain can name the files the current model was trained with."""
    return [
        {"name": display_name(name), "sha256": sha256_file(path)}
        for path, name in named_paths(paths)
    ]


def make_version(data_sha: str, config: TrainingConfig, when: datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-<8 hex>``: sortable by time, and distinct for distinct data or config."""
    when = when or datetime.now(UTC)
    digest = hashlib.sha256(
        (data_sha + repr(sorted(config.to_dict().items()))).encode()
    ).hexdigest()
    return f"{when:%Y%m%dT%H%M%SZ}-{digest[:8]}"


def free_version(root: Path, data_sha: str, config: TrainingConfig) -> str:
    """:func:`make_version` for a version written under ``root``, a second later while that name
    is taken: the same data and config trained twice within one second (a retrain given the same
    files again at once) were refused as "already exists" under the name the command chose."""
    when = datetime.now(UTC)
    while (root / (version := make_version(data_sha, config, when))).exists():
        when += timedelta(seconds=1)
    return version


def _fold_proba(
    X: sp.csr_matrix,
    y: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    config: TrainingConfig,
    head: str = "",
    rest_idx: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Held-out probabilities of one fold of head ``head``, in the columns of ``labels``.

    Also those of the ``rest_idx`` rows (outside the cross-validated sample, so never trained on
    by any fold), or ``None``. ``weights``: each row's weight in the fit (``None``: all 1).
    """
    train_labels, train_counts = np.unique(y[train_idx], return_counts=True)
    if train_counts.min() < 2:
        # Only where folds keep a text's copies together (fold_splits) can a fold's training rows
        # hold one row of a label, which the calibration cannot split: that fold cannot learn it.
        train_idx = train_idx[np.isin(y[train_idx], train_labels[train_counts >= 2])]
        train_counts = train_counts[train_counts >= 2]
    clf = build_classifier(config, train_counts.tolist(), head)
    if weights is None:
        clf.fit(X[train_idx], y[train_idx])
    else:
        clf.fit(X[train_idx], y[train_idx], sample_weight=weights[train_idx])
    columns = np.searchsorted(labels, clf.classes_)
    out = np.zeros((len(test_idx), len(labels)))
    out[:, columns] = clf.predict_proba(X[test_idx])
    rest = None
    if rest_idx is not None and len(rest_idx):
        rest = np.zeros((len(rest_idx), len(labels)))
        rest[:, columns] = clf.predict_proba(X[rest_idx])
    return out, rest


def text_groups(df: pd.DataFrame) -> np.ndarray:
    """A number per row, the same for rows of the same text (:func:`model.text.clean`, as
    validation finds duplicates; validation keeps no row without a text): the groups that
    cross-validation keeps in one fold (:func:`fold_splits`)."""
    # Validation cleaned the texts already (a few seconds on a million rows): read, not redone.
    text = df[CLEAN_TEXT_COL] if CLEAN_TEXT_COL in df else df["text"].map(clean)
    return pd.factorize(text)[0]


def fold_splits(
    y: np.ndarray,
    groups: np.ndarray | None,
    cv_folds: int,
    seed: int,
    scored: np.ndarray | None = None,
) -> tuple[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Stratified folds of the rows of labels ``y`` that never split a group: ``(folds, splits)``.

    Rows of the same text (``groups``, :func:`text_groups`) are held out together: with a copy in
    the training folds a ticket is scored in hindsight, and the auto thresholds chosen on such
    scores pass far more tickets than reach the target precision on new ones. Without repeated
    texts the folds are :class:`~sklearn.model_selection.StratifiedKFold`'s, as they always were
    (``StratifiedGroupKFold`` would draw other folds from the same seed even then). There are
    ``cv_folds``, or as many as the rarest label has rows (or there are texts), and at least two.
    ``scored`` (bool per row; default all): the rows counted for the rarest label, those the
    metrics read (not ``--fit-only`` rows, which only ever made the count look larger).
    """
    folds = max(2, min(cv_folds, int(scored_counts(y, scored).min())))
    if groups is not None and len(np.unique(groups)) < len(groups):
        # A label whose rows are few texts may miss a fold's training rows: _fold_proba copes.
        splits = StratifiedGroupKFold(
            n_splits=min(folds, len(np.unique(groups))), shuffle=True, random_state=seed
        ).split(np.zeros(len(y)), y, groups)
    else:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            np.zeros(len(y)), y
        )
    splits = list(splits)
    return len(splits), splits


def scored_counts(y: np.ndarray, scored: np.ndarray | None = None) -> np.ndarray:
    """Rows per label of ``y`` (in sorted label order) among the ``scored`` rows (bool per row;
    default all). A label no scored row has is counted as having all its rows: it limits no
    fold, as a label of fit-only rows alone cannot (:func:`training.validate.usable_fit_only`)."""
    labels, counts = np.unique(y, return_counts=True)
    if scored is None:
        return counts
    found, own = np.unique(y[scored], return_counts=True)
    mine = dict(zip(found.tolist(), own.tolist(), strict=True))
    return np.array([mine.get(label, n) for label, n in zip(labels.tolist(), counts, strict=True)])


def fewer_folds_reason(
    labels: np.ndarray,
    counts: np.ndarray,
    groups: np.ndarray | None,
    folds: int,
    cv_folds: int,
    sampled: bool = False,
    fit_only: bool = False,
) -> str:
    """Why :func:`fold_splits` made ``folds`` rather than ``cv_folds`` folds ("" when it did not).

    For the training summary, e.g. "its rarest label, '市残联', has 3 rows". ``labels`` and
    ``counts`` are the cross-validated rows' that are scored (:func:`scored_counts`; ``sampled``:
    a sample's of the head's rows; ``fit_only``: fit-only rows were left out of the counts).
    """
    where = " in the cross-validation sample" if sampled else ""
    if folds >= cv_folds:
        return ""
    if counts.min() < cv_folds:
        rarest = mask_label(str(labels[counts.argmin()]))
        besides = ", fit-only rows aside" if fit_only else ""
        return f"its rarest label, {rarest!r}, has {rows_of(int(counts.min()))}{where}{besides}"
    if groups is not None:
        texts = counted(len(np.unique(groups)), "distinct text", thousands=True)
        return f"its {len(groups):,} rows{where} are only {texts}"
    return ""


def in_head_order(cv: dict[str, HeadCV]) -> list[tuple[str, HeadCV]]:
    """The heads' cross-validations with the department head first, as ``evaluate`` and the API
    list the heads: the category head is fitted first (the department head may read its
    probabilities), so ``cv`` holds it first, and ``train``'s summary listed it first."""
    return sorted(cv.items(), key=lambda kv: HEADS.index(kv[0]) if kv[0] in HEADS else len(HEADS))


def cv_summary(cv: dict[str, HeadCV], config: TrainingConfig, rows_used: int, rows_in: int) -> str:
    """The training summary's line on cross-validation, with the folds each head really had.

    A head has fewer than ``config.cv_folds`` when its rarest label has fewer rows, or its rows
    fewer distinct texts (:func:`fold_splits`); the line then gives each head's and why, e.g.
    "…: department 3 folds (its rarest label, '市残联', has 3 rows), category 5 folds", the
    department head first (:func:`in_head_order`).
    """
    line = f"on {rows_used} of {rows_in} rows"
    if all(h.report["folds"] == config.cv_folds for h in cv.values()):
        return f"cross-validated ({config.cv_folds} stratified folds, seed {config.seed}) {line}"
    heads = ", ".join(
        f"{name} {h.report['folds']} folds"
        + (f" ({h.report['folds_reason']})" if h.report.get("folds_reason") else "")
        for name, h in in_head_order(cv)
    )
    return f"cross-validated (stratified folds, seed {config.seed}) {line}: {heads}"


def cross_validate_heads(
    tasks: Sequence[tuple[str, sp.csr_matrix, np.ndarray]],
    config: TrainingConfig,
    progress: Progress | None = None,
    n_jobs: int | None = -1,
    stage: str = "cross-validating",
    head: str = "",
    sample: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    no_terms: np.ndarray | None = None,
    always: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    unscored: np.ndarray | None = None,
    shares: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[HeadCV]:
    """Stratified k-fold out-of-fold probabilities, metrics and auto thresholds of several heads.

    Every fold of every task is an independent fit; they run in ``n_jobs`` joblib worker
    processes (the feature matrices reach them memory-mapped). Not threads: liblinear seeds one
    process-wide random generator at each fit, so concurrent fits in one process would draw from
    each other's sequence and the model would change from run to run. In processes the results are
    the same for any ``n_jobs``.

    Parameters
    ----------
    tasks : sequence of (name, X, y)
        A name for progress and error messages, the features of the rows that carry the head's
        label, and those labels (str).
    config : TrainingConfig
        Seed, folds, target precision and classifier settings.
    progress : callable, optional
        Called after each fold with ``(stage, done, total)``.
    n_jobs : int or None
        Worker processes, as in joblib (``-1``: one per core; ``None`` or ``1``: fit here).
        Heads with fewer than :data:`PROCESS_MIN_ROWS` rows are always fitted here.
    stage : str
        Stage name passed to ``progress``.
    head : str
        The head the tasks are options of (its classifier depends on it: see
        :func:`model.pipeline.build_classifier`).
    sample : ndarray of int, optional
        Cross-validate on these rows only (:func:`cv_sample`): the metrics, threshold, prior
        shift and confidence map come from them. The other rows get the mean probability of the
        folds' classifiers, none of which was trained on them, in ``HeadCV.proba`` (what a head
        stacked on this one trains on). Every label must keep all its rows or at least
        ``MIN_LABEL_ROWS`` in the sample.
    groups : ndarray of int, optional
        Per row, its text (:func:`text_groups`): the folds hold out the rows of a text together.
    no_terms : ndarray of bool, optional
        Per row, whether it holds no known word (:func:`model.router.without_known_terms`): the
        router never dispatches such a ticket without a person, so the threshold is chosen, and
        the auto precision and coverage counted, as it decides.
    always : ndarray of int, optional
        Rows in the training part of every fold, never held out nor counted in the metrics, the
        threshold, the prior shift or the label counts (the remits,
        :mod:`training.remits`); their ``proba`` stays 0.
    weights : ndarray of float, optional
        Per row, its weight in every fit (``None``: all 1).
    unscored : ndarray of int, optional
        Rows cross-validated like the others (held out in their fold, so they get out-of-fold
        ``proba``, which a head stacked on this one trains on) but never scored: left out of the
        metrics, the threshold, the prior shift, the confidence map and the label counts
        (``paidan train --fit-only``: tickets borrowed from elsewhere, which the promise of
        ``config.target_precision`` on the centre's own tickets must not lean on).
    shares : (ndarray, ndarray), optional
        For the department head with ``config.category_shares_in_ranking``: per row, the category
        head's probabilities (out of fold where it was cross-validated), and P(department |
        category) (:func:`category_shares`). The weight of their product in ranks 2..k
        (:func:`model.router.share_ranking`) is chosen by top-3 on the scored rows
        (:func:`choose_share_weight`), and the top-3 figures are those of that ranking.

    Returns
    -------
    list of HeadCV
        For each task, in order: its labels, the threshold reaching ``config.target_precision`` on
        held-out folds, and the held-out metrics.
    """
    everyone = np.arange(len(tasks[0][2]))
    fixed = np.zeros(0, dtype=int) if always is None else np.asarray(always, dtype=int)
    rows = np.setdiff1d(everyone if sample is None else np.asarray(sample), fixed)
    rest = None
    if sample is not None:
        rest = np.setdiff1d(np.setdiff1d(everyone, rows), fixed)
    held = np.zeros(0, dtype=int) if unscored is None else np.asarray(unscored, dtype=int)
    counted_rows = np.setdiff1d(everyone, np.union1d(fixed, held))
    # The cross-validated rows that are scored: the metrics, threshold, prior shift and map read these.
    scored = np.setdiff1d(rows, held)
    plans = []
    label_counts = []  # rows per label, in label order: for the prior shift below
    reasons = []  # why a head has fewer folds than config.cv_folds ("" when it has them all)
    for name, X, y_all in tasks:
        y = y_all[rows]
        labels, counts = np.unique(y, return_counts=True)
        if len(labels) != len(np.unique(y_all[np.setdiff1d(everyone, fixed)])):
            raise ValueError(
                f"{name}: the cross-validation sample lacks a label"
            )  # cv_sample keeps every label
        if not len(scored):
            raise TrainingDataError(
                f"no {head or name or 'head'} row to score: every row cross-validated is fit-only"
            )
        what = head or name or "head"
        if len(labels) < 2:
            raise TrainingDataError(
                f"every row with a {what} label has the same one, {mask_label(str(labels[0]))!r}: a head needs "
                "two or more labels"
            )
        if counts.min() < MIN_LABEL_ROWS:
            raise TrainingDataError(
                f"{what} label {mask_label(str(labels[counts.argmin()]))!r} has {int(counts.min())} row(s): "
                f"cross-validation with calibration needs {MIN_LABEL_ROWS} or more of each label "
                f"(use --min-examples {MIN_LABEL_ROWS} or more)"
            )
        in_groups = None if groups is None else groups[rows]
        # The folds are as many as the rarest label's scored rows allow: counted with the
        # fit-only rows, 3 own rows of a label were cut into 5 folds.
        is_scored = ~np.isin(rows, held) if len(held) else None
        folds, in_rows = fold_splits(y, in_groups, config.cv_folds, config.seed, is_scored)
        reasons.append(
            fewer_folds_reason(
                labels,
                scored_counts(y, is_scored),
                in_groups,
                folds,
                config.cv_folds,
                sample is not None,
                fit_only=is_scored is not None,
            )
        )
        # Splits as positions in the whole task, so that the fold jobs index X and y_all directly.
        splits = [(np.concatenate([rows[a], fixed]), rows[b]) for a, b in in_rows]
        # Labels also count the rows outside the sample: the prior shift reads the training shares.
        label_counts.append([int(c) for c in np.unique(y_all[counted_rows], return_counts=True)[1]])
        plans.append((X, y_all, labels, folds, splits))
    jobs = [(t, split) for t, plan in enumerate(plans) for split in plan[4]]
    probas = [np.zeros((len(y_all), len(labels))) for _, y_all, labels, _, _ in plans]
    n_jobs = worker_jobs(len(rows), n_jobs)
    if progress:
        progress(stage, 0, len(jobs))
    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_fold_proba)(
            plans[t][0], plans[t][1], plans[t][2], train_idx, test_idx, config, head, rest, weights
        )
        for t, (train_idx, test_idx) in jobs
    )
    for done, ((t, (_, test_idx)), (fold_proba, rest_proba)) in enumerate(
        zip(jobs, results, strict=True), 1
    ):
        probas[t][test_idx] = fold_proba
        if rest is not None and rest_proba is not None:
            probas[t][rest] += rest_proba / plans[t][3]
        if progress:
            progress(stage, done, len(jobs))
    out = []
    for (_, y_all, labels, folds, _), full, label_rows, reason in zip(
        plans, probas, label_counts, reasons, strict=True
    ):
        y, proba = y_all[scored], full[scored]
        alpha, tried = choose_prior_alpha(proba, y, labels, label_rows, config.prior_alpha)
        shifted = shift_prior(proba, label_rows, alpha)
        share_weight, ranked = 0.0, shifted
        share_tried: list[dict[str, float]] = []
        if shares is not None:
            row_shares = shares[0][scored] @ shares[1]
            share_weight, share_tried = choose_share_weight(shifted, row_shares, y, labels)
            ranked = share_ranking(shifted, row_shares, share_weight)
        best = shifted.argmax(axis=1)
        correct = labels[best] == y
        mapping = (
            fit_confidence_map(proba[np.arange(len(y)), best], correct)
            if config.calibrate_confidence
            else IDENTITY_MAP
        )
        shown = recalibrate_suggestion(proba, best, mapping)
        # The threshold reads the shown probability of the label the shifted ranking picks.
        confidence = shown[np.arange(len(y)), best]
        # A ticket with no known word goes to a person whatever its confidence (Ranking.auto):
        # it neither reaches the target precision nor takes from it, and is never auto.
        review = np.zeros(len(y), dtype=bool) if no_terms is None else no_terms[scored]
        # So does one whose suggested department is the catch-all 其他 (catch_all_rows).
        other = catch_all_rows(head, labels.tolist(), best)
        if other is not None:
            review = review | other
        threshold = choose_threshold(confidence[~review], correct[~review], config.target_precision)
        auto = (confidence >= threshold) & ~review
        report = head_report(
            y, shown, labels.tolist(), threshold, rank=ranked, auto=auto, catch_all=other
        )
        report["folds"] = folds
        if reason:
            report["folds_reason"] = reason
        if sample is not None:
            report["rows"] = len(y_all) - len(held)  # report["n"]: the sample's
        if len(held):
            report["fit_only_rows"] = len(held)
        report["prior_alpha"] = alpha
        report["confidence_map"] = {"slope": mapping[0], "intercept": mapping[1]}
        if len(tried) > 1:
            report["prior_selection"] = tried
        if shares is not None:
            report["category_share_weight"] = share_weight
            report["category_share_selection"] = share_tried
        out.append(
            HeadCV(
                labels=labels.tolist(),
                threshold=threshold,
                report=report,
                proba=full,
                y=y_all,
                prior_alpha=alpha,
                confidence_map=mapping,
                category_share_weight=share_weight,
            )
        )
    return out


def category_shares(
    departments: Sequence[str],
    categories: Sequence[str],
    department_labels: Sequence[str],
    category_labels: Sequence[str],
) -> np.ndarray:
    """P(department | category), add-one smoothed, counted on tickets that carry both labels.

    Rows in ``category_labels`` order, columns in ``department_labels`` order; each row sums to 1.
    A ticket whose category or department is not among those labels (none, ``""``) is not
    counted, so a category no ticket of the department head carries gives every department the
    same share. What :attr:`model.router.Head.category_shares` holds.
    """
    d_col = {label: j for j, label in enumerate(department_labels)}
    c_row = {label: i for i, label in enumerate(category_labels)}
    counts = np.zeros((len(category_labels), len(department_labels)))
    for d, c in zip(departments, categories, strict=True):
        if d in d_col and c in c_row:
            counts[c_row[c], d_col[d]] += 1
    return (counts + 1.0) / (counts.sum(axis=1, keepdims=True) + len(department_labels))


def choose_share_weight(
    rank: np.ndarray, shares: np.ndarray, y: np.ndarray, labels: np.ndarray
) -> tuple[float, list[dict[str, float]]]:
    """The weight of the category head's department shares in ranks 2..k: the best of
    :data:`~model.config.CATEGORY_SHARE_WEIGHTS` by top-3 over out-of-fold rows (the smaller on
    a tie, so 0 unless another is better).

    ``rank``: the head's out-of-fold ranking scores (prior-shifted); ``shares``: per row and
    label, ``Σ_c P(c | row) × P(label | c)``; ``y``: the true labels. Returns the weight and
    ``{"weight", "top3_accuracy"}`` for every weight tried.
    """
    tried = []
    for weight in CATEGORY_SHARE_WEIGHTS:
        top3 = top_k(share_ranking(rank, shares, weight), 3)
        tried.append({"weight": float(weight), "top3_accuracy": top_hits_accuracy(y, top3, labels)})
    best = max(tried, key=lambda t: t["top3_accuracy"])  # max keeps the first of equals
    return best["weight"], tried


def fit_confidence_map(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """How often a head's suggestion is right, as a function of its probability: ``(slope, intercept)``.

    A logistic regression of ``correct`` on ``logit(confidence)`` over out-of-fold suggestions
    (Platt scaling of the suggested label, scikit-learn's default L2 penalty): two numbers per
    head, which a few hundred rows fit well, and an increasing map, so it changes what a head shows
    but never which tickets pass its threshold (:func:`model.router.recalibrate_suggestion`).

    The calibrated heads' probabilities, averaged over calibration folds and renormalised over
    one-against-the-rest classifiers, are under-confident: on held-out shared real tickets, the
    department head's suggestions were shown at 0.53 on average and right 67 times in 100.

    Beside the held-out rows, the fit reads :data:`CONFIDENCE_PRIOR_ROWS` pseudo-rows at the same
    probabilities, each right as often as its probability says (a weight ``p`` right and ``1 - p``
    wrong): alone they give the identity, so the map strays from the classifier's probabilities only
    as far as the held-out rows outweigh them. The folds' classifiers are trained on fewer rows than
    the shipped one and are less confident; on a small history the gap is large, and a map fitted
    on their suggestions alone over-claims on new tickets. With 640 held-out rows the prior is a
    seventh of the evidence; with 60, most of it.

    Returns :data:`~model.router.IDENTITY_MAP` when the suggestions are all right or all wrong, or
    when a higher probability was not more often right (the map would not be increasing).
    """
    if len(np.unique(correct)) < 2:
        return IDENTITY_MAP
    p = np.clip(confidence, LOGIT_EPS, 1 - LOGIT_EPS)
    x = logit(p)[:, np.newaxis]
    # The held-out rows alone decide the direction: the prior cannot make a map increasing.
    if not LogisticRegression().fit(x, correct.astype(int)).coef_[0, 0] > 0:
        return IDENTITY_MAP
    share = CONFIDENCE_PRIOR_ROWS / len(p)  # each pseudo-row pair's weight
    fit = LogisticRegression().fit(
        np.concatenate([x, x, x]),
        np.concatenate([correct.astype(int), np.ones(len(p), int), np.zeros(len(p), int)]),
        sample_weight=np.concatenate([np.ones(len(p)), share * p, share * (1 - p)]),
    )
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if not slope > 0:
        return IDENTITY_MAP
    return slope, intercept


def choose_prior_alpha(
    proba: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    counts: Sequence[int],
    fixed: float | None,
) -> tuple[float, list[dict[str, float]]]:
    """The prior shift of a head: ``fixed``, or the best of :data:`PRIOR_ALPHAS` out of fold.

    Parameters
    ----------
    proba : ndarray
        Out-of-fold probabilities, columns in ``labels`` order.
    y : ndarray of str
        True labels.
    labels, counts : sequence
        The head's labels and their training rows.
    fixed : float or None
        ``TrainingConfig.prior_alpha``.

    Returns
    -------
    alpha : float
        The alpha with the best macro-F1 (the smaller on a tie).
    tried : list of dict
        ``{"alpha", "macro_f1"}`` for every alpha tried.
    """
    alphas = PRIOR_ALPHAS if fixed is None else (float(fixed),)
    tried = []
    for alpha in alphas:
        pred = labels[shift_prior(proba, counts, alpha).argmax(axis=1)]
        f1 = f1_score(y, pred, labels=labels, average="macro", zero_division=0)
        tried.append({"alpha": float(alpha), "macro_f1": float(f1)})
    best = max(tried, key=lambda t: t["macro_f1"])  # max keeps the first of equals
    return best["alpha"], tried


@dataclass(frozen=True)
class InputChoice:
    """Which extra inputs a head reads besides the TF-IDF features."""

    latent: bool = False
    stacked: bool = False

    def names(self) -> list[str]:
        return ["tfidf"] + ["latent"] * int(self.latent) + ["category"] * int(self.stacked)

    def __str__(self) -> str:
        return "+".join(self.names())

    def apply(self, router: Router, head: str) -> None:
        others = tuple(h for h in router.latent_heads if h != head)
        router.latent_heads = others + (head,) * self.latent
        router.stacked.pop(head, None)
        if self.stacked:
            router.stacked[head] = "category"


def input_options(latent: bool, stack: bool, select: bool) -> list[InputChoice]:
    """The department head's candidate inputs, simplest first; only the fullest unless ``select``."""
    fullest = InputChoice(latent=latent, stacked=stack)
    if not select:
        return [fullest]
    return [
        InputChoice(latent=a, stacked=b)
        for a in sorted({False, latent})
        for b in sorted({False, stack})
    ]


def cv_sample(
    y: np.ndarray,
    max_rows: int | None,
    config: TrainingConfig,
    unscored: np.ndarray | None = None,
) -> np.ndarray | None:
    """Rows to cross-validate on: all (``None``) up to ``max_rows`` scored rows (``None``: no
    cap), else about that many scored rows, drawn per label with the training seed (sorted).

    Each label keeps its share, but never fewer than ``2 * cv_folds`` rows (or all it has): a rare
    department still counts in the macro-F1 and still gets a held-out suggestion in every fold.

    ``unscored`` (bool per row): rows that are learnt from but never scored (fit-only rows, and
    remits, which :func:`cross_validate_heads` trains every fold on anyway). The cap is on the
    scored rows alone, which are drawn as they would be without the others; the unscored rows of
    each label join at the same share (with no minimum), after them. So the folds' classifiers
    learn from the mix of own and borrowed rows the shipped one does, and the unscored rows left
    out of the sample are still never trained on by a fold (their out-of-fold probabilities, which
    a head stacked on this one reads, stay out of fold).
    """
    scored = np.ones(len(y), dtype=bool) if unscored is None else ~np.asarray(unscored, dtype=bool)
    scored_rows = int(scored.sum())
    if max_rows is None or scored_rows <= max_rows:
        return None
    rng = np.random.default_rng(config.seed)
    share = max_rows / scored_rows
    keep = []
    for label in np.unique(y[scored]):
        rows = np.flatnonzero((y == label) & scored)
        take = max(round(len(rows) * share), min(len(rows), 2 * config.cv_folds))
        keep.append(rng.choice(rows, size=take, replace=False))
    for label in np.unique(y[~scored]):
        rows = np.flatnonzero((y == label) & ~scored)
        keep.append(rng.choice(rows, size=round(len(rows) * share), replace=False))
    return np.sort(np.concatenate(keep))


def fit_router(
    df: pd.DataFrame,
    config: TrainingConfig,
    userdict: Path | None,
    stopwords: Path | None,
    extra_texts: Sequence[tuple[str, str]] = (),
    progress: Progress | None = None,
    n_jobs: int | None = -1,
    remits: pd.DataFrame | None = None,
    fit_only: pd.DataFrame | None = None,
) -> tuple[Router, dict[str, HeadCV]]:
    """Fit features and both heads on validated rows (see :func:`training.validate.validate`).

    The vocabulary, IDF and latent view are fitted once on all rows (plus ``extra_texts``,
    unlabelled tickets that only widen them); the classifiers are then cross-validated per head and
    refitted on all of that head's rows. The category head comes first when the department head
    reads its probabilities (``config.stack_category``). The classifiers' fits run in ``n_jobs``
    processes (see :func:`cross_validate_heads`); the model does not depend on it.

    ``remits`` (:func:`training.remits.read_remits`, of the heads' labels only:
    :func:`training.remits.usable_remits`) join the rows of the head (or heads) whose label they
    name at weight ``config.remit_weight``, in the training part of every fold; they are not
    indexed as similar tickets nor counted as the labels' training rows.

    ``fit_only`` (:func:`usable_fit_only`: validated, of the heads' labels only) are tickets learnt
    from but never scored: they widen the vocabulary and train every fit like ``df``'s rows, and
    are cross-validated with them (a head stacked on another reads their out-of-fold
    probabilities), but are left out of the metrics, the threshold, the prior shift, the
    confidence map and the labels' training rows (:func:`cross_validate_heads`), and are not
    indexed as similar tickets: the centre's own tickets alone say what the model promises.
    """
    own_count = len(df)
    if fit_only is not None and len(fit_only):
        df = pd.concat([df, fit_only[[c for c in df.columns if c in fit_only.columns]]])
        df = df.reset_index(drop=True)
    ticket_rows = len(df)
    if remits is not None and len(remits) and config.remit_weight > 0:
        rows = remit_frame(remits, list(df.columns))
        # Never a head of remits alone: only beside tickets with that head's label.
        for head in HEADS:
            if not (df[head] != "").any():
                rows[head] = ""
        rows = rows[(rows["department"] != "") | (rows["category"] != "")].reset_index(drop=True)
    else:
        rows = df.iloc[:0]
    if len(rows):
        if CLEAN_TEXT_COL in rows:
            rows[CLEAN_TEXT_COL] = rows["text"].map(clean)
        df = pd.concat([df, rows], ignore_index=True)
    is_remit = np.arange(len(df)) >= ticket_rows
    own_rows = np.arange(len(df)) < own_count
    is_fit_only = ~own_rows & ~is_remit
    router = build_router(config, userdict=userdict, stopwords=stopwords)
    router.remit_clauses = remit_clauses(rows, config.script)  # {} without remits
    tickets = list(zip(df["title"], df["text"], strict=True))
    masks = {head: (df[head] != "").to_numpy() for head in HEADS}
    groups = text_groups(df)
    # Only the department head reads the latent view.
    X = router.fit_features(tickets, extra_texts, progress, latent=bool(masks["department"].any()))
    # The rows the router will always send to a person, for the cross-validated auto figures.
    no_terms = router.without_known_terms(X)
    for head, mask in masks.items():
        if not mask.any():
            logger.info("no %s labels: the %s head is not trained", head, head)
    both = bool(masks["category"].any() and masks["department"].any())
    stack = config.stack_category and both
    # The category head's probabilities also order the department candidates after the first.
    share = config.category_shares_in_ranking and both
    cv: dict[str, HeadCV] = {}
    # Probabilities of every row under the category head, for a department head stacked on it:
    # out-of-fold for the rows it was cross-validated on, so no head learns from another's hindsight.
    upstream: dict[str, np.ndarray] = {}
    for head in ("category", "department"):
        mask = masks[head]
        if not mask.any():
            continue
        y = df.loc[mask, head].to_numpy(dtype=str)
        rows_upstream = {k: v[mask] for k, v in upstream.items()}
        options = [InputChoice()]
        if head == "department":
            options = input_options(router.latent is not None, stack, config.select_inputs)
        X_head = X[mask]
        inputs = []
        for option in options:
            option.apply(router, head)
            inputs.append(router.head_input(head, X_head, rows_upstream))
        # The head's own cross-validation: on every row, or above cv_max_rows on a sample. The
        # input options are compared on a sample above select_max_rows; when that is the larger
        # sample (or no cap applies to the head), the chosen option is cross-validated again.
        head_remits = is_remit[mask]
        always = np.flatnonzero(head_remits) if head_remits.any() else None
        head_fit_only = is_fit_only[mask]
        unscored = np.flatnonzero(head_fit_only) if head_fit_only.any() else None
        uncounted = head_remits | head_fit_only
        # The caps are on the own rows, the scored ones (cv_sample).
        cv_rows = cv_sample(y, config.cv_max_rows, config, uncounted)
        select_rows = cv_rows
        if len(options) > 1:
            select_rows = cv_sample(y, config.select_max_rows, config, uncounted)
            if select_rows is None or (cv_rows is not None and len(cv_rows) <= len(select_rows)):
                select_rows = cv_rows
        weights = np.where(head_remits, config.remit_weight, 1.0) if head_remits.any() else None
        shares = None
        if head == "department" and share:
            # Counted on the head's own tickets that carry a category (not remits, not fit-only).
            counted_rows = ~uncounted
            matrix = category_shares(
                y[counted_rows],
                df.loc[mask, "category"].to_numpy(dtype=str)[counted_rows],
                np.unique(y).tolist(),
                router.heads["category"].labels,
            )
            shares = (rows_upstream["category"], matrix)
        results = cross_validate_heads(
            [(f"{head} ({o})", Xh, y) for o, Xh in zip(options, inputs, strict=True)],
            config,
            progress,
            n_jobs,
            stage=f"cross-validating {head}"
            + (f" ({len(options)} input options)" if len(options) > 1 else "")
            + (f" on a sample of {len(select_rows):,} rows" if select_rows is not None else ""),
            head=head,
            sample=select_rows,
            groups=groups[mask],
            no_terms=no_terms[mask],
            always=always,
            weights=weights,
            unscored=unscored,
            shares=shares,
        )
        tried = list(zip(options, results, inputs, strict=True))
        # An extra input must earn its place: the simplest option wins unless another is better.
        option, cv[head], Xh = max(tried, key=lambda t: t[1].report["macro_f1"])
        option.apply(router, head)
        if select_rows is not cv_rows:
            [cv[head]] = cross_validate_heads(
                [(f"{head} ({option})", Xh, y)],
                config,
                progress,
                n_jobs,
                stage=f"cross-validating {head} ({option})"
                + (f" on a sample of {len(cv_rows):,} rows" if cv_rows is not None else ""),
                head=head,
                sample=cv_rows,
                groups=groups[mask],
                no_terms=no_terms[mask],
                always=always,
                weights=weights,
                unscored=unscored,
                shares=shares,
            )
        if len(tried) > 1:
            cv[head].report["input_selection"] = [
                {"inputs": o.names(), "macro_f1": r.report["macro_f1"]} for o, r, _ in tried
            ]
            if select_rows is not None:
                cv[head].report["input_selection_rows"] = len(select_rows)
            logger.info(
                "%s head reads %s (cross-validated macro-F1 %.3f)",
                head,
                option,
                cv[head].report["macro_f1"],
            )
        if progress:  # the last fit, on all of the head's rows, is long: said before it
            progress(f"fitting {head}", 0, 1)
        # The calibration's internal folds, in processes too.
        with parallel_config(backend="loky", n_jobs=worker_jobs(len(y), n_jobs)):
            router.fit_head(
                head,
                Xh,
                y,
                cv[head].threshold,
                cv[head].prior_alpha,
                cv[head].confidence_map,
                sample_weight=weights,
                counted=~uncounted if uncounted.any() else None,
                category_shares=None if shares is None else shares[1],
                category_share_weight=cv[head].category_share_weight,
            )
        if progress:
            progress(f"fitting {head}", 1, 1)
        if head == "category" and (stack or share):
            if cv[head].labels != router.heads[head].labels:
                raise RuntimeError(
                    f"{head}: cross-validation and the fitted head disagree on labels"
                )
            # Rows without a category, and remits (never held out, so never scored), get the
            # fitted head's probabilities.
            proba = np.zeros((len(mask), len(cv[head].labels)))
            proba[mask] = cv[head].proba
            fill = ~mask | is_remit
            if fill.any():
                unscored = router.head_input(head, X[fill])
                classifier = router.heads[head].classifier
                assert classifier is not None  # fitted just above
                proba[fill] = classifier.predict_proba(unscored)
            upstream[head] = proba
    if not router.latent_heads:
        router.latent = None  # fitted, but no head reads it: not worth storing
    # Remits are no past tickets, fit-only rows not the centre's: never shown as similar ones.
    tickets_only = df[own_rows]
    router.build_index(
        X[own_rows] if not own_rows.all() else X,
        tickets_only["id"].to_numpy(),
        tickets_only["title"].to_numpy(),
        tickets_only["department"].to_numpy(),
        tickets_only["category"].to_numpy(),
        tickets_only[CO_COL].fillna("").to_numpy() if CO_COL in tickets_only else None,
        texts=tickets_only["text"].to_numpy(),
    )
    return router, cv


# What goes wrong when the tickets are read without ids (model.tickets.id_column_note): each is
# numbered by row (export:3), so the same ticket in two files is not found to repeat.
TRAIN_ID_NOTE = (
    "a ticket in two exports that overlap trains twice, and the similar tickets the dispatcher "
    "page shows are numbered by row, not by their ids"
)

# What the registry keeps beside the versions under the model root (model.registry).
REGISTRY_ENTRIES = (
    CURRENT_FILE,
    REGISTRY_FILE,
    LOCK_FILE,
    SCORES_DIR,
    EVAL_DIR,
    REPORTS_DIR,
    LEASES_DIR,
)

# How check_not_input ends for an --out that is an input file, and one that is or lies inside an
# input directory.
OUT_IS_INPUT_ADVICE = "name a new directory for the model (replacing it would delete the input)"
OUT_IN_INPUT_ADVICE = "name a directory outside it (a model is kept apart from the data it reads)"


def check_train_out(
    out_dir: str | Path,
    inputs: Sequence[str | Path] = (),
    model_root: str | Path | None = None,
) -> None:
    """Refuse, whatever ``force`` says, an ``--out`` that is an input or part of the model root.

    Writing a model replaces ``--out`` whole (:func:`model.artifact.save_router`), so it must not be
    the model root or a directory holding it, a registered version (immutable: a server or
    ``paidan label`` may be reading it, and its scores describe it), or inside one, or the
    registry's own files and directories (``scores/``, ``eval/`` …: a model written as
    ``scores`` was then listed as a version, and scores written into it), nor anything of
    another model root (:func:`check_other_registry`). Without ``model_root`` (a library call
    that names no root) these are not checked. Nor may it be an input (``inputs``: training files
    or directories, unlabelled files, user dictionary, stopword list), lie inside an input
    directory, or hold an input.

    Raises
    ------
    OutputPathError
        Naming ``--out``, what it is and why it cannot be written.
    """
    out = Path(out_dir)
    target = out.resolve()
    if model_root is not None:
        root = Path(model_root)
        where = f"the model root {root} (PAIDAN_MODEL_ROOT)"
        if target == root.resolve():
            raise OutputPathError(
                f"--out {out} is {where}, which holds every version, current and the registry; "
                f"omit --out to write {root / '<version>'}, or name a new directory"
            )
        if root.resolve().is_relative_to(target):
            raise OutputPathError(
                f"--out {out} holds {where}, with every version and the registry; name a new "
                "directory"
            )
        for version in versions(root):
            held = (root / version).resolve()
            if target == held or target.is_relative_to(held):
                what = "is" if target == held else "is inside"
                raise OutputPathError(
                    f"--out {out} {what} the registered version {version} under {where}; a "
                    "version is never modified (a server or `paidan label` may be reading it, "
                    f"and {SCORES_DIR}/{version}.json describes it): name a new directory"
                )
        for name in REGISTRY_ENTRIES:
            entry = (root / name).resolve()
            if target == entry or target.is_relative_to(entry):
                what = "is" if target == entry else "is inside"
                raise OutputPathError(
                    f"--out {out} {what} the registry's {name} under {where}; name a new directory"
                )
        check_other_registry(out, target, root)
    given = [Path(p) for p in inputs]
    check_not_input([out], given, "--out", OUT_IS_INPUT_ADVICE, OUT_IN_INPUT_ADVICE)
    for path in given:
        if path.resolve().is_relative_to(target):
            raise OutputPathError(
                f"--out {out} holds the input {path}; replacing it would delete the input: name "
                "a new directory for the model"
            )


def check_other_registry(out: Path, target: Path, model_root: Path) -> None:
    """Refuse an ``--out`` in, or that is, a model root other than ``model_root``.

    The checks above guard the versions of PAIDAN_MODEL_ROOT only: ``--out root2/<version> --force``
    with another root in PAIDAN_MODEL_ROOT replaced root2's current version, which its server was
    serving. A version is never modified, and a new directory there would be a version its registry
    never saw written (nor checked as the checks above check one); the registry is recognised by
    what it writes (:func:`model.registry.registry_marker`).

    Raises
    ------
    OutputPathError
        Naming ``--out``, the registry, the file that marks it, and how to train into it.
    """
    active = model_root.resolve()
    for node in (target, *target.parents):
        if node == active:  # the root the checks above guard, and everything above it
            return
        marker = registry_marker(node)
        if marker is None:
            continue
        where = f"the model root {node} (it holds {marker})"
        if node == target:
            what = f"is {where}"
        elif node == target.parent and (target / METADATA_FILE).is_file():
            what = f"is the version {target.name} of {where}"
        elif node == target.parent:
            what = f"is in {where}"
        else:
            what = f"is inside {node / target.relative_to(node).parts[0]} in {where}"
        raise OutputPathError(
            f"--out {out} {what}, not PAIDAN_MODEL_ROOT ({model_root}); a version there is never "
            "modified (a server or `paidan label` may be reading it), and that registry gains new "
            f"ones from training with PAIDAN_MODEL_ROOT={shlex.quote(str(node))} and no --out: "
            "train so, or name a directory outside it"
        )


def unlabelled_columns(path: Path, have: Sequence[str], columns: ColumnMap) -> ColumnMap:
    """Where an ``--unlabelled`` file's text and title are read: in the columns ``columns`` maps
    them to, else in the canonical ``text`` and ``title``; a file with neither title is read
    without titles (logged), and one with neither text is refused.

    One set of column options serves every input, so a labelled export in its system's names
    (``--text-col 诉求内容``) and an unlabelled dump in the canonical ``id,title,text`` could not
    be trained together: the dump was refused for lacking ``诉求内容``.

    Raises
    ------
    TicketFileError
        If the file has neither the mapped nor the canonical text column: naming the file, its
        columns, and that the column options apply to the ``--unlabelled`` files too.
    """
    found: dict[str, str | None] = {}
    for field_name in ("text", "title"):
        mapped = columns.source_for(field_name)
        canonical = ColumnMap().source_for(field_name)
        names = list(dict.fromkeys([*columns.names(field_name), *filter(None, [canonical])]))
        found[field_name] = next((n for n in names if n in have), None)
        if found[field_name] is not None:
            continue
        shown = " or ".join(map(quoted, names))
        if field_name == "text":
            hint = delimiter_hint(path, have, names[0], columns.delimiter)
            raise TicketFileError(
                f"{path}: no column {shown} for the ticket text; the file has columns "
                f"{', '.join(map(quoted, have))} ("
                + (
                    hint
                    or "the column options, --text-col and --title-col, name the columns of the "
                    "--unlabelled files too; an --unlabelled file may use the canonical text and "
                    "title instead"
                )
                + ")"
            )
        if mapped != canonical:
            logger.warning(
                "%s: no column %s for the ticket title: its tickets are read without titles",
                path,
                shown,
            )
    return ColumnMap(
        title=found["title"],
        text=found["text"] or columns.text,
        id=None,
        department=None,
        category=None,
        time=None,
        delimiter=columns.delimiter,
    )


UNLABELLED_CHUNK = 10_000  # rows of an unlabelled file read at a time


@dataclass
class UnlabelledTickets:
    """What :func:`read_unlabelled` read: the titles and texts kept (in input order), and how many
    rows the files held (more than kept when a sample was drawn)."""

    titles: list[str]
    texts: list[str]
    rows_read: int

    def pairs(self) -> list[tuple[str, str]]:
        """(title, text) of each ticket kept, as training's ``extra_texts`` takes them."""
        return list(zip(self.titles, self.texts, strict=True))


def read_unlabelled(
    paths: Sequence[str | Path],
    columns: ColumnMap,
    max_rows: int | None = None,
    seed: int = 0,
) -> UnlabelledTickets:
    """Read ``--unlabelled`` ticket files (or directories of them) for their titles and texts,
    each file's columns found by :func:`unlabelled_columns`, a chunk at a time.

    With more than ``max_rows`` rows, a uniform random sample of ``max_rows`` of them is kept:
    each row draws a random key (``seed``; the same files give the same sample) and the rows with
    the smallest keys so far are all that is held, so an archive of millions never is whole in
    memory. The rows kept stay in input order.
    """
    from training.label_io import file_columns

    rng = np.random.default_rng(seed)
    keys = np.zeros(0)
    titles: list[str] = []
    texts: list[str] = []
    rows = 0
    named = named_paths(paths)
    if not named:
        raise TicketFileError("no unlabelled files were given")
    for path, name in named:
        have = file_columns(path, columns.delimiter)
        mapped = unlabelled_columns(path, have, columns)
        for frame in iter_tickets([(path, name)], mapped, size=UNLABELLED_CHUNK):
            rows += len(frame)
            titles += frame["title"].tolist()
            texts += frame["text"].tolist()
            if max_rows is None:
                continue  # every row is kept: no keys to draw
            # Each row's key, drawn in input order: the stream is the same for any chunk size.
            keys = np.concatenate([keys, rng.random(len(frame))])
            if len(keys) > max_rows:
                keep = np.sort(np.argpartition(keys, max_rows - 1)[:max_rows])
                keys = keys[keep]
                titles = [titles[i] for i in keep]
                texts = [texts[i] for i in keep]
    return UnlabelledTickets(titles, texts, rows)


def unlabelled_sample_note(read: UnlabelledTickets, config: TrainingConfig) -> dict[str, int]:
    """Say (a logged warning) when :func:`read_unlabelled` kept a sample, and return what
    ``metadata.json`` records of it: ``training_data.unlabelled_rows_read``, beside
    ``unlabelled_rows`` (those kept); nothing when every row was kept."""
    if read.rows_read <= len(read.texts):
        return {}
    logger.warning(
        "the unlabelled files hold %s; a random %s of them (seed %d) widen the vocabulary: each "
        "costs memory while training and size in the model (--unlabelled-max-rows, default %s)",
        counted(read.rows_read, "ticket", thousands=True),
        f"{len(read.texts):,}",
        config.seed,
        f"{UNLABELLED_MAX_ROWS:,}",
    )
    return {"unlabelled_rows_read": read.rows_read}


def train(
    paths: Sequence[str | Path],
    out_dir: str | Path | None,
    columns: ColumnMap = ColumnMap(),
    config: TrainingConfig = TrainingConfig(),
    strict: bool = False,
    force: bool = False,
    userdict: str | Path | None = None,
    stopwords: str | Path | None = None,
    unlabelled: Sequence[str | Path] = (),
    model_root: str | Path | None = None,
    progress: Progress | None = None,
    n_jobs: int | None = -1,
    window: Window = Window(),
    extra_metadata: dict[str, Any] | None = None,
    on_window: Callable[[dict[str, Any]], None] | None = None,
    remits: str | Path | Sequence[str | Path] | None = None,
    rules: str | Path | Sequence[str | Path] | None = None,
    on_validated: Callable[[ValidationReport], None] | None = None,
    fit_only: str | Path | Sequence[str | Path] | None = None,
) -> TrainResult:
    """Train, cross-validate and save a model directory.

    Parameters
    ----------
    paths : sequence of str or Path
        Labelled ticket files (CSV, XLSX, JSONL, a JSON array, Parquet) or directories of them.
    out_dir : str or Path or None
        The model directory to write. ``None`` writes ``<model_root>/<version>``; with no model root
        either, nothing is written.
    columns : ColumnMap
        Mapping of the input's column names to the canonical ones, and the delimiter of CSV files
        (of ``unlabelled`` too).
    config : TrainingConfig
        Hyperparameters.
    strict : bool
        Refuse labels with fewer than ``config.min_examples`` rows instead of merging them into 其他.
    force : bool
        Replace ``out_dir`` when it is an earlier model directory (never anything else: see
        :func:`check_train_out` and :func:`model.artifact.check_out_dir`).
    userdict, stopwords : str or Path, optional
        Tokenizer resources; default to the bundled ones.
    unlabelled : sequence of str or Path
        Unlabelled ticket files whose texts widen the vocabulary and IDF statistics.
    model_root : str or Path, optional
        Where versions live when ``out_dir`` is ``None``; an ``out_dir`` that is the root, holds
        it, or is a version or the registry's under it is refused.
    progress : callable, optional
        Progress callback ``(stage, done, total)``.
    n_jobs : int or None
        Processes for the classifiers' fits, as in joblib (``-1``: one per core). The model is the
        same for any value; each process holds liblinear's copy of a fold's features while fitting.
    window : Window
        Train on the recent part of the rows only (:func:`training.window.select_window`); it is
        recorded in ``metadata["training_data"]["window"]``.
    extra_metadata : dict, optional
        Merged into ``metadata["training_data"]`` (the default model's ``bundled_sample`` marker).
    on_window : callable, optional
        Called with the window's description (as recorded in the metadata) once the rows are
        read, before the fit, when a window was asked for.
    remits : str or Path, or a sequence of them, optional
        Files of remits, departments' or categories' (:mod:`training.remits`), read before the
        tickets.
    rules : str or Path, or a sequence of them, optional
        Files of dispatch rules (:mod:`training.rules`), read before the tickets.
    on_validated : callable, optional
        As in :func:`train_frame`; the report's ``absent_columns`` are set by then.
    fit_only : str or Path, or a sequence of them, optional
        Labelled ticket files (or directories) learnt from but never scored (tickets borrowed
        from elsewhere: see :func:`train_frame`), read with ``columns``; no window applies to them.

    Returns
    -------
    TrainResult
    """
    remit_files = as_paths(remits)
    rule_files = as_paths(rules)
    fit_only_files = as_paths(fit_only)
    if out_dir is not None:  # before the reading and training it would waste
        inputs = [
            *paths,
            *fit_only_files,
            *unlabelled,
            *(p for p in (userdict, stopwords) if p),
            *remit_files,
            *rule_files,
        ]
        check_train_out(out_dir, inputs, model_root)
        check_out_dir(out_dir, force)
    elif model_root is not None:
        check_model_root(model_root)
    require_tokenizer(config)
    remit_rows = read_remits(remit_files) if remit_files else None
    rule_rows = read_rules(rule_files) if rule_files else None
    named = named_paths(paths)
    files = [p for p, _ in named]
    headers: dict[str, list[str]] = {}
    repeated_headers: dict[str, list[int]] = {}
    # The window is kept while reading: a history far larger than memory trains on its window.
    if progress:
        progress("reading", 0, 1)
    read = read_window(
        named, columns, window, headers, columns.time or "time", repeated_headers=repeated_headers
    )
    require_rows(read.rows_in, files)
    absent = label_column_notes(read.labelled, columns, headers)
    if note := title_column_note(headers, columns, "trained"):
        absent.append(note)
    if note := id_column_note(headers, columns, TRAIN_ID_NOTE):
        absent.append(note)
    raw, window_info = read.select()
    del read
    if progress:
        progress("reading", 1, 1)
    if window_info and on_window is not None:
        on_window(window_info)  # said before the fit: a run killed during it said nothing of it
    extra: list[tuple[str, str]] = []
    extra_files: list[dict[str, str]] = []
    sampled: dict[str, int] = {}
    if unlabelled:
        read_extra = read_unlabelled(unlabelled, columns, config.unlabelled_max_rows, config.seed)
        extra = read_extra.pairs()
        extra_files = unlabelled_files(unlabelled)
        sampled = unlabelled_sample_note(read_extra, config)
    borrowed = None
    borrowed_files: list[dict[str, str]] = []
    if fit_only_files:
        named_fit = named_paths(fit_only_files)
        borrowed = read_tickets(named_fit, columns)
        require_rows(len(borrowed), [p for p, _ in named_fit])
        borrowed_files = [
            {"name": display_name(name), "sha256": sha256_file(path)} for path, name in named_fit
        ]
    shas = [sha256_file(p) for p in files]
    result = train_frame(
        raw,
        out_dir,
        config,
        strict=strict,
        force=force,
        userdict=userdict,
        stopwords=stopwords,
        extra_texts=extra,
        model_root=model_root,
        progress=progress,
        data_sha=data_fingerprint(
            shas,
            window_info,
            [f["sha256"] for f in extra_files],
            [name for _, name in named],
            [f["sha256"] for f in borrowed_files],
        ),
        data_files=[
            {"name": display_name(name), "sha256": sha}
            for (_, name), sha in zip(named, shas, strict=True)
        ],
        extra_metadata={
            "columns": columns.recorded(),
            **({"window": window_info} if window_info else {}),
            **({"unlabelled_files": extra_files} if extra_files else {}),
            **sampled,
            **(extra_metadata or {}),
        },
        n_jobs=n_jobs,
        repeated_header_rows=sum(map(len, repeated_headers.values())),
        remits=remit_rows,
        rules=rule_rows,
        on_validated=lambda report: validated(report, absent, on_validated),
        fit_only=borrowed,
        fit_only_files=borrowed_files,
    )
    result.validation.absent_columns = absent
    return result


def validated(
    report: ValidationReport,
    absent: list[str],
    then: Callable[[ValidationReport], None] | None,
) -> None:
    """Record the notes on label columns the files lack in ``report``, then call ``then``."""
    report.absent_columns = absent
    if then is not None:
        then(report)


def require_tokenizer(config: TrainingConfig) -> None:
    """Refuse, before any work, a tokenizer backend whose package cannot be imported.

    Raises
    ------
    BackendMissingError
        Naming the ``--tokenizer`` setting, the package and ``pip install`` it.
    """
    try:
        import_backend(config.tokenizer)
    except BackendMissingError as e:
        other = next(b for b in BACKENDS if b != config.tokenizer)
        raise BackendMissingError(
            f"cannot train with --tokenizer {config.tokenizer}: the {config.tokenizer} package "
            f"cannot be imported ({e.__cause__}): pip install {config.tokenizer} (or train with "
            f"--tokenizer {other})",
            name=config.tokenizer,
        ) from e.__cause__


def frame_fingerprint(df: pd.DataFrame) -> str:
    """SHA-256 of the canonical columns of a table of tickets (row order matters)."""
    h = hashlib.sha256()
    cols = [c for c in ("id", "title", "text", "department", "category") if c in df.columns]
    for row in df[cols].astype(str).itertuples(index=False, name=None):
        h.update("\x1f".join(row).encode())
        h.update(b"\x1e")
    return h.hexdigest()


def train_frame(
    raw: pd.DataFrame,
    out_dir: str | Path | None,
    config: TrainingConfig = TrainingConfig(),
    strict: bool = False,
    force: bool = False,
    userdict: str | Path | None = None,
    stopwords: str | Path | None = None,
    extra_texts: Sequence[tuple[str, str]] = (),
    model_root: str | Path | None = None,
    progress: Progress | None = None,
    data_sha: str | None = None,
    data_files: list[dict[str, Any]] | None = None,
    extra_metadata: dict[str, Any] | None = None,
    n_jobs: int | None = -1,
    options: Options = TRAIN_OPTIONS,
    repeated_header_rows: int | None = None,
    remits: pd.DataFrame | None = None,
    rules: pd.DataFrame | None = None,
    on_validated: Callable[[ValidationReport], None] | None = None,
    fit_only: pd.DataFrame | None = None,
    fit_only_files: list[dict[str, str]] | None = None,
) -> TrainResult:
    """Train, cross-validate and save a model from canonical rows already in memory.

    Parameters
    ----------
    raw : DataFrame
        Canonical rows (``id, title, text, department, category``, plus the reader's ``_source``
        and ``_row`` columns, which validation messages cite).
    out_dir, config, strict, force, userdict, stopwords, model_root, progress, n_jobs
        As in :func:`train`.
    extra_texts : sequence of (title, text)
        Unlabelled tickets that widen the vocabulary and IDF statistics.
    data_sha : str, optional
        Fingerprint of the training data; default: :func:`frame_fingerprint` of ``raw``.
    data_files : list of dict, optional
        The files the rows came from (``name``, ``sha256``), for the metadata.
    extra_metadata : dict, optional
        Merged into ``metadata["training_data"]`` (e.g. rows per source).
    options : Options
        The command's option names, for validation's messages (:func:`validate`).
    repeated_header_rows : int, optional
        Rows the reader left out as repeating their file's header line, recorded with the
        validation's counts (``repeated_header_rows``; ``None``: not recorded).
    remits : DataFrame, optional
        Remits (:func:`training.remits.read_remits`); those of labels the validated rows have
        join the training of their head, are kept in the model directory
        (:data:`~training.remits.REMITS_FILE`) and counted in ``metadata["training_data"]["remits"]``.
    rules : DataFrame, optional
        Dispatch rules (:func:`training.rules.read_rules`), refused when one names a label its
        head does not learn; the router applies them, the model directory keeps them
        (:data:`~model.artifact.RULES_FILE`) and ``metadata["training_data"]["rules"]`` counts them.
    on_validated : callable, optional
        Called with the validation's report (its :meth:`~ValidationReport.warnings`: repeated
        tickets, conflicting or blank labels…) once the rows are validated, before the fit, so
        they are said before the wait.
    fit_only : DataFrame, optional
        Canonical rows learnt from but never scored: tickets borrowed from elsewhere (another
        city's, a vendor's annotated set), whose labels teach every fit but must not stand in for
        the centre's own tickets in what cross-validation promises (the auto threshold's
        ``config.target_precision``, the metrics, the prior shift, the confidence map, the label
        counts). Validated by :func:`training.validate.usable_fit_only` (only the labels ``raw``
        teaches are kept) and trained by :func:`fit_router`; ``metadata["training_data"]["fit_only"]``
        counts them (with ``fit_only_files``, the files' ``name`` and ``sha256``), and each head's
        ``fit_only_rows`` those it learnt from.

    Returns
    -------
    TrainResult
    """
    if out_dir is not None:
        check_train_out(out_dir, [p for p in (userdict, stopwords) if p], model_root)
        check_out_dir(out_dir, force)
    elif model_root is not None:
        check_model_root(model_root)
    require_tokenizer(config)
    if progress:
        progress("validating", 0, 1)
    df, report = validate(raw, config.min_examples, strict, options)
    report.repeated_header_rows = repeated_header_rows
    df = drop_single_label_heads(df, report)
    if rules is not None:  # before the fit: a rule that could never apply is a typo to fix first
        check_rule_labels(
            rules, {head: sorted(set(df[head]) - {""}) for head in HEADS if head in df}
        )
    if progress:
        progress("validating", 1, 1)
    if on_validated is not None:
        on_validated(report)
    userdict_path = Path(userdict) if userdict else resources.default_userdict()
    stopwords_path = Path(stopwords) if stopwords else resources.default_stopwords()
    # Read once here, so a bad file is one clear error before the work, not a traceback in a fit.
    # The model directory keeps the words as the tokenizer holds them: normalised as texts are.
    resource_files: dict[str, str | Path | bytes | None] = {
        USERDICT_FILE: format_userdict(read_userdict(userdict_path)).encode(),
        STOPWORDS_FILE: format_stopwords(read_stopword_list(stopwords_path)).encode(),
    }
    for path, what in ((userdict_path, "user dictionary"), (stopwords_path, "stopword list")):
        changed = changed_by_normalizing(path, what)
        if changed:
            shown = ", ".join(f"{a} → {b}" for a, b in changed[:3])
            logger.warning(
                "%s: %d word(s) of the %s normalised as ticket texts are, so that they match (%s%s)",
                path,
                len(changed),
                what,
                shown,
                ", …" if len(changed) > 3 else "",
            )
    extra = list(extra_texts)
    remits_info: dict[str, Any] = {}
    if remits is not None:
        labels = {head: sorted(set(df[head]) - {""}) for head in HEADS}
        remits, skipped = usable_remits(remits, labels)
        remits_info = {
            "rows": len(remits),
            "departments": int(remits.loc[remits["department"] != "", "department"].nunique()),
            "categories": int(remits.loc[remits["category"] != "", "category"].nunique()),
            "weight": config.remit_weight,
            **({"left_out_departments": skipped["department"]} if "department" in skipped else {}),
            **({"left_out_categories": skipped["category"]} if "category" in skipped else {}),
        }
        if len(remits):
            resource_files[REMITS_FILE] = format_remits(remits)
        else:
            remits = None

    fit_only_info: dict[str, Any] = {}
    if fit_only is not None:
        fit_only, fit_only_info = usable_fit_only(fit_only, df, options)
        fit_only_info = {"files": fit_only_files or [], **fit_only_info}
        if fit_only_info.get("left_out_labels"):
            left = fit_only_info["left_out_labels"]
            logger.warning(
                "--fit-only: labels the training files do not teach are left out (rows): %s",
                "; ".join(
                    f"{head} " + listing([f"{k!r} ({v})" for k, v in c.items()])
                    for head, c in left.items()
                ),
            )
    router, cv = fit_router(
        df,
        config,
        userdict_path,
        stopwords_path,
        extra,
        progress,
        n_jobs,
        remits=remits,
        fit_only=fit_only,
    )
    rules_info: dict[str, Any] = {}
    if rules is not None and len(rules):
        router.rules = compile_rules(rules, config.script)
        resource_files[RULES_FILE] = format_rules(rules)
        rules_info = rules_summary(
            rules, {name: head.labels for name, head in router.heads.items()}
        )
    data_sha = data_sha or frame_fingerprint(raw)
    if out_dir is None and model_root is not None:
        router.version = free_version(Path(model_root), data_sha, config)
    else:
        router.version = make_version(data_sha, config)
    metadata = {
        "heads": {
            name: {
                "labels": head.labels,
                "counts": head.counts,
                "threshold": head.threshold,
                "target_precision": config.target_precision,
                "prior_alpha": head.prior_alpha,
                "confidence_map": {
                    "slope": head.confidence_map[0],
                    "intercept": head.confidence_map[1],
                },
                "inputs": router.head_inputs(name),
                # TrainingConfig.category_shares_in_ranking: the weight chosen for ranks 2..k.
                **(
                    {"category_share_weight": head.category_share_weight}
                    if head.category_shares is not None
                    else {}
                ),
                **(
                    {"fit_only_rows": cv[name].report["fit_only_rows"]}
                    if "fit_only_rows" in cv[name].report
                    else {}
                ),
            }
            for name, head in router.heads.items()
        },
        "training_data": {
            "files": data_files or [],
            "sha256": data_sha,
            "rows": len(raw),
            "unlabelled_rows": len(extra),
            "validation": report.to_dict(),
            **({"remits": remits_info} if remits_info else {}),
            **({"fit_only": fit_only_info} if fit_only_info else {}),
            **({"rules": rules_info} if rules_info else {}),
            **(extra_metadata or {}),
        },
        "config": config.to_dict(),
        "cv_metrics": {name: _summary_metrics(h.report) for name, h in cv.items()},
    }
    target: Path | None = (
        Path(out_dir) if out_dir else (Path(model_root) / router.version if model_root else None)
    )
    model_dir = None
    if target is not None:
        if model_root is not None:  # the version current now stays so (no pointer yet: newest)
            keep_current(model_root, target)
        model_dir = save_router(
            router,
            target,
            metadata,
            resources=resource_files,
            force=force,
        )
    return TrainResult(
        router=router, model_dir=model_dir, metadata=metadata, validation=report, cv=cv
    )


def _summary_metrics(report: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "n",
        "folds",
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "top3_accuracy",
        "ece",
        "auto",
        "per_class",
        "input_selection",
        "input_selection_rows",
        "rows",
        "prior_alpha",
        "prior_selection",
        "confidence_map",
    )
    return {k: report[k] for k in keep if k in report}
