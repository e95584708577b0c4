"""The layering the house style draws: arrows point inward, to ``model/``. ``serve/`` imports
``model/`` and never ``training/``; ``model/`` imports neither. Read from the source (``ast``),
so an import inside a function, where a test run may never reach it, is found too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each package must never import.
FORBIDDEN = {"serve": {"training"}, "model": {"training", "serve"}}


def imported(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, with its line: ``import a.b`` and ``from a.b import c`` as
    ``a.b``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_an_outer_one(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no module found under {package}/"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in imported(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert not wrong, "; ".join(wrong)


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training.window import parse_bound\n", encoding="utf-8")
    assert imported(module) == [(2, "training.window")]
