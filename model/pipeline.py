"""The one place that builds features and classifiers, so training and serving cannot drift apart."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from model.compiled import (
    CharNgramIndex,
    CompiledFeatures,
    CompiledHeads,
    CompiledView,
    Fold,
    LatentView,  # noqa: F401  (it lived here: models pickled before model.compiled name it here)
    Multinomial,
    TicketLike,
    as_title_text,
    char_wb_ngrams,
    word_ngrams,
)
from model.config import TrainingConfig
from model.text import Script, combine, counted
from model.tokenizer import (
    BACKENDS,
    WORD_CUTS,
    Backend,
    Doc,
    Segmenter,
    WordCut,
    doc_text,
    doc_tokens,
    import_backend,
    read_stopwords,
    read_userdict,
)


class TextPreparer(TransformerMixin, BaseEstimator):
    """Clean, mask and combine each ticket's title and text into one string.

    Parameters
    ----------
    title_repeat : int, default 2
        How many times the title is written before the text.
    script : {"as_written", "simplified"}, default "as_written"
        The script the model reads (:func:`model.text.to_script`).
    """

    def __init__(self, title_repeat: int = 2, script: Script = "as_written") -> None:
        self.title_repeat = title_repeat
        self.script = script

    def fit(self, X: Iterable[TicketLike] | None = None, y: Any = None) -> TextPreparer:
        self.n_features_in_ = 1
        return self

    def transform(self, X: Iterable[TicketLike]) -> list[str]:
        return [combine(*as_title_text(t), self.title_repeat, self.script) for t in X]

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("script", "as_written")  # pickled before the setting: read as written
        super().__setstate__(state)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags


class JiebaTokenizer(TransformerMixin, BaseEstimator):
    """The feature pipeline's tokenizer: reads its resources at ``fit``, cuts with a :class:`Segmenter`.

    Parameters
    ----------
    userdict : str or Path, optional
        jieba user dictionary read at ``fit`` time. Its words are stored in the fitted tokenizer,
        so a loaded model never depends on the file still being where it was at training.
    stopwords : str or Path, optional
        Stopword list read at ``fit`` time.
    hmm : bool, default True
        Let jieba guess words that are in no dictionary (names, new terms) with its HMM.
    backend : {"jieba", "rjieba"}, default "jieba"
        See :class:`~model.tokenizer.Segmenter`.
    cut : {"precise", "search"}, default "precise"
        See :class:`~model.tokenizer.Segmenter`.
    whole_placeholders : bool, default True
        See :class:`~model.tokenizer.Segmenter`.

    Attributes
    ----------
    user_words_ : tuple of (word, freq, tag)
        The user dictionary the tokenizer was fitted with.
    stopwords_ : frozenset of str
        The stopwords it was fitted with.
    backend_ : str
        The backend it was fitted with (what a loaded model cuts with).
    """

    def __init__(
        self,
        userdict: str | Path | None = None,
        stopwords: str | Path | None = None,
        hmm: bool = True,
        backend: Backend = "jieba",
        cut: WordCut = "precise",
        whole_placeholders: bool = True,
    ) -> None:
        self.userdict = userdict
        self.stopwords = stopwords
        self.hmm = hmm
        self.backend = backend
        self.cut = cut
        self.whole_placeholders = whole_placeholders

    def fit(self, X: Iterable[str] | None = None, y: Any = None) -> JiebaTokenizer:
        if self.backend not in BACKENDS:
            raise ValueError(
                f"tokenizer backend {self.backend!r} is not one of {', '.join(BACKENDS)}"
            )
        import_backend(
            self.backend
        )  # fail at fit time, with the fix, rather than on the first text
        if self.cut not in WORD_CUTS:
            raise ValueError(f"word cut {self.cut!r} is not one of {', '.join(WORD_CUTS)}")
        self.backend_ = self.backend
        self.user_words_ = read_userdict(self.userdict) if self.userdict else ()
        self.stopwords_ = read_stopwords(self.stopwords) if self.stopwords else frozenset()
        self.__dict__.pop("_segmenter", None)
        return self

    def transform(self, X: Iterable[str]) -> list[Doc]:
        return self.segmenter().transform(X)

    def tokenize(self, text: str) -> tuple[str, ...]:
        """Cut one prepared text into its meaningful, non-stopword tokens."""
        return self.segmenter().tokenize(text)

    def warm_up(self) -> None:
        """Load jieba's dictionary now rather than on the first request."""
        self.segmenter().warm_up()

    def segmenter(self) -> Segmenter:
        """The fitted segmenter, made once per tokenizer (it holds the loaded dictionary)."""
        seg = self.__dict__.get("_segmenter")
        if seg is None:
            # getattr: tokenizers pickled before the backend existed were jieba ones.
            seg = Segmenter(
                self.user_words_,
                self.stopwords_,
                self.hmm,
                getattr(self, "backend_", "jieba"),
                self.cut,
                self.whole_placeholders,
            )
            self.__dict__["_segmenter"] = seg
        return seg

    def __getstate__(self) -> dict[str, Any]:
        # A copy: on Python 3.11 scikit-learn's state is the live __dict__ itself, and popping from
        # it dropped the loaded dictionary of the tokenizer being pickled.
        state = dict(super().__getstate__())
        state.pop("_segmenter", None)
        state.pop("_jieba_cache", None)  # the loaded dictionary, in tokenizers before Segmenter
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("backend", "jieba")  # pickled before the parameter existed
        state.setdefault("cut", "precise")  # pickled before the search mode
        state.setdefault("whole_placeholders", False)  # pickled before placeholders were words
        super().__setstate__(state)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        return tags


def build_features(
    config: TrainingConfig,
    userdict: str | Path | None = None,
    stopwords: str | Path | None = None,
) -> Pipeline:
    """Assemble the feature pipeline: prepare → tokenise → TF-IDF views.

    Parameters
    ----------
    config : TrainingConfig
        Hyperparameters of the views.
    userdict, stopwords : str or Path, optional
        Resource files the tokenizer reads when it is fitted.

    Returns
    -------
    Pipeline
        Steps ``prepare`` (:class:`TextPreparer`), ``tokenize`` (:class:`JiebaTokenizer`) and
        ``views`` (a :class:`FeatureUnion` of a word TF-IDF and, unless turned off, a character
        n-gram TF-IDF). Slicing ``[:2]`` gives tokenised documents, which training caches so that
        jieba runs once per ticket however many folds are fitted.
    """
    views: list[tuple[str, Any]] = [
        (
            "word",
            TfidfVectorizer(
                # tokenizer=, not analyzer=: only then does scikit-learn build the word n-grams.
                tokenizer=doc_tokens,
                token_pattern=None,
                lowercase=False,
                ngram_range=(1, config.word_ngram_max),
                min_df=config.min_df,
                max_features=config.max_features,
                sublinear_tf=True,
                dtype=np.float32,
            ),
        )
    ]
    weights = {"word": 1.0}
    if config.char_ngram_max > 0:
        views.append(
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    preprocessor=doc_text,
                    ngram_range=(config.char_ngram_min, config.char_ngram_max),
                    min_df=config.min_df,
                    max_features=config.max_features,
                    sublinear_tf=True,
                    dtype=np.float32,
                ),
            )
        )
        weights["char"] = config.char_weight
    return Pipeline(
        [
            ("prepare", TextPreparer(title_repeat=config.title_repeat, script=config.script)),
            (
                "tokenize",
                JiebaTokenizer(
                    userdict=userdict,
                    stopwords=stopwords,
                    backend=config.tokenizer,
                    cut=config.word_cut,
                ),
            ),
            ("views", FeatureUnion(views, transformer_weights=weights)),
        ]
    )


class BlendedClassifier(CalibratedClassifierCV):
    """A calibrated linear classifier whose probabilities are averaged with a multinomial one's.

    Everything of :class:`~sklearn.calibration.CalibratedClassifierCV` is kept (its folds, their
    sigmoids, ``calibrated_classifiers_``), and a class-balanced multinomial
    :class:`~sklearn.linear_model.LogisticRegression` is fitted beside it on the same rows.
    ``predict_proba`` is ``(1 - w) * calibrated + w * multinomial`` for ``w =
    multinomial_weight``. The two err differently: one-against-the-rest classifiers, each
    calibrated on its own and renormalised, against one softmax over all classes.

    Parameters
    ----------
    multinomial_weight : float
        ``w`` above, in [0, 1].
    multinomial_C : float
        Inverse regularisation strength of the logistic regression.
    class_weight : {"balanced"} or None
        Its class weighting.

    The other parameters are :class:`~sklearn.calibration.CalibratedClassifierCV`'s.
    """

    _parameter_constraints: ClassVar[dict] = {
        **CalibratedClassifierCV._parameter_constraints,
        "multinomial_weight": [Real],
        "multinomial_C": [Real],
        "class_weight": [str, dict, None],
    }

    def __init__(
        self,
        estimator: Any = None,
        *,
        method: str = "sigmoid",
        cv: Any = None,
        n_jobs: int | None = None,
        ensemble: bool | str = "auto",
        multinomial_weight: float = 0.5,
        multinomial_C: float = 10.0,
        class_weight: str | dict | None = None,
    ) -> None:
        super().__init__(estimator, method=method, cv=cv, n_jobs=n_jobs, ensemble=ensemble)
        self.multinomial_weight = multinomial_weight
        self.multinomial_C = multinomial_C
        self.class_weight = class_weight

    def fit(self, X: Any, y: Any, **fit_params: Any) -> BlendedClassifier:
        super().fit(X, y, **fit_params)
        self.multinomial_ = LogisticRegression(
            C=self.multinomial_C, class_weight=self.class_weight, max_iter=MULTINOMIAL_MAX_ITER
        ).fit(X, y)
        if not np.array_equal(self.multinomial_.classes_, self.classes_):
            raise RuntimeError("the blended classifiers disagree on the classes")
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        w = self.multinomial_weight
        return (1.0 - w) * super().predict_proba(X) + w * self.multinomial_.predict_proba(X)


# A cap against a fit that does not converge: on the 796 rows of the shared department_train.csv
# (C = 10, 253,822 columns) lbfgs stopped after 33 iterations, in 15 s (a LinearSVC: 0.5 s).
MULTINOMIAL_MAX_ITER = 2_000


def build_classifier(
    config: TrainingConfig, class_counts: Sequence[int], head: str = ""
) -> CalibratedClassifierCV:
    """Assemble one head's calibrated linear classifier.

    Parameters
    ----------
    config : TrainingConfig
        Regularisation, class weighting and calibration settings.
    class_counts : sequence of int
        Training rows per class; the calibration's internal folds never exceed the smallest count.
    head : str
        The head's name: only :meth:`TrainingConfig.multinomial_share`'s heads are blended.

    Returns
    -------
    CalibratedClassifierCV
        A :class:`~sklearn.svm.LinearSVC` whose decision scores are mapped to probabilities; a
        :class:`BlendedClassifier` where a multinomial logistic regression is averaged in (only
        for more than two classes).
    """
    folds = max(2, min(config.calibration_cv, min(class_counts)))
    svc = LinearSVC(C=config.C, class_weight=config.class_weight, random_state=config.seed)
    share = config.multinomial_share(head)
    if share > 0 and len(class_counts) > 2:
        return BlendedClassifier(
            svc,
            method=config.calibration,
            cv=folds,
            ensemble=config.calibration_ensemble,
            multinomial_weight=share,
            multinomial_C=config.multinomial_C,
            class_weight=config.class_weight,
        )
    return CalibratedClassifierCV(
        svc, method=config.calibration, cv=folds, ensemble=config.calibration_ensemble
    )


def number_by_frequency(views: FeatureUnion) -> np.ndarray:
    """Renumber each fitted view's columns from its most to its least common term, in place.

    scikit-learn numbers a vocabulary alphabetically, so the terms one ticket uses, most of them
    common, are spread over the whole width of everything indexed by column: the heads' fused
    weights (about 80 MB on the real tickets), the similar-ticket postings and the IDF. Numbered by
    document frequency, the common terms' rows sit side by side in a few memory pages. Measured with
    two models of the shared ``department_train.csv`` (same cross-validated metrics, same
    suggestions and scores on 1,800 tickets), calls alternating between them in one process:
    ``Router.predict`` p50 at 50, 400 and 2,000 characters 577, 1,204 and 3,453 µs against 592,
    1,318 and 3,984 alphabetically numbered (a loaded machine); ``Router.rankings`` of many
    400-character tickets 206 against 233 µs a ticket.

    Each view keeps its place in the union (word columns first), and ties keep their alphabetical
    order. The fitted IDF ranks the terms (it falls as document frequency rises), so nothing is
    counted again. Only the numbering changes: each view computes the same values, up to the last
    bit of a row's norm (its squares are summed in column order). Rows the views produced before
    follow with :func:`renumber_columns`.

    Returns
    -------
    ndarray
        The new column of each old one, over the whole union.
    """
    new_of_old = []
    offset = 0
    for _, vec in views.transformer_list:
        idf = np.asarray(vec.idf_)
        old_of_new = np.argsort(idf, kind="stable")  # rising IDF: falling document frequency
        new = np.empty(len(idf), dtype=np.int64)
        new[old_of_new] = np.arange(len(idf))
        vec.vocabulary_ = {term: int(new[col]) for term, col in vec.vocabulary_.items()}
        vec.idf_ = idf[old_of_new]
        new_of_old.append(new + offset)
        offset += len(idf)
    return np.concatenate(new_of_old) if new_of_old else np.zeros(0, dtype=np.int64)


def renumber_columns(X: sp.csr_matrix, new_of_old: np.ndarray, piece: int = 1 << 24) -> None:
    """Move the entries of ``X`` to their new columns, in place, keeping each row's sorted.

    In pieces of ``piece`` entries, so that a large training matrix needs no second copy of its
    column indices.
    """
    for start in range(0, X.nnz, piece):
        part = X.indices[start : start + piece]
        part[:] = new_of_old[part]
    X.has_sorted_indices = False
    X.sort_indices()


def compilable(classifier: CalibratedClassifierCV) -> bool:
    """Whether :class:`CompiledHeads` can compute this head: sigmoid calibration of linear folds."""
    return classifier.method == "sigmoid" and all(
        hasattr(c.estimator, "coef_") for c in classifier.calibrated_classifiers_
    )


def linear_parts(classifier: CalibratedClassifierCV) -> list[Any]:
    """A head's fitted linear estimators: each calibration fold's, then a blend's multinomial one."""
    parts = [calibrated.estimator for calibrated in classifier.calibrated_classifiers_]
    multinomial = getattr(classifier, "multinomial_", None)
    return parts + ([multinomial] if multinomial is not None else [])


def fuse_weights(
    classifiers: Mapping[str, CalibratedClassifierCV],
) -> tuple[np.ndarray, dict[str, list[tuple[int, int]]]]:
    """Every linear part's weights of every given head, side by side in one C-ordered matrix.

    Row ``r`` holds the weights of input column ``r`` for each (head, part, class), so the weights
    that one ticket's features need are a handful of contiguous rows: one gather serves both heads
    and all their folds, where one gather per fold read scattered memory ``folds × heads`` times
    (the largest cost of a single ticket, measured). Rows past a head's own inputs (a head that
    reads fewer extra columns than another) are zero. A head's parts are :func:`linear_parts`: its
    calibration folds, then a :class:`BlendedClassifier`'s multinomial regression.

    The weights are stored as float32, like the features they multiply: reading them is what a
    prediction's heads cost (memory-bound), and half the bytes made batch labelling 10 % and a
    400-character ticket 9 % faster, with the model file and its memory 79 MB smaller on the real
    tickets. Scores change in the seventh significant digit (LinearSVC's own weights are float64).

    Returns
    -------
    (ndarray, dict)
        The matrix, and for each head the ``[start, stop)`` column range of each part.
    """
    blocks: list[tuple[str, np.ndarray]] = []
    for name, classifier in classifiers.items():
        for part in linear_parts(classifier):
            blocks.append((name, np.asarray(part.coef_)))
    rows = max((coef.shape[1] for _, coef in blocks), default=0)
    weights = np.zeros((rows, sum(coef.shape[0] for _, coef in blocks)), dtype=np.float32)
    layout: dict[str, list[tuple[int, int]]] = {name: [] for name in classifiers}
    start = 0
    for name, coef in blocks:
        stop = start + coef.shape[0]
        weights[: coef.shape[1], start:stop] = coef.T
        layout[name].append((start, stop))
        start = stop
    return weights, layout


def attach_weights(
    classifiers: Mapping[str, CalibratedClassifierCV],
    weights: np.ndarray,
    layout: Mapping[str, Sequence[tuple[int, int]]],
) -> None:
    """Point each linear part's ``coef_`` at its block of ``weights`` (a view, so one copy is kept).

    scikit-learn's own ``predict_proba`` keeps working on the views.
    """
    for name, classifier in classifiers.items():
        for est, (start, stop) in zip(linear_parts(classifier), layout[name], strict=True):
            est.coef_ = weights[: est.n_features_in_, start:stop].T


def compile_features(features: Pipeline) -> CompiledFeatures:
    """The fitted feature pipeline's numbers, read once into a :class:`CompiledFeatures`."""
    union: FeatureUnion = features.named_steps["views"]
    weights = union.transformer_weights or {}
    views = []
    offset = 0
    for name, vec in union.transformer_list:
        views.append(compile_view(name, vec, weights.get(name), offset))
        offset += views[-1].width
    return CompiledFeatures(
        features.named_steps["prepare"].title_repeat,
        features.named_steps["tokenize"].segmenter(),
        views,
        features.named_steps["prepare"].script,
    )


def compile_view(
    name: str, vec: TfidfVectorizer, weight: float | None, offset: int
) -> CompiledView:
    """One fitted ``TfidfVectorizer`` of the union as a :class:`CompiledView`.

    The views :func:`build_features` makes get analyzers of :mod:`model.compiled`, which need no
    scikit-learn; any other vectorizer keeps its own (and a model holding it imports scikit-learn
    when it is loaded).
    """
    if vec.norm not in ("l2", None) or not vec.use_idf:
        raise ValueError("only l2-normalised TF-IDF views can be compiled")
    analyzer: Callable[[Any], Sequence[str]] = vec.build_analyzer()
    char_keys = None
    plain_input = vec.input == "content" and vec.decode_error == "strict"
    if vec.analyzer == "char_wb" and plain_input and vec.preprocessor is not None:
        analyzer = partial(
            char_wb_ngrams, preprocessor=vec.preprocessor, ngram_range=vec.ngram_range
        )
        if CharNgramIndex.supports(vec.ngram_range, vec.vocabulary_):
            char_keys = CharNgramIndex(vec.vocabulary_, vec.preprocessor, vec.ngram_range)
    elif (
        vec.analyzer == "word"
        and plain_input
        and callable(vec.tokenizer)
        and vec.preprocessor is None
        and not vec.lowercase
        and not vec.strip_accents
        and vec.stop_words is None
    ):
        analyzer = partial(word_ngrams, tokenizer=vec.tokenizer, ngram_range=vec.ngram_range)
    return CompiledView(
        name,
        analyzer,
        vec.vocabulary_,
        np.asarray(vec.idf_, dtype=vec.dtype),
        sublinear=vec.sublinear_tf,
        l2=vec.norm == "l2",
        weight=weight,
        offset=offset,
        char_keys=char_keys,
    )


def compile_heads(
    classifiers: Mapping[str, CalibratedClassifierCV],
    weights: np.ndarray,
    layout: Mapping[str, Sequence[tuple[int, int]]],
    width: int,
) -> CompiledHeads:
    """Fitted heads that are :func:`compilable` as one :class:`CompiledHeads`.

    Parameters
    ----------
    classifiers : mapping of str to CalibratedClassifierCV
        The heads, by name.
    weights, layout : ndarray, dict
        :func:`fuse_weights`'s result for these heads.
    width : int
        Number of TF-IDF columns.
    """
    classes: dict[str, np.ndarray] = {}
    folds: dict[str, list[Fold]] = {}
    multinomials: dict[str, Multinomial] = {}
    for name, classifier in classifiers.items():
        classes[name] = np.asarray(classifier.classes_)
        folds[name] = []
        calibrated_folds = classifier.calibrated_classifiers_
        for calibrated, (start, stop) in zip(
            calibrated_folds, layout[name][: len(calibrated_folds)], strict=True
        ):
            est = calibrated.estimator
            positions = np.searchsorted(classes[name], est.classes_)
            if len(classes[name]) == 2:
                positions = np.array([1])
            folds[name].append(
                Fold(
                    start,
                    stop,
                    np.asarray(est.intercept_),
                    np.array([c.a_ for c in calibrated.calibrators], dtype=np.float64),
                    np.array([c.b_ for c in calibrated.calibrators], dtype=np.float64),
                    positions,
                )
            )
        if isinstance(classifier, BlendedClassifier):
            start, stop = layout[name][-1]
            multinomials[name] = Multinomial(
                start,
                stop,
                np.asarray(classifier.multinomial_.intercept_, dtype=np.float64),
                float(classifier.multinomial_weight),
            )
    return CompiledHeads(weights, width, classes, folds, multinomials)


def without_vocabularies(features: Pipeline) -> Pipeline:
    """A copy of a fitted feature pipeline whose vectorizers hold no vocabulary.

    For the part of a model written beside its serving file, whose compiled views hold the same
    vocabularies (6 MB of strings on the real tickets); :func:`restore_vocabularies` puts them
    back. Only the objects on the way to the vocabularies are copied; ``features`` is unchanged.
    """
    union: FeatureUnion = copy.copy(features.named_steps["views"])
    listed = []
    for name, vec in union.transformer_list:
        vec = copy.copy(vec)
        vec.vocabulary_ = None
        listed.append((name, vec))
    union.transformer_list = listed
    out = copy.copy(features)
    out.steps = [*features.steps[:-1], ("views", union)]
    return out


def restore_vocabularies(features: Pipeline, vocabularies: Sequence[dict[str, int]]) -> None:
    """Give the vectorizers of a pipeline from :func:`without_vocabularies` their vocabularies.

    ``vocabularies``: one per view, in the union's order (the compiled views'). Raises
    ``ValueError`` if their number or sizes do not match the views.
    """
    views = features.named_steps["views"].transformer_list
    if len(views) != len(vocabularies):
        raise ValueError(
            f"{counted(len(vocabularies), 'vocabulary', 'vocabularies')} for "
            f"{counted(len(views), 'feature view')}"
        )
    for (name, vec), vocabulary in zip(views, vocabularies, strict=True):
        if len(vocabulary) != len(vec.idf_):
            raise ValueError(
                f"view {name!r} has {counted(len(vec.idf_), 'IDF weight', thousands=True)} but "
                "its vocabulary "
                f"{counted(len(vocabulary), 'term', thousands=True)}"
            )
        vec.vocabulary_ = vocabulary
