"""Metrics shared by cross-validation at training time and by ``paidan evaluate``."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from model.config import OTHER_LABEL

ECE_BINS = 15
# Why a head's macro- and weighted-F1 are undefined (``None``, see :func:`ranked_report`).
F1_UNDEFINED = "no row's true label is one the model knows"


def top_k_accuracy(
    y_true: np.ndarray, proba: np.ndarray, labels: Sequence[str] | np.ndarray, k: int = 3
) -> float:
    """Share of rows whose true label is among the ``k`` most probable (labels unseen by the model count as misses)."""
    return top_hits_accuracy(y_true, top_k(proba, k), labels)


def top_k(rank: np.ndarray, k: int = 3) -> np.ndarray:
    """Per row, the columns of its ``k`` highest scores, highest first (ties: the first column)."""
    # A copy: a view would keep every row's whole ranking alive as long as its top k.
    return np.argsort(-rank, axis=1, kind="stable")[:, :k].copy()


def top_hits(
    y_true: Sequence[str] | np.ndarray, top: np.ndarray, labels: Sequence[str] | np.ndarray
) -> np.ndarray:
    """Per row, whether its true label is among its :func:`top_k` columns of ``labels``."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array(
        [index.get(t, -1) in row for t, row in zip(y_true, top, strict=True)], dtype=bool
    )


def top_hits_accuracy(
    y_true: Sequence[str] | np.ndarray, top: np.ndarray, labels: Sequence[str] | np.ndarray
) -> float:
    """Share of rows whose true label is among their :func:`top_k` columns of ``labels``."""
    hits = top_hits(y_true, top, labels)
    return float(hits.mean()) if len(hits) else 0.0


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE over equal-width confidence bins: the average |accuracy − confidence|, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Per-bin mean confidence, accuracy and count, for the reliability plot."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        out.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(mask.sum()),
                "confidence": float(confidence[mask].mean()) if mask.any() else 0.0,
                "accuracy": float(correct[mask].mean()) if mask.any() else 0.0,
            }
        )
    return out


# One-sided 95 % normal quantile: an auto threshold must reach the target precision with this
# confidence, not just on average, so that the promise holds on tickets the model has not seen.
PRECISION_Z = 1.645


def wilson_lower_bound(successes: np.ndarray, n: np.ndarray, z: float = PRECISION_Z) -> np.ndarray:
    """Lower end of the Wilson score interval for a proportion, elementwise."""
    n = np.maximum(n, 1)
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At no successes the exact bound is 0; rounding can leave it a hair below (-1.7e-18 at 0/87).
    return np.clip((centre - margin) / (1 + z * z / n), 0.0, 1.0)


def choose_threshold(
    confidence: np.ndarray, correct: np.ndarray, target: float, z: float = PRECISION_Z
) -> float:
    """The lowest confidence at which the rows at or above it reach ``target`` precision.

    Rows are ranked by confidence; among the cut points between distinct confidences, the one that
    keeps the most rows wins, provided the lower bound of the Wilson interval of their precision
    (one-sided, ``z``) reaches ``target``. Using the bound rather than the observed precision keeps
    a small, lucky group of held-out rows from setting a threshold that fails on new tickets. If no
    cut qualifies, ``1.0``: every row goes to a person.

    Parameters
    ----------
    confidence : ndarray
        Winning-label probability of each held-out row.
    correct : ndarray of bool
        Whether the winning label was right.
    target : float
        Required precision of ``auto`` rows, e.g. 0.95.
    z : float, default 1.645
        Normal quantile of the bound (0 gives the plain observed precision).
    """
    if len(confidence) == 0:
        return 1.0
    order = np.argsort(-confidence, kind="stable")
    conf = confidence[order]
    n = np.arange(1, len(conf) + 1)
    precision = wilson_lower_bound(np.cumsum(correct[order]), n, z)
    # Only cut where the next row has a strictly lower confidence: ties are all in or all out.
    cut = np.r_[conf[1:] < conf[:-1], True]
    ok = np.flatnonzero(cut & (precision >= target))
    if len(ok) == 0:
        return 1.0
    return float(conf[ok[-1]])


def auto_stats(
    confidence: np.ndarray,
    correct: np.ndarray,
    threshold: float,
    auto: np.ndarray | None = None,
    catch_all: np.ndarray | None = None,
) -> dict[str, Any]:
    """Precision and coverage of the rows dispatched without a person: ``auto``, the router's
    decision per row (:attr:`model.router.Ranking.auto`: at or above ``threshold`` and holding a
    known word); without it, the rows at or above ``threshold``.

    When no row reaches the threshold (coverage 0, typically threshold ``1.0``: every ticket goes
    to a person) the precision of that empty set is undefined and given as ``None``, not as a
    perfect 1.0 that a reader, or an average over folds, would take for a measurement.

    Rows that reach the threshold but go to a person all the same are counted, each key present
    only when there are any: in ``catch_all`` those whose suggested department is the catch-all
    其他 (``catch_all``, :func:`model.router.catch_all_rows`), in ``without_known_terms`` the others
    (no known word). :func:`no_auto_note` tells them from a threshold that no row reaches.
    """
    reached = confidence >= threshold
    auto = reached if auto is None else np.asarray(auto, dtype=bool)
    stats: dict[str, Any] = {
        "threshold": float(threshold),
        "precision": float(correct[auto].mean()) if auto.any() else None,
        "coverage": float(auto.mean()) if len(auto) else 0.0,
    }
    held = reached & ~auto
    other = np.zeros_like(held) if catch_all is None else held & np.asarray(catch_all, dtype=bool)
    if n := int(np.count_nonzero(held & ~other)):
        stats["without_known_terms"] = n
    if n := int(np.count_nonzero(other)):
        stats["catch_all"] = n
    return stats


def format_f1(value: float | None) -> str:
    """A macro- or weighted-F1 with three decimals, or ``undefined`` when there was no class to
    average over (:data:`F1_UNDEFINED`)."""
    return "undefined" if value is None else f"{value:.3f}"


def format_auto_precision(precision: float | None) -> str:
    """``precision`` with three decimals, or ``–`` when no row was dispatched automatically."""
    return "–" if precision is None else f"{precision:.3f}"


def no_auto_note(auto: dict[str, Any]) -> str:
    """Why a head's auto precision reads ``–``: no row reached its threshold, or those that did
    hold no word the model knows (``without_known_terms``, :func:`auto_stats`)."""
    threshold = f"{auto['threshold']:.3f}"
    held = auto.get("without_known_terms") or 0
    if other := auto.get("catch_all") or 0:
        one = other == 1
        return (
            f"{other} ticket{'' if one else 's'} reach{'es' if one else ''} the auto threshold "
            f"{threshold} but {'its' if one else 'their'} suggested department is the catch-all "
            f"'{OTHER_LABEL}', which no work order can go to"
            + (f", and {held} more hold no word the model knows" if held else "")
            + f", so {'it goes' if one and not held else 'they go'} to a person, as every ticket "
            "below the threshold does, and auto precision is undefined (–)"
        )
    if held:
        one = held == 1
        return (
            f"{held} ticket{'' if one else 's'} reach{'es' if one else ''} the auto threshold "
            f"{threshold} but hold{'s' if one else ''} no word the model knows (only character "
            f"n-grams match), so {'it goes' if one else 'they go'} to a person, as every ticket "
            "below the threshold does, and auto precision is undefined (–)"
        )
    return (
        f"no ticket reaches the auto threshold {threshold}, so every ticket goes to a "
        "person and auto precision is undefined (–)"
    )


def head_report(
    y_true: Sequence[str] | np.ndarray,
    proba: np.ndarray,
    labels: Sequence[str],
    threshold: float,
    rank: np.ndarray | None = None,
    scored: Collection[str] | None = None,
    auto: np.ndarray | None = None,
    catch_all: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every figure the evaluation report gives for one head.

    A true label the model does not know (a misspelt department, a taxonomy other than its
    training data's) is always scored wrong: its rows count in ``accuracy``, ``top3_accuracy`` and
    the ECE, and, answered as one of the model's labels, in that label's precision. It is not a
    class of macro- or weighted-F1 (nor of ``per_class`` and ``confusion``): as one, each spelling
    of a handful of rows weighed as much as a department, and ten of them in 20,000 tickets took
    macro-F1 from 0.90 to 0.60 (:func:`unknown_label_rows` counts them for the report).

    Parameters
    ----------
    y_true : sequence of str
        True labels.
    proba : ndarray of shape (n, len(labels))
        Predicted probabilities, columns in ``labels`` order.
    labels : sequence of str
        The model's labels.
    threshold : float
        The head's auto-dispatch threshold.
    rank : ndarray, optional
        The scores the head ranks labels by (``Head.shift(proba)``), default ``proba``: the
        predicted label and the top 3 follow them, the confidence is ``proba`` of that label.
    scored : collection of str, optional
        The labels macro- and weighted-F1 average over; ``per_class`` and ``confusion`` cover
        them and the model's labels. Default: the true labels the model knows (a label it knows
        that this data lacks says nothing about this data). A benchmark that compares with another
        model on the same rows passes the truth's labels, as that model is scored.
    auto : ndarray of bool, optional
        The rows the router dispatches without a person (:func:`auto_stats`); default: those
        whose confidence reaches ``threshold``.
    catch_all : ndarray of bool, optional
        The rows whose suggested department is the catch-all 其他, counted apart among those that
        reach the threshold and go to a person all the same (:func:`auto_stats`).

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1``, ``weighted_f1``, ``top3_accuracy``, ``ece``, ``auto``
        (threshold, precision, coverage), ``per_class`` (precision, recall, f1, top3, support),
        ``confusion`` (labels, matrix) and ``reliability`` bins. When no true label is one the
        model knows (and ``scored`` is not given), macro- and weighted-F1 have no class to
        average over: they are ``None``, not a 0.0 that reads as a measurement, and
        ``f1_undefined`` says why (:data:`F1_UNDEFINED`).
    """
    rank = proba if rank is None else rank
    best = rank.argmax(axis=1)
    return ranked_report(
        y_true,
        best,
        proba[np.arange(len(best)), best],
        top_k(rank, 3),
        labels,
        threshold,
        scored,
        auto,
        catch_all,
    )


def ranked_report(
    y_true: Sequence[str] | np.ndarray,
    best: np.ndarray,
    confidence: np.ndarray,
    top3: np.ndarray,
    labels: Sequence[str],
    threshold: float,
    scored: Collection[str] | None = None,
    auto: np.ndarray | None = None,
    catch_all: np.ndarray | None = None,
) -> dict[str, Any]:
    """:func:`head_report` from what it reads of each row's scores: the column of its predicted
    label (``best``), that label's probability (``confidence``), its :func:`top_k` 3 columns
    (``top3``) and whether the router dispatches it without a person (``auto``). A caller that
    scores rows a chunk at a time keeps these, not every probability.
    """
    # Here, not at the top: sklearn.metrics (and scipy.stats with it) took a second to import in
    # every command that reaches this module, `paidan models list` and `promote` among them.
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    y = np.asarray(y_true, dtype=str)
    labels_arr = np.asarray(labels, dtype=str)
    y_pred = labels_arr[best]
    correct = y_pred == y
    known = set(labels_arr.tolist())
    over = sorted(set(y.tolist()) & known if scored is None else set(scored))
    all_labels = sorted(known | set(over))
    p, r, f, s = precision_recall_fscore_support(y, y_pred, labels=all_labels, zero_division=0)
    hits = top_hits(y, top3, labels_arr)

    def f1(average: str) -> float | None:
        # No true label the model knows: every row is wrong, and there is no class to average.
        if not over:
            return None
        return float(f1_score(y, y_pred, labels=over, average=average, zero_division=0))

    undefined = {} if over else {"f1_undefined": F1_UNDEFINED}
    return {
        "n": len(y),
        "accuracy": float(accuracy_score(y, y_pred)),
        "macro_f1": f1("macro"),
        "weighted_f1": f1("weighted"),
        **undefined,
        "top3_accuracy": float(hits.mean()) if len(hits) else 0.0,
        "ece": expected_calibration_error(confidence, correct),
        "auto": auto_stats(confidence, correct, threshold, auto, catch_all),
        "per_class": {
            label: {
                "precision": float(pi),
                "recall": float(ri),
                "f1": float(fi),
                # Its rows with the label among the top 3: what a dispatcher sees offered.
                "top3": float(hits[y == label].mean()) if si else 0.0,
                "support": int(si),
            }
            for label, pi, ri, fi, si in zip(all_labels, p, r, f, s, strict=True)
        },
        "confusion": {
            "labels": all_labels,
            "matrix": _confusion(y, y_pred, all_labels).tolist(),
        },
        "reliability": reliability_bins(confidence, correct),
    }


def unknown_label_rows(
    y_true: Sequence[str] | np.ndarray, labels: Sequence[str] | np.ndarray
) -> dict[str, int]:
    """The true labels that are not among the model's ``labels``, with their rows, most first.

    These are the rows :func:`head_report` scores as wrong but leaves out of macro-F1; ``""``
    (no label) is not counted.
    """
    y = np.asarray(y_true, dtype=str)
    unknown, rows = np.unique(
        y[~np.isin(y, np.asarray(labels, dtype=str)) & (y != "")], return_counts=True
    )
    pairs = sorted(
        zip(unknown.tolist(), rows.tolist(), strict=True), key=lambda kv: (-kv[1], kv[0])
    )
    return {str(k): int(n) for k, n in pairs}


def _confusion(y: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> np.ndarray:
    """Confusion matrix over ``labels`` (rows: truth); rows whose true label is not one are left
    out. (scikit-learn's refuses a set of labels none of the true labels is in.)"""
    index = {label: i for i, label in enumerate(labels)}
    truth = np.fromiter((index.get(v, -1) for v in y.tolist()), dtype=np.int64, count=len(y))
    pred = np.fromiter((index.get(v, -1) for v in y_pred.tolist()), dtype=np.int64, count=len(y))
    keep = (truth >= 0) & (pred >= 0)
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, (truth[keep], pred[keep]), 1)
    return matrix
