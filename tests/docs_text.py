"""The documentation as one text: README.md, then docs/*.md, where the README's reference moved."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def documentation() -> str:
    """README.md and every docs/*.md page, each whole, joined by a blank line."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n\n".join(page.read_text(encoding="utf-8") for page in pages)
