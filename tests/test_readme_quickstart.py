"""The README's Python example runs as printed, and `genver quickstart` prints a sane table."""
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


def test_quickstart_table(capsys):
    assert main(["quickstart", "--seeds", "4"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s+\d+\s", line)]
    assert [int(r[0]) for r in rows] == [2**k for k in range(3, 13)]
    off = np.array([float(r[1]) for r in rows])
    on = np.array([float(r[4]) for r in rows])
    assert (off >= 0).all() and (on >= 0).all()
    # with 4096 pairs both exact MLEs identify the true member (suboptimality 0)
    assert off[-1] == 0.0 and on[-1] == 0.0
    assert "N_eps" in out


def test_cli_version_and_bad_args(capsys):
    import pytest

    from genver import __version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["quickstart", "--seeds", "1"])
    assert e.value.code == 2 and "--seeds" in capsys.readouterr().err
