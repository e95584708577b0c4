"""The router: one object holding the features, both heads, their thresholds and the similar-ticket index.

Every caller (the CLI, the HTTP API, the web page and batch labelling) goes through
:meth:`Router.predict`, so they all make the same decision for the same ticket.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import expit, logit

try:  # scipy's own sparse product kernel, for one query without the product's Python (_product_row)
    from scipy.sparse._sparsetools import csr_matmat as _csr_matmat
except ImportError:  # a scipy that moved it: one query takes the public product, as a batch does
    _csr_matmat = None

from model.compiled import (
    CompiledFeatures,
    CompiledHeads,
    CPickled,
    LatentView,
    TicketLike,
    with_extras,
)
from model.config import HEADS, OTHER_LABEL, TrainingConfig
from model.config import MAX_TOP_K as MAX_TOP_K  # re-exported: the API and tests name it here
from model.rules import DispatchRule, RuleIndex
from model.text import clean, mask_label, snippet, to_script, without_salutation
from model.tickets import JOINT_JOINER

if TYPE_CHECKING:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline

# scikit-learn, and model.pipeline which builds on it, are imported only where a router is fitted
# or compiled from its fitted objects: a router loaded from a model's serving file predicts
# without them, so a server never imports scikit-learn (about 1.8 s of a cold start).

logger = logging.getLogger(__name__)

Decision = Literal["auto", "review"]

REASON_BELOW_THRESHOLD = "below_threshold"
REASON_NO_KNOWN_TERMS = "no_known_terms"
# What a ticket says when its content is elsewhere (an attachment, the title, the ticket before):
# words a model learns from tickets that also say something, but which say nothing themselves. A
# ticket whose words are all among theirs (见附件 alone, 如题，同上) holds no known word either
# (REASON_NO_KNOWN_TERMS): its label would be a guess, and the dispatcher must read the attachment.
# Read as the model reads tickets (traditional characters, 見附件, included), word by word.
PLACEHOLDERS = (
    "见附件",
    "详见附件",
    "请见附件",
    "具体见附件",
    "内容见附件",
    "详情见附件",
    "如题",
    "同上",
    "如上",
    "见上",
)
# A dispatch rule gave the label and asks a person to confirm it (its decision is "review").
REASON_RULE = "rule"
# The department head suggests OTHER_LABEL: the catch-all of rare or unlisted departments, which
# is no department a work order can go to, so a person names one (:func:`catch_all_rows`).
REASON_CATCH_ALL = "catch_all"
# Why a head leaves a ticket to a person (HeadResult.reason; null for auto).
Reason = Literal["below_threshold", "no_known_terms", "catch_all", "rule"]
# The head whose OTHER_LABEL names no recipient. A category of 其他 is still a category.
CATCH_ALL_HEAD = "department"
# Scores and thresholds are shown with this many decimals (API answers, `paidan predict`, `paidan
# label`), by shown_score and shown_threshold, so that the figures compare as the decision does.
SHOWN_DECIMALS = 4
_SHOWN_STEP = 10.0**-SHOWN_DECIMALS


# Similar-ticket search reads an inverted index (feature → tickets). Above EXACT_SEARCH_MAX stored
# tickets it keeps each ticket's PRUNED_TERMS highest-weighted features only, and the best
# SIMILAR_CANDIDATES tickets found that way (more on ties) are rescored exactly; below, the index
# is complete.
EXACT_SEARCH_MAX = 5_000
PRUNED_TERMS = 48
SIMILAR_CANDIDATES = 200
# Queries searched at once in the complete index: their score matrix (queries × stored tickets it
# touches, nearly every stored ticket through common characters) stays a few tens of MB, however
# many tickets a batch has. (The pruned index searches each query on its own.)
QUERY_BLOCK = 256
# Similar past tickets a suggestion shows by default (and reads its joint-dispatch advice from).
SIMILAR_K = 5
# A similar past ticket is shown with the first SNIPPET_CHARS characters of its text, cleaned and
# masked (model.text.snippet): many phone tickets have no title, and a title alone (咨询, 投诉)
# often says little. About 170 bytes a ticket in the model (UTF-8 and an offset), memory-mapped
# when served (docs/model.md, step 7).
SNIPPET_CHARS = 60

# A department is suggested beside the suggested one (a joint dispatch, 会办) when at least this
# many of the similar past tickets were dispatched jointly to both (see co_dispatch()).
MIN_CO_TICKETS = 2

# A head's confidence map (slope, intercept on the logit scale) that leaves probabilities alone, and
# how close to 0 or 1 a probability may come before its logit is taken.
IDENTITY_MAP = (1.0, 0.0)
LOGIT_EPS = 1e-12


def shown_threshold(threshold: float) -> float:
    """A head's auto threshold as every answer shows it: rounded to :data:`SHOWN_DECIMALS`.

    A positive threshold never reads as 0, so a score below it can still read below it.
    """
    shown = round(threshold, SHOWN_DECIMALS)
    return _SHOWN_STEP if shown <= 0 < threshold else shown


def shown_score(score: float, threshold: float) -> float:
    """A score as every answer shows it beside its head's :func:`shown_threshold`.

    Rounded to :data:`SHOWN_DECIMALS`, except where that would put it on the other side of the
    shown threshold than the score is of the threshold itself: a score just below it then reads as
    the figure one step below the shown threshold (and one that reaches it, as the threshold), so
    that score and threshold compare as the decision compared them. Rounded alike, a review a hair
    below its threshold read 0.9192 beside 0.9192.
    """
    shown = round(score, SHOWN_DECIMALS)
    limit = shown_threshold(threshold)
    if score >= threshold:
        return max(shown, limit)
    return round(limit - _SHOWN_STEP, SHOWN_DECIMALS) if shown >= limit else shown


def shown_scores(scores: np.ndarray, threshold: float) -> list[Any]:
    """:func:`shown_score` of each of ``scores`` (1-D or 2-D), as (nested) Python lists."""
    flat = scores.ravel()
    near = 2 * _SHOWN_STEP
    if flat.size <= 64:
        # One request's few scores: a Python pass costs less than the array operations below,
        # which took a single ticket's answer some 20 µs.
        out = [
            shown_score(p, threshold) if abs(p - threshold) < near else round(p, SHOWN_DECIMALS)
            for p in flat.tolist()
        ]
    else:
        out = [round(p, SHOWN_DECIMALS) for p in flat.tolist()]
        # Only a score within a step or so of the threshold can round across it: the rest are
        # plain rounding, without a Python call each (label shows millions).
        for i in np.flatnonzero(np.abs(flat - threshold) < near).tolist():
            out[i] = shown_score(float(flat[i]), threshold)
    if scores.ndim == 1:
        return out
    k = scores.shape[1]
    return [out[i : i + k] for i in range(0, len(out), k)]


class Answer(BaseModel):
    """A part of an answer: each of its fields is always written, null or not, so the schema of
    what is answered (pydantic's serialization mode, OpenAPI's responses) requires every one,
    defaults included; a request is read by its own models."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class Candidate(Answer):
    label: str
    score: float


class Evidence(Answer):
    term: str
    weight: float


class Source(Answer):
    """How much of a head's linear score for its label came from one of the inputs it reads."""

    input: Literal["words", "latent", "category", "intercept"] = Field(
        description="words: the ticket's TF-IDF word and character n-gram columns; latent: the "
        "latent (LSA) view of them; category: the category head's probabilities, which the "
        "department head reads; intercept: the label's constant term, whatever the ticket"
    )
    weight: float = Field(
        description="The input's share of the label's linear score (the calibration folds' mean "
        "decision function, as evidence weights are): the sources' weights sum to that score, "
        "rounded to 4 decimals each"
    )
    label: str | None = Field(
        default=None,
        description="For category: the category whose probability added most to the score; "
        "null for the other inputs",
    )


class AppliedRule(Answer):
    """The dispatch rule (派单规则, ``paidan train --rules``) that gave a head its label."""

    keywords: list[str] = Field(
        description="The rule's keywords, all of which the ticket holds; a keyword of alternatives "
        "(燃气|煤气) is held when one of them is"
    )
    note: str | None = Field(default=None, description="Why the rule exists, as its file says")


class HeadResult(Answer):
    """One head's suggestion: the winning label, how sure, and why."""

    label: str
    score: float
    decision: Decision
    threshold: float
    reason: Reason | None = Field(
        default=None,
        description="Why the head leaves the ticket to a person; null for auto. "
        f"{REASON_NO_KNOWN_TERMS!r}: the ticket holds no word the model knows (punctuation, "
        "digits, a masked number or emoji alone, or only a placeholder such as 见附件, 如题 "
        "or 同上, whose content is in an attachment), so the label is a guess; "
        f"{REASON_BELOW_THRESHOLD!r}: the score is below the threshold; "
        f"{REASON_CATCH_ALL!r}: the department suggested is the catch-all 其他, which no work "
        f"order can go to; {REASON_RULE!r}: a dispatch rule gave the label and asks a person to "
        "confirm it. paidan label writes it in department_reason and category_reason",
    )
    candidates: list[Candidate]
    evidence: list[Evidence]
    # The clause of the label's remit (its 权责清单 or 分类目录 entry, ``paidan train --remits``)
    # that names most of the evidence: the authority a dispatcher can cite. None without one.
    remit: str | None = None
    # The dispatch rule that gave the label, whatever the model ranked first (its score stays the
    # model's probability of the label); None when the model's ranking decided.
    rule: AppliedRule | None = None
    sources: list[Source] | None = Field(
        default=None,
        description="For a head that reads inputs beside the words (the latent view, the category "
        "head's probabilities): how much of the label's linear score came from each, the "
        "intercept included. Null for a head that reads the words alone, for a label only a "
        "dispatch rule gives (the model has no weights for it) and in paidan label's output",
    )


class SimilarTicket(Answer):
    id: str
    title: str
    snippet: str | None = Field(
        None,
        description=f"The start of the past ticket's text, cleaned and PII-masked, at most "
        f"{SNIPPET_CHARS} characters, then … if it goes on; null for a ticket without a text and "
        "for models trained before snippets were stored",
    )
    department: str | None = None
    # The other departments of a joint dispatch (会办), the lead being ``department``.
    co_departments: list[str] = []
    category: str | None = None
    similarity: float


class CoDepartment(Answer):
    """A department to involve beside the suggested one: a joint dispatch (会办)."""

    label: str
    tickets: list[str] = Field(
        description="Ids of the similar past tickets dispatched jointly to it and to the "
        "suggested department"
    )


class MaskedTicket(Answer):
    """A ticket as typed, its personal data masked as the model read it masked
    (:func:`model.text.clean_and_show`)."""

    title: str | None = Field(
        description="null for a ticket without a title (or none once cleaned)"
    )
    text: str


class RouteResult(Answer):
    """The suggestion for one ticket; a head is ``None`` when the model was trained without it."""

    department: HeadResult | None
    category: HeadResult | None
    similar: list[SimilarTicket]
    model_version: str
    co_departments: list[CoDepartment] = []
    # The ticket as it was read, for a caller that shows it (Router.predict's ``masked``).
    masked: MaskedTicket | None = None

    @property
    def decision(self) -> Decision:
        """``auto`` only when every trained head may dispatch without a person."""
        heads = [h for h in (self.department, self.category) if h is not None]
        return "auto" if heads and all(h.decision == "auto" for h in heads) else "review"


@dataclass
class Head:
    """A fitted classifier for one label column, with its auto-dispatch threshold.

    In a router loaded for serving (:meth:`Router.for_serving`) the classifier is ``None``: its
    numbers are in the router's compiled heads, and ``label_names`` holds its classes.
    """

    name: str
    classifier: CalibratedClassifierCV | None
    threshold: float
    counts: dict[str, int]
    prior_alpha: float = 0.0
    confidence_map: tuple[float, float] = IDENTITY_MAP
    label_names: tuple[str, ...] = ()
    # TrainingConfig.category_shares_in_ranking, for the department head: P(department | category)
    # (rows in the category head's label order, columns in this head's) and its weight in ranks
    # 2..k (:meth:`rerank`). None and 0 rank as heads pickled before them do.
    category_shares: np.ndarray | None = field(default=None, compare=False)
    category_share_weight: float = 0.0

    @cached_property
    def labels(self) -> list[str]:
        """Label names in the classifier's column order.

        Read once: the classes are memory-mapped once loaded, and every item read from a memmap
        is a Python call (36 of them per ticket, measured).
        """
        if self.classifier is None:
            return list(self.label_names)
        return [str(c) for c in self.classifier.classes_]

    @cached_property
    def label_counts(self) -> list[int]:
        """Training rows of each label, in :attr:`labels` order."""
        return [self.counts[label] for label in self.labels]

    @cached_property
    def shift_weights(self) -> np.ndarray | None:
        """Each label's factor in :meth:`shift` (:func:`prior_weights`), ``None`` for no shift."""
        # getattr: heads pickled before the prior shift existed have no alpha.
        return prior_weights(self.label_counts, getattr(self, "prior_alpha", 0.0))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for cached in ("labels", "label_counts", "shift_weights"):  # derived from the rest
            state.pop(cached, None)
        return state

    def shift(self, proba: np.ndarray) -> np.ndarray:
        """Scores that rank this head's labels: the probabilities, prior-shifted (:func:`shift_prior`).

        The head suggests labels in this order; the score it shows for a label, and the one its
        auto threshold reads, stays the probability of that label (:meth:`scores`), so a label
        that the shift moves ahead of a likelier one is seldom dispatched without a person.
        """
        return _shift(proba, self.shift_weights)

    def rerank(self, rank: np.ndarray, category_proba: np.ndarray | None) -> np.ndarray:
        """Ranking scores ``rank`` (:meth:`shift`) with the labels after the suggestion ordered
        with the category head's department shares (:func:`share_ranking`), where this head has
        them (``TrainingConfig.category_shares_in_ranking``); else ``rank`` itself.

        ``category_proba``: the category head's probabilities of the same rows, columns in its
        label order (``None``: no category head, the ranking stays).
        """
        shares, weight = self.category_shares, self.category_share_weight
        if shares is None or not weight or category_proba is None:
            return rank
        return share_ranking(rank, category_proba @ shares, weight)

    def scores(
        self, proba: np.ndarray, rank: np.ndarray | None = None, suggested: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """What the head shows for the classifier's probabilities ``proba``, and how it ranks them.

        Returns ``(shown, rank)``: ``rank`` are the prior-shifted scores (:meth:`shift`), whose
        argmax is the suggested label; ``shown`` are the probabilities with the suggested label's
        recalibrated by :attr:`confidence_map` (:func:`recalibrate_suggestion`). The auto
        threshold reads the shown probability of the suggested label.

        ``rank`` and ``suggested`` (its argmax), when the caller has them already, save computing
        them again.
        """
        rank = self.shift(proba) if rank is None else rank
        suggested = rank.argmax(axis=1) if suggested is None else suggested
        # getattr: heads pickled before the confidence map existed have none (identity).
        mapping = getattr(self, "confidence_map", IDENTITY_MAP)
        return recalibrate_suggestion(proba, suggested, mapping), rank

    def mean_coef(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Linear weights for some classes and features, as the head's probabilities mix them.

        The mean over the calibration folds, and for a blended head (see
        :class:`model.pipeline.BlendedClassifier`) that mean and the multinomial regression's
        weights in the blend's proportions. Returns an array of shape ``(len(rows), len(columns))``.
        """
        if self.classifier is None:
            raise TypeError(f"head {self.name!r} was loaded for serving: it has no classifier")
        out = np.zeros((len(rows), len(columns)), dtype=np.float64)
        n_classes = len(self.classifier.classes_)
        for calibrated in self.classifier.calibrated_classifiers_:
            coef = calibrated.estimator.coef_
            if n_classes == 2:  # a binary LinearSVC keeps one row, for the second class
                coef = np.vstack([-coef[0], coef[0]])
            out += coef[np.ix_(rows, columns)]
        out /= len(self.classifier.calibrated_classifiers_)
        multinomial = getattr(self.classifier, "multinomial_", None)
        if multinomial is not None:
            w = self.classifier.multinomial_weight
            out = (1.0 - w) * out + w * multinomial.coef_[np.ix_(rows, columns)]
        return out

    def mean_intercept(self, label: int) -> float:
        """The intercept of class ``label`` mixed as :meth:`mean_coef` mixes the weights."""
        if self.classifier is None:
            raise TypeError(f"head {self.name!r} was loaded for serving: it has no classifier")
        binary = len(self.classifier.classes_) == 2
        total = 0.0
        for calibrated in self.classifier.calibrated_classifiers_:
            intercept = np.atleast_1d(calibrated.estimator.intercept_)
            if binary:  # one intercept, for the second class, as mean_coef's one weight row
                total += float(intercept[0]) * (1.0 if label == 1 else -1.0)
            else:
                total += float(intercept[label])
        out = total / len(self.classifier.calibrated_classifiers_)
        multinomial = getattr(self.classifier, "multinomial_", None)
        if multinomial is not None:
            w = self.classifier.multinomial_weight
            out = (1.0 - w) * out + w * float(multinomial.intercept_[label])
        return out


def shift_prior(proba: np.ndarray, counts: Sequence[int], alpha: float) -> np.ndarray:
    """Probabilities re-weighted by each label's training share to the power ``-alpha``.

    ``proba * share ** -alpha``, each row renormalised to sum to 1: how every head ranks its labels
    (:class:`~model.config.TrainingConfig`'s ``prior_alpha``), so that the HTTP API, the page and
    batch labelling rank them the same way.

    Parameters
    ----------
    proba : ndarray of shape (n, n_labels)
        Calibrated probabilities, columns in the head's label order.
    counts : sequence of int
        Training rows of each label, in the same order.
    alpha : float
        0 returns ``proba`` unchanged; 1 divides out the training shares completely.
    """
    return _shift(proba, prior_weights(counts, alpha))


def share_ranking(rank: np.ndarray, shares: np.ndarray, weight: float) -> np.ndarray:
    """Ranking scores whose first label is ``rank``'s and whose others follow
    ``(1 - weight) × rank + weight × shares`` (``TrainingConfig.category_shares_in_ranking``).

    ``shares``: per row and label, ``Σ_c P(c | row) × P(label | c)``, the category head's view of
    the label. The suggestion (``rank``'s argmax, the first of equals) is given a score above
    every other, so it stays first and alone decides; only ranks 2..k can change. Returns
    ``rank`` itself for ``weight`` 0 or fewer than three labels (nothing to reorder), else a new
    array.
    """
    if not weight or rank.ndim != 2 or rank.shape[1] < 3 or not len(rank):
        return rank
    out = (1.0 - weight) * rank + weight * shares
    rows = np.arange(len(rank))
    out[rows, rank.argmax(axis=1)] = out.max(axis=1) + 1.0
    return out


def prior_weights(counts: Sequence[int], alpha: float) -> np.ndarray | None:
    """Each label's training share to the power ``-alpha`` (:func:`shift_prior`); ``None`` for 0."""
    if alpha == 0:
        return None
    share = np.asarray(counts, dtype=np.float64)
    return (share / share.sum()) ** -alpha


def _shift(proba: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """:func:`shift_prior` with the labels' weights computed already."""
    if weights is None:
        return proba
    shifted = proba * weights
    total = shifted.sum(axis=1, keepdims=True)
    return np.divide(shifted, total, out=np.array(proba, dtype=np.float64), where=total > 0)


def recalibrate_suggestion(
    proba: np.ndarray, suggested: np.ndarray, mapping: tuple[float, float]
) -> np.ndarray:
    """Each row's probabilities, its suggested label's replaced by how often such suggestions are right.

    The suggested label's probability ``p`` becomes ``sigmoid(slope * logit(p) + intercept)``
    (``mapping = (slope, intercept)``, fitted out of fold by
    :func:`training.train.fit_confidence_map`); the other labels share the rest of the row in their
    old proportions, so the row still sums to 1 and their order is kept. With ``slope > 0`` the map is
    increasing: a ticket more confident than another before is so after, so a threshold passes the
    same tickets as the matching threshold on the classifier's probabilities did, and no decision
    changes.

    Parameters
    ----------
    proba : ndarray of shape (n, n_labels)
        The classifier's probabilities.
    suggested : ndarray of shape (n,)
        Column of each row's suggested label.
    mapping : (float, float)
        ``(slope, intercept)`` on the logit scale; :data:`IDENTITY_MAP` returns ``proba`` itself.
    """
    if tuple(mapping) == IDENTITY_MAP:
        return proba
    slope, intercept = mapping
    if len(proba) == 1:  # one ticket, the dispatcher's case: Python floats, not 16 array calls
        return _recalibrate_one(proba, int(suggested[0]), slope, intercept)
    rows = np.arange(len(proba))
    p = np.clip(proba[rows, suggested], LOGIT_EPS, 1 - LOGIT_EPS)
    confidence = expit(slope * logit(p) + intercept)
    # The other labels share 1 - confidence in proportion to their own sum, not to 1 - p: when p
    # is within rounding of 1, 1 - p can be off by a large part of that sum, and the row would no
    # longer add up to 1. Shares first, then scaled: 1 / rest can overflow when rest is tiny.
    others = proba.copy()
    others[rows, suggested] = 0.0
    rest = others.sum(axis=1, keepdims=True)
    out = np.divide(others, rest, out=np.zeros_like(others), where=rest > 0)
    out *= (1.0 - confidence)[:, np.newaxis]
    out[rows, suggested] = confidence
    # A row of zeros (no label at all) stays so, and so does a row whose suggestion holds all of
    # it: no other label could take the rest.
    keep = rest[:, 0] <= 0
    out[keep] = proba[keep]
    return out


def _recalibrate_one(proba: np.ndarray, j: int, slope: float, intercept: float) -> np.ndarray:
    """:func:`recalibrate_suggestion` of a single row whose suggestion is column ``j``."""
    row = proba[0]
    p = float(row[j])
    # As in recalibrate_suggestion. np.add.reduce is what ndarray.sum calls, without its Python
    # wrapper: the same sums.
    rest = float(np.add.reduce(row[:j]) + np.add.reduce(row[j + 1 :]))
    if rest <= 0:  # a row of zeros, or a suggestion that holds all of it
        return proba
    p = min(max(p, LOGIT_EPS), 1 - LOGIT_EPS)
    z = slope * math.log(p / (1 - p)) + intercept
    # The logistic function, in the form that cannot overflow on either side.
    confidence = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    out = proba.copy()
    out[0, j] = 0.0
    out /= rest  # shares first, as in recalibrate_suggestion
    out *= 1.0 - confidence
    out[0, j] = confidence
    return out


def cited_clause(clauses: Sequence[str], evidence: Sequence[Evidence]) -> str | None:
    """The clause of a remit that names the most evidence weight (the first of equals), or
    ``None`` when none names an evidence term: a remit is cited only where the ticket's own words
    meet it."""
    best, best_weight = None, 0.0
    for clause in clauses:
        folded = clause.lower()  # terms are lower-cased as the tokenizer reads them
        weight = sum(e.weight for e in evidence if e.term in folded)
        if weight > best_weight:
            best, best_weight = clause, weight
    return best


def cited_remit(
    clauses: Mapping[str, Sequence[str]], label: str, evidence: Sequence[Evidence]
) -> str | None:
    """The clause of ``label``'s remit (``clauses``: a head's remits) that :func:`cited_clause`
    cites for ``evidence``; ``None`` without evidence or remits."""
    return cited_clause(clauses.get(label, ()), evidence) if evidence and clauses else None


def co_dispatch(
    lead: str, similar: Sequence[SimilarTicket], min_tickets: int = MIN_CO_TICKETS
) -> list[CoDepartment]:
    """Departments to involve beside ``lead``, from the joint dispatches among similar tickets.

    A similar ticket dispatched jointly (its ``co_departments`` not empty) to ``lead`` among others,
    as lead or co-department, counts for each of the others; a department counted by at least
    ``min_tickets`` of them is returned, the most counted first (then in order of appearance).
    Only the tickets already found are read: nothing is searched twice.
    """
    ranked = joint_partners(
        lead, ((t.id, t.department, t.co_departments) for t in similar), min_tickets
    )
    return [CoDepartment(label=d, tickets=ids) for d, ids in ranked]


def joint_partners(
    lead: str,
    similar: Iterable[tuple[str, str | None, Sequence[str]]],
    min_tickets: int = MIN_CO_TICKETS,
) -> list[tuple[str, list[str]]]:
    """:func:`co_dispatch` of similar tickets given as ``(id, department, co_departments)``:
    each department to involve and its tickets' ids, as plain data (for an answer to validate
    in its own pass)."""
    found: dict[str, list[str]] = {}
    for ticket_id, department, co_departments in similar:
        if not co_departments or department is None:
            continue
        members = [department, *co_departments]
        if lead not in members:
            continue
        for other in members:
            if other != lead:
                found.setdefault(other, []).append(ticket_id)
    ranked = sorted(found.items(), key=lambda kv: -len(kv[1]))  # stable: appearance breaks ties
    return [(d, ids) for d, ids in ranked if len(ids) >= min_tickets]


def _partners_of_plain(
    lead: str, found: Sequence[Mapping[str, Any]]
) -> list[tuple[str, list[str]]]:
    """:func:`joint_partners` of similar tickets as :meth:`SimilarIndex.plain` gives them."""
    return joint_partners(lead, ((t["id"], t["department"], t["co_departments"]) for t in found))


@dataclass
class PackedTexts:
    """Many short texts as two numpy arrays: their UTF-8 bytes end to end, and where each ends.

    A loaded model memory-maps numpy arrays, so the texts cost the server only the pages a query
    reads, and the cyclic collector has no string objects to walk (serve.reload.freeze_heap). As
    Python strings in an object array, 100,000 snippets of 60 characters were 19 MB of heap.
    """

    data: np.ndarray  # uint8
    ends: np.ndarray  # int64, one per text

    @classmethod
    def of(cls, texts: Iterable[str]) -> PackedTexts:
        encoded = [t.encode("utf-8") for t in texts]
        ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        return cls(data=np.frombuffer(b"".join(encoded), dtype=np.uint8), ends=ends)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> str:
        # Through a memoryview and .item(): slicing a memory-mapped array makes a np.memmap, which
        # took 3.0 µs a text against 0.8 µs this way.
        start = self.ends.item(i - 1) if i > 0 else 0
        return str(self.data.data[start : self.ends.item(i)], "utf-8")


@dataclass
class SimilarIndex:
    """Past tickets' feature vectors (L2-normalised rows) and what a dispatcher needs to see of them."""

    matrix: sp.csr_matrix
    ids: np.ndarray
    titles: np.ndarray
    departments: np.ndarray
    categories: np.ndarray
    # Per ticket, the other departments of a joint dispatch joined by JOINT_JOINER ("" for none);
    # None when no stored ticket was joint (and in models written before joint dispatch).
    co_departments: np.ndarray | None = None
    # Per ticket, the start of its text (model.text.snippet); None in models written before
    # snippets, which show titles only.
    snippets: PackedTexts | None = None
    # The snippets were stored after their greetings (model.text.snippet, as every model trained
    # since snippets skip them): shown as stored. False in models trained before (the class's
    # default when their index is unpickled), whose snippets are searched for a greeting at show.
    bare_snippets: bool = False
    # Feature × ticket inverted index (see postings()), built on first use, never pickled.
    _postings: sp.csr_matrix | None = field(default=None, repr=False)

    # Departments named in any joint dispatch stored, built on first use, never pickled.
    _members: frozenset[str] | None = field(default=None, repr=False)

    def joint_members(self) -> frozenset[str]:
        """Every department named in a stored joint dispatch, as lead or co-department."""
        if self._members is None:
            members: set[str] = set()
            if self.co_departments is not None:
                joint = np.flatnonzero(self.co_departments != "")
                members.update(str(d) for d in self.departments[joint])
                for co in self.co_departments[joint]:
                    members.update(str(co).split(JOINT_JOINER))
            self._members = frozenset(members)
        return self._members

    def query(self, X: sp.csr_matrix, k: int, snippets: bool = True) -> list[list[SimilarTicket]]:
        """The ``k`` stored tickets most similar (cosine) to each row of ``X``, the nearest first;
        ``snippets=False`` leaves their snippets out (:meth:`tickets`)."""
        return [self.tickets(rows, sims, snippets) for rows, sims in self.nearest(X, k)]

    def nearest(self, X: sp.csr_matrix, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row of ``X``, the stored rows of its ``k`` most similar tickets and their cosines.

        Nearest first, ties in stored order; only tickets with a positive similarity. What
        :meth:`query` shows, before any :class:`SimilarTicket` is built.
        """
        if k <= 0 or self.matrix.shape[0] == 0:
            none = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32))
            return [none] * X.shape[0]
        if X.shape[0] > QUERY_BLOCK:
            return [
                hits
                for start in range(0, X.shape[0], QUERY_BLOCK)
                for hits in self._nearest(X[start : start + QUERY_BLOCK], k)
            ]
        return self._nearest(X, k)

    def _nearest(self, X: sp.csr_matrix, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        # Cosine: the stored rows have unit length, so each query's dot products are divided by
        # its own length (0 for an empty query, which finds nothing).
        lengths = _row_lengths(X)
        exact = self.matrix.shape[0] <= EXACT_SEARCH_MAX
        if not exact:  # a large index: each query on its own, without a sparse product
            return [self._nearest_pruned(X, j, lengths[j], k) for j in range(X.shape[0])]
        # Sparse × sparse: only the postings of the queries' own features are read; the postings
        # are complete, so these are the exact similarities.
        postings = self.postings()
        if X.shape[0] == 1:  # one ticket: scipy's kernel alone, and its length as a scalar
            rows, sims = _product_row(X, postings)
            sims /= lengths[0]
            return [_top(rows, sims, k)]
        scores = X @ postings
        scores.data /= np.repeat(lengths, np.diff(scores.indptr))
        return [
            _top(
                scores.indices[scores.indptr[j] : scores.indptr[j + 1]],
                scores.data[scores.indptr[j] : scores.indptr[j + 1]],
                k,
            )
            for j in range(X.shape[0])
        ]

    def _nearest_pruned(
        self, X: sp.csr_matrix, j: int, length: np.float64, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_nearest` of row ``j`` in the pruned index: its candidates' scores summed into
        one dense array of the stored tickets, then the best rescored exactly.

        A sparse product set up arrays the size of the index for each block and held every
        candidate of every query of it at once: 1.9 ms a query in blocks of 64 at 100,000 stored
        tickets, against 1.3 ms this way (2026-12-07)."""
        postings = self.postings()
        features = X.indices[X.indptr[j] : X.indptr[j + 1]]
        starts = postings.indptr[features]
        lengths = postings.indptr[features + 1] - starts
        # Positions of the query features' postings, one run per feature, in feature order.
        at = np.arange(int(lengths.sum())) + np.repeat(
            starts - (np.cumsum(lengths) - lengths), lengths
        )
        weights = X.data[X.indptr[j] : X.indptr[j + 1]]
        scores = np.zeros(postings.shape[1], dtype=np.float32)
        np.add.at(scores, postings.indices[at], postings.data[at] * np.repeat(weights, lengths))
        cand = _shortlist_dense(scores, SIMILAR_CANDIDATES)
        return _top(cand, self.matrix[cand] @ _dense_row(X, j) / length, k)

    def postings(self) -> sp.csr_matrix:
        """Feature-major inverted index of the stored tickets, built once.

        Complete up to :data:`EXACT_SEARCH_MAX` stored tickets; above, each ticket keeps only its
        :data:`PRUNED_TERMS` highest-weighted features and the candidates are rescored exactly.
        """
        if self._postings is None:
            m = self.matrix
            if m.shape[0] > EXACT_SEARCH_MAX:
                m = _prune_rows(m, PRUNED_TERMS)
            self._postings = sp.csr_matrix(m.T)
        return self._postings

    def tickets(
        self, rows: np.ndarray, sims: np.ndarray, snippets: bool = True
    ) -> list[SimilarTicket]:
        """The stored tickets ``rows`` as a dispatcher sees them, with their similarities;
        without their snippets (``null``) when ``snippets`` is false (``PAIDAN_SIMILAR_SNIPPETS``)."""
        return [SimilarTicket(**found) for found in self.plain(rows, sims, snippets)]

    def plain(
        self, rows: np.ndarray, sims: np.ndarray, snippets: bool = True
    ) -> list[dict[str, Any]]:
        """:meth:`tickets` as plain dicts of their fields, for an answer that validates them in
        its own pass (:meth:`Router.predict`): one validation, not one per ticket, and each
        stored array read once for all ``rows``, not once a field and ticket."""
        co = self.co_departments
        return [
            {
                "id": str(i),
                "title": str(t),
                "snippet": self._snippet(r) if snippets else None,
                "department": _none_if_empty(d),
                "co_departments": str(j).split(JOINT_JOINER) if j else [],
                "category": _none_if_empty(c),
                "similarity": round(s, 4),
            }
            for r, i, t, d, j, c, s in zip(
                rows.tolist(),
                self.ids[rows].tolist(),
                self.titles[rows].tolist(),
                self.departments[rows].tolist(),
                co[rows].tolist() if co is not None else [""] * len(rows),
                self.categories[rows].tolist(),
                sims.tolist(),
                strict=True,
            )
        ]

    def _snippet(self, i: int) -> str | None:
        # After any greeting that begins it: models trained before snippets left greetings out
        # (model.text.snippet) stored them as the start of their 60 characters. Models trained
        # since store them bare, which the search would not change (about 4 µs a ticket's five).
        if self.snippets is None:
            return None
        stored = self.snippets[i]
        return _none_if_empty(stored if self.bare_snippets else without_salutation(stored))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_postings"] = state["_members"] = None  # derivable from the matrix and labels
        for name in ("ids", "titles", "departments", "categories", "co_departments"):
            if state.get(name) is not None:
                state[name] = CPickled(state[name])  # object arrays: one string per stored ticket
        return state


def without_known_terms(
    X: sp.csr_matrix, word_width: int, placeholders: np.ndarray | None = None
) -> np.ndarray:
    """Rows of feature rows ``X`` that hold no known word, only character n-grams, or only words
    of :data:`PLACEHOLDERS`: a head never dispatches such a ticket without a person
    (:attr:`Ranking.auto`), however confident it is.

    ``word_width``: the columns of the word view, which come first; ``placeholders``: the sorted
    word columns that are placeholders' words (:meth:`Router.placeholder_columns`), ``None`` for
    none. The one rule by which the router decides it, and evaluation and training's
    cross-validated figures count it.
    """
    # Character n-grams match almost anything (digits, Latin letters); only known words count
    # as evidence that the model understands the ticket.
    # Each row's columns are sorted and the word view's come first, so a row's first column
    # says whether it holds a word (as in _evidence, where a row's words are a prefix).
    if not X.has_sorted_indices:  # a matrix fitted by scikit-learn may not be; transform's are
        X = X.sorted_indices()
    n = 0 if placeholders is None else len(placeholders)
    if X.shape[0] == 1:  # one ticket, the dispatcher's case: its first column, without array passes
        start, end = X.indptr[0], X.indptr[1]
        if end == start or X.indices[start] >= word_width:
            return np.array([True])
        # A row of more word columns than there are placeholders' holds another word.
        if not n or (end - start > n and X.indices[start + n] < word_width):
            return np.array([False])
        return np.array([_placeholders_only(X.indices[start:end], word_width, placeholders)])
    empty = np.diff(X.indptr) == 0
    if not X.nnz:
        return empty
    first = X.indices[np.minimum(X.indptr[:-1], X.nnz - 1)]
    out = empty | (first >= word_width)
    if n:
        after = X.indptr[:-1] + n  # the row's column after n words, if it is a word's
        more = (after < X.indptr[1:]) & (X.indices[np.minimum(after, X.nnz - 1)] < word_width)
        for row in np.flatnonzero(~out & ~more).tolist():  # a few words each, a few rows
            cols = X.indices[X.indptr[row] : X.indptr[row + 1]]
            out[row] = _placeholders_only(cols, word_width, placeholders)
    return out


def _placeholders_only(cols: np.ndarray, word_width: int, placeholders: Any) -> bool:
    """Whether the word columns among a row's sorted columns ``cols`` are all placeholders'."""
    return bool(np.isin(cols[: cols.searchsorted(word_width)], placeholders).all())


def catch_all_rows(head: str, labels: Sequence[str], top: np.ndarray) -> np.ndarray | None:
    """Rows whose suggested label ``top`` (columns of ``labels``) is the department head's
    :data:`~model.config.OTHER_LABEL`; ``None`` when the head has none.

    其他 is where training merges departments too rare to learn (and some exports' own label for
    an unlisted one): a work order cannot go to it, so such a ticket always goes to a person
    (:attr:`Ranking.auto`), however confident the head is. A model trained on 60 tickets sent 17
    of 200 held-out tickets to 其他 automatically, at up to 0.99. The one rule by which the router
    decides it, and training's cross-validated threshold and figures count it.
    """
    if head != CATCH_ALL_HEAD or OTHER_LABEL not in labels:
        return None
    return np.asarray(top) == list(labels).index(OTHER_LABEL)


@dataclass(frozen=True)
class Ranking:
    """One head's ranked suggestions for a batch of rows (:meth:`Router.rankings`)."""

    head: Head
    labels: Sequence[str]
    """The labels ``order`` numbers: ``head.labels``, then any that only a dispatch rule gives
    (:meth:`Router.labels_of`)."""
    order: np.ndarray
    """Shape ``(n, k)``: label columns (of ``labels``), the suggested one first."""
    scores: np.ndarray
    """Shape ``(n, k)``: the probability shown for each of those labels (:meth:`Head.scores`)."""
    passed: np.ndarray
    """Shape ``(n,)``: the suggested label's probability reaches the head's threshold."""
    no_terms: np.ndarray
    """Shape ``(n,)``: the row holds no known word, so it always goes to review."""
    rule: np.ndarray | None = None
    """Shape ``(n,)``: the index in :attr:`Router.rules` of the rule that gave the row its label
    (put first in ``order``), -1 for none; ``None`` when no rule gave any row its label."""
    rule_auto: np.ndarray | None = None
    """Shape ``(n,)``: that rule's decision is ``auto`` (read where ``rule`` is not -1)."""
    model_first: np.ndarray | None = None
    """Shape ``(n,)``: the label column the model itself ranks first, before any rule put its
    label there; ``None`` when no rule gave any row its label (then it is ``order[:, 0]``)."""
    catch_all: np.ndarray | None = None
    """Shape ``(n,)``: the model suggests the department catch-all 其他 (:func:`catch_all_rows`),
    so the row goes to a person unless a rule decided; ``None`` for a head without one."""
    extras: np.ndarray | None = None
    """Shape ``(n, extra columns)``: the dense columns the head read after the TF-IDF ones
    (:meth:`Router.extras`), ``None`` for a head that reads the TF-IDF columns alone."""

    @property
    def auto(self) -> np.ndarray:
        """Rows this head may dispatch without a person: as a rule decided, else as the model's
        probability, the row's words and its label allow."""
        model = self.passed & ~self.no_terms
        if self.catch_all is not None:
            model = model & ~self.catch_all
        if self.rule is None or self.rule_auto is None:
            return model
        return np.where(self.rule >= 0, self.rule_auto, model)

    def reasons(self) -> list[str | None]:
        """Why this head leaves each row to a person (a ``REASON_*``), ``None`` where it dispatches
        it without one: the ``reason`` of every answer and ``paidan label``'s reason columns.

        A rule that asks for a person comes first, then a row without a known word, then the
        catch-all, then a probability below the threshold."""
        reason = np.full(len(self.order), REASON_BELOW_THRESHOLD, dtype=object)
        if self.catch_all is not None:
            reason[self.catch_all] = REASON_CATCH_ALL
        reason[self.no_terms] = REASON_NO_KNOWN_TERMS
        if self.rule is not None:
            reason[self.rule >= 0] = REASON_RULE
        reason[self.auto] = None
        return reason.tolist()


@dataclass
class Router:
    """Features plus a department head and a category head.

    Every head reads the TF-IDF features. A head may read dense extra columns after them: the
    latent view (``latent_heads``) and another head's probabilities (``stacked``: head → the head it
    reads), in that order; :meth:`extras` builds them.

    Build it with :func:`build_router`; :mod:`training` fits it and :mod:`model.artifact` saves and
    loads it. A router for serving (:meth:`for_serving`) has no scikit-learn objects: ``features``
    is ``None`` and its heads have no classifier; it predicts from its compiled path alone.
    """

    config: TrainingConfig
    features: Pipeline | None
    heads: dict[str, Head] = field(default_factory=dict)
    index: SimilarIndex | None = None
    version: str = "unversioned"
    latent: LatentView | None = None
    latent_heads: tuple[str, ...] = ()
    stacked: dict[str, str] = field(default_factory=dict)
    _feature_names: np.ndarray | None = field(default=None, repr=False)
    _names_unique: bool | None = field(default=None, repr=False)
    # The word columns of PLACEHOLDERS' words (placeholder_columns), found on first use.
    _placeholders: np.ndarray | None = field(default=None, repr=False)
    # The compilable heads' fold weights fused into one matrix (see :func:`fuse_weights`), pickled
    # in place of each fold's own coefficients, which are views of it once loaded.
    _weights: np.ndarray | None = field(default=None, repr=False)
    _weight_layout: dict[str, list[tuple[int, int]]] | None = field(default=None, repr=False)
    # Compiled prediction path (see :meth:`compiled`): rebuilt after loading a whole router; the
    # only prediction path of a router for serving, which pickles it.
    _compiled: tuple[CompiledFeatures, CompiledHeads] | None = field(default=None, repr=False)
    # True while the latent view, the index, the fused weights and the vocabularies are left to the
    # serving file (:meth:`detached`), until :meth:`join` puts them back.
    _detached: bool = field(default=False, repr=False)
    # Per head, per label: the clauses of the remits it was trained with, as stored text (masked,
    # :func:`training.remits.remit_clauses`), which :attr:`HeadResult.remit` cites.
    remit_clauses: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # The dispatch rules it was trained with (model.rules), in the order they are tried.
    rules: tuple[DispatchRule, ...] = ()
    # The rules prepared for matching (features_and_hits), built on first use, never pickled.
    _rule_index: RuleIndex | None = field(default=None, repr=False)

    # -- fitting (called by training) -------------------------------------------------------------
    def fit_features(
        self,
        tickets: Sequence[TicketLike],
        extra_texts: Sequence[TicketLike] = (),
        progress: Callable[[str, int, int], None] | None = None,
        chunk: int = 2_000,
        latent: bool = True,
    ) -> sp.csr_matrix:
        """Fit tokenizer, vocabularies and latent view on the tickets (and extra unlabelled texts).

        Returns the tickets' TF-IDF rows. Tokenisation, the slow part, runs once per ticket in
        chunks, calling ``progress("tokenizing", done, total)`` after each. ``latent=False`` skips
        the latent view (no head will read it).
        """
        from model.pipeline import number_by_frequency, renumber_columns

        features = self._fitted_features()
        everything = list(tickets) + list(extra_texts)
        prepare_tokenize = features[:2].fit(everything[:1])
        docs = []
        if progress:
            progress("tokenizing", 0, len(everything))
        for start in range(0, len(everything), chunk):
            docs.extend(prepare_tokenize.transform(everything[start : start + chunk]))
            if progress:
                progress("tokenizing", len(docs), len(everything))
        if progress:  # fitting the vocabularies and IDF takes as long as tokenizing
            progress("vocabularies", 0, 1)
        X = sp.csr_matrix(features[2:].fit_transform(docs))
        if progress:
            progress("vocabularies", 1, 1)
        for _, vectorizer in features.named_steps["views"].transformer_list:
            # The terms cut by min_df/max_features: only for introspection, and often larger than
            # the vocabulary itself (scikit-learn's docs suggest dropping it before pickling).
            vectorizer.stop_words_ = None
        self._feature_names = None
        self._names_unique = None
        self._placeholders = None
        self._compiled = None
        self.latent = None
        if latent and self.config.lsa_components > 0:
            if progress:
                progress("latent view", 0, 1)
            self.latent = LatentView.fit(
                X,
                self.config.lsa_components,
                self.config.lsa_min_df,
                self.config.lsa_weight,
                self.config.seed,
            )
            if progress:
                progress("latent view", 1, 1)
        # After the latent view's fit, so that its randomised SVD sees the columns it always saw.
        new_of_old = number_by_frequency(features.named_steps["views"])
        renumber_columns(X, new_of_old)
        if self.latent is not None:
            self.latent.renumber(new_of_old)
        return sp.csr_matrix(X[: len(tickets)])

    def fit_head(
        self,
        name: str,
        X: sp.spmatrix,
        y: Sequence[str],
        threshold: float,
        prior_alpha: float = 0.0,
        confidence_map: tuple[float, float] = IDENTITY_MAP,
        sample_weight: np.ndarray | None = None,
        counted: np.ndarray | None = None,
        category_shares: np.ndarray | None = None,
        category_share_weight: float = 0.0,
    ) -> Head:
        """Fit one head on the rows that carry its label.

        ``X`` is the head's whole input: the TF-IDF rows with the head's extras (:meth:`head_input`).
        ``threshold``, ``prior_alpha`` and ``confidence_map`` were chosen by cross-validation
        (:func:`training.train.cross_validate_heads`). ``sample_weight``: each row's weight in the
        fit; ``counted``: the rows that count as the labels' training rows (the head's ``counts``,
        which the prior shift reads; ``None``: all). ``category_shares`` and
        ``category_share_weight``: see :attr:`Head.category_shares` (department head only).
        """
        from model.pipeline import build_classifier

        targets = np.asarray(y, dtype=str)
        labels, counts = np.unique(
            targets if counted is None else targets[counted], return_counts=True
        )
        # The calibration's folds are bounded by the rows fitted on, counted or not (fit-only rows,
        # remits), as in cross-validation's fits (training.train._fold_proba): bounded by the
        # counted rows alone, a label with few own rows would be calibrated on fewer folds than
        # cross-validation measured.
        fitted = counts if counted is None else np.unique(targets, return_counts=True)[1]
        clf = build_classifier(self.config, fitted.tolist(), name)
        if sample_weight is None:
            clf.fit(X, targets)
        else:
            clf.fit(X, targets, sample_weight=np.asarray(sample_weight, dtype=float))
        head = Head(
            name=name,
            classifier=clf,
            threshold=float(threshold),
            counts={str(k): int(v) for k, v in zip(labels, counts, strict=True)},
            prior_alpha=float(prior_alpha),
            confidence_map=(float(confidence_map[0]), float(confidence_map[1])),
            category_shares=category_shares,
            category_share_weight=float(category_share_weight),
        )
        self.heads[name] = head
        self._compiled = None
        self._weights = self._weight_layout = None
        return head

    def build_index(
        self,
        X: sp.spmatrix,
        ids: Sequence[str],
        titles: Sequence[str],
        departments: Sequence[str | None],
        categories: Sequence[str | None],
        co_departments: Sequence[str | None] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> None:
        """Keep the last ``config.max_similar`` tickets for the similar-ticket search.

        ``co_departments``: per ticket, the other departments of a joint dispatch, joined by
        :data:`~model.tickets.JOINT_JOINER` (see :func:`model.tickets.split_departments`).
        ``texts``: per ticket, its text as written, of which the first :data:`SNIPPET_CHARS`
        characters are kept, cleaned and masked (:func:`model.text.snippet`).
        """
        from sklearn.preprocessing import normalize as l2_normalize

        keep = slice(max(0, X.shape[0] - self.config.max_similar), X.shape[0])
        co = None
        if co_departments is not None:
            kept = [c or "" for c in co_departments[keep]]
            co = np.asarray(kept, dtype=object) if any(kept) else None
        self.index = SimilarIndex(
            matrix=sp.csr_matrix(l2_normalize(X[keep]), dtype=np.float32),
            # Every caller who may route sees them: a ticket numbered by its caller's phone shows
            # it masked (an id with nothing to mask as written, to be looked up).
            ids=np.asarray([mask_label(str(i)) for i in ids[keep]], dtype=object),
            # Shown as the model reads them: in the script it reads (a traditional title simplified).
            titles=np.asarray([clean(t, self.config.script) for t in titles[keep]], dtype=object),
            departments=np.asarray([d or "" for d in departments[keep]], dtype=object),
            categories=np.asarray([c or "" for c in categories[keep]], dtype=object),
            co_departments=co,
            snippets=None
            if texts is None
            else PackedTexts.of(snippet(t, SNIPPET_CHARS, self.config.script) for t in texts[keep]),
            bare_snippets=texts is not None,  # snippet() leaves the greetings out
        )

    # -- prediction (everyone calls this) -------------------------------------------------------
    def transform(self, tickets: Sequence[TicketLike]) -> sp.csr_matrix:
        """Feature vectors of tickets, exactly as the heads see them."""
        return self.compiled()[0].transform(list(tickets))

    def compiled(self) -> tuple[CompiledFeatures, CompiledHeads]:
        """The fitted features and heads as plain array arithmetic, built once per process.

        Same results as ``features.transform`` and ``classifier.predict_proba`` without
        scikit-learn's per-call validation, which dominates the cost of a single ticket. A head that
        cannot be compiled (isotonic calibration) is left out and uses scikit-learn.
        """
        if self._compiled is None:
            from model.pipeline import compile_features, compile_heads

            self._check_joined()
            features = compile_features(self._fitted_features())
            weights, layout = self._fused()
            heads = compile_heads(self._compilable(), weights, layout, features.n_features)
            self._compiled = (features, heads)
        return self._compiled

    def _fitted_features(self) -> Pipeline:
        if self.features is None:  # a router for serving: its compiled path is all it has
            raise TypeError("a router loaded for serving has no scikit-learn feature pipeline")
        return self.features

    def _check_joined(self) -> None:
        if self._detached:
            raise RuntimeError(
                "this router's weights and vocabularies are in its model's serving file; load the "
                "model with model.artifact.load_router"
            )

    def _compilable(self) -> dict[str, CalibratedClassifierCV]:
        from model.pipeline import compilable

        return {
            n: h.classifier
            for n, h in self.heads.items()
            if h.classifier is not None and compilable(h.classifier)
        }

    def _fused(self) -> tuple[np.ndarray, dict[str, list[tuple[int, int]]]]:
        """The fused weights, made once: afterwards the folds' coefficients are views of them."""
        self._check_joined()
        if self._weights is None or self._weight_layout is None:
            from model.pipeline import attach_weights, fuse_weights

            classifiers = self._compilable()
            self._weights, self._weight_layout = fuse_weights(classifiers)
            attach_weights(classifiers, self._weights, self._weight_layout)
        return self._weights, self._weight_layout

    def extras(
        self, name: str, X: sp.csr_matrix, upstream: dict[str, np.ndarray]
    ) -> np.ndarray | None:
        """Dense columns head ``name`` reads after the TF-IDF rows ``X``, or ``None``.

        ``upstream`` holds, for a stacked head, the probabilities of the head it reads (columns in
        that head's label order).
        """
        blocks = []
        if self.latent is not None and name in self.latent_heads:
            blocks.append(self.latent.transform(X))
        source = self.stacked.get(name)
        if source is not None:
            blocks.append(np.asarray(upstream[source] * self.config.stack_weight, dtype=np.float32))
        return np.hstack(blocks) if blocks else None

    def head_input(
        self, name: str, X: sp.csr_matrix, upstream: dict[str, np.ndarray] | None = None
    ) -> sp.csr_matrix:
        """The matrix head ``name``'s classifier reads: TF-IDF rows, then its extras."""
        return with_extras(X, self.extras(name, X, upstream or {}))

    def head_inputs(self, name: str) -> list[str]:
        """What head ``name`` reads, in column order: ``tfidf``, then ``latent`` and the stacked head."""
        out = ["tfidf"]
        if self.latent is not None and name in self.latent_heads:
            out.append("latent")
        if name in self.stacked:
            out.append(self.stacked[name])
        return out

    def head_order(self) -> list[str]:
        """Heads in an order where each stacked head comes after the head it reads."""
        return sorted(self.heads, key=lambda name: name in self.stacked)

    def _all_proba(
        self,
        X: sp.csr_matrix,
        gathered: np.ndarray | None = None,
        read: dict[str, np.ndarray | None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Every head's classifier probabilities, before :meth:`Head.scores`.

        What a stacked head reads, as in training. ``gathered``: the fused weight rows of a
        one-row ``X``; ``read``, when given, receives each head's extras (:meth:`extras`).
        """
        fast = self.compiled()[1]
        scores = fast.scores(X, gathered) if fast.folds else None
        out: dict[str, np.ndarray] = {}
        for name in self.head_order():
            extras = self.extras(name, X, out)
            if read is not None:
                read[name] = extras
            classifier = self.heads[name].classifier
            if name in fast and scores is not None:
                out[name] = fast.predict_proba(name, scores, extras)
            elif classifier is not None:
                out[name] = classifier.predict_proba(with_extras(X, extras))
            else:  # for_serving() keeps only routers whose heads all compile
                raise RuntimeError(f"head {name!r} has neither a compiled path nor a classifier")
        return out

    def predict(
        self,
        tickets: Sequence[TicketLike],
        top_k: int = 3,
        similar_k: int = SIMILAR_K,
        explain: bool = True,
        masked: bool = False,
        snippets: bool = True,
    ) -> list[RouteResult]:
        """Suggest a department and a category for each ticket.

        Parameters
        ----------
        tickets : sequence of TicketLike
            Bare texts, ``(title, text)`` pairs or mappings with ``title`` and ``text`` keys.
        top_k : int, default 3
            Candidates returned per head.
        similar_k : int, default 5
            Similar past tickets returned per ticket (0 to skip the search).
        explain : bool, default True
            Compute evidence terms (batch labelling turns this off).
        masked : bool, default False
            Give each result the ticket's title and text as typed, what masking replaced in the
            texts prediction read replaced in them too (:attr:`RouteResult.masked`), from the
            same masking pass: a caller that shows the ticket need not mask it again, and shows
            it as typed (full-width letters, line breaks), not normalised.
        snippets : bool, default True
            Give the similar tickets their snippets (the start of their text); ``False`` leaves
            them ``None`` and keeps the rest (``PAIDAN_SIMILAR_SNIPPETS``).

        Returns
        -------
        list of RouteResult
            One per ticket, in input order.
        """
        if not tickets:
            return []
        if not masked:
            return self.predict_features(
                *self.features_and_hits(tickets), top_k, similar_k, explain, snippets=snippets
            )
        features = self.compiled()[0]
        both = features.cleaned_and_shown(tickets)
        X, hits = self._features_and_hits(features.joined(cleaned for cleaned, _ in both))
        read = [
            MaskedTicket(title=title if title_c else None, text=text)
            for (title_c, _), (title, text) in both
        ]
        return self.predict_features(X, hits, top_k, similar_k, explain, read, snippets)

    def predict_features(
        self,
        X: sp.csr_matrix,
        hits: Mapping[str, np.ndarray] | None = None,
        top_k: int = 3,
        similar_k: int = SIMILAR_K,
        explain: bool = True,
        masked: Sequence[MaskedTicket] | None = None,
        snippets: bool = True,
    ) -> list[RouteResult]:
        """:meth:`predict` of tickets already transformed and matched with the dispatch rules
        (:meth:`features_and_hits`); ``masked``, the tickets as read, one per row, goes into the
        results."""
        empty_rows = self._without_known_terms(X)
        # One ticket (the dispatcher's case): read its features' weight rows once, for the scores
        # of every head and fold and for the evidence.
        fast = self.compiled()[1]
        gathered = fast.gather(X) if X.shape[0] == 1 and fast.folds else None
        per_head = {
            name: self._head_results(ranking, X, explain, gathered)
            for name, ranking in self._rankings(X, top_k, empty_rows, gathered, hits).items()
        }
        # A ticket without a known word matches stored tickets on characters alone (a mask
        # token, a "!"): such neighbours are no precedent, so it is shown none, and no joint
        # dispatch is read from them.
        # The similar tickets and the joint dispatch as plain dicts: RouteResult builds their
        # objects in its own validation pass, cheaper than one validation per ticket (measured).
        similar: list[list[dict[str, Any]]] = [[] for _ in range(X.shape[0])]
        known = np.flatnonzero(~empty_rows)
        if self.index is not None and similar_k > 0 and known.size:
            index = self.index
            searched = X if known.size == X.shape[0] else X[known]  # no copy in the usual case
            for row, (rows, sims) in zip(
                known.tolist(), index.nearest(searched, similar_k), strict=True
            ):
                similar[row] = index.plain(rows, sims, snippets)
        out = []
        for i in range(X.shape[0]):
            department = per_head["department"][i] if "department" in per_head else None
            found = similar[i]
            joint = _partners_of_plain(department.label, found) if department and found else []
            out.append(
                RouteResult(
                    department=department,
                    category=per_head["category"][i] if "category" in per_head else None,
                    similar=found,
                    model_version=self.version,
                    co_departments=[{"label": d, "tickets": ids} for d, ids in joint],
                    masked=masked[i] if masked is not None else None,
                )
            )
        return out

    def predict_proba(self, tickets: Sequence[TicketLike]) -> dict[str, np.ndarray]:
        """Probabilities per head as shown, columns in the order of ``self.heads[name].labels``."""
        return {name: shown for name, (shown, _) in self.scores(tickets).items()}

    def scores(self, tickets: Sequence[TicketLike]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per head, the probabilities as shown and the scores it ranks labels by (:meth:`Head.scores`).

        The shown probabilities alone do not give the order: the suggestion's is recalibrated.
        """
        return self.feature_scores(self.transform(tickets))

    def feature_scores(self, X: sp.csr_matrix) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """:meth:`scores` of tickets already transformed (:meth:`transform`)."""
        probas = self._all_proba(X)
        out = {}
        for name, p in probas.items():
            head = self.heads[name]
            out[name] = head.scores(p, self._ranking_scores(name, p, probas))
        return out

    def _ranking_scores(
        self, name: str, raw: np.ndarray, probas: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """The scores head ``name`` ranks its labels by: its probabilities ``raw`` prior-shifted
        (:meth:`Head.shift`), then, for the department head, ranks 2..k ordered with the category
        head's probabilities (of ``probas``) where the model learnt to (:meth:`Head.rerank`)."""
        head = self.heads[name]
        rank = head.shift(raw)
        if name == "department" and head.category_shares is not None:
            rank = head.rerank(rank, probas.get("category"))
        return rank

    def warm_up(self) -> None:
        """Load jieba's dictionary and OpenCC's tables (a model that reads simplified characters),
        compile the prediction path and build the search index."""
        features = self.compiled()[0]
        features.segmenter.warm_up()
        to_script("預熱", features.script)  # about 120 ms, else paid by the first Chinese ticket
        self._word_names_unique()
        self.placeholder_columns()
        if self.index is not None:
            self.index.postings()
        self.predict(["warm up"], similar_k=1)

    def _word_width(self) -> int:
        """Number of word-view columns: they come first in the feature union."""
        return self.compiled()[0].word_width

    def _word_names(self) -> np.ndarray:
        """Readable names of the word-view columns only: all that evidence ever shows."""
        if self._feature_names is None:
            view = self.compiled()[0].views[0]
            names = np.empty(view.width if view.name == "word" else 0, dtype=object)
            if view.name == "word":
                # Inverting the vocabulary is a C-level scatter; get_feature_names_out sorts it.
                names[np.fromiter(view.vocabulary.values(), dtype=np.int64)] = [
                    _join_tokens(t) if " " in t else t for t in view.vocabulary
                ]
            self._feature_names = names
        return self._feature_names

    def _word_names_unique(self) -> bool:
        """Whether no two word columns show the same name (word n-grams joined can collide)."""
        if self._names_unique is None:
            names = self._word_names()
            self._names_unique = len(set(names.tolist())) == len(names)
        return self._names_unique

    def feature_names(self) -> np.ndarray:
        """Readable names of all features (word n-grams joined, char n-grams stripped)."""
        names = []
        for view in self.compiled()[0].views:
            if view.name == "word":
                names.append(self._word_names())
            else:
                names.append(np.asarray([t.strip() for t in view.names()], dtype=object))
        return np.concatenate(names)

    # -- the serving file (see model.artifact) --------------------------------------------------
    def for_serving(self) -> Router | None:
        """This router without its scikit-learn objects: what a model's serving file holds.

        It predicts as this router does, from the same compiled path (:meth:`compiled`), and
        unpickling it imports neither scikit-learn nor :mod:`model.pipeline`. ``None`` when a head
        cannot be compiled (isotonic calibration): such a model is served from its whole router.
        """
        features, heads = self.compiled()
        if set(heads.folds) != set(self.heads):
            return None
        serving = self._shallow_copy()
        serving.features = None
        serving.heads = {
            name: dataclasses.replace(head, classifier=None, label_names=tuple(head.labels))
            for name, head in self.heads.items()
        }
        serving._weights = serving._weight_layout = None
        serving._compiled = (features, heads)
        return serving

    def detached(self) -> Router:
        """A copy whose pickle leaves out what :meth:`for_serving`'s holds already.

        The latent view, the similar-ticket index, the fused weights (most of a model's bytes) and
        the vectorizers' vocabularies are then written once, in the serving file; :meth:`join`
        puts them back.
        """
        from model.pipeline import without_vocabularies

        self._fused()
        rest = self._shallow_copy()
        rest.features = without_vocabularies(self._fitted_features())
        rest.latent = None
        rest.index = None
        rest._compiled = None
        rest._detached = True
        return rest

    def _shallow_copy(self) -> Router:
        # Not copy.copy, which goes through __getstate__ (the pickled form: features in a blob).
        clone = Router.__new__(Router)
        clone.__dict__.update(self.__dict__)
        return clone

    def join(self, serving: Router) -> None:
        """Put back what :meth:`detached` left out, from the router of the same model's serving file."""
        if not self._detached or self._weight_layout is None:
            raise ValueError("only a router saved by detached() can be joined to a serving router")
        from model.pipeline import attach_weights, restore_vocabularies

        features, heads = serving.compiled()
        restore_vocabularies(self._fitted_features(), [view.vocabulary for view in features.views])
        self.latent = serving.latent
        self.index = serving.index
        self._weights = heads.weights
        self._detached = False
        attach_weights(
            {n: self.heads[n].classifier for n in self._weight_layout},
            self._weights,
            self._weight_layout,
        )
        self._compiled = (features, heads)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_feature_names"] = None  # rebuilt on demand; large and derivable
        state["_names_unique"] = None
        state["_placeholders"] = None
        state["_rule_index"] = None
        if self.features is None:  # a router for serving: the compiled path is all it has
            assert self._compiled is not None
            features, heads = self._compiled
            # The vocabularies: hundreds of thousands of strings (see CPickled).
            state["_compiled"] = (CPickled(features), heads)
            return state
        state["_compiled"] = None
        state["features"] = CPickled(self.features)
        # The fused weights are written once; the folds' coefficients, views of them, are not.
        if self._detached:  # ... and not here at all, but in the serving file
            state["_weights"] = None
        else:
            state["_weights"], state["_weight_layout"] = self._fused()
        layout = state["_weight_layout"] or {}
        state["heads"] = {
            name: _without_coefficients(head) if name in layout else head
            for name, head in self.heads.items()
        }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Models saved before the latent view and stacking existed have neither, and models saved
        # before the fused weights kept each fold's own coefficients.
        state.setdefault("latent", None)
        state.setdefault("latent_heads", ())
        state.setdefault("stacked", {})
        state.setdefault("_weights", None)
        state.setdefault("_weight_layout", None)
        state.setdefault("_names_unique", None)
        state.setdefault("_detached", False)
        state.setdefault("remit_clauses", {})  # models saved before remits were cited
        state.setdefault("rules", ())  # models saved before dispatch rules
        state.setdefault("_rule_index", None)
        self.__dict__.update(state)
        if self._weights is not None and self._weight_layout is not None:
            from model.pipeline import attach_weights

            attach_weights(
                {n: self.heads[n].classifier for n in self._weight_layout},
                self._weights,
                self._weight_layout,
            )

    # -- business rules --------------------------------------------------------------------------
    def rankings(self, tickets: Sequence[TicketLike], top_k: int = 3) -> dict[str, Ranking]:
        """Each head's ranked labels for many tickets, as arrays: what batch labelling writes.

        The same ranking and decisions as :meth:`predict` makes, without building a
        :class:`RouteResult` per ticket (which costs more than the scores for a short ticket) and
        without evidence or similar tickets.
        """
        if not tickets:
            return {}
        X, hits = self.features_and_hits(tickets)
        return self.rank(X, top_k, hits)

    def rank(
        self, X: sp.csr_matrix, top_k: int = 3, hits: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, Ranking]:
        """:meth:`rankings` of tickets already transformed and matched (:meth:`features_and_hits`);
        without ``hits`` no dispatch rule is applied."""
        fast = self.compiled()[1]
        # One row (a file of one ticket, a chunk's last): its weight rows gathered, as predict
        # does; the product for many rows walks every column of the features (4.2 ms against
        # 0.9 for a 2,000-character ticket, measured).
        gathered = fast.gather(X) if X.shape[0] == 1 and fast.folds else None
        return self._rankings(X, top_k, self._without_known_terms(X), gathered, hits)

    def features_and_hits(
        self, tickets: Sequence[TicketLike]
    ) -> tuple[sp.csr_matrix, dict[str, np.ndarray] | None]:
        """Feature rows of tickets (:meth:`transform`) and, per head, the index in :attr:`rules`
        of the first rule that gives each ticket that head's label, -1 for none (``None`` for a
        router without rules). Each ticket is prepared (normalised, masked) once for both."""
        return self._features_and_hits(self.compiled()[0].texts(tickets))

    def _features_and_hits(
        self, texts: list[str]
    ) -> tuple[sp.csr_matrix, dict[str, np.ndarray] | None]:
        """:meth:`features_and_hits` of prepared texts (:meth:`CompiledFeatures.texts`)."""
        features = self.compiled()[0]
        if not self.rules:
            return features.transform_texts(texts), None
        heads = tuple(h for h in HEADS if h in self.heads)
        hits = self._prepared_rules().first(texts, heads)
        X = features.transform_texts(texts)
        return X, {h: np.asarray(v, dtype=np.int64) for h, v in hits.items()}

    def _prepared_rules(self) -> RuleIndex:
        if self._rule_index is None or self._rule_index.rules is not self.rules:
            self._rule_index = RuleIndex(self.rules)  # built once per set of rules
        return self._rule_index

    def labels_of(self, name: str) -> Sequence[str]:
        """Every label head ``name`` may suggest, as its rankings number them (:attr:`Ranking.labels`):
        the labels it learnt, then those that only a dispatch rule marked ``new_label`` gives, a
        department newer than the history (:mod:`model.rules`)."""
        learnt = self.heads[name].labels
        return self._prepared_rules().labels(name, learnt) if self.rules else learnt

    def co_department_choices(self) -> list[str]:
        """The departments a dispatcher may add to a joint dispatch (会办) beside the lead.

        Those the department head may suggest (:meth:`labels_of`) but :data:`OTHER_LABEL`, which
        no work order can go to, then, sorted, those named only in the stored joint dispatches: a
        department that was only ever a co-department (a street office beside 住建) is none of the
        head's labels, yet the advice names it. ``[]`` without a department head.
        """
        if "department" not in self.heads:
            return []
        out = [d for d in self.labels_of("department") if d != OTHER_LABEL]
        if self.index is not None and self.index.co_departments is not None:
            known = set(out) | {OTHER_LABEL}
            out += sorted(d for d in self.index.joint_members() if d and d not in known)
        return out

    def explanations(
        self, X: sp.csr_matrix, ranked: Mapping[str, Ranking]
    ) -> dict[str, list[tuple[list[Evidence], str | None, AppliedRule | None]]]:
        """Per head of ``ranked`` (:meth:`rank` of ``X``), each row's evidence for its suggested
        label, the remit clause citing it and the dispatch rule that gave the label, as
        :meth:`predict` explains them, without ranking the rows again or building a
        :class:`RouteResult` for each (``paidan label --evidence``)."""
        out = {}
        for name, ranking in ranked.items():
            head = ranking.head
            clauses = self.remit_clauses.get(name, {})
            rows = []
            for i, (top, empty) in enumerate(
                zip(ranking.order[:, 0].tolist(), ranking.no_terms.tolist(), strict=True)
            ):
                evidence = [] if empty else self._evidence(head, X, i, top)
                rows.append(
                    (
                        evidence,
                        cited_remit(clauses, ranking.labels[top], evidence),
                        self._applied_rule(ranking, i),
                    )
                )
            out[name] = rows
        return out

    @property
    def advises_joint(self) -> bool:
        """Whether joint-dispatch advice can be given: some stored ticket was a joint dispatch."""
        index = self.index
        return "department" in self.heads and index is not None and index.co_departments is not None

    def joint_advice(
        self, X: sp.csr_matrix, leads: Sequence[str], similar_k: int = SIMILAR_K
    ) -> list[list[CoDepartment]]:
        """The joint-dispatch advice :meth:`predict` gives each row of ``X`` for its ``lead``.

        Batch labelling calls this with the suggested departments of :meth:`rank`; the search is
        skipped (every row gets no advice) when :attr:`advises_joint` is false, since no stored
        ticket could give any.
        """
        advice: list[list[CoDepartment]] = [[] for _ in range(X.shape[0])]
        index = self.index
        if "department" not in self.heads or index is None or index.co_departments is None:
            return advice  # as advises_joint: no stored joint dispatch, no advice
        if similar_k <= 0:
            return advice  # as predict: no similar ticket, so no advice read from them
        # Only a department named in some joint dispatch can be advised a partner, and only from
        # at least MIN_CO_TICKETS joint tickets among the nearest: other rows skip the search,
        # and SimilarTickets are built only for the rest (the search and the objects are what a
        # row costs; the advice is co_dispatch's, as for Router.predict).
        members = index.joint_members()
        empty = self._without_known_terms(X)  # shown no similar ticket by predict, so no advice
        search = [i for i, lead in enumerate(leads) if lead in members and not empty[i]]
        if not search:
            return advice
        for i, (rows, sims) in zip(search, index.nearest(X[search], similar_k), strict=True):
            if np.count_nonzero(index.co_departments[rows] != "") >= MIN_CO_TICKETS:
                # From plain rows without snippets: the advice reads ids and departments only.
                joint = _partners_of_plain(leads[i], index.plain(rows, sims, snippets=False))
                advice[i] = [CoDepartment(label=d, tickets=ids) for d, ids in joint]
        return advice

    def _without_known_terms(self, X: sp.csr_matrix) -> np.ndarray:
        """Rows of ``X`` with no word feature but character n-grams and placeholders' words
        (:func:`without_known_terms`)."""
        return without_known_terms(X, self.word_view_width(), self.placeholder_columns())

    def without_known_terms(self, X: sp.csr_matrix) -> np.ndarray:
        """Rows of ``X`` that the router always sends to a person for holding no known word
        (:func:`without_known_terms`); training asks it before the heads are fitted."""
        return self._without_known_terms(X)

    def placeholder_columns(self) -> np.ndarray:
        """The word-view columns, sorted, of the words (and word n-grams) that the fitted
        features find in :data:`PLACEHOLDERS`."""
        if self._placeholders is None:
            if self._compiled is not None or self.features is None:
                X = self.transform(PLACEHOLDERS)
            else:  # fitted, before the heads: compiling now would keep heads-less compiled heads
                X = sp.csr_matrix(self.features.transform(list(PLACEHOLDERS)))
            self._placeholders = np.unique(X.indices[X.indices < self.word_view_width()])
        return self._placeholders

    def word_view_width(self) -> int:
        """How many columns of the features are the word view's (they come first): of the
        compiled features when they are, else of the fitted pipeline, so that training may ask
        before the heads are fitted (compiling then would keep heads-less compiled heads)."""
        if self._compiled is not None or self.features is None:
            return self._word_width()
        union = self.features.named_steps["views"]
        name, vectorizer = union.transformer_list[0]
        return len(vectorizer.vocabulary_) if name == "word" else 0

    def _rankings(
        self,
        X: sp.csr_matrix,
        top_k: int,
        no_terms: np.ndarray,
        gathered: np.ndarray | None = None,
        hits: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, Ranking]:
        """The business rules, for all rows and heads at once.

        Labels come in the order of the prior-shifted scores, each with its probability as shown,
        which is also what the auto threshold reads (see :meth:`Head.scores`). A head
        dispatches a row automatically when that probability reaches its threshold and the row
        holds at least one known word.

        A dispatch rule that matched a row (``hits``, :meth:`features_and_hits`) puts its label first, the
        others following in the model's order, and decides as the rule says; the probabilities
        shown are the model's, as it ranked the labels (the suggestion's recalibrated for its own
        first label, :meth:`Head.scores`).
        """
        out = {}
        read: dict[str, np.ndarray | None] = {}
        probas = self._all_proba(X, gathered, read)
        for name, raw in probas.items():
            head = self.heads[name]
            rank = self._ranking_scores(name, raw, probas)
            order = np.argsort(-rank, axis=1, kind="stable")
            proba, _ = head.scores(raw, rank, order[:, 0])
            labels = self.labels_of(name)
            if len(labels) > proba.shape[1]:
                # Labels only a rule gives: the model has no ticket of them, so probability 0,
                # ranked after every learnt label until a rule puts one first.
                new = np.arange(proba.shape[1], len(labels))
                proba = np.hstack([proba, np.zeros((len(proba), len(new)))])
                order = np.hstack([order, np.broadcast_to(new, (len(order), len(new)))])
            own = order[:, 0].copy() if hits else None
            catch_all = catch_all_rows(name, labels, order[:, 0])
            rule, rule_auto = self._ruled(head, labels, order, hits)
            # As many as the head learnt at most: a label only a rule gives is offered only where
            # the rule put it first.
            order = order[:, : max(1, min(top_k, len(head.labels)))]
            # The same entries as np.take_along_axis, without its index set-up (most of a
            # single ticket's cost of this step, measured).
            if len(order) == 1:  # one ticket: its row, without an index array of rows
                shown = proba[0][order]
            else:
                shown = proba[np.arange(len(order))[:, np.newaxis], order]
            passed = shown[:, 0] >= head.threshold
            out[name] = Ranking(
                head,
                labels,
                order,
                shown,
                passed,
                no_terms,
                rule,
                rule_auto,
                model_first=own if rule is not None else None,
                catch_all=catch_all,
                extras=read[name],
            )
        return out

    def _ruled(
        self,
        head: Head,
        labels: Sequence[str],
        order: np.ndarray,
        hits: Mapping[str, np.ndarray] | None,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Put each ruled row's label first in its full ``order`` of ``labels`` (in place); return
        the rule of each row (-1: none) and whether it dispatches without a person, or
        ``(None, None)``."""
        rule = hits.get(head.name) if hits else None
        if rule is None:
            return None, None
        column = {label: j for j, label in enumerate(labels)}
        # A rule's label the head does not know (refused when the model was trained, unless the
        # rule is marked new_label) leaves the row to the model.
        js = np.asarray(
            [
                column.get(self.rules[r].label(head.name), -1) if r >= 0 else -1
                for r in rule.tolist()
            ],
            dtype=np.int64,
        )
        rule = np.where(js >= 0, rule, -1)
        rows = np.flatnonzero(rule >= 0)
        if not rows.size:
            return None, None
        for i in rows.tolist():
            row = order[i]
            order[i] = np.concatenate(([js[i]], row[row != js[i]]))
        auto = np.asarray([r >= 0 and self.rules[r].decision == "auto" for r in rule.tolist()])
        return rule, auto

    def _head_results(
        self,
        ranking: Ranking,
        X: sp.csr_matrix,
        explain: bool,
        gathered: np.ndarray | None = None,
    ) -> list[HeadResult]:
        """One head's ranking as a :class:`HeadResult` per row, with evidence if asked."""
        head = ranking.head
        labels = ranking.labels
        # As every answer shows them: comparing as the decision did (shown_score).
        threshold = shown_threshold(head.threshold)
        clauses = self.remit_clauses.get(head.name, {})
        out = []
        # Python lists: reading numpy items one at a time costs more than the rules themselves.
        for i, cand, scores, empty, auto, reason in zip(
            range(len(ranking.order)),
            ranking.order.tolist(),
            shown_scores(ranking.scores, head.threshold),
            ranking.no_terms.tolist(),
            ranking.auto.tolist(),
            ranking.reasons(),
            strict=True,
        ):
            decision: Decision = "auto" if auto else "review"
            applied = self._applied_rule(ranking, i)
            terms = (
                self._evidence_terms(head, X, i, cand[0], gathered) if explain and not empty else []
            )
            # Candidates and evidence as plain data: HeadResult builds their objects in its own
            # validation pass, at less than half the cost of building each alone (measured).
            result = HeadResult(
                label=labels[cand[0]],
                score=scores[0],
                decision=decision,
                threshold=threshold,
                reason=reason,
                candidates=[
                    {"label": labels[j], "score": p} for j, p in zip(cand, scores, strict=True)
                ],
                evidence=[{"term": t, "weight": w} for t, w in terms],
                rule=applied,
                sources=self._sources(head, X, i, cand[0], gathered, ranking.extras)
                if explain
                else None,
            )
            if terms and clauses:
                result.remit = cited_remit(clauses, result.label, result.evidence)
            out.append(result)
        return out

    def _applied_rule(self, ranking: Ranking, i: int) -> AppliedRule | None:
        """The rule that gave row ``i`` its label, as an answer shows it, or ``None``."""
        if ranking.rule is None or ranking.rule[i] < 0:
            return None
        rule = self.rules[int(ranking.rule[i])]
        return AppliedRule(keywords=list(rule.keywords), note=rule.note or None)

    def _evidence(
        self,
        head: Head,
        X: sp.csr_matrix,
        i: int,
        label_idx: int,
        gathered: np.ndarray | None = None,
    ) -> list[Evidence]:
        """Words of this ticket that pushed the winning label most: tf-idf value × class weight.

        ``gathered``: the fused weight rows of ``X``'s features when ``X`` is one ticket.
        A label the head never learnt (one only a rule gives) has no weights, so no evidence.
        """
        return [
            Evidence(term=t, weight=w)
            for t, w in self._evidence_terms(head, X, i, label_idx, gathered)
        ]

    def _sources(
        self,
        head: Head,
        X: sp.csr_matrix,
        i: int,
        label_idx: int,
        gathered: np.ndarray | None,
        extras: np.ndarray | None,
    ) -> list[dict[str, Any]] | None:
        """How much of row ``i``'s linear score for the label came from each input the head reads
        (:class:`Source`, as plain data), or ``None`` for a head without extras.

        The same weights as the evidence (:meth:`_evidence_terms`), over every TF-IDF column of
        the row, word or character n-gram, and over the head's ``extras`` (its row of them, as
        :meth:`extras` built them); with the intercept they sum to the label's linear score.
        """
        if extras is None or label_idx >= len(head.labels):
            return None
        start, end = X.indptr[i], X.indptr[i + 1]
        cols, vals = X.indices[start:end], X.data[start:end]
        row = np.asarray(extras[i], dtype=np.float64)
        fast = self.compiled()[1]
        if head.name in fast:
            rows = gathered if gathered is not None else fast.weights[cols]
            words = float(vals @ fast.class_weights(head.name, label_idx, rows))
            extra_weights, intercept = fast.class_extras(head.name, label_idx, len(row))
            contrib = row * extra_weights
        else:
            columns = np.concatenate([cols, X.shape[1] + np.arange(len(row))])
            weights = head.mean_coef(np.array([label_idx]), columns)[0]
            words = float(vals @ weights[: len(cols)])
            contrib = row * weights[len(cols) :]
            intercept = head.mean_intercept(label_idx)
        out: list[dict[str, Any]] = [{"input": "words", "weight": round(words, 4)}]
        at = 0
        for part in self.head_inputs(head.name)[1:]:
            if part == "latent" and self.latent is not None:
                n = self.latent.width
                out.append(
                    {"input": "latent", "weight": round(float(contrib[at : at + n].sum()), 4)}
                )
            else:  # a stacked head's probabilities, in its label order
                labels = self.heads[part].labels
                n = len(labels)
                block = contrib[at : at + n]
                out.append(
                    {
                        "input": part,
                        "weight": round(float(block.sum()), 4),
                        "label": labels[int(block.argmax())],
                    }
                )
            at += n
        out.append({"input": "intercept", "weight": round(intercept, 4)})
        return out

    def _evidence_terms(
        self,
        head: Head,
        X: sp.csr_matrix,
        i: int,
        label_idx: int,
        gathered: np.ndarray | None = None,
    ) -> list[tuple[str, float]]:
        """:meth:`_evidence` as ``(term, weight)`` pairs, the weights rounded as shown.

        :meth:`_head_results` hands them to :class:`HeadResult` as plain data, which builds the
        :class:`Evidence` objects in one validation pass (measured: about a third of a short
        ticket's evidence went on building them one by one).
        """
        if label_idx >= len(head.labels):
            return []
        start, end = X.indptr[i], X.indptr[i + 1]
        # Words read as reasons; character n-grams ("请被拒") do not, so they score but don't show.
        # A row's columns are sorted and the word view's come first: its words are a prefix.
        words = int(X.indices[start:end].searchsorted(self._word_width()))
        cols, vals = X.indices[start : start + words], X.data[start : start + words]
        fast = self.compiled()[1]
        if head.name in fast:
            rows = gathered[:words] if gathered is not None else fast.weights[cols]
            contrib = vals * fast.class_weights(head.name, label_idx, rows)
        else:
            contrib = vals * head.mean_coef(np.array([label_idx]), cols)[0]
        ranked: Iterable[tuple[str, float]]
        if self._word_names_unique():
            # One column per name, so nothing to merge: walk the words from the strongest and stop
            # at the first that did not push towards the label, or as soon as enough are chosen
            # (a long ticket has hundreds of words, a few dozen of them positive). A stable sort
            # puts the positive words first, in the order a sort of them alone gives, so only the
            # words walked are looked up.
            ranked = _positive_first(
                self._word_names(),
                cols.tolist(),
                contrib.tolist(),
                np.argsort(-contrib, kind="stable"),
            )
        else:
            # Only words that pushed towards the label count; the rest are dropped before any
            # Python loop.
            positive = contrib > 0
            cols, contrib = cols[positive], contrib[positive]
            merged: dict[str, float] = {}
            for name, weight in zip(
                self._word_names()[cols].tolist(), contrib.tolist(), strict=True
            ):
                if name:
                    merged[name] = merged.get(name, 0.0) + weight
            ranked = sorted(merged.items(), key=lambda kv: -kv[1])
        return _chosen_terms(ranked, self.config.evidence_terms, self.config.evidence_min_share)


def _chosen_terms(
    ranked: Iterable[tuple[str, float]], limit: int, min_share: float
) -> list[tuple[str, float]]:
    """The evidence shown of ``ranked`` (terms by falling weight): at most ``limit``, none inside
    a term chosen before it, none weaker than ``min_share`` of the first; weights rounded as shown.

    A character n-gram inside a longer evidence term adds nothing for the reader, and a term far
    weaker than the strongest one is no reason to read (``evidence_min_share``).
    """
    chosen: list[str] = []
    weights: list[float] = []
    # The chosen terms, each after a NUL: a term inside one of them is inside this, and a term
    # without a NUL is inside this only inside one of them: one search a term instead of a
    # generator over the chosen ones (about 3 µs a ticket of both heads, twentieth round).
    joined = ""
    floor = 0.0
    for term, weight in ranked:
        if weight < floor:
            break
        if (
            chosen
            and term in joined
            and ("\0" not in term or any(term in other for other in chosen))
        ):
            continue
        if not chosen:
            floor = weight * min_share
        chosen.append(term)
        joined += "\0" + term
        weights.append(weight)
        if len(chosen) == limit:
            break
    return [(t, round(w, 4)) for t, w in zip(chosen, weights, strict=True)]


def _positive_first(
    names: np.ndarray, cols: list[int], contrib: list[float], order: np.ndarray
) -> Iterator[tuple[str, float]]:
    """The named words of ``cols`` whose ``contrib`` is positive, in ``order`` (the stable sort of
    ``-contrib``), with their contributions; stops at the first word that is not positive."""
    for k in order.tolist():
        weight = contrib[k]
        if not weight > 0:  # none after the first word not positive (or NaN) is positive
            return
        name = names[cols[k]]
        if name:
            yield name, weight


def build_router(config: TrainingConfig, userdict: Any = None, stopwords: Any = None) -> Router:
    """Assemble an unfitted router: the one build function for the whole model.

    Parameters
    ----------
    config : TrainingConfig
        Hyperparameters.
    userdict, stopwords : str or Path, optional
        jieba user dictionary and stopword list, read when the features are fitted.

    Returns
    -------
    Router
        Unfitted; :func:`training.train.train` fits it.
    """
    from model.pipeline import build_features

    return Router(config=config, features=build_features(config, userdict, stopwords))


def _without_coefficients(head: Head) -> Head:
    """A copy of ``head`` whose linear parts carry no ``coef_`` (the fused weights hold them).

    Only the objects on the way to the coefficients are copied; the live head is unchanged.
    """
    original = head.classifier
    if original is None:
        return head
    classifier = copy.copy(original)
    classifier.calibrated_classifiers_ = []
    for calibrated in original.calibrated_classifiers_:
        calibrated = copy.copy(calibrated)
        calibrated.estimator = copy.copy(calibrated.estimator)
        calibrated.estimator.coef_ = None
        classifier.calibrated_classifiers_.append(calibrated)
    if getattr(original, "multinomial_", None) is not None:
        classifier.multinomial_ = copy.copy(original.multinomial_)
        classifier.multinomial_.coef_ = None
    return dataclasses.replace(head, classifier=classifier)


def _join_tokens(ngram: str) -> str:
    # Word n-grams come back space-joined; Chinese words read naturally without the space.
    parts = ngram.split(" ")
    out = parts[0]
    for p in parts[1:]:
        out += (" " if out[-1:].isascii() and p[:1].isascii() else "") + p
    return out


def _row_lengths(X: sp.csr_matrix) -> np.ndarray:
    """Euclidean length of each row, 1 for an empty row (so dividing by it changes nothing)."""
    if X.shape[0] == 1:
        # One ticket: its squares summed one after the other, as bincount sums them below (the
        # same float), in three array calls instead of six.
        squares = X.data.astype(np.float64) ** 2
        length = math.sqrt(np.cumsum(squares)[-1]) if len(squares) else 0.0
        return np.array([length if length else 1.0])
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    lengths = np.sqrt(
        np.bincount(rows, weights=X.data.astype(np.float64) ** 2, minlength=X.shape[0])
    )
    lengths[lengths == 0] = 1.0
    return lengths


def _product_row(X: sp.csr_matrix, postings: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``X @ postings`` for a one-row ``X``: the columns of its non-zero entries and their values,
    as scipy's product gives them (the same kernel, so the same order and the same floats).

    The product's Python around its kernel (the operand converted to its own format, three
    ``get_index_dtype``s, a first pass over every posting to size the result, the result's
    constructor) cost more than the kernel for one ticket: 65 against 21 µs at 50 characters
    (twentieth round). One row has at most as many entries as ``postings`` has columns, so the
    result is sized by that and the sizing pass is skipped. Without the kernel (a scipy that moved
    it, or changed its arguments), for operands of mixed types that it does not take, or of
    shapes that do not fit (which the kernel would not check), the public product.
    """
    index_type = postings.indices.dtype
    if (
        _csr_matmat is None
        or X.shape != (1, postings.shape[0])
        or postings.indptr.dtype != index_type
        or X.data.dtype != postings.data.dtype
    ):
        product = X @ postings
        return product.indices, product.data
    n = postings.shape[1]
    indptr = np.empty(2, dtype=index_type)
    indices = np.empty(n, dtype=index_type)
    data = np.empty(n, dtype=postings.data.dtype)
    try:
        _csr_matmat(
            1,
            n,
            X.indptr.astype(index_type, copy=False),
            X.indices.astype(index_type, copy=False),
            X.data,
            postings.indptr,
            postings.indices,
            postings.data,
            indptr,
            indices,
            data,
        )
    except (TypeError, ValueError):  # a scipy whose kernel takes other arguments: checked first
        product = X @ postings
        return product.indices, product.data
    nnz = int(indptr[1])
    return indices[:nnz], data[:nnz]


def _top(rows: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``rows`` by ``sims``, ties in stored order, those with a positive one.

    The answer does not depend on the order ``rows`` come in (a sparse product's order differs
    from a dense array's)."""
    k = min(k, len(sims))
    if k == 0:
        return rows[:0], sims[:0]
    if len(sims) > k:  # every row as similar as the k-th best, so that ties go to the first
        keep = np.flatnonzero(sims >= np.partition(sims, len(sims) - k)[len(sims) - k])
        rows, sims = rows[keep], sims[keep]
    top = np.lexsort((rows, -sims))[:k]  # by similarity, then by stored order
    if sims[top[-1]] <= 0:  # the last is the least similar
        top = top[sims[top] > 0]
    return rows[top], sims[top]


def _shortlist(rows: np.ndarray, scores: np.ndarray, size: int) -> np.ndarray:
    """``rows`` whose score is at least the ``size``-th best of ``scores``, ``size`` of them or
    more on ties, whatever order ``rows`` come in."""
    if len(rows) <= size:
        return rows
    return rows[scores >= np.partition(scores, len(scores) - size)[len(scores) - size]]


def _shortlist_dense(scores: np.ndarray, size: int) -> np.ndarray:
    """:func:`_shortlist` of the positive entries of a dense array of scores, in stored order.

    Listing every positive entry of a large array costs more than the search (a branch per
    entry, about 0.6 ms at 100,000 stored tickets), so a strided sample first gives a score that
    at least ``size`` entries reach; only those are listed. The answer is exact: every entry
    above the ``size``-th best is among them."""
    step = 8
    if len(scores) > step * size * 4:
        sample = scores[::step]
        rank = max(1, 2 * size // step)  # about twice ``size`` entries of the whole reach it
        floor = np.partition(sample, len(sample) - rank)[len(sample) - rank]
        if floor > 0:
            above = np.flatnonzero(scores >= floor)
            if len(above) >= size:
                return _shortlist(above, scores[above], size)
    rows = np.flatnonzero(scores > 0)
    return _shortlist(rows, scores[rows], size)


def _dense_row(Q: sp.csr_matrix, j: int) -> np.ndarray:
    """Row ``j`` of a CSR matrix as a dense vector (faster to multiply by than a sparse column)."""
    out = np.zeros(Q.shape[1], dtype=Q.dtype)
    start, end = Q.indptr[j], Q.indptr[j + 1]
    out[Q.indices[start:end]] = Q.data[start:end]
    return out


def _prune_rows(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Each row's ``keep`` largest entries (all of a shorter row), as a new CSR matrix."""
    m = sp.csr_matrix(matrix)
    lengths = np.diff(m.indptr)
    mask = np.ones(m.nnz, dtype=bool)
    for r in np.flatnonzero(lengths > keep):
        start, end = m.indptr[r], m.indptr[r + 1]
        drop = np.argpartition(-m.data[start:end], keep - 1)[keep:]
        mask[start + drop] = False
    rows = np.repeat(np.arange(m.shape[0]), lengths)[mask]
    return sp.csr_matrix((m.data[mask], (rows, m.indices[mask])), shape=m.shape)


def _none_if_empty(value: Any) -> str | None:
    return str(value) if value else None
