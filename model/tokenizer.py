"""A picklable jieba tokenizer with an explicit user dictionary and stopword list.

jieba's module-level tokenizer holds a lock and global state, so neither pickling nor
``sklearn.base.clone`` survives it. :class:`JiebaTokenizer` keeps only plain data (the user words and
stopwords it was fitted with) and builds its own ``jieba.Tokenizer`` lazily, once per process.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jieba
from sklearn.base import BaseEstimator, TransformerMixin

logger = logging.getLogger(__name__)

# A token is kept only if it has at least one CJK ideograph or Latin letter: punctuation, spaces and
# bare numbers (dates, amounts, house numbers) say nothing about which department owns a complaint.
_MEANINGFUL = re.compile(r"[\u3400-\u9fff\uf900-\ufaffA-Za-z]")

jieba.setLogLevel(logging.WARNING)


class Doc(NamedTuple):
    """A prepared text and its tokens: the unit that every feature view reads."""

    text: str
    tokens: tuple[str, ...]


def doc_tokens(doc: Doc) -> tuple[str, ...]:
    """Analyzer for the word view: the tokens already cut by :class:`JiebaTokenizer`."""
    return doc.tokens


def doc_text(doc: Doc) -> str:
    """Preprocessor for the character view: the prepared text itself."""
    return doc.text


def read_userdict(path: str | Path) -> tuple[tuple[str, int | None, str | None], ...]:
    """Parse a jieba user dictionary (``word [freq] [tag]`` per line).

    Parameters
    ----------
    path : str or Path
        UTF-8 text file in jieba's user-dictionary format. Blank lines are ignored.

    Returns
    -------
    tuple of (word, freq, tag)
        ``freq`` and ``tag`` are ``None`` when the line does not give them.

    Raises
    ------
    ValueError
        If a line's frequency is not a whole number; the message names the file and line.
    """
    entries = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), 1):
        parts = line.strip().split()
        if not parts:
            continue
        freq: int | None = None
        tag: str | None = None
        if len(parts) >= 2:
            if not parts[1].isdigit():
                raise ValueError(f"{path}, line {lineno}: frequency {parts[1]!r} is not a number")
            freq = int(parts[1])
        if len(parts) >= 3:
            tag = parts[2]
        entries.append((parts[0], freq, tag))
    return tuple(entries)


def read_stopwords(path: str | Path) -> frozenset[str]:
    """Read a stopword list: one word per line, UTF-8, blank lines ignored."""
    text = Path(path).read_text(encoding="utf-8-sig")
    return frozenset(w.strip() for w in text.splitlines() if w.strip())


class JiebaTokenizer(TransformerMixin, BaseEstimator):
    """Cut prepared texts into words with jieba, dropping stopwords and meaningless tokens.

    Parameters
    ----------
    userdict : str or Path, optional
        jieba user dictionary read at ``fit`` time. Its words are stored in the fitted tokenizer,
        so a loaded model never depends on the file still being where it was at training.
    stopwords : str or Path, optional
        Stopword list read at ``fit`` time.
    hmm : bool, default True
        Let jieba guess words that are in no dictionary (names, new terms) with its HMM.

    Attributes
    ----------
    user_words_ : tuple of (word, freq, tag)
        The user dictionary the tokenizer was fitted with.
    stopwords_ : frozenset of str
        The stopwords it was fitted with.
    """

    def __init__(
        self,
        userdict: str | Path | None = None,
        stopwords: str | Path | None = None,
        hmm: bool = True,
    ) -> None:
        self.userdict = userdict
        self.stopwords = stopwords
        self.hmm = hmm

    def fit(self, X: Iterable[str] | None = None, y: Any = None) -> JiebaTokenizer:
        self.user_words_ = read_userdict(self.userdict) if self.userdict else ()
        self.stopwords_ = read_stopwords(self.stopwords) if self.stopwords else frozenset()
        self.__dict__.pop("_jieba_cache", None)
        return self

    def transform(self, X: Iterable[str]) -> list[Doc]:
        return [Doc(text, self.tokenize(text)) for text in X]

    def tokenize(self, text: str) -> tuple[str, ...]:
        """Cut one prepared text into its meaningful, non-stopword tokens."""
        stop = self.stopwords_
        return tuple(
            tok
            for tok in self._jieba().cut(text, HMM=self.hmm)
            if tok not in stop and _MEANINGFUL.search(tok)
        )

    def warm_up(self) -> None:
        """Load jieba's dictionary now rather than on the first request."""
        self._jieba()

    def _jieba(self) -> jieba.Tokenizer:
        dt = self.__dict__.get("_jieba_cache")
        if dt is None:
            with _BUILD_LOCK:
                dt = self.__dict__.get("_jieba_cache")
                if dt is None:
                    dt = _build_jieba(self.user_words_)
                    self.__dict__["_jieba_cache"] = dt
        return dt

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_jieba_cache", None)
        return state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        return tags


_BUILD_LOCK = threading.Lock()


def _build_jieba(user_words: Sequence[tuple[str, int | None, str | None]]) -> jieba.Tokenizer:
    dt = jieba.Tokenizer()
    dt.initialize()
    for word, freq, tag in user_words:
        dt.add_word(word, freq, tag)
    logger.debug("jieba ready with %d user words", len(user_words))
    return dt
