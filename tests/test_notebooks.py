"""The notebooks under notebooks/: each ``NN_name.ipynb`` has a jupytext percent twin
``NN_name.py`` with the same cells (so the reviewable text and the notebook cannot drift), is
committed without outputs, and executes from top to bottom at smoke size in under 60 s with no
error.

Execution is sandboxed: results and figures go to a temporary directory (the notebooks read
``GENVER_NB_RESULTS``, ``GENVER_NB_FIGURES`` and ``GENVER_NB_SIZE``), the kernel is this
interpreter (a kernelspec named ``python3`` written to a temporary ``JUPYTER_PATH``, which takes
precedence over any user-level one), and Jupyter's and IPython's runtime files go to temporary
directories too — nothing is written to the repository or the user's home.

A new notebook is picked up by adding its file pair (``.py`` source, ``.ipynb`` made with
``jupytext --to ipynb``) and a line in the README's Notebooks section."""
from __future__ import annotations

import json
import pathlib
import re
import sys

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
TWINS = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))
CELL_TIMEOUT_S = 900  # a guard against a hung kernel, not a speed check (speed lives in benchmarks/)


def _cells(nb):
    return [(c.cell_type, c.source) for c in nb.cells]


def test_every_notebook_has_a_twin():
    assert len(NOTEBOOKS) >= 4
    assert [p.stem for p in NOTEBOOKS] == [p.stem for p in TWINS], "each .ipynb needs its .py twin and vice versa"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_twin_has_the_same_cells(ipynb):
    nb, twin = jupytext.read(ipynb), jupytext.read(ipynb.with_suffix(".py"))
    assert _cells(nb) == _cells(twin), (
        f"{ipynb.name} and {ipynb.stem}.py differ: regenerate with `jupytext --to ipynb notebooks/{ipynb.stem}.py`")
    assert nb.cells and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(ipynb):
    nb = nbformat.read(ipynb, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, f"{ipynb.name}: strip the outputs"


def test_readme_links_every_notebook_with_a_figure():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Notebooks", 1)[1].split("\n## ", 1)[0]
    for p in NOTEBOOKS:
        assert f"(notebooks/{p.name})" in section, f"README's Notebooks section does not link {p.name}"
    for fig in re.findall(r"!\[[^\]]*\]\((docs/notebooks/[^)]+\.png)\)", section):
        assert (ROOT / fig).is_file(), fig
    assert len(re.findall(r"!\[[^\]]*\]\(docs/notebooks/", section)) >= len(NOTEBOOKS)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Kernel = this interpreter; every file a notebook or Jupyter writes goes under tmp_path."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (genver tests)", "language": "python"}))
    env = {"JUPYTER_PATH": tmp_path / "jupyter", "JUPYTER_RUNTIME_DIR": tmp_path / "runtime",
           "JUPYTER_CONFIG_DIR": tmp_path / "config", "IPYTHONDIR": tmp_path / "ipython",
           "GENVER_NB_RESULTS": tmp_path / "results", "GENVER_NB_FIGURES": tmp_path / "figures"}
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setenv("GENVER_NB_SIZE", "smoke")
    monkeypatch.setenv("GENVER_NB_WORKERS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, not Agg
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_at_smoke_size(ipynb, sandbox):
    before = sorted(p.name for p in NB_DIR.iterdir())
    nb = nbformat.read(ipynb, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()  # raises CellExecutionError on the first failing cell (or one over the cell timeout)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 1, f"{ipynb.name} showed no figure"
    # everything it wrote went to the sandbox
    assert sorted(p.name for p in NB_DIR.iterdir()) == before
    assert (sandbox / "figures" / f"{ipynb.stem}.png").is_file(), "each notebook saves its README figure"
