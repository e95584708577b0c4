"""Notebooks are executed headless on the bundled sample, so they cannot rot."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(autouse=True)
def kernel_imports_this_checkout(monkeypatch):
    """The kernel, which inherits the environment, imports this checkout's packages first."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *([path] if path else [])]))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_shows_its_plots(path, tmp_path, monkeypatch):
    # The notebook left its training split (train.csv: in shared mode a copy of real complaints),
    # a whole model and its report in /tmp/paidan-notebook-*, 52-140 MB a run: it must leave
    # nothing in the kernel's temporary directory.
    monkeypatch.delenv("PAIDAN_NOTEBOOK_DATA", raising=False)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # the kernel's, which inherits the environment
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    assert sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*")) == []
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # class balance, lengths, confusion matrix, reliability plot
    assert any("macro_f1" in str(o.get("data", {}).get("text/plain", "")) for o in outputs)


def test_the_kernel_imports_the_packages_of_this_checkout(tmp_path):
    # The kernel starts in notebooks/, where `model` is not on the path: it imported the package
    # the virtualenv has installed, so a second checkout (a git worktree) sharing the venv ran the
    # notebooks on the first checkout's code, and their tests passed or failed for that code.
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import model, training\nprint(model.__file__)")]
    )
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    [out] = nb.cells[0].outputs
    assert Path(out["text"].strip()).parent == ROOT / "model"


def test_there_is_a_notebook():
    assert any(p.name == "01-explore-and-evaluate.ipynb" for p in NOTEBOOKS)


def _run_cells(path: Path, where: Path, *wanted: str):
    """The first code cell (its imports and data) and the code cells containing each of ``wanted``
    of the notebook at ``path``, executed from the directory ``where``; the executed cells."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = [code[0]] + [next(c for c in code if text in c.source) for text in wanted]
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(where)}}
    ).execute()
    return nb.cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_class_balance_key_numbers_its_rows_as_the_bars(path, monkeypatch):
    # The bars are numbered (no CJK font) and keyed to "the table below", which was one table of
    # both heads' labels sorted by name: bar 0 (the most common department) was not row 0.
    from model import resources
    from model.tickets import read_tickets

    monkeypatch.delenv("PAIDAN_NOTEBOOK_DATA", raising=False)
    [_, cell] = _run_cells(path, path.parent, "ax.barh(")
    tables = [
        o["data"]["text/plain"].splitlines()
        for o in cell.outputs
        if "text/html" in o.get("data", {})  # a DataFrame
    ]
    df = read_tickets([resources.sample_path()])
    heads = ["department", "category"]
    assert [t[0].split() for t in tables] == [[h, "count"] for h in heads]
    for head, table in zip(heads, tables, strict=True):
        rows = [line.split() for line in table[1:]]
        assert [int(r[0]) for r in rows] == list(range(len(rows)))  # the bar numbers
        counts = [int(r[2]) for r in rows]
        assert counts == sorted(counts, reverse=True)  # as the bars are drawn, longest first
        assert {r[1]: int(r[2]) for r in rows} == df[head][df[head] != ""].value_counts().to_dict()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_shared_data_asked_for_but_missing_is_said(path, tmp_path, monkeypatch):
    # With PAIDAN_NOTEBOOK_DATA=shared and no ../shared, the notebook used the bundled sample and
    # said nothing: its figures passed for the real data's.
    where = tmp_path / "repo" / "notebooks"  # ../shared (tmp_path/shared) does not exist
    where.mkdir(parents=True)
    monkeypatch.setenv("PAIDAN_NOTEBOOK_DATA", "shared")
    [cell] = _run_cells(path, where)
    said = "".join(o.get("text", "") for o in cell.outputs)
    assert "PAIDAN_NOTEBOOK_DATA=shared, but" in said and "is missing" in said
    assert "tickets from tickets.csv" in said
