"""The ``Examples`` of the experiment layer and the scaling-law fits run as doctests (issue 18).

Each module's examples print values the reader can check by hand (a setting id, a parsed
statement, a size in bytes, an OLS line through collinear points); a module listed here must
hold at least one example, so deleting them fails the test as a wrong output does.
"""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "genver.censored",
    "genver.scaling",
    "genver.experiments.catalog",
    "genver.experiments.cells",
    "genver.experiments.expect",
    "genver.experiments.figcache",
    "genver.experiments.memory",
    "genver.experiments.registry",
    "genver.experiments.report",
    "genver.experiments.spec",
    "genver.experiments.spec_tables",
]


@pytest.mark.parametrize("modname", MODULES)
def test_examples_run(modname):
    result = doctest.testmod(importlib.import_module(modname), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0 and result.attempted >= 1, result


def test_a_wrong_example_fails():
    # the runner above would catch a wrong output: a docstring whose example prints the wrong id
    def broken():
        """
        >>> from genver.experiments.spec import setting_id
        >>> setting_id({"P": 4, "V": 2, "H": 3})
        '0000000000'
        """
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(verbose=False)
    for t in finder.find(broken, "broken", globs={}):
        runner.run(t, out=lambda s: None)
    assert runner.failures == 1
