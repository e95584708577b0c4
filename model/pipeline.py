"""The one place that builds features and classifiers, so training and serving cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from model.config import TrainingConfig
from model.text import combine
from model.tokenizer import JiebaTokenizer, doc_text, doc_tokens

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
            ("tokenize", JiebaTokenizer(userdict=userdict, stopwords=stopwords)),
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
    )
