"""README's Configuration table lists every setting ``model/settings.py`` reads, with its default."""

from __future__ import annotations

import re
from pathlib import Path

from model.settings import Settings, setting_variables

README = Path(__file__).resolve().parents[2] / "README.md"


def configuration_table() -> dict[str, str]:
    """The table's rows in README's "Configuration": variable → default cell."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(PAIDAN_[A-Z_]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_setting_has_a_row_and_every_row_is_a_setting() -> None:
    # PAIDAN_SIMILAR_K, PAIDAN_TOP_K and PAIDAN_ACCESS_LOG were read but named in no document,
    # although a misspelt PAIDAN_* variable stops `paidan serve`: the docs are where the names are.
    assert list(configuration_table()) == setting_variables()


def test_each_default_is_the_settings_default() -> None:
    table = configuration_table()
    for name, field in Settings.model_fields.items():
        cell = table[f"PAIDAN_{name.upper()}"]
        default = field.default
        if default in (None, (), ""):
            assert cell.startswith("unset"), (name, cell)
            continue
        if isinstance(default, bool):
            expected = str(default).lower()
        elif isinstance(default, int | float):
            expected = f"{default:g}" if isinstance(default, float) else str(default)
        else:
            expected = str(default)
        shown = re.fullmatch(r"`([^`]+)`", cell)
        assert shown and shown.group(1).replace(",", "") == expected, (name, cell)
