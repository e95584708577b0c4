"""Training hyperparameters: one frozen dataclass, written into every model's metadata."""

from __future__ import annotations

import math
import numbers
import types
import typing
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any, Literal

OTHER_LABEL = "其他"
# The fewest rows a label can be trained with: each cross-validation fold trains on all but about
# a fold's share of them, and the calibration inside needs two of each label to split in two.
MIN_LABEL_ROWS = 3
# Strengths of the prior shift tried when TrainingConfig.prior_alpha is None (see there).
PRIOR_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
# The router's two heads, and the most candidates per head a caller may ask for (the HTTP API and
# `paidan predict`). Here, not in model.router (which re-exports them), so that the command line
# names them without importing numpy and SciPy: the supervisor of --workers N routes nothing.
HEADS = ("department", "category")
MAX_TOP_K = 20
# Weights of the category head's department shares in ranks 2..k tried when
# TrainingConfig.category_shares_in_ranking is on (see there); 0 leaves the ranking as it is.
CATEGORY_SHARE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


class ConfigError(ValueError):
    """A :class:`TrainingConfig` value out of its range, e.g. ``C=-1.0 must be greater than 0``."""


# The default of TrainingConfig.unlabelled_max_rows (and of `paidan train --unlabelled-max-rows`).
UNLABELLED_MAX_ROWS = 50_000


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides what a trained model is, apart from its data.

    Parameters
    ----------
    seed : int
        Seed for the stratified folds and every estimator that draws random numbers.
    cv_folds : int
        Folds of the stratified cross-validation that produces the stored metrics and thresholds.
    target_precision : float
        Precision that ``auto`` decisions must reach on held-out folds; each head's threshold is the
        lowest confidence at which they do.
    min_examples : int
        A label with fewer training rows is merged into :data:`OTHER_LABEL` (or refused in strict mode).
        At least :data:`MIN_LABEL_ROWS`.
    title_repeat : int
        How many times a title is written before its text (titles carry more signal per character).
    word_ngram_max : int
        Longest word n-gram in the word view.
    char_ngram_min, char_ngram_max : int
        Character n-gram range of the character view; ``char_ngram_max = 0`` turns the view off.
    char_weight : float
        Weight of the character view relative to the word view in the feature union.
    min_df : int
        A term must occur in at least this many documents to become a feature.
    max_features : int or None
        Cap on each view's vocabulary (most frequent terms kept), bounding model size and latency.
    C : float
        Inverse regularisation strength of the linear classifiers.
    class_weight : {"balanced", None}
        ``"balanced"`` up-weights rare departments so the long tail is not ignored.
    calibration : {"sigmoid", "isotonic"}
        How decision scores become probabilities (Platt scaling suits small classes).
    calibration_cv : int
        Internal folds of the calibration.
    calibration_ensemble : bool
        ``True`` (default): one classifier per calibration fold, their probabilities averaged
        (scikit-learn's default). ``False``: the folds only provide out-of-fold scores to fit the
        calibration, and one classifier trained on all rows predicts: a third of the weights to
        store, load and multiply. On the shared real tickets (seed 42, same folds) ``False`` gave
        the same category macro-F1 (0.872 vs 0.871) with lower ECE (0.10 vs 0.13) and more auto
        coverage (0.57 vs 0.50), and +1.1 points of department macro-F1, but on two of five
        department folds no threshold reached the target precision, so nothing was dispatched
        automatically (coverage 0.15 ± 0.13 vs 0.23 ± 0.04); hence not the default. Three seeds
        of the department task (``benchmarks/results/accuracy_calibration_single.json``, before
        the prior shift existed, against the default of then) confirm it: macro-F1 0.542 ± 0.037
        vs 0.529 ± 0.050, top-3 0.879 vs 0.880, ECE 0.13 vs 0.17, and no automatic dispatch at all
        on 7 of 15 folds.
    lsa_components : int
        Dimensions of a latent semantic view (LSA: a truncated SVD of the TF-IDF features, fitted on
        the labelled and unlabelled tickets) that the department head reads besides the TF-IDF
        features; 0 turns it off. Departments are many, small and overlapping, and a dense summary
        of what a ticket is about generalises where single rare terms do not.
    lsa_min_df : int
        Features seen in fewer tickets are left out of the latent view (they barely move an SVD,
        and leaving them out keeps its stored components small).
    lsa_weight : float
        Scale of the latent view (its rows are L2-normalised) next to the TF-IDF features. 1 rather
        than 0.5: on the shared real tickets (``benchmarks/accuracy.py --tasks department``, seeds
        42, 0 and 7, same folds) the department head's auto coverage rose on all 15 folds (0.194 →
        0.290 on average; auto precision 0.976, against 0.975 over the 14 folds that dispatched
        anything before), top-3 on 9 of them (0.883 → 0.893),
        and macro-F1 from 0.556 to 0.568 (better on 9 folds, worse on 6).
    multinomial_weight : float
        Share of a class-balanced multinomial logistic regression in the department head's
        probabilities (:class:`model.pipeline.BlendedClassifier`): the head shows ``(1 - w) ×``
        the calibrated LinearSVC's ``+ w ×`` the regression's; 0 (the default) leaves the blend
        out. The two err differently (one calibrated classifier per department, renormalised,
        against one softmax over all of them). On the shared real tickets
        (``benchmarks/accuracy.py`` with ``--set multinomial_weight=0.5``, seeds 42, 0 and 7,
        ``benchmarks/results/accuracy_multinomial.json``) 0.5 raised department macro-F1 from
        0.568 to 0.577 (better on 10 folds of 15, worse on 5) but lowered top-3 from 0.893 to
        0.886 (worse on 8, better on 5) and auto coverage from 0.290 to 0.262, with one fold where
        no threshold reached the target precision; each training fold took 6.6× as long (272
        against 41 s). Not every figure rises, so it is an option, not the default.
    multinomial_C : float
        Inverse regularisation strength of that regression.
    stack_category : bool
        The department head also reads the category head's probabilities: out-of-fold ones in
        training, the category head's own at prediction. Which kind of problem a ticket is narrows
        down who owns it.
    stack_weight : float
        Scale of those probabilities next to the TF-IDF features.
    select_inputs : bool
        Cross-validate the department head with each combination of the extra inputs enabled above
        (simplest first) and keep the best by macro-F1; an extra input is kept only where the data
        show it helps. ``False`` uses every enabled input without trying the others (one
        cross-validation of the head instead of up to four).
    select_max_rows : int
        With more department rows than this, the input options are compared on a stratified
        sample of this many rows (:func:`training.train.cv_sample`), and only the chosen one is
        cross-validated on all rows (or on ``cv_max_rows`` of them). Training time on a large
        history is then about one department cross-validation instead of four; at this size the
        options' differences are settled long before.
    cv_max_rows : int or None
        ``None`` (the default): each head is cross-validated on every row. A number: with more
        rows than that, a head is cross-validated on a stratified sample of about that many, and
        its metrics, threshold, prior shift and confidence map come from the sample's held-out
        folds; the head itself is still fitted on every row. Only the scored rows count: fit-only
        rows (``--fit-only``) and remits join the sample at the scored rows' share, beyond the
        cap (:func:`training.train.cv_sample`). A head stacked on another reads, for
        the rows outside its sample, the mean probability of the sample's fold classifiers, none
        of which saw them. Cross-validation then costs what it does at that many rows, whatever
        the history. The threshold is chosen for classifiers trained on fewer rows than the
        shipped one: on the shared real tickets with a sample of 400 of each training fold's 637
        rows (``benchmarks/results/accuracy_cv_sample.json``, seeds 42, 0 and 7, same folds) no
        threshold reached the target precision on 8 of the 15 department folds, which dispatched
        nothing automatically, and on the other 7 auto precision was lower, 0.960 against 0.976
        (0.959 against 0.970 pooled over their auto rows); macro-F1 and top-3 were within noise
        (0.563 against 0.568, 0.892 against 0.893), and auto coverage fell from 0.290 to 0.164.
        Hence an option for histories too large to cross-validate whole, not the default.
    unlabelled_max_rows : int or None
        Most ``--unlabelled`` tickets the vocabulary, IDF and latent view are fitted on: with more,
        a random sample of this many (drawn with ``seed``, the same for the same files) is used,
        read a chunk at a time so the rest is never held. Each unlabelled ticket costs memory
        while training and widens the vocabulary the model keeps (on the shared tickets'
        sentences, 2026-12-06: 6,000 unlabelled beside 796 labelled trained in 33 s at 1.0 GB
        peak RSS into a 171 MB model, 24,000 in 85 s at 1.9 GB and 345 MB, 60,000 in 170 s at
        2.9 GB and 380 MB), so a city's archive of millions given whole would not fit in memory.
        ``None``: every one.
    max_similar : int
        Training tickets kept for the similar-ticket search (the most recent ones when there are more).
    evidence_terms : int
        Terms returned as evidence for each head's winning label.
    evidence_min_share : float
        A term is shown as evidence only if it pushed the winning label at least this share of
        what the strongest term pushed. On a model of the shared real tickets, 285 of 600 answers
        (both heads) for 50-character tickets listed a term below 5 % of the first one's push
        (县政府 at 0.0009 beside 街道 at 0.0686, 流程 at 0.0001 beside 入学 at 0.13), 18 of 600 at
        400 characters: no reason a dispatcher could weigh. Display only: the scores are the same whatever it is. ``0`` shows
        every positive term, as models did before 2026-12-07.
    prior_alpha : float or None
        Each head ranks its labels by probability × (training share of the label) ** -alpha,
        renormalised. Calibration gives probabilities under the training data's label shares, so
        an argmax seldom picks a small department; ``alpha = 1`` would treat every label as equally
        likely beforehand, ``0`` leaves the ranking as it is. ``None`` (the default) chooses, per
        head, the alpha among :data:`PRIOR_ALPHAS` with the best out-of-fold macro-F1 (ties to the
        smaller). The score shown for a label, and the one the auto threshold reads, stays its
        probability (see ``calibrate_confidence``): thresholding the shifted scores instead let
        rare labels' unsure suggestions in among the sure ones, and on 13 of 15 department folds
        of the shared real tickets no threshold then reached the target precision.
    calibrate_confidence : bool
        Each head maps the probability of the label it suggests to how often such suggestions
        were right on the held-out folds (a logistic fit on its logit; the other labels share the
        rest in their old proportions; the fit reads a prior worth 100 held-out suggestions at
        the identity, :func:`training.train.fit_confidence_map`). The calibrated classifiers are
        under-confident on real tickets (averaged over calibration folds, renormalised over
        one-against-the-rest classifiers); the map is increasing, so the same tickets pass the auto threshold and only
        what a dispatcher reads changes. ``False`` shows the classifiers' probabilities.
    tokenizer : {"jieba", "rjieba"}
        Word segmenter: rjieba (the default; jieba-rs, jieba's dictionary and algorithm compiled,
        several times faster) or the reference jieba. On the shared real tickets both give the same
        macro-F1 on 9 of 10 folds and 0.002 apart on the tenth
        (``benchmarks/results/accuracy_rjieba.json`` against ``accuracy_jieba.json``) and the same
        tokens on about 96% of tickets. A model is
        always served with the one it was trained with.
    word_cut : {"search", "precise"}
        How the word view cuts: ``"search"`` (the default; jieba's search-engine mode) keeps each
        word of more than two characters and adds the dictionary words inside it (住房公积金 also
        gives 住房 and 公积金, the user dictionary's 路灯不亮 also 路灯), so a ticket that writes a
        compound shares words with the tickets that write its parts; ``"precise"`` (jieba's
        default mode) keeps the longest words only. Recorded in the model, which is always served
        with it.
    script : {"simplified", "as_written"}
        The script tickets are read in: ``"simplified"`` (the default) converts a ticket typed in
        traditional characters (社區樓下燒烤店油煙很大) to simplified ones with OpenCC before
        anything else reads it (:func:`model.text.to_script`), so it shares its words with the
        simplified history; ``"as_written"`` reads every character as written, as models trained
        before the setting did. Of the 7,562 shared real tickets (simplified), 104 change, each by
        the few stray traditional characters its title or text held (203 of 2.8 million
        characters). Recorded in the model, which is always served with it.
    remit_weight : float
        The weight of each remit (a row of ``paidan train --remits``: a department's or a
        category's name and, in words, the matters it covers) in the fits of its label's head,
        where a ticket weighs 1. A remit joins the training part of every cross-validation fold
        and is never scored, nor shown as a similar ticket. ``0`` leaves the remits out.
    category_shares_in_ranking : bool
        Whether the department candidates after the suggestion (ranks 2 to k) are ordered with the
        category head's help: by ``(1 - w) ×`` the department head's ranking score ``+ w × Σ_c
        P(c | ticket) × P(department | c)``, where ``P(department | c)`` is counted on the
        training tickets that carry both labels (add-one smoothed) and stored in the model, and
        ``w`` is the best of :data:`CATEGORY_SHARE_WEIGHTS` by top-3 on the training data's own
        out-of-fold probabilities (as the prior shift's alpha is chosen; recorded in the model's
        metadata). The suggestion, every probability shown and so every decision stay as they
        are. Needs a category head. ``True`` (the default since 2026-12-07: on the shared real
        tickets department top-3 0.9012 against 0.8995 over seeds 42, 0 and 7 and 0.8999 against
        0.8945 over 1, 2 and 3, nothing else moving); ``False`` ranks as models before it did.
    """

    seed: int = 42
    cv_folds: int = 5
    target_precision: float = 0.95
    min_examples: int = 5
    title_repeat: int = 2
    word_ngram_max: int = 1
    char_ngram_min: int = 1
    char_ngram_max: int = 3
    char_weight: float = 1.0
    min_df: int = 1
    max_features: int | None = 300_000
    C: float = 1.0
    class_weight: Literal["balanced"] | None = "balanced"
    calibration: Literal["sigmoid", "isotonic"] = "sigmoid"
    calibration_cv: int = 3
    calibration_ensemble: bool = True
    lsa_components: int = 200
    lsa_min_df: int = 10
    lsa_weight: float = 1.0
    multinomial_weight: float = 0.0
    multinomial_C: float = 10.0
    stack_category: bool = True
    stack_weight: float = 1.0
    select_inputs: bool = True
    select_max_rows: int = 20_000
    cv_max_rows: int | None = None
    unlabelled_max_rows: int | None = UNLABELLED_MAX_ROWS
    max_similar: int = 100_000
    evidence_terms: int = 8
    evidence_min_share: float = 0.05
    tokenizer: Literal["jieba", "rjieba"] = "rjieba"
    word_cut: Literal["search", "precise"] = "search"
    script: Literal["simplified", "as_written"] = "simplified"
    prior_alpha: float | None = None
    calibrate_confidence: bool = True
    remit_weight: float = 3.0
    category_shares_in_ranking: bool = True

    def __post_init__(self) -> None:
        """Refuse a value of the wrong type or out of range (:class:`ConfigError`, naming both).

        Out-of-range values were accepted, then silently adjusted (``cv_folds=1`` ran two folds)
        or failed inside scikit-learn after the data were read. This runs where a config is built
        (the CLI, :meth:`from_dict` in ``retrain``, ``benchmarks/accuracy.py --set``); a model's
        pickled config is not built again when the model is loaded, so old models still serve.
        The CLI's options have the same limits or narrower (``--cv-max-rows`` at least 100).
        """
        hints = _field_types()
        for f in fields(self):
            value = getattr(self, f.name)
            expected = _type_error(value, hints[f.name])
            if expected:
                raise ConfigError(f"{f.name}={value!r} must be {expected}")
        for key, ok, limit in (
            ("seed", 0 <= self.seed <= 2**32 - 1, "between 0 and 2**32 - 1"),
            ("cv_folds", self.cv_folds >= 2, "at least 2"),
            ("target_precision", 0.5 <= self.target_precision <= 1, "between 0.5 and 1"),
            ("min_examples", self.min_examples >= MIN_LABEL_ROWS, f"at least {MIN_LABEL_ROWS}"),
            ("title_repeat", self.title_repeat >= 0, "at least 0 (0: no title)"),
            ("word_ngram_max", self.word_ngram_max >= 1, "at least 1"),
            ("char_ngram_max", self.char_ngram_max >= 0, "at least 0 (0: no character view)"),
            ("char_ngram_min", self.char_ngram_min >= 1, "at least 1"),
            (
                "char_ngram_min",
                self.char_ngram_max == 0 or self.char_ngram_min <= self.char_ngram_max,
                f"at most char_ngram_max ({self.char_ngram_max})",
            ),
            (
                "char_weight",
                math.isfinite(self.char_weight) and self.char_weight >= 0,
                "a finite number >= 0",
            ),
            ("min_df", self.min_df >= 1, "at least 1"),
            ("max_features", self.max_features is None or self.max_features >= 1, "at least 1"),
            ("C", math.isfinite(self.C) and self.C > 0, "a finite number > 0"),
            ("calibration_cv", self.calibration_cv >= 2, "at least 2"),
            ("lsa_components", self.lsa_components >= 0, "at least 0 (0: no latent view)"),
            ("lsa_min_df", self.lsa_min_df >= 1, "at least 1"),
            (
                "lsa_weight",
                math.isfinite(self.lsa_weight) and self.lsa_weight >= 0,
                "a finite number >= 0",
            ),
            ("multinomial_weight", 0 <= self.multinomial_weight <= 1, "between 0 and 1"),
            (
                "multinomial_C",
                math.isfinite(self.multinomial_C) and self.multinomial_C > 0,
                "a finite number > 0",
            ),
            (
                "stack_weight",
                math.isfinite(self.stack_weight) and self.stack_weight >= 0,
                "a finite number >= 0",
            ),
            (
                "remit_weight",
                math.isfinite(self.remit_weight) and self.remit_weight >= 0,
                "a finite number >= 0",
            ),
            ("select_max_rows", self.select_max_rows >= 1, "at least 1"),
            ("cv_max_rows", self.cv_max_rows is None or self.cv_max_rows >= 1, "at least 1"),
            (
                "unlabelled_max_rows",
                self.unlabelled_max_rows is None or self.unlabelled_max_rows >= 1,
                "at least 1",
            ),
            ("max_similar", self.max_similar >= 1, "at least 1"),
            ("evidence_terms", self.evidence_terms >= 1, "at least 1"),
            (
                "evidence_min_share",
                0 <= self.evidence_min_share < 1,
                "at least 0 and below 1",
            ),
            (
                "prior_alpha",
                self.prior_alpha is None or 0 <= self.prior_alpha <= 1,
                "between 0 and 1, or None",
            ),
        ):
            if not ok:
                raise ConfigError(f"{key}={getattr(self, key)!r} must be {limit}")

    def multinomial_share(self, head: str) -> float:
        """``multinomial_weight`` for the department head; 0 for the others (never measured)."""
        return self.multinomial_weight if head == "department" else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data, for ``metadata.json``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """Rebuild a config from metadata, ignoring keys this version does not know.

        A setting that models written before it existed do not record takes the value they were
        trained with (:data:`BEFORE_RECORDED`), not today's default, so that ``retrain`` keeps it.
        """
        known = {f.name for f in fields(cls)}
        return cls(**BEFORE_RECORDED | {k: v for k, v in data.items() if k in known})


# What models written before a setting existed were trained with, where that is not its default.
BEFORE_RECORDED: dict[str, Any] = {"word_cut": "precise", "script": "as_written"}


@cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainingConfig)


def _type_error(value: Any, hint: Any) -> str:
    """What ``value`` should have been for a field annotated ``hint`` ("" when it is that)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    wanted = []
    for kind in typing.get_args(hint) if union else (hint,):
        if kind is type(None):
            ok, what = value is None, "None"
        elif typing.get_origin(kind) is Literal:
            choices = typing.get_args(kind)
            ok, what = value in choices, "one of " + ", ".join(map(repr, choices))
        elif kind is bool:
            ok, what = isinstance(value, bool), "true or false"
        elif kind is int:
            ok, what = isinstance(value, numbers.Integral), "an integer"
        else:  # float
            ok, what = isinstance(value, numbers.Real), "a number"
        if ok and (kind is bool or not isinstance(value, bool)):
            return ""
        wanted.append(what)
    return " or ".join(wanted)
