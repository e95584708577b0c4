"""The one place that builds features and classifiers, so training and serving cannot drift apart."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from model.config import TrainingConfig
from model.text import combine
from model.tokenizer import Doc, JiebaTokenizer, doc_text, doc_tokens

# A ticket as the pipeline accepts it: a bare text, a (title, text) pair, or a mapping with those keys.
TicketLike = str | tuple[str | None, str | None] | Mapping[str, Any]


def as_title_text(ticket: TicketLike) -> tuple[str | None, str | None]:
    """Read a title and a text out of any :data:`TicketLike`."""
    if isinstance(ticket, str):
        return None, ticket
    if isinstance(ticket, Mapping):
        return ticket.get("title"), ticket.get("text")
    title, text = ticket
    return title, text


class TextPreparer(TransformerMixin, BaseEstimator):
    """Clean, mask and combine each ticket's title and text into one string.

    Parameters
    ----------
    title_repeat : int, default 2
        How many times the title is written before the text.
    """

    def __init__(self, title_repeat: int = 2) -> None:
        self.title_repeat = title_repeat

    def fit(self, X: Iterable[TicketLike] | None = None, y: Any = None) -> TextPreparer:
        self.n_features_in_ = 1
        return self

    def transform(self, X: Iterable[TicketLike]) -> list[str]:
        return [combine(*as_title_text(t), title_repeat=self.title_repeat) for t in X]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
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
            ("prepare", TextPreparer(title_repeat=config.title_repeat)),
            (
                "tokenize",
                JiebaTokenizer(userdict=userdict, stopwords=stopwords, backend=config.tokenizer),
            ),
            ("views", FeatureUnion(views, transformer_weights=weights)),
        ]
    )


def build_classifier(config: TrainingConfig, class_counts: Sequence[int]) -> CalibratedClassifierCV:
    """Assemble one head's calibrated linear classifier.

    Parameters
    ----------
    config : TrainingConfig
        Regularisation, class weighting and calibration settings.
    class_counts : sequence of int
        Training rows per class; the calibration's internal folds never exceed the smallest count.

    Returns
    -------
    CalibratedClassifierCV
        A :class:`~sklearn.svm.LinearSVC` whose decision scores are mapped to probabilities.
    """
    folds = max(2, min(config.calibration_cv, min(class_counts)))
    return CalibratedClassifierCV(
        LinearSVC(C=config.C, class_weight=config.class_weight, random_state=config.seed),
        method=config.calibration,
        cv=folds,
        ensemble=config.calibration_ensemble,
    )


class CompiledFeatures:
    """The fitted feature pipeline's ``transform``, without scikit-learn's per-call overhead.

    ``Pipeline.transform`` validates its input at every step and runs the feature union through
    joblib; for one ticket that overhead costs more than the arithmetic. This object reads the
    fitted steps once and then does only the arithmetic scikit-learn does: count each view's terms,
    apply the sublinear TF, the IDF and the L2 norm, weight the view, and lay the views side by side.
    The result equals ``features.transform`` up to float32 rounding (tests check it).

    Parameters
    ----------
    features : Pipeline
        A pipeline built by :func:`build_features` and fitted.
    """

    def __init__(self, features: Pipeline) -> None:
        self.prepare: TextPreparer = features.named_steps["prepare"]
        self.tokenizer: JiebaTokenizer = features.named_steps["tokenize"]
        union: FeatureUnion = features.named_steps["views"]
        weights = union.transformer_weights or {}
        self.views: list[_CompiledView] = []
        offset = 0
        for name, vec in union.transformer_list:
            view = _CompiledView(vec, weights.get(name), offset)
            self.views.append(view)
            offset += view.width
        self.n_features = offset

    def texts(self, tickets: Iterable[TicketLike]) -> list[str]:
        """Prepared texts: each ticket normalised and masked exactly once."""
        return self.prepare.transform(tickets)

    def transform(self, tickets: Sequence[TicketLike]) -> sp.csr_matrix:
        """Feature rows of tickets, as ``features.transform`` computes them."""
        docs = self.tokenizer.transform(self.texts(tickets))
        return self.transform_docs(docs)

    def transform_docs(self, docs: Sequence[Doc]) -> sp.csr_matrix:
        """Feature rows of already tokenised documents."""
        rows_idx: list[np.ndarray] = []
        rows_val: list[np.ndarray] = []
        indptr = np.zeros(len(docs) + 1, dtype=np.int64)
        for i, doc in enumerate(docs):
            parts = [view.row(doc) for view in self.views]
            idx = np.concatenate([p[0] for p in parts])
            rows_idx.append(idx)
            rows_val.append(np.concatenate([p[1] for p in parts]))
            indptr[i + 1] = indptr[i] + len(idx)
        indices = np.concatenate(rows_idx) if rows_idx else np.zeros(0, dtype=np.int32)
        data = np.concatenate(rows_val) if rows_val else np.zeros(0, dtype=np.float32)
        return sp.csr_matrix(
            (data, indices.astype(np.int32, copy=False), indptr),
            shape=(len(docs), self.n_features),
        )


class _CompiledView:
    """One fitted TfidfVectorizer reduced to its analyzer, vocabulary and IDF."""

    def __init__(self, vec: TfidfVectorizer, weight: float | None, offset: int) -> None:
        if vec.norm not in ("l2", None) or not vec.use_idf:
            raise ValueError("only l2-normalised TF-IDF views can be compiled")
        self.analyzer = vec.build_analyzer()
        self.vocabulary: dict[str, int] = vec.vocabulary_
        self.char_keys: CharNgramIndex | None = None
        if vec.analyzer == "char_wb" and vec.input == "content" and vec.preprocessor is not None:
            self.analyzer = partial(
                char_wb_ngrams, preprocessor=vec.preprocessor, ngram_range=vec.ngram_range
            )
            if CharNgramIndex.supports(vec.ngram_range, self.vocabulary):
                self.char_keys = CharNgramIndex(self.vocabulary, vec.preprocessor, vec.ngram_range)
        self.idf = np.asarray(vec.idf_, dtype=vec.dtype)
        self.dtype = vec.dtype
        self.sublinear = vec.sublinear_tf
        self.l2 = vec.norm == "l2"
        self.weight = None if weight in (None, 1, 1.0) else weight
        self.offset = offset
        self.width = len(self.vocabulary)

    def row(self, doc: Any) -> tuple[np.ndarray, np.ndarray]:
        """Sorted global column indices and TF-IDF values of one document."""
        if self.char_keys is not None:
            idx, counts = self.char_keys.counts(doc)
        else:
            get = self.vocabulary.get
            terms = self.analyzer(doc)
            found = np.fromiter(map(get, terms, repeat(-1)), dtype=np.int32, count=len(terms))
            # np.unique sorts, as scikit-learn's sort_indices does, and counts repeated terms.
            idx, counts = np.unique(found[found >= 0], return_counts=True)
        if not len(idx):
            return idx, np.zeros(0, dtype=self.dtype)
        val = counts.astype(self.dtype)
        if self.sublinear:
            np.log(val, out=val)
            val += 1
        val *= self.idf[idx]
        if self.l2:
            # As scikit-learn's row normaliser: squares in the data's precision, summed in order in
            # double precision, division in double; so rows are bit-for-bit scikit-learn's.
            norm = math.sqrt(np.cumsum(val * val, dtype=np.float64)[-1])
            if norm > 0:
                val = (val / np.float64(norm)).astype(self.dtype)
        if self.weight is not None:
            val = (val * self.weight).astype(self.dtype, copy=False)
        return idx + self.offset, val


def char_wb_ngrams(
    doc: Any, preprocessor: Callable[[Any], str], ngram_range: tuple[int, int]
) -> list[str]:
    """scikit-learn's ``char_wb`` analyzer, with list slicing in place of a per-n-gram loop.

    Same n-grams in the same order: each whitespace-separated word is padded with one space on
    each side; a padded word no longer than ``n`` counts once, whole, and ends the larger sizes.
    """
    min_n, max_n = ngram_range
    out: list[str] = []
    extend = out.extend
    for w in preprocessor(doc).split():
        w = f" {w} "
        w_len = len(w)
        for n in range(min_n, max_n + 1):
            if w_len <= n:
                out.append(w)
                break
            extend([w[i : i + n] for i in range(w_len - n + 1)])
    return out


class CharNgramIndex:
    """Character n-grams of up to three characters looked up as integers, not as strings.

    Each n-gram is packed into one 64-bit key, 21 bits per character (code point + 1, so that a
    shorter n-gram never equals a longer one), and the vocabulary becomes a sorted key array. A
    document's n-grams are then found with a handful of array operations (``searchsorted``) instead
    of building and hashing a Python string per n-gram, which dominated the cost of a ticket. The
    n-grams are exactly :func:`char_wb_ngrams`'s: each whitespace-separated word padded with one
    space on each side, windows never crossing from one padded word into the next.
    """

    BITS = 21  # code points are below 0x110000 < 2**21

    @staticmethod
    def supports(ngram_range: tuple[int, int], vocabulary: Mapping[str, int]) -> bool:
        """Whether every n-gram fits a key: at most three characters, none of them NUL."""
        min_n, max_n = ngram_range
        return 1 <= min_n <= max_n <= 3 and "\x00" not in "".join(vocabulary)

    def __init__(
        self,
        vocabulary: Mapping[str, int],
        preprocessor: Callable[[Any], str],
        ngram_range: tuple[int, int],
    ) -> None:
        self.preprocessor = preprocessor
        self.min_n, self.max_n = ngram_range
        terms = np.array(list(vocabulary), dtype="U3")
        columns = np.fromiter(vocabulary.values(), dtype=np.int32, count=len(vocabulary))
        keys = self._pack(terms.view(np.uint32).reshape(len(terms), 3).astype(np.uint64))
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.columns_of_keys = columns[order]

    @classmethod
    def _pack(cls, chars: np.ndarray) -> np.ndarray:
        """Keys of rows of up to three code points (0 = no character)."""
        present = chars != 0
        shifted = np.where(present, chars + 1, 0)
        keys = shifted[:, 0].copy()
        for k in range(1, chars.shape[1]):
            keys |= shifted[:, k] << np.uint64(cls.BITS * k)
        return keys

    def counts(self, doc: Any) -> tuple[np.ndarray, np.ndarray]:
        """Sorted vocabulary columns of the document's known n-grams, and how often each occurs."""
        words = self.preprocessor(doc).split()
        if not words or not len(self.keys):
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        padded = " " + "  ".join(words) + " "
        raw = np.frombuffer(padded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        cps = raw.astype(np.uint64) + 1
        # Which padded word each position belongs to: a window is valid when it starts and ends in
        # the same one.
        word_of = np.repeat(np.arange(len(words)), [len(w) + 2 for w in words])
        grams = []
        length = len(cps)
        for n in range(self.min_n, min(self.max_n, length) + 1):
            starts = length - n + 1
            keys = cps[:starts].copy()
            for k in range(1, n):
                keys |= cps[k : k + starts] << np.uint64(self.BITS * k)
            if n > 1:
                keys = keys[word_of[:starts] == word_of[n - 1 : n - 1 + starts]]
            grams.append(keys)
        # Count first, then look each distinct n-gram up once, in ascending order (searchsorted
        # narrows its search from the previous hit).
        keys, counts = np.unique(np.concatenate(grams), return_counts=True)
        pos = np.searchsorted(self.keys, keys)
        pos[pos == len(self.keys)] = 0
        hit = self.keys[pos] == keys
        columns = self.columns_of_keys[pos[hit]]
        order = np.argsort(columns)
        return columns[order], counts[hit][order]


class CompiledHead:
    """A fitted sigmoid-calibrated linear head's ``predict_proba``, as plain array arithmetic.

    :class:`~sklearn.calibration.CalibratedClassifierCV` validates its input in every fold and every
    calibrator on every call, which for one ticket costs far more than its few hundred
    multiply-adds. This object keeps each fold's weights (stored feature-major, so a sparse row times
    them reads contiguous memory and nothing is copied), intercepts and sigmoid parameters, and
    computes the same probabilities scikit-learn does.

    Parameters
    ----------
    classifier : CalibratedClassifierCV
        Fitted, with ``method="sigmoid"`` and a linear estimator (``coef_``, ``intercept_``).

    Raises
    ------
    ValueError
        If the classifier is not of that kind (the caller then uses scikit-learn's own method).
    """

    def __init__(self, classifier: CalibratedClassifierCV) -> None:
        if classifier.method != "sigmoid":
            raise ValueError("only sigmoid calibration can be compiled")
        store_feature_major(classifier)  # in place, so the model keeps one copy of its weights
        self.classes = np.asarray(classifier.classes_)
        self.folds: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for calibrated in classifier.calibrated_classifiers_:
            est = calibrated.estimator
            positions = np.searchsorted(self.classes, est.classes_)
            if len(self.classes) == 2:
                positions = np.array([1])
            a = np.array([c.a_ for c in calibrated.calibrators], dtype=np.float64)
            b = np.array([c.b_ for c in calibrated.calibrators], dtype=np.float64)
            # np.asarray: a plain view of the (memory-mapped) weights, without memmap's per-call
            # subclass overhead.
            coef_t = np.asarray(est.coef_).T
            self.folds.append((coef_t, np.asarray(est.intercept_), a, b, positions))

    def class_weights(self, label: int, columns: np.ndarray) -> np.ndarray:
        """Mean linear weight over the folds of the features ``columns`` for class ``label``.

        For a binary head (one weight vector per fold, for the second class) the first class's
        weights are the negated ones.
        """
        out = np.zeros(len(columns), dtype=np.float64)
        for coef_t, _, _, _, positions in self.folds:
            if len(self.classes) == 2:
                out += coef_t[columns, 0] * (1.0 if label == 1 else -1.0)
            else:
                j = int(np.searchsorted(positions, label))
                if j < len(positions) and positions[j] == label:  # else: no weights in this fold
                    out += coef_t[columns, j]
        return out / len(self.folds)

    def predict_proba(self, X: sp.csr_matrix, extras: np.ndarray | None = None) -> np.ndarray:
        """Mean calibrated probabilities over the folds, columns in ``classes`` order.

        ``extras`` are dense columns that follow ``X``'s in the head's input (see
        :func:`with_extras`); they are multiplied without being stacked onto the sparse rows.
        """
        n, n_classes = X.shape[0], len(self.classes)
        width = X.shape[1]
        mean = np.zeros((n, n_classes))
        for coef_t, intercept, a, b, positions in self.folds:
            if n == 1:
                # One ticket (the dispatcher's case): gather the rows of its features' weights;
                # numpy's overhead for this is a fraction of a sparse product's.
                scores = (X.data @ coef_t[X.indices])[np.newaxis] + intercept
            else:
                # (n, n_pred); a slice of rows of coef_t is contiguous.
                scores = X @ coef_t[:width] + intercept
            if extras is not None:
                scores += extras @ coef_t[width:]
            proba = np.zeros((n, n_classes))
            proba[:, positions] = expit(-(a * scores + b))
            if n_classes == 2:
                proba[:, 0] = 1.0 - proba[:, 1]
            else:
                denominator = proba.sum(axis=1)[:, np.newaxis]
                uniform = np.full_like(proba, 1 / n_classes)
                proba = np.divide(proba, denominator, out=uniform, where=denominator != 0)
            proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
            mean += proba
        return mean / len(self.folds)


def store_feature_major(classifier: CalibratedClassifierCV) -> None:
    """Store each fold's weights feature-major (Fortran order), in place.

    The values do not change. A sparse row times the transposed weights then reads contiguous
    memory, and scikit-learn's own ``decision_function`` works the same with either layout.
    """
    for calibrated in getattr(classifier, "calibrated_classifiers_", []):
        est = calibrated.estimator
        coef = getattr(est, "coef_", None)
        if isinstance(coef, np.ndarray) and coef.ndim == 2 and not coef.flags.f_contiguous:
            est.coef_ = np.asfortranarray(coef)


class LatentView:
    """A latent semantic view of the TF-IDF features: a truncated SVD, as dense unit-length rows.

    Fitted once on the training tickets (labelled and unlabelled) with scikit-learn's
    :class:`~sklearn.decomposition.TruncatedSVD`. Only features seen in at least ``min_df`` tickets
    take part, so the stored components stay a fraction of the vocabulary's size; a ticket's other
    features are simply not projected. The projection is one sparse × dense product, so a ticket
    costs its number of features times the number of components.

    Parameters
    ----------
    columns : ndarray of int
        The feature columns that take part, ascending.
    components : ndarray of shape (len(columns), k)
        The SVD's components, feature-major (a sparse row times them reads contiguous memory).
    n_features : int
        Width of the TF-IDF features.
    weight : float
        Scale of the unit-length output rows.
    """

    def __init__(
        self, columns: np.ndarray, components: np.ndarray, n_features: int, weight: float
    ) -> None:
        self.columns = np.asarray(columns, dtype=np.int32)
        self.components = np.ascontiguousarray(components, dtype=np.float32)
        self.n_features = int(n_features)
        self.weight = float(weight)
        self._position: np.ndarray | None = None

    @classmethod
    def fit(
        cls, X: sp.csr_matrix, n_components: int, min_df: int, weight: float, seed: int
    ) -> LatentView | None:
        """Fit on TF-IDF rows; ``None`` when the data are too small for two components."""
        from sklearn.decomposition import TruncatedSVD

        X = sp.csr_matrix(X)
        df = np.bincount(X.indices[X.data != 0], minlength=X.shape[1])  # explicit zeros don't count
        columns = np.flatnonzero(df >= min_df)
        k = min(n_components, len(columns) - 1, X.shape[0] - 1)
        if k < 2:
            return None
        svd = TruncatedSVD(n_components=k, algorithm="randomized", random_state=seed)
        svd.fit(X[:, columns])
        return cls(columns, svd.components_.T, X.shape[1], weight)

    @property
    def width(self) -> int:
        return self.components.shape[1]

    def transform(self, X: sp.csr_matrix) -> np.ndarray:
        """Latent rows of TF-IDF rows: shape ``(n, width)``, float32, each of length ``weight``."""
        if self._position is None:
            position = np.full(self.n_features, -1, dtype=np.int32)
            position[self.columns] = np.arange(len(self.columns), dtype=np.int32)
            self._position = position
        pos = self._position[X.indices]
        keep = pos >= 0
        indptr = np.concatenate([[0], np.cumsum(keep)])[X.indptr]
        sub = sp.csr_matrix(
            (X.data[keep], pos[keep], indptr), shape=(X.shape[0], len(self.columns))
        )
        Z = np.asarray(sub @ self.components, dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", Z, Z, dtype=np.float64))
        norms[norms == 0] = 1.0  # a ticket with no known feature stays all zeros
        Z /= (norms / self.weight)[:, np.newaxis].astype(np.float32)
        return Z

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_position"] = None  # derivable from the columns
        return state


def with_extras(X: sp.spmatrix, extras: np.ndarray | None) -> sp.csr_matrix:
    """The TF-IDF rows with dense extra columns (latent view, stacked probabilities) after them."""
    if extras is None or extras.shape[1] == 0:
        return sp.csr_matrix(X)
    return sp.csr_matrix(sp.hstack([X, sp.csr_matrix(extras)], format="csr", dtype=np.float32))
