"""Execute every notebook's code cells in order (QUICK = True) so that they never rot."""
import json
import pathlib

import matplotlib
import pytest

matplotlib.use("Agg")

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def code_cells(path):
    """Source of each code cell of a notebook, in order."""
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"walkthrough", "scaling_continuum"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    import matplotlib.pyplot as plt

    cells = code_cells(path)
    assert cells[0].strip() == "QUICK = False"
    ns = {"__name__": "__notebook__"}
    for i, src in enumerate(cells):
        exec(compile(src, f"{path.name}[cell {i}]", "exec"), ns)
        if i == 0:
            ns["QUICK"] = True
    plt.close("all")
    assert "comparison" in ns
