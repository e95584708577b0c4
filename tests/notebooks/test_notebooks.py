"""Notebooks are executed headless on the bundled sample, so they cannot rot."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_shows_its_plots(path, monkeypatch):
    monkeypatch.delenv("PAIDAN_NOTEBOOK_DATA", raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # class balance, lengths, confusion matrix, reliability plot
    assert any("macro_f1" in str(o.get("data", {}).get("text/plain", "")) for o in outputs)


def test_there_is_a_notebook():
    assert any(p.name == "01-explore-and-evaluate.ipynb" for p in NOTEBOOKS)
