"""Where the bundled sample data and the default tokenizer resources live."""

from __future__ import annotations

from pathlib import Path

SAMPLE_FILE = "tickets.csv"
USERDICT_FILE = "userdict.txt"
STOPWORDS_FILE = "stopwords.txt"


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


def default_userdict() -> Path:
    """The bundled government-domain jieba user dictionary."""
    return data_dir() / USERDICT_FILE


def default_stopwords() -> Path:
    """The bundled stopword list."""
    return data_dir() / STOPWORDS_FILE
