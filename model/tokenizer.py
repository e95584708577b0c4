"""A picklable jieba tokenizer with an explicit user dictionary and stopword list.

jieba's module-level tokenizer holds a lock and global state, so neither pickling nor
``sklearn.base.clone`` survives it. :class:`Segmenter` keeps only plain data (the user words,
stopwords and backend a model was fitted with) and builds its segmenter lazily, once per process.
:class:`model.pipeline.JiebaTokenizer`, the scikit-learn estimator of the feature pipeline, reads the
files at ``fit`` time and cuts with a :class:`Segmenter`; this module itself does not import
scikit-learn, so a server does not either.

Two backends cut the same way (same dictionary, same HMM for unknown words):

* ``"jieba"``: the reference pure-Python implementation;
* ``"rjieba"``: Python bindings of jieba-rs, a Rust port with the same dictionary and algorithm,
  about 8× faster on the shared real tickets, where its tokens are identical to jieba's on about
  97% of documents; the rest differ in how a few unknown words are split (benchmarks/README.md).

The backend is a training-time choice: it is a parameter of the fitted tokenizer, so a model is
always served with the backend it was trained with.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from model.text import PLACEHOLDERS, normalize

if TYPE_CHECKING:
    import jieba

logger = logging.getLogger(__name__)

# A token is kept only if it has at least one CJK ideograph or Latin letter: punctuation, spaces and
# bare numbers (dates, amounts, house numbers) say nothing about which department owns a complaint.
_MEANINGFUL = re.compile(r"[\u3400-\u9fff\uf900-\ufaffA-Za-z]")

# A placeholder that masking writes for a number, an id or an e-mail address (model.text).
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))

Backend = Literal["jieba", "rjieba"]
BACKENDS: tuple[str, ...] = ("jieba", "rjieba")
# jieba's two ways to cut for indexing: the longest words only, or those and the words inside them.
WordCut = Literal["precise", "search"]
WORD_CUTS: tuple[str, ...] = ("precise", "search")


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


class ResourceFileError(ValueError):
    """A user dictionary or stopword list that cannot be read; the message names the file."""


def _resource_lines(path: str | Path, what: str) -> list[str]:
    """The lines of a user dictionary or stopword list, UTF-8 (a BOM allowed) or GB18030."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ResourceFileError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            lines = data.decode(encoding).splitlines()
        except UnicodeDecodeError:
            continue
        # UTF-16 without a BOM (some Windows tools) decodes, as GB18030 or even UTF-8, into words
        # with NULs and other control characters, which no text holds: refused, not applied.
        for lineno, line in enumerate(lines, 1):
            if bad := _CONTROL.search(line):
                raise ResourceFileError(
                    f"{path}, line {lineno}: the {what} holds the control character "
                    f"U+{ord(bad.group()):04X}, which is not text (is the file UTF-16? save it as "
                    "UTF-8)"
                )
        return lines
    raise ResourceFileError(f"{path}: the {what} is neither UTF-8 nor GB18030 text")


# Control characters a line can still hold once split (tabs separate fields).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# jieba's user-dictionary fields after the word: a frequency (ASCII digits; "²" passes
# str.isdigit() but not int()) and a part-of-speech tag.
_FREQ = re.compile(r"[0-9]+")
_TAG = re.compile(r"[A-Za-z]+")


UserWord = tuple[str, int | None, str | None]


def read_userdict(path: str | Path) -> tuple[UserWord, ...]:
    """Parse a jieba user dictionary (``word [freq] [tag]`` per line, frequency and tag optional).

    Each word is normalised as ticket texts are before they are cut (:func:`model.text.normalize`:
    NFKC, lower case), or a word such as ``ETC卡`` or ``ＡＰＰ`` could never match a text, which
    holds ``etc卡`` and ``app``. A word given twice (as written or once normalised) is kept once,
    with the frequency and tag of its last line, as jieba would have used them.

    Parameters
    ----------
    path : str or Path
        Text file (UTF-8 or GB18030) in jieba's user-dictionary format. Blank lines are ignored.

    Returns
    -------
    tuple of (word, freq, tag)
        ``freq`` and ``tag`` are ``None`` when the line does not give them.

    Raises
    ------
    ResourceFileError
        If the file cannot be read or decoded, a line holds a control character, a line's
        frequency is not a whole number (a second and last field may be a tag instead: letters),
        or a word is nothing once normalised or holds a space; the message names the file and line.
    """
    entries: dict[str, UserWord] = {}
    for lineno, line in enumerate(_resource_lines(path, "user dictionary"), 1):
        parts = line.strip().split()
        if not parts:
            continue
        freq: int | None = None
        tag: str | None = None
        if len(parts) == 2 and _TAG.fullmatch(parts[1]):
            tag = parts[1]  # "word tag", as jieba reads it
        elif len(parts) >= 2:
            if not _FREQ.fullmatch(parts[1]):
                raise ResourceFileError(
                    f"{path}, line {lineno}: frequency {parts[1]!r} is not a number"
                    + (" (nor a part-of-speech tag)" if len(parts) == 2 else "")
                )
            freq = int(parts[1])
        if len(parts) >= 3:
            tag = parts[2]
        word = normalize(parts[0])
        if not word or " " in word:
            raise ResourceFileError(
                f"{path}, line {lineno}: the word {parts[0]!r} is {word!r} once normalised as "
                "texts are, which no text can hold as one word"
            )
        entries.pop(word, None)  # the last line's frequency and tag, as jieba would use them
        entries[word] = (word, freq, tag)
    return tuple(entries.values())


def read_stopwords(path: str | Path) -> frozenset[str]:
    """Read a stopword list: one word per line, UTF-8 or GB18030, blank lines ignored.

    A line holding a control character (a NUL, as in a UTF-16 file read as UTF-8 or GB18030) is
    refused with :class:`ResourceFileError`, naming the file and line.

    Each word is normalised as ticket texts are (see :func:`read_userdict`).
    """
    return frozenset(read_stopword_list(path))


def read_stopword_list(path: str | Path) -> tuple[str, ...]:
    """The words of a stopword list, normalised as texts are, in file order, each once."""
    lines = _resource_lines(path, "stopword list")
    words = (normalize(w) for w in lines)
    return tuple(dict.fromkeys(w for w in words if w))


def format_userdict(entries: Iterable[UserWord]) -> str:
    """A user dictionary's text (``word [freq] [tag]`` per line) that :func:`read_userdict` reads back."""
    lines = (
        " ".join([word, *([str(freq)] if freq is not None else []), *([tag] if tag else [])])
        for word, freq, tag in entries
    )
    return "".join(f"{line}\n" for line in lines)


def format_stopwords(words: Iterable[str]) -> str:
    """A stopword list's text, one word per line, that :func:`read_stopwords` reads back."""
    return "".join(f"{w}\n" for w in words)


def changed_by_normalizing(path: str | Path, what: str) -> list[tuple[str, str]]:
    """The meaningful words of a resource file that normalising as texts are changes, as
    ``(written, read)``: what an administrator wrote that the model holds otherwise.

    ``what`` is ``"user dictionary"`` or ``"stopword list"``.
    """
    changed = {}
    for line in _resource_lines(path, what):
        parts = line.split() if what == "user dictionary" else [line.strip()]
        if parts and parts[0]:
            word = normalize(parts[0])
            if word != parts[0] and _MEANINGFUL.search(word):
                changed[parts[0]] = word
    return list(changed.items())


class Segmenter:
    """Cut prepared texts into words with jieba, dropping stopwords and meaningless tokens.

    Plain data only (the user words, stopwords and backend a model was fitted with) and the
    segmenter built from them lazily, once per process. The scikit-learn estimator that fits these
    from files is :class:`model.pipeline.JiebaTokenizer`; a model's serving file holds this object
    alone, so that serving never imports scikit-learn.

    Parameters
    ----------
    user_words : sequence of (word, freq, tag)
        The user dictionary (:func:`read_userdict`).
    stopwords : frozenset of str
        Tokens dropped after cutting.
    hmm : bool, default True
        Let jieba guess words that are in no dictionary (names, new terms) with its HMM.
    backend : {"jieba", "rjieba"}, default "jieba"
        The segmenter: the reference jieba, or rjieba (jieba-rs), the same algorithm compiled.
        Both load the user dictionary (each word added with its frequency and tag).
    cut : {"precise", "search"}, default "precise"
        jieba's default mode (the longest words), or its search-engine mode (those, and the
        dictionary words of two or three characters inside each longer one, before it).
    whole_placeholders : bool, default True
        Read each placeholder that masking wrote (``[手机号]``, ``[微信号]``, ...) as one word, its
        name (``手机号``, ``微信号``; a stopword like any other), instead of cutting it: cut, a
        masked WeChat id gave 信号 (signal) and a masked mobile number 手机 (mobile phone), the
        words of the tickets about phone signal and phones. False in models saved before it.
        (The character view still reads a placeholder's characters: blanking them cost the real
        tickets' department macro-F1 0.2 points, ``docs/model.md``.)
    """

    def __init__(
        self,
        user_words: Sequence[tuple[str, int | None, str | None]] = (),
        stopwords: frozenset[str] = frozenset(),
        hmm: bool = True,
        backend: str = "jieba",
        cut: str = "precise",
        whole_placeholders: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"tokenizer backend {backend!r} is not one of {', '.join(BACKENDS)}")
        if cut not in WORD_CUTS:
            raise ValueError(f"word cut {cut!r} is not one of {', '.join(WORD_CUTS)}")
        self.user_words = tuple(user_words)
        self.stopwords = frozenset(stopwords)
        self.hmm = hmm
        self.backend = backend
        self.cut = cut
        self.whole_placeholders = whole_placeholders
        self._cache: Any = None

    def transform(self, texts: Iterable[str]) -> list[Doc]:
        return [Doc(text, self.tokenize(text)) for text in texts]

    def tokenize(self, text: str) -> tuple[str, ...]:
        """Cut one prepared text into its meaningful, non-stopword tokens."""
        stop = self.stopwords
        meaningful = _MEANINGFUL.search
        seg = self._segmenter()
        cut = seg.cut_for_search if self.cut == "search" else seg.cut
        if self.whole_placeholders and "[" in text:
            pieces = self._cut_around_placeholders(text, cut)
        else:
            pieces = cut(text, self.hmm) if self.backend == "rjieba" else cut(text, HMM=self.hmm)
        # Most tokens start with an ideograph, which the chained comparison (C, no call) accepts;
        # the rest get the regular expression: the same tokens, a third of the cost.
        return tuple(
            [
                tok
                for tok in pieces
                if tok not in stop and ("\u3400" <= tok <= "\u9fff" or meaningful(tok))
            ]
        )

    def _cut_around_placeholders(self, text: str, cut: Any) -> list[str]:
        """The words of ``text`` with each placeholder one word, its name; the rest cut as usual
        (the brackets already ended the words beside a placeholder), the whole of a text with
        none."""
        rjieba = self.backend == "rjieba"
        pieces: list[str] = []
        start = 0
        for match in _PLACEHOLDER.finditer(text):
            part = text[start : match.start()]
            if part:
                pieces.extend(cut(part, self.hmm) if rjieba else cut(part, HMM=self.hmm))
            pieces.append(match.group()[1:-1])
            start = match.end()
        part = text[start:]
        if part:
            pieces.extend(cut(part, self.hmm) if rjieba else cut(part, HMM=self.hmm))
        return pieces

    def warm_up(self) -> None:
        """Load jieba's dictionary now rather than on the first request."""
        self._segmenter()

    def _segmenter(self) -> Any:
        seg = self._cache
        if seg is None:
            with _BUILD_LOCK:
                seg = self._cache
                if seg is None:
                    seg = _shared_segmenter(self.backend, tuple(map(tuple, self.user_words)))
                    self._cache = seg
        return seg

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None}  # a segmenter is rebuilt, never pickled

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("cut", "precise")  # models saved before the search mode cut so
        state.setdefault("whole_placeholders", False)  # and before this, cut placeholders
        self.__dict__.update(state)


def __getattr__(name: str) -> Any:
    # The scikit-learn estimator lives in model.pipeline, so that importing this module (as serving
    # does) does not import scikit-learn; models pickled before it moved name it here.
    if name == "JiebaTokenizer":
        from model.pipeline import JiebaTokenizer

        return JiebaTokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_BUILD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _shared_segmenter(
    backend: str, user_words: tuple[tuple[str, int | None, str | None], ...]
) -> Any:
    """The segmenter of ``backend`` with ``user_words`` added, built once per process.

    Every :class:`Segmenter` with the same backend and user words (a model and its challenger, a
    served model and the one a reload brings, a model loaded again) cuts with the same object:
    building rjieba's costs about 0.13 s and 25 MB. Two are kept, the current user dictionary's
    and the one before it. Neither segmenter is changed once built, so sharing is safe; threads
    already share one through a served model's tokenizer. Called under ``_BUILD_LOCK``.
    """
    build = _build_rjieba if backend == "rjieba" else _build_jieba
    return build(user_words)


# jieba's main dictionary, loaded once per process: every tokenizer starts from a copy of its
# prefix dictionary (a dict copy takes milliseconds, loading it again about a second).
_BASE_JIEBA: jieba.Tokenizer | None = None


def _base_jieba() -> jieba.Tokenizer:
    global _BASE_JIEBA
    if _BASE_JIEBA is None:
        jieba = _import_jieba()
        base = jieba.Tokenizer()
        base.initialize()
        _BASE_JIEBA = base
    return _BASE_JIEBA


def _build_jieba(user_words: Sequence[tuple[str, int | None, str | None]]) -> jieba.Tokenizer:
    base = _base_jieba()
    dt = _import_jieba().Tokenizer()
    # What Tokenizer.initialize() would set, from the already loaded main dictionary.
    dt.FREQ = dict(base.FREQ)
    dt.total = base.total
    dt.initialized = True
    for word, freq, tag in user_words:
        dt.add_word(word, freq, tag)
    logger.debug("jieba ready with %d user words", len(user_words))
    return dt


class BackendMissingError(ImportError):
    """A tokenizer backend whose package cannot be imported; the message names it and the fix."""


def import_backend(backend: str) -> Any:
    """The module of a tokenizer backend (``"jieba"`` or ``"rjieba"``), imported now.

    Raises
    ------
    BackendMissingError
        If its package cannot be imported (not installed, no wheel for this platform): the
        message names the package and ``pip install`` it.
    """
    return _import_jieba() if backend == "jieba" else import_rjieba()


def find_backend(backend: str) -> None:
    """Check that a tokenizer backend's package is installed, without importing it.

    For a process that checks a model but cuts no text with it (the supervisor of ``paidan serve
    --workers N``): importing rjieba builds jieba's whole dictionary (32 MiB), which stayed in the
    supervisor for its life while each worker built its own.

    Raises
    ------
    BackendMissingError
        If the package is not installed, as :func:`import_backend` says it.
    """
    try:
        found = importlib.util.find_spec(backend) is not None
    except (ImportError, ValueError) as e:  # a broken installation: its parent, its __spec__
        raise _missing(backend, ImportError(str(e))) from e
    if not found:
        missing = ModuleNotFoundError(f"No module named {backend!r}", name=backend)
        raise _missing(backend, missing) from missing


def _missing(package: str, e: ImportError) -> BackendMissingError:
    error = BackendMissingError(
        f"the {package} tokenizer cannot be used: the {package} package cannot be imported "
        f"({e}): pip install {package}"
    )
    error.name = package
    return error


def _import_jieba() -> Any:
    """jieba, imported on first use: it pulls in pkg_resources, a few hundred milliseconds of a
    server's start-up that a model cut by rjieba never needs."""
    try:
        import jieba
    except ImportError as e:
        raise _missing("jieba", e) from e

    jieba.setLogLevel(logging.WARNING)
    return jieba


def import_rjieba() -> Any:
    try:
        import rjieba
    except ImportError as e:
        raise _missing("rjieba", e) from e
    return rjieba


# Whether the rjieba module's own Jieba has been taken for a segmenter (:func:`_build_rjieba`).
_RJIEBA_DEFAULT_TAKEN = False


def _build_rjieba(user_words: Sequence[tuple[str, int | None, str | None]]) -> Any:
    global _RJIEBA_DEFAULT_TAKEN
    rjieba = import_rjieba()
    # Importing rjieba builds a Jieba of its own (jieba's main dictionary, 32 MiB), which paidan
    # never cuts with: the first segmenter of the process is that one, not a second copy beside
    # it (24 MiB more in every worker). Called under _BUILD_LOCK; nothing of paidan's uses the
    # module's cut functions, which now cut with these user words too.
    default = getattr(rjieba, "_DEFAULT_JIEBA", None)
    if not _RJIEBA_DEFAULT_TAKEN and isinstance(default, rjieba.Jieba):
        seg = default
    else:
        seg = rjieba.Jieba()  # jieba-rs with jieba's main dictionary built in
    _RJIEBA_DEFAULT_TAKEN = True
    for word, freq, tag in user_words:
        seg.add_word(word, freq, tag)
    logger.debug("rjieba ready with %d user words", len(user_words))
    return seg
