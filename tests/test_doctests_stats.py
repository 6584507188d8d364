"""The ``Examples`` of genver.stats run as doctests (issue 18): hand-made inputs whose outputs
are stated in the docstrings (an IQM, percentile intervals in the extended reals, N_ε of a
two-seed table, the comparison grammar), so a change of the rule shows up as a failed example."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["genver.stats.bootstrap", "genver.stats.curves", "genver.stats.verdicts"]


@pytest.mark.parametrize("modname", MODULES)
def test_the_examples_of_genver_stats_hold(modname):
    result = doctest.testmod(importlib.import_module(modname), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 1, result


def test_a_wrong_example_is_caught():
    # the runner really compares: a docstring stating a wrong IQM fails
    from genver.stats.bootstrap import iqm

    def wrong():
        """
        >>> iqm([1, 2, 3, 4, 100])
        22.0
        """

    runner = doctest.DocTestRunner(verbose=False)
    for test in doctest.DocTestFinder().find(wrong, "wrong", globs={"iqm": iqm}):
        runner.run(test, out=lambda s: None)
    assert runner.failures == 1
