"""The fitted model's prediction path as plain array arithmetic, importable without scikit-learn.

Training fits scikit-learn objects (:mod:`model.pipeline`); :mod:`model.pipeline`'s ``compile_*``
functions read their fitted numbers into the classes here once. Serving a model needs only these
classes, numpy and scipy: a model directory's serving file (:mod:`model.artifact`) pickles them
alone, so that a server never imports scikit-learn, whose import took about 1.8 s of a cold start
(benchmarks/README.md, eighth round).
"""

from __future__ import annotations

import copy
import math
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from itertools import chain, repeat
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax

from model.text import Script, clean, clean_and_show, join_cleaned
from model.tokenizer import Doc, Segmenter

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


# Documents featurised together by CompiledFeatures.transform_docs.
_PIECE = 256


class CompiledFeatures:
    """The fitted feature pipeline's ``transform``, without scikit-learn's per-call overhead.

    ``Pipeline.transform`` validates its input at every step and runs the feature union through
    joblib; for one ticket that overhead costs more than the arithmetic. This object reads the
    fitted steps once and then does only the arithmetic scikit-learn does: count each view's terms,
    apply the sublinear TF, the IDF and the L2 norm, weight the view, and lay the views side by side.
    The result equals ``features.transform`` up to float32 rounding (tests check it).

    Built by :func:`model.pipeline.compile_features` from a fitted feature pipeline.

    Parameters
    ----------
    title_repeat : int
        How many times a ticket's title is written before its text (the pipeline's ``prepare``).
    segmenter : Segmenter
        The fitted tokenizer's segmenter.
    views : list of CompiledView
        The views in the feature union's order, each with its column offset.
    script : {"as_written", "simplified"}, default "as_written"
        The script the model reads (:func:`model.text.to_script`).
    """

    def __init__(
        self,
        title_repeat: int,
        segmenter: Segmenter,
        views: list[CompiledView],
        script: Script = "as_written",
    ) -> None:
        self.title_repeat = title_repeat
        self.script = script
        self.segmenter = segmenter
        self.views = views
        # Word-view columns come first when there is a word view: evidence shows only those.
        self.word_width = views[0].width if views and views[0].name == "word" else 0
        self.n_features = sum(view.width for view in views)

    def texts(self, tickets: Iterable[TicketLike]) -> list[str]:
        """Prepared texts: each ticket normalised and masked exactly once."""
        return self.joined(self.cleaned(tickets))

    def cleaned(self, tickets: Iterable[TicketLike]) -> list[tuple[str, str]]:
        """Each ticket's title and text cleaned (:func:`model.text.clean` in the model's script):
        the pieces :meth:`texts` joins, for a caller that also shows them (``/v1/route``'s
        ``masked``)."""
        return [
            (clean(title, self.script), clean(text, self.script))
            for title, text in map(as_title_text, tickets)
        ]

    def cleaned_and_shown(
        self, tickets: Iterable[TicketLike]
    ) -> list[tuple[tuple[str, str], tuple[str, str]]]:
        """Each ticket's title and text cleaned (:meth:`cleaned`), and as typed with only their
        personal data masked (:func:`model.text.clean_and_show`): both from one masking pass, for
        a caller that shows the ticket (``/v1/route``'s ``masked``)."""
        out = []
        for title, text in map(as_title_text, tickets):
            title_c, title_s = clean_and_show(title, self.script)
            text_c, text_s = clean_and_show(text, self.script)
            out.append(((title_c, text_c), (title_s, text_s)))
        return out

    def joined(self, cleaned: Iterable[tuple[str, str]]) -> list[str]:
        """Prepared texts of cleaned titles and texts (:meth:`cleaned`), as :meth:`texts` gives."""
        return [join_cleaned(title, text, self.title_repeat) for title, text in cleaned]

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("script", "as_written")  # pickled before the setting: read as written
        self.__dict__.update(state)

    def transform(self, tickets: Sequence[TicketLike]) -> sp.csr_matrix:
        """Feature rows of tickets, as ``features.transform`` computes them."""
        return self.transform_texts(self.texts(tickets))

    def transform_texts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Feature rows of prepared texts (:meth:`texts`)."""
        return self.transform_docs(self.segmenter.transform(texts))

    def transform_docs(self, docs: Sequence[Doc]) -> sp.csr_matrix:
        """Feature rows of already tokenised documents."""
        if len(docs) > 1:
            # In pieces whose arrays stay in the CPU's caches (measured: 256 beats 2,000 by 15 %).
            pieces = [
                self._transform_many(docs[start : start + _PIECE])
                for start in range(0, len(docs), _PIECE)
            ]
            return pieces[0] if len(pieces) == 1 else sp.vstack(pieces, format="csr")
        if len(docs) == 1:
            return self._one_row(docs[0])
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

    def _one_row(self, doc: Doc) -> sp.csr_matrix:
        """:meth:`transform_docs` of one document (the dispatcher's ticket), without scipy's checks.

        ``csr_matrix((data, indices, indptr))`` checks the arrays and picks their index type by
        scanning them, 15–35 µs a ticket (measured, eighteenth round) for a row built here, whose
        columns are known sorted and distinct: each view's are, and the views' ranges follow one
        another. So a row of scipy's own making for this width is copied (a shallow copy, no
        constructor) and given the arrays, with the index type scipy chose for it, and marked
        canonical, which also spares :func:`model.router.without_known_terms` its scan.
        """
        parts = [view.row(doc) for view in self.views]
        row = copy.copy(_empty_row(self.n_features))
        index_dtype = row.indices.dtype
        row.data = np.concatenate([p[1] for p in parts])
        row.indices = np.concatenate([p[0] for p in parts]).astype(index_dtype, copy=False)
        row.indptr = np.array([0, len(row.indices)], dtype=index_dtype)
        row.has_canonical_format = True  # sorted, no duplicates (and so has_sorted_indices)
        return row

    def _transform_many(self, docs: Sequence[Doc]) -> sp.csr_matrix:
        """:meth:`transform_docs` for many documents: each view's arithmetic runs once per chunk.

        Per document, each view cost a dozen small array operations (measured: the largest cost
        of batch labelling); here every view finds the terms of all documents at once
        (:meth:`CompiledView.entries`) and weights them in one pass. Same values, bit for bit.
        """
        n = len(docs)
        doc_parts, col_parts, val_parts = [], [], []
        for view in self.views:
            doc_of, cols, vals = view.weighted(*view.entries(docs), n)
            doc_parts.append(doc_of)
            col_parts.append(cols + view.offset)
            val_parts.append(vals)
        doc_of = np.concatenate(doc_parts)
        # Each view's entries are sorted by document, then column; a stable sort by document keeps
        # that order within a document, view after view, which is the feature union's order.
        order = np.argsort(doc_of, kind="stable")
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(doc_of, minlength=n), out=indptr[1:])
        return sp.csr_matrix(
            (
                np.concatenate(val_parts)[order],
                np.concatenate(col_parts)[order].astype(np.int32, copy=False),
                indptr,
            ),
            shape=(n, self.n_features),
        )


@cache
def _empty_row(width: int) -> sp.csr_matrix:
    """An empty one-row matrix of ``width`` columns, as scipy builds it: the template that
    :meth:`CompiledFeatures._one_row` copies (cached per width, never pickled)."""
    return sp.csr_matrix((1, width), dtype=np.float32)


class CompiledView:
    """One fitted TF-IDF view reduced to its analyzer, vocabulary and IDF.

    Built by :func:`model.pipeline.compile_view` from a fitted ``TfidfVectorizer``.

    Parameters
    ----------
    name : str
        The view's name in the feature union (``word``, ``char``).
    analyzer : callable
        A document's terms, in the vectorizer's order (:func:`word_ngrams`, :func:`char_wb_ngrams`).
    vocabulary : dict of str to int
        Term → column within the view.
    idf : ndarray
        Each column's IDF, in the features' dtype.
    sublinear, l2 : bool
        ``1 + log(tf)`` in place of the count; rows scaled to unit length.
    weight : float or None
        The view's weight in the union (``None`` for 1).
    offset : int
        The view's first column in the union.
    char_keys : CharNgramIndex, optional
        The integer look-up of a character n-gram view's terms.
    """

    def __init__(
        self,
        name: str,
        analyzer: Callable[[Any], Sequence[str]],
        vocabulary: dict[str, int],
        idf: np.ndarray,
        *,
        sublinear: bool,
        l2: bool,
        weight: float | None,
        offset: int,
        char_keys: CharNgramIndex | None = None,
    ) -> None:
        self.name = name
        self.analyzer = analyzer
        self.vocabulary = vocabulary
        self.char_keys = char_keys
        self.idf = idf
        self.dtype = idf.dtype
        self.sublinear = sublinear
        self.l2 = l2
        self.weight = None if weight in (None, 1, 1.0) else weight
        self.offset = offset
        self.width = len(vocabulary)

    def names(self) -> np.ndarray:
        """The view's terms, in column order (``get_feature_names_out``)."""
        out = np.empty(self.width, dtype=object)
        out[np.fromiter(self.vocabulary.values(), dtype=np.int64, count=self.width)] = list(
            self.vocabulary
        )
        return out

    def row(self, doc: Any) -> tuple[np.ndarray, np.ndarray]:
        """Sorted global column indices and TF-IDF values of one document."""
        if self.char_keys is not None:
            idx, counts = self.char_keys.counts(doc)
        else:
            # Counted by Counter's C loop, then sorted as scikit-learn's sort_indices does: for one
            # document np.unique costs several times more (measured: 32 against 8 µs for 20 words).
            found: Counter[int | None] = Counter(map(self.vocabulary.get, self.analyzer(doc)))
            columns = sorted(c for c in found if c is not None)  # None: not in the vocabulary
            idx = np.array(columns, dtype=np.int32)
            counts = np.fromiter(
                map(found.__getitem__, columns), dtype=np.int64, count=len(columns)
            )
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

    def entries(self, docs: Sequence[Doc]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Known terms of many documents: (document, column, count), sorted by document and column."""
        if self.char_keys is not None:
            return self.char_keys.entries(docs)
        get = self.vocabulary.get
        terms = [self.analyzer(doc) for doc in docs]
        lengths = np.fromiter(map(len, terms), dtype=np.int64, count=len(terms))
        flat = np.fromiter(
            map(get, chain.from_iterable(terms), repeat(-1)), dtype=np.int64, count=lengths.sum()
        )
        doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        known = flat >= 0
        return _count_pairs(doc_of[known], flat[known], self.width)

    def weighted(
        self, doc_of: np.ndarray, cols: np.ndarray, counts: np.ndarray, n_docs: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`row`'s arithmetic on the :meth:`entries` of many documents at once."""
        val = counts.astype(self.dtype)
        if self.sublinear:
            np.log(val, out=val)
            val += 1
        val *= self.idf[cols]
        if self.l2 and len(val):
            # Each row's sum of squares in order, in double precision, as in row(): a CSR matrix
            # times a vector of ones adds each row's entries one after the other (numpy's own
            # reductions add pairwise, which rounds differently).
            indptr = np.zeros(n_docs + 1, dtype=np.int64)
            np.cumsum(np.bincount(doc_of, minlength=n_docs), out=indptr[1:])
            squares = sp.csr_matrix(
                ((val * val).astype(np.float64), cols, indptr), shape=(n_docs, self.width)
            )
            norms = np.sqrt(squares @ np.ones(self.width))[doc_of]
            nonzero = norms > 0
            val[nonzero] = (val[nonzero] / norms[nonzero]).astype(self.dtype)
        if self.weight is not None:
            val = (val * self.weight).astype(self.dtype, copy=False)
        return doc_of, cols, val


def word_ngrams(
    doc: Any, tokenizer: Callable[[Any], Sequence[str]], ngram_range: tuple[int, int]
) -> list[str]:
    """scikit-learn's word analyzer for a vectorizer given a ``tokenizer`` and nothing else.

    The tokens, then each run of ``n`` consecutive tokens joined by a space, for ``n`` from the
    range's low end to its high end: the terms of ``TfidfVectorizer(tokenizer=...,
    lowercase=False, ngram_range=...)``'s ``build_analyzer()``, in its order (tests check).
    """
    tokens = tokenizer(doc)
    min_n, max_n = ngram_range
    out: list[str] = list(tokens) if min_n == 1 else []
    join = " ".join
    for n in range(max(min_n, 2), min(max_n, len(tokens)) + 1):
        out.extend([join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)])
    return out


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


def _count_pairs(
    doc_of: np.ndarray, cols: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (document, column) pairs in ascending order, and how often each occurs."""
    pairs, counts = np.unique(doc_of * width + cols, return_counts=True)
    return pairs // width, pairs % width, counts


class CharNgramIndex:
    """Character n-grams of up to three characters looked up as integers, not as strings.

    Every character of the vocabulary gets a small id, in code-point order (0 stands for "no
    character", and one id above all others for a character the vocabulary never uses), and an
    n-gram is packed into one integer key with its first character in the highest bits. Keys then
    sort as the n-grams' strings do; a key's position among the vocabulary's sorted keys gives its
    column through ``columns_of_keys`` (in a vocabulary numbered as scikit-learn numbers it, which
    models saved before :func:`number_by_frequency` keep, the position is the column itself, and the
    columns come out of the look-up already sorted). Its n-grams are found with a handful of array
    operations (``unique``, ``searchsorted``) instead of building and hashing a Python string per
    n-gram, which dominated the cost of a ticket. The n-grams are exactly :func:`char_wb_ngrams`'s:
    each whitespace-separated word padded with one space on each side, windows never crossing from
    one padded word into the next.
    """

    CHARS = 3  # characters per key at most

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
        terms = np.array(list(vocabulary), dtype="U3")  # shorter terms are padded with NUL
        chars = terms.view(np.uint32).reshape(len(terms), self.CHARS)
        alphabet = np.unique(chars[chars != 0])
        unknown = len(alphabet) + 1
        self.bits = unknown.bit_length()
        # Code point -> id; 2 MB for any vocabulary that uses fewer than 65,535 characters.
        self.char_ids = np.full(
            0x110000, unknown, dtype=np.uint16 if unknown < 2**16 else np.uint32
        )
        self.char_ids[alphabet] = np.arange(1, unknown)
        ids = np.where(chars != 0, self.char_ids[chars], 0).astype(np.uint64)
        keys = ids[:, 0] << np.uint64(2 * self.bits)
        keys |= ids[:, 1] << np.uint64(self.bits)
        keys |= ids[:, 2]
        columns = np.fromiter(vocabulary.values(), dtype=np.int32, count=len(vocabulary))
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.columns_of_keys = columns[order]
        # True for a vocabulary numbered alphabetically, as scikit-learn fits it (models saved
        # before number_by_frequency); otherwise, as in every model trained since, the look-up goes
        # through columns_of_keys and sorts afterwards.
        self.ranked = bool(np.array_equal(self.columns_of_keys, np.arange(len(columns))))
        # Single characters need no search: a character's id indexes its column (-1: none).
        self.unigram_columns = np.full(unknown + 1, -1, dtype=np.int64)
        single = (self.keys & np.uint64(2 ** (2 * self.bits) - 1)) == 0
        self.unigram_columns[(self.keys[single] >> np.uint64(2 * self.bits)).astype(np.int64)] = (
            self.columns_of_keys[single]
        )

    def _ids(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Character ids of the padded words laid end to end, and each position's word."""
        padded = " " + "  ".join(words) + " "
        cps = np.frombuffer(padded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        word_of = np.repeat(np.arange(len(words)), [len(w) + 2 for w in words])
        return self.char_ids[cps].astype(np.uint64), word_of

    def _windows(
        self, ids: np.ndarray, word_of: np.ndarray, min_n: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """For each n-gram length from ``min_n`` (default: the index's), the keys of every window
        and which windows are valid.

        A window is valid when it starts and ends in the same padded word; ``None`` means all are
        (single characters). Callers filter, so :meth:`entries` can filter positions alongside.
        """
        length = len(ids)
        for n in range(min_n or self.min_n, min(self.max_n, length) + 1):
            starts = length - n + 1
            keys = ids[:starts] << np.uint64(2 * self.bits)
            for k in range(1, n):
                keys |= ids[k : k + starts] << np.uint64((2 - k) * self.bits)
            yield keys, (word_of[:starts] == word_of[n - 1 : n - 1 + starts] if n > 1 else None)

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where sorted ``keys`` sit among the vocabulary's keys, and which of them are there."""
        pos = np.searchsorted(self.keys, keys)
        pos[pos == len(self.keys)] = 0
        return pos, self.keys[pos] == keys

    def counts(self, doc: Any) -> tuple[np.ndarray, np.ndarray]:
        """Sorted vocabulary columns of the document's known n-grams, and how often each occurs."""
        words = self.preprocessor(doc).split()
        if not words or not len(self.keys):
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        grams = [
            keys if valid is None else keys[valid]
            for keys, valid in self._windows(*self._ids(words))
        ]
        # Count first, then look each distinct n-gram up once, in ascending order (searchsorted
        # narrows its search from the previous hit).
        keys, counts = np.unique(np.concatenate(grams), return_counts=True)
        pos, hit = self._find(keys)
        if self.ranked:
            return pos[hit].astype(np.int32), counts[hit]
        columns = self.columns_of_keys[pos[hit]]
        order = np.argsort(columns)
        return columns[order], counts[hit][order]

    def entries(self, docs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`counts` of many documents at once: (document, column, count), sorted.

        The documents' padded words are laid end to end; a window never crosses from one padded
        word into the next, so never from one document into the next, and each distinct n-gram of
        the whole chunk is looked up once. (Packing the document's number above each key instead,
        so that one sort would count and order everything, was 10 % slower: it looks up every
        document's n-grams separately.)
        """
        words_of = [self.preprocessor(doc).split() for doc in docs]
        words = list(chain.from_iterable(words_of))
        empty = np.zeros(0, dtype=np.int64)
        if not words or not len(self.keys):
            return empty, empty, empty
        ids, word_of = self._ids(words)
        doc_of_word = np.repeat(
            np.arange(len(docs)), np.fromiter(map(len, words_of), dtype=np.int64, count=len(docs))
        )
        grams, starts_of, found = [], [], []
        if self.min_n == 1:  # single characters, all of them: looked up directly by id
            found.append(self.unigram_columns[ids])
            starts_of.append(np.arange(len(ids)))
        for keys, valid in self._windows(ids, word_of, min_n=max(2, self.min_n)):
            assert valid is not None  # only single characters are all valid
            grams.append(keys[valid])
            starts_of.append(np.flatnonzero(valid))
        if grams:
            # Longer n-grams: each distinct one is searched for once (a third fewer keys to sort
            # than with the single characters among them).
            distinct, inverse = np.unique(np.concatenate(grams), return_inverse=True)
            pos, hit = self._find(distinct)
            column_of = pos if self.ranked else self.columns_of_keys[pos]
            found.append(np.where(hit, column_of, -1)[inverse])
        columns = np.concatenate(found)
        doc_of = doc_of_word[word_of[np.concatenate(starts_of)]]
        known = columns >= 0
        return _count_pairs(doc_of[known], columns[known].astype(np.int64), len(self.keys))


class CompiledHeads:
    """Fitted sigmoid-calibrated linear heads' ``predict_proba``, as plain array arithmetic.

    :class:`~sklearn.calibration.CalibratedClassifierCV` validates its input in every fold and every
    calibrator on every call, which for one ticket costs far more than its few hundred
    multiply-adds. This object reads the weights of all heads and folds from one matrix
    (:func:`model.pipeline.fuse_weights`) with each fold's intercepts and sigmoid parameters, and
    computes the probabilities scikit-learn computes; a head blended with a multinomial regression
    (:class:`model.pipeline.BlendedClassifier`) has its weights beside its folds' and is mixed in
    as scikit-learn mixes it. :func:`model.pipeline.compile_heads` builds it from the fitted
    classifiers.

    Parameters
    ----------
    weights : ndarray
        The fused weights: one row per input column, one column per (head, fold, class).
    width : int
        Number of TF-IDF columns; a head's extra columns (see :func:`with_extras`) follow them.
    classes : dict of str to ndarray
        Each head's labels, in its classifier's order.
    folds : dict of str to list of Fold
        Each head's calibration folds.
    multinomials : dict of str to Multinomial, optional
        The multinomial regression blended into a head's probabilities, for the heads that have one
        (:class:`model.pipeline.BlendedClassifier`).
    """

    def __init__(
        self,
        weights: np.ndarray,
        width: int,
        classes: dict[str, np.ndarray],
        folds: dict[str, list[Fold]],
        multinomials: dict[str, Multinomial] | None = None,
    ) -> None:
        # np.asarray: a plain view of the (memory-mapped) weights, without memmap's per-call
        # subclass overhead.
        self.weights = np.asarray(weights)
        self.width = width
        self.classes = classes
        self.folds = folds
        self.multinomials = multinomials or {}

        # Heads whose folds each know every class and sit side by side in the weights (the usual
        # case) are computed for all folds at once: a handful of array operations instead of a
        # handful per fold.
        self.whole: dict[str, _AllFolds] = {}
        for name, head_folds in self.folds.items():
            n_classes = len(self.classes[name])
            if n_classes > 2 and all(
                np.array_equal(f.positions, np.arange(n_classes))
                and f.start == head_folds[0].start + k * n_classes
                for k, f in enumerate(head_folds)
            ):
                self.whole[name] = _AllFolds(
                    head_folds[0].start,
                    head_folds[-1].stop,
                    len(head_folds),
                    np.concatenate([f.intercept for f in head_folds]),
                    np.concatenate([f.a for f in head_folds]),
                    np.concatenate([f.b for f in head_folds]),
                )

    def __contains__(self, name: str) -> bool:
        return name in self.folds

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_extras_of_class", None)  # derived from the weights (class_extras)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled from a serving file, the weights are a memmap: as in __init__, keep a plain view.
        state["weights"] = np.asarray(state["weights"])
        state.setdefault("multinomials", {})  # models saved before the blend had none
        self.__dict__.update(state)

    def gather(self, X: sp.csr_matrix) -> np.ndarray:
        """The weight rows of one ticket's features: shape ``(X.nnz, all folds' classes)``."""
        return self.weights[X.indices]

    def scores(self, X: sp.csr_matrix, gathered: np.ndarray | None = None) -> np.ndarray:
        """Every fold's linear scores from the TF-IDF rows alone: shape ``(n, all folds' classes)``.

        With ``gathered`` (:meth:`gather` of a one-row ``X``), no further memory is read.
        """
        if gathered is not None:
            # Summed feature by feature, as the sparse product below sums each row: a BLAS dot
            # product sums in another order, and one ticket's scores then differed from the same
            # ticket's in a batch in the fourth decimal of a shown probability.
            return rowwise_product(X.data[np.newaxis], gathered)
        # A slice of rows of a C-ordered matrix is contiguous: one sparse × dense product, taken
        # column by column: each feature's weight row is then read once for all the tickets that
        # have it, in ascending order, instead of once per ticket at scattered places (measured:
        # 38 against 84 µs a ticket for chunks of 1,000 real tickets). Each ticket's sums still
        # run over its features in ascending order, so the floats are the same (tests check).
        return np.asarray(X.tocsc() @ self.weights[: self.width])

    def predict_proba(
        self, name: str, scores: np.ndarray, extras: np.ndarray | None = None
    ) -> np.ndarray:
        """Head ``name``'s probabilities, columns in class order.

        The mean of its calibrated folds' probabilities, blended with its multinomial regression's
        where it has one. ``scores`` are :meth:`scores`; ``extras`` the dense columns that follow
        the TF-IDF ones in this head's input, multiplied here without being stacked onto the
        sparse rows.
        """
        calibrated = self._calibrated_proba(name, scores, extras)
        multinomial = self.multinomials.get(name)
        if multinomial is None:
            return calibrated
        s = self._linear(scores, extras, multinomial.start, multinomial.stop, multinomial.intercept)
        w = multinomial.weight
        return (1.0 - w) * calibrated + w * softmax(s, axis=1)

    def _linear(
        self,
        scores: np.ndarray,
        extras: np.ndarray | None,
        start: int,
        stop: int,
        intercept: np.ndarray,
    ) -> np.ndarray:
        """Linear scores of the weight columns ``[start, stop)``: TF-IDF part, intercept, extras."""
        s = scores[:, start:stop] + intercept
        if extras is not None:
            rows = slice(self.width, self.width + extras.shape[1])
            s += rowwise_product(extras, self.weights[rows, start:stop])
        return s

    def _calibrated_proba(
        self, name: str, scores: np.ndarray, extras: np.ndarray | None
    ) -> np.ndarray:
        n, n_classes = scores.shape[0], len(self.classes[name])
        whole = self.whole.get(name)
        if whole is not None:
            s = self._linear(scores, extras, whole.start, whole.stop, whole.intercept)
            # -(a * s + b) as (-a) * s + (-b): negating is exact and rounding is symmetric, so
            # the same floats with one array pass fewer; a few array calls are what one ticket's
            # probabilities cost, not the arithmetic.
            z = whole.neg_a * s + whole.neg_b
            p = expit(z, out=z).reshape(n, whole.folds, n_classes)
            denominator = p.sum(axis=2, keepdims=True)
            if denominator.all():  # as the divide below where every fold's row has a sum
                p /= denominator
            else:
                p = np.divide(
                    p, denominator, out=np.full_like(p, 1 / n_classes), where=denominator != 0
                )
            if p.max() > 1.0:  # scikit-learn's clip of rounding above 1; rows of a sum never are
                p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0
            return p.sum(axis=1) / whole.folds
        mean = np.zeros((n, n_classes))
        for fold in self.folds[name]:
            s = self._linear(scores, extras, fold.start, fold.stop, fold.intercept)
            proba = np.zeros((n, n_classes))
            proba[:, fold.positions] = expit(-(fold.a * s + fold.b))
            if n_classes == 2:
                proba[:, 0] = 1.0 - proba[:, 1]
            else:
                denominator = proba.sum(axis=1)[:, np.newaxis]
                uniform = np.full_like(proba, 1 / n_classes)
                proba = np.divide(proba, denominator, out=uniform, where=denominator != 0)
            proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
            mean += proba
        return mean / len(self.folds[name])

    def class_weights(self, name: str, label: int, rows: np.ndarray) -> np.ndarray:
        """Head ``name``'s linear weight for class ``label``, as its probabilities mix them.

        The mean over the calibration folds, and for a blended head that mean and the multinomial
        regression's weights in the blend's proportions. ``rows`` are rows of the fused weights
        (``weights[columns]``, or part of :meth:`gather`). For a binary head (one weight vector per
        fold, for the second class) the first class's weights are the negated ones.
        """
        out = self._calibrated_weights(name, label, rows)
        multinomial = self.multinomials.get(name)
        if multinomial is None:
            return out
        w = multinomial.weight
        return (1.0 - w) * out + w * rows[:, multinomial.start + label].astype(np.float64)

    def class_intercept(self, name: str, label: int) -> float:
        """Head ``name``'s intercept for class ``label``, mixed as :meth:`class_weights` mixes
        the weights: with them, the linear score of the class that the head's probabilities read
        (the mean of the folds' decision functions, blended where the head is)."""
        n_classes = len(self.classes[name])
        whole = self.whole.get(name)
        if whole is not None:  # every fold's intercepts side by side, in a plain array
            out = float(whole.intercept[label::n_classes].sum()) / whole.folds
        else:
            total = 0.0
            for fold in self.folds[name]:
                if n_classes == 2:  # one intercept, for the second class (see class_weights)
                    total += float(fold.intercept[0]) * (1.0 if label == 1 else -1.0)
                else:
                    j = int(np.searchsorted(fold.positions, label))
                    if j < len(fold.positions) and fold.positions[j] == label:  # else: not in it
                        total += float(fold.intercept[j])
            out = total / len(self.folds[name])
        multinomial = self.multinomials.get(name)
        if multinomial is None:
            return out
        w = multinomial.weight
        return (1.0 - w) * out + w * float(multinomial.intercept[label])

    def class_extras(self, name: str, label: int, n: int) -> tuple[np.ndarray, float]:
        """:meth:`class_weights` of the rows of the ``n`` extra columns (those after the TF-IDF
        ones) and :meth:`class_intercept`, for head ``name``'s class ``label``.

        The same for every ticket, so each pair is computed once per process: with them computed
        again for each ticket, a head's sources cost about a third more (twentieth round).
        """
        cache: dict[tuple[str, int, int], tuple[np.ndarray, float]]
        cache = self.__dict__.setdefault("_extras_of_class", {})
        found = cache.get((name, label, n))
        if found is None:
            rows = self.weights[self.width : self.width + n]
            weights = self.class_weights(name, label, rows)
            weights.flags.writeable = False  # shared by every ticket's sources
            found = cache[(name, label, n)] = (weights, self.class_intercept(name, label))
        return found

    def _calibrated_weights(self, name: str, label: int, rows: np.ndarray) -> np.ndarray:
        whole = self.whole.get(name)
        if whole is not None:
            n_classes = len(self.classes[name])
            picked = rows[:, whole.start + label : whole.stop : n_classes]
            return picked.sum(axis=1, dtype=np.float64) / whole.folds
        out = np.zeros(len(rows), dtype=np.float64)
        binary = len(self.classes[name]) == 2
        folds = self.folds[name]
        for fold in folds:
            if binary:
                out += rows[:, fold.start] * (1.0 if label == 1 else -1.0)
            else:
                j = int(np.searchsorted(fold.positions, label))
                if j < len(fold.positions) and fold.positions[j] == label:  # else: not in this fold
                    out += rows[:, fold.start + j]
        return out / len(folds)


def rowwise_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``, each entry summed over ``k`` in ascending order, however many rows ``a`` has.

    That is the order in which scipy's sparse × dense products sum a row, so one ticket's scores,
    latent row and extra columns are the same floats as its row of a batch (tests check). A BLAS
    product sums in another order, and takes another kernel for one row than for many: one
    ticket's shown probability then differed from the same ticket's in batch labelling, in the
    fourth decimal on 3 of 600 real tickets. einsum's own loop costs about 3 µs a ticket more in
    a batch.
    """
    return np.einsum("ij,jk->ik", a, b)


@dataclass(frozen=True)
class _AllFolds:
    """All folds of a compiled head at once: their columns, and their intercepts and sigmoids."""

    start: int
    stop: int
    folds: int
    intercept: np.ndarray
    a: np.ndarray
    b: np.ndarray

    @cached_property
    def neg_a(self) -> np.ndarray:
        """``-a``: the sigmoid reads ``-(a * s + b)``, computed as ``-a * s + -b``."""
        return -self.a

    @cached_property
    def neg_b(self) -> np.ndarray:
        """``-b`` (see :attr:`neg_a`)."""
        return -self.b


@dataclass(frozen=True)
class Multinomial:
    """The multinomial regression of a blended head: its columns, intercepts and share."""

    start: int
    stop: int
    intercept: np.ndarray
    weight: float


@dataclass(frozen=True)
class Fold:
    """One calibration fold of a compiled head: its columns of the fused weights and its sigmoid.

    ``positions``: the head's class of each of the fold's columns (a fold may lack a rare class).
    """

    start: int
    stop: int
    intercept: np.ndarray
    a: np.ndarray
    b: np.ndarray
    positions: np.ndarray


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
        # np.asarray: a plain view of the components, memory-mapped once loaded (indexing a memmap
        # is a Python call).
        components = np.asarray(self.components)
        pos = self._position[X.indices]
        keep = pos >= 0
        if X.shape[0] == 1:
            # One ticket: its components' rows summed in the sparse product's order (the same
            # floats, tests check), without building a sparse matrix (measured: 38 against 120 µs
            # at 50 characters).
            Z = rowwise_product(X.data[keep][np.newaxis], components[pos[keep]])
        else:
            indptr = np.concatenate([[0], np.cumsum(keep)])[X.indptr]
            sub = sp.csr_matrix(
                (X.data[keep], pos[keep], indptr), shape=(X.shape[0], len(self.columns))
            )
            Z = np.asarray(sub @ components, dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", Z, Z, dtype=np.float64))
        norms[norms == 0] = 1.0  # a ticket with no known feature stays all zeros
        Z /= (norms / self.weight)[:, np.newaxis].astype(np.float32)
        return Z

    def renumber(self, new_of_old: np.ndarray) -> None:
        """Follow a renumbering of the TF-IDF columns (:func:`number_by_frequency`)."""
        columns = new_of_old[self.columns]
        order = np.argsort(columns)
        self.columns = columns[order].astype(np.int32)
        self.components = np.ascontiguousarray(self.components[order])
        self._position = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_position"] = None  # derivable from the columns
        return state


def with_extras(X: sp.spmatrix, extras: np.ndarray | None) -> sp.csr_matrix:
    """The TF-IDF rows with dense extra columns (latent view, stacked probabilities) after them."""
    if extras is None or extras.shape[1] == 0:
        return sp.csr_matrix(X)
    return sp.csr_matrix(sp.hstack([X, sp.csr_matrix(extras)], format="csr", dtype=np.float32))


class CPickled:
    """Pickles an object as one bytes blob that is unpickled by the C unpickler.

    joblib reads a file with Python's pure-Python unpickler (to lay numpy arrays out itself), which
    takes seconds for the feature vocabularies' hundreds of thousands of strings; a blob reduces to
    ``pickle.loads(blob)``, so the strings are read at C speed and the loaded attribute is the
    object itself. Large numpy arrays stay outside blobs, where joblib handles them best.
    """

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return pickle.loads, (pickle.dumps(self.obj, protocol=pickle.HIGHEST_PROTOCOL),)
