"""Sphinx configuration of the genver documentation site (``sphinx-build -W -b html docs docs/_build``).

Pages are Markdown (MyST); the API reference is built from the docstrings by autodoc, which
renders the Sphinx roles (``:func:``, ``:class:``) the docstrings use; the CLI reference is
generated from ``genver.cli.build_parser`` by sphinx-argparse (never retyped); one page per
shipped experiment spec is generated from ``sims/*.toml`` when the build starts.
"""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

from spec_pages import write_spec_pages  # noqa: E402

import genver  # noqa: E402

project = "genver"
author = "The genver developers"
copyright = "2026, The genver developers"
release = version = genver.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode",
              "sphinx.ext.doctest", "sphinxarg.ext"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "notebooks/*.ipynb", "notebooks/*.py", "notebooks/README.md", "**/.ipynb_checkpoints"]
html_theme = "furo"
html_title = f"genver {release}"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "description"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_ivar = True  # dataclass fields: one description each (not an Attributes entry and a field)
suppress_warnings = ["myst.header"]


def _spec_pages(app):
    write_spec_pages(ROOT / "sims", ROOT / "docs" / "experiments", ROOT / "docs")


def setup(app):
    app.connect("builder-inited", _spec_pages)
