"""Where the bundled sample data and the default tokenizer resources live."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

SAMPLE_FILE = "tickets.csv"
# ``training_data[SAMPLE_MARKER]`` is true in the default model `paidan serve` trains from the
# bundled sample on an empty model root: a placeholder, replaced by the city's first own model.
SAMPLE_MARKER = "bundled_sample"
USERDICT_FILE = "userdict.txt"
STOPWORDS_FILE = "stopwords.txt"
REMITS_FILE = "remits.csv"


def data_dir() -> Path:
    """The bundled ``data/`` directory: beside the packages in a checkout, inside a wheel's ``paidan/_data``."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "data", here.parent / "paidan" / "_data"):
        if (candidate / USERDICT_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"the bundled data directory ({USERDICT_FILE}) was not found beside {here}; reinstall paidan"
    )


def sample_path() -> Path:
    """The bundled sample tickets: invented, with both labels on every row."""
    return data_dir() / SAMPLE_FILE


def sample_remits_path() -> Path:
    """The remits of the bundled sample's departments and categories (``paidan train
    --remits``), in the project's own words: the default model learns them."""
    return data_dir() / REMITS_FILE


def default_userdict() -> Path:
    """The bundled government-domain jieba user dictionary."""
    return data_dir() / USERDICT_FILE


def default_stopwords() -> Path:
    """The bundled stopword list."""
    return data_dir() / STOPWORDS_FILE


# SHA-256 of every data/tickets.csv paidan has shipped (git log -- data/tickets.csv; when the sample
# changes, the one it replaces stays here). A default model an older paidan trained from its own
# sample carries that sample's checksum: it is still the placeholder after an upgrade.
EARLIER_SAMPLE_SHA256 = (
    "66e19d7521d0159ea4173ae1be0fc713a197f396aaeb5d3276889ddf3bd17ceb",  # 2026-11-22 (889b2fc)
    "5fd42f218c1bf5f24c7df064ade9ab2a26967a95ed92a9453bfc9827b5c0188a",  # 2026-12-03 (e968fba)
)


def is_sample_default(meta: dict[str, Any]) -> bool:
    """Whether a model's metadata says it was trained on the bundled sample alone.

    The default model ``paidan serve`` trains carries ``training_data.bundled_sample``; a model
    trained before that marker existed is recognised by its one training file having the bundled
    sample's name and checksum: today's sample's, or one an earlier paidan shipped
    (:data:`EARLIER_SAMPLE_SHA256`). Nothing of a city's own is in such a model.
    """
    data = meta.get("training_data") or {}
    if data.get(SAMPLE_MARKER):
        return True
    files = data.get("files") or []
    if len(files) != 1 or data.get("window") or data.get("unlabelled_rows"):
        return False
    # A retrain's model (its parent, sources and feedback recorded) learnt from the centre's own
    # decisions or was at least chosen by its administrator, even when its history is the sample:
    # it was announced as the invented sample's and would have been replaced without a comparison.
    if any(data.get(key) for key in ("parent", "sources", "feedback", "feedback_until")):
        return False
    if files[0].get("name") != SAMPLE_FILE:
        return False
    if files[0].get("sha256") in EARLIER_SAMPLE_SHA256:
        return True
    try:
        return bool(files[0].get("sha256") == _sample_sha256())
    except OSError:
        return False


@functools.cache
def _sample_sha256() -> str:
    """The bundled sample's SHA-256, read once a process: ``paidan models list`` asks for every
    version, and each ask read and hashed the 0.4 MB file again."""
    return hashlib.sha256(sample_path().read_bytes()).hexdigest()
