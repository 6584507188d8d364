"""The README's Python example runs as printed; the CLI's --version and argument errors."""
from __future__ import annotations

import pathlib
import re

import numpy as np

from genver.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_example_runs_and_shows_theorem_2_2():
    src = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", src, re.S)
    assert blocks, "README has no python example"
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    np.testing.assert_allclose(ns["tab_off"].policy.logp, ns["tab_on"].policy.logp, atol=1e-6)


def test_cli_version_and_bad_args(capsys):
    import pytest

    from genver import __version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["quickstart", "--seeds", "1"])
    assert e.value.code == 2 and "unrecognized arguments: --seeds" in capsys.readouterr().err
