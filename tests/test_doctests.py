"""The ``Examples`` sections of the key functions' docstrings run and pass (issue 18: a few key
functions carry a doctest that CI runs).

Each module in :data:`DOCTEST_MODULES` is run through ``doctest.testmod`` with ``ELLIPSIS`` and
``NORMALIZE_WHITESPACE``; it must attempt at least one example (so a module whose examples
vanish fails) and fail none. The examples check closed forms (``log Z_r``, the reverse-KL
identity, the reference's suboptimality, a two-completion win rate, a finite-class DPO pick), so
they are tests, not decoration. To add a module, append its dotted name to the tuple.
"""
from __future__ import annotations

import doctest
import importlib
import types

import pytest

#: Modules whose docstring examples are run (append yours; every module with an example must be
#: here: :func:`test_every_module_with_examples_is_listed`).
DOCTEST_MODULES = (
    "genver.spaces",
    "genver.softrl",
    "genver.metrics",
    "genver.estimators.mle",
    "genver.censored",
    "genver.stats.descriptors",
    "genver.stats.bootstrap",
    "genver.stats.curves",
    "genver.stats.verdicts",
    "genver.plots.axes",
    "genver.plots.style",
    "genver.experiments.catalog",
    "genver.experiments.cells",
    "genver.experiments.expect",
    "genver.experiments.figcache",
    "genver.experiments.memory",
    "genver.experiments.registry",
    "genver.experiments.report_verdicts",
    "genver.experiments.spec",
    "genver.experiments.spec_tables",
)
#: modules whose examples are all ``+SKIP`` (they need a results directory)
SKIPPED_ONLY = ("genver.experiments.tidy",)

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _run(mod: types.ModuleType) -> doctest.TestResults:
    return doctest.testmod(mod, optionflags=FLAGS, report=False)


@pytest.mark.parametrize("modname", DOCTEST_MODULES)
def test_docstring_examples_pass(modname):
    res = _run(importlib.import_module(modname))
    assert res.attempted >= 1, f"{modname}: no docstring examples found"
    assert res.failed == 0, f"{modname}: {res.failed} of {res.attempted} docstring examples failed (output above)"


def test_the_runner_catches_a_wrong_example_and_a_module_without_examples():
    # a deliberately wrong expected output is counted as a failure, not skipped
    broken = types.ModuleType("broken_examples")
    exec(
        'def half(x):\n'
        '    """Half.\n\n'
        '    >>> half(3)\n'
        '    1.0\n'
        '    """\n'
        '    return x / 2\n',
        broken.__dict__,
    )
    assert _run(broken) == (1, 1)
    bare = types.ModuleType("no_examples")
    exec('def f():\n    """No example."""\n', bare.__dict__)
    assert _run(bare).attempted == 0


def test_every_module_with_examples_is_listed():
    import pathlib

    import genver
    root = pathlib.Path(genver.__file__).parent
    with_examples = {".".join(("genver",) + p.relative_to(root).with_suffix("").parts)
                     for p in root.rglob("*.py") if ">>> " in p.read_text()}
    assert with_examples - set(DOCTEST_MODULES) - set(SKIPPED_ONLY) == set()
    assert set(DOCTEST_MODULES) <= with_examples  # no stale entry
